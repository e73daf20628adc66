"""``webbflow run`` on any association, in any mode, from raw files (issues #17 and #21).

A member of a level-2 or level-3 association that is not made yet goes uncal -> rate or rateints ->
cal or calints through its own level-2 pipeline (image2 or spec2, per integration or not, as jwst's
association rules choose), and a level-3 product goes to the Stage 3 flow of its asn_type.

The routing rules are checked on hand-made headers and associations (fast). One simulated
coronagraphic observation (``webbflow simulate --instrument nircam --exp-type NRC_CORON``, 3 groups,
2 integrations, a target and two PSF references) is then run three ways: ``webbflow run
calwebb_coron3 ASN`` from the uncal files; stage by stage as a jwst user would (detector1 on each
uncal, image2 on each level-2 association, then coron3 on the calints); and ``webbflow run
observation`` on the raw files alone.  The products must be the same, file for file.  The imaging
TSO (tso3) and WFS&C (wfs-image3) end-to-end runs go through the same association flow in
tests/test_tso_image.py and tests/test_wfs.py, where they are compared with jwst.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits

from webbflow import models
from webbflow.errors import InputFileError
from webbflow.flows import association as A


# ---------------------------------------------------------------------------
# the route of a member: its level-2 pipeline and its rate or rateints input


@pytest.mark.parametrize("exp_type, kw, expected", [
    ("NRC_IMAGE", {}, ("image2", "image2", "rate", "cal")),
    ("NRC_IMAGE", {"visitype": "PRIME_WFSC_SENSING_ONLY"}, ("image2", "wfs-image2", "rate", "cal")),
    ("NRC_TSIMAGE", {}, ("image2", "tso-image2", "rateints", "calints")),
    ("NRC_CORON", {"subarray": "SUB320A335R"}, ("image2", "image2", "rateints", "calints")),
    ("NRC_CORON", {"subarray": "FULL"}, ("image2", "image2", "rate", "cal")),  # jwst's Asn_Lv2CoronAsRate
    ("MIR_LYOT", {}, ("image2", "image2", "rateints", "calints")),
    ("NIS_AMI", {}, ("image2", "image2", "rateints", "calints")),
    ("MIR_LRS-FIXEDSLIT", {}, ("spec2", "spec2", "rate", "cal")),
    ("MIR_LRS-SLITLESS", {"tsovisit": True}, ("spec2", "tso-spec2", "rateints", "calints")),
    ("NRC_TSGRISM", {}, ("spec2", "tso-spec2", "rateints", "calints")),
    ("NRC_WFSS", {}, ("spec2", "spec2", "rate", "cal")),
    ("NIS_SOSS", {"tsovisit": "T"}, ("spec2", "tso-spec2", "rateints", "calints")),
    # what the association names is what strun reads
    ("NRC_IMAGE", {"named": "jw01_calints.fits"}, ("image2", "image2", "rateints", "calints")),
    ("NIS_AMI", {"named": "jw01_rate.fits"}, ("image2", "image2", "rate", "cal")),
    ("NRC_IMAGE", {"asn_type": "tso3"}, ("image2", "image2", "rateints", "calints")),
])
def test_level2_route_follows_jwsts_rules(exp_type, kw, expected):
    r = A.level2_route(exp_type, **kw)
    assert (r.pipeline, r.asn_type, r.rate, r.cal) == expected


def _header_file(path: Path, **cards) -> Path:
    hdu = fits.PrimaryHDU()
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(path)
    return path


def test_a_members_work_and_earliest_file_follow_its_route(tmp_path):
    lrs = _header_file(tmp_path / "jw01_rate.fits", EXP_TYPE="MIR_LRS-FIXEDSLIT")
    tso = _header_file(tmp_path / "jw02_uncal.fits", EXP_TYPE="MIR_LRS-SLITLESS", TSOVISIT=True)
    img = _header_file(tmp_path / "jw03_uncal.fits", EXP_TYPE="NRC_TSIMAGE")
    assert A.work_needed(lrs) == ["spec2"]
    assert A.work_needed(tso) == ["detector1", "spec2"]
    assert A.work_needed(img) == ["detector1", "image2"]
    assert A.route_for(tso).rate == "rateints" and A.route_for(img).asn_type == "tso-image2"
    # a level-3 member named calints is made from its rateints (then uncal), never from a rate
    _header_file(tmp_path / "jw02_rate.fits", EXP_TYPE="MIR_LRS-SLITLESS")
    assert A.earliest_available(tmp_path / "jw02_calints.fits") == tso
    rateints = _header_file(tmp_path / "jw02_rateints.fits", EXP_TYPE="MIR_LRS-SLITLESS")
    assert A.earliest_available(tmp_path / "jw02_calints.fits") == rateints
    assert A.earliest_available(tmp_path / "jw02_x1d.fits") == tmp_path / "jw02_rate.fits"
    with pytest.raises(InputFileError, match=r"jw09_calints.fits: no such file \(nor its _rateints or _uncal"):
        A.earliest_available(tmp_path / "jw09_calints.fits")


def _asn(path: Path, asn_type: str, products: list, pool="pool.csv", asn_id="o001") -> Path:
    rule = "candidate_Asn_Lv2Spec" if asn_type.endswith("2") else "candidate_Asn_Lv3"
    doc = {"asn_type": asn_type, "asn_rule": rule, "asn_id": asn_id, "asn_pool": pool,
           "products": [{"name": name, "members": [{"expname": e, "exptype": t} for e, t in members]}
                        for name, members in products]}
    path.write_text(json.dumps(doc))
    return path


def test_spec2_member_of_a_level2_association_goes_through_spec2(tmp_path, monkeypatch):
    """A hand-made MIRI LRS rate (until the LRS simulator lands): spec2, not image2, with its nod
    background and its association, and the cal it names comes back."""
    from webbflow.flows import calwebb_image2, calwebb_spec2

    for name in ("jw01_rate.fits", "jw02_rate.fits"):
        m = models.ImageModel(np.zeros((8, 8), np.float32))
        m.meta.exposure.type = "MIR_LRS-FIXEDSLIT"
        m.meta.instrument.name = "MIRI"
        m.save(tmp_path / name)
    asn = _asn(tmp_path / "x_spec2_00001_asn.json", "spec2",
               [("jw01", [("jw01_rate.fits", "science"), ("jw02_rate.fits", "background")])])
    calls = []

    def spec2(model, steps=None, config=None, output_dir=None, members=None, asn_info=None):
        model = models.open(model) if isinstance(model, str) else model  # the member flow hands spec2 the path
        calls.append((model.meta.exposure.type, {k: [Path(p).name for p in v] for k, v in members.items()}, asn_info))
        cal = Path(output_dir) / "jw01_cal.fits"
        cal.write_bytes(b"")
        calwebb_spec2.spec2_last_run.clear()
        calwebb_spec2.spec2_last_run.append(SimpleNamespace(written=[str(cal)]))

    monkeypatch.setattr(A, "stage_key", lambda *a, **k: "key")
    monkeypatch.setattr(calwebb_spec2, "spec2", spec2)
    monkeypatch.setattr(calwebb_image2, "image2", lambda *a, **k: pytest.fail("image2 ran on a spectrum"))
    out = tmp_path / "out"
    res = A.process_association.fn(str(asn), output_dir=str(out))
    assert calls == [("MIR_LRS-FIXEDSLIT", {"background": ["jw02_rate.fits"]}, ("pool.csv", asn.name))]
    (member,) = res.members
    assert member.ok and member.stages == ["spec2"] and Path(member.cal) == out / "jw01_cal.fits"


@pytest.mark.parametrize("asn_type, products, expected", [
    ("coron3", [("p1", [("t_calints.fits", "science"), ("r1_calints.fits", "psf"), ("r2_calints.fits", "psf")])],
     [("coron3", "p1", {"science": ["t_calints.fits"], "psf": ["r1_calints.fits", "r2_calints.fits"]})]),
    ("ami3", [("p1", [("t_calints.fits", "science"), ("c_calints.fits", "psf")]),
              ("p2", [("c_calints.fits", "science")])],  # jwst's ami3 runs the first product only
     [("ami3", "p1", {"science": ["t_calints.fits"], "psf": ["c_calints.fits"]})]),
    ("tso3", [("p1", [("t_calints.fits", "science")])], [("tso3", "p1", {"science": ["t_calints.fits"]})]),
    ("spec3", [("p1", [("a_cal.fits", "science"), ("b_cal.fits", "science"), ("bg_x1d.fits", "background")])],
     [("spec3", "p1", {"science": ["a_cal.fits", "b_cal.fits"], "background": ["bg_x1d.fits"]})]),
    ("wfs-image3", [("p1", [("a_cal.fits", "science"), ("b_cal.fits", "science")])],
     [("wfs-image3", "p1", {"science": ["a_cal.fits", "b_cal.fits"]})]),
])
def test_level3_product_goes_to_the_stage3_flow_of_its_type(tmp_path, monkeypatch, asn_type, products, expected):
    from webbflow.flows import calwebb_ami3, calwebb_coron3, calwebb_spec3, calwebb_tso3, calwebb_wfs_image3

    for _, members in products:
        for e, _t in members:
            (tmp_path / e).write_bytes(b"")
    asn = _asn(tmp_path / f"x_{asn_type}_00001_asn.json", asn_type, products)
    seen = []

    def fake(pipeline):
        def run(*args, **kw):
            if pipeline == "wfs-image3":
                ((name, sci),) = args[0]
                got = {"science": sci}
            else:
                name, got = kw["product_name"], {"science": args[0]}
                if len(args) > 1:
                    got["psf"] = args[1]
                if kw.get("backgrounds"):
                    got["background"] = kw["backgrounds"]
                assert kw["asn_id"] == "o001" and kw["asn_pool"] == "pool.csv"
            assert kw["asn_table_name"] == asn.name
            seen.append((pipeline, name, {k: [Path(p).name for p in v] for k, v in got.items()}))
            return {"written": []}
        return run

    monkeypatch.setattr(A, "stage3_key", lambda *a, **k: "key")
    monkeypatch.setattr(calwebb_coron3, "coron3", fake("coron3"))
    monkeypatch.setattr(calwebb_ami3, "ami3", fake("ami3"))
    monkeypatch.setattr(calwebb_tso3, "tso3", fake("tso3"))
    monkeypatch.setattr(calwebb_spec3, "spec3", fake("spec3"))
    monkeypatch.setattr(calwebb_wfs_image3, "wfs_image3", fake("wfs-image3"))
    res = A.process_association.fn(str(asn), output_dir=str(tmp_path / "out"))
    assert seen == expected
    assert all(m.ok and m.stages == [] for m in res.members)  # nothing to make: the members are there


def test_a_level3_type_without_a_flow_is_one_line(tmp_path):
    asn = _asn(tmp_path / "x_nrslamp3_asn.json", "nrslamp3", [("p1", [("a_cal.fits", "science")])])
    (tmp_path / "a_cal.fits").write_bytes(b"")
    with pytest.raises(InputFileError, match="x_nrslamp3_asn.json: is a level-3 'nrslamp3' association"):
        A.process_association.fn(str(asn), output_dir=str(tmp_path))


# ---------------------------------------------------------------------------
# simulated coronagraphy and AMI, from the uncal files


# mode -> (webbflow simulate's arguments, the Stage 3 pipeline, suffixes of its products)
MODES = {
    "coron": (dict(instrument="nircam", exp_type="NRC_CORON", ngroups=3, nints=2, nexp=2, seed=3), "calwebb_coron3",
              ("_psfstack.fits", "_psfalign.fits", "_psfsub.fits", "_crfints.fits", "_i2d.fits")),
    "ami": (dict(instrument="niriss", exp_type="NIS_AMI", nints=2, ngroups=3, seed=5), "calwebb_ami3",
            ("_ami-oi.fits", "_psf-ami-oi.fits", "_aminorm-oi.fits")),
}


@contextlib.contextmanager
def _env(cache):
    """The simulation's CRDS cache, logging quiet, and untracked runs (no Prefect server needed:
    the same flows as plain calls, and the unchanged-rerun record of flows/_rerun.py)."""
    import logging
    import warnings

    from parity import jwst_offline

    old = os.environ.get("WEBBFLOW_PREFECT")
    os.environ["WEBBFLOW_PREFECT"] = "off"
    levels = {n: logging.getLogger(n).level for n in ("webbflow", "CRDS", "crds", "prefect")}
    for n in levels:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with jwst_offline(cache), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)
        if old is None:
            os.environ.pop("WEBBFLOW_PREFECT", None)
        else:
            os.environ["WEBBFLOW_PREFECT"] = old


def _copy(sim, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in list(sim.uncal) + list(sim.asn_level2) + [sim.asn_level3]:
        shutil.copy2(f, folder / Path(f).name)
    return folder


class Runs:
    """Each mode simulated once, then run from the uncal files and stage by stage, once a session."""

    def __init__(self, root: Path):
        self.root, self._done = root, {}

    def __call__(self, mode: str) -> SimpleNamespace:
        if mode not in self._done:
            self._done[mode] = self._run(mode)
        return self._done[mode]

    def _run(self, mode: str) -> SimpleNamespace:
        from webbflow.flows.cli import main
        from webbflow.refs.simulator import simulate

        kw, pipeline, suffixes = MODES[mode]
        sim = simulate(self.root / mode / "sim", **kw)
        asn = Path(sim.asn_level3).name
        # webbflow run calwebb_<type>3 ASN, with only the uncal files and the associations
        e2e = _copy(sim, self.root / mode / "from_uncal")
        # as a jwst user runs it: detector1 on each uncal, image2 on each level-2 association, then Stage 3
        steps = _copy(sim, self.root / mode / "stepwise")
        with _env(sim.crds_path):
            assert main(["run", pipeline, str(e2e / asn), "--output-dir", str(e2e)]) == 0
            for u in sim.uncal:
                assert main(["run", "calwebb_detector1", str(steps / u.name), "--output-dir", str(steps)]) == 0
            for a in sim.asn_level2:
                assert main(["run", "calwebb_image2", str(steps / Path(a).name), "--output-dir", str(steps)]) == 0
            assert main(["run", pipeline, str(steps / asn), "--output-dir", str(steps)]) == 0
        return SimpleNamespace(sim=sim, asn=asn, pipeline=pipeline, suffixes=suffixes, from_uncal=e2e, stepwise=steps)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return Runs(tmp_path_factory.mktemp("asn_modes"))


def _products(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.fits") if not p.name.endswith("_uncal.fits")}


@pytest.mark.parity
@pytest.mark.parametrize("mode", sorted(MODES))
def test_stage3_from_uncal_makes_the_stage_by_stage_products(runs, mode):
    from test_products_whole import compare_products

    r = runs(mode)
    names = _products(r.stepwise)
    roots = [u.name.removesuffix("_uncal.fits") for u in r.sim.uncal]
    assert {f"{root}_{s}.fits" for root in roots for s in ("rateints", "calints")} <= names
    assert all(any(n.endswith(sfx) for n in names) for sfx in r.suffixes), (r.suffixes, names)
    assert _products(r.from_uncal) == names
    problems = compare_products(r.from_uncal, r.stepwise, names, suffixes=(".fits",))
    assert [p for p in problems if not p.startswith("products webbflow writes and jwst does not")] == []
    for n in sorted(names):  # the same code on the same inputs: the same numbers, exactly
        with fits.open(r.from_uncal / n) as a, fits.open(r.stepwise / n) as b:
            assert [h.name for h in a] == [h.name for h in b], n
            for ha, hb in zip(a, b):
                if isinstance(ha, fits.BinTableHDU) and ha.name != "ASDF":
                    for col in ha.columns.names:
                        assert np.array_equal(ha.data[col], hb.data[col]), (n, ha.name, col)
                elif isinstance(ha, (fits.ImageHDU, fits.PrimaryHDU)) and ha.data is not None:
                    assert np.array_equal(ha.data, hb.data, equal_nan=True), (n, ha.name)
    with fits.open(r.from_uncal / f"{roots[0]}_calints.fits") as h:  # recorded as its level-2 association says
        assert h[0].header["ASNTABLE"] in {Path(a).name for a in r.sim.asn_level2}


def test_unchanged_rerun_recomputes_nothing(runs, capsys):
    from webbflow.flows.cli import main

    r = runs("coron")
    before = {p.name: p.stat().st_mtime_ns for p in r.from_uncal.glob("*.fits")}
    capsys.readouterr()
    with _env(r.sim.crds_path):
        assert main(["run", r.pipeline, str(r.from_uncal / r.asn), "--output-dir", str(r.from_uncal)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("wrote", "reused"))]
    assert lines and all(ln.startswith("reused ") for ln in lines), lines
    assert {p.name: p.stat().st_mtime_ns for p in r.from_uncal.glob("*.fits")} == before


def test_run_observation_runs_level2_then_stage3_in_order(runs):
    """``webbflow run observation POOL`` over an observation already run association by association:
    it makes the same associations, runs the three image2 ones then coron3, each member through the
    same route (rateints -> calints; any other route would miss the caches and make other files),
    and so reuses every product."""
    from webbflow.flows.observation import run_observation_cli

    r = runs("coron")
    folder = r.from_uncal
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.fits")}
    (sim_pool,) = r.sim.output_dir.glob("*_pool.csv")  # the pool the simulator made its associations from
    pool = shutil.copy2(sim_pool, folder / sim_pool.name)
    with _env(r.sim.crds_path):
        written = run_observation_cli(pool, output_dir=folder)
    # the members' rateints are in the folder already: the level-2 associations name them
    made = {n for n in _products(r.stepwise) if not n.endswith(("_rate.fits", "_rateints.fits"))}
    assert {Path(p).name for p in written} == made
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.fits")} == before
    assert sorted(p.name for p in folder.glob("*_asn.json")) == sorted(
        Path(a).name for a in list(r.sim.asn_level2) + [r.sim.asn_level3])


def test_level2_association_from_uncal(runs, tmp_path):
    """``webbflow run calwebb_image2 ASN`` on a level-2 coronagraphic association with only the
    uncal file: detector1 first, then image2 on the rateints it names, as jwst would run it."""
    from webbflow.flows.cli import main

    r = runs("coron")
    asn2 = Path(r.sim.asn_level2[0])
    (member,) = [m["expname"] for m in json.loads(asn2.read_text())["products"][0]["members"]]
    root = member.removesuffix("_rateints.fits")
    shutil.copy2(asn2, tmp_path / asn2.name)
    shutil.copy2(r.sim.output_dir / f"{root}_uncal.fits", tmp_path)
    with _env(r.sim.crds_path):
        assert main(["run", "calwebb_image2", str(tmp_path / asn2.name), "--output-dir", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.fits")} == {f"{root}_{s}.fits" for s in ("uncal", "rate", "rateints",
                                                                                         "calints")}
    with fits.open(tmp_path / f"{root}_calints.fits") as a, fits.open(r.stepwise / f"{root}_calints.fits") as b:
        assert a[0].header["ASNTABLE"] == b[0].header["ASNTABLE"] == asn2.name
        for ext in ("SCI", "ERR", "DQ"):
            assert np.array_equal(a[ext].data, b[ext].data, equal_nan=True), ext


def test_coron3_without_psf_members_is_refused_before_anything_is_made(tmp_path, capsys):
    from webbflow.flows.cli import main

    _header_file(tmp_path / "t_uncal.fits", EXP_TYPE="NRC_CORON")
    asn = _asn(tmp_path / "c_coron3_asn.json", "coron3", [("p1", [("t_calints.fits", "science")])])
    assert main(["run", "calwebb_coron3", str(asn), "--output-dir", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c_coron3_asn.json" in err[0] and "has no PSF-reference (psf) member" in err[0], err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
