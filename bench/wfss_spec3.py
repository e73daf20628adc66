"""calwebb_spec3 on many NIRCam WFSS sources, webbflow against jwst 3.0 in one run.

    python bench/wfss_spec3.py [--sources 20,200] [--rounds 1] [--skip-jwst] [--cals jwst|webbflow]
                               [--before OLD] [--workdir DIR] [--json out.json]
    python bench/wfss_spec3.py --spec2 [--sources 20,100] [--timeout S] [--skip-jwst]
    python bench/wfss_spec3.py --observation [--sources 100,300] [--skip-jwst | --reuse-jwst]

The input is tests/wfss_scene.py's observation with ``--sources`` catalogue sources: two dispersed
NRC_WFSS exposures (F444W/GRISMR, full frame), calibrated to cal files by jwst's own Stage 2 steps
(assign_wcs, extract_2d, srctype, photom), each holding one cutout per source and order.  Both
pipelines then run in a fresh process on the same spec3 association, from its folder, with the real
2019 CRDS rules (context jwst_0541, local mode) and extract_1d's apcorr/psf references N/A with
``apply_apcorr=false``: jwst's Spec3Pipeline as the parity test calls it, webbflow as
``webbflow run spec3``.  Both write ``<product>_x1d.fits`` and ``<product>_c1d.fits``.

Wall time, peak RSS and CPU time of each command come from ``/usr/bin/time``; the table gives, for
each source count, the ratios webbflow/jwst and checks that both wrote the same product names;
with several counts, how webbflow's peak memory grew between the smallest and the largest, against
the size of one cal exposure and of the products.  The load average (start, end) is printed with
the figures: on the shared machine the wall times depend on it.  Not a test.

``--cals webbflow`` makes the same observation's cal files with webbflow's own Stage 2 steps
(assign_wcs, extract_2d, srctype, photom; about a minute for 20 sources where jwst's take an hour
for 200), for memory and scaling runs with hundreds of sources.  ``--before OLD`` runs webbflow a
second time with an older checkout (``OLD/webbflow``, e.g. ``git archive main | tar -x -C
OLD/webbflow``) first on ``PYTHONPATH``, and compares the two runs' products bit for bit
(bench/same_products.py): how a change that must not alter the products is checked.

``--spec2`` times Stage 2 instead, on the scene's first exposure: jwst's and webbflow's assign_wcs,
extract_2d, srctype and photom and the save of the cal file, each side in a fresh process
(tests/wfss_scene.py's ``jwst_cal`` and ``webbflow_cal``), with their wall time, CPU time and
peak memory; ``--timeout`` stops a side that takes too long (jwst's save of hundreds of cutouts'
WCSs takes hours on the loaded machine).

``--observation`` times the observation's whole spectral part, each side from the same rates and
the same source catalogue: Stage 2 (assign_wcs, extract_2d, srctype, photom, save) on each of the
two dispersed exposures, one fresh process per exposure, then spec3 on the association of the two
cal files (jwst's Spec3Pipeline; ``webbflow run spec3``).  The figures are the sums of the
processes' wall and CPU times and the largest of their peaks; the products are compared: each cal
file's cutouts (source IDs, orders, corners, the same order of extensions; SCI, ERR and DQ within
rtol 1e-4) and the x1d and c1d tables (every column within rtol 1e-4, headers).  jwst's side is
written to ``jwst.json`` in the work folder; ``--reuse-jwst`` takes it from there instead of
running jwst again (its 300-source run takes hours on the loaded machine), with its products.
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

PY = sys.executable
BIN = Path(PY).parent
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NA = {"override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}

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
    """The jwst-calibrated cal files of ``nsources`` sources and their spec3 association (kept between runs)."""
    sys.path.insert(0, str(REPO / "tests"))
    from wfss_scene import ASN, jwst_wfss_cals, many_sources

    asn = folder / "inputs" / ASN
    if asn.exists():
        return asn
    cache = folder / "crds"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(SHARED / "crds-rules", cache)
    return jwst_wfss_cals(folder / "inputs", folder / "refs", cache, sources=many_sources(nsources))["asn"]


def _scene(refs_dir: Path, nsources: int):
    """The scene's ``nsources`` sources, its two rates and its references, written into ``refs_dir``."""
    from wfss_scene import many_sources, scene_rates, scene_refs

    refs_dir.mkdir(parents=True, exist_ok=True)
    sources = many_sources(nsources)
    rates, first = scene_rates(refs_dir, sources)
    return sources, rates, scene_refs(first, refs_dir)


def webbflow_wfss_cals(folder: Path, refs_dir: Path, nsources: int) -> dict:
    """The same observation as ``make_inputs``'s, its cal files made by webbflow's own Stage 2 steps
    (assign_wcs, extract_2d, srctype, photom: minutes, not hours, for hundreds of sources); returns
    ``{"asn": path, "spec2_s": seconds}``.  The rates and references stay in ``refs_dir`` (``--spec2``
    times both sides' Stage 2 steps on the first rate)."""
    import time

    sys.path.insert(0, str(REPO / "tests"))
    from wfss_scene import ASN, webbflow_cal, write_spec3_asn

    asn_path = folder / ASN
    if asn_path.exists():
        return {"asn": asn_path, "spec2_s": None}
    folder.mkdir(parents=True, exist_ok=True)
    sources, rates, refs = _scene(refs_dir, nsources)
    t0 = time.perf_counter()
    cals = [webbflow_cal(rate, refs, folder, sources if number == 1 else None) for number, rate in rates]
    spec2_s = time.perf_counter() - t0
    return {"asn": write_spec3_asn(folder, cals), "spec2_s": spec2_s}


SPEC2_CHILD = """
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
import test_grism, wfss_scene  # noqa: F401 - imported first: the tests' conftest points CRDS_PATH elsewhere
from parity import jwst_offline
cal = wfss_scene.jwst_cal if sys.argv[2] == "jwst" else wfss_scene.webbflow_cal
with jwst_offline(sys.argv[6], "jwst_0541.pmap"):
    cal(Path(sys.argv[3]), wfss_scene.saved_refs(Path(sys.argv[4])), Path(sys.argv[5]))
"""


def run_spec2(n: int, args) -> dict:
    """Stage 2's steps of the scene (assign_wcs, extract_2d, srctype, photom, then the cal file's
    save) on its first exposure of ``n`` sources, jwst's and webbflow's, each in a fresh process
    (``--timeout``: a side that takes longer is stopped and reported as such)."""
    work = args.workdir / f"n{n}-wf"
    webbflow_wfss_cals(work / "inputs", work / "refs", n)
    if not (work / "crds").exists():
        shutil.copytree(SHARED / "crds-rules", work / "crds")
    env = dict(os.environ, CRDS_PATH=str(work / "crds"), CRDS_CONTEXT="jwst_0541.pmap", CRDS_MODE="local")
    rate = sorted((work / "refs").glob("*_rate.fits"))[0]
    out: dict = {"n": n, "runs": {}, "names": {}}
    for side in ("webbflow",) if args.skip_jwst else ("jwst", "webbflow"):
        folder = work / f"spec2-{side}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for p in (work / "inputs").glob("*_cat.ecsv"):
            shutil.copy(p, folder / p.name)
        cmd = [PY, "-c", SPEC2_CHILD, str(REPO / "tests"), side, str(rate), str(work / "refs"), str(folder),
               str(work / "crds")]
        if args.timeout:
            cmd = ["timeout", str(args.timeout), *cmd]
        try:
            out["runs"][side] = timed(cmd, folder, env)
        except SystemExit as exc:  # stopped by --timeout (or failed): said, not measured
            out["runs"][side] = {"wall": None, "rss": None, "cpu": None, "error": str(exc).splitlines()[0]}
        out["names"][side] = sorted(p.name for p in folder.glob("*_cal.fits"))
    return out


def observation_inputs(work: Path, n: int) -> tuple[list[Path], Path]:
    """The scene's two rates of ``n`` sources, its references (``work/refs``) and its catalogue
    (``work/inputs``, made from webbflow's assign_wcs of the first exposure), made once."""
    sys.path.insert(0, str(REPO / "tests"))
    from wfss_scene import CATALOG

    refs_dir, inputs = work / "refs", work / "inputs"
    cat = inputs / CATALOG
    if not cat.exists():
        from test_grism import _catalog

        from webbflow import models
        from webbflow.tasks import load_all
        from webbflow.tasks.base import run_step

        inputs.mkdir(parents=True, exist_ok=True)
        sources, rates, refs = _scene(refs_dir, n)
        load_all()
        wcs_refs = {k: refs[k] for k in ("distortion", "filteroffset", "specwcs")}
        w = run_step("assign_wcs", models.open(rates[0][1]), {"sip_approx": False}, references=wcs_refs).model
        _catalog(w, cat, sources)
    if not (work / "crds").exists():
        shutil.copytree(SHARED / "crds-rules", work / "crds")
    return sorted(refs_dir.glob("*_rate.fits")), cat


def _cutouts(cal: Path) -> list[tuple]:
    """A cal file's cutouts in file order: (source ID, order, x start, y start, x size, y size)."""
    from astropy.io import fits

    with fits.open(cal) as h:
        return [tuple(x.header[k] for k in ("SOURCEID", "SPORDER", "SLTSTRT1", "SLTSTRT2", "SLTSIZE1", "SLTSIZE2"))
                for x in h if x.name == "SCI"]


def _close(a, b, rtol: float = 1e-4) -> float:
    """The fraction of elements of ``a`` and ``b`` equal within ``rtol`` (NaN against NaN is equal)."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        return 0.0
    if not a.size:
        return 1.0
    return float((np.isclose(a, b, rtol=rtol, atol=0) | (np.isnan(a) & np.isnan(b))).mean())


def compare_observation(ours: Path, theirs: Path) -> list[str]:
    """What differs between two sides' cal, x1d and c1d files (empty: the same within rtol 1e-4)."""
    import numpy as np
    from astropy.io import fits

    bad = []
    names = sorted(p.name for p in theirs.glob("*_cal.fits")) + sorted(p.name for p in theirs.glob("*_[xc]1d.fits"))
    mine = sorted(p.name for p in ours.glob("*_cal.fits")) + sorted(p.name for p in ours.glob("*_[xc]1d.fits"))
    if names != mine:
        bad.append(f"products: {mine} != {names}")
    for name in set(names) & set(mine):
        with fits.open(ours / name) as ho, fits.open(theirs / name) as ht:
            if [(h.name, h.ver) for h in ho] != [(h.name, h.ver) for h in ht]:
                bad.append(f"{name}: extensions differ")
                continue
            if name.endswith("_cal.fits") and _cutouts(ours / name) != _cutouts(theirs / name):
                bad.append(f"{name}: cutouts (source, order, corners) differ")
            for a, b in zip(ho, ht):
                if b.name == "ASDF" or b.data is None:
                    continue
                where = f"{name}[{b.name},{b.ver}]"
                if b.name.startswith("EXTRACT1D") or b.name.startswith("COMBINE1D"):
                    keys = {k for k in b.header if not k.startswith(("DATE", "CHECKSUM", "DATASUM"))}
                    if keys != {k for k in a.header if not k.startswith(("DATE", "CHECKSUM", "DATASUM"))}:
                        bad.append(f"{where}: keywords differ")
                    for col in b.data.dtype.names:
                        x, y = np.asarray(a.data[col]), np.asarray(b.data[col])
                        same = x.tolist() == y.tolist() if y.dtype.kind in "SU" else _close(x, y) >= 0.999
                        if not same:
                            bad.append(f"{where} {col}")
                elif b.name in ("SCI", "ERR", "DQ") and _close(a.data, b.data) < 0.999:
                    bad.append(where)
    return bad


def run_observation(n: int, args) -> dict:
    """The observation's spectral part on ``n`` sources: each side's Stage 2 on each exposure (one
    process each), then its spec3, from the same rates and catalogue; figures summed (peak: the largest)."""
    sys.path.insert(0, str(REPO / "tests"))
    from wfss_scene import ASN, CATALOG, write_spec3_asn

    work = args.workdir / f"obs{n}"
    rates, cat = observation_inputs(work, n)
    env = dict(os.environ, CRDS_PATH=str(work / "crds"), CRDS_CONTEXT="jwst_0541.pmap", CRDS_MODE="local")
    env.pop("PREFECT_API_URL", None)
    steps = [f"--steps.extract_1d.{k}={v}" for k, v in NA.items()]
    out: dict = {"n": n, "runs": {}, "stages": {}}
    record = work / "jwst.json"
    sides = ("webbflow",) if args.skip_jwst or args.reuse_jwst else ("jwst", "webbflow")
    if args.reuse_jwst:
        out["stages"]["jwst"] = json.loads(record.read_text())
    for side in sides:
        folder = work / side
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy(cat, folder / CATALOG)
        stages = {}
        for rate in rates:
            cmd = [PY, "-c", SPEC2_CHILD, str(REPO / "tests"), side, str(rate), str(work / "refs"), str(folder),
                   str(work / "crds")]
            stages[f"spec2 {rate.name[:-len('_rate.fits')]}"] = timed(cmd, folder, env)
            print(side, list(stages)[-1], stages[list(stages)[-1]], flush=True)
        write_spec3_asn(folder, sorted(folder.glob("*_cal.fits")))
        if side == "jwst":
            cmd = [PY, "-c", JWST_CHILD, ASN, str(folder)]
        else:
            cmd = [str(BIN / "webbflow"), "run", "spec3", ASN, "--output-dir", str(folder), *steps]
        stages["spec3"] = timed(cmd, folder, env)
        print(side, "spec3", stages["spec3"], flush=True)
        out["stages"][side] = stages
        if side == "jwst":
            record.write_text(json.dumps(stages, indent=2))
    for side, stages in out["stages"].items():
        out["runs"][side] = {"wall": sum(s["wall"] for s in stages.values()), "cpu": sum(s["cpu"] for s in stages.values()),
                             "rss": max(s["rss"] for s in stages.values())}
    if "jwst" in out["stages"]:
        out["differences"] = compare_observation(work / "webbflow", work / "jwst")
    out["cal_mib"] = max(p.stat().st_size for p in (work / "webbflow").glob("*_cal.fits")) / 2**20
    out["catalog_mib"] = cat.stat().st_size / 2**20
    return out


def report_observation(results: list[dict], load0, load1) -> None:
    print(f"\nThe observation's spectral part (Stage 2 on each of 2 NIRCam WFSS exposures, then spec3); load "
          f"average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (2 cores)\n")
    print(f"{'sources':>8} {'':<10}{'stage':<40}{'wall s':>9}{'CPU s':>8}{'peak MiB':>10}")
    for res in results:
        for side, stages in res["stages"].items():
            for stage, v in stages.items():
                print(f"{res['n']:>8} {side:<10}{stage:<40}{v['wall']:9.1f}{v['cpu']:8.1f}{v['rss']:10.0f}")
            v = res["runs"][side]
            print(f"{res['n']:>8} {side:<10}{'whole (sum; peak the largest)':<40}{v['wall']:9.1f}{v['cpu']:8.1f}{v['rss']:10.0f}")
    print()
    for res in results:
        if "jwst" in res["runs"]:
            j, w = res["runs"]["jwst"], res["runs"]["webbflow"]
            print(f"{res['n']:>4} sources: webbflow/jwst {w['wall'] / j['wall']:.2f}x wall, {w['cpu'] / j['cpu']:.2f}x CPU, "
                  f"{w['rss'] / j['rss']:.2f}x peak memory; products the same (cal cutouts, x1d, c1d): "
                  f"{not res['differences']}")
            for d in res["differences"][:20]:
                print("   differs:", d)
        print(f"{res['n']:>4} sources: webbflow peak {res['runs']['webbflow']['rss']:.0f} MiB; one cal exposure "
              f"{res['cal_mib']:.0f} MiB on disk, the catalogue {res['catalog_mib']:.2f} MiB")


def run_one(n: int, args) -> dict:
    """Both pipelines (or webbflow alone, ``--skip-jwst``) on ``n`` sources, ``--rounds`` times."""
    work = args.workdir / f"n{n}{'-wf' if args.cals == 'webbflow' else ''}"
    if args.cals == "webbflow":
        asn = webbflow_wfss_cals(work / "inputs", work / "refs", n)["asn"]
        if not (work / "crds").exists():
            shutil.copytree(SHARED / "crds-rules", work / "crds")
    else:
        asn = make_inputs(work, n)
    env = dict(os.environ, CRDS_PATH=str(work / "crds"), CRDS_CONTEXT="jwst_0541.pmap", CRDS_MODE="local")
    env.pop("PREFECT_API_URL", None)
    steps = [f"--steps.extract_1d.{k}={v}" for k, v in NA.items()]
    sides = ("webbflow",) if args.skip_jwst else ("jwst", "webbflow")
    if args.before:
        sides = (*sides, "before")
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    names, sizes = {}, {}
    for r in range(args.rounds):
        for side in sides:
            folder = work / f"{side}-{r}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for p in asn.parent.iterdir():
                shutil.copy(p, folder / p.name)
            inputs = {p.name for p in folder.iterdir()}
            if side == "jwst":
                cmd = [PY, "-c", JWST_CHILD, asn.name, str(folder)]
            else:
                cmd = [str(BIN / "webbflow"), "run", "spec3", asn.name, "--output-dir", str(folder), *steps]
            side_env = env
            if side == "before":  # an older checkout (OLD/webbflow) first on the path
                side_env = dict(env, PYTHONPATH=os.pathsep.join([str(args.before), env.get("PYTHONPATH", "")]))
            runs[side].append(timed(cmd, folder, side_env))
            names[side] = {p.name for p in folder.iterdir()} - inputs
            sizes[side] = sum((folder / x).stat().st_size for x in names[side]) / 2**20
    same_as_before = None
    if args.before:  # the change must leave the products as they were, bit for bit
        from same_products import compare_dirs

        diffs, _count = compare_dirs(work / f"before-{args.rounds - 1}", work / f"webbflow-{args.rounds - 1}")
        same_as_before = not diffs
        for d in diffs[:20]:
            print("  before/after:", d)
    cals = sorted(asn.parent.glob("*_cal.fits"))
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "rss", "cpu")} for k, v in runs.items()}
    return {"n": n, "runs": runs, "medians": med, "names": {k: sorted(v) for k, v in names.items()},
            "product_mib": sizes.get("webbflow"), "same_as_before": same_as_before, "cal_mib": max(p.stat().st_size for p in cals) / 2**20}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="200", help="source counts, comma-separated (e.g. 20,200)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cals", choices=("jwst", "webbflow"), default="jwst",
                    help="whose Stage 2 steps make the cal files (webbflow's take minutes for hundreds of sources)")
    ap.add_argument("--skip-jwst", action="store_true", help="webbflow alone (its memory against the source count)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "webbflow-bench-wfss-spec3")
    ap.add_argument("--before", type=Path, help="also run an older checkout OLD/webbflow (OLD first on PYTHONPATH) "
                    "and compare its products with bench/same_products.py")
    ap.add_argument("--spec2", action="store_true", help="time Stage 2's steps on one exposure instead of spec3")
    ap.add_argument("--timeout", type=int, help="with --spec2: stop a side after this many seconds")
    ap.add_argument("--observation", action="store_true",
                    help="the whole spectral part: Stage 2 on each exposure, then spec3, from the same rates")
    ap.add_argument("--reuse-jwst", action="store_true",
                    help="with --observation: jwst's figures and products from an earlier run in the work folder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    counts = [int(x) for x in str(args.sources).split(",") if x.strip()]
    load0 = os.getloadavg()
    if args.observation:
        results = [run_observation(n, args) for n in counts]
        report_observation(results, load0, os.getloadavg())
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": [load0, os.getloadavg()],
                                             "results": results}, indent=2))
        return
    if args.spec2:
        results = [run_spec2(n, args) for n in counts]
        load1 = os.getloadavg()
        print(f"\nStage 2 (assign_wcs, extract_2d, srctype, photom, save) on one NIRCam WFSS exposure; load average "
              f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (2 cores)\n")
        for res in results:
            for k, v in res["runs"].items():
                fig = v.get("error") or f"{v['wall']:9.1f} s wall {v['rss']:8.0f} MiB {v['cpu']:8.1f} s CPU"
                print(f"{res['n']:>5} sources {k:<9} {fig}   {res['names'][k]}")
            j, w = res["runs"].get("jwst"), res["runs"]["webbflow"]
            if j and j["wall"] and w["wall"]:
                print(f"{res['n']:>5} sources: webbflow/jwst {w['wall'] / j['wall']:.2f}x wall, {w['cpu'] / j['cpu']:.2f}x CPU, "
                      f"{w['rss'] / j['rss']:.2f}x peak memory")
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": [load0, load1],
                                             "results": results}, indent=2))
        return
    results = [run_one(n, args) for n in counts]
    load1 = os.getloadavg()
    print(f"\ncalwebb_spec3 on NIRCam WFSS sources x 2 exposures x 2 orders ({args.rounds} round(s), medians); "
          f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (2 cores)\n")
    print(f"{'sources':>8} {'':<10}{'wall s':>9}{'peak MiB':>10}{'CPU s':>8}   products")
    for res in results:
        for k, v in res["medians"].items():
            print(f"{res['n']:>8} {k:<10}{v['wall']:9.1f}{v['rss']:10.0f}{v['cpu']:8.1f}   {res['names'][k]}")
    print()
    for res in results:
        med = res["medians"]
        if "jwst" in med:
            j, w = med["jwst"], med["webbflow"]
            print(f"{res['n']:>4} sources: webbflow/jwst {w['wall'] / j['wall']:.2f}x wall, {w['cpu'] / j['cpu']:.2f}x CPU, "
                  f"{w['rss'] / j['rss']:.2f}x peak memory; same product names: {res['names']['jwst'] == res['names']['webbflow']}")
        if "before" in med:
            b, w = med["before"], med["webbflow"]
            print(f"{res['n']:>4} sources: webbflow/before {w['wall'] / b['wall']:.2f}x wall, {w['cpu'] / b['cpu']:.2f}x CPU, "
                  f"{w['rss'] / b['rss']:.2f}x peak memory; products bit for bit the same: {res['same_as_before']}")
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        grow = hi["medians"]["webbflow"]["rss"] - lo["medians"]["webbflow"]["rss"]
        print(f"webbflow peak memory {lo['n']} -> {hi['n']} sources: {grow:+.0f} MiB; one cal exposure of {hi['n']} sources "
              f"is {hi['cal_mib']:.0f} MiB on disk, the x1d + c1d {hi['product_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": [load0, load1],
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
