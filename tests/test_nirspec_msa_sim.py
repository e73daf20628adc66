"""NIRSpec MOS simulated (refs/sim/nirspec_msa.py) and calibrated by jwst 3.0 and by webbflow, products whole.

One simulation (PRISM/CLEAR on NRS1, FULL frame, NRSRAPID, 3 groups: three three-shutter slitlets with a
point source each and the fixed slits S200A1 and S400A1 with one each, nodded 3-SHUTTER-SLITLET over three exposures) with its MSA metadata file, CRDS cache
and the associations jwst's rules make; jwst runs as its users run it, from the associations' folder with
CRDS_PATH and no override: ``calwebb_detector1`` on each uncal, ``calwebb_spec2`` on each spec2
association (the other two nods its backgrounds), ``calwebb_spec3`` on the spec3 association.  webbflow
runs spec2 on the first association from jwst's rates and spec3 on jwst's cals; every product is compared
whole (tests/test_products_whole.py: HDUs, keywords, arrays within rtol 1e-4 for 99.9 %, DQ equal, tables).

What does not agree, and why: jwst's MOS pathloss divides by a zero correction (its point-source
correction is 0 in the bluest ~22 columns of each cutout, 0.60-0.70 um, the edge of the synthetic pathloss
table) and leaves +-inf in SCI/ERR/variances with DQ 0 (jwst's
match_nans_and_flags looks for NaN only); webbflow makes those pixels NaN with DO_NOT_USE, as it does
everywhere (tasks/flat_field.py).  The spec2 cal and the spec3 crf comparisons set those pixels aside, after
checking that they are exactly jwst's infinite ones (~3.5 % of a cutout); the s2d, x1d and spec3 cal agree
without that (resample drops them on both sides; spec3's cal holds jwst's cals as they were).

CI time: the jwst run of three FULL frames through detector1, spec2 and spec3 takes minutes (954 s on a
loaded machine), so the tests that need it run only with WEBBFLOW_MSA_FULL=1, as the MRS simulator's full
runs do with WEBBFLOW_MRS_FULL; the simulation's own checks (nod geometry, light in each slitlet, the
associations against jwst's generator, CRDS selection, the one-line refusals) always run, and so does one
smaller comparison: the first nod alone (one FULL frame, webbflow's rate), with its fixed slits S200A1 and
S400A1, through jwst's spec2 and webbflow's (jwst's MOS and fixed-slit split), products whole and world
coordinates at every pixel, and webbflow's spec2 again as a tracked Prefect flow run (one task run per
slit, the same products).  The MSA steps
of spec2 are compared with jwst's in CI by tests/test_nirspec_msa.py and test_master_background_mos.py.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simrun import inputs as _sim_inputs
from simrun import simulate_into, strun, webbflow_run
from test_products_whole import _quiet, compare_fits

pytestmark = pytest.mark.real  # the simulator places light through the real optical references in ../shared/data

# WEBBFLOW_MSA_GRATING=G395M (with WEBBFLOW_MSA_FULL=1) runs the same comparisons through a grating
SIM = dict(instrument="nirspec", exp_type="NRS_MSASPEC", seed=7, grating=os.environ.get("WEBBFLOW_MSA_GRATING") or None)


@pytest.fixture(scope="session")
def msa_sim(tmp_path_factory):
    return simulate_into(tmp_path_factory, "nrs_msa_sim", SIM)


def _inputs(sim, folder: Path, pattern="*_uncal.fits", src=None) -> Path:
    return _sim_inputs(sim, folder, pattern, src, also=("*_msa.fits",))  # with the MSA metadata file


@pytest.fixture(scope="session")
def msa_runs(msa_sim):
    """jwst's detector1, spec2 (each nod) and spec3 from the associations' folder; webbflow's spec2 on the
    first association from jwst's rates and its spec3 on jwst's cals.  Opt-in (WEBBFLOW_MSA_FULL=1): jwst
    on three full frames takes minutes, beyond CI's budget."""
    if not os.environ.get("WEBBFLOW_MSA_FULL"):
        pytest.skip("the full MSA parity run is opt-in: set WEBBFLOW_MSA_FULL=1")
    from webbflow.flows.cli import main

    sim = msa_sim.sim
    jw = _inputs(sim, msa_sim.root / "jwst")
    calls = ([("calwebb_detector1", u.name) for u in sim.uncal]
             + [("calwebb_spec2", Path(a).name) for a in sim.asn_level2]
             + [("calwebb_spec3", Path(sim.asn_level3).name)])

    _quiet(lambda: strun(jw, calls), msa_sim.cache, msa_sim.context)
    asn2 = Path(sim.asn_level2[0]).name
    science = json.loads((jw / asn2).read_text())["products"][0]["name"]
    ours = _inputs(sim, msa_sim.root / "ours", "*_rate.fits", jw)
    ours3 = _inputs(sim, msa_sim.root / "ours3", "*_cal.fits", jw)

    def webbflow():
        assert main(["run", "calwebb_spec2", str(ours / asn2), "--output-dir", str(ours)]) == 0
        asn3 = ours3 / Path(sim.asn_level3).name
        assert main(["run", "calwebb_spec3", str(asn3), "--output-dir", str(ours3)]) == 0

    _quiet(webbflow, msa_sim.cache, msa_sim.context)
    return SimpleNamespace(jwst=jw, ours=ours, ours3=ours3, root=science)


@pytest.fixture(scope="session")
def msa_fs_runs(msa_sim):
    """The first nod alone, with its fixed slits: webbflow's detector1 makes the rate; jwst's spec2 (``strun
    calwebb_spec2 <rate>``, a singleton: no background, so master_background_mos records FAILED) and webbflow's
    spec2 run on it.  One FULL frame: ~1 min of CPU in all, in CI."""
    sim = msa_sim.sim
    base = msa_sim.root / "fs"
    rates = _inputs(sim, base / "rate", "*_uncal.fits")
    uncal = rates / Path(sim.uncal[0]).name
    _quiet(lambda: webbflow_run("calwebb_detector1", uncal, "--output-dir", rates), msa_sim.cache, msa_sim.context)
    rate = uncal.name.replace("_uncal", "_rate")
    jw = _inputs(sim, base / "jwst", rate, rates)
    ours = _inputs(sim, base / "ours", rate, rates)
    _quiet(lambda: strun(jw, [("calwebb_spec2", rate)]), msa_sim.cache, msa_sim.context)
    _quiet(lambda: webbflow_run("calwebb_spec2", ours / rate, "--output-dir", ours), msa_sim.cache, msa_sim.context)
    return SimpleNamespace(jwst=jw, ours=ours, rate=rates / rate, root=rate.replace("_rate.fits", ""))


@pytest.mark.parity
def test_msa_with_fixed_slits_spec2_whole(msa_fs_runs):
    """An MSA exposure with fixed slits through spec2 (jwst's MOS and fixed-slit split): the cal, s2d and x1d whole
    as jwst writes them; the slit list (the slitlets, then S200A1 and S400A1) and the cutouts identical; the fixed
    slits calibrated as NRS_FIXEDSLIT (their photom row, their EXP_TYPE), their spectra after the slitlets'."""
    from webbflow import models

    r = msa_fs_runs
    problems: list[str] = []
    for sfx in ("cal", "s2d", "x1d"):
        ours, theirs = r.ours / f"{r.root}_{sfx}.fits", r.jwst / f"{r.root}_{sfx}.fits"
        assert ours.exists() and theirs.exists(), ours.name
        compare_fits(sfx, ours, theirs, problems)
    assert problems == [], "\n".join(problems)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal, jcal = (models.open(d / f"{r.root}_cal.fits") for d in (r.ours, r.jwst))
        x1d = models.open(r.ours / f"{r.root}_x1d.fits")
    names = ["1", "2", "3", "S200A1", "S400A1"]
    assert [s.name for s in cal.slits] == [s.name for s in jcal.slits] == names
    assert [s.quadrant for s in cal.slits] == [3, 3, 4, 5, 5]
    assert [s.meta.exposure.type for s in cal.slits] == ["NRS_MSASPEC"] * 3 + ["NRS_FIXEDSLIT"] * 2
    assert cal.meta.exposure.type == "NRS_MSASPEC" and cal.meta.cal_step.photom == "COMPLETE"
    # the fixed slits' conversion is their FS photom row's, not the MOS one
    mos_conv = {s.meta.photometry.conversion_megajanskys for s in cal.slits[:3]}
    fs_conv = {s.meta.photometry.conversion_megajanskys for s in cal.slits[3:]}
    assert len(mos_conv) == 1 and not mos_conv & fs_conv
    assert [sp.meta.get("name") if isinstance(sp.meta, dict) else None for sp in x1d.spec] == names


@pytest.mark.parity
def test_msa_fixed_slits_world_coordinates_at_every_pixel(msa_fs_runs):
    """Every slit of the cal (slitlets and fixed slits), its WCS at every pixel: within 1e-10 deg and 1e-12 m of
    jwst's, the cutouts identical."""
    r = msa_fs_runs
    _same_wcs_at_every_pixel(r.ours / f"{r.root}_cal.fits", r.jwst / f"{r.root}_cal.fits", 5)


def _same_wcs_at_every_pixel(ours_path: Path, theirs_path: Path, nslits: int) -> None:
    """The cal's slits (names and cutouts) as jwst's, each WCS within 1e-10 deg and 1e-12 m of jwst's at every pixel."""
    from webbflow import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = models.open(ours_path), models.open(theirs_path)
        assert len(ours.slits) == len(theirs.slits) == nslits
        for so, st in zip(ours.slits, theirs.slits):
            assert (so.name, so.xstart, so.ystart, so.xsize, so.ysize) == (st.name, st.xstart, st.ystart, st.xsize,
                                                                            st.ysize)
            y, x = np.mgrid[: st.data.shape[0], : st.data.shape[1]]
            ra_o, dec_o, lam_o = so.meta.wcs(x, y)
            ra_t, dec_t, lam_t = st.meta.wcs(x, y)
            ok = np.isfinite(lam_t)
            assert np.array_equal(np.isfinite(lam_o), ok) and ok.sum() > 3000, st.name
            assert np.max(np.abs(ra_o[ok] - ra_t[ok])) < 1e-10 and np.max(np.abs(dec_o[ok] - dec_t[ok])) < 1e-10
            assert np.max(np.abs(lam_o[ok] - lam_t[ok])) * 1e-6 < 1e-12


@pytest.mark.parity
def test_msa_slits_fan_out_in_a_flow_run(msa_sim, msa_fs_runs, tmp_path):
    """spec2 as a tracked Prefect flow run on the same rate: one task run per slit for the per-slit steps (wavecorr
    to photom, the fixed slits' chain, resample_spec, extract_1d), joined into the same cal, s2d and x1d as the
    untracked run's, bit for bit (bench/same_products.py: the dates and timings aside)."""
    import shutil
    import sys

    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from webbflow.flows.calwebb_spec2 import spec2
    from webbflow.flows.stage import quiet_prefect_settings

    r = msa_fs_runs
    out = tmp_path / "tracked"
    out.mkdir()
    for f in (r.ours / r.rate.name, *r.ours.glob("*_msa.fits")):
        shutil.copy2(f, out / f.name)

    def tracked():
        with quiet_prefect_settings():
            return spec2(str(out / r.rate.name), output_dir=str(out), return_state=True)

    state = _quiet(tracked, msa_sim.cache, msa_sim.context)
    assert state.is_completed(), state
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from same_products import compare_dirs

    untracked = tmp_path / "untracked"
    untracked.mkdir()
    for f in (*r.ours.glob(f"{r.root}_*.fits"), *r.ours.glob("*_msa.fits")):  # the inputs and products
        shutil.copy2(f, untracked / f.name)
    diffs, n = compare_dirs(untracked, out)
    assert diffs == [] and n == 5, diffs

    async def task_names():
        async with get_client() as client:
            trs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
            return sorted(t.name for t in trs)

    import time

    mos, fs = "wavecorr, flat_field, pathloss, barshadow, photom", "wavecorr, flat_field, pathloss, photom"
    slits = ("1", "2", "3", "S200A1", "S400A1")
    expected = [f"slit {s} [{mos if s.isdigit() else fs}]" for s in slits]
    expected += [f"slit {s} [{step}]" for s in slits for step in ("resample_spec", "extract_1d")]
    deadline = time.monotonic() + 60  # task runs reach the server from background events
    while True:
        names = anyio.run(task_names)
        if all(e in names for e in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    slit_runs = [n for n in names if n.startswith("slit ")]
    assert sorted(slit_runs) == sorted(expected), names


def _truth(sim):
    from astropy.table import Table

    return Table.read(sim.catalog)


# ---------------------------------------------------------------------------
# the simulation


def test_msa_simulation_is_a_three_shutter_nod(msa_sim):
    """Three FULL-frame exposures naming the MSA metadata file beside them; in it each slitlet's source sits in
    the middle shutter, then the one above, then the one below, and the pointing moves by a shutter pitch."""
    from astropy.io import fits

    sim = msa_sim.sim
    assert len(sim.uncal) == 3
    offsets = []
    for k, u in enumerate(sim.uncal):
        with fits.open(u) as h:
            p = h[0].header
            assert (p["EXP_TYPE"], p["GRATING"], p["FILTER"], p["DETECTOR"], p["SUBARRAY"]) == (
                "NRS_MSASPEC", "PRISM", "CLEAR", "NRS1", "FULL")
            assert (p["MSAMETFL"], p["MSAMETID"], p["PATT_NUM"], p["NUMDTHPT"], p["NOD_TYPE"]) == (
                "jw01234001001_01_msa.fits", 1, k + 1, 3, "3-SHUTTER-SLITLET")
            assert p["APERNAME"] == "NRS_FULL_MSA" and h["SCI"].data.shape == (1, 3, 2048, 2048)
            offsets.append(np.hypot(p["XOFFSET"], p["YOFFSET"]))
    # the nod steps one shutter pitch (0.53") up and one down
    assert offsets[0] == 0 and 0.45 < offsets[1] < 0.6 and 0.45 < offsets[2] < 0.6
    msa = sim.output_dir / "jw01234001001_01_msa.fits"
    with fits.open(msa) as h:
        assert [x.name for x in h] == ["PRIMARY", "SHUTTER_IMAGE", "SHUTTER_INFO", "SOURCE_INFO"]
        rows, src = h["SHUTTER_INFO"].data, h["SOURCE_INFO"].data
        assert {"slitlet_id", "msa_metadata_id", "shutter_quadrant", "shutter_row", "shutter_column", "source_id",
                "background", "shutter_state", "estimated_source_in_shutter_x", "estimated_source_in_shutter_y",
                "dither_point_index", "primary_source", "fixed_slit"} == set(rows.names)
        assert {"program", "source_id", "source_name", "alias", "ra", "dec", "preimage_id", "stellarity"} == set(
            src.names)
        fixed = rows[rows["fixed_slit"] != "NONE"]
        rows = rows[rows["fixed_slit"] == "NONE"]
        assert h["SHUTTER_IMAGE"].data.sum() == len(set(zip(rows["shutter_quadrant"], rows["shutter_row"],
                                                            rows["shutter_column"])))
    slitlets = sorted(set(rows["slitlet_id"]))
    assert len(slitlets) == 3 and len(src) == 5 and set(src["stellarity"]) == {1.0}
    for s in slitlets:
        mine = rows[rows["slitlet_id"] == s]
        mains = [int(mine["shutter_column"][(mine["dither_point_index"] == d) & (mine["primary_source"] == "Y")][0])
                 for d in (1, 2, 3)]
        assert mains[1] == mains[0] + 1 and mains[2] == mains[0] - 1
        assert all(((mine["dither_point_index"] == d).sum() == 3) for d in (1, 2, 3))
        assert set(mine["background"][mine["primary_source"] == "N"]) == {"Y"}
    # the fixed slits S200A1 and S400A1, one primary-source row each per dither point (quadrant/row/column 0),
    # the source moved along the slit by the nod
    assert sorted(set(fixed["fixed_slit"])) == ["S200A1", "S400A1"] and len(fixed) == 6
    assert set(fixed["primary_source"]) == {"Y"} and set(fixed["shutter_quadrant"]) == {0}
    assert set(fixed["source_id"]) == {1004, 1005} and not set(fixed["slitlet_id"]) & set(slitlets)
    for name in ("S200A1", "S400A1"):
        y = fixed["estimated_source_in_shutter_y"][fixed["fixed_slit"] == name]
        assert abs(y[0] - 0.5) < 0.02 and y[1] - y[0] > 0.1 and y[0] - y[2] > 0.1, y


def test_the_light_lands_in_each_slitlet(msa_sim):
    """Each slitlet's spectrum is on NRS1 where the optical model puts it (its cutout's rows), 250+ columns bright,
    and moves between the nods by ~5 rows (one shutter)."""
    from astropy.io import fits

    rows = []
    for u in msa_sim.sim.uncal:
        with fits.open(u) as h:
            d = h["SCI"].data[0].astype(np.float64)
        signal = d[-1] - d[0]
        # Q3 (r 170, c 70): rows ~1680-1700, columns ~1113-1548 of NRS1
        band = signal[1660:1720, 1250:1400]
        rows.append(1660 + int(np.argmax(np.median(band, axis=1))))
        lit = np.median(signal[rows[-1] - 1: rows[-1] + 2], axis=0)
        bright = np.flatnonzero(lit > 5 * np.median(np.abs(lit[100:900])) + 20)
        assert 1100 < bright.min() < 1160 and 1350 < bright.max() < 1560, (bright.min(), bright.max())
    steps = sorted(abs(rows[k] - rows[0]) for k in (1, 2))
    assert all(3 <= s <= 8 for s in steps), rows


@pytest.mark.parity
def test_associations_are_jwsts(msa_sim):
    """The pool's spec2 and spec3 associations, as jwst 3.0's generator makes them from the same pool: each nod
    with the other two as backgrounds (Asn_Lv2NRSMSA), one spec3 of the three."""
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main

    from parity import quiet_jwst

    sim = msa_sim.sim
    (pool_path,) = sim.output_dir.glob("*_pool.csv")
    version = pool_path.name.split("_")[1]
    with quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = Main.cli(["--dry-run", "--version-id", version], pool=AssociationPool.read(str(pool_path)))
    theirs = {a.asn_name + ".json": json.loads(a.dump(format="json")[1]) for a in gen.associations}
    ours = {Path(p).name: json.loads(Path(p).read_text()) for p in [*sim.asn_level2, sim.asn_level3]}
    assert sorted(ours) == sorted(theirs)
    strip = lambda a: {k: v for k, v in a.items() if k not in ("constraints", "code_version")}  # noqa: E731
    for name, asn in theirs.items():
        assert strip(ours[name]) == strip(asn), name
    for p in sim.asn_level2:
        a = json.loads(Path(p).read_text())
        kinds = sorted(m["exptype"] for m in a["products"][0]["members"])
        assert a["asn_rule"] == "candidate_Asn_Lv2NRSMSA" and kinds == ["background", "background", "science"]
    a3 = json.loads(Path(sim.asn_level3).read_text())
    assert a3["asn_type"] == "spec3" and len(a3["products"][0]["members"]) == 3


def test_references_are_selected_by_crds_for_the_mode(msa_sim):
    from parity import jwst_offline

    from webbflow.refs.select import bestrefs

    wanted = ["camera", "collimator", "disperser", "fore", "fpa", "ote", "msa", "wavelengthrange", "msaoper",
              "wavecorr", "pathloss", "photom", "area", "fflat", "sflat", "dflat", "barshadow", "extract1d", "apcorr",
              "dark", "superbias"]
    with jwst_offline(msa_sim.cache, msa_sim.context):
        best = bestrefs(msa_sim.sim.uncal[0], reftypes=wanted).choices
    files = {rt for rt, c in best.items() if c.kind == "file"}
    assert files == set(wanted) - {"apcorr"} and best["apcorr"].kind == "n/a"


def test_fixed_slits_get_the_fixed_slit_references(msa_sim):
    """The MSA exposure's fixed slits are calibrated as NRS_FIXEDSLIT (jwst asks CRDS again with that EXP_TYPE):
    the cache selects the fixed-slit pathloss, photom, area and flats for it, the MOS ones for the exposure."""
    from parity import jwst_offline

    from webbflow import models
    from webbflow.refs.select import get_reference_paths

    wanted = ["wavecorr", "pathloss", "photom", "area", "fflat", "sflat", "dflat"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = models.open(msa_sim.sim.uncal[0])
    with jwst_offline(msa_sim.cache, msa_sim.context):
        mos = get_reference_paths(m, wanted, {})
        m.meta.exposure.type = "NRS_FIXEDSLIT"
        fs = get_reference_paths(m, wanted + ["extract1d", "apcorr"], {})
    assert {rt for rt in wanted if mos[rt] == fs[rt]} == {"wavecorr", "dflat"}
    assert fs["extract1d"] == fs["apcorr"] == "N/A"
    from astropy.io import fits

    with fits.open(fs["photom"]) as h:
        assert "S200A1" in {str(s).strip() for s in h["PHOTOM"].data["slit"]}


# ---------------------------------------------------------------------------
# parity


def _infinite_in_jwst(ours: Path, theirs: Path) -> dict[int, np.ndarray]:
    """Per slit (EXTVER), jwst's infinite SCI pixels, after checking webbflow has NaN + DO_NOT_USE there and
    that the other arrays are infinite in jwst at the same pixels (and nowhere else)."""
    from astropy.io import fits

    out = {}
    with fits.open(ours) as o, fits.open(theirs) as t:
        for hdu in t:
            if hdu.name != "SCI":
                continue
            ver = hdu.ver
            inf = np.isinf(hdu.data)
            assert np.all(np.isnan(o["SCI", ver].data[inf])) and np.all(o["DQ", ver].data[inf] & 1)
            assert np.array_equal(np.isinf(t["ERR", ver].data), inf)
            assert inf.mean() < 0.08, inf.mean()
            # exactly where jwst's point-source pathloss correction is 0 (the bluest columns, below 0.7 um)
            zero = t["PATHLOSS_PS", ver].data == 0
            assert np.array_equal(inf, zero & ~np.isnan(hdu.data))
            if inf.any():
                assert np.nanmax(t["WAVELENGTH", ver].data[inf]) < 0.7
            out[ver] = inf
    return out


def _mask_copy(path: Path, masks: dict[int, np.ndarray], folder: Path, take_dq_from: Path | None = None) -> Path:
    """A copy of ``path`` with the masked pixels set to NaN in the float arrays (and DQ from ``take_dq_from``)."""
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / path.name
    with fits.open(path) as h, (fits.open(take_dq_from) if take_dq_from else fits.HDUList()) as d:
        for hdu in h:
            if hdu.ver in masks and hdu.data is not None and hdu.name not in ("ASDF",):
                m = masks[hdu.ver]
                if hdu.name == "DQ" and take_dq_from is not None:
                    hdu.data[m] = d["DQ", hdu.ver].data[m]
                elif hdu.data.dtype.kind == "f" and hdu.data.shape == m.shape:
                    hdu.data[m] = np.nan
        h.writeto(out, overwrite=True)
    return out


@pytest.mark.parity
def test_spec2_cal_s2d_x1d_whole(msa_sim, msa_runs):
    """The nod-subtracted, flat-fielded, pathloss-, barshadow- and photom-corrected slitlets, their resampled images
    and spectra: the same slitlets and cutouts, every array and keyword as jwst writes them (jwst's infinite
    pixels aside, see the module)."""
    root = msa_runs.root
    problems: list[str] = []
    for sfx in ("cal", "s2d", "x1d"):
        ours, theirs = msa_runs.ours / f"{root}_{sfx}.fits", msa_runs.jwst / f"{root}_{sfx}.fits"
        assert ours.exists(), ours.name
        if sfx == "cal":
            masks = _infinite_in_jwst(ours, theirs)
            scratch = msa_runs.ours.parent / "masked"
            ours = _mask_copy(ours, masks, scratch / "ours")
            theirs = _mask_copy(theirs, masks, scratch / "jwst", take_dq_from=msa_runs.ours / f"{root}_{sfx}.fits")
        compare_fits(sfx, ours, theirs, problems)
    assert problems == [], "\n".join(problems)
    from webbflow import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = models.open(msa_runs.ours / f"{root}_cal.fits")
    cs = cal.meta.cal_step
    assert (cs.bkg_subtract, cs.msa_flagging, cs.master_background, cs.pathloss, cs.barshadow, cs.photom) == (
        "COMPLETE", "COMPLETE", "SKIPPED", "COMPLETE", "COMPLETE", "COMPLETE")
    assert [s.source_id for s in cal.slits] == [1001, 1002, 1003, 1004, 1005]  # the fixed slits' sources last
    assert all(s.source_type == "POINT" and s.shutter_state.count("1") + s.shutter_state.count("x") == 3
               for s in cal.slits[:3])
    assert [s.name for s in cal.slits[3:]] == ["S200A1", "S400A1"]


@pytest.mark.parity
def test_world_coordinates_at_every_pixel(msa_sim, msa_runs):
    """Each cal slit's WCS, evaluated at every pixel of its cutout: within 1e-10 deg and 1e-12 m of jwst's."""
    root = msa_runs.root
    _same_wcs_at_every_pixel(msa_runs.ours / f"{root}_cal.fits", msa_runs.jwst / f"{root}_cal.fits", 5)


def _spec3_products(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("jw01234-o001_*.fits"))


@pytest.mark.parity
def test_spec3_source_products_whole(msa_sim, msa_runs):
    """spec3 on jwst's cals: one set of products per source with jwst's source-based names
    (``jw01234-o001_s000001001_nirspec_clear-prism-none_{cal,s2d,x1d}``), each whole."""
    ours, theirs = _spec3_products(msa_runs.ours3), _spec3_products(msa_runs.jwst)
    assert ours == theirs and len(theirs) >= 9, (ours, theirs)
    # the fixed slits' sources (1004, 1005) are named as the MSA's: the exposure is NRS_MSASPEC
    assert {n.split("_")[1] for n in theirs} == {f"s00000{k}" for k in range(1001, 1006)}
    problems: list[str] = []
    scratch = msa_runs.ours3.parent / "masked3"
    for name in theirs:
        sfx = name.rsplit("_", 1)[1].removesuffix(".fits")
        ours, jwst = msa_runs.ours3 / name, msa_runs.jwst / name
        if sfx == "crf":  # outlier_detection: webbflow flags jwst's infinite pixels (see the module)
            masks = _infinite_in_jwst(ours, jwst)
            ours, jwst = (_mask_copy(ours, masks, scratch / "ours"),
                          _mask_copy(jwst, masks, scratch / "jwst", take_dq_from=ours))
        compare_fits(sfx, ours, jwst, problems)
    assert problems == [], "\n".join(problems)


@pytest.mark.parity
def test_spectra_match_the_truth(msa_sim, msa_runs):
    """Each source's spec3 x1d FLUX (the three nods combined, extracted in a 5-pixel box about the source) against
    its simulated F_nu: binned by 20 columns the median ratio within 10 % (the flats, ~1 +- 4 %, are not in the
    scene; the box holds most of the point source)."""
    from astropy.io import fits

    truth = _truth(msa_sim.sim)
    medians = {}
    for sid in (1001, 1002, 1003):
        (x1d,) = msa_runs.jwst.glob(f"jw01234-o001_s{sid:09d}_*_x1d.fits")
        t = fits.getdata(x1d, "EXTRACT1D")
        lam, flux = np.asarray(t["WAVELENGTH"], float), np.asarray(t["FLUX"], float)
        ok = np.isfinite(lam) & np.isfinite(flux) & (lam > 0.8) & (lam < 5.0)
        ratio = flux[ok] / np.interp(lam[ok], truth["wavelength"], truth[f"flux_{sid}"])
        bins = np.array([np.median(ratio[i: i + 20]) for i in range(0, ratio.size - 19, 20)])
        assert ratio.size > 250 and bins.size >= 12
        medians[sid] = float(np.median(bins))
        assert abs(medians[sid] - 1.0) < 0.10, bins.round(3)
    print(f"NIRSpec MOS truth: spec3 x1d / truth median per source {medians}")


def test_bad_options_are_one_line_errors(tmp_path):
    from webbflow.errors import ParameterError
    from webbflow.refs.simulator import simulate

    cases = [dict(grating="G395M", filter="F170LP"), dict(grating="G100X"), dict(detector="NRS2"),
             dict(subarray="ALLSLITS"), dict(readpatt="NRSFAST"), dict(nexp=2), dict(slits=0), dict(slits=500),
             dict(slit="S200A1")]
    for kw in cases:
        with pytest.raises(ParameterError) as e:
            simulate(tmp_path / "x", instrument="nirspec", exp_type="NRS_MSASPEC", **kw)
        assert "\n" not in str(e.value), kw


def _msa_variant(sim, tmp_path, edit):
    """The simulation's MSA metadata file with ``edit(rows)`` applied, beside an image of the first exposure."""
    from astropy.io import fits

    from webbflow import models
    from webbflow.refs.sim import nirspec as N

    (msa,) = sim.output_dir.glob("*_msa.fits")
    with fits.open(msa) as h:
        h["SHUTTER_INFO"].data = edit(h["SHUTTER_INFO"].data)
        h.writeto(tmp_path / msa.name, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uncal = models.open(sim.uncal[0])
    img = N._image_like(uncal, N.Window("FULL", 1, 2048, 10.7))
    img._path = str(tmp_path / "x_rate.fits")
    return img, tmp_path / msa.name


def _wcs_refs(sim):
    folder = sim.crds_path / "references" / "jwst" / "nirspec"
    return {rt: str(next(folder.glob(f"jwst_nirspec_{rt}_*")))
            for rt in ("camera", "collimator", "disperser", "fore", "fpa", "ote", "msa", "wavelengthrange")}


def test_open_slits_with_fixed_slits_are_jwsts(msa_sim, tmp_path):
    """The open slits of an MSA metadata file with fixed-slit rows, as jwst 3.0's get_open_msa_slits makes them
    (every Slit field): the slitlets, then S200A1 and S400A1 as quadrant-5 slits; a fixed slit whose row is not
    the primary source is left out (S400A1 here), as jwst leaves it."""
    from jwst.assign_wcs.nirspec import get_msa_slit_scales, get_open_msa_slits

    from parity import quiet_jwst

    from webbflow.refs.select import open_reference
    from webbflow.tasks.assign_wcs.nirspec import open_msa_slits

    refs = _wcs_refs(msa_sim.sim)

    def not_primary(rows):
        rows["primary_source"][rows["fixed_slit"] == "S400A1"] = "N"
        return rows

    for edit, names in ((lambda r: r, ["1", "2", "3", "S200A1", "S400A1"]), (not_primary, ["1", "2", "3", "S200A1"])):
        img, msa = _msa_variant(msa_sim.sim, tmp_path, edit)
        for dither in (1, 2, 3):
            img.meta.dither.position_number = dither
            ours = open_msa_slits(img, open_reference("msa", refs["msa"]), (-0.55, 0.55))
            with quiet_jwst(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = get_open_msa_slits("1234", str(msa), 1, dither, (-0.55, 0.55), get_msa_slit_scales(refs["msa"]))
            assert [str(s.name) for s in ours] == names
            assert [tuple(map(str, s)) for s in ours] == [tuple(map(str, s)) for s in theirs]


def test_unsupported_fixed_slit_rows_are_one_line_errors(msa_sim, tmp_path):
    """Two rows for one fixed slit at a dither point (jwst: 'unsupported fixed slit configuration'): refused in
    one line naming the MSA metadata file, as is a file without its tables."""
    from webbflow.errors import InputFileError
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    refs = _wcs_refs(msa_sim.sim)

    def twice(rows):
        from astropy.io import fits

        (i,) = np.flatnonzero((rows["fixed_slit"] == "S200A1") & (rows["dither_point_index"] == 1))
        new = fits.BinTableHDU.from_columns(rows.columns, nrows=len(rows) + 1).data
        new[-1] = tuple(rows[i])
        return new

    img, msa = _msa_variant(msa_sim.sim, tmp_path, twice)
    with pytest.raises(InputFileError, match="unsupported fixed slit configuration") as e:
        run_step("assign_wcs", img, {}, references=refs)
    assert "\n" not in str(e.value) and msa.name in str(e.value)
