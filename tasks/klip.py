"""klip: PSF subtraction of a coronagraphic science exposure by Karhunen-Loeve image projection
(jwst's KlipStep; coron3's ``<exposure>_<asn_id>_psfsub.fits``).

The aligned PSF-reference images, each less its mean, span a basis: the eigenvectors of their
covariance, ordered by decreasing eigenvalue, projected onto the images and normalised (the
KL images).  The first ``truncate`` of them model the PSF.  Each science integration, less its
mean, minus its projection onto that basis is the PSF-subtracted image; its error is the
standard deviation, pixel by pixel, of the same subtraction applied to every reference image.
The science cube is changed in place (DQ and the variances are kept).
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from .base import StepParams, report_qa, step

log = logging.getLogger("webbflow.steps.klip")


class KlipParams(StepParams):
    truncate: int = Field(50, ge=0)  # number of KL transform rows (basis images) to keep


def kl_basis(refs: np.ndarray, truncate: int) -> np.ndarray:
    """The first ``truncate`` normalised KL images of the (n, npix) mean-subtracted references."""
    values, vectors = np.linalg.eigh(np.cov(refs))
    order = values.argsort()[::-1]
    basis = np.dot(vectors[:, order].T, refs)
    for k in range(len(basis)):
        basis[k] /= np.linalg.norm(basis[k])
    return basis[:truncate]


def subtract_psf(target, psfs, truncate: int):
    """KLIP on every integration of ``target`` (a CubeModel, changed in place) with the aligned ``psfs``."""
    nref = psfs.data.shape[0]
    refs = psfs.data.astype(np.float64).reshape(nref, -1)
    for k in range(nref):
        refs[k] -= np.mean(refs[k], dtype=np.float64)
    basis = kl_basis(refs, truncate)
    # the references' own residuals, whose spread is the error of a subtracted image
    residuals = np.empty_like(refs)
    for k in range(nref):
        residuals[k] = refs[k] - np.dot(basis.T, np.dot(refs[k], basis.T))
    spread = np.std(residuals, 0)
    shape = target.data.shape[1:]
    for i in range(target.data.shape[0]):
        image = target.data[i].astype(np.float64).reshape(-1)
        model = np.dot(basis.T, np.dot(image, basis.T))
        out = image - image.mean()
        out -= model
        target.data[i] = out.reshape(shape)
        target.err[i] = spread.reshape(shape)
    return target, len(basis)


@step("klip", "KlipStep", params=KlipParams, suffix="psfsub", input_class="CubeModel")
def klip(pair, refs, params: KlipParams):
    """Subtract the PSF, modelled from the aligned references, from each science integration."""
    target, kept = subtract_psf(pair.target, pair.psfs, params.truncate)
    log.info("KL transform truncation = %d (%d basis images used)", params.truncate, kept)
    report_qa(**{"KL images": kept})
    return target
