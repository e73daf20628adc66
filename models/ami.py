"""NIRISS AMI models: the OIFITS products of ami_analyze/ami_normalize, the LG fit images, and the
``nrm`` and ``throughput`` references.

Keywords these models have beyond the common metadata (the mask's hole coordinates, OIFITS'
ARRNAME/INSNAME/OI_REVN, ...) are kept as header cards, as for every model: ``keyword`` and
``set_keyword`` read and write them in the HDU stdatamodels' schemas put them.
"""

from __future__ import annotations

from astropy.io import fits

from .base import ArraySpec as A
from .base import DataModel
from .classes import REFERENCE_MODELS, ReferenceFileModel

F4 = ("float32",)

# the OIFITS tables, in the order jwst 3.0 writes them
OI_TABLES = (
    ("array", "OI_ARRAY"), ("target", "OI_TARGET"), ("t3", "OI_T3"), ("vis", "OI_VIS"),
    ("vis2", "OI_VIS2"), ("q4", "OI_Q4"), ("wavelength", "OI_WAVELENGTH"),
)


class _Keywords:
    def keyword(self, key: str, hdu: str = "PRIMARY", default=None):
        h = self._headers.get(hdu)
        return h[key] if h is not None and key in h else default

    def set_keyword(self, key: str, value, hdu: str = "PRIMARY", comment: str | None = None) -> None:
        h = self._headers.setdefault(hdu, fits.Header())
        h[key] = (value, comment) if comment else value


class AmiOIModel(_Keywords, DataModel):
    """Interferometric observables in OIFITS 2 tables (``_ami-oi``, ``_amimulti-oi``, ``_aminorm-oi``)."""

    arrays = tuple(A(name, ext, table=True, required=name in ("array", "target", "wavelength")) for name, ext in OI_TABLES)


class AmiLgFitModel(_Keywords, DataModel):
    """The centred data, the best-fit LG model and the residuals per integration (``_amilg``)."""

    arrays = (
        A("centered_image", "CTRD", F4, ndim=3, required=True),
        A("norm_centered_image", "N_CTRD", F4, ndim=3),
        A("fit_image", "FIT", F4, ndim=3),
        A("norm_fit_image", "N_FIT", F4, ndim=3),
        A("resid_image", "RESID", F4, ndim=3),
        A("norm_resid_image", "N_RESID", F4, ndim=3),
        A("solns_table", "SOLNS", table=True),
    )


_NRM_KEYS = {"diameter": "DIAM", "flat_to_flat": "F2F", "pupil_circumscribed": "PUPL_CRC",
             **{f"{c}_a{i}": f"NRM_{c.upper()}_A{i}" for i in range(1, 8) for c in ("x", "y")}}


class NRMModel(_Keywords, ReferenceFileModel):
    """The non-redundant mask reference (``nrm``): the pupil mask image and the holes' centres (m)."""

    reftype = "nrm"
    arrays = (A("nrm", "NRM", F4, ndim=2, required=True),)

    def __getattr__(self, name):
        if name in _NRM_KEYS:
            return self.keyword(_NRM_KEYS[name])
        return DataModel.__getattr__(self, name)


class ThroughputModel(ReferenceFileModel):
    """A filter's throughput (``throughput``): wavelength (Angstrom) and throughput columns."""

    reftype = "throughput"
    arrays = (A("filter_table", "THROUGHPUT", table=True, required=True),)


REFERENCE_MODELS.update({"nrm": NRMModel, "throughput": ThroughputModel})
NRM_KEYWORDS = _NRM_KEYS
