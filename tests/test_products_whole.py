"""Imaging products compared whole with jwst 3.0's: file names, HDUs, keywords, arrays (issue #13).

One small held-out NIRCam imaging observation (NRCALONG, F444W, 256x256 subarray, 4 groups,
2 dithers, ~120 stars a field) from the simulator. Its reference files are then rewritten by
stdatamodels itself (each opened with ``stdatamodels.jwst.datamodels`` and saved again), so that
keywords sit where stdatamodels' reference schemas put them, as in CRDS deliveries.

jwst runs as its users run it, ``strun``-style from the folder of the associations:
``calwebb_detector1`` on each uncal, ``calwebb_image2`` on each level-2 association (rate
members), ``calwebb_image3`` on the level-3 association (cal members). webbflow runs through its
command line (in process): image2 on jwst's rate files, image3 on jwst's cal files, and
``webbflow run image3 ASN`` end to end from the uncal files, whose first stage is webbflow's
detector1 on each uncal: its rate and rateints files are the ones the detector1 test compares
(one run of detector1 instead of two, to keep the test short).

Every product is compared whole with jwst's: the same set of file names; for each FITS file the
same HDUs in the same order; in each HDU the same keywords with the same value types and values
(``IGNORED_VALUES`` below lists those whose values may differ, each with why); arrays within the
stated tolerances; HDRTAB tables value for value; catalogues with the same columns, units,
metadata and values. Any new difference fails the test and is named in the failure message.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from parity import jwst_offline, quiet_jwst


SIM = dict(instrument="nircam", detector="NRCALONG", filter="F444W", size=256, ngroups=4, nints=1,
           readpatt="MEDIUM8", nexp=2, seed=13, stars_per_field=120)

# Keywords whose *values* differ by nature; their presence and type are still compared.
IGNORED_VALUES = {
    "DATE": "when the file was written",
    "CAL_VER": "the software's version (webbflow's, not jwst's)",
    "CAL_VCS": "the software's version-control revision",
    "CHECKSUM": "follows the bytes of the HDU, including the dates above",
    "DATASUM": "follows the bytes of the data, which agree within tolerances, not bit for bit",
}
# Keywords of one extension whose values may differ: the ASDF extension holds the metadata tree
# serialised; its length follows the tree (jwst's carries its own history and software entries,
# webbflow's its provenance), so NAXIS1/TFORM1 differ while the table's layout is the same.
IGNORED_IN_HDU = {"ASDF": {"NAXIS1", "TFORM1"}}
# Keywords whose values are file paths: compared by base name (jwst and webbflow write in
# different folders).
PATH_VALUED = {"FILENAME", "ASNTABLE", "ASNPOOL"}

# catalogues: numeric columns within CATALOG_RTOL and sky positions within 1 mas, for at least
# CATALOG_MIN_FRACTION of the rows (measured: all rows but the sky_bbox corners of 1-3 sources,
# NaN on one side where a corner leaves the mosaic's WCS domain); the date and the software
# versions of the metadata aside
CATALOG_RTOL, CATALOG_MIN_FRACTION = 1e-4, 0.97
CATALOG_META_IGNORED = {"date", "version"}
# float arrays: (rtol, atol, minimum fraction of elements that agree); integer arrays (DQ, CON)
# must be equal for the same fraction
ARRAY_TOL = {"default": (1e-4, 1e-6, 0.999)}


# ---------------------------------------------------------------------------
# the observation, its references rewritten by stdatamodels, and jwst's run


def _quiet(fn, cache, context):
    with (jwst_offline(cache, context), quiet_jwst(logging.ERROR, also=("tweakwcs", "webbflow", "prefect")),
          warnings.catch_warnings()):
        warnings.simplefilter("ignore")
        return fn()


def rewrite_references_with_stdatamodels(crds_path: Path) -> list[Path]:
    """Open each reference file with stdatamodels and save it again in place."""
    from stdatamodels.jwst import datamodels as dm

    done = []
    for f in sorted((Path(crds_path) / "references").rglob("*")):
        if f.suffix not in (".fits", ".asdf"):
            continue
        tmp = f.parent / ".rewrite" / f.name  # the same name: stdatamodels records it as FILENAME
        tmp.parent.mkdir(exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with dm.open(f) as m:
                m.save(tmp)
        os.replace(tmp, f)
        tmp.parent.rmdir()
        done.append(f)
    return done


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp("whole")
    sim = simulate(root / "sim", **SIM)
    rewritten = rewrite_references_with_stdatamodels(sim.crds_path)
    assert rewritten, "no reference files were rewritten"
    return SimpleNamespace(sim=sim, root=root, cache=sim.crds_path, context=sim.context)


def _copy_inputs(sim, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for u in sim.uncal:
        shutil.copy2(u, folder / u.name)
    for a in list(sim.asn_level2) + [sim.asn_level3]:
        shutil.copy2(a, folder / Path(a).name)
    return folder


@pytest.fixture(scope="module")
def jwst_run(obs):
    """jwst 3.0 run as strun runs it, from the associations' folder."""
    from jwst.stpipe import Step

    sim = obs.sim
    d = _copy_inputs(sim, obs.root / "jwst")

    def run():
        cwd = os.getcwd()
        os.chdir(d)
        try:
            for u in sim.uncal:
                Step.from_cmdline(["calwebb_detector1", u.name])
            for a in sim.asn_level2:
                Step.from_cmdline(["calwebb_image2", Path(a).name])
            Step.from_cmdline(["calwebb_image3", Path(sim.asn_level3).name])
        finally:
            os.chdir(cwd)

    _quiet(run, obs.cache, obs.context)
    return d


def _webbflow(*argv):
    from webbflow.flows.cli import main

    rc = main(["run", *[str(a) for a in argv]])
    assert rc == 0, f"webbflow run {' '.join(map(str, argv))} exited {rc}"


@pytest.fixture(scope="module")
def ours(obs, jwst_run):
    """webbflow's stages, each on jwst's products of the stage before, and end to end."""
    sim = obs.sim
    out = SimpleNamespace(i2=obs.root / "ours_i2", i3=obs.root / "ours_i3", e2e=obs.root / "ours_e2e")
    out.d1 = out.e2e  # detector1 on each uncal, as the end-to-end run makes it

    def run():
        for a in sim.asn_level2:
            _webbflow("image2", jwst_run / Path(a).name, "--output-dir", out.i2)
        # image3 on jwst's cal files: an association beside them
        in3 = obs.root / "in3"
        in3.mkdir()
        for c in jwst_run.glob("*_cal.fits"):
            shutil.copy2(c, in3 / c.name)
        shutil.copy2(sim.asn_level3, in3 / Path(sim.asn_level3).name)
        _webbflow("image3", in3 / Path(sim.asn_level3).name, "--output-dir", out.i3)
        e2e = _copy_inputs(sim, obs.root / "e2e_in")
        _webbflow("image3", e2e / Path(sim.asn_level3).name, "--output-dir", out.e2e)

    _quiet(run, obs.cache, obs.context)
    return out


# ---------------------------------------------------------------------------
# comparing products whole


def _value_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, str):
        return "str"
    return type(v).__name__


def compare_headers(where, ours, theirs, problems, hdu=None):
    ok = [k for k in ours.keys() if k not in ("COMMENT", "HISTORY", "")]
    tk = [k for k in theirs.keys() if k not in ("COMMENT", "HISTORY", "")]
    missing = sorted(set(tk) - set(ok))
    extra = sorted(set(ok) - set(tk))
    if missing:
        problems.append(f"{where}: keywords missing (jwst has them): {missing}")
    if extra:
        problems.append(f"{where}: keywords jwst does not write: {extra}")
    for k in tk:
        if k not in ours or k in ("COMMENT", "HISTORY", ""):
            continue
        a, b = ours[k], theirs[k]
        if _value_type(a) != _value_type(b):
            problems.append(f"{where}: {k} is {_value_type(a)} {a!r}, jwst writes {_value_type(b)} {b!r}")
            continue
        if k in IGNORED_VALUES or k in IGNORED_IN_HDU.get(hdu, ()):
            continue
        if k in PATH_VALUED and isinstance(a, str):
            a, b = os.path.basename(a), os.path.basename(b)
        if isinstance(a, float):
            same = np.isclose(a, b, rtol=1e-6, atol=1e-10) or (np.isnan(a) and np.isnan(b))
        else:
            same = a == b
        if not same:
            problems.append(f"{where}: {k} = {a!r}, jwst writes {b!r}")


def compare_data(where, a, b, problems):
    if a is None or b is None:
        if (a is None) != (b is None):
            problems.append(f"{where}: data present in one product only")
        return
    if hasattr(a, "columns") and hasattr(b, "columns"):  # tables: the same columns, the same values
        if list(a.columns.names) != list(b.columns.names):
            problems.append(f"{where}: columns {a.columns.names} != jwst's {b.columns.names}")
        if len(a) != len(b):
            problems.append(f"{where}: {len(a)} rows, jwst has {len(b)}")
            return
        for col in b.columns.names:
            if col not in a.columns.names or col in IGNORED_VALUES:
                continue
            x, y = np.asarray(a[col]), np.asarray(b[col])
            if x.dtype.kind in "US" and col in PATH_VALUED:
                x = np.array([os.path.basename(str(v)) for v in x])
                y = np.array([os.path.basename(str(v)) for v in y])
            if x.dtype.kind == "f" and y.dtype.kind == "f":
                same = np.allclose(x, y, rtol=1e-6, atol=1e-10, equal_nan=True)
            else:
                same = x.shape == y.shape and bool(np.all(x == y))
            if not same:
                problems.append(f"{where}: column {col} = {x.tolist()!r}, jwst has {y.tolist()!r}")
        return
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        problems.append(f"{where}: shape {a.shape} != jwst's {b.shape}")
        return
    if a.dtype != b.dtype:
        problems.append(f"{where}: dtype {a.dtype} != jwst's {b.dtype}")
    if a.dtype.kind in "iub":
        frac = float(np.mean(a == b)) if a.size else 1.0
        if frac < 0.999:
            problems.append(f"{where}: {100 * frac:.3f}% of values equal jwst's")
        return
    if a.dtype.kind in "f":
        rtol, atol, need = ARRAY_TOL["default"]
        both = np.isnan(a) & np.isnan(b)
        close = np.isclose(a, b, rtol=rtol, atol=atol) | both
        frac = float(close.mean()) if close.size else 1.0
        if frac < need:
            problems.append(f"{where}: {100 * frac:.3f}% of values within rtol {rtol} of jwst's")


def compare_fits(name, ours: Path, theirs: Path, problems):
    from astropy.io import fits

    with fits.open(ours) as fa, fits.open(theirs) as fb:
        na = [(h.name, type(h).__name__) for h in fa]
        nb = [(h.name, type(h).__name__) for h in fb]
        if na != nb:
            problems.append(f"{name}: HDUs {na} != jwst's {nb}")
        byname = {(h.name, h.ver): h for h in fa}
        for hb in fb:
            ha = byname.get((hb.name, hb.ver))
            if ha is None:
                continue
            where = f"{name}[{hb.name}]"
            compare_headers(where, ha.header, hb.header, problems, hdu=hb.name)
            if hb.name != "ASDF":
                compare_data(where, ha.data, hb.data, problems)


def compare_catalog(name, ours: Path, theirs: Path, problems):
    from astropy.table import Table

    a, b = Table.read(ours), Table.read(theirs)
    if a.colnames != b.colnames:
        problems.append(f"{name}: columns {a.colnames} != jwst's {b.colnames}")
    if len(a) != len(b):
        problems.append(f"{name}: {len(a)} rows, jwst has {len(b)}")
        return
    # the table's metadata: the same entries, the same values (numbers within float32 precision)
    if sorted(a.meta) != sorted(b.meta):
        problems.append(f"{name}: metadata {sorted(a.meta)} != jwst's {sorted(b.meta)}")
    for k in set(a.meta) & set(b.meta) - CATALOG_META_IGNORED:
        if not _same_meta(a.meta[k], b.meta[k]):
            problems.append(f"{name}: meta {k} = {a.meta[k]!r}, jwst has {b.meta[k]!r}")
    for c in set(a.colnames) & set(b.colnames):
        x, y = a[c], b[c]
        if getattr(x, "unit", None) != getattr(y, "unit", None):
            problems.append(f"{name}: column {c} in {getattr(x, 'unit', None)}, jwst's in {getattr(y, 'unit', None)}")
        if hasattr(y, "ra"):  # sky positions: within 1 mas
            sep = np.hypot((x.ra.deg - y.ra.deg) * np.cos(np.deg2rad(y.dec.deg)), x.dec.deg - y.dec.deg) * 3.6e6
            agree = (sep < 1.0) | (np.isnan(x.ra.deg) & np.isnan(y.ra.deg))
        elif np.asarray(y).dtype.kind in "fi":
            agree = np.isclose(np.asarray(x, float), np.asarray(y, float), rtol=CATALOG_RTOL, atol=0, equal_nan=True)
        else:
            agree = np.asarray(x).astype(str) == np.asarray(y).astype(str)
        if np.mean(agree) < CATALOG_MIN_FRACTION:
            problems.append(f"{name}: column {c}: {100 * np.mean(agree):.1f}% of rows agree with jwst's")


def _same_meta(x, y) -> bool:
    if isinstance(y, dict) and isinstance(x, dict):
        return sorted(x) == sorted(y) and all(_same_meta(x[k], y[k]) for k in y)
    try:
        xa, ya = np.asarray(x), np.asarray(y)
        if xa.dtype.kind in "fiu" and ya.dtype.kind in "fiu":
            return xa.shape == ya.shape and bool(np.allclose(xa, ya, rtol=1e-6, equal_nan=True))
    except (TypeError, ValueError):
        pass
    return str(x) == str(y)


def compare_products(ours_dir: Path, jwst_dir: Path, names: set[str], suffixes=(".fits", ".ecsv")) -> list[str]:
    problems = []
    have = {p.name for p in Path(ours_dir).iterdir() if p.is_file() and p.name.endswith(tuple(suffixes))}
    missing, extra = sorted(names - have), sorted(have - names)
    if missing:
        problems.append(f"products jwst writes and webbflow does not: {missing}")
    if extra:
        problems.append(f"products webbflow writes and jwst does not: {extra}")
    for n in sorted(names & have):
        if n.endswith(".fits"):
            compare_fits(n, Path(ours_dir) / n, Path(jwst_dir) / n, problems)
        else:
            compare_catalog(n, Path(ours_dir) / n, Path(jwst_dir) / n, problems)
    return problems


def _jwst_products(jwst_dir: Path, suffixes) -> set[str]:
    return {p.name for p in jwst_dir.iterdir()
            if p.is_file() and any(p.name.endswith(s) for s in suffixes)}


def _report(problems):
    return "\n".join(["products differ from jwst's:"] + problems)


@pytest.mark.parity
def test_detector1_products_whole(ours, jwst_run):
    sfx = ("_rate.fits", "_rateints.fits")
    names = _jwst_products(jwst_run, sfx)
    assert names, "jwst wrote no detector1 products"
    problems = compare_products(ours.d1, jwst_run, names, suffixes=sfx)
    assert not problems, _report(problems)


@pytest.mark.parity
def test_image2_products_whole(obs, ours, jwst_run):
    stems = {u.name[: -len("_uncal.fits")] for u in obs.sim.uncal}
    names = {p.name for p in jwst_run.iterdir() if p.name.endswith(("_cal.fits", "_i2d.fits"))
             and p.name.rsplit("_", 1)[0] in stems}
    assert names
    problems = compare_products(ours.i2, jwst_run, names)
    assert not problems, _report(problems)


def _stage3_names(obs, jwst_run):
    stems = {u.name[: -len("_uncal.fits")] for u in obs.sim.uncal}
    return {p.name for p in jwst_run.iterdir() if p.is_file() and p.suffix in (".fits", ".ecsv")
            and not any(p.name.startswith(s) and not p.name.endswith("_crf.fits") for s in stems)}


@pytest.mark.parity
def test_image3_products_whole(obs, ours, jwst_run):
    names = _stage3_names(obs, jwst_run)
    assert any(n.endswith("_crf.fits") for n in names) and any(n.endswith("_i2d.fits") for n in names)
    problems = compare_products(ours.i3, jwst_run, names)
    assert not problems, _report(problems)


@pytest.mark.parity
def test_end_to_end_products_whole(obs, ours, jwst_run):
    names = {p.name for p in jwst_run.iterdir() if p.is_file() and p.suffix in (".fits", ".ecsv")
             and not p.name.endswith("_uncal.fits")}
    problems = compare_products(ours.e2e, jwst_run, names)
    assert not problems, _report(problems)


# ---------------------------------------------------------------------------
# references as stdatamodels writes them, keyword types, names (no pipeline run)


def _stdatamodels_area(path, shape=(64, 64), subarray=True):
    from stdatamodels.jwst import datamodels as dm

    m = dm.PixelAreaModel(data=np.full(shape, 1.01, np.float32))
    m.meta.instrument.name, m.meta.instrument.detector = "NIRCAM", "NRCALONG"
    m.meta.exposure.type = "NRC_IMAGE"
    m.meta.reftype, m.meta.author, m.meta.pedigree = "AREA", "test", "GROUND"
    m.meta.description, m.meta.useafter = "area", "2020-01-01T00:00:00"
    m.meta.photometry.pixelarea_steradians = 2.3e-13
    m.meta.photometry.pixelarea_arcsecsq = 0.0098
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(path)
    if subarray:  # not in stdatamodels' pixelarea schema; CRDS files for subarrays carry them
        from astropy.io import fits

        with fits.open(path, mode="update") as h:
            h[0].header.update(SUBARRAY="SUB64", SUBSTRT1=1, SUBSTRT2=1, SUBSIZE1=shape[1], SUBSIZE2=shape[0])
    return path


def test_area_reference_written_by_stdatamodels_is_read_with_its_primary_keywords(tmp_path):
    from astropy.io import fits

    from webbflow import models

    path = _stdatamodels_area(tmp_path / "area.fits")
    assert "PIXAR_SR" in fits.getheader(path, 0) and "PIXAR_SR" not in fits.getheader(path, "SCI")
    ref = models.PixelAreaModel(path)
    assert ref.meta.photometry.pixelarea_steradians == pytest.approx(2.3e-13)
    assert ref.meta.photometry.pixelarea_arcsecsq == pytest.approx(0.0098)
    assert ref.meta.telescope == "JWST"  # the reference schema's default: stdatamodels wrote no TELESCOP
    # and written back where stdatamodels puts them
    ref.save(tmp_path / "again.fits")
    assert fits.getheader(tmp_path / "again.fits", 0)["PIXAR_SR"] == pytest.approx(2.3e-13)
    assert "PIXAR_SR" not in fits.getheader(tmp_path / "again.fits", "SCI")


def test_photom_attaches_pixel_area_from_a_stdatamodels_area_reference(tmp_path):
    from webbflow import models
    from webbflow.tasks.photom import attach_area

    area = models.PixelAreaModel(_stdatamodels_area(tmp_path / "area.fits"))
    sci = models.ImageModel(data=np.ones((64, 64), np.float32))
    s = sci.meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "SUB64", 1, 1, 64, 64
    sci.meta.instrument.name = "NIRCAM"
    attach_area(sci, None, area)
    assert sci.meta.photometry.pixelarea_steradians == pytest.approx(2.3e-13)
    assert sci.area.shape == (64, 64)


def test_science_shaped_area_without_subarray_keywords_is_refused(tmp_path):
    """jwst attaches such an area silently (a region of the wrong place); webbflow refuses it."""
    from webbflow import models
    from webbflow.tasks.photom import attach_area
    from webbflow.tasks._subarray import GeometryError

    area = models.PixelAreaModel(_stdatamodels_area(tmp_path / "area.fits", subarray=False))
    sci = models.ImageModel(data=np.ones((64, 64), np.float32))
    s = sci.meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "SUB64", 101, 201, 64, 64
    sci.meta.instrument.name = "NIRCAM"
    with pytest.raises(GeometryError, match="no SUBSTRT/SUBSIZE keywords"):
        attach_area(sci, None, area)


def test_integer_keywords_stay_integers(tmp_path):
    from astropy.io import fits

    from webbflow import models

    m = models.ImageModel(data=np.ones((4, 4), np.float32))
    m.meta.exposure.sample_time = 10
    m.meta.exposure.frame_time = 10.737
    m.save(tmp_path / "x_rate.fits")
    h = fits.getheader(tmp_path / "x_rate.fits", 0)
    assert isinstance(h["TSAMPLE"], int) and h["TSAMPLE"] == 10
    assert isinstance(h["TFRAME"], float)
    assert isinstance(models.open(tmp_path / "x_rate.fits").meta.exposure.sample_time, int)


def test_product_names_live_low_in_the_stack():
    from webbflow.flows import naming as old
    from webbflow.models import naming

    assert old.root_of is naming.root_of and old.product_path is naming.product_path
    assert naming.root_of("jw01234001001_02101_00001_nrcalong_o001_crf.fits") == "jw01234001001_02101_00001_nrcalong_o001"
    assert naming.root_of("jw01234001001_02101_00001_nrcalong_dark_current.fits") == "jw01234001001_02101_00001_nrcalong"


def test_association_gives_each_product_its_science_members_and_level2_backgrounds(tmp_path, monkeypatch):
    """Stage 3 gets each product's own science members (no backgrounds, not the other products');
    a raw member goes through image2 with its level-2 association's backgrounds and name."""
    import json

    from webbflow.flows import association as A
    from webbflow.flows import calwebb_image3

    for n in ("a_uncal.fits", "b_uncal.fits", "bg_uncal.fits", "sky_cal.fits"):
        (tmp_path / n).write_bytes(b"")
    member = lambda name, kind="science": {"expname": name, "exptype": kind}  # noqa: E731
    asn3 = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "asn_id": "o001", "asn_pool": "pool3",
            "products": [{"name": "p1", "members": [member("a_cal.fits"), member("sky_cal.fits", "background")]},
                         {"name": "p2", "members": [member("b_cal.fits")]}]}
    asn2 = {"asn_type": "image2", "asn_rule": "candidate_Asn_Lv2Image", "asn_pool": "pool2",
            "products": [{"name": "a", "members": [member("a_uncal.fits"), member("bg_uncal.fits", "background")]}]}
    (tmp_path / "x_image3_asn.json").write_text(json.dumps(asn3))
    (tmp_path / "x_image2_00001_asn.json").write_text(json.dumps(asn2))
    out = tmp_path / "out"
    calls, stage3 = [], []

    class Done:
        def __init__(self, r):
            self.r = r

        def result(self):
            return self.r

    def submit(path, output_dir, steps, config, backgrounds=None, until="image2", asn_info=None):
        calls.append((Path(path).name, until, [Path(b).name for b in backgrounds or []], asn_info))
        root = Path(path).name.replace("_uncal.fits", "")
        made = Path(output_dir) / f"{root}_{'rate' if until == 'detector1' else 'cal'}.fits"
        return Done(A.MemberResult(member=Path(path).name, ok=True, cal=str(made)))

    def image3(good, product_name=None, asn_id=None, asn_info=None, **kw):
        stage3.append((product_name, [Path(g).name for g in good], asn_id, asn_info))
        return {"written": []}

    monkeypatch.setattr(A, "submit_member", submit)
    monkeypatch.setattr(A, "stage3_key", lambda *a, **k: "key")
    monkeypatch.setattr(calwebb_image3, "image3", image3)
    A.process_association.fn(str(tmp_path / "x_image3_asn.json"), output_dir=str(out))
    assert calls == [("bg_uncal.fits", "detector1", [], None),
                     ("a_uncal.fits", "image2", ["bg_rate.fits"], ("pool2", "x_image2_00001_asn.json")),
                     ("b_uncal.fits", "image2", [], None)]
    assert stage3 == [("p1", ["a_cal.fits"], "o001", ("pool3", "x_image3_asn.json")),
                      ("p2", ["b_cal.fits"], "o001", ("pool3", "x_image3_asn.json"))]
