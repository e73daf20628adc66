"""cube_build on MIRI MRS dithers: webbflow against jwst's CubeBuildStep, in one run.

    python bench/cube_build.py [--nexp 4,16] [--channel all] [--pipeline cube_build|spec3] [--sides jwst,webbflow]
                               [--workdir DIR] [--json out.json] [--reuse-jwst earlier.json]

The inputs are MIRIFULONG cal files (channels 3 and 4, LONG) made by jwst's AssignWcsStep with the
real CDP references (tests/mrs_cube_scene.py), ``max(nexp)`` dither positions made once in
``--workdir``, and a spec3 association per exposure count.  Each side builds the association's
cubes in a fresh process (jwst's defaults: 3-D drizzle, one cube per band, here ch3-long and
ch4-long), writing the s3d files; /usr/bin/time gives the process's wall time, CPU time (user +
system) and peak RSS.  The machine is shared, so CPU time is the steadier figure.  Prints each
side's figures, the ratios, and how well the two sides' cubes agree, and each side's peak memory
for the smallest and the largest exposure count.  ``--pipeline spec3`` runs calwebb_spec3 instead
(outlier_detection in mode ifu, the crf files, then the cubes; extract_1d skipped).  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from _child import timed  # bench/ is on sys.path when a benchmark runs as a script

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CRDS_RULES = SHARED / "crds-rules"
CONTEXT = "jwst_0541.pmap"

JWST_CHILD = r"""
import sys
from jwst.cube_build import CubeBuildStep
asn, cubepar, out, channel = sys.argv[1:5]
CubeBuildStep.call(asn, channel=channel, override_cubepar=cubepar, output_dir=out, save_results=True)
"""

JWST_SPEC3 = r"""
import sys
from jwst.pipeline import Spec3Pipeline
asn, cubepar, out, channel = sys.argv[1:5]
Spec3Pipeline.call(asn, output_dir=out, save_results=True, steps={
    "cube_build": {"override_cubepar": cubepar, "channel": channel},
    "extract_1d": {"skip": True}, "spectral_leak": {"skip": True}, "photom": {"skip": True}})
"""

WEBBFLOW_SPEC3 = r"""
import sys
from webbflow.flows.cli import main
asn, cubepar, out, channel = sys.argv[1:5]
raise SystemExit(main(["run", "spec3", asn, "--output-dir", out, f"--steps.cube_build.override_cubepar={cubepar}",
                       f"--steps.cube_build.channel={channel}", "--steps.extract_1d.skip=true"]))
"""

WEBBFLOW_CHILD = r"""
import sys
from pathlib import Path
from webbflow.flows.single import run_single_step
import webbflow.tasks.cube_build
asn, cubepar, out, channel = sys.argv[1:5]
run_single_step("cube_build", Path(asn), output_dir=Path(out),
                params={"channel": channel, "override_cubepar": cubepar})
"""


def make_inputs(workdir: Path, n: int) -> tuple[list[Path], Path]:
    sys.path.insert(0, str(REPO / "tests"))
    import mrs_cube_scene as scene

    inp = workdir / "in"
    cals = sorted(inp.glob("*_mirifulong_cal.fits"))
    cubepar = inp / "jwst_miri_cubepar_bench.fits"
    if len(cals) < n:
        import logging

        for name in ("stpipe", "jwst", "CRDS", "crds"):  # jwst's AssignWcsStep, quietly
            logging.getLogger(name).setLevel(logging.WARNING)
        env = {"CRDS_PATH": str(CRDS_RULES), "CRDS_CONTEXT": CONTEXT, "CRDS_MODE": "local"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            cals = scene.make_cal_files(inp, ndither=n)
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    if not cubepar.exists():
        scene.write_cubepar(cubepar)
    return cals[:n], cubepar


def agreement(a: Path, b: Path) -> float:
    import numpy as np
    from astropy.io import fits

    with fits.open(a) as x, fits.open(b) as y:
        u, v = x["SCI"].data.astype(float), y["SCI"].data.astype(float)
        return float((np.isclose(u, v, rtol=1e-4, atol=0) | (np.isnan(u) & np.isnan(v))).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nexp", default="4,16", help="exposure counts, comma-separated")
    ap.add_argument("--channel", default="all", help="cube_build's channel parameter (all: ch3 and ch4 cubes)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "webbflow-bench-cube_build")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pipeline", choices=("cube_build", "spec3"), default="cube_build",
                    help="cube_build alone, or calwebb_spec3 (outlier_detection mode ifu, then cube_build; "
                         "extract_1d skipped)")
    ap.add_argument("--sides", default="jwst,webbflow", help="which pipelines to run (jwst, webbflow or both)")
    ap.add_argument("--reuse-jwst", type=Path, help="a --json file of an earlier run: take jwst's figures (and "
                    "cubes, in --workdir) from it instead of running jwst again")
    args = ap.parse_args(argv)
    earlier = json.loads(args.reuse_jwst.read_text()) if args.reuse_jwst else {}
    counts = [int(c) for c in args.nexp.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "tests"))
    import mrs_cube_scene as scene

    cals, cubepar = make_inputs(args.workdir, max(counts))
    py = sys.executable
    env = dict(os.environ, CRDS_PATH=str(CRDS_RULES), CRDS_CONTEXT=CONTEXT, CRDS_MODE="local",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    results = {}
    print(f"{'exposures':>9} {'side':>9} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
    for n in counts:
        asn = scene.write_spec3_asn(cals[0].parent, cals[:n], product=f"jw01523-o003_t002_miri_n{n}")
        asn = asn.rename(asn.with_name(f"cube_build_bench_{n}_asn.json"))
        row = {}
        children = ((("jwst", JWST_CHILD), ("webbflow", WEBBFLOW_CHILD)) if args.pipeline == "cube_build"
                    else (("jwst", JWST_SPEC3), ("webbflow", WEBBFLOW_SPEC3)))
        for side, child in children:
            if side not in args.sides.split(","):
                continue
            if side == "jwst" and str(n) in earlier:
                row[side] = r = earlier[str(n)]["jwst"]
                print(f"{n:>9} {side:>9} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rss']:>9.0f}   (earlier run)")
                continue
            out = args.workdir / f"{side}_{n}{'' if args.pipeline == 'cube_build' else '_spec3'}"
            out.mkdir(exist_ok=True)
            for f in out.glob("*.fits"):
                f.unlink()
            r = timed([py, "-c", child, asn.name, str(cubepar), str(out), args.channel], cwd=asn.parent, env=env)
            row[side] = r
            print(f"{n:>9} {side:>9} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rss']:>9.0f}", flush=True)
        results[n] = row
        if len(row) < 2:
            continue
        tag = "" if args.pipeline == "cube_build" else "_spec3"
        names = sorted(p.name for p in (args.workdir / f"jwst_{n}{tag}").glob("*_s3d.fits"))
        row["agreement"] = {nm: agreement(args.workdir / f"webbflow_{n}{tag}" / nm, args.workdir / f"jwst_{n}{tag}" / nm)
                            for nm in names}
        w, j = row["webbflow"], row["jwst"]
        print(f"{n:>9} {'ratio':>9} {w['wall'] / j['wall']:>8.2f} {w['cpu'] / j['cpu']:>8.2f} {w['rss'] / j['rss']:>9.2f}"
              f"   SCI within rtol 1e-4: " + ", ".join(f"{k}: {100 * v:.3f}%" for k, v in row["agreement"].items()))
        results[n] = row
    if len(counts) > 1:
        lo, hi = min(counts), max(counts)
        for side in [s for s in ("jwst", "webbflow") if s in results[lo] and s in results[hi]]:
            print(f"peak memory {side}: {results[lo][side]['rss']:.0f} MiB for {lo} exposures, "
                  f"{results[hi][side]['rss']:.0f} MiB for {hi}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
