"""msa_flagging: flag the pixels that light through failed-open MSA shutters can reach (jwst's MSAFlagOpenStep).

The ``msaoper`` reference (CRDS JSON: a ``msaoper`` list of shutters with their quadrant ``Q``,
column ``x``, row ``y`` and states) names the shutters of the NIRSpec micro-shutter assembly; a
shutter with ``state``, ``TA state`` or ``Internal state`` equal to ``"open"`` is stuck open.  Each
stuck-open shutter becomes a one-shutter slitlet (numbered from 1 in the file's order, y from -0.5
to 0.5 shutter), the exposure's optical chain (the WCS references assign_wcs used) is built for
those slitlets alone, each slitlet's box on the detector is found as assign_wcs finds a slit's, and
every pixel of that box with a finite sky coordinate gets MSA_FAILED_OPEN in DQ.  The other arrays
are unchanged.

The WCS references are the step's own reftypes besides ``msaoper``: a flow gives the step the files
assign_wcs used (jwst reads them back from the R_ keywords assign_wcs wrote).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import InputFileError, ReferenceFileError
from ..models.dqflags import PIXEL as DQ
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")

SHUTTERS_PER_ROW = 365
FLAGGABLE_STATES = ("Internal state", "TA state", "state")  # a shutter stuck open in any of these is flagged
WCS_REFTYPES = ("camera", "collimator", "disperser", "fore", "fpa", "msa", "ote", "wavelengthrange")


class MsaFlaggingParams(StepParams):
    """jwst's MSAFlagOpenStep has no parameters of its own."""


def failed_open_shutters(msaoper, name="(msaoper)") -> list[dict]:
    """The msaoper entries stuck open in one of :data:`FLAGGABLE_STATES`, in the file's order."""
    if not isinstance(msaoper, dict) or not isinstance(msaoper.get("msaoper"), list):
        raise ReferenceFileError("msaoper", name, "has no 'msaoper' list of shutters")
    out = []
    for i, sh in enumerate(msaoper["msaoper"]):
        missing = [k for k in ("Q", "x", "y", *FLAGGABLE_STATES) if k not in sh]
        if missing:
            raise ReferenceFileError("msaoper", name, f"shutter entry {i} lacks {', '.join(map(repr, missing))}")
        if any(sh[s] == "open" for s in FLAGGABLE_STATES):
            out.append(sh)
    return out


def failed_open_slitlets(shutters) -> list:
    """One Slit per stuck-open shutter: name and slit id its rank from 1, shutter id x + (y - 1) * 365."""
    from stdatamodels.jwst.transforms.models import Slit

    slits = []
    for n, sh in enumerate(shutters, start=1):
        x, y = int(sh["x"]), int(sh["y"])
        slits.append(Slit(n, x + (y - 1) * SHUTTERS_PER_ROW, 0, x, y, -0.5, 0.5, int(sh["Q"]), 0, "x", slit_id=n))
    return slits


def slitlets_pipeline(model, refs, slits):
    """The NIRSpec gwcs pipeline (detector to world) of the exposure for ``slits`` exactly as given
    (no check that they reach the detector), with the wavelength range used."""
    from astropy.modeling.models import Identity

    from . import _wcs
    from .assign_wcs import nirspec as nrs

    inst = model.meta.instrument
    disperser = nrs.Disperser(refs["disperser"], inst.gwa_xtilt, inst.gwa_ytilt)
    order, wrange = nrs.order_and_range(model, refs["wavelengthrange"])
    slit_models = nrs._slit_models(slits, refs["msa"])
    f = nrs.frames()
    dms2sca = nrs.dms_to_sca(model)
    det2gwa = nrs.detector_to_gwa(refs, inst.detector, disperser)
    gwa2slit = nrs.gwa_to_slit(model, slit_models, disperser, refs, order)
    slit2msa = nrs.slit_to_msa(slit_models)
    for t, n in ((dms2sca, "dms2sca"), (det2gwa, "det2gwa"), (gwa2slit, "gwa2slit"), (slit2msa, "slit2msa")):
        t.name = n
    if (inst.filter or "").upper() == "OPAQUE":  # the chain ends at the MSA
        return [(f["detector"], dms2sca), (f["sca"], det2gwa), (f["gwa"], gwa2slit), (f["slit_frame"], slit2msa),
                (f["msa_frame"], None)], wrange
    w = model.meta.wcsinfo
    msa2oteip, oteip2v23 = nrs.msa_to_oteip(refs), nrs.oteip_to_v23(refs)
    va = _wcs.dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref) & Identity(2)
    va.inputs = va.outputs = ("v2", "v3", "lam", "name")
    tel2sky = _wcs.v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref) & Identity(2)
    tel2sky.inputs, tel2sky.outputs = ("v2", "v3", "lam", "name"), ("ra", "dec", "lam", "name")
    pipeline = [
        (f["detector"], dms2sca), (f["sca"], det2gwa), (f["gwa"], gwa2slit), (f["slit_frame"], slit2msa),
        (f["msa_frame"], msa2oteip), (f["oteip"], oteip2v23), (f["v2v3"], va), (f["v2v3vacorr"], tel2sky),
        (f["world"], None),
    ]
    return pipeline, wrange


def box_indices(shape, bbox) -> tuple[int, int, int, int]:
    """(xmin, xmax, ymin, ymax): the pixels of a ``((x0, x1), (y0, y1))`` box inside an array of ``shape``."""
    nrows, ncols = shape[-2:]
    (x1, x2), (y1, y2) = bbox
    xmin, xmax = max(int(min(x1, x2)), 0), min(int(max(x1, x2)) + 1, ncols)
    ymin, ymax = max(int(min(y1, y2)), 0), min(int(max(y1, y2)) + 1, nrows)
    return xmin, xmax, ymin, ymax


def failed_open_mask(model, refs, slits) -> np.ndarray:
    """Boolean image (the exposure's last two axes): the pixels reached through the ``slits``."""
    from gwcs import WCS

    from .assign_wcs import nirspec as nrs

    shape = model.data.shape[-2:]
    mask = np.zeros(shape, bool)
    if not slits:
        return mask
    pipeline, wrange = slitlets_pipeline(model, refs, slits)
    wcs = WCS(pipeline)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        wcs.bounding_box = nrs.compound_bounding_box(wcs, slits, wrange)
        for s in slits:
            # the slit's box in x and y (the name input, fixed, has an unbounded interval)
            box = wcs.bounding_box[s.slit_id].bounding_box(order="F")[:2]
            xmin, xmax, ymin, ymax = box_indices(shape, box)
            if xmax <= xmin or ymax <= ymin:
                continue
            y, x = np.mgrid[ymin:ymax, xmin:xmax]
            ra = wcs(x, y, s.slit_id)[0]
            mask[ymin:ymax, xmin:xmax] |= ~np.isnan(ra)
    return mask


@step("msa_flagging", "MSAFlagOpenStep", params=MsaFlaggingParams, reftypes=("msaoper",),
      optional_reftypes=WCS_REFTYPES, suffix="msa_flagging", input_class="ImageModel")
def msa_flagging(model, refs, params: MsaFlaggingParams):
    """Flag MSA_FAILED_OPEN where light through failed-open MSA shutters falls on the detector."""
    where = model.meta.filename or "<in memory>"
    if model.meta.cal_step.assign_wcs != "COMPLETE" or model.meta.wcs is None:
        raise InputFileError(where, "msa_flagging needs the exposure's WCS: run assign_wcs first")
    missing = [rt for rt in WCS_REFTYPES if refs.get(rt) is None]
    if missing:
        raise InputFileError(where, f"msa_flagging needs the WCS references assign_wcs used; none for "
                                    f"{', '.join(missing)}")
    ref = refs["msaoper"]
    shutters = failed_open_shutters(ref, getattr(ref, "_path", None) or "(msaoper)")
    slits = failed_open_slitlets(shutters)
    log.info("%d failed open shutters", len(slits))
    mask = failed_open_mask(model, refs, slits)
    model.dq[..., mask] |= np.uint32(DQ["MSA_FAILED_OPEN"])
    from .base import report_qa

    report_qa(**{"failed open shutters": len(slits), "pixels flagged": int(mask.sum())})
    return model
