"""clean_flicker_noise: fit and remove 1/f (flicker) noise (jwst's CleanFlickerNoiseStep).

Near-infrared detectors add a slowly varying offset along each row read
(1/f noise), seen as stripes along the fast axis; MIRI shows a similar
vertical flicker.  The step, as jwst does it:

1. makes a draft rate (ramp_fit with default parameters) from a ramp, or
   uses the rate it is given, optionally divided by the flat;
2. builds a background mask from it: NaN and zero pixels out, sources and
   outliers sigma-clipped out (``n_sigma``, ``fit_histogram``), one plane
   per integration or a single one (``single_mask``), or reads ``user_mask``;
3. for each group difference of each integration (or each image of a rate),
   masks jumps and DO_NOT_USE groups, removes a background level
   (``background_method``: a median, a smooth 2-D model from photutils'
   Background2D, a median image across integrations, or none), clips the
   remaining signal, takes the masked median along the fast axis (by
   amplifier with ``fit_by_channel``) and subtracts it, then restores the
   background and rebuilds the ramp from the cleaned differences;
4. ``autoparam`` chooses ``background_method``, ``fit_by_channel`` and
   ``apply_flat_field`` from image statistics for NIRCam and NIRISS imaging.

What webbflow does not do (it raises UnsupportedModeError, naming the
option): ``fit_method='fft'`` (NSClean, NIRSpec only), ``mask_science_regions``
for NIRSpec, MIRI imaging and NIRISS SOSS (they need NIRSpec's WCS, the
flat-field step's DQ or the SOSS trace model), and ``median_image`` for TSO
spectroscopy and TSO imaging (they need spectral extraction or TSO
photometry).  For NIRCam/NIRISS imaging, ``mask_science_regions`` changes
nothing, in jwst as here.
"""

from __future__ import annotations

import logging
import warnings
from fractions import Fraction
from typing import Literal

import numpy as np
from pydantic import Field

from .. import models
from ..errors import UnsupportedModeError
from ..models import dqflags
from .base import STEPS, StepParams, step

log = logging.getLogger("webbflow.steps.clean_flicker_noise")

NSCLEAN_EXP_TYPES = ("NRS_MSASPEC", "NRS_IFU", "NRS_FIXEDSLIT", "NRS_BRIGHTOBJ")
AUTOPARAM_EXP_TYPES = ("NIS_IMAGE", "NRC_IMAGE")
TSO_MEDIAN_UNSUPPORTED = ("NIS_SOSS", "NRS_BRIGHTOBJ", "NRC_TSGRISM", "NRC_TSIMAGE")


class CleanFlickerNoiseParams(StepParams):
    skip: bool = True  # jwst skips it by default
    autoparam: bool = Field(False, description="choose background and fit parameters from the data (NRC/NIS imaging)")
    fit_method: Literal["fft", "median"] = Field("median", description="noise fitting algorithm")
    fit_by_channel: bool = Field(False, description="fit the noise of each amplifier separately (NIR full frame)")
    background_method: Literal["median", "model", "median_image"] | None = Field(
        "median", description="background removed before the noise fit"
    )
    background_box_size: list[int] | None = Field(None, min_length=2, max_length=2, description="Background2D box size")
    mask_science_regions: bool = Field(False, description="mask known science regions (NIRSpec, MIRI, SOSS)")
    apply_flat_field: bool = Field(False, description="divide by the flat before fitting")
    n_sigma: float = Field(2.0, description="clipping level for non-background signal (0: no clipping)")
    fit_histogram: bool = Field(False, description="derive the clipping sigma from a Gaussian fit to a histogram")
    single_mask: bool = Field(True, description="one background mask for all integrations")
    user_mask: str | None = Field(None, description="path to a user-supplied background mask (1 = background)")
    save_mask: bool = Field(False, description="save the background mask (suffix mask)")
    save_background: bool = Field(False, description="save the fit background (suffix flicker_bkg)")
    save_noise: bool = Field(False, description="save the fit noise (suffix flicker_noise)")


# ---------------------------------------------------------------------------
# statistics helpers


def clip_to_background(image, mask, sigma_lower=3.0, sigma_upper=2.0, fit_histogram=False, lower_half_only=False):
    """Mark signal (above center + sigma_upper*sigma) and low outliers False in ``mask``, in place.

    Center and sigma come from a 3-sigma clipped median and standard
    deviation of the masked pixels; with ``lower_half_only`` from the lower
    half of the distribution mirrored about the center; with
    ``fit_histogram`` from a Gaussian fit to a 2000-bin histogram (the
    center is then the clipped mean).
    """
    from astropy.stats import sigma_clipped_stats
    from astropy.utils.exceptions import AstropyUserWarning

    image = image.astype(np.float64)
    if not np.any(mask):
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, message=".* slice")
        mean, median, sigma = sigma_clipped_stats(image, mask=~mask, sigma=3.0)
    center = mean if fit_histogram else median
    if lower_half_only:
        low = image[mask & (image <= center)]
        data_for_stats = np.concatenate((low - center, center - low)) + center
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=AstropyUserWarning)
            mean, median, sigma = sigma_clipped_stats(data_for_stats, sigma=3.0)
        center = mean if fit_histogram else median
    else:
        data_for_stats = image[mask]
    if fit_histogram:
        center, sigma = _histogram_fit(data_for_stats, center, sigma)
    mask[image < center - sigma_lower * sigma] = False
    mask[image > center + sigma_upper * sigma] = False


def _histogram_fit(values, center, sigma):
    from scipy.optimize import curve_fit

    try:
        hist, edges = np.histogram(values, bins=2000, range=(center - 4.0 * sigma, center + 4.0 * sigma))
    except ValueError:
        log.error("Histogram failed; using clip center and sigma.")
        return center, sigma
    mids = (edges[1:] + edges[:-1]) / 2.0
    peak = np.argmax(hist)

    def gaussian(x, amp, mu, sig):
        return amp * np.exp(-0.5 * ((x - mu) / sig) ** 2)

    start = (hist[peak], mids[peak], sigma)
    bounds = [(0, mids[0], 0), (np.inf, mids[-1], mids[-1] - mids[0])]
    try:
        popt, _ = curve_fit(gaussian, mids, hist, p0=start, bounds=bounds)
    except RuntimeError:
        log.error("Gaussian fit failed; using clip center and sigma.")
        return center, sigma
    return popt[1], popt[2]


def background_level(image, mask, background_method="median", background_box_size=None):
    """The background to remove before the noise fit: 0.0, a masked median, or a Background2D model.

    ``mask`` is updated in place (signal clipped with the lower half of the
    distribution), as in jwst.
    """
    if background_method is None:
        return 0.0
    clip_to_background(image, mask, sigma_lower=3.0, sigma_upper=3.0, lower_half_only=True)
    if background_method == "model":
        from astropy.stats import SigmaClip
        from astropy.utils.exceptions import AstropyUserWarning

        try:
            from photutils.background import Background2D, MedianBackground
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise UnsupportedModeError(
                "background_method='model' needs the photutils package (pip install photutils)"
            ) from exc
        if background_box_size is None:
            sizes = np.arange(1, 33)
            background_box_size = [int(sizes[n % sizes == 0][-1]) for n in image.shape]
            log.debug("Using box size %s", background_box_size)
        if image.shape[0] % background_box_size[0] or image.shape[1] % background_box_size[1]:
            log.warning(
                "Background box size %s does not divide evenly into the image shape %s.",
                background_box_size, image.shape,
            )
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=AstropyUserWarning)
                bkg = Background2D(
                    image,
                    box_size=background_box_size,
                    filter_size=(5, 5),
                    mask=~mask,
                    sigma_clip=SigmaClip(sigma=3.0, maxiters=5),
                    bkg_estimator=MedianBackground(),
                )
            return bkg.background
        except ValueError:
            log.error("Background fit failed, using median value.")
            return np.nanmedian(image[mask])
    return np.nanmedian(image[mask])


def masked_median(image, mask, axis):
    """Median of ``image`` over ``axis`` using only pixels where ``mask``; 0 where none (keepdims)."""
    vals = np.where(mask, image, np.array(np.nan, dtype=image.dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(vals, axis=axis, keepdims=True)
    med[np.isnan(med)] = 0.0
    return med


def median_clean(image, mask, axis_to_correct, fit_by_channel=False):
    """Subtract the masked median along ``axis_to_correct`` (1: y, 2: x), by 512-pixel channel if asked."""
    corrected = image.copy()
    axis = axis_to_correct - 1
    if fit_by_channel and image.shape[axis] == 2048:
        n_output, size = 4, 512
    else:
        n_output, size = 1, image.shape[axis]
    for c in range(n_output):
        sl = slice(c * size, (c + 1) * size)
        idx = (slice(None), sl) if axis == 1 else (sl, slice(None))
        stripes = masked_median(image[idx], mask[idx], axis)
        corrected[idx] = image[idx] - stripes
    return corrected


# ---------------------------------------------------------------------------
# draft rate and mask


def draft_rate(ramp, refs, return_cube=False):
    """A draft rate (or rateints) from a ramp: ramp_fit with its default parameters."""
    from .ramp_fit import fit_model

    if refs.get("gain") is None or refs.get("readnoise") is None:
        raise UnsupportedModeError("a draft rate from a ramp needs the gain and readnoise references")
    log.info("Creating draft rate file for scene masking")
    quiet = [logging.getLogger(n) for n in ("stcal", "webbflow.steps.ramp_fit")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # the draft fit's own messages are noise here, as in jwst
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        rate, rateints, _ = fit_model(ramp, refs["gain"], refs["readnoise"])
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
    out = rateints if return_cube else rate
    if out is None:
        raise UnsupportedModeError("no draft rate can be made: every ramp is saturated or flagged")
    return out


def read_flat(model, flat_ref):
    """The flat on the science pixels (a copy), zeros and non-finite values replaced by a smooth local level."""
    from ._subarray import ref_region

    if flat_ref is None:
        return None
    flat = np.array(ref_region(model, flat_ref, "data"), dtype=np.float32, copy=True)
    bad = (flat == 0) | ~np.isfinite(flat)
    if np.any(bad):
        smooth = background_level(flat, ~bad, background_method="model")
        if np.isscalar(smooth):
            flat[bad] = smooth
        else:
            flat[bad] = smooth[bad]
    return flat


def create_mask(image_model, exp_type, mask_science_regions=False, n_sigma=2.0, fit_histogram=False, single_mask=False):
    """Background mask (True = background) from a rate image or cube."""
    exp = exp_type.lower()
    if mask_science_regions and (exp.startswith("nrs") or exp in ("mir_image", "nis_soss")):
        raise UnsupportedModeError(
            f"mask_science_regions for {exp_type} needs "
            + ("NIRSpec's WCS" if exp.startswith("nrs") else "the flat-field DQ" if exp == "mir_image" else "the SOSS trace model")
            + ", which webbflow does not provide yet; run with mask_science_regions=false"
        )
    data = image_model.data
    mask = np.full(data.shape, True)
    mask[np.isnan(data) | (data == 0)] = False
    if n_sigma > 0:
        if data.ndim == 3:
            for i in range(data.shape[0]):
                clip_to_background(data[i], mask[i], sigma_upper=n_sigma, fit_histogram=fit_histogram)
        else:
            clip_to_background(data, mask, sigma_upper=n_sigma, fit_histogram=fit_histogram)
    if single_mask and mask.ndim == 3:
        mask = np.all(mask, axis=0)
    return mask


def make_median_image(input_model, rateints_data):
    """Scaled median image (or ramp) across integrations, for non-TSO imaging."""
    ndim = input_model.data.ndim
    if ndim < 3:
        raise ValueError("Cannot make a median image for 2D data")
    nints = input_model.data.shape[0]
    if nints <= 1:
        raise ValueError("Cannot make a median image for <2 integrations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median_flux = np.nanmedian(rateints_data, axis=(1, 2))
        norm_flux = median_flux / np.nanmedian(median_flux)
    invalid = ~np.isfinite(norm_flux)
    if np.all(invalid):
        raise ValueError("No valid flux for scaling")
    if np.any(invalid):
        log.warning("%d integration(s) had non-finite flux and are scaled by the median flux", int(invalid.sum()))
        norm_flux[invalid] = np.median(norm_flux[~invalid])
    stack = input_model.data.copy() if ndim > 3 else np.array(rateints_data, copy=True)
    median_ramp = np.empty(stack.shape[1:], dtype=stack.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(median_ramp.shape[0]):
            np.nanmedian(stack[:, i, ...], axis=0, overwrite_input=True, out=median_ramp[i, ...])
    if ndim == 3:
        return norm_flux[:, None, None] * median_ramp[None, ...]
    return norm_flux[:, None, None, None] * median_ramp[None, ...]


# ---------------------------------------------------------------------------
# autoparam (NIRCam and NIRISS imaging)


def quick_clean(input_model, refs, flat_ref=None):
    """A quick median clean of the (draft) rate: returns (cleaned 2-D image, background mask)."""
    if input_model.data.ndim == 4:
        rate = draft_rate(input_model, refs)
        image = np.array(rate.data, copy=True)
    elif input_model.data.ndim == 3:
        image = np.nanmean(input_model.data, axis=0)
    else:
        image = np.array(input_model.data, copy=True)
    flat = read_flat(input_model, flat_ref)
    if flat is not None:
        image /= flat
    mask = np.full(image.shape, True)
    clip_to_background(image, mask)
    nan_pix = np.isnan(image)
    image[nan_pix] = 0.0
    mask[nan_pix] = False
    background = background_level(image, mask)
    image -= background
    clip_to_background(image, mask, lower_half_only=True)
    image = median_clean(image, mask, abs(input_model.meta.subarray.slowaxis))
    image += background
    image[nan_pix] = np.nan
    return image, mask


def _row_average(image, start, stop):
    y0, y1 = int(round(start * image.shape[0])), int(round(stop * image.shape[0]))
    return np.nanmean(image[y0:y1, :], axis=0)


def _col_average(image, start, stop):
    x0, x1 = int(round(start * image.shape[1])), int(round(stop * image.shape[1]))
    return np.nanmean(image[:, x0:x1], axis=1)


def _line_fit(data):
    from astropy.stats import sigma_clipped_stats

    good = np.isfinite(data)
    x = np.arange(data.size)
    p = np.polynomial.Polynomial.fit(x[good], data[good], deg=1)
    coef = p.convert().coef
    slope = coef[1] if len(coef) > 1 else 0.0
    _, _, sigma = sigma_clipped_stats(data[good] - p(x[good]), sigma=10.0)
    return coef[0], slope, sigma


def _max_channel_offset(data):
    from astropy.stats import sigma_clipped_stats

    if data.size != 2048:
        return 0.0
    levels = np.array([sigma_clipped_stats(data[c * 512 : (c + 1) * 512], sigma=3.0)[0] for c in range(4)])
    return float(np.max(np.abs(levels[1:] - levels[:-1])))


def _decide(limits, mask_frac, max_offset, max_slope, slope_ratio, channel_sigma) -> dict:
    """jwst's heuristic decision tree: background_method and fit_by_channel from image statistics."""
    high_mask = mask_frac >= limits["mask_frac"]
    high_offset = max_offset >= limits["max_offset_high_mask"]
    slope_low_off = max_slope >= limits["max_slope_low_offset"]
    slope_high_off = max_slope >= limits["max_slope_high_offset"]
    high_ratio = slope_ratio >= limits["slope_ratio"]
    high_sigma = channel_sigma >= limits["channel_sigma"]
    out = {}
    if not high_mask and high_offset:
        out.update(background_method="median", fit_by_channel=True)
    elif high_mask:
        out["fit_by_channel"] = False
        steep = slope_high_off if high_offset else slope_low_off
        out["background_method"] = "model" if steep else "median"
    else:
        if slope_high_off:
            out["background_method"] = "model"
        elif slope_low_off:
            out["background_method"] = "median" if high_ratio else "model"
        else:
            out["background_method"] = "median"
        out["fit_by_channel"] = bool(max_offset > 0 and high_sigma)
    return out


def auto_parameters(input_model, refs, exp_type, flat_ref):
    """Parameters jwst's autoparam picks for NIRCam or NIRISS imaging."""
    params = {"apply_flat_field": flat_ref is not None, "background_method": "median", "fit_by_channel": False}
    cleaned, mask = quick_clean(input_model, refs, flat_ref)
    bkg2d = background_level(cleaned, mask, background_method="model")
    cleaned[~mask] = bkg2d if np.isscalar(bkg2d) else bkg2d[~mask]
    mask_frac = np.sum(~mask) / mask.size
    avg_over_row = _row_average(cleaned, Fraction(3, 8), Fraction(5, 8))
    avg_over_col = _col_average(cleaned, Fraction(3, 8), Fraction(5, 8))
    _, col_slope, col_sigma = _line_fit(avg_over_row)
    _, row_slope, _ = _line_fit(avg_over_col)
    slopes = np.abs([row_slope, col_slope])
    max_slope, min_slope = np.max(slopes), np.min(slopes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        slope_ratio = max_slope / min_slope
    if exp_type == "NIS_IMAGE":
        ch1 = _row_average(cleaned, Fraction(10, 12), Fraction(11, 12))
        _, _, channel_sigma = _line_fit(ch1)
        max_offset = _max_channel_offset(avg_over_col)
        limits = {"mask_frac": 0.07, "max_offset_high_mask": 0.07, "max_slope_low_offset": 1e-5,
                  "max_slope_high_offset": 1e-4, "slope_ratio": 5.0, "channel_sigma": 0.02}
    else:
        channel_sigma = col_sigma
        max_offset = _max_channel_offset(avg_over_row)
        limits = {"mask_frac": 0.1, "max_offset_high_mask": 0.07, "max_slope_low_offset": 1e-5,
                  "max_slope_high_offset": 1e-5, "slope_ratio": 3.0, "channel_sigma": 0.02}
    params.update(_decide(limits, mask_frac, max_offset, max_slope, slope_ratio, channel_sigma))
    return params


# ---------------------------------------------------------------------------
# the correction


def clean_one_image(image, mask, background_method, background_box_size, n_sigma, axis_to_correct, fit_by_channel, flat):
    """Clean one 2-D image (a group difference or a rate); returns (cleaned, background) or (None, None)."""
    image = image.astype(np.float32)
    if flat is not None:
        image /= flat
    nan_pix = np.isnan(image)
    image[nan_pix] = 0.0
    mask[nan_pix] = False
    if not np.any(mask):
        return None, None
    if background_method is None:
        background = 0.0
        bkg_sub = image
    else:
        background = background_level(image, mask, background_method, background_box_size)
        bkg_sub = image - background
        if n_sigma > 0:
            clip_to_background(bkg_sub, mask, sigma_lower=n_sigma, sigma_upper=n_sigma, lower_half_only=True)
    cleaned = median_clean(bkg_sub, mask, axis_to_correct, fit_by_channel=fit_by_channel)
    cleaned += background
    if flat is not None:
        cleaned *= flat
    cleaned[nan_pix] = np.nan
    return cleaned, background


def _intermediate(model, data):
    cls = {4: models.RampModel, 3: models.CubeModel}.get(np.ndim(data), models.ImageModel)
    out = cls(model)
    for name in out.array_names():
        setattr(out, name, None)
    out.data = np.asarray(data, dtype=np.float32)
    return out


def _needed_refs(model, params) -> set[str]:
    need = set()
    exp_type = str(model.meta.exposure.type or "")
    if params.apply_flat_field or (params.autoparam and exp_type in AUTOPARAM_EXP_TYPES):
        need.add("flat")
    if getattr(model, "data", None) is not None and model.data.ndim == 4:
        if params.user_mask is None or params.background_method == "median_image" or params.autoparam:
            need |= {"gain", "readnoise"}
    return need


@step(
    "clean_flicker_noise",
    "CleanFlickerNoiseStep",
    params=CleanFlickerNoiseParams,
    optional_reftypes=("flat", "gain", "readnoise"),
    suffix="clean_flicker_noise",
)
def clean_flicker_noise(model, refs, params: CleanFlickerNoiseParams):
    """Fit and subtract 1/f (flicker) noise from a ramp, rate or rateints."""
    detector = str(model.meta.instrument.detector or "").upper()
    exp_type = str(model.meta.exposure.type or "")
    subarray = str(model.meta.subarray.name or "").upper()
    log.info("Input exposure type is %s, detector=%s", exp_type, detector)

    p = params.model_copy()
    flat_ref = refs.get("flat")
    if p.autoparam:
        if exp_type in AUTOPARAM_EXP_TYPES:
            chosen = auto_parameters(model, refs, exp_type, flat_ref)
            log.info("Auto parameters set for %s: %s", exp_type, chosen)
            for k, v in chosen.items():
                setattr(p, k, v)
        else:
            log.warning("Auto parameters are not available for exposure type %s", exp_type)
    if not p.apply_flat_field:
        flat_ref = None
    elif flat_ref is None:
        log.warning("Flat correction is not available for exposure type %s without a user-supplied flat.", exp_type)

    # what jwst's _check_input refuses: status FAILED, data unchanged
    if exp_type.startswith("MIR") and exp_type != "MIR_IMAGE":
        log.warning("EXP_TYPE %s is not supported; step will be skipped", exp_type)
        return model, "FAILED"
    if p.fit_method == "fft":
        if exp_type not in NSCLEAN_EXP_TYPES:
            log.warning("Fit method 'fft' cannot be applied to exp_type %s; step will be skipped", exp_type)
            return model, "FAILED"
        raise UnsupportedModeError("clean_flicker_noise: fit_method='fft' (NSClean) is not implemented in webbflow; use fit_method='median'")

    # standardised parameters
    user_mask = None if str(p.user_mask).lower() == "none" else p.user_mask
    axis_to_correct = 1 if exp_type.startswith("MIR") else abs(model.meta.subarray.slowaxis or 0)
    if axis_to_correct not in (1, 2):
        raise UnsupportedModeError("clean_flicker_noise needs SLOWAXIS (meta.subarray.slowaxis) to know the noise axis")
    background_method = None if str(p.background_method).lower() == "none" else p.background_method
    single_mask = p.single_mask
    if background_method == "median_image":
        if exp_type in TSO_MEDIAN_UNSUPPORTED or (exp_type == "MIR_IMAGE" and bool(model.meta.visit.tsovisit)):
            raise UnsupportedModeError(
                f"clean_flicker_noise: background_method='median_image' for {exp_type} needs spectral extraction "
                "or TSO photometry, which webbflow does not provide yet"
            )
        if single_mask:
            log.warning("The median_image background method requires draft rateints files; setting single_mask to False.")
            single_mask = False
    fit_by_channel = p.fit_by_channel
    if fit_by_channel and (subarray != "FULL" or exp_type.startswith("MIR")):
        log.warning("Fit by channel can only be used for full-frame NIR data; setting fit_by_channel to False.")
        fit_by_channel = False

    flat = read_flat(model, flat_ref)

    # draft rate for the mask (and the median image)
    image_model = None
    if user_mask is None or background_method == "median_image":
        if model.data.ndim == 4:
            image_model = draft_rate(model, refs, return_cube=not single_mask)
        else:
            image_model = model
        if flat is not None:
            if image_model is model:
                image_model = _intermediate(model, model.data.copy())
            image_model.data = image_model.data / flat

    if user_mask is not None:
        background_mask = np.asarray(models.open(user_mask).data).astype(bool)
    else:
        log.info("Creating mask")
        background_mask = create_mask(
            image_model, exp_type, p.mask_science_regions, p.n_sigma, p.fit_histogram, single_mask
        )
    mask_product = _intermediate(model, background_mask) if p.save_mask else None

    # shapes
    ndim = model.data.ndim
    nints = 1 if ndim == 2 else model.data.shape[0]
    ngroups = model.data.shape[1] - 1 if ndim == 4 else 1
    if ndim > 2 and background_mask.ndim == 3 and background_mask.shape[0] != nints:
        log.warning("Mask does not match data shape. Step will be skipped.")
        return model, "FAILED"
    if background_mask.shape[-2:] != model.data.shape[-2:]:
        log.warning("Mask does not match data shape. Step will be skipped.")
        return model, "FAILED"

    median_image = None
    if background_method == "median_image":
        if nints <= 1:
            log.warning("The median_image background method cannot be used with nints=%d; step skipped", nints)
            return model, "FAILED"
        try:
            median_image = make_median_image(model, image_model.data)
        except ValueError as err:
            log.warning("A median image could not be created (%s); step skipped", err)
            return model, "FAILED"
        background_method = None
        if ndim > 3:
            ngroups += 1

    background_to_save = np.zeros_like(model.data) if p.save_background else None
    original = model.data.copy()
    out = model.data
    for i in range(nints):
        for j in range(ngroups):
            mask = (background_mask[i] if background_mask.ndim == 3 else background_mask).copy()
            if ndim == 2:
                image = original
            elif ndim == 3:
                image = original[i] - median_image[i] if median_image is not None else original[i]
            elif median_image is not None:
                image = original[i, j] - median_image[i, j]
            else:
                image = original[i, j + 1] - original[i, j]
                dq = model.groupdq[i, j + 1]
                mask[(dq & np.uint8(dqflags.DO_NOT_USE | dqflags.JUMP_DET)) > 0] = False
            cleaned, background = clean_one_image(
                image, mask, background_method, p.background_box_size, p.n_sigma, axis_to_correct, fit_by_channel, flat
            )
            if cleaned is None:
                log.warning("No usable data in integration %d, group %d. Skipping correction for this image.", i + 1, j + 1)
                continue
            if ndim == 2:
                out[...] = cleaned
                if background_to_save is not None:
                    background_to_save[:] = background
            elif ndim == 3:
                if median_image is not None:
                    out[i] = median_image[i] + cleaned
                    if background_to_save is not None:
                        background_to_save[i] = median_image[i]
                else:
                    out[i] = cleaned
                    if background_to_save is not None:
                        background_to_save[i] = background
            elif median_image is not None:
                out[i, j] = median_image[i, j] + cleaned
                if background_to_save is not None:
                    background_to_save[i, j] = median_image[i, j]
            else:
                # rebuild the ramp from the cleaned differences
                out[i, j + 1] = out[i, j] + cleaned
                if background_to_save is not None:
                    background_to_save[i, j + 1] = background

    _save_side_products(model, params, mask_product, background_to_save, original if p.save_noise else None)
    return model


def _save_side_products(model, params, mask_product, background, original):
    from .ramp_fit import side_product_path

    if mask_product is not None:
        path = side_product_path(model, params, "mask")
        log.info("Saving mask file %s", path)
        mask_product.save(path)
    if background is not None:
        path = side_product_path(model, params, "flicker_bkg")
        log.info("Saving background file %s", path)
        _intermediate(model, background).save(path)
    if original is not None:
        path = side_product_path(model, params, "flicker_noise")
        log.info("Saving noise file %s", path)
        _intermediate(model, model.data - original).save(path)


STEPS["clean_flicker_noise"].extra["optional_reftypes_needed"] = _needed_refs
