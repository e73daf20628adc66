"""Small builders for detector1 step tests: simulated ramps and reference files.

Everything is built in memory with our models; tests save them with
``model.save`` and hand the same files to webbflow and to jwst.
"""

from __future__ import annotations


import numpy as np
from parity import quiet_jwst

from webbflow import models
from webbflow.models import dqflags

# Detector orientation keywords (from the SIAF), used by refpix.
ORIENTATION = {
    "NRCA1": (-1, 2), "NRCA2": (1, -2), "NRCA3": (-1, 2), "NRCA4": (1, -2), "NRCALONG": (-1, 2),
    "NRCB1": (1, -2), "NRCB2": (-1, 2), "NRCB3": (1, -2), "NRCB4": (-1, 2), "NRCBLONG": (1, -2),
    "NIS": (-2, -1), "NRS1": (2, 1), "NRS2": (-2, -1), "GUIDER1": (-2, -1), "GUIDER2": (2, -1),
    "MIRIMAGE": (1, 2),
}

INSTRUMENT = {"NRC": "NIRCAM", "NIS": "NIRISS", "NRS": "NIRSPEC", "GUI": "FGS", "MIR": "MIRI"}
EXP_TYPE = {"NIRCAM": "NRC_IMAGE", "NIRISS": "NIS_IMAGE", "NIRSPEC": "NRS_FIXEDSLIT", "FGS": "FGS_IMAGE", "MIRI": "MIR_IMAGE"}


# A valid (schema enum) subarray name per instrument for simulated subarrays;
# the steps only use SUBSTRT/SUBSIZE, except refpix for NIRSpec's edgeless ones.
SUBARRAY_NAME = {"NIRCAM": "SUB64P", "NIRISS": "SUB64", "NIRSPEC": "ALLSLITS", "FGS": "SUB64", "MIRI": "MASK1065"}


def set_exposure_meta(
    m,
    *,
    detector: str = "NRCA1",
    nints: int = 1,
    ngroups: int = 5,
    nframes: int = 1,
    groupgap: int = 0,
    frame_divisor: int | None = None,
    xstart: int = 1,
    ystart: int = 1,
    xsize: int | None = None,
    ysize: int | None = None,
    subarray: str | None = None,
    noutputs: int | None = None,
    readpatt: str | None = None,
    exp_type: str | None = None,
    zero_frame: bool = False,
):
    """Fill the metadata jwst and CRDS look at for a simulated detector1 exposure."""
    instrument = INSTRUMENT[detector[:3]]
    ny, nx = m.data.shape[-2:]
    meta = m.meta
    meta.telescope = "JWST"
    meta.instrument.name = instrument
    meta.instrument.detector = detector
    if instrument == "NIRCAM":
        meta.instrument.module = detector[3]
        meta.instrument.channel = "LONG" if detector.endswith("LONG") else "SHORT"
        meta.instrument.filter = "F444W" if detector.endswith("LONG") else "F200W"
        meta.instrument.pupil = "CLEAR"
    elif instrument == "NIRISS":
        meta.instrument.filter = "CLEAR"
        meta.instrument.pupil = "F150W"
    elif instrument == "MIRI":
        meta.instrument.filter = "F770W"
        meta.instrument.band = "N/A"
    elif instrument == "NIRSPEC":
        meta.instrument.filter = "F170LP"
        meta.instrument.grating = "G235H"
        meta.instrument.fixed_slit = "S200A1"
    meta.exposure.type = exp_type or EXP_TYPE[instrument]
    meta.exposure.readpatt = readpatt or ("FASTR1" if instrument == "MIRI" else ("RAPID" if nframes == 1 else "BRIGHT2"))
    meta.exposure.nints = nints
    meta.exposure.ngroups = ngroups
    meta.exposure.nframes = nframes
    meta.exposure.groupgap = groupgap
    meta.exposure.frame_divisor = frame_divisor
    meta.exposure.frame_time = 2.77 if instrument == "MIRI" else 10.737
    meta.exposure.group_time = meta.exposure.frame_time * (nframes + groupgap)
    meta.exposure.zero_frame = zero_frame
    meta.exposure.integration_start = 1
    meta.exposure.integration_end = nints
    meta.exposure.start_time = 59000.0
    meta.exposure.noutputs = noutputs if noutputs is not None else (1 if instrument == "MIRI" else 4)
    xsize = xsize or nx
    ysize = ysize or ny
    full = (1032, 1024) if instrument == "MIRI" else (2048, 2048)
    meta.subarray.name = subarray or ("FULL" if (xsize, ysize) == full else SUBARRAY_NAME[instrument])
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.xsize, meta.subarray.ysize = xsize, ysize
    fast, slow = ORIENTATION.get(detector, (1, 2))
    meta.subarray.fastaxis, meta.subarray.slowaxis = fast, slow
    meta.observation.date = "2022-07-01"
    meta.observation.time = "12:00:00.000"
    meta.observation.date_beg = "2022-07-01T12:00:00.000"
    meta.observation.program_number = "01234"
    meta.observation.observation_number = "001"
    meta.observation.visit_number = "001"
    meta.observation.visit_group = "01"
    meta.observation.sequence_id = "1"
    meta.observation.activity_id = "01"
    meta.observation.exposure_number = "00001"
    meta.visit.tsovisit = False
    return m


def make_ramp(
    shape=(1, 5, 32, 32),
    *,
    level1b: bool = False,
    seed: int = 1,
    bias: float = 12000.0,
    rate: float = 150.0,
    **meta,
):
    """A simulated ramp: bias plus a per-pixel count rate per group, read noise, a few bright pixels.

    Returns a Level1bModel (uint16, clipped at 65535) or a RampModel (float32).
    """
    rng = np.random.default_rng(seed)
    nints, ngroups, ny, nx = shape
    pix_rate = rng.uniform(0.2, 1.0, (ny, nx)) * rate
    # a few bright "stars" that saturate part-way up the ramp
    if min(ny, nx) >= 16:
        stars = rng.integers(2, min(ny, nx) - 3, size=(3, 2))
        for y, x in stars:
            pix_rate[y, x] = 9000.0
            pix_rate[y, x + 1] = 6000.0
    groups = np.arange(1, ngroups + 1, dtype=np.float64)
    data = bias + pix_rate[None, None] * groups[None, :, None, None]
    data = data + rng.normal(0, 5.0, shape)
    # a cosmic-ray-like jump in the last integration
    data[-1, ngroups // 2 :, ny // 3, nx // 3] += 800.0
    if level1b:
        arr = np.clip(np.round(data), 0, 65535).astype(np.uint16)
        m = models.Level1bModel(data=arr)
    else:
        m = models.RampModel(data=data.astype(np.float32))
    set_exposure_meta(m, nints=nints, ngroups=ngroups, **meta)
    return m


def ref_meta(ref, sci, reftype: str, *, full: bool = True, xstart: int = 1, ystart: int = 1):
    """Metadata of a reference file made for ``sci``'s instrument and detector."""
    ny, nx = getattr(ref, type(ref).arrays[0].name).shape[-2:]
    meta = ref.meta
    meta.telescope = "JWST"
    meta.reftype = reftype.upper()
    meta.pedigree = "GROUND"
    meta.description = f"webbflow test {reftype} reference"
    meta.author = "webbflow tests"
    meta.useafter = "2015-01-01T00:00:00"
    meta.instrument.name = sci.meta.instrument.name
    meta.instrument.detector = sci.meta.instrument.detector
    meta.exposure.type = sci.meta.exposure.type
    meta.subarray.name = "FULL" if full else sci.meta.subarray.name
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    meta.subarray.fastaxis = sci.meta.subarray.fastaxis
    meta.subarray.slowaxis = sci.meta.subarray.slowaxis
    return ref


def sci_region(sci):
    """(row slice, column slice) of the science subarray on the full frame (0-based)."""
    s = sci.meta.subarray
    return slice(s.ystart - 1, s.ystart - 1 + s.ysize), slice(s.xstart - 1, s.xstart - 1 + s.xsize)


def run_jwst_step(step_class, input_path, cache, overrides: dict, **params):
    """Run a jwst step on a file, offline, with every reference overridden; returns its model."""
    from parity import jwst_offline

    kwargs = {f"override_{k}": str(v) for k, v in overrides.items()}
    kwargs.update(params)
    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst():
        return step_class.call(str(input_path), **kwargs)


DNU = dqflags.DO_NOT_USE


def dq_def_table(entries):
    """A DQ_DEF table from [(bit, value, name, description)] rows."""
    rec = np.zeros(
        len(entries),
        dtype=[("BIT", ">i4"), ("VALUE", ">i4"), ("NAME", "S40"), ("DESCRIPTION", "S80")],
    )
    for i, (bit, value, name, desc) in enumerate(entries):
        rec[i] = (bit, value, name.encode(), desc.encode())
    return rec


def make_ref(cls, sci, reftype: str, *, frame=(128, 128), origin=(1, 1), **arrays):
    """A reference model of ``cls`` covering ``frame`` (rows, cols) from 1-based ``origin`` (x, y).

    ``arrays`` are the reference arrays, already shaped ``(..., frame)``.
    """
    ref = cls(**arrays)
    ref_meta(ref, sci, reftype, full=False, xstart=origin[0], ystart=origin[1])
    ref.meta.subarray.name = "GENERIC"
    return ref


def place_sci(sci, origin=(33, 17)):
    """Put a science subarray at 1-based (x, y) on the detector."""
    sci.meta.subarray.xstart, sci.meta.subarray.ystart = origin
    sci.meta.subarray.name = SUBARRAY_NAME[str(sci.meta.instrument.name)]
    return sci
