"""NIRSpec BOTS spec2 on many integrations: webbflow against jwst on the same rateints (issue #19).

    .venv/bin/python bench/nirspec_bots.py [--nints 100] [--ngroups 3] [--work DIR] [--side jwst|webbflow]

Simulates one bright-object time series (``webbflow simulate --instrument nirspec --exp-type
NRS_BRIGHTOBJ``: S1600A1 on SUB2048, PRISM, a transit), runs jwst's calwebb_detector1 once to make
the rateints, then ``strun calwebb_spec2`` and ``webbflow run calwebb_spec2`` on the tso-spec2
association, each in its own copy of the folder with the same rateints and the simulation's
references (CRDS_PATH is the simulation's folder).  Prints each one's wall time, CPU time and peak
RSS, the ratios webbflow/jwst, and how far the x1dints are apart: for every table column of every
EXTRACT1D extension, the share of values within rtol 1e-4 and the largest relative difference.
One run each: a benchmark, not a test.

With ``--work DIR`` the simulation and its rateints are kept and used again by the next run on
that folder, and each side's figures are kept (DIR/<side>.json): ``--side webbflow`` then runs
webbflow's command alone against jwst's last figures (jwst's side costs ~15 s of CPU at 100
integrations, minutes of wall time on a loaded machine).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import simulated_spec2_pair  # noqa: E402


def compare_x1dints(a: Path, b: Path) -> None:
    """Print, per EXTRACT1D extension and float column, how far ``a`` (webbflow) is from ``b`` (jwst)."""
    import numpy as np
    from astropy.io import fits

    with fits.open(a) as fa, fits.open(b) as fb:
        names_a = [(h.name, h.ver) for h in fa]
        names_b = [(h.name, h.ver) for h in fb]
        print(f"extensions: {len(names_a)} webbflow, {len(names_b)} jwst, same list: {names_a == names_b}")
        for hb in fb:
            if hb.name != "EXTRACT1D":
                continue
            ha = fa[hb.name, hb.ver]
            worst = []
            for col in hb.columns.names:
                x, y = np.asarray(ha.data[col]), np.asarray(hb.data[col])
                if y.dtype.kind != "f":
                    if not np.array_equal(x, y):
                        worst.append(f"{col} differs")
                    continue
                both_nan = np.isnan(x) & np.isnan(y)
                close = np.isclose(x, y, rtol=1e-4, atol=0) | both_nan
                m = np.isfinite(x) & np.isfinite(y) & (y != 0)
                rel = float(np.max(np.abs(x[m] - y[m]) / np.abs(y[m]))) if m.any() else 0.0
                if not close.all() or col == "FLUX":
                    worst.append(f"{col}: {close.mean():.4%} within 1e-4, max rel {rel:.1e}")
            print(f"EXTRACT1D {hb.ver} ({len(hb.data)} rows): " + ("; ".join(worst) or "all columns alike"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nints", type=int, default=100)
    ap.add_argument("--ngroups", type=int, default=3)
    ap.add_argument("--work", default=None, help="folder to keep (default: a temporary one)")
    ap.add_argument("--side", choices=("jwst", "webbflow"), default=None,
                    help="run this side alone (the other's figures and products from its last run in --work)")
    a = ap.parse_args(argv)
    if a.side and not a.work:
        ap.error("--side needs --work (the other side's last run is kept there)")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench_bots_"))
    sides = (a.side,) if a.side else ("jwst", "webbflow")
    x1d = simulated_spec2_pair(work, "nirspec", "NRS_BRIGHTOBJ", a.nints, a.ngroups, sides)
    print(f"({a.nints} integrations of {a.ngroups} groups, NRS_BRIGHTOBJ S1600A1 SUB2048)")
    if (work / "webbflow" / x1d).exists() and (work / "jwst" / x1d).exists():
        compare_x1dints(work / "webbflow" / x1d, work / "jwst" / x1d)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
