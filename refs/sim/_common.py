"""Building blocks the observing-mode simulators share (refs/sim/<mode>.py).

They reuse the imaging simulator's pieces (setup, pointing, metadata, references, ramps) and
add what the modes need on top: one ramp per integration with its own count rate, INT_TIMES
tables, a ``truth/`` folder, and the associations jwst's rules make, generated from a pool of
the folder's exposures by webbflow's association engine (which gives jwst 3.0's files).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...errors import ParameterError
from .. import simulator as S

DAY = 86400.0
INT_TIMES_DTYPE = [("integration_number", "i4"), ("int_start_MJD_UTC", "f8"), ("int_mid_MJD_UTC", "f8"),
                   ("int_end_MJD_UTC", "f8"), ("int_start_BJD_TDB", "f8"), ("int_mid_BJD_TDB", "f8"),
                   ("int_end_BJD_TDB", "f8")]


def exposures(setup, ids, t0: _dt.datetime, offsets, target_ra, target_dec, pa_v3, gap_s: float = 60.0):
    """The Level1bModels (metadata only), their pointings, file names and start times."""
    from ...models import Level1bModel

    models, pointings, names, starts = [], [], [], []
    t = t0
    nexp = len(offsets)
    for k, off in enumerate(offsets):
        pnt = S.make_pointing(setup, target_ra, target_dec, pa_v3, *off)
        m = Level1bModel()
        S.fill_metadata(m, setup, ids, pnt, k + 1, nexp, t, target_ra, target_dec)
        names.append(S.exposure_filename(setup, ids, k + 1, t))
        m.meta.filename = names[-1]
        models.append(m)
        pointings.append(pnt)
        starts.append(t)
        t = t + _dt.timedelta(seconds=setup.duration + gap_s)
    return models, pointings, names, starts


def one_exposure(exp_type: str, nexp) -> None:
    """A time series is one exposure of many integrations: ``--nexp`` other than 1 is refused."""
    if nexp != 1:
        raise ParameterError(f"{exp_type}: a time series is one exposure of many integrations; drop --nexp")


def integrations(exp_type: str, nints, default: int) -> int:
    """A time series' number of integrations (``--nints`` or the mode's default): at least 2."""
    n = nints or default
    if n < 2:
        raise ParameterError(f"{exp_type} needs at least 2 integrations (got --nints {n})")
    return n


class TimeSeries(NamedTuple):
    """One simulated time-series exposure before its ramps: where it goes and what it is."""

    out: Path
    ids: object  # simulator.ObservationIds
    t0: _dt.datetime
    models: list  # [the exposure's Level1bModel]
    pointing: object
    name: str

    @property
    def model(self):
        return self.models[0]

    @property
    def stem(self) -> str:
        """The truth files' prefix: ``jw<program><observation><visit>_<detector>``."""
        ids, det = self.ids, self.model.meta.instrument.detector.lower()
        return f"jw{ids.program}{ids.observation}{ids.visit}_{det}"


def time_series_exposure(setup, output_dir, *, program, observation, visit, start_time, target_ra, target_dec,
                         pa_v3, template: str, label: str) -> TimeSeries:
    """One time-series exposure's metadata (TSOVISIT, no dither, a transit target, INT_TIMES), its
    pointing and file name, with ``output_dir`` made."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    models, pointings, names, starts = exposures(setup, ids, t0, [(0.0, 0.0)], target_ra, target_dec, pa_v3)
    m = models[0].meta
    m.visit.tsovisit = True
    m.observation.template = template
    m.observation.observation_label = label
    m.target.proposer_name = m.target.catalog_name = "SIMTRANSIT"
    m.dither.primary_type = "NONE"
    models[0].int_times = int_times(setup, starts[0], target_ra, target_dec)
    return TimeSeries(out, ids, t0, models, pointings[0], names[0])


def light_curve(ts: TimeSeries, column: str, values, description: str, **meta):
    """The truth light curve: each integration's number and mid times (MJD UTC, BJD TDB) with ``values``."""
    from astropy.table import Table

    lc = Table()
    for name in ("integration_number", "int_mid_MJD_UTC", "int_mid_BJD_TDB"):
        lc[name] = ts.model.int_times[name]
    lc[column] = values
    lc.meta.update({"description": description, "exposure": ts.name, **meta})
    return lc


def cosmic_ray_truth(ts: TimeSeries, crs) -> Path:
    """The cosmic rays put in the exposure, as a truth table."""
    return S._write_cosmic_rays(ts.out / "truth" / f"{ts.stem}_cosmic_rays.ecsv",
                                [(ts.name, c.integration + 1, c.group + 1, c.frame + 1, c.x, c.y, c.electrons)
                                 for c in crs])


def references(models, setup, out: Path, build_refs: bool, reference_seed: int):
    """(opened signature references, CRDS context or None): a CRDS cache in ``out`` unless not wanted."""
    if build_refs:
        return S._build_and_open_references(models, setup, out, reference_seed)
    return S._reference_models(models[0], setup, seed=reference_seed), None


def star_position(setup, pixmap, pointing, ra, dec):
    """0-based (x, y) of sky positions in the exposure's pixels, and in the full frame."""
    v2, v3 = S.sky_to_tel(pointing.attitude, np.atleast_1d(ra), np.atleast_1d(dec))
    xf, yf = pixmap.to_pixel(v2, v3)
    x, y = S._full_to_output(setup, xf, yf)
    return np.asarray(x), np.asarray(y), np.asarray(xf), np.asarray(yf)


def ramps(setup, rates, refs, seed: int, exposure_index: int, cosmic_ray_rate=S.COSMIC_RAY_RATE,
          min_cosmic_rays: int = 1, reference_seed: int = 0):
    """uint16 ramps (nints, ngroups, ny, nx), integration ``i`` made from the count-rate image ``rates(i)``.

    Each integration is its own draw of the imaging simulator (its own seed), so a source may
    change from one integration to the next (a transit). Returns (data, cosmic-ray rows).
    """
    one = replace(setup, nints=1)
    data = np.empty((setup.nints, setup.ngroups, setup.ysize, setup.xsize), dtype=np.uint16)
    crs = []
    for i in range(setup.nints):
        exp = S.simulate_ramps(one, rates(i), refs, seed, 100000 * (exposure_index + 1) + i, cosmic_ray_rate,
                               min_cosmic_rays, reference_seed)
        data[i] = exp.data[0]
        crs += [replace(c, integration=i) for c in exp.cosmic_rays]
    return data, crs


def int_times(setup, start: _dt.datetime, ra: float, dec: float) -> np.ndarray:
    """The INT_TIMES table of an exposure: each integration's start, middle and end, MJD UTC and BJD TDB."""
    n = setup.nints
    cycle = (setup.frames_per_integration + 1) * setup.tframe  # an integration and the reset after it
    t0 = S._mjd(start)
    begin = t0 + np.arange(n) * cycle / DAY
    end = begin + setup.frames_per_integration * setup.tframe / DAY
    mid = 0.5 * (begin + end)
    out = np.zeros(n, dtype=INT_TIMES_DTYPE)
    out["integration_number"] = np.arange(1, n + 1)
    for col, t in (("start", begin), ("mid", mid), ("end", end)):
        out[f"int_{col}_MJD_UTC"] = t
        out[f"int_{col}_BJD_TDB"] = bjd_tdb(t, ra, dec)
    return out


def bjd_tdb(mjd_utc, ra: float, dec: float) -> np.ndarray:
    """Barycentric (TDB) MJD of UTC times seen from the Earth (JWST's distance, 1.5e6 km, ignored: < 5 s)."""
    from astropy import units as u
    from astropy.coordinates import get_body_barycentric
    from astropy.time import Time

    t = Time(np.asarray(mjd_utc, float), format="mjd", scale="utc")
    earth = get_body_barycentric("earth", t)
    ra_r, dec_r = math.radians(ra), math.radians(dec)
    n = np.array([math.cos(dec_r) * math.cos(ra_r), math.cos(dec_r) * math.sin(ra_r), math.sin(dec_r)])
    xyz = earth.get_xyz().to_value(u.km)
    delay = (n @ xyz) / 299792.458  # seconds, towards the target
    return t.tdb.mjd + delay / DAY


def associations(out: Path, version: str):
    """Pool the folder's uncal exposures and write the associations jwst's rules make of them.

    Returns (level-2 association paths, level-3 association paths).
    """
    from ...flows.asn.engine import generate, write_associations
    from ...flows.asn.mkpool import make_pool, write_pool
    from ...flows.asn.pool import read_pool

    uncal = sorted(p.name for p in out.glob("*_uncal.fits"))
    program = uncal[0][2:7]
    pool_path = out / f"jw{program}_{version}_pool.csv"
    table = make_pool([out / n for n in uncal])
    table["filename"] = uncal  # members are named relative to the pool's folder
    write_pool(table, pool_path)
    asns = generate(read_pool(pool_path), version_id=version)
    paths = write_associations(asns, out)
    lv2 = [p for p, a in zip(paths, asns) if a.rule.level == 2]
    lv3 = [p for p, a in zip(paths, asns) if a.rule.level == 3]
    return lv2, lv3


def write_table(table, path: Path) -> Path:
    from ...models.atomic import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as f:
        table.write(f, format="ascii.ecsv")
    return path
