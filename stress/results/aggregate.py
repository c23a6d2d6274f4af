"""``stress-aggregate MULTIRUN_DIR [--out FILE]``: one Dataset from the jobs of a Hydra multirun.

Every job directory below MULTIRUN_DIR (one with ``.hydra/overrides.yaml``) must hold its
``results.nc`` (or ``results.zarr``). The overrides whose values differ between jobs are the swept
parameters; each becomes a new dimension named by its key (``mc.seed``,
``market.chips.H100.price``, ``scenario``...), with the job's value as coordinate (lists such as
``tenors=[36,60]`` as their text). Jobs must agree on everything that was not swept (the resolved
config apart from ``output.*``, ``executor.*`` and ``quiet``, and the backend, precision, package
version and kernel sources that produced them); otherwise the command stops and names the keys.
A grid with missing points is filled with NaN. Exit code 2 on a user error.

    stress-aggregate multirun/2026-11-25/10-00-00 --out sweep.nc
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from omegaconf import OmegaConf

from ..errors import StressError
from . import dataset

NOT_COMPARED = ("output", "executor", "quiet")  # config keys that cannot change results
RUN_ATTRS = ("backend", "precision", "package_version", "kernel_hash", "portfolio")


class AggregateError(StressError):
    """The multirun directory cannot be aggregated as asked."""


def _natural(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_jobs(root: Path) -> list[Path]:
    """Job directories of a multirun, in job order (0, 1, ..., 10, not 0, 1, 10)."""
    if not root.is_dir():
        raise AggregateError(f"{root} is not a directory")
    jobs = {p.parent.parent for p in root.rglob("overrides.yaml") if p.parent.name == ".hydra"}
    if not jobs:
        raise AggregateError(f"{root} holds no Hydra job (no */.hydra/overrides.yaml); give the directory of a "
                             "`stress-test --multirun` sweep (hydra.sweep.dir)")
    return sorted(jobs, key=lambda p: _natural(p.relative_to(root)))


def job_overrides(job: Path) -> dict[str, tuple[str, object]]:
    """{key: (text, value)} of the job's command-line overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
    out = {}
    for o in OverridesParser.create().parse_overrides([str(x) for x in lines or []]):
        key = o.key_or_group + (f"@{o.package}" if o.package else "")
        out[key] = (o.get_value_element_as_str(), o.value())
    return out


def _results_file(job: Path) -> Path:
    for name in ("results.nc", "results.zarr"):
        if (job / name).exists():
            return job / name
    raise AggregateError(f"job {job} has no results.nc or results.zarr: did it fail? (see the .log file there)")


def _flat(d, prefix=""):
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(d, default=str)}


def _covered(key: str, swept: list[str]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in (k.split("@")[0] for k in swept))


def _coordinate(values: list) -> np.ndarray:
    """Numbers stay numbers (int when all are ints); anything else becomes its text."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=int if all(isinstance(v, int) for v in values) else float)
    return np.array([str(v) for v in values], dtype=object)


def aggregate(root: Path) -> xr.Dataset:
    """The combined Dataset of the multirun in ``root`` (see the module docstring)."""
    jobs = find_jobs(root)
    if len(jobs) < 2:
        raise AggregateError(f"{root} holds a single job ({jobs[0]}); there is nothing to aggregate")
    overrides = [job_overrides(j) for j in jobs]
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    partial = [k for k in keys if any(k not in o for o in overrides)]
    if partial:
        k = partial[0]
        raise AggregateError(f"override {k!r} is given in some jobs and not in others "
                             f"(missing in {', '.join(str(j) for j, o in zip(jobs, overrides) if k not in o)}); "
                             "aggregate one sweep at a time")
    swept = [k for k in keys if len({o[k][0] for o in overrides}) > 1]
    if not swept:
        raise AggregateError(f"the {len(jobs)} jobs in {root} have identical overrides; nothing was swept")
    seen: dict[tuple, Path] = {}
    for j, o in zip(jobs, overrides):
        point = tuple(o[k][0] for k in swept)
        if point in seen:
            raise AggregateError(f"jobs {seen[point]} and {j} have the same swept values "
                                 f"({', '.join(f'{k}={v}' for k, v in zip(swept, point))})")
        seen[point] = j

    datasets = []
    for j in jobs:
        f = _results_file(j)
        try:
            with (xr.open_zarr(f) if f.suffix == ".zarr" else xr.open_dataset(f)) as ds:
                datasets.append(ds.load())
        except (OSError, ValueError) as exc:
            raise AggregateError(f"cannot read {f}: {exc}") from None

    # everything that was not swept must be the same in every job
    flat = []
    for ds in datasets:
        conf = OmegaConf.to_container(OmegaConf.create(ds.attrs.get("config", "{}")))
        for key in NOT_COMPARED:
            conf.pop(key, None)
        flat.append({**_flat(conf), **{f"[{a}]": str(ds.attrs.get(a)) for a in RUN_ATTRS}})
    differ = []
    for key in dict.fromkeys(k for f in flat for k in f):
        if len({f.get(key) for f in flat}) > 1 and not _covered(key.strip("[]"), swept):
            differ.append(key)
    if differ:
        shown = []
        for key in differ[:8]:
            values = ", ".join(f"{j.name}: {f.get(key, 'absent')}" for j, f in list(zip(jobs, flat))[:4])
            shown.append(f"{key} ({values}{', ...' if len(jobs) > 4 else ''})")
        raise AggregateError(
            f"the jobs in {root} differ in something that was not swept (swept: {', '.join(swept)}); "
            f"refusing to combine them:\n  " + "\n  ".join(shown)
            + ("\n  ..." if len(differ) > 8 else "")
            + "\nKeys in [brackets] are run attributes. Aggregate jobs of one sweep, run with the same code and config.")

    combined = xr.concat(datasets, dim="job", data_vars="different", coords="different", compat="equals",
                         join="outer", combine_attrs="drop_conflicts")
    coords = {k: ("job", _coordinate([o[k][1] for o in overrides]),
                  {"long_name": f"swept config key {k} (Hydra override)"}) for k in swept}
    combined = combined.assign_coords(coords)
    if len(swept) == 1:
        combined = combined.swap_dims({"job": swept[0]})
    else:
        combined = combined.set_index(job=swept).unstack("job")
    combined = combined.transpose(*swept, ...)
    for k in swept:
        combined[k].attrs["long_name"] = f"swept config key {k} (Hydra override)"
    combined.attrs.update({
        "title": "GPU-collateral credit stress test: aggregated sweep",
        "aggregated_from": str(root),
        "swept": json.dumps(swept),
        "jobs": json.dumps({str(j.relative_to(root)): [f"{k}={v[0]}" for k, v in o.items()]
                            for j, o in zip(jobs, overrides)}),
        "config_first_job": datasets[0].attrs.get("config", ""),
    })
    return combined


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="stress-aggregate", description=__doc__.split("\n")[0].split(": ", 1)[1])
    ap.add_argument("multirun_dir", type=Path, help="the sweep directory of `stress-test --multirun`")
    ap.add_argument("--out", type=Path, default=None,
                    help="NetCDF file (or .zarr) to write; default MULTIRUN_DIR/aggregate.nc")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    try:
        ds = aggregate(args.multirun_dir)
        out = args.out or args.multirun_dir / "aggregate.nc"
        if out.exists() and not args.overwrite:
            raise AggregateError(f"{out} already exists; give another --out or pass --overwrite")
        path = dataset.write_atomic(ds, out, "zarr" if out.suffix == ".zarr" else "netcdf", args.overwrite)
    except StressError as exc:
        print(f"stress-aggregate: error: {exc}", file=sys.stderr)
        sys.exit(2)
    swept = json.loads(ds.attrs["swept"])
    print(f"{len(json.loads(ds.attrs['jobs']))} jobs, swept {', '.join(f'{k} ({ds.sizes[k]})' for k in swept)} "
          f"-> {path}")


if __name__ == "__main__":
    main()
