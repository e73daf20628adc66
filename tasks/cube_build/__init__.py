"""cube_build: MIRI MRS cal exposures combined into IFU cubes (s3d), as jwst 3.0's CubeBuildStep.

The default (and jwst's default) is the 3-D drizzle in the sky-aligned frame: each detector pixel's
footprint on the sky (its four corners through the alpha/beta frame of the exposure's WCS) and its
wavelength extent are overlapped with the cube's spaxels, and every spaxel gets the overlap-weighted
mean of the pixels that touch it.  The grid comes from the ``cubepar`` reference: spaxel size,
wavelength step and range per band, and the wavelength table of multi-band cubes.

``output_type``: ``band`` (jwst's default, spec3: one cube per channel and band, named
``<product>_ch3-long_s3d.fits``), ``channel`` (one per channel, all its bands) or ``multi`` (one cube of
everything on the multi-band wavelength table; spec2's choice, where the pipeline names it
``<exposure>_s3d.fits``; the step alone names it ``<exposure>_ch3-4-long_s3d.fits``).

``weighting``: ``drizzle`` (the default), or the point cloud with the modified Shepard weights
``msm`` (1/d^power) or ``emsm`` (exp(-d^2/scalerad)) inside the cubepar's regions of interest.

NIRSpec IFU exposures (tasks/cube_build/nirspec.py) take the same three weightings: the drizzle, or the
point cloud of every pixel with a wavelength, with the cubepar's CUBEPAR_MSM/EMSM rows or its
MULTICHAN_PRISM/MED/HIGH_MSM/EMSM tables, and the field-of-view DQ of the slices on the planes
within the pixels' mean spectral region of interest.

What is not done here (a one-line error says so): the ``ifualign`` and ``internal_cal`` frames,
offsets files.

Two passes.  The first reads each exposure once (one at a time; its WCS without asdf's schema
validation), takes its metadata and footprints, and maps its usable pixels to the sky: pixel
centres, or for the drizzle the wavelength extents and footprint corners.  The detector-to-V2/V3
part of that mapping does not depend on the pointing: exposures whose WCS has the same
detector-to-V2/V3 steps (a digest of their ASDF nodes: every dither of a band) share one
evaluation of it, and each only goes from V2/V3 to the sky (the same numbers as its whole WCS).
The mapped pixels wait in ``.npy`` files of a temporary folder.  The second pass builds the cubes
one after the other from those files, opening no exposure again.

Memory: one exposure, one channel's shared detector mapping, one exposure's mapped pixels and one
scratch set of cube sums exist at a time, whatever the number of exposures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from .._gc import older_objects_frozen
from ..base import STEPS, StepParams, step
from . import nirspec as _nrs
from .geometry import (
    ChannelPixels,
    ChannelSky,
    CubeBuildError,
    DetectorGeometry,
    band_coverage,
    cube_suffix,
    cubes_to_make,
    channel_pixels,
    footprint,
    make_grid,
    map_pixels,
    map_points,
    multiband_table,
    read_cubepar,
    wrap_ra,
)

log = logging.getLogger("webbflow.steps.cube_build")


MRS_BANDS = Literal["short", "medium", "long", "short-medium", "short-long", "medium-short", "medium-long",
                   "long-short", "long-medium", "all"]


class CubeBuildParams(StepParams):
    channel: Literal["1", "2", "3", "4", "all"] = "all"  # MIRI MRS channel(s) to build cubes of
    band: MRS_BANDS = "all"  # MIRI MRS band(s) to build cubes of
    grating: str = "all"  # grating (NIRSpec)
    filter: str = "all"  # filter (NIRSpec)
    output_type: Literal["band", "channel", "grating", "multi"] = "band"  # type of IFU cube to create
    linear_wave: bool = True  # linear (True) or non-linear (False) wavelength dimension
    scalexy: float = 0.0  # spaxel size (arcsec) of axes 1 and 2; 0: the cubepar reference's
    scalew: float = 0.0  # wavelength step (microns); 0: the cubepar reference's
    weighting: Literal["emsm", "msm", "drizzle"] = "drizzle"  # weighting function
    coord_system: Literal["skyalign", "world", "internal_cal", "ifualign"] = "skyalign"  # output frame
    ra_center: float | None = None  # RA of the cube centre (deg)
    dec_center: float | None = None  # Dec of the cube centre (deg)
    cube_pa: float | None = None  # position angle of the cube (deg, E of N)
    nspax_x: int | None = None  # odd number of spaxels along x
    nspax_y: int | None = None  # odd number of spaxels along y
    rois: float = 0.0  # spatial region of interest (arcsec), point cloud only
    roiw: float = 0.0  # wavelength region of interest (microns), point cloud only
    weight_power: float = 2.0  # power of the modified Shepard weighting (msm)
    wavemin: float | None = None  # minimum wavelength of the cube (microns)
    wavemax: float | None = None  # maximum wavelength of the cube (microns)
    skip_dqflagging: bool = False  # skip setting the cube's DQ from the field of view
    output_use_model: bool = True  # name products after the models' file names
    suffix: str | None = Field("s3d", description="Suffix of this step's output file (default: s3d)")
    offset_file: str | None = None  # ASDF file of RA/Dec offsets per input
    debug_spaxel: str = "-1 -1 -1"  # a spaxel to report on (x y z)


@step("cube_build", "CubeBuildStep", params=CubeBuildParams, reftypes=("cubepar",), suffix="s3d",
      cal_step="cube_build", input_class="ModelLibrary")
def cube_build(models_in, refs, params: CubeBuildParams):
    """Combine MIRI MRS cal exposures into IFU cubes (s3d), by 3-D drizzle on the cubepar grid."""
    from .._library import as_library

    library = as_library(models_in)
    try:
        return build_cubes(library, refs["cubepar"], params)
    except CubeBuildError as exc:
        from ...errors import InputFileError

        raise InputFileError(getattr(exc, "where", None) or "the input", str(exc)) from None


# cube_build names its products itself (<product>_ch3-long_s3d.fits), as jwst's step does
STEPS["cube_build"].extra["names_products"] = True
# and reads an association's members one at a time (from disk), not all at once
STEPS["cube_build"].extra["streams_members"] = True


def _check_supported(params: CubeBuildParams, instrument: str) -> None:
    if instrument not in ("MIRI", "NIRSPEC"):
        raise CubeBuildError(f"cube_build builds MIRI MRS and NIRSpec IFU cubes, not {instrument} ones")
    if params.coord_system not in ("skyalign", "world"):
        raise CubeBuildError(f"coord_system {params.coord_system!r} is not supported yet (skyalign)")
    if params.offset_file is not None:
        raise CubeBuildError("offset_file is not supported yet")
    if params.output_type == "grating" and instrument == "MIRI":
        raise CubeBuildError("output_type 'grating' is for NIRSpec; MIRI cubes are band, channel or multi")


def output_base(library, first_filename: str) -> str:
    """The products' base name: the association's product name, or the exposure's root (``_cal`` off)."""
    name = getattr(library, "product_name", None)
    if name:
        return name
    fname = first_filename or "cube"
    for tail in ("_rate.fits", "_cal.fits"):
        i = fname.rfind(tail)
        if i > 0:
            return fname[:i]
    i = fname.rfind(".fits")
    return fname[:i] if i > 0 else fname


@dataclass
class _Exposure:
    """What the cube needs of an exposure besides its pixels: light metadata (no WCS), headers,
    and the sky footprint of each of its channels."""

    meta: object
    headers: dict
    bands: list
    footprints: dict  # channel -> (ra1, dec1, ..., ra4, dec4, lmin, lmax)


class _PixelStore:
    """Each exposure's channels mapped to the sky (:class:`ChannelPixels`), kept between the two
    passes: in memory for a single exposure, else in ``.npy`` files of a temporary folder, read back
    (memory-mapped) one exposure at a time, so that memory does not grow with the exposures."""

    def __init__(self, on_disk: bool):
        self._mem: dict = {}
        self._dir = None
        if on_disk:
            import tempfile

            self._dir = tempfile.TemporaryDirectory(prefix="webbflow-cube_build-")

    def put(self, key: tuple[int, str], pix: ChannelPixels | None) -> None:
        if self._dir is None or pix is None:
            self._mem[key] = pix
            return
        from pathlib import Path

        names = []
        for name, arr in pix.arrays().items():
            np.save(Path(self._dir.name) / f"{key[0]}_{key[1]}_{name}.npy", arr, allow_pickle=False)
            names.append(name)
        self._mem[key] = (names, pix.dmax)

    def get(self, key: tuple[int, str]) -> ChannelPixels | None:
        held = self._mem.get(key)
        if self._dir is None or held is None:
            return held
        from pathlib import Path

        names, dmax = held
        return ChannelPixels.from_arrays(
            {n: np.load(Path(self._dir.name) / f"{key[0]}_{key[1]}_{n}.npy", mmap_mode="r") for n in names}, dmax)

    def close(self) -> None:
        self._mem.clear()
        if self._dir is not None:
            self._dir.cleanup()


def _survey(library, params: CubeBuildParams, store: _PixelStore):
    """The one pass over the files: each exposure opened once (its WCS read without schema
    validation, as it was validated when written) for its metadata, its channels' footprints, and
    its usable pixels mapped to the sky, which go to ``store``."""
    from types import SimpleNamespace

    from ...models._lazy_wcs import lazy_wcs_reading
    from .geometry import _user_list, exposure_bands

    want_ch = _user_list(params.channel, ("1", "2", "3", "4"))
    want_b = _user_list(params.band, ("short", "medium", "long", "short-medium", "short-long", "medium-short",
                                      "medium-long", "long-short", "long-medium"))
    drizzle = params.weighting == "drizzle"
    shared: dict = {}  # the detector-to-V2/V3 part of the WCS (its content) -> {channel: DetectorGeometry}
    out: list[_Exposure] = []
    for i in range(len(library)):
        with lazy_wcs_reading():
            model = library.borrow(i, snapshot=False)
        wcs = None
        try:
            wcs = model.meta.wcs
            model.meta.wcs = None
            try:
                meta = model.meta.model_copy(deep=True)
            finally:
                model.meta.wcs = wcs
            light = SimpleNamespace(meta=meta)
            nirspec = str(meta.instrument.name or "").upper() == "NIRSPEC"
            bands = exposure_bands(light) if not nirspec else _nrs.exposure_bands(light)
            if i == 0:  # before any mapping: an unsupported instrument or frame is refused at once
                _check_supported(params, str(meta.instrument.name or "").upper())
            if nirspec:
                out.append(_survey_nirspec(model, meta, bands, params, store, i))
                continue
            key = _detector_part_key(wcs, model.data.shape)
            geoms = shared.setdefault(key, {}) if key is not None else {}
            # the sky end of the WCS alone, and the detector end (for its first exposure) without the
            # inverse transforms, when the file's WCS is read step by step; else the whole WCS
            world = _world_part(wcs) if key is not None else None
            forward = None
            fps = {}
            for ch in dict.fromkeys(c for c, _ in bands):
                mapped = params.cube_pa is not None or (params.output_type != "multi" and ch in ("1", "3"))
                wanted = (not want_ch or ch in want_ch) and any(
                    c == ch and (not want_b or b in want_b) for c, b in bands)
                sky = None
                if wanted or mapped:
                    geom = geoms.get((ch, drizzle))
                    if geom is None and key is not None:
                        forward = forward or _forward_part(wcs)
                        geom = DetectorGeometry(forward, model.data.shape, ch, drizzle)
                    sky = ChannelSky(model, ch, geom, world if geom is not None else None, drizzle)
                    geoms[(ch, drizzle)] = sky.geometry
                fps[ch] = footprint(model, ch, sky, not mapped)
                if wanted:
                    store.put((i, ch), channel_pixels(sky, drizzle))
                del sky
            out.append(_Exposure(meta, {k: h.copy() for k, h in model._headers.items() if k in ("PRIMARY", "SCI")},
                                 bands, fps))
        finally:
            library.shelve(i, model, modify=False)
            del model, wcs
            _release()
    return out


def _survey_nirspec(model, meta, bands, params, store, i) -> "_Exposure":
    """A NIRSpec IFU exposure: its pixels mapped once (tasks/cube_build/nirspec.py) and its footprint
    (S_REGION and the spectral region, as jwst takes them for a sky-aligned cube, else the mapped pixels)."""
    from types import SimpleNamespace

    grating = bands[0][0]
    pix, (ra, dec, lam) = _nrs.exposure_pixels(model, params.weighting == "drizzle")
    store.put((i, grating), pix)
    use_s_region = params.cube_pa is None and str(meta.target.type or "").upper() != "MOVING"
    fp = footprint(model, grating, SimpleNamespace(ra=ra, dec=dec, wave=lam), use_s_region)
    return _Exposure(meta, {k: h.copy() for k, h in model._headers.items() if k in ("PRIMARY", "SCI")}, bands,
                     {grating: fp})


def _detector_part_key(wcs, shape):
    """A digest of the detector-to-V2/V3 steps of a WCS not yet made from its file (their tags,
    values and arrays), with the image shape: exposures with the same key share those steps.  None
    for a WCS already made (a model in memory) or of other frames."""
    import hashlib

    from ...models._lazy_wcs import LazyWcs

    if not isinstance(wcs, LazyWcs) or wcs._node is None:
        return None
    try:
        steps = wcs._node["steps"]
        names = [st["frame"]["name"] if isinstance(st["frame"], dict) else st["frame"] for st in steps]
    except (KeyError, TypeError, IndexError):
        return None
    if len(names) < 4 or names[1:3] != ["alpha_beta", "v2v3"]:
        return None
    h = hashlib.sha256(repr(tuple(shape)).encode())
    _digest(steps[:2], wcs._convert, h)
    return h.hexdigest()


def _digest(node, convert, h) -> None:
    from asdf import tagged

    if isinstance(node, tagged.Tagged):
        tag = node._tag or ""
        h.update(tag.encode())
        if tag.startswith("tag:stsci.edu:asdf/core/ndarray-"):
            arr = np.asarray(convert(node))
            h.update(repr((arr.dtype.str, arr.shape)).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
            return
    if isinstance(node, dict):
        h.update(b"{%d" % len(node))
        for k in sorted(node, key=str):
            h.update(repr(k).encode())
            _digest(node[k], convert, h)
    elif isinstance(node, (list, tuple)):
        h.update(b"[%d" % len(node))
        for v in node:
            _digest(v, convert, h)
    else:
        h.update(repr(node).encode())


def _world_part(wcs):
    """The WCS of an exposure from its v2v3 frame to the sky, made from the file's steps alone."""
    import gwcs

    steps = [wcs._convert(st) for st in wcs._node["steps"][2:]]
    return gwcs.WCS(steps)


def _forward_part(wcs):
    """The whole WCS of an exposure made from the file's steps without the inverse transforms of
    its detector-to-V2/V3 steps (half their models, which the forward mapping never calls): the
    same forward transforms, so the same numbers."""
    import gwcs

    steps = wcs._node["steps"]
    memo: dict = {}
    return gwcs.WCS([wcs._convert(_without_inverses(st, memo) if k < 2 else st) for k, st in enumerate(steps)])


def _without_inverses(node, memo: dict):
    """A copy of a tagged ASDF node with no ``inverse`` key in its tagged mappings (arrays and
    untouched nodes shared, not copied; a node met twice copied once, as the YAML aliased it)."""
    from asdf import tagged

    if id(node) in memo:
        return memo[id(node)][1]
    if isinstance(node, tagged.TaggedDict):
        if (node._tag or "").startswith("tag:stsci.edu:asdf/core/ndarray-"):
            return node
        out = tagged.TaggedDict({k: _without_inverses(v, memo) for k, v in node.items() if k != "inverse"}, node._tag)
    elif isinstance(node, tagged.TaggedList):
        out = tagged.TaggedList([_without_inverses(v, memo) for v in node], node._tag)
    elif isinstance(node, dict):
        out = {k: _without_inverses(v, memo) for k, v in node.items()}
    elif isinstance(node, list):
        out = [_without_inverses(v, memo) for v in node]
    else:
        return node
    memo[id(node)] = (node, out)  # the node kept alive with its copy, so that its id stays its own
    return out


def _release() -> None:
    """Free a dropped exposure now: its WCS and arrays sit in reference cycles that Python's
    collector would otherwise keep until much later, so memory would grow with the exposures."""
    import gc

    gc.collect()


def build_cubes(library, cubepar_ref, params: CubeBuildParams) -> list:
    from types import SimpleNamespace

    store = _PixelStore(on_disk=len(library) > 1)
    outputs = []
    exposures = []
    try:
        with older_objects_frozen():  # only what the step makes walked by _release's collections
            exposures = _survey(library, params, store)
        linear = params.linear_wave and params.output_type != "multi"
        lights = [SimpleNamespace(meta=e.meta) for e in exposures]
        nirspec = str(exposures[0].meta.instrument.name or "").upper() == "NIRSPEC"
        base = output_base(library, exposures[0].meta.filename)
        if nirspec:
            all_ch, all_b, bands_of = _nrs.band_coverage(lights, params.grating, params.filter)
            plan = _nrs.cubes_to_make(all_ch, all_b, params.output_type)
            base = _nrs.strip_grating(base)
        else:
            all_ch, all_b, bands_of = band_coverage(lights, params.channel, params.band)
            plan = cubes_to_make(all_ch, all_b, params.output_type)
        tables = read_cubepar(cubepar_ref, all_ch, all_b, params.weighting, nirspec=nirspec)
        outputs = [None] * len(plan)
        for ci, (chans, bands) in enumerate(plan):
            grid, shepard = _grid_for(exposures, bands_of, chans, bands, tables, params, linear)
            n = int(np.prod(grid.shape))
            # the cube's sums, and one exposure's sums added to them as jwst adds each exposure's cube
            # NIRSpec: the field-of-view DQ of every exposure, OR-ed (unless skip_dqflagging: spec2)
            fov = nirspec and not params.skip_dqflagging
            cube = SimpleNamespace(index=ci, chans=chans, bands=bands, grid=grid, shepard=shepard, used=[],
                                   sums=tuple(np.zeros(n) for _ in range(4)),
                                   parts=tuple(np.zeros(n) for _ in range(4)),
                                   dq=np.zeros(n, np.uint32), fov=fov, nirspec=nirspec)
            # its bands in order, each band's exposures in input order
            for ch, band in zip(chans, bands):
                for idx in bands_of[(ch, band)]:
                    cube.used.append(idx)
                    _add_exposure(cube, store.get((idx, ch)), exposures[idx], params)
            del cube.parts
            name = base + (_nrs.cube_suffix if nirspec else cube_suffix)(cube.chans, cube.bands)
            outputs[ci] = _finish(exposures, cube, params, name)
            del cube.sums
    except CubeBuildError as exc:
        # the one-line error names the (first) input
        exc.where = exposures[0].meta.filename if exposures else (library.filenames[0] if len(library) else None)
        raise
    finally:
        store.close()
    return outputs


def _add_exposure(cube, pix, exposure: _Exposure, params: CubeBuildParams) -> None:
    """One exposure's channel (its pixels on the sky) mapped onto the cube's grid and its sums added
    to the cube's."""
    from . import kernels

    grid, shepard, parts = cube.grid, cube.shepard, cube.parts
    if shepard is None:
        mapped = map_pixels(pix, grid)
    else:
        roi_max = shepard.roiw if shepard.linear else np.max(shepard.table["roiw"])
        mapped = map_points(pix, grid, roi_max)
    del pix
    if mapped is None:
        log.warning("No valid pixels found on detector %s", exposure.meta.filename)
        return
    if shepard is None:
        if cube.fov:
            from .product import OVERLAP_PARTIAL

            cube.dq |= kernels.dq_nirspec(OVERLAP_PARTIAL, grid.xcoord, grid.ycoord, grid.zcoord, grid.cdelt1,
                                          grid.cdelt2, float(np.nanmean(grid.cdelt3_normal)), mapped.coord1,
                                          mapped.coord2, mapped.wave, mapped.slice_no)
        kernels.drizzle_exposure(grid.xcoord, grid.ycoord, grid.zcoord, grid.cdelt3_normal,
                                 grid.cdelt1, grid.cdelt2, mapped.wave, mapped.dwave,
                                 mapped.flux, mapped.err, *mapped.corners, *parts)
    else:
        per = _per_pixel(shepard, mapped.wave)
        if cube.fov:  # NIRSpec: the field of view on the planes within the pixels' mean roiw, as jwst
            from .product import OVERLAP_PARTIAL

            cube.dq |= kernels.dq_nirspec(OVERLAP_PARTIAL, grid.xcoord, grid.ycoord, grid.zcoord, grid.cdelt1,
                                          grid.cdelt2, float(np.mean(per[1])), mapped.coord1, mapped.coord2,
                                          mapped.wave, mapped.slice_no)
        kernels.pointcloud_exposure(grid.xcoord, grid.ycoord, grid.zcoord, grid.cdelt3_normal,
                                    grid.cdelt1, grid.cdelt2, mapped.coord1, mapped.coord2,
                                    mapped.wave, mapped.flux, mapped.err, *per,
                                    params.weighting == "emsm", *parts)
    del mapped
    for total, part in zip(cube.sums, parts):
        kernels.add_and_clear(total, part)


def _finish(exposures, cube, params: CubeBuildParams, name: str):
    """The cube's sums made into the s3d product: weighted means, DQ, spectral tears, NaNs."""
    from ... import models
    from .product import final_dq, normalise, spectral_tears

    grid = cube.grid
    flux, weight, var, iflux = cube.sums
    normalise(flux, weight, var, iflux)
    dq = final_dq(cube.dq, weight, grid.shape).reshape(grid.shape)
    del cube.dq
    flux = flux.reshape(grid.shape)
    wmap = iflux.reshape(grid.shape)
    var = var.reshape(grid.shape)
    if not cube.nirspec:  # jwst's quality cut of MIRI MRS planes
        ntear = spectral_tears(flux, wmap, var, dq)
        log.info("Number of spectral tear planes adjusted: %i", ntear)
    dnu = (dq & models.dqflags.PIXEL["DO_NOT_USE"]) != 0
    flux[dnu] = np.nan
    var[dnu] = np.nan
    err = np.sqrt(var)
    return _product(exposures, cube.used, grid, flux, err, dq, wmap, cube.chans, params, name, cube.shepard)


def _grid_for(exposures, bands_of, chans, bands, tables, params, linear):
    pars = [tables.bands.get((c, b)) for c, b in zip(chans, bands)]
    if any(p is None for p in pars):
        missing = [f"{c}{b}" for (c, b), p in zip(zip(chans, bands), pars) if p is None]
        raise CubeBuildError(f"the cubepar reference has no row for channel/band {', '.join(missing)}")
    spax = np.array([p.spaxelsize for p in pars])
    spec = np.array([p.spectralstep for p in pars])
    spatial = spax[0] if np.all(spax == spax[0]) else spax[np.argmin(spax)]
    wavemin = float(np.amin([p.wavemin for p in pars])) if params.wavemin is None else np.float64(params.wavemin)
    wavemax = float(np.amax([p.wavemax for p in pars])) if params.wavemax is None else np.float64(params.wavemax)
    if params.scalew != 0:
        spectral = params.scalew
    elif np.all(spec == spec[0]):
        spectral = spec[0]
    else:
        spectral = None
    if params.scalexy != 0:
        spatial = params.scalexy
    table = None
    if not linear:
        if tables.multichannel_wave is None:
            raise CubeBuildError("the cubepar reference has no MULTICHANNEL_DRIZ wavelength table")
        table = multiband_table(tables.multichannel_wave, wavemin, wavemax)
    elif spectral is None:
        raise CubeBuildError("the bands of this cube have different wavelength steps: set scalew or linear_wave=False")
    corner_a, corner_b = [], []
    for ch, band in zip(chans, bands):
        for idx in bands_of[(ch, band)]:
            fp = exposures[idx].footprints[ch]
            corner_a += [fp[0], fp[2], fp[4], fp[6]]
            corner_b += [fp[1], fp[3], fp[5], fp[7]]
    corner_a = wrap_ra(corner_a)
    grid = make_grid(corner_a, corner_b, wavemin, wavemax, spatial, spectral, linear=linear,
                     wavelength_table=table, ra_center=params.ra_center, dec_center=params.dec_center,
                     rot_angle=params.cube_pa, nspax_x=params.nspax_x, nspax_y=params.nspax_y)
    nfiles = sum(len(bands_of[(c, b)]) for c, b in zip(chans, bands))
    return grid, _shepard(tables, chans, bands, spax, spec, params, linear, nfiles, wavemin, wavemax)


def _shepard(tables, chans, bands, spax, spec, params, linear, nfiles, wavemin, wavemax):
    """The point cloud's regions of interest and weights for this cube (jwst's rules): the band's
    values, the spatial one 1.5 times larger under 4 exposures (msm), or the multi-band table's
    rows that cover the cube's wavelengths."""
    from types import SimpleNamespace

    from .geometry import ShepardPars

    if params.weighting == "drizzle":
        return None
    sp = [tables.shepard.get((c, b), ShepardPars()) for c, b in zip(chans, bands)]
    get = lambda name: np.array([getattr(p, name) for p in sp])  # noqa: E731
    rois_b = get("rois")
    spatial_roi = rois_b[0] if np.all(spax == spax[0]) else rois_b[np.argmin(spax)]
    wave_roi = power = softrad = scalerad = None
    if params.scalew != 0:
        wave_roi, power = np.amin(get("roiw")), np.amin(get("power"))
        softrad, scalerad = np.amin(get("softrad")), np.amin(get("scalerad"))
    elif np.all(spec == spec[0]):
        wave_roi, power, softrad, scalerad = get("roiw")[0], get("power")[0], get("softrad")[0], get("scalerad")[0]
    out = SimpleNamespace(linear=linear, table=None)
    if not linear:
        tw = tables.multichannel_wave
        imin = int(np.abs(tw - wavemin).argmin())
        imax = int(np.abs(tw - wavemax).argmin())
        if imin > 1 and tw[imin] > wavemin:
            imin -= 1
        if imax < (len(tw) - 1) and wavemax > tw[imax]:
            imax += 1
        nan = np.full(tw.size, np.nan)
        cut = {k: np.array(tables.multichannel.get(k, nan)[imin:imax + 1], dtype=np.float64)
               for k in ("rois", "roiw", "power", "softrad", "scalerad")}
        if nfiles < 4:
            cut["rois"] = cut["rois"] * 1.5
        cut["wavelength"] = np.array(tw[imin:imax + 1], dtype=np.float64)
        out.table = cut
    rois = params.rois
    if rois == 0.0:
        rois = spatial_roi
        if nfiles < 4 and params.weighting != "emsm":
            rois = rois * 1.5
    out.rois = rois
    out.roiw = wave_roi if params.roiw == 0 else params.roiw
    out.weight_power = power if params.weight_power == 0 else params.weight_power
    out.softrad, out.scalerad = softrad, scalerad
    if linear:
        bad = [n for n, v in (("spatial roi", out.rois), ("spectral roi", out.roiw)) if v is None or np.isnan(v)]
        if params.weighting == "msm":
            bad += [n for n, v in (("weight power", out.weight_power), ("softrad", softrad)) if v is None or np.isnan(v)]
        if params.weighting == "emsm" and (scalerad is None or np.isnan(scalerad)):
            bad.append("scalerad")
        if bad:
            raise CubeBuildError(f"the cubepar reference gives no {', '.join(bad)} for this cube ({params.weighting})")
    return out


def _per_pixel(sh, wave):
    """rois, roiw, scalerad, power, softrad of each mapped pixel (the kernel's order): the cube's
    values, or (multi-band) the table's row nearest the pixel's wavelength (the first of two equally near)."""
    n = wave.size
    if sh.linear:
        return tuple(np.full(n, np.nan if v is None else v, dtype=np.float64)
                     for v in (sh.rois, sh.roiw, sh.scalerad, sh.weight_power, sh.softrad))
    tw = sh.table["wavelength"]
    i = np.clip(np.searchsorted(tw, wave), 1, tw.size - 1)
    left = np.abs(tw[i - 1] - wave) <= np.abs(tw[i] - wave)
    idx = np.where(left, i - 1, i)
    if tw.size == 1:
        idx = np.zeros(n, dtype=int)
    return tuple(sh.table[k][idx] for k in ("rois", "roiw", "scalerad", "power", "softrad"))


def _product(exposures, used, grid, flux, err, dq, wmap, chans, params, name, shepard=None):
    from astropy.io import fits

    from ... import models
    from .product import cube_wcs, wavetable, wcs_keywords

    first = exposures[used[0] if used else 0]
    cube = models.IFUCubeModel(data=flux.astype(np.float32), dq=dq.astype(np.uint32),
                               err=err.astype(np.float32), weightmap=wmap.astype(np.float32))
    cube.wavetable = wavetable(grid)
    cube._hdu_order = ["SCI", "ERR", "DQ", "WMAP", "WCS-TABLE"]  # jwst's order of an s3d's extensions
    cube.meta = first.meta.model_copy(deep=True)
    cube.meta.model_type = "IFUCubeModel"
    cube._headers = {k: h.copy() for k, h in first.headers.items()}
    if len(exposures) > 1:
        from ...models.blend import MetaBlender

        blender = MetaBlender()
        for i in used:
            stub = models.ImageModel(data=np.broadcast_to(np.float32(0.0), (1, 1)))
            stub.meta = exposures[i].meta
            stub._headers = exposures[i].headers
            blender.accumulate(stub)
        blender.finalize(cube)
    cube.meta.filename = f"{name}_{params.suffix or 's3d'}.fits"
    if str(cube.meta.instrument.name or "").upper() == "MIRI":
        cube.meta.instrument.channel = "".join(sorted(set("".join(chans))))
    wi = cube.meta.wcsinfo
    for attr in ("v2_ref", "v3_ref", "ra_ref", "dec_ref", "roll_ref", "v3yangle", "vparity"):
        setattr(wi, attr, None)
    kw = wcs_keywords(grid)
    wi.wcsaxes = 3
    for attr in ("crpix1", "crpix2", "crval1", "crval2", "ctype1", "ctype2", "cunit1", "cunit2", "cdelt1",
                 "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2"):
        setattr(wi, attr, kw[attr.upper()])
    sci = cube._headers.setdefault("SCI", fits.Header())
    for k, v in kw.items():
        if k.lower() not in ("wcsaxes", "crpix1", "crpix2", "crval1", "crval2", "ctype1", "ctype2", "cunit1",
                             "cunit2", "cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2"):
            sci[k] = v
    cube.meta.photometry.pixelarea_arcsecsq = grid.cdelt1 * grid.cdelt2
    cube.meta.photometry.pixelarea_steradians = cube.meta.photometry.pixelarea_arcsecsq * 2.3504e-11
    prim = cube._headers.setdefault("PRIMARY", fits.Header())
    ifu = [("FLUXEXT", "SCI"), ("ERREXT", "ERR"), ("MASKEXT", "DQ")]
    if shepard is None:
        ifu += [("ROIS", 0), ("ROIW", 0), ("WTYPE", "drizzle"), ("WPOWER", 0)]
    else:
        if shepard.linear:
            ifu += [("ROIS", float(shepard.rois)), ("ROIW", float(shepard.roiw))]
        else:
            ifu += [("ROIW", float(np.mean(shepard.table["roiw"])))]
        ifu += [("WTYPE", params.weighting)]
        wp = shepard.weight_power
        if wp is not None and not np.isnan(wp):
            ifu += [("WPOWER", float(wp))]
    for k, v in ifu:
        prim[k] = v
    cube._headers["ERR"] = fits.Header([("ERRTYPE", "ERR")])
    if not grid.linear:  # a tabulated wavelength axis: jwst records the table's shape (wavedim, TDIM2)
        n = int(cube.wavetable["wavelength"].shape[1])
        cube._headers["WCS-TABLE"] = fits.Header([("TDIM2", f"(1,{n})", "Wavetable dimension")])
    cube.meta.wcs = cube_wcs(grid)
    # S_REGION from the cube's spatial footprint
    from stcal.alignment.util import compute_s_region_keyword

    fp = cube.meta.wcs.footprint(axis_type="spatial")
    s_region = compute_s_region_keyword(fp)
    if s_region is not None:
        wi.s_region = s_region
    return cube
