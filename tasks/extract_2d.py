"""extract_2d for the slitless grisms (jwst's Extract2dStep, WFSS and grism time series).

WFSS (NRC_WFSS, NIS_WFSS): every source of the direct image's catalogue (``meta.source_catalog``,
the image3 ``_cat.ecsv``) gets, for each order the ``wavelengthrange`` reference says to extract
for the filter, the rectangle of the dispersed exposure its spectrum covers: the four corners of the
source's sky bounding box are sent through the grism WCS backwards at the order's shortest and
longest wavelengths.  Point sources take ``wfss_extract_half_height`` pixels either side of the
trace centre across the dispersion instead.  Orders wholly off the detector are dropped; sources
are ordered by isophotal AB magnitude (brightest first) and cut at ``wfss_nbright`` and
``wfss_mmag_extract``.  Each cutout becomes a slit of a MultiSlitModel: SCI/ERR/DQ/variances,
WAVELENGTH from its WCS (the exposure's, with a ``grism_slit`` frame in front fixing the cutout
origin, the source's direct-image position and the order), SLTNAME = source id, SLTSTRT/SLTSIZE,
SRCXPOS/SRCYPOS, source RA/Dec and SPORDER.

TSGRISM (NRC_TSGRISM): one SlitModel: the source at the aperture's reference point (moved by the
dither offsets), full rows, ``tsgrism_extract_height`` rows (64 by default) placed so that the
source lands on row 34 of the cutout, as jwst does.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError, ParameterError, ReferenceFileError, UnsupportedModeError
from . import _wcs
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.extract_2d")

SLITLESS_MODES = ("NIS_WFSS", "NRC_WFSS", "NRC_TSGRISM", "MIR_WFSS")
CATALOG_COLUMNS = ("label", "xcentroid", "ycentroid", "sky_centroid", "isophotal_abmag", "isophotal_abmag_err",
                   "sky_bbox_ll", "sky_bbox_lr", "sky_bbox_ul", "sky_bbox_ur", "is_extended")
TSO_SOURCE_ROW = 34  # jwst places the TSGRISM source on this row of the cutout


class Extract2dParams(StepParams):
    slit_names: list[str] | None = None  # slits to be extracted (NIRSpec)
    source_ids: list[int] | None = None  # source ids to be extracted
    source_ra: list[float] | None = None  # source RAs to be extracted, WFSS only
    source_dec: list[float] | None = None  # source Decs to be extracted, WFSS only
    source_max_sep: float = 2.0  # maximum separation in arcseconds around source_ra, source_dec, WFSS only
    extract_orders: list[int] | None = None  # list of orders to extract (default: the wavelengthrange reference's)
    grism_objects: list | None = None  # list of grism objects to use (Python API only)
    tsgrism_extract_height: int | None = None  # extraction height in pixels, TSGRISM mode (default 64)
    wfss_extract_half_height: int | None = 5  # extraction half height in pixels, WFSS mode (point sources)
    wfss_mmag_extract: float | None = None  # minimum (faintest) abmag to extract, WFSS mode
    wfss_nbright: int | None = 1000  # number of brightest objects to extract, WFSS mode


def to_index(v):
    """Pixel index of a coordinate: the nearest integer, halves up (gwcs.utils.to_index)."""
    return np.floor(np.asarray(v) + 0.5).astype(int)


# ---------------------------------------------------------------------------
# the catalogue


@dataclass
class GrismObject:
    sid: int
    order_bounding: dict  # order -> ((ymin, ymax), (xmin, xmax)), detector pixel indices
    ra: float
    dec: float
    xcentroid: float  # direct-image position (detector pixels, 0-based)
    ycentroid: float
    is_extended: bool
    isophotal_abmag: float
    partial_order: dict
    waverange: dict


def resolve_catalog(model, name) -> Path:
    """The catalogue file SCATFILE names: as given, else beside the exposure's file, else in the cwd."""
    p = Path(name)
    if p.is_absolute():
        return p
    src = getattr(model, "_path", None)
    for folder in ([Path(src).parent] if src else []) + [Path.cwd()]:
        if (folder / p).exists():
            return folder / p
    return p


def read_catalog(path: Path):
    """The source catalogue (ECSV, as image3's source_catalog writes it) as an astropy QTable."""
    from astropy.table import QTable

    try:
        cat = QTable.read(str(path), format="ascii.ecsv")
    except FileNotFoundError:
        raise InputFileError(path, "source catalogue not found") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable catalogue is the user's
        raise InputFileError(path, f"is not a readable ECSV source catalogue ({exc})") from None
    missing = [c for c in CATALOG_COLUMNS if c not in cat.colnames]
    if missing:
        raise InputFileError(path, f"source catalogue lacks the column(s) {', '.join(missing)}")
    return cat


def select_source_ids(cat, source_ids=None, source_ra=None, source_dec=None, max_sep=2.0):
    """Source ids to extract: those given plus the catalogue's nearest to each (ra, dec) within max_sep."""
    from astropy.coordinates import SkyCoord

    ids = [] if source_ids is None else [int(i) for i in np.atleast_1d(source_ids)]
    if (source_ra is None) != (source_dec is None):
        raise ParameterError("step extract_2d: source_ra and source_dec must be given together")
    if source_ra is not None:
        ras, decs = np.atleast_1d(source_ra).astype(float), np.atleast_1d(source_dec).astype(float)
        if len(ras) != len(decs):
            raise ParameterError("step extract_2d: source_ra and source_dec must have the same length")
        coords = cat["sky_centroid"]
        for ra, dec in zip(ras, decs):
            idx, sep, _ = SkyCoord(ra=ra, dec=dec, unit="deg").match_to_catalog_sky(coords)
            if sep.arcsecond > max_sep:
                log.warning("No catalog source found within %s arcsec of RA: %s, Dec: %s.", max_sep, ra, dec)
                continue
            ids.append(int(cat["label"][idx]))
    if ids:
        return np.unique(np.atleast_1d(ids))
    if source_ra is not None:
        raise ParameterError("step extract_2d: no catalogue source lies within source_max_sep of the requested positions")
    return None


def wavelength_ranges(wr_ref, filter_name: str, extract_orders=None) -> dict:
    """{order: (lmin, lmax)} for a WFSS filter from the wavelengthrange reference."""
    name = getattr(wr_ref.meta, "filename", None) or "<in memory>"
    exp = str(wr_ref.meta.exposure.type or "")
    if "WFSS" not in exp:
        raise ReferenceFileError("wavelengthrange", name, f"is not for WFSS (EXP_TYPE {exp})")
    if extract_orders is None:
        match = [row[1] for row in wr_ref._asdf_extra.get("extract_orders", []) if row[0] == filter_name]
        if not match:
            raise ReferenceFileError("wavelengthrange", name, f"has no extract_orders for filter {filter_name}")
        extract_orders = match[-1]
    out = {}
    for order in extract_orders:
        rows = [(r[2], r[3]) for r in wr_ref._asdf_extra.get("wavelengthrange", []) if r[0] == order and r[1] == filter_name]
        if not rows:
            raise ReferenceFileError("wavelengthrange", name, f"has no range for order {order} filter {filter_name}")
        out[order] = rows[0]
    return out


def grism_objects(model, cat, ranges: dict, mmag_extract=None, half_height=None, nbright=None, source_ids=None):
    """The catalogue sources whose spectra fall on the exposure, with each order's pixel box."""
    if mmag_extract is None:
        mmag_extract = 999.0
    sky_to_detector = model.meta.wcs.get_transform("world", "detector")
    sky_to_grism = model.meta.wcs.backward_transform
    dispaxis = model.meta.wcsinfo.dispersion_direction
    ny, nx = model.meta.subarray.ysize, model.meta.subarray.xsize
    extent = np.array([[0, 0], [ny - 1, nx - 1]])
    disp_col, xdisp_col = (1, 0) if dispaxis == 1 else (0, 1)
    out = []
    for row in cat:
        mag = row["isophotal_abmag"]
        mag = getattr(mag, "value", mag)
        if mag is None or np.ma.is_masked(mag):
            continue
        if mag >= mmag_extract:
            continue
        label = int(row["label"])
        if source_ids is not None and label not in np.atleast_1d(source_ids):
            continue
        c = row["sky_centroid"].icrs
        xc, yc, _, _ = sky_to_detector(c.ra.value, c.dec.value, 1, 1)
        corners = [row[k] for k in ("sky_bbox_ll", "sky_bbox_lr", "sky_bbox_ul", "sky_bbox_ur")]
        ra = np.array([k.ra.value for k in corners])
        dec = np.array([k.dec.value for k in corners])
        extended = bool(row["is_extended"])
        bounding, waverange, partial = {}, {}, {}
        for order, (lmin, lmax) in ranges.items():
            x1, y1, _, _, _ = sky_to_grism(ra, dec, lmin, order)
            x2, y2, _, _, _ = sky_to_grism(ra, dec, lmax, order)
            xs, ys = np.hstack([x1, x2]), np.hstack([y1, y2])
            xmin, xmax, ymin, ymax = np.nanmin(xs), np.nanmax(xs), np.nanmin(ys), np.nanmax(ys)
            if half_height is not None and not extended:
                cx, cy, _, _, _ = sky_to_grism(c.ra.value, c.dec.value, (lmin + lmax) / 2, order)
                if dispaxis == 2:
                    xmin, xmax = cx - half_height, cx + half_height
                elif dispaxis == 1:
                    ymin, ymax = cy - half_height, cy + half_height
                else:
                    raise InputFileError(model.meta.filename or "<in memory>", "has no DISPAXIS: run assign_wcs first")
            xmin, xmax, ymin, ymax = (int(to_index(v)) for v in (xmin, xmax, ymin, ymax))
            pts = np.array([[ymin, xmin], [ymax, xmax]])
            # on the detector along the dispersion (strictly) and across it (edges count)
            along = pts[1, disp_col] - extent[0, disp_col] > 0 and extent[1, disp_col] - pts[0, disp_col] > 0
            across = pts[1, xdisp_col] - extent[0, xdisp_col] >= 0 and extent[1, xdisp_col] - pts[0, xdisp_col] >= 0
            if not (along and across):
                log.debug("Excluding off-image object: %s, order %s", label, order)
                if source_ids is not None:
                    log.warning("Excluding requested object: %s, order %s (off detector)", label, order)
                continue
            inside = np.all((extent[0] <= pts) & (pts <= extent[1]), axis=1)
            bounding[order] = ((ymin, ymax), (xmin, xmax))
            waverange[order] = (lmin, lmax)
            partial[order] = bool(np.any(~inside))
        if bounding:
            out.append(GrismObject(label, bounding, float(c.ra.value), float(c.dec.value), float(xc), float(yc),
                                   extended, float(mag), partial, waverange))
    out = [out[i] for i in np.argsort([o.isophotal_abmag for o in out])]
    if nbright is not None:
        out = out[:nbright]
    log.info("Total of %d grism objects defined", len(out))
    if not out:
        log.warning("No grism objects saved; check catalog or step params")
    return out


# ---------------------------------------------------------------------------
# cutouts


def _cut(model, name, ys, xs):
    arr = getattr(model, name, None) if model.has(name) else None
    if arr is None or np.size(arr) == 0:
        return None
    return arr[..., ys, xs].copy()


def _cut_companions(slit, model, ys, xs) -> None:
    """The cutout's ERR, DQ and variances, from the same window of the exposure."""
    slit.err = _cut(model, "err", ys, xs)
    slit.dq = _cut(model, "dq", ys, xs)
    for v in ("var_poisson", "var_rnoise", "var_flat"):
        a = _cut(model, v, ys, xs)
        if a is not None:
            setattr(slit, v, a)


def _wavelengths(wcs):
    from gwcs.wcstools import grid_from_bounding_box

    x, y = grid_from_bounding_box(wcs.bounding_box)
    return np.asarray(wcs(x, y)[2], dtype=np.float32)


def _new_multislit(model):
    from ..models import MultiSlitModel

    out = MultiSlitModel()
    wcs = model.meta.wcs  # not copied: the MultiSlitModel has none (a NIRSpec exposure's holds every open slit)
    model.meta.wcs = None
    try:
        out.meta = model.meta.model_copy(deep=True)
    finally:
        model.meta.wcs = wcs
    out.meta.model_type = "MultiSlitModel"
    if "PRIMARY" in model._headers:
        out._headers = {"PRIMARY": model._headers["PRIMARY"].copy()}
    return out


def _cutout_wcs(exposure_wcs, tr):
    """A cutout's WCS: a ``grism_slit`` frame (a copy of the exposure's ``grism_detector`` frame,
    renamed) whose transform ``tr`` maps the cutout's pixels to the exposure's, followed by the
    exposure's own steps.  jwst deep-copies the exposure's WCS for each cutout (some 0.6 MiB of
    Python objects, kept by every cutout until the save); here the cutouts share the steps' frames
    and transforms, which nothing changes after extract_2d (a cutout's bounding box lives on its own
    ``tr``), so memory holds one exposure WCS, however many cutouts.  Saved, the shared transforms
    are written once and aliased by the later cutouts (YAML anchors, as asdf writes any shared
    object): the same tree when read, with the same values."""
    from gwcs.wcs import Step

    wcs = copy.copy(exposure_wcs)
    wcs._pipeline = [Step(s.frame, s.transform) for s in exposure_wcs._pipeline]  # its own list and steps
    frame = copy.deepcopy(exposure_wcs.grism_detector)
    frame.name = "grism_slit"
    wcs.insert_frame(input_frame=frame, output_frame="grism_detector", transform=tr)
    return wcs


def extract_wfss(model, objects: list[GrismObject]):
    """One slit per (object, order) box of ``objects``, cut out of the dispersed exposure."""
    from astropy.modeling.models import Const1D, Mapping, Shift

    from ..models import SlitModel

    out = _new_multislit(model)
    # jwst's MultiSlitModel takes no exposure-level pointing, WCS keywords or frame: each slit has its own
    # (nor PA_APER, which jwst keeps in the tree only)
    for group in ("wcsinfo", "pointing", "coordinates"):
        setattr(out.meta, group, type(getattr(out.meta, group))())
    out.meta.aperture.position_angle = None
    ysize, xsize = model.meta.subarray.ysize, model.meta.subarray.xsize
    shared = copy.deepcopy(model.meta.wcs)  # one copy of the exposure's WCS, whose steps every cutout shares
    for obj in objects:
        for order, ((y0, y1), (x0, x1)) in obj.order_bounding.items():
            ymin, ymax = max(0, min(y0, ysize)), max(0, min(y1, ysize))
            xmin, xmax = max(0, min(x0, xsize)), max(0, min(x1, xsize))
            if ymax - ymin <= 0 or xmax - xmin <= 0:
                continue
            log.info("Subarray extracted for obj: %s order: %s: (xmin:%s, xmax:%s), (ymin:%s, ymax:%s)",
                     obj.sid, order, xmin, xmax, ymin, ymax)
            ys, xs = slice(ymin, ymax + 1), slice(xmin, xmax + 1)
            data = model.data[ys, xs].copy()
            consts = []
            for v in (obj.xcentroid, obj.ycentroid, order):
                k = Const1D(v)
                k.inverse = Const1D(v)
                consts.append(k)
            tr = Mapping((0, 1, 0, 0, 0)) | (Shift(xmin) & Shift(ymin) & consts[0] & consts[1] & consts[2])
            _wcs._bind(tr, _wcs.shape_bbox(data.shape))
            wcs = _cutout_wcs(shared, tr)

            slit = SlitModel(data=data)
            _cut_companions(slit, model, ys, xs)
            slit.meta.wcsinfo.spectral_order = int(order)
            slit.meta.wcsinfo.dispersion_direction = model.meta.wcsinfo.dispersion_direction
            slit.meta.wcsinfo.specsys = model.meta.wcsinfo.specsys
            slit.meta.coordinates = model.meta.coordinates.model_copy(deep=True)
            slit.meta.wcs = wcs
            slit.wavelength = _wavelengths(wcs)
            slit.name = str(obj.sid)
            slit.is_extended = obj.is_extended
            slit.xstart, slit.xsize = xmin + 1, data.shape[1]
            slit.ystart, slit.ysize = ymin + 1, data.shape[0]
            slit.source_xpos, slit.source_ypos = obj.xcentroid, obj.ycentroid
            slit.source_id = int(obj.sid)
            slit.source_ra, slit.source_dec = obj.ra, obj.dec
            slit.meta.bunit_data, slit.meta.bunit_err = model.meta.bunit_data, model.meta.bunit_err
            out.slits.append(slit)
    if out.slits:
        out.slits[0].meta.wcsinfo.s_region = model.meta.wcsinfo.s_region
    log.info("Finished extractions: %d slits", len(out.slits))
    return out


def tso_offset_center(model) -> tuple[float, float]:
    """Direct-image pixel of the source: the reference point moved by the dither offsets (XOFFSET/YOFFSET)."""
    from stdatamodels.jwst.transforms.models import IdealToV2V3

    w = model.meta.wcsinfo
    idl2v23 = IdealToV2V3(w.v3yangle, w.v2_ref, w.v3_ref, w.vparity)
    v2, v3 = idl2v23(model.meta.dither.x_offset, model.meta.dither.y_offset)
    to_direct = model.meta.wcs.get_transform("v2v3", "direct_image")
    xc, yc, _, _ = to_direct(v2, v3, np.nan, 1)
    return xc, yc


def extract_tso(model, wr_ref, height=None, extract_orders=None):
    """The one TSGRISM cutout (SlitModel): full rows around the source, which lands on row 34."""
    from astropy.modeling.models import Const1D, Mapping, Shift

    from ..models import SlitModel

    name = getattr(wr_ref.meta, "filename", None) or "<in memory>"
    if (wr_ref.meta.instrument.name or "").upper() != "NIRCAM" or (wr_ref.meta.exposure.type or "").upper() != "NRC_TSGRISM":
        raise ReferenceFileError("wavelengthrange", name, "is not for NIRCam TSGRISM")
    filt = model.meta.instrument.filter
    if extract_orders is None:
        match = [row[1] for row in wr_ref._asdf_extra.get("extract_orders", []) if row[0] == filt]
        if not match:
            raise ReferenceFileError("wavelengthrange", name, f"has no extract_orders for filter {filt}")
        orders = match[-1]
    else:
        orders = list(extract_orders)
    if len(orders) > 1:
        raise ParameterError("step extract_2d: multiple order extraction for TSO is not implemented (jwst neither)")
    w = model.meta.wcsinfo
    if w.siaf_xref_sci is None or w.siaf_yref_sci is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no XREF_SCI/YREF_SCI; TSO extraction needs them")
    if "DHS" in (model.meta.subarray.name or "").upper():
        raise UnsupportedModeError("extract_2d: NRC_TSGRISM DHS stripes are not supported yet")
    height = height if height is not None else 64
    order = orders[0]
    if not any(r[0] == order and r[2] == filt for r in wr_ref._asdf_extra.get("wavelengthrange", []) if len(r) == 5):
        raise ReferenceFileError("wavelengthrange", name, f"has no time-series range for order {order} filter {filt}")
    source_x, _ = tso_offset_center(model)
    source_y = w.siaf_yref_sci - 1
    # jwst's placement: the source sits on row 34 of the cutout, the cutout starts at the bottom
    center = TSO_SOURCE_ROW
    half = int(height / 2)
    below = center - half
    if below == TSO_SOURCE_ROW:
        ymin, ymax = 0, center + half
    elif below < 0:
        ymin, ymax = 0, height - 1
    else:
        ymin, ymax = center - TSO_SOURCE_ROW, center + height - TSO_SOURCE_ROW - 1
    ymin, ymax = int(max(ymin, 0)), int(min(ymax, model.meta.subarray.ysize))
    xmin, xmax = 0, model.data.shape[-1] - 1
    log.info("Extracting order %s: rows %d-%d, columns %d-%d (source at x %.2f, y %.2f)",
             order, ymin, ymax, xmin, xmax, source_x, source_y)

    wcs = copy.deepcopy(model.meta.wcs)
    k = Const1D(order)
    k.inverse = Const1D(order)
    tr = Mapping((0, 1, 0)) | Shift(xmin) & Shift(ymin) & k | model.meta.wcs.get_transform("grism_detector", "direct_image")
    wcs.set_transform("grism_detector", "direct_image", tr)
    ys, xs = slice(ymin, ymax + 1), slice(xmin, xmax + 1)
    slit = SlitModel(data=model.data[..., ys, xs].copy())
    slit.meta = model.meta.model_copy(deep=True)
    slit.meta.model_type = "SlitModel"
    slit._headers = {"PRIMARY": model._headers["PRIMARY"].copy()} if "PRIMARY" in model._headers else {}
    slit._hdu_order = ["SCI", "ERR", "DQ"]  # jwst makes the cutout as SlitModel(data=, err=, dq=), written so
    _cut_companions(slit, model, ys, xs)
    wcs.bounding_box = _wcs.shape_bbox(slit.data.shape)
    slit.meta.wcs = wcs
    slit.wavelength = np.asarray(wcs.forward_transform(*_grid(wcs))[2], dtype=np.float32)
    slit.meta.wcsinfo.siaf_xref_sci = float(source_x) + 1
    slit.meta.wcsinfo.siaf_yref_sci = TSO_SOURCE_ROW
    slit.meta.wcsinfo.spectral_order = int(order)
    slit.meta.wcsinfo.dispersion_direction = model.meta.wcsinfo.dispersion_direction
    slit.meta.instrument.name = "NIRCAM"
    slit.name = "1"
    slit.source_type = model.meta.target.source_type
    slit.source_name = model.meta.target.catalog_name
    slit.source_alias = model.meta.target.proposer_name
    slit.xstart, slit.xsize = 1, slit.data.shape[-1]
    slit.ystart, slit.ysize = ymin + 1, slit.data.shape[-2]
    slit.source_xpos, slit.source_ypos = float(source_x), TSO_SOURCE_ROW
    slit.source_id = 1
    if model.has("int_times") and getattr(model, "int_times", None) is not None:
        slit.int_times = model.int_times.copy()
    return slit


def _grid(wcs):
    from gwcs.wcstools import grid_from_bounding_box

    return grid_from_bounding_box(wcs.bounding_box)


@step(
    "extract_2d",
    "Extract2dStep",
    params=Extract2dParams,
    reftypes=(),
    optional_reftypes=("wavelengthrange",),
    suffix="extract_2d",
    input_class="ImageModel",
)
def extract_2d(model, refs, params: Extract2dParams):
    """Cut out each source's spectrum: WFSS catalogue sources per order, the TSGRISM source, or NIRSpec's slits."""
    exp_type = (model.meta.exposure.type or "").upper()
    from . import _extract_2d_nirspec as _nrs

    if exp_type in _nrs.NIRSPEC_MODES:  # NIRSpec fixed slits, MSA, bright-object TSO
        return _nrs.extract(model, params.slit_names, params.source_ids)
    if exp_type not in ("NRC_WFSS", "NIS_WFSS", "NRC_TSGRISM"):
        log.info("EXP_TYPE %s not supported for extract 2D", exp_type)
        return model, "SKIPPED"
    if model.meta.wcs is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no WCS: run assign_wcs before extract_2d")
    wr = refs.get("wavelengthrange")
    if wr is None:
        raise ReferenceFileError("wavelengthrange", "N/A", f"is required by extract_2d for {exp_type}")
    if exp_type == "NRC_TSGRISM":
        return extract_tso(model, wr, params.tsgrism_extract_height, params.extract_orders)
    if params.grism_objects is not None:
        objects = list(params.grism_objects)
    else:
        if not model.meta.source_catalog:
            raise InputFileError(model.meta.filename or "<in memory>",
                                 "names no source catalogue (SCATFILE); WFSS extraction needs the direct image's")
        cat = read_catalog(resolve_catalog(model, model.meta.source_catalog))
        ids = select_source_ids(cat, params.source_ids, params.source_ra, params.source_dec, params.source_max_sep)
        filt = model.meta.instrument.pupil if exp_type == "NIS_WFSS" else model.meta.instrument.filter
        ranges = wavelength_ranges(wr, filt, params.extract_orders)
        objects = grism_objects(model, cat, ranges, params.wfss_mmag_extract, params.wfss_extract_half_height,
                                params.wfss_nbright, ids)
    if not objects:
        raise InputFileError(model.meta.filename or "<in memory>",
                             "no catalogue source has a spectrum on this exposure; nothing to extract")
    log.info("Extracting %d grism objects", len(objects))
    return extract_wfss(model, objects)


def _register_extras():
    from .base import STEPS

    # jwst asks CRDS for wavelengthrange on the slitless modes only
    STEPS["extract_2d"].extra["optional_reftypes_needed"] = (
        lambda model, params: ("wavelengthrange",) if (model.meta.exposure.type or "").upper() in SLITLESS_MODES else ())


_register_extras()
