"""Spectroscopic datamodels: slits, multi-slit exposures, IFU images and IFU cubes.

Same FITS layout and ASDF tree as jwst 3.0, so that a file written here opens
in ``stdatamodels`` as the same class, and real jwst files open here.

Public API
----------
``SlitModel``
    One 2-D (or 3-D, per integration) cutout.  Arrays: ``data`` (SCI), ``dq``,
    ``err``, ``wavelength``, ``barshadow``, ``area``, ``wht``, ``con``,
    ``trace_model``, ``var_poisson``/``var_rnoise``/``var_flat``,
    ``flatfield_point``/``flatfield_uniform``, ``pathloss_point``/
    ``pathloss_uniform`` (PATHLOSS_PS/UN), ``photom_point``/``photom_uniform``,
    ``int_times``.  Metadata: ``.meta`` as for every model (``.meta.wcs`` is
    the slit's gwcs WCS).  Slit attributes are plain attributes named as in
    jwst (``name``, ``xstart``, ``xsize``, ``ystart``, ``ysize``,
    ``slitlet_id``, ``source_id``, ``source_name``, ``shutter_state``,
    ``source_xpos``, ``source_ypos``, ...; see ``SLIT_ATTRIBUTES``).  They
    live at the root of the ASDF tree and, where jwst gives them a keyword,
    in the SCI header (SLTNAME, SLTSTRT1, ...).  An unset attribute is None.

``MultiSlitModel``
    ``.meta`` (the exposure's metadata, primary header) and ``.slits``, a
    list of ``SlitModel``.  On disk slit *i* is the extensions SCI, DQ, ERR,
    ... with ``EXTVER = i + 1`` and ``slits[i]`` of the ASDF tree holds its
    attributes and its own ``meta`` (wcs, wcsinfo, photometry, ...).
    ``MultiSlitModel(slit_model)`` wraps one slit; ``MultiSlitModel()`` then
    ``.slits.append(...)`` builds one.

``IFUImageModel``
    A 2-D IFU/MRS calibrated image (SCI, DQ, ERR, AREA, REGIONS, WAVELENGTH,
    PATHLOSS_PS/UN, variances), WCS at ``.meta.wcs``.

``IFUCubeModel``
    An s3d cube: SCI, DQ, ERR, WMAP (``weightmap``), all (nwave, ny, nx), and
    the WCS-TABLE (``wavetable``) when the cube's wavelengths are tabulated.

The WCS transforms these files use (NIRSpec, MIRI, grism) are
``stdatamodels.jwst.transforms`` classes; importing this module makes sure
their ASDF converters are registered before a tree is read or written.
"""

from __future__ import annotations

import copy as _copy
from numbers import Real
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import ModelValidationError, a_an
from .base import ArraySpec as A
from .base import DataModel, _coerce_for, _read_image, _strip_links, same_shape
from .meta import KEYWORD_FIELDS, Meta, get_path

try:  # the one runtime import allowed from stdatamodels (DESIGN.md §8): the jwst transform classes
    import stdatamodels.jwst.transforms  # noqa: F401  (registers their ASDF converters)
except ImportError:  # pragma: no cover - stdatamodels is installed with crds' JWST plug-in
    pass

F4 = ("float32",)
U4 = ("uint32",)
I4 = ("int32",)

# (attribute, FITS keyword in SCI or None, python type): jwst's slitmeta schema
SLIT_ATTRIBUTES: tuple[tuple[str, str | None, type], ...] = (
    ("name", "SLTNAME", str),
    ("xstart", "SLTSTRT1", int),
    ("xsize", "SLTSIZE1", int),
    ("ystart", "SLTSTRT2", int),
    ("ysize", "SLTSIZE2", int),
    ("slitlet_id", "SLITID", int),
    ("shutter_id", "SHUTTRID", int),
    ("source_id", "SOURCEID", int),
    ("source_name", "SRCNAME", str),
    ("source_alias", "SRCALIAS", str),
    ("stellarity", "STLARITY", float),
    ("source_type", "SRCTYPE", str),
    ("ta_xpos", "TA_XPOS", float),
    ("ta_ypos", "TA_YPOS", float),
    ("source_xpos", "SRCXPOS", float),
    ("source_ypos", "SRCYPOS", Real),  # a schema "number": int or float as set (TSGRISM's is the int 34)
    ("shutter_state", "SHUTSTA", str),
    ("quadrant", "MSAQUAD", int),
    ("source_ra", "SRCRA", float),
    ("source_dec", "SRCDEC", float),
    ("slit_xscale", "SLTXSCL", float),
    ("slit_yscale", "SLTYSCL", float),
    ("wavelength_corrected", "WAVECOR", bool),
    ("pathloss_correction_type", "PTHLOSS", str),
    ("barshadow_corrected", "BARSHDW", bool),
    # tree-only attributes jwst sets on slits
    ("is_extended", None, bool),
    ("dither_position", None, int),
    ("slit_ymin", None, float),
    ("slit_ymax", None, float),
    ("xcen", None, int),
    ("ycen", None, int),
    ("yoffset", None, float),
    ("slit_index", None, int),
    ("src_index", None, int),
    ("is_background", None, bool),
    ("prof_sigma", None, float),
    ("bkg_index", None, list),
    ("skip", None, list),
)
_SLIT_ATTR_NAMES = frozenset(a for a, _k, _t in SLIT_ATTRIBUTES)


def _slit_arrays() -> tuple[A, ...]:
    # order = jwst's schema order, which is the order stdatamodels writes extensions in
    return (
        A("data", "SCI", F4, ndim=(2, 3), required=True),
        A("dq", "DQ", U4, ndim=(2, 3), shape_of=same_shape),
        A("err", "ERR", F4, ndim=(2, 3), shape_of=same_shape),
        A("wavelength", "WAVELENGTH", F4, ndim=2),
        A("barshadow", "BARSHADOW", F4, ndim=2),
        A("area", "AREA", F4, ndim=(2, 3)),
        A("wht", "WHT", F4, ndim=(2, 3)),
        A("con", "CON", I4, ndim=(2, 3)),
        A("trace_model", "TRACEMODEL", F4, ndim=2),
        A("var_poisson", "VAR_POISSON", F4, ndim=(2, 3), shape_of=same_shape),
        A("var_rnoise", "VAR_RNOISE", F4, ndim=(2, 3), shape_of=same_shape),
        A("var_flat", "VAR_FLAT", F4, ndim=(2, 3), shape_of=same_shape),
        A("flatfield_point", "FLATFIELD_PS", F4, ndim=(2, 3)),
        A("flatfield_uniform", "FLATFIELD_UN", F4, ndim=(2, 3)),
        A("pathloss_point", "PATHLOSS_PS", F4, ndim=(2, 3)),
        A("pathloss_uniform", "PATHLOSS_UN", F4, ndim=(2, 3)),
        A("photom_point", "PHOTOM_PS", F4, ndim=(2, 3)),
        A("photom_uniform", "PHOTOM_UN", F4, ndim=(2, 3)),
    )


def _typed(value, typ):
    if value is None or isinstance(value, fits.card.Undefined):
        return None
    if typ is bool:
        if isinstance(value, str):
            return value.strip().upper() in ("T", "TRUE")
        return bool(value)
    if typ is Real:  # kept as given, as stdatamodels writes a "number"
        return value.item() if isinstance(value, np.generic) else value
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if typ is float and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class SlitModel(DataModel):
    """A 2-D spectrum cut out for one slit, with its slit attributes (see the module docstring)."""

    # HDRTAB: a resampled slit of several exposures (Stage 3), their metadata one row each (jwst's model blender)
    arrays = _slit_arrays() + (A("int_times", "INT_TIMES", table=True), A("hdrtab", "HDRTAB", table=True))

    # slit attributes: stored in the root of the ASDF tree (self._asdf_extra)
    def __getattr__(self, name):
        if name in _SLIT_ATTR_NAMES:
            return object.__getattribute__(self, "_asdf_extra").get(name)
        return super().__getattr__(name)

    def __setattr__(self, name, value):
        if name in _SLIT_ATTR_NAMES:
            if value is None:
                self._asdf_extra.pop(name, None)
            else:
                self._asdf_extra[name] = value
            return
        super().__setattr__(name, value)

    def slit_attributes(self) -> dict:
        """The set slit attributes, ``{"name": "138", "xstart": 1, ...}``."""
        return {a: self._asdf_extra[a] for a, _k, _t in SLIT_ATTRIBUTES if self._asdf_extra.get(a) is not None}

    def _read(self, path: Path) -> None:
        super()._read(path)
        self._attributes_from_header(self._headers.get("SCI"))

    def _attributes_from_header(self, header) -> None:
        """Fill slit attributes that the ASDF tree lacks from the SCI header (FITS wins, as for meta)."""
        if header is None:
            return
        for attr, key, typ in SLIT_ATTRIBUTES:
            if key is not None and key in header:
                v = _typed(header[key], typ)
                if v is not None:
                    self._asdf_extra[attr] = v

    def _attributes_to_header(self, header: fits.Header) -> None:
        for attr, key, typ in SLIT_ATTRIBUTES:
            if key is None:
                continue
            v = self._asdf_extra.get(attr)
            if v is None:
                if key in header:
                    del header[key]
                continue
            header[key] = _typed(v, typ)

    def _after_keywords(self, headers: dict) -> None:
        """The slit's source type is written after the metadata's SRCTYPE (``meta.target.source_type``),
        so it wins when it is set, as stdatamodels writes a slit (its attributes come last)."""
        if self._asdf_extra.get("source_type") is not None and "SCI" in headers:
            headers["SCI"]["SRCTYPE"] = str(self._asdf_extra["source_type"])

    def save(self, path, overwrite: bool = True) -> str:
        self._attributes_to_header(self._headers.setdefault("SCI", fits.Header()))
        for spec in self.arrays:  # stdatamodels numbers a slit's extensions: EXTVER = 1
            if spec.name in self._arrays and not spec.table:
                self._headers.setdefault(spec.extname, fits.Header()).setdefault("EXTVER", 1)
        return super().save(path, overwrite=overwrite)

    def _convert_from(self, other: DataModel) -> None:
        super()._convert_from(other)
        if not isinstance(other, SlitModel):
            for a in _SLIT_ATTR_NAMES:
                self._asdf_extra.pop(a, None)


def _forget_parsed(hdu) -> None:
    """Let go of astropy's parsed header and loaded data of an HDU that has been read (its cards
    are shared by the model's cleaned header, its arrays read apart): a cal file of hundreds of
    cutouts has thousands of extensions, and astropy's headers of all of them were held until the
    file was closed, on top of the exposure's arrays (opening one of 600 cutouts peaked 22 MiB higher)."""
    if hdu is not None:
        hdu.__dict__.pop("_header", None)
        hdu.__dict__.pop("data", None)


class MultiSlitModel(DataModel):
    """An exposure's slits: ``.meta`` and ``.slits`` (a list of SlitModel); see the module docstring."""

    arrays = ()
    slit_arrays = _slit_arrays()
    _list_key = "slits"  # where the ASDF tree lists the slits

    def __init__(self, init=None, **kw):
        object.__setattr__(self, "slits", [])
        if isinstance(init, SlitModel):
            super().__init__(None, **kw)
            self.meta = init.meta.model_copy(deep=True)
            self.meta.model_type = self.model_type or type(self).__name__
            self.meta.wcs = None
            if "PRIMARY" in init._headers:  # the exposure's keywords that meta does not model
                self._headers["PRIMARY"] = init._headers["PRIMARY"].copy()
            self.slits.append(init)
            return
        if isinstance(init, (tuple, np.ndarray)):
            raise TypeError("a MultiSlitModel is made empty, from a file, or from one SlitModel")
        super().__init__(init, **kw)

    @property
    def shape(self):
        return None

    def copy(self, share_arrays: bool = False) -> "MultiSlitModel":
        new = super().copy(share_arrays=share_arrays)
        object.__setattr__(new, "slits", [s.copy(share_arrays=share_arrays) for s in self.slits])
        return new

    def _convert_from(self, other: DataModel) -> None:
        super()._convert_from(other)
        if isinstance(other, MultiSlitModel):
            object.__setattr__(self, "slits", [s.copy() for s in other.slits])

    def validate(self, path=None, skipped=()) -> None:
        where = path or self._path or "<MultiSlitModel>"
        for i, s in enumerate(self.slits):
            if not isinstance(s, SlitModel):
                raise ModelValidationError(where, f"slit {i} is {a_an(type(s).__name__)}, not a SlitModel")
            s.validate(f"{where} (slit {i + 1}, {s.name})", skipped)

    # -- reading -----------------------------------------------------------
    def _read(self, path: Path) -> None:
        from .io import _clean_header, _detached, _open_fits, check_readable, read_asdf_hdu

        check_readable(path)
        self._path = str(path)
        hdul = _open_fits(path)
        tree: dict = {}
        per_slit: dict[int, SlitModel] = {}
        with hdul, builtins_open(path) as raw:
            last = None
            for i, hdu in enumerate(hdul):
                _forget_parsed(last)
                last = hdu
                name = "PRIMARY" if i == 0 else (hdu.name or f"HDU{i}")
                if name == "ASDF":
                    tree = read_asdf_hdu(hdu, path)
                    continue
                if i == 0:
                    self._headers["PRIMARY"] = _clean_header(hdu.header)
                    self._hdu_order.append("PRIMARY")
                    continue
                spec = next((s for s in self.slit_arrays if s.extname == name), None)
                if spec is None:
                    self._hdu_order.append(name)
                    self._extra_hdus.append(_detached(hdu, path))
                    continue
                ver = int(hdu.header.get("EXTVER", 1))
                if ver < 1:
                    raise ModelValidationError(path, f"extension {name} has EXTVER {ver}; slits are numbered from 1")
                slit = per_slit.get(ver)
                if slit is None:
                    slit = per_slit[ver] = SlitModel()
                slit._hdu_order.append(name)
                slit._headers[name] = _clean_header(hdu.header)
                if not isinstance(hdu, fits.ImageHDU):
                    raise ModelValidationError(path, f"extension {name},{ver} should be an image, found a table")
                # where the data start (HDUList.fileinfo re-serialises every header on each call:
                # quadratic in the number of extensions, minutes for a WFSS exposure of hundreds of cutouts)
                arr = _read_image(raw, {"datLoc": hdu._data_offset}, hdu.header, path)
                if arr is not None:
                    slit._arrays[spec.name] = arr
            _forget_parsed(last)
        del hdul
        handle = tree.pop("__asdf_handle__", None)
        self._asdf_handle = handle
        tree = _strip_links(tree)
        meta_tree = tree.pop("meta", {}) or {}
        slit_trees = tree.pop(self._list_key, []) or []
        tree.pop("extra_fits", None)
        self._asdf_extra = tree
        if per_slit and sorted(per_slit) != list(range(1, len(per_slit) + 1)):
            raise ModelValidationError(path, f"slit extensions are numbered {sorted(per_slit)}; expected EXTVER 1..{len(per_slit)}")
        nslits = max(len(per_slit), len(slit_trees))
        first_sci = per_slit[1]._headers.get("SCI") if 1 in per_slit else None
        self.meta_from_tree(meta_tree, _header_values(self._headers.get("PRIMARY"), first_sci), path)
        slits = []
        for k in range(nslits):
            slit = per_slit.get(k + 1) or SlitModel()
            st = dict(slit_trees[k]) if k < len(slit_trees) else {}
            smeta = st.pop("meta", {}) or {}
            for spec in self.slit_arrays:
                st.pop(spec.name, None)
            slit._asdf_extra = st
            slit._path = str(path)
            slit._asdf_handle = handle
            slit.meta_from_tree(smeta, _header_values(None, slit._headers.get("SCI"), _SLIT_META_GROUPS), f"{path} (slit {k + 1})")
            slit._attributes_from_header(slit._headers.get("SCI"))
            slits.append(slit)
        object.__setattr__(self, "slits", slits)
        self.validate(path)

    # -- writing -----------------------------------------------------------
    def save(self, path, overwrite: bool = True) -> str:
        from .atomic import atomic_open

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(path)
        if path.suffix.lower() == ".asdf":
            raise ValueError(f"{path}: a MultiSlitModel is written as FITS")
        self.meta.filename = path.name
        with atomic_open(path, "wb") as f:
            self._write_fits(f)
        self._path = str(path)
        return str(path)

    def _write_fits(self, f) -> None:
        from .io import _asdf_table_hdu, _hdu_bytes, _image_header, _prune, _write_image_data

        primary = self._headers.get("PRIMARY", fits.Header()).copy()
        _apply_keywords(self.meta, primary, "PRIMARY")
        f.write(_image_header(None, None, primary, primary=True).tostring().encode("ascii"))
        for i, slit in enumerate(self.slits):
            names = [s.name for s in self.slit_arrays if s.name in slit._arrays]
            order = [n for n in slit._hdu_order if any(s.extname == n and s.name in names for s in self.slit_arrays)]
            for s in self.slit_arrays:
                if s.name in names and s.extname not in order:
                    order.append(s.extname)
            for extname in order:
                spec = next(s for s in self.slit_arrays if s.extname == extname)
                hdr = slit._headers.get(extname, fits.Header()).copy()
                if i == 0:
                    _apply_keywords(self.meta, hdr, extname)
                _apply_keywords(slit.meta, hdr, extname, _SLIT_META_GROUPS)
                if extname == "SCI":
                    slit._attributes_to_header(hdr)
                hdr["EXTVER"] = i + 1
                arr = np.asarray(slit._arrays[spec.name])
                f.write(_image_header(extname, arr, hdr, primary=False).tostring().encode("ascii"))
                _write_image_data(f, arr)
        for hdu in self._extra_hdus:
            f.write(_hdu_bytes(hdu))
        tree = dict(self._asdf_extra)
        tree["meta"] = _prune(self.meta.model_dump(exclude_none=True))
        tree[self._list_key] = [
            {**_copy.copy(s._asdf_extra), "meta": _prune(s.meta.model_dump(exclude_none=True))} for s in self.slits
        ]
        f.write(_hdu_bytes(_asdf_table_hdu(tree)))


class MultiExposureModel(MultiSlitModel):
    """The slits of one source in several exposures (jwst's MultiExposureModel, a Stage 3 spec
    product such as ``<product>_cal.fits`` and ``_crf.fits``): the same layout as a MultiSlitModel,
    the slits listed under ``exposures`` in the ASDF tree.  ``.exposures`` is ``.slits``."""

    _list_key = "exposures"

    @property
    def exposures(self) -> list:
        return self.slits


def builtins_open(path):
    import builtins

    return builtins.open(path, "rb")


# the parts of a slit's own meta that jwst's slitdata schema maps to keywords of the slit's extensions
# (its wcsinfo.schema brings the pointing, RA_V1/DEC_V1/PA_V3, and the aperture's PA_APER along)
_SLIT_META_GROUPS = frozenset({"wcsinfo", "photometry", "bunit_data", "bunit_err", "velocity_aberration", "coordinates",
                               "pointing", "aperture"})


def _header_values(primary, sci, groups=None) -> dict:
    """Modelled keyword values from a primary header and/or a SCI header, typed for their fields."""
    out = {}
    for fpath, key, hduname, ann in KEYWORD_FIELDS:
        if groups is not None and fpath[0] not in groups:
            continue
        h = primary if hduname == "PRIMARY" else sci if hduname == "SCI" else None
        if h is not None and key in h:
            v = h[key]
            if isinstance(v, fits.card.Undefined):
                continue
            out[fpath] = _coerce_for(ann, v)
    return out


def _apply_keywords(meta: Meta, header: fits.Header, hduname: str, groups=None) -> None:
    from .io import _fits_value, keep_card_type

    for fpath, key, hdu, _ann in KEYWORD_FIELDS:
        if hdu != hduname or (groups is not None and fpath[0] not in groups):
            continue
        v = _fits_value(get_path(meta, fpath))
        if v is not None:
            header[key] = keep_card_type(header, key, v)


class IFUImageModel(DataModel):
    """A 2-D IFU or MRS image (cal), with WAVELENGTH, REGIONS and PATHLOSS_PS/UN; WCS at meta.wcs."""

    arrays = (
        A("data", "SCI", F4, ndim=2, required=True),
        A("dq", "DQ", U4, ndim=2, shape_of=same_shape),
        A("err", "ERR", F4, ndim=2, shape_of=same_shape),
        A("zeroframe", "ZEROFRAME", F4, ndim=2),
        A("area", "AREA", F4, ndim=2),
        A("regions", "REGIONS", I4, ndim=2),
        A("trace_model", "TRACEMODEL", F4, ndim=2),
        A("var_poisson", "VAR_POISSON", F4, ndim=2, shape_of=same_shape),
        A("var_rnoise", "VAR_RNOISE", F4, ndim=2, shape_of=same_shape),
        A("var_flat", "VAR_FLAT", F4, ndim=2, shape_of=same_shape),
        A("wavelength", "WAVELENGTH", F4, ndim=2),
        A("pathloss_point", "PATHLOSS_PS", F4, ndim=2),
        A("pathloss_uniform", "PATHLOSS_UN", F4, ndim=2),
    )


class IFUCubeModel(DataModel):
    """An IFU cube (s3d): SCI, DQ, ERR and WMAP (``weightmap``), each (nwave, ny, nx), plus WCS-TABLE."""

    arrays = (
        A("data", "SCI", F4, ndim=3, required=True),
        A("dq", "DQ", U4, ndim=3, shape_of=same_shape),
        A("err", "ERR", F4, ndim=3, shape_of=same_shape),
        A("weightmap", "WMAP", F4, ndim=3, shape_of=same_shape),
        A("wavetable", "WCS-TABLE", table=True),
        A("hdrtab", "HDRTAB", table=True),
    )


__all__ = ["SlitModel", "MultiSlitModel", "IFUImageModel", "IFUCubeModel", "SLIT_ATTRIBUTES"]
