"""The cube's grid and the mapping of MRS detector pixels onto it, as jwst 3.0's cube_build makes them.

- which bands a set of exposures covers, and which cubes ``output_type`` makes of them;
- the cube parameters of those bands from the ``cubepar`` reference (spaxel size, wavelength step
  and range; the multi-band wavelength table);
- the footprint of each exposure's band on the sky (from S_REGION and the spectral region, or by
  mapping every pixel of the channel), and from it the tangent-plane grid: a cube centred on the
  footprint, with an odd number of spaxels on each side of the tangent point;
- every usable detector pixel of a channel mapped to the tangent plane (its centre and the four
  corners of its footprint) and its wavelength extent, for the 3-D drizzle.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ...models.dqflags import PIXEL as DQ

# MRS channel layout on the detectors: first and last slice numbers in the regions map and the
# detector columns [xstart, xend) the channel's slices fall in
CHANNELS = {
    "1": dict(nslices=21, start_slice=101, end_slice=121, xstart=0, xend=512),
    "2": dict(nslices=17, start_slice=201, end_slice=217, xstart=513, xend=1031),
    "3": dict(nslices=16, start_slice=301, end_slice=316, xstart=513, xend=1031),
    "4": dict(nslices=12, start_slice=401, end_slice=412, xstart=0, xend=512),
}
VALID_CHANNELS = ("1", "2", "3", "4")
VALID_BANDS = ("short", "medium", "long", "short-medium", "short-long", "medium-short",
               "medium-long", "long-short", "long-medium")
RAD2ARCSEC = (180.0 * 3600.0) / math.pi
DEG2RAD = math.pi / 180.0


class CubeBuildError(ValueError):
    """A cube that cannot be built from these inputs and parameters (one line, for the user)."""


# ---------------------------------------------------------------------------------------------
# the cubepar reference

@dataclass
class CubePars:
    """One band's row of the cubepar reference (values as the file's float32 numbers, widened)."""

    spaxelsize: float
    spectralstep: float
    wavemin: float
    wavemax: float


@dataclass
class ShepardPars:
    """One band's point-cloud parameters (msm: power and softrad; emsm: scalerad)."""

    rois: float = float("nan")
    roiw: float = float("nan")
    power: float = float("nan")
    softrad: float = float("nan")
    scalerad: float = float("nan")


@dataclass
class CubeParTables:
    bands: dict[tuple[str, str], CubePars] = field(default_factory=dict)
    shepard: dict[tuple[str, str], ShepardPars] = field(default_factory=dict)
    multichannel_wave: np.ndarray | None = None  # the multi-band wavelength table of the weighting
    # the point cloud's multi-band tables, one value per wavelength: rois, roiw, power, softrad, scalerad
    multichannel: dict[str, np.ndarray] = field(default_factory=dict)


def _table(ref, name: str):
    for hdu in getattr(ref, "_extra_hdus", ()):
        if hdu.name == name:
            return hdu.data
    return None


def read_cubepar(ref, channels: list[str], bands: list[str], weighting: str, nirspec: bool = False) -> CubeParTables:
    """The rows of the cubepar reference for these (channel, band) pairs (NIRSpec: grating, filter),
    and the multi-band table (NIRSpec: the one of the gratings' resolution)."""
    out = CubeParTables()
    tab = _table(ref, "CUBEPAR")
    name = getattr(getattr(ref, "meta", None), "filename", None) or "cubepar"
    if tab is None:
        raise CubeBuildError(f"cubepar reference {name} has no CUBEPAR table")
    keys = ("DISPERSER", "FILTER") if nirspec else ("CHANNEL", "BAND")
    if any(k not in (tab.columns.names if hasattr(tab, "columns") else tab.dtype.names) for k in keys):
        raise CubeBuildError(f"cubepar reference {name} has no {'/'.join(keys)} columns "
                             f"(not a {'NIRSpec' if nirspec else 'MIRI'} cubepar)")
    match = (lambda row, ch, band: str(row["DISPERSER"]).strip().lower() == ch  # noqa: E731
             and str(row["FILTER"]).strip().lower() == band) if nirspec else \
        (lambda row, ch, band: str(row["CHANNEL"]).strip() == ch and str(row["BAND"]).strip().lower() == band)
    for ch, band in zip(channels, bands):
        for row in tab:
            if match(row, ch, band):
                out.bands[(ch, band)] = CubePars(
                    float(np.float32(row["SPAXELSIZE"])), float(np.float32(row["SPECTRALSTEP"])),
                    float(np.float32(row["WAVEMIN"])), float(np.float32(row["WAVEMAX"])))
        if weighting in ("msm", "emsm"):
            rows = _table(ref, "CUBEPAR_MSM" if weighting == "msm" else "CUBEPAR_EMSM")
            for row in rows if rows is not None else ():
                if match(row, ch, band):
                    f = lambda name: float(np.float32(row[name]))  # noqa: E731
                    if weighting == "msm":
                        out.shepard[(ch, band)] = ShepardPars(f("ROISPATIAL"), f("ROISPECTRAL"), f("POWER"),
                                                              f("SOFTRAD"))
                    else:
                        out.shepard[(ch, band)] = ShepardPars(f("ROISPATIAL"), f("ROISPECTRAL"),
                                                              scalerad=f("SCALERAD"))
    if nirspec:
        from .nirspec import multi_table_name

        table_name = multi_table_name(channels, weighting)
    else:
        table_name = {"drizzle": "MULTICHANNEL_DRIZ", "msm": "MULTICHANNEL_MSM", "emsm": "MULTICHANNEL_EMSM"}[weighting]
    multi = _table(ref, table_name)
    if multi is not None:
        out.multichannel_wave = np.asarray(multi["WAVELENGTH"], dtype=np.float64)
        cols = {"rois": "ROISPATIAL", "roiw": "ROISPECTRAL", "power": "POWER", "softrad": "SOFTRAD",
                "scalerad": "SCALERAD"}
        for key, col in cols.items():
            if col in multi.columns.names:
                out.multichannel[key] = np.asarray(multi[col], dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------------
# bands and cubes

def exposure_bands(model) -> list[tuple[str, str]]:
    """The (channel, band) pairs an MRS exposure covers: ``CHANNEL = '34'``, ``BAND = 'LONG'``
    gives ``[('3', 'long'), ('4', 'long')]``."""
    ch = str(model.meta.instrument.channel or "")
    band = str(model.meta.instrument.band or "").lower()
    return [(c, band) for c in ch if c in VALID_CHANNELS]


def band_coverage(exposures, channel: str, band: str) -> tuple[list[str], list[str], dict]:
    """The bands the cubes cover (jwst's order: channel 1-4, then short, medium, long), the user's
    ``channel``/``band`` selections applied, and the indices of each band's exposures in input order."""
    filemap: dict[tuple[str, str], list] = {}
    for i, m in enumerate(exposures):
        for key in exposure_bands(m):
            filemap.setdefault(key, []).append(i)
    want_ch = _user_list(channel, VALID_CHANNELS)
    want_b = _user_list(band, VALID_BANDS)
    all_ch, all_b = [], []
    for c in VALID_CHANNELS:
        for b in VALID_BANDS:
            if filemap.get((c, b)) and (not want_ch or c in want_ch) and (not want_b or b in want_b):
                all_ch.append(c)
                all_b.append(b)
    if not all_ch:
        raise CubeBuildError("the cube does not cover any channels or bands of the input: change the "
                             "channel or band parameter")
    return all_ch, all_b, filemap


def _user_list(value: str, valid) -> list[str]:
    if value == "all":
        return []
    items = [v.strip().strip("[]").strip() for v in str(value).split(",")]
    if len(items) > 1:
        items = [v[1:-1] if len(v) > 1 and v[0] in "'\"" else v for v in items]
    return sorted({v for v in items if v in valid})


def cubes_to_make(all_ch: list[str], all_b: list[str], output_type: str) -> list[tuple[list[str], list[str]]]:
    """The (channels, bands) lists of each cube: one per band, one per channel, or one of all (multi)."""
    if output_type == "multi":
        return [(list(all_ch), list(all_b))]
    if output_type == "band":
        return [([c], [b]) for c, b in zip(all_ch, all_b)]
    if output_type == "channel":
        out = []
        for c in dict.fromkeys(all_ch):
            idx = [i for i, x in enumerate(all_ch) if x == c]
            out.append(([c] * len(idx), [all_b[i] for i in idx]))
        return out
    raise CubeBuildError(f"output_type {output_type!r} is not supported for MIRI MRS (band, channel or multi)")


def cube_suffix(channels: list[str], bands: list[str]) -> str:
    """``_ch3-long``, ``_ch3-4-long``, ``_ch1-2-shortlong`` (bands in short, medium, long order)."""
    chs = list(dict.fromkeys(channels))
    subs = sorted(set(bands))[::-1]
    return "_ch" + "-".join(chs) + "-" + "".join(subs).lower()


# ---------------------------------------------------------------------------------------------
# tangent plane

# Element-by-element evaluations of many points (the sky transform, the tangent-plane projection)
# go block by block: a block's temporaries stay in the CPU's caches instead of being fresh pages of
# memory each time, and each point's numbers are the same whatever block it falls in
_BLOCK = 65536


def by_blocks(fn, *arrays):
    """``fn(*arrays)`` (``fn`` giving a tuple of arrays like its inputs, each element from the inputs'
    same element alone): for 1-D arrays of one length, evaluated on blocks of :data:`_BLOCK` points
    and joined; other inputs in one call."""
    shape = np.shape(arrays[0])
    if len(shape) != 1 or any(np.shape(a) != shape for a in arrays):
        return fn(*arrays)
    n = shape[0]
    if n <= _BLOCK:
        return tuple(fn(*arrays))
    parts = [fn(*(a[s:s + _BLOCK] for a in arrays)) for s in range(0, n, _BLOCK)]
    return tuple(np.concatenate(p) for p in zip(*parts))


def radec2std(crval1, crval2, ra, dec, rot_angle=None):
    """Tangent-plane (xi, eta) in arcsec of (ra, dec) about (crval1, crval2); xi grows to the west."""
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    return by_blocks(lambda a, d: _radec2std(crval1, crval2, a, d, rot_angle), ra, dec)


def _radec2std(crval1, crval2, ra, dec, rot_angle):
    ra0 = crval1 * DEG2RAD
    dec0 = crval2 * DEG2RAD
    radiff = ra * DEG2RAD - ra0
    decr = dec * DEG2RAD
    # each sine and cosine once (the same numbers as taking them where each product needs them)
    sin_d, cos_d, cos_r = np.sin(decr), np.cos(decr), np.cos(radiff)
    h = sin_d * math.sin(dec0) + cos_d * math.cos(dec0) * cos_r
    xi = cos_d * np.sin(radiff) / h
    eta = (sin_d * math.cos(dec0) - cos_d * math.sin(dec0) * cos_r) / h
    del sin_d, cos_d, cos_r
    xi = -xi * RAD2ARCSEC
    eta = eta * RAD2ARCSEC
    if rot_angle is not None:
        c, s = np.cos(-rot_angle * DEG2RAD), np.sin(-rot_angle * DEG2RAD)
        xi, eta = xi * c - eta * s, xi * s + eta * c
    return xi, eta


def wrap_ra(values):
    """RA values put on the same side of 0/360 as their median."""
    arr = np.array(values, dtype=np.float64)
    good = arr[np.isfinite(arr)].copy()
    med = np.nanmedian(good)
    far = np.fabs(good - med) > 180.0
    if far.any() and med < 180:
        good[far] -= 360.0
    if far.any() and med > 180:
        good[far] += 360.0
    return good


def slice_columns(wcs, channel: str) -> tuple[int, int]:
    """The image columns [start, end) of a channel (through the WCS's ``coordinates`` frame when
    the image is oversampled)."""
    info = CHANNELS[channel]
    xs, xe = info["xstart"], info["xend"]
    if wcs is not None and "coordinates" in wcs.available_frames:
        det2coord = wcs.get_transform("detector", "coordinates")
        xc, _ = det2coord(np.array([xs, xe], dtype=float), np.array([0.0, 0.0]))
        return int(np.floor(xc[0])), int(np.ceil(xc[1]))
    return int(xs), int(xe)


class DetectorGeometry:
    """The part of a channel's mapping that does not depend on the pointing: every pixel of the
    channel through the exposure's WCS from the detector to the telescope's V2/V3 frame (through
    alpha/beta), and for the drizzle each pixel's wavelength extent and the four corners of its
    footprint in V2/V3.  Exposures whose WCS has the same detector-to-V2/V3 transforms (the same
    references: every dither of a band) share it, and only go from V2/V3 to the sky themselves;
    evaluated in that order, the chain gives the numbers the whole WCS gives."""

    def __init__(self, wcs, shape, channel: str, drizzle: bool):
        frames = wcs.available_frames
        if "alpha_beta" not in frames or "v2v3" not in frames:
            raise CubeBuildError(f"the WCS has no alpha_beta and v2v3 frames ({', '.join(frames)}): not an MRS WCS")
        xs, xe = slice_columns(wcs, channel)
        y, x = np.mgrid[:shape[0], xs:xe]
        self.x = x.ravel()
        self.y = y.ravel()
        frame0 = frames[0]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
            ab = wcs.transform(frame0, "alpha_beta", self.x, self.y)
            self.v2, self.v3, self.lam = _to_v2v3(wcs, *ab)
        del ab
        self.valid = ~np.isnan(self.v2)
        self.drizzle = drizzle
        if not drizzle:
            return
        x, y = self.x[self.valid], self.y[self.valid]
        part = _PartialSelector.of(wcs)
        # the wavelength extent of each pixel, along the dispersion (rows)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
            wave1 = part.lam(x, y - 0.4999) if part else _wave_only(wcs, x, y - 0.4999)
            wave2 = part.lam(x, y + 0.4999) if part else _wave_only(wcs, x, y + 0.4999)
        self.dwave = np.abs(wave1 - wave2)
        del wave1, wave2
        self.dmax = float(np.nanmax(self.dwave)) if self.dwave.size else float("nan")
        if not x.size:
            self.corners = None
            return
        if part:
            alpha1, beta = part.alpha_beta(x - 0.4999, y)
            alpha2 = part.alpha_beta(x + 0.4999, y)[0]
        else:
            alpha1, beta, _ = wcs.transform(frame0, "alpha_beta", x - 0.4999, y)
            alpha2, _, _ = wcs.transform(frame0, "alpha_beta", x + 0.4999, y)
        # the slice width from the slices' beta values
        betas = np.unique(beta)
        half = np.abs(betas[1] - betas[0]) / 2.0
        wave = self.lam[self.valid].astype(np.float64)
        corners = []
        for a, b in ((alpha1, beta - half), (alpha1, beta + half), (alpha2, beta + half), (alpha2, beta - half)):
            v2, v3, _ = _to_v2v3(wcs, a, b, wave)
            corners += [v2, v3]
        self.corners = tuple(corners)


def _to_v2v3(wcs, alpha, beta, lam):
    """alpha/beta/lambda to V2/V3 through the WCS, by blocks of points (each point's own numbers:
    the MRS step selects each point's channel model from its beta, and evaluates it point by point)."""
    return by_blocks(lambda a, b, c: wcs.transform("alpha_beta", "v2v3", a, b, c), alpha, beta, lam)


class _PartialSelector:
    """Some outputs only of an MRS WCS's detector-to-alpha/beta step, with the numbers the whole
    step gives: that step selects each pixel's slice (a regions map) and evaluates the slice's
    model, ``Mapping((1, 0, 0, 1, 0)) | (alpha & beta & lambda)`` (alpha and lambda polynomials of
    the row and column, beta a constant).  The pixels' wavelength extents need lambda alone and
    the footprint corners alpha and beta alone: evaluating those parts only, each the same
    expression on the same pixels, skips a third to a half of the polynomial work.  The same
    selection, region by region, and bounding box (NaN outside) apply.  Each part keeps two outputs
    (the constant beta beside lambda): gwcs's selector takes a one-output model's first value for all."""

    def __init__(self, lam, alpha_beta):
        self._lam, self._alpha_beta = lam, alpha_beta

    @classmethod
    def of(cls, wcs) -> "_PartialSelector | None":
        """The parts of ``wcs``'s first step, or None when the step is not of that form."""
        from astropy.modeling.mappings import Mapping
        from gwcs.selector import RegionsSelector

        frames = wcs.available_frames
        if len(frames) < 2 or frames[1] != "alpha_beta":
            return None
        step = wcs.get_transform(frames[0], "alpha_beta")
        if type(step) is not RegionsSelector or step.n_inputs != 2 or step.n_outputs != 3:
            return None
        parts: dict = {"lam": {}, "ab": {}}
        for rid, model in step.selector.items():
            try:
                ok = (model.op == "|" and type(model.left) is Mapping and tuple(model.left.mapping) == (1, 0, 0, 1, 0)
                      and model.right.op == "&" and model.right.left.op == "&")
                if ok:
                    alpha, beta, lam = model.right.left.left, model.right.left.right, model.right.right
                    ok = ((alpha.n_inputs, alpha.n_outputs, beta.n_inputs, beta.n_outputs, lam.n_inputs, lam.n_outputs)
                          == (2, 1, 1, 1, 2, 1))
            except AttributeError:  # not a compound model
                ok = False
            if not ok:
                return None
            parts["lam"][rid] = Mapping((1, 0, 0)) | (lam & beta)
            parts["ab"][rid] = Mapping((1, 0, 0)) | (alpha & beta)
        try:
            box = step.bounding_box
        except NotImplementedError:
            box = None
        made = []
        for key, outputs in (("lam", (step.outputs[2], step.outputs[1])), ("ab", step.outputs[:2])):
            sel = RegionsSelector(step.inputs, outputs, parts[key], step.label_mapper,
                                  undefined_transform_value=step.undefined_transform_value)
            if box is not None:
                sel.bounding_box = box.bounding_box(order="C")
                if sel.bounding_box.intervals != box.intervals:
                    return None
            made.append(sel)
        return cls(*made)

    def _call(self, sel, x, y):
        return sel(x, y, with_bounding_box=True, fill_value=np.nan)

    def lam(self, x, y):
        return self._call(self._lam, x, y)[0]

    def alpha_beta(self, x, y):
        return self._call(self._alpha_beta, x, y)


def to_sky(world, v2, v3, lam):
    """V2/V3 (arcsec) and wavelength to RA, Dec and wavelength with ``world``, a WCS from the v2v3 frame on."""
    def block(a, b, c):
        return world.transform("v2v3", world.output_frame, a, b, c, with_bounding_box=False)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
        return by_blocks(block, v2, v3, lam)


class ChannelSky:
    """One exposure's channel mapped to the sky once (pixel centres): shared by the footprint and
    the pixel mapping, which jwst computes twice.  ``geometry`` is the channel's
    :class:`DetectorGeometry` and ``world`` the exposure's WCS from V2/V3 to the sky (by default
    both from the model's own WCS)."""

    def __init__(self, model, channel: str, geometry: DetectorGeometry | None = None, world=None, drizzle=True):
        self.model = model
        self.channel = channel
        wcs = None
        if geometry is None or world is None:
            wcs = model.meta.wcs
        self.geometry = geometry or DetectorGeometry(wcs, model.data.shape, channel, drizzle)
        self.world = world if world is not None else wcs
        g = self.geometry
        self.x, self.y = g.x, g.y
        self.ra, self.dec, self.wave = to_sky(self.world, g.v2, g.v3, g.lam)


def footprint(model, channel: str, sky: "ChannelSky | None", use_s_region: bool):
    """(ra1, dec1, ..., ra4, dec4, lmin, lmax): the band's corners on the sky and wavelength range."""
    wi = model.meta.wcsinfo
    if use_s_region and wi.s_region is not None and wi.spectral_region is not None:
        lmin, lmax = wi.spectral_region
        s = wi.s_region.split(" ")
        v = [float(s[i]) for i in range(3, 11)]
        return (*v, lmin, lmax)
    sky = sky or ChannelSky(model, channel)
    valid = np.isfinite(sky.ra) & np.isfinite(sky.dec)
    c1 = wrap_ra(sky.ra[valid])
    c2 = sky.dec[valid]
    lam = sky.wave
    a_min, a_max = np.nanmin(c1), np.nanmax(c1)
    b1, b2 = c2[np.argmin(c1)], c2[np.argmax(c1)]
    b_min, b_max = np.nanmin(c2), np.nanmax(c2)
    a1, a2 = c1[np.argmin(c2)], c1[np.argmax(c2)]
    return (a_min % 360, b1, a_max % 360, b2, a1 % 360, b_min, a2 % 360, b_max, np.nanmin(lam), np.nanmax(lam))


@dataclass
class CubeGrid:
    crval1: float
    crval2: float
    crval3: float
    crpix1: float
    crpix2: float
    crpix3: float
    cdelt1: float  # arcsec
    cdelt2: float
    cdelt3: float | None  # microns (linear grid)
    xcoord: np.ndarray
    ycoord: np.ndarray
    zcoord: np.ndarray
    cdelt3_normal: np.ndarray
    linear: bool
    wavelength_table: np.ndarray | None = None
    rot_angle: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.zcoord.size, self.ycoord.size, self.xcoord.size


def make_grid(corner_a, corner_b, lambda_min, lambda_max, spatial: float, spectral: float | None, *,
              linear: bool, wavelength_table=None, ra_center=None, dec_center=None, rot_angle=None,
              nspax_x=None, nspax_y=None) -> CubeGrid:
    """The tangent-plane grid covering the corners, centred on their mean position (jwst's set_geometry)."""
    from astropy import units as u
    from astropy.stats import circmean

    ra_min, ra_max = np.min(corner_a), np.max(corner_a)
    dec_min, dec_max = np.min(corner_b), np.max(corner_b)
    dec_ave = (dec_min + dec_max) / 2.0
    ra_ave = circmean(np.array([ra_min, ra_max]) * u.deg).value % 360
    crval1 = ra_center if ra_center is not None else ra_ave
    crval2 = dec_center if dec_center is not None else dec_ave
    xi_c, eta_c = [], []
    for a, b in zip(corner_a, corner_b):
        xi, eta = radec2std(crval1, crval2, a, b, rot_angle)
        xi_c.append(xi)
        eta_c.append(eta)
    xilimit = max(np.abs(min(xi_c)), np.abs(max(xi_c)))
    etalimit = max(np.abs(min(eta_c)), np.abs(max(eta_c)))
    cdelt1 = cdelt2 = spatial
    na = math.ceil((xilimit / cdelt1).item()) + 1
    nb = math.ceil((etalimit / cdelt2).item()) + 1
    if nspax_x is not None:
        na = int(nspax_x / 2)
    if nspax_y is not None:
        nb = int(nspax_y / 2)
    xi_min = 0.0 - (na * cdelt1) - (cdelt1 / 2.0)
    eta_min = 0.0 - (nb * cdelt2) - (cdelt2 / 2.0)
    naxis1, naxis2 = na * 2 + 1, nb * 2 + 1
    xstart = xi_min + cdelt1 / 2.0
    xcoord = np.arange(start=xstart, stop=xstart + naxis1 * cdelt1, step=cdelt1)[:naxis1]
    ystart = eta_min + cdelt2 / 2.0
    ycoord = np.arange(start=ystart, stop=ystart + naxis2 * cdelt2, step=cdelt2)[:naxis2]
    if linear:
        naxis3 = int(math.ceil((lambda_max - lambda_min) / spectral))
        lmax = lambda_min + naxis3 * spectral
        crval3 = lambda_min + spectral / 2.0
        zcoord = np.arange(start=lambda_min + spectral / 2.0, stop=lmax, step=spectral)[:naxis3]
        table = None
    else:
        table = np.asarray(wavelength_table, dtype=np.float64)
        naxis3 = table.size
        zcoord = table.copy()
        crval3 = table[0]
    cdelt3_normal = np.zeros(naxis3)
    cdelt3_normal[:-1] = zcoord[1:] - zcoord[:-1]
    cdelt3_normal[naxis3 - 1] = cdelt3_normal[naxis3 - 2]
    return CubeGrid(crval1=crval1, crval2=crval2, crval3=crval3, crpix1=float(na) + 1.0, crpix2=float(nb) + 1.0,
                    crpix3=1.0, cdelt1=cdelt1, cdelt2=cdelt2, cdelt3=spectral if linear else None,
                    xcoord=xcoord, ycoord=ycoord, zcoord=zcoord, cdelt3_normal=cdelt3_normal, linear=linear,
                    wavelength_table=table, rot_angle=rot_angle)


def multiband_table(table_wave: np.ndarray, wavemin: float, wavemax: float) -> np.ndarray:
    """The rows of the multi-band wavelength table that cover [wavemin, wavemax] (one beyond each end)."""
    imin = int(np.abs(table_wave - wavemin).argmin())
    imax = int(np.abs(table_wave - wavemax).argmin())
    if imin > 1 and table_wave[imin] > wavemin:
        imin -= 1
    if imax < (len(table_wave) - 1) and wavemax > table_wave[imax]:
        imax += 1
    return np.array(table_wave[imin:imax + 1], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# detector pixels on the tangent plane

@dataclass
class MappedPixels:
    wave: np.ndarray
    dwave: np.ndarray | None
    flux: np.ndarray
    err: np.ndarray
    corners: tuple | None  # xi1, eta1, ..., xi4, eta4 (drizzle)
    coord1: np.ndarray | None = None  # the pixel centres on the tangent plane (point cloud)
    coord2: np.ndarray | None = None
    slice_no: np.ndarray | None = None  # NIRSpec slices (1-30)


def invalid_mask(model) -> np.ndarray:
    """Pixels jwst will not use: NaN in SCI, ERR or a variance, or flagged DO_NOT_USE or NON_SCIENCE."""
    bad = np.isnan(model.data)
    for name in ("err", "var_rnoise", "var_poisson", "var_flat"):
        if model.has(name):
            arr = getattr(model, name)
            if arr is not None and arr.shape == bad.shape:
                bad |= np.isnan(arr)
    if model.has("dq"):
        bad |= (model.dq & (DQ["DO_NOT_USE"] | DQ["NON_SCIENCE"])) != 0
    return bad


@dataclass
class ChannelPixels:
    """The grid-free part of one exposure's channel: every usable pixel (mapped, not flagged, with
    finite flux) in detector order, with its wavelength, flux and error, and either its centre on
    the sky (point cloud) or its wavelength extent and the four corners of its footprint on the sky
    (drizzle).  Made once per exposure and channel, whatever the cubes; the cube's grid then only
    selects pixels by wavelength and projects them onto its tangent plane."""

    wave: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    ra: np.ndarray | None = None  # pixel centres (point cloud)
    dec: np.ndarray | None = None
    dwave: np.ndarray | None = None  # wavelength extent (drizzle)
    corners: tuple | None = None  # ra1, dec1, ..., ra4, dec4 of the footprint (drizzle)
    dmax: float = float("nan")  # the largest extent of every mapped pixel, flagged ones included
    slice_no: np.ndarray | None = None  # NIRSpec: each pixel's slice (1-30), for the field-of-view DQ

    def arrays(self) -> dict:
        out = {"wave": self.wave, "flux": self.flux, "err": self.err}
        for name in ("ra", "dec", "dwave", "slice_no"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for i, c in enumerate(self.corners or ()):
            out[f"corner{i}"] = c
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, dmax: float) -> "ChannelPixels":
        corners = tuple(arrays[f"corner{i}"] for i in range(8)) if "corner0" in arrays else None
        return cls(arrays["wave"], arrays["flux"], arrays["err"], arrays.get("ra"), arrays.get("dec"),
                   arrays.get("dwave"), corners, dmax, arrays.get("slice_no"))


def channel_pixels(sky: ChannelSky, drizzle: bool) -> ChannelPixels | None:
    """The usable pixels of one exposure's channel with what the drizzle (corners, extents) or the
    point cloud (centres) needs of them; None when the channel has none."""
    model = sky.model
    valid1 = ~np.isnan(sky.ra)
    g = sky.geometry
    if drizzle and not (g.drizzle and np.array_equal(valid1, g.valid)):
        # pixels mapped by the V2/V3 chain but not to the sky: this exposure's own geometry
        g = DetectorGeometry(model.meta.wcs, model.data.shape, sky.channel, True)
        if not np.array_equal(valid1, g.valid):
            raise CubeBuildError("the WCS maps pixels to V2/V3 that it does not map to the sky")
    x = sky.x[valid1]
    y = sky.y[valid1]
    wave_all = sky.wave[valid1]
    bad = invalid_mask(model)[y, x]
    flux_all = model.data[y, x]
    use = np.flatnonzero(~bad & np.isfinite(flux_all))
    if not drizzle:
        if use.size == 0:
            return None
        return ChannelPixels(wave=wave_all[use].astype(np.float64), flux=np.asarray(flux_all[use], np.float64),
                             err=np.asarray(model.err[y[use], x[use]], np.float64),
                             ra=sky.ra[valid1][use], dec=sky.dec[valid1][use])
    if use.size == 0:
        return None
    wave = wave_all[use].astype(np.float64)
    corners = []
    for i in range(4):
        ra, dec, _ = to_sky(sky.world, g.corners[2 * i][use], g.corners[2 * i + 1][use], wave)
        corners += [ra, dec]
    return ChannelPixels(wave=wave, flux=np.asarray(flux_all[use], np.float64),
                         err=np.asarray(model.err[y[use], x[use]], np.float64),
                         dwave=np.asarray(g.dwave[use], np.float64), corners=tuple(corners), dmax=g.dmax)


def map_points(pix: ChannelPixels | None, grid: CubeGrid, roi_max: float) -> MappedPixels | None:
    """The channel's usable pixels as points (their centres on the cube's tangent plane), for the
    point cloud; pixels further than ``roi_max`` in wavelength from the cube's planes are left out."""
    if pix is None:
        return None
    lo, hi = grid.zcoord[0] - roi_max, grid.zcoord[-1] + roi_max
    good = np.flatnonzero((pix.wave >= lo) & (pix.wave <= hi))
    if good.size == 0:
        return None
    c1, c2 = radec2std(grid.crval1, grid.crval2, pix.ra[good], pix.dec[good], grid.rot_angle)
    out = MappedPixels(wave=pix.wave[good], dwave=None, flux=pix.flux[good], err=pix.err[good], corners=None,
                       coord1=c1, coord2=c2)
    if pix.slice_no is not None:  # NIRSpec: the slices, for the field-of-view DQ
        out.slice_no = pix.slice_no[good]
    return out


def map_pixels(pix: ChannelPixels | None, grid: CubeGrid) -> MappedPixels | None:
    """The channel's usable pixels within the cube's wavelengths (and a pixel extent and a plane
    beyond): wavelength and extent, flux, error and the four corners on the cube's tangent plane."""
    if pix is None:
        return None
    if grid.linear:
        lo = grid.zcoord[0] - (grid.cdelt3 + pix.dmax)
        hi = grid.zcoord[-1] + (grid.cdelt3 + pix.dmax)
    else:
        lo = grid.zcoord[0] - grid.cdelt3_normal[0]
        hi = grid.zcoord[-1] + grid.cdelt3_normal[-1]
    good = np.flatnonzero((pix.wave >= lo) & (pix.wave <= hi))
    if good.size == 0:
        return None
    c1, c2, r = grid.crval1, grid.crval2, grid.rot_angle
    k = pix.corners
    corners = []
    for i in range(4):
        corners += radec2std(c1, c2, k[2 * i][good], k[2 * i + 1][good], r)
    out = MappedPixels(wave=pix.wave[good], dwave=pix.dwave[good], flux=pix.flux[good], err=pix.err[good],
                       corners=tuple(corners))
    if pix.slice_no is not None:  # NIRSpec: the centres and slices, for the field-of-view DQ
        out.coord1, out.coord2 = radec2std(c1, c2, pix.ra[good], pix.dec[good], r)
        out.slice_no = pix.slice_no[good]
    return out


def _wave_only(wcs, x, y):
    """The wavelength the full WCS gives at (x, y): the MRS WCS carries the detector-to-alpha/beta
    wavelength through to the world frame unchanged, so the first transform alone gives it."""
    return wcs.transform(wcs.available_frames[0], "alpha_beta", x, y)[2]
