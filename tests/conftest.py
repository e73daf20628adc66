"""Shared test configuration.

- Prefect never reaches the network and never writes into the user's home.
- CRDS is pointed at a temporary cache; no test touches a CRDS server.
- ``jwst`` (the oracle) is only imported by parity tests, through ``parity.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="webbflow-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect-home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_API_URL"] = os.environ.get("WEBBFLOW_TEST_PREFECT_API_URL", "")
if not os.environ["PREFECT_API_URL"]:
    del os.environ["PREFECT_API_URL"]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
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
