"""The plot workers' own pool (`_util/site/plot_workers.py`): workers forked from one
process that imported matplotlib, each job's answer or error back to its future, and no
worker left behind by a pool that is closed, broken or forgotten."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from _util.site import plot_workers
from _util.site.plot_workers import PlotWorkers, WorkersGone
from tests.test_plotting import _alive


def _facts(pause: float) -> tuple[int, int, bool]:
    """The worker's pid, its parent's, and whether matplotlib was imported before the job."""
    had_matplotlib = "matplotlib.figure" in sys.modules
    time.sleep(pause)
    return os.getpid(), os.getppid(), had_matplotlib


def _prepared_figures(_) -> list[tuple]:
    from _util.site import plot_drawing

    return sorted(plot_drawing._PREPARED)


def _fail(message: str) -> None:
    raise ValueError(message)


def _double(x: int) -> int:
    return 2 * x


def _unpicklable_answer(_) -> object:
    return lambda: None


def _die(_) -> None:
    os._exit(3)


def _closed_within(pool: PlotWorkers, seconds: float) -> bool:
    closing = threading.Thread(target=pool.close, daemon=True)
    closing.start()
    closing.join(seconds)
    return not closing.is_alive()


def test_workers_are_forked_from_one_process_that_imported_matplotlib_for_them():
    with PlotWorkers(2) as pool:
        pids = set(pool.pids())
        # Two slow jobs at once: each worker takes one.
        answers = [f.result(30) for f in [pool.submit(_facts, 0.3) for _ in range(2)]]
        prepared = pool.submit(_prepared_figures, None).result(30)
    assert {pid for pid, _, _ in answers} == pids and len(pids) == 2
    # ... and made the common plots' figures for them (plot_drawing.prepare_frames).
    assert prepared == [("daily",), ("mtd", 13), ("spike",), ("trend",)]
    parents = {parent for _, parent, _ in answers}
    assert len(parents) == 1 and parents != {os.getpid()}  # the zygote, not this process
    assert all(had for _, _, had in answers)
    assert not any(_alive(pid) for pid in [*pids, *parents])


def test_a_jobs_error_reaches_its_future_and_the_workers_go_on():
    with PlotWorkers(1) as pool:
        failed = pool.submit(_fail, "no such service")
        with pytest.raises(ValueError, match="no such service"):
            failed.result(30)
        assert pool.submit(_double, 21).result(30) == 42


def test_a_job_or_an_answer_that_does_not_pickle_fails_alone():
    with PlotWorkers(1) as pool:
        with pytest.raises(Exception, match="pickle|lambda"):
            pool.submit(lambda x: x, 1).result(30)
        with pytest.raises(RuntimeError, match="could not be sent back"):
            pool.submit(_unpicklable_answer, None).result(30)
        assert pool.submit(_double, 2).result(30) == 4


def test_jobs_not_answered_when_the_pool_closes_fail_and_its_workers_stop():
    pool = PlotWorkers(1).start()
    pids = pool.pids()
    drawing = pool.submit(_facts, 0.5)
    waiting = [pool.submit(_double, i) for i in range(3)]
    time.sleep(0.1)
    pool.close()
    for future in [drawing, *waiting]:
        with pytest.raises(WorkersGone):
            future.result(30)
    assert not any(_alive(pid) for pid in pids)
    assert pool.submit(_double, 1) is None  # closed: the caller draws in its own process


def test_a_worker_that_dies_fails_every_job_not_yet_answered_and_the_pool_is_closed():
    pool = PlotWorkers(2).start()
    pids = pool.pids()
    futures = [pool.submit(_die, None), *(pool.submit(_facts, 0.2) for _ in range(4))]
    assert isinstance(futures[0].exception(30), WorkersGone)
    assert all(f.exception(30) is None or isinstance(f.exception(30), WorkersGone)
               for f in futures[1:])  # drawn before the death was seen, or failed with it
    assert pool.submit(_double, 1) is None
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_an_older_pools_workers_stop_when_it_closes_though_a_newer_one_was_forked_after():
    """A zygote closes the run's ends of every pool's pipes: otherwise a newer pool would
    hold an older one's job pipes open, and the older workers would never see them close."""
    older = PlotWorkers(2).start()
    older_pids = [older._pool.zygote, *older.pids()]
    newer = PlotWorkers(1).start()
    newer_pids = [newer._pool.zygote, *newer.pids()]
    try:
        assert _closed_within(older, 10)
        assert not any(_alive(pid) for pid in older_pids)
        assert newer.submit(_double, 5).result(30) == 10
    finally:
        for pid in [*older_pids, *newer_pids]:  # should the test fail: no process left
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        newer.close()


def test_a_pool_closed_before_its_workers_started_waits_for_them_and_leaves_none():
    pool = PlotWorkers(2).start()
    zygote = pool._pool.zygote
    assert _closed_within(pool, 30)
    assert not _alive(zygote)


def test_without_fork_there_are_no_workers_and_nothing_is_submitted(monkeypatch):
    monkeypatch.delattr(os, "fork")
    pool = PlotWorkers(2).start()
    assert pool.pids() == [] and pool.submit(_double, 1) is None
    pool.close()


def test_early_workers_are_not_taken_by_a_pool_that_does_not_ask_for_them():
    plot_workers.start_early_plot_workers([], {"COST_TRACKING_PLOT_WORKERS": "2"})
    try:
        early = set(plot_workers._early.pids())
        transient = PlotWorkers(2).start(take_early=False)
        try:
            assert not early & set(transient.pids())
            assert plot_workers._early is not None
        finally:
            transient.close()
    finally:
        plot_workers.stop_early_plot_workers()
    assert not any(_alive(pid) for pid in early)


def test_a_process_forked_from_the_run_for_something_else_does_not_hold_the_pools_open():
    pool = PlotWorkers(1).start()
    pids = pool.pids()
    child = os.fork()
    if child == 0:  # a library's fork, say: lives on after the pool is closed
        time.sleep(30)
        os._exit(0)
    try:
        assert _closed_within(pool, 10)
        assert not any(_alive(pid) for pid in pids)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_run_that_cannot_start_a_thread_draws_in_its_own_process(monkeypatch):
    pool = PlotWorkers(1).start()
    zygote = pool._pool.zygote

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    assert pool.submit(_double, 1) is None  # the caller draws it
    monkeypatch.undo()
    pool.close()
    assert not _alive(zygote)
