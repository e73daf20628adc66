"""Bad input at every user-facing entry point: one clear line naming the file and the problem,
a non-zero exit, no traceback, no partial product (issue 10).

The command line runs in-process through ``webbflow.flows.cli.main`` (no Prefect server:
with no PREFECT_API_URL the stage flows run untracked), a few cases through a real
subprocess.  The Python flows must raise a WebbflowError subclass whose message names
the file.

NaN and infinity (decided here, documented in tasks/flat_field.py): as in jwst, a
non-finite science pixel is not an error; image2 sets it to NaN and flags it DO_NOT_USE
(jwst flags NaN only; we treat infinities the same so that they cannot spread through
resample into the mosaic).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from webbflow import models
from webbflow.errors import InputFileError, ParameterError, UnsupportedModeError, WebbflowError


# ---------------------------------------------------------------------------
# shared material: one small simulated observation, calibrated once


def make_observation(root: Path):
    """Two 64x64 NIRCam exposures (4 groups) with their CRDS cache, rate and cal products."""
    from webbflow.flows.cli import main
    from webbflow.refs.select import reset_crds_state
    from webbflow.refs.simulator import simulate

    sim = simulate(root / "raw", instrument="nircam", size=64, ngroups=4, nints=1, nexp=2, seed=5)
    os.environ["CRDS_PATH"] = str(sim.crds_path)
    reset_crds_state()
    good = root / "good"
    for u in sim.uncal:
        assert main(["run", "detector1", str(u), "--output-dir", str(good)]) == 0
        rate = good / u.name.replace("_uncal", "_rate")
        assert main(["run", "image2", str(rate), "--output-dir", str(good)]) == 0
    return sim, good


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    root = tmp_path_factory.mktemp("badinput")
    old = os.environ.get("CRDS_PATH")
    sim, good = make_observation(root)
    yield sim, good
    if old is not None:
        os.environ["CRDS_PATH"] = old
    from webbflow.refs.select import reset_crds_state

    reset_crds_state()


def run_cli(capsys, *args) -> tuple[int, str]:
    from webbflow.flows.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def assert_one_line(rc: int, err: str, *fragments) -> str:
    assert rc != 0, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("webbflow: error:"), lines[0]
    for f in fragments:
        assert str(f) in lines[0], (f, lines[0])
    return lines[0]


def assert_no_partial(folder: Path) -> None:
    """Nothing half-written: no temporary files, and every FITS product there opens."""
    if not folder.exists():
        return
    assert not list(folder.rglob("*.part")), list(folder.rglob("*.part"))
    for p in folder.rglob("*.fits"):
        models.open(p)


def mutate(src: Path, dst: Path, fn) -> Path:
    with fits.open(src) as h:
        hdul = fits.HDUList([x.copy() for x in h])
    fn(hdul)
    hdul.writeto(dst, overwrite=True, output_verify="silentfix")
    return dst


# ---------------------------------------------------------------------------
# unreadable files, every pipeline and a single step


def _unreadable(tmp_path, kind, suffix):
    p = tmp_path / f"jw_{kind}_{suffix}.fits"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "random":
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    elif kind == "text":
        p.write_text("SIMPLE  = T\nthis is not a FITS header at all\n" * 40)
    return p


@pytest.mark.parametrize("kind", ["empty", "random", "text"])
@pytest.mark.parametrize("pipeline,suffix", [("detector1", "uncal"), ("image2", "rate"), ("jump", "ramp"), ("flat_field", "rate")])
def test_unreadable_files(obs, tmp_path, capsys, kind, pipeline, suffix):
    p = _unreadable(tmp_path, kind, suffix)
    rc, err = run_cli(capsys, "run", pipeline, p, "--output-dir", tmp_path / "out")
    assert_one_line(rc, err, p.name)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _cut_points(src: Path) -> dict[str, int]:
    """Byte offsets that cut real content: early, mid-file, inside the last extension's data."""
    with fits.open(src) as h:
        info = h.fileinfo(len(h) - 1)
        last = info["datLoc"] + max(info["datSpan"] // 2, 1)
    size = src.stat().st_size
    return {"early": size // 10, "middle": size // 2, "last_hdu": last}


@pytest.mark.parametrize("where", ["early", "middle", "last_hdu"])
def test_truncated_uncal_and_rate(obs, tmp_path, capsys, where):
    sim, good = obs
    for pipeline, src in (("detector1", sim.uncal[0]), ("image2", next(good.glob("*_rate.fits")))):
        raw = src.read_bytes()
        p = tmp_path / src.name
        p.write_bytes(raw[: _cut_points(src)[where]])
        rc, err = run_cli(capsys, "run", pipeline, p, "--output-dir", tmp_path / "out")
        line = assert_one_line(rc, err, p.name)
        assert "truncated" in line or "not a readable FITS" in line or "cannot be read" in line, line
        assert_no_partial(tmp_path / "out")


# ---------------------------------------------------------------------------
# malformed FITS


def _drop(name):
    def f(h):
        del h[name]

    return f


def _reshape(name, fn):
    def f(h):
        h[name].data = fn(h[name].data)

    return f


MALFORMED = {
    "no_sci": (_drop("SCI"), "requires a SCI extension"),
    "sci_2d": (_reshape("SCI", lambda a: a.reshape(-1, a.shape[-1])[:10]), "SCI"),
    "sci_float64": (_reshape("SCI", lambda a: a.astype(">f8")), "dtype"),
    "sci_int8": (_reshape("SCI", lambda a: (a % 100).astype("i1")), "dtype"),
    "ngroups_text": (lambda h: h[0].header.__setitem__("NGROUPS", "abc"), "NGROUPS"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_uncal(obs, tmp_path, capsys, case):
    sim, _ = obs
    fn, fragment = MALFORMED[case]
    p = mutate(sim.uncal[0], tmp_path / f"jw_{case}_uncal.fits", fn)
    rc, err = run_cli(capsys, "run", "detector1", p, "--output-dir", tmp_path / "out")
    assert_one_line(rc, err, p.name, fragment)
    assert_no_partial(tmp_path / "out")


RATE_MALFORMED = {
    "no_sci": (_drop("SCI"), "requires a SCI extension"),
    "dq_wrong_shape": (_reshape("DQ", lambda a: a[:10, :10]), "DQ"),
    "sci_wrong_shape": (_reshape("SCI", lambda a: a[:10, :10]), "SCI"),
    "err_3d": (_reshape("ERR", lambda a: a[None, None]), "ERR"),
}


@pytest.mark.parametrize("case", sorted(RATE_MALFORMED))
def test_malformed_rate(obs, tmp_path, capsys, case):
    _, good = obs
    fn, fragment = RATE_MALFORMED[case]
    p = mutate(next(good.glob("*_rate.fits")), tmp_path / f"jw_{case}_rate.fits", fn)
    rc, err = run_cli(capsys, "run", "image2", p, "--output-dir", tmp_path / "out")
    assert_one_line(rc, err, p.name, fragment)
    assert_no_partial(tmp_path / "out")


def test_science_subarray_outside_the_references(obs, tmp_path, capsys):
    """A corner that puts the exposure off the detector: the references cannot cover it."""
    sim, good = obs
    p = mutate(sim.uncal[0], tmp_path / "jw_corner_uncal.fits", lambda h: h[0].header.__setitem__("SUBSTRT1", 5000))
    rc, err = run_cli(capsys, "run", "detector1", p, "--output-dir", tmp_path / "out")
    assert_one_line(rc, err, "reference", "SUBSTRT1=5000", p.name)
    r2 = mutate(next(good.glob("*_rate.fits")), tmp_path / "jw_corner2_rate.fits", lambda h: h[0].header.__setitem__("SUBSTRT1", 5000))
    for q in (r2,):
        rc, err = run_cli(capsys, "run", "image2", q, "--output-dir", tmp_path / "out")
        assert_one_line(rc, err, "reference", "SUBSTRT1=5000", q.name)
    assert_no_partial(tmp_path / "out")


# ---------------------------------------------------------------------------
# the wrong model, an unsupported instrument or mode


def test_wrong_model_for_the_pipeline(obs, tmp_path, capsys):
    sim, good = obs
    rate = next(good.glob("*_rate.fits"))
    rc, err = run_cli(capsys, "run", "detector1", rate, "--output-dir", tmp_path)
    assert_one_line(rc, err, rate.name, "is an ImageModel; detector1 needs raw ramps")
    rc, err = run_cli(capsys, "run", "image2", sim.uncal[0], "--output-dir", tmp_path)
    assert_one_line(rc, err, sim.uncal[0].name, "image2 needs a count-rate image")
    rc, err = run_cli(capsys, "run", "image3", rate, "--output-dir", tmp_path)
    assert_one_line(rc, err, rate.name, "association")
    rc, err = run_cli(capsys, "run", "jump", rate, "--output-dir", tmp_path)
    assert_one_line(rc, err, rate.name, "is an ImageModel; this step needs a RampModel")
    assert not list(tmp_path.glob("*.fits"))


def test_unsupported_instrument_lists_the_supported(obs, tmp_path, capsys):
    sim, good = obs
    u = mutate(sim.uncal[0], tmp_path / "jw_foo_uncal.fits", lambda h: h[0].header.__setitem__("INSTRUME", "HUBBLE"))
    rc, err = run_cli(capsys, "run", "detector1", u, "--output-dir", tmp_path)
    assert_one_line(rc, err, u.name, "HUBBLE", "NIRCAM", "MIRI", "NIRISS")
    r = mutate(next(good.glob("*_rate.fits")), tmp_path / "jw_foo_rate.fits", lambda h: h[0].header.__setitem__("EXP_TYPE", "NRC_WFSS"))
    rc, err = run_cli(capsys, "run", "image2", r, "--output-dir", tmp_path)
    assert_one_line(rc, err, r.name, "NRC_WFSS")


# ---------------------------------------------------------------------------
# NaN and infinity: flagged, not fatal


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_rate_pixels_are_flagged_not_fatal(obs, tmp_path, capsys, bad):
    _, good = obs
    rate = next(good.glob("*_rate.fits"))
    where = np.zeros((64, 64), bool)
    where[10:14, 20:30] = True

    def poke(h):
        d = h["SCI"].data.astype(np.float32)
        d[where] = bad
        h["SCI"].data = d

    p = mutate(rate, tmp_path / "jw_nonfinite_rate.fits", poke)
    rc, err = run_cli(capsys, "run", "image2", p, "--output-dir", tmp_path / "out")
    assert rc == 0, err
    cal = models.open(tmp_path / "out" / "jw_nonfinite_cal.fits")
    assert not np.isinf(cal.data).any() and not np.isinf(cal.err).any()
    assert np.isnan(cal.data[where]).all()
    assert ((cal.dq[where] & 1) != 0).all(), "non-finite pixels are DO_NOT_USE"
    i2d = models.open(tmp_path / "out" / "jw_nonfinite_i2d.fits")
    assert not np.isinf(i2d.data).any()
    assert np.isfinite(i2d.data).mean() > 0.5


# ---------------------------------------------------------------------------
# parameters


def test_unknown_and_mistyped_parameters(obs, tmp_path, capsys):
    sim, _ = obs
    u = sim.uncal[0]
    rc, err = run_cli(capsys, "run", "detector1", u, "--steps.jump.no_such_thing=3", "--output-dir", tmp_path)
    assert_one_line(rc, err, "jump", "no_such_thing")
    rc, err = run_cli(capsys, "run", "detector1", u, "--steps.jump.rejection_threshold=lots", "--output-dir", tmp_path)
    assert_one_line(rc, err, "jump", "rejection_threshold")
    rc, err = run_cli(capsys, "run", "detector1", u, "--steps.nosuchstep.x=1", "--output-dir", tmp_path)
    assert_one_line(rc, err, "nosuchstep")
    rc, err = run_cli(capsys, "run", "detector1", u, "--frobnicate=1", "--output-dir", tmp_path)
    assert_one_line(rc, err, "frobnicate")
    rc, err = run_cli(capsys, "run", "saturation", u, "--n_pix_grow_sat=two", "--output-dir", tmp_path)
    assert_one_line(rc, err, "saturation", "n_pix_grow_sat")
    # a misspelt parameter or step gets a "did you mean", still on one line
    rc, err = run_cli(capsys, "run", "detector1", u, "--steps.jump.rejection_treshold=3", "--output-dir", tmp_path)
    assert_one_line(rc, err, "step jump: unknown parameter 'rejection_treshold' (did you mean 'rejection_threshold'?)")
    rc, err = run_cli(capsys, "run", "jump", u, "--rejection_treshold=3", "--output-dir", tmp_path)
    assert_one_line(rc, err, "(did you mean 'rejection_threshold'?)")
    rc, err = run_cli(capsys, "run", "detector1", u, "--steps.jmup.rejection_threshold=3", "--output-dir", tmp_path)
    assert_one_line(rc, err, "unknown step(s) jmup (did you mean 'jump'?)")
    rc, err = run_cli(capsys, "run", "saturation", u, "--override_saturaton=x.fits", "--output-dir", tmp_path)
    assert_one_line(rc, err, "(did you mean 'override_saturation'?)")
    assert not list(tmp_path.glob("*.fits"))


def test_python_flows_raise_user_errors(obs, tmp_path):
    from webbflow.flows import detector1, image2

    sim, good = obs
    rate = next(good.glob("*_rate.fits"))
    with pytest.raises(InputFileError, match=rate.name):
        detector1.fn(str(rate))
    with pytest.raises(InputFileError, match=sim.uncal[0].name):
        image2.fn(str(sim.uncal[0]))
    junk = _unreadable(tmp_path, "random", "uncal")
    with pytest.raises(InputFileError, match=junk.name):
        detector1.fn(str(junk))
    with pytest.raises(ParameterError, match="rejection_threshold"):
        detector1.fn(str(sim.uncal[0]), steps={"jump": {"rejection_threshold": "lots"}})
    bad = mutate(sim.uncal[0], tmp_path / "jw_hst_uncal.fits", lambda h: h[0].header.__setitem__("INSTRUME", "WFC3"))
    with pytest.raises(UnsupportedModeError, match="jw_hst_uncal.fits.*supported: NIRCAM"):
        detector1.fn(str(bad))


def test_python_image3_refuses_bad_members(obs, tmp_path):
    from webbflow.flows import image3

    sim, _ = obs
    junk = _unreadable(tmp_path, "random", "cal")
    with pytest.raises(WebbflowError, match=junk.name):
        image3.fn([str(junk)])


# ---------------------------------------------------------------------------
# references


def test_missing_reference_override(obs, tmp_path, capsys):
    sim, _ = obs
    gone = tmp_path / "nope_gain.fits"
    rc, err = run_cli(capsys, "run", "detector1", sim.uncal[0], f"--steps.ramp_fit.override_gain={gone}", "--output-dir", tmp_path / "o")
    assert_one_line(rc, err, "gain", "nope_gain.fits")
    assert_no_partial(tmp_path / "o")


def _ref_path(sim, reftype):
    hits = sorted(Path(sim.crds_path).rglob(f"*_{reftype}_*.fits"))
    assert hits, reftype
    return hits[0]


@pytest.mark.parametrize(
    "step,reftype,pipeline",
    [
        ("saturation", "saturation", "detector1"),
        ("superbias", "superbias", "detector1"),
        ("dark_current", "dark", "detector1"),
        ("linearity", "linearity", "detector1"),
        ("dq_init", "mask", "detector1"),
        ("ramp_fit", "gain", "detector1"),
        ("ramp_fit", "readnoise", "detector1"),
        # (a flat smaller than the exposure is skipped with a warning, as jwst does)
    ],
)
def test_reference_of_the_wrong_shape(obs, tmp_path, capsys, step, reftype, pipeline):
    """A full-frame-labelled reference too small for the exposure: named by reftype and file."""
    sim, good = obs
    src = _ref_path(sim, reftype)

    def shrink(h):
        for hdu in h[1:]:
            if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                hdu.data = np.ascontiguousarray(hdu.data[..., :16, :16])
        for hdu in h:
            for k in ("SUBSTRT1", "SUBSTRT2"):
                if k in hdu.header:
                    hdu.header[k] = 1
            for k in ("SUBSIZE1", "SUBSIZE2"):
                if k in hdu.header:
                    hdu.header[k] = 16

    bad = mutate(src, tmp_path / f"small_{reftype}.fits", shrink)
    inp = sim.uncal[0] if pipeline == "detector1" else next(good.glob("*_rate.fits"))
    out = tmp_path / "o"
    rc, err = run_cli(capsys, "run", pipeline, inp, f"--steps.{step}.override_{reftype}={bad}", "--output-dir", out)
    assert_one_line(rc, err, reftype, bad.name)
    assert_no_partial(out)
    assert not list(out.glob("*_rate.fits")) and not list(out.glob("*_cal.fits"))


def test_reference_that_is_not_fits(obs, tmp_path, capsys):
    sim, _ = obs
    bad = tmp_path / "garbage_dark.fits"
    bad.write_bytes(b"\x00garbage" * 500)
    rc, err = run_cli(capsys, "run", "detector1", sim.uncal[0], f"--steps.dark_current.override_dark={bad}", "--output-dir", tmp_path / "o")
    assert_one_line(rc, err, "dark", bad.name)


# ---------------------------------------------------------------------------
# associations


def _asn(folder: Path, members: list[str], name="t_asn.json", level=3) -> Path:
    asn = {
        "asn_type": "image3" if level == 3 else "image2",
        "asn_rule": "candidate_Asn_Lv3Image" if level == 3 else "Asn_Lv2Image",
        "products": [{"name": "jw-test_nircam", "members": [{"expname": m, "exptype": "science"} for m in members]}],
    }
    p = folder / name
    p.write_text(json.dumps(asn))
    return p


@pytest.mark.parametrize("text", ["{not json", '{"products": []}', "[1, 2]", '{"products": [{"name": "p", "members": [{"exptype": "science"}]}]}', ""])
def test_malformed_asn_json_through_the_cli(tmp_path, capsys, text):
    p = tmp_path / "m_asn.json"
    p.write_text(text)
    rc, err = run_cli(capsys, "run", "image3", p, "--output-dir", tmp_path / "o")
    assert_one_line(rc, err, "m_asn.json")


def test_member_outside_the_folder_is_never_opened(obs, tmp_path, capsys):
    """A member path escaping the association's folder is refused before anything is read:
    the outside "file" is a FIFO (opening it would block) and an unreadable file."""
    sim, good = obs
    folder = tmp_path / "asn"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    fifo = outside / "trap_cal.fits"
    os.mkfifo(fifo)
    locked = outside / "locked_cal.fits"
    shutil.copy(next(good.glob("*_cal.fits")), locked)
    locked.chmod(0)
    shutil.copy(next(good.glob("*_cal.fits")), folder / "ok_cal.fits")
    try:
        for member in ("../outside/trap_cal.fits", str(fifo), "../outside/locked_cal.fits", "sub/../../outside/trap_cal.fits"):
            p = _asn(folder, ["ok_cal.fits", member])
            rc, err = run_cli(capsys, "run", "image3", p, "--output-dir", tmp_path / "o")
            line = assert_one_line(rc, err, "t_asn.json")
            assert "outside the association's folder" in line or "absolute path" in line, line
            assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("jw-test*"))
    finally:
        locked.chmod(0o600)


def test_bad_member_is_named(obs, tmp_path, capsys):
    sim, good = obs
    folder = tmp_path / "asn"
    folder.mkdir()
    for c in good.glob("*_cal.fits"):
        shutil.copy(c, folder / c.name)
    junk = folder / "jw_junk_cal.fits"
    junk.write_bytes(b"\x01" * 5000)
    members = sorted(c.name for c in good.glob("*_cal.fits")) + [junk.name]
    p = _asn(folder, members)
    out = tmp_path / "o"
    rc, err = run_cli(capsys, "run", "image3", p, "--output-dir", out)
    assert_one_line(rc, err, "t_asn.json", junk.name)
    assert_no_partial(out)
    # a member that is missing altogether
    p = _asn(folder, members[:2] + ["jw_gone_cal.fits"], name="g_asn.json")
    rc, err = run_cli(capsys, "run", "image3", p, "--output-dir", out)
    assert_one_line(rc, err, "g_asn.json", "jw_gone_cal.fits")


# ---------------------------------------------------------------------------
# a few through a real process: exit status and stderr as a shell sees them


def test_real_process_one_line(obs, tmp_path):
    sim, good = obs
    env = dict(os.environ)
    junk = _unreadable(tmp_path, "random", "uncal")
    for args in (
        ["run", "detector1", junk],
        ["run", "image2", sim.uncal[0]],
        ["run", "detector1", sim.uncal[0], "--steps.jump.rejection_threshold=lots"],
    ):
        r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", *map(str, args), "--output-dir", str(tmp_path / "o")],
                           capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 1, r.stderr
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("webbflow: error:"), r.stderr
        assert "Traceback" not in r.stderr
