"""``stress-report RESULTS [--out DIR] [--overwrite] [--no-figures] [--xlsx]``: re-render the figures and
the HTML report of a saved results dataset (results.nc, a results.zarr directory, or a run directory
holding one), and with ``--xlsx`` the committee workbook (stress.report.workbook).

User errors (a missing file, a file that is not a results dataset, an existing report without
``--overwrite``, an unwritable directory) print one message on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

PROG = "stress-report"
REQUIRED_VARIABLES = ("loss", "loss_rate", "expected_loss", "expected_loss_se", "var", "var_se", "es", "es_se",
                      "pd", "lgd", "el", "default_rate", "default_share", "price_fan", "ltv_fan", "dscr_fan")
REQUIRED_COORDS = ("scenario", "tenor", "loan", "month", "quantile", "fan_quantile", "chip", "cause")


class UserError(Exception):
    """A problem with the command line or the input; reported without a traceback."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Write the figures (PNG) and a self-contained HTML report "
                                                       "of a saved stress-test results dataset.")
    p.add_argument("results", metavar="RESULTS",
                   help="results.nc, a results.zarr directory, or a run directory containing one of them")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output directory (default: the directory of the results dataset)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report.html and figures")
    p.add_argument("--no-figures", action="store_true",
                   help="write report.html with the tables only, without drawing the figures (much faster)")
    p.add_argument("--xlsx", action="store_true",
                   help="also write committee_pack.xlsx: summary, per-loan PD/LGD/EL, scenarios and run metadata")
    return p


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and (path.suffix == ".zarr" or any((path / f).exists()
                                                            for f in (".zgroup", ".zmetadata", "zarr.json")))


def resolve_results(arg: str) -> Path:
    path = Path(arg).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.is_dir() and not _is_zarr(path):
        for name in ("results.nc", "results.zarr"):
            if (path / name).exists():
                return path / name
        raise UserError(f"{path} is a directory without results.nc or results.zarr")
    return path


def open_results(path: Path):
    """The dataset at ``path``, loaded into memory, after checking it is a stress results dataset."""
    import xarray as xr

    from ..results.dataset import unsafe_zarr_codecs

    if _is_zarr(path) and unsafe_zarr_codecs(path):  # unpickling would run code from the file
        raise UserError(f"{path} declares a pickle codec in {unsafe_zarr_codecs(path)[0]}; a stress-test "
                        "results store never does, and reading it could run code: refusing to open it")
    try:
        if _is_zarr(path):
            ds = xr.open_zarr(path)
        else:
            ds = xr.open_dataset(path)
        with ds:
            ds = ds.load()
    except ImportError as exc:
        raise UserError(f"cannot read {path}: a package is missing ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not a dataset we can read"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {path} as a NetCDF or Zarr dataset: {reason}") from None
    missing = [v for v in REQUIRED_VARIABLES if v not in ds.data_vars]
    missing += [f"coordinate {c}" for c in REQUIRED_COORDS if c not in ds.coords]
    if missing:
        raise UserError(f"{path} is not a stress-test results dataset: missing variables {', '.join(missing)}")
    return ds


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0, or 2 for a user error)."""
    args = _parser().parse_args(argv)
    try:
        results = resolve_results(args.results)
        out_dir = Path(args.out).expanduser() if args.out else results.parent
        from . import html

        targets = html.output_paths(out_dir, figures=not args.no_figures)
        if args.xlsx:
            from .workbook import WORKBOOK_NAME

            try:  # before anything is written: no report without the workbook asked for
                import openpyxl  # noqa: F401
            except ImportError:
                raise UserError("--xlsx needs openpyxl (a dependency of gpu-credit-stress: pip install openpyxl)") \
                    from None
            targets.append(out_dir / WORKBOOK_NAME)
        existing = [p for p in targets if p.exists()]
        if existing and not args.overwrite:
            names = ", ".join(p.name for p in existing)
            raise UserError(f"{out_dir} already holds {names}; pass --overwrite to replace them "
                            "or --out to write elsewhere")
        ds = open_results(results)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            written = html.write_all(ds, out_dir, figures=not args.no_figures)
            if args.xlsx:
                from .workbook import write_workbook

                written.append(write_workbook(ds, targets[-1]))
        except OSError as exc:
            raise UserError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
