"""Composing a run's config: Hydra composition from Python, the typed and validated schema,
and the refusal of every ``${...}`` interpolation (nothing in a config is resolved)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from ..errors import ConfigError
from .install import conf_dir, config_dirs
from .messages import explain, file_errors, interpolation_problems
from .schema import StressConfig
from .validate import validate


def register_schemas() -> None:
    """Register the schema so that ``conf/config.yaml`` can list it first in its defaults."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="stress_schema", node=StressConfig)


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """Compose the bundled config (or the config folder ``config_dir``, e.g. one made by
    ``stress-test init``) with Hydra overrides, as the CLI would, e.g.
    ``compose(["scenario=[baseline]", "mc.paths=1000"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schemas()
    root = conf_dir() if config_dir is None else Path(config_dir).expanduser().resolve()
    dirs = config_dirs(None if config_dir is None else str(root))
    try:
        with initialize_config_dir(config_dir=str(root), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, *file_errors()) as exc:
        raise ConfigError(f"invalid config: {explain(exc, dirs)}") from None
    refuse_interpolations(cfg, overrides, dirs)
    if config_dir is not None:
        with open_dict(cfg):
            cfg.config_dir = str(root)
    return cfg


def refuse_interpolations(cfg: DictConfig | dict, overrides: Sequence[str] = (), search_dirs: Sequence[Path] = ()) -> None:
    """ConfigError naming the file (or override) and key of every ``${...}`` in the config (none is resolved)."""
    problems = interpolation_problems(cfg, overrides, search_dirs)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def to_schema(cfg: DictConfig | StressConfig) -> StressConfig:
    """Typed, validated copy of a composed config."""
    refuse_interpolations(dataclasses.asdict(cfg) if isinstance(cfg, StressConfig) else cfg)
    if isinstance(cfg, StressConfig):
        typed = cfg
    else:
        from omegaconf.errors import OmegaConfBaseException

        try:
            merged = OmegaConf.merge(OmegaConf.structured(StressConfig), cfg)
            typed = OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"invalid config: {explain(exc)}") from None
    validate(typed)
    return typed
