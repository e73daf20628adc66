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


__all__ = ["chromcorr_reference", "ifufore_reference", "ifuslicer_reference", "slicer_table",
           "write_ifu_references"]
