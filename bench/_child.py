"""What the benchmarks share: source text for their child scripts (each run with ``python -c``),
and :func:`timed`, one command's wall time, peak RSS and CPU time."""

import subprocess
import tempfile
import time

# the child's own peak RSS in MiB; ru_maxrss would include the parent's high-water mark
HWM = r"""
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""


def ratio_table(title: str, runs: dict) -> dict:
    """Print the medians of ``runs`` (``{"jwst": [timed(...)], "webbflow": [...]}``) as a markdown table with a
    webbflow/jwst row; returns the medians."""
    import statistics

    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss")} for k, v in runs.items()}
    print(f"| {title} | wall s | CPU s | peak MiB |")
    print("| --- | --- | --- | --- |")
    for k in ("jwst", "webbflow"):
        print(f"| {k} | {med[k]['wall']:.1f} | {med[k]['cpu']:.1f} | {med[k]['rss']:.0f} |")
    j, w = med["jwst"], med["webbflow"]
    print(f"| webbflow / jwst | {w['wall'] / j['wall']:.2f} | {w['cpu'] / j['cpu']:.2f} | {w['rss'] / j['rss']:.2f} |")
    return med


def timed(cmd: list[str], cwd, env: dict, keep_output: bool = False) -> dict:
    """Run ``cmd`` under /usr/bin/time: ``{"wall": s, "rss": peak MiB, "cpu": user + system s}``
    (and ``"output"``, its stdout and stderr, with ``keep_output``).

    /usr/bin/time measures the command's own process tree, not this one's high-water mark."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *cmd], cwd=cwd, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
        rss_kb, user, sys_ = tf.read().split()[-3:]
    res = {"wall": wall, "rss": int(rss_kb) / 1024, "cpu": float(user) + float(sys_)}
    if keep_output:
        res["output"] = proc.stdout + proc.stderr
    return res
