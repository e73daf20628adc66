"""NIRSpec IFU (NRS_IFU) spec2, webbflow against jwst 3.0 in one run.

    python bench/nirspec_ifu.py [--rounds 1] [--workdir DIR] [--json out.json] [--no-cube]

One simulated observation (``webbflow simulate --instrument nirspec --exp-type NRS_IFU --nexp 2``: PRISM/CLEAR,
full-frame NRS1, 3 groups) with its references and local CRDS cache, made once into ``--workdir``;
jwst's ``calwebb_detector1`` makes the first exposure's rate once.  Then, alternately and each command a
fresh process from the association's folder, ``strun calwebb_spec2 ASN`` and ``webbflow run calwebb_spec2
ASN``: assign_wcs, msa_flagging, imprint, srctype, flat_field, pathloss, photom to the cal, then
cube_build (s3d) and extract_1d (x1d); with ``--no-cube`` both skip cube_build (jwst then skips
extract_1d too) and stop at the cal.  Wall time, peak RSS and CPU time come from ``/usr/bin/time``; the table gives webbflow/jwst ratios.
On a shared machine compare ratios (CPU ones first), not seconds.  Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _child import ratio_table, timed  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent
NO_CUBE = ["--steps.cube_build.skip=true"]


def prepare(workdir: Path) -> tuple[Path, Path, dict]:
    """(the observation's folder, the first exposure's spec2 association beside its rate, the CRDS env)."""
    obs = workdir / "nrs_ifu"
    if not (obs / ".bench-done").exists():
        if obs.exists():
            shutil.rmtree(obs)
        subprocess.run([str(BIN / "webbflow"), "simulate", "--instrument", "nirspec", "--exp-type", "NRS_IFU",
                        "--nexp", "2", "--seed", "3", "--output-dir", str(obs)], check=True, capture_output=True)
        (obs / ".bench-done").write_text("")
    ctx = sorted((obs / "mappings" / "jwst").glob("jwst_*.pmap"))[-1].name
    env = dict(os.environ, CRDS_PATH=str(obs), CRDS_CONTEXT=ctx, CRDS_MODE="local",
               CRDS_SERVER_URL="https://localhost:1")
    uncal = sorted(obs.glob("*_uncal.fits"))[0]
    rate = uncal.name.replace("_uncal", "_rate")
    asn = next(p for p in sorted(obs.glob("*_spec2_*asn.json"))
               if any(m["expname"] == rate for q in json.loads(p.read_text())["products"] for m in q["members"]))
    made = workdir / "rate"
    if not (made / rate).exists():
        made.mkdir(parents=True, exist_ok=True)
        shutil.copy(uncal, made / uncal.name)
        timed([str(BIN / "strun"), "calwebb_detector1", uncal.name], made, env)
    return made, asn, env


def fresh(made: Path, asn: Path, where: Path) -> Path:
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    rate = next(made.glob("*_rate.fits"))
    shutil.copy(rate, where / rate.name)
    shutil.copy(asn, where / asn.name)
    return where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-cube", action="store_true", help="skip cube_build (spec2 to the cal only)")
    args = ap.parse_args()
    extra = NO_CUBE if args.no_cube else []
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_nrs_ifu_"))
    made, asn, env = prepare(workdir)
    runs = {"jwst": [], "webbflow": []}
    for _ in range(args.rounds):
        d = fresh(made, asn, workdir / "jwst")
        runs["jwst"].append(timed([str(BIN / "strun"), "calwebb_spec2", asn.name, *extra], d, env))
        d = fresh(made, asn, workdir / "webbflow")
        runs["webbflow"].append(timed([str(BIN / "webbflow"), "run", "calwebb_spec2", asn.name, "--output-dir", ".",
                                       *extra], d, env))
    print(f"load average {os.getloadavg()[0]:.1f}")
    what = "spec2 to the cal" if args.no_cube else "spec2 to the s3d and x1d"
    med = ratio_table(f"{what} (NRS_IFU, full-frame NRS1)", runs)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": med}, indent=1))


if __name__ == "__main__":
    main()
