"""Resumable runs: every finished chunk of paths is stored under ``output.dir/chunks/``.

One ``.npz`` per chunk (``chunk-START-STOP.npz``, written to a temporary name and renamed, so a
file is either whole or absent) and ``manifest.json`` (also replaced atomically after each chunk)
holding what the chunks depend on: a hash of the resolved config that affects results (all of it
except ``output.*``, ``executor.*``, ``quiet``, ``backend`` and ``mc.max_paths``), that config itself (to name the
keys that changed), a hash of the loan tape file, the package version, the chunk size and whether
per-path detail is kept, and the SHA-256 of every chunk file.

``output.resume=true`` reuses the chunks listed there, after checking that they were computed for
the same problem; anything else stops the run with a message that says how to go on. After a
successful run the directory is removed (the dataset holds everything it held).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import OmegaConf

from ..config.schema import StressConfig
from ..errors import ConfigError, OutputError
from . import lock
from .chunk import ChunkResult

log = logging.getLogger("stress")

DIRNAME = "chunks"
MANIFEST = "manifest.json"
FORMAT = 1
NOT_HASHED = ("output", "executor", "quiet", "backend")  # keys that do not change a single number


def result_config(cfg: StressConfig) -> dict:
    """The resolved config without the keys that cannot change results (in config order: the
    order of scenarios and chips is the layout of the arrays, so it is part of the identity)."""
    d = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    for key in NOT_HASHED:
        d.pop(key, None)
    d["mc"].pop("max_paths", None)  # a guard, not a model input
    return d


def config_hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, separators=(",", ":")).encode()).hexdigest()[:16]


def _flat(d, prefix=""):
    if isinstance(d, dict):
        out = {f"{prefix[:-1] or '(top level)'} (order of keys)": json.dumps(list(d))}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(d)}


def changed_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose value differs between two result configs (lists compared whole; a
    mapping whose keys were added, removed or reordered is named with "(order of keys)")."""
    a, b = _flat(old), _flat(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=lock.partial_prefix(), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stored_chunk_paths(out_dir) -> int | None:
    """Paths per chunk of the unfinished run whose chunks are in ``out_dir``, or None when it holds
    no finished chunk (:meth:`ChunkStore.open` then starts afresh) or its manifest cannot be read
    (``open`` then says why)."""
    directory = Path(out_dir) / DIRNAME
    if not any(directory.glob("chunk-*.npz")):
        return None
    try:
        paths = int(json.loads((directory / MANIFEST).read_text())["chunk_paths"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return paths if paths > 0 else None


def chunk_name(start: int, stop: int) -> str:
    return f"chunk-{start:010d}-{stop:010d}.npz"


class ChunkStore:
    """The chunk files of one run and their manifest."""

    def __init__(self, directory: Path, identity: dict, chunks: Optional[dict] = None):
        self.dir = directory
        self.identity = identity
        self.chunks: dict[str, str] = dict(chunks or {})  # file name -> SHA-256

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: StressConfig, chunk_paths: int, tape_file: Path, version: str) -> "ChunkStore":
        """The store of ``output.dir``: reused with ``output.resume=true`` after checking that it
        belongs to the same problem, created afresh otherwise (refusing to discard one silently)."""
        directory = Path(cfg.output.dir) / DIRNAME
        conf = result_config(cfg)
        identity = {
            "format": FORMAT,
            "config_hash": config_hash(conf),
            "tape_sha256": _sha256(Path(tape_file).read_bytes()),
            "package_version": version,
            "chunk_paths": int(chunk_paths),
            "keep_paths": bool(cfg.output.paths),
            "config": conf,
        }
        if directory.exists() and not any(directory.glob("chunk-*.npz")):
            shutil.rmtree(directory)  # an earlier run that stopped before its first chunk: nothing to keep
        if directory.exists():
            if cfg.output.resume:
                return cls._reuse(directory, identity)
            if not cfg.output.overwrite:
                raise OutputError(
                    f"{directory} holds the chunks of an earlier run into this output.dir that did not finish. "
                    f"To continue it, rerun with output.resume=true (and the same config); to start over, delete "
                    f"{directory} or set output.overwrite=true; or choose another output.dir.")
            log.info("output.overwrite=true: discarding the chunks of an earlier run in %s", directory)
            shutil.rmtree(directory)
        elif cfg.output.resume:
            log.info("output.resume=true but %s does not exist: starting from the first chunk", directory)
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"cannot create the chunk directory {directory}: {exc.strerror}") from None
        store = cls(directory, identity)
        store._write_manifest()
        return store

    @classmethod
    def _reuse(cls, directory: Path, identity: dict) -> "ChunkStore":
        path = directory / MANIFEST
        try:
            old = json.loads(path.read_text())
            chunks = dict(old["chunks"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"cannot resume: {path} is missing or unreadable ({exc}). Delete {directory} to "
                              "start over, or choose another output.dir.") from None
        how = (f"To run the new config, choose a new output.dir, or delete {directory} (its chunks will be "
               "recomputed); to resume the old run, rerun with its config.")
        if old.get("format") != FORMAT or old.get("package_version") != identity["package_version"]:
            raise ConfigError(f"cannot resume: the chunks in {directory} were written by gpu-credit-stress "
                              f"{old.get('package_version')} (chunk format {old.get('format')}), this is "
                              f"{identity['package_version']}. {how}")
        if old.get("config_hash") != identity["config_hash"]:
            keys = changed_keys(old.get("config", {}), identity["config"])
            raise ConfigError(
                f"cannot resume: the chunks in {directory} were computed with config hash {old.get('config_hash')}, "
                f"this run's config hash is {identity['config_hash']} (changed: {', '.join(keys[:12]) or '?'}"
                f"{', ...' if len(keys) > 12 else ''}). {how}")
        for key, what in (("tape_sha256", "the loan tape file's content (SHA-256)"),
                          ("chunk_paths", "the chunk size (paths per chunk)"),
                          ("keep_paths", "output.paths (per-path detail)")):
            if old.get(key) != identity[key]:
                raise ConfigError(f"cannot resume: {what} differs from the run that wrote {directory} "
                                  f"({old.get(key)} there, {identity[key]} now). {how}")
        store = cls(directory, identity, chunks)
        missing = [name for name in chunks if not (directory / name).is_file()]
        for name in missing:
            del store.chunks[name]
        log.info("output.resume=true: reusing %d finished chunks from %s%s", len(store.chunks), directory,
                 f" ({len(missing)} listed but missing: recomputed)" if missing else "")
        return store

    # -- chunks ----------------------------------------------------------------------------------
    def has(self, start: int, stop: int) -> bool:
        return chunk_name(start, stop) in self.chunks

    def load(self, start: int, stop: int) -> ChunkResult:
        """A stored chunk, after checking its SHA-256 against the manifest."""
        name = chunk_name(start, stop)
        path = self.dir / name
        bad = (f"Delete {path} and rerun with output.resume=true to recompute that chunk, or delete {self.dir} "
               "to start over.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise OutputError(f"cannot read the stored chunk {path}: {exc.strerror}. {bad}") from None
        if _sha256(data) != self.chunks[name]:
            raise OutputError(f"the stored chunk {path} is corrupted: its SHA-256 does not match {MANIFEST}. {bad}")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise OutputError(f"the stored chunk {path} cannot be read ({exc}). {bad}") from None
        expected = {f.name for f in dataclasses.fields(ChunkResult)} | {"stop"}
        if not {"start", "stop"} <= set(arrays) <= expected:
            raise OutputError(f"the stored chunk {path} holds unexpected arrays {sorted(set(arrays) - expected)} or lacks start/stop. {bad}")
        if int(arrays.pop("stop")) != stop or int(arrays["start"]) != start:
            raise OutputError(f"the stored chunk {path} does not hold paths [{start}, {stop}). {bad}")
        arrays["start"] = int(arrays["start"])
        try:
            return ChunkResult(**arrays)
        except TypeError as exc:  # a required array is missing
            raise OutputError(f"the stored chunk {path} is incomplete ({exc}). {bad}") from None

    def save(self, res: ChunkResult, stop: int) -> None:
        """Store one finished chunk (file first, then the manifest that lists it)."""
        arrays = {f.name: np.asarray(getattr(res, f.name)) for f in dataclasses.fields(ChunkResult)
                  if getattr(res, f.name) is not None}
        arrays["stop"] = np.asarray(stop)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        name = chunk_name(res.start, stop)
        try:
            _atomic_write(self.dir / name, data)
            self.chunks[name] = _sha256(data)
            self._write_manifest()
        except OSError as exc:
            raise OutputError(f"cannot store the chunk {self.dir / name}: {exc.strerror or exc}") from None

    def _write_manifest(self) -> None:
        _atomic_write(self.dir / MANIFEST, json.dumps({**self.identity, "chunks": self.chunks}, indent=1).encode())

    def remove(self) -> None:
        """Delete the chunks once the dataset is safely written."""
        shutil.rmtree(self.dir, ignore_errors=True)
