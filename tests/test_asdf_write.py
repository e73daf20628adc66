"""Products are written without asdf's schema validation pass (models/_asdf_write.py): the bytes
must be those asdf's own write gives, and what is written must still pass asdf's and
stdatamodels' validation when read."""

from __future__ import annotations

import io
import warnings

import asdf
import numpy as np
import pytest
from astropy.io import fits
from conftest import REAL

from webbflow import models
from webbflow.models import _asdf_write
from webbflow.models import io as mio
from webbflow.models.spectra import COMBINED_COLUMNS, Spectrum, new_spec_table, new_tso_spec_table, spectrum_units

SLITS = sorted((REAL / "nirspec_msa_prism_slits").glob("*.fits"))
NA = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}


def _plain_write(tree, f):
    asdf.AsdfFile(tree).write_to(f)  # asdf's own write, its validation included


def _table_spectrum(cls):
    if cls is models.TSOMultiSpecModel:
        t = new_tso_spec_table(3, 20)
        t["FLUX"] = np.arange(60.0).reshape(3, 20)
        t["INT_NUM"] = [1, 2, 3]
        return Spectrum(t, {"name": "MIR_LRS-SLITLESS", "spectral_order": 1}, spectrum_units())
    if cls is models.MultiCombinedSpecModel:
        t = new_spec_table(12, columns=COMBINED_COLUMNS)
        t["FLUX"] = 2.0
        return Spectrum(t, {"source_id": 7, "spectral_order": 1, "source_type": "POINT"})
    t = new_spec_table(30)
    t["WAVELENGTH"] = np.linspace(1, 5, 30)
    t["FLUX"] = np.random.default_rng(1).normal(1e-3, 1e-4, 30)
    return Spectrum(t, {"name": "138", "source_id": 933, "spectral_order": 1, "dispersion_direction": 1,
                        "slit_ra": 10.5, "slit_dec": -3.25, "source_type": "POINT"}, spectrum_units())


def _ifu(cls):
    shape = (4, 5, 6) if cls is models.IFUCubeModel else (5, 6)
    m = cls(shape)
    m.data[:] = np.random.default_rng(2).random(shape)
    m.meta.instrument.name = "MIRI"
    return m


@pytest.fixture(scope="module")
def products():
    """One model of each spectroscopic product class, the NIRSpec ones from the real slits (their
    gWCS, and the resampled s2d's) and extract_1d's x1d of that s2d."""
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    slits = [models.open(p) for p in SLITS]
    multi = models.MultiSlitModel(slits[0])
    multi.slits.append(slits[1])
    exposures = models.MultiExposureModel(slits[0])
    exposures.slits.append(slits[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s2d = run_step("resample_spec", [s.copy() for s in slits]).model
        x1d = run_step("extract_1d", s2d, NA).model
    out = {"SlitModel": slits[0], "MultiSlitModel": multi, "MultiExposureModel": exposures, "s2d": s2d, "x1d": x1d}
    for cls in (models.MultiSpecModel, models.TSOMultiSpecModel, models.MultiCombinedSpecModel):
        m = cls()
        m.meta.instrument.name = "NIRSPEC"
        m.spec = [_table_spectrum(cls)]
        out[cls.__name__] = m
    for cls in (models.IFUImageModel, models.IFUCubeModel):
        out[cls.__name__] = _ifu(cls)
    return out


KINDS = ["SlitModel", "MultiSlitModel", "MultiExposureModel", "s2d", "x1d", "MultiSpecModel", "TSOMultiSpecModel",
         "MultiCombinedSpecModel", "IFUImageModel", "IFUCubeModel"]


@pytest.mark.real
@pytest.mark.parametrize("kind", KINDS)
def test_products_written_as_asdf_writes_them(kind, products, tmp_path, monkeypatch):
    """Each product, with and without the schema pass: the same file, byte for byte."""
    model = products[kind]
    name = f"jw01345-o062_s000000933_nirspec_clear-prism_{kind}.fits"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fast = model.save(tmp_path / "a" / name)
    monkeypatch.setattr(mio, "fast_write", _plain_write)
    plain = model.save(tmp_path / "b" / name)
    a, b = open(fast, "rb").read(), open(plain, "rb").read()
    with fits.open(fast) as h:
        size = h["ASDF"].data["ASDF_METADATA"][0].size
    assert size > 0 and a == b


@pytest.mark.real
@pytest.mark.parametrize("kind", KINDS)
def test_products_pass_asdf_and_stdatamodels_validation(kind, products, tmp_path):
    """What was written without the schema pass validates when read: asdf's tag schemas on read,
    and stdatamodels' schema of the class (strict)."""
    warnings.simplefilter("ignore")
    from stdatamodels.jwst import datamodels as dm

    model = products[kind]
    path = model.save(tmp_path / f"jw01345-o062_s000000933_nirspec_clear-prism_{kind}.fits")
    with fits.open(path) as h:
        raw = h["ASDF"].data["ASDF_METADATA"][0].tobytes()
    with asdf.config_context() as cfg:
        cfg.validate_on_read = True
        with asdf.open(io.BytesIO(raw), lazy_load=False, memmap=False) as af:
            af.validate()
    expected = {"s2d": "SlitModel", "x1d": "MultiSpecModel"}.get(kind, kind)
    with dm.open(path, strict_validation=True) as j:
        assert type(j).__name__ == expected
        j.validate()


def test_formatting_of_nested_arrays_and_shared_nodes():
    """A tree with arrays inside transforms (the ndarray schema orders their keys), a transform
    used twice (a YAML anchor), arrays stored inline and in blocks, and history: the same bytes."""
    from astropy.modeling import models as am

    table = am.Tabular1D(points=np.linspace(0, 1, 50), lookup_table=np.linspace(2, 3, 50), bounds_error=False)
    poly = am.Polynomial2D(2, c0_0=1.5, c1_0=0.25)
    shared = am.Shift(3.0) | am.Scale(2.0)
    tree = {"a": table, "b": poly, "c": shared, "d": {"again": shared}, "small": np.arange(3),
            "big": np.arange(2000.0).reshape(40, 50), "meta": {"name": "x", "list": [1, 2.5, "s"]}}
    out = []
    for write in (_plain_write, _asdf_write.fast_write):
        buf = io.BytesIO()
        write(dict(tree), buf)
        out.append(buf.getvalue())
    assert b"source:" in out[0] and b"&id" in out[0]  # block arrays and an anchor: the cases looked at
    assert out[0] == out[1]


def test_only_writes_inside_skip_validation():
    """An invalid tree fails asdf's own write as before; the fast write is not a check."""
    bad = {"x": asdf.tags.core.Software(name="w")}  # software needs its version
    with pytest.raises(Exception, match="version"):
        _plain_write(bad, io.BytesIO())
    _asdf_write.fast_write(bad, io.BytesIO())
    assert asdf.schema.validate.__wrapped__ is not None


def test_conversion_walk_as_asdfs(monkeypatch):
    """models/_asdf_walk.py converts a tree as asdf's walk_and_modify does, writing and reading: a list and a
    mapping holding themselves, nodes met twice (YAML anchors), a tuple, a transform with a block array."""
    import contextlib

    from astropy.modeling import models as am

    from webbflow.models import _asdf_walk

    calls = []
    walk = _asdf_walk._walk
    monkeypatch.setattr(_asdf_walk, "_walk", lambda *a: calls.append(a[2]) or walk(*a))
    cyc = [1, "x"]
    cyc.append(cyc)
    d = {"k": 1}
    d["self"] = d
    poly = am.Polynomial1D(2, c0=1.0)
    tree = {"cyc": cyc, "d": d, "t": (1, 2), "shared": [cyc, d, poly], "poly": poly, "arr": np.arange(10.0)}
    out = []
    for write in (_plain_write, _asdf_write.fast_write):
        buf = io.BytesIO()
        write(dict(tree), buf)
        out.append(buf.getvalue())
    assert calls and set(calls) == {False} and out[0] == out[1]  # the fast write walked preorder, the same bytes
    back = []
    for fast in (False, True):
        with _asdf_write.fast_walks() if fast else contextlib.nullcontext():
            with asdf.open(io.BytesIO(out[0]), lazy_load=False) as af:
                t = af.tree
                back.append((t["cyc"][2] is t["cyc"], t["d"]["self"] is t["d"], t["shared"][0] is t["cyc"],
                             t["shared"][2] is t["poly"], type(t["poly"]).__name__, t["t"], t["arr"].tolist(),
                             t["poly"].c0.value))
    assert True in calls  # the read walked postorder
    assert back[0] == back[1] == (True, True, True, True, "Polynomial1D", [1, 2], list(range(10)), 1.0)


def test_yaml_nodes_as_asdfs_dumper(monkeypatch):
    """The fast write's YAML nodes (models/_asdf_write.py ``_fast_dumper``) are asdf's: plain and tagged
    mappings and lists, keys of mixed types (left unsorted, as pyyaml leaves them), strings that look like
    other scalars, floats pyyaml spells its own way, numpy scalars (one of them met twice: an anchor), a
    mapping and a list met twice, ordered and empty containers, schema property orders (history): the same bytes."""
    from collections import OrderedDict

    from asdf import yamlutil

    _asdf_write._install()  # asdf's dumper class replaced by the fast one (once a process)
    made = []
    init = yamlutil.AsdfDumper.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        made.append(self._fast_types)

    monkeypatch.setattr(yamlutil.AsdfDumper, "__init__", spy)
    twice = np.int64(7)
    shared_d, shared_l = {"z": 1, "a": [1, 2]}, [True, None, "x"]
    tree = {
        "strs": ["true", "1.5", "", "null", "~", "yes", "a: b", "- x", "ünï", "#c", "0x1F", "1e3", " lead", "multi\nline"],
        "nums": [0, -1, 2**40, True, False, None, 0.0, -0.0, 1.5, 1e17, 1e-300, float("nan"), float("inf"),
                 -float("inf"), 1 / 3],
        "np": [np.float32(1.25), np.float64(2.5), np.int32(3), twice, twice],
        "mixed": {1: "one", "b": 2},
        "shared": {"one": shared_d, "two": shared_d, "l1": shared_l, "l2": shared_l},
        "empty": {"d": {}, "l": [], "nested": [[], [{}]]},
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "sorted": {"b": {"y": 1, "x": 2}, "a": [{"k": "v"}]},
    }
    out = []
    for write in (_plain_write, _asdf_write.fast_write):
        made.clear()
        buf = io.BytesIO()
        write(dict(tree), buf)
        out.append(buf.getvalue())
        if write is _asdf_write.fast_write:
            assert made and all(dict in m and str in m for m in made[:1])  # the fast nodes were used
        else:
            assert made and not any(made)
    assert b"&id" in out[0] and b"history" in out[0]
    assert out[0] == out[1]
