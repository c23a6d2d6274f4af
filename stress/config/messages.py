"""Plain-language config errors: one message that names the key and says what is allowed.

Two sources of config problems end here (exit code 2, one message, no traceback):

- :func:`schema_problems` walks a typed config (the dataclasses of :mod:`stress.config`) for keys
  that the schema does not declare and values of the wrong type. OmegaConf catches most of these
  while composing, but not a key added with ``+key=value`` nor a ``StressConfig`` built by hand
  in Python.
- :func:`explain` turns a Hydra or OmegaConf exception (an override of an unknown key, a value
  that does not convert, a config group option that does not exist) into such a message; the
  allowed keys come from the schema, the available options from the config search path.

Nothing here imports :mod:`stress.config`: it works on any dataclass schema.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import types
import typing
from pathlib import Path
from urllib.parse import unquote, urlparse

_TYPE_WORDS = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
_CONVERSIONS = {  # OmegaConf's conversion failures -> what the key must be
    "Integer": "an integer (a whole number, e.g. 2000)",
    "Float": "a number",
    "String": "text",
}


def _join(key: str, name: object) -> str:
    return f"{key}.{name}" if key else str(name)


def _where(key: str) -> str:
    return f"under '{key}'" if key else "at the top level"


def field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


# ------------------------------------------------------------------------------ typed configs

def schema_problems(cfg: object) -> list[str]:
    """Unknown keys and wrongly typed values of a typed config, as "key: problem" lines."""
    problems: list[str] = []
    _check_dataclass(cfg, "", problems)
    return problems


def _check_dataclass(obj: object, key: str, out: list[str]) -> None:
    names = field_names(type(obj))
    for extra in vars(obj):
        if extra not in names:
            out.append(f"{_join(key, extra)}: unknown key; the keys {_where(key)} are {', '.join(names)}")
    hints = typing.get_type_hints(type(obj))
    for name in names:
        _check_value(getattr(obj, name), hints.get(name), _join(key, name), out)


def _describe(hint: object) -> str:
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "a list, e.g. [1, 2]"
    if origin is dict:
        return "a mapping of names to settings"
    if dataclasses.is_dataclass(hint):
        return f"a group of keys ({', '.join(field_names(hint))})"
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _check_value(value: object, hint: object, key: str, out: list[str]) -> None:
    if hint is None or hint is typing.Any:
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        if value is None and len(inner) < len(args):
            return
        if len(inner) == 1:
            _check_value(value, inner[0], key, out)
        return
    expected = _describe(hint)
    if value is None:
        out.append(f"{key}: must be {expected}, not null")
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            _check_dataclass(value, key, out)
        else:
            out.append(f"{key}: is {expected}, not a single value; got {value!r}")
    elif origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            out.append(f"{key}: must be {expected}; got {value!r}")
        elif args:
            for i, item in enumerate(value):
                _check_value(item, args[0], f"{key}[{i}]", out)
    elif origin is dict:
        if not isinstance(value, dict):
            out.append(f"{key}: must be {expected}; got {value!r}")
        elif len(args) == 2:
            for name, item in value.items():
                _check_value(item, args[1], _join(key, name), out)
    elif hint is bool:
        if not isinstance(value, bool):
            out.append(f"{key}: must be true or false; got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            out.append(f"{key}: must be {_CONVERSIONS['Integer']}; got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            out.append(f"{key}: must be a number; got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            out.append(f"{key}: must be text; got {value!r}")


# ---------------------------------------------------------------------- Hydra / OmegaConf errors

def file_errors() -> tuple[type, ...]:
    """What reading a config file that is not a YAML mapping raises out of Hydra unwrapped: a YAML
    syntax error, a file that is not UTF-8 text (UnicodeDecodeError), or OmegaConf's OSError for a
    file holding a single value or a list at the top."""
    import yaml

    return (yaml.YAMLError, UnicodeDecodeError, OSError)


def explain(exc: BaseException, search_dirs: typing.Sequence[Path] = ()) -> str:
    """One message, starting with the key (or the file), for an error raised while composing or
    merging a config (Hydra's messages suggest '+key=value' for a typo and list search paths);
    ``search_dirs``: the config folders, where a malformed interpolation is looked up by line."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import GrammarParseError, OmegaConfBaseException

    if isinstance(exc, file_errors()) and not isinstance(exc, (MissingConfigException, OmegaConfBaseException)):
        return _explain_file(exc)  # MissingConfigException is an OSError too
    text = str(exc)
    if isinstance(exc, MissingConfigException):
        missing = exc.missing_cfg_file or ""
        if "/" in missing:
            group, option = missing.rsplit("/", 1)
            return _missing_option(group, option, exc.options, _search_dirs(text))
    if isinstance(exc, OverrideParseException):
        return f"cannot read the override {exc.override!r}: {_first_paragraph(exc.message)}"
    cause = exc if isinstance(exc, OmegaConfBaseException) else exc.__cause__
    if isinstance(cause, GrammarParseError):
        return _explain_grammar(cause, search_dirs)
    if isinstance(cause, OmegaConfBaseException):
        return _explain_omegaconf(cause, _override_key(text))
    return _first_paragraph(text)


def _explain_grammar(err, search_dirs: typing.Sequence[Path]) -> str:
    """A '${' that is not even a well-formed interpolation (OmegaConf fails to parse it while merging,
    before any check of ours sees the value): the file lines holding one, else the key."""
    where = [f"{f}: line {i}" for d in search_dirs for f in sorted(Path(d).rglob("*.yaml"))
             for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if "${" in line]
    key = str(getattr(err, "full_key", "") or "")
    return (f"{', '.join(where) or key or 'a config value'}: holds '${{', the start of an interpolation that "
            f"cannot be read ({str(err).splitlines()[0]}{f' at {key}' if key and where else ''}); config values "
            "are taken literally and may not hold interpolations: write the value itself")


def _explain_file(exc: BaseException) -> str:
    """'<file>: line L, column C: ...' for a config file that cannot be read as a YAML mapping."""
    import yaml

    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return f"{mark.name}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({what})"
    if isinstance(exc, yaml.reader.ReaderError):
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return f"{exc.name}: not a YAML text file (character {char} at position {exc.position})"
    where = _config_file(exc)
    if where is None:  # not raised while loading a config file (e.g. the run directory cannot be made)
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"{where}: not a UTF-8 text file (byte {exc.object[exc.start:exc.start + 1]!r} at position {exc.start})"
    if "Invalid loaded object type" in str(exc):
        kind = str(exc).rsplit(":", 1)[-1].strip()
        return f"{where}: must hold a mapping of keys (key: value lines), not a single {kind} value"
    if isinstance(exc, yaml.YAMLError):
        return f"{where}: not valid YAML ({exc})"
    return f"{where}: cannot be read ({exc})"


def _config_file(exc: BaseException) -> str | None:
    """The config file Hydra was loading when ``exc`` was raised (its file source's ``full_path``)."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        path = tb.tb_frame.f_locals.get("full_path") if tb.tb_frame.f_code.co_name == "load_config" else None
        found = str(path) if isinstance(path, str) else found
        tb = tb.tb_next
    return found


def _first_paragraph(text: str) -> str:
    """Hydra's message without its config search path listing and debugging hints."""
    keep = []
    for line in text.strip().splitlines():
        if line.startswith(("Config search path", "Set the environment variable HYDRA_FULL_ERROR")):
            break
        keep.append(line.strip())
    return " ".join(part for part in keep if part)


def _override_key(text: str) -> str:
    """The key of the override that Hydra's message names ('' when it names none)."""
    m = re.search(r"Could not override '([^']+)'", text) or re.search(r"Error merging override ([^=\s]+)=", text)
    return m.group(1) if m else ""


def _search_dirs(text: str) -> list[Path]:
    """The file:// directories of the config search path listed in a Hydra message."""
    dirs = []
    for m in re.finditer(r"path=(file://\S+)", text):
        path = Path(unquote(urlparse(m.group(1)).path) or m.group(1)[len("file://"):])
        if path.is_dir() and path not in dirs:
            dirs.append(path)
    return dirs


def group_options(group: str, dirs: typing.Iterable[Path]) -> list[str]:
    """Names of the configs of a group (the YAML files in DIR/group/) over the search path."""
    names = set()
    for d in dirs:
        for f in (Path(d) / group).glob("*.yaml"):
            names.add(f.stem)
    return sorted(names)


def _missing_option(group: str, option: str, options, dirs: list[Path]) -> str:
    if not dirs:
        from .install import conf_dir

        dirs = [conf_dir()]
    available = sorted(set(options or []) | set(group_options(group, dirs)))
    where = ", ".join(str(d / group) for d in dirs)
    listed = ", ".join(available) if available else "none"
    return (f"{group}: there is no {group} named {option!r}; available: {listed} (the YAML files in {where}; "
            f"add your own with hydra.searchpath=[file://DIR] and DIR/{group}/NAME.yaml)")


def _explain_omegaconf(err, override_key: str) -> str:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    msg = str(getattr(err, "msg", None) or str(err)).splitlines()[0].strip()
    full_key = str(getattr(err, "full_key", None) or "")
    key = full_key or override_key
    if override_key and full_key and not full_key.startswith(override_key) and not override_key.startswith(full_key):
        key = f"{override_key}.{full_key}"  # OmegaConf names keys inside a list element relative to it
    schema = getattr(err, "object_type", None)
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and (" not in " in msg or "not in struct" in msg):
        name = getattr(err, "key", None) or key.rsplit(".", 1)[-1]
        parent = key[: -len(str(name)) - 1] if key.endswith(f".{name}") else (override_key if key != override_key else "")
        if schema is not None and dataclasses.is_dataclass(schema):
            allowed = ", ".join(field_names(schema))
            if not parent and schema.__name__ != "StressConfig":  # a key inside a list element, path unknown
                entry = schema.__name__.removesuffix("Config").lower()
                return f"{key}: unknown key {str(name)!r} in a {entry} entry; its keys are {allowed}"
            return f"{key}: unknown key {str(name)!r}; the keys {_where(parent)} are {allowed}"
        existing = _existing_keys(parent)
        listed = f"; the entries of '{parent}' are {', '.join(existing)}" if existing else ""
        return f"{key}: '{parent}' has no entry {str(name)!r}{listed}"
    if isinstance(err, ValidationError):
        m = re.match(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", msg)
        if m:
            return f"{key}: must be {_CONVERSIONS.get(m.group(3), m.group(3))}; got {m.group(1)!r}"
        m = re.match(r"Value '(.*)' is not a valid bool", msg)
        if m:
            return f"{key}: must be true or false; got {m.group(1)!r}"
        if "is not Optional" in msg:
            return f"{key}: must not be null"
        if "is not a ListConfig, list or tuple" in msg:
            return f"{key}: must be a list, e.g. {key.rsplit('.', 1)[-1]}=[a,b]; got a single value"
        m = re.match(r"Invalid type assigned: (\w+) is not a subclass of (\w+)\. value: (.*)", msg)
        if m and schema is not None:
            hints = typing.get_type_hints(schema) if dataclasses.is_dataclass(schema) else {}
            target = hints.get(key.rsplit(".", 1)[-1])
            if dataclasses.is_dataclass(target):
                return (f"{key}: is a group of keys ({', '.join(field_names(target))}), not a single value; "
                        f"set one of them, e.g. {key}.{field_names(target)[0]}=...")
        if m:
            return f"{key}: is a group of keys, not a single value; got {m.group(3)!r}"
    return f"{key}: {msg}" if key else msg


def _existing_keys(parent: str) -> list[str]:
    """Keys of a mapping (e.g. market.chips) in the bundled default config; [] if unknown."""
    if not parent:
        return []
    try:
        from hydra.core.global_hydra import GlobalHydra
        from omegaconf import DictConfig, OmegaConf

        from .compose import compose

        if GlobalHydra.instance().is_initialized():
            return []
        node = OmegaConf.select(compose(), parent)
        return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    except Exception:  # noqa: BLE001 - only a hint for the message
        return []


# ------------------------------------------------------------------------------ interpolations

_INTERPOLATION = re.compile(r"(?<!\\)\$\{")  # ${...} (OmegaConf's \${ is a literal)


def _interpolations(node: object, key: str = "") -> typing.Iterator[tuple[str, str]]:
    """(dotted key, text) of every string of a plain container that holds an interpolation."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _interpolations(value, _join(key, name))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _interpolations(value, f"{key}[{i}]")
    elif isinstance(node, str) and _INTERPOLATION.search(node):
        yield key, node


def _origin(key: str, text: str, overrides: typing.Sequence[str], search_dirs: typing.Sequence[Path]) -> str:
    """Where ``text`` at ``key`` came from: a command-line override, the first config file of the
    search path that holds it (the key's group folder first), or 'the config' when neither does."""
    for override in overrides:
        name, _, value = str(override).partition("=")
        name = name.lstrip("+~")
        if _INTERPOLATION.search(value) and (key == name or key.startswith((f"{name}.", f"{name}["))):
            return f"the command-line override {override!r}"
    group = re.split(r"[.\[]", key, maxsplit=1)[0]
    for d in search_dirs:
        for f in sorted((Path(d) / group).rglob("*.yaml")) + sorted(Path(d).glob("*.yaml")):
            try:
                if text in f.read_text(encoding="utf-8", errors="replace"):
                    return f"the config file {f}"
            except OSError:
                continue
    return "the config"


def interpolation_problems(cfg: object, overrides: typing.Sequence[str] = (),
                           search_dirs: typing.Sequence[Path] = ()) -> list[str]:
    """Every value of a config (a DictConfig or a plain container, not resolved) holding an OmegaConf
    interpolation ``${...}``, as "key: problem" lines naming the file or override it came from.
    Config values are data: a resolver (``oc.env``, ``oc.decode``, Hydra's ``now``) would read outside
    the config, e.g. copy an environment variable into the results, and the configs use none."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    return [f"{key}: {_origin(key, text, overrides, search_dirs)} holds {text!r}, an interpolation; config values "
            "are taken literally (a resolver such as oc.env would copy an environment variable into the results): "
            "write the value itself" for key, text in _interpolations(cfg)]
