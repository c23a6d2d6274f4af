"""The config reference: every key of the schema with its type, default and comment, as
printed by ``python -m stress.config`` and kept in docs/configuration.md."""

from __future__ import annotations

import dataclasses
import math

from .schema import StressConfig

# ------------------------------------------------------------------ generated key reference

def _field_comments(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field of a dataclass, read from its source."""
    import ast
    import inspect
    import io
    import tokenize

    src = inspect.getsource(cls)
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(src).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, node.end_lineno + 1)
            out[node.target.id] = " ".join(comments[i] for i in lines if i in comments)
    return out


def _yaml_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str) and v == "":
        return '""'
    return str(v)


def config_keys(cls: type = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config key as (dotted name, type, schema default, comment), walking the dataclass
    schemas from ``StressConfig``; ``<name>`` stands for a key of a dict, ``[]`` for a list item."""
    import typing

    cls = cls or StressConfig
    hints = typing.get_type_hints(cls)
    docs = _field_comments(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if f.default is not dataclasses.MISSING:
            default = _yaml_value(f.default)
        elif f.default_factory is not dataclasses.MISSING and not dataclasses.is_dataclass(hint):
            default = _yaml_value(f.default_factory())
        else:
            default = ""
        item = {dict: args[-1] if args else None, list: args[0] if args else None}.get(origin)
        child = hint if dataclasses.is_dataclass(hint) else item if dataclasses.is_dataclass(item) else None
        doc = docs.get(f.name, "")
        if not doc and child is not None:
            doc = (inspect_doc(child) or "").strip()
        rows.append((key, f.metadata.get("type", str(f.type)), default, doc))  # metadata: a type OmegaConf lacks
        if child is not None:
            sub = key + (".<name>." if origin is dict else "[]." if origin is list else ".")
            rows += config_keys(child, sub)
    return rows


def inspect_doc(cls: type) -> str:
    """The first paragraph of a class's own docstring, on one line ('' when it has none)."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def config_reference() -> str:
    """Markdown table of every config key (docs/configuration.md, ``python -m stress.config``)."""
    import re

    cell = lambda s: s.replace("|", "\\|")  # noqa: E731
    text = lambda s: re.sub(r"<([\w.]+)>", r"&lt;\1&gt;", cell(s))  # outside code, <name> would be an HTML tag  # noqa: E731
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, doc in config_keys():
        lines.append(f"| `{key}` | `{cell(typ)}` | {f'`{cell(default)}`' if default else ''} | {text(doc)} |")
    return "\n".join(lines) + "\n"
