"""The command line: help, info, and one-line errors for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from webbflow import models

from conftest import REAL


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "webbflow.flows.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_one_line_error(r, *fragments):
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert err[0].startswith("webbflow: error:")
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in err[0], err[0]


def test_help():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("info", "run"):
        assert word in r.stdout


def test_info_real_uncal():
    r = cli("info", REAL / "fgs_acq1_guider2_uncal.fits")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Level1bModel" in out and "FGS" in out and "GUIDER2" in out and "FGS_ACQ1" in out
    assert "(6, 2, 128, 128)" in out


def test_info_shows_crds_context(tmp_path):
    m = models.ImageModel(np.zeros((3, 3), np.float32))
    m.meta.ref_file.crds.context_used = "jwst_0541.pmap"
    p = m.save(tmp_path / "x_rate.fits")
    r = cli("info", p)
    assert r.returncode == 0 and "jwst_0541.pmap" in r.stdout and "ImageModel" in r.stdout


def test_missing_file(tmp_path):
    assert_one_line_error(cli("info", tmp_path / "nope.fits"), "nope.fits", "no such file")


def test_unreadable_file(tmp_path):
    p = tmp_path / "junk_uncal.fits"
    p.write_bytes(b"this is not FITS" * 300)
    assert_one_line_error(cli("info", p), "junk_uncal.fits", "not a readable FITS file")


def test_unknown_pipeline(tmp_path):
    assert_one_line_error(cli("run", "calwebb_nosuch", REAL / "fgs_acq1_guider2_uncal.fits"), "calwebb_nosuch")


def test_run_missing_input(tmp_path):
    assert_one_line_error(cli("run", "calwebb_detector1", tmp_path / "gone_uncal.fits"), "gone_uncal.fits")


def test_bad_step_option_syntax(tmp_path):
    r = cli("run", "detector1", REAL / "fgs_acq1_guider2_uncal.fits", "--steps.jump", "--output-dir", tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_cli_in_process_leaves_other_log_handlers_alone():
    """Calling the CLI from Python quietens Prefect's console only; an application's own
    handler on the root logger keeps receiving INFO records, and repeated calls do not stack filters."""
    import logging

    from webbflow.flows.cli import _UserErrorFilter, _quiet_prefect_console

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    mine = Keep(logging.INFO)
    mine.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # an application's configured handler
    root = logging.getLogger()
    root.addHandler(mine)
    lg = logging.getLogger("webbflow.steps")
    old_level = lg.level
    try:
        _quiet_prefect_console(False)
        _quiet_prefect_console(False)
        assert not mine.filters
        for h in root.handlers:  # Prefect's console handler, when Prefect installed one: filtered once
            if type(h).__name__ == "PrefectConsoleHandler":
                assert sum(isinstance(f, _UserErrorFilter) for f in h.filters) == 1
        lg.setLevel(logging.INFO)
        lg.info("Step x skipped: reference type refpix is N/A for this exposure")
        assert any("refpix is N/A" in r.getMessage() for r in records)
    finally:
        root.removeHandler(mine)
        lg.setLevel(old_level)


def test_association_whose_members_lost_the_prefect_api_is_reported_as_that(monkeypatch):
    """When every failed member of an association failed because the Prefect API went away, the
    one line says so (and how to go on), instead of listing connection errors as science failures."""
    from webbflow.flows.association import AssociationFailed, AssociationResult, MemberResult
    from webbflow.flows.cli import _members_lost_the_api

    url = "http://127.0.0.1:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    members = [MemberResult("a_uncal.fits", True),
               MemberResult("b_uncal.fits", False, error="ConnectError: [Errno 111] Connection refused"),
               MemberResult("c_uncal.fits", False, error="PrefectHTTPStatusError: Server error '503 Service Unavailable'")]
    line = _members_lost_the_api(AssociationFailed("2 of 3 members failed", AssociationResult(asn="x", members=members)))
    assert line and url in line and "cannot be reached" in line and "2 of 3 members" in line
    # a member that failed for its own reasons keeps the association's own message
    members.append(MemberResult("d_uncal.fits", False, error="d_uncal.fits: not a readable FITS file"))
    assert _members_lost_the_api(AssociationFailed("3 of 4", AssociationResult(asn="x", members=members))) is None
    monkeypatch.delenv("PREFECT_API_URL")
    assert _members_lost_the_api(AssociationFailed("2 of 3", AssociationResult(asn="x", members=members[:3]))) is None
