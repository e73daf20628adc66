"""MIRI coronagraphy (MIR_4QPM, MIR_LYOT): a star behind one of MIRI's coronagraphs with a companion
to recover, and PSF-reference exposures of a star without one.

``webbflow simulate --instrument miri --exp-type MIR_4QPM [--filter F1065C|F1140C|F1550C]`` or
``--exp-type MIR_LYOT [--filter F2300C]`` writes (DESIGN.md section 9):

- the uncal exposures on the coronagraph's own subarray, with the real SIAF geometry (pysiaf's
  MIRIM_MASK1065, MIRIM_MASK1140, MIRIM_MASK1550, MIRIM_MASKLYOT apertures: 288 x 224 pixels for
  the four-quadrant phase masks, 320 x 304 for the Lyot spot): one science exposure (visit 1) and
  ``nexp`` PSF-reference exposures (visit 2, IS_PSF = T), ``nints`` integrations each (FASTR1, few
  groups), with CORONMSK as the real headers have it (4QPM_1065, 4QPM_1140, 4QPM_1550, LYOT_2300)
  and the MIRI detector effects of the imaging simulator (reset anomaly, RSCD, first/last frame,
  non-linearity, dark, IPC, flat, read noise, cosmic rays);
- the pool and the associations jwst's rules make for them (image2 per exposure, coron3 with the
  science and psf members);
- the MIRI imager references for that subarray and a CRDS cache (CRDS_PATH=DIR), with a
  ``psfmask`` reference as the real MIRI ones are: a PsfMaskModel of the subarray, 1 where the
  coronagraph leaves the field clear and 0 along the 4QPM's quadrant transitions (or on the Lyot
  spot and its support bar) and outside the coronagraph's square field, selected by the real
  rmap's parkeys (EXP_TYPE N/A, FILTER, CORONMSK, SUBARRAY);
- ``truth/companion.ecsv``: the companion's pixel position in the science exposure, its sky
  position and its count rate.

The star sits at the aperture's reference pixel (the mask's centre).  The phase mask's
attenuation is modelled as the NIRCam simulator's round one (refs/sim/coron.py) multiplied by a
dip along the two transition lines; the Lyot spot is an opaque disc of 2.16" radius.  The
companion sits in a clear quadrant, outside both, and is not attenuated.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import coron as N

# EXP_TYPE -> {filter: (SUBARRAY, CORONMSK)}
MASKS = {
    "MIR_4QPM": {"F1065C": ("MASK1065", "4QPM_1065"), "F1140C": ("MASK1140", "4QPM_1140"),
                 "F1550C": ("MASK1550", "4QPM_1550")},
    "MIR_LYOT": {"F2300C": ("MASKLYOT", "LYOT_2300")},
}
DEFAULT_FILTER = {"MIR_4QPM": "F1065C", "MIR_LYOT": "F2300C"}
# frame times of the coronagraphic subarrays read with FASTR1 (s): the readout's clocks per frame
# (23968 for the 4QPM subarrays, 32400 for MASKLYOT) times 10 us, as for SUB256 and SLITLESSPRISM
FRAME_TIME = {"MASK1065": 0.23968, "MASK1140": 0.23968, "MASK1550": 0.23968, "MASKLYOT": 0.32400}
PIVOT_UM = {"F1065C": 10.575, "F1140C": 11.310, "F1550C": 15.516, "F2300C": 22.644}
FIELD_PX = {"MASK1065": 216, "MASK1140": 216, "MASK1550": 216, "MASKLYOT": 272}  # MIRIM_CORON* ROI sizes
LYOT_RADIUS_ARCSEC = 2.16
LINE_HALF_WIDTH_PX = 1.5  # the 4QPM's transitions, as the psfmask flags them
# the companion, from the star (x, y): in a clear quadrant of the 4QPM; outside the Lyot spot (3.2")
COMPANION_OFFSET_PX = {"MIR_4QPM": (16.0, 11.0), "MIR_LYOT": (24.0, 16.0)}
PSFMASK_PARKEYS = N.PSFMASK_PARKEYS


def coron_miri_setup(exp_type, ngroups, nints, filter, readpatt):  # noqa: A002
    et = exp_type.upper()
    filt = (filter or DEFAULT_FILTER[et]).upper()
    if filt not in MASKS[et]:
        raise ParameterError(f"{et} is simulated with the filters {', '.join(MASKS[et])} (got {filter!r})")
    sub, mask = MASKS[et][filt]
    setup = S.make_setup("miri", "MIRIMAGE", None, "FULL", ngroups or 3, nints or 2, None, None, readpatt, None)
    siaf = S._siaf("MIRI")
    aper, full = siaf[f"MIRIM_{sub}"], siaf["MIRIM_FULL"]
    xstart, ystart, xsize, ysize = S._subarray_in_full_frame(aper, full)
    # jwst's refpix leaves MIRI subarrays alone: no per-group amplifier offsets (as refs/sim/miri_lrs.py)
    setup = dataclasses.replace(
        setup, exp_type=et, filter=filt, subarray=sub, xstart=xstart, ystart=ystart, xsize=xsize, ysize=ysize,
        tframe=FRAME_TIME[sub], aperture=aper.AperName, v2_ref=float(aper.V2Ref), v3_ref=float(aper.V3Ref),
        v3yangle=float(aper.V3IdlYAngle), vparity=int(aper.VIdlParity), xref_sci=float(aper.XSciRef),
        yref_sci=float(aper.YSciRef), v2_aim=float(aper.V2Ref), v3_aim=float(aper.V3Ref), col_map=None,
        row_map=None, drift_scale=0.0)
    return setup, mask


def fwhm_px(setup) -> float:
    lam = PIVOT_UM[setup.filter]
    diffraction = 1.03 * lam * 1e-6 / S.TELESCOPE_DIAMETER * 206264.806
    return math.hypot(diffraction, S.JITTER_FWHM) / math.sqrt(setup.xscale * setup.yscale)


def transmission(setup, shape, x0, y0):
    """The coronagraph's intensity transmission on the subarray's pixels (star at x0, y0)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    if setup.exp_type == "MIR_LYOT":
        r = np.hypot(xx - x0, yy - y0) * math.sqrt(setup.xscale * setup.yscale)
        return np.clip((r - LYOT_RADIUS_ARCSEC) / 0.3, 0.0, 1.0) * N.transmission(shape, x0, y0)
    w2 = 2 * LINE_HALF_WIDTH_PX**2
    lines = (1 - np.exp(-((xx - x0) ** 2) / w2)) * (1 - np.exp(-((yy - y0) ** 2) / w2))
    return N.transmission(shape, x0, y0) * (0.2 + 0.8 * lines)


def psfmask_data(setup, x0, y0) -> np.ndarray:
    """1 where the field is clear, 0 on the transitions (spot and bar), outside the coronagraph's field."""
    shape = (setup.ysize, setup.xsize)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    half = FIELD_PX[setup.subarray] / 2.0
    inside = (np.abs(xx - x0) < half) & (np.abs(yy - y0) < half)
    if setup.exp_type == "MIR_LYOT":
        r = np.hypot(xx - x0, yy - y0) * math.sqrt(setup.xscale * setup.yscale)
        clear = (r > LYOT_RADIUS_ARCSEC) & (np.abs(xx - x0) > 2.5)  # the spot and its support bar
    else:
        clear = (np.abs(xx - x0) > 2 * LINE_HALF_WIDTH_PX) & (np.abs(yy - y0) > 2 * LINE_HALF_WIDTH_PX)
    return (inside & clear).astype(np.float32)


def add_psfmask_rule(root: Path, setup, mask: str, x0: float, y0: float) -> str:
    """Write the MIRI psfmask into the cache at ``root`` and a new context whose rules select it."""
    from ...models.classes import PsfMaskModel
    from ..context import Rmap, read_context, reference_path, write_context

    ctx = read_context(root)
    old = ctx.rmaps.get("MIRI", {}).get("psfmask")
    entries = dict(old.entries) if old is not None else {}
    key = ("N/A", setup.filter, mask, setup.subarray)  # as the real rmap matches (EXP_TYPE N/A)
    name = entries.get(key)
    if name is None:
        k = 1
        name = "jwst_miri_psfmask_0001.fits"
        while reference_path(root, name).exists() or name in entries.values():
            k += 1
            name = f"jwst_miri_psfmask_{k:04d}.fits"
        entries[key] = name
    m = PsfMaskModel(data=psfmask_data(setup, x0, y0))
    meta = m.meta
    meta.reftype, meta.pedigree, meta.useafter = "PSFMASK", "DUMMY", "2000-01-01T00:00:00"
    meta.description, meta.author = f"Simulated {mask} PSF mask, {setup.subarray}", "webbflow simulator"
    meta.telescope, meta.instrument.name, meta.instrument.detector = "JWST", "MIRI", setup.detector
    meta.instrument.filter, meta.instrument.coronagraph, meta.exposure.type = setup.filter, mask, setup.exp_type
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = setup.subarray, setup.xstart, setup.ystart, setup.xsize, setup.ysize
    s.fastaxis, s.slowaxis = setup.fastaxis, setup.slowaxis
    path = reference_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)
    rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
    rules.setdefault("MIRI", {})["psfmask"] = Rmap("MIRI", "psfmask", PSFMASK_PARKEYS, entries)
    return write_context(root, rules, "webbflow simulated MIRI coronagraphy (psfmask)").context


def simulate(output_dir, exp_type="MIR_4QPM", ngroups=None, nints=None, nexp=2, seed=0, filter=None,  # noqa: A002
             readpatt=None, target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, detector=None, subarray=None,
             size=None, **_ignored):
    """Simulate one MIRI coronagraphic observation; returns the simulator's SimulationResult."""
    if detector is not None and detector.upper() != "MIRIMAGE":
        raise ParameterError(f"MIRI coronagraphy is on the MIRIMAGE detector (got {detector!r})")
    if size is not None:
        raise ParameterError("MIRI coronagraphy reads its coronagraph's subarray; drop --size")
    setup, mask = coron_miri_setup(exp_type, ngroups, nints, filter, readpatt)
    if subarray is not None and subarray.upper() != setup.subarray:
        raise ParameterError(f"{setup.filter} behind {mask} is read on {setup.subarray}, not {subarray}")
    scene = N.CoronScene(
        exp_type=setup.exp_type, mask=mask, fwhm_px=fwhm_px(setup), sky_wavelength_um=PIVOT_UM[setup.filter],
        star_factor=20.0, companion_factor=0.3, companion_offset=COMPANION_OFFSET_PX[setup.exp_type],
        transmission=functools.partial(transmission, setup), add_psfmask_rule=add_psfmask_rule)
    return N.observe(output_dir, setup, scene, nexp=nexp, seed=seed, target_ra=target_ra, target_dec=target_dec,
                     pa_v3=pa_v3, program=program, observation=observation, start_time=start_time,
                     build_refs=build_refs, reference_seed=reference_seed)
