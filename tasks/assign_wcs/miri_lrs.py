"""assign_wcs for MIRI LRS: the fixed slit (MIR_LRS-FIXEDSLIT) and slitless (MIR_LRS-SLITLESS).

The LRS WCS is the imager's, with the prism's dispersion laid on top of it.  Five frames::

    detector --(x, y) -> (alpha, beta, lambda)--> alpha_beta --slit -> V2/V3--> v2v3
             --DVA scale--> v2v3vacorr --V23ToSky--> world (RA, Dec, lambda)

References:

- ``distortion``: the imager distortion (full-frame pixels, 0-based -> V2/V3 arcsec);
- ``specwcs``: the LRS wavelength table (WAVETABLE: the trace centre X_CENTER/Y_CENTER and
  WAVELENGTH per row, relative to the aperture's reference pixel, plus the corners X0..Y3 of
  the calibrated box) and the reference pixels IMX/IMY (slit) and IMXSLTL/IMYSLTL (slitless,
  full-frame 1-based), and for the slit its corners in V2/V3 (V2VERT1..4, V3VERT1..4).

How the first transform is made (as jwst 3.0 makes it):

- the reference point is (IMX-1, IMY-1) for the slit, and the slitless one moved into the
  subarray's pixels;
- alpha (arcsec along the slit) is the x offset from the trace, times the imager's pixel scale
  at the reference point (one pixel step in x through the distortion); beta is 0;
- the trace's x offset and the wavelength as functions of the subarray row come from smoothing
  splines (s=0.002) of the table, evaluated back at the table's rows and interpolated linearly
  between them (NaN outside), optionally followed by the barycentric correction from VELOSYS;
- the bounding box: the table's corners in x (slit) or the subarray minus its 4 reference
  columns (slitless), and the table's rows in y.

The step also writes SPECSYS=BARYCENT, DISPAXIS=2, the WAVELENGTH array (the WCS evaluated
on every pixel, NaN outside the bounding box), S_REGION (slit: its V2/V3 corners projected on
the sky; slitless: the footprint of the bounding box), and, for the slit, the dithered
pointing (DITH_RA/DITH_DEC) from XOFFSET/YOFFSET.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from ...errors import ReferenceFileError
from .. import _wcs

log = logging.getLogger("webbflow.steps.assign_wcs")

FIXEDSLIT, SLITLESS = "MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS"
SPLINE_SMOOTHING = 0.002  # jwst's smoothing factor of the trace and wavelength splines
S_REGION_WAVELENGTH = 7.0  # micron; any LRS wavelength gives the same sky footprint
SPEED_OF_LIGHT = 299792458.0  # m/s (astropy.constants.c)


def reftypes(model) -> tuple[str, ...]:
    return ("distortion", "specwcs")


# ---------------------------------------------------------------------------
# the specwcs reference


class LrsTable:
    """What the WCS needs from an LRS specwcs reference: the WAVETABLE columns and the header."""

    def __init__(self, ref):
        self.name = getattr(ref.meta, "filename", None) or "<in memory>"
        table = getattr(ref, "wavetable", None) if hasattr(ref, "has") and ref.has("wavetable") else None
        hdr = ref._headers.get("PRIMARY") if hasattr(ref, "_headers") else None
        if table is None:
            for hdu in getattr(ref, "_extra_hdus", []):
                if hdu.name == "WAVETABLE":
                    table = hdu.data
        if table is None:
            raise ReferenceFileError("specwcs", self.name, "has no WAVETABLE extension (not an LRS specwcs)")
        cols = {c.upper() for c in table.dtype.names}
        missing = [c for c in ("X_CENTER", "Y_CENTER", "WAVELENGTH", "X0", "Y0", "X1", "Y2") if c not in cols]
        if missing:
            raise ReferenceFileError("specwcs", self.name, f"WAVETABLE lacks column(s) {', '.join(missing)}")
        self.table = table
        self.header = hdr if hdr is not None else {}

    def col(self, name: str) -> np.ndarray:
        return np.asarray(self.table[name], dtype=np.float64)

    def key(self, name: str):
        v = self.header.get(name) if hasattr(self.header, "get") else None
        return None if v is None else float(v)

    def reference_point(self, exp_type: str) -> tuple[float, float]:
        kx, ky = ("IMX", "IMY") if exp_type == FIXEDSLIT else ("IMXSLTL", "IMYSLTL")
        x, y = self.key(kx), self.key(ky)
        if x is None or y is None:
            raise ReferenceFileError("specwcs", self.name, f"has no {kx}/{ky} reference position for {exp_type}")
        return x - 1.0, y - 1.0  # 0-based full-frame pixels

    def slit_vertices(self):
        v2 = [self.key(f"V2VERT{i}") for i in range(1, 5)]
        v3 = [self.key(f"V3VERT{i}") for i in range(1, 5)]
        return v2, v3


# ---------------------------------------------------------------------------
# transforms


def _velocity_correction(velosys: float):
    """lambda -> lambda / (1 + VELOSYS / c), with its inverse (jwst's barycentric correction model)."""
    from astropy.modeling.models import Const1D, Identity

    factor = 1.0 / (1.0 + velosys / SPEED_OF_LIGHT)
    model = Identity(1) * Const1D(factor, name="velocity_correction")
    model.inverse = Identity(1) / Const1D(factor, name="inv_vel_correction")
    return model


def _geometry(model, distortion_ref, table: LrsTable):
    """(subarray->V2/V3 distortion, subarray->full shift or None, reference point, pixel scale)."""
    exp_type = model.meta.exposure.type.upper()
    transform = getattr(distortion_ref, "model", None)
    if transform is None:
        raise ReferenceFileError("distortion", getattr(distortion_ref.meta, "filename", None) or "<in memory>",
                                 "holds no 'model' transform")
    distortion = copy.deepcopy(transform)
    sub2full = _wcs.subarray_offset(model)
    sub_dist = distortion if sub2full is None else sub2full | distortion
    x0, y0 = table.reference_point(exp_type)
    if exp_type == SLITLESS and sub2full is not None:
        x0, y0 = sub2full.inverse(x0, y0)
    v2c, v3c = sub_dist(x0, y0)
    v2o, v3o = sub_dist(x0 + 1, y0)
    pscale = float(np.sqrt((v2c - v2o) ** 2 + (v3c - v3o) ** 2))
    return sub_dist, sub2full, (float(x0), float(y0)), pscale


def detector_to_abl(model, table: LrsTable, zero_point, pscale):
    """Subarray (x, y) -> (alpha, beta, lambda), with its inverse and bounding box."""
    from astropy.modeling import bind_bounding_box
    from astropy.modeling.models import Const1D, Mapping, Polynomial1D, Shift, Tabular1D
    from scipy.interpolate import UnivariateSpline

    exp_type = model.meta.exposure.type.upper()
    zx, zy = zero_point
    xcen, ycen, wave = table.col("X_CENTER"), table.col("Y_CENTER"), table.col("WAVELENGTH")
    xlo, yhi, xhi, ylo = table.col("X0"), table.col("Y0"), table.col("X1"), table.col("Y2")
    rows = ycen + zy  # the table's rows in subarray pixels (decreasing down the table)

    # the trace's x offset and the wavelength against the row: smoothing splines (rows increasing)
    trace_dx = UnivariateSpline(rows[::-1], xcen[::-1], s=SPLINE_SMOOTHING)(rows)
    trace = Tabular1D(points=rows, lookup_table=trace_dx, name="xshiftref", bounds_error=False, fill_value=np.nan)
    wavefit = UnivariateSpline(rows[::-1], wave[::-1], s=SPLINE_SMOOTHING)(rows)
    wavemodel = Tabular1D(points=rows, lookup_table=wavefit, name="waveref", bounds_error=False, fill_value=np.nan)
    velosys = model.meta.wcsinfo.velosys
    if velosys is not None:
        vcorr = _velocity_correction(velosys)
        wavemodel = wavemodel | vcorr
        log.info("Applied Barycentric velocity correction : %s", vcorr[1].amplitude.value)

    if exp_type == FIXEDSLIT:
        xrange = (np.floor(xlo.min() + zx) - 0.5, np.ceil(xhi.max() + zx) + 0.5)
        yrange = (trace.points[0].min(), trace.points[0].max())
    else:
        xstart, xsize = model.meta.subarray.xstart, model.meta.subarray.xsize
        xrange = (xstart - 1 + 4 - 0.5, xsize - 1 + 0.5)  # the 4 reference columns on the left are left out
        yrange = (np.floor(ylo.min() + zy) - 0.5, np.ceil(yhi.max() + zy) + 0.5)

    # forward: x relative to the trace at that row gives alpha; beta is 0; the row gives lambda
    slit_x = Mapping((0,), n_inputs=2) - (Mapping((1,), n_inputs=2) | trace)
    slit_xy = Mapping((0, 1, 0, 1)) | slit_x & Mapping((1,), n_inputs=2)
    alpha = Mapping((0,), n_inputs=2) | Shift(-zx) | Polynomial1D(1, c0=0, c1=pscale)
    alpha_beta = Mapping((0, 1, 0)) | alpha & Const1D(0)
    # a shift to the reference point and back: no effect, but pathloss reads the point from it
    keep_ref = Shift(-zx) & Shift(-zy) | Shift(zx) & Shift(zy)
    forward = Mapping((0, 1, 0, 1)) | (keep_ref | slit_xy | alpha_beta) & (Mapping((1,), n_inputs=2) | wavemodel)

    # inverse: lambda gives the row; alpha and the trace at that row give x
    to_slit_x = Polynomial1D(1, c0=0, c1=1 / pscale) | Shift(zx)
    row_of = wavemodel.inverse
    add_trace = Mapping((0,), n_inputs=2) + (Mapping((1,), n_inputs=2) | trace)
    x_of = Mapping((0, 2)) | to_slit_x & row_of | add_trace
    y_of = Mapping((2,), n_inputs=3) | row_of
    forward.inverse = Mapping((0, 1, 2, 0, 1, 2)) | x_of & y_of
    bind_bounding_box(forward, (xrange, yrange), order="F")
    return forward


def abl_to_v2v3l(sub_dist, zero_point, pscale):
    """(alpha, beta, lambda) -> (V2, V3, lambda) through the imager distortion, with its inverse."""
    from astropy.modeling.models import Identity, Mapping, Polynomial1D, Shift

    zx, zy = zero_point
    to_x = Polynomial1D(1, c0=0, c1=1 / pscale) | Shift(zx)
    to_y = Polynomial1D(1, c0=0, c1=1 / pscale) | Shift(zy)
    forward = Mapping((0, 1, 2)) | (to_x & to_y | sub_dist) & Identity(1)
    to_alpha = Shift(-zx) | Polynomial1D(1, c0=0, c1=pscale)
    to_beta = Shift(-zy) | Polynomial1D(1, c0=0, c1=pscale)
    back = sub_dist.inverse | to_alpha & to_beta
    forward.inverse = Mapping((0, 1, 2)) | back & Identity(1)
    return forward


def lrs_pipeline(model, distortion_ref, specwcs_ref) -> list:
    """The gwcs pipeline of an LRS exposure."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling.models import Identity
    from gwcs import coordinate_frames as cf

    w = model.meta.wcsinfo
    missing = [k.upper() for k in ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref") if getattr(w, k) is None]
    if missing:
        from ...errors import InputFileError

        raise InputFileError(model.meta.filename or "<in memory>",
                             f"has no pointing keywords {', '.join(missing)} in its SCI header; cannot build a WCS")
    table = LrsTable(specwcs_ref)
    sub_dist, _sub2full, zero_point, pscale = _geometry(model, distortion_ref, table)

    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    ab = cf.Frame2D(name="alpha_beta_spatial", axes_order=(0, 1), unit=(u.arcsec, u.arcsec), axes_names=("alpha", "beta"))
    ab_spec = cf.SpectralFrame(name="alpha_beta_spectral", axes_order=(2,), unit=(u.micron,), axes_names=("lambda",))
    alpha_beta = cf.CompositeFrame([ab, ab_spec], name="alpha_beta")

    def spec():
        return cf.SpectralFrame(name="spec", axes_order=(2,), unit=(u.micron,), axes_names=("lambda",))

    v2v3_sp = cf.Frame2D(name="v2v3_spatial", axes_order=(0, 1), unit=(u.arcsec, u.arcsec), axes_names=("v2", "v3"))
    vacorr_sp = cf.Frame2D(name="v2v3vacorr_spatial", axes_order=(0, 1), unit=(u.arcsec, u.arcsec),
                           axes_names=("v2", "v3"))
    spectral = spec()
    v2v3 = cf.CompositeFrame([v2v3_sp, spectral], name="v2v3")
    v2v3vacorr = cf.CompositeFrame([vacorr_sp, spectral], name="v2v3vacorr")
    icrs = cf.CelestialFrame(name="icrs", reference_frame=coord.ICRS(), axes_order=(0, 1), unit=(u.deg, u.deg),
                             axes_names=("RA", "DEC"))
    world = cf.CompositeFrame(name="world", frames=[icrs, spectral])

    det2abl = detector_to_abl(model, table, zero_point, pscale)
    abl2v23 = abl_to_v2v3l(sub_dist, zero_point, pscale)
    va = _wcs.dva_correction(model.meta.velocity_aberration.scale_factor, w.v2_ref, w.v3_ref) & Identity(1)
    tel2sky = _wcs.v23tosky(w.v2_ref, w.v3_ref, w.roll_ref, w.ra_ref, w.dec_ref) & Identity(1)
    return [(detector, det2abl), (alpha_beta, abl2v23), (v2v3, va), (v2v3vacorr, tel2sky), (world, None)], table


# ---------------------------------------------------------------------------
# the step's work for LRS


def wavelengths(model) -> np.ndarray:
    """The WCS's wavelength at every pixel (NaN outside the bounding box)."""
    ny, nx = model.data.shape[-2:]
    y, x = np.indices((ny, nx), dtype=np.float64)
    return model.meta.wcs(x, y)[2]


def _s_region_slit(model, table: LrsTable) -> None:
    v2, v3 = table.slit_vertices()
    if any(v is None for v in v2 + v3):
        log.info("The V2,V3 coordinates of the MIRI LRS-Fixed slit contains NaN values.")
        log.info("The s_region will not be updated")
        return
    ra, dec, _ = model.meta.wcs.transform("v2v3", "world", v2, v3, S_REGION_WAVELENGTH)
    s_region = _wcs.s_region_keyword(np.array([[ra[i], dec[i]] for i in range(4)]))
    if s_region is not None:
        model.meta.wcsinfo.s_region = s_region


def _dithered_position(model) -> None:
    """DITH_RA/DITH_DEC: the sky position of the dither offset (XOFFSET, YOFFSET arcsec in the ideal frame)."""
    from stdatamodels.jwst.transforms.models import IdealToV2V3

    w, d = model.meta.wcsinfo, model.meta.dither
    ideal_to_v23 = IdealToV2V3(w.v3yangle, w.v2_ref, w.v3_ref, w.vparity)
    v2, v3 = ideal_to_v23(d.x_offset, d.y_offset)
    ra, dec, _ = model.meta.wcs.get_transform("v2v3", "world")(v2, v3, 0.0)
    d.dithered_ra, d.dithered_dec = float(ra), float(dec)


def assign(model, refs, params):
    from gwcs import WCS

    exp_type = (model.meta.exposure.type or "").upper()
    for rt in ("distortion", "specwcs"):
        if refs.get(rt) is None:
            log.info("Step assign_wcs skipped: reference type %s is N/A for this exposure", rt)
            return model, "SKIPPED"
    model.meta.wcsinfo.specsys = "BARYCENT"
    model.meta.wcsinfo.dispersion_direction = 2
    pipeline, table = lrs_pipeline(model, refs["distortion"], refs["specwcs"])
    model.meta.wcs = WCS(pipeline)
    if exp_type == FIXEDSLIT:
        _s_region_slit(model, table)
    else:
        try:
            _wcs.update_s_region(model)
        except Exception as exc:  # noqa: BLE001 - jwst logs the failure and goes on
            log.error("Unable to update S_REGION for type %s: %s", exp_type, exc)
    model.wavelength = wavelengths(model).astype(np.float32)
    if exp_type == FIXEDSLIT:
        _dithered_position(model)
    log.info("assign_wcs: LRS WCS built; S_REGION %s", model.meta.wcsinfo.s_region)
    return model
