"""`webbflow refs bestrefs` on real headers, against crds itself (real 2019 rules)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REAL
from webbflow.flows.cli import main

CTX = "jwst_0541.pmap"
FGS_ACQ1 = REAL / "fgs_headers/fgs_acq1_guider1.fits"
FGS_TRACK = REAL / "fgs_headers/fgs_track_guider2.fits"
NRCA2 = REAL / "nircam_coron_headers/jw01075001001_03105_00009_nrca2_uncal.fits"
NRCA3 = REAL / "nircam_coron_headers/jw01075001001_03105_00009_nrca3_uncal.fits"


@pytest.fixture
def rules(real_rules_cache, crds_env, monkeypatch):
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    monkeypatch.delenv("CRDS_CONTEXT", raising=False)
    return crds_env(real_rules_cache)


def parse(stdout: str) -> dict[str, dict[str, str]]:
    """{file: {reftype: first value token}} from the command's output."""
    out: dict[str, dict[str, str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("# "):
            current = line[2:].split()[0]
            out[current] = {"_header": line}
        elif line.strip():
            rt, value = line.split()[:2]
            out[current][rt] = value
    return out


def crds_answer(path, reftypes=None):
    """crds' own answer, with the parameters jwst gives it, as the command shows it."""
    import crds
    from stdatamodels.jwst.datamodels import read_metadata

    from webbflow.refs.select import reset_crds_state

    reset_crds_state()
    p = {k: v for k, v in read_metadata(str(path), flatten=True).items() if isinstance(v, (str, int, float, bool))}
    raw = crds.getrecommendations(p, reftypes=reftypes, context=CTX, observatory="jwst")
    return {rt: ("N/A" if v.upper().startswith("NOT FOUND") else v) for rt, v in raw.items()}


@pytest.mark.real
def test_bestrefs_subprocess_real_headers(rules):
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "webbflow.flows.cli", "refs", "bestrefs", str(FGS_ACQ1), str(FGS_TRACK),
         str(NRCA2), str(NRCA3), "--context", CTX],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    got = parse(proc.stdout)
    assert list(got) == [str(FGS_ACQ1), str(FGS_TRACK), str(NRCA2), str(NRCA3)]
    for f in (FGS_ACQ1, FGS_TRACK, NRCA2, NRCA3):
        lines = dict(got[str(f)])
        header = lines.pop("_header")
        assert f"context={CTX}" in header
        want = crds_answer(f)
        assert lines == want, f"{f.name}"
        print(f"{f.name}: {len(lines)} reftypes equal crds "
              f"({sum(v != 'N/A' for v in lines.values())} files)")
    assert got[str(FGS_ACQ1)]["flat"] == "jwst_fgs_flat_0010.fits"
    assert got[str(NRCA2)]["dark"] == "jwst_nircam_dark_0031.fits"


@pytest.mark.real
def test_bestrefs_reftypes_and_all_types(rules, capsys):
    assert main(["refs", "bestrefs", str(NRCA3), "--context", CTX, "--reftypes", "dark,flat,refpix"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 4
    body = dict(line.split(None, 1) for line in lines[1:])
    assert body["dark"] == "jwst_nircam_dark_0041.fits"
    assert body["refpix"] == "N/A"
    assert body["flat"].startswith("N/A") and "no matching rule" in body["flat"]
    assert parse(out)[str(NRCA3)] == {"_header": lines[0], **crds_answer(NRCA3, ["dark", "flat", "refpix"])}

    assert main(["refs", "bestrefs", str(FGS_TRACK), "--all-types"]) == 0
    got = parse(capsys.readouterr().out)[str(FGS_TRACK)]
    got.pop("_header")
    from crds.core import rmap

    every = sorted(k.lower() for k in rmap.get_cached_mapping(CTX).get_imap("FGS").selections)
    assert sorted(got) == every
    assert got == crds_answer(FGS_TRACK, every)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("webbflow: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_bestrefs_missing_file(rules, tmp_path, capsys):
    missing = tmp_path / "jw_nothing_uncal.fits"
    assert main(["refs", "bestrefs", str(missing), "--context", CTX]) == 1
    assert str(missing) in _one_line_error(capsys)


@pytest.mark.parametrize("ctx", ["jwst_9999.pmap", "not-a-context"])
def test_bestrefs_bad_context(rules, capsys, ctx):
    assert main(["refs", "bestrefs", str(FGS_ACQ1), "--context", ctx]) == 1
    assert ctx in _one_line_error(capsys)


def test_bestrefs_no_cache(crds_env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    crds_env(tmp_path / "no-cache")
    assert main(["refs", "bestrefs", str(FGS_ACQ1)]) == 1
    line = _one_line_error(capsys)
    assert "no-cache" in line and "CRDS_PATH" in line


def test_bestrefs_exit_code_of_real_command(rules, tmp_path):
    """The installed entry point gives exit status 1 and one line for a user error."""
    proc = subprocess.run(
        [sys.executable, "-m", "webbflow.flows.cli", "refs", "bestrefs", str(tmp_path / "nope.fits")],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "nope.fits" in proc.stderr


def test_refs_without_subcommand_prints_help(capsys):
    assert main(["refs"]) == 2
    assert "bestrefs" in capsys.readouterr().out
