"""The imaging simulator: metadata, determinism, scene truth, detector signatures, associations, CLI.

Interop checks use STScI's packages as the oracle: stdatamodels validates our uncal files
strictly, pysiaf's rotations check the pointing keywords, jwst's association loader reads our
asn files, jwst's IPC step undoes our IPC, jwst's AssignWcsStep (with CRDS_PATH at the cache
we build) maps the truth pixel positions back to the truth sky positions, and jwst's
calwebb_detector1 recovers the stars' count rates.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from webbflow import models
from webbflow.refs import simulator as S

from conftest import REAL

SIZE, NGROUPS = 64, 5


def _sim(root: Path, **kw):
    kw.setdefault("build_refs", False)
    return S.simulate(root, **kw)


@pytest.fixture(scope="module")
def nircam(tmp_path_factory):
    """Two dithered 64x64 NIRCam exposures, no references written."""
    return _sim(tmp_path_factory.mktemp("sim-nrc"), instrument="nircam", size=SIZE, ngroups=NGROUPS, nexp=2, seed=1)


@pytest.fixture(scope="module")
def cli_sim(tmp_path_factory):
    """The command of the issue, run through the webbflow CLI (references and CRDS cache included)."""
    from webbflow.flows.cli import main

    out = tmp_path_factory.mktemp("sim-cli")
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["simulate", "--output-dir", str(out), "--instrument", "nircam", "--size", "64",
                   "--ngroups", "5", "--nexp", "2", "--seed", "1"])
    return out, rc, buf.getvalue()


def _strict_open(path):
    from stdatamodels.jwst import datamodels as dm

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = dm.Level1bModel(str(path), strict_validation=True)
        m.validate()
    return m


# ---------------------------------------------------------------------------
# metadata


def test_file_names_ids_and_subarray(nircam):
    names = [p.name for p in nircam.uncal]
    assert names == ["jw01234001001_02101_00001_nrca1_uncal.fits", "jw01234001001_02101_00002_nrca1_uncal.fits"]
    for k, p in enumerate(nircam.uncal, start=1):
        m = models.open(p)
        assert isinstance(m, models.Level1bModel)
        assert m.data.dtype == np.uint16 and m.data.shape == (1, NGROUPS, SIZE, SIZE)
        o = m.meta.observation
        assert (o.program_number, o.observation_number, o.visit_number) == ("01234", "001", "001")
        assert (o.visit_group, o.sequence_id, o.activity_id, o.exposure_number) == ("02", "1", "01", f"{k:05d}")
        assert o.visit_id == "01234001001" and o.obs_id == "V01234001001P0000000002101"
        i, s = m.meta.instrument, m.meta.subarray
        assert (i.name, i.detector, i.filter, i.pupil, i.module, i.channel) == ("NIRCAM", "NRCA1", "F200W", "CLEAR", "A", "SHORT")
        assert m.meta.exposure.type == "NRC_IMAGE"
        assert (s.name, s.xstart, s.ystart, s.xsize, s.ysize) == ("GENERIC", 1, 1, SIZE, SIZE)
        assert (s.fastaxis, s.slowaxis) == (-1, 2)
        assert m.meta.aperture.name == "NRCA1_FULL"
        assert m.meta.dither.position_number == k and m.meta.dither.total_points == 2


def test_timing_is_consistent(nircam):
    from astropy.time import Time

    ends = []
    for p in nircam.uncal:
        e = models.open(p).meta.exposure
        h = fits.getheader(p)
        # a 64x64 one-output NIRCam subarray: (64 + 12) * (64 + 2) samples of 10 us (SUB64P: 0.05016 s)
        assert e.frame_time == pytest.approx(0.05016, abs=1e-9)
        assert (e.readpatt, e.nframes, e.groupgap, e.noutputs) == ("RAPID", 1, 0, 1)
        assert e.group_time == pytest.approx(e.frame_time)
        assert e.integration_time == pytest.approx(NGROUPS * e.group_time)
        assert e.exposure_time == pytest.approx(e.integration_time * e.nints)
        assert (e.end_time - e.start_time) * 86400 == pytest.approx(e.duration, abs=1e-3)
        assert e.mid_time == pytest.approx((e.start_time + e.end_time) / 2, abs=1e-9)
        t = Time(e.start_time, format="mjd", scale="utc").isot
        assert t.startswith(f"{h['DATE-OBS']}T{h['TIME-OBS'][:8]}")
        ends.append((e.start_time, e.end_time))
    assert ends[1][0] > ends[0][1], "exposures follow one another"


@pytest.mark.parametrize("header", sorted(p.name for p in (REAL / "fgs_headers").glob("*.fits")))
def test_guider_readouts_match_real_flight_headers(header):
    h = fits.getheader(REAL / "fgs_headers" / header)
    setup = S.make_setup("fgs", detector=h["DETECTOR"], exp_type=h["EXP_TYPE"])
    assert (setup.readpatt, setup.subarray) == (h["READPATT"], h["SUBARRAY"])
    assert (setup.xstart, setup.ystart, setup.xsize, setup.ysize) == (h["SUBSTRT1"], h["SUBSTRT2"], h["SUBSIZE1"], h["SUBSIZE2"])
    assert (setup.fastaxis, setup.slowaxis) == (h["FASTAXIS"], h["SLOWAXIS"])
    assert (setup.ngroups, setup.nframes, setup.groupgap) == (h["NGROUPS"], h["NFRAMES"], h["GROUPGAP"])
    if h["EXP_TYPE"] != "FGS_FINEGUIDE":  # flight FINEGUIDE files differ in NINTS (2048, 3072)
        assert setup.nints == h["NINTS"]
    assert setup.tframe == pytest.approx(h["TFRAME"], abs=1e-9)
    assert setup.tgroup == pytest.approx(h["TGROUP"], abs=1e-9)
    assert setup.effinttm == pytest.approx(h["EFFINTTM"], abs=1e-9)


@pytest.mark.parametrize("name", sorted(p.name for p in (REAL / "nircam_coron_headers").glob("*.fits")))
def test_nircam_full_frame_readout_matches_real_headers(name):
    h = fits.getheader(REAL / "nircam_coron_headers" / name)
    setup = S.make_setup("nircam", detector=h["DETECTOR"], ngroups=h["NGROUPS"], readpatt=h["READPATT"],
                         filter="F210M")
    assert (setup.fastaxis, setup.slowaxis) == (h["FASTAXIS"], h["SLOWAXIS"])
    assert setup.noutputs == h["NOUTPUTS"]
    assert setup.tframe == pytest.approx(h["TFRAME"], abs=1e-9)  # 10.73677 s
    assert setup.effinttm == pytest.approx(h["EFFINTTM"], abs=1e-6)


def test_miri_subarray_and_frame_time():
    full = S.make_setup("miri")
    assert (full.subarray, full.xsize, full.ysize, full.tframe) == ("FULL", 1032, 1024, 2.77504)
    sub = S.make_setup("miri", size=64)
    assert (sub.subarray, sub.xstart, sub.ystart, sub.xsize, sub.ysize) == ("SUB64", 1, 779, 72, 64)
    assert (sub.fastaxis, sub.slowaxis, sub.readpatt) == (1, 2, "FASTR1")


def test_pointing_keywords_agree_with_pysiaf(nircam):
    """RA/DEC_REF and ROLL_REF follow from RA/DEC_V1 and PA_V3 (pysiaf's attitude), and each
    dither puts the target at ideal (XOFFSET, YOFFSET), as jwst reads those keywords."""
    import pysiaf.utils.rotations as rot
    from stdatamodels.jwst.transforms.models import IdealToV2V3

    pa = []
    for p in nircam.uncal:
        m = models.open(p)
        w, pt, d, t = m.meta.wcsinfo, m.meta.pointing, m.meta.dither, m.meta.target
        att = rot.attitude(0.0, 0.0, pt.ra_v1, pt.dec_v1, pt.pa_v3)
        ra, dec = rot.tel_to_sky(att, w.v2_ref, w.v3_ref)
        assert S._angular_sep_arcsec(ra.to_value("deg"), dec.to_value("deg"), w.ra_ref, w.dec_ref) < 1e-3
        assert rot.posangle(att, w.v2_ref, w.v3_ref) == pytest.approx(w.roll_ref, abs=1e-6)
        v2, v3 = IdealToV2V3(w.v3yangle, w.v2_ref, w.v3_ref, w.vparity)(d.x_offset, d.y_offset)
        ra, dec = rot.tel_to_sky(att, v2, v3)
        assert S._angular_sep_arcsec(ra.to_value("deg"), dec.to_value("deg"), t.ra, t.dec) < 1e-3
        assert (d.dithered_ra, d.dithered_dec) == (t.ra, t.dec)
        pa.append(pt.pa_v3)
    assert pa[0] == pytest.approx(pa[1], abs=1e-7), "a dither translates; it does not roll"
    assert models.open(nircam.uncal[1]).meta.dither.x_offset != 0.0


def test_uncal_files_pass_stdatamodels_strict_validation(nircam, tmp_path):
    for p in nircam.uncal:
        m = _strict_open(p)
        assert m.meta.exposure.readpatt == "RAPID" and m.data.dtype == np.uint16
    miri = _sim(tmp_path / "miri", instrument="miri", size=64, ngroups=5, nints=2, seed=4)
    m = _strict_open(miri.uncal[0])
    assert m.meta.subarray.name == "SUB64" and m.data.shape == (2, 5, 64, 72)
    niriss = _sim(tmp_path / "niriss", instrument="niriss", size=64, ngroups=3, seed=4)
    m = _strict_open(niriss.uncal[0])
    assert (m.meta.instrument.filter, m.meta.instrument.pupil, m.meta.exposure.readpatt) == ("CLEAR", "F150W", "NISRAPID")


@pytest.mark.parametrize("exp_type,nints,shape", [
    ("FGS_ACQ1", None, (6, 2, 128, 128)),
    ("FGS_ACQ2", None, (5, 2, 32, 32)),
    ("FGS_TRACK", 4, (4, 2, 32, 32)),
    ("FGS_FINEGUIDE", 4, (4, 8, 8, 8)),
    ("FGS_ID-IMAGE", None, (2, 2, 2048, 2024)),
    ("FGS_ID-STACK", None, (2, 2, 2048, 2304)),
])
def test_fgs_guider_modes(tmp_path, exp_type, nints, shape):
    sim = _sim(tmp_path, instrument="fgs", detector="GUIDER2", exp_type=exp_type, nints=nints, seed=2)
    p = sim.uncal[0]
    tag = S.GUIDER_MODES[exp_type].file_tag
    assert re.fullmatch(rf"jw01234001001_gs-{tag}(_\d{{13}})?_uncal\.fits", p.name), p.name
    m = _strict_open(p)
    assert m.data.shape == shape and m.meta.exposure.type == exp_type
    assert not sim.asn_level2 and sim.asn_level3 is None, "guider data are not associated"
    # the guide star is in the window (not for ID, whose window is the whole detector)
    if not exp_type.startswith("FGS_ID"):
        d = m.data.astype(float)
        cds = np.median(d[:, -1] - d[:, 0], axis=0)
        y, x = np.unravel_index(np.argmax(cds), cds.shape)
        t = Table.read(sim.catalog)
        assert abs(x - t["x_1"][0]) <= 1 and abs(y - t["y_1"][0]) <= 1
        assert cds.max() > 20 * np.median(np.abs(cds - np.median(cds)))


# ---------------------------------------------------------------------------
# determinism


def test_same_seed_gives_identical_bytes(nircam, tmp_path):
    again = _sim(tmp_path / "again", instrument="nircam", size=SIZE, ngroups=NGROUPS, nexp=2, seed=1)
    for a, b in zip(nircam.products, again.products):
        assert a.name == b.name
        assert a.read_bytes() == b.read_bytes(), a.name
    other = _sim(tmp_path / "other", instrument="nircam", size=SIZE, ngroups=NGROUPS, nexp=1, seed=2)
    assert not np.array_equal(models.open(other.uncal[0]).data, models.open(nircam.uncal[0]).data)


# ---------------------------------------------------------------------------
# scene and detector


def _refs_for(path):
    from webbflow.refs import synthetic

    return synthetic.reference_set(models.open(path), reftypes=["saturation", "gain", "superbias"])


def test_truth_catalogue_matches_the_stars(nircam):
    t = Table.read(nircam.catalog)
    assert t["ra"].unit == "deg" and str(t["flux"].unit) == "uJy"
    assert {"id", "ra", "dec", "flux", "abmag", "count_rate", "x_1", "y_1", "x_2", "y_2"} <= set(t.colnames)
    assert t.meta["exposures"] == {1: nircam.uncal[0].name, 2: nircam.uncal[1].name}
    np.testing.assert_allclose(t["abmag"], 23.9 - 2.5 * np.log10(t["flux"].value))
    for k, p in enumerate(nircam.uncal, start=1):
        m = models.open(p)
        d = m.data[0].astype(float)
        diff = d[-1] - d[0]
        sat = _refs_for(p)["saturation"].data
        x, y = np.asarray(t[f"x_{k}"]), np.asarray(t[f"y_{k}"])
        rates = np.asarray(t["count_rate"])
        order = np.argsort(-rates)
        fwhm = t.meta["fwhm_pixels"]
        checked = 0
        for i in order:
            if not (5 <= x[i] < SIZE - 5 and 5 <= y[i] < SIZE - 5):
                continue
            iy, ix = int(round(y[i])), int(round(x[i]))
            box = (slice(iy - 4, iy + 5), slice(ix - 4, ix + 5))
            others = np.arange(len(t)) != i
            light_of_others = S.render_stars((SIZE, SIZE), x[others], y[others], rates[others], fwhm)
            if light_of_others[box].max() > 0.1 * S.peak_fraction(fwhm) * rates[i]:
                continue  # not isolated
            if np.any(d[-1][box] >= sat[box]):
                continue  # saturated: its core is flat
            py, px = np.unravel_index(np.argmax(diff[box]), diff[box].shape)
            assert abs(ix - 4 + px - x[i]) <= 1 and abs(iy - 4 + py - y[i]) <= 1, (k, t["id"][i])
            checked += 1
            break
        assert checked == 1, "no isolated unsaturated star to check"


def test_bright_stars_saturate_and_faint_ones_do_not(nircam):
    t = Table.read(nircam.catalog)
    p = nircam.uncal[0]
    d = models.open(p).data[0]
    sat = _refs_for(p)["saturation"].data
    x, y = int(round(t["x_1"][0])), int(round(t["y_1"][0]))  # star 1, the target
    assert t["count_rate"][0] == t["count_rate"].max()
    core = (slice(y - 1, y + 2), slice(x - 1, x + 2))
    assert np.sum(d[-1][core] >= sat[core]) >= 4, "the target saturates"
    assert np.sum(d[0][core] >= sat[core]) < np.sum(d[-1][core] >= sat[core]), "...but not from the first read on"
    frac = np.mean(d[-1] >= sat)
    assert 0 < frac < 0.05, f"{100 * frac:.2f}% of pixels saturated"


def test_cosmic_rays_are_present_and_persist(nircam):
    crs = Table.read(nircam.cosmic_rays)
    assert len(crs) >= 3 * len(nircam.uncal)  # at least three per integration
    seen = 0
    for p in nircam.uncal:
        d = models.open(p).data.astype(float)
        gain = _refs_for(p)["gain"].data
        for c in crs[crs["exposure"] == p.name]:
            i, g, x, y = c["integration"] - 1, c["group"] - 1, c["x"], c["y"]
            if g == 0 or c["electrons"] < 300 or d[i, -1, y, x] > 60000:
                continue
            step = np.diff(d[i, :, y, x])
            expected = c["electrons"] / gain[y, x]
            assert step[g - 1] > 0.5 * expected, (p.name, c)  # the hit appears in its group ...
            assert d[i, -1, y, x] - d[i, g - 1, y, x] > 0.5 * expected  # ... and stays
            seen += 1
    assert seen >= 1


def test_reference_signatures_are_in_the_raw_data(nircam):
    """Reference pixels read the superbias; the IPC the references describe is undone by jwst's IPC step."""
    p = nircam.uncal[0]
    d = models.open(p).data[0].astype(float)
    bias = _refs_for(p)["superbias"].data
    refpix = np.zeros(d.shape[1:], bool)
    refpix[:4, :] = refpix[:, :4] = True  # the corner subarray holds 4 rows and columns of them
    resid = d[0][refpix] - bias[refpix]
    assert abs(np.median(resid)) < 40 and np.std(resid) < 40
    assert np.std(d[0][refpix]) > 3 * np.std(resid), "the bias structure is there"


@pytest.mark.parity
def test_ipc_is_undone_by_jwst_ipc_convolution():
    from jwst.ipc.ipc_corr import NumRefPixels, ipc_convolve

    from webbflow.refs import synthetic

    setup = S.make_setup("nircam", size=SIZE, ngroups=3)
    model = models.Level1bModel()
    S.fill_metadata(model, setup, S.ObservationIds(), S.make_pointing(setup, 10.0, 20.0, 30.0, 0.0, 0.0), 1, 1,
                    __import__("datetime").datetime(2024, 1, 1), 10.0, 20.0)
    kernel = synthetic.reference_set(model, reftypes=["ipc"])["ipc"].data
    rng = np.random.default_rng(0)
    x = 12000.0 + rng.normal(0, 50, (SIZE, SIZE))
    x += S.render_stars((SIZE, SIZE), [30.2, 10.7], [40.4, 50.1], [4e5, 5e4], 2.1)
    y = S._Ipc(kernel, S._science_slices(setup)).forward(x.astype(np.float32)).astype(np.float64)
    back = y.copy()
    ipc_convolve(back, kernel.astype(np.float64), NumRefPixels(bottom_rows=4, top_rows=0, left_columns=4, right_columns=0))
    err = np.abs(back - x)
    print(f"IPC forward then jwst's deconvolution: max |error| {err.max():.4f} DN")
    assert err.max() < 0.1
    assert np.abs(y - x)[4:, 4:].max() > 10, "IPC changed the science pixels"
    np.testing.assert_array_equal(y[:4], x[:4].astype(np.float32))  # reference pixels untouched


def test_inverse_linearity_is_exact():
    rng = np.random.default_rng(3)
    c = np.zeros((5, 50, 50))
    c[1] = 1.0
    c[2] = rng.uniform(1e-6, 3e-6, (50, 50))
    c[3] = rng.uniform(0, 5e-12, (50, 50))
    raw = rng.uniform(0, 50000, (50, 50))
    lin = S._polyval(c, raw)
    back = S.invert_polynomial(c, lin)
    assert np.max(np.abs(back - raw)) < 0.01


# ---------------------------------------------------------------------------
# associations


def test_associations_have_jwst_layout(nircam):
    from jwst.associations import load_asn

    assert len(nircam.asn_level2) == 2
    for k, (p, uncal) in enumerate(zip(nircam.asn_level2, nircam.uncal), start=1):
        raw = json.loads(p.read_text())
        for key in ("asn_type", "asn_rule", "asn_id", "asn_pool", "program", "target", "version_id",
                    "degraded_status", "constraints", "products"):
            assert key in raw, key
        assert raw["asn_type"] == "image2" and raw["program"] == "01234"
        asn = load_asn(p.open())
        (product,) = asn["products"]
        root = uncal.name.replace("_uncal.fits", "")
        assert product["name"] == root
        assert product["members"] == [
            {"expname": f"{root}_rate.fits", "exptype": "science", "exposerr": None, "asn_candidate": "[('o001', 'observation')]"}
        ]
        assert re.fullmatch(rf"jw01234-o001_\d{{8}}t\d{{6}}_image2_{k:05d}_asn\.json", p.name)
    raw3 = json.loads(nircam.asn_level3.read_text())
    asn3 = load_asn(nircam.asn_level3.open())
    assert raw3["asn_type"] == "image3" and raw3["asn_rule"] == "candidate_Asn_Lv3Image"
    (product,) = asn3["products"]
    assert product["name"] == "jw01234-o001_t001_nircam_clear-f200w"
    assert [m["expname"] for m in product["members"]] == [u.name.replace("_uncal", "_cal") for u in nircam.uncal]
    assert all(m["exptype"] == "science" for m in product["members"])


# ---------------------------------------------------------------------------
# the command line, the references, and jwst on the result


def test_cli_simulate_lists_its_products(cli_sim):
    out, rc, stdout = cli_sim
    assert rc == 0
    written = [line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("wrote ")]
    names = sorted(Path(w).name for w in written)
    assert len([n for n in names if n.endswith("_uncal.fits")]) == 2
    assert len([n for n in names if n.endswith("_asn.json")]) == 3
    assert any(n.endswith("_truth.ecsv") for n in names)
    for w in written:
        assert Path(w).exists() and Path(w).parent == out
    assert re.search(r"CRDS context jwst_\d{4}\.pmap", stdout)
    assert (out / "config" / "jwst" / "server_config").exists()


def test_cli_reports_bad_choices_in_one_line(tmp_path, capsys):
    from webbflow.flows.cli import main

    rc = main(["simulate", "--output-dir", str(tmp_path), "--instrument", "miri", "--size", "60", "--no-refs"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("webbflow: error:") and "SUB64" in err[0]
    rc = main(["simulate", "--output-dir", str(tmp_path), "--detector", "NRCA1", "--filter", "F444W", "--no-refs"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "short-wavelength" in err[0]
    assert not list(tmp_path.glob("*.fits")), "nothing written on a bad choice"


@pytest.mark.parity
def test_jwst_assign_wcs_recovers_the_truth_positions(cli_sim):
    """jwst's AssignWcsStep, given only CRDS_PATH at the cache we built, maps the catalogue's pixel
    positions in every exposure to the catalogue's sky positions."""
    from jwst.assign_wcs import AssignWcsStep
    from stdatamodels.jwst import datamodels as dm

    from parity import jwst_offline

    out, rc, _ = cli_sim
    assert rc == 0
    t = Table.read(next(out.glob("*_truth.ecsv")))
    uncals = sorted(out.glob("*_uncal.fits"))
    with jwst_offline(out):
        for k, p in enumerate(uncals, start=1):
            u = dm.Level1bModel(str(p))
            rate_like = dm.ImageModel(data=np.zeros(u.data.shape[-2:], np.float32))
            rate_like.update(u)
            res = AssignWcsStep.call(rate_like)
            assert res.meta.cal_step.assign_wcs == "COMPLETE"
            assert res.meta.ref_file.distortion.name.startswith("crds://jwst_nircam_distortion_")
            x, y = np.asarray(t[f"x_{k}"]), np.asarray(t[f"y_{k}"])
            inside = (x > -0.5) & (x < 63.5) & (y > -0.5) & (y < 63.5)
            ra, dec = res.meta.wcs(x[inside], y[inside])
            sep_mas = S._angular_sep_arcsec(ra, dec, np.asarray(t["ra"])[inside], np.asarray(t["dec"])[inside]) * 1e3
            print(f"{p.name}: max |WCS(x, y) - truth| = {np.max(sep_mas):.2e} mas over {inside.sum()} stars")
            assert inside.sum() >= 5
            assert np.max(sep_mas) < 0.1


@pytest.mark.parity
def test_jwst_detector1_recovers_the_count_rates(tmp_path):
    """calwebb_detector1 with our references undoes the simulated detector: the rate image of
    bright, unsaturated stars matches the truth (times the flat) to a few per cent.

    The synthetic mask flags reference pixels DO_NOT_USE as well as REFERENCE_PIXEL, which makes
    jwst's subarray refpix find no usable reference pixel (real masks flag them REFERENCE_PIXEL
    only, e.g. ../shared/data/real/jwst_nircam_mask_ref.fits); the test clears that bit after
    dq_init so that refpix removes the simulated bias drifts, as it does on real subarrays.
    """
    from jwst.dq_init import DQInitStep
    from jwst.pipeline import Detector1Pipeline
    from stdatamodels.jwst import datamodels as dm

    from parity import jwst_offline

    out = tmp_path / "sim"
    sim = S.simulate(out, instrument="nircam", size=128, ngroups=20, seed=8, stars_per_field=80)
    t = Table.read(sim.catalog)
    uncal = sim.uncal[0]
    with jwst_offline(out):
        ramp = DQInitStep.call(str(uncal))
        ref = (ramp.pixeldq & (1 << 31)) != 0
        ramp.pixeldq[ref] &= ~np.uint32(1)
        rate = Detector1Pipeline.call(ramp, steps={"dq_init": {"skip": True}})
    (flat_path,) = (out / "references" / "jwst" / "nircam").glob("jwst_nircam_flat_*.fits")
    flat = dm.FlatModel(str(flat_path))
    for s in ("refpix", "linearity", "dark_sub", "ipc", "superbias", "jump", "ramp_fit"):
        assert getattr(rate.meta.cal_step, s) == "COMPLETE", s
    ny, nx = rate.data.shape
    ideal = S.render_stars((ny, nx), t["x_1"], t["y_1"], t["count_rate"], t.meta["fwhm_pixels"]) + t.meta["sky_rate_dn_per_s"]
    ideal *= np.where(np.isfinite(flat.data), flat.data, 1.0)
    ratios = []
    for row in t:
        x, y = int(round(row["x_1"])), int(round(row["y_1"]))
        if not (10 <= x < nx - 10 and 10 <= y < ny - 10):
            continue
        box = (slice(y - 3, y + 4), slice(x - 3, x + 4))
        if np.any(rate.dq[box] & 3) or ideal[box].sum() < 2000:  # saturated or bad pixels, or too faint for 5 %
            continue
        ring = np.zeros((ny, nx), bool)
        ring[y - 8:y + 9, x - 8:x + 9] = True
        ring[y - 5:y + 6, x - 5:x + 6] = False
        bkg = np.nanmedian(rate.data[ring] - ideal[ring])
        ratios.append((rate.data[box] - bkg).sum() / ideal[box].sum())
    print(f"jwst rate / truth for {len(ratios)} stars: {np.round(ratios, 4)}")
    assert len(ratios) >= 3
    assert np.all(np.abs(np.array(ratios) - 1) < 0.05)


def test_more_detectors_add_to_the_associations(tmp_path):
    a = _sim(tmp_path, instrument="nircam", detector="NRCA1", size=32, ngroups=2, nexp=2, seed=5)
    b = _sim(tmp_path, instrument="nircam", detector="NRCA2", size=32, ngroups=2, nexp=2, seed=5)
    level2 = sorted(tmp_path.glob("*_image2_*_asn.json"))
    assert len(level2) == 4 and sorted(a.asn_level2 + b.asn_level2) == level2
    products = sorted(json.loads(p.read_text())["products"][0]["name"] for p in level2)
    assert products == sorted(u.name.replace("_uncal.fits", "") for u in a.uncal + b.uncal)
    assert a.asn_level3 == b.asn_level3 and len(list(tmp_path.glob("*_image3_*_asn.json"))) == 1
    members = [m["expname"] for m in json.loads(b.asn_level3.read_text())["products"][0]["members"]]
    assert members == [u.name.replace("_uncal", "_cal") for u in a.uncal + b.uncal]
    again = _sim(tmp_path, instrument="nircam", detector="NRCA1", size=32, ngroups=2, nexp=2, seed=5)
    assert again.asn_level2 == a.asn_level2, "an exposure keeps its level-2 association"
    assert len(json.loads(again.asn_level3.read_text())["products"][0]["members"]) == 4


def test_relative_output_folder_holds_the_whole_observation(tmp_path, monkeypatch):
    """A folder given relative to the working directory gets the exposures, the pool and the
    associations (the coronagraphy simulators write the pool from inside the folder)."""
    monkeypatch.chdir(tmp_path)
    result = S.simulate("obs", instrument="nircam", exp_type="NRC_CORON", ngroups=2, nints=1, nexp=1,
                        build_refs=False)
    out = tmp_path / "obs"
    assert result.output_dir == out
    assert sorted(p.name for p in out.glob("*_pool.csv")) == ["jw01234_20240115t030000_pool.csv"]
    asn = json.loads(result.asn_level3.read_text())
    members = {m["expname"] for p in asn["products"] for m in p["members"]}
    assert members == {p.name.replace("_uncal", "_calints") for p in result.uncal}
    assert all(p.parent == out and p.exists() for p in result.uncal)
