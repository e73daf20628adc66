"""outlier_detection, mode ``coron``: outliers of one coronagraphic exposure's integrations
(jwst's OutlierDetectionStep as calwebb_coron3 runs it on each science and PSF-reference cube).

The integrations of a coronagraphic exposure share the pointing and the mask, so each pixel is
compared with its own median over the integrations, with no resampling:

1. A pixel of an integration is left out of the median when its DQ holds flags other than the
   ones ``good_bits`` allows (its weight, 0 or 1, is below ``maskpt`` times the cube's mean
   weight); the median is taken over the remaining integrations, NaNs ignored.
2. A pixel is an outlier when it differs from its median by more than ``snr1`` times its own
   error (stcal's ``flag_crs``); it gets DQ ``DO_NOT_USE | OUTLIER`` and NaN in SCI, ERR and
   the variances.

coron3 saves the flagged cube as ``<root>_<asn_id>_crfints.fits``.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("webbflow.steps.outlier_detection")

CORON_EXPTYPES = {"NRC_CORON", "MIR_LYOT", "MIR_4QPM"}


def is_coron_cube(model) -> bool:
    """Whether ``model`` is one coronagraphic exposure's cube of integrations (mode ``coron``)."""
    from ..models import CubeModel

    return isinstance(model, CubeModel) and (model.meta.exposure.type or "").upper() in CORON_EXPTYPES


def coron_median(data: np.ndarray, dq: np.ndarray, good_bits: str, maskpt: float) -> np.ndarray:
    """The NaN-ignoring median over integrations of the pixels whose weight passes ``maskpt``."""
    from stcal.outlier_detection.median import nanmedian3D
    from stcal.outlier_detection.utils import compute_weight_threshold

    from .outlier_detection_tso import good_pixels

    weight = good_pixels(dq, good_bits)
    threshold = compute_weight_threshold(weight, maskpt)
    masked = np.where(weight < threshold, np.nan, data).astype(data.dtype, copy=False)
    return nanmedian3D(masked, overwrite_input=True)


def flag_coron_outliers(cube, params) -> int:
    """Flag the outliers of a coronagraphic cube in place; returns how many pixels were flagged."""
    from .outlier_detection_tso import flag_against_median

    median = coron_median(cube.data, cube.dq, params.good_bits, params.maskpt)
    if params.save_intermediate_results:
        from .. import models
        from ._library import member_root

        med = models.ImageModel(data=median.astype(np.float32))
        med.meta = cube.meta.model_copy(deep=True)
        root = member_root(cube.meta.filename or "coron")
        from pathlib import Path

        med.save(Path(params.output_dir or ".") / f"{root}_median.fits")
    return flag_against_median(cube, median, params.snr_pair[0])
