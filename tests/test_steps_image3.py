"""Stage 3 imaging steps: assign_mtwcs, tweakreg, skymatch, outlier_detection, resample of a
model library, source_catalog.

The data: four dithered NIRCam long-wave exposures (NRCALONG, F444W, a 256x256
subarray, ~120 stars per field) from the simulator, calibrated by jwst's own
Detector1 and Image2 pipelines with the simulator's references, after a
pointing error was put into exposures 2-4 (RA_REF/DEC_REF moved by 0.1-0.2
arcsec), so that tweakreg has a correction to find.

Unit tests check what a user would check against the simulator's truth: the
aligned WCSs put the truth stars where they are, skymatch recovers a sky
offset put into one exposure, outlier_detection flags a cosmic ray put into
one exposure and nowhere else, the catalogue finds the truth stars with their
fluxes.

Parity tests feed the same files to our step and to jwst 3.0's, each step
alone (jwst's output of the previous step is both steps' input), and then
compare our whole chain with jwst's:

- tweakreg: the aligned WCSs agree within 5 mas (measured: identical);
- skymatch: sky levels within 1e-6 MJy/sr;
- outlier_detection: identical DQ for at least 99.99 % of the pixels;
- resample of the library: i2d SCI within rtol 1e-3 for at least 99 % of pixels;
- source_catalog: the same sources, matched within 0.05", fluxes within 1 %.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from astropy.io import fits
import pytest

from webbflow import models
from webbflow.models import dqflags
from webbflow.tasks import load_all
from webbflow.tasks._library import ModelLibrary
from webbflow.tasks.base import run_step

from parity import compare_arrays, compare_dq, jwst_offline, quiet_jwst

load_all()

SIM = dict(instrument="nircam", detector="NRCALONG", filter="F444W", size=256, ngroups=5, nints=1,
           readpatt="MEDIUM8", nexp=4, seed=5, stars_per_field=120)
# pointing errors put into the exposures before image2 (arcsec east, north)
OFFSETS = [(0.0, 0.0), (0.12, -0.08), (-0.10, 0.15), (0.06, 0.11)]
MAS = 3.6e6  # mas per degree
ASN_ID = "o001"
PRODUCT = "jw01234-o001_t001_nircam_clear-f444w"
ABS = {"abs_tolerance": 0.2, "abs_separation": 0.5}  # absolute alignment matching for a small, dense field


def _quiet_jwst(fn, cache, context):
    with jwst_offline(cache, context), quiet_jwst(logging.ERROR, also=("tweakwcs",)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _sep_mas(ra1, dec1, ra2, dec2):
    return np.hypot((np.asarray(ra1) - ra2) * np.cos(np.deg2rad(dec2)), np.asarray(dec1) - dec2) * MAS


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    """Simulated exposures calibrated to cal files by jwst, with pointing errors in exposures 2-4."""
    from astropy.table import Table

    from jwst.pipeline import Detector1Pipeline, Image2Pipeline
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("image3")
    sim = simulate(root / "sim", **SIM)
    cal_dir = root / "cal"
    cal_dir.mkdir()

    def calibrate():
        for k, uncal in enumerate(sim.uncal):
            rate = Detector1Pipeline.call(str(uncal))
            dx, dy = OFFSETS[k]
            w = rate.meta.wcsinfo
            w.ra_ref += dx / 3600.0 / np.cos(np.deg2rad(w.dec_ref))
            w.dec_ref += dy / 3600.0
            Image2Pipeline.call(rate, steps={"resample": {"skip": True}}, output_dir=str(cal_dir), save_results=True)

    _quiet_jwst(calibrate, sim.crds_path, sim.context)
    cals = [cal_dir / (u.name.replace("_uncal", "_cal")) for u in sim.uncal]
    assert all(c.exists() for c in cals)
    refdir = Path(sim.crds_path) / "references" / "jwst" / "nircam"
    refs = {"apcorr": str(next(refdir.glob("*apcorr*"))), "abvegaoffset": str(next(refdir.glob("*abvegaoffset*")))}
    return SimpleNamespace(sim=sim, cals=cals, truth=Table.read(sim.catalog), cache=sim.crds_path,
                           context=sim.context, refs=refs, root=root)


def truth_residuals_mas(model, truth, k, margin=3):
    """Separations (mas) between the truth stars' sky positions and where this WCS puts their pixels."""
    x, y = np.asarray(truth[f"x_{k}"]), np.asarray(truth[f"y_{k}"])
    ny, nx = model.data.shape
    inside = (x > margin) & (x < nx - 1 - margin) & (y > margin) & (y < ny - 1 - margin)
    ra, dec = model.meta.wcs(x[inside], y[inside])
    return _sep_mas(ra, dec, np.asarray(truth["ra"])[inside], np.asarray(truth["dec"])[inside])


def _members(library):
    out = []
    for _i, m in library.each():
        out.append(m)
    return out


@pytest.fixture(scope="module")
def ours(obs, tmp_path_factory):
    """Our Stage 3 chain on the cal files: library on disk, crf, i2d, catalogue and segmentation products."""
    out = tmp_path_factory.mktemp("ours3")
    lib = ModelLibrary([str(c) for c in obs.cals], asn_id=ASN_ID, product_name=PRODUCT)
    # count how many exposures are ever open at once
    peak = {"borrowed": 0, "in_memory": 0}
    borrow = lib.borrow

    def counting_borrow(i):
        m = borrow(i)
        peak["borrowed"] = max(peak["borrowed"], len(lib._borrowed))
        peak["in_memory"] = max(peak["in_memory"], sum(lib.in_memory(j) for j in range(len(lib))))
        return m

    lib.borrow = counting_borrow
    status = {}
    with jwst_offline(obs.cache, obs.context):  # source_catalog selects apcorr/abvegaoffset through CRDS
        for name, params in (("tweakreg", {}), ("skymatch", {}),
                             ("outlier_detection", {"save_results": True, "output_dir": str(out)})):
            status[name] = run_step(name, lib, params).status
        i2d = run_step("resample", lib, {}).model
        i2d_path = Path(i2d.save(out / f"{PRODUCT}_i2d.fits"))
        res = run_step("source_catalog", i2d, {"save_results": True, "output_dir": str(out), "output_file": PRODUCT})
    catalog, segm = res.model
    return SimpleNamespace(library=lib, i2d=i2d, i2d_path=i2d_path, catalog=catalog, segm=segm, out=out,
                           status=status, references=res.references, peak=peak)


@pytest.fixture(scope="module")
def jwst_chain(obs, tmp_path_factory):
    """jwst 3.0's Stage 3 steps run one by one on the same cal files, each output saved."""
    from jwst.outlier_detection import OutlierDetectionStep
    from jwst.resample import ResampleStep
    from jwst.skymatch import SkyMatchStep
    from jwst.source_catalog import SourceCatalogStep
    from jwst.tweakreg import TweakRegStep

    d = tmp_path_factory.mktemp("jwst3")

    def save(library, name):
        folder = d / name
        folder.mkdir()
        paths = []
        with library:
            for i, m in enumerate(library):
                paths.append(folder / m.meta.filename)
                m.save(paths[-1])
                library.shelve(m, i, modify=False)
        return [str(p) for p in paths]

    def run():
        tweak = save(TweakRegStep.call([str(c) for c in obs.cals]), "tweakreg")
        sky = save(SkyMatchStep.call(tweak), "skymatch")
        crf = save(OutlierDetectionStep.call(sky), "crf")
        i2d = ResampleStep.call(crf)
        i2d_path = d / f"{PRODUCT}_i2d.fits"
        i2d.save(i2d_path)
        cat = SourceCatalogStep.call(str(i2d_path), override_apcorr=obs.refs["apcorr"],
                                     override_abvegaoffset=obs.refs["abvegaoffset"])
        return tweak, sky, crf, i2d_path, cat

    tweak, sky, crf, i2d_path, cat = _quiet_jwst(run, obs.cache, obs.context)
    return SimpleNamespace(tweakreg=tweak, skymatch=sky, crf=crf, i2d=i2d_path, catalog=cat, dir=d)


# ---------------------------------------------------------------------------
# the model library


def _image(k, value=1.0, shape=(20, 30)):
    m = models.ImageModel(data=np.full(shape, value, np.float32))
    m.meta.filename = f"jw01234001001_02101_0000{k}_nrcalong_cal.fits"
    o = m.meta.observation
    o.program_number, o.observation_number, o.visit_number = "01234", "001", "001"
    o.visit_group, o.sequence_id, o.activity_id, o.exposure_number = "02", "1", "01", f"{k:05d}"
    return m


def test_library_keeps_paths_on_disk_and_never_writes_the_inputs(tmp_path):
    paths = []
    for k in (1, 2, 3):
        paths.append(_image(k, value=k).save(tmp_path / f"jw01234001001_02101_0000{k}_nrcalong_cal.fits"))
    before = [Path(p).read_bytes() for p in paths]
    lib = ModelLibrary(paths, asn_id="o001")
    assert len(lib) == 3 and not any(lib.in_memory(i) for i in range(3))
    assert list(lib.group_indices) == [f"jw01234001001_02101_0000{k}" for k in (1, 2, 3)]
    # a stub has the member's metadata and shape but no pixels
    stub = lib.stub(1)
    assert stub.data.shape == (20, 30) and stub.data.strides == (0, 0) and stub.meta.filename.endswith("00002_nrcalong_cal.fits")
    # changes are saved to the library's own folder, not over the input
    for i, m in lib.each(modify=True):
        m.dq[0, 0] = 4 + i
        m.meta.background.level = float(i)
    assert [Path(p).read_bytes() for p in paths] == before
    assert not any(lib.in_memory(i) for i in range(3))
    m = lib.borrow(2)
    assert m.dq[0, 0] == 6 and m.meta.background.level == 2.0 and m.meta.filename == Path(paths[2]).name
    with pytest.raises(RuntimeError, match="already borrowed"):
        lib.borrow(2)
    lib.shelve(2, m, modify=False)
    assert lib.read_metadata(1).background.level == 1.0
    # members named after the association: <root>_<asn_id>_crf.fits
    written = lib.save_members(tmp_path / "out", "crf")
    assert [Path(w).name for w in written] == [f"jw01234001001_02101_0000{k}_nrcalong_o001_crf.fits" for k in (1, 2, 3)]
    temp = lib._temp
    assert temp is not None and temp.exists()
    lib.close()
    assert not temp.exists()


def test_a_step_marked_on_a_library_reaches_every_member_without_rewriting_them(tmp_path):
    """mark_step (a step skipped or failed for the whole library) sets the member's S_* status as
    each member is opened, listed, read for its metadata or saved, and writes no member for it."""
    paths = [_image(k).save(tmp_path / f"jw01234001001_02101_0000{k}_nrcalong_cal.fits") for k in (1, 2, 3)]
    memory = _image(4)
    lib = ModelLibrary(paths[:2], asn_id="o001")
    assert lib.read_metadata(0).cal_step.outlier_detection is None  # a snapshot taken before the mark
    lib.mark_step("outlier_detection", "SKIPPED")
    assert lib._temp is None  # nothing written
    assert lib.read_metadata(0).cal_step.outlier_detection == "SKIPPED"
    assert lib.primary_header(0)["S_OUTLIR"] == "SKIPPED"
    assert lib.read_metadata(1).cal_step.outlier_detection == "SKIPPED"
    m = lib.borrow(1)
    assert m.meta.cal_step.outlier_detection == "SKIPPED"
    lib.shelve(1, m, modify=False)
    assert all(x.meta.cal_step.outlier_detection == "SKIPPED" for x in lib.to_list())
    written = lib.save_members(tmp_path / "out", "crf")
    assert [fits.getheader(w)["S_OUTLIR"] for w in written] == ["SKIPPED", "SKIPPED"]
    assert all(fits.getheader(p).get("S_OUTLIR") is None for p in paths)  # the inputs untouched
    mixed = ModelLibrary([memory])
    mixed.mark_step("outlier_detection", "FAILED")
    assert memory.meta.cal_step.outlier_detection == "FAILED"


def test_stage3_chain_opens_one_exposure_at_a_time(ours):
    """tweakreg, skymatch, outlier_detection and resample on a library of paths: never two exposures open."""
    assert ours.peak == {"borrowed": 1, "in_memory": 0}
    assert not any(ours.library.in_memory(i) for i in range(len(ours.library)))


def test_library_of_models_in_memory_or_on_disk():
    ms = [_image(k) for k in (1, 2)]
    lib = ModelLibrary(ms)
    assert lib.in_memory(0) and lib.borrow(0) is ms[0]
    lib.shelve(0, ms[0])
    disk = ModelLibrary([_image(k) for k in (1, 2)], on_disk=True)
    assert not disk.in_memory(0) and not disk.in_memory(1)
    assert disk.borrow(1).meta.filename == ms[1].meta.filename
    disk.close()


# ---------------------------------------------------------------------------
# tweakreg


def test_tweakreg_recovers_the_injected_pointing_errors(obs, tmp_path):
    inputs = [models.open(c) for c in obs.cals]
    before = [float(np.median(truth_residuals_mas(m, obs.truth, k))) for k, m in enumerate(inputs, 1)]
    res = run_step("tweakreg", inputs, {})
    assert res.status == "COMPLETE" and isinstance(res.model, list)
    after = [truth_residuals_mas(m, obs.truth, k) for k, m in enumerate(res.model, 1)]
    print("\nmedian truth residual per exposure before (mas):", np.round(before, 1))
    print("median / max after (mas):", [(round(float(np.median(a)), 2), round(float(a.max()), 2)) for a in after])
    for k, (dx, dy) in enumerate(OFFSETS):
        assert before[k] == pytest.approx(1000 * np.hypot(dx, dy), abs=5.0)
    for a in after:
        assert np.median(a) < 5.0 and a.max() < 20.0
    for m in res.model:
        assert m.meta.cal_step.tweakreg == "COMPLETE"
        # the FITS view of the new WCS follows it: S_REGION and the SIP approximation
        assert m.meta.wcsinfo.s_region.startswith("POLYGON ICRS")
    # the saved product's FITS SIP header describes the new WCS too (what a FITS viewer uses)
    from astropy.io import fits
    from astropy.wcs import WCS

    path = res.model[1].save(tmp_path / "aligned_cal.fits")
    fits_wcs = WCS(fits.getheader(path, "SCI"))
    xs, ys = np.array([10.0, 128.0, 240.0]), np.array([20.0, 128.0, 230.0])
    ra_sip, dec_sip = fits_wcs.all_pix2world(xs, ys, 0)
    ra, dec = res.model[1].meta.wcs(xs, ys)
    assert _sep_mas(ra_sip, dec_sip, ra, dec).max() < 1.0


def test_tweakreg_aligns_to_a_reference_catalogue_file(obs, tmp_path):
    """abs_refcat: the truth catalogue moved by (0.25", -0.15"): every WCS follows it."""
    from astropy.table import Table

    dra, ddec = 0.25, -0.15
    t = obs.truth[obs.truth["abmag"] < 22.0]  # a shallow catalogue, as astrometric ones are
    ref = Table()
    ref["RA"] = np.asarray(t["ra"]) + dra / 3600.0 / np.cos(np.deg2rad(np.asarray(t["dec"])))
    ref["DEC"] = np.asarray(t["dec"]) + ddec / 3600.0
    path = tmp_path / "refcat.ecsv"
    ref.write(path, format="ascii.ecsv")
    # a tighter matching than the defaults: with 6" search and 0.7" tolerance the merged catalogue of
    # four overlapping exposures mismatches (jwst does the same; see the parity test)
    res = run_step("tweakreg", [models.open(c) for c in obs.cals], dict(ABS, abs_refcat=str(path)))
    assert res.status == "COMPLETE"
    for k, m in enumerate(res.model, 1):
        assert m.meta.wcs.name == f"FIT-LVL3-{path}"
        shifted = t.copy()
        shifted["ra"], shifted["dec"] = ref["RA"], ref["DEC"]
        r = truth_residuals_mas(m, shifted, k)
        print(f"exposure {k}: median residual to the moved catalogue {np.median(r):.2f} mas")
        assert np.median(r) < 8.0


def test_tweakreg_offline_gaia_keeps_the_relative_alignment(obs, monkeypatch, caplog):
    """GAIA cannot be reached: jwst stops with a ConnectionError; we warn, skip the absolute fit, keep the relative one."""
    import requests

    def offline(*a, **k):
        raise requests.exceptions.ConnectionError("no network here")

    monkeypatch.setattr(requests, "get", offline)
    caplog.set_level(logging.WARNING, logger="webbflow")
    res = run_step("tweakreg", [models.open(c) for c in obs.cals], {"abs_refcat": "GAIADR3"})
    assert any("GAIADR3 skipped" in r.getMessage() and "cannot be reached" in r.getMessage() for r in caplog.records)
    assert res.status == "COMPLETE"
    offsets = []
    for k, m in enumerate(res.model, 1):
        assert m.meta.cal_step.tweakreg == "COMPLETE"
        x, y = np.asarray(obs.truth[f"x_{k}"]), np.asarray(obs.truth[f"y_{k}"])
        ok = (x > 3) & (x < 252) & (y > 3) & (y < 252)
        ra, dec = m.meta.wcs(x[ok], y[ok])
        offsets.append([np.median((ra - np.asarray(obs.truth["ra"])[ok]) * np.cos(np.deg2rad(dec))) * MAS,
                        np.median((dec - np.asarray(obs.truth["dec"])[ok])) * MAS])
    offsets = np.array(offsets)
    print("\nmedian (RA, Dec) offsets to the truth after relative alignment (mas):", np.round(offsets, 1).tolist())
    # aligned to each other: one common offset (that of the reference exposure tweakwcs picked)
    assert np.abs(offsets - offsets.mean(axis=0)).max() < 5.0


def test_tweakreg_saved_catalogs_used_as_custom_catalogs(obs, tmp_path):
    """save_catalogs writes <exposure>_cat.ecsv; a catfile naming them gives the same alignment."""
    first = run_step("tweakreg", [models.open(c) for c in obs.cals], {"save_catalogs": True, "output_dir": str(tmp_path)})
    cats = [tmp_path / c.name.replace(".fits", "_cat.ecsv") for c in obs.cals]
    assert all(c.exists() for c in cats)
    catfile = tmp_path / "catfile.txt"
    catfile.write_text("# exposure catalogue\n" + "".join(f"{c.name} {k.name}\n" for c, k in zip(obs.cals, cats)))
    again = run_step("tweakreg", [models.open(c) for c in obs.cals], {"use_custom_catalogs": True, "catfile": str(catfile)})
    for a, b in zip(first.model, again.model):
        assert _wcs_difference_mas(a.meta.wcs, b.meta.wcs) < 0.01


def test_tweakreg_skips_a_single_exposure(obs):
    m = models.open(obs.cals[1])
    wcs_before = m.meta.wcs(100.0, 100.0)
    res = run_step("tweakreg", [m], {})
    assert m.meta.cal_step.tweakreg == "FAILED"  # as jwst 3.0 records it (S_TWKREG)
    assert np.allclose(res.model[0].meta.wcs(100.0, 100.0), wcs_before, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# skymatch


def test_skymatch_recovers_a_sky_offset_put_into_one_exposure(obs):
    base = run_step("skymatch", [models.open(c) for c in obs.cals], {}).model
    levels0 = [m.meta.background.level for m in base]
    bumped = [models.open(c) for c in obs.cals]
    bumped[2].data += np.float32(0.5)  # MJy/sr
    res = run_step("skymatch", bumped, {})
    levels = [m.meta.background.level for m in res.model]
    print("\nsky levels (MJy/sr):", np.round(levels0, 5), "after +0.5 in exposure 3:", np.round(levels, 5))
    assert levels[2] - levels0[2] == pytest.approx(0.5, abs=5e-3)
    for a, b in zip(levels[:2] + levels[3:], levels0[:2] + levels0[3:]):
        assert a == pytest.approx(b, abs=5e-3)
    assert min(levels) == 0.0  # match_down: the lowest sky is the zero point
    for m in res.model:
        assert m.meta.background.method == "match" and m.meta.background.subtracted is False
        assert m.meta.cal_step.skymatch == "COMPLETE"
    # subtract=True removes the sky from the pixels
    sub = run_step("skymatch", [models.open(c) for c in obs.cals], {"skymethod": "local", "subtract": True}).model
    for m, c in zip(sub, obs.cals):
        orig = models.open(c).data
        assert np.nanmedian(orig - m.data) == pytest.approx(m.meta.background.level, rel=1e-5)
        assert m.meta.background.subtracted is True


def test_skymatch_user_values(obs, tmp_path):
    skylist = tmp_path / "sky.txt"
    skylist.write_text("".join(f"{c.name} {0.1 * k}\n" for k, c in enumerate(obs.cals)))
    res = run_step("skymatch", [models.open(c) for c in obs.cals], {"skymethod": "user", "skylist": str(skylist)})
    assert [m.meta.background.level for m in res.model] == pytest.approx([0.0, 0.1, 0.2, 0.3])


# ---------------------------------------------------------------------------
# outlier_detection


def test_outlier_detection_flags_a_cosmic_ray_in_one_exposure_only(obs, tmp_path):
    """A cosmic ray put into exposure 2 is flagged there; no other exposure's flags change."""
    clean = run_step("outlier_detection", [models.open(c) for c in obs.cals], {}).model
    ms = [models.open(c) for c in obs.cals]
    # a sky position seen by all four exposures, 1" from any truth star
    t = obs.truth
    target = None
    for x in range(110, 160, 3):
        for y in range(110, 160, 3):
            ra, dec = ms[1].meta.wcs(x, y)
            if _sep_mas(np.asarray(t["ra"]), np.asarray(t["dec"]), ra, dec).min() > 1000:
                target = (x, y)
                break
        if target:
            break
    assert target is not None
    x, y = target
    hit = (slice(y, y + 2), slice(x, x + 2))
    ms[1].data[hit] += np.float32(50 * np.nanmedian(ms[1].err))
    res = run_step("outlier_detection", ms, {"save_results": True, "output_dir": str(tmp_path)})
    assert res.status == "COMPLETE"
    out = res.model
    assert ((out[1].dq[hit] & dqflags.OUTLIER) != 0).all()
    assert (out[1].dq[hit] & dqflags.DO_NOT_USE).all() and np.isnan(out[1].data[hit]).all()
    new = np.argwhere((out[1].dq != clean[1].dq))
    print(f"\nnew flags in exposure 2: {len(new)} pixels, all within {np.abs(new - [y, x]).max()} px of the hit")
    assert np.abs(new - np.array([y + 0.5, x + 0.5])).max() <= 3
    for k in (0, 2, 3):
        assert np.array_equal(out[k].dq, clean[k].dq), f"exposure {k + 1}: flags changed"
        assert out[k].meta.cal_step.outlier_detection == "COMPLETE"
    n_flagged = [int(np.count_nonzero(m.dq & dqflags.OUTLIER)) for m in out]
    print("outliers per exposure:", n_flagged)
    # crf products, named as jwst names them without an association: <root>_crf.fits
    names = sorted(p.name for p in tmp_path.glob("*_crf.fits"))
    assert names == sorted(c.name.replace("_cal.fits", "_crf.fits") for c in obs.cals)
    crf = models.open(tmp_path / obs.cals[1].name.replace("_cal.fits", "_crf.fits"))
    assert ((crf.dq[hit] & dqflags.OUTLIER) != 0).all()


def test_outlier_detection_needs_two_exposures_and_imaging(obs):
    one = [models.open(obs.cals[0])]
    run_step("outlier_detection", one, {})
    assert one[0].meta.cal_step.outlier_detection == "FAILED"  # as jwst 3.0 records it (S_OUTLIR)
    from webbflow.errors import UnsupportedModeError

    two = [models.open(c) for c in obs.cals[:2]]
    for m in two:
        m.meta.exposure.type = "NRC_DARK"  # no outlier_detection mode takes it
    with pytest.raises(UnsupportedModeError, match="NRC_DARK is not an imaging mode"):
        run_step("outlier_detection", two, {})


# ---------------------------------------------------------------------------
# source_catalog


def _match(ra1, dec1, ra2, dec2, radius_arcsec):
    """For each (ra1, dec1): index of the nearest (ra2, dec2) within the radius, else -1; and its separation."""
    d = _sep_mas(np.asarray(ra1)[:, None], np.asarray(dec1)[:, None], np.asarray(ra2)[None, :], np.asarray(dec2)[None, :]) / 1000
    j = d.argmin(axis=1)
    s = d[np.arange(len(j)), j]
    return np.where(s <= radius_arcsec, j, -1), s


def test_source_catalog_finds_the_truth_stars(obs, ours):
    cat, i2d = ours.catalog, ours.i2d
    assert ours.status == {"tweakreg": "COMPLETE", "skymatch": "COMPLETE", "outlier_detection": "COMPLETE"}
    t = obs.truth
    x, y = i2d.meta.wcs.invert(np.asarray(t["ra"]), np.asarray(t["dec"]))
    ny, nx = i2d.data.shape
    xi, yi = np.round(np.nan_to_num(x, nan=-1)).astype(int), np.round(np.nan_to_num(y, nan=-1)).astype(int)
    inside = (xi > 10) & (xi < nx - 10) & (yi > 10) & (yi < ny - 10)
    inside[inside] &= i2d.wht[yi[inside], xi[inside]] > 0
    # stars to AB 22 (fainter ones drown in the noise of these short exposures); star 1, the target, saturates
    bright = inside & (np.asarray(t["abmag"]) < 22.0) & (np.arange(len(t)) > 0)
    sky = cat["sky_centroid"]
    idx, sep = _match(np.asarray(t["ra"])[bright], np.asarray(t["dec"])[bright], sky.ra.deg, sky.dec.deg, 0.05)
    found = idx >= 0
    print(f"\n{found.sum()} of {bright.sum()} truth stars brighter than AB 22 found within 0.05\" "
          f"(median separation {np.median(sep[found]) * 1000:.1f} mas); catalogue has {len(cat)} sources")
    assert found.mean() >= 0.9
    ratio = (np.asarray(cat["aper_total_flux"].to_value("uJy"))[idx[found]] / np.asarray(t["flux"])[bright][found])
    print(f"aperture-corrected total flux / truth: median {np.median(ratio):.4f}, "
          f"16-84% {np.percentile(ratio, 16):.4f}-{np.percentile(ratio, 84):.4f}")
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    # jwst's column layout and the products
    for col in ("label", "xcentroid", "ycentroid", "sky_centroid", "aper_bkg_flux", "aper30_flux", "aper_total_flux",
                "aper_total_abmag", "aper_total_vegamag", "CI_50_30", "is_extended", "sharpness", "roundness",
                "nn_label", "isophotal_flux", "semimajor_sigma", "sky_bbox_ur"):
        assert col in cat.colnames
    assert (ours.out / f"{PRODUCT}_cat.ecsv").exists()
    segm = models.open(ours.out / f"{PRODUCT}_segm.fits")
    assert type(segm).__name__ == "SegmentationMapModel" and segm.data.shape == i2d.data.shape
    assert set(np.unique(segm.data)) - {0} == set(np.asarray(cat["label"]))
    # as jwst's: the catalogue's name (SCATFILE), the image's metadata as before the step
    assert segm.meta.source_catalog == f"{PRODUCT}_cat.ecsv"
    assert segm.meta.cal_step.source_catalog is None and segm.meta.ref_file.apcorr is None
    assert "apcorr" in ours.references


def test_source_catalog_without_a_matching_apcorr_row_makes_nothing(obs, ours, caplog):
    i2d = models.open(ours.i2d_path)
    i2d.meta.instrument.filter = "F410M"
    i2d.meta.instrument.pupil = "NOPUPIL"
    caplog.set_level(logging.WARNING, logger="webbflow")
    res = run_step("source_catalog", i2d, {}, references=obs.refs)
    assert res.model == (None, None)
    assert any("source catalogue not made" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# assign_mtwcs


def _moving(obs, tmp_path, n=3):
    paths = []
    for k, c in enumerate(obs.cals[:n]):
        m = models.open(c)
        m.meta.target.type = "MOVING"
        m.meta.wcsinfo.mt_ra = 53.1625 + 1e-4 * k
        m.meta.wcsinfo.mt_dec = -27.7914 + 2e-4 * k
        paths.append(m.save(tmp_path / c.name))
    return paths


def test_assign_mtwcs_moves_each_exposure_to_the_mean_target_position(obs, tmp_path):
    from webbflow.tasks.assign_mtwcs import is_moving_target

    paths = _moving(obs, tmp_path)
    lib = ModelLibrary(paths)
    assert is_moving_target(lib.read_metadata(0))
    res = run_step("assign_mtwcs", lib, {})
    assert res.model is lib
    for k, m in enumerate(_members(lib)):
        assert m.meta.wcs.available_frames[-1] == "moving_target"
        assert m.meta.wcsinfo.mt_avra == pytest.approx(53.1626) and m.meta.wcsinfo.mt_avdec == pytest.approx(-27.7912)
        ra_w, dec_w = m.meta.wcs.get_transform("detector", "world")(50.0, 60.0)
        ra_t, dec_t = m.meta.wcs(50.0, 60.0)
        assert ra_t - ra_w == pytest.approx(53.1626 - (53.1625 + 1e-4 * k), abs=1e-10)
        assert dec_t - dec_w == pytest.approx(-27.7912 - (-27.7914 + 2e-4 * k), abs=1e-10)
        assert m.meta.cal_step.assign_mtwcs == "COMPLETE"
    # an exposure without MT_RA: skipped, WCS unchanged
    m = models.open(obs.cals[0])
    run_step("assign_mtwcs", [m, models.open(obs.cals[1])], {})
    assert m.meta.cal_step.assign_mtwcs == "SKIPPED" and m.meta.wcs.available_frames[-1] == "world"


def test_assign_mtwcs_with_the_shared_moving_target_association(shared_data, obs, tmp_path):
    """The association of jwst's moving-target tests (one member listed twice): members resolve in its folder."""
    import json
    import shutil

    asn = shared_data / "associations" / "asn" / "test_mt_asn.json"
    shutil.copy(asn, tmp_path / asn.name)
    member = models.open(obs.cals[0])
    member.meta.target.type = "MOVING"
    member.meta.wcsinfo.mt_ra, member.meta.wcsinfo.mt_dec = 53.16, -27.79
    member.save(tmp_path / "test1_cal.fits")
    doc = json.loads((tmp_path / asn.name).read_text())
    names = [mm["expname"] for mm in doc["products"][0]["members"] if mm["exptype"] == "science"]
    lib = ModelLibrary([tmp_path / n for n in names])
    run_step("assign_mtwcs", lib, {})
    for m in _members(lib):
        assert m.meta.wcsinfo.mt_avra == pytest.approx(53.16)
        ra_w, dec_w = m.meta.wcs.get_transform("detector", "world")(10.0, 10.0)
        assert np.allclose(m.meta.wcs(10.0, 10.0), (ra_w, dec_w), atol=1e-12)  # the same exposure twice: no shift


# ---------------------------------------------------------------------------
# parity with jwst


def _wcs_difference_mas(w1, w2, shape=(256, 256), step=16):
    y, x = np.mgrid[0:shape[0]:step, 0:shape[1]:step].astype(float)
    r1, d1 = w1(x, y)
    r2, d2 = w2(x, y)
    return float(np.nanmax(_sep_mas(r1, d1, r2, d2)))


@pytest.mark.parity
def test_tweakreg_parity(obs, ours, jwst_chain):
    """Same cal files in: our aligned WCSs against jwst's (5 mas), and the corrections themselves."""
    from stdatamodels.jwst import datamodels as dm

    print("\ntweakreg: correction (ours, jwst) and |ours - jwst| at a 16x16 grid of pixels (mas)")
    for k, (cal, jpath) in enumerate(zip(obs.cals, jwst_chain.tweakreg), 1):
        ours_m = ours.library.borrow(k - 1)
        try:
            theirs = dm.open(jpath)
            before = dm.open(cal)
            diff = _wcs_difference_mas(ours_m.meta.wcs, theirs.meta.wcs)
            c_ours = _wcs_difference_mas(ours_m.meta.wcs, before.meta.wcs)
            c_jwst = _wcs_difference_mas(theirs.meta.wcs, before.meta.wcs)
            print(f"exposure {k}: correction {c_ours:.2f} / {c_jwst:.2f}, difference {diff:.4f}")
            assert diff < 5.0
            assert ours_m.meta.cal_step.tweakreg == theirs.meta.cal_step.tweakreg == "COMPLETE"
            assert ours_m.meta.wcsinfo.s_region == theirs.meta.wcsinfo.s_region
            for key in ("crpix1", "crpix2", "crval1", "crval2", "a_order", "b_order", "ap_order", "bp_order"):
                ov, jv = getattr(ours_m.meta.wcsinfo, key), getattr(theirs.meta.wcsinfo, key)
                assert ov == pytest.approx(jv, rel=1e-9, abs=1e-12), key
        finally:
            ours.library.shelve(k - 1, ours_m, modify=False)
    # with a reference catalogue file as well
    from astropy.table import Table

    from jwst.tweakreg import TweakRegStep

    bright = obs.truth[obs.truth["abmag"] < 22.0]
    ref = Table({"RA": np.asarray(bright["ra"]), "DEC": np.asarray(bright["dec"])})
    path = jwst_chain.dir / "truth_refcat.ecsv"
    ref.write(path, format="ascii.ecsv", overwrite=True)
    lib = _quiet_jwst(lambda: TweakRegStep.call([str(c) for c in obs.cals], abs_refcat=str(path), **ABS), obs.cache, obs.context)
    ours_abs = run_step("tweakreg", [models.open(c) for c in obs.cals], dict(ABS, abs_refcat=str(path))).model
    with lib:
        for i, theirs in enumerate(lib):
            diff = _wcs_difference_mas(ours_abs[i].meta.wcs, theirs.meta.wcs)
            print(f"abs_refcat exposure {i + 1}: |ours - jwst| {diff:.4f} mas")
            assert diff < 5.0
            lib.shelve(theirs, i, modify=False)


@pytest.mark.parity
def test_skymatch_parity(obs, jwst_chain):
    """jwst's tweakreg outputs into both skymatch steps: levels within 1e-6 MJy/sr."""
    from stdatamodels.jwst import datamodels as dm

    from jwst.skymatch import SkyMatchStep

    for params in ({}, {"skymethod": "global+match", "subtract": True, "skystat": "median"}):
        if params:
            lib = _quiet_jwst(lambda: SkyMatchStep.call(jwst_chain.tweakreg, **params), obs.cache, obs.context)
            theirs = []
            with lib:
                for i, m in enumerate(lib):
                    theirs.append((m.meta.background.level, m.meta.cal_step.skymatch, float(np.nanmedian(m.data))))
                    lib.shelve(m, i, modify=False)
        else:
            theirs = [(m.meta.background.level, m.meta.cal_step.skymatch, float(np.nanmedian(m.data)))
                      for m in (dm.open(p) for p in jwst_chain.skymatch)]
        res = run_step("skymatch", ModelLibrary(jwst_chain.tweakreg), params)
        mine = [(m.meta.background.level, m.meta.cal_step.skymatch, float(np.nanmedian(m.data))) for m in _members(res.model)]
        worst = max(abs(a[0] - b[0]) for a, b in zip(mine, theirs))
        print(f"\nskymatch {params or 'defaults'}: levels {[round(a[0], 6) for a in mine]}; max |ours - jwst| {worst:.2e} MJy/sr")
        assert worst <= 1e-6
        assert [a[1] for a in mine] == [b[1] for b in theirs]
        assert [a[2] for a in mine] == pytest.approx([b[2] for b in theirs], rel=1e-6)


@pytest.mark.parity
def test_outlier_detection_parity(obs, jwst_chain, tmp_path):
    """jwst's skymatch outputs into both outlier steps: DQ identical for >= 99.99 % of the pixels."""
    from stdatamodels.jwst import datamodels as dm

    lib = ModelLibrary(jwst_chain.skymatch, asn_id=ASN_ID)
    run_step("outlier_detection", lib, {"save_results": True, "output_dir": str(tmp_path), "in_memory": False})
    print()
    for k, (m, jpath) in enumerate(zip(_members(lib), jwst_chain.crf), 1):
        theirs = dm.open(jpath)
        n_ours = int(np.count_nonzero(m.dq & dqflags.OUTLIER))
        n_jwst = int(np.count_nonzero(theirs.dq & dqflags.OUTLIER))
        print(f"exposure {k}: outliers ours {n_ours}, jwst {n_jwst}")
        assert compare_dq(f"crf {k} DQ", m.dq, theirs.dq).fraction >= 0.9999
        assert compare_arrays(f"crf {k} SCI", m.data, theirs.data, rtol=1e-6).fraction >= 0.9999
        assert abs(n_ours - n_jwst) <= max(2, 0.001 * n_jwst)
    names = sorted(p.name for p in tmp_path.glob("*_crf.fits"))
    assert names == sorted(Path(p).name.replace("_cal.fits", f"_{ASN_ID}_crf.fits") for p in jwst_chain.skymatch)


@pytest.mark.parity
def test_resample_library_parity(obs, jwst_chain):
    """jwst's crf files into our resample as a library on disk: i2d against jwst's, rtol 1e-3 for >= 99 %."""
    from stdatamodels.jwst import datamodels as dm

    lib = ModelLibrary(jwst_chain.crf)
    i2d = run_step("resample", lib, {}).model
    assert not any(lib.in_memory(i) for i in range(len(lib)))
    theirs = dm.open(jwst_chain.i2d)
    assert i2d.data.shape == theirs.data.shape
    print()
    assert _wcs_difference_mas(i2d.meta.wcs, theirs.meta.wcs, shape=i2d.data.shape) < 1.0
    for name in ("data", "err", "wht"):
        assert compare_arrays(f"i2d {name}", getattr(i2d, name), getattr(theirs, name), rtol=1e-3).fraction >= 0.99
    assert i2d.meta.resample.pointings == theirs.meta.resample.pointings == 4
    assert i2d.meta.exposure.exposure_time == pytest.approx(theirs.meta.exposure.exposure_time)


def _catalog_agreement(ours_cat, jwst_cat, label):
    idx, sep = _match(ours_cat["sky_centroid"].ra.deg, ours_cat["sky_centroid"].dec.deg,
                      jwst_cat["sky_centroid"].ra.deg, jwst_cat["sky_centroid"].dec.deg, 0.05)
    found = idx >= 0
    f_ours = np.asarray(ours_cat["aper_total_flux"].value)[found]
    f_jwst = np.asarray(jwst_cat["aper_total_flux"].value)[idx[found]]
    good = np.isfinite(f_jwst) & (f_jwst > 0)
    rel = np.abs(f_ours[good] / f_jwst[good] - 1)
    iso = np.abs(np.asarray(ours_cat["isophotal_flux"].value)[found] / np.asarray(jwst_cat["isophotal_flux"].value)[idx[found]] - 1)
    print(f"{label}: {len(ours_cat)} sources (jwst {len(jwst_cat)}), {found.sum()} matched within 0.05\" "
          f"(max {sep[found].max() * 1000:.3f} mas); aperture flux within 1 % for {np.mean(rel <= 0.01) * 100:.2f} % "
          f"(max rel diff {rel.max():.2e}); isophotal max rel diff {np.nanmax(iso):.2e}")
    return found, rel, iso


@pytest.mark.parity
def test_source_catalog_parity(obs, jwst_chain):
    """jwst's i2d into both source_catalog steps: the same sources within 0.05", fluxes within 1 %."""
    i2d = models.open(jwst_chain.i2d)
    cat, segm = run_step("source_catalog", i2d, {}, references=obs.refs).model
    theirs = jwst_chain.catalog
    print()
    found, rel, iso = _catalog_agreement(cat, theirs, "source_catalog on jwst's i2d")
    assert len(cat) == len(theirs) and found.all()
    assert (rel <= 0.01).all() and np.nanmax(iso) <= 0.01
    assert cat.colnames == theirs.colnames
    for col in ("aper_bkg_flux", "aper30_flux", "aper50_flux_err", "aper_total_vegamag", "CI_70_30", "sharpness",
                "roundness", "semimajor_sigma", "sky_orientation"):
        a, b = np.asarray(getattr(cat[col], "value", cat[col]), float), np.asarray(getattr(theirs[col], "value", theirs[col]), float)
        assert np.allclose(a, b, rtol=1e-5, atol=0, equal_nan=True), col
    assert list(cat["is_extended"]) == list(theirs["is_extended"])


@pytest.mark.parity
def test_image3_chain_parity(obs, ours, jwst_chain):
    """Our whole Stage 3 chain against jwst's on the same cal files: i2d and catalogue."""
    from stdatamodels.jwst import datamodels as dm

    theirs = dm.open(jwst_chain.i2d)
    mine = dm.open(ours.i2d_path)  # our product opens in stdatamodels
    print()
    assert mine.data.shape == theirs.data.shape
    assert compare_arrays("chain i2d SCI", mine.data, theirs.data, rtol=1e-3).fraction >= 0.99
    found, rel, _iso = _catalog_agreement(ours.catalog, jwst_chain.catalog, "chain catalogue")
    assert found.mean() >= 0.99 and np.mean(rel <= 0.01) >= 0.99
    for k, jpath in enumerate(jwst_chain.crf, 1):
        crf = dm.open(ours.out / Path(jpath).name.replace("_cal.fits", f"_{ASN_ID}_crf.fits"))
        assert compare_dq(f"chain crf {k} DQ", crf.dq, dm.open(jpath).dq).fraction >= 0.9999


def test_photutils_table_versions_without_importing_matplotlib():
    """The versions photutils writes into its tables are the ones its own function gives, read
    without importing the packages not imported yet (matplotlib)."""
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from photutils.utils import _misc\n"
        "original = _misc._get_version_info\n"
        "from webbflow.tasks import tweakreg as T\n"
        "T._light_photutils_versions()\n"
        "light = _misc._get_version_info()\n"
        "imported = 'matplotlib' in sys.modules\n"
        "print(json.dumps([_misc._get_version_info is not original, imported, light, original()]))\n"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    patched, imported, light, original = json.loads(out.stdout.strip().splitlines()[-1])
    assert patched and not imported
    assert light == original and list(light) == list(original)


def test_ring_candidates_verified_at_once_as_photutils_does():
    """The circular peak search's ring candidates: the same peaks as photutils' own loop, at the
    edges (the footprint's box beyond the image joins 0.0), with negative data and ties."""
    from photutils.detection import peakfinder

    from webbflow.tasks import tweakreg as T

    original = peakfinder._verify_ring_candidates
    if getattr(original, "_webbflow", False):  # replaced by an earlier test of this process
        original = original.photutils_original
    assert not getattr(original, "_webbflow", False)
    rng = np.random.default_rng(5)
    for trial in range(200):
        ny, nx = (int(n) for n in rng.integers(3, 30, 2))
        data = rng.normal(size=(ny, nx))
        if trial % 3 == 0:
            data = np.round(data, 1)
        if trial % 4 == 0:
            data -= 3.0
        if trial % 5 == 0:
            data[rng.random(data.shape) < 0.3] = 0.0
        radius = float(rng.choice([1.5, 2.0, 2.5, 3.0, 3.7]))
        idx = np.arange(-radius, radius + 1)
        xx, yy = np.meshgrid(idx, idx)
        footprint = (xx**2 + yy**2) <= radius**2
        size = len(idx)
        needs = rng.random(data.shape) < 0.5
        theirs, ours = np.zeros(data.shape, bool), np.zeros(data.shape, bool)
        original(data, theirs, needs, footprint, size // 2, size)
        T._verify_ring_candidates_at_once(data, ours, needs, footprint, size // 2, size)
        assert np.array_equal(theirs, ours), (trial, radius)


def test_skymatch_scan_sets_the_pixels_gwcs_sets():
    """skymatch's overlap masks: the polygon scan sets the same pixels as gwcs' own scan line walk,
    for polygons inside the image, partly or wholly outside it (negative corners, beyond the far
    edges), thin ones, and with horizontal and vertical edges."""
    from gwcs import region

    from webbflow.tasks import skymatch as S

    rng = np.random.default_rng(11)
    shapes = [(40, 50), (64, 64), (17, 90)]
    for trial in range(400):
        ny, nx = shapes[trial % len(shapes)]
        n = int(rng.integers(3, 9))
        if trial % 4 == 0:  # a convex polygon, as the intersections of two footprints are
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            cx, cy = rng.uniform(-10, nx + 10), rng.uniform(-10, ny + 10)
            r = rng.uniform(1, 60)
            pts = list(zip(cx + r * np.cos(angles), cy + r * np.sin(angles)))
        elif trial % 4 == 1:  # axis-aligned boxes: horizontal and vertical edges
            x0, y0 = rng.uniform(-20, nx), rng.uniform(-20, ny)
            w, h = rng.uniform(0, 40, 2)
            pts = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
        else:
            pts = list(zip(rng.uniform(-30, nx + 30, n), rng.uniform(-30, ny + 30, n)))
        pts.append(pts[0])
        poly = region.Polygon(True, pts)
        theirs = poly.scan(np.zeros((ny, nx), dtype=bool))
        ours = S._scan_rows(poly, np.zeros((ny, nx), dtype=bool))
        assert np.array_equal(theirs, ours), trial
    # the scan installed into stcal's SkyImage
    import stcal.skymatch.skyimage as si

    S._install_fast_scan()
    poly = si.region.Polygon(True, [(2.2, 3.1), (30.6, 5.5), (20.4, 33.9), (2.2, 3.1)])
    assert isinstance(poly, region.Polygon)
    assert np.array_equal(poly.scan(np.zeros((40, 40), bool)),
                          region.Polygon.scan(poly, np.zeros((40, 40), bool)))
