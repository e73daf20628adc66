"""calwebb_spec3 for NIRCam WFSS against jwst 3.0: one x1d and one c1d holding every source.

Two dispersed exposures of two sources (a point source and a compact galaxy, orders 1 and 2) are
calibrated to cal files by jwst's own Stage 2 steps (tests/wfss_scene.py); jwst's Spec3Pipeline runs
on their spec3 association from the association's folder (saving as strun does), and webbflow's
spec3 on a copy of the same folder.  extract_1d runs with override_apcorr/psf N/A and
apply_apcorr=false on both sides; the CRDS cache is the real 2019 rules.

Checked: the same two products (``<product>_x1d.fits``, a WFSSMultiSpecModel with one EXTRACT1D
table per exposure and order, and ``<product>_c1d.fits``, a WFSSMultiCombinedSpecModel with one
COMBINE1D table per order), each whole: the same extensions, the same header keywords with the same
values and types (both ways), the same columns and dtypes, every column within rtol 1e-4 for
>= 99.9 % of its elements, DQ and strings identical; the source ids, orders and cutout corners
those of the cal files.  A source whose cutouts have no WCS is named in one error line and the
other's spectra are still written.  combine_1d alone on jwst's WFSS x1d gives jwst's step's c1d.
"""

from __future__ import annotations

import shutil
import warnings
from contextlib import chdir
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import CRDS_RULES
from parity import compare_arrays, compare_dq, jwst_offline, quiet_jwst
from wfss_scene import ASN, PRODUCT, jwst_wfss_cals

from webbflow import models

pytestmark = [pytest.mark.parity, pytest.mark.real]

CONTEXT = "jwst_0541.pmap"
NA = {"override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}
PRODUCTS = (f"{PRODUCT}_x1d.fits", f"{PRODUCT}_c1d.fits")
# keywords that name the run rather than the data: when, which software, which file
RUN_KEYWORDS = {"DATE", "FILENAME", "CAL_VER", "CAL_VCS", "CRDS_VER", "CHECKSUM", "DATASUM", ""}


def _copy_inputs(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name.endswith(("_cal.fits", "_asn.json", ".ecsv")):
            shutil.copy(p, dst / p.name)
    return dst / ASN


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The cal files (jwst's Stage 2), then calwebb_spec3 on their association by jwst and by webbflow."""
    from jwst.pipeline import Spec3Pipeline

    from webbflow.flows.calwebb_spec3 import run_spec3

    base = tmp_path_factory.mktemp("wfss-spec3")
    cache = base / "crds"
    shutil.copytree(CRDS_RULES, cache)
    theirs = base / "jwst"
    made = jwst_wfss_cals(theirs, base / "refs", cache, CONTEXT)
    ours = base / "webbflow"
    asn_o = _copy_inputs(theirs, ours)
    with jwst_offline(cache, CONTEXT):
        warnings.simplefilter("ignore")
        with quiet_jwst(), chdir(theirs):
            step = Spec3Pipeline(steps={"extract_1d": NA})
            step.prefetch_references = False
            step.save_results = True
            step.output_dir = str(theirs)
            step.run(str(made["asn"]))
        written = run_spec3(asn_o, output_dir=ours, steps={"extract_1d": NA})
    return {"theirs": theirs, "ours": ours, "written": written, "cals": made["cals"], "cache": cache, "base": base}


def test_wfss_spec3_writes_jwsts_two_products(runs):
    made = lambda folder: {p.name for p in folder.glob("*.fits") if not p.name.endswith("_cal.fits")}  # noqa: E731
    assert made(runs["theirs"]) == set(PRODUCTS)
    assert made(runs["ours"]) == set(PRODUCTS)
    assert {Path(p).name for p in runs["written"]} == set(PRODUCTS)


def _headers_agree(ours: fits.Header, theirs: fits.Header, where: str) -> None:
    only_theirs = sorted(k for k in theirs if k not in ours and k not in RUN_KEYWORDS)
    assert not only_theirs, f"{where}: keywords jwst writes and we do not: {only_theirs}"
    only_ours = sorted(k for k in ours if k not in theirs and k not in RUN_KEYWORDS)
    assert not only_ours, f"{where}: keywords we write and jwst does not: {only_ours}"
    differ = {}
    for k in theirs:
        if k in RUN_KEYWORDS:
            continue
        a, b = ours[k], theirs[k]
        if isinstance(b, float) and isinstance(a, float):
            if not np.isclose(a, b, rtol=1e-12, atol=0):
                differ[k] = (a, b)
        elif a != b or type(a) is not type(b):
            differ[k] = (a, b)
    assert not differ, f"{where}: keywords that differ: {differ}"


def _tables_agree(mine, theirs, where: str) -> None:
    assert mine.dtype == theirs.dtype, f"{where}: columns {mine.dtype} != {theirs.dtype}"
    for col in theirs.dtype.names:
        a, b = np.asarray(mine[col]), np.asarray(theirs[col])
        if a.dtype.kind in "SU":
            assert a.tolist() == b.tolist(), f"{where} {col}"
        elif col == "DQ":
            assert compare_dq(f"{where} {col}", a, b).fraction == 1.0
        else:
            ag = compare_arrays(f"{where} {col}", a.astype(float), b.astype(float), rtol=1e-4)
            assert ag.fraction >= 0.999, str(ag)


def _products_agree(ours: Path, theirs: Path) -> None:
    with fits.open(ours) as ho, fits.open(theirs) as ht:
        assert ho[0].header["DATAMODL"] == ht[0].header["DATAMODL"]
        assert [(h.name, h.ver) for h in ho] == [(h.name, h.ver) for h in ht]
        for h in ht:
            if h.name == "ASDF":
                continue
            mine = ho[h.name, h.ver]
            where = f"{theirs.name}[{h.name},{h.ver}]"
            _headers_agree(mine.header, h.header, where)
            if h.data is not None:
                _tables_agree(mine.data, h.data, where)


@pytest.mark.parametrize("name", PRODUCTS)
def test_wfss_spec3_product_matches_jwst(runs, name):
    _products_agree(runs["ours"] / name, runs["theirs"] / name)


def test_wfss_spec3_sources_orders_and_cutouts_are_the_cal_files(runs):
    """Each x1d table is one exposure and order; its rows are the sources, with their cutouts' corners."""
    from stdatamodels.jwst import datamodels as dm

    cutouts = {}
    for cal in runs["cals"]:
        with fits.open(cal) as h:
            for sci in (x.header for x in h if x.name == "SCI"):
                x0, y0 = sci["SLTSTRT1"], sci["SLTSTRT2"]
                cutouts[(cal.name, sci["SPORDER"], sci["SOURCEID"])] = (x0, y0, x0 + sci["SLTSIZE1"], y0 + sci["SLTSIZE2"])
    with dm.open(runs["ours"] / PRODUCTS[0]) as x1d:
        assert type(x1d).__name__ == "WFSSMultiSpecModel"
        seen = {}
        for ext in x1d.spec:
            t = ext.spec_table
            for r in range(len(t)):
                seen[(ext.filename, ext.spectral_order, int(t["SOURCE_ID"][r]))] = tuple(
                    int(t[c][r]) for c in ("EXTRACT2D_XSTART", "EXTRACT2D_YSTART", "EXTRACT2D_XSTOP", "EXTRACT2D_YSTOP"))
            assert list(t["SOURCE_ID"]) == [1, 2]
        assert seen == cutouts
        # the point source's order-1 spectrum is measured in both exposures (order 2 lies outside photom's range)
        good = x1d.spec[0].spec_table["FLUX"][0][: x1d.spec[0].spec_table["N_ALONGDISP"][0]]
        assert np.isfinite(good).mean() > 0.99 and np.nanmedian(good) > 0
    with dm.open(runs["ours"] / PRODUCTS[1]) as c1d:
        assert type(c1d).__name__ == "WFSSMultiCombinedSpecModel"
        assert [s.spectral_order for s in c1d.spec] == [1]
        assert list(c1d.spec[0].spec_table["SOURCE_ID"]) == [1, 2]
    # and they open in webbflow as the same classes, the tables unchanged
    for name, cls in zip(PRODUCTS, ("WFSSMultiSpecModel", "WFSSMultiCombinedSpecModel")):
        m = models.open(runs["ours"] / name)
        assert type(m).__name__ == cls
        out = runs["base"] / f"roundtrip_{name}"
        m.save(out)
        _products_agree(out, runs["ours"] / name)


def test_wfss_spec3_reports_a_failed_source_and_keeps_the_other(runs, tmp_path):
    """Source 2's cutouts lose their WCS: it is named in one error line, and source 1's spectra are
    still written to the x1d and c1d (the sources run in batches of task runs on the flow's task runner)."""
    from webbflow.errors import WebbflowError
    from webbflow.flows.calwebb_spec3 import SourcesFailed, spec3

    exposures = []
    for cal in runs["cals"]:
        m = models.open(cal)
        m.meta.filename = cal.name
        for s in m.slits:
            if int(s.source_id) == 2:
                s.meta.wcs = None
        exposures.append(m)
    with jwst_offline(runs["cache"], CONTEXT), pytest.raises(SourcesFailed) as err:
        spec3(exposures, product_name=PRODUCT, asn_id="o001", asn_table_name=ASN, steps={"extract_1d": NA},
              output_dir=str(tmp_path / "out"))
    message = str(err.value)
    assert isinstance(err.value, WebbflowError) and "\n" not in message
    assert "1 of 2 sources failed" in message and "source 2" in message and "has no WCS" in message
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(PRODUCTS)
    x1d = models.open(tmp_path / "out" / PRODUCTS[0])
    assert all(list(s.spec_table["SOURCE_ID"]) == [1] for s in x1d.spec)
    c1d = models.open(tmp_path / "out" / PRODUCTS[1])
    assert list(c1d.spec[0].spec_table["SOURCE_ID"]) == [1]
    assert np.isfinite(c1d.spec[0].spec_table["FLUX"][0]).sum() > 1000


def test_combine_1d_alone_on_a_wfss_x1d_matches_jwst(runs, tmp_path):
    """`webbflow run combine_1d X_x1d.fits` on jwst's WFSS x1d: jwst's Combine1dStep's c1d, per source."""
    from jwst.combine_1d import Combine1dStep

    from webbflow.flows.cli import main

    x1d = runs["theirs"] / PRODUCTS[0]
    with jwst_offline(runs["cache"], CONTEXT):
        with quiet_jwst(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Combine1dStep.call(str(x1d), save_results=True, output_dir=str(tmp_path / "jwst"))
        assert main(["run", "combine_1d", str(x1d), "--output-dir", str(tmp_path / "ours")]) == 0
    name = f"{PRODUCT}_combine1dstep.fits"
    assert [p.name for p in (tmp_path / "ours").iterdir()] == [p.name for p in (tmp_path / "jwst").iterdir()] == [name]
    _products_agree(tmp_path / "ours" / name, tmp_path / "jwst" / name)


@pytest.mark.parametrize("identified,problem", [(True, "holds no source cutout"),
                                                 (False, "lacks the observation identifiers")])
def test_wfss_spec3_bad_input_is_one_line_naming_the_file(tmp_path, identified, problem):
    """WFSS cal files holding no cutout (the catalogue matched nothing), or without the identifiers
    of their exposure group: one line naming the file, no product."""
    from webbflow.errors import InputFileError
    from webbflow.flows.calwebb_spec3 import spec3

    exposures = []
    for k in (1, 2):
        m = models.MultiSlitModel()
        m.meta.filename = f"jw01234001001_01101_0000{k}_nrcalong_cal.fits"
        m.meta.instrument.name, m.meta.instrument.detector = "NIRCAM", "NRCALONG"
        m.meta.instrument.filter, m.meta.instrument.pupil = "F444W", "GRISMR"
        m.meta.exposure.type = "NRC_WFSS"
        if identified:
            o = m.meta.observation
            o.program_number, o.observation_number, o.visit_number = "01234", "001", "001"
            o.visit_group, o.sequence_id, o.activity_id, o.exposure_number = "01", "1", "01", f"0000{k}"
        exposures.append(m)
    with jwst_offline(CRDS_RULES, CONTEXT), pytest.raises(InputFileError) as err:
        spec3.fn(exposures, product_name=PRODUCT, steps={"extract_1d": NA}, output_dir=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "_00001_nrcalong_cal.fits" in message and problem in message
    assert list(tmp_path.iterdir()) == []


def test_wfss_cal_read_with_lazy_wcs_is_the_same_model(runs):
    """spec3 reads WFSS cal files with each cutout's WCS parsed and made on first use
    (models/_lazy_wcs.py; jwst's later cutouts alias YAML nodes of the first one's): the same metadata, arrays and WCS as a full read, and regrouping by source makes no WCS."""
    import copy

    from webbflow.flows._spec3_wfss import open_cal
    from webbflow.models._lazy_wcs import LazyWcs
    from webbflow.tasks.exp_to_source import exp_to_source

    cal = runs["cals"][0]
    lazy, full = open_cal(cal), models.open(cal)
    assert len(lazy.slits) == len(full.slits) == 4
    assert lazy.meta.model_dump(exclude={"wcs"}) == full.meta.model_dump(exclude={"wcs"})
    for a, b in zip(lazy.slits, full.slits):
        assert isinstance(a.meta.wcs, LazyWcs) and a.meta.wcs._wcs is None
        assert not a.meta.wcs.parsed  # its YAML cut out of the tree, not parsed yet
        assert a.meta.model_dump(exclude={"wcs"}) == b.meta.model_dump(exclude={"wcs"})
        assert sorted(a._arrays) == sorted(b._arrays)
        for k in a._arrays:
            assert np.array_equal(a._arrays[k], b._arrays[k], equal_nan=True), k
    sources = exp_to_source([lazy])
    wcss = [s.meta.wcs for src in sources.values() for s in src.slits]
    assert all(isinstance(w, LazyWcs) and w._wcs is None for w in wcss)
    pending = copy.deepcopy(lazy.slits[1].meta.wcs)  # a copy not made yet: made on first use too
    assert isinstance(pending, LazyWcs) and pending._wcs is None
    x, y = np.array([3.0, 50.0]), np.array([2.0, 4.0])
    assert np.array_equal(np.array(pending(x, y)), np.array(full.slits[1].meta.wcs(x, y)), equal_nan=True)
    for a, b in zip(lazy.slits, full.slits):
        assert np.array_equal(np.array(a.meta.wcs(x, y)), np.array(b.meta.wcs(x, y)), equal_nan=True)
        assert a.meta.wcs.available_frames == b.meta.wcs.available_frames
    twin = copy.deepcopy(lazy.slits[0].meta.wcs)
    assert type(twin).__name__ == "WCS" and twin is not lazy.slits[0].meta.wcs.load()


def test_wfss_spec3_holds_one_exposure_at_a_time(runs, tmp_path, monkeypatch):
    """spec3's memory is bounded by one exposure (plus the sources' state), whatever the number of
    exposures: when each exposure after the first is opened, no earlier one is still alive, and
    the products are those of the fixture's run."""
    import gc
    import weakref

    from webbflow.flows import calwebb_spec3
    from webbflow.flows.calwebb_spec3 import run_spec3

    opened: list = []
    alive_at_open: list[int] = []
    real_open = calwebb_spec3._open_slits

    def recording_open(src):
        gc.collect()
        alive_at_open.append(sum(ref() is not None for ref in opened))
        m = real_open(src)
        opened.append(weakref.ref(m))
        return m

    monkeypatch.setattr(calwebb_spec3, "_open_slits", recording_open)
    asn = _copy_inputs(runs["ours"], tmp_path)
    with jwst_offline(runs["cache"], CONTEXT):
        written = run_spec3(asn, output_dir=tmp_path, steps={"extract_1d": NA})
    assert len(opened) >= 2 and alive_at_open == [0] * len(opened), alive_at_open
    assert sorted(Path(p).name for p in written) == sorted(Path(p).name for p in runs["written"])
    for p in written:
        with fits.open(p) as mine, fits.open(runs["ours"] / Path(p).name) as before:
            for a, b in zip(mine, before):
                if a.data is not None and a.name not in ("ASDF",):
                    assert a.data.tobytes() == b.data.tobytes(), (Path(p).name, a.name)
