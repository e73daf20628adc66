"""Simulated NIRSpec multi-object spectroscopy (NRS_MSASPEC): three-shutter slitlets nodded along themselves.

``webbflow simulate --instrument nirspec --exp-type NRS_MSASPEC [--grating PRISM --filter CLEAR] [--readpatt
NRSRAPID|NRSIRS2RAPID|NRSIRS2]``: a few
three-shutter slitlets of the MSA (quadrants 3 and 4, whose PRISM spectra fall whole on NRS1 and apart from
each other and from the fixed slits' traces), each with a point source, observed in a ``3-SHUTTER-SLITLET``
nod (NOD_TYPE; PATTTYPE NONE, NUMDTHPT 3, PATT_NUM 1-3): three FULL-frame NRSRAPID exposures, the source in
the slitlet's middle shutter, then in the next one up the slitlet, then in the one below (the telescope
offsets by one shutter pitch between them; XOFFSET/YOFFSET in the NRS_FULL_MSA aperture's ideal frame).
PRISM/CLEAR by default; ``--grating``/``--filter`` choose a grating and its filter as in refs/sim/nirspec.py
(the gratings' synthetic dispersers and the filters' fore optics; a grating's spectra are longer: an M
grating's run over most of NRS1, an H grating's off its edge onto NRS2).  IRS2 readouts (NRSIRS2RAPID,
NRSIRS2) as the fixed-slit simulator writes them.

**The MSA metadata file** (``jw<program><obs><visit>_01_msa.fits``, named in each exposure's MSAMETFL, with
MSAMETID 1) is written beside the exposures in the form MAST delivers (the real
jw02736007001_01_msa.fits): SHUTTER_IMAGE (the open shutters of the four quadrants), SHUTTER_INFO (one row
per open shutter and dither point: slitlet_id, msa_metadata_id, shutter_quadrant/row/column, source_id,
background, shutter_state, estimated_source_in_shutter_x/y, dither_point_index, primary_source and the newer
fixed_slit column, NONE for the MSA's shutters) and SOURCE_INFO (program, source_id, source_name, alias, ra,
dec, preimage_id, stellarity 1: point sources by srctype's rule).  A source's RA/Dec is the sky position of
its place in the shutter through the first exposure's WCS; each nod's pointing is built so that the source
lands at the same place in its shutter of that dither point (within 30 mas: the field
distortion makes the nod step differ by ~10 mas across the MSA).

**Fixed slits in the same exposure** (FIXED_SLITS: S200A1, S400A1), as MAST's newer MSA files list them: one
SHUTTER_INFO row per slit and dither point (slitlet_id 100+, quadrant, row and column 0, the slit's name in
``fixed_slit``, its source primary), each slit with a point source (SOURCE_INFO, stellarity 1) placed at
FS_IN_SLIT at the first dither point; the nod moves it along the slit, and its place at each dither point
(through that exposure's WCS) is the row's estimated_source_in_shutter_x/y.  Their light is rendered as the
fixed-slit simulator renders it (the slit's width and length, the FS pathloss law and photom row).

**Light goes where the optical model sends it**, as in refs/sim/nirspec.py: for every pixel of a slitlet's
bounding box, webbflow's assign_wcs (identical to jwst's) gives (x_slit, y_slit, lambda) through the real
optical chain; the pixel gets the source's F_nu times its Gaussian share along the slitlet (the pathloss
reference's PSF width over the open shutter length, times |d y_slit / d row|), times the fraction the
shutter passes (the MOS pathloss law at the source's place), over the MOS photom conversion PHOTMJ x
RELRESPONSE.  The sky fills the open shutters of every slitlet; each nod is the others' background (jwst's
Asn_Lv2NRSMSA), so it cancels in spec2.  Barshadow corrects extended sources only; the flats (~1 +- a few
per cent) are not in the scene.

What goes into DIR: the uncal files and the MSA metadata file, a CRDS cache (CRDS_PATH=DIR) with the
detector references (refs/sim/nirspec_detector.py), the real optical chain, webbflow's msa reference, the
MOS msaoper (one stuck-open shutter away from the slitlets), wavecorr (the real FS file plus a MOS
aperture), pathloss (MOS1x1, MOS1x3), photom and area in the MOS models' forms, the MSA f-flat, s and d
flats, barshadow and an extract1d reference (a box of EXTRACT_WIDTH pixels following the source:
``use_source_posn``), apcorr N/A; for the fixed slits (selected by EXP_TYPE NRS_FIXEDSLIT, as jwst asks
for them) the fixed-slit simulator's pathloss, photom, area, f-flat and s-flat, extract1d and apcorr N/A; the pool and the associations jwst's rules make (spec2 per nod with the
other two as background, one spec3 of the three); ``truth/``: ``<stem>_spectra.ecsv`` (wavelength and each
source's F_nu in Jy above the telescope) and the cosmic rays.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from .. import simulator as S
from . import _common as C
from . import nirspec as N
from . import nirspec_detector as D

MSASPEC = "NRS_MSASPEC"
DEFAULTS = dict(ngroups=3, nints=1, nexp=3)
# (quadrant, shutter row, middle shutter column) of each slitlet: PRISM spectra whole on NRS1, apart
SLITLETS = ((3, 170, 70), (3, 250, 130), (4, 210, 70))
SOURCE_SCALES = (1.0, 0.6, 0.8)  # each source's brightness relative to the first
IN_SHUTTER = (0.5, 0.45)  # estimated_source_in_shutter_x/y of the sources (0..1 across the open shutter)
NOD_COLUMNS = (0, 1, -1)  # the source's shutter column at each dither point, from the slitlet's middle
FAILED_OPEN = ((4, 90, 130),)  # msaoper: a stuck-open shutter, its spectrum on NRS1 away from the slitlets
EXTRACT_WIDTH = 5  # pixels of the extract1d box about the source
# fixed slits opened in the same exposure, each with a point source (the MSA metadata file's fixed_slit rows):
# (slit, brightness relative to the first slitlet's source); their PRISM spectra fall on NRS1 apart from the slitlets'
FIXED_SLITS = (("S200A1", 0.7), ("S400A1", 0.5))
FS_IN_SLIT = (0.5, 0.5)  # the fixed-slit sources' place in their slit at the first dither point (0..1 across)
NOD_TYPE = "3-SHUTTER-SLITLET"
PITCH_Y = 1.15  # shutter pitch / open length along a slitlet (jwst's slit_y margins use it)


def msa_filename(program: str, observation: str, visit: str) -> str:
    return f"jw{program}{observation}{visit}_01_msa.fits"


# ---------------------------------------------------------------------------
# the MSA metadata file


SHUTTER_DTYPE = [("slitlet_id", ">i2"), ("msa_metadata_id", ">i2"), ("shutter_quadrant", ">i2"),
                 ("shutter_row", ">i2"), ("shutter_column", ">i2"), ("source_id", ">i4"), ("background", "S1"),
                 ("shutter_state", "S6"), ("estimated_source_in_shutter_x", ">f4"),
                 ("estimated_source_in_shutter_y", ">f4"), ("dither_point_index", ">i2"), ("primary_source", "S1"),
                 ("fixed_slit", "S7")]
SOURCE_DTYPE = [("program", ">i4"), ("source_id", ">i4"), ("source_name", "S20"), ("alias", "S31"), ("ra", ">f8"),
                ("dec", ">f8"), ("preimage_id", "S30"), ("stellarity", ">f8")]


def source_id(k: int) -> int:
    return 1001 + k


def slitlet_grid() -> list[tuple[int, int, int]]:
    """Candidate slitlets for ``--slits N`` (quadrant, shutter row, middle column): quadrants 3 and 4 (PRISM spectra
    on NRS1), two shutter rows per quadrant (their spectra side by side along the dispersion, ~480 pixels apart),
    every sixth column (~30 pixels apart across it); the scene keeps those whose cutouts fall whole on NRS1 apart
    from the others' and the fixed slits'."""
    return [(q, r, c) for q, rows in ((3, (30, 210)), (4, (60, 240))) for r in rows for c in range(3, 171, 6)]


def shutter_rows(slitlets=SLITLETS, ndither: int = 3, in_shutter=IN_SHUTTER) -> np.ndarray:
    """SHUTTER_INFO: every open shutter of every slitlet at every dither point (MSAMETID 1)."""
    rows = []
    for d in range(1, ndither + 1):
        for k, (q, r, c) in enumerate(slitlets):
            here = c + NOD_COLUMNS[d - 1]
            for col in (c - 1, c, c + 1):
                main = col == here
                rows.append((k + 1, 1, q, r, col, source_id(k), "N" if main else "Y", "OPEN",
                             in_shutter[0] if main else np.nan, in_shutter[1] if main else np.nan, d,
                             "Y" if main else "N", "NONE"))
    return np.array(rows, dtype=SHUTTER_DTYPE)


def fs_source_id(i: int, nslit: int) -> int:
    return source_id(nslit + i)


def fixed_slit_rows(nslit: int, places: dict | None = None, ndither: int = 3) -> np.ndarray:
    """SHUTTER_INFO rows of the fixed slits, one per slit and dither point, as MAST writes them: slitlet_id after the
    MSA's, quadrant/row/column 0, the slit in ``fixed_slit``, its source primary with its place in the slit
    (``places[(slit, dither)] = (x, y)``, 0..1 across; FS_IN_SLIT until the scene has placed it)."""
    rows = []
    for d in range(1, ndither + 1):
        for i, (name, _scale) in enumerate(FIXED_SLITS):
            x, y = (places or {}).get((name, d), FS_IN_SLIT)
            rows.append((100 + i, 1, 0, 0, 0, fs_source_id(i, nslit), "N", "OPEN", x, y, d, "Y", name))
    return np.array(rows, dtype=SHUTTER_DTYPE)


def write_msa_file(path: Path, program: str, observation: str, visit: str, shutters: np.ndarray,
                   sources: list[tuple[int, float, float]]) -> Path:
    """The MSA metadata file in the real file's form (primary keywords, SHUTTER_IMAGE, SHUTTER_INFO, SOURCE_INFO)."""
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    from ...models.atomic import atomic_open

    prog = int(program)
    src = []
    for sid, ra, dec in sources:
        c = SkyCoord(ra, dec, unit="deg")
        alias = f"{c.ra.to_string(unit='hourangle', sep=':', precision=4, pad=True)} " \
                f"{c.dec.to_string(sep=':', precision=2, alwayssign=True, pad=True)}"
        src.append((prog, sid, f"{prog}_{sid}", alias, ra, dec, "None", 1.0))
    image = np.zeros((730, 342), np.int16)  # 2 x 365 shutter rows by 2 x 171 columns (Q1 Q2 / Q3 Q4)
    for s in shutters:
        q, r, c = int(s["shutter_quadrant"]), int(s["shutter_row"]), int(s["shutter_column"])
        if 1 <= q <= 4:
            image[(r - 1) + (365 if q in (2, 4) else 0), (c - 1) + (171 if q in (3, 4) else 0)] = 1
    h = fits.Header()
    for key, val, com in (("ORIGIN", "STSCI", "institution responsible for creating FITS file"),
                          ("TELESCOP", "JWST", "telescope used to acquire data"),
                          ("INSTRUME", "NIRSPEC", "identifier for instrument used to acquire data"),
                          ("DATE", "2024-01-10T00:00:00", ""), ("FILENAME", path.name, "name of file"),
                          ("PPSDBVER", "PPSDB999", "version of PPS database used"),
                          ("PROGRAM", program, "program number"), ("VISIT", visit, "visit number"),
                          ("OBSERVTN", observation, "observation number"),
                          ("VISIT_ID", f"{program}{observation}{visit}", "visit identifier"),
                          ("MSACFG10", 1, "base 10 nirspec_msa_at_exposure_spec.msa_config"),
                          ("MSACFG36", "01", "base 36 version of MSACFG10")):
        h[key] = (val, com) if com else val
    hdus = fits.HDUList([fits.PrimaryHDU(header=h), fits.ImageHDU(image, name="SHUTTER_IMAGE"),
                         fits.BinTableHDU(shutters, name="SHUTTER_INFO"),
                         fits.BinTableHDU(np.array(src, dtype=SOURCE_DTYPE), name="SOURCE_INFO")])
    with atomic_open(path, "wb") as f:
        hdus.writeto(f)
    return path


# ---------------------------------------------------------------------------
# references and their CRDS rules


def write_msa_extract1d(path: Path, width: int = EXTRACT_WIDTH) -> Path:
    """The MOS extract1d reference (JSON, the real files' form): a box of ``width`` pixels about the source."""
    from ...models.atomic import atomic_write_text

    ref = {"reftype": "EXTRACT1D", "instrument": "NIRSPEC", "telescope": "JWST", "exp_type": MSASPEC,
           "pedigree": "GROUND", "description": "NIRSpec MOS extraction box about the source (webbflow synthetic)",
           "author": "webbflow synthetic", "useafter": "2015-11-01T00:00:00",
           "apertures": [{"id": "ANY", "region_type": "target", "bkg_order": 0, "dispaxis": 1,
                          "extract_width": int(width), "use_source_posn": True}]}
    atomic_write_text(Path(path), json.dumps(ref, indent=4) + "\n")
    return Path(path)


def _references(out: Path, detector: str, readpatt: str, ngroups: int, tframe: float, seed: int,
                grating: str = "PRISM", filt: str = "CLEAR"):
    """The detector references and the MOS ones, in the cache with rules selecting them for NRS_MSASPEC."""
    from .. import context as ctxmod
    from .. import synthetic_nirspec_flat as F
    from .. import synthetic_nirspec_spec2 as P
    from ..synthetic_nirspec import nirspec_detector_references
    from ..synthetic_nirspec_optics import write_msa_reference

    real = N.require_real_refs((*N.OPTICS.values(), *N.REAL_SPEC2.values(), N.REAL_PHOTOM))
    det_refs = nirspec_detector_references(detector, readpatt, ngroups, tframe, seed=seed)
    D.write_reference_cache(out, det_refs, detector, readpatt)
    with ctxmod.cache_lock(out):
        names, new = N.cache_namer(out)
        N.write_optics(real, new, grating, filt)
        write_msa_reference(new("msa", ".asdf"))
        P.write_msaoper(new("msaoper", ".json"), FAILED_OPEN)
        P.write_wavecorr(new("wavecorr", ".asdf"), real / N.REAL_SPEC2["wavecorr"])
        P.write_pathloss(new("pathloss", ".fits"), "MOS")
        P.write_mos_photom(new("photom", ".fits"), real / N.REAL_PHOTOM)
        P.write_mos_area(new("area", ".fits"))
        F.write_fflat_msa(new("fflat", ".fits"), grating=grating, filt=filt)
        F.write_sflat(new("sflat", ".fits"), exp_type=MSASPEC, detector=detector, grating=grating, filt=filt)
        F.write_dflat(new("dflat", ".fits"), detector=detector)
        F.write_barshadow(new("barshadow", ".fits"), grating=grating, filt=filt)
        write_msa_extract1d(new("extract1d", ".json"))
        # the fixed slits of the exposure: jwst calibrates them with EXP_TYPE NRS_FIXEDSLIT, so CRDS selects the
        # fixed-slit references for them (the FS simulator's): the wavecorr (FS apertures and MOS) and dflat are shared
        fs_names, fs_new = N.cache_namer(out)
        shutil.copyfile(real / N.REAL_SPEC2["area"], fs_new("area", ".fits"))
        P.write_pathloss(fs_new("pathloss", ".fits"), "FS")
        P.write_fs_photom(fs_new("photom", ".fits"), real / N.REAL_PHOTOM)
        F.write_fflat_fs(fs_new("fflat", ".fits"), exp_type=N.FS, grating=grating, filt=filt)
        F.write_sflat(fs_new("sflat", ".fits"), exp_type=N.FS, detector=detector, grating=grating, filt=filt)
        fs_names.update({rt: names[rt] for rt in ("wavecorr", "dflat")})

        ctx = ctxmod.read_context(out)
        rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
        N.select_for_mode(rules.setdefault("NIRSPEC", {}), names, detector, MSASPEC, na=("apcorr",))
        N.select_for_mode(rules["NIRSPEC"], fs_names, detector, N.FS, na=("extract1d", "apcorr", "barshadow"))
        context = ctxmod.write_context(out, rules, f"webbflow simulated NIRSpec {MSASPEC} ({detector})").context
    paths = {rt: ctxmod.reference_path(out, n) for rt, n in names.items()}
    fs_paths = {rt: ctxmod.reference_path(out, n) for rt, n in fs_names.items()}
    return det_refs, paths, fs_paths, context


def _photom_conversion(path: Path, grating: str = "PRISM", filt: str = "CLEAR"):
    """(PHOTMJ x RELRESPONSE)(lambda um) of the MOS photom's row for the filter and grating: MJy per DN/s."""
    from astropy.io import fits

    with fits.open(path) as h:
        for row in h["PHOTOM"].data:
            if (str(row["filter"]).strip(), str(row["grating"]).strip()) == (filt, grating):
                n = int(row["nelem"])
                wl, rr = np.array(row["wavelength"][:n], float), np.array(row["relresponse"][:n], float)
                pm = float(row["photmj"])
                return lambda lam: pm * np.interp(lam, wl, rr, left=np.nan, right=np.nan)
    raise ParameterError(f"{path.name}: no {filt}/{grating} row")


# ---------------------------------------------------------------------------
# the scene


@dataclass
class _Slitlet:
    """One slitlet's WCS in one exposure and its pixels: the bounding box's (rows, columns) and the slit frame."""

    sid: int
    wcs: object
    rows: slice
    cols: slice
    xs: np.ndarray
    ys: np.ndarray
    lam: np.ndarray  # um, NaN off the slitlet


def _wcs_model(model, msa_path: Path, refpaths: dict):
    """webbflow's assign_wcs on an image of the exposure (its MSA file found beside it)."""
    from ...tasks import load_all
    from ...tasks.base import run_step

    load_all()
    img = N._image_like(model, N.Window("FULL", 1, 2048, 1.0))
    img._path = str(msa_path.parent / (model.meta.filename or "x_uncal.fits"))
    wrefs = {rt: str(refpaths[rt]) for rt in (*N.OPTICS, "msa")}
    return run_step("assign_wcs", img, {}, references=wrefs).model


def _slitlets(wmodel, names) -> list[_Slitlet]:
    """The WCS and bounding-box pixels of the slits ``names`` (slitlet ids, fixed slits' names)."""
    from ...tasks.assign_wcs.nirspec import slit_wcs

    out = []
    for sid in names:
        w = slit_wcs(wmodel, sid)
        (x0, x1), (y0, y1) = w.bounding_box.bounding_box(order="F")
        rows = slice(max(int(math.floor(y0 + 0.5)), 0), min(int(math.floor(y1 + 0.5)) + 1, 2048))
        cols = slice(max(int(math.floor(x0 + 0.5)), 0), min(int(math.floor(x1 + 0.5)) + 1, 2048))
        y, x = np.mgrid[rows, cols]
        xs, ys, lam = w.get_transform("detector", "slit_frame")(x.astype(float), y.astype(float))
        lam = np.asarray(lam, float) * 1e6
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        bad = ~(np.isfinite(lam) & np.isfinite(ys) & np.isfinite(xs))
        lam[bad], ys[bad], xs[bad] = np.nan, np.nan, np.nan
        out.append(_Slitlet(sid, w, rows, cols, xs, ys, lam))
    return out


def _render(sl: _Slitlet, src_x: float, src_y: float, conversion, scale_mjy: float, nod_column: int):
    """(source DN/s, sky DN/s) of a slitlet's box.  The slit frame's y is in open-shutter lengths from the
    source's shutter centre; the slitlet's shutters sit at (j - nod_column) x PITCH_Y, j = -1, 0, 1."""
    from .. import synthetic_nirspec_spec2 as P

    width, length = P.SHUTTER
    ok = np.isfinite(sl.lam)
    lam = np.where(ok, sl.lam, 2.0)
    conv = conversion(lam)
    ok &= np.isfinite(conv) & (conv > 0)
    ys = np.where(ok, sl.ys, 0.0)
    sigma = P.psf_sigma_arcsec(lam * 1e-6) / length
    dy = np.abs(np.gradient(ys, axis=0))
    dy = np.where(ok & np.isfinite(dy) & (dy < 1.0), dy, np.nanmedian(np.where(ok, dy, np.nan)))
    profile = np.exp(-0.5 * ((ys - src_y) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma) * dy
    passed = P.point_source_throughput(lam * 1e-6, src_x, src_y, width, length)
    flux = N.source_spectrum(lam, scale_mjy) * 1e-9  # MJy
    source = np.where(ok, flux * passed * profile / np.where(ok, conv, 1.0), 0.0)
    centres = (np.array([-1, 0, 1]) - nod_column) * PITCH_Y
    open_ = np.zeros(ys.shape, bool)
    for c in centres:
        open_ |= np.abs(ys - c) <= 0.5
    pix_sr = (0.1 / 206264.806) ** 2
    table = np.array(S._SKY_TABLE)
    sb = np.exp(np.interp(lam, table[:, 0], np.log(table[:, 1])))
    sky = np.where(ok & open_, sb * pix_sr * P.uniform_throughput(lam * 1e-6, width) / np.where(ok, conv, 1.0), 0.0)
    return source, sky


# ---------------------------------------------------------------------------
# the observation


def _choose_slitlets(model, msa_path: Path, refpaths: dict, ids, wanted: int):
    """``--slits N``: the first N slitlets of :func:`slitlet_grid` whose cutouts (at every nod: the slitlet's three
    shutters) lie whole on NRS1, 2 pixels or more from the fixed slits' and from those already chosen.

    Returns (the chosen slitlets, the first exposure's WCS model of all the candidates, the chosen ones' slit ids in
    it): a slitlet's WCS depends on its shutters and the pointing alone, so the scene places the first exposure's
    light through that model rather than building the exposure's WCS again (assign_wcs on a hundred slitlets is
    the simulation's largest cost)."""
    grid = slitlet_grid()
    nslit = len(grid)
    write_msa_file(msa_path, ids.program, ids.observation, ids.visit,
                   np.concatenate([shutter_rows(grid, ndither=1), fixed_slit_rows(nslit, ndither=1)]),
                   [(source_id(k), 0.0, 0.0) for k in range(nslit + len(FIXED_SLITS))])
    w = _wcs_model(model, msa_path, refpaths)
    on = set(w.meta.wcs.get_transform("gwa", "slit_frame").slit_ids)

    def box(sl):
        (x0, x1), (y0, y1) = sl.wcs.bounding_box.bounding_box(order="F")
        return x0 - 2, x1 + 2, y0 - 2, y1 + 2

    taken = [box(sl) for sl in _slitlets(w, [n for n, _ in FIXED_SLITS])]
    chosen, sids = [], []
    for sid in range(1, nslit + 1):
        if sid not in on:
            continue
        b = box(_slitlets(w, [sid])[0])
        if b[0] < 0 or b[1] > 2047 or b[2] < 0 or b[3] > 2047:
            continue
        if any(b[0] < t[1] and t[0] < b[1] and b[2] < t[3] and t[2] < b[3] for t in taken):
            continue
        taken.append(b)
        chosen.append(grid[sid - 1])
        sids.append(sid)
        if len(chosen) == wanted:
            return chosen, w, sids
    raise ParameterError(f"{MSASPEC}: --slits {wanted}: only {len(chosen)} slitlets fit on NRS1 apart from each other")


def _check(instrument, detector, slit, subarray, readpatt, nexp, size, build_refs, slits=None):
    from ..synthetic_nirspec import READPATTS

    if (instrument or "nirspec").lower() != "nirspec":
        raise ParameterError(f"{MSASPEC} is a NIRSpec mode; use --instrument nirspec")
    if (detector or "NRS1").upper() != "NRS1":
        raise ParameterError(f"{MSASPEC}: the slitlets' spectra are simulated on NRS1 "
                             f"(got --detector {detector})")
    if slit is not None:
        raise ParameterError(f"{MSASPEC}: the exposure opens the fixed slits {' and '.join(n for n, _ in FIXED_SLITS)} "
                             f"with the slitlets; drop --slit {slit}")
    if slits is not None and not 1 <= int(slits) <= len(slitlet_grid()):
        raise ParameterError(f"{MSASPEC}: --slits takes 1 to {len(slitlet_grid())} slitlets (got {slits})")
    if (subarray or "FULL").upper() != "FULL":
        raise ParameterError(f"{MSASPEC} exposures are read in FULL frame (got --subarray {subarray})")
    if (readpatt or "NRSRAPID").upper() not in READPATTS:
        raise ParameterError(f"{MSASPEC}: readout pattern {readpatt} is not simulated; choose {', '.join(READPATTS)}")
    if nexp not in (None, 1, 3):  # the generic default is 1
        raise ParameterError(f"{MSASPEC}: the {NOD_TYPE} nod has 3 exposures (got --nexp {nexp})")
    if size is not None:
        raise ParameterError(f"{MSASPEC}: exposures are FULL frame; drop --size")
    if not build_refs:
        raise ParameterError(f"{MSASPEC}: the scene is placed through the references' optical model; drop --no-refs")


def _nod_metadata(model, ids, k, nexp, pointing, setup, target_ra, target_dec, offsets, msa_name,
                  optics=("PRISM", "CLEAR")):
    N._metadata(model, exp_type=MSASPEC, slit="S200A1", window=N.Window("FULL", 1, 2048, 0.0), ids=ids, k=k,
                nexp=nexp, pointing=pointing, setup=setup, target_ra=target_ra, target_dec=target_dec, offsets=offsets,
                grating=optics[0], filt=optics[1])
    m = model.meta
    m.exposure.type = MSASPEC
    ins = m.instrument
    ins.fixed_slit = "NONE"
    ins.msa_metadata_file, ins.msa_metadata_id = msa_name, 1
    m.observation.template = "NIRSpec MultiObject Spectroscopy"
    m.observation.observation_label = "webbflow simulated MOS slitlets"
    m.target.proposer_name = m.target.catalog_name = "SIMFIELD"
    m.target.source_type_apt = "POINT"
    m.aperture.name = m.aperture.pps_name = "NRS_FULL_MSA"
    d = m.dither
    d.primary_type = "NONE"  # a slitlet nod is no primary dither pattern: NOD_TYPE names it
    d.position_number, d.total_points, d.pattern_start, d.dither_points = k + 1, nexp, 1, nexp
    d.pattern_size = "DEFAULT"
    model.meta.filename = (f"jw{ids.program}{ids.observation}{ids.visit}_{ids.visit_group}{ids.sequence}"
                           f"{ids.activity}_{k + 1:05d}_nrs1_uncal.fits")


def _extra_keywords(path: Path, nexp: int) -> None:
    from astropy.io import fits

    with fits.open(path, mode="update") as h:
        h[0].header["PRIDTPTS"] = (nexp, "Number of points in primary dither pattern")
        h[0].header["NOD_TYPE"] = (NOD_TYPE, "Nod pattern type")
        h[0].header["MSACONID"] = (1, "MSA configuration ID")
        h[0].header["MSASTATE"] = ("CONFIGURED", "State of MSA: all open, all closed, configured")


def simulate(output_dir, *, instrument="nirspec", exp_type=MSASPEC, detector=None, subarray=None, size=None,
             ngroups=None, nints=None, nexp=None, seed=0, filter=None, grating=None,  # noqa: A002
             readpatt=None, slit=None, slits=None,
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, **_ignored) -> S.SimulationResult:
    """Write one nodded NIRSpec MOS observation (see the module) into ``output_dir``."""
    import pysiaf

    _check(instrument, detector, slit, subarray, readpatt, nexp, size, build_refs, slits)
    optics = N.optical_setup(MSASPEC, grating, filter)
    n_int = int(nints or DEFAULTS["nints"])
    if n_int < 1:
        raise ParameterError(f"{MSASPEC}: --nints must be at least 1 (got {nints})")
    n_groups = int(ngroups or DEFAULTS["ngroups"])
    if n_groups < 2:
        raise ParameterError("NIRSpec exposures need at least 2 groups")
    n_exp, detector, readpatt = 3, "NRS1", (readpatt or "NRSRAPID").upper()
    tframe = D.frame_time(readpatt)
    window = N.Window("FULL", 1, 2048, tframe)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    det_refs, paths, fs_paths, context = _references(out, detector, readpatt, n_groups, tframe, reference_seed,
                                                     *optics)

    ap = pysiaf.Siaf("NIRSpec")["NRS_FULL_MSA"]
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    msa_name = msa_filename(ids.program, ids.observation, ids.visit)
    msa_path = out / msa_name
    fs_names = [name for name, _ in FIXED_SLITS]
    setup = N._Aim(float(ap.V2Ref), float(ap.V3Ref), float(ap.V3IdlYAngle), int(ap.VIdlParity))
    t0 = _dt.datetime.fromisoformat(start_time)
    # the first exposure's WCS: the sources' sky positions and each nod's offset (one shutter pitch)
    src_x, src_y = IN_SHUTTER[0] - 0.5, IN_SHUTTER[1] - 0.5
    model, _ = N._exposure(MSASPEC, readpatt, n_groups, n_int, window, t0, seed)
    first = S.make_pointing(setup, target_ra, target_dec, pa_v3, 0.0, 0.0)
    _nod_metadata(model, ids, 0, n_exp, first, setup, target_ra, target_dec, (0.0, 0.0), msa_name, optics)
    if slits is None:
        layout, chooser = SLITLETS, None
    else:
        layout, *chooser = _choose_slitlets(model, msa_path, paths, ids, int(slits))

    nslit = len(layout)
    shutters = np.concatenate([shutter_rows(layout), fixed_slit_rows(nslit)])
    all_ids = [source_id(k) for k in range(nslit)] + [fs_source_id(i, nslit) for i in range(len(FIXED_SLITS))]
    write_msa_file(msa_path, ids.program, ids.observation, ids.visit, shutters, [(sid, 0.0, 0.0) for sid in all_ids])
    # the first exposure's WCS (the first nod is at the first pointing: its light is placed through it too)
    wmodel0, sids0 = chooser or (_wcs_model(model, msa_path, paths), list(range(1, nslit + 1)))
    slits0 = _slitlets(wmodel0, sids0)
    radec = []
    for sl in slits0:
        ra, dec, _ = sl.wcs.get_transform("slit_frame", "world")(src_x, src_y, 2e-6)
        radec.append((float(ra), float(dec)))
    fs_radec = []  # the fixed slits' sources: at FS_IN_SLIT in their slit at the first dither point
    for sl in _slitlets(wmodel0, fs_names):
        ra, dec, _ = sl.wcs.get_transform("slit_frame", "world")(FS_IN_SLIT[0] - 0.5, FS_IN_SLIT[1] - 0.5, 2e-6)
        fs_radec.append((float(ra), float(dec)))
    to_v23 = slits0[0].wcs.get_transform("slit_frame", "v2v3")
    v2a, v3a, _ = to_v23(src_x, src_y, 2e-6)
    xa, ya = ap.tel_to_idl(float(v2a), float(v3a))
    offsets = []
    for nc in NOD_COLUMNS:
        v2, v3, _ = to_v23(src_x, src_y + nc * PITCH_Y, 2e-6)
        xi, yi = ap.tel_to_idl(float(v2), float(v3))
        offsets.append((round(float(xi - xa), 4), round(float(yi - ya), 4)))
    write_msa_file(msa_path, ids.program, ids.observation, ids.visit, shutters,
                   list(zip(all_ids, *zip(*(radec + fs_radec)))))

    conversion = _photom_conversion(paths["photom"], *optics)
    fs_conversion = {name: N._photom_conversion(fs_paths["photom"], name, *optics) for name in fs_names}
    fs_places: dict = {}
    full_well = float(np.nanmedian(np.asarray(det_refs["saturation"].data)))
    uncal, crs, scale, placed = [], [], None, []
    start = t0
    for k in range(n_exp):
        model, dur = N._exposure(MSASPEC, readpatt, n_groups, n_int, window, start, seed + k)
        pointing = S.make_pointing(setup, target_ra, target_dec, pa_v3, *offsets[k])
        _nod_metadata(model, ids, k, n_exp, pointing, setup, target_ra, target_dec, offsets[k], msa_name, optics)
        if k == 0 and offsets[0] == (0.0, 0.0):  # the first pointing, the WCS made above
            wmodel, slits = wmodel0, slits0
        else:
            wmodel = _wcs_model(model, msa_path, paths)
            slits = _slitlets(wmodel, range(1, nslit + 1))
        rate = np.zeros((2048, 2048), np.float64)
        for j, sl in enumerate(slits):
            ra, dec, _ = sl.wcs.get_transform("slit_frame", "world")(src_x, src_y, 2e-6)
            miss = math.hypot((float(ra) - radec[j][0]) * math.cos(math.radians(radec[j][1])), float(dec) - radec[j][1])
            if miss * 3600 > (0.03 if slits is None else 0.15):  # the field distortion: ~10 mas, more at the edges
                raise RuntimeError(f"nod {k + 1}: source {source_id(j)} is {miss * 3600:.3f} arcsec from its "
                                   "shutter place")
            if scale is None:
                unit, _ = _render(sl, src_x, src_y, conversion, 1.0, NOD_COLUMNS[k])
                scale = N.PEAK_FILL * full_well / (float(unit.max()) * model.meta.exposure.integration_time)
            source, sky = _render(sl, src_x, src_y, conversion, scale * SOURCE_SCALES[j % 3], NOD_COLUMNS[k])
            rate[sl.rows, sl.cols] += source + sky
            placed.append((model.meta.filename, source_id(j), k + 1))
        for i, sl in enumerate(_slitlets(wmodel, fs_names)):  # the nod moves each fixed slit's source along it
            fx, fy, _ = sl.wcs.get_transform("world", "slit_frame")(*fs_radec[i], 2e-6)
            fx, fy = float(fx), float(fy)
            if not (abs(fx) < 0.5 and abs(fy) < 0.5):
                raise RuntimeError(f"nod {k + 1}: the source of {sl.sid} falls outside its slit ({fx:.3f}, {fy:.3f})")
            fs_places[(sl.sid, k + 1)] = (round(fx + 0.5, 4), round(fy + 0.5, 4))
            source, sky = N.render(sl.ys, sl.lam, fy, fx, sl.sid, fs_conversion[sl.sid], scale * FIXED_SLITS[i][1])
            rate[sl.rows, sl.cols] += np.where(np.isfinite(sl.lam), source + sky, 0.0)
            placed.append((model.meta.filename, fs_source_id(i, nslit), k + 1))
        rate = N._full_frame(window, rate.astype(np.float32))
        ramp, truth = D.simulate_nirspec_ramp(detector, readpatt, n_groups, n_int, det_refs, seed=seed * 101 + k,
                                              exp_type=MSASPEC, start_time=start.isoformat(), rate=rate,
                                              tframe=tframe)
        model.data = ramp.data
        model.meta.wcsinfo.s_region = N._s_region(slits[0], pointing)
        path = out / model.meta.filename
        model.save(path)
        _extra_keywords(path, n_exp)
        uncal.append(path)
        crs += [(model.meta.filename, i, g, 1, x, y, e) for i, g, x, y, e in truth["cosmic_rays"]]
        start = start + _dt.timedelta(seconds=dur + 120.0)

    # the fixed slits' rows with their sources' places at each dither point, as the scene put them
    shutters = np.concatenate([shutter_rows(layout), fixed_slit_rows(nslit, fs_places)])
    write_msa_file(msa_path, ids.program, ids.observation, ids.visit, shutters,
                   list(zip(all_ids, *zip(*(radec + fs_radec)))))

    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{detector.lower()}"
    lo, hi = N.FILTER_RANGE[optics[1]]
    lam = np.linspace(lo, hi, int(round((hi - lo) / 0.005)) + 1)
    spec = Table({"wavelength": lam * u.um})
    for j in range(nslit):
        spec[f"flux_{source_id(j)}"] = N.source_spectrum(lam, scale * SOURCE_SCALES[j % 3]) * 1e-3 * u.Jy
    for i, (_name, rel) in enumerate(FIXED_SLITS):
        spec[f"flux_{fs_source_id(i, nslit)}"] = N.source_spectrum(lam, scale * rel) * 1e-3 * u.Jy
    spec.meta.update({
        "description": "webbflow simulator truth: each MOS source's F_nu above the telescope (the pathloss-corrected "
                       "extracted spectrum's expectation)",
        "exp_type": MSASPEC, "grating": optics[0], "filter": optics[1], "readpatt": readpatt, "msa_metadata_file": msa_name,
        "source_ids": [source_id(j) for j in range(nslit)], "slitlets": [list(map(int, s)) for s in layout],
        "fixed_slits": {name: fs_source_id(i, nslit) for i, (name, _) in enumerate(FIXED_SLITS)},
        "fixed_slit_places": {f"{n}@{d}": list(v) for (n, d), v in sorted(fs_places.items())},
        "source_ra_dec": [list(p) for p in radec], "in_shutter_xy": list(IN_SHUTTER),
        "nod_offsets_ideal_arcsec": [list(o) for o in offsets], "nod_columns": list(NOD_COLUMNS),
        "exposures": [p.name for p in uncal],
        "note": "the flats are not in the scene (they divide the calibrated data by ~1 +- a few per cent)"})
    catalog = C.write_table(spec, out / "truth" / f"{stem}_spectra.ecsv")
    cr_path = S._write_cosmic_rays(out / "truth" / f"{stem}_cosmic_rays.ecsv", crs)
    lv2, lv3 = N._associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None)
    result.context, result.crds_path = context, out
    return result
