"""NIRISS SOSS spec2 with ATOCA (extract_1d's default): webbflow against jwst on the same rateints.

    .venv/bin/python bench/soss.py [--nints 10] [--ngroups 2] [--work DIR]

Simulates one SOSS time series (``webbflow simulate --exp-type NIS_SOSS``), runs jwst's
calwebb_detector1 once to make the rateints, then ``strun calwebb_spec2`` and ``webbflow run
calwebb_spec2`` on the tso-spec2 association, each in its own copy of the folder with the same
rateints, each with its defaults (ATOCA on).  Prints each one's wall time, CPU time and peak
RSS, the ratios webbflow/jwst, and how far the x1dints spectra are apart (largest relative FLUX
difference per order).  One run each: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import simulated_spec2_pair  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nints", type=int, default=10)
    ap.add_argument("--ngroups", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder to keep (default: a temporary one)")
    a = ap.parse_args(argv)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench_soss_"))
    x1d = simulated_spec2_pair(work, "niriss", "NIS_SOSS", a.nints, a.ngroups)
    print(f"({a.nints} integrations, SUBSTRIP256)")
    import numpy as np
    from astropy.io import fits

    with fits.open(work / "webbflow" / x1d) as fw, fits.open(work / "jwst" / x1d) as fj:
        print("TIKFACTR webbflow %.6e jwst %.6e" % (fw[0].header["TIKFACTR"], fj[0].header["TIKFACTR"]))
        for hw, hj in zip(fw, fj):
            if hj.name != "EXTRACT1D":
                continue
            x, y = np.asarray(hw.data["FLUX"]), np.asarray(hj.data["FLUX"])
            m = np.isfinite(y) & (y != 0)
            print(f"order {hj.ver}: FLUX max |rel diff| {np.max(np.abs(x[m] - y[m]) / np.abs(y[m])):.2e}, "
                  f"within rtol 1e-4: {np.mean(np.isclose(x, y, rtol=1e-4) | (np.isnan(x) & np.isnan(y))):.4%}")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
