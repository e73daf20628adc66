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

# rows are handed out in more blocks than threads, so that slow rows even out
_BLOCKS_PER_THREAD = 4


def threads() -> int:
    import numba  # here, not at import: the fork helpers below serve steps that never load numba (~40 MiB)

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


# ---------------------------------------------------------------------------
# independent pieces of work on forked processes
#
# stcal's drizzle kernels (``tdriz``, ``tblot``) hold the GIL, so threads cannot run two of them at
# once; a forked child can.  It sees the parent's memory as it was at the fork (the exposures, the
# shared pixel maps) without copying it, computes its share and sends the answers back pickled.

_IN_CHILD = False  # set in a forked child: it never forks again


def processes() -> int:
    """How many processes :func:`fork_map` may use: the cores this process may run on, capped by
    ``WEBBFLOW_PROCESSES`` (``1`` turns it off).  1 in a forked child, off the main thread (a thread
    pool is already running steps side by side), or where ``fork`` is not available."""
    import os
    import threading

    if _IN_CHILD or not hasattr(os, "fork") or threading.current_thread() is not threading.main_thread():
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        n = min(n, int(os.environ.get("WEBBFLOW_PROCESSES", n)))
    except ValueError:
        pass
    return max(1, n)


def _child(fn, wfd: int) -> None:
    import os
    import pickle
    import traceback

    global _IN_CHILD
    _IN_CHILD = True
    # no collections here: each would walk (and so copy from the parent) the pages of every object
    # alive at the fork; the child is short-lived and its cycles go when it ends
    import gc

    gc.disable()
    code = 0
    try:
        try:
            payload = (True, fn())
        except BaseException as exc:  # noqa: BLE001 - sent back to the parent, raised there
            payload = (False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        with os.fdopen(wfd, "wb") as w:
            pickle.dump(payload, w, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: BLE001 - nothing more can be said: the parent sees the exit code
        code = 1
    finally:
        os._exit(code)


class Forked:
    """``fn()`` computed on a forked child while this process goes on; :meth:`result` waits for its
    answer (sent back pickled).  ``fn`` must not change anything the caller needs: what the child
    changes is lost.  An exception in the child is raised by :meth:`result` as a RuntimeError with
    the child's traceback.  Use it only where :func:`processes` is above 1."""

    def __init__(self, fn) -> None:
        import os
        import threading

        # other Python threads (a tracked run's log shipping, say) may hold a lock at the fork that
        # nobody releases in the child: there the child's log records are dropped rather than risked
        threaded = threading.active_count() > 1
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            if threaded:
                import logging

                logging.disable(logging.CRITICAL)
            _child(fn, wfd)
        os.close(wfd)
        self._pid, self._r = pid, os.fdopen(rfd, "rb")

    def result(self):
        import os
        import pickle

        try:
            ok, got = pickle.load(self._r)
        except EOFError:
            ok, got = False, "the child ended without an answer"
        finally:
            self._r.close()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if not ok:
            raise RuntimeError("a forked worker failed:\n" + got)
        if status != 0:
            raise RuntimeError(f"a forked worker failed: its exit status was {status}")
        return got

    def cancel(self) -> None:
        """End the child (this process failed before asking for its answer)."""
        import os

        if self._pid is None:
            return
        self._r.close()
        try:
            os.kill(self._pid, 9)
            os.waitpid(self._pid, 0)
        except OSError:
            pass
        self._pid = None


def fork_map(fn, items, nproc: int | None = None) -> list:
    """``[fn(x) for x in items]``, the items shared out between this process and forked children
    (:class:`Forked`: ``fn`` returns what it computed, and the caller applies it).

    This process takes items 0, n, 2n, ..., child k items k, k+n, ...; the answers come back in
    the items' order and are the ones a serial loop gives.  Serial when :func:`processes` allows
    only one, or for a single item."""
    items = list(items)
    n = min(len(items), nproc or processes())
    if n <= 1:
        return [fn(x) for x in items]
    children = []
    try:
        for k in range(1, n):
            children.append(Forked(lambda part=items[k::n]: [fn(x) for x in part]))
        answers: list = [None] * len(items)
        answers[0::n] = [fn(x) for x in items[0::n]]
        for k, child in enumerate(children, start=1):
            answers[k::n] = child.result()
        return answers
    finally:
        for child in children:  # after a failure here or in a child: end the others
            child.cancel()


def in_child() -> bool:
    """Whether this process is a child forked by :class:`Forked`."""
    return _IN_CHILD
