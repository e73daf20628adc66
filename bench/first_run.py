"""A first run on a fresh install against the next one, and the command line's start-up.

    python bench/first_run.py [--nexp 2] [--size 256] [--ngroups 5] [--rounds 2]
                              [--workdir DIR] [--no-startup] [--json out.json]

1. **Inputs.**  ``webbflow simulate`` writes ``--nexp`` dithered NIRCam exposures with
   their associations, references and CRDS cache into ``--workdir``, once.
2. **First run against the next**, ``--rounds`` times: ``webbflow run image3 ASN``
   (uncal to Stage 3 through detector1 and image2) with ``NUMBA_CACHE_DIR`` set to
   a new empty folder, as on a new machine where nothing is compiled yet; then
   the same command into a new output folder with that cache, now filled.  Each
   command is a fresh process; its CPU time (user + system of its whole process
   tree), wall time and peak RSS come from ``/usr/bin/time``.  The table gives
   the medians and what the first run adds to the second: CPU seconds are the
   figure to compare, since wall time on a shared machine moves with its load.
3. **Start-up** (``--no-startup`` skips it): ``webbflow --help``, ``webbflow run
   --help``, ``webbflow simulate --help`` and ``webbflow run dq_init --help``,
   five times each; median CPU and wall time.

The commands run as a user's would: ``PYTHONDONTWRITEBYTECODE`` is dropped (pip
compiles an installed package's bytecode) and no ``PREFECT_API_URL`` is set.
Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _child import timed  # bench/ is on sys.path when a benchmark runs as a script
from observation import simulate

BIN = Path(sys.executable).parent
# the last two load a pipeline (its module, its steps' modules, the models): without Prefect since flows/_prefect.py
STARTUP = (["--help"], ["run", "--help"], ["simulate", "--help"], ["run", "dq_init", "--help"], ["run", "image3", "--help"],
           ["run", "spec2", "--help"])


def run_pair(obs: Path, work: Path, env: dict) -> dict:
    """The image3 run with an empty numba cache, then again with the cache it filled."""
    asn = next(iter(sorted(obs.glob("*_image3_*asn.json"))))
    cache = Path(tempfile.mkdtemp(prefix="numba-fresh-", dir=work))
    env = dict(env, NUMBA_CACHE_DIR=str(cache))
    out = {}
    try:
        for which in ("first", "second"):
            dest = work / f"out-{which}"
            shutil.rmtree(dest, ignore_errors=True)
            out[which] = timed([str(BIN / "webbflow"), "run", "image3", str(asn), "--output-dir", str(dest)], obs, env)
            shutil.rmtree(dest, ignore_errors=True)
        out["cached_files"] = sum(1 for _ in cache.rglob("*.nbc"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


def startup(env: dict, cwd: Path, repeat: int = 5) -> dict:
    res = {}
    for args in STARTUP:
        runs = [timed([str(BIN / "webbflow"), *args], cwd, env) for _ in range(repeat)]
        res[" ".join(args)] = {m: statistics.median(r[m] for r in runs) for m in ("cpu", "wall", "rss")}
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nexp", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--ngroups", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="first/second pairs (medians shown)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-first-run")
    ap.add_argument("--no-startup", action="store_true", help="skip the command start-up timings")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    obs = simulate(args.workdir, args.nexp, args.size, args.ngroups)
    env = dict(os.environ, CRDS_PATH=str(obs), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("NUMBA_CACHE_DIR", None)
    load_before = os.getloadavg()
    pairs = [run_pair(obs, args.workdir, env) for _ in range(args.rounds)]
    load_after = os.getloadavg()

    med = {w: {m: statistics.median(p[w][m] for p in pairs) for m in ("cpu", "wall", "rss")} for w in ("first", "second")}
    extra = {m: statistics.median(p["first"][m] - p["second"][m] for p in pairs) for m in ("cpu", "wall")}
    print(f"\nwebbflow run image3 on {args.nexp} NIRCam exposures of {args.size}x{args.size}, {args.ngroups} groups, "
          f"uncal to Stage 3 ({args.rounds} pair(s), medians); load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {pairs[-1]['cached_files']} compiled functions cached\n")
    print(f"{'run':<34}{'CPU s':>8}{'wall s':>9}{'peak MiB':>10}")
    for w, label in (("first", "first run (empty numba cache)"), ("second", "second run (cache filled)")):
        print(f"{label:<34}{med[w]['cpu']:8.1f}{med[w]['wall']:9.1f}{med[w]['rss']:10.0f}")
    print(f"{'first run adds':<34}{extra['cpu']:+8.1f}{extra['wall']:+9.1f}"
          f"   ({med['first']['cpu'] / med['second']['cpu']:.2f}x the second run's CPU)")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "pairs": pairs, "medians": med, "first_adds": extra,
              "load": {"before": load_before, "after": load_after}}
    if not args.no_startup:
        st = startup(env, args.workdir)
        print(f"\n{'command (median of 5)':<34}{'CPU s':>8}{'wall s':>9}{'peak MiB':>10}")
        for k, v in st.items():
            print(f"{'webbflow ' + k:<34}{v['cpu']:8.2f}{v['wall']:9.2f}{v['rss']:10.0f}")
        result["startup"] = st
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
