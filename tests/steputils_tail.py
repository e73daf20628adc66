"""Inputs and helpers for the detector1 tail-step tests (charge_migration ... ramp_fit).

``nircam_ramp`` simulates a small calibrated NIRCam ramp (after dark_current):
sky plus a few stars, Poisson and read noise, injected cosmic-ray jumps,
saturated star cores flagged in GROUPDQ, and bad pixels in PIXELDQ.
``write_refs`` writes gain/readnoise (and other) reference files with our
models, with the header keywords CRDS and stdatamodels expect.
``jwst_run`` runs a jwst step on a file with the same references.
``install_in_crds_cache`` puts our reference files into a CRDS cache under the
names that CRDS's rules select, for jwst code paths that ask CRDS directly
(jwst's clean_flicker_noise and picture_frame build their draft rate with a
fresh RampFitStep, which takes no overrides).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from webbflow import models
from webbflow.models import dqflags

SAT_DN = 30000.0


def set_nircam_meta(m, *, ngroups, nints, ny, nx, detector="NRCA1", subarray="SUB64P", xstart=1, ystart=1,
                    exp_type="NRC_IMAGE", group_time=10.737, instrument="NIRCAM"):
    e = m.meta
    e.telescope = "JWST"
    e.instrument.name = instrument
    e.instrument.detector = detector
    if instrument == "NIRCAM":
        e.instrument.filter = "F200W"
        e.instrument.pupil = "CLEAR"
        e.instrument.channel = "SHORT"
        e.instrument.module = detector[3] if detector.startswith("NRC") else "A"
    elif instrument == "NIRISS":
        e.instrument.filter = "F150W"
        e.instrument.pupil = "CLEARP"
    elif instrument == "NIRSPEC":
        e.instrument.filter = "F290LP"
        e.instrument.grating = "G395H"
    elif instrument == "MIRI":
        e.instrument.filter = "F770W"
        e.instrument.band = "N/A"
    e.exposure.type = exp_type
    e.exposure.readpatt = {"NIRSPEC": "NRSRAPID", "MIRI": "FAST"}.get(instrument, "RAPID")
    e.exposure.nframes = 1
    e.exposure.groupgap = 0
    e.exposure.ngroups = ngroups
    e.exposure.nints = nints
    e.exposure.frame_time = group_time
    e.exposure.group_time = group_time
    e.exposure.integration_time = group_time * (ngroups - 1)
    e.exposure.start_time = 59800.25
    e.exposure.mid_time = 59800.26
    e.exposure.end_time = 59800.27
    e.exposure.nresets_between_ints = 1
    e.exposure.drop_frames1 = 0
    e.subarray.name = subarray
    e.subarray.xstart = xstart
    e.subarray.ystart = ystart
    e.subarray.xsize = nx
    e.subarray.ysize = ny
    e.subarray.fastaxis, e.subarray.slowaxis = {"NIRSPEC": (2, 1), "MIRI": (1, 2)}.get(instrument, (-1, 2))
    e.observation.date = "2022-08-01"
    e.observation.time = "06:00:00"
    return m


def nircam_ramp(nints=2, ngroups=8, ny=64, nx=64, *, seed=0, sky=2.0, n_stars=6, n_crs=60, n_bad=6,
                gain=2.0, readnoise=6.0, flicker=0.0, saturate=True, **meta_kw) -> models.RampModel:
    """A (nints, ngroups, ny, nx) float32 ramp in DN with injected jumps, saturation and bad pixels.

    ``flicker`` adds 1/f-like row offsets (DN rms per group) along the slow axis.
    """
    rng = np.random.default_rng(seed)
    m = models.RampModel((nints, ngroups, ny, nx))
    set_nircam_meta(m, ngroups=ngroups, nints=nints, ny=ny, nx=nx, **meta_kw)
    tg = m.meta.exposure.group_time
    rate = np.full((ny, nx), sky, dtype=np.float64)  # DN/s
    for k in range(n_stars):
        x0, y0 = rng.uniform(4, nx - 4), rng.uniform(4, ny - 4)
        flux = rng.uniform(200, 4000) * (6 if k == 0 else 1)  # the first star saturates
        ys = slice(max(int(y0) - 8, 0), min(int(y0) + 9, ny))
        xs = slice(max(int(x0) - 8, 0), min(int(x0) + 9, nx))
        yy, xx = np.mgrid[ys, xs]
        rate[ys, xs] += flux / (2 * np.pi * 1.5**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.5**2))
    data = np.empty((nints, ngroups, ny, nx))
    for i in range(nints):
        electrons = rng.poisson(rate * gain * tg, size=(ngroups, ny, nx)).cumsum(axis=0)
        # readnoise is CDS noise, as in JWST readnoise references: each read gets readnoise/sqrt(2)
        data[i] = electrons / gain + 1000.0 + rng.normal(0, readnoise / np.sqrt(2), size=(ngroups, ny, nx))
        if flicker:
            data[i] += rng.normal(0, flicker, size=(ngroups, ny, 1))
    gdq = np.zeros((nints, ngroups, ny, nx), dtype=np.uint8)
    # cosmic rays: a step of 100-3000 DN from a random group on
    for _ in range(n_crs):
        i, g = rng.integers(nints), rng.integers(1, ngroups)
        y, x = rng.integers(ny), rng.integers(nx)
        data[i, g:, y, x] += rng.uniform(100, 3000)
    if saturate:
        sat = data >= SAT_DN
        sat = np.logical_or.accumulate(sat, axis=1)
        gdq[sat] |= dqflags.SATURATED
        data[sat] = np.minimum(data[sat], SAT_DN + 500)
    pdq = np.zeros((ny, nx), dtype=np.uint32)
    for _ in range(n_bad):
        y, x = rng.integers(ny), rng.integers(nx)
        pdq[y, x] |= dqflags.DO_NOT_USE | dqflags.DEAD
        gdq[:, :, y, x] |= dqflags.DO_NOT_USE
    m.data = data.astype(np.float32)
    m.groupdq = gdq
    m.pixeldq = pdq
    return m


def ref_model(cls, sci, reftype, data, **arrays):
    """A reference model whose keywords place it on ``sci``'s pixels."""
    r = cls(np.asarray(data, dtype=np.float32))
    for k, v in arrays.items():
        setattr(r, k, v)
    s = sci.meta
    r.meta.telescope = "JWST"
    r.meta.reftype = reftype.upper()
    r.meta.instrument.name = s.instrument.name
    r.meta.instrument.detector = s.instrument.detector
    r.meta.subarray.name = s.subarray.name
    r.meta.subarray.xstart = s.subarray.xstart
    r.meta.subarray.ystart = s.subarray.ystart
    r.meta.subarray.ysize, r.meta.subarray.xsize = r.data.shape[-2:]
    r.meta.subarray.fastaxis = s.subarray.fastaxis
    r.meta.subarray.slowaxis = s.subarray.slowaxis
    r.meta.useafter = "2015-01-01T00:00:00"
    r.meta.pedigree = "DUMMY"
    r.meta.description = f"webbflow test {reftype}"
    r.meta.author = "webbflow tests"
    return r


def write_refs(folder: Path, sci, *, gain=2.0, readnoise=6.0, seed=1, bad_gain=0) -> dict[str, Path]:
    """Gain (e/DN) and readnoise (DN) files matching ``sci``; a little pixel-to-pixel scatter.

    ``bad_gain`` pixels get a NaN or zero gain (jump flags them NO_GAIN_VALUE).
    """
    rng = np.random.default_rng(seed)
    ny, nx = sci.data.shape[-2:]
    g = (gain * (1 + 0.05 * rng.standard_normal((ny, nx)))).astype(np.float32)
    for k in range(bad_gain):
        g[rng.integers(ny), rng.integers(nx)] = np.nan if k % 2 else 0.0
    rn = (readnoise * (1 + 0.1 * rng.standard_normal((ny, nx)))).astype(np.float32)
    folder = Path(folder)
    out = {
        "gain": ref_model(models.GainModel, sci, "gain", g).save(folder / "test_gain.fits"),
        "readnoise": ref_model(models.ReadnoiseModel, sci, "readnoise", rn).save(folder / "test_readnoise.fits"),
    }
    return {k: Path(v) for k, v in out.items()}


def jwst_run(step_class, input_path, cache, overrides: dict[str, Path], **params):
    """Run a jwst step offline on a file, every reference overridden."""
    from parity import jwst_offline

    kw = {f"override_{rt}": str(p) for rt, p in overrides.items()}
    kw.update(params)
    with jwst_offline(cache, "jwst_0541.pmap"):
        return step_class.call(str(input_path), **kw)


def install_in_crds_cache(cache: Path, sci_path: Path, files: dict[str, Path]) -> dict[str, str]:
    """Copy our reference files into ``cache`` under the names jwst_0541's rules select for ``sci_path``."""
    import crds
    from astropy.io import fits

    from parity import jwst_offline

    with fits.open(sci_path) as h:
        header = {k: v for k, v in h[0].header.items() if isinstance(v, (str, int, float, bool))}
        for k, v in h["SCI"].header.items():
            if isinstance(v, (str, int, float, bool)):
                header.setdefault(k, v)
    with jwst_offline(cache, "jwst_0541.pmap"):
        best = crds.getrecommendations(header, reftypes=list(files), context="jwst_0541.pmap", observatory="jwst")
    instrument = str(header["INSTRUME"]).lower()
    placed = {}
    for rt, src in files.items():
        name = best[rt]
        assert not str(name).upper().startswith("NOT FOUND"), f"CRDS selects no {rt} for this header: {name}"
        dst = Path(cache) / "references" / "jwst" / instrument / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        placed[rt] = name
    return placed
