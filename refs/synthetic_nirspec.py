"""Synthetic NIRSpec detector references (NRS1, NRS2) in jwst's form, IRS2 layout where jwst expects it.

``nirspec_detector_references(detector, readpatt, ngroups, seed)`` returns
``{reftype: model}`` for calwebb_detector1 on a NIRSpec full frame:

=============  ==================================================================
mask           DQ; 3200x2048 for IRS2 readouts (the interleaved reference rows and
               the reference output flagged REFERENCE_PIXEL), else 2048x2048
superbias      ~13 kDN; 3200x2048 for IRS2 (jwst subtracts it before refpix), the
               interleaved reference rows at the reference pixels' own level
saturation,    2048x2048 (the normal pixels; jwst cuts IRS2 frames to them)
linearity,
gain, readnoise
dark           2048x2048 per group (after refpix the IRS2 frame has 2048 rows)
refpix         IRS2 only: the IRS2 table of alpha/beta coefficients (712x2048
               complex values per output, stored as real/imaginary float32
               pairs in 2*712*2048 rows) and a DQ table of known bad interleaved
               reference pixels (OUTPUT, ODD_EVEN, MASK bits)
=============  ==================================================================

Per-pixel content comes from :class:`webbflow.refs.synthetic.DetectorTruth` with
a NIRSpec detector description (gain ~1 e-/DN, ~55 ke- wells, low dark current),
so a pixel has the same properties in every reference.  The checked forms
(extensions and their order, dtypes, FASTAXIS/SLOWAXIS, READPATT on the
readout-specific files, SUBSIZE2=2048 on 3200-row IRS2 arrays, DQ_DEF) follow
the real NRS1 superbias_0075 and dark_0046 in ../shared/data/real-refs/nirspec
(both SUB512, NRSRAPID ground files); those two also carry CRDS bookkeeping
keywords (SCA_ID, ROW_STRT, NCOLS...) that no step reads, not written here.

The alpha/beta coefficients are not measured ones: beta is a low-pass response
of each output to its interleaved reference pixels, alpha a small negative
low-pass coupling to the reference output, which is what the real files hold
in shape and order of magnitude.
"""

from __future__ import annotations

import functools

import numpy as np

from ..models import dqflags
from . import synthetic
from .synthetic import DetectorSpec, DetectorTruth

IRS2_READPATTS = {"NRSIRS2RAPID": (1, 0), "NRSIRS2": (5, 0)}  # NFRAMES, GROUPGAP
TRADITIONAL_READPATTS = {"NRSRAPID": (1, 0), "NRS": (4, 0)}
READPATTS = {**IRS2_READPATTS, **TRADITIONAL_READPATTS}
DETECTORS = {"NRS1": 491, "NRS2": 492}  # SCA_NUM
AXES = {"NRS1": (2, 1), "NRS2": (-2, -1)}  # FASTAXIS, SLOWAXIS
IRS2_TABLE_ROWS = 2 * 712 * 2048
REFERENCE_ROW_BIAS_OFFSET = -150.0  # DN: interleaved reference pixels sit a little below the active ones


def detector_spec(detector: str) -> DetectorSpec:
    detector = detector.upper()
    if detector not in DETECTORS:
        raise ValueError(f"NIRSpec detectors are NRS1 and NRS2, not {detector!r}")
    nrs1 = detector == "NRS1"
    # the four outputs are blocks of 512 DMS rows (the readout runs along DMS y)
    return DetectorSpec(
        "NIRSPEC", detector, "NIRSpec", f"{detector}_FULL", (2048, 2048), (4, 4, 4, 4), "y", 4,
        gain=1.0 if nrs1 else 1.05, readnoise=9.5 if nrs1 else 10.2, bias=13200.0 if nrs1 else 12600.0,
        dark_rate=0.004, full_well=56000.0, lin_c2=1.3e-6, lin_c3=3.5e-12, ipc_alpha=0.0055, ipc_beta=0.0003,
    )


@functools.lru_cache(maxsize=2)
def detector_truth(detector: str, seed: int = 0) -> DetectorTruth:
    return DetectorTruth(detector_spec(detector), seed)


def irs2_rows(detector: str, n: int = 16, r: int = 4) -> np.ndarray:
    """True for the 2048 normal rows of a 3200-row IRS2 frame in DMS orientation."""
    from ..tasks._irs2 import normal_mask

    mask = normal_mask(3200, n, r)
    return mask[::-1].copy() if detector.upper() == "NRS2" else mask


def _header(model, reftype: str, detector: str, what: str, readpatt: str | None = None):
    m = synthetic.reference_provenance(model, reftype, f"Synthetic NIRSpec {what} for {detector}")
    m.instrument.name = "NIRSPEC"
    m.instrument.detector = detector
    if readpatt:
        m.exposure.readpatt = readpatt
    s = m.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "FULL", 1, 1, 2048, 2048
    s.fastaxis, s.slowaxis = AXES[detector]
    return model


def _irs2_expand(normal: np.ndarray, rows: np.ndarray, fill) -> np.ndarray:
    out = np.empty((3200,) + normal.shape[1:], dtype=normal.dtype)
    out[rows] = normal
    out[~rows] = fill
    return out


def make_mask(truth: DetectorTruth, irs2: bool, readpatt: str | None = None):
    from ..models import MaskModel

    dq = truth.dq.copy()
    det = truth.spec.detector
    if irs2:
        dq = _irs2_expand(dq, irs2_rows(det), np.uint32(dqflags.PIXEL["REFERENCE_PIXEL"]))
    m = MaskModel(dq=dq)
    m.dq_def = synthetic._dq_def(synthetic.MASK_FLAGS)
    return _header(m, "mask", det, "bad pixel mask" + (" (IRS2)" if irs2 else ""), readpatt)


def make_superbias(truth: DetectorTruth, irs2: bool, readpatt: str | None = None):
    from ..models import SuperBiasModel

    det = truth.spec.detector
    data = truth.bias.copy()
    err = (truth.readnoise / 10.0).astype(np.float32)
    dq = np.zeros(data.shape, dtype=np.uint32)
    noisy = (truth.readnoise > 2.5 * truth.spec.readnoise) & truth.science
    dq[noisy] = dqflags.PIXEL["UNRELIABLE_BIAS"]
    if irs2:
        rows = irs2_rows(det)
        rng = synthetic._rng(truth.seed, "NIRSPEC", det, "irs2-reference-bias")
        refbias = (truth.spec.bias + REFERENCE_ROW_BIAS_OFFSET + rng.normal(0, 15.0, (1152, 2048))).astype(np.float32)
        data = _irs2_expand(data, rows, 0.0)
        data[~rows] = refbias
        err = _irs2_expand(err, rows, np.float32(1.0))
        dq = _irs2_expand(dq, rows, np.uint32(0))
    m = SuperBiasModel(data=data, err=err, dq=dq)
    m.dq_def = synthetic._dq_def(("DO_NOT_USE", "UNRELIABLE_BIAS"))
    m.meta.bunit_data = "DN"
    return _header(m, "superbias", det, "superbias" + (" (IRS2)" if irs2 else ""), readpatt)


def make_saturation(truth: DetectorTruth):
    from ..models import SaturationModel

    data = truth.saturation.copy()
    dq = np.zeros(data.shape, dtype=np.uint32)
    dead = truth.defects["dead"]
    dq[dead] = dqflags.PIXEL["NO_SAT_CHECK"] | dqflags.DO_NOT_USE
    data[dead] = np.nan
    m = SaturationModel(data=data, dq=dq)
    m.dq_def = synthetic._dq_def(("DO_NOT_USE", "NO_SAT_CHECK"))
    m.meta.bunit_data = "DN"
    return _header(m, "saturation", truth.spec.detector, "saturation levels")


def make_linearity(truth: DetectorTruth):
    from ..models import LinearityModel

    coeffs = truth.linearity.copy()
    dq = np.zeros(coeffs.shape[1:], dtype=np.uint32)
    dead = truth.defects["dead"]
    coeffs[:, dead] = np.nan
    dq[dead] = dqflags.PIXEL["NO_LIN_CORR"] | dqflags.DO_NOT_USE
    m = LinearityModel(coeffs=coeffs, dq=dq)
    m.dq_def = synthetic._dq_def(("DO_NOT_USE", "NO_LIN_CORR"))
    return _header(m, "linearity", truth.spec.detector, "linearity coefficients")


def make_gain(truth: DetectorTruth):
    from ..models import GainModel

    m = GainModel(data=truth.gain.copy())
    m.meta.bunit_data = "electrons/DN"
    return _header(m, "gain", truth.spec.detector, "gain")


def make_readnoise(truth: DetectorTruth):
    from ..models import ReadnoiseModel

    m = ReadnoiseModel(data=truth.readnoise.copy())
    m.meta.bunit_data = "DN"
    return _header(m, "readnoise", truth.spec.detector, "read noise")


def group_times(readpatt: str, ngroups: int, tframe: float) -> np.ndarray:
    nframes, gap = READPATTS[readpatt]
    return np.array([np.mean(g * (nframes + gap) + np.arange(nframes) + 1) * tframe for g in range(ngroups)])


def make_dark(truth: DetectorTruth, readpatt: str, ngroups: int, tframe: float):
    from ..models import DarkModel

    det = truth.spec.detector
    t = group_times(readpatt, ngroups, tframe)
    data = (truth.dark_rate[None] * t[:, None, None].astype(np.float32)).astype(np.float32)
    data[:, ~truth.science] = 0.0
    dq = np.zeros((2048, 2048), dtype=np.uint32)
    dq[truth.defects["hot"]] = dqflags.PIXEL["HOT"] | dqflags.DO_NOT_USE
    dq[truth.defects["warm"]] = dqflags.PIXEL["WARM"]
    err = np.broadcast_to(truth.readnoise / 6.0, data.shape).astype(np.float32).copy()
    m = DarkModel(data=data, err=err, dq=dq)
    m.dq_def = synthetic._dq_def(("DO_NOT_USE", "HOT", "WARM"))
    nframes, gap = READPATTS[readpatt]
    e = m.meta.exposure
    e.readpatt, e.ngroups, e.nframes, e.groupgap = readpatt, ngroups, nframes, gap
    e.frame_time, e.group_time = tframe, tframe * (nframes + gap)
    e.type = "NRS_DARK"
    sci = truth.science
    e.average_dark_current = float(np.median((truth.dark_rate * truth.gain)[sci]))
    m.meta.bunit_data = "DN"
    return _header(m, "dark", det, f"dark, {readpatt}", readpatt)


def irs2_coefficients(detector: str, seed: int = 0) -> np.ndarray:
    """The IRS2 table: alpha_0..3, beta_0..3 as float32 real/imaginary pairs, 2*712*2048 rows."""
    size = IRS2_TABLE_ROWS // 2
    freq = np.abs(np.fft.fftfreq(size)).astype(np.float64)
    rng = synthetic._rng(seed, "NIRSPEC", detector, "irs2-coefficients")
    names = [f"alpha_{k}" for k in range(4)] + [f"beta_{k}" for k in range(4)]
    table = np.zeros(IRS2_TABLE_ROWS, dtype=[(n, ">f4") for n in names])
    for k in range(4):
        fa, fb = rng.uniform(0.004, 0.008), rng.uniform(0.015, 0.03)
        phase = rng.uniform(-0.05, 0.05)
        alpha = -rng.uniform(0.05, 0.15) * np.exp(-freq / fa) * np.exp(1j * phase)
        beta = rng.uniform(0.85, 0.95) * np.exp(-freq / fb) * np.exp(-1j * phase)
        table[f"alpha_{k}"][0::2], table[f"alpha_{k}"][1::2] = alpha.real, alpha.imag
        table[f"beta_{k}"][0::2], table[f"beta_{k}"][1::2] = beta.real, beta.imag
    return table


def make_refpix(truth: DetectorTruth, readpatt: str):
    from ..models import IRS2Model

    det = truth.spec.detector
    rng = synthetic._rng(truth.seed, "NIRSPEC", det, "irs2-bad-reference")
    rows = [(out, oe, int(1 << int(rng.integers(0, 32)))) for out in range(1, 5) for oe in (1, 2) if rng.random() < 0.5]
    dq_table = np.array(rows, dtype=[("OUTPUT", ">u2"), ("ODD_EVEN", ">u2"), ("MASK", ">u4")])
    m = IRS2Model(irs2_table=irs2_coefficients(det, truth.seed), dq_table=dq_table)
    return _header(m, "refpix", det, f"IRS2 refpix coefficients, {readpatt}", readpatt)


def nirspec_detector_references(detector: str, readpatt: str, ngroups: int, tframe: float, seed: int = 0) -> dict:
    """Every reference jwst 3.0's calwebb_detector1 reads for a NIRSpec full frame of this readout."""
    readpatt = readpatt.upper()
    if readpatt not in READPATTS:
        raise ValueError(f"NIRSpec readout patterns simulated: {', '.join(READPATTS)}; not {readpatt!r}")
    irs2 = readpatt in IRS2_READPATTS
    truth = detector_truth(detector.upper(), int(seed))
    refs = {
        "mask": make_mask(truth, irs2, readpatt), "superbias": make_superbias(truth, irs2, readpatt),
        "saturation": make_saturation(truth), "linearity": make_linearity(truth),
        "dark": make_dark(truth, readpatt, ngroups, tframe), "gain": make_gain(truth),
        "readnoise": make_readnoise(truth),
    }
    if irs2:
        refs["refpix"] = make_refpix(truth, readpatt)
    return refs
