"""Typed JWST datamodels with faithful FITS/ASDF I/O.

``webbflow.models.open(path_or_model)`` returns the right model class for a
file; ``model.save(path)`` writes it.  Knows nothing of Prefect, CRDS or steps.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

from ..errors import InputFileError
from . import dqflags
from .base import ArraySpec, DataModel
from .classes import *  # noqa: F403
from .classes import (
    REFERENCE_MODELS,
    CubeModel,
    DarkMIRIModel,
    DarkModel,
    ImageModel,
    Level1bModel,
    RampModel,
    ReferenceFileModel,
)
from .meta import Meta
from .spectral import IFUCubeModel, IFUImageModel, MultiExposureModel, MultiSlitModel, SlitModel
from .spectra import *  # noqa: F403  (registered below with the other classes)
from .spectra import SPECTRUM_MODELS, Spectrum
from .ami import AmiLgFitModel, AmiOIModel, NRMModel, ThroughputModel  # noqa: F401  (NIRISS AMI)
from .grism_refs import NIRCAMGrismModel, NIRISSGrismModel, WavelengthrangeModel, WfssBkgModel  # noqa: F401
from .nirspec_flat_refs import BarshadowModel, NirspecFlatModel, NirspecQuadFlatModel  # noqa: F401
from .nirspec_refs import CameraModel, CollimatorModel, DisperserModel, FOREModel, FPAModel, MSAModel, OTEModel  # noqa: F401
from .nirspec_refs import ChromCorrModel, IFUFOREModel, IFUPostModel, IFUSlicerModel  # noqa: F401
from .mrs_refs import DistortionMRSModel, FringeFreqModel, FringeModel, MirMrsPhotomModel, MirMrsXArtCorrModel, RegionsModel, SpecwcsModel  # noqa: F401,E501
from .soss_refs import NisSossPhotomModel, PastasossModel, SpecKernelModel, SpecProfileModel  # noqa: F401
from .soss_products import SossExtractModel, SossWaveGridModel  # noqa: F401
from .mrs_extract_refs import Extract1dIFUModel, MirMrsApcorrModel, MirMrsPtCorrModel, NrsIfuApcorrModel  # noqa: F401
from .nirspec_spec2_refs import NirspecIfuAreaModel, NirspecMosAreaModel, NirspecSlitAreaModel, WaveCorrModel  # noqa: F401

# DATAMODL value -> class
REGISTRY: dict[str, type[DataModel]] = {}


def _register(cls):
    REGISTRY[cls.model_type or cls.__name__] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(DataModel)
REGISTRY.pop("DataModel", None)
REGISTRY.pop("_AsdfTreeModel", None)
REGISTRY.pop("MultiSpecBase", None)
# JWST spells a few of these differently from Python class names
REGISTRY["NRCImgPhotomModel"] = REGISTRY["NrcImgPhotomModel"]
REGISTRY["NisImgPhotomModel"] = REGISTRY["NisImgPhotomModel"]
REGISTRY["MirImgPhotomModel"] = REGISTRY["MirImgPhotomModel"]
REGISTRY["FgsImgPhotomModel"] = REGISTRY["FgsImgPhotomModel"]

_SLIT_EXP_TYPES = {"NRS_FIXEDSLIT", "NRS_MSASPEC", "NRS_BRIGHTOBJ", "MIR_LRS-FIXEDSLIT", "NRS_LAMP"}


def class_for_file(path: Path) -> type[DataModel]:
    """Pick the model class for a file: DATAMODL first, then REFTYPE, EXP_TYPE and array shapes."""
    from .io import _open_fits, check_readable

    check_readable(path)
    if path.suffix.lower() == ".asdf":
        return _class_for_asdf(path)
    name = _datamodl(path)  # the primary header alone (a WFSS cal file has thousands of extensions)
    if name is not None:
        return REGISTRY[name]
    with _open_fits(path) as hdul:
        h0 = hdul[0].header
        name = h0.get("DATAMODL")
        if isinstance(name, str) and name in REGISTRY:
            return REGISTRY[name]
        reftype = str(h0.get("REFTYPE", "")).strip().lower()
        names = [h.name for h in hdul]
        sci = hdul["SCI"].header if "SCI" in names else None
        ndim = sci.get("NAXIS", 0) if sci is not None else 0
        if reftype:
            if reftype == "dark" and ndim == 4:
                return DarkMIRIModel
            cls = REFERENCE_MODELS.get(reftype)
            if cls is not None:
                return cls
            return ReferenceFileModel
        exp_type = str(h0.get("EXP_TYPE", "")).upper()
        bitpix = sci.get("BITPIX") if sci is not None else None
        if ndim == 4:
            return Level1bModel if bitpix in (8, 16) and "GROUPDQ" not in names else RampModel
        if names.count("SCI") > 1:
            return MultiSlitModel
        if ndim == 3:
            return IFUCubeModel if "WMAP" in names else CubeModel
        if ndim == 2:
            if exp_type in _SLIT_EXP_TYPES and "WAVELENGTH" in names:
                return SlitModel
            return ImageModel
    raise InputFileError(path, "cannot tell which datamodel this file holds (no DATAMODL keyword and no SCI array)")


def _datamodl(path: Path) -> str | None:
    """The primary header's DATAMODL when it names a class we have, read without the other HDUs."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            name = hdul[0].header.get("DATAMODL")
    except Exception:  # noqa: BLE001 - the full read names the problem
        return None
    return name if isinstance(name, str) and name in REGISTRY else None


def _class_for_asdf(path: Path) -> type[DataModel]:
    import asdf.util

    try:
        # the YAML tree alone, its tags not converted: the transforms are built once, when read
        meta = (asdf.util.load_yaml(path) or {}).get("meta", {}) or {}
        name = meta.get("model_type")
        reftype = str(meta.get("reftype", "")).lower()
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(path, f"not a readable ASDF file ({exc})") from None
    if name in REGISTRY:
        return REGISTRY[name]
    if reftype in REFERENCE_MODELS:
        return REFERENCE_MODELS[reftype]
    if reftype:  # a reference type with no class of its own: its tree as it is (FITS ones: ReferenceFileModel)
        from .classes import _AsdfTreeModel

        return _AsdfTreeModel
    raise InputFileError(path, "cannot tell which datamodel this ASDF file holds (no meta.model_type)")


def open(init, model_class: type[DataModel] | None = None, *, arrays=None, rows=None) -> DataModel:  # noqa: A001 - mirrors jwst's API
    """Open a file (or pass through a model) as the right datamodel class.

    ``model_class`` forces a class, converting an in-memory model if needed.
    ``arrays`` (names such as ``("data", "dq")``) reads only those arrays of
    a FITS file: the others are neither read nor kept, required ones
    included (for inputs that are never saved as they are, such as
    references, or an exposure read one integration at a time).
    ``rows`` = (y0, y1) reads only those rows of each image array (every
    plane) of a FITS file, when all of them have those rows; the model's
    ``_rows`` then says so (else it is None and the arrays are whole).  For
    references of which a step reads a band of rows; a class that reads its
    file its own way reads it whole.
    """
    if isinstance(init, DataModel):
        if model_class is None or isinstance(init, model_class):
            return init
        return model_class(init)
    if isinstance(init, (str, os.PathLike)):
        path = Path(init)
        cls = model_class or class_for_file(path)
        if rows is not None and cls._read is not DataModel._read:
            rows = None
        if arrays is None and rows is None:
            return cls(path)
        from .io import read_into

        m = cls()
        m.meta.model_type = None
        read_into(m, path, only=None if arrays is None else set(arrays), rows=rows)
        return m
    raise TypeError(f"cannot open {type(init).__name__}; give a path or a datamodel")


__all__ = [
    "open", "DataModel", "ArraySpec", "Meta", "dqflags", "REGISTRY", "class_for_file",
    "RampModel", "Level1bModel", "ImageModel", "CubeModel", "SlitModel", "Spectrum",
    "MultiSlitModel", "MultiExposureModel", "IFUImageModel", "IFUCubeModel",
]
__all__ += [n for n in REGISTRY if n in globals()]

_ = builtins  # keep the builtin open reachable as builtins.open inside this package
