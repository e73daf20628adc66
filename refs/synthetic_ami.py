"""Synthetic NIRISS AMI material: the ``nrm`` and ``throughput`` references and the scene behind
the non-redundant mask (a star, optionally with a faint companion).

The mask geometry is the NIRISS NRM as designed (seven hexagonal holes, 0.82 m flat to flat,
in metres on the primary mirror); the point-source image is the squared modulus of the
holes' summed Fourier transforms, polychromatic over the filter, oversampled and summed to
65.6 mas pixels.  References are written in the layout stdatamodels writes (NRMModel with the
NRM image and NRM_X_A1.. keywords, ThroughputModel with a THROUGHPUT table in Angstrom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# hole centres as designed (m), in the order B4, C2, B5, B2, C1, B6, C6 (NRM_X_A1..A7)
HOLES_AS_DESIGNED = np.array([
    [0.0, -2.64], [-2.28631, 0.0], [2.28631, -1.32], [-2.28631, 1.32],
    [-1.14315, 1.98], [2.28631, 1.32], [1.14315, 1.98],
])
FLAT_TO_FLAT = 0.82
DIAMETER = 6.559348
PUPIL_CIRCUMSCRIBED = 6.603464
PIXEL_SCALE_MAS = 65.6
FILTER_HALF_POWER = {"F380M": (3.726e-6, 3.931e-6), "F430M": (4.182e-6, 4.395e-6), "F480M": (4.669e-6, 4.971e-6),
                     "F277W": (2.413e-6, 3.142e-6)}


def _header_common(m, reftype, descrip):
    m.meta.reftype = reftype.upper()
    m.meta.telescope = "JWST"
    m.meta.instrument.name = "NIRISS"
    m.meta.instrument.detector = "NIS"
    m.meta.pedigree = "DUMMY"
    m.meta.useafter = "2022-01-01T00:00:00"
    m.meta.author = "webbflow"
    m.meta.description = descrip


def pupil_image(n=1024):
    """The mask's transmission on an ``n``x``n`` grid spanning the circumscribed pupil (rows along
    the model's first hole coordinate)."""
    from ..tasks._ami_lg import rotate_ccw

    built = HOLES_AS_DESIGNED.copy()
    built[:, 0] *= -1
    built = rotate_ccw(built, np.pi / 2.0)
    ax = (np.arange(n) - n / 2 + 0.5) * PUPIL_CIRCUMSCRIBED / n
    y, x = np.meshgrid(ax, ax, indexing="ij")
    out = np.zeros((n, n), np.float32)
    r = FLAT_TO_FLAT / 2
    for c0, c1 in built:
        u, v = y - c0, x - c1
        inside = np.abs(u) <= r
        for ang in (np.pi / 3, -np.pi / 3):
            inside &= np.abs(u * np.cos(ang) + v * np.sin(ang)) <= r
        out[inside] = 1.0
    return out


def write_nrm(path, exp_type="NIS_AMI", n=1024):
    from ..models.ami import NRM_KEYWORDS, NRMModel

    m = NRMModel(nrm=pupil_image(n))
    _header_common(m, "nrm", "NIRISS non-redundant mask geometry (webbflow synthetic)")
    m.meta.instrument.pupil = "NRM"
    m.meta.exposure.type = exp_type
    values = {"diameter": DIAMETER, "flat_to_flat": FLAT_TO_FLAT, "pupil_circumscribed": PUPIL_CIRCUMSCRIBED}
    for i, (x, y) in enumerate(HOLES_AS_DESIGNED, start=1):
        values[f"x_a{i}"], values[f"y_a{i}"] = float(x), float(y)
    for k, v in values.items():
        m.set_keyword(NRM_KEYWORDS[k], v)
    return m.save(Path(path))


def throughput_curve(filt, n=600):
    """(wavelength in Angstrom, throughput): a filter with soft edges at its half-power points."""
    lo, hi = FILTER_HALF_POWER[filt]
    width = hi - lo
    wl = np.linspace(lo - 0.4 * width, hi + 0.4 * width, n)
    edge = 0.02 * width
    t = 0.9 / (1 + np.exp(-(wl - lo) / edge)) / (1 + np.exp((wl - hi) / edge))
    t *= 1 + 0.05 * (wl - lo) / width  # a gentle slope across the band
    return (wl * 1e10).astype(np.float32), t.astype(np.float32)


def write_throughput(path, filt):
    from ..models.ami import ThroughputModel

    wl, t = throughput_curve(filt)
    table = np.zeros(wl.size, dtype=[("wavelength", ">f4"), ("throughput", ">f4")])
    table["wavelength"], table["throughput"] = wl, t
    m = ThroughputModel(filter_table=table)
    _header_common(m, "throughput", f"NIRISS {filt} throughput (webbflow synthetic)")
    m.meta.instrument.filter = filt
    return m.save(Path(path))


def sampled_bandpass(filt, nlambda=9):
    """``(weight, wavelength_m)`` rows sampling the filter, weights normalised to 1."""
    wl, t = throughput_curve(filt)
    wl = wl.astype(float) * 1e-10
    edges = np.linspace(wl[t > 0.01 * t.max()].min(), wl[t > 0.01 * t.max()].max(), nlambda + 1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    w = np.interp(mids, wl, t.astype(float))
    return np.column_stack([w / w.sum(), mids])


def scene(filt, npix=80, offset=(0.3, -0.2), companion=None, over=5):
    """The noiseless image (peak normalised to 1) of a star behind the mask, and with
    ``companion=(d_row_px, d_col_px, contrast)`` a faint companion at that offset."""
    from ..tasks._ami_lg import Affine2d, hole_centres, psf_image

    class _Nrm:  # the as-designed hole centres, as the nrm reference holds them
        pass

    nrm = _Nrm()
    for i, (x, y) in enumerate(HOLES_AS_DESIGNED, start=1):
        setattr(nrm, f"x_a{i}", x)
        setattr(nrm, f"y_a{i}", y)
    ctrs = hole_centres(nrm)
    band = sampled_bandpass(filt)
    pitch = np.deg2rad(PIXEL_SCALE_MAS / 3.6e6)
    aff = Affine2d()
    img = psf_image(ctrs, band, over, pitch, npix, FLAT_TO_FLAT, offset, aff)
    if companion is not None:
        dr, dc, contrast = companion
        img = img + contrast * psf_image(ctrs, band, over, pitch, npix, FLAT_TO_FLAT,
                                         (offset[0] + dc, offset[1] + dr), aff)
    return img / img.max()


def binary_observables(ctrs, filt, companion, pixel_mas=PIXEL_SCALE_MAS):
    """Truth for a binary: the squared visibilities and closure phases (deg) of a star plus a
    companion ``(d_row_px, d_col_px, contrast)``, on the baselines of hole centres ``ctrs`` in the
    fringe model's frame (first coordinate along image rows; ``ami_analyze``'s hole_centres), at
    the filter's centre wavelength, in the order of the OI_VIS2 and OI_T3 rows."""
    lo, hi = FILTER_HALF_POWER[filt]
    lam = 0.5 * (lo + hi)
    dr, dc, c = companion
    rad = np.deg2rad(pixel_mas / 3.6e6)
    n = len(ctrs)
    vis = {}
    for i in range(n):
        for j in range(i + 1, n):
            b = np.asarray(ctrs[i]) - np.asarray(ctrs[j])
            ph = 2 * np.pi * (b[0] * dr + b[1] * dc) * rad / lam
            vis[(i, j)] = (1 + c * np.exp(1j * ph)) / (1 + c)
    v2 = np.array([abs(v) ** 2 for v in vis.values()])
    cps = [np.degrees(np.angle(vis[(i, j)] * vis[(j, k)] * np.conj(vis[(i, k)])))
           for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n)]
    return v2, np.array(cps)


def write_calints(path, filt="F480M", *, target="HD-12345", nints=3, companion=None, peak=2.0e4,
                  seed=1, offset=(0.3, -0.2), bad_pixels=2, start="2024-01-15 03:00:00.000"):
    """A calibrated AMI exposure (``_calints``: SUB80, one image per integration, DN/s) of a star
    behind the mask: Poisson and read noise, a few DO_NOT_USE pixels and one unflagged hot pixel."""
    from ..models import CubeModel

    rng = np.random.default_rng(seed)
    img = scene(filt, 80, offset, companion)
    tframe, ngroups = 0.07544, 5
    xposure = tframe * (ngroups - 1)
    data = np.empty((nints, 80, 80), np.float32)
    for i in range(nints):
        counts = rng.poisson(np.clip(img * peak * xposure, 0, None) + 30.0)
        data[i] = ((counts + rng.normal(0, 15.0, counts.shape)) / xposure - 30.0 / xposure).astype(np.float32)
    dq = np.zeros(data.shape, np.uint32)
    for _ in range(bad_pixels):
        y, x = rng.integers(30, 50, 2)
        dq[:, y, x] |= 1
        data[:, y, x] = np.nan
    y, x = rng.integers(25, 55, 2)
    data[-1, y, x] += 50 * peak  # a hot pixel no step flagged, for the bad-pixel search
    m = CubeModel(data=data, dq=dq, err=np.sqrt(np.abs(data) / xposure).astype(np.float32))
    m.var_poisson = (np.abs(data) / xposure).astype(np.float32)
    m.var_rnoise = np.full(data.shape, (15.0 / xposure) ** 2, np.float32)
    meta = m.meta
    meta.telescope = "JWST"
    meta.date = "2024-01-16T00:00:00.000"
    meta.instrument.name, meta.instrument.detector = "NIRISS", "NIS"
    meta.instrument.filter, meta.instrument.pupil = filt, "NRM"
    meta.exposure.type, meta.exposure.readpatt = "NIS_AMI", "NISRAPID"
    meta.exposure.nints, meta.exposure.ngroups, meta.exposure.nframes = nints, ngroups, 1
    meta.exposure.integration_time = xposure
    meta.exposure.effective_exposure_time = xposure
    meta.exposure.frame_time, meta.exposure.group_time = tframe, tframe
    meta.subarray.name = "SUB80"
    meta.subarray.xstart, meta.subarray.ystart, meta.subarray.xsize, meta.subarray.ysize = 1, 1, 80, 80
    meta.observation.date, meta.observation.time = start[:10], start[11:]
    meta.visit.start_time = start
    meta.program.pi_name = "WEBBFLOW, TEST"
    meta.target.proposer_name = target
    meta.target.catalog_name = target
    meta.target.ra, meta.target.dec = 80.0, -69.5
    meta.wcsinfo.cdelt1 = meta.wcsinfo.cdelt2 = PIXEL_SCALE_MAS / 3.6e6
    meta.wcsinfo.crpix1, meta.wcsinfo.crpix2 = 45.0, 43.0
    meta.wcsinfo.roll_ref, meta.wcsinfo.v3yangle, meta.wcsinfo.vparity = 253.2, -0.57, -1
    meta.bunit_data, meta.bunit_err = "DN/s", "DN/s"
    from astropy.io import fits

    h = m._headers.setdefault("PRIMARY", fits.Header())
    h["MU_RA"], h["MU_DEC"], h["TARGURA"], h["TARGUDEC"] = 0.0, 0.0, 0.01, 0.01
    return m.save(Path(path))


def write_ami_references(root, filters=("F480M",)):
    """The nrm and throughput references in a CRDS cache at ``root`` (the default context names
    them: nrm by detector, throughput by filter).  Returns ``{reftype or filter: path}``."""
    from .context import Rmap, read_context, reference_path, write_context

    root = Path(root)
    old = read_context(root)
    rules = {ins: dict(r) for ins, r in old.rmaps.items()}
    niriss = rules.setdefault("NIRISS", {})
    out = {}
    name = "jwst_niriss_nrm_0001.fits"
    p = reference_path(root, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    out["nrm"] = write_nrm(p)
    niriss["nrm"] = Rmap("NIRISS", "nrm", ("META.INSTRUMENT.DETECTOR",), {("NIS",): name})
    thr = Rmap("NIRISS", "throughput", ("META.INSTRUMENT.FILTER",), {})
    for k, filt in enumerate(filters, start=1):
        name = f"jwst_niriss_throughput_{k:04d}.fits"
        out[filt] = write_throughput(reference_path(root, name), filt)
        thr.entries[(filt,)] = name
    niriss["throughput"] = thr
    write_context(root, rules, "NIRISS AMI references (webbflow synthetic)")
    return out
