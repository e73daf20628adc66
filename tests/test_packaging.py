"""The installed package lives under the webbflow namespace only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    d = tmp_path_factory.mktemp("pkg")
    clone = d / "clone"
    # the tracked and untracked-but-not-ignored files: what a clean clone would hold
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        src = REPO / f
        if src.is_file():
            (clone / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / f)
    out = d / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(clone)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return next(out.glob("webbflow-*.whl"))


def test_wheel_has_only_the_webbflow_namespace(wheel):
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
    assert tops == {"webbflow", next(t for t in tops if t.endswith(".dist-info"))}
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for sub in ("models", "refs", "tasks", "flows", "deployments"):
        assert f"webbflow/{sub}/__init__.py" in names
    assert not any(n.startswith("webbflow/tests/") for n in names)


def test_non_editable_install_imports_and_cli(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) in (["bin", "webbflow"], ["webbflow"])
    env = {**os.environ, "PYTHONPATH": str(target)}
    # run from an empty folder so the repository is not on sys.path
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    code = (
        "import webbflow, webbflow.models, webbflow.flows, webbflow.tasks, webbflow.refs, webbflow.deployments;"
        "assert webbflow.__file__.startswith(%r), webbflow.__file__;"
        "import importlib.util as u;"
        "assert all(u.find_spec(n) is None for n in ('models','tasks','flows','refs','deployments'))"
    ) % str(target)
    r = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); " + code], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", "import models"], capture_output=True, text=True, cwd=cwd, env=env)
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr
    r = subprocess.run([sys.executable, "-m", "webbflow.flows.cli", "--help"], capture_output=True, text=True, cwd=cwd, env=env)
    assert r.returncode == 0 and "webbflow" in r.stdout
