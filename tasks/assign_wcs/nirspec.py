"""assign_wcs for NIRSpec fixed slits (NRS_FIXEDSLIT), the bright-object TSO (NRS_BRIGHTOBJ) and
the MSA (NRS_MSASPEC).

The WCS follows the light backwards through ESA's optical model, one set of transforms for every
open slit, selected by the slit's id (``name``, -101..-105 for S200A1, S200A2, S400A1, S1600A1,
S200B1)::

    detector (x, y, name) --subarray offset, NRS2 flip--> sca (full-frame pixels)
        --fpa | camera | unitless -> direction cosines | rotation into the GWA frame--> gwa
        --per slit: grating equation or prism (Snell), through the collimator and MSA--> slit_frame
        --per slit: Scale(size) & Scale(size) | Shift(centre) & Shift(centre) | quadrant--> msa_frame
        --fore optics (wavelength-dependent)--> oteip --OTE, metres -> microns--> v2v3
        --DVA scale--> v2v3vacorr --pointing--> world (RA, Dec, wavelength in microns)

References (read with asdf as stdatamodels reads them; the transforms are astropy's and those of
``stdatamodels.jwst.transforms``): ``fpa`` (per detector), ``camera``, ``disperser`` (its mounting
angles corrected by the GWA tilt sensors GWA_XTIL/GWA_YTIL; the prism's refraction law at the
temperature GWA_TILT), ``collimator``, ``msa`` (Q5: the fixed slits), ``fore``, ``ote`` and
``wavelengthrange`` (the spectral order and range of the filter and grating).

How each part is made, as jwst 3.0 makes it:

- gwa -> slit_frame: from the GWA input angles, the slit's y position comes from a table of the
  slit's along-slit position against the GWA beta angle (1000 points from ymin to ymax at x=0);
  the slit's x is 0; the exit angles through the collimator give the wavelength (grating equation,
  or the prism's refraction index looked up on a 0.3-8 micron grid); pixels whose y falls outside
  [ymin, ymax] get NaN.  Its inverse goes slit -> MSA -> GWA -> grating equation / Snell.
- The slits: FIXEDSLIT opens the slit the subarray names (SUBS200A1, ...; S1600A1 for SUB2048,
  SUB512, SUB512S, SUB1024A/B) or all five; BRIGHTOBJ opens S1600A1.  The primary slit (FXD_SLIT)
  has source id 1, the others 10 * primary + own number.  MSASPEC opens the slitlets of its MSA
  configuration (MSAMETID) at its dither point (PATT_NUM) in the MSA metadata file (MSAMETFL,
  beside the exposure): each is centred on its primary-source shutter (or, for a background
  slitlet, its middle shutter) and reaches over its other shutters (1.15 shutter heights each),
  with its source's name, alias, position and stellarity from SOURCE_INFO.  A slit whose
  projection misses the detector is dropped; with none left the exposure has no data on this
  detector.
- The bounding box of a slit: its two edges (y = ymin, ymax at x = 0) traced from the slit to the
  detector at wavelengths 1e-10 m apart over the order's range, padded by 10 columns and 2 rows
  (0-based, clipped to the detector, +/-0.5), then the rows narrowed to the pixels with a finite
  wavelength.  They make a compound bounding box keyed on the slit id.

The step also writes SPECSYS=BARYCENT, DISPAXIS=1, SPORDER, WAVSTART/WAVEND (metres).  As jwst,
it leaves S_REGION as it was for these modes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...errors import InputFileError, ReferenceFileError

log = logging.getLogger("webbflow.steps.assign_wcs")

FIXED_SLIT_NUMS = {"NONE": 0, "S200A1": 1, "S200A2": 2, "S400A1": 3, "S1600A1": 4, "S200B1": 5}
FIXED_SLIT_ORDER = ("S200A1", "S200A2", "S400A1", "S1600A1", "S200B1")  # their rows in the msa Q5 table
ONE_SLIT_SUBARRAYS = {"SUBS200A1": "S200A1", "SUBS200A2": "S200A2", "SUBS400A1": "S400A1", "SUBS200B1": "S200B1",
                      "SUB2048": "S1600A1", "SUB512": "S1600A1", "SUB512S": "S1600A1", "SUB1024A": "S1600A1",
                      "SUB1024B": "S1600A1"}
FULL_RANGE = (0.6e-6, 5.3e-6)  # metres: NIRSpec's whole range, when the wavelengthrange has no entry
REFTYPES = ("camera", "collimator", "disperser", "fore", "fpa", "msa", "ote", "wavelengthrange")
SPEED_OF_LIGHT = 299792458.0  # m/s


def reftypes(model) -> tuple[str, ...]:
    return REFTYPES


def slit_id(name: str) -> int:
    """A fixed slit's id: -101 (S200A1) .. -105 (S200B1); -100 for an unknown name."""
    return -100 - FIXED_SLIT_NUMS.get(name, 0)


def slit_name(sid) -> str:
    try:
        n = -int(sid) - 100
    except (TypeError, ValueError):
        return "NONE"
    return next((k for k, v in FIXED_SLIT_NUMS.items() if v == n), "NONE")


# ---------------------------------------------------------------------------
# references


def _ref_name(ref) -> str:
    meta = getattr(ref, "meta", None)
    return (getattr(ref, "_path", None) or (getattr(meta, "filename", None) if meta is not None else None)
            or "<in memory>")


def _tree(ref, reftype: str) -> dict:
    extra = getattr(ref, "_asdf_extra", None)
    if extra is None:
        raise ReferenceFileError(reftype, _ref_name(ref), "is not an ASDF reference tree")
    return extra


def _entry(ref, reftype: str, key: str):
    tree = _tree(ref, reftype)
    if key not in tree or tree[key] is None:
        raise ReferenceFileError(reftype, _ref_name(ref), f"has no {key!r} entry")
    return tree[key]


class Disperser:
    """The disperser reference with its mounting angles corrected for the GWA tilt readings."""

    def __init__(self, ref, xtilt, ytilt):
        tree = _tree(ref, "disperser")
        self.name = _ref_name(ref)
        self.tree = dict(tree)
        for k in ("theta_x", "theta_y", "theta_z", "tilt_y"):
            if k not in tree:
                raise ReferenceFileError("disperser", self.name, f"has no {k!r} entry")
        # GWA_XTIL corrects theta_y, GWA_YTIL theta_x: half the change of the sensor's angle (arcsec -> deg)
        if xtilt is not None:
            self.tree["theta_y"] = tree["theta_y"] + self._correction(tree.get("gwa_tiltx"), xtilt)
        if ytilt is not None:
            self.tree["theta_x"] = tree["theta_x"] + self._correction(tree.get("gwa_tilty"), ytilt)

    def _correction(self, sensor, reading) -> float:
        if not sensor or "tilt_model" not in sensor or not sensor.get("zeroreadings"):
            raise ReferenceFileError("disperser", self.name, "has no GWA tilt calibration (gwa_tiltx/gwa_tilty)")
        model = sensor["tilt_model"]
        return 0.5 * (model(reading) - model(sensor["zeroreadings"][0])) / 3600.0

    def __getitem__(self, key):
        if key not in self.tree:
            raise ReferenceFileError("disperser", self.name, f"has no {key!r} entry")
        return self.tree[key]

    def rotation(self):
        from stdatamodels.jwst.transforms.models import Rotation3DToGWA

        angles = [self["theta_x"], self["theta_y"], self["theta_z"], self["tilt_y"]]
        return Rotation3DToGWA(angles, axes_order="xyzy", name="rotation")


def order_and_range(model, wavelengthrange_ref) -> tuple[int, list]:
    """(spectral order, [lambda_min, lambda_max] in metres) of the exposure's filter and grating."""
    tree = _tree(wavelengthrange_ref, "wavelengthrange")
    inst = model.meta.instrument
    selector = list(tree.get("waverange_selector") or [])
    orders, ranges = list(tree.get("order") or []), list(tree.get("wavelengthrange") or [])
    key = f"{inst.filter}_{inst.grating}"
    if key in selector:
        i = selector.index(key)
        return int(orders[i]), list(ranges[i])
    gratings = [s.split("_")[1] for s in selector]
    if inst.grating in gratings:
        i = gratings.index(inst.grating)
        order, wrange = int(orders[i]), list(ranges[i])
    else:
        order, wrange = -1, list(FULL_RANGE)
    log.info("Combination %s missing in wavelengthrange file, setting order to %s and range to %s.", key, order, wrange)
    return order, wrange


# ---------------------------------------------------------------------------
# the open slits


def _msa_metadata_path(model) -> Path:
    """MSAMETFL, relative to the exposure's folder (as jwst resolves it from its input)."""
    name = model.meta.instrument.msa_metadata_file
    where = model.meta.filename or "<in memory>"
    if name is None or not str(name).strip() or str(name).strip().upper() == "N/A":
        raise InputFileError(where, "MSA metadata file (MSAMETFL) is required for NRS_MSASPEC exposures")
    p = Path(str(name).strip())
    if not p.is_absolute():
        folder = Path(model._path).parent if getattr(model, "_path", None) else Path.cwd()
        p = folder / p.name
    if not p.exists():
        raise InputFileError(where, f"its MSA metadata file {p} (MSAMETFL) does not exist")
    return p


def msa_slit_scales(msa_ref) -> dict[int, tuple[float, float]]:
    """Per quadrant (1-4): shutter pitch / open size in x and y, from the msa reference's tables."""
    scales = {}
    for q in range(1, 5):
        data, _ = _msa_quadrant(msa_ref, q)
        scales[q] = ((data["XC"][1] - data["XC"][0]) / data["SIZEX"][0], data["YC"][365] / data["SIZEY"][0])
    return scales


def _shutter_string(columns, main) -> str:
    """'1' open, '0' closed, 'x' the main shutter, over the slitlet's columns."""
    span = range(min(columns), max(columns) + 1)
    return "".join("x" if c == main else ("1" if c in columns else "0") for c in span)


def _fixed_slit_of(row) -> str | None:
    """The fixed slit a SHUTTER_INFO row opens (its ``fixed_slit`` column; None for the MSA's shutters and
    in the older files without the column)."""
    if "fixed_slit" not in row.array.names:
        return None
    name = str(row["fixed_slit"]).strip().upper()
    return name if name in FIXED_SLIT_NUMS and name != "NONE" else None


def _msa_fixed_slit(name, row, source_info, prog, dither, slit_y_range):
    """A fixed slit opened by the MSA metadata file, as jwst 3.0 makes it: quadrant 5, its slit number as
    shutter id, the slit's own length (no shutter margin), the source of its row; a row that is not marked
    as the primary source is left out (jwst warns and skips it)."""
    from stdatamodels.jwst.transforms.models import Slit

    if row["primary_source"] != "Y":
        log.warning("Fixed slit %s is not a primary source; skipping it.", name)
        return None
    source_id = row["source_id"]
    sx = np.nan_to_num(row["estimated_source_in_shutter_x"], nan=0.5)
    sy = np.nan_to_num(row["estimated_source_in_shutter_y"], nan=0.5)
    if int(source_id) in source_info:
        sname, alias, stellarity, ra, dec = source_info[int(source_id)]
    else:
        log.warning("Could not retrieve source info from MSA file")
        sname, alias, stellarity, ra, dec = f"{prog}_VRT{name}", f"VRT{name}", 0.0, 0.0, 0.0
    ylow, yhigh = slit_y_range
    return Slit(name, FIXED_SLIT_NUMS[name] - 1, dither, 0, 0, ylow, yhigh, 5, source_id,
                _shutter_string([row["shutter_column"]], 0), sname, alias, stellarity, sx - 0.5, sy - 0.5, ra, dec,
                1.35, 1.15, slit_id(name))


def open_msa_slits(model, msa_ref, slit_y_range):
    """The open MOS slitlets of the exposure's MSA configuration (MSAMETID) and dither point (PATT_NUM),
    from the MSA metadata file's SHUTTER_INFO and SOURCE_INFO, as jwst 3.0 makes them: a slitlet with
    one primary-source shutter is centred on it, one without is a background slitlet centred on its
    middle shutter; ymin/ymax reach over the slitlet's other shutters (1.15 shutter heights each)."""
    from astropy.io import fits
    from stdatamodels.jwst.transforms.models import Slit

    where = model.meta.filename or "<in memory>"
    meta_id = model.meta.instrument.msa_metadata_id
    dither = model.meta.dither.position_number
    if meta_id is None:
        raise InputFileError(where, "has no MSAMETID (the MSA configuration in its MSA metadata file)")
    if dither is None:
        raise InputFileError(where, "has no PATT_NUM (the dither point)")
    path = _msa_metadata_path(model)
    prog = str(model.meta.observation.program_number or "").lstrip("0")
    try:
        with fits.open(path, memmap=False) as hdul:
            shutters = hdul["SHUTTER_INFO"].data
            sources = hdul["SOURCE_INFO"].data
            rows = [r for r in shutters if r["msa_metadata_id"] == meta_id and r["dither_point_index"] == dither]
            source_info = {int(s["source_id"]): (s["source_name"], s["alias"], s["stellarity"], s["ra"], s["dec"])
                           for s in sources}
    except (OSError, KeyError) as exc:
        raise InputFileError(str(path), f"not a readable MSA metadata file ({exc})") from None
    scales = msa_slit_scales(msa_ref)
    ylow, yhigh = slit_y_range
    groups: dict = {}
    for r in rows:  # a fixed slit's rows go by the slit's name, the MSA's by slitlet_id
        fs = _fixed_slit_of(r)
        groups.setdefault(fs or r["slitlet_id"], []).append(r)
    slits = []
    for sid, members in groups.items():
        fs = [_fixed_slit_of(r) for r in members]
        if any(fs):
            if not (all(fs) and len(members) == 1):
                raise InputFileError(str(path), f"slitlet {sid} (MSAMETID {meta_id}, dither {dither}) is an unsupported "
                                                "fixed slit configuration (one row per fixed slit, none mixed with shutters)")
            fixed = _msa_fixed_slit(sid, members[0], source_info, prog, dither, slit_y_range)
            if fixed is not None:
                slits.append(fixed)
            continue
        columns = [r["shutter_column"] for r in members]
        primaries = [r for r in members if r["primary_source"] == "Y"]
        jmin, jmax = min(columns), max(columns)
        quadrant = members[0]["shutter_quadrant"]
        if not primaries:
            j = columns[0] if len(columns) == 1 else jmin + (jmax - jmin) // 2
            xcen, ycen = members[0]["shutter_row"], j
            source_id, sx, sy = sid, 0.5, 0.5
            name, alias, stellarity, ra, dec = f"{prog}_BKG{sid}", f"BKG{sid}", 0.0, 0.0, 0.0
        elif len(primaries) == 1:
            main = [r for r in members if r["background"] == "N"][0]
            xcen, ycen, quadrant = main["shutter_row"], main["shutter_column"], main["shutter_quadrant"]
            sx = np.nan_to_num(main["estimated_source_in_shutter_x"], nan=0.5)
            sy = np.nan_to_num(main["estimated_source_in_shutter_y"], nan=0.5)
            j = ycen
            source_id = primaries[-1]["source_id"]
            if int(source_id) in source_info:
                name, alias, stellarity, ra, dec = source_info[int(source_id)]
            else:
                log.warning("Could not retrieve source info from MSA file; assigning virtual source_name=%s_VRT%s",
                            prog, sid)
                name, alias, stellarity, ra, dec = f"{prog}_VRT{sid}", f"VRT{sid}", 0.0, 0.0, 0.0
        else:
            raise InputFileError(str(path), f"slitlet {sid} (MSAMETID {meta_id}, dither {dither}) has more than one "
                                            "shutter with a primary source")
        shutter_id = np.int64(xcen) + (np.int64(ycen) - 1) * 365
        ymax = yhigh + 0.5 + (jmax - j) * 1.15
        ymin = -(-ylow + 0.5) + (jmin - j) * 1.15
        scale_x, scale_y = scales.get(quadrant, (1.35, 1.15))
        slits.append(Slit(sid, shutter_id, dither, xcen, ycen, ymin, ymax, quadrant, source_id,
                          _shutter_string(columns, ycen), name, alias, stellarity, sx - 0.5, sy - 0.5, ra, dec,
                          scale_x, scale_y, sid))
    return slits


def open_slits(model, slit_y_range, msa_ref=None):
    """The Slit records of the exposure's open slits (before the detector check)."""
    from stdatamodels.jwst.transforms.models import Slit

    exp_type = (model.meta.exposure.type or "").upper()
    ylow, yhigh = slit_y_range
    if exp_type == "NRS_MSASPEC":
        return open_msa_slits(model, msa_ref, slit_y_range)

    def make(name, primary):
        n = FIXED_SLIT_NUMS[name]
        source = 1 if primary == name else 10 * FIXED_SLIT_NUMS.get(primary, 0) + n
        return Slit(name, n - 1, 0, 0, 0, ylow, yhigh, 5, source, slit_id=slit_id(name))

    if exp_type == "NRS_BRIGHTOBJ":
        return [Slit("S1600A1", 3, 0, 0, 0, ylow, yhigh, 5, 1, slit_id=slit_id("S1600A1"))]
    subarray = (model.meta.subarray.name or "")
    if not subarray:
        raise InputFileError(model.meta.filename or "<in memory>", "has no SUBARRAY keyword; cannot tell its open slits")
    if model.meta.instrument.fixed_slit is None:
        model.meta.instrument.fixed_slit = "NONE"
    primary = model.meta.instrument.fixed_slit
    one = ONE_SLIT_SUBARRAYS.get(subarray.upper())
    names = [one] if one else list(FIXED_SLIT_ORDER)
    return [make(n, primary) for n in names]


# ---------------------------------------------------------------------------
# the transforms


def _slit_location(row):
    """Relative slit position -> quadrant position: Scale(size) & Scale(size) | Shift(centre) & Shift(centre)."""
    from astropy.modeling.models import Scale, Shift

    _num, xc, yc, xsize, ysize = row
    return Scale(xsize) & Scale(ysize) | Shift(xc) & Shift(yc)


def _msa_quadrant(msa_ref, quadrant: int):
    q = _entry(msa_ref, "msa", f"Q{quadrant}")
    if "data" not in q or "model" not in q:
        raise ReferenceFileError("msa", _ref_name(msa_ref), f"Q{quadrant} lacks its data table or model")
    return np.asarray(q["data"]), q["model"]


def _slit_models(slits, msa_ref):
    """[(slit, slit -> MSA transform)] in jwst's order (by quadrant, then as listed)."""
    out = []
    for quadrant in range(1, 6):
        in_q = [s for s in slits if s.quadrant == quadrant]
        if not in_q:
            continue
        data, qmodel = _msa_quadrant(msa_ref, quadrant)
        for s in in_q:
            row = s.shutter_id if quadrant == 5 else s.shutter_id - 1  # fixed slits count from 0, shutters from 1
            if not 0 <= row < len(data):
                raise ReferenceFileError("msa", _ref_name(msa_ref), f"Q{quadrant} has no row {row} for slit {s.name}")
            out.append((s, _slit_location(data[row]) | qmodel))
    return out


def dms_to_sca(model):
    from astropy.modeling.models import Identity, Scale, Shift

    xstart = model.meta.subarray.xstart or 1
    ystart = model.meta.subarray.ystart or 1
    to_full = Shift(xstart - 1) & Shift(ystart - 1)
    detector = (model.meta.instrument.detector or "").upper()
    if detector == "NRS2":
        flip = Shift(-2047) & Shift(-2047) | Scale(-1) & Scale(-1)
    elif detector == "NRS1":
        flip = Identity(2)
    else:
        raise InputFileError(model.meta.filename or "<in memory>", f"DETECTOR {detector or '?'} is not NRS1 or NRS2")
    t = (to_full | flip) & Identity(1)
    t.inputs = ("x", "y", "name")
    t.outputs = ("x", "y", "name")
    return t


def detector_to_gwa(refs, detector: str, disperser: Disperser):
    from astropy.modeling.models import Identity, Mapping
    from stdatamodels.jwst.transforms.models import Unitless2DirCos

    fpa = _entry(refs["fpa"], "fpa", f"{detector.lower()}_model")
    camera = _entry(refs["camera"], "camera", "model")
    reorder = Mapping((3, 0, 1, 2))
    reorder.inverse = Mapping((1, 2, 3, 0))
    t = (fpa | camera | Unitless2DirCos(name="unitless2directional_cosines") | disperser.rotation()) & Identity(1) | reorder
    t.inputs = ("x", "y", "name")
    t.outputs = ("name", "angle1", "angle2", "angle3")
    return t


def collimator_to_gwa(refs, disperser: Disperser):
    from stdatamodels.jwst.transforms.models import Unitless2DirCos

    collimator = _entry(refs["collimator"], "collimator", "model")
    return collimator.inverse | Unitless2DirCos(name="unitless2directional_cosines") | disperser.rotation()


def angle_from_disperser(model, disperser: Disperser, order: int):
    """lambda (and the GWA input angles) -> GWA output angles: grating equation, or Snell's law for the prism."""
    from astropy.modeling.models import Identity, Mapping, Scale
    from gwcs.spectroscopy import AnglesFromGratingEquation3D
    from stdatamodels.jwst.transforms.models import Snell

    if (model.meta.instrument.grating or "").upper() != "PRISM":
        return (Mapping((0, 1, 2), n_inputs=4) | Identity(1) & Scale(-1) & Identity(1)
                | AnglesFromGratingEquation3D(disperser["groovedensity"], order, name="alpha_from_greq"))
    d = disperser
    return Snell(d["angle"], d["kcoef"], d["lcoef"], d["tcoef"], d["tref"], d["pref"],
                 model.meta.instrument.gwa_tilt, d["pref"], name="snell_law")


def wavelength_from_disperser(model, disperser: Disperser, order: int):
    """GWA angles -> lambda: grating equation, or the prism's refraction index looked up against lambda."""
    from astropy.modeling.models import Mapping, Scale, Tabular1D
    from gwcs.spectroscopy import WavelengthFromGratingEquation
    from stdatamodels.jwst.transforms.models import RefractionIndexFromPrism, Snell

    if (model.meta.instrument.grating or "").upper() != "PRISM":
        return (Mapping((0, 2), n_inputs=3)
                | WavelengthFromGratingEquation(disperser["groovedensity"], order, name="lambda_from_gratingeq")
                | Scale(-1))
    temperature = model.meta.instrument.gwa_tilt
    if temperature is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no GWA_TILT (the prism's temperature)")
    d = disperser
    lam = np.arange(0.3, 8.005, 0.005) * 1e-6
    n = Snell.compute_refraction_index(lam, temperature, d["tref"], d["pref"], d["pref"],
                                       d["kcoef"][:], d["lcoef"][:], d["tcoef"][:])
    table = Tabular1D(points=(np.flipud(n),), lookup_table=np.flipud(lam), bounds_error=False)
    return RefractionIndexFromPrism(d["angle"], name="n_prism") | table


def velocity_correction(velosys):
    from astropy.modeling.models import Const1D, Identity

    factor = 1.0 / (1.0 + velosys / SPEED_OF_LIGHT)
    corr = Identity(1) * Const1D(factor, name="velocity_correction")
    corr.inverse = Identity(1) / Const1D(factor, name="inv_vel_correction")
    return corr


def _y_of_beta(msa2gwa, ymin, ymax):
    """The slit's along-slit position as a function of the GWA beta angle (a 1000-point table at x = 0)."""
    from astropy.modeling.models import Tabular1D

    dy = np.linspace(ymin, ymax, 1000)
    beta_in = msa2gwa(np.zeros(dy.shape), dy)[1]
    return Tabular1D(points=(beta_in,), lookup_table=dy, bounds_error=False, name="tabular")


def _outside_slit(ymin, ymax):
    """(x_slit, y_slit, lam) -> the same, all NaN where y_slit is outside [ymin, ymax]."""
    from astropy.modeling.models import Identity, Mapping, Scale
    from stdatamodels.jwst.transforms.models import Logical

    above = Logical(condition="GT", compareto=ymax, value=np.nan)
    below = Logical(condition="LT", compareto=ymin, value=np.nan)
    nan_or_zero = above | below | Scale(0)
    add = Mapping((0,), n_inputs=2) + Mapping((1,))
    t = Mapping((0, 1, 2, 1)) | Identity(3) & nan_or_zero | Mapping((0, 1, 3, 2, 3)) | Identity(1) & add & add
    t.inverse = Identity(3)
    return t


def gwa_to_slit(model, slit_models, disperser: Disperser, refs, order: int):
    from astropy.modeling.models import Const1D, Identity, Mapping
    from stdatamodels.jwst.transforms.models import Gwa2Slit

    agreq = angle_from_disperser(model, disperser, order)
    lgreq = wavelength_from_disperser(model, disperser, order)
    col2gwa = collimator_to_gwa(refs, disperser)
    velosys = model.meta.wcsinfo.velosys
    if velosys is not None:
        vcorr = velocity_correction(velosys)
        lgreq = lgreq | vcorr
        agreq = vcorr.inverse & Identity(3) | agreq
        log.info("Applied Barycentric velocity correction : %s", vcorr[1].amplitude.value)
    slits, transforms = [], []
    for s, slit2msa in slit_models:
        msa2gwa = slit2msa | col2gwa
        y_of_beta = _y_of_beta(msa2gwa, s.ymin, s.ymax)
        forward = (
            Mapping((0, 1, 0, 1), n_inputs=3)
            | Const1D(0) * Identity(1) & Const1D(-1) * Identity(1) & Identity(2)
            | Identity(1) & y_of_beta & Identity(2)
            | Mapping((0, 1, 0, 1, 2, 3))
            | Identity(2) & msa2gwa & Identity(2)
            | Mapping((0, 1, 2, 3, 5), n_inputs=7)
            | Identity(2) & lgreq
            | _outside_slit(s.ymin, s.ymax)
        )
        forward.inverse = msa2gwa & Identity(1) | Mapping((3, 0, 1, 2)) | agreq
        slits.append(s)
        transforms.append(forward)
    return Gwa2Slit(slits, transforms)


def slit_to_msa(slit_models):
    from astropy.modeling.models import Identity, Mapping
    from stdatamodels.jwst.transforms.models import Slit2Msa

    s2m = Slit2Msa([s for s, _ in slit_models], [t for _, t in slit_models])
    swap = Mapping((0, 1, 3, 2))
    swap.inverse = Mapping((0, 1, 3, 2))
    t = s2m & Identity(1) | swap
    t.inputs = ("name", "x_slit", "y_slit", "lam")
    t.outputs = ("x_msa", "y_msa", "lam", "name")
    return t


def msa_to_oteip(refs):
    from astropy.modeling.models import Identity, Mapping

    fore = _entry(refs["fore"], "fore", "model")
    dup = Mapping((0, 1, 2, 2), name="msa2fore_mapping")
    dup.inverse = Identity(3)
    t = (dup | fore & Identity(1)) & Identity(1)
    t.inputs = ("x_msa", "y_msa", "lam", "name")
    t.outputs = ("x_ote", "y_ote", "lam", "name")
    return t


def oteip_to_v23(refs):
    from astropy.modeling.models import Identity, Mapping, Scale

    ote = _entry(refs["ote"], "ote", "model")
    keep = Identity(3, name="fore2ote_mapping")
    keep.inverse = Mapping((0, 1, 2, 2))
    t = (keep | ote & Scale(1e6)) & Identity(1)
    t.inputs = ("x_ote", "y_ote", "lam", "name")
    t.outputs = ("v2", "v3", "lam", "name")
    return t


def frames():
    from astropy import coordinates as coord
    from astropy import units as u
    from gwcs import coordinate_frames as cf

    spec = cf.SpectralFrame(name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",))

    def f2(name, unit, axes):
        return cf.Frame2D(name=name, axes_order=(0, 1), unit=unit, axes_names=axes)

    return {
        "detector": cf.Frame2D(name="detector", axes_order=(0, 1)),
        "sca": cf.Frame2D(name="sca", axes_order=(0, 1)),
        "gwa": f2("gwa", (u.rad, u.rad), ("alpha_in", "beta_in")),
        "slit_frame": cf.CompositeFrame([f2("slit_spatial", ("", ""), ("x_slit", "y_slit")), spec], name="slit_frame"),
        "msa_frame": cf.CompositeFrame([f2("msa_spatial", (u.m, u.m), ("x_msa", "y_msa")), spec], name="msa_frame"),
        "oteip": cf.CompositeFrame([f2("oteip", (u.deg, u.deg), ("X_OTEIP", "Y_OTEIP")), spec], name="oteip"),
        "v2v3": cf.CompositeFrame([f2("v2v3_spatial", (u.arcsec, u.arcsec), ("v2", "v3")), spec], name="v2v3"),
        "v2v3vacorr": cf.CompositeFrame([f2("v2v3vacorr_spatial", (u.arcsec, u.arcsec), ("v2", "v3")), spec],
                                        name="v2v3vacorr"),
        "world": cf.CompositeFrame([cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS()),
                                    spec], name="world"),
    }


# ---------------------------------------------------------------------------
# bounding boxes and the detector check


def _bbox_from(x, y):
    # slit -> detector gives 1-based pixels: -1, then 10 columns and 2 rows of margin, clipped
    return ((max(0, x.min() - 1 - 10) - 0.5, min(2047, x.max() - 1 + 10) + 0.5),
            (max(0, y.min() - 1 - 2) - 0.5, min(2047, y.max() - 1 + 2) + 0.5))


def slit_bounding_box(slit2det, sid, wrange, ymin, ymax, det2slit=None):
    """A slit's box on the detector from its edges traced over the wavelength range (see the module docstring)."""
    from gwcs.wcstools import grid_from_bounding_box

    lo, hi = wrange
    n = int((hi - lo) / 1e-10)
    lam = np.linspace(lo, hi, n)
    zeros = [0] * n
    x_lo, y_lo, _ = slit2det(sid, zeros, [ymin] * n, lam)
    x_hi, y_hi, _ = slit2det(sid, zeros, [ymax] * n, lam)
    xs, ys = np.hstack((x_lo, x_hi)), np.hstack((y_lo, y_hi))
    bbox = _bbox_from(xs, ys)
    if det2slit is not None and bbox[0][0] <= bbox[0][1] and bbox[1][0] <= bbox[1][1]:
        gx, gy = grid_from_bounding_box(bbox)
        wl = det2slit(gx, gy, sid)[3]
        good = np.isfinite(wl)
        if np.any(good):
            bbox = _bbox_from(xs, gy[good])
    return bbox


def _on_detector(bbox) -> bool:
    (x0, x1), (y0, y1) = bbox
    return not (x0 >= 2048 or y0 >= 2048 or x1 <= 0 or y1 <= 0 or x1 - x0 < 2 or y1 - y0 < 1)


def slits_on_detector(model, slits, refs, disperser: Disperser, order: int, wrange):
    """Drop the slits whose projection misses the detector (jwst's validate_open_slits)."""
    from astropy.modeling.models import Identity, Mapping

    det2dms = dms_to_sca(model).inverse[:-1]
    agreq = angle_from_disperser(model, disperser, order)
    gwa2det = detector_to_gwa(refs, model.meta.instrument.detector, disperser)[:-2].inverse
    col2det = (Mapping((0, 1, 3, 2)) | collimator_to_gwa(refs, disperser) & Identity(2) | Mapping((3, 0, 1, 2, 4))
               | agreq & Identity(1) | gwa2det & Identity(1) | det2dms & Identity(1))
    slit2msa = slit_to_msa(_slit_models(slits, refs["msa"]))[0]
    kept = list(slits)
    for s in slit2msa.slits:
        bb = slit_bounding_box(slit2msa & Identity(1) | col2det, s.slit_id, wrange, s.ymin, s.ymax)
        if not _on_detector(bb):
            log.info("Removing slit %s from the list of open slits because the WCS bounding_box is completely "
                     "outside the detector.", s.name)
            kept = [k for k in kept if k.name != s.name]
    return kept


def compound_bounding_box(wcs, slits, wrange):
    from astropy.modeling import bounding_box as mbbox

    forward = wcs.forward_transform
    forward.inputs = ("x", "y", "name")
    det2slit = wcs.get_transform("detector", "slit_frame")
    slit2det = det2slit.inverse
    boxes = {}
    for s in slits:
        # the detector -> slit transform takes (x, y, name); its inverse (name, x, y, lam)
        boxes[s.slit_id] = slit_bounding_box(slit2det, s.slit_id, wrange, s.ymin, s.ymax,
                                             det2slit=lambda x, y, sid: det2slit(x, y, sid))
    return mbbox.CompoundBoundingBox.validate(forward, boxes, selector_args=[("name", True)], order="F")


# ---------------------------------------------------------------------------
# the pipeline and the step


def _check_pointing(model):
    w = model.meta.wcsinfo
    missing = [k.upper() for k in ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref") if getattr(w, k) is None]
    if missing:
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"has no pointing keywords {', '.join(missing)} in its SCI header; cannot build a WCS")


def slits_pipeline(model, refs, slit_y_range=(-0.55, 0.55)):
    """(gwcs pipeline, open slits, wavelength range) of a fixed-slit or bright-object exposure."""
    from astropy.modeling.models import Identity

    from .. import _wcs

    inst = model.meta.instrument
    disperser = Disperser(refs["disperser"], inst.gwa_xtilt, inst.gwa_ytilt)
    order, wrange = order_and_range(model, refs["wavelengthrange"])
    model.meta.wcsinfo.waverange_start, model.meta.wcsinfo.waverange_end = wrange[0], wrange[1]
    model.meta.wcsinfo.spectral_order = order
    slits = slits_on_detector(model, open_slits(model, slit_y_range, refs["msa"]), refs, disperser, order, wrange)
    if not slits:
        return None, [], wrange
    log.info("Slits projected on detector %s: %s", inst.detector, [str(s.name) for s in slits])
    log.info("SPORDER= %s, wrange=%s", order, wrange)
    slit_models = _slit_models(slits, refs["msa"])

    dms2sca = dms_to_sca(model)
    dms2sca.name = "dms2sca"
    det2gwa = detector_to_gwa(refs, inst.detector, disperser)
    det2gwa.name = "det2gwa"
    gwa2slit = gwa_to_slit(model, slit_models, disperser, refs, order)
    gwa2slit.name = "gwa2slit"
    slit2msa = slit_to_msa(slit_models)
    slit2msa.name = "slit2msa"
    f = frames()
    if (inst.filter or "").upper() == "OPAQUE":
        return [(f["detector"], dms2sca), (f["sca"], det2gwa), (f["gwa"], gwa2slit),
                (f["slit_frame"], slit2msa), (f["msa_frame"], None)], slits, wrange

    msa2oteip = msa_to_oteip(refs)
    msa2oteip.name = "msa2oteip"
    oteip2v23 = oteip_to_v23(refs)
    oteip2v23.name = "oteip2v23"
    w = model.meta.wcsinfo
    va = _wcs.dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref) & Identity(2)
    va.name = "va_corr"
    va.inputs = ("v2", "v3", "lam", "name")
    va.outputs = ("v2", "v3", "lam", "name")
    tel2sky = _wcs.v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref) & Identity(2)
    tel2sky.name = "v2v3_to_sky"
    tel2sky.inputs = ("v2", "v3", "lam", "name")
    tel2sky.outputs = ("ra", "dec", "lam", "name")
    pipeline = [
        (f["detector"], dms2sca), (f["sca"], det2gwa), (f["gwa"], gwa2slit), (f["slit_frame"], slit2msa),
        (f["msa_frame"], msa2oteip), (f["oteip"], oteip2v23), (f["v2v3"], va), (f["v2v3vacorr"], tel2sky),
        (f["world"], None),
    ]
    return pipeline, slits, wrange


def fix_slit(t, n):
    """The transform ``t`` with its slit or IFU slice (``name``) input fixed to ``n`` and the name output dropped."""
    from astropy.modeling import fix_inputs
    from astropy.modeling.models import Identity, Mapping

    if t is None:
        return None
    if t.name == "gwa2slit":
        new = t.get_model(n)
        new.name, new.inputs, new.outputs = t.name, t.inputs[1:], t.outputs[1:]
        return new
    if t.name in ("slit2msa", "slit2slicer"):
        new = t[0].get_model(n) & Identity(1)
        new.name, new.inputs, new.outputs = t.name, t.inputs[1:], t.outputs[:-1]
        return new
    if "name" not in t.inputs:
        return t
    keep = [i for i, o in enumerate(t.outputs) if o != "name"]
    name_out = t.outputs.index("name")
    drop = Mapping(tuple(keep), n_inputs=t.n_outputs)
    drop.inverse = Identity(len(keep))
    new = fix_inputs(t, {"name": n}) | drop
    new.name = t.name
    new.outputs = tuple(t.outputs[i] for i in keep)
    if t.has_inverse():
        inv = t.inverse
        inv_in = inv.inputs[0] if name_out == 0 else inv.inputs[-1]
        back = t.inputs.index("name")
        if back != 0:
            back = inv.n_outputs - 1
        keep_back = tuple(i for i in range(inv.n_outputs) if i != back)
        drop_back = Mapping(keep_back, n_inputs=inv.n_outputs)
        drop_back.inverse = Identity(len(keep_back))
        new.inverse = fix_inputs(inv, {inv_in: n}) | drop_back
    return new


def slit_wcs(model, name):
    """The WCS of one slit (by name or id): the slit input fixed, with that slit's bounding box."""
    from gwcs import WCS

    full = model.meta.wcs
    sid = slit_id(str(name).upper()) if str(name).upper() in FIXED_SLIT_NUMS else name
    if sid not in full.get_transform("gwa", "slit_frame").slit_ids:
        raise ValueError(f"Input slit name {name} is not present in the input model.")
    steps = []
    for st in full.pipeline:
        new = fix_slit(st.transform, sid)
        steps.append((st.frame, new))
    w = WCS(steps)
    if full.bounding_box is not None:
        w.bounding_box = full.bounding_box[sid]
    return w


def assign(model, refs, params):
    from gwcs import WCS

    for rt in REFTYPES:
        if refs.get(rt) is None:
            log.info("Step assign_wcs skipped: reference type %s is N/A for this exposure", rt)
            return model, "SKIPPED"
    _check_pointing(model)
    if (model.meta.instrument.grating or "").upper() == "PRISM" and model.meta.instrument.gwa_tilt is None:
        raise InputFileError(model.meta.filename or "<in memory>", "has no GWA_TILT (the prism's temperature)")
    model.meta.wcsinfo.specsys = "BARYCENT"
    model.meta.wcsinfo.dispersion_direction = 1
    pipeline, slits, wrange = slits_pipeline(model, refs, (params.slit_y_low, params.slit_y_high))
    if pipeline is None:
        raise InputFileError(model.meta.filename or "<in memory>",
                             f"no open slit falls on detector {model.meta.instrument.detector}")
    wcs = WCS(pipeline)
    model.meta.wcs = wcs
    wcs.bounding_box = compound_bounding_box(wcs, slits, wrange)
    log.info("assign_wcs: NIRSpec %s WCS built for slits %s", model.meta.exposure.type,
             ", ".join(str(s.name) for s in slits))
    return model


__all__ = ["assign", "reftypes", "slit_wcs", "slit_id", "slit_name", "slits_pipeline"]
