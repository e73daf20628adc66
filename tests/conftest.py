"""Shared test configuration.

- Prefect never reaches the network and never writes into the user's home.
- CRDS is pointed at a temporary cache; no test touches a CRDS server.
- ``jwst`` (the oracle) is only imported by parity tests, through ``parity.py``.
- A whole run writes dozens of simulated observations with their references and both programs'
  products.  Each test module's own temporary folders are removed once its last test is done,
  so that the disk holds about one module's data at a time, not the whole run's.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="webbflow-tests-"))
# the process's Prefect home and its server's database (some 50 MB) go when the process ends
atexit.register(shutil.rmtree, _SESSION_TMP, True)
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect-home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_API_URL"] = os.environ.get("WEBBFLOW_TEST_PREFECT_API_URL", "")
if not os.environ["PREFECT_API_URL"]:
    del os.environ["PREFECT_API_URL"]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Prefect's console echo of run logs stays out of the tests' stderr (the runs' logs still go to
# the API); the assertions are about webbflow's own one-line errors
os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
# a loaded 2-core machine can take more than Prefect's default 20 s to start its temporary server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# No test may use a real CRDS cache by accident.
os.environ["CRDS_PATH"] = str(_SESSION_TMP / "crds-unset")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared").resolve()
SHARED_DATA = SHARED / "data"
REAL = SHARED_DATA / "real"
CRDS_RULES = SHARED_DATA / "crds-rules"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared: needs ../shared/data")
    # a worker that dies (a C extension aborting) fails its test and ends the run: pytest-xdist's
    # replacement worker can wait forever under --dist loadfile (pytest-xdist #784), which turns one
    # crash into a CI timeout with no summary
    if getattr(config.option, "maxworkerrestart", "") is None:
        config.option.maxworkerrestart = "0"


# -- disk: a module's own temporary folders go when the module is done ---------------------------
_CONFTEST = str(Path(__file__).resolve())
_made_by_module: list[Path] = []  # folders made since the last module finished, by its own fixtures
_interleaved: set[str] = set()  # modules whose tests do not run in one block: their folders are kept


def _made_by_shared_fixture() -> bool:
    """Whether the mktemp being made comes from a fixture of this conftest, shared by every module."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename == _CONFTEST:
            return True
        f = f.f_back
    return False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    seen, last = set(), None
    for item in items:
        mod = item.nodeid.split("::")[0]
        if mod != last and mod in seen:
            _interleaved.add(mod)
        seen.add(mod)
        last = mod


@pytest.fixture(scope="session", autouse=True)
def _track_module_folders(tmp_path_factory):
    real = type(tmp_path_factory).mktemp

    def mktemp(self, basename, numbered=True):
        path = real(self, basename, numbered)
        if not _made_by_shared_fixture():
            _made_by_module.append(path)
        return path

    type(tmp_path_factory).mktemp = mktemp
    try:
        yield
    finally:
        type(tmp_path_factory).mktemp = real


@pytest.fixture(scope="module", autouse=True)
def _drop_module_folders(request, _track_module_folders):
    """After a module's last test, remove the folders its fixtures made (its session-scoped
    fixtures serve that module alone: fixtures shared between modules live in this conftest)."""
    yield
    if request.node.nodeid in _interleaved or os.environ.get("WEBBFLOW_KEEP_TEST_FOLDERS"):
        _made_by_module.clear()  # kept: not left for the next module's end to remove
        return
    while _made_by_module:
        shutil.rmtree(_made_by_module.pop(), ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(home: Path, log_path: Path, port: int | None = None):
    """``prefect server start`` in its own process group; returns ``(process, API URL)`` once healthy."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = port or _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    log = open(log_path, "w")
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_prefect_server(proc)
            raise RuntimeError("a test Prefect server did not start: " + Path(log_path).read_text()[-2000:])
        time.sleep(0.5)


def stop_prefect_server(proc, sig=None) -> None:
    """Stop a server from :func:`start_prefect_server` and every process it started."""
    import signal

    try:
        os.killpg(proc.pid, sig or signal.SIGTERM)
        proc.wait(timeout=20)
    except Exception:  # noqa: BLE001
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """One Prefect server for the whole session, in its own process group (DESIGN.md section 4).

    Every in-process flow and every `webbflow` child process of the tests talks to it through
    PREFECT_API_URL, instead of each starting (and tearing down) a temporary server.  Its own
    session keeps it out of reach of signals that tests send to the runs they start.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    proc, url = start_prefect_server(_SESSION_TMP / "prefect-server-home", _SESSION_TMP / "prefect-server.log")
    os.environ["PREFECT_API_URL"] = url
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop_prefect_server(proc)


def write_level2_asn(sim, folder: Path) -> Path:
    """One level-2 association whose products are all of a simulation's raw exposures."""
    import json

    asn = {"asn_type": "image2", "asn_rule": "candidate_Asn_Lv2Image", "asn_pool": "jw01234_pool",
           "products": [{"name": u.name[: -len("_uncal.fits")], "members": [{"expname": u.name, "exptype": "science"}]}
                        for u in sim.uncal]}
    path = folder / "jw01234-o001_image2_asn.json"
    path.write_text(json.dumps(asn))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_rules_cache(tmp_path_factory) -> Path:
    """A private copy of the real 2019 CRDS rules (jwst_0541), usable as CRDS_PATH."""
    dst = tmp_path_factory.mktemp("crds-0541")
    shutil.copytree(CRDS_RULES, dst, dirs_exist_ok=True)
    return dst


@pytest.fixture
def crds_env(monkeypatch):
    """Set CRDS_PATH/CRDS_CONTEXT for one test and reset the crds client's process-wide state."""

    def _set(path, context=None, mode="local"):
        monkeypatch.setenv("CRDS_PATH", str(path))
        if context:
            monkeypatch.setenv("CRDS_CONTEXT", context)
        else:
            monkeypatch.delenv("CRDS_CONTEXT", raising=False)
        monkeypatch.setenv("CRDS_MODE", mode)
        from webbflow.refs.select import reset_crds_state

        reset_crds_state()
        return Path(path)

    yield _set
    from webbflow.refs.select import reset_crds_state

    reset_crds_state()
