"""coron3 and ami3 on the same calints, webbflow against jwst 3.0 in one run (issue #21).

    python bench/coron_ami.py [--modes coron,ami] [--coron-nexp 4] [--coron-nints 10]
                              [--ami-nints 50] [--rounds 1] [--workdir DIR] [--json out.json]
                              [--before OLD] [--profile]

Two simulated observations, made once into ``--workdir`` by ``webbflow simulate``, each with its
references and local CRDS cache (``CRDS_PATH``):

- **coron** (``NRC_CORON``, SUB320A335R, 320x320): one science exposure with a companion and
  ``--coron-nexp`` PSF-reference exposures, ``--coron-nints`` integrations each;
- **ami** (``NIS_AMI``, SUB80, F480M): a target with a companion and a calibrator star,
  ``--ami-nints`` integrations each.

Their calints are made once by ``webbflow run coron3|ami3 ASN`` from the uncal files (kept in
``--workdir``).  Then, each round, each side in a fresh process, from its own copy of the calints
and the level-3 association, as users run them:

- **jwst**: ``strun calwebb_coron3 ASN`` / ``strun calwebb_ami3 ASN`` from the association's folder;
- **webbflow**: ``webbflow run coron3 ASN`` / ``webbflow run ami3 ASN`` (no Prefect API);
- with ``--before OLD``, webbflow again with ``OLD`` first on ``PYTHONPATH`` (``OLD/webbflow`` an
  older checkout, e.g. ``git archive <commit> webbflow | tar -x -C OLD``), and its products
  compared bit for bit with this tree's (``same_products.py``).

Wall time, peak RSS and CPU time come from ``/usr/bin/time``.  The products of both sides are
compared whole (tests/test_products_whole.py's ``compare_fits``: same names, HDUs, keywords, arrays
within rtol 1e-4 for 99.9 % of elements).  ``--profile`` also runs webbflow under cProfile and
prints its top functions by cumulative time.  Not a pass/fail test; on a shared machine compare
ratios and CPU seconds, not wall seconds.
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
import time
from pathlib import Path

from _child import timed  # bench/ is on sys.path when a benchmark runs as a script

PY = sys.executable
BIN = Path(PY).parent
REPO = Path(__file__).resolve().parents[1]

MODES = {
    # name: (instrument, EXP_TYPE, level-3 pipeline, jwst's strun alias)
    "coron": ("nircam", "NRC_CORON", "coron3", "calwebb_coron3"),
    "ami": ("niriss", "NIS_AMI", "ami3", "calwebb_ami3"),
}


def simulate(workdir: Path, mode: str, extra: list[str]) -> Path:
    """The simulated observation's folder (made once)."""
    instrument, exp_type, _, _ = MODES[mode]
    d = workdir / mode / "obs"
    if (d / ".bench-done").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([str(BIN / "webbflow"), "simulate", "--instrument", instrument, "--exp-type", exp_type,
                    "--output-dir", str(d), "--seed", "7", *extra], check=True, capture_output=True)
    (d / ".bench-done").write_text("")
    print(f"simulated {exp_type} in {time.perf_counter() - t:.0f} s")
    return d


def level3_asn(folder: Path, kind: str) -> Path:
    found = sorted(folder.glob(f"*_{kind}_*asn.json"))
    if not found:
        raise SystemExit(f"{folder}: no {kind} association")
    return found[0]


def calints(obs: Path, mode: str, env: dict) -> Path:
    """The calints of the level-3 association's members and the association (made once, by webbflow)."""
    kind = MODES[mode][2]
    d = obs.parent / "calints"
    if (d / ".bench-done").exists():
        return d
    prep = obs.parent / "prep"
    shutil.rmtree(prep, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)
    t = time.perf_counter()
    asn = level3_asn(obs, kind)
    subprocess.run([str(BIN / "webbflow"), "run", kind, str(asn), "--output-dir", str(prep)], cwd=obs, env=env,
                   check=True, capture_output=True)
    d.mkdir(parents=True)
    members = [m["expname"] for p in json.loads(asn.read_text())["products"] for m in p["members"]]
    for name in members:
        shutil.copy(prep / name, d / name)
    shutil.copy(asn, d / asn.name)
    (d / ".bench-done").write_text("")
    print(f"made the {len(members)} calints of {asn.name} in {time.perf_counter() - t:.0f} s")
    return d


def fresh_copy(src: Path, dst: Path) -> set[str]:
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and not p.name.startswith("."):
            shutil.copy(p, dst / p.name)
    return {p.name for p in dst.iterdir()}


PROFILE = r"""
import cProfile, pstats, sys
from webbflow.flows import cli
prof = cProfile.Profile()
prof.enable()
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
prof.disable()
pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
"""


def compare_with_jwst(ours: Path, theirs: Path, names: set[str]) -> list[str]:
    sys.path.insert(0, str(REPO / "tests"))
    from test_products_whole import compare_fits

    problems = []
    for n in sorted(names):
        if n.endswith(".fits"):
            compare_fits(n, ours / n, theirs / n, problems)
    return problems


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="coron,ami")
    ap.add_argument("--coron-nexp", type=int, default=4, help="PSF-reference exposures")
    ap.add_argument("--coron-nints", type=int, default=10)
    ap.add_argument("--ami-nints", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-coron-ami")
    ap.add_argument("--before", type=Path, help="a folder holding an older checkout as OLD/webbflow")
    ap.add_argument("--profile", action="store_true", help="also profile webbflow's run (cProfile)")
    ap.add_argument("--no-jwst", action="store_true", help="webbflow only (profiling, before/after)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    extra = {"coron": ["--nexp", str(args.coron_nexp), "--nints", str(args.coron_nints), "--ngroups", "3"],
             "ami": ["--nints", str(args.ami_nints), "--ngroups", "5"]}
    results, checks = {}, {}
    load_before = os.getloadavg()
    for mode in args.modes.split(","):
        _, _, kind, alias = MODES[mode]
        obs = simulate(args.workdir, mode, extra[mode])
        env = dict(os.environ, CRDS_PATH=str(obs), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.pop("PREFECT_API_URL", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        inputs = calints(obs, mode, env)
        asn = level3_asn(inputs, kind).name
        sides = {"webbflow": [str(BIN / "webbflow"), "run", kind, asn]}
        if not args.no_jwst:
            sides = {"jwst": [str(BIN / "strun"), alias, asn], **sides}
        if args.before:
            sides["webbflow before"] = sides["webbflow"]
        rows: dict[str, list[dict]] = {k: [] for k in sides}
        folders = {}
        for r in range(args.rounds):
            for side, cmd in sides.items():
                folder = args.workdir / mode / f"{side.replace(' ', '-')}-{r}"
                given = fresh_copy(inputs, folder)
                side_env = dict(env)
                if side == "webbflow before":
                    side_env["PYTHONPATH"] = os.pathsep.join([str(args.before), env.get("PYTHONPATH", "")])
                if side.startswith("webbflow"):
                    cmd = [*cmd, "--output-dir", str(folder)]
                rows[side].append(timed(cmd, folder, side_env))
                folders[side] = (folder, {p.name for p in folder.iterdir()} - given)
        results[mode] = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")}
                         for k, v in rows.items()}
        ours, ours_names = folders["webbflow"]
        if "jwst" in folders:
            theirs, their_names = folders["jwst"]
            problems = compare_with_jwst(ours, theirs, their_names & ours_names)
            if their_names != ours_names:
                problems.insert(0, f"product names differ: jwst only {sorted(their_names - ours_names)}, "
                                   f"webbflow only {sorted(ours_names - their_names)}")
            checks[mode] = {"products": sorted(their_names), "problems": problems}
        if "webbflow before" in folders:
            proc = subprocess.run([PY, str(REPO / "bench" / "same_products.py"), str(folders["webbflow before"][0]),
                                   str(ours)], capture_output=True, text=True)
            checks.setdefault(mode, {})["same as before"] = proc.returncode == 0
            checks[mode]["before diff"] = proc.stdout[-3000:]
        if args.profile:
            folder = args.workdir / mode / "profile"
            fresh_copy(inputs, folder)
            proc = subprocess.run([PY, "-c", PROFILE, "run", kind, asn, "--output-dir", str(folder)], cwd=folder,
                                  env=env, capture_output=True, text=True)
            print(f"\n{mode}: webbflow's profile\n" + proc.stdout[-12000:])
    load_after = os.getloadavg()

    print(f"\ncoron3 and ami3 on the same calints ({args.rounds} round(s), medians); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"{'mode':<8}{'run':<17}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   ratio to jwst")
    for mode, med in results.items():
        j = med.get("jwst")
        for k, v in med.items():
            ratio = ""
            if j and k != "jwst":
                ratio = (f"{v['wall'] / j['wall']:.2f}x wall, {v['cpu'] / j['cpu']:.2f}x CPU, "
                         f"{v['rss'] / j['rss']:.2f}x memory")
            print(f"{mode:<8}{k:<17}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {ratio}")
    for mode, c in checks.items():
        if "problems" in c:
            verdict = "the same" if not c["problems"] else f"{len(c['problems'])} difference(s)"
            print(f"\n{mode}: {len(c['products'])} products, webbflow's against jwst's: {verdict}")
            for p in c["problems"][:20]:
                print("  " + p)
        if "same as before" in c:
            print(f"{mode}: webbflow's products against the older checkout's: "
                  f"{'bit for bit the same' if c['same as before'] else 'DIFFERENT'}")
            if not c["same as before"]:
                print(c["before diff"])
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "medians": results,
                                         "checks": checks, "load": {"before": load_before, "after": load_after}},
                                        indent=2))


if __name__ == "__main__":
    main()
