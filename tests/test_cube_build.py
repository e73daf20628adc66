"""cube_build for MIRI MRS: s3d cubes against jwst 3.0's CubeBuildStep, and the kernel's geometry.

The inputs are MIRIFULONG cal files made with jwst's AssignWcsStep and the real CDP references
(tests/mrs_cube_scene.py): a point source, extended emission and a line at 16.5 um.  One exposure
is built into the channel 4 LONG cube (its footprint from S_REGION), a two-point dither into the
channel 3 LONG cube (its footprint from every pixel mapped to the sky; the inputs' metadata
blended), each by jwst and by ``webbflow run cube_build``, and the products are compared whole.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CRDS_RULES, SHARED_DATA

CONTEXT = "jwst_0541.pmap"
MIRI_REFS = SHARED_DATA / "real-refs" / "miri"


# ---------------------------------------------------------------------------
# the kernel's geometry (no jwst)

def _area(xc, yc, size, xs, ys):
    from webbflow.tasks.cube_build.kernels import overlap_area

    scratch = [np.zeros(12) for _ in range(4)]
    return overlap_area(xc, yc, size, size, np.array(xs, float), np.array(ys, float), *scratch)


def test_overlap_of_a_pixel_with_a_spaxel():
    # a pixel inside the spaxel: all of it
    assert _area(0.0, 0.0, 1.0, [-0.2, 0.2, 0.2, -0.2], [-0.1, -0.1, 0.1, 0.1]) == pytest.approx(0.08)
    # the spaxel inside a large pixel: the spaxel's area
    assert _area(0.0, 0.0, 1.0, [-3, 3, 3, -3], [-3, -3, 3, 3]) == pytest.approx(1.0)
    # half in, half out
    assert _area(0.0, 0.0, 1.0, [0.0, 1.0, 1.0, 0.0], [-0.5, -0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # a unit square turned by 45 degrees on the spaxel's corner: a quarter of it
    h = np.sqrt(0.5)
    assert _area(0.5, 0.5, 1.0, [0, h, 0, -h], [-h, 0, h, 0]) == pytest.approx(0.25, rel=1e-6)
    # no overlap
    assert _area(0.0, 0.0, 1.0, [2, 3, 3, 2], [2, 2, 3, 3]) == 0.0


def test_cube_names_and_cubes_of_each_output_type():
    from webbflow.tasks.cube_build.geometry import cube_suffix, cubes_to_make

    chans, bands = ["3", "4"], ["long", "long"]
    assert cubes_to_make(chans, bands, "band") == [(["3"], ["long"]), (["4"], ["long"])]
    assert cubes_to_make(chans, bands, "multi") == [(["3", "4"], ["long", "long"])]
    assert cubes_to_make(["1", "1", "2"], ["short", "long", "short"], "channel") == [
        (["1", "1"], ["short", "long"]), (["2"], ["short"])]
    assert cube_suffix(["3"], ["long"]) == "_ch3-long"
    assert cube_suffix(["3", "4"], ["long", "long"]) == "_ch3-4-long"
    assert cube_suffix(["1", "1", "1"], ["short", "medium", "long"]) == "_ch1-shortmediumlong"


def test_spaxels_without_data_are_flagged():
    from webbflow.tasks.cube_build.product import final_dq

    weight = np.zeros(3 * 4 * 5)
    weight[20 + 5 + 1: 20 + 5 + 4] = 1.0  # three spaxels of plane 1 have data
    dq = final_dq(np.zeros(weight.size, np.uint32), weight, (3, 4, 5))
    assert (dq[weight > 0] == 0).all()
    assert (dq[weight == 0] == 513).all()  # NON_SCIENCE + DO_NOT_USE


# ---------------------------------------------------------------------------
# parity with jwst

@pytest.fixture(scope="module")
def mrs(tmp_path_factory):
    """Two dithered MIRIFULONG cal files, the cubepar reference and the spec3 association; jwst's
    cubes of them (channel 4 of the first exposure; channel 3 of both) and webbflow's."""
    if not MIRI_REFS.exists():
        pytest.skip("../shared/data/real-refs/miri is not here")
    pytest.importorskip("jwst")
    import mrs_cube_scene as scene
    from parity import jwst_offline, quiet_jwst

    root = tmp_path_factory.mktemp("mrs_cube")
    inp = root / "in"
    with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
        cals = scene.make_cal_files(inp, ndither=2)
    cubepar = scene.write_cubepar(inp / "jwst_miri_cubepar_test.fits")
    asn = scene.write_spec3_asn(inp, cals)
    jw = SimpleNamespace(single=root / "jwst_single", dither=root / "jwst_dither")
    ours = SimpleNamespace(single=root / "ours_single", dither=root / "ours_dither")

    import os

    from jwst.cube_build import CubeBuildStep

    cwd = os.getcwd()
    os.chdir(inp)  # jwst reads association members from the current folder
    try:
        with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
            CubeBuildStep.call(cals[0].name, channel="4", override_cubepar=str(cubepar), save_results=True,
                               output_dir=str(jw.single))
            CubeBuildStep.call(asn.name, channel="3", override_cubepar=str(cubepar), save_results=True,
                               output_dir=str(jw.dither))
    finally:
        os.chdir(cwd)
    # webbflow under the same CRDS settings as jwst (the context both record as CRDS_CTX), as a user runs both
    with jwst_offline(CRDS_RULES, CONTEXT):
        _webbflow("cube_build", cals[0], "--channel", "4", "--override_cubepar", cubepar, "--output-dir", ours.single)
        _webbflow("cube_build", asn, "--channel", "3", "--override_cubepar", cubepar, "--output-dir", ours.dither)
    return SimpleNamespace(cals=cals, asn=asn, cubepar=cubepar, jwst=jw, ours=ours, scene=scene)


def _webbflow(*argv):
    from webbflow.flows.cli import main

    rc = main(["run", *[str(a) for a in argv]])
    assert rc == 0, f"webbflow run {' '.join(map(str, argv))} exited {rc}"


def _compare_whole(ours: Path, theirs: Path) -> list[str]:
    from test_products_whole import compare_fits

    problems: list[str] = []
    compare_fits(ours.name, ours, theirs, problems)
    return problems


def _arrays_agree(ours: Path, theirs: Path) -> dict:
    from astropy.io import fits

    out = {}
    with fits.open(ours) as a, fits.open(theirs) as b:
        for ext in ("SCI", "ERR", "WMAP"):
            x, y = a[ext].data.astype(float), b[ext].data.astype(float)
            close = np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))
            out[ext] = float(close.mean())
        out["DQ"] = float(np.mean(a["DQ"].data == b["DQ"].data))
    return out


def _wcs_identical(ours: Path, theirs: Path) -> None:
    from stdatamodels.jwst import datamodels as dm

    with dm.open(ours) as a, dm.open(theirs) as b:
        assert type(a).__name__ == "IFUCubeModel"
        nz, ny, nx = b.data.shape
        x, y, z = np.meshgrid([0, nx // 2, nx - 1], [0, ny // 3, ny - 1], [0, nz // 2, nz - 1])
        wa, wb = a.meta.wcs(x, y, z), b.meta.wcs(x, y, z)
        for u, v in zip(wa, wb):
            np.testing.assert_array_equal(u, v)
        assert a.meta.wcs.bounding_box == b.meta.wcs.bounding_box
        assert a.meta.wcs.output_frame.name == b.meta.wcs.output_frame.name


@pytest.mark.parity
@pytest.mark.real
def test_one_exposure_cube_matches_jwst(mrs):
    name = "jw01523003001_03102_00001_mirifulong_ch4-long_s3d.fits"
    assert [p.name for p in mrs.ours.single.iterdir()] == [name]
    assert (mrs.jwst.single / name).exists()
    agree = _arrays_agree(mrs.ours.single / name, mrs.jwst.single / name)
    print("one exposure, ch4-long:", agree)
    assert min(agree.values()) >= 0.999, agree
    assert _compare_whole(mrs.ours.single / name, mrs.jwst.single / name) == []
    _wcs_identical(mrs.ours.single / name, mrs.jwst.single / name)


@pytest.mark.parity
@pytest.mark.real
def test_dithered_cube_matches_jwst(mrs):
    name = "jw01523-o003_t002_miri_ch3-long_s3d.fits"
    assert [p.name for p in mrs.ours.dither.iterdir()] == [name]
    agree = _arrays_agree(mrs.ours.dither / name, mrs.jwst.dither / name)
    print("two dithers, ch3-long:", agree)
    assert min(agree.values()) >= 0.999, agree
    assert _compare_whole(mrs.ours.dither / name, mrs.jwst.dither / name) == []
    _wcs_identical(mrs.ours.dither / name, mrs.jwst.dither / name)


@pytest.mark.real
def test_shared_detector_mapping_gives_each_exposures_own_numbers(mrs):
    """Read from files, the two dithers share the detector-to-V2/V3 mapping (the same WCS steps):
    the first exposure's is evaluated, the second only goes from V2/V3 to the sky.  Opened in
    memory beforehand (their WCS already made), each exposure maps its pixels through its own
    whole WCS.  The cubes are the same, bit for bit."""
    from webbflow import models
    from webbflow.refs.select import open_reference
    from webbflow.tasks._library import as_library
    from webbflow.tasks.cube_build import CubeBuildParams, _detector_part_key, build_cubes
    from webbflow.models._lazy_wcs import lazy_wcs_reading

    with lazy_wcs_reading():
        lazy = [models.open(c) for c in mrs.cals]
    keys = [_detector_part_key(m.meta.wcs, m.data.shape) for m in lazy]
    assert keys[0] is not None and keys[0] == keys[1]
    eager = [models.open(c) for c in mrs.cals]
    eager[0].meta.wcs.available_frames  # made now: no shared part
    assert _detector_part_key(eager[0].meta.wcs, eager[0].data.shape) is None
    library = as_library(eager)
    library.product_name = "jw01523-o003_t002_miri"
    (cube,) = build_cubes(library, open_reference("cubepar", mrs.cubepar), CubeBuildParams(channel="3"))
    with models.open(mrs.ours.dither / "jw01523-o003_t002_miri_ch3-long_s3d.fits") as shared:
        for name in ("data", "err", "dq", "weightmap"):
            np.testing.assert_array_equal(getattr(cube, name), getattr(shared, name), err_msg=name)


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_cube_shows_the_scene(mrs):
    """The point source is where it was put on the sky, and the 16.5 um line stands out."""
    from webbflow import models

    cube = models.open(mrs.ours.dither / "jw01523-o003_t002_miri_ch3-long_s3d.fits")
    nz = cube.data.shape[0]
    _, _, lam = cube.meta.wcs(np.zeros(nz), np.zeros(nz), np.arange(nz))
    cont = (lam > 16.0) & (lam < 16.3)
    img = np.nanmedian(cube.data[cont], axis=0)
    img = np.nan_to_num(img - np.nanmedian(img))
    yy, xx = np.indices(img.shape)
    peak = np.unravel_index(np.argmax(img), img.shape)
    box = (np.abs(yy - peak[0]) <= 2) & (np.abs(xx - peak[1]) <= 2) & (img > 0)
    xc, yc = (img * xx)[box].sum() / img[box].sum(), (img * yy)[box].sum() / img[box].sum()
    ra, dec, _ = cube.meta.wcs(xc, yc, 0)
    s = mrs.scene
    dx = (ra - s.RA0) * np.cos(np.deg2rad(s.DEC0)) * 3600
    dy = (dec - s.DEC0) * 3600
    assert abs(dx - 0.2) < 0.15 and abs(dy + 0.1) < 0.15, (dx, dy)
    spec = np.nanmean(cube.data[:, peak[0] - 1:peak[0] + 2, peak[1] - 1:peak[1] + 2], axis=(1, 2))
    on = np.nanmax(spec[np.abs(lam - 16.5) < 0.01])
    off = np.nanmedian(spec[cont])
    assert on > off + 20, (on, off)


@pytest.mark.parity
@pytest.mark.real
def test_unsupported_frame_is_a_one_line_error(mrs, tmp_path, capsys):
    from webbflow.flows.cli import main

    rc = main(["run", "cube_build", str(mrs.cals[0]), "--coord_system", "ifualign", "--override_cubepar",
               str(mrs.cubepar), "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and "ifualign" in err[0] and mrs.cals[0].name in err[0], err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# the kernels against jwst's C extensions, on the same random pixels

def _random_pixels(rng, n, grid_half=2.0, size=0.25):
    """Pixel footprints (turned, stretched quadrilaterals) and wavelengths scattered over a small cube."""
    cx = rng.uniform(-grid_half, grid_half, n)
    cy = rng.uniform(-grid_half, grid_half, n)
    ang = rng.uniform(0, np.pi, n)
    a, b = size * rng.uniform(0.5, 1.5, n), size * rng.uniform(0.3, 1.0, n)
    corners = []
    for sx, sy in ((-1, -1), (-1, 1), (1, 1), (1, -1)):
        dx, dy = sx * a / 2, sy * b / 2
        corners += [cx + dx * np.cos(ang) - dy * np.sin(ang), cy + dx * np.sin(ang) + dy * np.cos(ang)]
    return cx, cy, corners


@pytest.mark.parity
def test_drizzle_kernel_is_jwsts_arithmetic():
    pytest.importorskip("jwst")
    from jwst.cube_build.cube_match_sky_driz import cube_wrapper_driz

    from webbflow.tasks.cube_build import kernels

    rng = np.random.default_rng(3)
    xc = np.arange(-2.1, 2.11, 0.2)[:21]
    yc = np.arange(-2.1, 2.11, 0.2)[:21]
    zc = 15.0 + 0.0025 * (np.arange(40) + 0.5)
    cd3 = np.full(zc.size, 0.0025)
    n = 3000
    cx, cy, corners = _random_pixels(rng, n)
    wave = rng.uniform(zc[0] - 0.003, zc[-1] + 0.003, n)
    dwave = rng.uniform(0.001, 0.004, n)
    flux, err = rng.normal(10, 3, n), rng.uniform(0.1, 1, n)
    ours = [np.zeros(xc.size * yc.size * zc.size) for _ in range(4)]
    kernels.drizzle_exposure(xc, yc, zc, cd3, 0.2, 0.2, wave, dwave, flux, err, *corners, *ours)
    theirs = cube_wrapper_driz(0, 0, 301, 316, 4, 2, xc, yc, zc, cx, cy, wave, flux, err, np.zeros(n), *corners,
                               dwave, cd3, 0.2, 0.2, float(np.mean(cd3)), 1, cx, cy, -1)
    assert ours[3].sum() > n  # pixels overlap several spaxels and planes
    for a, b in zip(ours, theirs[:4]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parity
@pytest.mark.parametrize("emsm", [True, False])
def test_point_cloud_kernel_is_jwsts_arithmetic(emsm):
    pytest.importorskip("jwst")
    from jwst.cube_build.cube_match_sky_pointcloud import cube_wrapper

    from webbflow.tasks.cube_build import kernels

    rng = np.random.default_rng(5)
    xc = np.arange(-2.1, 2.11, 0.2)[:21]
    yc = np.arange(-2.1, 2.11, 0.2)[:21]
    zc = 15.0 + 0.0025 * (np.arange(40) + 0.5)
    cd3 = np.full(zc.size, 0.0025)
    n = 3000
    cx, cy = rng.uniform(-2.2, 2.2, n), rng.uniform(-2.2, 2.2, n)
    wave = rng.uniform(zc[0] - 0.003, zc[-1] + 0.003, n)
    flux, err = rng.normal(10, 3, n), rng.uniform(0.1, 1, n)
    rois, roiw = np.full(n, 0.3), np.full(n, 0.005)
    scalerad, power, softrad = np.full(n, 0.1), np.full(n, 2.0), np.full(n, 0.01)
    ours = [np.zeros(xc.size * yc.size * zc.size) for _ in range(4)]
    kernels.pointcloud_exposure(xc, yc, zc, cd3, 0.2, 0.2, cx, cy, wave, flux, err, rois, roiw, scalerad, power,
                                softrad, emsm, *ours)
    theirs = cube_wrapper(0, 0, 0 if emsm else 1, 301, 316, 4, 2, xc, yc, zc, cx, cy, wave, flux, err, np.zeros(n),
                          rois, roiw, scalerad, power, softrad, cd3, 0.005, 0.2, 0.2)
    assert ours[3].sum() > n
    for a, b in zip(ours, theirs[:4]):
        np.testing.assert_array_equal(a, b)
