"""NIRISS SOSS references, built on the real SOSS traces (spectrace 0023, SUBSTRIP256).

jwst 3.0 takes the SOSS trace positions and wavelengths from the ``pastasoss`` reference and the
per-pixel wavelengths of the WCS from the ``specwcs`` reference; the older ``spectrace`` and
``wavemap`` references (real ones in ../shared/data/real-refs/niriss) are no longer read.  This
module writes the references jwst 3.0 reads, in their CRDS form, from the real traces:

- ``pastasoss`` (ASDF, PastasossModel): for each order the on-detector part of the real trace
  (x, y at the commanded pupil wheel position 245.76 deg), its rotation pivot and column cutoff, a
  2-D polynomial wavelength(column, pupil-wheel offset) fitted to the real wavelength solution,
  and the real order throughput; the 0.5-5.5 um grid of 5001 wavelengths.
- ``specwcs`` (ASDF, the SOSS form): per order a Tabular2D of wavelength on full-frame (row,
  column) over the SOSS rows (full-frame rows 1792-2047), from the same traces (no tilt).
- ``specprofile`` (FITS, SpecProfileModel): per order a normalised Gaussian profile across the
  trace, padded by 20 pixels as the real file is.
- ``speckernel`` (FITS, SpecKernelModel): Gaussian spectral kernels (15 pixels, oversampled 6x).
- ``photom``: the real SOSS photom (NisSossPhotomModel, ``jwst_niriss_photom_rev2.fits``) when
  it is there, else one in the same form.
- ``flat`` (FITS, FlatModel): a SUBSTRIP256 flat near 1 for CLEAR/GR700XD.

``trace_model(order)`` gives the traces as the simulator draws them, so that the simulated
spectra land where extract_1d looks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REAL_NIRISS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-refs" / "niriss"
SPECTRACE = "jwst_niriss_spectrace_0023.fits"
REAL_PHOTOM = "jwst_niriss_photom_rev2.fits"
PWCPOS_CMD = 245.76
PWCPOS_BOUNDS = (245.51, 246.01)
CUTOFF = {1: 2048, 2: 1783, 3: 1130}  # the columns each order is extracted over (jwst's reference values)
PIVOT = {1: (1853.58, 140.0), 2: (1853.58, 140.0), 3: (1853.58, 140.0)}
FULL_ROW0 = 1792  # SUBSTRIP256 starts at full-frame row 1793 (1-based)
PROFILE_SIGMA = 4.0  # pixels, the cross-dispersion width of the simulated and profiled traces
WAVECAL_DEGREE = 5


def real_spectrace_path() -> Path:
    return REAL_NIRISS / SPECTRACE


def read_spectrace(path=None) -> dict[int, dict[str, np.ndarray]]:
    """The real spectrace tables: per order WAVELENGTH, X, Y (SUBSTRIP256 pixels) and THROUGHPUT."""
    from astropy.io import fits

    p = Path(path) if path else real_spectrace_path()
    if not p.exists():
        from ..errors import ReferenceFileError

        raise ReferenceFileError("spectrace", p, "the real SOSS traces are not there (../shared/data/real-refs/niriss)")
    out = {}
    with fits.open(p) as hdul:
        for hdu in hdul[1:]:
            t = hdu.data
            out[int(hdu.header["ORDER"])] = {c.lower(): np.asarray(t[c], dtype=np.float64)
                                              for c in ("WAVELENGTH", "X", "Y", "THROUGHPUT")}
    return out


def _header(meta: dict, reftype: str, descrip: str, subarray="SUBSTRIP256"):
    meta.update({"reftype": reftype.upper(), "telescope": "JWST", "pedigree": "DUMMY", "author": "webbflow",
                 "useafter": "2022-01-01T00:00:00", "description": descrip,
                 "instrument": {"name": "NIRISS", "detector": "NIS", "filter": "CLEAR", "pupil": "GR700XD"},
                 "exposure": {"type": "NIS_SOSS"}, "subarray": {"name": subarray}})
    return meta


def _fit_wavecal(x, wl):
    """Coefficients (C00, C10, C01, C20, C11, C02, ...) of wavelength(x_scaled, offset_scaled) and the scale extents.

    The column dependence is fitted to the real solution; the pupil-wheel dependence is a small
    linear shift (0.1 um per scaled unit), as the wheel's rotation moves the spectrum along x.
    """
    ext = np.array([[float(x.min()), -0.25], [float(x.max()), 0.25]])
    xs = (x - ext[0, 0]) / (ext[1, 0] - ext[0, 0])
    px = np.polynomial.polynomial.polyfit(xs, wl, WAVECAL_DEGREE)
    coeffs = []
    for total in range(WAVECAL_DEGREE + 1):
        for j in range(total + 1):
            i = total - j
            if j == 0:
                coeffs.append(float(px[i]))
            elif j == 1 and i == 0:
                coeffs.append(0.01)
            else:
                coeffs.append(0.0)
    # the offset is scaled to [0, 1] over [-0.25, 0.25] deg: remove the shift at zero offset
    coeffs[0] -= 0.01 * (0.0 - ext[0, 1]) / (ext[1, 1] - ext[0, 1])
    return np.array(coeffs), ext


def pastasoss_tree(spectrace=None) -> dict:
    st = spectrace or read_spectrace()
    traces, wavecals, thr = [], [], []
    for order in (1, 2, 3):
        t = st[order]
        on = (t["x"] > -20) & (t["x"] < 2068) & np.isfinite(t["y"])
        x, y, wl = t["x"][on], t["y"][on], t["wavelength"][on]
        srt = np.argsort(x)
        x, y, wl = x[srt], y[srt], wl[srt]
        coeffs, ext = _fit_wavecal(x, wl)
        traces.append({"spectral_order": order, "pivot_x": PIVOT[order][0], "pivot_y": PIVOT[order][1],
                       "trace": np.ascontiguousarray(np.stack([x, y], axis=1)), "oversampling": 1,
                       "cutoff": CUTOFF[order]})
        wavecals.append({"spectral_order": order, "polynomial_degree": WAVECAL_DEGREE, "coefficients": coeffs,
                         "coefficient_labels": "C00 C10 C01 C20 C11 C02 ...", "scale_extents": ext})
        thr.append({"spectral_order": order, "wavelength": t["wavelength"].copy(), "throughput": t["throughput"].copy()})
    meta = _header({"model_type": "PastasossModel"}, "pastasoss", "NIRISS SOSS traces and wavelength calibration "
                   "from the real spectrace 0023 (webbflow synthetic)")
    meta.update({"pwcpos_cmd": PWCPOS_CMD, "pwcpos_bounds": list(PWCPOS_BOUNDS), "order2_separation_cutoff": [0.77, 0.95],
                 "soss_xdim": 2048, "soss_ydim": 300, "subarray_ymin": 2048 - 256, "wavemap_nwl": 5001,
                 "wavemap_wlmin": 0.5, "wavemap_wlmax": 5.5})
    return {"meta": meta, "traces": traces, "wavecal_models": wavecals, "throughputs": thr}


def write_pastasoss(path, spectrace=None) -> Path:
    import asdf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    asdf.AsdfFile(pastasoss_tree(spectrace)).write_to(path)
    return path


class TraceModel:
    """Where each order lands at a pupil wheel position: (columns, trace row, wavelength), as extract_1d reads them."""

    def __init__(self, tree: dict, pwcpos: float = PWCPOS_CMD, subarray: str = "SUBSTRIP256"):
        from ..tasks.extract_1d import soss

        self.tree, self.pwcpos, self.subarray = tree, pwcpos, subarray
        self._soss = soss

    def order(self, order: int):
        s = self._soss
        i = [int(t["spectral_order"]) for t in self.tree["traces"]].index(order)
        trace = s.spectrace(self.tree, self.pwcpos, order, self.subarray)
        return s.order_trace(trace, int(self.tree["traces"][i]["cutoff"]))


def write_specwcs(path, tree=None) -> Path:
    """The SOSS specwcs: per order, wavelength on full-frame (row, column) over the SOSS rows."""
    import asdf
    from astropy.modeling.models import Tabular2D

    tree = tree or pastasoss_tree()
    tm = TraceModel(tree)
    rows = np.arange(FULL_ROW0, 2048, dtype=np.float64)
    cols = np.arange(2048, dtype=np.float64)
    out = {}
    for order in (1, 2, 3):
        c, _y, wave = tm.order(order)
        w = np.full(2048, np.nan)
        w[c] = wave
        table = np.repeat(w[None, :], len(rows), axis=0).astype(np.float32)
        out[order] = Tabular2D(points=(rows, cols), lookup_table=table, bounds_error=False, fill_value=np.nan,
                               name=f"order{order}_wavelength")
    meta = _header({"model_type": "SpecwcsModel"}, "specwcs", "NIRISS SOSS wavelength maps from the real traces "
                   "(webbflow synthetic)")
    out["meta"] = meta
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    asdf.AsdfFile(out).write_to(path)
    return path


def _primary(reftype, descrip, datamodl, subarray="SUBSTRIP256"):
    from astropy.io import fits

    h = fits.Header()
    for k, v in (("DATAMODL", datamodl), ("TELESCOP", "JWST"), ("INSTRUME", "NIRISS"), ("DETECTOR", "NIS"),
                 ("FILTER", "CLEAR"), ("PUPIL", "GR700XD"), ("EXP_TYPE", "NIS_SOSS"), ("SUBARRAY", subarray),
                 ("REFTYPE", reftype.upper()), ("PEDIGREE", "DUMMY"), ("USEAFTER", "2022-01-01T00:00:00"),
                 ("AUTHOR", "webbflow"), ("DESCRIP", descrip)):
        h[k] = v
    return h


def write_specprofile(path, tree=None, padding: int = 20) -> Path:
    """Normalised Gaussian profiles across each order's trace, (256 + 2 pad) x (2048 + 2 pad)."""
    from astropy.io import fits

    tree = tree or pastasoss_tree()
    tm = TraceModel(tree)
    hdus = [fits.PrimaryHDU(header=_primary("specprofile", "NIRISS SOSS trace profiles (webbflow synthetic)",
                                            "SpecProfileModel"))]
    ny, nx = 256 + 2 * padding, 2048 + 2 * padding
    rows = np.arange(ny, dtype=np.float64)[:, None] - padding
    for order in (1, 2, 3):
        c, y, _w = tm.order(order)
        prof = np.zeros((ny, nx), np.float32)
        g = np.exp(-0.5 * ((rows - y[None, :]) / PROFILE_SIGMA) ** 2)
        g /= g.sum(axis=0, keepdims=True)
        prof[:, c + padding] = g.astype(np.float32)
        h = fits.ImageHDU(prof, name="ORDER")
        h.header["ORDER"], h.header["OVERSAMP"], h.header["PADDING"] = order, 1, padding
        h.ver = order
        hdus.append(h)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_speckernel(path, halfwidth: int = 7, oversampling: int = 6, fwhm_pixels: float = 2.0) -> Path:
    from astropy.io import fits

    npos = oversampling * (2 * halfwidth + 1) - (oversampling - 1)
    centres = np.linspace(0.5, 5.5, 95)
    pix = np.linspace(-halfwidth, halfwidth, npos)
    k = np.exp(-0.5 * (pix / (fwhm_pixels / 2.3548)) ** 2)
    k /= k.sum()
    kernels = np.repeat(k[:, None], len(centres), axis=1).astype(np.float32)
    waves = np.repeat(centres[None, :], npos, axis=0).astype(np.float32)
    hdus = [fits.PrimaryHDU(header=_primary("speckernel", "NIRISS SOSS spectral kernels (webbflow synthetic)",
                                            "SpecKernelModel"))]
    hw = fits.ImageHDU(waves, name="WAVELENGTHS")
    hw.header["NWAVE"], hw.header["WAVEMIN"], hw.header["WAVEMAX"] = len(centres), 0.5, 5.5
    hk = fits.ImageHDU(kernels, name="KERNELS")
    hk.header["SPECOS"], hk.header["HALFWIDT"], hk.header["INDCENTR"] = oversampling, halfwidth, npos // 2 + 1
    hdus += [hw, hk]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_photom(path) -> Path:
    """The real SOSS photom (copied), so that x1dints are calibrated with the flight values."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    src = REAL_NIRISS / REAL_PHOTOM
    if not src.exists():
        from ..errors import ReferenceFileError

        raise ReferenceFileError("photom", src, "the real SOSS photom is not there (../shared/data)")
    shutil.copyfile(src, path)
    path.chmod(0o644)
    return path


def write_flat(path, seed: int = 0) -> Path:
    """A SUBSTRIP256 flat near 1 (0.5 % pixel to pixel), with its DQ, ERR and DQ_DEF."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    data = (1.0 + 0.005 * rng.standard_normal((256, 2048))).astype(np.float32)
    h = _primary("flat", "NIRISS SOSS flat (webbflow synthetic)", "FlatModel")
    for k, v in (("SUBSTRT1", 1), ("SUBSTRT2", FULL_ROW0 + 1), ("SUBSIZE1", 2048), ("SUBSIZE2", 256),
                 ("FASTAXIS", -2), ("SLOWAXIS", -1)):
        h[k] = v
    dq_def = np.array([(0, 0, "GOOD", "Good pixel"), (1, 1, "DO_NOT_USE", "Bad pixel not to be used for science")],
                      dtype=[("BIT", "i4"), ("VALUE", "i4"), ("NAME", "S40"), ("DESCRIPTION", "S80")])
    hdus = [fits.PrimaryHDU(header=h), fits.ImageHDU(data, name="SCI"),
            fits.ImageHDU(np.zeros(data.shape, np.uint32), name="DQ"),
            fits.ImageHDU(np.full(data.shape, 0.001, np.float32), name="ERR"), fits.BinTableHDU(dq_def, name="DQ_DEF")]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_soss_references(folder) -> dict[str, Path]:
    """Every SOSS reference in ``folder``: ``{reftype: path}``."""
    folder = Path(folder)
    tree = pastasoss_tree()
    return {
        "pastasoss": write_pastasoss(folder / "jwst_niriss_pastasoss_0001.asdf"),
        "specwcs": write_specwcs(folder / "jwst_niriss_specwcs_0001.asdf", tree),
        "specprofile": write_specprofile(folder / "jwst_niriss_specprofile_0001.fits", tree),
        "speckernel": write_speckernel(folder / "jwst_niriss_speckernel_0001.fits"),
        "photom": write_photom(folder / "jwst_niriss_photom_0001.fits"),
        "flat": write_flat(folder / "jwst_niriss_flat_0001.fits"),
    }
