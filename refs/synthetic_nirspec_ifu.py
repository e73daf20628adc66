"""The NIRSpec IFU references no real file is at hand for: ``ifuslicer``, ``ifufore`` and ``chromcorr``,
synthesised in the form of the real CRDS files (stdatamodels' IFUSlicerModel, IFUFOREModel and
ChromCorrModel schemas).  The real ``ifupost`` (per-slice slicer -> MSA exit plane, with a
wavelength-dependent distortion) is in ../shared/data/real-refs/nirspec; these are made consistent
with it and with ESA's IFU functional truth tables (``ifu_*_functional_ESA_v1_20180619.txt``).

- ``ifuslicer``: ``data``, one row per slice (30 x 5: slice number, x and y centre, x and y size, in
  metres on the slicer's exit plane) and ``model`` (the slicer frame -> that plane; the identity
  here).  jwst maps a relative slice position (x, y in [-0.5, 0.5]) to the slicer as
  ``Scale(xsize) & Scale(ysize) | Shift(xc) & Shift(yc) | model``.  The slices sit side by side
  across x, numbered outwards from the middle in alternation (0 at +0.4 mm, 1 at -0.4 mm, 2 at
  +1.2 mm, ...), 0.8 mm wide and 12 mm long.  Solving the real ifupost for ESA's slice 0 points
  (y_slit = -0.5..0.5 at x_slit = 0, their MSA exit positions ``xmsapos``/``ymaspos``) gives
  x = 0.4 mm and y = 12 mm * y_slit to 1e-11 m, in the grating and prism tables alike; the pitch is
  the one of the ifupost's per-slice input centres (0.806 mm between slices 0 and 1).
- ``ifufore``: the slicer -> the MSA entrance plane (the sky side), in the form of the ``fore``
  reference (x, y, wavelength -> x, y: a polynomial plus a polynomial times the wavelength; zero
  here), with its inverse fitted on a grid.  Along the slice it is ESA's: the points of slice 0
  that the real ``fore`` maps back from ESA's OTE image-plane positions (``xOTEIP``/``yOTEIP``)
  fit a cubic in the slicer's y to 2e-10 m in both tables.  Across the slices the scale is the
  width of the IFU field on the MSA in ESA's SIAF delivery (pysiaf ``positionsSIAFApertures``,
  NRS_FULL_IFU: 1.2114 mm for 30 slices), with even slices at larger MSA x, as there.
- ``chromcorr``: the OTE image plane -> the same, corrected for the fore optics' chromaticity:
  (x, y, wavelength) -> (x + dx(lambda), y + dy(lambda), wavelength), with its exact inverse.  No
  measured correction is at hand: dx, dy are small quadratics in the wavelength (at most about 2
  milliarcseconds over 0.6-5.3 micron), enough for the WCS to show that it is applied.

The rest of a simulated NRS_IFU observation's set (refs/sim/nirspec_ifu.py), in the real files' forms:

- ``fflat`` (NirspecFlatModel): the FAST_VARIATION table alone, one row ``ANY`` (the IFU's fore optics
  have no 2-D part); ``sflat``: SCI/DQ/ERR of (planes, 2048, 2048), WAVELENGTH, one FAST_VARIATION row
  (refs/synthetic_nirspec_flat.py's MSA form, for NRS_IFU); ``dflat``: the detector's (shared by all modes).
- ``photom`` (NrsMosPhotomModel, which jwst reads for the IFU too): one row per filter and grating.
- ``area`` (NirspecIfuAreaModel): the AREA table (slice_id, pixarea in arcsec^2): each slice's median
  pixel solid angle, measured on the simulated exposure's WCS (the slice width times the along-slice
  extent of a row); PIXAR_A2/PIXAR_SR their mean.
- ``cubepar`` (NirspecIFUCubeParsModel): per grating/filter the spaxel size, spectral step and range,
  msm and emsm regions of interest, and the prism/medium/high wavelength tables.
- ``extract1d`` (Extract1dIFUModel, ASDF): an aperture of 2 PSF FWHMs and a background annulus of 2.5-3.5
  FWHMs from 0.6 to 5.3 micron.
- ``apcorr`` (NrsIfuApcorrModel, ASDF, the form of the real NIRSpec IFU files): for the grating and filter,
  at 0.6-5.3 micron, the radii of apertures of 1-3 PSF FWHMs (arcsec, (n_radius, n_wave)) and the
  point-source correction 1 / encircled energy of each: the PSF as a cube sees it, the simulator's
  Gaussian broadened by the slice width and the spaxel (0.1 arcsec boxes, their variances added).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NSLICES = 30
SLICE_WIDTH = 0.0008  # m, on the slicer's exit plane
SLICE_LENGTH = 0.012  # m
# ifufore: MSA x, y (m) as polynomials in the slicer's x, y (m); fitted as described above
IFUFORE_X = {"c0_0": 0.04131053275 - 0.0504748 * 0.0004, "c1_0": 0.0504748, "c0_1": 9.4622e-08,
             "c0_2": 0.0304893808}
IFUFORE_Y = {"c0_0": 2.968e-09, "c0_1": 0.1027483480, "c0_2": 3.58688e-05, "c0_3": -1.7111976}
# chromcorr: the shift of the OTE image plane (deg) as a quadratic in the wavelength (m)
CHROMCORR_X = (-1.2e-7, 0.05, -8.0e3)
CHROMCORR_Y = (8.0e-8, -0.03, 5.0e3)
EXPTYPES = "NRS_IFU|"


def slice_centres() -> np.ndarray:
    """x centre (m) of each slice on the slicer: +0.4, -0.4, +1.2, -1.2 mm, ..."""
    k = np.arange(NSLICES)
    return np.where(k % 2 == 0, 1.0, -1.0) * (SLICE_WIDTH / 2 + SLICE_WIDTH * (k // 2))


def slicer_table() -> np.ndarray:
    data = np.zeros((NSLICES, 5), dtype=np.float64)
    data[:, 0] = np.arange(NSLICES)
    data[:, 1] = slice_centres()
    data[:, 3] = SLICE_WIDTH
    data[:, 4] = SLICE_LENGTH
    return data


def _meta(m, reftype, description):
    from .synthetic import reference_provenance

    meta = reference_provenance(m, reftype, description)
    meta.instrument.name = "NIRSPEC"
    meta.instrument.p_detector = "NRS1|NRS2|"
    meta.exposure.type = "NRS_IFU"
    meta.exposure.p_exptype = EXPTYPES
    meta.input_units = "m"
    meta.output_units = "m"
    return meta


def ifuslicer_reference():
    from astropy.modeling.models import Identity

    from ..models import IFUSlicerModel

    m = IFUSlicerModel()
    model = Identity(2, name="ifuslicer_model")
    m.set_tree(model=model, data=slicer_table())
    _meta(m, "ifuslicer", "NIRSpec IFU slicer: 30 slices consistent with the ifupost and ESA")
    return m


def _poly(coeffs: dict, name: str):
    from astropy.modeling.models import Polynomial2D

    degree = max(int(k[1]) + int(k[3]) for k in coeffs)
    return Polynomial2D(degree, name=name, **coeffs)


def _with_wavelength(px, py, dx, dy, inmap: str, outmap: str):
    """(x, y, lambda) -> (px + dx * lambda, py + dy * lambda): the form of the fore/ifufore models."""
    from astropy.modeling.models import Identity, Mapping

    xy, lam = Mapping((0, 1), n_inputs=3), Mapping((2,), n_inputs=3)
    x = (xy | px) + (xy | dx) * (lam | Identity(1))
    y = (xy | py) + (xy | dy) * (lam | Identity(1))
    return Mapping((0, 1, 2, 0, 1, 2), name=inmap) | x & y | Identity(2, name=outmap)


def ifufore_model():
    """The slicer -> MSA entrance transform (x, y, lambda -> x, y) with its fitted inverse."""
    from astropy.modeling.fitting import LinearLSQFitter
    from astropy.modeling.models import Mapping, Polynomial2D, Scale, Shift

    px, py = _poly(IFUFORE_X, "ifufore_x_forw"), _poly(IFUFORE_Y, "ifufore_y_forw")
    zero = {"c0_0": 0.0}
    forward = _with_wavelength(px, py, _poly(zero, "ifufore_x_forwdist"), _poly(zero, "ifufore_y_forwdist"),
                               "ifufore_inmap", "ifufore_outmap")
    # the inverse: cubics fitted over the whole slicer (+-12.4 mm across, +-6.6 mm along), in
    # millimetres about the field's centre on the MSA, back to metres on the slicer
    sx, sy = np.meshgrid(np.linspace(-0.0124, 0.0124, 61), np.linspace(-0.0066, 0.0066, 61))
    x0, y0 = px(0.0, 0.0), py(0.0, 0.0)
    u, v = (px(sx, sy) - x0) * 1e3, (py(sx, sy) - y0) * 1e3
    fit = LinearLSQFitter()
    bx, by = fit(Polynomial2D(3), u, v, sx * 1e3), fit(Polynomial2D(3), u, v, sy * 1e3)
    bx.name, by.name = "ifufore_x_back", "ifufore_y_back"
    back = (Mapping((0, 1), n_inputs=3, name="ifufore_back_inmap")
            | (Shift(-x0) | Scale(1e3)) & (Shift(-y0) | Scale(1e3))
            | Mapping((0, 1, 0, 1)) | bx & by | Scale(1e-3) & Scale(1e-3))
    forward.inverse = back
    return forward


def ifufore_reference():
    from ..models import IFUFOREModel

    m = IFUFOREModel()
    m.set_tree(model=ifufore_model())
    _meta(m, "ifufore", "NIRSpec IFU fore optics: slicer to MSA, fitted to ESA's IFU model")
    return m


def chromcorr_model():
    """(x, y, lambda) -> (x + dx(lambda), y + dy(lambda), lambda), and its exact inverse."""
    from astropy.modeling.models import Mapping, Polynomial1D

    def shifted(sign):
        cx = Polynomial1D(2, **{f"c{i}": sign * c for i, c in enumerate(CHROMCORR_X)}, name="chromcorr_dx")
        cy = Polynomial1D(2, **{f"c{i}": sign * c for i, c in enumerate(CHROMCORR_Y)}, name="chromcorr_dy")
        x = Mapping((0,), n_inputs=3) + (Mapping((2,), n_inputs=3) | cx)
        y = Mapping((1,), n_inputs=3) + (Mapping((2,), n_inputs=3) | cy)
        return Mapping((0, 1, 2, 0, 1, 2, 2), name="chromcorr_inmap") | x & y & Mapping((0,), n_inputs=1)

    forward = shifted(1.0)
    forward.inverse = shifted(-1.0)
    return forward


def chromcorr_reference():
    from ..models import ChromCorrModel

    m = ChromCorrModel()
    m.set_tree(model=chromcorr_model())
    meta = _meta(m, "chromcorr", "NIRSpec IFU fore-optics chromaticity correction (synthetic)")
    meta.input_units = meta.output_units = "deg"
    meta.instrument.filter = "N/A"
    meta.instrument.p_filter = "CLEAR|F070LP|F100LP|F170LP|F290LP|"
    return m


def write_ifu_references(folder) -> dict[str, Path]:
    """Write ifuslicer, ifufore and chromcorr (ASDF) into ``folder``; reftype -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for reftype, make in (("ifuslicer", ifuslicer_reference), ("ifufore", ifufore_reference),
                          ("chromcorr", chromcorr_reference)):
        out[reftype] = Path(make().save(folder / f"webbflow_nirspec_{reftype}.asdf"))
    return out


# ---------------------------------------------------------------------------
# flats, photom, area, cubepar and extract1d for NRS_IFU

# (grating, filter, spaxel arcsec, spectral step um, wavemin, wavemax): the real NIRSpec cubepar's sampling
CUBE_SETTINGS = [
    ("PRISM", "CLEAR", 0.1, 0.005, 0.60, 5.30), ("G140M", "F070LP", 0.1, 0.0006, 0.70, 1.27),
    ("G140M", "F100LP", 0.1, 0.0006, 0.97, 1.89), ("G235M", "F170LP", 0.1, 0.001, 1.66, 3.17),
    ("G395M", "F290LP", 0.1, 0.0018, 2.87, 5.27), ("G140H", "F070LP", 0.1, 0.000235, 0.70, 1.27),
    ("G140H", "F100LP", 0.1, 0.000235, 0.97, 1.89), ("G235H", "F170LP", 0.1, 0.0004, 1.66, 3.17),
    ("G395H", "F290LP", 0.1, 0.000665, 2.87, 5.27),
]
IFU = "NRS_IFU"


def _retag(path, **keys):
    """Set primary-header keywords of a written FITS reference (its EXP_TYPE, description ...)."""
    from astropy.io import fits

    with fits.open(path, mode="update") as h:
        for k, v in keys.items():
            h[0].header[k] = v
    return Path(path)


def write_ifu_fflat(path, grating="PRISM", filt="CLEAR") -> Path:
    from astropy.io import fits

    from . import synthetic_nirspec_flat as F

    h = F._primary("fflat", "NirspecFlatModel", IFU, "webbflow synthetic NIRSpec IFU fore-optics flat",
                   grating="N/A", filt=filt)
    return F._write(path, [fits.PrimaryHDU(header=h),
                           F._fast_variation_hdu(F.fast_variation_rows(["ANY"], grating, 1.7, 0.03))])


def write_ifu_sflat(path, detector="NRS1", grating="PRISM", filt="CLEAR") -> Path:
    from . import synthetic_nirspec_flat as F

    F.write_sflat(path, exp_type="NRS_MSASPEC", detector=detector, grating=grating, filt=filt, seed=5)
    return _retag(path, EXP_TYPE=IFU, DESCRIP="webbflow synthetic NIRSpec IFU spectrograph flat")


def write_ifu_photom(path, real_fs_path) -> Path:
    from . import synthetic_nirspec_spec2 as P

    P.write_mos_photom(path, real_fs_path)
    return _retag(path, EXP_TYPE=IFU, P_EXP_TY=f"{IFU}|", DESCRIP="NIRSpec IFU photom (webbflow synthetic)")


def write_ifu_area(path, pixarea_a2, grating="PRISM", filt="CLEAR") -> Path:
    """The IFU area reference: ``pixarea_a2`` (arcsec^2) per slice 0-29."""
    from astropy.io import fits

    from . import synthetic_nirspec_spec2 as P

    a2 = np.asarray(pixarea_a2, np.float64)
    table = np.zeros(NSLICES, dtype=[("slice_id", ">i2"), ("pixarea", ">f4")])
    table["slice_id"], table["pixarea"] = np.arange(NSLICES), a2
    h = P._primary("AREA", "NirspecIfuAreaModel", IFU, f"{IFU}|", "NIRSpec IFU pixel areas per slice "
                   "(webbflow synthetic)", detector="N/A", filter=filt, grating=grating)
    mean = float(np.mean(table["pixarea"]))
    h["PIXAR_A2"] = (mean, "Nominal pixel area in arcsec^2")
    h["PIXAR_SR"] = (mean / 206264.80624709636**2, "Nominal pixel area in steradians")
    return P._write(path, [fits.PrimaryHDU(header=h), fits.BinTableHDU(table, name="AREA")])


def write_ifu_cubepar(path) -> Path:
    from astropy.io import fits

    from . import synthetic_nirspec_spec2 as P

    def col(name, fmt, values):
        return fits.Column(name=name, format=fmt, array=np.asarray(values))

    gr = [c[0] for c in CUBE_SETTINGS]
    fi = [c[1] for c in CUBE_SETTINGS]
    spax, step, lo, hi = (np.array([c[i] for c in CUBE_SETTINGS], np.float32) for i in range(2, 6))
    n = len(CUBE_SETTINGS)
    h = P._primary("CUBEPAR", "NirspecIFUCubeParsModel", IFU, f"{IFU}|", "NIRSpec IFU cube building parameters "
                   "(webbflow synthetic)", detector="N/A")
    hdus = [fits.PrimaryHDU(header=h),
            fits.BinTableHDU.from_columns([col("DISPERSER", "5A", gr), col("FILTER", "6A", fi),
                                           col("WAVEMIN", "E", lo), col("WAVEMAX", "E", hi),
                                           col("SPAXELSIZE", "E", spax), col("SPECTRALSTEP", "E", step)],
                                          name="CUBEPAR"),
            fits.BinTableHDU.from_columns([col("DISPERSER", "5A", gr), col("FILTER", "6A", fi),
                                           col("ROISPATIAL", "E", np.full(n, 0.1, np.float32)),
                                           col("ROISPECTRAL", "E", 2 * step),
                                           col("POWER", "E", np.full(n, 2.0, np.float32)),
                                           col("SOFTRAD", "E", np.full(n, 0.01, np.float32))], name="CUBEPAR_MSM")]
    tables = {}
    for tag, (w0, w1, r) in {"PRISM": (0.6, 5.3, 100.0), "MED": (0.7, 5.27, 1000.0),
                             "HIGH": (0.7, 5.27, 2700.0)}.items():
        wave = (w0 * (1 + 1 / r) ** np.arange(int(np.log(w1 / w0) / np.log(1 + 1 / r)) + 2)).astype(np.float32)
        tables[tag] = (wave, np.full(wave.size, 0.1, np.float32), (2 * wave / r).astype(np.float32))
    for tag, (wave, sroi, wroi) in tables.items():
        m = wave.size
        hdus.append(fits.BinTableHDU.from_columns(
            [col("WAVELENGTH", "E", wave), col("ROISPATIAL", "E", sroi), col("ROISPECTRAL", "E", wroi),
             col("POWER", "E", np.full(m, 2.0, np.float32)), col("SOFTRAD", "E", np.full(m, 0.01, np.float32))],
            name=f"MULTICHAN_{tag}_MSM"))
    hdus.append(fits.BinTableHDU.from_columns([col("DISPERSER", "5A", gr), col("FILTER", "6A", fi),
                                               col("ROISPATIAL", "E", np.full(n, 0.1, np.float32)),
                                               col("ROISPECTRAL", "E", 2 * step),
                                               col("SCALERAD", "E", np.full(n, 0.05, np.float32))],
                                              name="CUBEPAR_EMSM"))
    for tag, (wave, sroi, wroi) in tables.items():
        hdus.append(fits.BinTableHDU.from_columns(
            [col("WAVELENGTH", "E", wave), col("ROISPATIAL", "E", sroi), col("ROISPECTRAL", "E", wroi),
             col("SCALERAD", "E", sroi / 2)], name=f"MULTICHAN_{tag}_EMSM"))
    for tag, (wave, _s, _w) in tables.items():
        hdus.append(fits.BinTableHDU.from_columns([col("WAVELENGTH", "E", wave)], name=f"MULTICHAN_{tag}_DRIZZLE"))
    return P._write(path, hdus)


def ifu_fwhm(wave_um):
    """The PSF's FWHM (arcsec) the simulator gives the point source (refs/synthetic_nirspec_spec2's PSF)."""
    from .synthetic_nirspec_spec2 import psf_sigma_arcsec

    return psf_sigma_arcsec(np.asarray(wave_um, np.float64) * 1e-6) * 2.0 * np.sqrt(2.0 * np.log(2.0))


def _ifu_tree_meta(m, model_type: str, reftype: str, description: str):
    """The reference metadata of an NRS_IFU ASDF tree reference (any detector)."""
    from .synthetic import AUTHOR

    meta = m.meta
    meta.model_type, meta.reftype, meta.description = model_type, reftype, description
    meta.useafter, meta.pedigree, meta.author = "2015-11-01T00:00:00", "GROUND", AUTHOR
    meta.telescope = "JWST"
    meta.instrument.name = "NIRSPEC"
    meta.instrument.detector = "N/A"
    meta.exposure.type = IFU
    return m


def write_ifu_extract1d(path, radius_fwhm=2.0, inner_fwhm=2.5, outer_fwhm=3.5) -> Path:
    """The NIRSpec IFU extract1d reference (Extract1dIFUModel, ASDF, arrays inline as jwst reads them)."""
    from .synthetic_mrs import ifu_apertures, save_inline

    wave = np.round(np.arange(0.6, 5.31, 0.1), 2).astype(np.float32)
    m = _ifu_tree_meta(ifu_apertures(wave, ifu_fwhm(wave), radius_fwhm, inner_fwhm, outer_fwhm), "Extract1dIFUModel",
                       "EXTRACT1D", "NIRSpec IFU extraction parameters (synthetic)")
    extra = m.meta.model_extra if m.meta.model_extra is not None else {}
    extra.update({"region_type": "target", "subtract_background": True, "method": "exact", "subpixels": 10})
    save_inline(m, path)
    return Path(path)


def ifu_apcorr(grating="PRISM", filt="CLEAR", factors=(1.0, 1.5, 2.0, 2.5, 3.0)):
    """The NIRSpec IFU apcorr reference (see the module) as a NrsIfuApcorrModel."""
    from ..models import NrsIfuApcorrModel
    from .synthetic_nirspec_spec2 import psf_sigma_arcsec

    wave = np.round(np.arange(0.6, 5.31, 0.1), 2).astype(np.float32)
    fwhm = ifu_fwhm(wave)
    box = 0.1  # arcsec: the slice width and the spaxel, each a box of this width
    sigma = np.sqrt(psf_sigma_arcsec(wave.astype(np.float64) * 1e-6) ** 2 + 2 * box**2 / 12.0)
    radius = np.array([f * fwhm for f in factors], dtype=np.float32)
    corr = (1.0 / (1.0 - np.exp(-0.5 * (radius.astype(np.float64) / sigma[None, :]) ** 2))).astype(np.float32)
    m = NrsIfuApcorrModel()
    m.set_tree(apcorr_table={
        "grating": grating, "filter": filt, "wavelength": wave, "wavelength_units": "micron",
        "radius": radius, "radius_units": "arcsec", "apcorr": corr, "apcorr_err": (0.01 * corr).astype(np.float32)})
    _ifu_tree_meta(m, "NrsIfuApcorrModel", "APCORR", "NIRSpec IFU point-source aperture corrections (synthetic)")
    m.meta.instrument.grating = grating
    m.meta.instrument.filter = filt
    return m


def write_ifu_apcorr(path, grating="PRISM", filt="CLEAR") -> Path:
    """The NIRSpec IFU apcorr reference written as ASDF, its arrays inline (as jwst reads them)."""
    from .synthetic_mrs import save_inline

    save_inline(ifu_apcorr(grating, filt), path)
    return Path(path)


__all__ = ["chromcorr_reference", "ifufore_reference", "ifuslicer_reference", "slicer_table",
           "ifu_apcorr", "write_ifu_apcorr", "write_ifu_area", "write_ifu_cubepar", "write_ifu_extract1d", "write_ifu_fflat", "write_ifu_photom",
           "write_ifu_references", "write_ifu_sflat"]
