"""Simulated JWST imaging observations: uncal exposures, truth catalogue, associations.

``simulate(output_dir, instrument="nircam", ...)`` writes a set of dithered
``_uncal.fits`` exposures (Level1bModel, uint16 SCI ``(nints, ngroups, ny, nx)``)
of one detector, the truth catalogue of the star field, the level-2 and level-3
association files and, unless told otherwise, the matching synthetic references
and a local CRDS context (``refs.build.build_references``).

What is modelled, in the order the detector sees it:

1. **Scene.**  Stars at fixed sky positions (seeded), drawn with a Moffat PSF
   (beta 2.5) of the filter's diffraction FWHM (1.03 lambda/D, plus 7 mas of
   jitter), at the pixel positions given by the *reference* distortion and
   filter offset (the same chain jwst's assign_wcs builds: subarray shift,
   filter offset, distortion, then the V2V3-to-sky rotation of the header's
   RA_REF/DEC_REF/ROLL_REF/V2_REF/V3_REF), so a calibrated WCS recovers the
   truth.  A uniform sky background.  Fluxes are in microjansky; the count
   rate (DN/s in the calibrated rate image) is ``flux / (PHOTMJSR * PIXAR_SR)``
   from the photom reference.  The target star saturates.
2. **Charge.**  The ideal rate times the flat (and zero for DEAD pixels of the
   mask) times the gain gives electrons per second; electrons accumulate frame
   by frame with Poisson noise; frames are averaged into groups by
   NFRAMES/GROUPGAP.  Cosmic rays deposit charge (log-normal, with 3x3 spread)
   at a random frame and stay in all later reads.
3. **Detector.**  DN = electrons / gain, plus the dark reference's per-group
   values (frame-averaged exactly as jwst's dark step averages them), made
   non-linear with the exact per-pixel inverse of the linearity reference's
   correction polynomial (Newton's method, to < 0.01 DN), capped at a hard
   saturation level slightly above the saturation reference, convolved with
   the forward IPC kernel (the inverse of the reference's deconvolution kernel,
   solved by fixed-point iteration so jwst's IPC step undoes it), plus the
   superbias; then the electronics: per-amplifier and odd/even-column bias
   drifts that change from group to group (common to reference and science
   pixels, so jwst's refpix step removes them), row-correlated (1/f-like)
   noise seen by the side reference pixels, and read noise per read (the
   readnoise reference divided by sqrt(NFRAMES)).  Rounded to uint16 and
   clipped at 0..65535.  Reference pixels (the 4-pixel NIR border, MIRI's
   reference columns) get no light, no dark and no IPC.
4. **MIRI** has no superbias and no reference border: a per-pixel pedestal
   (~12000 DN) sits inside the linearity polynomial (jwst applies MIRI's
   linearity to the raw ramp); the reset reference's per-group values are
   added before the non-linearity step is undone (reset anomaly); integrations
   after the first start with an RSCD offset that decays over the first groups
   (2 % of the previous integration's signal, e-folding in one group); the
   first group has a small offset and the last group an odd/even-row offset
   (the first/last-frame effects; jwst's firstframe/lastframe/rscd steps flag
   those groups); the four interleaved amplifiers (column mod 4) drift from
   group to group.  EMI noise is not simulated.
5. **FGS guider modes** (ACQ1, ACQ2, TRACK, FINEGUIDE, ID-IMAGE, ID-STACK) use
   the subarrays, readouts and frame times of real flight headers, a bright
   guide star at the subarray centre, and a ~14700 DN pedestal (as in the real
   ACQ1 file) when no superbias reference is given.

Every detector signature is applied only when its reference exists in the
reference set, so the exposure carries exactly the signatures that the
references describe.  With ``build_refs`` (the default) the references are
written first (``refs.build``) and the simulator reads the very files that the
new CRDS context selects for the exposure, so calibration with that cache
removes what was put in; without, the same synthetic set is made in memory
(``refs.synthetic.reference_set``).

Known limits: no persistence, no brighter-fatter, no charge migration, no
snowballs or showers (cosmic rays are single 3x3 hits), no EMI (MIRI), no
1/f noise beyond a smooth row pattern, a uniform sky (no pixel-area
weighting), no velocity aberration (VA_SCALE is not written, so jwst uses
none), and the PSF is an analytic Moffat rather than WebbPSF.

Determinism: every random number comes from a ``numpy`` generator seeded from
``(seed, purpose, exposure, integration)``, and no wall-clock time is written,
so a given seed gives byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..models import dqflags

# ---------------------------------------------------------------------------
# instruments, detectors, readouts

SAMPLE_TIME = 1.0e-5  # s, 10 us per pixel read (all JWST detectors)
TELESCOPE_DIAMETER = 6.5  # m, for the diffraction FWHM
JITTER_FWHM = 0.007  # arcsec
COSMIC_RAY_RATE = 5.0  # hits per cm^2 per s (JWST's measured rate is a few)
ROW_NOISE_RMS = 1.5  # DN per group, the correlated row-to-row (1/f) noise of NIR readouts
DRIFT_RMS = 6.0  # DN, initial per-amplifier/column-parity bias offset of an integration (NIR)
DRIFT_STEP = 2.0  # DN, its random walk from group to group

NIRCAM_DETECTORS = {  # DETECTOR: (SIAF prefix, SCA_NUM, channel)
    "NRCA1": ("NRCA1", 481, "SW"), "NRCA2": ("NRCA2", 482, "SW"), "NRCA3": ("NRCA3", 483, "SW"),
    "NRCA4": ("NRCA4", 484, "SW"), "NRCALONG": ("NRCA5", 485, "LW"),
    "NRCB1": ("NRCB1", 486, "SW"), "NRCB2": ("NRCB2", 487, "SW"), "NRCB3": ("NRCB3", 488, "SW"),
    "NRCB4": ("NRCB4", 489, "SW"), "NRCBLONG": ("NRCB5", 490, "LW"),
}

# Pivot wavelengths (micron) of the imaging filters.
PIVOT = {
    "F070W": 0.704, "F090W": 0.902, "F115W": 1.154, "F140M": 1.405, "F150W": 1.501, "F150W2": 1.659,
    "F162M": 1.627, "F164N": 1.645, "F182M": 1.845, "F187N": 1.874, "F200W": 1.989, "F210M": 2.095,
    "F212N": 2.121, "F250M": 2.503, "F277W": 2.762, "F300M": 2.989, "F322W2": 3.232, "F323N": 3.237,
    "F335M": 3.362, "F356W": 3.568, "F360M": 3.624, "F405N": 4.052, "F410M": 4.082, "F430M": 4.281,
    "F444W": 4.404, "F460M": 4.630, "F466N": 4.654, "F470N": 4.708, "F480M": 4.818,
    "F158M": 1.587, "F380M": 3.828,
    "F560W": 5.635, "F770W": 7.639, "F1000W": 9.953, "F1130W": 11.309, "F1280W": 12.810,
    "F1500W": 15.064, "F1800W": 17.984, "F2100W": 20.795, "F2550W": 25.365,
}
NIRCAM_SW_FILTERS = ("F070W", "F090W", "F115W", "F140M", "F150W", "F150W2", "F182M", "F187N", "F200W", "F210M", "F212N")
NIRCAM_SW_PUPIL_FILTERS = ("F162M", "F164N")  # in the pupil wheel, with FILTER=F150W2
NIRCAM_LW_FILTERS = ("F250M", "F277W", "F300M", "F322W2", "F335M", "F356W", "F360M", "F410M", "F430M", "F444W", "F460M", "F480M")
NIRCAM_LW_PUPIL_FILTERS = ("F323N", "F405N", "F466N", "F470N")  # with FILTER=F322W2/F444W
NIRISS_PUPIL_FILTERS = ("F090W", "F115W", "F140M", "F150W", "F158M", "F200W")  # FILTER=CLEAR
NIRISS_FILTER_FILTERS = ("F277W", "F356W", "F380M", "F430M", "F444W", "F480M")  # PUPIL=CLEARP
MIRI_FILTERS = ("F560W", "F770W", "F1000W", "F1130W", "F1280W", "F1500W", "F1800W", "F2100W", "F2550W")

# Readout patterns: name -> (NFRAMES, GROUPGAP)
READOUT_PATTERNS = {
    "NIRCAM": {"RAPID": (1, 0), "BRIGHT1": (1, 1), "BRIGHT2": (2, 0), "SHALLOW2": (2, 3), "SHALLOW4": (4, 1),
               "MEDIUM2": (2, 8), "MEDIUM8": (8, 2), "DEEP2": (2, 18), "DEEP8": (8, 12)},
    "NIRISS": {"NISRAPID": (1, 0), "NIS": (4, 0)},
    "FGS": {"FGSRAPID": (1, 0), "FGS": (4, 0)},
    "MIRI": {"FASTR1": (1, 0)},
}
DEFAULT_READPATT = {"NIRCAM": "RAPID", "NIRISS": "NISRAPID", "FGS": "FGSRAPID", "MIRI": "FASTR1"}

# MIRI imager subarrays: name -> (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2, TFRAME).  The frame
# times are the published ones (MIRI reads rows and skips columns in ways that no simple formula gives).
MIRI_SUBARRAYS = {
    "FULL": (1, 1, 1032, 1024, 2.77504),
    "BRIGHTSKY": (457, 51, 512, 512, 0.86528),
    "SUB256": (413, 51, 256, 256, 0.29952),
    "SUB128": (1, 889, 136, 128, 0.11904),
    "SUB64": (1, 779, 72, 64, 0.08544),
}
MIRI_SIZE_TO_SUBARRAY = {1024: "FULL", 512: "BRIGHTSKY", 256: "SUB256", 128: "SUB128", 64: "SUB64"}


@dataclass(frozen=True)
class GuiderMode:
    """An FGS guider readout, as in real flight headers (../shared/data/real/fgs_headers)."""

    exp_type: str
    readpatt: str
    subarray: str
    xsize: int
    ysize: int
    nints: int
    ngroups: int
    nframes: int
    groupgap: int
    colpad: int
    rowpad: int
    extra_frames: int  # frames counted in EFFINTTM beyond the ramp (ACQ1/ACQ2)
    starts: dict  # DETECTOR -> (SUBSTRT1, SUBSTRT2)
    file_tag: str  # jw..._gs-<tag>_..._uncal.fits
    pcs_mode: str


GUIDER_MODES = {
    "FGS_ACQ1": GuiderMode("FGS_ACQ1", "ACQ1", "128X128", 128, 128, 6, 2, 1, 1, 12, 2, 1,
                           {"GUIDER1": (1018, 841), "GUIDER2": (982, 958)}, "acq1", "TRACK"),
    "FGS_ACQ2": GuiderMode("FGS_ACQ2", "ACQ2", "32X32", 32, 32, 5, 2, 1, 3, 6, 1, 1,
                           {"GUIDER1": (1067, 914), "GUIDER2": (1046, 1001)}, "acq2", "TRACK"),
    "FGS_TRACK": GuiderMode("FGS_TRACK", "TRACK", "32X32", 32, 32, 192, 2, 1, 1, 6, 1, 0,
                            {"GUIDER1": (1214, 197), "GUIDER2": (1074, 1046)}, "track", "TRACK"),
    "FGS_FINEGUIDE": GuiderMode("FGS_FINEGUIDE", "FINEGUIDE", "8X8", 8, 8, 2048, 8, 4, 39, 6, 1, 0,
                                {"GUIDER1": (1226, 209), "GUIDER2": (1086, 1058)}, "fg", "FINEGUIDE"),
    "FGS_ID-IMAGE": GuiderMode("FGS_ID-IMAGE", "ID", "2048X64", 2024, 2048, 2, 2, 1, 0, 12, 1, 0,
                               {"GUIDER1": (13, 1), "GUIDER2": (13, 1)}, "id_1_image", "NONE"),
    "FGS_ID-STACK": GuiderMode("FGS_ID-STACK", "ID", "2048X64", 2304, 2048, 2, 2, 1, 0, 12, 1, 0,
                               {"GUIDER1": (1, 1), "GUIDER2": (1, 1)}, "id_1_stacked", "NONE"),
}
ID_STRIPS, ID_STRIP_WIDTH = 36, 64  # ID-STACK: 36 overlapping 64-pixel strips along the slow axis

# Typical background (MJy/sr) at a low-to-moderate zodiacal latitude: zodiacal light, then the
# telescope's thermal emission beyond ~17 um.  Interpolated in log between these points.
_SKY_TABLE = ((0.7, 0.10), (1.0, 0.12), (2.0, 0.15), (3.5, 0.18), (4.5, 0.30), (5.6, 1.0), (7.7, 5.0),
              (10.0, 14.0), (12.8, 25.0), (15.0, 40.0), (18.0, 80.0), (21.0, 200.0), (25.5, 600.0))


def sky_surface_brightness(wavelength_um: float) -> float:
    lam = np.array([w for w, _ in _SKY_TABLE])
    sb = np.log([v for _, v in _SKY_TABLE])
    return float(np.exp(np.interp(wavelength_um, lam, sb)))


# ---------------------------------------------------------------------------
# exposure setup


@dataclass
class Setup:
    """Everything about one detector readout that is the same for all dithers."""

    inst_key: str  # nircam | niriss | miri | fgs
    instrument: str  # INSTRUME
    detector: str  # DETECTOR
    siaf_prefix: str  # NRCA1, NRCA5, NIS, MIRIM, FGS1
    sca_num: int
    exp_type: str
    readpatt: str
    nframes: int
    groupgap: int
    ngroups: int
    nints: int
    subarray: str
    xstart: int
    ystart: int
    xsize: int
    ysize: int
    fastaxis: int
    slowaxis: int
    noutputs: int
    tframe: float
    filter: str | None
    pupil: str | None
    aperture: str  # APERNAME
    v2_ref: float
    v3_ref: float
    v3yangle: float
    vparity: int
    xref_sci: float
    yref_sci: float
    xscale: float  # arcsec/pixel
    yscale: float
    v2_aim: float  # where the target lands at dither position 0 (V2, V3 arcsec)
    v3_aim: float
    full_shape: tuple[int, int]  # (ny, nx) of the full frame
    pixel_pitch_cm: float
    guider: GuiderMode | None = None
    col_map: np.ndarray | None = None  # full-frame column (0-based) of each output column
    row_map: np.ndarray | None = None
    drift_scale: float = 1.0  # scale of the per-group amplifier offsets (refs/sim/miri_lrs.py: 0 on SLITLESSPRISM)

    def __post_init__(self):
        if self.col_map is None:
            self.col_map = np.arange(self.xstart - 1, self.xstart - 1 + self.xsize)
        if self.row_map is None:
            self.row_map = np.arange(self.ystart - 1, self.ystart - 1 + self.ysize)

    # timing -------------------------------------------------------------
    @property
    def tgroup(self) -> float:
        return (self.nframes + self.groupgap) * self.tframe

    @property
    def frames_per_integration(self) -> int:
        return self.ngroups * (self.nframes + self.groupgap) - self.groupgap

    @property
    def effinttm(self) -> float:
        extra = self.guider.extra_frames if self.guider else 0
        return (self.frames_per_integration + extra) * self.tframe

    @property
    def duration(self) -> float:
        # integrations plus the reset frame(s) between them
        nresets = 1
        return (self.nints * self.frames_per_integration + (self.nints - 1) * nresets) * self.tframe

    @property
    def wavelength(self) -> float:
        for name in (self.pupil, self.filter):
            if name in PIVOT:
                return PIVOT[name]
        return 2.5  # FGS: no filter, a broad 0.6-5 um band

    @property
    def fwhm_arcsec(self) -> float:
        diffraction = 1.03 * self.wavelength * 1e-6 / TELESCOPE_DIAMETER * 206264.806
        return math.hypot(diffraction, JITTER_FWHM)

    @property
    def is_miri(self) -> bool:
        return self.instrument == "MIRI"


@functools.lru_cache(maxsize=8)
def _siaf(instrument: str):
    import logging
    import warnings

    logging.getLogger("pysiaf").setLevel(logging.ERROR)  # its offline PRD-version warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pysiaf

    return pysiaf.Siaf({"NIRCAM": "NIRCam", "NIRISS": "NIRISS", "MIRI": "MIRI", "FGS": "FGS"}[instrument])


def _readout_axes(instrument: str, full_aperture) -> tuple[int, int]:
    """FASTAXIS/SLOWAXIS from the SIAF detector-to-science orientation.

    NIRCam and MIRI read fast along the detector's x; NIRISS and FGS along y.
    """
    parity = int(full_aperture.DetSciParity)
    angle = int(round(float(full_aperture.DetSciYAngle))) % 360
    # science = R(angle) . diag(parity, 1) . detector, for angle 0 or 180
    sx = parity * (1 if angle == 0 else -1)
    sy = 1 if angle == 0 else -1
    if instrument in ("NIRCAM", "MIRI"):
        return sx * 1, sy * 2
    return sy * 2, sx * 1


def _nir_frame_time(nfast: int, nslow: int, noutputs: int, colpad: int = 12, rowpad: int | None = None) -> float:
    """Frame time of a SIDECAR-read NIR detector.

    ``(nfast/noutputs + colpad) * (nslow + rowpad) [+ 1]`` samples of 10 us: full frames (4
    outputs) pad one row and add one sample, 1-output subarrays pad two rows (three for the
    smallest, 8x8 or less).  Reproduces NIRCam/NIRISS/FGS full frame 10.73677 s, SUB64P 0.05016 s,
    FGS ACQ1 128x128 0.182 s, TRACK 32x32 0.01254 s and FINEGUIDE 8x8 0.00126 s.
    """
    if rowpad is None:
        rowpad = 1 if noutputs == 4 else (3 if nfast <= 8 and nslow <= 8 else 2)
    fullpad = 1 if noutputs == 4 and nslow == 2048 else 0
    samples = (nfast / noutputs + colpad) * (nslow + rowpad) + fullpad
    return round(samples * SAMPLE_TIME, 8)


def _full_aperture_name(instrument: str, siaf_prefix: str) -> str:
    return {"NIRCAM": f"{siaf_prefix}_FULL", "NIRISS": "NIS_CEN", "MIRI": "MIRIM_FULL", "FGS": f"{siaf_prefix}_FULL"}[instrument]


def make_setup(
    instrument: str = "nircam",
    detector: str | None = None,
    size: int | None = None,
    subarray: str | None = None,
    ngroups: int | None = None,
    nints: int | None = None,
    filter: str | None = None,  # noqa: A002 - the JWST keyword's name
    pupil: str | None = None,
    readpatt: str | None = None,
    exp_type: str | None = None,
) -> Setup:
    """Resolve the user's choices into a complete detector/readout setup (raises ParameterError)."""
    inst_key = (instrument or "nircam").lower()
    if inst_key not in ("nircam", "niriss", "miri", "fgs"):
        raise ParameterError(f"unknown instrument {instrument!r}; choose nircam, niriss, miri or fgs")
    inst = inst_key.upper()
    if size is not None and subarray is not None:
        raise ParameterError("give either --size or --subarray, not both")
    if size is not None and size < 8:
        raise ParameterError(f"--size must be at least 8 (got {size})")
    for name, v in (("ngroups", ngroups), ("nints", nints)):
        if v is not None and v < 1:
            raise ParameterError(f"--{name} must be at least 1 (got {v})")

    # detector ------------------------------------------------------------
    if inst == "NIRCAM":
        det = (detector or "NRCA1").upper()
        if det in ("NRCA5", "NRCB5"):
            det = det[:4] + "LONG"
        if det not in NIRCAM_DETECTORS:
            raise ParameterError(f"unknown NIRCam detector {detector!r}; choose one of {', '.join(NIRCAM_DETECTORS)}")
        siaf_prefix, sca, channel = NIRCAM_DETECTORS[det]
    elif inst == "NIRISS":
        det = (detector or "NIS").upper()
        if det != "NIS":
            raise ParameterError(f"NIRISS has one detector, NIS (got {detector!r})")
        siaf_prefix, sca, channel = "NIS", 496, None
    elif inst == "MIRI":
        det = (detector or "MIRIMAGE").upper()
        if det != "MIRIMAGE":
            raise ParameterError(f"MIRI imaging uses the MIRIMAGE detector (got {detector!r})")
        siaf_prefix, sca, channel = "MIRIM", 493, None
    else:
        det = (detector or "GUIDER1").upper()
        if det not in ("GUIDER1", "GUIDER2"):
            raise ParameterError(f"FGS detectors are GUIDER1 and GUIDER2 (got {detector!r})")
        siaf_prefix, sca, channel = ("FGS1", 497, None) if det == "GUIDER1" else ("FGS2", 498, None)

    # exposure type --------------------------------------------------------
    default_type = {"NIRCAM": "NRC_IMAGE", "NIRISS": "NIS_IMAGE", "MIRI": "MIR_IMAGE", "FGS": "FGS_IMAGE"}[inst]
    etype = (exp_type or default_type).upper()
    guider = GUIDER_MODES.get(etype)
    if etype != default_type and guider is None:
        allowed = [default_type] + (list(GUIDER_MODES) if inst == "FGS" else [])
        raise ParameterError(f"exposure type {exp_type!r} is not simulated for {inst}; choose {', '.join(allowed)}")
    if guider is not None and inst != "FGS":
        raise ParameterError(f"{etype} is an FGS guider mode; use --instrument fgs")

    # filter / pupil --------------------------------------------------------
    filt, pup = _resolve_optics(inst, channel, filter, pupil, guider is not None)

    # geometry ------------------------------------------------------------
    siaf = _siaf(inst)
    full_name = _full_aperture_name(inst, siaf_prefix)
    full = siaf[full_name]
    fastaxis, slowaxis = _readout_axes(inst, full)
    full_shape = (1024, 1032) if inst == "MIRI" else (2048, 2048)
    col_map = row_map = None
    aper = full
    aper_name = full_name
    if guider is not None:
        if size is not None or subarray is not None:
            raise ParameterError(f"{etype} has a fixed subarray ({guider.subarray}); drop --size/--subarray")
        sub_name = guider.subarray
        xstart, ystart = guider.starts[det]
        xsize, ysize = guider.xsize, guider.ysize
        noutputs = 4 if etype.startswith("FGS_ID") else 1
        if etype == "FGS_ID-STACK":
            # strips along the slow axis (x), stacked: 36 x 64 columns with overlaps
            starts = np.round(np.arange(ID_STRIPS) * (full_shape[1] - ID_STRIP_WIDTH) / (ID_STRIPS - 1)).astype(int)
            col_map = (starts[:, None] + np.arange(ID_STRIP_WIDTH)[None, :]).ravel()
        if etype.startswith("FGS_ID"):
            tframe = _nir_frame_time(full_shape[0], ID_STRIP_WIDTH, 4, colpad=guider.colpad, rowpad=guider.rowpad)
        else:
            nfast, nslow = (ysize, xsize) if abs(fastaxis) == 2 else (xsize, ysize)
            tframe = _nir_frame_time(nfast, nslow, 1, colpad=guider.colpad, rowpad=guider.rowpad)
        readpatt_name, nframes, groupgap = guider.readpatt, guider.nframes, guider.groupgap
        ngroups = ngroups or guider.ngroups
        nints = nints or guider.nints
        if readpatt and readpatt.upper() != guider.readpatt:
            raise ParameterError(f"{etype} uses readout pattern {guider.readpatt}")
    elif inst == "MIRI":
        if subarray is None:
            if size is None:
                subarray = "FULL"
            elif size in MIRI_SIZE_TO_SUBARRAY:
                subarray = MIRI_SIZE_TO_SUBARRAY[size]
            else:
                raise ParameterError(
                    f"MIRI reads only named subarrays; --size must be one of {sorted(MIRI_SIZE_TO_SUBARRAY)} "
                    f"({', '.join(f'{k}: {v}' for k, v in sorted(MIRI_SIZE_TO_SUBARRAY.items()))})"
                )
        sub_name = subarray.upper()
        if sub_name not in MIRI_SUBARRAYS:
            raise ParameterError(f"unknown MIRI imager subarray {subarray!r}; choose one of {', '.join(MIRI_SUBARRAYS)}")
        xstart, ystart, xsize, ysize, tframe = MIRI_SUBARRAYS[sub_name]
        if sub_name != "FULL":
            aper_name = f"MIRIM_{sub_name}"
            aper = siaf[aper_name]
        noutputs = 4
        readpatt_name = (readpatt or DEFAULT_READPATT[inst]).upper()
        if readpatt_name not in READOUT_PATTERNS[inst]:
            raise ParameterError(f"readout pattern {readpatt!r} is not simulated for MIRI; choose {', '.join(READOUT_PATTERNS[inst])}")
        nframes, groupgap = READOUT_PATTERNS[inst][readpatt_name]
    else:
        readpatt_name = (readpatt or DEFAULT_READPATT[inst]).upper()
        if readpatt_name not in READOUT_PATTERNS[inst]:
            raise ParameterError(
                f"readout pattern {readpatt!r} is not valid for {inst}; choose {', '.join(READOUT_PATTERNS[inst])}"
            )
        nframes, groupgap = READOUT_PATTERNS[inst][readpatt_name]
        if subarray is not None and subarray.upper() != "FULL":
            sub_name = subarray.upper()
            name = f"{siaf_prefix}_{sub_name}" if inst != "NIRISS" else f"NIS_{sub_name}"
            if name not in siaf.apernames or siaf[name].AperType != "SUBARRAY":
                known = sorted(n.split("_", 1)[1] for n in siaf.apernames
                               if n.startswith(full_name.split("_")[0] + "_") and siaf[n].AperType == "SUBARRAY")
                raise ParameterError(f"no subarray {subarray!r} on {det}; SIAF has {', '.join(known) or 'none'}")
            aper = siaf[name]
            aper_name = name
            xstart, ystart, xsize, ysize = _subarray_in_full_frame(aper, full)
        elif size is not None and size < 2048:
            # A GENERIC square subarray in the science-frame corner (1, 1): it contains 4 rows
            # and 4 columns of reference pixels, like the real corner subarrays (SUB64P ...).
            sub_name = "GENERIC"
            xstart = ystart = 1
            xsize = ysize = int(size)
        else:
            if size is not None and size != 2048:
                raise ParameterError(f"--size {size} is larger than the {inst} detector (2048)")
            sub_name, xstart, ystart, xsize, ysize = "FULL", 1, 1, 2048, 2048
        noutputs = 4 if (xsize == 2048 and ysize == 2048) else 1
        nfast, nslow = (ysize, xsize) if abs(fastaxis) == 2 else (xsize, ysize)
        tframe = _nir_frame_time(nfast, nslow, noutputs)

    ngroups = ngroups or (5 if inst == "MIRI" else 10 if sub_name == "FULL" else 5)
    nints = nints or 1
    if inst == "MIRI" and ngroups < 2:
        raise ParameterError("MIRI exposures need at least 2 groups")

    # reference point ------------------------------------------------------
    if sub_name == "GENERIC":
        # the SIAF full-frame aperture, evaluated at the subarray's centre
        xref_full = xstart - 1 + (xsize + 1) / 2.0
        yref_full = ystart - 1 + (ysize + 1) / 2.0
        v2, v3 = full.sci_to_tel(xref_full, yref_full)
        v2_ref, v3_ref = float(v2), float(v3)
        xref_sci, yref_sci = (xsize + 1) / 2.0, (ysize + 1) / 2.0
    elif guider is not None:
        # guider headers carry the FGS full-frame aperture; the guide star sits in the window's centre
        v2_ref, v3_ref = float(full.V2Ref), float(full.V3Ref)
        xref_sci, yref_sci = float(full.XSciRef) - (xstart - 1), float(full.YSciRef) - (ystart - 1)
    else:
        v2_ref, v3_ref = float(aper.V2Ref), float(aper.V3Ref)
        xref_sci, yref_sci = float(aper.XSciRef), float(aper.YSciRef)
    v2_aim, v3_aim = v2_ref, v3_ref
    if guider is not None and not etype.startswith("FGS_ID"):
        v2c, v3c = full.sci_to_tel(xstart - 1 + (xsize + 1) / 2.0, ystart - 1 + (ysize + 1) / 2.0)
        v2_aim, v3_aim = float(v2c), float(v3c)
    return Setup(
        inst_key=inst_key, instrument=inst, detector=det, siaf_prefix=siaf_prefix, sca_num=sca, exp_type=etype,
        readpatt=readpatt_name, nframes=nframes, groupgap=groupgap, ngroups=int(ngroups), nints=int(nints),
        subarray=sub_name, xstart=int(xstart), ystart=int(ystart), xsize=int(xsize), ysize=int(ysize),
        fastaxis=fastaxis, slowaxis=slowaxis, noutputs=noutputs, tframe=float(tframe), filter=filt, pupil=pup,
        aperture=aper_name, v2_ref=v2_ref, v3_ref=v3_ref, v3yangle=float(aper.V3IdlYAngle),
        vparity=int(aper.VIdlParity), xref_sci=xref_sci, yref_sci=yref_sci,
        xscale=float(full.XSciScale), yscale=float(full.YSciScale), v2_aim=v2_aim, v3_aim=v3_aim, full_shape=full_shape,
        pixel_pitch_cm=25e-4 if inst == "MIRI" else 18e-4, guider=guider, col_map=col_map, row_map=row_map,
    )


def _subarray_in_full_frame(aper, full) -> tuple[int, int, int, int]:
    """SUBSTRT1/2 and SUBSIZE1/2 (science frame, 1-based) of a SIAF subarray aperture."""
    cx, cy = aper.corners("det")
    sx, sy = full.det_to_sci(np.asarray(cx), np.asarray(cy))
    xstart = int(round(float(np.min(sx)) + 0.5))
    ystart = int(round(float(np.min(sy)) + 0.5))
    return xstart, ystart, int(aper.XSciSize), int(aper.YSciSize)


def _resolve_optics(inst, channel, filt, pup, guider):
    filt = filt.upper() if filt else None
    pup = pup.upper() if pup else None
    if inst == "FGS":
        if filt or pup:
            raise ParameterError("FGS has no filter or pupil wheel")
        return None, None
    if inst == "MIRI":
        filt = filt or "F770W"
        if filt not in MIRI_FILTERS:
            raise ParameterError(f"unknown MIRI imaging filter {filt!r}; choose one of {', '.join(MIRI_FILTERS)}")
        return filt, None
    if inst == "NIRISS":
        # short filters sit in the pupil wheel (FILTER=CLEAR), long ones in the filter wheel (PUPIL=CLEARP)
        name = pup if (pup and pup not in ("CLEAR", "CLEARP")) else filt
        name = name or "F150W"
        if name in ("CLEAR", "CLEARP"):
            name = "F150W"
        if name in NIRISS_PUPIL_FILTERS:
            return "CLEAR", name
        if name in NIRISS_FILTER_FILTERS:
            return name, "CLEARP"
        raise ParameterError(f"unknown NIRISS imaging filter {name!r}; choose one of {', '.join(NIRISS_PUPIL_FILTERS + NIRISS_FILTER_FILTERS)}")
    # NIRCam
    sw = channel == "SW"
    filt = filt or ("F200W" if sw else "F444W")
    pup = pup or "CLEAR"
    ok_filters = NIRCAM_SW_FILTERS if sw else NIRCAM_LW_FILTERS
    ok_pupils = ("CLEAR",) + (NIRCAM_SW_PUPIL_FILTERS if sw else NIRCAM_LW_PUPIL_FILTERS)
    if filt not in ok_filters:
        raise ParameterError(
            f"filter {filt} is not in the NIRCam {'short' if sw else 'long'}-wavelength channel; choose one of {', '.join(ok_filters)}"
        )
    if pup not in ok_pupils:
        raise ParameterError(f"pupil {pup} is not an imaging pupil of the {channel} channel; choose one of {', '.join(ok_pupils)}")
    return filt, pup


# ---------------------------------------------------------------------------
# sky <-> telescope (V2, V3) rotations


def _unit(lon_deg, lat_deg):
    lon = np.deg2rad(lon_deg)
    lat = np.deg2rad(lat_deg)
    return np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _lonlat(vec):
    x, y, z = vec
    lon = np.rad2deg(np.arctan2(y, x))
    lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def attitude_matrix(v2_arcsec: float, v3_arcsec: float, ra: float, dec: float, pa: float) -> np.ndarray:
    """The rotation taking telescope unit vectors to sky: (v2, v3) points at (ra, dec) with V3 at position angle pa."""
    import pysiaf.utils.rotations as rot

    return np.asarray(rot.attitude(v2_arcsec, v3_arcsec, ra, dec, pa), dtype=float)


def tel_to_sky(att, v2_arcsec, v3_arcsec):
    ra, dec = _lonlat(att @ _unit(np.asarray(v2_arcsec) / 3600.0, np.asarray(v3_arcsec) / 3600.0))
    return np.mod(ra, 360.0), dec


def sky_to_tel(att, ra, dec):
    v2, v3 = _lonlat(att.T @ _unit(np.asarray(ra), np.asarray(dec)))
    v2 = np.where(v2 > 180.0, v2 - 360.0, v2)
    return v2 * 3600.0, v3 * 3600.0


def position_angle(att, v2_arcsec: float, v3_arcsec: float) -> float:
    """Position angle (deg, east of north) of the +V3 direction at (v2, v3)."""
    eps = 1.0  # arcsec
    ra0, dec0 = tel_to_sky(att, v2_arcsec, v3_arcsec)
    ra1, dec1 = tel_to_sky(att, v2_arcsec, v3_arcsec + eps)
    d_ra = np.deg2rad(ra1 - ra0)
    d0, d1 = np.deg2rad(dec0), np.deg2rad(dec1)
    pa = np.arctan2(np.sin(d_ra) * np.cos(d1), np.cos(d0) * np.sin(d1) - np.sin(d0) * np.cos(d1) * np.cos(d_ra))
    return float(np.mod(np.rad2deg(pa), 360.0))


def ideal_to_tel(setup: Setup, x_idl, y_idl, v2_ref=None, v3_ref=None):
    """jwst's planar IdealToV2V3 about the aperture's reference point (or another origin)."""
    ang = np.deg2rad(setup.v3yangle)
    v2_ref = setup.v2_ref if v2_ref is None else v2_ref
    v3_ref = setup.v3_ref if v3_ref is None else v3_ref
    v2 = v2_ref + setup.vparity * x_idl * np.cos(ang) + y_idl * np.sin(ang)
    v3 = v3_ref - setup.vparity * x_idl * np.sin(ang) + y_idl * np.cos(ang)
    return v2, v3


@dataclass
class Pointing:
    """One dither position: the attitude and the header keywords that describe it."""

    attitude: np.ndarray
    x_offset: float  # arcsec, ideal frame
    y_offset: float
    ra_ref: float
    dec_ref: float
    roll_ref: float
    ra_v1: float
    dec_v1: float
    pa_v3: float


def make_pointing(setup: Setup, target_ra: float, target_dec: float, pa_v3: float, x_offset: float, y_offset: float) -> Pointing:
    """Point so that the target lands at ideal (x_offset, y_offset) with V3 at ``pa_v3`` at V1.

    That is how jwst reads XOFFSET/YOFFSET (assign_wcs stores the sky position of ideal
    (XOFFSET, YOFFSET) as the dithered pointing).  A dither translates the telescope and
    keeps PA_V3, so the local roll at the target is solved for by fixed-point iteration.
    """
    v2t, v3t = ideal_to_tel(setup, x_offset, y_offset, setup.v2_aim, setup.v3_aim)
    pa = pa_v3
    for _ in range(6):
        att = attitude_matrix(v2t, v3t, target_ra, target_dec, pa)
        err = (pa_v3 - position_angle(att, 0.0, 0.0) + 180.0) % 360.0 - 180.0
        pa += err
        if abs(err) < 1e-10:
            break
    att = attitude_matrix(v2t, v3t, target_ra, target_dec, pa)
    ra_ref, dec_ref = tel_to_sky(att, setup.v2_ref, setup.v3_ref)
    ra_v1, dec_v1 = tel_to_sky(att, 0.0, 0.0)
    return Pointing(
        attitude=att, x_offset=float(x_offset), y_offset=float(y_offset),
        ra_ref=float(ra_ref), dec_ref=float(dec_ref), roll_ref=position_angle(att, setup.v2_ref, setup.v3_ref),
        ra_v1=float(ra_v1), dec_v1=float(dec_v1), pa_v3=position_angle(att, 0.0, 0.0),
    )


def dither_offsets(setup: Setup, nexp: int) -> list[tuple[float, float]]:
    """Ideal-frame offsets (arcsec) of an ``nexp``-point pattern scaled to the field.

    A box of large steps (a tenth of the field, at most 60 pixels) with a sub-pixel
    phase that differs at every position, so that the dithers sample the pixels.
    """
    step = max(2.0, min(60.0, 0.1 * min(setup.xsize, setup.ysize)))
    box = [(0.0, 0.0), (1.0, 0.5), (0.5, 1.0), (1.5, 1.5), (-0.5, 1.0), (1.0, -0.5), (-0.5, -0.5), (2.0, 0.0), (0.0, 2.0)]
    out = []
    for k in range(nexp):
        bx, by = box[k % len(box)]
        cycle = k // len(box)
        dx = step * (bx + 0.25 * cycle) + 0.5 * ((k * 5) % 8) / 8.0
        dy = step * (by + 0.25 * cycle) + 0.5 * ((k * 3) % 8) / 8.0
        if k == 0:
            dx = dy = 0.0
        out.append((round(dx * setup.xscale, 6), round(dy * setup.yscale, 6)))
    return out


# ---------------------------------------------------------------------------
# pixel <-> V2V3, the reference distortion chain


class PixelMap:
    """Pixel (0-based, full-frame science frame) <-> V2V3 (arcsec) as jwst's assign_wcs builds it.

    ``distortion`` is the reference's transform (full-frame pixels -> V2, V3), preceded by the
    filter offset shift.  Without a distortion reference the SIAF polynomials are used.
    """

    def __init__(self, setup: Setup, refs: dict):
        self.setup = setup
        dist = refs.get("distortion")
        self.model = getattr(dist, "model", None) if dist is not None else None
        self.col_offset = self.row_offset = 0.0
        fo = refs.get("filteroffset")
        if fo is not None and self.model is not None:
            self.col_offset, self.row_offset = _filter_offset(fo, setup)
        self._full = _siaf(setup.instrument)[_full_aperture_name(setup.instrument, setup.siaf_prefix)]

    def to_v2v3(self, x, y):
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if self.model is None:
            v2, v3 = self._full.sci_to_tel(x + 1.0, y + 1.0)
            return np.asarray(v2, float), np.asarray(v3, float)
        v2, v3 = self.model(x + self.col_offset, y + self.row_offset)
        return np.asarray(v2, float), np.asarray(v3, float)

    def to_pixel(self, v2, v3):
        v2 = np.atleast_1d(np.asarray(v2, float))
        v3 = np.atleast_1d(np.asarray(v3, float))
        try:
            if self.model is None:
                x, y = self._full.tel_to_sci(v2, v3)
                x, y = np.asarray(x, float) - 1.0, np.asarray(y, float) - 1.0
            else:
                x, y = self.model.inverse(v2, v3)
                x = np.asarray(x, float) - self.col_offset
                y = np.asarray(y, float) - self.row_offset
        except (NotImplementedError, AttributeError):
            x = np.full(v2.shape, self.setup.full_shape[1] / 2.0)
            y = np.full(v2.shape, self.setup.full_shape[0] / 2.0)
        x = np.where(np.isfinite(x), x, self.setup.full_shape[1] / 2.0)
        y = np.where(np.isfinite(y), y, self.setup.full_shape[0] / 2.0)
        # Newton refinement on the forward transform: the inverse is an approximation.
        h = 0.05
        for _ in range(8):
            fx, fy = self.to_v2v3(x, y)
            rx, ry = fx - v2, fy - v3
            if np.nanmax(np.abs(np.concatenate([rx, ry]))) < 1e-7:
                break
            ax, ay = self.to_v2v3(x + h, y)
            bx, by = self.to_v2v3(x, y + h)
            j11, j21 = (ax - fx) / h, (ay - fy) / h
            j12, j22 = (bx - fx) / h, (by - fy) / h
            det = j11 * j22 - j12 * j21
            x = x - (j22 * rx - j12 * ry) / det
            y = y - (-j21 * rx + j11 * ry) / det
        return x, y


def _filter_offset(fo, setup: Setup) -> tuple[float, float]:
    rows = getattr(fo, "filters", None) or []
    for row in rows:
        if str(row.get("filter", "")).upper() != (setup.filter or ""):
            continue
        if setup.instrument == "NIRCAM" and "pupil" in row and str(row["pupil"]).upper() != (setup.pupil or ""):
            continue
        c, r = row.get("column_offset", "N/A"), row.get("row_offset", "N/A")
        if c != "N/A" and r != "N/A":
            return float(c), float(r)
    return 0.0, 0.0


# ---------------------------------------------------------------------------
# metadata


@dataclass
class ObservationIds:
    program: str = "01234"
    observation: str = "001"
    visit: str = "001"
    visit_group: str = "02"
    sequence: str = "1"
    activity: str = "01"


def exposure_filename(setup: Setup, ids: ObservationIds, exposure_number: int, start: _dt.datetime) -> str:
    root = f"jw{ids.program}{ids.observation}{ids.visit}"
    if setup.guider is not None:
        if setup.guider.exp_type.startswith("FGS_ID"):
            return f"{root}_gs-{setup.guider.file_tag.replace('_1_', f'_{exposure_number}_')}_uncal.fits"
        stamp = start.strftime("%Y") + f"{start.timetuple().tm_yday:03d}" + start.strftime("%H%M%S")
        return f"{root}_gs-{setup.guider.file_tag}_{stamp}_uncal.fits"
    return (
        f"{root}_{ids.visit_group}{ids.sequence}{ids.activity}_{exposure_number:05d}_{setup.detector.lower()}_uncal.fits"
    )


def _mjd(t: _dt.datetime) -> float:
    epoch = _dt.datetime(1858, 11, 17)
    return (t - epoch).total_seconds() / 86400.0


def fill_metadata(model, setup: Setup, ids: ObservationIds, pointing: Pointing, exposure_number: int, nexp: int,
                  start: _dt.datetime, target_ra: float, target_dec: float) -> None:
    """Write every header keyword of a real uncal exposure that the pipeline reads."""
    m = model.meta
    end = start + _dt.timedelta(seconds=setup.duration)
    mid = start + (end - start) / 2
    m.telescope = "JWST"
    m.origin = "STSCI"
    m.filetype = "uncalibrated"
    m.date = end.isoformat(timespec="milliseconds")
    m.bunit_data = "DN"
    m.data_processing_software_version = "webbflow-simulator"
    # instrument
    m.instrument.name = setup.instrument
    m.instrument.detector = setup.detector
    if setup.instrument == "NIRCAM":
        m.instrument.module = setup.detector[3]
        m.instrument.channel = "LONG" if setup.detector.endswith("LONG") else "SHORT"
    if setup.filter:
        m.instrument.filter = setup.filter
    if setup.pupil:
        m.instrument.pupil = setup.pupil
    m.instrument.focus_position = 0.0
    # exposure
    e = m.exposure
    e.type = setup.exp_type
    e.readpatt = setup.readpatt
    e.nints, e.ngroups = setup.nints, setup.ngroups
    e.nframes, e.groupgap = setup.nframes, setup.groupgap
    e.frame_divisor = setup.nframes
    e.drop_frames1, e.drop_frames3 = (1, 1) if setup.guider else (0, 0)
    e.nsamples, e.sample_time = 1, SAMPLE_TIME * 1e6
    e.frame_time = setup.tframe
    e.group_time = round(setup.tgroup, 8)
    e.integration_time = round(setup.effinttm, 8)
    e.exposure_time = round(setup.effinttm * setup.nints, 8)
    e.effective_exposure_time = e.exposure_time
    e.duration = round(setup.duration, 8)
    e.elapsed_exposure_time = e.duration
    e.nresets_at_start = 1
    e.nresets_between_ints = 1
    e.noutputs = setup.noutputs
    e.integration_start, e.integration_end = 1, setup.nints
    e.zero_frame = False
    e.data_problem = False
    e.sca_num = setup.sca_num
    e.start_time = e.start_time_mjd = _mjd(start)
    e.mid_time = e.mid_time_mjd = _mjd(mid)
    e.end_time = e.end_time_mjd = _mjd(end)
    e.count = exposure_number
    # subarray
    s = m.subarray
    s.name = setup.subarray
    s.xstart, s.ystart, s.xsize, s.ysize = setup.xstart, setup.ystart, setup.xsize, setup.ysize
    s.fastaxis, s.slowaxis = setup.fastaxis, setup.slowaxis
    # observation ids
    o = m.observation
    o.date = start.strftime("%Y-%m-%d")
    o.time = start.strftime("%H:%M:%S.") + f"{start.microsecond // 1000:03d}"
    o.date_beg = start.isoformat(timespec="milliseconds")
    o.date_end = end.isoformat(timespec="milliseconds")
    o.program_number = ids.program
    o.observation_number = ids.observation
    o.visit_number = ids.visit
    o.visit_group = ids.visit_group
    o.sequence_id = ids.sequence
    o.activity_id = ids.activity
    o.exposure_number = f"{exposure_number:05d}"
    o.visit_id = f"{ids.program}{ids.observation}{ids.visit}"
    o.obs_id = f"V{ids.program}{ids.observation}{ids.visit}P00000000{ids.visit_group}{ids.sequence}{ids.activity}"
    o.template = {"NIRCAM": "NIRCam Imaging", "NIRISS": "NIRISS Imaging", "MIRI": "MIRI Imaging", "FGS": "FGS Imaging"}[setup.instrument]
    o.observation_label = "webbflow simulated star field"
    m.program.title = "webbflow simulated observation"
    m.program.pi_name = "Simulator, Webbflow"
    m.program.category = "CAL"
    m.visit.type = "PRIME_TARGETED_FIXED"
    m.visit.start_time = start.strftime("%Y-%m-%d %H:%M:%S.%f")
    m.visit.total_exposures = nexp
    m.visit.tsovisit = False
    m.visit.crowded_field = False
    m.visit.engineering_quality = "OK"
    # target
    m.target.proposer_name = "SIMFIELD"
    m.target.catalog_name = "SIMFIELD"
    m.target.type = "FIXED"
    m.target.ra = m.target.proposer_ra = float(target_ra)
    m.target.dec = m.target.proposer_dec = float(target_dec)
    # aperture and pointing
    m.aperture.name = setup.aperture
    m.aperture.pps_name = setup.aperture
    m.aperture.position_angle = (pointing.roll_ref + setup.v3yangle) % 360.0
    m.pointing.ra_v1, m.pointing.dec_v1, m.pointing.pa_v3 = pointing.ra_v1, pointing.dec_v1, pointing.pa_v3
    m.coordinates.reference_frame = "ICRS"
    w = m.wcsinfo
    w.v2_ref, w.v3_ref = setup.v2_ref, setup.v3_ref
    w.v3yangle, w.vparity = setup.v3yangle, setup.vparity
    w.ra_ref, w.dec_ref, w.roll_ref = pointing.ra_ref, pointing.dec_ref, pointing.roll_ref
    w.siaf_xref_sci, w.siaf_yref_sci = setup.xref_sci, setup.yref_sci
    # the FITS-WCS approximation SDP writes (jwst's calc_rotation_matrix convention)
    w.wcsaxes = 2
    w.crpix1, w.crpix2 = setup.xref_sci, setup.yref_sci
    w.crval1, w.crval2 = pointing.ra_ref, pointing.dec_ref
    w.ctype1, w.ctype2 = "RA---TAN", "DEC--TAN"
    w.cunit1, w.cunit2 = "deg", "deg"
    w.cdelt1, w.cdelt2 = setup.xscale / 3600.0, setup.yscale / 3600.0
    rel = np.deg2rad(pointing.roll_ref - setup.vparity * setup.v3yangle)
    w.pc1_1 = float(setup.vparity * np.cos(rel))
    w.pc1_2 = float(np.sin(rel))
    w.pc2_1 = float(-setup.vparity * np.sin(rel))
    w.pc2_2 = float(np.cos(rel))
    # dither
    d = m.dither
    if setup.guider is None:
        d.primary_type = _pattern_type(setup, nexp)
        d.position_number = exposure_number
        d.total_points = nexp
        d.pattern_start = 1
        d.dither_points = nexp
        d.pattern_size = "DEFAULT" if nexp > 1 else "NONE"
        d.subpixel_pattern = "NONE"
        d.subpixel_total_points = 1
        d.x_offset, d.y_offset = pointing.x_offset, pointing.y_offset
        d.dithered_ra, d.dithered_dec = float(target_ra), float(target_dec)
    else:
        g = m.guidestar
        g.gs_order = 1
        g.gs_id = "SIMGS00001"
        g.gs_ra, g.gs_dec = float(target_ra), float(target_dec)
        g.gs_mag = 12.5
        g.gs_pcs_mode = setup.guider.pcs_mode
        g.data_start, g.data_end = e.start_time, e.end_time
        g.gs_acq_exec_stat = "SUCCESSFUL"


def _pattern_type(setup: Setup, nexp: int) -> str:
    if nexp <= 1:
        return "NONE"
    if setup.instrument == "NIRCAM":
        return "INTRAMODULEBOX" if setup.subarray == "FULL" else "SUBARRAY_DITHER"
    if setup.instrument == "MIRI":
        return "CYCLING"
    return "IMAGING"


def s_region(setup: Setup, pixmap: PixelMap, pointing: Pointing) -> str:
    xs = np.array([-0.5, setup.xsize - 0.5, setup.xsize - 0.5, -0.5])
    ys = np.array([-0.5, -0.5, setup.ysize - 0.5, setup.ysize - 0.5])
    xf = setup.col_map[np.clip(np.round(xs).astype(int), 0, setup.xsize - 1)] + (xs - np.clip(np.round(xs), 0, setup.xsize - 1))
    yf = setup.row_map[np.clip(np.round(ys).astype(int), 0, setup.ysize - 1)] + (ys - np.clip(np.round(ys), 0, setup.ysize - 1))
    v2, v3 = pixmap.to_v2v3(xf, yf)
    ra, dec = tel_to_sky(pointing.attitude, v2, v3)
    return "POLYGON ICRS  " + " ".join(f"{a:.9f} {b:.9f}" for a, b in zip(ra, dec))


# ---------------------------------------------------------------------------
# references


# The references whose content the simulator imprints (or uses for the scene).
SIGNATURE_REFTYPES = ("mask", "superbias", "saturation", "linearity", "dark", "gain", "readnoise", "ipc", "flat",
                      "photom", "distortion", "filteroffset", "reset")


def _reference_models(model, setup: Setup, seed: int = 0) -> dict:
    """The synthetic reference set for this exposure (what refs.build writes to disk)."""
    from . import synthetic

    exposure = _reference_exposure(model, setup)
    available = synthetic.mode_reftypes(setup.instrument, setup.exp_type)
    wanted = [rt for rt in SIGNATURE_REFTYPES if rt in available]
    refs = synthetic.reference_set(exposure, seed=seed, reftypes=wanted)
    return {k.lower(): v for k, v in dict(refs).items() if v is not None}


def _reference_exposure(model, setup: Setup):
    """What the reference builder is given for an exposure.

    FGS ID-STACK frames are stacked strips (SUBSIZE1 2304 > 2048): they are described to
    the builder by their full-frame window, whose references are full frame anyway.
    """
    if setup.exp_type != "FGS_ID-STACK":
        return model
    from .synthetic import ExposureConfig

    e = model.meta.exposure
    return ExposureConfig(
        instrument=setup.instrument, detector=setup.detector, exp_type=setup.exp_type, subarray=setup.subarray,
        xstart=1, ystart=1, xsize=setup.full_shape[1], ysize=setup.full_shape[0], readpatt=setup.readpatt,
        nframes=setup.nframes, groupgap=setup.groupgap, ngroups=setup.ngroups, nints=setup.nints,
        frame_time=e.frame_time,
    )


def _detector_bias(setup: Setup, seed: int) -> np.ndarray:
    """The full-frame reset level of the detector (the synthetic references' bias)."""
    from . import synthetic

    return synthetic.detector_truth(setup.instrument, setup.detector, int(seed)).bias


def _cut(arr: np.ndarray, setup: Setup) -> np.ndarray:
    """A reference array (..., ny, nx) laid out like the exposure's pixels."""
    arr = np.asarray(arr)
    shape = arr.shape[-2:]
    if shape == (setup.ysize, setup.xsize):
        return arr
    if shape == setup.full_shape:
        return arr[..., setup.row_map[:, None], setup.col_map[None, :]]
    raise ParameterError(
        f"reference array of shape {shape} fits neither the exposure ({setup.ysize}, {setup.xsize}) nor the full frame {setup.full_shape}"
    )


def _photometry(refs: dict, setup: Setup) -> tuple[float, float, str]:
    """(PHOTMJSR, PIXAR_SR, source) for the exposure's filter and pupil."""
    pixar = None
    photmjsr = None
    ph = refs.get("photom")
    if ph is not None:
        table = ph.phot_table
        names = [n.lower() for n in table.dtype.names]

        def col(row, key):
            return row[names.index(key)] if key in names else None

        for row in table:
            f = col(row, "filter")
            p = col(row, "pupil")
            f = f.decode() if isinstance(f, bytes) else f
            p = p.decode() if isinstance(p, bytes) else p
            if setup.filter and f is not None and str(f).strip().upper() not in (setup.filter, "N/A", "ANY"):
                continue
            if setup.pupil and p is not None and str(p).strip().upper() not in (setup.pupil, "N/A", "ANY"):
                continue
            value = col(row, "photmjsr")
            if value is not None and np.isfinite(value) and value > 0:
                photmjsr = float(value)
                break
        pixar = ph.meta.photometry.pixelarea_steradians
    if pixar is None and refs.get("area") is not None:
        pixar = refs["area"].meta.photometry.pixelarea_steradians
    if pixar is None:
        pixar = setup.xscale * setup.yscale / 206264.806**2
    if photmjsr is None:
        # No photom reference (guider modes): a nominal conversion, 0.5 MJy/sr per DN/s.
        return 0.5, float(pixar), "nominal"
    return photmjsr, float(pixar), "photom"


# ---------------------------------------------------------------------------
# scene


def moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


MOFFAT_BETA = 2.5


def render_stars(shape, xs, ys, rates, fwhm_px: float, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Add pixel-integrated Moffat stars (total ``rates`` each) to a zero image of ``shape``.

    Each star is drawn on a stamp large enough that the light beyond it is below 0.05 DN/s;
    the core (3 FWHM) is integrated over 7x7 sub-pixels, the wings sampled at pixel centres.
    """
    ny, nx = shape
    img = np.zeros(shape, dtype=np.float64)
    alpha = moffat_alpha(fwhm_px, beta)
    norm = (beta - 1.0) / (math.pi * alpha * alpha)
    ss = 7
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    core = int(math.ceil(3.0 * fwhm_px)) + 1
    for x, y, rate in zip(xs, ys, rates):
        if not (np.isfinite(x) and np.isfinite(y)) or rate <= 0:
            continue
        half = alpha * (rate / 0.05) ** (1.0 / (2.0 * beta - 2.0))
        half = int(min(max(half, 4.0 * fwhm_px, 6.0), 256.0))
        x0, y0 = int(round(x)), int(round(y))
        xa, xb = max(x0 - half, 0), min(x0 + half + 1, nx)
        ya, yb = max(y0 - half, 0), min(y0 + half + 1, ny)
        if xa >= xb or ya >= yb:
            continue
        px = np.arange(xa, xb) - x
        py = np.arange(ya, yb) - y
        r2 = py[:, None] ** 2 + px[None, :] ** 2
        stamp = norm * (1.0 + r2 / (alpha * alpha)) ** (-beta)
        # sub-pixel integration of the core
        ca, cb = max(x0 - core, xa), min(x0 + core + 1, xb)
        cya, cyb = max(y0 - core, ya), min(y0 + core + 1, yb)
        if ca < cb and cya < cyb:
            cx = (np.arange(ca, cb) - x)[None, :, None, None] + sub[None, None, None, :]
            cy = (np.arange(cya, cyb) - y)[:, None, None, None] + sub[None, None, :, None]
            cr2 = cx * cx + cy * cy
            cval = (norm * (1.0 + cr2 / (alpha * alpha)) ** (-beta)).mean(axis=(2, 3))
            stamp[cya - ya:cyb - ya, ca - xa:cb - xa] = cval
        img[ya:yb, xa:xb] += rate * stamp
    return img


def peak_fraction(fwhm_px: float) -> float:
    """Fraction of a star's light in its brightest pixel (star centred on a pixel)."""
    img = render_stars((15, 15), [7.0], [7.0], [1.0], fwhm_px)
    return float(img.max())


@dataclass
class StarField:
    ra: np.ndarray
    dec: np.ndarray
    flux_ujy: np.ndarray
    rate: np.ndarray  # DN/s in the calibrated rate image


def make_star_field(rng, target_ra, target_dec, radius_arcsec, n_stars, rate_target, rate_max, rate_min,
                    to_rate) -> StarField:
    """Stars uniform in a disc around the target, fluxes from dN/dm ~ 10^(0.3 m).  Star 0 is the target."""
    r = radius_arcsec * np.sqrt(rng.random(n_stars - 1))
    theta = rng.random(n_stars - 1) * 2.0 * np.pi
    xi = r * np.cos(theta) / 3600.0  # tangent-plane offsets, deg (east, north)
    eta = r * np.sin(theta) / 3600.0
    ra, dec = _tangent_to_sky(target_ra, target_dec, xi, eta)
    a = 0.75  # N(>F) ~ F^-0.75
    u = rng.random(n_stars - 1)
    rates = (rate_max ** -a + u * (rate_min ** -a - rate_max ** -a)) ** (-1.0 / a)
    ra = np.concatenate([[target_ra], ra])
    dec = np.concatenate([[target_dec], dec])
    rates = np.concatenate([[rate_target], rates])
    flux = rates / to_rate
    return StarField(ra=ra, dec=dec, flux_ujy=flux, rate=rates)


def _tangent_to_sky(ra0, dec0, xi_deg, eta_deg):
    xi, eta = np.deg2rad(xi_deg), np.deg2rad(eta_deg)
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    denom = np.cos(d0) - eta * np.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
    return np.mod(np.rad2deg(ra), 360.0), np.rad2deg(dec)


def _angular_sep_arcsec(ra1, dec1, ra2, dec2):
    v1 = _unit(np.asarray(ra1, float), np.asarray(dec1, float))
    v2 = _unit(np.asarray(ra2, float), np.asarray(dec2, float))
    if v1.ndim < v2.ndim:
        v1 = v1.reshape(v1.shape + (1,) * (v2.ndim - v1.ndim))
    dot = np.sum(v1 * v2, axis=0)
    cross = np.linalg.norm(np.cross(v1, v2, axis=0), axis=0)
    return np.rad2deg(np.arctan2(cross, dot)) * 3600.0  # accurate at small angles, unlike arccos


# ---------------------------------------------------------------------------
# the detector


def _seed(*parts) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]))


def _name_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _newton_step(c: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """One Newton step for sum_k c[k] r**k = t, in place on r; returns the step taken."""
    n = c.shape[0]
    p = c[n - 1].copy()
    dp = np.zeros_like(r)
    for k in range(n - 2, -1, -1):
        dp *= r
        dp += p
        p *= r
        p += c[k]
    p -= t
    np.divide(p, dp, out=p, where=dp != 0)
    r -= p
    return p


def invert_polynomial(coeffs: np.ndarray, target: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """Solve ``sum_k coeffs[k] * r**k = target`` for r, pixel by pixel (Newton's method).

    ``coeffs`` (ncoeffs, ny, nx) and ``target`` (ny, nx); the result is accurate to ``tol``
    DN.  Two Newton steps run on every pixel (enough where the signal is low); the few
    pixels still moving by more than ``tol`` continue alone.
    """
    dtype = np.result_type(coeffs.dtype, target.dtype, np.float32)
    r = np.array(target, dtype=dtype, copy=True)
    t = np.asarray(target, dtype=dtype)
    step = None
    for _ in range(2):
        step = _newton_step(coeffs, r, t)
    idx = np.flatnonzero(np.abs(step) > tol)
    n = coeffs.shape[0]
    flat_c = coeffs.reshape(n, -1)
    rf, tf = r.reshape(-1), t.reshape(-1)
    for _ in range(30):
        if idx.size == 0:
            break
        rs, cs, ts = rf[idx], flat_c[:, idx], tf[idx]
        st = _newton_step(cs, rs, ts)
        rf[idx] = rs
        idx = idx[np.abs(st) > tol]
    return r


class _Ipc:
    """The forward IPC that jwst's IPC step (convolution with the reference kernel) undoes.

    The reference holds jwst's *deconvolution* kernel K (3x3, or per pixel (3, 3, ny, nx)).
    Given x we want y with K*y = x in the science region (jwst leaves reference pixels
    alone and pads the science region with zeros): y = x - (K - 1) y, by fixed-point
    iteration, which converges fast because K is close to the identity.
    """

    def __init__(self, kernel: np.ndarray, science: tuple[slice, slice], tol: float = 0.02):
        k = np.asarray(kernel, dtype=np.float32)
        self.sci = science
        self.tol = tol
        if k.ndim == 4:
            k = k[:, :, science[0], science[1]]
        self.k = k.copy()
        ky, kx = k.shape[:2]
        self.k[ky // 2, kx // 2] -= 1.0  # E = K - identity
        # the common 3x3 kernel with 4-fold symmetry, [[b, a, b], [a, c, a], [b, a, b]]
        self.sym = None
        if self.k.shape == (3, 3):
            e = self.k
            a = e[0, 1]
            b = e[0, 0]
            if np.allclose([e[1, 0], e[1, 2], e[2, 1]], a, rtol=0, atol=1e-9) and np.allclose([e[0, 2], e[2, 0], e[2, 2]], b, rtol=0, atol=1e-9):
                self.sym = (np.float32(a), np.float32(b), np.float32(e[1, 1]))

    def _apply_e(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """(K - 1) * z as jwst convolves: out[y, x] = sum K[j, i] z[y + by - j, x + bx - i], zero outside."""
        if self.sym is not None:
            a, b, c = self.sym
            if getattr(self, "_buf", None) is None or self._buf[0].shape != z.shape:
                self._buf = [np.empty_like(z) for _ in range(3)]
            h, v, d = self._buf
            h[...] = 0.0  # left + right neighbours
            h[:, 1:] += z[:, :-1]
            h[:, :-1] += z[:, 1:]
            v[...] = 0.0  # up + down
            v[1:] += z[:-1]
            v[:-1] += z[1:]
            d[...] = 0.0  # diagonals = up + down of h
            d[1:] += h[:-1]
            d[:-1] += h[1:]
            np.multiply(z, c, out=out)
            h += v
            h *= a
            out += h
            d *= b
            out += d
            return out
        ky, kx = self.k.shape[:2]
        by, bx = ky // 2, kx // 2
        ny, nx = z.shape
        pad = np.zeros((ny + ky - 1, nx + kx - 1), dtype=z.dtype)
        pad[by:by + ny, bx:bx + nx] = z
        out[...] = 0.0
        for j in range(ky):
            for i in range(kx):
                out += self.k[j, i] * pad[ky - 1 - j:ky - 1 - j + ny, kx - 1 - i:kx - 1 - i + nx]
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """IPC applied to ``x`` (float32, in place where possible); reference pixels unchanged."""
        sy, sx = self.sci
        xs = np.array(x[sy, sx], dtype=np.float32)
        if xs.size == 0:
            return x
        y = xs.copy()
        e = np.empty_like(y)
        for _ in range(40):
            self._apply_e(y, e)
            np.subtract(xs, e, out=e)  # new y
            y, e = e, y
            np.subtract(y, e, out=e)
            if float(np.max(np.abs(e))) < self.tol:
                break
        out = x if (x.dtype == np.float32 and x.flags.writeable) else np.array(x, dtype=np.float32)
        out[sy, sx] = y
        return out


@dataclass
class CosmicRay:
    integration: int
    frame: int  # frame (0-based, from reset) whose read first contains the charge
    group: int  # first group that contains the charge (with NFRAMES > 1, in part)
    x: int
    y: int
    electrons: float


def _cosmic_rays(rng, setup: Setup, integration: int, rate_cm2_s: float, minimum: int,
                 active: np.ndarray) -> list[CosmicRay]:
    """Hits on light-sensitive pixels during one integration: ``rate * area * time``, at least ``minimum``.

    The minimum keeps a few hits in small, short subarrays (a 64x64 NIRCam subarray read for
    0.25 s expects 0.02 hits at JWST's rate), so that jump detection always has work.
    """
    ys_ok, xs_ok = np.nonzero(active)
    if ys_ok.size == 0:
        return []
    area = ys_ok.size * setup.pixel_pitch_cm**2
    t_int = setup.frames_per_integration * setup.tframe
    n = int(rng.poisson(rate_cm2_s * area * t_int))
    n = max(n, minimum)
    # hits after the last read of the integration are never seen
    last_read = (setup.ngroups - 1) * (setup.nframes + setup.groupgap) + setup.nframes
    frames = rng.integers(0, last_read, size=n)
    pick = rng.integers(0, ys_ok.size, size=n)
    energy = np.minimum(rng.lognormal(mean=math.log(1500.0), sigma=1.0, size=n), 60000.0)
    out = []
    for f, j, e in zip(frames, pick, energy):
        group = int(f) // (setup.nframes + setup.groupgap)
        if int(f) % (setup.nframes + setup.groupgap) >= setup.nframes:
            group += 1  # landed in a dropped frame: first seen in the next group
        out.append(CosmicRay(integration, int(f), group, int(xs_ok[j]), int(ys_ok[j]), float(e)))
    return out


def _cr_footprint(rng, n):
    """3x3 charge spread (centre 1): four neighbours of 3-8 %, corners of 1-2 %."""
    side = rng.uniform(0.03, 0.08, size=(n, 4))
    corner = rng.uniform(0.01, 0.02, size=(n, 4))
    return side, corner


@dataclass
class SimulatedExposure:
    data: np.ndarray
    cosmic_rays: list[CosmicRay]


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def simulate_ramps(setup: Setup, rate_dn: np.ndarray, refs: dict, seed: int, exposure_index: int,
                   cosmic_ray_rate: float = COSMIC_RAY_RATE, min_cosmic_rays: int = 3,
                   reference_seed: int = 0) -> SimulatedExposure:
    """Turn an ideal count-rate image (DN/s, as jwst's flat-fielded rate) into uint16 ramps.

    Arrays are float32 and one group is made at a time, so memory stays at a few full-frame
    planes besides the output.
    """
    ny, nx = setup.ysize, setup.xsize
    shape = (ny, nx)
    refpix = _reference_pixel_mask(setup)
    active = ~refpix

    # --- response: flat, dead pixels, gain -----------------------------------
    response = np.ones(shape, dtype=np.float32)
    if "flat" in refs:
        flat = _f32(_cut(refs["flat"].data, setup))
        response = np.where(np.isfinite(flat) & (flat > 0), flat, np.float32(1.0)).astype(np.float32)
    if "mask" in refs:
        mdq = _cut(refs["mask"].dq, setup).astype(np.uint32)
        response[(mdq & dqflags.DEAD) != 0] = 0.0
    response[refpix] = 0.0
    gain = np.full(shape, 2.0, dtype=np.float32)
    if "gain" in refs:
        g = _f32(_cut(refs["gain"].data, setup))
        good = np.isfinite(g) & (g > 0)
        gain = np.where(good, g, np.float32(np.median(g[good]) if good.any() else 2.0)).astype(np.float32)
    inv_gain = (np.float32(1.0) / gain).astype(np.float32)
    # electrons per frame time, in float64 because numpy's Poisson sampler takes float64
    e_per_frame = np.asarray(rate_dn, dtype=np.float64) * response * gain * setup.tframe

    # --- levels ---------------------------------------------------------------
    level_inside = None  # pedestal inside the linearity polynomial (MIRI)
    if "superbias" in refs:
        bias = _f32(_cut(refs["superbias"].data, setup))
        bias = np.where(np.isfinite(bias), bias, np.float32(np.nanmedian(bias))).astype(np.float32)
    else:
        # No superbias reference (MIRI, FGS guider modes): the detector's own reset level, the
        # one the saturation reference is built on.
        pedestal = _f32(_cut(_detector_bias(setup, reference_seed), setup))
        if setup.is_miri:
            level_inside, bias = pedestal, np.zeros(shape, dtype=np.float32)
        else:
            bias = pedestal
    readnoise = np.full(shape, 6.0 if setup.is_miri else 10.0, dtype=np.float32)
    if "readnoise" in refs:
        rn = _f32(_cut(refs["readnoise"].data, setup))
        good = np.isfinite(rn) & (rn > 0)
        readnoise = np.where(good, rn, np.float32(np.median(rn[good]) if good.any() else 10.0)).astype(np.float32)
    read_sigma = (readnoise / np.float32(math.sqrt(setup.nframes))).astype(np.float32)

    saturation = np.full(shape, 65535.0, dtype=np.float32)
    if "saturation" in refs:
        sat = _f32(_cut(refs["saturation"].data, setup))
        sdq = _cut(refs["saturation"].dq, setup).astype(np.uint32) if refs["saturation"].has("dq") else np.zeros(shape, np.uint32)
        ok = np.isfinite(sat) & (sat > 0) & ((sdq & dqflags.NO_SAT_CHECK) == 0)
        saturation = np.where(ok, sat, np.float32(65535.0)).astype(np.float32)
    # a pixel's real saturation sits a little above the reference threshold, so saturated
    # reads are flagged despite read noise
    hard_sat = np.minimum(saturation + np.maximum(6.0 * readnoise, 0.002 * saturation), 65535.0).astype(np.float32)

    coeffs = None
    if "linearity" in refs:
        c = _f32(_cut(refs["linearity"].coeffs, setup))
        ldq = _cut(refs["linearity"].dq, setup).astype(np.uint32) if refs["linearity"].has("dq") else np.zeros(shape, np.uint32)
        bad = ~np.all(np.isfinite(c), axis=0) | ((ldq & dqflags.NO_LIN_CORR) != 0)
        coeffs = c
        if bad.any():  # no correction there in jwst, so no non-linearity here
            coeffs = c.copy()
            coeffs[:, bad] = 0.0
            coeffs[1, bad] = 1.0

    ipc = _Ipc(refs["ipc"].data if np.ndim(refs["ipc"].data) == 2 else _cut(refs["ipc"].data, setup),
               _science_slices(setup)) if "ipc" in refs else None

    dark = _dark_per_group(refs.get("dark"), setup)
    reset = _reset_per_group(refs.get("reset"), setup) if setup.is_miri else None

    # the linear signal at which a pixel reaches the hard saturation (before IPC)
    raw_cap = hard_sat - bias
    lin_cap = _polyval(coeffs, raw_cap).astype(np.float32) if coeffs is not None else raw_cap.copy()
    if level_inside is not None:
        lin_cap -= level_inside
    bias_ipc = ipc.forward(bias.copy()) if ipc is not None else bias
    del raw_cap, saturation, readnoise, bias  # only what the loop needs stays in memory

    # --- electronics ---------------------------------------------------------
    amp1, par1, fast_is_x, nslow = _amplifier_layout(setup)
    namps = int(amp1.max()) + 1
    npar = 1 if setup.is_miri else 2
    first_offsets = _miri_first_frame(setup.detector, setup.ysize, setup.xsize) if setup.is_miri else None

    data = np.empty((setup.nints, setup.ngroups, ny, nx), dtype=np.uint16)
    crs_all: list[CosmicRay] = []
    prev_signal = None
    stride = setup.nframes + setup.groupgap
    for i in range(setup.nints):
        rng = _seed(seed, 2, exposure_index, i)
        crs = _cosmic_rays(rng, setup, i, cosmic_ray_rate, min_cosmic_rays if setup.guider is None else 0,
                           active & (response > 0))
        crs_all.extend(crs)
        side, corner = _cr_footprint(rng, len(crs))
        by_frame: dict[int, list[int]] = {}
        for k, c in enumerate(crs):
            by_frame.setdefault(c.frame, []).append(k)
        cum = np.zeros(shape, dtype=np.float32)  # electrons since reset
        frames_done = 0
        drift = rng.normal(0.0, DRIFT_RMS / 2 if setup.is_miri else DRIFT_RMS, size=(namps, npar))
        for g in range(setup.ngroups):
            first = g * stride
            acc = np.zeros(shape, dtype=np.float32) if setup.nframes > 1 else None
            for f in range(first, first + setup.nframes):
                cum += rng.poisson(e_per_frame * (f + 1 - frames_done)).astype(np.float32)
                for fr in range(frames_done, f + 1):
                    for k in by_frame.get(fr, ()):
                        _deposit(cum, crs[k], side[k], corner[k])
                frames_done = f + 1
                if acc is not None:
                    acc += cum
            # DN, linear, plus dark
            if acc is not None:
                acc *= np.float32(1.0 / setup.nframes)
                signal = acc
            else:
                signal = cum.copy()
            signal *= inv_gain
            lin = signal if dark is None else signal + dark(i, g)
            np.minimum(lin, lin_cap, out=lin)
            if level_inside is not None:
                lin += level_inside
            raw = invert_polynomial(coeffs, lin) if coeffs is not None else lin
            if ipc is not None:
                raw = ipc.forward(raw)
            raw += bias_ipc
            if reset is not None:
                raw += reset(i, g)
            if setup.is_miri:
                raw += _miri_frame_effects(setup, i, g, prev_signal, first_offsets)
            np.minimum(raw, hard_sat, out=raw)
            # electronics: drifts per amplifier and column parity, common mode, row noise, read noise
            drift += rng.normal(0.0, DRIFT_STEP, size=drift.shape)
            fast_offsets = (drift[amp1, par1 if npar == 2 else 0] + rng.normal(0.0, 4.0)).astype(np.float32)
            fast_offsets *= np.float32(setup.drift_scale)
            slow_noise = _row_noise(rng, nslow, 0.0 if setup.is_miri else ROW_NOISE_RMS).astype(np.float32)
            if fast_is_x:
                raw += fast_offsets[None, :]
                raw += slow_noise[:, None]
            else:
                raw += fast_offsets[:, None]
                raw += slow_noise[None, :]
            noise = rng.standard_normal(shape, dtype=np.float32)
            noise *= read_sigma
            raw += noise
            np.rint(raw, out=raw)
            np.clip(raw, 0, 65535, out=raw)
            np.copyto(data[i, g], raw, casting="unsafe")
            if g == setup.ngroups - 1:
                prev_signal = signal
    return SimulatedExposure(data=data, cosmic_rays=crs_all)


@functools.lru_cache(maxsize=4)
def _miri_first_frame(detector: str, ny: int, nx: int) -> np.ndarray:
    """Per-pixel first-group offsets of a MIRI detector (fixed, seeded by the detector name)."""
    rng = _seed(_name_seed(detector), 11)
    return (-5.0 + 3.0 * rng.standard_normal((ny, nx))).astype(np.float32)


def _miri_frame_effects(setup: Setup, i: int, g: int, prev_signal, first_offsets: np.ndarray) -> np.ndarray:
    """First-frame offset, RSCD decay after the first integration, last-frame row pattern."""
    out = np.zeros((setup.ysize, setup.xsize), dtype=np.float32)
    if g == 0:
        out += first_offsets
    if i > 0 and prev_signal is not None:
        out += np.float32(0.02 * math.exp(-(g + 1))) * prev_signal
    if g == setup.ngroups - 1 and setup.ngroups > 2:
        rows = (setup.row_map % 2 == 0)[:, None]
        out += np.where(rows, np.float32(8.0), np.float32(-8.0))
    return out


def _deposit(cum: np.ndarray, cr: CosmicRay, side, corner) -> None:
    ny, nx = cum.shape
    e = cr.electrons
    cum[cr.y, cr.x] += e
    for (dy, dx), frac in zip(((0, 1), (0, -1), (1, 0), (-1, 0)), side):
        y, x = cr.y + dy, cr.x + dx
        if 0 <= y < ny and 0 <= x < nx:
            cum[y, x] += e * frac
    for (dy, dx), frac in zip(((1, 1), (1, -1), (-1, 1), (-1, -1)), corner):
        y, x = cr.y + dy, cr.x + dx
        if 0 <= y < ny and 0 <= x < nx:
            cum[y, x] += e * frac


def _polyval(coeffs, x):
    n = coeffs.shape[0]
    p = np.array(coeffs[n - 1], dtype=np.float64)
    for k in range(n - 2, -1, -1):
        p *= x
        p += coeffs[k]
    return p


def _reference_pixel_mask(setup: Setup) -> np.ndarray:
    cols = setup.col_map
    rows = setup.row_map
    if setup.is_miri:
        colref = (cols < 4) | (cols >= 1028)
        return np.broadcast_to(colref[None, :], (setup.ysize, setup.xsize)).copy()
    colref = (cols < 4) | (cols >= setup.full_shape[1] - 4)
    rowref = (rows < 4) | (rows >= setup.full_shape[0] - 4)
    return rowref[:, None] | colref[None, :]


def _science_slices(setup: Setup) -> tuple[slice, slice]:
    """The part of the exposure that is not reference pixels (jwst's IPC step works there only)."""
    ref = _reference_pixel_mask(setup)
    rows = np.nonzero(~ref.all(axis=1))[0]
    cols = np.nonzero(~ref.all(axis=0))[0]
    if rows.size == 0 or cols.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _amplifier_layout(setup: Setup):
    """Amplifier and column parity along the fast axis, and the slow-axis length.

    Returns ``(amp, parity, fast_is_x, nslow)``: ``amp`` and ``parity`` are 1-D over the
    exposure's fast-axis pixels (columns if ``fast_is_x``, else rows).  A 4-output NIR readout
    has four 512-pixel stripes along the fast direction; parity is that of the detector
    column (the fast-axis position), which jwst's odd/even refpix correction follows.  MIRI's
    four outputs are interleaved (column mod 4).
    """
    if setup.is_miri:
        return (setup.col_map % 4).astype(int), np.zeros(setup.xsize, dtype=int), True, setup.ysize
    fast_is_x = abs(setup.fastaxis) == 1
    full_fast = setup.full_shape[1] if fast_is_x else setup.full_shape[0]
    pos = setup.col_map if fast_is_x else setup.row_map
    det_fast = pos if setup.fastaxis > 0 else (full_fast - 1 - pos)
    amp = (det_fast // (full_fast // 4)) if setup.noutputs == 4 else np.zeros_like(det_fast)
    return amp.astype(int), (det_fast % 2).astype(int), fast_is_x, (setup.ysize if fast_is_x else setup.xsize)


def _row_noise(rng, n: int, sigma: float) -> np.ndarray:
    """Correlated (1/f-like) noise along the slow axis: white noise smoothed over ~8 rows, rms ``sigma``.

    It is common to all amplifiers at a given row, so the side reference pixels of a full
    frame see it (jwst's refpix removes it there); subarrays keep it, as real ones do.
    """
    if sigma <= 0:
        return np.zeros(n)
    kernel = np.hanning(17)[1:-1]
    kernel /= math.sqrt(float(np.sum(kernel**2)))
    white = rng.normal(0.0, sigma, size=n + kernel.size - 1)
    return np.convolve(white, kernel, mode="valid")[:n]


def _dark_per_group(dark_model, setup: Setup):
    """A function (integration, group) -> dark DN, averaged as jwst's dark step averages frames."""
    if dark_model is None:
        return None
    d = _f32(_cut(np.asarray(dark_model.data), setup))
    dn_frames = getattr(dark_model.meta.exposure, "nframes", None) or 1
    dgap = getattr(dark_model.meta.exposure, "groupgap", None) or 0
    stride = setup.nframes + setup.groupgap
    same_readout = dn_frames == setup.nframes and dgap == setup.groupgap
    if not same_readout and not (dn_frames == 1 and dgap == 0):
        raise ParameterError(
            f"dark reference readout (NFRAMES={dn_frames}, GROUPGAP={dgap}) cannot be matched to {setup.readpatt}"
        )

    def planes(i):
        return d[min(i, d.shape[0] - 1)] if d.ndim == 4 else d

    def frame(p, f):
        if f < p.shape[0]:
            return p[f]
        # beyond the reference's last frame: continue at its last slope
        slope = p[-1] - p[-2] if p.shape[0] > 1 else p[-1]
        return p[-1] + slope * np.float32(f - p.shape[0] + 1)

    def value(i, g):
        v = _value(i, g)
        return np.where(np.isfinite(v), v, np.float32(0.0)).astype(np.float32, copy=False)

    def _value(i, g):
        p = planes(i)
        if same_readout:
            return frame(p, g)
        start = g * stride
        acc = np.zeros(p.shape[1:], dtype=np.float32)
        for f in range(start, start + setup.nframes):
            acc += frame(p, f)
        acc *= np.float32(1.0 / setup.nframes)
        return acc

    return value


def _reset_per_group(reset_model, setup: Setup):
    if reset_model is None:
        return None
    r = _f32(_cut(np.asarray(reset_model.data), setup))
    if r.ndim == 3:
        r = r[None]

    def value(i, g):
        p = r[min(i, r.shape[0] - 1)]
        if g >= p.shape[0]:
            return np.float32(0.0)
        v = p[g]
        return np.where(np.isfinite(v), v, np.float32(0.0)).astype(np.float32)

    return value


# ---------------------------------------------------------------------------
# the observation


# EXP_TYPE -> module of refs/sim/ that simulates it (its ``simulate(output_dir, **arguments of simulate)``)
MODE_SIMULATORS: dict[str, str] = {}
MODE_SIMULATORS.update({"MIR_LRS-FIXEDSLIT": "miri_lrs", "MIR_LRS-SLITLESS": "miri_lrs"})  # refs/sim/miri_lrs.py
MODE_SIMULATORS["NIS_SOSS"] = "soss"  # NIRISS SOSS time series (refs/sim/soss.py)
MODE_SIMULATORS["NRC_WFSS"] = "wfss"  # NIRCam WFSS: direct image + dispersed exposures (refs/sim/wfss.py)
MODE_SIMULATORS.update({"NRS_FIXEDSLIT": "nirspec", "NRS_BRIGHTOBJ": "nirspec"})  # refs/sim/nirspec.py
MODE_SIMULATORS["NIS_WFSS"] = "wfss_niriss"  # NIRISS WFSS: direct image + dispersed exposures (refs/sim/wfss_niriss.py)
MODE_SIMULATORS["NRS_MSASPEC"] = "nirspec_msa"  # NIRSpec MOS: nodded three-shutter slitlets (refs/sim/nirspec_msa.py)
MODE_SIMULATORS["NRS_IFU"] = "nirspec_ifu"  # NIRSpec IFU: a dithered point source on extended emission (refs/sim/nirspec_ifu.py)
MODE_SIMULATORS["MIR_MRS"] = "mrs"  # MIRI MRS: a 4-point dither of one detector and band (refs/sim/mrs.py)
MODE_SIMULATORS.update({"MIR_4QPM": "coron_miri", "MIR_LYOT": "coron_miri"})  # MIRI coronagraphy (refs/sim/coron_miri.py)


@dataclass
class SimulationResult:
    """What ``simulate`` wrote."""

    output_dir: Path
    uncal: list[Path]
    catalog: Path
    cosmic_rays: Path
    asn_level2: list[Path] = field(default_factory=list)
    asn_level3: Path | None = None
    context: str | None = None
    crds_path: Path | None = None
    setup: Setup | None = None

    @property
    def products(self) -> list[Path]:
        out = list(self.uncal) + [self.catalog, self.cosmic_rays] + list(self.asn_level2)
        if self.asn_level3:
            out.append(self.asn_level3)
        return out


def simulate(
    output_dir,
    instrument: str = "nircam",
    detector: str | None = None,
    size: int | None = None,
    subarray: str | None = None,
    ngroups: int | None = None,
    nints: int | None = None,
    nexp: int = 1,
    seed: int = 0,
    filter: str | None = None,  # noqa: A002
    pupil: str | None = None,
    readpatt: str | None = None,
    exp_type: str | None = None,
    target_ra: float = 53.1625,
    target_dec: float = -27.7914,
    pa_v3: float = 30.0,
    program: str | int = "01234",
    observation: int = 1,
    visit: int = 1,
    start_time: str = "2024-01-15T03:00:00",
    stars_per_field: int | None = None,
    cosmic_ray_rate: float = COSMIC_RAY_RATE,
    min_cosmic_rays: int = 3,
    build_refs: bool = True,
    reference_seed: int = 0,
    grating: str | None = None,
    slit: str | None = None,  # NIRSpec fixed slits (refs/sim/nirspec.py)
    band: str | None = None,  # MIRI MRS grating setting (refs/sim/mrs.py)
    slits: int | None = None,  # NIRSpec MOS: the number of slitlets (refs/sim/nirspec_msa.py)
) -> SimulationResult:
    """Simulate a dithered imaging observation of one detector; see the module docstring.

    Exposure types listed in :data:`MODE_SIMULATORS` are simulated by their own module under
    ``refs/sim/``, which takes the same arguments (plus ``grating``).
    """
    output_dir = Path(output_dir).absolute()  # simulators write pools from inside the folder
    mode_module = MODE_SIMULATORS.get((exp_type or "").upper())
    if slit is not None and mode_module != "nirspec":
        raise ParameterError(f"--slit is for NIRSpec fixed slits (--exp-type NRS_FIXEDSLIT or NRS_BRIGHTOBJ), "
                             f"not {exp_type or 'imaging'}")
    if slits is not None and mode_module != "nirspec_msa":
        raise ParameterError(f"--slits is for NIRSpec MOS (--exp-type NRS_MSASPEC), not {exp_type or 'imaging'}")
    if band is not None and mode_module != "mrs":
        raise ParameterError(f"--band is for MIRI MRS (--exp-type MIR_MRS), not {exp_type or 'imaging'}")
    own = _mode_simulator(instrument, exp_type, pupil)
    if own is not None:  # a mode with its own module in refs/sim/
        return own(**{k: v for k, v in locals().items() if k not in ("own", "mode_module")})
    from ..models import Level1bModel

    if mode_module is not None:
        import importlib

        kwargs = {k: v for k, v in locals().items() if k not in ("Level1bModel", "mode_module", "output_dir")}
        return importlib.import_module(f"webbflow.refs.sim.{mode_module}").simulate(output_dir, **kwargs)
    if (instrument or "").lower() == "nirspec":  # detector-level NIRSpec exposures: refs/sim/nirspec_detector.py
        from .sim import nirspec_detector

        return nirspec_detector.simulate(output_dir, detector=detector, readpatt=readpatt, ngroups=ngroups, nints=nints,
                                         exp_type=exp_type, seed=seed, build_refs=build_refs, reference_seed=reference_seed,
                                         size=size, subarray=subarray, nexp=nexp)

    if grating is not None:
        raise ParameterError(f"--grating is for spectroscopic modes, not {exp_type or 'imaging'}")
    if (exp_type or "").upper() == "NRC_CORON":  # coronagraphy: refs/sim/coron.py
        from .sim.coron import simulate_coron

        return simulate_coron(output_dir, detector=detector, subarray=subarray, ngroups=ngroups, nints=nints,
                              nexp=nexp, seed=seed, filter=filter, readpatt=readpatt, target_ra=target_ra,
                              target_dec=target_dec, pa_v3=pa_v3, program=program, observation=observation,
                              start_time=start_time, build_refs=build_refs, reference_seed=reference_seed)

    if (exp_type or "").upper() == "NIS_AMI" and (instrument or "").lower() == "niriss":  # refs/sim/ami.py
        from .sim.ami import simulate_ami

        return simulate_ami(output_dir, filter=filter, ngroups=ngroups, nints=nints, seed=seed, program=program,
                            build_refs=build_refs, reference_seed=reference_seed, subarray=subarray,
                            readpatt=readpatt, nexp=nexp)
    if nexp < 1:
        raise ParameterError(f"--nexp must be at least 1 (got {nexp})")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup = make_setup(instrument, detector, size, subarray, ngroups, nints, filter, pupil, readpatt, exp_type)
    ids = ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}", visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)

    # exposures: metadata and pointing first, so the references (and the distortion) are known
    offsets = dither_offsets(setup, nexp) if setup.guider is None else [(0.0, 0.0)] * nexp
    models, pointings, names = [], [], []
    t = t0
    for k in range(nexp):
        pnt = make_pointing(setup, target_ra, target_dec, pa_v3, *offsets[k])
        model = Level1bModel()
        fill_metadata(model, setup, ids, pnt, k + 1, nexp, t, target_ra, target_dec)
        names.append(exposure_filename(setup, ids, k + 1, t))
        model.meta.filename = names[-1]
        models.append(model)
        pointings.append(pnt)
        t = t + _dt.timedelta(seconds=setup.duration + 60.0)  # slew and settle between dithers

    # references: with a CRDS cache, the very files it selects (so the signatures are what
    # calibration will remove); otherwise the same synthetic set, made in memory
    context = None
    if build_refs:
        refs, context = _build_and_open_references(models, setup, out, reference_seed)
    else:
        refs = _reference_models(models[0], setup, seed=reference_seed)
    pixmap = PixelMap(setup, refs)
    photmjsr, pixar_sr, _phot_source = _photometry(refs, setup)
    to_rate = 1e-12 / (photmjsr * pixar_sr)  # DN/s per microjansky

    # star field ---------------------------------------------------------------------
    footprints = []
    for pnt in pointings:
        xs = np.array([0, setup.xsize - 1, setup.xsize - 1, 0, setup.xsize // 2])
        ys = np.array([0, 0, setup.ysize - 1, setup.ysize - 1, setup.ysize // 2])
        v2, v3 = pixmap.to_v2v3(setup.col_map[xs], setup.row_map[ys])
        footprints.append(tel_to_sky(pnt.attitude, v2, v3))
    radius = max(float(np.max(_angular_sep_arcsec(target_ra, target_dec, ra, dec))) for ra, dec in footprints)
    pixel_area_arcsec2 = setup.xscale * setup.yscale
    fov_arcsec2 = setup.xsize * setup.ysize * pixel_area_arcsec2
    per_field = stars_per_field or int(np.clip(12 + setup.xsize * setup.ysize / 15000, 12, 400))
    if setup.guider is not None:
        per_field = stars_per_field or (1 if setup.xsize * setup.ysize <= 128 * 128 else 40)
    fwhm_px = setup.fwhm_arcsec / math.sqrt(pixel_area_arcsec2)
    radius = radius * 1.05 + 3.0 * setup.fwhm_arcsec
    n_stars = max(1, int(round(per_field * math.pi * radius**2 / fov_arcsec2)))
    well = _median_full_well(refs, setup)
    t_int = setup.effinttm
    fpeak = peak_fraction(fwhm_px)
    rate_sat = well / (fpeak * t_int)  # DN/s that just fills the peak pixel in one integration
    if setup.guider is not None:
        rate_target = 0.5 * rate_sat  # a bright, unsaturated guide star
    else:
        rate_target = 4.0 * rate_sat  # saturates a quarter of the way up the ramp
    rate_max = 2.0 * rate_sat
    rate_min = rate_max * 10 ** (-0.4 * 8.0)
    field_rng = _seed(seed, 1)
    stars = make_star_field(field_rng, target_ra, target_dec, radius, n_stars, rate_target, rate_max, rate_min, to_rate)
    sky_rate = sky_surface_brightness(setup.wavelength) / photmjsr  # DN/s per pixel

    # exposures ----------------------------------------------------------------------
    uncal_paths: list[Path] = []
    positions: list[tuple[np.ndarray, np.ndarray]] = []
    cr_rows = []
    # render region: the full-frame box that the exposure's pixels span
    c0, c1 = int(setup.col_map.min()), int(setup.col_map.max()) + 1
    r0, r1 = int(setup.row_map.min()), int(setup.row_map.max()) + 1
    for k, (model, pnt) in enumerate(zip(models, pointings)):
        v2, v3 = sky_to_tel(pnt.attitude, stars.ra, stars.dec)
        xf, yf = pixmap.to_pixel(v2, v3)  # full-frame, 0-based
        region = render_stars((r1 - r0, c1 - c0), xf - c0, yf - r0, stars.rate, fwhm_px)
        rate_img = region[(setup.row_map - r0)[:, None], (setup.col_map - c0)[None, :]] + sky_rate
        x_out, y_out = _full_to_output(setup, xf, yf)
        positions.append((x_out, y_out))
        model.meta.wcsinfo.s_region = s_region(setup, pixmap, pnt)
        exp = simulate_ramps(setup, rate_img, refs, seed, k, cosmic_ray_rate, min_cosmic_rays, reference_seed)
        model.data = exp.data
        name = names[k]
        path = out / name
        model.save(path)
        uncal_paths.append(path)
        for c in exp.cosmic_rays:
            cr_rows.append((name, c.integration + 1, c.group + 1, c.frame + 1, c.x, c.y, c.electrons))

    # truth ------------------------------------------------------------------------
    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{setup.detector.lower()}"
    if setup.guider is not None:
        stem += f"_{setup.guider.file_tag.split('_')[0]}"
    catalog = _write_truth(out / f"{stem}_truth.ecsv", stars, positions, names, setup, photmjsr, pixar_sr, fwhm_px, sky_rate)
    cr_path = _write_cosmic_rays(out / f"{stem}_cosmic_rays.ecsv", cr_rows)

    # associations -------------------------------------------------------------------
    asn2, asn3 = [], None
    if setup.guider is None:
        asn2, asn3 = write_associations(out, setup, ids, names, t0)

    result = SimulationResult(output_dir=out, uncal=uncal_paths, catalog=catalog, cosmic_rays=cr_path,
                              asn_level2=asn2, asn_level3=asn3, setup=setup)
    if build_refs:
        result.context = context
        result.crds_path = out
    return result


def _mode_simulator(instrument, exp_type, pupil):
    """The ``simulate`` of the refs/sim/ module that makes this observing mode, or None (imaging here)."""
    inst, et, pup = (instrument or "").lower(), (exp_type or "").upper(), (pupil or "").upper()
    if inst == "nircam" and et == "NRC_TSIMAGE":
        from .sim import tso_image

        return tso_image.simulate
    if inst == "nircam" and et == "NRC_TSGRISM":  # refs/sim/grism.py
        from .sim import grism

        return grism.simulate
    if inst == "nircam" and et in ("", "NRC_IMAGE") and pup in ("WLP8", "WLM8"):
        from .sim import wfs

        return wfs.simulate
    return None


def _build_and_open_references(models, setup: Setup, out: Path, seed: int) -> tuple[dict, str]:
    """Write references and a CRDS context for the exposures into ``out``; open the ones selected."""
    from . import build
    from . import context as ctxmod
    from .select import open_reference

    exposures = [_reference_exposure(m, setup) for m in models]
    res = build.build_reference_cache(exposures, out, seed=seed)
    selected = next(iter(res.selections.values()))
    refs = {}
    for rt, name in selected.items():
        if rt in SIGNATURE_REFTYPES and name and name != "N/A":
            refs[rt] = open_reference(rt, ctxmod.reference_path(out, name))
    return refs, res.context


def _median_full_well(refs: dict, setup: Setup) -> float:
    if "saturation" in refs:
        sat = _cut(refs["saturation"].data, setup).astype(float)
        bias = _cut(refs["superbias"].data, setup).astype(float) if "superbias" in refs else _cut(_detector_bias(setup, 0), setup)
        well = sat - bias
        good = np.isfinite(well) & (well > 0)
        if good.any():
            return float(np.median(well[good]))
    return 40000.0


def _full_to_output(setup: Setup, xf, yf):
    """Full-frame pixel positions -> exposure pixel positions (first occurrence for ID-STACK strips)."""
    if setup.guider is not None and setup.exp_type == "FGS_ID-STACK":
        x_out = np.full(np.shape(xf), np.nan)
        for j, c in enumerate(setup.col_map):
            hit = np.isnan(x_out) & (np.abs(xf - c) <= 0.5)
            x_out[hit] = j + (xf[hit] - c)
        return x_out, yf - (setup.ystart - 1)
    return xf - (setup.xstart - 1), yf - (setup.ystart - 1)


def _write_truth(path: Path, stars: StarField, positions, names, setup: Setup, photmjsr, pixar_sr, fwhm_px, sky_rate) -> Path:
    from astropy import units as u
    from astropy.table import Table

    t = Table()
    t["id"] = np.arange(1, len(stars.ra) + 1, dtype=np.int32)
    t["ra"] = stars.ra * u.deg
    t["dec"] = stars.dec * u.deg
    t["flux"] = stars.flux_ujy * u.uJy
    t["abmag"] = 23.9 - 2.5 * np.log10(stars.flux_ujy)
    t["count_rate"] = stars.rate * (u.DN / u.s)
    for k, (x, y) in enumerate(positions, start=1):
        t[f"x_{k}"] = x
        t[f"y_{k}"] = y
    t.meta.update({
        "description": "webbflow simulator truth: star 1 is the target; count_rate is DN/s in the flat-fielded "
                       "rate image (flux / (PHOTMJSR * PIXAR_SR)); x_k, y_k are 0-based pixel positions in "
                       "exposure k (pixel centres at integers), jwst's convention.",
        "exposures": {k: n for k, n in enumerate(names, start=1)},
        "instrument": setup.instrument, "detector": setup.detector, "filter": setup.filter, "pupil": setup.pupil,
        "photmjsr": photmjsr, "pixar_sr": pixar_sr, "psf": f"Moffat beta={MOFFAT_BETA}", "fwhm_pixels": fwhm_px,
        "sky_rate_dn_per_s": sky_rate,
    })
    t.write(path, format="ascii.ecsv", overwrite=True)
    return path


def _write_cosmic_rays(path: Path, rows) -> Path:
    from astropy.table import Table

    names = ("exposure", "integration", "group", "frame", "x", "y", "electrons")
    if rows:
        t = Table(rows=rows, names=names)
    else:
        t = Table(names=names, dtype=(str, int, int, int, int, int, float))
    t.meta["description"] = ("Cosmic-ray hits: the 1-based integration and first group whose read holds the charge, "
                             "0-based pixel, electrons deposited in the centre pixel (3-8 % more in each side neighbour)")
    t.write(path, format="ascii.ecsv", overwrite=True)
    return path


# ---------------------------------------------------------------------------
# associations


def _opt_elem(setup: Setup) -> str:
    elems = [e.lower() for e in (setup.filter, setup.pupil) if e and e.upper() not in ("N/A", "")]
    elems.sort(key=str.lower)
    return "-".join(elems) or "clear"


def write_associations(out: Path, setup: Setup, ids: ObservationIds, names: list[str], t0: _dt.datetime):
    """Level-2 image2 associations (one per exposure) and a level-3 image3 association.

    Simulating more detectors (or more exposures) of the same observation into the same
    folder adds to what is there: an exposure keeps its level-2 file, new ones get the next
    sequence numbers, and the level-3 association of the same product gains the new members.
    """
    version = t0.strftime("%Y%m%dt%H%M%S")
    asn_id = f"o{ids.observation}"
    target = "t001"
    pool = f"jw{ids.program}_{version}_pool"
    base_constraints = [
        f"DMSAttrConstraint({{'name': 'program', 'sources': ['program'], 'value': '{int(ids.program)}'}})",
        f"DMSAttrConstraint({{'name': 'instrument', 'sources': ['instrume'], 'value': '{setup.instrument.lower()}'}})",
        f"DMSAttrConstraint({{'name': 'opt_elem', 'sources': ['filter'], 'value': '{(setup.filter or 'N/A').lower()}'}})",
        f"DMSAttrConstraint({{'name': 'opt_elem2', 'sources': ['pupil'], 'value': '{(setup.pupil or 'N/A').lower()}'}})",
        f"DMSAttrConstraint({{'name': 'exp_type', 'sources': ['exp_type'], 'value': '{setup.exp_type.lower()}'}})",
    ]
    candidate = f"[('{asn_id}', 'observation')]"
    prefix = f"jw{ids.program}-{asn_id}_{version}"

    def header(asn_type, rule):
        return {
            "asn_type": asn_type, "asn_rule": rule, "version_id": version,
            "code_version": "webbflow-simulator", "degraded_status": "No known degraded exposures in association.",
            "program": ids.program, "constraints": "\n".join(base_constraints), "asn_id": asn_id,
            "target": target, "asn_pool": pool,
        }

    def member(expname):
        return {"expname": expname, "exptype": "science", "exposerr": None, "asn_candidate": candidate}

    def existing(kind):
        found = {}
        for f in sorted(out.glob(f"{prefix}_{kind}_*_asn.json")):
            try:
                products = json.loads(f.read_text()).get("products") or []
            except (ValueError, OSError):
                continue
            if products:
                found[products[0].get("name")] = f
        return found

    def next_free(kind, taken: set[str]):
        k = 1
        while f"{prefix}_{kind}_{k:05d}_asn.json" in taken:
            k += 1
        return out / f"{prefix}_{kind}_{k:05d}_asn.json"

    have2 = existing("image2")
    taken = {p.name for p in out.glob(f"{prefix}_image2_*_asn.json")}
    l2 = []
    for name in names:
        root = name[: -len("_uncal.fits")]
        asn = header("image2", "candidate_Asn_Lv2Image")
        asn["products"] = [{"name": root, "members": [member(f"{root}_rate.fits")]}]
        p = have2.get(root) or next_free("image2", taken)
        taken.add(p.name)
        _write_json(p, asn)
        l2.append(p)

    product = f"jw{ids.program}-{asn_id}_{target}_{setup.instrument.lower()}_{_opt_elem(setup)}"
    new_members = [f"{n[: -len('_uncal.fits')]}_cal.fits" for n in names]
    p3 = existing("image3").get(product)
    members = list(new_members)
    if p3 is not None:
        old = [m["expname"] for m in json.loads(p3.read_text())["products"][0]["members"]]
        members = old + [m for m in new_members if m not in old]
    else:
        p3 = next_free("image3", {p.name for p in out.glob(f"{prefix}_image3_*_asn.json")})
    asn = header("image3", "candidate_Asn_Lv3Image")
    asn["products"] = [{"name": product, "members": [member(m) for m in members]}]
    _write_json(p3, asn)
    return l2, p3


def _write_json(path: Path, obj: Any) -> None:
    from ..models.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=4) + "\n")
