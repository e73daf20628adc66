"""assign_wcs for NIRISS SOSS (NIS_SOSS): the three spectral orders of the GR700XD grism.

The SOSS WCS has two frames, ``detector`` and ``world`` (RA, Dec, wavelength), and one transform
per spectral order, held together by ``NirissSOSSModel`` (from ``stdatamodels.jwst.transforms``,
DESIGN §8), which takes (x, y, order).  For order ``n``:

    (x, y) --subarray -> full frame--> (x', y') --> (TARG_RA, TARG_DEC, wavelength(y', x'))

- the sky position of every pixel is the target's (TARG_RA, TARG_DEC): slitless spectra of one
  star carry no spatial sky information;
- the wavelength is the ``specwcs`` reference's transform for the order (its ASDF tree holds
  them under the keys 1, 2 and 3, each taking (row, column) in full-frame pixels), followed by
  the barycentric correction ``1 / (1 + VELOSYS / c)`` when VELOSYS is known;
- for a subarray, each order starts with the shift to full-frame pixels and is bounded by the
  subarray (-0.5 .. size - 0.5 on both axes).

The step also sets SPECSYS=BARYCENT and DISPAXIS=1, and, as jwst 3.0 does for SOSS, writes no
S_REGION of its own and no WAVELENGTH array (extract_1d takes the trace wavelengths from the
``pastasoss`` reference).
"""

from __future__ import annotations

import logging

from ...errors import InputFileError, ReferenceFileError
from .. import _wcs

log = logging.getLogger("webbflow.steps.assign_wcs")

SPEED_OF_LIGHT = 299792458.0  # m/s (astropy.constants.c)
ORDERS = (1, 2, 3)


def reftypes(model) -> tuple[str, ...]:
    # jwst asks for distortion and filteroffset too (and records them); only specwcs is read
    return ("distortion", "filteroffset", "specwcs")


def _order_transforms(specwcs):
    """The three wavelength transforms of a SOSS specwcs reference (its tree's entries 1, 2, 3)."""
    tree = getattr(specwcs, "_asdf_extra", None) or {}
    name = getattr(specwcs.meta, "filename", None) or "<in memory>"
    out = []
    for order in ORDERS:
        tr = tree.get(order, tree.get(str(order)))
        if tr is None:
            raise ReferenceFileError("specwcs", name, f"has no wavelength transform for order {order} (not a SOSS specwcs)")
        out.append(tr.copy() if hasattr(tr, "copy") else tr)
    return out


def soss_pipeline(model, specwcs):
    """The gwcs pipeline [(detector, NirissSOSSModel), (world, None)] of a SOSS exposure."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.models import Const1D, Identity, Mapping
    from gwcs import coordinate_frames as cf
    from stdatamodels.jwst.transforms.models import NirissSOSSModel

    try:
        ra, dec = float(model.meta.target.ra), float(model.meta.target.dec)
    except TypeError:
        raise InputFileError(model.meta.filename or "the input", "has no TARG_RA/TARG_DEC: the SOSS WCS needs them") from None
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), axes_names=("ra", "dec"), axes_order=(0, 1),
                            unit=(u.deg, u.deg), name="sky")
    world = cf.CompositeFrame([sky, spec], name="world")

    waves = _order_transforms(specwcs)
    velosys = model.meta.wcsinfo.velosys
    if velosys is not None:
        factor = 1.0 / (1.0 + velosys / SPEED_OF_LIGHT)
        vcorr = Identity(1) * Const1D(factor, name="velocity_correction")
        vcorr.inverse = Identity(1) / Const1D(factor, name="inv_vel_correction")
        waves = [w | vcorr for w in waves]
        log.info("Applied Barycentric velocity correction: %s", factor)
    to_full = _wcs.subarray_offset(model)
    per_order = []
    for order, w in zip(ORDERS, waves):
        # (x, y) -> (x, y, y, x): RA and Dec are constants, the wavelength table takes (row, column)
        t = (Mapping((0, 1, 1, 0)) | (Const1D(ra) & Const1D(dec) & w)).rename(f"Order{order}")
        if to_full is not None:
            t = to_full | t
            xsize, ysize = model.meta.subarray.xsize, model.meta.subarray.ysize
            # given in "F" order (x first), as jwst binds them
            from astropy.modeling import bind_bounding_box

            bind_bounding_box(t, ((-0.5, xsize - 0.5), (-0.5, ysize - 0.5)), order="F")
        per_order.append(t)
    soss = NirissSOSSModel(list(ORDERS), per_order).rename("3-order SOSS Model")
    return [(detector, soss), (world, None)]


def assign(model, refs, params):
    from gwcs import WCS

    if refs.get("specwcs") is None:
        log.info("Step assign_wcs skipped: reference type specwcs is N/A for this exposure")
        return model, "SKIPPED"
    model.meta.wcsinfo.specsys = "BARYCENT"
    model.meta.wcsinfo.dispersion_direction = 1
    model.meta.wcs = WCS(soss_pipeline(model, refs["specwcs"]))
    log.info("assign_wcs: SOSS WCS built (orders 1, 2, 3)")
    return model
