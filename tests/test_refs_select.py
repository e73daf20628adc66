"""CRDS selection (refs/select.py) against the real 2019 rules and crds itself.

The oracle is the crds client called the way jwst calls it: with
``read_metadata(file, flatten=True)`` (what jwst's Step passes for a file) or
``DataModel.get_crds_parameters()``, and with the same context.  Nothing here
reaches a network: offline tests forbid sockets, and the download tests run a
small CRDS server on 127.0.0.1.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from webbflow import models
from webbflow.errors import ReferenceFileError, WebbflowError
from webbflow.refs import select
from webbflow.refs.crds_params import JWST_CAL_VER, crds_parameters

from conftest import REAL

CTX = "jwst_0541.pmap"

REAL_EXPOSURES = [
    "fgs_headers/fgs_acq1_guider1.fits",
    "fgs_headers/fgs_acq2_guider2.fits",
    "fgs_headers/fgs_track_guider1.fits",
    "fgs_headers/fgs_fineguide_guider2.fits",
    "fgs_headers/fgs_id-stack_guider2.fits",
    "fgs_acq1_guider2_uncal.fits",
    "nircam_coron_headers/jw01075001001_03105_00009_nrca2_uncal.fits",
    "nircam_coron_headers/jw01075001001_03105_00009_nrca3_uncal.fits",
    "nircam_coron_headers/jw01075001001_03105_00009_nrca4_uncal.fits",
    "miri_lrs_slitless_tso_crfints.fits",
    "nirspec_msa_prism_slits/jw01345062001_03101_00001_nrs2_phot.138.1345_933.fits",
]

NRCA1_META = {
    "instrument": {"name": "NIRCAM", "detector": "NRCA1", "channel": "SHORT", "module": "A",
                   "filter": "F200W", "pupil": "CLEAR"},
    "exposure": {"type": "NRC_IMAGE", "readpatt": "RAPID", "ngroups": 2, "nints": 1},
    "subarray": {"name": "FULL", "xstart": 1, "ystart": 1, "xsize": 2048, "ysize": 2048},
    "observation": {"date": "2022-07-01", "time": "12:00:00.000"},
    "visit": {"tsovisit": False},
}


def _fill(meta, values):
    for group, d in values.items():
        for k, v in d.items():
            setattr(getattr(meta, group), k, v)


def nrca1_ramp():
    """A synthetic NIRCam NRCA1 full-frame image exposure (metadata only matters)."""
    m = models.RampModel((1, 2, 4, 4))
    _fill(m.meta, NRCA1_META)
    return m


def jwst_params(path) -> dict:
    """What jwst's Step hands crds for a file (stpipe: read_metadata(..., flatten=True))."""
    from stdatamodels.jwst.datamodels import read_metadata

    p = read_metadata(str(path), flatten=True)
    return {k: v for k, v in p.items() if isinstance(v, (str, int, float, bool))}


@pytest.fixture
def offline(real_rules_cache, crds_env, monkeypatch):
    """The real 2019 rules as CRDS_PATH, no server, context from the environment."""
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    return crds_env(real_rules_cache, CTX)


@pytest.fixture
def own_cache(real_rules_cache, tmp_path, crds_env, monkeypatch):
    """A private cache (config copied, mappings shared read-only) we may put references into."""
    root = tmp_path / "crds"
    (root / "config").mkdir(parents=True)
    import shutil

    shutil.copytree(real_rules_cache / "config", root / "config", dirs_exist_ok=True)
    (root / "mappings").symlink_to(real_rules_cache / "mappings", target_is_directory=True)
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    crds_env(root, CTX)
    return root


def _place(name: str, content: bytes = b"SIMPLE  =                    T") -> Path:
    """Put a file where crds looks for reference ``name`` in the current cache."""
    import crds

    p = Path(crds.locate_file(name, "jwst"))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)
    return p


# ---------------------------------------------------------------------------
# agreement with crds on real headers


@pytest.mark.real
@pytest.mark.parametrize("rel", REAL_EXPOSURES)
def test_bestrefs_equal_crds_on_real_headers(offline, rel):
    import crds

    path = REAL / rel
    ours = select.bestrefs(path, all_types=True)
    assert ours.context == CTX
    types = list(ours.choices)
    assert len(types) >= 40, "every reftype of the instrument's imap"
    select.reset_crds_state()
    theirs = crds.getrecommendations(jwst_params(path), reftypes=types, context=CTX, observatory="jwst")
    agree = 0
    for rt in types:
        c = ours.choices[rt]
        want = theirs[rt]
        if want.upper().startswith("NOT FOUND"):
            expected_kind = "n/a" if "N/A" in want.upper() else "nomatch"
            assert c.kind == expected_kind, f"{rt}: ours {c.kind} {c.value!r}, crds {want!r}"
            if expected_kind == "nomatch":
                assert c.value == " ".join(want[len("NOT FOUND"):].split())
        else:
            assert c.kind == "file" and c.value == want, f"{rt}: ours {c.value!r}, crds {want!r}"
        agree += 1
    files = sum(1 for c in ours.choices.values() if c.kind == "file")
    print(f"{rel}: {agree}/{len(types)} reftypes agree with crds ({files} files, "
          f"{sum(c.kind == 'n/a' for c in ours.choices.values())} N/A)")


@pytest.mark.real
@pytest.mark.parametrize("rel", [REAL_EXPOSURES[0], REAL_EXPOSURES[2], REAL_EXPOSURES[6], REAL_EXPOSURES[9]])
def test_default_reftypes_are_crds_applicable_types(offline, rel):
    """Without --reftypes/--all-types: crds' own choice of types for the exposure type."""
    import crds
    import jwst

    assert jwst.__version__ == JWST_CAL_VER  # crds falls back to the installed jwst for CAL_VER
    path = REAL / rel
    ours = select.bestrefs(path)
    select.reset_crds_state()
    theirs = crds.getrecommendations(jwst_params(path), context=CTX, observatory="jwst")
    assert sorted(ours.choices) == sorted(theirs)
    assert {rt: c.raw for rt, c in ours.choices.items()} == theirs


@pytest.mark.real
def test_bestrefs_equal_crds_bestrefs_script(offline):
    """`crds bestrefs` reads the FITS headers itself: an independent path to the same answer."""
    files = [REAL / REAL_EXPOSURES[i] for i in (0, 2, 5, 6, 7)]
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "crds.bestrefs", "--files", *map(str, files), "--new-context", CTX,
         "--print-new-references", "--all-types"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    # crds bestrefs exits 1 when some types fail to match (the FGS darks here)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    script: dict[str, dict[str, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0].endswith(".fits"):
            script.setdefault(parts[0], {})[parts[2]] = parts[4]
    assert len(script) == len(files)
    for f in files:
        ours = select.bestrefs(f, all_types=True)
        theirs = script[str(f)]
        for rt, c in ours.choices.items():
            if rt in theirs:
                assert c.shown.lower() == theirs[rt], f"{f.name} {rt}: ours {c.shown}, crds bestrefs {theirs[rt]}"
            else:  # crds bestrefs leaves out types whose rules failed to match
                assert c.kind == "nomatch", f"{f.name} {rt}: {c}"
        print(f"{f.name}: {len(theirs)} reftypes equal to `crds bestrefs`, "
              f"{len(ours.choices) - len(theirs)} failed matches in both")


def test_parameters_match_jwst_on_parkeys(offline):
    """Our parameter dict has jwst's values for every keyword the 0541 rules match on."""
    from crds.core import rmap

    pmap = rmap.get_cached_mapping(CTX)
    for rel in (REAL_EXPOSURES[0], REAL_EXPOSURES[6], REAL_EXPOSURES[9], REAL_EXPOSURES[10]):
        ours = crds_parameters(models.open(REAL / rel))
        theirs = jwst_params(REAL / rel)
        inst = theirs["meta.instrument.name"]
        keys = [k.lower() for k in pmap.get_imap(inst).get_required_parkeys() if k != "REFTYPE"]
        assert keys
        for k in keys:
            assert ours.get(k) == theirs.get(k), f"{rel}: {k}: ours {ours.get(k)!r} jwst {theirs.get(k)!r}"
        assert all(k.startswith("meta.") for k in ours)


def test_synthetic_nrca1_image_matches_jwst_model(offline):
    """README sanity check: NRCA1 image -> dark_0040 and flat_0337 with jwst_0541."""
    import crds
    from stdatamodels.jwst import datamodels

    ours = select.bestrefs(nrca1_ramp(), reftypes=["dark", "flat", "mask", "gain"])
    assert ours.choices["dark"].value == "jwst_nircam_dark_0040.fits"
    assert ours.choices["flat"].value == "jwst_nircam_flat_0337.fits"
    j = datamodels.RampModel((1, 2, 4, 4))
    _fill(j.meta, NRCA1_META)
    select.reset_crds_state()
    theirs = crds.getrecommendations(j.get_crds_parameters(), reftypes=["dark", "flat", "mask", "gain"],
                                     context=CTX, observatory="jwst")
    assert {rt: c.raw for rt, c in ours.choices.items()} == theirs


# ---------------------------------------------------------------------------
# get_reference_paths: the step framework's entry point


def test_paths_equal_crds_getreferences(own_cache):
    import crds
    from stdatamodels.jwst import datamodels

    for name in ("jwst_nircam_dark_0040.fits", "jwst_nircam_flat_0337.fits", "jwst_nircam_mask_0033.fits"):
        _place(name)
    ours = select.get_reference_paths(nrca1_ramp(), ["dark", "flat", "mask"])
    j = datamodels.RampModel((1, 2, 4, 4))
    _fill(j.meta, NRCA1_META)
    select.reset_crds_state()
    theirs = crds.getreferences(j.get_crds_parameters(), reftypes=["dark", "flat", "mask"],
                                context=CTX, observatory="jwst")
    assert ours == theirs
    assert all(Path(p).is_file() and str(own_cache) in p for p in ours.values())


def test_na_reftype_gives_na(own_cache):
    """refpix is N/A for NIRCam in the 0541 rules; pars-* unknown to 2019 rules are N/A too."""
    _place("jwst_nircam_dark_0040.fits")
    got = select.get_reference_paths(nrca1_ramp(), ["refpix", "dark", "pars-darkcurrentstep"])
    assert got["refpix"] == "N/A"
    assert got["pars-darkcurrentstep"] == "N/A"
    assert got["dark"].endswith("jwst_nircam_dark_0040.fits")
    assert list(got) == ["refpix", "dark", "pars-darkcurrentstep"]


def test_no_matching_rule_is_a_clear_error(offline):
    m = models.open(REAL / "fgs_headers/fgs_track_guider1.fits")
    with pytest.raises(select.ReferenceSelectionError) as e:
        select.get_reference_paths(m, ["dark"])
    msg = str(e.value)
    assert "dark" in msg and CTX in msg and "TRACK" in msg and "\n" not in msg


def test_unknown_reftype_is_a_clear_error(offline):
    with pytest.raises(select.ReferenceSelectionError, match="apcorr.*not a reference type of NIRCAM"):
        select.get_reference_paths(nrca1_ramp(), ["apcorr"])


def test_reference_missing_from_cache_offline(offline):
    with pytest.raises(select.CrdsSetupError) as e:
        select.get_reference_paths(nrca1_ramp(), ["dark"])
    msg = str(e.value)
    assert "jwst_nircam_dark_0040.fits" in msg and "CRDS_SERVER_URL" in msg and "\n" not in msg


def test_override_path_and_na(offline, tmp_path):
    ref = tmp_path / "my_dark.fits"
    ref.write_bytes(b"x")
    got = select.get_reference_paths(nrca1_ramp(), ["dark", "flat"], {"dark": str(ref), "flat": "N/A"})
    assert got == {"dark": str(ref.resolve()), "flat": "N/A"}
    # case-insensitive N/A, and overrides do not touch crds at all (no cache needed)
    os.environ["CRDS_PATH"] = str(tmp_path / "nowhere")
    assert select.get_reference_paths(nrca1_ramp(), ["flat"], {"flat": "n/a"}) == {"flat": "N/A"}


def test_override_missing_file_is_an_error(offline, tmp_path):
    bad = tmp_path / "no_such_dark.fits"
    with pytest.raises(ReferenceFileError) as e:
        select.get_reference_paths(nrca1_ramp(), ["dark"], {"dark": str(bad)})
    assert e.value.reftype == "dark"
    assert "dark" in str(e.value) and "no_such_dark.fits" in str(e.value) and "not found" in str(e.value)


def test_step_framework_skips_on_na(own_cache, caplog):
    """A reftype CRDS reports N/A makes run_step skip the step with a log line, as jwst does."""
    from webbflow.tasks import base

    calls = []

    def science(model, refs, params):
        calls.append(refs)
        return model

    spec = base.StepSpec(name="_test_refpix_na", jwst_class="_TestRefpixNAStep", function=science,
                         reftypes=("refpix",), suffix="x", cal_step="refpix")
    base.register(spec)
    try:
        m = nrca1_ramp()
        import logging

        # an earlier in-process Prefect logging set-up (dictConfig) may have disabled existing loggers
        logging.getLogger("webbflow.steps").disabled = False
        with caplog.at_level("INFO", logger="webbflow.steps"):
            res = base.run_step("_test_refpix_na", m)
        assert res.status == "SKIPPED" and not calls
        assert m.meta.cal_step.refpix == "SKIPPED"
        assert any("refpix is N/A" in r.getMessage() for r in caplog.records)
    finally:
        base.STEPS.pop("_test_refpix_na", None)


# ---------------------------------------------------------------------------
# context, environment, offline, errors


def test_context_used_follows_environment(offline, real_rules_cache, monkeypatch, tmp_path):
    import crds

    assert select.context_used() == CTX
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0400.pmap")
    assert select.context_used() == "jwst_0400.pmap"  # noticed without reset_crds_state()
    monkeypatch.delenv("CRDS_CONTEXT")
    # no CRDS_CONTEXT, no server: the cache's operational context
    cfg = ast.literal_eval((real_rules_cache / "config/jwst/server_config").read_text())
    assert select.context_used() == cfg["operational_context"]
    assert select.context_used("jwst_0500.pmap") == "jwst_0500.pmap"
    m = nrca1_ramp()
    select.record_crds_info(m)
    assert m.meta.ref_file.crds.context_used == cfg["operational_context"]
    assert m.meta.ref_file.crds.sw_version == crds.__version__


def test_contexts_give_different_answers(offline):
    old = select.bestrefs(REAL / REAL_EXPOSURES[2], context="jwst_0100.pmap", reftypes=["mask"])
    new = select.bestrefs(REAL / REAL_EXPOSURES[2], context=CTX, reftypes=["mask"])
    assert old.context == "jwst_0100.pmap"
    assert old.choices["mask"].value != new.choices["mask"].value


def test_offline_selection_opens_no_socket(offline, monkeypatch):
    """With CRDS_PATH and no CRDS_SERVER_URL crds must never touch the network."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("CRDS_CONTEXT")  # default context resolution must stay offline too
    monkeypatch.delenv("CRDS_MODE")
    select.reset_crds_state()
    r = select.bestrefs(REAL / REAL_EXPOSURES[6])
    assert r.choices["dark"].value == "jwst_nircam_dark_0031.fits"


@pytest.mark.parametrize(
    "context, words",
    [("jwst_9999.pmap", ["jwst_9999.pmap", "not in the cache", "CRDS_SERVER_URL"]),
     ("foo", ["bad CRDS context 'foo'"]),
     ("jwst-2022-07-01T00:00:00", ["jwst-2022-07-01T00:00:00", "not reachable"])],
)
def test_bad_context_errors(offline, context, words):
    with pytest.raises(WebbflowError) as e:
        select.bestrefs(REAL / REAL_EXPOSURES[0], context=context)
    msg = str(e.value)
    assert all(w in msg for w in words), msg
    assert "\n" not in msg


def test_no_cache_and_no_server(crds_env, tmp_path, monkeypatch):
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    crds_env(tmp_path / "empty")
    with pytest.raises(select.CrdsSetupError, match="no CRDS cache at .*empty.*CRDS_PATH"):
        select.get_reference_paths(nrca1_ramp(), ["dark"])


def test_unknown_instrument(offline):
    m = nrca1_ramp()
    m.meta.instrument.name = "WFI"
    with pytest.raises(select.ReferenceSelectionError, match="no rules for instrument 'WFI'"):
        select.get_reference_paths(m, ["dark"])
    m.meta.instrument.name = None
    with pytest.raises(select.ReferenceSelectionError, match="INSTRUME"):
        select.get_reference_paths(m, ["dark"])


def test_threads_share_the_client_safely(own_cache):
    """Many threads selecting at once, with two contexts, get the sequential answers."""
    for name in ("jwst_nircam_mask_0033.fits",):
        _place(name)
    fgs = models.open(REAL / REAL_EXPOSURES[2])
    expect = {
        ("nrc", CTX): select.get_reference_paths(nrca1_ramp(), ["mask", "refpix"]),
        ("fgs", "jwst_0100.pmap"): {rt: c.shown for rt, c in
                                    select.bestrefs(fgs, context="jwst_0100.pmap", reftypes=["mask", "flat"]).choices.items()},
    }
    results, errors = [], []

    def work(i):
        try:
            if i % 2:
                results.append((("nrc", CTX), select.get_reference_paths(nrca1_ramp(), ["mask", "refpix"])))
            else:
                b = select.bestrefs(fgs, context="jwst_0100.pmap", reftypes=["mask", "flat"])
                results.append((("fgs", "jwst_0100.pmap"), {rt: c.shown for rt, c in b.choices.items()}))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12
    for key, got in results:
        assert got == expect[key]


# ---------------------------------------------------------------------------
# a CRDS server on 127.0.0.1: downloads through crds.getreferences, shared cache


class FakeCrdsServer:
    """Just enough of the CRDS JSON-RPC and file service for crds.getreferences."""

    def __init__(self, rules_cache: Path, files: dict[str, bytes], chunk_delay=0.0, slow: dict | None = None,
                 mappings: list[str] = ()):
        from crds.client import proxy

        maps = rules_cache / "mappings" / "jwst"
        self.files = dict(files, **{m: (maps / m).read_bytes() for m in mappings})
        self.mappings = list(mappings)
        self.gets: dict[str, int] = {}
        self.lock = threading.Lock()
        info = ast.literal_eval((rules_cache / "config/jwst/server_config").read_text())
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body["method"] == "get_server_info":
                    result, error = outer.info, None
                elif body["method"] == "get_mapping_names" and outer.mappings:
                    result, error = outer.mappings, None
                else:
                    result, error = None, {"message": f"unsupported method {body['method']}"}
                data = json.dumps({"result": result, "error": error, "id": body["id"]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                if name not in outer.files:
                    self.send_error(404)
                    return
                with outer.lock:
                    outer.gets[name] = outer.gets.get(name, 0) + 1
                data = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                delay = (slow or {}).get(name, chunk_delay)
                for i in range(0, len(data), 65536):  # slowly, so downloads overlap
                    self.wfile.write(data[i:i + 65536])
                    self.wfile.flush()
                    time.sleep(delay)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        meta = {n: {"size": str(len(b)), "sha1sum": hashlib.sha1(b).hexdigest()} for n, b in self.files.items()}
        info.update(
            reference_url={"jwst": self.url + "/references/jwst/"},
            mapping_url={"jwst": self.url + "/mappings/jwst/"},
            download_metadata=proxy.crds_encode(meta),
            force_remote_mode=0,
            operational_context=CTX,
        )
        self.info = info
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _served_files():
    import numpy as np

    rng = np.random.default_rng(1)
    names = ("jwst_nircam_dark_0040.fits", "jwst_nircam_flat_0337.fits", "jwst_nircam_mask_0033.fits")
    return {n: rng.bytes(1_000_000) for n in names}


def test_server_download_into_cache(real_rules_cache, tmp_path, crds_env, monkeypatch):
    """With CRDS_SERVER_URL set, the same call fetches the rules and the selected files into CRDS_PATH."""
    import shutil

    from crds.core import rmap

    crds_env(real_rules_cache, CTX)
    closure = sorted(rmap.get_cached_mapping(CTX).mapping_names())
    assert len(closure) > 100
    cache = tmp_path / "crds"
    shutil.copytree(real_rules_cache / "config", cache / "config")  # no rules, no references
    files = _served_files()
    with FakeCrdsServer(real_rules_cache, files, mappings=closure) as srv:
        monkeypatch.setenv("CRDS_SERVER_URL", srv.url)
        crds_env(cache, CTX)
        got = select.get_reference_paths(nrca1_ramp(), ["dark", "flat", "refpix"])
        assert got["refpix"] == "N/A"
        for rt in ("dark", "flat"):
            p = Path(got[rt])
            assert p.is_relative_to(cache)
            assert p.read_bytes() == files[p.name]
        assert (cache / "mappings" / "jwst" / CTX).is_file()
        refs = {n: c for n, c in srv.gets.items() if n in files}
        assert refs == {"jwst_nircam_dark_0040.fits": 1, "jwst_nircam_flat_0337.fits": 1}
        assert sum(srv.gets.values()) - 2 == len(closure), "every mapping fetched once"
        # cached now: a second selection downloads nothing
        before = sum(srv.gets.values())
        select.get_reference_paths(nrca1_ramp(), ["dark", "flat"])
        assert sum(srv.gets.values()) == before
        # a file the server does not have: one clear line
        with pytest.raises(WebbflowError) as e:
            select.get_reference_paths(models.open(REAL / REAL_EXPOSURES[6]), ["gain"])
        assert "jwst_nircam_gain_0052.fits" in str(e.value) and "\n" not in str(e.value)
    assert not list(cache.rglob(".tmp_*")), "no partial download left behind"


WORKER = textwrap.dedent(
    """
    import hashlib, json, sys
    from webbflow import models
    from webbflow.refs.select import get_reference_paths
    meta = json.loads(sys.argv[1])
    m = models.RampModel((1, 2, 4, 4))
    for group, d in meta.items():
        for k, v in d.items():
            setattr(getattr(m.meta, group), k, v)
    paths = get_reference_paths(m, ["dark", "flat", "mask"])
    sha = {rt: hashlib.sha1(open(p, "rb").read()).hexdigest() for rt, p in paths.items()}
    print(json.dumps({"paths": paths, "sha1": sha}))
    """
)


@pytest.mark.slow
def test_parallel_processes_share_a_cache(real_rules_cache, tmp_path, crds_env):
    """Four processes select and download into one cache at once: every one reads complete files.

    Without the cache lock in refs/select.py this fails: processes get the path
    of the slow file before it exists (measured with the lock disabled).
    """
    import shutil

    cache = tmp_path / "crds"
    shutil.copytree(real_rules_cache / "config", cache / "config")
    (cache / "mappings").symlink_to(real_rules_cache / "mappings", target_is_directory=True)
    files = _served_files()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    # The mask takes about 6 s: longer than crds' own 5 s wait for another
    # process's download, after which crds 14 returns a path that does not
    # exist yet.  Our cache lock makes the others wait for the whole download.
    slow = {"jwst_nircam_mask_0033.fits": 0.4}
    with FakeCrdsServer(real_rules_cache, files, chunk_delay=0.02, slow=slow) as srv:
        env = dict(os.environ, CRDS_PATH=str(cache), CRDS_SERVER_URL=srv.url, CRDS_CONTEXT=CTX)
        env.pop("CRDS_MODE", None)
        procs = [
            subprocess.Popen([sys.executable, str(script), json.dumps(NRCA1_META)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
    want = {n: hashlib.sha1(b).hexdigest() for n, b in files.items()}
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        res = json.loads(out.strip().splitlines()[-1])
        for rt, path in res["paths"].items():
            assert res["sha1"][rt] == want[Path(path).name], f"{rt}: a process read an incomplete file"
    assert srv.gets == {n: 1 for n in files}, f"each file downloaded once: {srv.gets}"
    assert not list(cache.rglob(".tmp_*"))
    print(f"4 processes, {len(files)} files of 1 MB (one taking ~6 s): downloads per file {srv.gets}")


@pytest.mark.parametrize("damage", ["missing rmap", "edited pmap"])
def test_incomplete_or_damaged_rules(real_rules_cache, tmp_path, crds_env, monkeypatch, capsys, damage):
    """A cache with a missing or hand-edited mapping gives one line, not crds' traceback."""
    import shutil

    cache = tmp_path / "crds"
    shutil.copytree(real_rules_cache, cache)
    maps = cache / "mappings" / "jwst"
    if damage == "missing rmap":
        (maps / "jwst_fgs_flat_0009.rmap").unlink()
        words = ["jwst_fgs_flat_0009.rmap", "not complete", "CRDS_SERVER_URL"]
    else:
        pmap = maps / CTX
        pmap.write_text(pmap.read_text().replace("jwst_fgs_0073.imap", "jwst_fgs_0072.imap"))
        words = [CTX, "sha1sum mismatch"]
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    crds_env(cache, CTX)
    with pytest.raises(WebbflowError) as e:
        select.bestrefs(REAL / REAL_EXPOSURES[2], reftypes=["mask"])
    msg = str(e.value)
    assert all(w in msg for w in words), msg
    assert "\n" not in msg
    assert "Traceback" not in capsys.readouterr().err
