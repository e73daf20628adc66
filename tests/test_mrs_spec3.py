"""spec3 for MIRI MRS: outlier_detection (mode ifu) and one cube per band, whole, against jwst 3.0.

The inputs are two points of a 4-point dither of MIRIFULONG cal files (band LONG, channels 3 and 4) made with
jwst's AssignWcsStep and the real CDP references (tests/mrs_cube_scene.py: a point source on
extended emission with a line), with warm pixels (not in the DQ) added to every exposure.  jwst's
Spec3Pipeline runs on the spec3 association from its folder, as strun does, and webbflow's spec3 on
the same association.  Both skip extract_1d and spectral_leak, for the CI budget: the IFU
extract_1d with its residual fringe fit is compared with jwst's on cubes in test_mrs_extract.py
and test_mrs_rfcorr.py (and spec3's spectra end to end by test_mrs_sim.py with
WEBBFLOW_MRS_FULL=1), and spectral_leak works on the spectra.  Compared whole:
each exposure's ``<exposure>_<asn_id>_crf.fits`` and the cubes ``<product>_ch3-long_s3d.fits``
(channel 3 alone, on both sides) (cubes within rtol 1e-4 for >= 99.9 % of spaxels, WCS identical).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CRDS_RULES, SHARED_DATA

CONTEXT = "jwst_0541.pmap"
MIRI_REFS = SHARED_DATA / "real-refs" / "miri"
NDITHER = 2  # two dithers: the CI budget (the ifu mode needs at least two)
SKIPS = {"extract_1d": {"skip": "true"}, "spectral_leak": {"skip": "true"}}
CUBES = ["ch3-long"]  # channel 3 alone on both sides: the CI budget (channel 4 takes the same path)

pytestmark = [pytest.mark.parity, pytest.mark.real]


def _add_hot_pixels(paths: list[Path], seed: int = 11, n: int = 40) -> list[tuple[int, int]]:
    """Warm pixels missing from the bad-pixel mask: the same detector pixels bright in every exposure,
    which is what the ifu mode finds (a pixel unlike its neighbours in all the exposures)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    hits = None
    for path in paths:
        with fits.open(path, mode="update") as hdul:
            sci, dq = hdul["SCI"].data, hdul["DQ"].data
            if hits is None:
                ys, xs = np.nonzero(np.isfinite(sci) & (dq == 0))
                pick = rng.choice(ys.size, n, replace=False)
                hits = list(zip(ys[pick].tolist(), xs[pick].tolist()))
            for y, x in hits:
                if np.isfinite(sci[y, x]):
                    sci[y, x] += 5000.0
    return hits


@pytest.fixture(scope="module")
def spec3_mrs(tmp_path_factory):
    if not MIRI_REFS.exists():
        pytest.skip("../shared/data/real-refs/miri is not here")
    pytest.importorskip("jwst")
    import mrs_cube_scene as scene
    from parity import jwst_offline, quiet_jwst

    root = tmp_path_factory.mktemp("mrs_spec3")
    inp = root / "in"
    with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
        cals = scene.make_cal_files(inp, ndither=NDITHER)
    hits = _add_hot_pixels(cals)
    cubepar = scene.write_cubepar(inp / "jwst_miri_cubepar_test.fits")
    asn = scene.write_spec3_asn(inp, cals)
    jw, ours = root / "jwst", root / "ours"

    from jwst.pipeline import Spec3Pipeline

    cwd = os.getcwd()
    os.chdir(inp)  # jwst reads the association's members from the current folder
    try:
        with jwst_offline(CRDS_RULES, CONTEXT), quiet_jwst():
            Spec3Pipeline.call(asn.name, output_dir=str(jw), save_results=True, steps={
                "cube_build": {"override_cubepar": str(cubepar), "channel": "3"},
                "extract_1d": {"skip": True}, "spectral_leak": {"skip": True},
                "photom": {"skip": True}})  # photom is for SOSS spectra only; skipped, its references are not fetched
    finally:
        os.chdir(cwd)
    from webbflow.flows.cli import main

    argv = ["run", "spec3", str(asn), "--output-dir", str(ours),
            f"--steps.cube_build.override_cubepar={cubepar}", "--steps.cube_build.channel=3",
            "--steps.extract_1d.skip=true"]  # spectral_leak: nothing to correct without spectra
    with jwst_offline(CRDS_RULES, CONTEXT):  # the CRDS settings jwst ran under, whatever ran before in this worker
        rc = main(argv)
    assert rc == 0, f"webbflow {' '.join(argv)} exited {rc}"
    return SimpleNamespace(cals=cals, hits=hits, asn=asn, cubepar=cubepar, jwst=jw, ours=ours, scene=scene)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.fits"))


def test_spec3_mrs_writes_jwsts_products(spec3_mrs):
    s = spec3_mrs
    product = s.scene.PRODUCT
    expected = sorted([f"{c.name.replace('_cal.fits', '')}_o003_crf.fits" for c in s.cals]
                      + [f"{product}_{c}_s3d.fits" for c in CUBES])
    assert _names(s.jwst) == expected
    assert _names(s.ours) == expected


def _compare_whole(ours: Path, theirs: Path) -> list[str]:
    from test_products_whole import compare_fits

    problems: list[str] = []
    compare_fits(ours.name, ours, theirs, problems)
    return problems


def test_spec3_mrs_crf_whole_and_cosmic_rays_flagged(spec3_mrs):
    from astropy.io import fits

    s = spec3_mrs
    problems = []
    for cal in s.cals:
        name = f"{cal.name.replace('_cal.fits', '')}_o003_crf.fits"
        problems += _compare_whole(s.ours / name, s.jwst / name)
        with fits.open(s.ours / name) as a, fits.open(s.jwst / name) as b:
            assert np.array_equal(a["DQ"].data, b["DQ"].data), name
            assert a[0].header["S_OUTLIR"] == "COMPLETE"
            outlier = (a["DQ"].data & 16) != 0
            assert 0.0005 < outlier.mean() < 0.01  # the 99.8 percentile cut, on the lit pixels
            for y, x in s.hits:
                assert a["DQ"].data[y, x] & 17 == 17 and np.isnan(a["SCI"].data[y, x])
    assert not problems, "\n".join(problems[:20])


def test_spec3_mrs_cubes_whole(spec3_mrs):
    from astropy.io import fits
    from stdatamodels.jwst import datamodels as dm

    s = spec3_mrs
    product = s.scene.PRODUCT
    for c in CUBES:
        name = f"{product}_{c}_s3d.fits"
        ours, theirs = s.ours / name, s.jwst / name
        problems = _compare_whole(ours, theirs)
        assert not problems, "\n".join(problems[:20])
        with fits.open(ours) as a, fits.open(theirs) as b:
            for ext in ("SCI", "ERR", "WMAP"):
                x, y = a[ext].data.astype(float), b[ext].data.astype(float)
                close = np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))
                assert close.mean() >= 0.999, (name, ext, close.mean())
            assert np.array_equal(a["DQ"].data, b["DQ"].data)
            assert np.isfinite(a["SCI"].data).mean() > 0.3
        with dm.open(ours) as mo, dm.open(theirs) as mt:
            assert type(mo).__name__ == "IFUCubeModel"
            nz, ny, nx = mt.data.shape
            z, y, x = np.mgrid[0:nz:97, 0:ny:5, 0:nx:5]
            for u, v in zip(mo.meta.wcs(x, y, z), mt.meta.wcs(x, y, z)):
                assert np.array_equal(u, v)


# ---------------------------------------------------------------------------
# the ifu mode alone, on small exposures, against jwst's detect_outliers (quick)


def _small_exposures(instrument: str, detectors: list[str], shape=(60, 70), seed=5):
    """Exposures with bright columns, noise, warm pixels in every exposure of a detector and a
    cosmic ray in one exposure only."""
    rng = np.random.default_rng(seed)
    out = []
    warm = [(10, 20), (30, 31), (45, 50), (12, 60)]
    for k, det in enumerate(detectors):
        data = (5.0 + rng.normal(0, 0.3, shape)).astype(np.float32)
        data[:, 35] += 50.0
        data[20:40, 40] += 30.0
        for y, x in warm:
            data[y, x] += 200.0
        if k == 0:
            data[5, 8] += 1000.0  # in one exposure only: a cosmic ray, not this mode's business
        dq = np.zeros(shape, np.uint32)
        dq[:, :2] = 513
        dq[50, 30] = 1
        data[52, 31] = np.nan  # NaN without DO_NOT_USE
        err = np.full(shape, 0.3, np.float32)
        out.append(dict(data=data, dq=dq, err=err, var_poisson=err**2 * 0.6, var_rnoise=err**2 * 0.4,
                        detector=det, instrument=instrument, name=f"jw01523003001_03102_{k + 1:05d}_{det.lower()}_cal.fits"))
    return out


def _ours(ex):
    from webbflow import models

    m = models.IFUImageModel(data=ex["data"].copy())
    for a in ("dq", "err", "var_poisson", "var_rnoise"):
        setattr(m, a, ex[a].copy())
    m.meta.filename = ex["name"]
    m.meta.instrument.name, m.meta.instrument.detector = ex["instrument"], ex["detector"]
    m.meta.exposure.type = "MIR_MRS" if ex["instrument"] == "MIRI" else "NRS_IFU"
    return m


def _theirs(ex):
    from stdatamodels.jwst import datamodels as dm

    m = dm.IFUImageModel(ex["data"].copy())
    for a in ("dq", "err", "var_poisson", "var_rnoise"):
        setattr(m, a, ex[a].copy())
    m.meta.filename = ex["name"]
    m.meta.instrument.name, m.meta.instrument.detector = ex["instrument"], ex["detector"]
    m.meta.exposure.type = "MIR_MRS" if ex["instrument"] == "MIRI" else "NRS_IFU"
    return m


@pytest.mark.parametrize("instrument,detectors,kernel,second", [
    ("MIRI", ["MIRIFUSHORT"] * 3, "7 7", False),
    ("MIRI", ["MIRIFUSHORT", "MIRIFULONG", "MIRIFUSHORT", "MIRIFULONG"], "4 6", True),
    ("NIRSPEC", ["NRS1", "NRS1"], "5 3", False),
])
def test_ifu_mode_flags_what_jwst_flags(instrument, detectors, kernel, second):
    from jwst.datamodels import ModelContainer
    from jwst.outlier_detection.ifu import detect_outliers

    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    exposures = _small_exposures(instrument, detectors)
    res = run_step("outlier_detection", [_ours(e) for e in exposures],
                   {"kernel_size": kernel, "threshold_percent": 99.0, "ifu_second_check": second}, references={})
    theirs = detect_outliers(ModelContainer([_theirs(e) for e in exposures]), False, kernel, second, 99.0, None)
    assert res.status == "COMPLETE"
    for a, b in zip(res.model, theirs):
        assert a.meta.cal_step.outlier_detection == "COMPLETE"
        for name in ("data", "err", "dq", "var_poisson", "var_rnoise"):
            x, y = getattr(a, name), getattr(b, name)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
        flagged = (a.dq & 16) != 0
        # warm pixels (bright in every exposure) are flagged; a hit in one exposure only is not
        assert all(flagged[y, x] for y, x in [(10, 20), (30, 31), (45, 50), (12, 60)])
        assert not flagged[5, 8]


@pytest.mark.parametrize("kernel,block", [((7, 7), 32), ((5, 3), 7), ((9, 9), 1000)])
def test_ifu_median_filter_is_stcals_by_blocks(kernel, block):
    """The median filter, a block of rows at a time, gives stcal's medfilt exactly (NaNs, all-NaN
    windows, edges), without gathering every window at once."""
    from stcal.outlier_detection.utils import medfilt

    from webbflow.tasks._outlier_ifu import median_filter

    rng = np.random.default_rng(4)
    a = rng.standard_normal((150, 97)) ** 2
    a[rng.random(a.shape) < 0.3] = np.nan
    a[40:52] = np.nan
    for arr in (a, a.astype(np.float32)):
        ours, theirs = median_filter(arr, kernel, block_rows=block), medfilt(arr, kernel)
        assert ours.dtype == theirs.dtype
        assert np.array_equal(ours, theirs, equal_nan=True)


def test_ifu_members_on_disk_keep_no_wcs_in_their_snapshots(tmp_path):
    """spec3's model library keeps a metadata snapshot per member; an IFU member's leaves its (large)
    WCS out, so that memory does not grow with the exposures, while a borrowed member has it."""
    from astropy.modeling import models as am
    from gwcs import WCS

    from webbflow.tasks._library import ModelLibrary

    paths = []
    for ex in _small_exposures("MIRI", ["MIRIFUSHORT"] * 3):
        m = _ours(ex)
        m.meta.wcs = WCS(am.Shift(1.0) & am.Shift(2.0), input_frame="detector", output_frame="world")
        paths.append(m.save(tmp_path / ex["name"]))
    lib = ModelLibrary(paths, asn_id="o003")
    for _i, m in lib.each(modify=True):
        assert m.meta.wcs is not None
        m.dq[0, 0] |= 4
    for i in range(3):
        assert lib.read_metadata(i).wcs is None and lib.read_metadata(i).filename == Path(paths[i]).name
        m = lib.borrow(i)
        assert m.meta.wcs(0.0, 0.0) == (1.0, 2.0) and m.dq[0, 0] & 4
        lib.shelve(i, m, modify=False)
    lib.close()


def test_ifu_mode_needs_two_exposures_and_a_good_kernel():
    from webbflow.errors import ParameterError
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    one = [_ours(e) for e in _small_exposures("MIRI", ["MIRIFUSHORT"])]
    res = run_step("outlier_detection", one, {}, references={})
    assert res.model[0].meta.cal_step.outlier_detection == "FAILED"  # as jwst 3.0 records it
    two = [_ours(e) for e in _small_exposures("MIRI", ["MIRIFUSHORT"] * 2)]
    with pytest.raises(ParameterError, match=r"'kernel_size' must be two positive integers.*'7'") as exc:
        run_step("outlier_detection", two, {"kernel_size": "7"}, references={})
    assert "\n" not in str(exc.value)


def test_spec3_ifu_refuses_what_it_cannot_do_in_one_line(tmp_path):
    """NIRSpec IFU and MRS members without a WCS: one line naming the file, no product."""
    from webbflow import models
    from webbflow.errors import InputFileError
    from webbflow.flows._spec3_ifu import is_ifu, spec3_ifu

    def member(name, exp_type, detector):
        m = models.IFUImageModel(data=np.ones((32, 40), np.float32))
        m.meta.filename = name
        m.meta.instrument.name = "NIRSPEC" if exp_type == "NRS_IFU" else "MIRI"
        m.meta.instrument.detector, m.meta.exposure.type = detector, exp_type
        path = tmp_path / name
        m.save(path)
        return path

    nrs = member("jw01234001001_01101_00001_nrs1_cal.fits", "NRS_IFU", "NRS1")
    mrs = member("jw01234001001_01101_00001_mirifushort_cal.fits", "MIR_MRS", "MIRIFUSHORT")
    assert is_ifu(nrs) and is_ifu(mrs)
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=r"nrs1_cal.fits.*has no WCS") as e1:
        spec3_ifu([nrs], product_name="jw01234-o001_t001_nirspec", output_dir=str(out))
    with pytest.raises(InputFileError, match=r"mirifushort_cal.fits.*has no WCS") as e3:
        spec3_ifu([mrs], product_name="jw01234-o001_t001_miri", output_dir=str(out))
    assert all("\n" not in str(e.value) for e in (e1, e3))
    assert not out.exists() or not any(out.iterdir())
