"""assign_wcs: attach the imaging WCS to an exposure (jwst's AssignWcsStep, imaging modes).

For NIRCam, NIRISS, MIRI and FGS imaging the WCS is the gwcs pipeline
detector -> v2v3 -> v2v3vacorr -> world built by :mod:`._wcs` from

- the ``distortion`` reference (its ``model``: full-frame detector pixels to
  V2/V3 arcsec), preceded by the filter's pixel offset from the
  ``filteroffset`` reference (NIRCam, NIRISS: filter and pupil; MIRI:
  filter) and by the subarray's offset on the detector;
- VA_SCALE (differential velocity aberration);
- the pointing in meta.wcsinfo: V2_REF, V3_REF, ROLL_REF, RA_REF, DEC_REF.

It is stored at ``meta.wcs`` (written to the product's ASDF extension).  As
jwst does, the step then writes the FITS WCS + SIP approximation of that WCS
into the SCI header keywords (CTYPE ``RA---TAN-SIP``, CRPIX, CRVAL, CD,
A_/B_/AP_/BP_ coefficients, which replace CDELT/PC) with the ``sip_*``
parameters, and the footprint as S_REGION.

Spectroscopic and other modes live in modules of this package, one per
family (``miri_lrs``, ``grism``, ``nirspec``, ...): :data:`MODE_MODULES` maps an
EXP_TYPE to its module, which provides ``reftypes(model) -> tuple`` (the
references it uses) and ``assign(model, refs, params) -> model``.  Exposure
types with no module are refused (UnsupportedModeError); inputs that are
neither images nor cubes are skipped, as jwst does.
"""

from __future__ import annotations

import logging

from ...errors import UnsupportedModeError
from .. import _wcs
from ..base import StepParams, step

log = logging.getLogger("webbflow.steps.assign_wcs")


class AssignWcsParams(StepParams):
    sip_approx: bool = True  # write the FITS SIP approximation of the WCS into the header (imaging)
    sip_max_pix_error: float = 0.01  # largest error of the forward SIP fit, pixels
    sip_degree: int | None = None  # forward SIP degree; None: the lowest degree meeting sip_max_pix_error
    sip_max_inv_pix_error: float = 0.01  # largest error of the inverse SIP fit, pixels
    sip_inv_degree: int | None = None  # inverse SIP degree; None: the lowest meeting sip_max_inv_pix_error
    sip_npoints: int = 12  # sampling points per axis for the SIP fit
    slit_y_low: float = -0.55  # NIRSpec only (not used for imaging)
    slit_y_high: float = 0.55  # NIRSpec only (not used for imaging)
    nrs_ifu_slice_wcs: bool = False  # NIRSpec IFU only (not used for imaging)

    def model_post_init(self, _ctx) -> None:
        for name in ("sip_degree", "sip_inv_degree"):
            v = getattr(self, name)
            if v is not None and v > 6:
                from ...errors import ParameterError

                raise ParameterError(f"step assign_wcs: parameter {name!r} must be at most 6 (got {v})")


# EXP_TYPE -> module of this package that builds its WCS (see the module docstring)
MODE_MODULES: dict[str, str] = {}
MODE_MODULES.update({"MIR_LRS-FIXEDSLIT": "miri_lrs", "MIR_LRS-SLITLESS": "miri_lrs"})

# every reference type a mode module may use (the step's optional references)
MODE_REFTYPES = (
    "specwcs", "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
    "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")

# the slitless grisms (NIRCam WFSS and grism time series, NIRISS WFSS)
MODE_MODULES.update({"NRC_WFSS": "grism", "NRC_TSGRISM": "grism", "NIS_WFSS": "grism"})
MODE_MODULES.update({"NRS_FIXEDSLIT": "nirspec", "NRS_BRIGHTOBJ": "nirspec", "NRS_MSASPEC": "nirspec"})
# the MIRI medium resolution spectrometer (IFU)
MODE_MODULES["MIR_MRS"] = "miri_mrs"
# NIRISS SOSS: the three GR700XD orders
MODE_MODULES["NIS_SOSS"] = "niriss_soss"
# the NIRSpec IFU: the 30 slices of the image slicer
MODE_MODULES["NRS_IFU"] = "nirspec_ifu"


def _mode_module(model):
    import importlib

    name = MODE_MODULES.get((model.meta.exposure.type or "").upper())
    return importlib.import_module(f"{__name__}.{name}") if name else None


def _uses_filteroffset(model, params=None) -> tuple[str, ...]:
    """The references this exposure uses: imaging takes distortion (+ filteroffset), a mode module says its own."""
    mod = _mode_module(model)
    if mod is not None:
        return tuple(mod.reftypes(model))
    inst = (model.meta.instrument.name or "").upper()
    return ("distortion", "filteroffset") if inst in ("NIRCAM", "NIRISS", "MIRI") else ("distortion",)


def assign_imaging_wcs(model, distortion, filteroffset=None, params: AssignWcsParams | None = None):
    """Build the imaging WCS of ``model`` in place: meta.wcs, the SIP keywords and S_REGION."""
    from gwcs import WCS

    params = params or AssignWcsParams()
    pipeline = _wcs.imaging_pipeline(model, distortion, filteroffset)
    model.meta.wcs = WCS(pipeline)
    try:
        _wcs.update_s_region(model)
    except Exception as exc:  # noqa: BLE001 - jwst logs the failure and goes on
        log.error("Unable to update S_REGION for %s: %s", model.meta.exposure.type, exc)
    if not _wcs.is_sky_like(model.meta.wcs.output_frame):
        model.meta.wcsinfo.s_region = None
    exp_type = (model.meta.exposure.type or "").upper()
    if params.sip_approx and exp_type in _wcs.SIP_EXP_TYPES:
        try:
            _wcs.update_fits_sip(
                model,
                max_pix_error=params.sip_max_pix_error,
                degree=params.sip_degree,
                max_inv_pix_error=params.sip_max_inv_pix_error,
                inv_degree=params.sip_inv_degree,
                npoints=params.sip_npoints,
                crpix=None,
            )
        except (ValueError, RuntimeError) as exc:
            log.warning("Failed to write the FITS SIP approximation of the WCS: %s", exc)
    return model


@step(
    "assign_wcs",
    "AssignWcsStep",
    params=AssignWcsParams,
    reftypes=(),
    optional_reftypes=("distortion", "filteroffset") + MODE_REFTYPES,
    suffix="assign_wcs",
    input_class="ImageModel",
)
def assign_wcs(model, refs, params: AssignWcsParams):
    """Attach the gwcs of the exposure's mode: imaging (detector -> V2/V3 -> sky, with its FITS SIP
    approximation) here, other modes through their module in :data:`MODE_MODULES`."""
    from ...models import CubeModel, IFUImageModel, ImageModel

    if not isinstance(model, (ImageModel, CubeModel, IFUImageModel)):
        log.warning("assign_wcs takes an ImageModel or CubeModel, not a %s; skipped", type(model).__name__)
        return model, "SKIPPED"
    instrument = (model.meta.instrument.name or "").upper()
    exp_type = (model.meta.exposure.type or "").upper()
    mod = _mode_module(model)
    if mod is not None:
        return mod.assign(model, refs, params)
    if exp_type not in _wcs.IMAGING_MODES.get(instrument, set()):
        modes = ", ".join(sorted(MODE_MODULES))
        raise UnsupportedModeError(
            f"assign_wcs builds imaging WCSs (NIRCam, NIRISS, MIRI, FGS imaging){' and ' + modes if modes else ''}; "
            f"not {instrument or '?'} {exp_type or '?'}"
        )
    if refs.get("distortion") is None:
        log.info("Step assign_wcs skipped: reference type distortion is N/A for this exposure")
        return model, "SKIPPED"
    if instrument == "MIRI" and refs.get("filteroffset") is None:
        log.warning("No filteroffset reference for MIRI imaging: no filter offset is applied")
    assign_imaging_wcs(model, refs["distortion"], refs.get("filteroffset"), params)
    log.info("assign_wcs: WCS built; S_REGION %s", model.meta.wcsinfo.s_region)
    return model


def _register_extras():
    from ..base import STEPS

    STEPS["assign_wcs"].extra["optional_reftypes_needed"] = _uses_filteroffset
    # jwst's AssignWcsStep asks CRDS for all of these on every exposure and records the answers
    STEPS["assign_wcs"].extra["considered_reftypes"] = (
        "specwcs", "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
        "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")


_register_extras()
