"""Associations from pools (issue #16): webbflow's generator against jwst 3.0's asn_generate.

The pools in ../shared/data/associations/pools are templates; as jwst's own tests do,
they are expanded with ``jwst.associations.tests.helpers.combine_pools`` and the
expanded pool is what both generators read. jwst runs once per pool per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import SHARED_DATA

POOLS = SHARED_DATA / "associations" / "pools"

# Pools whose every association webbflow makes as jwst does (default options)
MATCHING = [
    "jw00632_dups",                  # real program: WFS&C pairs sharing a product name
    "jw09505_20251216t202003_pool",  # real program: MIRI WFSS with direct images
    "jw87800_20180412T163456_pool",  # NIRISS WFSS with direct images
    "pool_001_candidates",           # observations, mosaics and discovered associations
    "pool_001_candidates_lower",
    "pool_002_image_miri",
    "pool_003_image_nircam",
    "pool_004_wfs",
    "pool_005_spec_niriss",          # SOSS time series with target acquisitions
    "pool_006_spec_nirspec",         # NIRSpec FS, MOS and IFU nods
    "pool_007_spec_miri",            # MRS, LRS with TA confirmation, discovered MRS
    "pool_008_exposerr",             # degraded exposures
    "pool_010_spec_nirspec_lv2bkg",  # spectra with background candidates
    "pool_013_coron_nircam",         # coronagraphy: PSF references, backgrounds, acquisitions
    "pool_017_spec_nirspec_lv2imprint",
    "pool_018_all_exptypes",         # every exposure type: FGS, AMI, imprints, MIRI coronagraphy ...
    "pool_019_niriss_wfss",
    "pool_020_00009_image_miri",
    "pool_021_tso",
    "pool_023_nirspec_msa_3nod",     # NIRSpec MOS nods
    "pool_023b_nirspec_msa_3nod_subpix",
    "pool_024_nirspec_fss_nods",     # NIRSpec fixed-slit nods
    "pool_024b_nirspec_fss_nods",
    "pool_024c_nirspec_fss_nods",
    "pool_025_nirspec_fss_nod_chop", # fixed-slit nods with background candidates
    "pool_033_wfs_jitter",           # real program: WFS&C with line-of-sight jitter
    "pool_duplicate",
]
# The two pools left out: mega_pool (jwst needs > 5 min: bench/asn_generate.py --mega) and
# jw93060_20150312T160130_pool (no ASN_CANDIDATE column: jwst itself fails on it).


@pytest.fixture(scope="session")
def expanded(tmp_path_factory):
    """name -> the expanded pool (written '|'-separated under the template's own file name)."""
    out = tmp_path_factory.mktemp("pools")
    cache = {}

    def get(name):
        if name not in cache:
            from jwst.associations.tests.helpers import combine_pools

            pool = combine_pools(str(POOLS / f"{name}.csv"))
            path = out / f"{name}.csv"
            pool.write(str(path), format="ascii", delimiter="|", overwrite=True)
            cache[name] = (path, pool)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def oracle(expanded):
    """name -> jwst's associations for the expanded pool: [(file name, dict), ...]."""
    cache = {}

    def get(name):
        if name not in cache:
            from jwst.associations.main import Main

            from parity import quiet_jwst

            _path, pool = expanded(name)
            with quiet_jwst():
                gen = Main.cli(["--dry-run"], pool=pool)
            cache[name] = [(a.asn_name + ".json", json.loads(a.dump(format="json")[1])) for a in gen.associations]
        return cache[name]

    return get


def _schema(level: int) -> dict:
    import jwst.associations.lib as lib

    name = "asn_schema_jw_level2b.json" if level == 2 else "asn_schema_jw_level3.json"
    return json.loads((Path(lib.__file__).parent / name).read_text())


def _ours(path):
    from webbflow.flows.asn import generate, read_pool

    return generate(read_pool(path))


def _strip(asn: dict) -> dict:
    # `constraints` is a repr (with memory addresses in jwst's), `code_version` names the producer
    return {k: v for k, v in asn.items() if k not in ("constraints", "code_version")}


@pytest.mark.parity
@pytest.mark.real
@pytest.mark.parametrize("name", MATCHING)
def test_generate_matches_jwst(name, expanded, oracle):
    import jsonschema
    from jwst.associations.lib.diff import compare_asn_lists

    path, _ = expanded(name)
    ours = _ours(path)
    theirs = oracle(name)
    assert len(ours) == len(theirs)
    # jwst's own comparator: products, members, types, candidate levels (it needs unique
    # product names: jwst itself gives two WFS&C pairs the same one in jw00632_dups)
    names = [a["products"][0]["name"] for _, a in theirs]
    if len(set(names)) == len(names):
        compare_asn_lists([_strip(a.to_dict()) for a in ours], [_strip(a) for _, a in theirs])
    # and beyond it: the same file names with the same contents, field for field
    ours_by_file = {a.filename: _strip(a.to_dict()) for a in ours}
    theirs_by_file = {f: _strip(a) for f, a in theirs}
    assert sorted(ours_by_file) == sorted(theirs_by_file)
    for fname, data in theirs_by_file.items():
        assert ours_by_file[fname] == data, fname
    for a in ours:
        jsonschema.validate(a.to_dict(), _schema(a.rule.level))


@pytest.mark.parity
@pytest.mark.real
def test_all_usable_pools_give_jwsts_873_associations(expanded, oracle):
    """The issue's count: 27 usable pools, 873 associations with default options."""
    assert len(MATCHING) == 27
    assert sum(len(oracle(n)) for n in MATCHING) == 873
    assert sum(len(_ours(expanded(n)[0])) for n in MATCHING) == 873


@pytest.mark.parity
@pytest.mark.real
def test_cli_writes_the_files_jwst_names(expanded, oracle, tmp_path):
    name = "pool_003_image_nircam"
    path, _ = expanded(name)
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "asn", "generate", str(path), "-o", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in tmp_path.glob("*_asn.json"))
    assert written == sorted(f for f, _ in oracle(name))
    image3 = [json.loads(p.read_text()) for p in tmp_path.glob("*image3*_asn.json")]
    assert {a["products"][0]["name"] for a in image3} == {
        "jw99009-o001_t001_nircam_clear-f090w", "jw99009-o001_t001_nircam_clear-f277w"}
    # the files load with jwst's reader
    from jwst.associations import load_asn

    for p in tmp_path.glob("*_asn.json"):
        with p.open() as fh:
            load_asn(fh)


@pytest.mark.parity
@pytest.mark.real
def test_pool_from_real_headers_matches_mkpool(tmp_path):
    from jwst.associations.mkpool import mkpool

    from webbflow.flows.asn.mkpool import make_pool

    files = sorted(str(p) for p in (SHARED_DATA / "real" / "nircam_coron_headers").glob("*.fits"))
    assert len(files) == 3
    theirs, ours = mkpool(files), make_pool(files)
    assert ours.colnames == theirs.colnames
    for col in theirs.colnames:
        assert [str(v) for v in ours[col]] == [str(v) for v in theirs[col]], col
    # and through the command line, written as jwst writes it
    out = tmp_path / "pool.csv"
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "asn", "pool", *files, "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    theirs.write(str(tmp_path / "jwst.csv"), format="ascii", delimiter="|")
    assert out.read_text() == (tmp_path / "jwst.csv").read_text()
    # and the associations of that pool are jwst's (coronagraphy: PSF images, and the full-frame
    # exposure also as a rate image); its members are absolute paths, as mkpool writes them
    from jwst.associations import AssociationPool
    from jwst.associations.main import Main

    from webbflow.flows.asn import generate, read_pool

    with_jwst = {a.asn_name + ".json": _strip(json.loads(a.dump()[1]))
                 for a in Main.cli(["--dry-run"], pool=AssociationPool.read(str(out))).associations}
    ours = {a.filename: _strip(a.to_dict()) for a in generate(read_pool(out, check_members=False))}
    assert len(ours) == 4 and ours == with_jwst


@pytest.mark.parity
@pytest.mark.parametrize("rule", ["DMS_Level3_Base", "DMSLevel2bBase"])
def test_from_list_matches_asn_from_list(rule, tmp_path):
    from jwst.associations import AssociationRegistry
    from jwst.associations.asn_from_list import asn_from_list as jwst_from_list

    from webbflow.flows.asn.fromlist import asn_from_list

    files = ["jw01_a_cal.fits", "jw01_b_cal.fits"]
    kind = AssociationRegistry(include_bases=True)[rule]
    theirs = json.loads(jwst_from_list(files, rule=kind, product_name="my_mosaic").dump()[1])
    ours = asn_from_list(files, product_name="my_mosaic", rule=rule)
    assert _strip(ours) == _strip(theirs)
    out = tmp_path / "asn.json"
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "asn", "from-list", "-o", str(out), "-r", rule,
                        "--product-name", "my_mosaic", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["products"] == theirs["products"]


GOOD_POOL = """filename|program|exp_type|asn_candidate|instrume
jw_00001_uncal.fits|99009|nrc_image|[('o001', 'observation')]|nircam
jw_00002_uncal.fits|99009|nrc_image|[('o001', 'observation')]|nircam
"""


@pytest.mark.parametrize("text, expected", [
    (GOOD_POOL.replace("exp_type|", "exptyp|"), "missing column 'EXP_TYPE'"),
    (GOOD_POOL.replace("nircam\njw_00002", "nircam|extra\njw_00002"), "line 2: cannot parse row"),
    (GOOD_POOL.replace("jw_00002", "jw_00001"), "line 3: duplicate FILENAME 'jw_00001_uncal.fits'"),
    (GOOD_POOL.replace("jw_00002_uncal", "../elsewhere/jw_00002_uncal"), "line 3: member "),
])
def test_bad_pool_is_one_line_naming_file_and_place(text, expected, tmp_path):
    pool = tmp_path / "bad_pool.csv"
    pool.write_text(text)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "asn", "generate", str(pool), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"webbflow: error: {pool}:") and expected in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_good_pool_generates(tmp_path):
    pool = tmp_path / "pool.csv"
    pool.write_text(GOOD_POOL.replace("|instrume", "|instrume|detector|filter|targetid|subarray")
                    .replace("|nircam", "|nircam|nrca1|f090w|1|full"))
    from webbflow.flows.asn import generate, read_pool

    asns = generate(read_pool(pool))
    assert sorted(a.filename for a in asns) == [
        "jw99009-o001_image2_00001_asn.json", "jw99009-o001_image2_00002_asn.json", "jw99009-o001_image3_00001_asn.json"]
    image3 = [a.to_dict() for a in asns if a.asn_type == "image3"][0]
    assert image3["products"][0]["name"] == "jw99009-o001_t001_nircam_f090w"
    assert [m["expname"] for m in image3["products"][0]["members"]] == ["jw_00001_cal.fits", "jw_00002_cal.fits"]


_CLI_REPORTING_PREFECT = ("import sys; from webbflow.flows.cli import main; rc = main(sys.argv[1:]); "
                          "print('prefect imported:', any(m.split('.')[0] == 'prefect' for m in sys.modules)); sys.exit(rc)")


@pytest.mark.slow
@pytest.mark.parametrize("tracked", [True, False], ids=["prefect-api", "no-api"])
def test_run_observation_from_raw_folder(tmp_path, monkeypatch, tracked):
    """`webbflow run observation DIR`: pool, associations, level 2 then level 3, one command; with
    a Prefect API one flow run, without one plain calls that neither import Prefect nor start a server."""
    from webbflow.refs.select import reset_crds_state
    from webbflow.refs.simulator import simulate

    sim = simulate(tmp_path / "raw", instrument="nircam", size=64, ngroups=4, nints=1, nexp=2, seed=5)
    monkeypatch.setenv("CRDS_PATH", str(sim.crds_path))
    reset_crds_state()
    out = tmp_path / "out"
    # step settings, flat as strun takes them, reach every stage that has the step: resample is
    # image2's and image3's
    env = dict(os.environ)
    if not tracked:
        env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    r = subprocess.run([sys.executable, "-c", _CLI_REPORTING_PREFECT, "run", "observation", str(tmp_path / "raw"),
                        "--output-dir", str(out), "--steps.resample.pixfrac=0.8"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"prefect imported: {tracked}" in r.stdout, r.stdout[-2000:]
    pool = tmp_path / "raw" / "raw_pool.csv"
    assert pool.exists()
    asns = sorted(p.name for p in (tmp_path / "raw").glob("jw01234-o001_image*_asn.json"))
    assert asns == ["jw01234-o001_image2_00001_asn.json", "jw01234-o001_image2_00002_asn.json",
                    "jw01234-o001_image3_00001_asn.json"]
    for u in sim.uncal:
        root = u.name[: -len("_uncal.fits")]
        assert (out / f"{root}_rate.fits").exists() and (out / f"{root}_cal.fits").exists()
    mosaic = json.loads((tmp_path / "raw" / asns[-1]).read_text())["products"][0]["name"]
    assert (out / f"{mosaic}_i2d.fits").exists() and (out / f"{mosaic}_cat.ecsv").exists()
    assert f"pool {pool}: " in r.stdout and "3 run, 0 skipped" in r.stdout
    for i2d in [out / f"{mosaic}_i2d.fits"] + [out / f"{u.name[: -len('_uncal.fits')]}_i2d.fits" for u in sim.uncal]:
        assert fits.getheader(i2d, "PRIMARY")["PIXFRAC"] == 0.8, i2d.name


def test_run_observation_refuses_an_unknown_step(tmp_path):
    """A step no pipeline has is refused in one line before anything runs."""
    (tmp_path / "raw").mkdir()
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "run", "observation", str(tmp_path / "raw"),
                        "--steps.resampel.pixfrac=0.8"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "unknown step 'resampel'" in r.stderr and "resample" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list((tmp_path / "raw").iterdir())


@pytest.mark.real
def test_observation_plan_orders_and_skips(expanded):
    """Level 2 before level 3; WFSS spectra after the level 3 that makes their catalogue;
    types webbflow cannot calibrate yet are skipped with the reason."""
    from webbflow.flows.observation import plan

    path, _ = expanded("jw09505_20251216t202003_pool")
    first, second, third, skipped = plan(_ours(path))
    assert {a.asn_type for a in first} == {"image2"} and len(first) == 4
    assert [a.asn_type for a in second] == ["image3"]
    assert third == []  # the MIRI WFSS spectra (spec2, spec3) cannot be calibrated yet ...
    assert sorted(skipped) == [f"jw09505-o001_spec{n}_0000{i}_asn.json" for n, i in
                               [(2, 1), (2, 2), (2, 3), (2, 4), (3, 1)]]
    assert all("spec2 has no branch for EXP_TYPE MIR_WFSS" in skipped[f] for f in skipped)


def test_asn_generate_flow_and_deployment(tmp_path):
    from webbflow.deployments import build_deployments
    from webbflow.deployments.flows import asn_generate

    (dep,) = build_deployments(names=["asn_generate"])
    assert dep.entrypoint == "webbflow.deployments.flows.asn_generate"
    pool = tmp_path / "pool.csv"
    pool.write_text(GOOD_POOL.replace("|instrume", "|instrume|detector|filter|targetid|subarray")
                    .replace("|nircam", "|nircam|nrca1|f090w|1|full"))
    written = asn_generate.fn(str(pool), str(tmp_path / "asns"))
    assert sorted(Path(p).name for p in written) == sorted(p.name for p in (tmp_path / "asns").glob("*_asn.json"))
    assert len(written) == 3


def test_unknown_candidate_id_is_one_line_naming_pool_and_id(tmp_path):
    pool = tmp_path / "pool.csv"
    pool.write_text(GOOD_POOL)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "asn", "generate", str(pool), "-i", "o999",
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"webbflow: error: {pool}:") and "'o999'" in lines[0] and "o001" in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


# The expectations hard-coded in jwst/associations/tests (test_level3_spectrographic.py,
# test_level2_basics.py), checked against webbflow's generator alone
@pytest.mark.real
@pytest.mark.parametrize("pool, cid, product, exptypes", [
    ("pool_006_spec_nirspec", "o001", "jw99009-o001_t001-{source_id}_nirspec_f100lp-g140m-{slit_name}-s200a2",
     {"science", "target_acquisition", "autowave"}),
    ("pool_006_spec_nirspec", "o002", "jw99009-o002_{source_id}_nirspec_f100lp-g140h",
     {"science", "target_acquisition", "autoflat", "autowave"}),
    ("pool_006_spec_nirspec", "o003", "jw99009-o003_t002_nirspec_g235h", {"science", "target_acquisition", "autowave"}),
    ("pool_007_spec_miri", "o007", "jw99009-o007_t001_miri", None),
    ("pool_007_spec_miri", "o008", "jw99009-o008_t001_miri", None),
])
def test_level3_spectrographic_expectations(pool, cid, product, exptypes, expanded):
    import re

    from webbflow.flows.asn import generate, read_pool
    from webbflow.flows.asn.rules import RULES

    asns = generate(read_pool(expanded(pool)[0]), rules=tuple(r for r in RULES if r.level == 3), candidate_ids=[cid])
    assert len(asns) == 1
    data = asns[0].to_dict()
    assert data["asn_type"] == "spec3"
    assert re.fullmatch(rf"jw99009-{cid}_spec3_\d{{5}}_asn\.json", asns[0].filename)
    assert data["products"][0]["name"] == product
    if exptypes is not None:
        assert {m["exptype"] for m in data["products"][0]["members"]} == exptypes


@pytest.mark.real
def test_level2_product_names_are_the_science_member(expanded):
    from webbflow.flows.asn import generate, read_pool
    from webbflow.flows.asn.rules import RULES

    asns = generate(read_pool(expanded("pool_002_image_miri")[0]), rules=tuple(r for r in RULES if r.level == 2))
    assert asns
    for asn in asns:
        for product in asn.to_dict()["products"]:
            science = [m for m in product["members"] if m["exptype"] == "science"]
            assert len(science) == 1
            assert science[0]["expname"].rsplit("_", 1)[0] == product["name"]


@pytest.mark.real
@pytest.mark.parametrize("pool, count, asn_type", [
    # jwst's TestLevel3Image, TestLevel3WFS and TestLevel3Spec (level-3 rules only)
    ("pool_002_image_miri", 1, "image3"),
    ("pool_003_image_nircam", 2, "image3"),
    ("pool_004_wfs", 42, "wfs-image3"),
    ("pool_006_spec_nirspec", 3, "spec3"),
])
def test_level3_counts_as_jwsts_tests(pool, count, asn_type, expanded):
    from webbflow.flows.asn import generate, read_pool
    from webbflow.flows.asn.rules import RULES

    asns = generate(read_pool(expanded(pool)[0]), rules=tuple(r for r in RULES if r.level == 3))
    assert len(asns) == count
    assert {a.asn_type for a in asns} == {asn_type}
    for asn in asns:
        for product in asn.to_dict()["products"]:
            science = [m["expname"] for m in product["members"] if m["exptype"] == "science"]
            assert science and all(n.rsplit("_", 1)[1].split(".")[0] in ("cal", "calints") for n in science)


# A pool merged from several programs and modes (as bench/asn_generate.py --merged, smaller):
# pool_002 has no EXPOSERR column, so its rows read 'null' there, as jwst reads any empty cell
MERGED_SMALL = ["pool_002_image_miri", "pool_008_exposerr", "pool_021_tso", "pool_007_spec_miri"]


@pytest.mark.parity
@pytest.mark.real
def test_merged_pool_matches_jwst(tmp_path):
    from jwst.associations import AssociationPool
    from jwst.associations.lib.diff import compare_asn_lists
    from jwst.associations.main import Main
    from jwst.associations.tests.helpers import combine_pools

    from parity import quiet_jwst
    from webbflow.flows.asn import generate, read_pool

    path = tmp_path / "merged_pool.csv"
    combine_pools([str(POOLS / f"{n}.csv") for n in MERGED_SMALL]).write(
        str(path), format="ascii", delimiter="|", overwrite=True)
    with quiet_jwst():
        theirs = Main.cli(["--dry-run"], pool=AssociationPool.read(str(path))).associations
    theirs = {a.asn_name + ".json": _strip(json.loads(a.dump(format="json")[1])) for a in theirs}
    ours = {a.filename: _strip(a.to_dict()) for a in generate(read_pool(path, allow_duplicates=True))}
    assert len(theirs) == 47
    compare_asn_lists(list(ours.values()), list(theirs.values()))
    assert sorted(ours) == sorted(theirs)
    for fname, data in theirs.items():
        assert ours[fname] == data, fname
    assert any(m["exposerr"] == "null" for a in ours.values() for p in a["products"] for m in p["members"])


# --- The rules no template pool exercises, on small pools written here: one row of a NIRSpec-
# like template, each exposure a few columns changed (as jwst's test pools are written)
_COLS = ("FILENAME|OBS_ID|PROGRAM|OBS_NUM|VISIT|VISIT_ID|VISITGRP|VISITYPE|SEQ_ID|ACT_ID|EXPOSURE|EXP_TYPE|"
         "INSTRUME|DETECTOR|CHANNEL|TARGETID|TARGPROP|TEMPLATE|PNTGTYPE|EXPSPCIN|DITHPTIN|MOSTILNO|FILTER|PUPIL|"
         "PATTTYPE|NUMDTHPT|PATT_NUM|SUBARRAY|GRATING|FXD_SLIT|BAND|ASN_CANDIDATE|BKGDTARG|IS_IMPRT|IS_PSF|"
         "TSOVISIT|OPMODE|LAMP").split("|")
_BASE = dict(zip(_COLS, (
    "x|V99009001001P0000000002101|99009|1|1|99009001001|2|prime_targeted_fixed|1|1|1|MIR_IMAGE|"
    "MIRI|MIRIMAGE|NULL|1|M-33|MIRI Imaging|SCIENCE|1|1|1|F560W|NULL|"
    "NULL|NULL|NULL|FULL|NULL|NULL|NULL|[('o001', 'observation')]|F|F|F|"
    "F|NULL|NULL").split("|")))
_LRS = dict(EXP_TYPE="MIR_LRS-FIXEDSLIT", FILTER="P750L", PATTTYPE="ALONG-SLIT-NOD", NUMDTHPT="2")
_MRS = dict(EXP_TYPE="MIR_MRS", DETECTOR="MIRIFUSHORT", CHANNEL="12", BAND="SHORT", FILTER="NULL", PATTTYPE="4-POINT")
_CORON = dict(EXP_TYPE="NRC_CORON", INSTRUME="NIRCAM", DETECTOR="NRCA2", CHANNEL="SHORT", FILTER="F210M",
              PUPIL="MASKRND")
_SOSS = dict(EXP_TYPE="NIS_SOSS", INSTRUME="NIRISS", DETECTOR="NIS", FILTER="CLEAR", PUPIL="GR700XD",
             SUBARRAY="SUBSTRIP256")
_LAMP = dict(EXP_TYPE="NRS_LAMP", INSTRUME="NIRSPEC", DETECTOR="NRS1", FILTER="OPAQUE")
_PAR = dict(INSTRUME="NIRISS", DETECTOR="NIS", TARGETID="NULL")
_NRC = dict(EXP_TYPE="NRC_IMAGE", INSTRUME="NIRCAM", DETECTOR="NRCA1", FILTER="F090W")


def _par(obs, **kw):
    return dict(_PAR, OBS_NUM=str(obs), ASN_CANDIDATE=f"[('o00{obs}', 'observation'), ('c1000', 'direct_image')]", **kw)


# case -> (rules it must exercise, exposures)
RULE_CASES = {
    # (a third position: jwst keeps the backgrounds of one position, the first background's)
    "lrs_slit_nods": ({"Asn_Lv2MIRLRSFixedSlitNod", "Asn_Lv3SpectralTarget"}, [
        dict(_LRS, PATT_NUM="1"), dict(EXP_TYPE="MIR_TACONFIRM", FILTER="F1500W"), dict(_LRS, PATT_NUM="2"),
        dict(_LRS, PATT_NUM="1", EXPOSURE="2"), dict(_LRS, PATT_NUM="2", EXPOSURE="2"),
        dict(_LRS, PATT_NUM="3", EXPOSURE="3")]),
    "nirspec_lamps": ({"Asn_Lv2NRSLAMPImage", "Asn_Lv2NRSLAMPSpectral"}, [
        dict(_LAMP, GRATING="MIRROR", OPMODE="IMAGE", LAMP="FLAT1"),
        dict(_LAMP, GRATING="G140H", OPMODE="FIXEDSLIT", LAMP="FLAT1", FXD_SLIT="S200A1"),
        dict(_LAMP, GRATING="G235M", OPMODE="IFU", LAMP="LINE2", DETECTOR="NRS2"),  # no light on NRS2
        dict(_LAMP, GRATING="G235M", OPMODE="IFU", LAMP="LINE2"),
        dict(_LAMP, GRATING="PRISM", OPMODE="MSASPEC", LAMP="LINE1")]),            # no MSA file
    "wfss_parallel": ({"Asn_Lv2WFSSParallel"}, [
        _par(1, EXP_TYPE="NIS_IMAGE", FILTER="CLEAR", PUPIL="F150W"),
        _par(2, EXP_TYPE="NIS_WFSS", FILTER="GR150R", PUPIL="F150W"),
        _par(3, EXP_TYPE="NIS_WFSS", FILTER="GR150C", PUPIL="F150W", EXPOSURE="2")]),
    # background images first: they open the science's image2 association (and so come first
    # in it); any BKGDTARG value makes a background image
    "image_background": ({"Asn_Lv3ImageBackground"}, [
        dict(BKGDTARG="T", TARGETID="2"), dict(BKGDTARG="T", TARGETID="2", EXPOSURE="2"), dict(), dict(EXPOSURE="2"),
        dict(FILTER="F770W", EXPOSURE="3"), dict(BKGDTARG="Y", TARGETID="3", FILTER="F770W")]),
    "mrs_background": ({"Asn_Lv3MIRMRSBackground"}, [
        dict(_MRS), dict(_MRS, EXPOSURE="2"), dict(_MRS, BKGDTARG="T", TARGETID="2"),
        dict(_MRS, BKGDTARG="T", TARGETID="2", EXPOSURE="2")]),
    "coron_as_image": ({"Asn_Lv3NRCCoronImage"}, [
        dict(_CORON), dict(_CORON, EXPOSURE="2"), dict(_CORON, DETECTOR="NRCA1"),
        dict(_CORON, IS_PSF="T", TARGETID="2"),
        dict(_CORON, DETECTOR="NRCA5", CHANNEL="LONG", FILTER="F335M")]),
    "soss": ({"Asn_Lv3SlitlessSpectral", "Asn_Lv3SpectralTarget"}, [
        dict(_SOSS), dict(_SOSS, EXPOSURE="2"),
        *(dict(_SOSS, PATTTYPE="2-POINT-NOD", OBS_NUM="2", PATT_NUM=n, ASN_CANDIDATE="[('o002', 'observation')]")
          for n in "12")]),
    # a row without an optional value (PUPIL) joins every mosaic that agrees on the rest, also
    # those opened after it, and an association opened without it takes the first value met
    "missing_optional_key": ({"Asn_Lv3Image"}, [
        dict(_NRC, PUPIL="NULL"), dict(_NRC, PUPIL="CLEAR"), dict(_NRC, PUPIL="F162M"),
        dict(_NRC, PUPIL="NULL", EXPOSURE="2")]),
}


def _write_pool(path: Path, exposures: list[dict]) -> Path:
    lines = ["|".join(_COLS)]
    for i, changes in enumerate(exposures, 1):
        row = {**_BASE, "FILENAME": f"jw99009001001_0210{i % 10}_{i:05d}_mirimage_uncal.fits", **changes}
        lines.append("|".join(row[c] for c in _COLS))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_jwst_rule_has_a_webbflow_rule():
    """jwst's 44 rules; its Asn_Lv3ACQ_Reprocess only hands acquisitions on to the others
    (webbflow: Rule.with_acquisitions), so it has no rule of its own."""
    from jwst.associations import AssociationRegistry

    from webbflow.flows.asn.rules import RULES

    assert {r.name for r in RULES} == set(AssociationRegistry().keys()) - {"Asn_Lv3ACQ_Reprocess"}
    assert all(r.description for r in RULES if r.name in set().union(*(c[0] for c in RULE_CASES.values())))


@pytest.mark.parity
@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_rule_cases_match_jwst(case, tmp_path):
    import jsonschema
    from jwst.associations import AssociationPool
    from jwst.associations.lib.diff import compare_asn_lists
    from jwst.associations.main import Main

    from parity import quiet_jwst
    from webbflow.flows.asn import generate, read_pool

    rules, exposures = RULE_CASES[case]
    path = _write_pool(tmp_path / f"{case}_pool.csv", exposures)
    with quiet_jwst():
        theirs = Main.cli(["--dry-run"], pool=AssociationPool.read(str(path))).associations
    theirs = {a.asn_name + ".json": _strip(json.loads(a.dump(format="json")[1])) for a in theirs}
    asns = generate(read_pool(path))
    ours = {a.filename: _strip(a.to_dict()) for a in asns}
    assert rules <= {a["asn_rule"].split("_", 1)[1] for a in ours.values()}
    compare_asn_lists(list(ours.values()), list(theirs.values()))
    assert sorted(ours) == sorted(theirs)
    for fname, data in theirs.items():
        assert ours[fname] == data, fname
    for a in asns:
        jsonschema.validate(a.to_dict(), _schema(a.rule.level))


def test_missing_optional_key_matches_anything(tmp_path):
    """jwst's rule for an optional constraint (here PUPIL of an image mosaic): a row without
    it matches any value, in the associations open when it is met and in those opened after
    it; an association opened by such a row takes the first value a later row brings."""
    from webbflow.flows.asn import generate, read_pool

    path = _write_pool(tmp_path / "pool.csv", RULE_CASES["missing_optional_key"][1])
    image3 = {a.product_name(): [m["expname"] for m in a.members()]
              for a in generate(read_pool(path)) if a.asn_type == "image3"}
    no_pupil, clear, f162m, no_pupil2 = (f"jw99009001001_0210{i}_0000{i}_mirimage_cal.fits" for i in range(1, 5))
    assert image3 == {
        # opened by the row without PUPIL, fixed to CLEAR by the next; the last row joins it
        "jw99009-o001_t001_nircam_clear-f090w": [no_pupil, clear, no_pupil2],
        # opened by F162M: the rows without PUPIL join it too, the earlier one after its own rows
        "jw99009-o001_t001_nircam_f090w-f162m": [f162m, no_pupil2, no_pupil],
    }


# An ami3 and a coron3 association that make the same product name and share a PSF file
# (jwst's test pools reuse file names across exposure types): jwst takes two member lists
# of different lengths whose common exposures agree in type for a subset, and keeps only the
# longer one, here the coron3 association (mega_pool: six discovered ami3 associations)
_PSF = "jw99009002001_02101_00001_nrca2_uncal.fits"
_AMI = dict(_CORON, EXP_TYPE="NIS_AMI", OBS_NUM="3", ASN_CANDIDATE="[('o003', 'observation')]")
SHARED_PRODUCT = [
    dict(_CORON), dict(_CORON, EXPOSURE="2"),
    dict(_CORON, IS_PSF="T", TARGETID="2", OBS_NUM="2", ASN_CANDIDATE="[('o002', 'observation')]", FILENAME=_PSF),
    dict(_AMI), dict(_AMI, IS_PSF="T", TARGETID="2", OBS_NUM="2", ASN_CANDIDATE="[('o002', 'observation')]",
                     FILENAME=_PSF),
]


@pytest.mark.parity
def test_same_product_keeps_the_longer_association_as_jwst(tmp_path):
    from jwst.associations import AssociationPool
    from jwst.associations.lib.diff import compare_asn_lists
    from jwst.associations.main import Main

    from parity import quiet_jwst
    from webbflow.flows.asn import generate, read_pool

    path = _write_pool(tmp_path / "shared_product_pool.csv", SHARED_PRODUCT)
    with quiet_jwst():
        theirs = Main.cli(["--dry-run"], pool=AssociationPool.read(str(path))).associations
    theirs = {a.asn_name + ".json": _strip(json.loads(a.dump(format="json")[1])) for a in theirs}
    ours = {a.filename: _strip(a.to_dict()) for a in generate(read_pool(path, allow_duplicates=True))}
    assert "jw99009-a3001_coron3_00001_asn.json" in ours and not any("_ami3_" in f for f in ours)
    compare_asn_lists(list(ours.values()), list(theirs.values()))
    assert sorted(ours) == sorted(theirs)
    for fname, data in theirs.items():
        assert ours[fname] == data, fname
