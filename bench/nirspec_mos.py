"""NIRSpec MOS (NRS_MSASPEC) spec2 on an exposure of many slitlets, webbflow against jwst 3.0 in one run.

    python bench/nirspec_mos.py [--slits 100] [--rounds 1] [--workdir DIR] [--json out.json] [--side jwst|webbflow]

One simulated observation (``webbflow simulate --instrument nirspec --exp-type NRS_MSASPEC --slits N``:
PRISM/CLEAR, full-frame NRS1, 3 groups, N three-shutter slitlets with a point source each plus the fixed
slits S200A1 and S400A1, nodded over three exposures) with its references and local CRDS cache, made once
into ``--workdir``; webbflow's detector1 makes the three rates once (the same inputs for both).  Then,
alternately and each command a fresh process from the association's folder, ``strun calwebb_spec2 ASN``
and ``webbflow run calwebb_spec2 ASN`` on the first nod's association (the other two nods its
backgrounds): assign_wcs, msa_flagging, bkg_subtract, extract_2d, srctype, master_background_mos, the MOS
and fixed-slit chains to photom, resample_spec, extract_1d.  Wall time, peak RSS and CPU time come from
``/usr/bin/time``; the table gives webbflow/jwst ratios, and the products (cal, s2d, x1d) are compared whole
(tests/test_products_whole.py's comparison).  The commands run as a user's would, with
``PYTHONDONTWRITEBYTECODE`` dropped.  On a shared machine compare ratios (CPU ones first), not
seconds.  Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from _child import COMPILE, ratio_table, timed  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent


def prepare(workdir: Path, slits: int) -> tuple[Path, Path, dict]:
    """(the folder of the three rates and the MSA file, the first nod's spec2 association, the CRDS env)."""
    obs = workdir / f"nrs_mos{slits}"
    if not (obs / ".bench-done").exists():
        if obs.exists():
            shutil.rmtree(obs)
        subprocess.run([str(BIN / "webbflow"), "simulate", "--instrument", "nirspec", "--exp-type", "NRS_MSASPEC",
                        "--slits", str(slits), "--seed", "3", "--output-dir", str(obs)], check=True,
                       capture_output=True)
        (obs / ".bench-done").write_text("")
    ctx = sorted((obs / "mappings" / "jwst").glob("jwst_*.pmap"))[-1].name
    env = dict(os.environ, CRDS_PATH=str(obs), CRDS_CONTEXT=ctx, CRDS_MODE="local",
               CRDS_SERVER_URL="https://localhost:1", WEBBFLOW_PREFECT="off")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's install runs: bytecode cached (pip compiles jwst's)
    subprocess.run([PY, "-c", COMPILE], env=env, check=True)  # webbflow's bytecode too, before any timing
    asn = sorted(obs.glob("*_spec2_*asn.json"))[0]
    made = workdir / f"rates{slits}"
    if not (made / ".done").exists():
        made.mkdir(parents=True, exist_ok=True)
        for f in [*obs.glob("*_uncal.fits"), *obs.glob("*_msa.fits")]:
            shutil.copy(f, made / f.name)
        for u in sorted(made.glob("*_uncal.fits")):
            timed([str(BIN / "webbflow"), "run", "calwebb_detector1", u.name, "--output-dir", "."], made, env)
        (made / ".done").write_text("")
    return made, asn, env


def fresh(made: Path, asn: Path, where: Path) -> Path:
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    for f in [*made.glob("*_rate.fits"), *made.glob("*_msa.fits")]:
        shutil.copy(f, where / f.name)
    shutil.copy(asn, where / asn.name)
    return where


def compare(ours: Path, theirs: Path, root: str) -> dict[str, int]:
    """Differences per product (cal, s2d, x1d), by the parity tests' whole-product comparison."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_products_whole import compare_fits

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sfx in ("cal", "s2d", "x1d"):
            problems: list[str] = []
            compare_fits(sfx, ours / f"{root}_{sfx}.fits", theirs / f"{root}_{sfx}.fits", problems)
            out[sfx] = len(problems)
            for p in problems[:5]:
                print("  ", p[:300])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slits", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--side", choices=("both", "jwst", "webbflow"), default="both",
                    help="run one side only (its figures kept in WORKDIR/<side>.json; the table and the products' "
                         "comparison come once both sides have run)")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_nrs_mos_"))
    made, asn, env = prepare(workdir, args.slits)
    root = json.loads(asn.read_text())["products"][0]["name"]
    cmds = {"jwst": [str(BIN / "strun"), "calwebb_spec2", asn.name],
            "webbflow": [str(BIN / "webbflow"), "run", "calwebb_spec2", asn.name, "--output-dir", "."]}
    sides = ("jwst", "webbflow") if args.side == "both" else (args.side,)
    runs = {}
    for side in sides:
        runs[side] = []
        for _ in range(args.rounds):
            d = fresh(made, asn, workdir / side)
            runs[side].append(timed(cmds[side], d, env))
            print(f"{side}: {runs[side][-1]} (load average {os.getloadavg()[0]:.1f})", flush=True)
        (workdir / f"{side}.json").write_text(json.dumps(runs[side]))
    for side in ("jwst", "webbflow"):
        if side not in runs and (workdir / f"{side}.json").exists():
            runs[side] = json.loads((workdir / f"{side}.json").read_text())
    if set(runs) != {"jwst", "webbflow"}:
        return
    diffs = compare(workdir / "webbflow", workdir / "jwst", root)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.slits} slitlets + 2 fixed slits; products' differences {diffs}")
    med = ratio_table(f"spec2 (NRS_MSASPEC, {args.slits} slitlets, full-frame NRS1)", runs)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": med, "differences": diffs}, indent=1))


if __name__ == "__main__":
    main()
