"""Simulated NIRSpec fixed-slit spectroscopy (nodded) and bright-object time series, through the optical model.

``webbflow simulate --instrument nirspec --exp-type NRS_FIXEDSLIT [--slit S200A1] [--nexp 2|3]``: a point
source in a fixed slit, nodded along it (``2-POINT-NOD`` by default, ``--nexp 3`` for ``3-POINT-NOD``:
YOFFSET steps of NOD_STEP arcsec, XOFFSET 0; PATTTYPE, PATT_NUM, NUMDTHPT, NOD_TYPE as real FS data has),
PRISM/CLEAR on NRS1, read NRSRAPID on the slit's subarray (S200A1: SUBS200A1, 2048 x 64 from row 1041), or
NRSIRS2/NRSIRS2RAPID in FULL frame.  Each nod is the others' background, as jwst's rules pair them.
``--grating G140M|G235M|G395M|G140H|G235H|G395H`` with ``--filter`` (G140: F100LP or F070LP, G235: F170LP, G395:
F290LP; a grating's first filter by default): the grating's synthetic disperser and the filter's fore optics
from ESA's model (refs/synthetic_nirspec_optics.py), the flats, barshadow and photom rows of that pair.

``--exp-type NRS_BRIGHTOBJ --nints N``: one exposure of N integrations (default 6) of a star in S1600A1 on
SUB2048 (2048 x 32 from row 947), TSOVISIT=T with an INT_TIMES table, dimmed by a transit (a trapezoid over
the middle half of the series, TRANSIT_DEPTH deep).

**Light goes where the optical model sends it.**  The exposure's WCS is built by webbflow's assign_wcs
(identical to jwst's) from the real optical references (../shared/data/real-refs/nirspec: ote, fore,
fpa, camera, collimator, PRISM disperser, in-flight wavelengthrange) and the synthetic msa reference.
For every pixel of the slit's footprint the forward transform detector -> slit frame gives
(y_slit, lambda); the pixel receives the point source's F_nu(lambda) times its share of the PSF along the
slit (a Gaussian in y_slit of the pathloss reference's PSF width, times |d y_slit / d row|), times the
fraction of the PSF the slit passes (the pathloss reference's point-source law at the source's position),
divided by the photom reference's conversion PHOTMJ x RELRESPONSE(lambda) (MJy per DN/s): the rate jwst's
photom and pathloss turn back into F_nu.  The sky (the imaging simulator's zodiacal+thermal surface
brightness) fills every pixel of the slit.  The source's position in the slit follows jwst's rule: the
ideal-frame (XOFFSET, YOFFSET) through the aperture's IdealToV2V3 and the WCS's v2v3 -> slit_frame.  The
ground optical model and the flight SIAF disagree by 1.7 slit widths on where S200A1 is, so V2_REF/V3_REF
are the model's slit centre (slit_frame (0, 0) -> v2v3) rather than the SIAF's: XOFFSET 0 is then in the
slit, as it is in flight.  The flats (~1 with a few per cent of structure) are not put into the scene.

The detector is refs/sim/nirspec_detector.py's (Poisson charge, cosmic rays, dark, non-linearity,
superbias, 1/f-like readout noise, read noise) from its synthetic NRS1 references.

What goes into DIR besides the uncal files: a CRDS cache (CRDS_PATH=DIR) with the detector references,
the optical chain (real files copied), the synthetic msa, the real wavecorr and fixed-slit area, the
synthetic pathloss, photom (refs/synthetic_nirspec_spec2.py) and f/s/d flats (refs/synthetic_nirspec_flat.py);
apcorr and barshadow N/A; extract1d N/A for the nods (whole-slit extraction: a fixed box cannot follow the
nodded source), for BOTS a 9-row box about the star's trace (write_bots_extract1d); the
pool and the associations jwst's rules make (spec2 per nod with the other nods as background and spec3;
tso-spec2 and tso3 for BOTS); ``truth/``: ``<stem>_spectrum.ecsv`` (wavelength, F_nu in Jy above the
slit: what the extracted, pathloss-corrected spectrum should show), for each exposure the source's
position in the slit, and for BOTS ``<stem>_lightcurve.ecsv``.
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
from . import nirspec_detector as D

FS, BOTS = "NRS_FIXEDSLIT", "NRS_BRIGHTOBJ"
DEFAULTS = {FS: dict(ngroups=4, nints=1, nexp=2, slit="S200A1"), BOTS: dict(ngroups=4, nints=6, nexp=1, slit="S1600A1")}
# slit -> (subarray, first row 1-based, rows): the slits' traditional-readout subarrays (full width)
SUBARRAYS = {"S200A1": ("SUBS200A1", 1041, 64), "S1600A1": ("SUB2048", 947, 32)}
BOTS_SUBARRAY = "SUB2048"
NOD_STEP = 1.0  # arcsec between nod positions along the slit
NOD_TYPES = {2: "2-POINT-NOD", 3: "3-POINT-NOD"}
TRANSIT_DEPTH = 0.02
PEAK_FILL = 0.3  # fraction of the full well the brightest pixel reaches in an integration
GWA = dict(gwa_xtilt=0.3358, gwa_ytilt=0.0337, gwa_tilt=37.1)  # PRISM's tilt sensors and temperature (flight-like)
OPTICS = {"camera": "jwst_nirspec_camera_0004.asdf", "collimator": "jwst_nirspec_collimator_0004.asdf",
          "disperser": "jwst_nirspec_disperser_0034.asdf", "fore": "jwst_nirspec_fore_0028.asdf",
          "fpa": "jwst_nirspec_fpa_0005.asdf", "ote": "jwst_nirspec_ote_0005.asdf",
          "wavelengthrange": "jwst_nirspec_wavelengthrange_INFLIGHT2023_from_jwst_tests.asdf"}
REAL_SPEC2 = {"wavecorr": "jwst_nirspec_wavecorr_0001.asdf", "area": "jwst_nirspec_area_0020.fits"}
REAL_PHOTOM = "jwst_nirspec_photom_0014.fits"
# grating -> the filters it is used with (the first is the default); the real optical chain has the PRISM disperser
# and the CLEAR fore optics, refs/synthetic_nirspec_optics.py builds the gratings' dispersers and the other fore optics
PAIRINGS = {"PRISM": ("CLEAR",), "G140M": ("F100LP", "F070LP"), "G140H": ("F100LP", "F070LP"), "G235M": ("F170LP",),
            "G235H": ("F170LP",), "G395M": ("F290LP",), "G395H": ("F290LP",)}
# the wavelengths (um) the truth spectrum covers per filter
FILTER_RANGE = {"CLEAR": (0.6, 5.3), "F070LP": (0.7, 1.27), "F100LP": (0.97, 1.89), "F170LP": (1.66, 3.17),
                "F290LP": (2.87, 5.27)}
CO2 = (4.27, 0.04, 0.35)  # an absorption band: centre (um), width (um), depth


def real_refs_dir() -> Path:
    """../shared/data/real-refs/nirspec beside the repository (or $WEBBFLOW_SHARED_DATA/real-refs/nirspec)."""
    import os

    base = os.environ.get("WEBBFLOW_SHARED_DATA")
    root = Path(base) if base else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root / "real-refs" / "nirspec"


def source_spectrum(lam_um, scale_mjy: float = 1.0) -> np.ndarray:
    """The target's F_nu (mJy): a hot star's Rayleigh-Jeans slope (nu^2) flattened in the blue, ``scale`` at 2 um,
    with a CO2-like absorption band."""
    lam = np.asarray(lam_um, float)
    c, w, d = CO2
    cont = scale_mjy * (2.0 / lam) ** 2 / (1.0 + 0.3 * (1.0 / lam) ** 2) * 1.075
    return cont * (1.0 - d * np.exp(-0.5 * ((lam - c) / w) ** 2))


def transit(n: int, depth: float = TRANSIT_DEPTH) -> np.ndarray:
    phase = (np.arange(n) + 0.5) / n - 0.5
    return 1.0 - depth * np.clip((0.25 - np.abs(phase)) / 0.075, 0.0, 1.0)


def subarray_frame_time(ysize: int, xsize: int = 2048) -> float:
    """A traditional NIRSpec subarray read through one output: (rows + 12) x (columns + 1) x 10 us."""
    return round((ysize + 12) * (xsize + 1) * 1e-5, 5)


@dataclass
class Window:
    name: str
    ystart: int  # 1-based
    ysize: int
    tframe: float

    @property
    def full(self) -> bool:
        return self.name == "FULL"


# ---------------------------------------------------------------------------
# metadata


def optical_setup(exp_type: str, grating, filt) -> tuple[str, str]:
    """(grating, filter) of ``--grating``/``--filter`` (PRISM/CLEAR by default; a grating's first filter when only
    the grating is named), or a one-line error for a pair NIRSpec does not use."""
    grating = (grating or "PRISM").upper()
    if grating not in PAIRINGS:
        raise ParameterError(f"{exp_type}: --grating is one of {', '.join(PAIRINGS)} (got {grating})")
    filt = (filt or PAIRINGS[grating][0]).upper()
    if filt not in PAIRINGS[grating]:
        raise ParameterError(f"{exp_type}: {grating} is used with {' or '.join(PAIRINGS[grating])} (got --filter {filt})")
    return grating, filt


def write_optics(real: Path, new, grating: str, filt: str) -> None:
    """The optical chain into the cache (``new(reftype, ext)`` gives each file's path): the real camera, collimator,
    fpa, ote and in-flight wavelengthrange; the real PRISM disperser or a grating's synthetic one; the real CLEAR
    fore optics or a filter's from ESA's model."""
    from ..synthetic_nirspec_optics import disperser_reference, fore_reference

    for rt, fname in OPTICS.items():
        if rt == "disperser" and grating != "PRISM":
            disperser_reference(grating).save(new(rt, ".asdf"))
        elif rt == "fore" and filt != "CLEAR":
            fore_reference(filt).save(new(rt, ".asdf"))
        else:
            shutil.copyfile(real / fname, new(rt, Path(fname).suffix))


def _metadata(model, *, exp_type, slit, window, ids, k, nexp, pointing, setup, target_ra, target_dec, offsets,
              grating="PRISM", filt="CLEAR"):
    """The keywords of a real FS/BOTS uncal that jwst reads (beyond the detector's, set by nirspec_detector)."""
    m = model.meta
    ins = m.instrument
    ins.filter, ins.grating, ins.fixed_slit = filt, grating, slit
    ins.gwa_xtilt, ins.gwa_ytilt, ins.gwa_tilt = GWA["gwa_xtilt"], GWA["gwa_ytilt"], GWA["gwa_tilt"]
    ins.focus_position = 0.0
    s = m.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = window.name, 1, window.ystart, 2048, window.ysize
    o = m.observation
    o.program_number, o.observation_number, o.visit_number = ids.program, ids.observation, ids.visit
    o.visit_group, o.sequence_id, o.activity_id = ids.visit_group, ids.sequence, ids.activity
    o.exposure_number = f"{k + 1:05d}"
    o.visit_id = f"{ids.program}{ids.observation}{ids.visit}"
    o.obs_id = f"V{ids.program}{ids.observation}{ids.visit}P00000000{ids.visit_group}{ids.sequence}{ids.activity}"
    o.template = "NIRSpec Fixed Slit Spectroscopy" if exp_type == FS else "NIRSpec Bright Object Time Series"
    o.observation_label = "webbflow simulated " + ("nodded point source" if exp_type == FS else "transit")
    m.program.title, m.program.pi_name, m.program.category = "webbflow simulated observation", "Simulator, Webbflow", "CAL"
    v = m.visit
    v.type, v.total_exposures, v.tsovisit = "PRIME_TARGETED_FIXED", nexp, exp_type == BOTS
    v.crowded_field, v.engineering_quality = False, "OK"
    t = m.target
    t.proposer_name = t.catalog_name = "SIMSTAR" if exp_type == FS else "SIMTRANSIT"
    t.type = "FIXED"
    t.ra = t.proposer_ra = float(target_ra)
    t.dec = t.proposer_dec = float(target_dec)
    t.source_type_apt = "POINT"
    m.aperture.name = m.aperture.pps_name = f"NRS_{slit}_SLIT"
    m.aperture.position_angle = (pointing.roll_ref + setup.v3yangle) % 360.0
    m.pointing.ra_v1, m.pointing.dec_v1, m.pointing.pa_v3 = pointing.ra_v1, pointing.dec_v1, pointing.pa_v3
    m.coordinates.reference_frame = "ICRS"
    w = m.wcsinfo
    w.v2_ref, w.v3_ref, w.v3yangle, w.vparity = setup.v2_ref, setup.v3_ref, setup.v3yangle, setup.vparity
    w.ra_ref, w.dec_ref, w.roll_ref = pointing.ra_ref, pointing.dec_ref, pointing.roll_ref
    w.velosys = -12345.6  # m/s, the radial velocity of the telescope towards the target
    m.velocity_aberration.scale_factor = 1.00003
    d = m.dither
    if exp_type == FS:
        d.primary_type = NOD_TYPES[nexp]
        d.position_number, d.total_points = k + 1, nexp
        d.pattern_start, d.dither_points = 1, nexp
        d.pattern_size = "DEFAULT"
    else:
        d.primary_type, d.position_number, d.total_points = "NONE", 1, 1
        d.pattern_start, d.dither_points, d.pattern_size = 1, 1, "NONE"
    d.subpixel_pattern, d.subpixel_total_points = "NONE", 1
    d.x_offset, d.y_offset = offsets
    d.dithered_ra, d.dithered_dec = float(target_ra), float(target_dec)
    m.exposure.count = k + 1


def _extra_keywords(path: Path, exp_type: str, nexp: int) -> None:
    """PRIDTPTS (points of the primary pattern), a schema keyword the models do not name (kept in a round trip)."""
    from astropy.io import fits

    with fits.open(path, mode="update") as h:
        h[0].header["PRIDTPTS"] = (nexp if exp_type == FS else 1, "Number of points in primary dither pattern")


# ---------------------------------------------------------------------------
# references and their CRDS rules


def subarray_dark(dark, window: Window):
    """The full-frame dark cut to the subarray, with its SUBSTRT/SUBSIZE: jwst's dark step takes darks of the
    science data's shape (CRDS has one per NIRSpec subarray), where the other steps cut full-frame files."""
    from ...models import DarkModel

    rows = slice(window.ystart - 1, window.ystart - 1 + window.ysize)
    sub = DarkModel(data=np.ascontiguousarray(dark.data[:, rows]), err=np.ascontiguousarray(dark.err[:, rows]),
                    dq=np.ascontiguousarray(dark.dq[rows]))
    sub.meta = dark.meta.model_copy(deep=True)
    sub.dq_def = dark.dq_def
    s = sub.meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = window.name, 1, window.ystart, 2048, window.ysize
    sub.meta.description = f"{dark.meta.description} ({window.name})"
    return sub


def require_real_refs(wanted) -> Path:
    """The folder of the real NIRSpec references, every file of ``wanted`` in it (else a one-line error)."""
    real = real_refs_dir()
    missing = [n for n in wanted if not (real / n).exists()]
    if missing:
        raise ParameterError(f"NIRSpec spectra need the real optical references in {real} (missing "
                             f"{', '.join(missing)}); set WEBBFLOW_SHARED_DATA to the shared data folder")
    return real


def cache_namer(out: Path):
    """``(names, new)``: ``new(reftype, ext)`` gives the cache path of the next NIRSpec reference of that type
    (jwst_nirspec_<reftype>_NNNN<ext>) and records its name in ``names``.  Call under the cache lock."""
    from .. import context as ctxmod

    folder = ctxmod.references_dir(out, "NIRSPEC")
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}

    def new(rt, ext):
        prefix = f"jwst_nirspec_{rt}_"
        names[rt] = f"{prefix}{ctxmod._next_serial(folder, prefix, ext):04d}{ext}"
        return ctxmod.reference_path(out, names[rt])

    return names, new


def select_for_mode(nrs: dict, names: dict, detector: str, exp_type: str, na=()) -> None:
    """Rules selecting ``names`` (and N/A for the reftypes ``na``) for this detector and EXP_TYPE, the
    other modes' entries kept."""
    from .. import context as ctxmod

    parkeys = ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE")
    for rt in (*names, *na):
        old = nrs.get(rt)
        entries = dict(old.entries) if old is not None and old.parkeys == parkeys else {}
        entries[(detector, exp_type)] = names.get(rt, "N/A")
        nrs[rt] = ctxmod.Rmap("NIRSPEC", rt, parkeys, entries)


def _references(out: Path, exp_type: str, detector: str, readpatt: str, ngroups: int, tframe: float, seed: int,
                window: Window, grating: str = "PRISM", filt: str = "CLEAR"):
    """The detector references (nirspec_detector) and the spectroscopic ones, in the cache with rules selecting
    them for this mode.  Returns (detector references by type, spectroscopic reference paths by type, context)."""
    from .. import context as ctxmod
    from .. import synthetic_nirspec_flat as F
    from .. import synthetic_nirspec_spec2 as P
    from ..synthetic_nirspec import nirspec_detector_references
    from ..synthetic_nirspec_optics import write_msa_reference

    real = require_real_refs((*OPTICS.values(), *REAL_SPEC2.values(), REAL_PHOTOM))
    det_refs = nirspec_detector_references(detector, readpatt, ngroups, tframe, seed=seed)
    D.write_reference_cache(out, det_refs, detector, readpatt)
    with ctxmod.cache_lock(out):
        names, new = cache_namer(out)
        if not window.full:
            subarray_dark(det_refs["dark"], window).save(new("dark", ".fits"))
        write_optics(real, new, grating, filt)
        for rt, fname in REAL_SPEC2.items():
            shutil.copyfile(real / fname, new(rt, Path(fname).suffix))
        write_msa_reference(new("msa", ".asdf"))
        P.write_pathloss(new("pathloss", ".fits"), "FS")
        P.write_fs_photom(new("photom", ".fits"), real / REAL_PHOTOM)
        F.write_fflat_fs(new("fflat", ".fits"), exp_type=exp_type, grating=grating, filt=filt)
        F.write_sflat(new("sflat", ".fits"), exp_type=exp_type, detector=detector, grating=grating, filt=filt)
        F.write_dflat(new("dflat", ".fits"), detector=detector)

        ctx = ctxmod.read_context(out)
        rules = {ins: dict(r) for ins, r in ctx.rmaps.items()}
        nrs = rules.setdefault("NIRSPEC", {})
        if "dark" in names:  # darks by subarray too: the full-frame rules stay for FULL
            rp_keys = ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT", "META.SUBARRAY.NAME")
            old = nrs["dark"]
            entries = dict(old.entries) if old.parkeys == rp_keys else {(*k, "FULL"): v for k, v in old.entries.items()}
            entries[(detector, readpatt, window.name)] = names.pop("dark")
            nrs["dark"] = ctxmod.Rmap("NIRSPEC", "dark", rp_keys, entries)
        select_for_mode(nrs, names, detector, exp_type, na=("extract1d", "apcorr", "barshadow"))
        context = ctxmod.write_context(out, rules, f"webbflow simulated NIRSpec {exp_type} ({detector})").context
    paths = {rt: ctxmod.reference_path(out, n) for rt, n in names.items()}
    return det_refs, paths, context


# ---------------------------------------------------------------------------
# the scene


class _Geometry:
    """The exposure's slit WCS (webbflow's assign_wcs on its metadata) and the pixel map it gives."""

    def __init__(self, model, refpaths: dict, slit: str):
        from ...tasks import load_all
        from ...tasks.assign_wcs.nirspec import slit_wcs
        from ...tasks.base import run_step

        load_all()
        wrefs = {rt: str(refpaths[rt]) for rt in (*OPTICS, "msa")}
        res = run_step("assign_wcs", model, {}, references=wrefs)
        self.wcs = slit_wcs(res.model, slit)

    def slit_position(self, wi, x_offset, y_offset):
        """jwst's source position in the slit (extract_2d's get_source_xpos): ideal offsets -> v2v3 -> slit frame."""
        from stdatamodels.jwst.transforms.models import IdealToV2V3

        v2, v3 = IdealToV2V3(wi.v3yangle, wi.v2_ref, wi.v3_ref, wi.vparity)(x_offset, y_offset)
        xs, ys, _ = self.wcs.get_transform("v2v3", "slit_frame")(v2, v3, 2.0)
        return float(xs), float(ys)

    def pixels(self, window: Window):
        """(y_slit, lambda in um) at each pixel of the window (NaN outside the slit's light)."""
        y, x = np.mgrid[window.ystart - 1: window.ystart - 1 + window.ysize, 0:2048]
        _xs, ys, lam = self.wcs.get_transform("detector", "slit_frame")(x - 0.0, y - (window.ystart - 1))
        lam = np.asarray(lam, float) * 1e6
        ys = np.asarray(ys, float)
        bad = ~(np.isfinite(lam) & np.isfinite(ys))
        lam[bad], ys[bad] = np.nan, np.nan
        return ys, lam


def _photom_conversion(path: Path, slit: str, grating: str = "PRISM", filt: str = "CLEAR"):
    """(PHOTMJ x RELRESPONSE)(lambda um) of the photom reference's row for ``slit`` and the filter and grating:
    MJy per DN/s."""
    from astropy.io import fits

    with fits.open(path) as h:
        t = h["PHOTOM"].data
        for row in t:
            if (str(row["filter"]).strip(), str(row["grating"]).strip(), str(row["slit"]).strip()) == (filt, grating, slit):
                n = int(row["nelem"])
                wl, rr, pm = np.array(row["wavelength"][:n], float), np.array(row["relresponse"][:n], float), float(row["photmj"])
                return lambda lam: pm * np.interp(lam, wl, rr, left=np.nan, right=np.nan)
    raise ParameterError(f"{path.name}: no {filt}/{grating} row for {slit}")


def render(ys, lam, src_y, src_x, slit: str, conversion, scale_mjy: float):
    """(source DN/s, sky DN/s) of the window's pixels from their slit position and wavelength."""
    from .. import synthetic_nirspec_spec2 as P

    width, length = P.FS_APERTURES[slit]
    ok = np.isfinite(lam)
    lam_ok = np.where(ok, lam, 2.0)
    conv = conversion(lam_ok)
    ok &= np.isfinite(conv) & (conv > 0)
    sigma = P.psf_sigma_arcsec(lam_ok * 1e-6) / length  # in slit lengths
    dy = np.abs(np.gradient(ys, axis=0))  # slit lengths per row (NaN at the slit's edges)
    dy = np.where(np.isfinite(dy), dy, np.nanmedian(dy))
    profile = np.exp(-0.5 * ((ys - src_y) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma) * dy
    passed = P.point_source_throughput(lam_ok * 1e-6, src_x, src_y, width, length)
    flux = source_spectrum(lam_ok, scale_mjy) * 1e-9  # MJy
    source = np.where(ok, flux * passed * profile / np.where(ok, conv, 1.0), 0.0)
    pix_sr = (0.1 / 206264.806) ** 2
    table = np.array(S._SKY_TABLE)  # the imaging simulator's zodiacal + thermal sky, MJy/sr
    sb = np.exp(np.interp(lam_ok, table[:, 0], np.log(table[:, 1])))
    sky = np.where(ok, sb * pix_sr * P.uniform_throughput(lam_ok * 1e-6, width) / np.where(ok, conv, 1.0), 0.0)
    return source, sky


def write_bots_extract1d(path: Path, geometry, window: Window, lam, source, slit: str, half: int = 4) -> Path:
    """The BOTS extract1d reference (JSON, in the real files' form): a box of ``2 half + 1`` rows about the star's
    trace in extract_2d's cutout (which starts at the slit's bounding box, rounded to a pixel), as real BOTS files do;
    the star does not move, so the box needs no source position."""
    from ...models.atomic import atomic_write_text

    (_x0, _x1), (y0, _y1) = geometry.wcs.bounding_box.bounding_box(order="F")
    ylo = int(np.floor(y0 + 0.5))
    col = int(np.nanargmax(np.nansum(source, axis=0)))
    row = int(np.nanargmax(source[:, col])) - ylo
    ref = {"reftype": "EXTRACT1D", "instrument": "NIRSPEC", "telescope": "JWST", "exp_type": BOTS,
           "pedigree": "GROUND", "description": f"NIRSpec {BOTS} {slit} extraction box (webbflow synthetic)",
           "author": "webbflow synthetic", "useafter": "2015-11-01T00:00:00",
           "apertures": [{"id": slit, "region_type": "target", "bkg_order": 0, "dispaxis": 1,
                          "ystart": row - half, "ystop": row + half, "use_source_posn": False}]}
    atomic_write_text(Path(path), json.dumps(ref, indent=4) + "\n")
    return Path(path)


def _add_extract1d(out: Path, path_of, exp_type: str, detector: str) -> str:
    """Select the extract1d reference written at ``path_of(name)`` for this mode; returns the new context."""
    from .. import context as ctxmod

    with ctxmod.cache_lock(out):
        folder = ctxmod.references_dir(out, "NIRSPEC")
        name = f"jwst_nirspec_extract1d_{ctxmod._next_serial(folder, 'jwst_nirspec_extract1d_', '.json'):04d}.json"
        path_of(ctxmod.reference_path(out, name))
        rules = {ins: dict(r) for ins, r in ctxmod.read_context(out).rmaps.items()}
        old = rules["NIRSPEC"]["extract1d"]
        entries = dict(old.entries)
        entries[(detector, exp_type)] = name
        rules["NIRSPEC"]["extract1d"] = ctxmod.Rmap("NIRSPEC", "extract1d", old.parkeys, entries)
        return ctxmod.write_context(out, rules, f"webbflow simulated NIRSpec {exp_type}: extract1d").context


def _full_frame(window: Window, image: np.ndarray) -> np.ndarray:
    full = np.zeros((2048, 2048), np.float32)
    full[window.ystart - 1: window.ystart - 1 + window.ysize] = image
    full[:4], full[-4:], full[:, :4], full[:, -4:] = 0, 0, 0, 0  # reference pixels see no light
    return full


# ---------------------------------------------------------------------------
# the observation


def _window(exp_type, slit, subarray, readpatt) -> Window:
    from ..synthetic_nirspec import IRS2_READPATTS

    want = (subarray or ("FULL" if readpatt in IRS2_READPATTS else SUBARRAYS[slit][0])).upper()
    if want == "FULL":
        return Window("FULL", 1, 2048, D.frame_time(readpatt))
    if readpatt in IRS2_READPATTS:
        raise ParameterError(f"{readpatt} is read in FULL frame only; use --readpatt NRSRAPID for {want}")
    allowed = {SUBARRAYS[slit][0]} if exp_type == FS else {BOTS_SUBARRAY}
    if want not in allowed:
        raise ParameterError(f"{exp_type} with {slit} is simulated on {', '.join(sorted(allowed))} or FULL (got --subarray {want})")
    name, y0, ny = SUBARRAYS[slit]
    return Window(name, y0, ny, subarray_frame_time(ny))


def _check(instrument, exp_type, detector, slit, nexp):
    if (instrument or "nirspec").lower() != "nirspec":
        raise ParameterError(f"{exp_type} is a NIRSpec mode; use --instrument nirspec")
    if (detector or "NRS1").upper() != "NRS1":
        raise ParameterError(f"{exp_type}: the spectrum of {slit} is simulated on NRS1 (got --detector {detector})")
    if exp_type == FS and slit not in SUBARRAYS or exp_type == FS and slit == "S1600A1":
        raise ParameterError(f"{exp_type}: fixed slits simulated: S200A1 (got --slit {slit})")
    if exp_type == BOTS and slit != "S1600A1":
        raise ParameterError(f"{exp_type} uses the S1600A1 slit (got --slit {slit})")
    if exp_type == FS and nexp not in (None, 1, 2, 3):
        raise ParameterError(f"{exp_type}: nods have 2 or 3 positions (got --nexp {nexp})")


def simulate(output_dir, *, instrument="nirspec", exp_type=FS, detector=None, subarray=None, size=None, ngroups=None,
             nints=None, nexp=None, seed=0, filter=None, grating=None, readpatt=None, slit=None,  # noqa: A002
             target_ra=53.1625, target_dec=-27.7914, pa_v3=30.0, program="01234", observation=1, visit=1,
             start_time="2024-01-15T03:00:00", build_refs=True, reference_seed=0, depth=TRANSIT_DEPTH,
             **_ignored) -> S.SimulationResult:
    """Write one NIRSpec FS or BOTS observation (see the module) into ``output_dir``."""
    from ..synthetic_nirspec import READPATTS

    exp_type = (exp_type or FS).upper()
    if exp_type not in DEFAULTS:
        raise ParameterError(f"NIRSpec spectra are simulated for {FS} and {BOTS} (got {exp_type})")
    d = DEFAULTS[exp_type]
    slit = (slit or d["slit"]).upper()
    _check(instrument, exp_type, detector, slit, nexp)
    grating, filt = optical_setup(exp_type, grating, filter)
    if size is not None:
        raise ParameterError(f"{exp_type}: name the subarray (--subarray), not a size")
    if not build_refs:
        raise ParameterError(f"{exp_type}: the scene is placed through the references' optical model; drop --no-refs")
    readpatt = (readpatt or "NRSRAPID").upper()
    if readpatt not in READPATTS:
        raise ParameterError(f"readout pattern {readpatt} is not simulated for NIRSpec; choose {', '.join(READPATTS)}")
    if exp_type == FS:
        n_exp, n_int = (d["nexp"] if nexp in (None, 1) else int(nexp)), int(nints or d["nints"])
    else:
        C.one_exposure(exp_type, nexp or 1)
        n_exp, n_int = 1, C.integrations(exp_type, nints, d["nints"])
    n_groups = int(ngroups or d["ngroups"])
    if n_groups < 2:
        raise ParameterError("NIRSpec exposures need at least 2 groups")
    detector = "NRS1"
    window = _window(exp_type, slit, subarray, readpatt)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    det_refs, paths, context = _references(out, exp_type, detector, readpatt, n_groups, window.tframe, reference_seed,
                                           window, grating, filt)

    import pysiaf

    ap = pysiaf.Siaf("NIRSpec")[f"NRS_{slit}_SLIT"]
    ids = S.ObservationIds(program=f"{int(program):05d}", observation=f"{int(observation):03d}",
                           visit=f"{int(visit):03d}")
    t0 = _dt.datetime.fromisoformat(start_time)
    setup = _Aim(float(ap.V2Ref), float(ap.V3Ref), float(ap.V3IdlYAngle), int(ap.VIdlParity))
    # One WCS serves every exposure: detector -> slit frame -> v2v3 does not depend on the pointing.  The
    # model's slit centre becomes the aperture reference (see the module).
    model, _ = _exposure(exp_type, readpatt, n_groups, n_int, window, t0, seed)
    geometry = _place(model, exp_type, slit, window, ids, 0, n_exp, setup, target_ra, target_dec, pa_v3, (0.0, 0.0),
                      paths, optics=(grating, filt))
    v2c, v3c, _ = geometry.wcs.get_transform("slit_frame", "v2v3")(0.0, 0.0, 2e-6)
    setup = _Aim(float(v2c), float(v3c), setup.v3yangle, setup.vparity)
    ys, lam = geometry.pixels(window)

    conversion = _photom_conversion(paths["photom"], slit, grating, filt)
    along = [0.0] if exp_type == BOTS else list((np.arange(n_exp) - (n_exp - 1) / 2.0) * NOD_STEP)
    flux_ts = transit(n_int, depth) if exp_type == BOTS else None
    full_well = float(np.nanmedian(np.asarray(det_refs["saturation"].data)))
    uncal, positions, crs, scale = [], [], [], None
    start = t0
    for k, yoff in enumerate(along):
        model, dur = _exposure(exp_type, readpatt, n_groups, n_int, window, start, seed + k)
        pointing = _place(model, exp_type, slit, window, ids, k, n_exp, setup, target_ra, target_dec, pa_v3,
                          (0.0, float(yoff)), optics=(grating, filt))
        src_x, src_y = geometry.slit_position(model.meta.wcsinfo, 0.0, float(yoff))
        if scale is None:  # brightness: the brightest pixel reaches PEAK_FILL of the well in an integration
            unit, _sky = render(ys, lam, src_y, src_x, slit, conversion, 1.0)
            scale = PEAK_FILL * full_well / (float(unit.max()) * model.meta.exposure.integration_time)
        source, sky = render(ys, lam, src_y, src_x, slit, conversion, scale)
        if exp_type == BOTS:
            context = _add_extract1d(out, lambda p: write_bots_extract1d(p, geometry, window, lam, source, slit),
                                     exp_type, detector)
            model.int_times = C.int_times(_Timing(n_int, n_groups, window.tframe), start, target_ra, target_dec)
            rate = lambda i, s=source, b=sky: _full_frame(window, s * flux_ts[i] + b)  # noqa: E731
        else:
            rate = _full_frame(window, source + sky)
        ramp, truth = D.simulate_nirspec_ramp(detector, readpatt, n_groups, n_int, det_refs, seed=seed * 101 + k,
                                              exp_type=exp_type, start_time=start.isoformat(), rate=rate,
                                              window=None if window.full else (window.ystart - 1, window.ysize),
                                              tframe=window.tframe)
        model.data = ramp.data
        model.meta.wcsinfo.s_region = _s_region(geometry, pointing)
        path = out / model.meta.filename
        model.save(path)
        _extra_keywords(path, exp_type, n_exp)
        uncal.append(path)
        positions.append((model.meta.filename, src_x, src_y, float(yoff)))
        crs += [(model.meta.filename, i, g, 1, x, y, e) for i, g, x, y, e in truth["cosmic_rays"]]
        start = start + _dt.timedelta(seconds=dur + 120.0)

    # truth ---------------------------------------------------------------------------
    from astropy import units as u
    from astropy.table import Table

    stem = f"jw{ids.program}{ids.observation}{ids.visit}_{detector.lower()}"
    lo, hi = FILTER_RANGE[filt]
    lam = np.linspace(lo, hi, int(round((hi - lo) / 0.005)) + 1)
    spec = Table({"wavelength": lam * u.um, "flux": source_spectrum(lam, scale) * 1e-3 * u.Jy})
    spec.meta.update({
        "description": "webbflow simulator truth: the target's F_nu above the telescope (the pathloss-corrected "
                       "extracted spectrum's expectation)" + (", out of transit" if exp_type == BOTS else ""),
        "exp_type": exp_type, "slit": slit, "grating": grating, "filter": filt, "scale_mjy_at_2um": float(scale),
        "exposures": [p[0] for p in positions], "source_x_slit": [p[1] for p in positions],
        "source_y_slit": [p[2] for p in positions], "yoffset_arcsec": [p[3] for p in positions],
        "v2_ref_v3_ref": [setup.v2_ref, setup.v3_ref],
        "note": "the flats are not in the scene (they divide the calibrated data by ~1 +- a few per cent)"})
    catalog = C.write_table(spec, out / "truth" / f"{stem}_spectrum.ecsv")
    if exp_type == BOTS:
        lc = Table()
        from astropy.io import fits

        with fits.open(uncal[0]) as h:
            it = h["INT_TIMES"].data
            for col in ("integration_number", "int_mid_MJD_UTC", "int_mid_BJD_TDB"):
                lc[col] = np.asarray(it[col])
        lc["relative_flux"] = flux_ts
        lc.meta.update({"description": "webbflow simulator truth: the star's flux per integration relative to out of "
                                       "transit (a trapezoid over the middle half of the series)",
                        "exposure": uncal[0].name, "depth": float(depth)})
        C.write_table(lc, out / "truth" / f"{stem}_lightcurve.ecsv")
    cr_path = S._write_cosmic_rays(out / "truth" / f"{stem}_cosmic_rays.ecsv", crs)
    lv2, lv3 = _associations(out, t0.strftime("%Y%m%dt%H%M%S"))
    result = S.SimulationResult(output_dir=out, uncal=uncal, catalog=catalog, cosmic_rays=cr_path, asn_level2=lv2,
                                asn_level3=lv3[0] if lv3 else None)
    result.context, result.crds_path = context, out
    return result


@dataclass
class _Aim:
    """What make_pointing reads of an aperture: its reference point and orientation (v2, v3 in arcsec)."""

    v2_ref: float
    v3_ref: float
    v3yangle: float
    vparity: int

    @property
    def v2_aim(self):
        return self.v2_ref

    @property
    def v3_aim(self):
        return self.v3_ref


@dataclass
class _Timing:
    """What _common.int_times reads of a setup."""

    nints: int
    ngroups: int
    tframe: float

    @property
    def frames_per_integration(self):
        return self.ngroups


def _exposure(exp_type, readpatt, ngroups, nints, window, start, seed):
    """A Level1bModel with the detector's metadata (no data yet) and the exposure's duration (s)."""
    from ...models import Level1bModel
    from ..synthetic_nirspec import READPATTS

    model = Level1bModel()
    nframes, gap = READPATTS[readpatt]
    D._fill_metadata(model, "NRS1", readpatt, exp_type, ngroups, nints, nframes, gap, window.tframe,
                     readpatt in D.IRS2_READPATTS, start.isoformat())
    if readpatt not in D.IRS2_READPATTS:
        model.meta.exposure.noutputs = 1 if not window.full else 4
    return model, float(model.meta.exposure.duration)


def _place(model, exp_type, slit, window, ids, k, nexp, setup, target_ra, target_dec, pa_v3, offsets, paths=None,
           optics=("PRISM", "CLEAR")):
    """Point the exposure (the target at ideal ``offsets``) and fill its metadata; with ``paths`` (the
    references) build its slit WCS and return it, else return the pointing."""
    pointing = S.make_pointing(setup, target_ra, target_dec, pa_v3, *offsets)
    _metadata(model, exp_type=exp_type, slit=slit, window=window, ids=ids, k=k, nexp=nexp, pointing=pointing,
              setup=setup, target_ra=target_ra, target_dec=target_dec, offsets=offsets, grating=optics[0], filt=optics[1])
    model.meta.filename = (f"jw{ids.program}{ids.observation}{ids.visit}_{ids.visit_group}{ids.sequence}"
                           f"{ids.activity}_{k + 1:05d}_nrs1_uncal.fits")
    if paths is None:
        return pointing
    return _Geometry(_image_like(model, window), paths, slit)


def _image_like(model, window):
    """An ImageModel of the exposure's window with its metadata: what assign_wcs takes."""
    from ... import models

    img = models.ImageModel(data=np.zeros((window.ysize, 2048), np.float32))
    img.meta = model.meta.model_copy(deep=True)
    return img


def _s_region(geometry, pointing) -> str:
    """The slit's outline on the sky: its corners through slit_frame -> v2v3 (at 2 um), then the attitude."""
    t = geometry.wcs.get_transform("slit_frame", "v2v3")
    xs, ys = np.array([-0.5, 0.5, 0.5, -0.5]), np.array([-0.5, -0.5, 0.5, 0.5])
    v2, v3, _ = t(xs, ys, np.full(4, 2e-6))
    ra, dec = S.tel_to_sky(pointing.attitude, v2, v3)
    return "POLYGON ICRS  " + " ".join(f"{a:.9f} {b:.9f}" for a, b in zip(np.mod(ra, 360.0), dec))


# Pool columns DMS fills from its database, not from headers, that jwst's NIRSpec rules read: the exposure's
# spectral index (the nods of one configuration share it) and the sub-pixel points (nods never have any).
POOL_COLUMNS = {"expspcin": "1", "subpxpns": "1"}


def _associations(out: Path, version: str):
    """The pool of the folder's exposures as DMS writes it (booleans t/f, POOL_COLUMNS) and the associations
    jwst's rules make of it.  Returns (level 2, level 3) paths."""
    from ...flows.asn.engine import generate, write_associations
    from ...flows.asn.mkpool import make_pool, write_pool
    from ...flows.asn.pool import read_pool

    uncal = sorted(p.name for p in out.glob("*_uncal.fits"))
    table = make_pool([out / n for n in uncal])
    table["filename"] = uncal  # members are named relative to the pool's folder
    for col in table.colnames:
        table[col] = [{"True": "t", "False": "f"}.get(str(v), v) for v in table[col]]
    for col, value in POOL_COLUMNS.items():
        table[col] = [value] * len(table)
    pool = write_pool(table, out / f"jw{uncal[0][2:7]}_{version}_pool.csv")
    asns = generate(read_pool(pool), version_id=version)
    paths = write_associations(asns, out)
    return ([p for p, a in zip(paths, asns) if a.rule.level == 2],
            [p for p, a in zip(paths, asns) if a.rule.level == 3])
