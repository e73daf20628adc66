"""Observability: DQ statistics, quick-look PNGs, and the artifacts a flow run publishes in Prefect."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from webbflow import models
from webbflow.flows import observe
from webbflow.models import dqflags

DNU, SAT, JUMP = (dqflags.PIXEL[k] for k in ("DO_NOT_USE", "SATURATED", "JUMP_DET"))


def read_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit grayscale, non-interlaced PNG, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, color, interlace) == (8, 0, 0)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
        if kind == b"IEND":
            break
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all(), "filter type 0 on every row"
    return raw[:, 1:]


def test_dq_stats_counts_each_flag():
    m = models.ImageModel(np.ones((10, 10), np.float32))
    m.dq[0, :] = DNU  # 10 pixels
    m.dq[1, :5] = SAT | DNU  # 5 more, both flags
    m.dq[2, :2] = JUMP  # 2
    m.data[9, 9] = np.nan
    s = observe.dq_stats(m)
    assert s["DO_NOT_USE"] == pytest.approx(0.15)
    assert s["SATURATED"] == pytest.approx(0.05)
    assert s["JUMP_DET"] == pytest.approx(0.02)
    assert s["any"] == pytest.approx(0.17)
    assert s["NaN"] == pytest.approx(0.01)


def test_dq_stats_of_a_ramp_combines_pixel_and_group_flags():
    r = models.RampModel(np.zeros((1, 3, 4, 4), np.float32))
    r.pixeldq[0, 0] = DNU
    r.groupdq[0, 1, 3, 3] = JUMP
    r.groupdq[0, 2, 3, 2] = SAT
    s = observe.dq_stats(r)
    assert s["DO_NOT_USE"] == pytest.approx(1 / 16)
    assert s["JUMP_DET"] == pytest.approx(1 / 16)
    assert s["SATURATED"] == pytest.approx(1 / 16)
    assert s["any"] == pytest.approx(3 / 16)


def test_dq_stats_does_not_create_missing_arrays():
    m = models.ImageModel(np.ones((4, 4), np.float32))
    observe.dq_stats(m)
    assert "dq" not in m._arrays


def test_png_round_trip_and_orientation():
    img = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    assert np.array_equal(read_png(observe.png_bytes(img)), img)
    # the quick-look shows detector row 0 at the bottom (as DS9), a gradient up the rows stays monotonic
    data = np.tile(np.arange(64, dtype=np.float32)[:, None], (1, 32))
    q = observe.quicklook_image(data, max_side=512, min_side=0)
    assert q.shape == (64, 32)
    assert q[-1, 0] == 0 and q[0, 0] == 255, "bottom row is detector row 0"
    assert (np.diff(q[:, 0].astype(int)) <= 0).all()


def test_quicklook_sizes_and_nan():
    big = np.random.default_rng(1).normal(100, 5, (2048, 1024)).astype(np.float32)
    big[:100, :100] = np.nan
    q = observe.quicklook_image(big)
    assert q.shape == (512, 256), "block-averaged to 512 px on the longest side"
    small = observe.quicklook_image(np.ones((64, 64), np.float32))
    assert small.shape == (256, 256), "small subarrays are enlarged to stay legible"
    allnan = observe.quicklook_image(np.full((8, 8), np.nan, np.float32), min_side=0)
    assert (allnan == 0).all()


def test_asinh_stretch_brightens_faint_levels():
    x = np.linspace(0, 1000, 10001)
    y = observe.asinh_stretch(x, 0, 100)
    assert y[0] == 0 and y[-1] == 255
    assert y[1000] > 0.25 * 255, "a tenth of the range is well above a tenth of the grey levels (asinh)"


def test_write_quicklook_next_to_the_product(tmp_path):
    m = models.ImageModel(np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32))
    p = m.save(tmp_path / "jw0_rate.fits")
    ql = observe.write_quicklook(m, p)
    assert ql == tmp_path / "jw0_rate.png"
    q = read_png(ql.read_bytes())
    assert q.shape == (192, 240)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["jw0_rate.fits", "jw0_rate.png"]


def test_artifact_keys_are_valid():
    assert observe.artifact_key("detector1", "jw01234001001_02101_00001_NRCA1", "steps") == \
        "detector1-jw01234001001-02101-00001-nrca1-steps"


def test_publish_outside_a_flow_run_never_fails(tmp_path):
    from webbflow.flows.stage import StageRun, StepRecord

    run = StageRun(params={})
    run.records.append(StepRecord("flat_field", "COMPLETE", 0.1, {"flat": "/x/jwst_nircam_flat_0001.fits"}))
    m = models.ImageModel(np.ones((16, 16), np.float32))
    m.save(tmp_path / "a_cal.fits")
    out = observe.publish_stage(run, "image2", "a_rate.fits", [m, None])
    assert list(out.values()) == [tmp_path / "a_cal.png"]
    # something unpublishable is logged, not raised
    assert observe.publish_stage(run, "image2", "a_rate.fits", [object()]) == {}


# ---------------------------------------------------------------------------
# in a real flow run


@pytest.fixture(scope="module")
def small_exposure(tmp_path_factory):
    from webbflow.refs.simulator import simulate

    out = tmp_path_factory.mktemp("observe-sim")
    sim = simulate(out, instrument="nircam", size=64, ngroups=4, nexp=1, seed=11)
    return sim


def _artifacts(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts}


def test_detector1_run_publishes_artifacts(small_exposure, crds_env, tmp_path):
    from webbflow.flows.calwebb_detector1 import detector1
    from webbflow.flows.stage import quiet_prefect_settings

    crds_env(small_exposure.crds_path)
    out = tmp_path / "products"
    with quiet_prefect_settings():
        state = detector1(str(small_exposure.uncal[0]), output_dir=str(out), return_state=True)
    assert state.is_completed()
    arts = _artifacts(state.state_details.flow_run_id)
    root = "jw01234001001-02101-00001-nrca1"
    steps = json.loads(arts[f"detector1-{root}-steps"].data)
    names = [r["step"] for r in steps]
    assert names[:3] == ["group_scale", "dq_init", "saturation"] and "ramp_fit" in names and "jump" in names
    jump = next(r for r in steps if r["step"] == "jump")
    assert jump["status"] == "COMPLETE" and jump["seconds"] > 0
    dq_init = next(r for r in steps if r["step"] == "dq_init")
    assert "mask=jwst_nircam_mask_" in dq_init["references"]

    rate_path = out / "jw01234001001_02101_00001_nrca1_rate.fits"
    rate = models.open(rate_path)
    expected = observe.dq_stats(rate)
    rows = {r["product"]: r for r in json.loads(arts[f"detector1-{root}-dq"].data)}
    row = rows[rate_path.name]
    assert row["shape"] == "64x64"
    assert float(row["SATURATED %"]) == pytest.approx(100 * expected["SATURATED"], abs=1e-3)
    assert float(row["JUMP_DET %"]) == pytest.approx(100 * expected["JUMP_DET"], abs=1e-3)
    assert expected["SATURATED"] > 0, "the simulated bright star saturates"

    md = arts[f"detector1-{root}-summary"].data
    ctx = rate.meta.ref_file.crds.context_used
    assert f"`{ctx}`" in md and "jwst_nircam_dark_" in md and "data:image/png;base64," in md
    # the quick-look is shown inside a markdown artifact, the PNG itself, not a file:// link
    art = arts["quicklook-jw01234001001-02101-00001-nrca1-rate"]
    png = out / "jw01234001001_02101_00001_nrca1_rate.png"
    assert art.type == "markdown" and "file://" not in art.data
    import base64

    assert base64.b64encode(png.read_bytes()).decode() in art.data
    q = read_png(png.read_bytes())
    assert q.shape == (256, 256) and q.max() == 255 and q.min() == 0
    # the brightest quick-look block sits where the rate image peaks (row flipped)
    data = np.nan_to_num(rate.data, nan=-np.inf)
    y, x = np.unravel_index(np.argmax(data), data.shape)
    assert q[(63 - y) * 4 + 2, x * 4 + 2] >= 250


def test_association_deployment_flow_publishes_its_summary(crds_env, tmp_path):
    """The deployed association flow, run in-process: typed steps reach the members, and the run shows a summary."""
    from webbflow.deployments.flows import association
    from webbflow.flows.stage import quiet_prefect_settings
    from webbflow.refs.simulator import simulate

    sim = simulate(tmp_path / "raw", instrument="nircam", size=64, ngroups=3, nexp=2, seed=12)
    crds_env(sim.crds_path)
    asn = {"asn_type": "image2", "asn_rule": "candidate_Asn_Lv2Image", "asn_pool": "p",
           "products": [{"name": u.name[:-11], "members": [{"expname": u.name, "exptype": "science"}]} for u in sim.uncal]}
    asn_path = tmp_path / "raw" / "jw01234-o001_test_asn.json"
    asn_path.write_text(json.dumps(asn))
    out = tmp_path / "products"
    with quiet_prefect_settings():
        state = association(str(asn_path), output_dir=str(out), steps={"image2": {"resample": {"pixfrac": 0.7}}},
                            return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert [m["ok"] for m in summary["members"]] == [True, True]
    assert all(m["reused"] == [] for m in summary["members"])
    i2d = models.open(out / "jw01234001001_02101_00001_nrca1_i2d.fits")
    assert i2d._asdf_extra["webbflow_provenance"][-1]["parameters"]["resample"]["pixfrac"] == 0.7
    arts = _artifacts(state.state_details.flow_run_id)
    assert state.state_details.flow_run_id and set(arts) == {"association-jw01234-o001-test-members",
                                                             "association-jw01234-o001-test-summary"}
    rows = json.loads(arts["association-jw01234-o001-test-members"].data)
    assert [r["exposure"] for r in rows] == [u.name for u in sim.uncal] and all(r["ok"] for r in rows)
    md = arts["association-jw01234-o001-test-summary"].data
    assert "2 of 2 calibrated" in md and "| jw01234001001_02101_00002_nrca1_uncal.fits | ok | - |" in md
