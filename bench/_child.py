"""Source text shared by the benchmarks' child scripts (each run with ``python -c``)."""

# the child's own peak RSS in MiB; ru_maxrss would include the parent's high-water mark
HWM = r"""
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
