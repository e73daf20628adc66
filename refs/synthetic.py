"""Synthetic JWST reference files with realistic structure.

``reference_set(exposure, seed=0)`` returns ``{reftype: ReferenceFileModel}``,
every reference file that calwebb_detector1, calwebb_image2 and
calwebb_image3 (or calwebb_guider, for the FGS guider modes) of jwst 3.0 read
for that exposure's instrument, detector, subarray, readout pattern and
filter.  The simulator imprints the same signatures into raw ramps, so the
content is a pure function of ``(instrument, detector, seed)``:

- Every per-pixel quantity is generated once for the detector's full frame
  and the exposure's subarray is cut out of it, so a pixel has the same bias,
  gain, dark current, non-linearity and defects in every subarray.
- Nothing depends on the clock or on the order of calls.

What the files hold (values in DN unless stated):

================  ===========================================================
mask              DQ with DQ_DEF: reference pixels, dead, hot, warm, low-QE,
                  RC, telegraph pixels, and a few clusters of dead pixels
superbias         ~10-16 kDN per pixel: amplifier offsets, even/odd columns,
                  column and row structure, pixel scatter (NIR only)
saturation        raw DN (bias included) at which a pixel saturates: the bias
                  plus the full well over the gain, at most 65000
linearity         coefficients ``c`` with ``corrected = sum c_i * raw**i``
                  (jwst's convention); NIR on bias-subtracted DN, MIRI on raw DN
dark              the dark signal of each group for the readout pattern, with
                  hot and warm pixels flagged HOT / WARM in its DQ; MIRI darks
                  are 4-D (two integrations)
gain, readnoise   e-/DN and DN per read, with amplifier and spatial structure
ipc               a 3x3 inter-pixel capacitance kernel
flat              per filter: low-order illumination, dust motes, pixel
                  response non-uniformity, low-QE pixels, NaN at dead pixels
area              pixel area map from the SIAF distortion, PIXAR_SR/PIXAR_A2
photom            PHOTOM table, MJy/sr per DN/s, one row per filter (and
                  pupil or subarray, as jwst's photom step reads it)
distortion        detector -> V2/V3 (arcsec) from the SIAF aperture's Sci2Idl
                  polynomials and Idl2Tel, with the SIAF Idl2Sci inverse
filteroffset      small per-filter pointing offsets (NIRCam, NIRISS, MIRI)
apcorr            aperture radii / corrections per filter (source_catalog)
abvegaoffset      AB - Vega magnitude offsets per filter (source_catalog)
reset, rscd,      MIRI only: reset anomaly, RSCD groups to skip, EMI
emicorr           frequencies
================  ===========================================================

Not provided because jwst 3.0 never reads them for these modes: refpix and
sirskernel (NIRSpec IRS2 / optional SIRS), persat, trapdensity and trappars
(the persistence step of jwst 3.0 has no reference files), drizpars
(resample has none), bkg and wavelengthrange (WFSS only), pictureframe
(NIRSpec).  ``build_references`` declares them N/A in the CRDS context.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedModeError
from ..models import dqflags

# Bumped whenever the generated content changes, so that a cache built by an
# older version gets new files (and a new context) instead of stale ones.
# (It is not part of the random seeds: a bump alone changes no values.)
GENERATOR_VERSION = 3

USEAFTER = "2000-01-01T00:00:00"
AUTHOR = "webbflow synthetic reference builder"
PEDIGREE = "SIMULATION"

GUIDER_EXP_TYPES = ("FGS_ID-IMAGE", "FGS_ID-STACK", "FGS_ACQ1", "FGS_ACQ2", "FGS_TRACK", "FGS_FINEGUIDE")
IMAGING_EXP_TYPES = {
    "NIRCAM": ("NRC_IMAGE", "NRC_TSIMAGE", "NRC_FLAT", "NRC_LED", "NRC_FOCUS", "NRC_DARK"),
    "NIRISS": ("NIS_IMAGE", "NIS_FOCUS", "NIS_DARK", "NIS_LAMP"),
    "MIRI": ("MIR_IMAGE", "MIR_TACQ", "MIR_FLATIMAGE", "MIR_DARKIMG"),
    "FGS": ("FGS_IMAGE", "FGS_FOCUS", "FGS_SKYFLAT", "FGS_INTFLAT", "FGS_DARK"),
}
IMAGING_EXP_TYPES["NIRCAM"] += ("NRC_CORON",)  # coronagraphic images read the imaging references (refs/sim/coron.py)
IMAGING_EXP_TYPES["NIRISS"] += ("NIS_AMI",)  # the detector and imaging references of AMI (refs/sim/ami.py)
IMAGING_EXP_TYPES["MIRI"] += ("MIR_4QPM", "MIR_LYOT")  # MIRI coronagraphy reads the imager's references (refs/sim/coron_miri.py)

# Reference types each mode reads in jwst 3.0 (detector1 + image2 + image3, or guider).
NIR_REFTYPES = (
    "mask", "saturation", "superbias", "ipc", "linearity", "dark", "gain", "readnoise",
    "distortion", "filteroffset", "flat", "photom", "area", "apcorr", "abvegaoffset",
)
MIRI_REFTYPES = (
    "mask", "emicorr", "saturation", "ipc", "reset", "linearity", "rscd", "dark", "gain", "readnoise",
    "distortion", "filteroffset", "flat", "photom", "area", "apcorr", "abvegaoffset",
)
GUIDER_REFTYPES = ("mask", "gain", "readnoise", "flat")
# the MIRI MRS detectors (MIRIFUSHORT, MIRIFULONG): detector1's references; the spectroscopic ones are
# written by refs/synthetic_mrs.py (refs/sim/mrs.py adds their rules)
MRS_DETECTOR_REFTYPES = ("mask", "emicorr", "saturation", "ipc", "reset", "linearity", "rscd", "dark", "gain",
                         "readnoise")


def mode_reftypes(instrument: str, exp_type: str) -> tuple[str, ...]:
    """The reference types that jwst 3.0 reads for ``instrument`` in ``exp_type``."""
    instrument = instrument.upper()
    exp_type = (exp_type or "").upper()
    if instrument == "FGS" and exp_type in GUIDER_EXP_TYPES:
        return GUIDER_REFTYPES
    if instrument == "MIRI" and exp_type == "MIR_MRS":  # the MRS detectors' Stage 1 set (refs/sim/mrs.py)
        return MRS_DETECTOR_REFTYPES
    if instrument not in IMAGING_EXP_TYPES or (exp_type and exp_type not in IMAGING_EXP_TYPES[instrument]):
        raise UnsupportedModeError(
            f"synthetic references cover NIRCam, NIRISS and MIRI imaging and FGS (imaging and guider modes); "
            f"not {instrument} {exp_type or '(no EXP_TYPE)'}"
        )
    if instrument == "MIRI":
        return MIRI_REFTYPES
    if instrument == "FGS":
        return tuple(r for r in NIR_REFTYPES if r != "filteroffset")
    return NIR_REFTYPES


# ---------------------------------------------------------------------------
# detectors


@dataclass(frozen=True)
class DetectorSpec:
    """Nominal properties of one detector, from which the per-pixel content is drawn."""

    instrument: str
    detector: str
    siaf_instrument: str
    siaf_aperture: str  # full-frame aperture whose sci frame is the DMS frame
    shape: tuple[int, int]  # full frame (ny, nx)
    refpix: tuple[int, int, int, int]  # reference pixels at (bottom, top, left, right)
    amp_axis: str  # "x": amplifiers are blocks of columns; "y": blocks of rows; "interleaved": x % 4
    namps: int
    gain: float  # e-/DN
    readnoise: float  # DN per read
    bias: float  # DN
    dark_rate: float  # DN/s
    full_well: float  # e-
    lin_c2: float  # second-order linearity coefficient (1/DN)
    lin_c3: float
    ipc_alpha: float
    ipc_beta: float
    module: str | None = None
    channel: str | None = None


def _nircam(det: str) -> DetectorSpec:
    long = det.endswith("LONG")
    module = det[3]
    siaf = f"NRC{module}5_FULL" if long else f"{det}_FULL"
    return DetectorSpec(
        "NIRCAM", det, "NIRCam", siaf, (2048, 2048), (4, 4, 4, 4), "x", 4,
        gain=1.82 if long else 2.05, readnoise=8.5 if long else 7.6, bias=12500.0 + (700.0 if long else 0.0),
        dark_rate=0.015 if long else 0.0012, full_well=83000.0 if long else 105000.0,
        lin_c2=1.45e-6 if long else 1.6e-6, lin_c3=3.0e-12 if long else 4.0e-12,
        ipc_alpha=0.0049 if long else 0.0058, ipc_beta=0.0003,
        module=module, channel="LONG" if long else "SHORT",
    )


NIRCAM_DETECTORS = ("NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCALONG", "NRCB1", "NRCB2", "NRCB3", "NRCB4", "NRCBLONG")


def detector_spec(instrument: str, detector: str) -> DetectorSpec:
    instrument = (instrument or "").upper()
    detector = (detector or "").upper()
    if instrument == "NIRCAM" and detector in NIRCAM_DETECTORS:
        return _nircam(detector)
    if instrument == "NIRISS" and detector == "NIS":
        return DetectorSpec(
            "NIRISS", "NIS", "NIRISS", "NIS_CEN", (2048, 2048), (4, 4, 4, 4), "y", 4,
            gain=1.61, readnoise=11.5, bias=11800.0, dark_rate=0.012, full_well=95000.0,
            lin_c2=1.7e-6, lin_c3=4.5e-12, ipc_alpha=0.0052, ipc_beta=0.0003,
        )
    if instrument == "FGS" and detector in ("GUIDER1", "GUIDER2"):
        return DetectorSpec(
            "FGS", detector, "FGS", f"FGS{detector[-1]}_FULL", (2048, 2048), (4, 4, 4, 4), "y", 4,
            gain=1.98 if detector == "GUIDER1" else 1.87, readnoise=9.8, bias=11200.0 if detector == "GUIDER1" else 12100.0,
            dark_rate=0.02, full_well=90000.0, lin_c2=1.5e-6, lin_c3=4.0e-12, ipc_alpha=0.006, ipc_beta=0.0003,
        )
    if instrument == "MIRI" and detector == "MIRIMAGE":
        return DetectorSpec(
            "MIRI", "MIRIMAGE", "MIRI", "MIRIM_FULL", (1024, 1032), (0, 0, 4, 4), "interleaved", 4,
            gain=5.5, readnoise=6.6, bias=13500.0, dark_rate=0.04, full_well=250000.0,
            lin_c2=2.4e-6, lin_c3=1.0e-11, ipc_alpha=0.011, ipc_beta=0.0015,
        )
    if instrument == "MIRI" and detector in ("MIRIFUSHORT", "MIRIFULONG"):  # the MRS detectors (refs/sim/mrs.py)
        short = detector == "MIRIFUSHORT"
        return DetectorSpec(
            "MIRI", detector, "MIRI", "MIRIFU_CHANNEL1A" if short else "MIRIFU_CHANNEL3A", (1024, 1032), (0, 0, 4, 4),
            "interleaved", 4, gain=5.5, readnoise=6.8 if short else 7.1, bias=13200.0 if short else 13800.0,
            dark_rate=0.03 if short else 0.06, full_well=250000.0, lin_c2=2.3e-6, lin_c3=1.0e-11,
            ipc_alpha=0.011, ipc_beta=0.0015,
        )
    raise UnsupportedModeError(f"no synthetic detector model for {instrument or '?'} detector {detector or '?'}")


# ---------------------------------------------------------------------------
# the exposure configuration a reference set is built for


@dataclass(frozen=True)
class ExposureConfig:
    """What a reference set depends on, read from an exposure's metadata."""

    instrument: str
    detector: str
    exp_type: str
    subarray: str
    xstart: int  # 1-based, DMS (science) frame
    ystart: int
    xsize: int
    ysize: int
    readpatt: str | None = None
    nframes: int = 1
    groupgap: int = 0
    ngroups: int = 1
    nints: int = 1
    frame_time: float | None = None
    filter: str | None = None
    pupil: str | None = None

    @property
    def is_guider(self) -> bool:
        return self.instrument == "FGS" and self.exp_type in GUIDER_EXP_TYPES

    @property
    def region(self) -> "Region":
        return Region(self.subarray, self.xstart, self.ystart, self.xsize, self.ysize)


@dataclass(frozen=True)
class Region:
    """A window of a detector in 1-based full-frame DMS pixel coordinates."""

    name: str
    xstart: int
    ystart: int
    xsize: int
    ysize: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.ystart - 1, self.ystart - 1 + self.ysize), slice(self.xstart - 1, self.xstart - 1 + self.xsize))


def exposure_config(exposure) -> ExposureConfig:
    """Read the configuration from a webbflow model, its ``meta``, a FITS path, or an ExposureConfig."""
    if isinstance(exposure, ExposureConfig):
        return exposure
    if isinstance(exposure, (str, Path)):
        meta = read_exposure_meta(exposure)
    else:
        meta = getattr(exposure, "meta", exposure)
    ins = meta.instrument
    ex = meta.exposure
    sub = meta.subarray
    instrument = (ins.name or "").upper()
    detector = (ins.detector or "").upper()
    spec = detector_spec(instrument, detector)
    exp_type = (ex.type or "").upper()
    mode_reftypes(instrument, exp_type)  # raises for unsupported modes
    ny, nx = spec.shape
    name = (sub.name or "FULL").upper()
    xstart = int(sub.xstart or 1)
    ystart = int(sub.ystart or 1)
    xsize = int(sub.xsize or (nx if name == "FULL" else 0))
    ysize = int(sub.ysize or (ny if name == "FULL" else 0))
    if xsize <= 0 or ysize <= 0:
        raise UnsupportedModeError(f"exposure subarray {name} has no SUBSIZE1/SUBSIZE2")
    if xstart < 1 or ystart < 1 or xstart - 1 + xsize > nx or ystart - 1 + ysize > ny:
        raise UnsupportedModeError(
            f"subarray {name} (SUBSTRT {xstart},{ystart} SUBSIZE {xsize}x{ysize}) lies outside the {nx}x{ny} detector"
        )
    return ExposureConfig(
        instrument=instrument, detector=detector, exp_type=exp_type, subarray=name,
        xstart=xstart, ystart=ystart, xsize=xsize, ysize=ysize,
        readpatt=(ex.readpatt or None) and str(ex.readpatt).upper(),
        nframes=int(ex.nframes or 1), groupgap=int(ex.groupgap or 0),
        ngroups=int(ex.ngroups or 1), nints=int(ex.nints or 1),
        frame_time=float(ex.frame_time) if ex.frame_time else None,
        filter=(str(ins.filter).upper() if ins.filter else None),
        pupil=(str(ins.pupil).upper() if ins.pupil else None),
    )


def read_exposure_meta(path):
    """The metadata of a JWST FITS file from its headers only (the arrays are not read)."""
    from astropy.io import fits

    from ..errors import InputFileError
    from ..models.meta import KEYWORD_FIELDS, Meta, set_path
    from ..models.io import check_readable

    path = Path(path)
    check_readable(path)
    tree: dict = {}
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            headers = {"PRIMARY": hdul[0].header}
            for h in hdul[1:]:
                if h.name == "SCI":
                    headers["SCI"] = h.header
                    break
            for fpath, key, hdu, _ann in KEYWORD_FIELDS:
                h = headers.get(hdu)
                if h is not None and key in h and not isinstance(h[key], fits.card.Undefined):
                    set_path(tree, fpath, h[key])
    except OSError as exc:
        raise InputFileError(path, f"not a readable FITS file ({exc})") from None
    try:
        return Meta.model_validate(tree)
    except Exception as exc:  # noqa: BLE001 - report as a bad file
        raise InputFileError(path, f"bad metadata ({exc})") from None


def frame_time(cfg: ExposureConfig) -> float:
    """The exposure's frame time: TFRAME if known, else the detector's clocking for that window."""
    if cfg.frame_time:
        return cfg.frame_time
    if cfg.instrument == "MIRI":
        fast = not (cfg.readpatt or "FAST").startswith("SLOW")
        return _miri_rowclocks(cfg.xsize, fast) * cfg.ysize * 10e-6
    nout = 4 if cfg.subarray == "FULL" else 1
    return ((cfg.xsize // nout + 12) * (cfg.ysize + 1) + 1) * 10e-6


def _miri_rowclocks(xsize: int, fast: bool) -> int:
    return xsize // 4 + 13 if fast else (xsize // 4 + 13) * 2333 // 271


# ---------------------------------------------------------------------------
# deterministic random fields


def _rng(seed: int, *labels) -> np.random.Generator:
    h = hashlib.sha256(("\0".join(str(x) for x in labels)).encode()).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *np.frombuffer(h[:16], dtype=np.uint32).tolist()])


def _legendre_field(rng: np.random.Generator, shape, order: int, amplitude: float) -> np.ndarray:
    """A smooth field: a random sum of Legendre products up to ``order``, scaled to rms ``amplitude``."""
    from numpy.polynomial import legendre

    ny, nx = shape
    y = np.linspace(-1, 1, ny)
    x = np.linspace(-1, 1, nx)
    out = np.zeros(shape, dtype=np.float64)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            if i == j == 0:
                continue
            c = rng.normal() / (1 + i + j)
            px = legendre.legval(x, [0] * i + [1])
            py = legendre.legval(y, [0] * j + [1])
            out += c * np.outer(py, px)
    rms = out.std()
    if rms > 0:
        out *= amplitude / rms
    return out.astype(np.float32)


def _amp_index(spec: DetectorSpec) -> np.ndarray:
    """The amplifier number (0..namps-1) of every full-frame pixel, as a broadcastable array."""
    ny, nx = spec.shape
    if spec.amp_axis == "interleaved":
        return (np.arange(nx) % spec.namps)[None, :]
    if spec.amp_axis == "x":
        return (np.arange(nx) // (nx // spec.namps))[None, :]
    return (np.arange(ny) // (ny // spec.namps))[:, None]


class DetectorTruth:
    """The full-frame per-pixel properties of one detector for one seed, computed on first use."""

    def __init__(self, spec: DetectorSpec, seed: int):
        self.spec = spec
        self.seed = int(seed)
        self._cache: dict[str, Any] = {}

    def _r(self, name: str) -> np.random.Generator:
        return _rng(self.seed, self.spec.instrument, self.spec.detector, name)

    def _get(self, name, fn):
        if name not in self._cache:
            self._cache[name] = fn()
        return self._cache[name]

    @property
    def science(self) -> np.ndarray:
        """True where a pixel is light-sensitive (not a reference pixel)."""

        def make():
            ny, nx = self.spec.shape
            b, t, left, right = self.spec.refpix
            m = np.zeros((ny, nx), dtype=bool)
            m[b: ny - t, left: nx - right] = True
            return m

        return self._get("science", make)

    # -- defects --------------------------------------------------------
    @property
    def defects(self) -> dict[str, np.ndarray]:
        """Boolean maps of each defect class, disjoint, science pixels only."""

        def make():
            spec = self.spec
            ny, nx = spec.shape
            rng = self._r("defects")
            u = rng.random((ny, nx), dtype=np.float32)
            sci = self.science
            edges = np.cumsum([0.0002, 0.0008, 0.003, 0.0005, 0.0001, 0.0001])
            dead = (u < edges[0]) & sci
            hot = (u >= edges[0]) & (u < edges[1]) & sci
            warm = (u >= edges[1]) & (u < edges[2]) & sci
            low_qe = (u >= edges[2]) & (u < edges[3]) & sci
            rc = (u >= edges[3]) & (u < edges[4]) & sci
            telegraph = (u >= edges[4]) & (u < edges[5]) & sci
            # a few clusters of dead pixels (particles on the detector)
            yy, xx = np.ogrid[:ny, :nx]
            for _ in range(max(2, (ny * nx) // 700_000)):
                cy, cx = rng.integers(0, ny), rng.integers(0, nx)
                r = rng.uniform(1.5, 6.0)
                y0, y1 = max(0, int(cy - r) - 1), min(ny, int(cy + r) + 2)
                x0, x1 = max(0, int(cx - r) - 1), min(nx, int(cx + r) + 2)
                blob = (yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= r * r
                dead[y0:y1, x0:x1] |= blob & sci[y0:y1, x0:x1]
            for m in (hot, warm, low_qe, rc, telegraph):
                m &= ~dead
            return {"dead": dead, "hot": hot, "warm": warm, "low_qe": low_qe, "rc": rc, "telegraph": telegraph}

        return self._get("defects", make)

    @property
    def dq(self) -> np.ndarray:
        """The bad-pixel mask (uint32, JWST flag values)."""

        def make():
            f = dqflags.PIXEL
            d = self.defects
            dq = np.zeros(self.spec.shape, dtype=np.uint32)
            # as in CRDS's masks: reference pixels are REFERENCE_PIXEL only, so that refpix can use them
            dq[~self.science] = f["REFERENCE_PIXEL"]
            dq[d["dead"]] |= f["DEAD"] | f["DO_NOT_USE"]
            dq[d["hot"]] |= f["HOT"] | f["DO_NOT_USE"]
            dq[d["warm"]] |= f["WARM"]
            dq[d["low_qe"]] |= f["LOW_QE"]
            dq[d["rc"]] |= f["RC"] | f["DO_NOT_USE"]
            dq[d["telegraph"]] |= f["TELEGRAPH"]
            return dq

        return self._get("dq", make)

    # -- electronic properties ------------------------------------------
    @property
    def bias(self) -> np.ndarray:
        def make():
            spec = self.spec
            ny, nx = spec.shape
            rng = self._r("bias")
            amp = _amp_index(spec)
            amp_offsets = rng.normal(0, 220.0, spec.namps).astype(np.float32)
            b = np.full((ny, nx), spec.bias, dtype=np.float32)
            b += amp_offsets[amp]
            cols = rng.normal(0, 9.0, nx).astype(np.float32)
            cols[1::2] += rng.normal(0, 18.0)  # even/odd column offset
            b += cols[None, :]
            rows = np.linspace(-1, 1, ny, dtype=np.float32) * rng.normal(0, 25.0)
            b += rows[:, None]
            b += _legendre_field(rng, (ny, nx), 2, 40.0)
            b += rng.standard_normal((ny, nx), dtype=np.float32) * 22.0
            return b

        return self._get("bias", make)

    @property
    def gain(self) -> np.ndarray:
        def make():
            spec = self.spec
            rng = self._r("gain")
            amp = _amp_index(spec)
            per_amp = (1.0 + rng.normal(0, 0.015, spec.namps)).astype(np.float32)
            g = spec.gain * per_amp[amp] * np.ones(spec.shape, dtype=np.float32)
            g *= 1.0 + _legendre_field(rng, spec.shape, 2, 0.012)
            g *= 1.0 + rng.standard_normal(spec.shape, dtype=np.float32) * 0.006
            return g.astype(np.float32)

        return self._get("gain", make)

    @property
    def readnoise(self) -> np.ndarray:
        def make():
            spec = self.spec
            rng = self._r("readnoise")
            amp = _amp_index(spec)
            per_amp = (1.0 + rng.normal(0, 0.06, spec.namps)).astype(np.float32)
            rn = spec.readnoise * per_amp[amp] * np.ones(spec.shape, dtype=np.float32)
            rn *= np.exp(rng.standard_normal(spec.shape, dtype=np.float32) * 0.08)
            noisy = rng.random(spec.shape, dtype=np.float32) < 0.004
            rn[noisy] *= rng.uniform(1.8, 4.0, int(noisy.sum())).astype(np.float32)
            return rn.astype(np.float32)

        return self._get("readnoise", make)

    @property
    def dark_rate(self) -> np.ndarray:
        """Dark current in DN/s (linearised DN)."""

        def make():
            spec = self.spec
            rng = self._r("dark")
            ny, nx = spec.shape
            d = spec.dark_rate * np.exp(rng.standard_normal((ny, nx), dtype=np.float32) * 0.25)
            # amplifier glow: more dark current near the output corners
            yy = np.linspace(0, 1, ny, dtype=np.float32)[:, None]
            d += spec.dark_rate * 0.8 * np.exp(-yy / 0.04)
            defects = self.defects
            hot = defects["hot"]
            warm = defects["warm"]
            d[hot] = np.exp(rng.uniform(np.log(1.0), np.log(60.0), int(hot.sum()))).astype(np.float32)
            d[warm] = np.exp(rng.uniform(np.log(0.06), np.log(0.8), int(warm.sum()))).astype(np.float32)
            d[~self.science] = 0.0
            return d.astype(np.float32)

        return self._get("dark_rate", make)

    @property
    def well(self) -> np.ndarray:
        """Signal (DN above bias) at which a pixel saturates."""

        def make():
            spec = self.spec
            rng = self._r("well")
            w = spec.full_well / self.gain
            w = w * (1.0 + _legendre_field(rng, spec.shape, 2, 0.015))
            w = w * (1.0 + rng.standard_normal(spec.shape, dtype=np.float32) * 0.01)
            return w.astype(np.float32)

        return self._get("well", make)

    @property
    def saturation(self) -> np.ndarray:
        """Saturation level in raw DN (bias included), at most 65000."""
        return self._get("saturation", lambda: np.minimum(self.bias + self.well, 65000.0).astype(np.float32))

    @property
    def linearity(self) -> np.ndarray:
        """Coefficients (5, ny, nx): ``corrected = sum c_i x**i``; x is bias-subtracted DN (NIR) or raw DN (MIRI)."""

        def make():
            spec = self.spec
            rng = self._r("linearity")
            ny, nx = spec.shape
            c = np.zeros((5, ny, nx), dtype=np.float32)
            c[1] = 1.0
            c2 = spec.lin_c2 * (1.0 + _legendre_field(rng, spec.shape, 2, 0.08))
            c2 *= 1.0 + rng.standard_normal(spec.shape, dtype=np.float32) * 0.03
            c3 = spec.lin_c3 * (1.0 + rng.standard_normal(spec.shape, dtype=np.float32) * 0.05)
            c[2] = c2
            c[3] = c3
            # reference pixels carry no signal: identity correction
            c[2][~self.science] = 0.0
            c[3][~self.science] = 0.0
            return c

        return self._get("linearity", make)

    @property
    def prnu(self) -> np.ndarray:
        """Filter-independent part of the flat: pixel response and detector structure."""

        def make():
            spec = self.spec
            rng = self._r("prnu")
            ny, nx = spec.shape
            p = 1.0 + rng.standard_normal((ny, nx), dtype=np.float32) * 0.011
            # faint cross-hatching along the two diagonals
            yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
            p *= 1.0 + 0.003 * np.sin((xx + yy) * (2 * np.pi / rng.uniform(9.0, 14.0)))
            p *= 1.0 + 0.002 * np.sin((xx - yy) * (2 * np.pi / rng.uniform(11.0, 17.0)))
            d = self.defects
            p[d["low_qe"]] *= rng.uniform(0.3, 0.75, int(d["low_qe"].sum())).astype(np.float32)
            return p.astype(np.float32)

        return self._get("prnu", make)

    @property
    def motes(self) -> list[tuple[float, float, float, float]]:
        """Dust motes (y, x, radius px, depth) that darken the flat."""

        def make():
            rng = self._r("motes")
            ny, nx = self.spec.shape
            n = int(rng.integers(6, 14))
            return [
                (float(rng.uniform(0, ny)), float(rng.uniform(0, nx)), float(rng.uniform(6, 25)), float(rng.uniform(0.02, 0.08)))
                for _ in range(n)
            ]

        return self._get("motes", make)

    def flat(self, filt: str | None, pupil: str | None, region: Region) -> np.ndarray:
        """The flat for one filter on ``region`` (median close to 1 over the detector)."""
        spec = self.spec
        ny, nx = spec.shape
        sl = region.slices
        key = f"flat-large-{filt}-{pupil}"

        def large():
            rng = _rng(self.seed, spec.instrument, spec.detector, "flat", filt or "", pupil or "")
            return _legendre_field(rng, spec.shape, 3, 0.018)

        lf = self._get(key, large)
        f = (1.0 + lf[sl]) * self.prnu[sl]
        y0, x0 = region.ystart - 1, region.xstart - 1
        for my, mx, r, depth in self.motes:
            # each mote darkens a box of +-4 radii around it (exp(-32) beyond)
            by0, by1 = max(y0, int(my - 4 * r)), min(y0 + region.ysize, int(my + 4 * r) + 1)
            bx0, bx1 = max(x0, int(mx - 4 * r)), min(x0 + region.xsize, int(mx + 4 * r) + 1)
            if by0 >= by1 or bx0 >= bx1:
                continue
            yy = np.arange(by0, by1, dtype=np.float32)[:, None]
            xx = np.arange(bx0, bx1, dtype=np.float32)[None, :]
            rr2 = ((yy - my) ** 2 + (xx - mx) ** 2) / (r * r)
            f[by0 - y0: by1 - y0, bx0 - x0: bx1 - x0] *= 1.0 - depth * np.exp(-rr2 * 2.0)
        return f.astype(np.float32)


@functools.lru_cache(maxsize=2)
def detector_truth(instrument: str, detector: str, seed: int = 0) -> DetectorTruth:
    """The (cached) full-frame truth of one detector for ``seed``."""
    return DetectorTruth(detector_spec(instrument, detector), seed)


# ---------------------------------------------------------------------------
# SIAF geometry


@functools.lru_cache(maxsize=None)
def _siaf(instrument: str):
    import logging
    import warnings

    logging.getLogger("pysiaf").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pysiaf

        return pysiaf.Siaf(instrument)


def siaf_aperture(spec: DetectorSpec):
    return _siaf(spec.siaf_instrument)[spec.siaf_aperture]


def siaf_subarray(instrument: str, detector: str, subarray: str) -> Region:
    """Where a named subarray lies on the detector (1-based DMS frame), from the SIAF.

    ``siaf_subarray("NIRCAM", "NRCB1", "SUB64P")`` -> Region("SUB64P", 1851, 1817, 64, 64).
    """
    spec = detector_spec(instrument, detector)
    subarray = subarray.upper()
    ny, nx = spec.shape
    if subarray == "FULL":
        return Region("FULL", 1, 1, nx, ny)
    prefix = spec.siaf_aperture.rsplit("_", 1)[0]
    if spec.instrument == "NIRISS":
        prefix = "NIS"
    names = [f"{prefix}_{subarray}"]
    siaf = _siaf(spec.siaf_instrument)
    for name in names:
        if name in siaf.apertures:
            ap = siaf[name]
            full = siaf_aperture(spec)
            corners = [full.det_to_sci(*ap.sci_to_det(x, y)) for x, y in ((1, 1), (ap.XSciSize, ap.YSciSize))]
            xs = [c[0] for c in corners]
            ys = [c[1] for c in corners]
            return Region(subarray, int(round(min(xs))), int(round(min(ys))), int(ap.XSciSize), int(ap.YSciSize))
    raise UnsupportedModeError(f"the SIAF has no aperture {names[0]} for {instrument} {detector} subarray {subarray}")


def _siaf_poly(coeffs, degree: int):
    """pysiaf's coefficient vector (x**(i-j) y**j, j<=i<=degree) as an astropy Polynomial2D."""
    from astropy.modeling import models

    p = models.Polynomial2D(degree)
    k = 0
    for i in range(degree + 1):
        for j in range(i + 1):
            setattr(p, f"c{i - j}_{j}", float(coeffs[k]))
            k += 1
    return p


INVERSE_DEGREE = 8


def distortion_transform(spec: DetectorSpec):
    """Detector pixels (0-based, full-frame DMS frame) -> V2/V3 in arcsec, with an explicit inverse.

    Built from the SIAF full-frame aperture of the detector: 0-based pixels to
    1-based science pixels, offsets from the reference pixel, the Sci2Idl
    polynomials, then the planar Idl2Tel rotation/parity and the V2Ref/V3Ref
    offset (pysiaf's ``sci_to_tel``).  The inverse undoes the rotation exactly
    and maps ideal coordinates back to pixels with a degree-8 polynomial fitted
    to the forward polynomials over the detector and a 5 % margin, which
    round-trips to better than 1e-4 px (the SIAF's own Idl2Sci polynomials
    only reach ~1e-2 px at the corners).
    """
    from astropy.modeling import fitting, models

    ap = siaf_aperture(spec)
    deg = int(ap.Sci2IdlDeg)
    co = ap.get_polynomial_coefficients()
    theta = math.radians(ap.V3IdlYAngle)
    par = float(ap.VIdlParity)
    matrix = np.array([[par * math.cos(theta), math.sin(theta)], [-par * math.sin(theta), math.cos(theta)]])
    px, py = _siaf_poly(co["Sci2IdlX"], deg), _siaf_poly(co["Sci2IdlY"], deg)
    to_sci = models.Shift(1.0 - ap.XSciRef) & models.Shift(1.0 - ap.YSciRef)
    sci2idl = models.Mapping((0, 1, 0, 1)) | (px & py)
    idl2tel = models.AffineTransformation2D(matrix=matrix, translation=[ap.V2Ref, ap.V3Ref])
    forward = to_sci | sci2idl | idl2tel

    ny, nx = spec.shape
    gx, gy = np.meshgrid(np.linspace(-0.05 * nx, 1.05 * nx, 90), np.linspace(-0.05 * ny, 1.05 * ny, 90))
    dx, dy = gx + 1.0 - ap.XSciRef, gy + 1.0 - ap.YSciRef
    xi, yi = px(dx, dy), py(dx, dy)
    scale = float(max(np.abs(xi).max(), np.abs(yi).max()))
    fitter = fitting.LinearLSQFitter()
    inv_x = fitter(models.Polynomial2D(INVERSE_DEGREE), xi / scale, yi / scale, dx)
    inv_y = fitter(models.Polynomial2D(INVERSE_DEGREE), xi / scale, yi / scale, dy)

    tel2idl = (models.Shift(-ap.V2Ref) & models.Shift(-ap.V3Ref)) | models.AffineTransformation2D(
        matrix=np.linalg.inv(matrix), translation=[0.0, 0.0]
    )
    idl2sci = (models.Scale(1.0 / scale) & models.Scale(1.0 / scale)) | models.Mapping((0, 1, 0, 1)) | (inv_x & inv_y)
    from_sci = models.Shift(ap.XSciRef - 1.0) & models.Shift(ap.YSciRef - 1.0)
    forward.inverse = tel2idl | idl2sci | from_sci
    forward.name = f"{spec.detector.lower()}_det_to_v2v3"
    return forward


def _coeff_matrix(coeffs, degree: int) -> np.ndarray:
    """pysiaf's coefficient vector as a matrix ``C[i, j]`` of ``x**i y**j``."""
    c = np.zeros((degree + 1, degree + 1))
    k = 0
    for i in range(degree + 1):
        for j in range(i + 1):
            c[i - j, j] = coeffs[k]
            k += 1
    return c


def pixel_area_map(spec: DetectorSpec, region: Region) -> tuple[np.ndarray, float]:
    """Relative pixel area on ``region`` (1 at the SIAF reference pixel) and the nominal area in arcsec^2.

    The area of a pixel is the Jacobian determinant of the Sci2Idl polynomials
    (ideal coordinates are a tangent plane in arcsec).
    """
    from numpy.polynomial import polynomial as P

    ap = siaf_aperture(spec)
    deg = int(ap.Sci2IdlDeg)
    co = ap.get_polynomial_coefficients()
    cx = _coeff_matrix(co["Sci2IdlX"], deg)
    cy = _coeff_matrix(co["Sci2IdlY"], deg)
    dxdx, dxdy = P.polyder(cx, axis=0), P.polyder(cx, axis=1)
    dydx, dydy = P.polyder(cy, axis=0), P.polyder(cy, axis=1)
    # science pixel offsets from the reference pixel along each axis of the window
    xs = np.arange(region.xstart, region.xstart + region.xsize, dtype=np.float64) - ap.XSciRef
    ys = np.arange(region.ystart, region.ystart + region.ysize, dtype=np.float64) - ap.YSciRef

    def grid(c):  # polygrid2d gives [x, y]; images are [y, x]
        return P.polygrid2d(xs, ys, c).T

    det = np.abs(grid(dxdx) * grid(dydy) - grid(dxdy) * grid(dydx))
    nominal = float(abs(dxdx[0, 0] * dydy[0, 0] - dxdy[0, 0] * dydx[0, 0]))
    return (det / nominal).astype(np.float32), nominal


# ---------------------------------------------------------------------------
# filters

# (pivot wavelength um, bandwidth um) per filter element
NIRCAM_FILTERS = {
    "F070W": (0.704, 0.128), "F090W": (0.901, 0.194), "F115W": (1.154, 0.225), "F140M": (1.404, 0.142),
    "F150W": (1.501, 0.318), "F150W2": (1.659, 1.176), "F162M": (1.626, 0.168), "F164N": (1.644, 0.020),
    "F182M": (1.845, 0.238), "F187N": (1.874, 0.024), "F200W": (1.990, 0.461), "F210M": (2.093, 0.205),
    "F212N": (2.120, 0.027), "F250M": (2.503, 0.181), "F277W": (2.786, 0.672), "F300M": (2.996, 0.318),
    "F322W2": (3.247, 1.339), "F323N": (3.237, 0.038), "F335M": (3.365, 0.347), "F356W": (3.563, 0.787),
    "F360M": (3.621, 0.372), "F405N": (4.055, 0.046), "F410M": (4.092, 0.436), "F430M": (4.280, 0.228),
    "F444W": (4.421, 1.024), "F460M": (4.630, 0.228), "F466N": (4.654, 0.054), "F470N": (4.707, 0.051),
    "F480M": (4.834, 0.303),
}
# NIRCam (filter, pupil) imaging combinations per channel; the element that defines the band is named
NIRCAM_COMBOS = {
    "SHORT": [(f, "CLEAR") for f in ("F070W", "F090W", "F115W", "F140M", "F150W", "F150W2", "F182M", "F187N", "F200W", "F210M", "F212N")]
    + [("F150W2", "F162M"), ("F150W2", "F164N"), ("F200W", "WLP8"), ("F212N", "WLP8"), ("F212N", "WLM8")],
    "LONG": [(f, "CLEAR") for f in ("F250M", "F277W", "F300M", "F322W2", "F335M", "F356W", "F360M", "F410M", "F430M", "F444W", "F460M", "F480M")]
    + [("F322W2", "F323N"), ("F444W", "F405N"), ("F444W", "F466N"), ("F444W", "F470N")],
}
# the filters NIRCam uses behind its coronagraphic masks, and the pupil wheel's mask elements
NIRCAM_CORON_FILTERS = ("F182M", "F187N", "F200W", "F210M", "F250M", "F300M", "F335M", "F356W", "F410M",
                        "F430M", "F444W", "F460M")
NIRCAM_CORON_PUPILS = ("MASKRND", "MASKBAR")
NIRISS_FILTERS = {
    "F090W": (0.900, 0.20), "F115W": (1.150, 0.26), "F140M": (1.404, 0.14), "F150W": (1.494, 0.32),
    "F158M": (1.582, 0.20), "F200W": (1.993, 0.46), "F277W": (2.763, 0.67), "F356W": (3.529, 0.84),
    "F380M": (3.826, 0.20), "F430M": (4.283, 0.23), "F444W": (4.415, 1.02), "F480M": (4.817, 0.30),
}
NIRISS_COMBOS = [("CLEAR", p) for p in ("F090W", "F115W", "F140M", "F150W", "F158M", "F200W")] + [
    (f, "CLEARP") for f in ("F277W", "F356W", "F380M", "F430M", "F444W", "F480M")
]
MIRI_FILTERS = {
    "F560W": (5.63, 1.2), "F770W": (7.64, 2.2), "F1000W": (9.95, 2.0), "F1130W": (11.31, 0.7),
    "F1280W": (12.81, 2.4), "F1500W": (15.06, 3.0), "F1800W": (17.98, 3.0), "F2100W": (20.80, 5.0),
    "F2550W": (25.36, 4.0), "F2550WR": (25.36, 4.0), "F1065C": (10.58, 0.75), "F1140C": (11.31, 0.8),
    "F1550C": (15.52, 0.9), "F2300C": (22.64, 5.5),
}
MIRI_SUBARRAYS = ("FULL", "BRIGHTSKY", "SUB256", "SUB128", "SUB64", "MASK1065", "MASK1140", "MASK1550", "MASKLYOT")
MIRI_READPATTS = ("FAST", "SLOW", "FASTR1", "SLOWR1", "FASTR100")
FGS_BAND = (2.4, 4.2)

TELESCOPE_AREA_M2 = 25.4
PLANCK = 6.62607015e-34


def filter_combos(spec: DetectorSpec) -> list[tuple[str | None, str | None]]:
    """The (filter, pupil) imaging combinations of a detector (MIRI: pupil None; FGS: [(None, None)])."""
    if spec.instrument == "NIRCAM":
        return list(NIRCAM_COMBOS[spec.channel or "SHORT"])
    if spec.instrument == "NIRISS":
        return list(NIRISS_COMBOS)
    if spec.instrument == "MIRI":
        return [(f, None) for f in MIRI_FILTERS]
    return [(None, None)]


def band_of(spec: DetectorSpec, filt: str | None, pupil: str | None) -> tuple[float, float]:
    """Pivot wavelength and bandwidth (um) of a filter/pupil combination."""
    if spec.instrument == "NIRCAM":
        table = NIRCAM_FILTERS
        name = pupil if pupil in table else filt
    elif spec.instrument == "NIRISS":
        table = NIRISS_FILTERS
        name = pupil if pupil in table else filt
    elif spec.instrument == "MIRI":
        table = MIRI_FILTERS
        name = filt
    else:
        return FGS_BAND
    if name not in table:
        raise UnsupportedModeError(f"no synthetic bandpass for {spec.instrument} filter {filt} pupil {pupil}")
    return table[name]


def photmjsr(spec: DetectorSpec, filt, pupil, pixel_area_sr: float) -> float:
    """MJy/sr per DN/s for a uniform source: gain * h / (A * T * dlambda/lambda) per pixel solid angle."""
    pivot, width = band_of(spec, filt, pupil)
    throughput = {"NIRCAM": 0.36, "NIRISS": 0.30, "FGS": 0.40, "MIRI": 0.22}[spec.instrument]
    if width / pivot < 0.03:  # narrow bands transmit a little less
        throughput *= 0.8
    fnu_jy = spec.gain * PLANCK / (TELESCOPE_AREA_M2 * throughput * (width / pivot)) * 1e26
    return float(fnu_jy / pixel_area_sr / 1e6)


_VEGA_AB = ((0.44, -0.1), (0.55, 0.02), (0.7, 0.2), (0.9, 0.48), (1.25, 0.91), (1.65, 1.39), (2.2, 1.85),
            (3.6, 2.79), (4.5, 3.26), (5.8, 3.73), (8.0, 4.40), (12.0, 5.17), (24.0, 6.66), (30.0, 7.1))


def abvega(pivot_um: float) -> float:
    """m_AB - m_Vega at a pivot wavelength, interpolated in log wavelength."""
    lam = np.log([p[0] for p in _VEGA_AB])
    off = [p[1] for p in _VEGA_AB]
    return float(np.interp(np.log(pivot_um), lam, off))


PSF_JITTER_FWHM = 0.007  # arcsec, added in quadrature to the diffraction FWHM
PSF_MOFFAT_BETA = 2.5  # the encircled-energy curve is a Moffat's (a core with extended wings)


def psf_fwhm_pix(spec: DetectorSpec, pivot_um: float, pixel_scale: float) -> float:
    """PSF FWHM in pixels: diffraction (1.03 lambda/D, D = 6.5 m) and pointing jitter in quadrature."""
    fwhm_arcsec = math.hypot(1.03 * pivot_um * 1e-6 / 6.5 * 206264.806, PSF_JITTER_FWHM)
    return fwhm_arcsec / pixel_scale


def ee_radius(fwhm_pix: float, ee: float, beta: float = PSF_MOFFAT_BETA) -> float:
    """Radius (px) enclosing the fraction ``ee`` of a Moffat PSF's energy: EE(r) = 1 - (1 + (r/alpha)^2)^(1-beta)."""
    alpha = fwhm_pix / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return float(alpha * math.sqrt((1.0 - ee) ** (1.0 / (1.0 - beta)) - 1.0))


# ---------------------------------------------------------------------------
# building the models


def _dq_def(flags) -> np.ndarray:
    rows = []
    for name in flags:
        value = dqflags.PIXEL[name]
        rows.append((int(value).bit_length() - 1, value, name, _DQ_DESCRIPTIONS.get(name, name.replace("_", " ").lower())))
    return np.array(rows, dtype=[("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")])


_DQ_DESCRIPTIONS = {
    "DO_NOT_USE": "Bad pixel. Do not use.",
    "DEAD": "Dead pixel",
    "HOT": "Hot pixel",
    "WARM": "Warm pixel",
    "LOW_QE": "Low quantum efficiency",
    "RC": "RC pixel",
    "TELEGRAPH": "Telegraph pixel",
    "REFERENCE_PIXEL": "Pixel is a reference pixel",
    "NO_SAT_CHECK": "Saturation check not possible",
    "NO_LIN_CORR": "Linearity correction not available",
    "UNRELIABLE_BIAS": "Bias variance large",
    "UNRELIABLE_DARK": "Dark variance large",
    "NO_FLAT_FIELD": "Flat field cannot be measured",
    "UNRELIABLE_FLAT": "Flat variance large",
    "NO_GAIN_VALUE": "Gain cannot be measured",
}

MASK_FLAGS = ("DO_NOT_USE", "DEAD", "HOT", "WARM", "LOW_QE", "RC", "TELEGRAPH", "REFERENCE_PIXEL")


def _instrument_label(cfg: ExposureConfig) -> str:
    return {"NIRCAM": "NIRCam", "NIRISS": "NIRISS", "MIRI": "MIRI", "FGS": "FGS"}[cfg.instrument]


def reference_provenance(model, reftype: str, description: str):
    """The keywords every synthetic reference carries (REFTYPE, USEAFTER, PEDIGREE, AUTHOR, ...); returns its meta."""
    m = model.meta
    m.reftype = reftype.upper()
    m.useafter = USEAFTER
    m.pedigree = PEDIGREE
    m.author = AUTHOR
    m.telescope = "JWST"
    m.origin = "webbflow"
    m.description = description[:68]
    return m


def _header(model, reftype: str, cfg: ExposureConfig, spec: DetectorSpec, region: Region | None, what: str):
    where = f"{spec.detector}" + (f" {region.name}" if region is not None else "")
    m = reference_provenance(model, reftype, f"Synthetic {_instrument_label(cfg)} {what} for {where}")
    m.instrument.name = spec.instrument
    m.instrument.detector = spec.detector
    if spec.module:
        m.instrument.module = spec.module
    if spec.channel:
        m.instrument.channel = spec.channel
    if region is not None:
        m.subarray.name = region.name
        m.subarray.xstart = region.xstart
        m.subarray.ystart = region.ystart
        m.subarray.xsize = region.xsize
        m.subarray.ysize = region.ysize
        fast, slow = detector_axes(spec.detector)
        m.subarray.fastaxis = fast
        m.subarray.slowaxis = slow
    return model


def detector_axes(detector: str) -> tuple[int, int]:
    """(FASTAXIS, SLOWAXIS) of a detector: how its readout maps onto the DMS frame."""
    return {
        "NRCA1": (-1, 2), "NRCA2": (1, -2), "NRCA3": (-1, 2), "NRCA4": (1, -2), "NRCALONG": (-1, 2),
        "NRCB1": (1, -2), "NRCB2": (-1, 2), "NRCB3": (1, -2), "NRCB4": (-1, 2), "NRCBLONG": (1, -2),
        "NIS": (-2, -1), "GUIDER1": (-2, -1), "GUIDER2": (2, -1), "MIRIMAGE": (1, 2),
        "MIRIFUSHORT": (1, 2), "MIRIFULONG": (1, 2),
    }[detector.upper()]


def reference_region(cfg: ExposureConfig, reftype: str | None = None) -> Region:
    """The window the per-pixel references cover: the exposure's subarray, or the full frame for guider modes.

    FGS guider windows (ID, ACQ, TRACK, FINEGUIDE) move from exposure to
    exposure under the same SUBARRAY name, so their references are full frame
    and jwst cuts the window out, as it does with the real ones.
    """
    if cfg.is_guider or (reftype == "area" and cfg.exp_type == "NRC_CORON"):
        # (coronagraphic subarrays get a full-frame pixel-area map, as the real CRDS files are:
        # jwst cuts it by SUBSTRT, which leaves a subarray-shaped one an empty AREA)
        spec = detector_spec(cfg.instrument, cfg.detector)
        ny, nx = spec.shape
        return Region("FULL", 1, 1, nx, ny)
    return cfg.region


def make_mask(cfg, truth: DetectorTruth, region: Region):
    from ..models import MaskModel

    m = MaskModel(dq=truth.dq[region.slices].copy())
    m.dq_def = _dq_def(MASK_FLAGS)
    return _header(m, "mask", cfg, truth.spec, region, "bad pixel mask")


def make_superbias(cfg, truth, region):
    from ..models import SuperBiasModel

    f = dqflags.PIXEL
    sl = region.slices
    data = truth.bias[sl].copy()
    # the error of a mean of ~100 bias frames, larger for noisy pixels
    err = (truth.readnoise[sl] / 10.0).astype(np.float32)
    dq = np.zeros(data.shape, dtype=np.uint32)
    unreliable = (truth.readnoise[sl] > 2.5 * truth.spec.readnoise) & truth.science[sl]
    dq[unreliable] = f["UNRELIABLE_BIAS"]
    m = SuperBiasModel(data=data, err=err, dq=dq)
    m.dq_def = _dq_def(("DO_NOT_USE", "UNRELIABLE_BIAS"))
    m.meta.bunit_data = "DN"
    return _header(m, "superbias", cfg, truth.spec, region, "superbias")


def make_saturation(cfg, truth, region):
    from ..models import SaturationModel

    f = dqflags.PIXEL
    sl = region.slices
    data = truth.saturation[sl].copy()
    dq = np.zeros(data.shape, dtype=np.uint32)
    dead = truth.defects["dead"][sl]
    dq[dead] = f["NO_SAT_CHECK"] | f["DO_NOT_USE"]
    data[dead] = np.nan
    m = SaturationModel(data=data, dq=dq)
    m.dq_def = _dq_def(("DO_NOT_USE", "NO_SAT_CHECK"))
    m.meta.bunit_data = "DN"
    return _header(m, "saturation", cfg, truth.spec, region, "saturation levels")


def make_linearity(cfg, truth, region):
    from ..models import LinearityModel

    f = dqflags.PIXEL
    sl = region.slices
    coeffs = truth.linearity[:, sl[0], sl[1]].copy()
    dq = np.zeros(coeffs.shape[1:], dtype=np.uint32)
    dead = truth.defects["dead"][sl]
    coeffs[:, dead] = np.nan
    dq[dead] = f["NO_LIN_CORR"] | f["DO_NOT_USE"]
    m = LinearityModel(coeffs=coeffs, dq=dq)
    m.dq_def = _dq_def(("DO_NOT_USE", "NO_LIN_CORR"))
    return _header(m, "linearity", cfg, truth.spec, region, "linearity coefficients")


def group_times(cfg: ExposureConfig, ngroups: int) -> np.ndarray:
    """Mean time since reset (s) of the frames averaged into each group."""
    tf = frame_time(cfg)
    per = cfg.nframes + cfg.groupgap
    t = np.empty(ngroups)
    for g in range(ngroups):
        frames = g * per + np.arange(cfg.nframes)
        t[g] = np.mean(frames + 1) * tf
    return t


def dark_ramp(cfg: ExposureConfig, truth: DetectorTruth, region: Region, ngroups: int, integration: int = 0) -> np.ndarray:
    """The dark signal (DN) of each group: dark current times time, plus a small reset transient."""
    sl = region.slices
    rate = truth.dark_rate[sl]
    t = group_times(cfg, ngroups)
    spec = truth.spec
    out = rate[None, :, :] * t[:, None, None].astype(np.float32)
    # a decaying offset after reset, per amplifier (a few DN, larger for MIRI)
    amp = np.broadcast_to(_amp_index(spec), spec.shape)[sl]
    rng = _rng(truth.seed, spec.detector, "dark-transient")
    amp_amp = rng.uniform(0.5, 2.0, spec.namps).astype(np.float32) * (8.0 if spec.instrument == "MIRI" else 1.0)
    if integration > 0:
        amp_amp *= 0.5
    tau = 3.0 * frame_time(cfg)
    out += amp_amp[amp][None] * (1.0 - np.exp(-t / tau)).astype(np.float32)[:, None, None]
    out[:, ~truth.science[sl]] = 0.0
    return out.astype(np.float32)


def make_dark(cfg, truth, region):
    from ..models import DarkMIRIModel, DarkModel

    f = dqflags.PIXEL
    sl = region.slices
    spec = truth.spec
    ng = cfg.ngroups
    dq2 = np.zeros((region.ysize, region.xsize), dtype=np.uint32)
    d = truth.defects
    dq2[d["hot"][sl]] = f["HOT"] | f["DO_NOT_USE"]
    dq2[d["warm"][sl]] = f["WARM"]
    avg_e = (truth.dark_rate[sl] * truth.gain[sl]).astype(np.float32)
    if spec.instrument == "MIRI":
        nints = 2
        data = np.stack([dark_ramp(cfg, truth, region, ng, i) for i in range(nints)])
        err = np.broadcast_to(truth.readnoise[sl] / 6.0, data.shape).astype(np.float32).copy()
        m = DarkMIRIModel(data=data, err=err, dq=np.broadcast_to(dq2, (nints, 1) + dq2.shape).copy())
        m.meta.exposure.nints = nints
    else:
        data = dark_ramp(cfg, truth, region, ng)
        err = np.broadcast_to(truth.readnoise[sl] / 6.0, data.shape).astype(np.float32).copy()
        m = DarkModel(data=data, err=err, dq=dq2)
    # jwst 3.0 applies a 2-D AVDRKCUR only when the ramp already carries one of
    # its shape; the scalar keyword (median e-/s of the light-sensitive
    # pixels) is what it uses for the Poisson noise of the dark.
    m.meta.exposure.average_dark_current = float(np.median(avg_e[truth.science[sl]])) if truth.science[sl].any() else 0.0
    m.dq_def = _dq_def(("DO_NOT_USE", "HOT", "WARM"))
    m.meta.exposure.readpatt = cfg.readpatt
    m.meta.exposure.ngroups = ng
    m.meta.exposure.nframes = cfg.nframes
    m.meta.exposure.groupgap = cfg.groupgap
    m.meta.exposure.frame_time = frame_time(cfg)
    m.meta.exposure.group_time = frame_time(cfg) * (cfg.nframes + cfg.groupgap)
    m.meta.exposure.type = cfg.exp_type
    m.meta.bunit_data = "DN"
    return _header(m, "dark", cfg, spec, region, f"dark, {cfg.readpatt}")


def make_gain(cfg, truth, region):
    from ..models import GainModel

    m = GainModel(data=truth.gain[region.slices].copy())
    m.meta.bunit_data = "electrons/DN"
    return _header(m, "gain", cfg, truth.spec, region, "gain")


def make_readnoise(cfg, truth, region):
    from ..models import ReadnoiseModel

    m = ReadnoiseModel(data=truth.readnoise[region.slices].copy())
    m.meta.bunit_data = "DN"
    return _header(m, "readnoise", cfg, truth.spec, region, "read noise")


def ipc_kernel(spec: DetectorSpec) -> np.ndarray:
    # jwst's ipc step convolves the data with the reference kernel to undo the coupling, so a
    # CRDS IPC kernel is the (approximate) inverse of the physical one: negative neighbours.
    a, b = spec.ipc_alpha, spec.ipc_beta
    k = np.array([[-b, -a, -b], [-a, 1.0 + 4 * a + 4 * b, -a], [-b, -a, -b]], dtype=np.float32)
    return k


def make_ipc(cfg, truth, region):
    from ..models import IPCModel

    m = IPCModel(data=ipc_kernel(truth.spec))
    return _header(m, "ipc", cfg, truth.spec, None, "IPC kernel")


def make_flat(cfg, truth, region):
    from ..models import FlatModel

    f = dqflags.PIXEL
    sl = region.slices
    data = truth.flat(cfg.filter, cfg.pupil, region)
    dq = np.zeros(data.shape, dtype=np.uint32)
    d = truth.defects
    dead = d["dead"][sl]
    data[dead] = np.nan
    dq[dead] = f["NO_FLAT_FIELD"] | f["DO_NOT_USE"]
    dq[d["low_qe"][sl]] |= f["LOW_QE"]
    data[~truth.science[sl]] = 1.0
    err = (0.004 + 0.5 * np.abs(data - 1.0) * 0.02).astype(np.float32)
    err[dead] = np.nan
    m = FlatModel(data=data, dq=dq, err=err)
    m.dq_def = _dq_def(("DO_NOT_USE", "NO_FLAT_FIELD", "LOW_QE"))
    if cfg.filter:
        m.meta.instrument.filter = cfg.filter
    if cfg.pupil and truth.spec.instrument in ("NIRCAM", "NIRISS"):
        m.meta.instrument.pupil = cfg.pupil
    m.meta.exposure.type = cfg.exp_type
    band = "/".join(x for x in (cfg.filter, cfg.pupil if truth.spec.instrument != "MIRI" else None) if x)
    return _header(m, "flat", cfg, truth.spec, region, f"flat {band}".strip())


def pixel_area(spec: DetectorSpec) -> tuple[float, float]:
    """Nominal pixel area at the reference pixel: (steradians, arcsec^2)."""
    _, a2 = pixel_area_map(spec, Region("REF", 1, 1, 1, 1))
    return a2 * (math.pi / 180 / 3600) ** 2, a2


def make_area(cfg, truth, region):
    from ..models import PixelAreaModel

    spec = truth.spec
    # full frame, as CRDS delivers pixel-area maps: photom cuts the exposure's window out
    region = Region("FULL", 1, 1, spec.shape[1], spec.shape[0])
    area, a2 = pixel_area_map(spec, region)
    m = PixelAreaModel(data=area)
    m.meta.photometry.pixelarea_arcsecsq = a2
    m.meta.photometry.pixelarea_steradians = a2 * (math.pi / 180 / 3600) ** 2
    m.meta.exposure.type = cfg.exp_type
    return _header(m, "area", cfg, spec, region, "pixel area map")


def make_photom(cfg, truth, region):
    from ..models import FgsImgPhotomModel, MirImgPhotomModel, NisImgPhotomModel, NrcImgPhotomModel

    spec = truth.spec
    sr, a2 = pixel_area(spec)
    rows = []
    for filt, pupil in filter_combos(spec):
        value = photmjsr(spec, filt, pupil, sr)
        rows.append((filt, pupil, value, value * 0.015))
    if spec.instrument == "NIRCAM":  # coronagraphic rows: the filter's band seen through the mask's pupil
        rows += [(f, mask_pupil, v, u) for mask_pupil in NIRCAM_CORON_PUPILS for (f, p, v, u) in list(rows)
                 if p == "CLEAR" and f in NIRCAM_CORON_FILTERS]
    if spec.instrument == "NIRCAM":
        cls, dt = NrcImgPhotomModel, [("filter", "S12"), ("pupil", "S12"), ("photmjsr", ">f4"), ("uncertainty", ">f4")]
        table = np.array(rows, dtype=dt)
    elif spec.instrument == "NIRISS":
        cls, dt = NisImgPhotomModel, [("filter", "S12"), ("pupil", "S12"), ("photmjsr", ">f4"), ("uncertainty", ">f4")]
        table = np.array(rows, dtype=dt)
    elif spec.instrument == "MIRI":
        cls = MirImgPhotomModel
        dt = [("filter", "S12"), ("subarray", "S17"), ("photmjsr", ">f4"), ("uncertainty", ">f4")]
        table = np.array([(r[0], sub, r[2], r[3]) for sub in MIRI_SUBARRAYS for r in rows], dtype=dt)
    else:
        cls = FgsImgPhotomModel
        table = np.array([(r[2], r[3]) for r in rows], dtype=[("photmjsr", ">f4"), ("uncertainty", ">f4")])
    m = cls(phot_table=table)
    m.meta.photometry.pixelarea_steradians = sr
    m.meta.photometry.pixelarea_arcsecsq = a2
    m.meta.exposure.type = cfg.exp_type
    _header(m, "photom", cfg, spec, None, "photometric calibration")
    _phot_units(m)
    return m


def _phot_units(model) -> None:
    """TUNIT of the PHOTMJSR column: written through the table extension's header."""
    from astropy.io import fits

    h = model._headers.setdefault("PHOTOM", fits.Header())
    names = model.phot_table.dtype.names
    for i, n in enumerate(names, start=1):
        if n in ("photmjsr", "uncertainty"):
            h[f"TUNIT{i}"] = "MJy/sr/(DN/s)"


def make_distortion(cfg, truth, region):
    from ..models import DistortionModel

    spec = truth.spec
    m = DistortionModel()
    m.set_tree(model=distortion_transform(spec))
    m.meta.input_units = "pixel"
    m.meta.output_units = "arcsec"
    m.meta.exposure.type = cfg.exp_type
    m.meta.exposure.p_exptype = f"{cfg.exp_type}|"
    m.meta.instrument.p_pupil = "ANY|"
    m.meta.instrument.filter = "N/A"
    m.meta.instrument.pupil = "N/A"
    _header(m, "distortion", cfg, spec, None, f"distortion from SIAF {spec.siaf_aperture}")
    ny, nx = spec.shape
    m.meta.subarray.name = "FULL"
    m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = 1, 1, nx, ny
    return m


def filter_offsets(spec: DetectorSpec, seed: int) -> list[dict]:
    """Per-filter (column, row) offsets in pixels: jwst applies ``Shift(col) & Shift(row)`` before the distortion."""
    out = []
    for filt, pupil in filter_combos(spec):
        rng = _rng(seed, spec.detector, "filteroffset", filt or "", pupil or "")
        scale = 0.4 if spec.instrument == "MIRI" else 0.12
        col, row = (float(round(v, 4)) for v in rng.normal(0, scale, 2))
        entry = {"filter": filt, "column_offset": col, "row_offset": row}
        if spec.instrument != "MIRI":
            entry["pupil"] = pupil
        out.append(entry)
    return out


def make_filteroffset(cfg, truth, region):
    from ..models import FilteroffsetModel

    spec = truth.spec
    m = FilteroffsetModel()
    m.set_tree(filters=filter_offsets(spec, truth.seed))
    m.meta.input_units = "pixel"
    m.meta.exposure.type = cfg.exp_type
    return _header(m, "filteroffset", cfg, spec, None, "filter offsets")


def make_apcorr(cfg, truth, region):
    from ..models import FgsImgApcorrModel, MirImgApcorrModel, NisImgApcorrModel, NrcImgApcorrModel

    spec = truth.spec
    _, a2 = pixel_area(spec)
    scale = math.sqrt(a2)
    ees = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
    rows = []
    for filt, pupil in filter_combos(spec):
        pivot, _w = band_of(spec, filt, pupil)
        fwhm = psf_fwhm_pix(spec, pivot, scale)
        skyin = round(max(4.0, 2.0 * ee_radius(fwhm, 0.9)), 2)
        skyout = round(skyin + max(5.0, 1.5 * fwhm), 2)
        for ee in ees:
            rows.append((filt, pupil, ee, ee_radius(fwhm, ee), 1.0 / ee, skyin, skyout))
    if spec.instrument in ("NIRCAM", "NIRISS"):
        cls = NrcImgApcorrModel if spec.instrument == "NIRCAM" else NisImgApcorrModel
        dt = [("filter", "S12"), ("pupil", "S15"), ("eefraction", ">f4"), ("radius", ">f4"), ("apcorr", ">f4"), ("skyin", ">f4"), ("skyout", ">f4")]
        table = np.array(rows, dtype=dt)
    elif spec.instrument == "MIRI":
        cls = MirImgApcorrModel
        dt = [("filter", "S12"), ("subarray", "S17"), ("eefraction", ">f4"), ("radius", ">f4"), ("apcorr", ">f4"), ("skyin", ">f4"), ("skyout", ">f4")]
        table = np.array([(r[0], sub) + r[2:] for sub in MIRI_SUBARRAYS for r in rows], dtype=dt)
    else:
        cls = FgsImgApcorrModel
        dt = [("eefraction", ">f4"), ("radius", ">f4"), ("apcorr", ">f4"), ("skyin", ">f4"), ("skyout", ">f4")]
        table = np.array([r[2:] for r in rows], dtype=dt)
    m = cls(apcorr_table=table)
    m.meta.exposure.type = cfg.exp_type
    return _header(m, "apcorr", cfg, spec, None, "aperture corrections")


def make_abvegaoffset(cfg, truth, region):
    from astropy.table import Table

    from ..models import ABVegaOffsetModel

    spec = truth.spec
    if spec.instrument in ("NIRCAM", "NIRISS"):
        combos = filter_combos(spec)
        table = Table(
            {"filter": [f for f, _p in combos], "pupil": [p for _f, p in combos],
             "abvega_offset": np.array([abvega(band_of(spec, f, p)[0]) for f, p in combos], dtype=np.float32)}
        )
    elif spec.instrument == "MIRI":
        names = [f for f, _p in filter_combos(spec)]
        table = Table({"filter": names, "abvega_offset": np.array([abvega(band_of(spec, f, None)[0]) for f in names], dtype=np.float32)})
    else:
        table = Table({"detector": [spec.detector], "abvega_offset": np.array([abvega(FGS_BAND[0])], dtype=np.float32)})
    m = ABVegaOffsetModel()
    # jwst reads an astropy Table (``.colnames``) from the ASDF tree: store the
    # Table itself there rather than as a plain structured array.
    m._asdf_extra["abvega_offset"] = table
    return _header(m, "abvegaoffset", cfg, spec, None, "AB-Vega offsets")


def make_reset(cfg, truth, region):
    """MIRI reset anomaly: a decaying offset over the first groups, larger in the first integration."""
    from ..models import ResetModel

    spec = truth.spec
    sl = region.slices
    ng = cfg.ngroups
    nints = 2
    rng = _rng(truth.seed, spec.detector, "reset")
    ny, nx = spec.shape
    amp_full = 60.0 * (1.0 + _legendre_field(rng, spec.shape, 2, 0.25))
    amp_full = amp_full * np.exp(rng.standard_normal(spec.shape, dtype=np.float32) * 0.1)
    amp = amp_full[sl].astype(np.float32)
    g = np.arange(ng, dtype=np.float32)
    decay = np.exp(-g / 2.5)
    data = np.empty((nints, ng) + amp.shape, dtype=np.float32)
    for i in range(nints):
        data[i] = (amp * (1.0 if i == 0 else 0.6))[None] * decay[:, None, None]
    data[:, :, ~truth.science[sl]] = 0.0
    err = np.abs(data) * 0.05 + 0.1
    m = ResetModel(data=data, err=err.astype(np.float32), dq=np.zeros(amp.shape, dtype=np.uint32))
    m.dq_def = _dq_def(("DO_NOT_USE",))
    m.meta.exposure.readpatt = cfg.readpatt
    m.meta.exposure.ngroups = ng
    m.meta.exposure.nints = nints
    return _header(m, "reset", cfg, spec, region, f"reset anomaly, {cfg.readpatt}")


def make_rscd(cfg, truth, region):
    from ..models import RSCDModel

    rows = []
    for sub in MIRI_SUBARRAYS + ("SLITLESSPRISM",):  # the LRS TSO subarray too (refs/sim/miri_lrs.py)
        for rp in MIRI_READPATTS:
            slow = rp.startswith("SLOW")
            skip = 1 if slow else (4 if sub == "FULL" else 2)
            rows.append((sub, rp, 1, skip))
    table = np.array(rows, dtype=[("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", ">i4"), ("group_skip", ">i4")])
    m = RSCDModel(rscd_group_skip_table=table)
    return _header(m, "rscd", cfg, truth.spec, None, "RSCD groups to flag")


EMI_FREQUENCIES = {  # name: Hz
    "Hz10": 10.039216, "Hz10_v2": 10.039216, "Hz39": 39.062500, "Hz218a": 218.526703,
    "Hz218b": 218.559970, "Hz218c": 218.544356, "Hz164": 164.945053,
}


def make_emicorr(cfg, truth, region):
    """MIRI EMI frequencies with phase-amplitude waveforms, and the clocking of each subarray."""
    from ..models import EmiModel

    spec = truth.spec
    freqs = {}
    for name, hz in EMI_FREQUENCIES.items():
        rng = _rng(truth.seed, spec.detector, "emi", name)
        phase = np.linspace(0, 2 * np.pi, 500, endpoint=False)
        amp = rng.uniform(0.5, 3.0)
        wave = amp * np.sin(phase + rng.uniform(0, 2 * np.pi)) + 0.2 * amp * np.sin(2 * phase)
        freqs[name] = {"frequency": hz, "phase_amplitudes": wave.astype(np.float32)}
    sizes = {"FULL": (1032, 1024), "BRIGHTSKY": (512, 512), "SUB256": (256, 256), "SUB128": (136, 128), "SUB64": (72, 64),
             "MASK1065": (288, 224), "MASK1140": (288, 224), "MASK1550": (288, 224), "MASKLYOT": (320, 304)}
    cases = {}
    for sub, (xs, ys) in sizes.items():
        for speed, fast in (("FAST", True), ("SLOW", False)):
            rc = _miri_rowclocks(xs, fast)
            name = f"{sub}_{speed}" if sub == "FULL" else sub
            entry = cases.setdefault(name, {"rowclocks": rc, "frameclocks": rc * ys, "freqs": {}})
            if speed == "FAST":
                entry["freqs"]["FAST"] = ["Hz10", "Hz39"] if sub == "FULL" else ["Hz10", "Hz218a"]
            else:
                entry["freqs"]["SLOW"] = {"MIRIMAGE": ["Hz10_v2"], "MIRIFULONG": ["Hz10_v2"], "MIRIFUSHORT": ["Hz10_v2"]}
    m = EmiModel()
    m.set_tree(frequencies=freqs, subarray_cases=cases)
    return _header(m, "emicorr", cfg, spec, None, "EMI frequencies")


MAKERS = {
    "mask": make_mask, "superbias": make_superbias, "saturation": make_saturation, "linearity": make_linearity,
    "dark": make_dark, "gain": make_gain, "readnoise": make_readnoise, "ipc": make_ipc, "flat": make_flat,
    "area": make_area, "photom": make_photom, "distortion": make_distortion, "filteroffset": make_filteroffset,
    "apcorr": make_apcorr, "abvegaoffset": make_abvegaoffset, "reset": make_reset, "rscd": make_rscd,
    "emicorr": make_emicorr,
}

# Reference types whose content does not depend on the exposure's window or readout
PER_DETECTOR = ("ipc", "photom", "distortion", "filteroffset", "apcorr", "abvegaoffset", "rscd", "emicorr")
# ... and those that also depend on the readout pattern
PER_READOUT = ("dark", "reset")
PER_FILTER = ("flat",)


def reference_set(exposure, seed: int = 0, reftypes=None) -> dict[str, Any]:
    """Every reference file jwst 3.0 reads for this exposure, as webbflow reference models.

    ``exposure``: a webbflow model, its ``meta``, a FITS path or an
    :class:`ExposureConfig`.  The arrays are cut out of the detector's
    full-frame truth for the exposure's window (full frame for FGS guider
    modes).  Darks and MIRI reset files cover the exposure's ``ngroups``.
    ``reftypes`` limits the set.
    """
    cfg = exposure_config(exposure)
    wanted = mode_reftypes(cfg.instrument, cfg.exp_type)
    if reftypes is not None:
        unknown = set(reftypes) - set(wanted)
        if unknown:
            raise UnsupportedModeError(f"{cfg.instrument} {cfg.exp_type} has no synthetic {', '.join(sorted(unknown))} reference")
        wanted = tuple(r for r in wanted if r in set(reftypes))
    truth = detector_truth(cfg.instrument, cfg.detector, int(seed))
    out = {}
    for rt in wanted:
        if rt in ("dark", "reset") and not cfg.readpatt:
            raise UnsupportedModeError(f"{rt} reference needs the exposure's READPATT")
        out[rt] = MAKERS[rt](cfg, truth, reference_region(cfg, rt))
    return out


def selection_key(cfg: ExposureConfig, reftype: str) -> dict[str, str]:
    """The values (by CRDS parameter name) that select this exposure's ``reftype`` file in our rules."""
    from .context import RMAP_PARKEYS

    out = {}
    for par in RMAP_PARKEYS[(cfg.instrument, reftype)]:
        out[par] = _dataset_value(cfg, par)
    return out


def _dataset_value(cfg: ExposureConfig, par: str) -> str:
    value = {
        "META.INSTRUMENT.DETECTOR": cfg.detector,
        "META.SUBARRAY.NAME": cfg.subarray,
        "META.EXPOSURE.READPATT": cfg.readpatt,
        "META.INSTRUMENT.FILTER": cfg.filter,
        "META.INSTRUMENT.PUPIL": cfg.pupil,
        "META.EXPOSURE.TYPE": cfg.exp_type,
    }[par]
    return "N/A" if value in (None, "") else str(value)


def content_key(cfg: ExposureConfig, reftype: str, seed: int) -> str:
    """A digest of everything the content of ``reftype`` depends on (equal digests mean equal files)."""
    region = reference_region(cfg)
    parts: list = [GENERATOR_VERSION, seed, cfg.instrument, cfg.detector, reftype]
    if reftype not in PER_DETECTOR:
        parts += [region.xstart, region.ystart, region.xsize, region.ysize, region.name]
    if reftype in PER_READOUT:
        parts += [cfg.readpatt, cfg.nframes, cfg.groupgap, cfg.ngroups, round(frame_time(cfg), 6)]
    if reftype in PER_FILTER:
        parts += [cfg.filter, cfg.pupil if cfg.instrument in ("NIRCAM", "NIRISS") else None]
    if reftype == "area":
        parts += ["full frame"]
    if reftype in ("distortion", "photom", "apcorr", "area", "filteroffset"):
        parts += [cfg.instrument]  # SIAF-based content: keyed by pysiaf's data below
        parts += [_siaf_version()]
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _siaf_version() -> str:
    try:
        import pysiaf

        return str(pysiaf.__version__)
    except Exception:  # noqa: BLE001
        return "?"


__all__ = [
    "reference_set", "ExposureConfig", "Region", "exposure_config", "read_exposure_meta", "mode_reftypes",
    "detector_spec", "detector_truth", "DetectorTruth", "DetectorSpec", "siaf_subarray", "distortion_transform",
    "pixel_area_map", "filter_offsets", "ipc_kernel", "dark_ramp", "group_times", "frame_time",
    "selection_key", "content_key", "reference_region", "detector_axes",
]
