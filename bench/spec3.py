"""calwebb_spec3 on many MOS sources, webbflow against jwst 3.0 in one run.

    python bench/spec3.py [--sources 100] [--rounds 1] [--workdir DIR] [--json out.json]

The input is made from the two real NIRSpec MSA PRISM slits in ../shared/data (one source seen
in two nods): each of two cal exposures (MultiSlitModel) gets ``--sources`` copies of its slit,
each copy a source of its own (source_id, source_name, slitlet_id), so that spec3 makes
``--sources`` sets of products (crf, s2d, x1d).  Both pipelines run in a fresh process on the
same level-3 association, from its folder, with the real 2019 CRDS rules
(``CRDS_PATH=../shared/data/crds-rules``, context jwst_0541, local mode) and extract_1d's
extract1d/apcorr/psf references N/A with ``apply_apcorr=false``.  jwst's pipeline is called as
the parity test calls it (its reference prefetch asks those rules for a reftype they do not know,
so it is off; each step still selects its own references); webbflow is ``webbflow run spec3``.

Wall time, peak RSS and CPU time of each command come from ``/usr/bin/time``; the table gives
the ratios webbflow/jwst and checks that both wrote the same product names.  The commands run as a
user's would: ``PYTHONDONTWRITEBYTECODE`` is dropped (pip compiles an installed package's bytecode; without
this, webbflow's editable source was compiled again by every run).  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _child import COMPILE, timed  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLITS = sorted((SHARED / "real" / "nirspec_msa_prism_slits").glob("*.fits"))
ASN = "jw01345-o062_20230101t000000_spec3_00001_asn.json"
PRODUCT = "jw01345-o062_{source_id}_nirspec_clear-prism"
NA = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}

JWST_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
from jwst.pipeline import Spec3Pipeline
p = Spec3Pipeline(steps={"extract_1d": %r})
p.prefetch_references = False
p.save_results = True
p.output_dir = sys.argv[2]
p.run(sys.argv[1])
""" % (NA,)


def make_inputs(folder: Path, nsources: int) -> Path:
    """Two cal exposures of ``nsources`` slits each, and their spec3 association."""
    from webbflow import models

    folder.mkdir(parents=True, exist_ok=True)
    members = []
    for p in SLITS:
        slit = models.open(p)
        exposure = models.MultiSlitModel(slit)
        exposure.slits = []
        for k in range(nsources):
            s = slit.copy()
            s.source_id = 933 + k
            s.source_name = f"1345_{933 + k}"
            s.slitlet_id = 1000 + k
            s.name = str(1000 + k)
            exposure.slits.append(s)
        name = p.name.split("_phot")[0] + "_cal.fits"
        exposure.save(folder / name)
        members.append(name)
    asn = folder / ASN
    asn.write_text(json.dumps({
        "asn_id": "o062", "asn_pool": "jw01345_20230101t000000_pool.csv", "asn_type": "spec3",
        "asn_rule": "candidate_Asn_Lv3MOS", "program": "01345", "target": "1",
        "products": [{"name": PRODUCT, "members": [{"expname": m, "exptype": "science"} for m in members]}]}))
    return asn


def products(folder: Path, inputs: set[str]) -> set[str]:
    return {p.name for p in folder.glob("*.fits")} - inputs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-spec3")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--side", choices=("both", "jwst", "webbflow"), default="both",
                    help="run one side only (its figures printed; on a loaded machine, compare CPU times)")
    args = ap.parse_args(argv)
    if len(SLITS) != 2:
        raise SystemExit(f"the two real NIRSpec slits are needed in {SLITS[0].parent if SLITS else SHARED}")

    env = dict(os.environ, CRDS_PATH=str(SHARED / "crds-rules"), CRDS_CONTEXT="jwst_0541.pmap", CRDS_MODE="local")
    env.pop("PREFECT_API_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's install runs: bytecode cached (pip compiles jwst's)
    subprocess.run([PY, "-c", COMPILE], env=env, check=True)  # webbflow's bytecode too, before any timing
    steps = [f"--steps.extract_1d.{k}={v}" for k, v in NA.items()]
    runs: dict[str, list[dict]] = {"jwst": [], "webbflow": []}
    names = {}
    for r in range(args.rounds):
        for side in ("jwst", "webbflow") if args.side == "both" else (args.side,):
            folder = args.workdir / f"{side}-{r}"
            shutil.rmtree(folder, ignore_errors=True)
            asn = make_inputs(folder, args.sources)
            inputs = {p.name for p in folder.glob("*.fits")}
            if side == "jwst":
                cmd = [PY, "-c", JWST_CHILD, asn.name, str(folder)]
            else:
                cmd = [str(BIN / "webbflow"), "run", "spec3", asn.name, "--output-dir", str(folder), *steps]
            runs[side].append(timed(cmd, folder, env))
            names[side] = products(folder, inputs)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")} for k, v in runs.items() if v}
    print(f"\ncalwebb_spec3, {args.sources} MOS sources x 2 nods ({args.rounds} round(s), medians)\n")
    print(f"{'':<10}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   products")
    for k, v in med.items():
        print(f"{k:<10}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {len(names[k])}")
    if args.side == "both":
        j, w = med["jwst"], med["webbflow"]
        print(f"\nratio webbflow/jwst: {w['wall'] / j['wall']:.2f}x wall, {w['cpu'] / j['cpu']:.2f}x CPU, "
              f"{w['rss'] / j['rss']:.2f}x peak memory; same product names: {names['jwst'] == names['webbflow']}")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                         "medians": med}, indent=2))


if __name__ == "__main__":
    main()
