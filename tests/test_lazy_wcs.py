"""models/_lazy_wcs.py: the WCS nodes cut out of an ASDF tree's YAML and parsed on first use.

A tree of slits whose gwcs WCSs share objects (so that asdf writes YAML anchors in the first WCS
and aliases to them in the others, as jwst's WFSS cal files have them) is written with asdf, cut,
and each cut WCS parsed alone: it must give the WCS a full read gives.  An alias from the rest of
the tree into a WCS keeps that WCS in the tree; the placeholders keep the bytes' length (the
blocks after the YAML stay where the block index says).
"""

from __future__ import annotations

import io

import asdf
import numpy as np
import pytest
from astropy import units as u
from astropy.modeling import models as am

from webbflow.models._lazy_wcs import CUT_TAG, split_wcs_yaml


def _wcs(shift, shared):
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    det = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    out = cf.Frame2D(name="out", axes_names=("a", "b"), unit=(u.pix, u.pix))
    return wcs.WCS([(det, (am.Shift(shift) & am.Shift(2 * shift)) | shared), (out, None)])


def _file(extra=None) -> tuple[bytes, dict]:
    shared = am.Polynomial1D(2, c0=1.0, c1=2.0, c2=0.5, domain=[-1, 1]) & am.Scale(3.0)
    slits = [{"name": f"s{k}", "data": np.arange(6.0) + k, "meta": {"wcs": _wcs(k + 1.0, shared)}} for k in range(3)]
    tree = {"meta": {"telescope": "JWST"}, "slits": slits, **(extra or {})}
    buf = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buf)
    return buf.getvalue(), tree


def _open(raw):
    return asdf.open(io.BytesIO(raw), lazy_load=False, memmap=False)


def test_cut_wcs_nodes_parse_to_the_same_wcs():
    from asdf.yamlutil import tagged_tree_to_custom_tree

    raw, tree = _file()
    assert b"*id" in raw  # the later WCSs alias nodes of the first
    new, cut = split_wcs_yaml(raw)
    assert len(new) == len(raw) and len(cut) == 3
    with _open(new) as af, _open(raw) as full:
        for k, slit in enumerate(af.tree["slits"]):
            assert slit["meta"]["wcs"]._tag == CUT_TAG and int(slit["meta"]["wcs"]) == k
            np.testing.assert_array_equal(slit["data"], full.tree["slits"][k]["data"])  # the blocks are read
            w, ref = tagged_tree_to_custom_tree(cut.parse(k), af), full.tree["slits"][k]["meta"]["wcs"]
            x, y = np.array([0.0, 3.5]), np.array([1.0, -2.0])
            np.testing.assert_array_equal(np.array(w(x, y)), np.array(ref(x, y)))
            assert w.available_frames == ref.available_frames


def test_an_alias_from_outside_keeps_the_wcs_in_the_tree():
    raw, _tree = _file()
    # a key of the root, after the slits, aliasing a node anchored inside the first WCS
    text = raw.decode("latin-1")
    anchor = text.index("&id")
    name = text[anchor + 1:text.index(" ", anchor)]
    end = text.index("\n...\n")
    raw2 = (text[:end] + f"\nalso: *{name}" + text[end:]).encode("latin-1")
    new, cut = split_wcs_yaml(raw2)
    assert len(cut) == 2  # the first WCS stays in the tree; the others are cut
    with _open(new) as af:
        assert af.tree["slits"][0]["meta"]["wcs"].available_frames == ["detector", "out"]


@pytest.mark.parametrize("raw", [b"", b"#ASDF 1.0.0\n%YAML 1.1\n--- {a: 1}\n...\n", b"not yaml at all"])
def test_nothing_to_cut(raw):
    assert split_wcs_yaml(raw) is None


def test_a_lazily_read_tree_parses_each_wcs_on_first_use():
    """Read as spec3 reads cal files (``lazy_wcs_reading``): each WCS is a LazyWcs whose YAML is
    parsed on first use; its tagged node is there for who reads it (cube_build's digest of the
    detector steps), and the WCS it makes is a full read's."""
    from webbflow.models._lazy_wcs import LazyWcs, lazy_wcs_reading
    from webbflow.models.base import _load_asdf_tree

    raw, _tree = _file()
    with lazy_wcs_reading():
        tree = _load_asdf_tree(np.frombuffer(raw, np.uint8), "test.asdf")
    with _open(raw) as full:
        for k, slit in enumerate(tree["slits"]):
            w = slit["meta"]["wcs"]
            assert isinstance(w, LazyWcs) and not w.parsed
            if k == 0:
                assert [st["frame"]["name"] for st in w._node["steps"]] == ["detector", "out"] and w.parsed
            x, y = np.array([0.0, 3.5]), np.array([1.0, -2.0])
            np.testing.assert_array_equal(np.array(w(x, y)), np.array(full.tree["slits"][k]["meta"]["wcs"](x, y)))
            assert w._node is None  # made: the node is let go


def test_lazily_read_arrays_of_one_file_are_read_safely_from_several_threads(tmp_path, monkeypatch):
    """A NIRSpec slit's WCS keeps some of its arrays (a Tabular model's points) as asdf's lazy arrays,
    read from the file's one in-memory buffer when first used, and spec3 evaluates the slits of one
    exposure in several source threads.  With a seek that lets the other threads run before the read
    (as a busy machine does now and then), the first reads from four threads at once must each get
    their own bytes: the same arrays as read one by one."""
    import threading
    import time

    from asdf.tags.core import NDArrayType
    from conftest import REAL

    from webbflow import models
    from webbflow.flows.calwebb_spec3 import _open_slits
    from webbflow.models import base

    slit = models.open(sorted((REAL / "nirspec_msa_prism_slits").glob("*.fits"))[0])
    exposure = models.MultiSlitModel(slit)
    exposure.slits = []
    for k in range(6):
        s = slit.copy()
        s.source_id, s.name = 933 + k, str(1000 + k)
        exposure.slits.append(s)
    path = tmp_path / "jw01345062001_03101_00001_nrs2_cal.fits"
    exposure.save(path)

    def lazy_arrays(m):
        out = []
        for s in m.slits:
            for step in s.meta.wcs.pipeline:
                for sub in step.transform.traverse_postorder() if step.transform is not None else ():
                    for name in ("points", "lookup_table"):
                        value = getattr(sub, name, None)
                        out += [x for x in (value if isinstance(value, tuple) else (value,)) if isinstance(x, NDArrayType)]
        return out

    first = _open_slits(path)  # (the file's buffer lives as long as its model)
    expected = [np.array(x) for x in lazy_arrays(first)]
    assert len(expected) >= 6  # the case this guards: arrays left lazy by the WCS's converters

    class SlowSeek(io.BytesIO):
        def seek(self, *args):
            at = super().seek(*args)
            time.sleep(0.002)
            return at

    monkeypatch.setattr(base.io, "BytesIO", SlowSeek)
    second = _open_slits(path)
    arrays = lazy_arrays(second)
    got: dict[int, object] = {}
    start = threading.Barrier(4)

    def read(k):
        start.wait()
        for i in range(k, len(arrays), 4):
            try:
                got[i] = np.array(arrays[i])
            except Exception as exc:  # noqa: BLE001 - a wrong read is what is checked
                got[i] = exc

    threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [i for i in range(len(arrays)) if not isinstance(got[i], np.ndarray)] == []
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(got[i], want)
