"""Concrete datamodel classes: science products and reference files.

Class names equal JWST's DATAMODL values, so that files we write open in
``stdatamodels`` as the same class and the other way round.
"""

from __future__ import annotations

from typing import Any

from .base import ArraySpec as A
from .base import DataModel, last2, same_shape

F4 = ("float32",)
U4 = ("uint32",)
U1 = ("uint8",)


def _first_int_plane(s):  # (nints, ngroups, ny, nx) -> (nints, ny, nx)
    return (s[0], s[2], s[3])


def _dq_def():
    return A("dq_def", "DQ_DEF", table=True)


# ---------------------------------------------------------------------------
# science models


class RampModel(DataModel):
    """A ramp: (nints, ngroups, ny, nx) in DN, with PIXELDQ and GROUPDQ."""

    arrays = (
        A("data", "SCI", F4, ndim=4, required=True),
        A("pixeldq", "PIXELDQ", U4, ndim=2, shape_of=last2),
        A("groupdq", "GROUPDQ", U1, ndim=4, shape_of=same_shape),
        A("err", "ERR", F4, ndim=4, shape_of=same_shape),
        A("zeroframe", "ZEROFRAME", F4, ndim=3),
        A("refout", "REFOUT", F4, ndim=4),
        A("average_dark_current", "AVDRKCUR", F4, ndim=2),
        A("group", "GROUP", table=True),
        A("int_times", "INT_TIMES", table=True),
    )


class Level1bModel(RampModel):
    """An uncalibrated exposure (``_uncal``) as downlinked: uint16 ramps."""

    arrays = (
        A("data", "SCI", ("uint16",), ndim=4, required=True),
        A("zeroframe", "ZEROFRAME", ("uint16",), ndim=3),
        A("refout", "REFOUT", ("uint16",), ndim=4),
        A("group", "GROUP", table=True),
        A("int_times", "INT_TIMES", table=True),
    )


class ImageModel(DataModel):
    """A 2-D image: rate, cal, i2d."""

    arrays = (
        # in the order jwst 3.0 writes them (rate, cal, i2d)
        A("data", "SCI", F4, ndim=2, required=True),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        A("area", "AREA", F4, ndim=2),
        A("con", "CON", ("int32",), ndim=3),
        A("wht", "WHT", F4, ndim=2),
        A("mask", "MASK", U4, ndim=2),  # WFSS bkg_subtract's background mask
        A("var_poisson", "VAR_POISSON", F4, ndim=2, shape_of=same_shape),
        A("var_rnoise", "VAR_RNOISE", F4, ndim=2, shape_of=same_shape),
        A("var_flat", "VAR_FLAT", F4, ndim=2, shape_of=same_shape),
        A("pathloss_point", "PATHLOSS_PS", F4, ndim=2),  # pathloss (MIRI LRS fixed slit)
        A("pathloss_uniform", "PATHLOSS_UN", F4, ndim=2),
        A("wavelength", "WAVELENGTH", F4, ndim=2),
        A("zeroframe", "ZEROFRAME", F4, ndim=2),
        A("int_times", "INT_TIMES", table=True),
        # Stage 3 mosaics: the input exposures' metadata, one row each (jwst's model blender)
        A("hdrtab", "HDRTAB", table=True),
    )


class CubeModel(DataModel):
    """A stack of 2-D images, one per integration: rateints, calints."""

    arrays = (
        # in the order jwst 3.0 writes them (rateints, calints)
        A("data", "SCI", F4, ndim=3, required=True),
        A("err", "ERR", F4, ndim=3, shape_of=same_shape),
        A("dq", "DQ", U4, ndim=3, shape_of=same_shape),
        A("zeroframe", "ZEROFRAME", F4, ndim=3),
        A("area", "AREA", F4, ndim=2),
        A("wavelength", "WAVELENGTH", F4, ndim=2),
        A("int_times", "INT_TIMES", table=True),  # before the variances, as stdatamodels' cube schema has it
        A("var_poisson", "VAR_POISSON", F4, ndim=3, shape_of=same_shape),
        A("var_rnoise", "VAR_RNOISE", F4, ndim=3, shape_of=same_shape),
        A("var_flat", "VAR_FLAT", F4, ndim=3, shape_of=same_shape),
    )


class RampFitOutputModel(DataModel):
    """Optional ramp-fitting results (``_fitopt``): per-segment slopes, intercepts, weights, CR magnitudes."""

    arrays = (
        A("slope", "SLOPE", F4, ndim=4, required=True),
        A("sigslope", "SIGSLOPE", F4, ndim=4),
        A("var_poisson", "VAR_POISSON", F4, ndim=4),
        A("var_rnoise", "VAR_RNOISE", F4, ndim=4),
        A("yint", "YINT", F4, ndim=4),
        A("sigyint", "SIGYINT", F4, ndim=4),
        A("pedestal", "PEDESTAL", F4, ndim=3),
        A("weights", "WEIGHTS", F4, ndim=4),
        A("crmag", "CRMAG", F4, ndim=4),
    )


def _guider_tables():
    # stdatamodels' guider schemas: the extension names are written upper case
    return (
        A("planned_star_table", "PLANNED REFERENCE STARS", table=True),
        A("flight_star_table", "FLIGHT REFERENCE STARS", table=True),
        A("pointing_table", "POINTING", table=True),
        A("centroid_table", "FGS CENTROID PACKET", table=True),
        A("track_sub_table", "TRACK SUBARRAY TABLE", table=True),
    )


class GuiderRawModel(DataModel):
    """An FGS guider-mode ramp (nints, ngroups, ny, nx), with one 2-D DQ array (stdatamodels' GuiderRawModel)."""

    arrays = (
        A("data", "SCI", ("float32", "uint16"), ndim=4, required=True),
        A("err", "ERR", F4, ndim=4, shape_of=same_shape),
        A("dq", "DQ", U4, ndim=2, shape_of=last2),
        *_guider_tables(),
    )


class GuiderCalModel(DataModel):
    """The product of calwebb_guider: one count-rate image per integration, a 2-D DQ."""

    arrays = (
        A("data", "SCI", F4, ndim=3, required=True),
        A("err", "ERR", F4, ndim=3, shape_of=same_shape),
        A("dq", "DQ", U4, ndim=2, shape_of=last2),
        *_guider_tables(),
    )


class SegmentationMapModel(DataModel):
    """A segmentation map (``_segm``): the source label of each pixel, 0 for none."""

    arrays = (A("data", "SCI", U4, ndim=2, required=True),)


# ---------------------------------------------------------------------------
# reference-file models


class ReferenceFileModel(DataModel):
    """Base for CRDS reference files: REFTYPE, USEAFTER, PEDIGREE, DESCRIP, AUTHOR."""

    reftype: str = ""
    # stdatamodels' referencefile schema: TELESCOP defaults to JWST
    keyword_defaults = {"TELESCOP": "JWST"}
    # stdatamodels writes reference files without the ASDF metadata extension (all their
    # metadata is in FITS keywords and tables); so does webbflow
    asdf_extension = False


class MaskModel(ReferenceFileModel):
    reftype = "mask"
    arrays = (A("dq", "DQ", U4, ndim=2, required=True), _dq_def())


class GainModel(ReferenceFileModel):
    reftype = "gain"
    arrays = (A("data", "SCI", F4, ndim=2, required=True),)


class ReadnoiseModel(ReferenceFileModel):
    reftype = "readnoise"
    arrays = (A("data", "SCI", F4, ndim=2, required=True),)


class SuperBiasModel(ReferenceFileModel):
    reftype = "superbias"
    arrays = (
        A("data", "SCI", F4, ndim=2, required=True),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        _dq_def(),
    )


class SaturationModel(ReferenceFileModel):
    reftype = "saturation"
    arrays = (A("data", "SCI", F4, ndim=2, required=True), A("dq", "DQ", U4, ndim=2, shape_of=same_shape), _dq_def())


class LinearityModel(ReferenceFileModel):
    reftype = "linearity"
    arrays = (
        A("coeffs", "COEFFS", F4, ndim=3, required=True),
        A("inv_coeffs", "INV_COEFFS", F4, ndim=3),
        A("dq", "DQ", U4, ndim=2, shape_of=last2),
        _dq_def(),
    )


class DarkModel(ReferenceFileModel):
    """NIR dark: SCI (ngroups, ny, nx), 2-D DQ."""

    reftype = "dark"
    arrays = (
        A("data", "SCI", F4, ndim=3, required=True),
        A("dq", "DQ", U4, ndim=2, shape_of=last2),
        A("err", "ERR", F4, ndim=3, shape_of=same_shape),
        A("average_dark_current", "AVDRKCUR", F4, ndim=2),
        _dq_def(),
    )


class DarkMIRIModel(ReferenceFileModel):
    """MIRI dark: SCI (nints, ngroups, ny, nx), DQ (nints, 1, ny, nx)."""

    reftype = "dark"
    arrays = (
        A("data", "SCI", F4, ndim=4, required=True),
        A("dq", "DQ", U4, ndim=(2, 4)),
        A("err", "ERR", F4, ndim=4, shape_of=same_shape),
        A("average_dark_current", "AVDRKCUR", F4, ndim=2),
        _dq_def(),
    )


class FlatModel(ReferenceFileModel):
    reftype = "flat"
    arrays = (
        A("data", "SCI", F4, ndim=2, required=True),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        _dq_def(),
    )


class IPCModel(ReferenceFileModel):
    reftype = "ipc"
    arrays = (A("data", "SCI", F4, ndim=(2, 4), required=True),)


# stdatamodels' pixelarea and *_photom reference schemas keep the nominal pixel area in the
# primary header (science products keep it in SCI)
_PIXAR_IN_PRIMARY = {"PIXAR_SR": "PRIMARY", "PIXAR_A2": "PRIMARY"}


class PixelAreaModel(ReferenceFileModel):
    reftype = "area"
    keyword_hdus = _PIXAR_IN_PRIMARY
    arrays = (A("data", "SCI", F4, ndim=2, required=True), A("dq", "DQ", U4, ndim=2), A("err", "ERR", F4, ndim=2), _dq_def())


class ResetModel(ReferenceFileModel):
    reftype = "reset"
    arrays = (
        A("data", "SCI", F4, ndim=4, required=True),
        A("dq", "DQ", U4, ndim=2),
        A("err", "ERR", F4, ndim=4, shape_of=same_shape),
        _dq_def(),
    )


class RSCDModel(ReferenceFileModel):
    """MIRI RSCD: a table of groups to flag per (subarray, readpatt) for the first and later integrations."""

    reftype = "rscd"
    arrays = (A("rscd_group_skip_table", "RSCD_GROUP_SKIP", table=True, required=True),)


class PersistenceSatModel(ReferenceFileModel):
    reftype = "persat"
    arrays = (A("data", "SCI", F4, ndim=2, required=True), A("dq", "DQ", U4, ndim=2), _dq_def())


class TrapDensityModel(ReferenceFileModel):
    reftype = "trapdensity"
    arrays = (A("data", "SCI", F4, ndim=2, required=True), A("dq", "DQ", U4, ndim=2), _dq_def())


class PictureFrameModel(ReferenceFileModel):
    """NIRSpec picture-frame (thermal) correction image, a rate in DN/s."""

    reftype = "pictureframe"
    arrays = (A("data", "SCI", F4, ndim=2, required=True),)


class TrapParsModel(ReferenceFileModel):
    reftype = "trappars"
    arrays = (A("trappars_table", "TRAPPARS", table=True, required=True),)


class IRS2Model(ReferenceFileModel):
    """NIRSpec IRS2 refpix reference: alpha/beta coefficients per output (real/imaginary pairs), bad-pixel table."""

    reftype = "refpix"
    arrays = (A("irs2_table", "IRS2", table=True, required=True), A("dq_table", "DQ", table=True))


class PhotomModel(ReferenceFileModel):
    """Imaging photometric calibration: a PHOTOM table of (filter, pupil, photmjsr, uncertainty)."""

    reftype = "photom"
    keyword_hdus = _PIXAR_IN_PRIMARY
    # optional time-dependence coefficients, one row per PHOTOM row (jwst multiplies every present kind)
    arrays = (
        A("phot_table", "PHOTOM", table=True, required=True),
        A("timecoeff_linear", "TIMECOEFF_LINEAR", table=True),
        A("timecoeff_exponential", "TIMECOEFF_EXPONENTIAL", table=True),
        A("timecoeff_powerlaw", "TIMECOEFF_POWERLAW", table=True),
    )


class NrcImgPhotomModel(PhotomModel):
    pass


class NisImgPhotomModel(PhotomModel):
    pass


class MirImgPhotomModel(PhotomModel):
    pass


class FgsImgPhotomModel(PhotomModel):
    pass


class ApcorrModel(ReferenceFileModel):
    reftype = "apcorr"
    arrays = (A("apcorr_table", "APCORR", table=True, required=True),)


class NrcImgApcorrModel(ApcorrModel):
    pass


class NisImgApcorrModel(ApcorrModel):
    pass


class MirImgApcorrModel(ApcorrModel):
    pass


class FgsImgApcorrModel(ApcorrModel):
    pass


class ABVegaOffsetModel(ReferenceFileModel):
    reftype = "abvegaoffset"
    arrays = (A("abvega_offset", "ABVEGA_OFFSET", table=True, required=True),)


class _AsdfTreeModel(ReferenceFileModel):
    """Reference files stored as ASDF whose content is a tree, not arrays."""

    def __getattr__(self, name):
        extra = object.__getattribute__(self, "_asdf_extra")
        if name in extra:
            return extra[name]
        return super().__getattr__(name)

    def set_tree(self, **items: Any) -> None:
        self._asdf_extra.update(items)


class DistortionModel(_AsdfTreeModel):
    """Detector-to-V2V3 transform (``model``), an astropy modelling compound model."""

    reftype = "distortion"


class FilteroffsetModel(_AsdfTreeModel):
    """Per-filter pointing offsets (``filters``: a list of dicts)."""

    reftype = "filteroffset"


class SIRSKernelModel(_AsdfTreeModel):
    """SIRS refpix kernels: per detector (``nrca1``...), Fourier coefficients ``gamma`` and ``zeta``."""

    reftype = "sirskernel"


class EmiModel(_AsdfTreeModel):
    """MIRI EMI correction (ASDF): ``frequencies`` {name: {frequency, phase_amplitudes}} and
    ``subarray_cases`` {subarray: {rowclocks, frameclocks, freqs: {FAST: [...], SLOW: {detector: [...]}}}}."""

    reftype = "emicorr"


class DrizParsModel(ReferenceFileModel):
    reftype = "drizpars"
    arrays = (A("data", "DRIZPARS", table=True, required=True),)


class PsfMaskModel(ReferenceFileModel):
    """A coronagraphic PSF mask (align_refs' weights): SCI float32, 1 where pixels count, 0 where not."""

    reftype = "psfmask"
    arrays = (A("data", "SCI", F4, ndim=2, required=True),)


REFERENCE_MODELS: dict[str, type[ReferenceFileModel]] = {
    "mask": MaskModel, "gain": GainModel, "readnoise": ReadnoiseModel, "superbias": SuperBiasModel,
    "saturation": SaturationModel, "linearity": LinearityModel, "dark": DarkModel, "flat": FlatModel,
    "ipc": IPCModel, "area": PixelAreaModel, "reset": ResetModel, "rscd": RSCDModel,
    "persat": PersistenceSatModel, "trapdensity": TrapDensityModel, "trappars": TrapParsModel,
    "photom": PhotomModel, "distortion": DistortionModel, "filteroffset": FilteroffsetModel,
    "apcorr": ApcorrModel, "abvegaoffset": ABVegaOffsetModel, "drizpars": DrizParsModel,
    "emicorr": EmiModel, "pictureframe": PictureFrameModel,
    "sirskernel": SIRSKernelModel,
    "refpix": IRS2Model,
}
REFERENCE_MODELS["psfmask"] = PsfMaskModel
