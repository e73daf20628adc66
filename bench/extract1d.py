"""extract_1d on a TSO cube of many integrations: webbflow against jwst, in one run.

    python bench/extract1d.py [--nints 200] [--rounds 1] [--workdir DIR]

The cube is the real MIRI LRS slitless TSO cube (../shared/data/real, 10 integrations of
416x72) repeated to ``--nints`` integrations, with fresh noise and an INT_TIMES row for each.
Each side runs in a fresh process (open, extract every integration, save the x1dints), with
override_extract1d/apcorr/psf N/A and apply_apcorr=false, against the real 2019 CRDS rules.
Prints each side's wall time and peak RSS (VmHWM) and their ratios, and checks that the two
products' FLUX columns agree.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _child import HWM  # bench/ is on sys.path when a benchmark runs as a script

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NA = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}

CHILD = HWM + r"""
import json, sys, time
t0 = time.perf_counter()
kind, src, dst, na = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if kind == "webbflow":
    from webbflow import models
    from webbflow.tasks.base import run_step
    import webbflow.tasks.extract_1d
    t1 = time.perf_counter()
    out = run_step("extract_1d", models.open(src), na).model
    out.save(dst)
else:
    from jwst.extract_1d import Extract1dStep
    t1 = time.perf_counter()
    out = Extract1dStep.call(src, **na)
    out.save(dst)
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t0, "step_seconds": t2 - t1, "peak_rss_mib": _hwm()}))
"""


def make_cube(path: Path, nints: int) -> None:
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng(7)
    with fits.open(SHARED / "real" / "miri_lrs_slitless_tso_crfints.fits") as hdul:
        n0 = hdul["SCI"].data.shape[0]
        reps = -(-nints // n0)
        for name in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
            d = np.concatenate([hdul[name].data] * reps)[:nints]
            if name == "SCI":
                d = d + rng.normal(0, 0.01, d.shape).astype(d.dtype)
            hdul[name].data = d
        it = hdul["INT_TIMES"].data
        step = it["int_mid_MJD_UTC"][1] - it["int_mid_MJD_UTC"][0]
        cols = []
        for c in hdul["INT_TIMES"].columns:
            v = np.asarray(it[c.name])
            full = (np.arange(1, nints + 1, dtype=v.dtype) if c.name == "integration_number"
                    else v[0] + step * np.arange(nints) if "MJD" in c.name else np.zeros(nints, dtype=v.dtype))
            cols.append(fits.Column(name=c.name, format=c.format, array=full))
        hdul["INT_TIMES"] = fits.BinTableHDU.from_columns(cols, header=hdul["INT_TIMES"].header, name="INT_TIMES")
        hdul[0].header["NINTS"] = nints
        hdul.writeto(path, overwrite=True)


def run(kind: str, src: Path, dst: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(src), str(dst), json.dumps(NA)],
                         capture_output=True, text=True, env=env, cwd=dst.parent)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nints", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-extract1d-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "crds"
    if not cache.exists():
        cache.mkdir()
        for sub in ("config", "mappings"):
            os.symlink(SHARED / "crds-rules" / sub, cache / sub)
    src = work / f"jw00623026001_03106_00005_mirimage_{args.nints}_calints.fits"
    if not src.exists():
        make_cube(src, args.nints)
    env = dict(os.environ, CRDS_PATH=str(cache), CRDS_MODE="local", CRDS_CONTEXT="jwst_0541.pmap")
    print(f"extract_1d on {args.nints} integrations of 416x72 ({src.stat().st_size / 2**20:.0f} MiB)")
    best = {}
    for r in range(args.rounds):
        for kind in ("jwst", "webbflow"):
            res = run(kind, src, work / f"{kind}_x1dints.fits", env)
            print(f"  round {r + 1} {kind:8s}: {res['wall']:6.2f} s wall, {res['step_seconds']:6.2f} s in the step, "
                  f"{res['peak_rss_mib']:7.0f} MiB peak")
            if kind not in best or res["wall"] < best[kind]["wall"]:
                best[kind] = res
    j, w = best["jwst"], best["webbflow"]
    print(f"ratio webbflow/jwst: wall {w['wall'] / j['wall']:.2f}x, step {w['step_seconds'] / j['step_seconds']:.2f}x, "
          f"peak memory {w['peak_rss_mib'] / j['peak_rss_mib']:.2f}x")
    import numpy as np

    from webbflow import models

    a = models.open(work / "webbflow_x1dints.fits").spec[0].spec_table
    b = models.open(work / "jwst_x1dints.fits").spec[0].spec_table
    close = np.isclose(a["FLUX"], b["FLUX"], rtol=1e-4, equal_nan=True).mean()
    print(f"same products: FLUX within 1e-4 for {100 * close:.3f}% of {a['FLUX'].size} elements")


if __name__ == "__main__":
    main()
