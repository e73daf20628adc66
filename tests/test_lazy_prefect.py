"""Prefect is imported when a run uses it (flows/_prefect.py).

A run without a Prefect API (``stage.prefect_tracking()`` false) runs the flows' bodies as plain
calls: importing the stage flows, the association flow and deciding whether to track must not
import Prefect (about 1 s of CPU and 20-40 MiB).  Read from outside their modules, the flows and
tasks are still Prefect objects, built with their options.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = r"""
import json, os, sys
from webbflow.flows import stage
if sys.argv[1:] == ["tracking"]:  # only the decision
    tracking = stage.prefect_tracking()
    print(json.dumps({"tracking": tracking, "before": sorted(m for m in sys.modules if m.split(".")[0] == "prefect")}))
    sys.exit()
from webbflow.flows import registry
names = sorted(registry._MODULE_OF)
for n in names:
    registry.PIPELINES[n]  # imports each stage flow's module
import webbflow.flows.association as A
tracking = stage.prefect_tracking()
before = sorted(m for m in sys.modules if m.split(".")[0] == "prefect")
from prefect import Flow, Task
from webbflow.flows.calwebb_image3 import image3
from webbflow.flows import calwebb_spec3
print(json.dumps({"names": names, "tracking": tracking, "before": before,
                  "image3": isinstance(image3, Flow) and image3.name == "image3",
                  "spec3_runner": type(calwebb_spec3.spec3.task_runner).__name__,
                  "member": isinstance(A.member_task, Task) and A.member_task.name == "member",
                  "asn": isinstance(A.process_association, Flow), "fn": A.process_association.fn is A.plain(A, "process_association").fn}))
"""


def _probe(env_extra: dict, cwd, *args) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(env_extra)
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_untracked_run_does_not_import_prefect_and_flows_stay_prefect_objects(tmp_path):
    home = tmp_path / "prefect-home"
    home.mkdir()
    r = _probe({"PREFECT_HOME": str(home)}, tmp_path)
    assert "image3" in r["names"] and "coron3" in r["names"] and "observation" in r["names"]
    assert r["tracking"] is False
    assert r["before"] == [], r["before"]
    assert r["image3"] and r["member"] and r["asn"] and r["fn"]
    assert r["spec3_runner"] == "ThreadPoolTaskRunner"


def test_api_url_from_the_active_profile_is_found_without_prefect(tmp_path):
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text('active = "srv"\n[profiles.srv]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
                                        '[profiles.other]\n')
    r = _probe({"PREFECT_HOME": str(home)}, tmp_path, "tracking")
    assert r["tracking"] is True and r["before"] == []
    # another active profile, without an API URL
    r = _probe({"PREFECT_HOME": str(home), "PREFECT_PROFILE": "other"}, tmp_path, "tracking")
    assert r["tracking"] is False and r["before"] == []
    # the environment first; WEBBFLOW_PREFECT over everything
    r = _probe({"PREFECT_HOME": str(home), "PREFECT_PROFILE": "other", "PREFECT_API_URL": "http://127.0.0.1:9/api"}, tmp_path, "tracking")
    assert r["tracking"] is True
    r = _probe({"PREFECT_HOME": str(home), "WEBBFLOW_PREFECT": "off"}, tmp_path, "tracking")
    assert r["tracking"] is False


def test_a_prefect_file_in_the_working_folder_is_left_to_prefect(tmp_path):
    """prefect.toml (and .env, pyproject's [tool.prefect]) are read by Prefect itself."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://127.0.0.1:9/api"\n')
    r = _probe({"PREFECT_HOME": str(home)}, tmp_path, "tracking")
    assert r["tracking"] is True


def test_a_pyproject_that_depends_on_prefect_is_not_a_prefect_setting(tmp_path):
    """Run from a project folder (this repository's own checkout) whose pyproject.toml lists
    prefect as a dependency: no setting there, so no Prefect import to decide; [tool.prefect] is one."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["prefect>=3"]\n')
    r = _probe({"PREFECT_HOME": str(home)}, tmp_path, "tracking")
    assert r["tracking"] is False and r["before"] == []
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.prefect.api]\nurl = "http://127.0.0.1:9/api"\n')
    r = _probe({"PREFECT_HOME": str(home)}, tmp_path, "tracking")
    assert r["tracking"] is True


def test_call_flow_runs_bodies_outside_a_run():
    from webbflow.flows import _prefect
    from webbflow.flows.association import call_flow

    @_prefect.flow(name="probe-flow")
    def body(x, y=1):
        return x + y

    assert _prefect.is_deferred(body) and body.fn is body
    assert call_flow(body, 2, y=3) == 5
    assert call_flow(lambda x: x * 2, 4) == 8
    built = _prefect.as_prefect(body)
    assert built is _prefect.as_prefect(body) and built.name == "probe-flow" and built.fn is body
    assert not _prefect.is_deferred(built)
    assert call_flow(built, 1) == 2  # a Prefect flow outside a run: its body
