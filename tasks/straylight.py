"""straylight: the MIRI MRS cross-artifact and residual-shower correction (jwst's StraylightStep).

Cross-artifact (always, with the ``mrsxartcorr`` reference):

1. a working copy of the rate: NaN and inf become 0, and those pixels, pixels flagged DO_NOT_USE,
   NON_SCIENCE, DEAD or HOT, and pixels below the dark level + 3 sigma are left out (mask 0);
   the dark level and sigma are the sigma-clipped mean and standard deviation of the unlit
   strip between the two channels (columns 503-515 for channels 1/2, 474-506 for 3/4; rows
   50-973);
2. the scattered light of each detector half (columns 0-515 and 516-1023) is modelled from the
   masked image minus the dark level, with the parameters of that half's channel+band (left:
   channel 1 or 4, right: 2 or 3) from the reference's CHnX tables (per row: a Lorentzian
   and two Gaussian pairs; see :mod:`._xart_kernel`); a missing table models nothing;
3. the model (0 on the four reference columns at each edge) is subtracted, then the dark level
   measured again on the corrected strip (its sigma-clipped median) is subtracted too.

Residual cosmic-ray showers (``clean_showers``, with the ``regions`` reference): the pixels
outside the slices of throughput plane ``shower_plane``, without DO_NOT_USE or REFERENCE_PIXEL
and within the ``shower_low_reject``-``shower_high_reject`` percentiles, smoothed by a 2-D
Gaussian (``shower_x_stddev``, ``shower_y_stddev``), are the shower light subtracted from every
pixel; ``save_shower_model`` writes it as ``<root>_shower_model.fits``.

Only ERR and the variances are left as they are, as jwst leaves them.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ReferenceFileError
from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.straylight")

# (left, right) tables of the reference per CHANNEL and BAND
_TABLES = {("12", "SHORT"): ("ch1a_table", "ch2a_table"), ("12", "MEDIUM"): ("ch1b_table", "ch2b_table"),
           ("12", "LONG"): ("ch1c_table", "ch2c_table"), ("34", "SHORT"): ("ch4a_table", "ch3a_table"),
           ("34", "MEDIUM"): ("ch4b_table", "ch3b_table"), ("34", "LONG"): ("ch4c_table", "ch3c_table")}
# the unlit strip between the channels: (columns, rows) per CHANNEL
_DARK_STRIP = {"12": (slice(503, 516), slice(50, 974))}
_DARK_STRIP_DEFAULT = (slice(474, 507), slice(50, 974))
_HALVES = ((0, 516), (516, 1024))
_MASKED = dqflags.DO_NOT_USE | dqflags.NON_SCIENCE | dqflags.DEAD | dqflags.HOT


class StraylightParams(StepParams):
    clean_showers: bool = False  # clean up straylight from residual cosmic ray showers
    shower_plane: int = 3  # throughput plane for identifying inter-slice regions
    shower_x_stddev: float = 18.0  # x standard deviation for shower model
    shower_y_stddev: float = 5.0  # y standard deviation for shower model
    shower_low_reject: float = 0.1  # low percentile of pixels to reject
    shower_high_reject: float = 99.9  # high percentile of pixels to reject
    save_shower_model: bool = False  # save the shower model


def _table(ref, name: str, nrows: int):
    """The reference's parameter columns for one channel+band, or None when it has no such table."""
    tab = getattr(ref, name, None) if ref.has(name) else None
    if tab is None or len(tab) == 0:
        return None
    cols = {c.upper(): c for c in tab.dtype.names}
    want = ("LOR_FWHM", "LOR_SCALE", "GAU_FWHM", "GAU_XOFF", "GAU_SCALE1", "GAU_SCALE2")
    missing = [c for c in want if c not in cols]
    fname = getattr(ref.meta, "filename", None) or "<in memory>"
    if missing:
        raise ReferenceFileError("mrsxartcorr", fname, f"table {name[:4].upper()} lacks column(s) {', '.join(missing)}")
    if len(tab) != nrows:
        raise ReferenceFileError("mrsxartcorr", fname, f"table {name[:4].upper()} has {len(tab)} rows; the exposure has {nrows}")
    return [np.asarray(tab[cols[c]], dtype=np.float64) for c in want]


def correct_xartifact(model, xart) -> float | None:
    """Subtract the cross-artifact model and the inter-channel dark level in place; returns that level."""
    from astropy.stats import sigma_clipped_stats

    from ._xart_kernel import xartifact_model

    data = model.data
    nrows, ncols = data.shape
    work = np.array(data, dtype=data.dtype)
    mask = np.ones_like(work)
    work[np.isinf(work)] = 0.0
    nan = np.isnan(work)
    work[nan] = 0.0
    mask[nan] = 0
    if model.dq is not None:
        mask[(model.dq & _MASKED) != 0] = 0
    channel = str(model.meta.instrument.channel or "")
    band = str(model.meta.instrument.band or "").upper()
    cols, rows = _DARK_STRIP.get(channel, _DARK_STRIP_DEFAULT)
    guess, _median, rms = sigma_clipped_stats(work[rows, cols])
    mask[work < guess + 3 * rms] = 0
    names = _TABLES.get((channel, band))
    if names is None:
        log.info("No cross-artifact parameters for channel %s band %s", channel, band)
        names = (None, None)
    xvec = np.arange(ncols, dtype=np.float64)
    scattered = np.zeros((nrows, ncols), dtype=np.float64)
    for name, (start, stop) in zip(names, _HALVES):
        pars = _table(xart, name, nrows) if name else None
        if pars is None:
            log.info("No parameters for the %s detector half; no cross-artifact correction there",
                     "left" if start == 0 else "right")
            continue
        scattered += xartifact_model((work - guess) * mask, xvec, start, stop, *pars)
    scattered[:, 1028:1032] = 0.0
    scattered[:, 0:4] = 0.0
    model.data = (data - scattered).astype(data.dtype)
    work = work - scattered
    try:
        _mean, level, _rms = sigma_clipped_stats(work[rows, cols])
    except Exception as exc:  # noqa: BLE001 - jwst goes on without the dark level
        log.info("Straylight pedestal correction failed (%s).", exc)
        return None
    pedestal = np.full(model.data.shape, level)
    pedestal[:, 1028:1032] = 0.0
    pedestal[:, 0:4] = 0.0
    model.data = (model.data - pedestal).astype(data.dtype)
    log.info("Derived pedestal correction %s DN/s", level)
    return float(level)


def clean_showers(model, planes, params: StraylightParams):
    """Subtract the smoothed light between the slices (residual showers) in place; returns that model."""
    from astropy.convolution import Gaussian2DKernel, convolve_fft

    work = np.array(model.data, dtype=model.data.dtype)
    work[planes[params.shower_plane] != 0] = np.nan
    work[(model.dq & (dqflags.DO_NOT_USE | dqflags.REFERENCE_PIXEL)) != 0] = np.nan
    low = np.nanpercentile(work, params.shower_low_reject)
    high = np.nanpercentile(work, params.shower_high_reject)
    work[(work < low) | (work > high)] = np.nan
    kernel = Gaussian2DKernel(x_stddev=params.shower_x_stddev, y_stddev=params.shower_y_stddev)
    shower = convolve_fft(work, kernel)
    model.data = (model.data - shower).astype(model.data.dtype)
    return shower


def _regions_needed(model, params) -> tuple[str, ...]:
    return ("regions",) if params.clean_showers else ()


@step(
    "straylight",
    "StraylightStep",
    params=StraylightParams,
    reftypes=("mrsxartcorr",),
    optional_reftypes=("regions",),
    suffix="straylight",
    input_class="IFUImageModel",
)
def straylight(model, refs, params: StraylightParams):
    """Subtract the MRS cross-artifact (and optionally residual cosmic-ray showers) from a rate image."""
    from .. import models

    if not isinstance(model, (models.ImageModel, models.IFUImageModel)) or model.data.ndim != 2:
        log.warning("Straylight correction not defined for datatype %s", type(model).__name__)
        log.warning("Straylight step will be skipped")
        return model, "SKIPPED"
    if model.data.shape != (1024, 1032):
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "<in memory>",
                             f"straylight works on full MRS frames (1024, 1032), not {model.data.shape}")
    level = correct_xartifact(model, refs["mrsxartcorr"])
    log.info("Cross-artifact model complete.")
    qa = {"pedestal DN/s": level} if level is not None else {}
    if params.clean_showers:
        regions = refs.get("regions")
        if regions is None:
            raise ReferenceFileError("regions", "N/A", "clean_showers needs a regions reference (the slice map)")
        planes = np.asarray(regions.regions)
        if planes.ndim != 3 or not 0 <= params.shower_plane < planes.shape[0]:
            raise ReferenceFileError("regions", getattr(regions.meta, "filename", None) or "<in memory>",
                                     f"has no throughput plane {params.shower_plane} (shape {planes.shape})")
        log.info("Applying correction for residual cosmic ray showers.")
        shower = clean_showers(model, planes, params)
        qa["shower median DN/s"] = float(np.nanmedian(shower))
        if params.save_shower_model:
            from .ramp_fit import side_product_path

            out = models.IFUImageModel(model)
            for name in out.array_names():
                setattr(out, name, None)
            out.data = np.asarray(shower, dtype=np.float32)
            path = side_product_path(model, params, "shower_model")
            log.info("Saving shower model file %s", path)
            out.save(path)
    from .base import report_qa

    report_qa(**qa)
    return model


def _register_extras():
    from .base import STEPS

    STEPS["straylight"].extra["optional_reftypes_needed"] = _regions_needed


_register_extras()
