"""calwebb_spec3 against jwst 3.0 on the two real NIRSpec MSA PRISM slits (one source, two nods).

Each slit is wrapped as the one slit of a MultiSlitModel cal exposure, as Stage 2 writes them for
MSA data; a spec3 association of the two is run by jwst's Spec3Pipeline (from the association's
folder, saving its products as strun does) and by ``webbflow run spec3``.  extract_1d runs with
override_extract1d/apcorr/psf N/A and apply_apcorr=false on both sides; the CRDS cache is the
real 2019 rules.  jwst's pipeline prefetch would ask those rules for reference types they do not
know (specprofile): it is turned off, each step still selects its own references.

Checked: the same product names (exp_to_source's per-source names, s000000933), the same
extensions, every array within rtol 1e-4 for >= 99.9 % of its elements, DQ identical, and the
header keywords as jwst writes them, and the s2d's HDRTAB table value for value.
A second run with a second source whose slits have no WCS: that source is reported by name and
leaves no product, the first source's products are all written.  master_background, alone,
against jwst's step on the slits with a background x1d (jwst and webbflow give MOS slits in a
MultiSlitModel no background, so the step is compared on SlitModels, where it subtracts).
"""

from __future__ import annotations

import json
import warnings
from contextlib import chdir
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import CRDS_RULES, REAL
from parity import compare_arrays, compare_dq, jwst_offline, quiet_jwst

from webbflow import models

pytestmark = [pytest.mark.parity, pytest.mark.real]

CONTEXT = "jwst_0541.pmap"
SLITS = sorted((REAL / "nirspec_msa_prism_slits").glob("*.fits"))
ASN = "jw01345-o062_20230101t000000_spec3_00001_asn.json"
TEMPLATE = "jw01345-o062_{source_id}_nirspec_clear-prism"
SOURCE = "jw01345-o062_s000000933_nirspec_clear-prism"
NA = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}
SUFFIXES = ("cal", "crf", "s2d", "x1d")
# keywords that name the run rather than the data: when, which software, which file
RUN_KEYWORDS = {"DATE", "FILENAME", "CAL_VER", "CAL_VCS", "CRDS_VER", "CHECKSUM", "DATASUM", ""}


def _cal_name(slit: Path) -> str:
    return slit.name.split("_phot")[0] + "_cal.fits"


def _exposures(extra_source: bool = False) -> list:
    """The two real slits as MultiSlitModel cal exposures; ``extra_source`` adds to each a second
    slit of another source (934) that has no WCS."""
    out = []
    for p in SLITS:
        slit = models.open(p)
        exposure = models.MultiSlitModel(slit)
        if extra_source:
            other = slit.copy()
            other.source_id, other.source_name, other.name = 934, "1345_934", "139"
            other.meta.wcs = None
            exposure.slits.append(other)
        exposure.meta.filename = _cal_name(p)
        out.append(exposure)
    return out


def _association(folder: Path, exposures) -> Path:
    for m in exposures:
        m.save(folder / m.meta.filename)
    path = folder / ASN
    path.write_text(json.dumps({
        "asn_id": "o062", "asn_pool": "jw01345_20230101t000000_pool.csv", "asn_type": "spec3",
        "asn_rule": "candidate_Asn_Lv3MOS", "program": "01345", "target": "1",
        "products": [{"name": TEMPLATE, "members": [{"expname": m.meta.filename, "exptype": "science"}
                                                    for m in exposures]}]}))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """calwebb_spec3 on the same association, once by jwst and once by webbflow, each in its folder."""
    from jwst.pipeline import Spec3Pipeline

    from webbflow.flows.calwebb_spec3 import run_spec3

    theirs = tmp_path_factory.mktemp("spec3-jwst")
    ours = tmp_path_factory.mktemp("spec3-webbflow")
    asn_j = _association(theirs, _exposures())
    asn_o = _association(ours, _exposures())
    with jwst_offline(CRDS_RULES, CONTEXT):
        warnings.simplefilter("ignore")
        with quiet_jwst(), chdir(theirs):
            step = Spec3Pipeline(steps={"extract_1d": NA})
            step.prefetch_references = False
            step.save_results = True
            step.output_dir = str(theirs)
            step.run(str(asn_j))
        written = run_spec3(asn_o, output_dir=ours, steps={"extract_1d": NA})
    return theirs, ours, written


def test_spec3_products_are_named_as_jwst_names_them(runs):
    theirs, ours, written = runs
    inputs = {_cal_name(p) for p in SLITS}
    names = {p.name for p in theirs.glob("*.fits")} - inputs
    assert names == {f"{SOURCE}_{s}.fits" for s in SUFFIXES}
    assert {Path(p).name for p in written} == names
    assert {p.name for p in ours.glob("*.fits")} - inputs == names


def _headers_agree(ours: fits.Header, theirs: fits.Header, where: str) -> None:
    only_theirs = sorted(k for k in theirs if k not in ours and k not in RUN_KEYWORDS)
    assert not only_theirs, f"{where}: keywords jwst writes and we do not: {only_theirs}"
    differ = {}
    for k in theirs:
        if k in RUN_KEYWORDS or k not in ours:
            continue
        a, b = ours[k], theirs[k]
        if isinstance(b, float) and isinstance(a, float):
            if not np.isclose(a, b, rtol=1e-12, atol=0):
                differ[k] = (a, b)
        elif a != b or type(a) is not type(b):
            differ[k] = (a, b)
    assert not differ, f"{where}: keywords that differ: {differ}"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_spec3_product_matches_jwst(runs, suffix):
    theirs, ours, _ = runs
    name = f"{SOURCE}_{suffix}.fits"
    with fits.open(ours / name) as ho, fits.open(theirs / name) as ht:
        assert ho[0].header["DATAMODL"] == ht[0].header["DATAMODL"]
        assert [(h.name, h.ver) for h in ho] == [(h.name, h.ver) for h in ht]
        for h in ht:
            if h.name == "ASDF":
                continue
            if h.name == "HDRTAB":  # the s2d's table of every input's keywords, value for value
                from test_products_whole import compare_data, compare_headers

                problems: list[str] = []
                compare_headers(f"{name}[HDRTAB]", ho["HDRTAB"].header, h.header, problems, hdu="HDRTAB")
                compare_data(f"{name}[HDRTAB]", ho["HDRTAB"].data, h.data, problems)
                assert not problems, "\n".join(problems)
                continue
            mine = ho[h.name, h.ver]
            where = f"{name}[{h.name},{h.ver}]"
            _headers_agree(mine.header, h.header, where)
            if h.data is None:
                continue
            if h.data.dtype.names:  # the x1d table
                assert mine.data.dtype.names == h.data.dtype.names
                for col in h.data.dtype.names:
                    a, b = np.asarray(mine.data[col]), np.asarray(h.data[col])
                    if col == "DQ":
                        assert compare_dq(f"{where} {col}", a, b).fraction == 1.0
                    else:
                        ag = compare_arrays(f"{where} {col}", a, b, rtol=1e-4)
                        assert ag.fraction >= 0.999, str(ag)
            elif h.name == "DQ":
                ag = compare_dq(where, mine.data, h.data)
                assert ag.fraction == 1.0, str(ag)
            else:
                assert mine.data.shape == h.data.shape, where
                ag = compare_arrays(where, mine.data, h.data, rtol=1e-4)
                assert ag.fraction >= 0.999, str(ag)


def test_spec3_source_products_open_in_stdatamodels(runs):
    from stdatamodels.jwst import datamodels as dm

    _, ours, _ = runs
    for suffix, cls in (("cal", "MultiExposureModel"), ("crf", "MultiExposureModel"), ("s2d", "SlitModel"),
                        ("x1d", "MultiSpecModel")):
        with dm.open(ours / f"{SOURCE}_{suffix}.fits") as m:
            assert type(m).__name__ == cls
            if cls == "MultiExposureModel":
                # one slit per exposure, each with its exposure's file name and its own WCS
                assert [e.meta.filename for e in m.exposures] == [_cal_name(p) for p in SLITS]
                assert all(e.source_id == 933 and e.meta.wcs is not None for e in m.exposures)
    crf = models.open(ours / f"{SOURCE}_crf.fits")
    assert all(e.meta.cal_step.outlier_detection == "COMPLETE" for e in crf.exposures)


def test_spec3_reports_a_failed_source_and_keeps_the_other(tmp_path):
    """Source 934's slits have no WCS: it is named in one error line, leaves no file, and source 933's
    products are all written (the two sources run side by side: on threads with no Prefect API, as subflows with one)."""
    from webbflow.errors import WebbflowError
    from webbflow.flows.calwebb_spec3 import SourcesFailed, run_spec3

    asn = _association(tmp_path, _exposures(extra_source=True))
    with jwst_offline(CRDS_RULES, CONTEXT), pytest.raises(SourcesFailed) as err:
        run_spec3(asn, output_dir=tmp_path / "out", steps={"extract_1d": NA})
    message = str(err.value)
    assert isinstance(err.value, WebbflowError) and "\n" not in message
    assert "1 of 2 sources failed" in message
    assert "jw01345-o062_s000000934_nirspec_clear-prism" in message and "slit 139 (source 934) has no WCS" in message
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{SOURCE}_{s}.fits" for s in SUFFIXES)
    x1d = models.open(tmp_path / "out" / f"{SOURCE}_x1d.fits")
    assert np.isfinite(x1d.spec[0].spec_table["FLUX"]).sum() > 100


def test_master_background_matches_jwst(tmp_path):
    """master_background of a background x1d (one real slit's spectrum, from a background target)
    subtracted from the two real slits given as SlitModels: SCI and DQ equal to jwst's step."""
    import shutil

    from jwst.master_background import MasterBackgroundStep

    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    bkg_name = "jw01345062001_03101_00003_nrs2_x1d.fits"
    for p in SLITS:
        shutil.copy(p, tmp_path / p.name)
        (tmp_path / p.name).chmod(0o644)
    with jwst_offline(CRDS_RULES, CONTEXT):
        x1d = run_step("extract_1d", models.open(SLITS[1]), NA).model
        x1d.meta.observation.bkgdtarg = True
        x1d.save(tmp_path / bkg_name)
        (tmp_path / "bkg_asn.json").write_text(json.dumps({
            "asn_id": "o062", "asn_pool": "pool", "asn_type": "spec3", "asn_rule": "test", "program": "01345",
            "target": "1", "products": [{"name": "bkg", "members": [{"expname": p.name, "exptype": "science"} for p in SLITS]
                                         + [{"expname": bkg_name, "exptype": "background"}]}]}))
        with quiet_jwst(), chdir(tmp_path):
            theirs = MasterBackgroundStep.call("bkg_asn.json")
        res = run_step("master_background", [models.open(p) for p in SLITS] + [models.open(tmp_path / bkg_name)], {})
    assert res.status == "COMPLETE" and len(res.model) == len(theirs) == 2
    for mine, jw, original in zip(res.model, theirs, SLITS):
        assert mine.meta.cal_step.master_background == jw.meta.cal_step.master_background == "COMPLETE"
        ag = compare_arrays("SCI", mine.data, jw.data, rtol=1e-4)
        assert ag.fraction >= 0.999, str(ag)
        assert compare_dq("DQ", mine.dq, jw.dq).fraction == 1.0
        # the background was really subtracted
        assert np.nanmax(np.abs(models.open(original).data - mine.data)) > 0.1

    # the step alone on the association, as `strun master_background bkg_asn.json --save_background=True`
    # runs it: the background members are read too; each science member gives
    # <member>_masterbackgroundstep.fits and <member>_<asn_id>_masterbg2d.fits (its 2-D background),
    # and the master spectrum is <first background>_<asn_id>_masterbg1d.fits (jwst's names)
    from webbflow.flows.cli import main

    with jwst_offline(CRDS_RULES, CONTEXT):
        assert main(["run", "master_background", str(tmp_path / "bkg_asn.json"), "--output-dir", str(tmp_path / "w"),
                     "--save_background=True"]) == 0
    written = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert written == sorted([f"{p.stem}_masterbackgroundstep.fits" for p in SLITS]
                             + [f"{p.stem}_o062_masterbg2d.fits" for p in SLITS]
                             + ["jw01345062001_03101_00003_nrs2_o062_masterbg1d.fits"])
    for original, jw in zip(SLITS, theirs):
        with models.open(tmp_path / "w" / f"{original.stem}_masterbackgroundstep.fits") as mine:
            assert mine.meta.cal_step.master_background == "COMPLETE"
            assert compare_arrays("SCI", mine.data, jw.data, rtol=1e-4).fraction >= 0.999
        with models.open(tmp_path / "w" / f"{original.stem}_o062_masterbg2d.fits") as bkg2d, models.open(original) as raw:
            # what was subtracted is what the 2-D background holds
            subtracted = raw.data - jw.data
            ok = np.isfinite(subtracted)
            assert ok.sum() > 1000 and np.allclose(bkg2d.data[ok], subtracted[ok], rtol=1e-4, atol=1e-6)
    with models.open(tmp_path / "w" / "jw01345062001_03101_00003_nrs2_o062_masterbg1d.fits") as master:
        assert type(master).__name__ == "MultiCombinedSpecModel"
        assert np.isfinite(master.spec[0].spec_table["SURF_BRIGHT"]).sum() > 100


@pytest.mark.parametrize("exp_type,source_name,source_id,slit", [
    ("NRS_MSASPEC", "1345_933", 933, "138"),
    ("NRS_MSASPEC", "1345_BKG17", 17, "140"),
    ("NRS_MSASPEC", "1345_-42", -42, "141"),
    ("NRS_FIXEDSLIT", "3_S200A1", 1, "S200A1"),
    ("NRS_FIXEDSLIT", None, 2, "S1600A1"),
])
def test_source_product_names_are_jwsts(exp_type, source_name, source_id, slit):
    """Per-source product names from exp_to_source's keys, against jwst's own naming functions."""
    from jwst.associations.lib.rules_level3_base import format_product
    from jwst.exp_to_source import multislit_to_container
    from jwst.pipeline import Spec3Pipeline
    from stdatamodels.jwst import datamodels as dm

    from webbflow.tasks.exp_to_source import exp_to_source, source_product_name

    template = "jw01345-o062_{source_id}_nirspec_{slit_name}_clear-prism" if exp_type == "NRS_FIXEDSLIT" \
        else "jw01345-o062_{source_id}_nirspec_clear-prism"
    theirs_in, ours_in = [], []
    for k in range(2):  # two exposures of the same slit
        s = dm.SlitModel(np.zeros((3, 4), np.float32))
        s.name, s.source_id, s.meta.exposure.type = slit, source_id, exp_type
        if source_name:
            s.source_name = source_name
        m = dm.MultiSlitModel()
        m.meta.exposure.type = exp_type
        m.meta.instrument.name = "NIRSPEC"
        m.slits.append(s)
        theirs_in.append(m)
        ours = models.MultiSlitModel()
        ours.meta.exposure.type = exp_type
        slit_model = models.SlitModel()
        slit_model.data = np.zeros((3, 4), np.float32)
        slit_model.name, slit_model.source_id, slit_model.source_name = slit, source_id, source_name
        ours.slits.append(slit_model)
        ours_in.append(ours)
    (key_j, container), = multislit_to_container(theirs_in).items()
    if exp_type == "NRS_FIXEDSLIT":
        expected = format_product(template, source_id=f"s{key_j:>09s}",
                                  slit_name=Spec3Pipeline._create_nrsfs_slit_name(None, container))
    else:
        expected = format_product(template, source_id=Spec3Pipeline._create_nrsmos_source_id(None, container))
    (key_o, source), = exp_to_source(ours_in).items()
    assert key_o == key_j and len(source.exposures) == 2
    assert source_product_name(template, exp_type, source.exposures, key_o) == expected


# Modules a spec3 run on slits never needs, each tens of MiB and a second or more of start-up:
# numba (detector1's kernels and the shared row kernels), the Prefect client (tracked runs only),
# plotting, Dask and the imaging-only libraries.  One of them imported at a module's top, where a
# spec3 step reaches it, costs every spec3 run its memory and time (once, numba: +42 MiB).
HEAVY = ("numba", "prefect", "matplotlib", "dask", "distributed", "photutils", "tweakwcs", "pandas")
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print("LOADED", json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr))
from webbflow.flows.cli import main
sys.argv = ["webbflow", *sys.argv[1:]]
main()
"""


def test_spec3_run_imports_nothing_it_does_not_use(tmp_path):
    """``webbflow run calwebb_spec3`` on the two real slits, in a fresh process: the products are
    written and none of the heavy libraries above was imported on the way."""
    import os
    import subprocess
    import sys

    asn = _association(tmp_path, _exposures())
    env = dict(os.environ, CRDS_PATH=str(CRDS_RULES), CRDS_CONTEXT=CONTEXT, CRDS_MODE="local")
    env.pop("PREFECT_API_URL", None)
    args = [f"--steps.extract_1d.{k}={'false' if v is False else v}" for k, v in NA.items()]
    r = subprocess.run([sys.executable, "-c", _PROBE, "run", "calwebb_spec3", asn.name, *args],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name for p in tmp_path.glob(f"{SOURCE}_*.fits")} == {f"{SOURCE}_{s}.fits" for s in SUFFIXES}
    line = next(x for x in r.stderr.splitlines() if x.startswith("LOADED "))
    loaded = set(json.loads(line.removeprefix("LOADED ")))
    assert not loaded & set(HEAVY), f"spec3 imported {sorted(loaded & set(HEAVY))}"
