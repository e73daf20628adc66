"""Stage 3 shares resample's output grid and pixel maps between steps (never a stale one), and its
blocked pixel maps and medians are stcal's bit for bit."""

import numpy as np

from webbflow.tasks import resample as R


class _Wcs:
    """Stands for a gwcs WCS (keys compare such objects by identity)."""

    forward_transform = None


def _counting(monkeypatch):
    calls = []

    def fake(wcs_from, wcs_to, shape=None, **kwargs):
        calls.append((wcs_from, wcs_to))
        return np.full(tuple(shape) + (2,), float(len(calls)))

    monkeypatch.setattr(R, "_pixel_map", fake)  # what computes a map (stcal's calc_pixmap, in blocks)
    return calls


def test_pixel_maps_are_computed_once_per_pair_of_wcs_objects(monkeypatch):
    calls = _counting(monkeypatch)
    a, b, grid = _Wcs(), _Wcs(), _Wcs()
    store: dict = {}
    with R._sharing(store):
        first = R._calc_pixmap_shared(a, grid, (3, 4), stepsize=1, order=1)
        first[:] = -1.0  # drizzle may change its map: the shared one must not change
        again = R._calc_pixmap_shared(a, grid, (3, 4), stepsize=1, order=1)
        other = R._calc_pixmap_shared(b, grid, (3, 4), stepsize=1, order=1)
        coarser = R._calc_pixmap_shared(a, grid, (3, 4), stepsize=2, order=1)
    assert len(calls) == 3  # a (once), b, a with another step size
    assert (again == 1.0).all() and (other == 2.0).all() and (coarser == 3.0).all()
    # a new WCS object for the same exposure (changed by tweakreg, or read again) is computed anew
    with R._sharing(store):
        R._calc_pixmap_shared(_Wcs(), grid, (3, 4), stepsize=1, order=1)
    assert len(calls) == 4


def test_nothing_is_shared_outside_a_product(monkeypatch):
    calls = _counting(monkeypatch)
    a, grid = _Wcs(), _Wcs()
    R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
    R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
    assert len(calls) == 2
    with R._sharing(None):  # a library whose members are not all in memory
        R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
        R._calc_pixmap_shared(a, grid, (2, 2), stepsize=1, order=1)
    assert len(calls) == 4


def _imaging_wcs(crval, shape, distortion: bool):
    """A gwcs imaging WCS: optional polynomial distortion, TAN projection, bounding box on the pixels."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    scale = 0.031 / 3600.0
    det = am.Shift(-shape[1] / 2.0) & am.Shift(-shape[0] / 2.0)
    if distortion:
        px = am.Polynomial2D(3, c1_0=1.0, c2_0=2e-6, c0_2=-1e-6, c1_1=3e-6, c3_0=1e-9)
        py = am.Polynomial2D(3, c0_1=1.0, c0_2=1.5e-6, c2_0=-2e-6, c1_2=2e-9)
        det = det | am.Mapping((0, 1, 0, 1)) | px & py
    sky = am.Scale(scale) & am.Scale(scale) | am.Rotation2D(12.5) | am.Pix2Sky_TAN() | am.RotateNative2Celestial(
        crval[0], crval[1], 180.0)
    w = gw.WCS([(cf.Frame2D(name="detector"), det | sky),
                (cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg)), None)])
    w.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    w.array_shape = shape
    return w


def test_pixel_maps_in_blocks_are_stcals_bit_for_bit(monkeypatch):
    from stcal.resample.utils import calc_pixmap

    exposure = _imaging_wcs((53.16, -27.79), (30, 37), distortion=True)
    grid = _imaging_wcs((53.160002, -27.790003), (36, 40), distortion=False)
    for wcs_from, wcs_to, shape in ((exposure, grid, (30, 37)), (grid, exposure, (36, 40)),
                                    (exposure, grid, (34, 41))):  # beyond the bounding box: NaN
        boxes = (wcs_from.bounding_box.bounding_box(order="F"), wcs_to.bounding_box.bounding_box(order="F"))
        expected = calc_pixmap(wcs_from, wcs_to, shape)
        assert np.isfinite(expected).any()
        for block in (shape[1] * 7 + 3, 10**6):  # uneven blocks (the last one short), the whole grid
            monkeypatch.setattr(R, "_PIXMAP_BLOCK", block)
            got = R._pixel_map(wcs_from, wcs_to, shape)
            assert got.dtype == expected.dtype and got.shape == expected.shape and got.flags.c_contiguous
            np.testing.assert_array_equal(got, expected)  # NaNs in the same places, values bit for bit
            # the bounding boxes are there afterwards, as stcal leaves them
            assert (wcs_from.bounding_box.bounding_box(order="F"), wcs_to.bounding_box.bounding_box(order="F")) == boxes
    # every bounding-box choice: the transforms built once where gwcs would do nothing more (no
    # bounding box left on the target WCS), gwcs' own calls where it would (the target's footprint)
    monkeypatch.setattr(R, "_PIXMAP_BLOCK", 37 * 5 + 1)
    for disable in ("to", "from", "both", "none"):
        expected = calc_pixmap(exposure, grid, (34, 41), disable_bbox=disable)
        np.testing.assert_array_equal(R._pixel_map(exposure, grid, (34, 41), disable_bbox=disable), expected)
    # a coarse map (stepsize > 1) is stcal's own
    monkeypatch.setattr(R, "_PIXMAP_BLOCK", 100)
    np.testing.assert_array_equal(R._pixel_map(exposure, grid, (30, 37), stepsize=4, order=1),
                                  calc_pixmap(exposure, grid, (30, 37), stepsize=4, order=1))


def test_median_of_the_stack_in_blocks_is_stcals_bit_for_bit(monkeypatch):
    import warnings

    from stcal.outlier_detection.median import MedianComputer

    from webbflow.tasks import outlier_detection as O

    rng = np.random.default_rng(3)
    for n, shape in ((4, (61, 37)), (3, (20, 50)), (16, (9, 11)), (1, (5, 5))):
        cube = rng.normal(size=(n,) + shape).astype(np.float32)
        cube[rng.random(cube.shape) < 0.3] = np.nan
        cube[:, :2] = np.nan  # all-NaN pixels
        for value, fraction in ((0.0, 0.05), (-0.0, 0.05), (np.inf, 0.02), (-np.inf, 0.02), (1.5, 0.1)):
            cube[rng.random(cube.shape) < fraction] = value  # ties, signed zeros, infinities
        theirs = MedianComputer(cube.shape, True, None, cube.dtype)
        for block in (1, 37 * n * 3 + 5, 10**7):  # one row per call, uneven blocks, one call
            monkeypatch.setattr(O, "_MEDIAN_BLOCK", block)
            ours = O._median_computer(cube.shape, False, cube.dtype)
            for i, image in enumerate(cube):
                ours.append(image.copy(), i)
                theirs.append(image.copy(), i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                got, expected = ours.evaluate(), theirs.evaluate()
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert got.tobytes() == expected.tobytes()  # NaNs, signed zeros and values bit for bit
    # on disk: stcal's own computer
    assert isinstance(O._median_computer((2, 3, 3), True, np.float32), MedianComputer)


def test_drizzle_weights_made_by_blocks_of_rows_are_stcals(monkeypatch):
    """The ivm weights stcal's Resample gets (made a block of rows at a time) are stcal's own
    build_driz_weight, bit for bit: zero, NaN, infinite and negative variances, float32 and float64
    variances, DQ flags kept and ignored; other weight types go to stcal's."""
    from stcal.resample.utils import build_driz_weight

    from webbflow.models import dqflags
    from webbflow.tasks import resample

    rng = np.random.default_rng(0)
    monkeypatch.setattr(resample, "_WEIGHT_BLOCK", 23 * 5)  # eight blocks of five rows
    for dtype in (np.float32, np.float64):
        var = rng.uniform(0, 3, size=(37, 23)).astype(dtype)
        var[0, 0], var[1, 1], var[2, 2], var[3, 3] = 0, np.nan, np.inf, -1
        dq = rng.choice(np.array([0, 1, 4, 2**9, 2**20], np.uint32), size=var.shape)
        model = {"data": np.zeros(var.shape, np.float32), "dq": dq, "var_rnoise": var,
                 "measurement_time": 10.0, "exposure_time": 12.0}
        for good_bits in ("~DO_NOT_USE", "~DO_NOT_USE+NON_SCIENCE", None, 0):
            for weight_type in ("ivm", "exptime", None):
                ours = resample._lean_driz_weight(model, weight_type, good_bits, dqflags.PIXEL)
                theirs = build_driz_weight(model, weight_type, good_bits, dqflags.PIXEL)
                assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()
        assert np.count_nonzero(resample._lean_driz_weight(model, "ivm", "~DO_NOT_USE", dqflags.PIXEL) == 0) > 4
