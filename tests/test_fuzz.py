"""Fuzz: a deterministic corpus of generated bad inputs through ``webbflow run`` (issue 10).

Each input is made from a good uncal / rate / cal file by one seeded mutation (header
keywords set to wrong types or values, truncated arrays, wrong dtypes, dropped
extensions, garbage bytes in the header or data).  Each goes through detector1, image2,
and image3 (as a member of an association).  The rules: the CLI never lets an exception
escape; it exits 0 with products that open, or non-zero with one line on stderr
starting ``webbflow: error:`` that names the input (for image3: the association and the
offending member), without a traceback; and nothing half-written (no ``*.part``) is left.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from test_bad_input import assert_no_partial, make_observation, run_cli

N_CASES = 50
KEYWORDS = ["INSTRUME", "DETECTOR", "EXP_TYPE", "NGROUPS", "NINTS", "SUBSTRT1", "SUBSIZE2", "READPATT", "FILTER", "TFRAME",
            "SUBARRAY", "NFRAMES", "GROUPGAP", "EFFINTTM"]
VALUES = ["", "abc", -1, 0, 10**9, 3.7, True, "NRC_CORON", "MIRIMAGE", "🙂".encode("ascii", "replace").decode()]


def mutation(seed: int):
    """A (name, function(path) -> None) mutation picked by ``seed``."""
    rng = np.random.default_rng(seed)
    kind = ["keyword", "truncate", "dtype", "drop", "garbage", "reshape"][seed % 6]

    def edit(path, fn):
        with fits.open(path) as h:
            hdul = fits.HDUList([x.copy() for x in h])
        fn(hdul)
        hdul.writeto(path, overwrite=True, output_verify="silentfix")

    if kind == "keyword":
        key, val = KEYWORDS[rng.integers(len(KEYWORDS))], VALUES[rng.integers(len(VALUES))]

        def f(path):
            edit(path, lambda h: h[0].header.__setitem__(key, val))

        return f"{key}={val!r}", f
    if kind == "truncate":
        frac = float(rng.uniform(0.02, 0.98))

        def f(path):
            raw = path.read_bytes()
            path.write_bytes(raw[: int(len(raw) * frac)])

        return f"truncate{frac:.2f}", f
    if kind == "dtype":
        dt = ["i1", ">i4", ">f8", ">i8", ">u4"][rng.integers(5)]

        def f(path):
            def g(h):
                hdu = h[1 + int(rng.integers(len(h) - 2))]
                if hdu.is_image and hdu.data is not None:
                    hdu.data = np.nan_to_num(hdu.data.astype(np.float64) % 100).astype(dt)

            edit(path, g)

        return f"dtype{dt}", f
    if kind == "drop":
        def f(path):
            edit(path, lambda h: h.pop(1 + int(rng.integers(len(h) - 1))))

        return "drop", f
    if kind == "garbage":
        where = float(rng.uniform(0, 1))
        n = int(rng.integers(8, 400))

        def f(path):
            raw = bytearray(path.read_bytes())
            at = int(len(raw) * where)
            raw[at: at + n] = rng.integers(0, 256, min(n, len(raw) - at), dtype=np.uint8).tobytes()
            path.write_bytes(bytes(raw))

        return f"garbage{where:.2f}x{n}", f

    def f(path):
        def g(h):
            hdu = h[1 + int(rng.integers(len(h) - 2))]
            if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                hdu.data = np.ascontiguousarray(hdu.data[..., : int(rng.integers(1, 40)), :])

        edit(path, g)

    return "reshape", f


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    sim, good = make_observation(root)
    return sim, good


def check(rc, err, out, *names):
    assert "Traceback" not in err, err
    assert_no_partial(out)
    if rc == 0:
        return "ok"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("webbflow: error:"), err
    for n in names:
        assert n in lines[0], (n, lines[0])
    return "refused"


@pytest.mark.parametrize("seed", range(N_CASES))
def test_fuzz_case(base, tmp_path, capsys, seed):
    sim, good = base
    label, fn = mutation(seed)
    outcomes = {}
    # detector1 on a mutated uncal
    u = tmp_path / f"jw_fuzz{seed}_uncal.fits"
    shutil.copy(sim.uncal[0], u)
    fn(u)
    rc, err = run_cli(capsys, "run", "detector1", u, "--output-dir", tmp_path / "o1")
    outcomes["detector1"] = check(rc, err, tmp_path / "o1", u.name)
    # image2 on a mutated rate
    label2, fn2 = mutation(seed + 1000)
    r = tmp_path / f"jw_fuzz{seed}_rate.fits"
    shutil.copy(next(good.glob("*_rate.fits")), r)
    fn2(r)
    rc, err = run_cli(capsys, "run", "image2", r, "--output-dir", tmp_path / "o2")
    outcomes["image2"] = check(rc, err, tmp_path / "o2", r.name)
    # image3: a mutated cal as one member next to the good ones
    folder = tmp_path / "asn"
    folder.mkdir()
    cals = sorted(good.glob("*_cal.fits"))
    for c in cals:
        shutil.copy(c, folder / c.name)
    c = folder / f"jw_fuzz{seed}_cal.fits"
    shutil.copy(cals[0], c)
    label3, fn3 = mutation(seed + 2000)
    fn3(c)
    asn = folder / f"fuzz{seed}_asn.json"
    asn.write_text(json.dumps({"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "products": [
        {"name": f"jw-fuzz{seed}", "members": [{"expname": p.name, "exptype": "science"} for p in cals + [c]]}]}))
    rc, err = run_cli(capsys, "run", "image3", asn, "--output-dir", tmp_path / "o3")
    outcomes["image3"] = check(rc, err, tmp_path / "o3", asn.name, c.name)
    print(seed, label, label2, label3, outcomes)
