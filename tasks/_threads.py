"""Row-parallel execution of compiled kernels on the process's threads.

numba's ``parallel=True`` loops cost a long first compilation: its parallel
passes analyse the whole loop body, which for the ramp-fitting and jump
kernels took most of a fresh install's first run.  Kernels here are plain
``nogil`` functions over a range of rows, ``kernel(lo, hi, *args)``, and
:func:`run_rows` hands the rows out to threads.  Rows are independent, so
the answers are the same whatever the split.  The thread count is numba's
(``NUMBA_NUM_THREADS``, by default the number of cores), as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba

# rows are handed out in more blocks than threads, so that slow rows even out
_BLOCKS_PER_THREAD = 4


def threads() -> int:
    try:
        return max(1, int(numba.get_num_threads()))
    except Exception:  # noqa: BLE001 - no threading layer: run serially
        return 1


def run_rows(kernel, n: int, *args) -> None:
    """Call ``kernel(lo, hi, *args)`` over blocks covering rows ``0..n``, on up to :func:`threads` threads."""
    nthreads = min(threads(), n)
    if nthreads <= 1:
        kernel(0, n, *args)
        return
    nblocks = min(n, nthreads * _BLOCKS_PER_THREAD)
    edges = [n * k // nblocks for k in range(nblocks + 1)]
    # the first block runs here, compiling the kernel once before the threads start
    kernel(edges[0], edges[1], *args)
    with ThreadPoolExecutor(nthreads) as pool:
        for f in [pool.submit(kernel, lo, hi, *args) for lo, hi in zip(edges[1:-1], edges[2:])]:
            f.result()
