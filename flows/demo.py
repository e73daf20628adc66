"""``webbflow demo``: the main job on the embedded default.

Simulates a dithered NIRCam imaging observation (4 exposures) with its
synthetic references and local CRDS context, runs stages 1 to 3 with the
exposures fanned out in parallel (as Prefect flow and task runs when a Prefect
API is configured, else as the same calls without a server), and prints a summary:
products, timings, sources found, and alignment residuals against the
simulator's truth.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def _match(ra1, dec1, ra2, dec2, radius_arcsec):
    """Nearest-neighbour match of two small catalogues; returns index pairs and separations (arcsec)."""
    ra1, dec1, ra2, dec2 = map(np.asarray, (ra1, dec1, ra2, dec2))
    cosd = np.cos(np.radians(np.mean(dec2) if len(dec2) else 0.0))
    pairs = []
    for i in range(len(ra1)):
        d = np.hypot((ra2 - ra1[i]) * cosd, dec2 - dec1[i]) * 3600.0
        j = int(np.argmin(d)) if len(d) else -1
        if j >= 0 and d[j] < radius_arcsec:
            pairs.append((i, j, float(d[j])))
    return pairs


def alignment_residuals(catalog_path, truth_path, radius_arcsec=0.2, i2d=None):
    """Median and RMS offset (mas) between the Stage 3 catalogue and the simulator's truth
    (truth stars restricted to the mosaic's footprint when the i2d is given)."""
    from astropy.table import Table

    cat = Table.read(catalog_path)
    truth = Table.read(truth_path)
    if i2d is not None and i2d.meta.wcs is not None:
        x, y = i2d.meta.wcs.invert(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
        ny, nx = i2d.data.shape
        inside = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0) & (x < nx - 1) & (y < ny - 1)
        xi = np.clip(np.nan_to_num(x).astype(int), 0, nx - 1)
        yi = np.clip(np.nan_to_num(y).astype(int), 0, ny - 1)
        inside &= i2d.data[yi, xi] == i2d.data[yi, xi]  # not NaN: covered by an exposure
        truth = truth[inside]
    ra_c = np.asarray(cat["sky_centroid"].ra.deg) if "sky_centroid" in cat.colnames else np.asarray(cat["ra"])
    dec_c = np.asarray(cat["sky_centroid"].dec.deg) if "sky_centroid" in cat.colnames else np.asarray(cat["dec"])
    pairs = _match(ra_c, dec_c, np.asarray(truth["ra"]), np.asarray(truth["dec"]), radius_arcsec)
    seps = np.array([p[2] for p in pairs]) * 1000.0
    return {
        "sources": len(cat),
        "matched": len(pairs),
        "truth": len(truth),
        "median_mas": float(np.median(seps)) if len(seps) else float("nan"),
        "rms_mas": float(np.sqrt(np.mean(seps**2))) if len(seps) else float("nan"),
    }


_RECORD = "webbflow-demo.json"  # in the raw folder: the settings and files of the simulation there


def _simulation(raw: Path, settings: dict):
    """The demo's simulation: reused when ``raw`` holds one made with the same settings (and code version),
    else made afresh.  Returns ``(SimulationResult-like, reused)``."""
    import json
    from types import SimpleNamespace

    from .. import __version__
    from ..refs.simulator import simulate

    wanted = dict(settings, webbflow=__version__)
    try:
        rec = json.loads((raw / _RECORD).read_text())
    except (OSError, ValueError):
        rec = None
    if rec and rec.get("settings") == wanted:
        files = [Path(p) for p in rec["uncal"]] + [Path(rec["catalog"]), Path(rec["asn_level3"]), Path(rec["crds_path"])]
        if all(f.exists() for f in files):
            return SimpleNamespace(uncal=[Path(p) for p in rec["uncal"]], catalog=Path(rec["catalog"]),
                                   asn_level3=Path(rec["asn_level3"]), crds_path=Path(rec["crds_path"]),
                                   context=rec["context"]), True
    sim = simulate(raw, instrument="nircam", nints=1, **settings)
    from ..models.atomic import atomic_write_text

    atomic_write_text(raw / _RECORD, json.dumps({
        "settings": wanted, "uncal": [str(p) for p in sim.uncal], "catalog": str(sim.catalog),
        "asn_level3": str(sim.asn_level3), "crds_path": str(sim.crds_path), "context": sim.context}, indent=1))
    return sim, False


def run_demo(output_dir="webbflow-demo", size=1024, ngroups=6, nexp=4, seed=2024, runner=None) -> int:
    import sys

    from . import progress
    from .association import run_association

    out = Path(output_dir).resolve()
    t0 = time.perf_counter()
    print(f"simulating {nexp} dithered NIRCam exposures ({size}x{size}, {ngroups} groups) with references and a CRDS context ...",
          flush=True)
    sim, reused = _simulation(out / "raw", dict(size=size, ngroups=ngroups, nexp=nexp, seed=seed))
    if reused:
        print(f"  reusing the simulation in {out / 'raw'} (same settings; delete that folder to simulate afresh)")
    t_sim = time.perf_counter() - t0
    os.environ["CRDS_PATH"] = str(sim.crds_path)
    os.environ.pop("CRDS_CONTEXT", None)
    from ..refs.select import reset_crds_state

    reset_crds_state()
    print(f"  {len(sim.uncal)} uncal files, CRDS context {sim.context} in {sim.crds_path} ({t_sim:.1f} s)")
    from .stage import prefect_tracking

    tracked = prefect_tracking() or (runner or "threads").lower() != "threads"
    how = "as Prefect runs" if tracked else "without a Prefect server (none is configured)"
    print(f"running detector1 -> image2 per exposure (fanned out) and image3 on the association, {how} ...",
          flush=True)
    t1 = time.perf_counter()
    with progress.display(f"demo {Path(sim.asn_level3).stem.removesuffix('_asn')}", enabled=sys.stdout.isatty()):
        res = run_association(sim.asn_level3, output_dir=out / "products", runner=runner)
    t_run = time.perf_counter() - t1
    print()
    print("exposures:")
    for m in res.members:
        state = "ok" if m.ok else f"FAILED: {m.error}"
        reused = f" (reused {', '.join(m.reused)})" if m.reused else ""
        print(f"  {m.member:48s} {m.seconds:6.1f} s  {state}{reused}")
    print("stage 3 products:")
    summary = None
    for name, prod in res.stage3.items():
        for p in prod.get("written", []):
            print(f"  {p}")
        cat = prod.get("catalog")
        if cat:
            from .. import models

            i2d_path = next((p for p in prod.get("written", []) if p.endswith("_i2d.fits")), None)
            i2d = models.open(i2d_path) if i2d_path else None
            summary = alignment_residuals(cat, sim.catalog, i2d=i2d)
        if prod.get("reused"):
            print("  (Stage 3 reused: inputs, parameters and code unchanged)")
    print()
    if summary:
        print(
            f"sources: {summary['sources']} detected, {summary['matched']} matched to the {summary['truth']} "
            f"simulated stars; alignment residual against truth: median {summary['median_mas']:.1f} mas, "
            f"rms {summary['rms_mas']:.1f} mas"
        )
    print(f"timings: simulate {t_sim:.1f} s, pipeline {t_run:.1f} s, total {time.perf_counter() - t0:.1f} s")
    print(f"products are in {out / 'products'}")
    print(f"to run a step or pipeline on these raw files yourself, select their references with: "
          f"export CRDS_PATH={sim.crds_path}")
    return 0


def add_demo_command(sub) -> None:
    s = sub.add_parser("demo", help="simulate a dithered NIRCam observation and run stages 1-3 on it")
    s.add_argument("--output-dir", "--output_dir", dest="output_dir", default="webbflow-demo")
    s.add_argument("--size", type=int, default=1024, help="subarray size in pixels (default 1024)")
    s.add_argument("--ngroups", type=int, default=6)
    s.add_argument("--nexp", type=int, default=4)
    s.add_argument("--seed", type=int, default=2024)
    s.add_argument("--runner", choices=["threads", "processes", "dask"], default=None)

    def _run(args):
        from .cli import _quiet_prefect_console

        _quiet_prefect_console(getattr(args, "verbose", False))
        return run_demo(args.output_dir, size=args.size, ngroups=args.ngroups, nexp=args.nexp, seed=args.seed,
                        runner=args.runner)

    s.set_defaults(func=_run)
