"""The run's plot worker processes: forked once, early, from one process that imports
matplotlib for all of them, and handed each plot as soon as it is planned
(`plot_drawing.Drawing`).

Why the workers are forked from a process of their own (a "zygote") rather than from the
run: on two vCPUs a run is CPU-bound from its first import to its last plot, so what the
workers cost beside the run's own work is what the run waits for. Forked from the run,
each worker imported matplotlib itself (0.35 s of CPU apiece); forked from one process that
imported it, they share that one import and start with matplotlib loaded. The standard
pools fork their workers from the process that owns them, hence the small pool here: two
pipes per worker (jobs in, results out, each message a length and a pickle) and a thread
in the run that sends each idle worker the next plot. It uses neither `multiprocessing`
nor `concurrent.futures.process`: the run forks the zygote before its own imports (see
`start_early_plot_workers`), and their 30-40 ms of imports would come first.

Process tree: run -> zygote -> workers. Every process forked from the run closes the run's
ends of every pool's pipes; the zygote forks the workers and waits for them; a worker
serves its job pipe until the run closes its end, or dies (the kernel closes it then), and
then stops, after the plot it may be drawing: no worker outlives the run by more than a
plot. (Workers forked early hold none of the run's locks: it takes them later.)
"""
from __future__ import annotations

import gc
import logging
import os
import pickle
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future

    from _util.site.plot_drawing import PlotJob

log = logging.getLogger(__name__)

MIN_PARALLEL_JOBS = 4  # fewer plots than this, without the run's workers: drawn in-process
DEFAULT_PLOT_WORKERS = 2  # settings.plot_workers' default
MAX_PLOT_WORKERS = 16  # and its largest value

_HEADER = struct.Struct("!Q")  # a message: its length, then its pickle


class WorkersGone(Exception):
    """The plot workers stopped (one of them died, or they were closed) before a plot
    they had been given was drawn."""


def _write_message(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the pipe was closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int) -> bytes:
    """One message's pickle (EOFError when the other end has closed the pipe)."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return _read_exactly(fd, size)


# Every pipe end the run holds of its pools. Any process forked from the run closes them
# (a zygote, or a library's fork): otherwise a pool's workers would not see the run close
# its ends while that process lives, and closing the pool would wait for it.
_RUN_FDS: set[int] = set()


def _close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _close_run_fds_after_fork() -> None:
    _close_fds(_RUN_FDS)
    # Their numbers may be reused by files this process opens: its own forks keep those.
    _RUN_FDS.clear()


os.register_at_fork(after_in_child=_close_run_fds_after_fork)


def _serve(jobs_fd: int, results_fd: int) -> None:
    """A worker: each job `(call, arg)` read from `jobs_fd` answered on `results_fd` with
    `(True, call(arg))` or `(False, the exception)`, until the run closes the job pipe."""
    _write_message(results_fd, os.getpid())
    while True:
        try:
            data = _read_message(jobs_fd)
        except EOFError:
            return
        try:
            call, arg = pickle.loads(data)
            reply = (True, call(arg))
        except Exception as exc:  # noqa: BLE001 - the run's future raises it
            reply = (False, exc)
        try:
            _write_message(results_fd, reply)
        except BrokenPipeError:
            return
        except Exception as exc:  # noqa: BLE001 - an answer that does not pickle
            _write_message(results_fd, (False, RuntimeError(
                f"a plot worker's answer could not be sent back: {type(exc).__name__}: {exc}")))


def _zygote(worker_fds: Sequence[tuple[int, int]]) -> None:
    """The process the workers are forked from: imports matplotlib once and makes the
    common plots' figures (`plot_drawing.prepare_frames`), then forks one worker per pair
    of pipe ends and waits for them. Never returns."""
    code = 1
    try:
        # The run's pipe ends are closed already (_close_run_fds_after_fork).
        # What the run held when it forked is never collected here: frozen, the workers'
        # collections do not walk (and copy) it.
        gc.freeze()
        gc.disable()
        from _util.site.plot_drawing import import_matplotlib, prepare_frames

        import_matplotlib()
        prepare_frames()  # each worker's first plot of a type finds its figure made
        gc.freeze()
        gc.enable()
        children = []
        for mine in worker_fds:
            pid = os.fork()
            if pid == 0:
                worker_code = 1
                try:
                    _close_fds(fd for pair in worker_fds if pair is not mine for fd in pair)
                    _serve(*mine)
                    worker_code = 0
                finally:
                    os._exit(worker_code)
            children.append(pid)
        _close_fds(fd for pair in worker_fds for fd in pair)
        for pid in children:
            os.waitpid(pid, 0)
        code = 0
    finally:
        os._exit(code)


class _ForkedPool:
    """`workers` processes forked from one zygote, fed by a thread of the run (started
    with the first job): each idle worker gets the oldest job waiting."""

    def __init__(self, workers: int) -> None:
        run_ends: list[tuple[int, int]] = []  # (jobs to the worker, its results)
        worker_ends: list[tuple[int, int]] = []
        made: list[int] = []
        try:
            for _ in range(workers):
                jobs_r, jobs_w = os.pipe()
                results_r, results_w = os.pipe()
                made += [jobs_r, jobs_w, results_r, results_w]
                run_ends.append((jobs_w, results_r))
                worker_ends.append((jobs_r, results_w))
            self._wake_r, self._wake_w = os.pipe()
            made += [self._wake_r, self._wake_w]
            os.set_blocking(self._wake_w, False)  # a full pipe wakes the thread all the same
            _RUN_FDS.update(fd for pair in run_ends for fd in pair)
            _RUN_FDS.update((self._wake_r, self._wake_w))
            pid = os.fork()
        except OSError:
            _RUN_FDS.difference_update(made)
            _close_fds(made)
            raise
        if pid == 0:
            _zygote(worker_ends)
        self.zygote = pid
        _close_fds(fd for pair in worker_ends for fd in pair)
        self._run_ends = run_ends
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Future, Callable[[Any], Any], Any]] = deque()
        self._pids: list[int] = []
        self._settled = threading.Event()  # every worker has said hello, or they are gone
        self._gone: str | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[Any], Any], arg: Any) -> Future:
        from concurrent.futures import Future

        future: Future = Future()
        with self._lock:
            if self._gone is not None or self._closing:
                raise WorkersGone(self._gone or "the plot workers were closed")
            self._start_thread()
            self._waiting.append((future, call, arg))
            self._wake()
        return future

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def pids(self, timeout: float = 60.0) -> list[int]:
        """The workers' process ids, once each has said hello (for tests)."""
        with self._lock:
            self._start_thread()
        self._settled.wait(timeout)
        return list(self._pids)

    def _start_thread(self) -> None:
        """Under the lock."""
        if self._thread is None:
            thread = threading.Thread(target=self._feed, name="plot-workers", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # no thread to be had (a limit of the account's)
                raise WorkersGone(f"no thread to feed the plot workers ({exc})") from exc
            self._thread = thread

    def _feed(self) -> None:
        busy: dict[int, Future] = {}  # by the worker's results pipe: the job it draws
        try:
            why = self._feed_workers(busy)
        except BaseException as exc:  # a fault here must not leave the run waiting forever
            self._stop(f"the plot workers' thread failed ({type(exc).__name__}: {exc})", busy)
            raise
        self._stop(why, busy)

    def _feed_workers(self, busy: dict[int, Future]) -> str:
        """Send each idle worker the next job and each answer to its future, until the
        pool closes or a worker goes; why it stopped."""
        import selectors

        jobs_pipe_of = {results: jobs for jobs, results in self._run_ends}
        hello, idle = set(jobs_pipe_of), []
        with selectors.DefaultSelector() as selector:
            for fd in (*jobs_pipe_of, self._wake_r):
                selector.register(fd, selectors.EVENT_READ)
            while True:
                while idle and (job := self._next_job()) is not None:
                    future, call, arg = job
                    results = idle.pop()
                    busy[results] = future
                    try:
                        _write_message(jobs_pipe_of[results], (call, arg))
                    except OSError as exc:
                        return f"a plot worker stopped ({exc})"
                    except Exception as exc:  # noqa: BLE001 - a job that does not pickle
                        del busy[results]
                        idle.append(results)
                        future.set_exception(exc)
                if self._closing:
                    return "the plot workers were closed"
                for key, _ in selector.select():
                    if key.fd == self._wake_r:
                        os.read(self._wake_r, 4096)
                        continue
                    try:
                        data = _read_message(key.fd)
                    except (EOFError, OSError):
                        return "a plot worker exited"
                    if key.fd in hello:
                        self._pids.append(pickle.loads(data))
                        hello.discard(key.fd)
                        if not hello:
                            self._settled.set()
                    else:
                        self._answer(busy.pop(key.fd), data)
                    idle.append(key.fd)

    def _next_job(self) -> tuple[Future, Callable[[Any], Any], Any] | None:
        """The oldest waiting job not cancelled meanwhile, marked running; None when none
        is waiting or the pool is closing."""
        with self._lock:
            while self._waiting and not self._closing:
                job = self._waiting.popleft()
                if job[0].set_running_or_notify_cancel():
                    return job
        return None

    @staticmethod
    def _answer(future: Future, data: bytes) -> None:
        try:
            ok, value = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - drawn again in the run, where it shows
            ok, value = False, WorkersGone(f"a plot worker's answer could not be read "
                                           f"({type(exc).__name__}: {exc})")
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _stop(self, why: str, busy: dict[int, Future]) -> None:
        """No more jobs: those drawing and those waiting fail with WorkersGone(why)."""
        with self._lock:
            self._gone = self._gone or why
            waiting = [job[0] for job in self._waiting]
            self._waiting.clear()
        for future in busy.values():
            if not future.done():
                future.set_exception(WorkersGone(why))
        for future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(WorkersGone(why))
        self._settled.set()

    def shutdown(self) -> None:
        """Stop the workers (a plot being drawn is finished first, then dropped) and wait
        for them; jobs not answered yet fail with WorkersGone."""
        with self._lock:
            self._closing = True
            thread = self._thread
            if thread is not None:
                self._wake()
        if thread is not None:
            thread.join()
        else:
            self._stop("the plot workers were closed", {})
        with self._lock:
            fds = [fd for pair in self._run_ends for fd in pair] + [self._wake_r, self._wake_w]
            _RUN_FDS.difference_update(fds)
            _close_fds(fds)
        try:
            os.waitpid(self.zygote, 0)
        except ChildProcessError:
            pass


class PlotWorkers:
    """The run's plot worker processes, started once, early (`start`), so that matplotlib
    is imported while the run fetches and detects; `Drawing` (and `run_jobs`) then hand
    them the day's plots. Use as a context manager: the workers stop when the block ends,
    error or not, and stop themselves should the run be killed.

    The workers do not draw a first plot of each kind in advance: on two vCPUs that took
    more from the run's own work, beside it, than it saved later (the demo's daily run took
    1.66 s with spike and trend plots drawn in advance, 1.55 s without). They do find the
    common plots' figures made, undrawn, by the process they are forked from
    (`plot_drawing.prepare_frames`)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: _ForkedPool | None = None

    def start(self, take_early: bool = True) -> PlotWorkers:
        """Take the workers `start_early_plot_workers` forked (`take_early`), when they are
        as many, else fork them now; without fork (or when it fails), there are none and
        plots are drawn in the run's process."""
        global _early
        if take_early and _early is not None:
            early, _early = _early, None
            if early.workers == self.workers and early._pool is not None:
                self._pool, early._pool = early._pool, None
                return self
            early.close()
        if not hasattr(os, "fork"):
            return self
        try:
            self._pool = _ForkedPool(self.workers)
        except OSError as exc:
            log.warning("plot workers did not start (%s); plotting in the run's process",
                        exc)
        return self

    def submit(self, draw: Callable[[PlotJob], float], job: PlotJob) -> Future | None:
        """`draw(job)` in a worker; None when the workers are gone (stopped or broken)."""
        if self._pool is None:
            return None
        try:
            return self._pool.submit(draw, job)
        except WorkersGone as exc:
            log.warning("plot workers failed (%s); plotting in the run's process", exc)
            self.close()
            return None

    def pids(self) -> list[int]:
        """The worker processes' ids (none without workers)."""
        return [] if self._pool is None else self._pool.pids()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> PlotWorkers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# The workers forked before the run's imports, until the run takes them (PlotWorkers.start).
_early: PlotWorkers | None = None
# What a run that draws no report starts with: these flags mean no plot workers.
_NO_PLOTS_FLAGS = ("--schedule", "--backtest-from", "--write-demo-labels", "-h", "--help")


def start_early_plot_workers(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """Fork the run's plot workers' zygote now, before the driver imports pandas,
    SQLAlchemy and the rest, so that it imports numpy and matplotlib beside those imports
    (on the machine's other core) rather than beside the run's work. The run's
    `PlotWorkers` takes the workers when it wants as many (COST_TRACKING_PLOT_WORKERS as
    read here: the environment's, or the default; the settings module is too heavy to
    import this early); otherwise, or when the run will draw nothing (read from the flags
    alone), they are stopped or not started. A wrong guess costs time, never a plot.

    The zygote and the workers log nothing themselves (their failures reach the run as
    exceptions); what matplotlib may warn of once (building its font cache) goes to
    stderr."""
    global _early
    if _early is not None or any(arg.split("=")[0] in _NO_PLOTS_FLAGS for arg in argv):
        return
    workers = environ.get("COST_TRACKING_PLOT_WORKERS", "").strip()
    _early = PlotWorkers(int(workers) if workers.isdigit()
                         and 1 <= int(workers) <= MAX_PLOT_WORKERS
                         else DEFAULT_PLOT_WORKERS).start(take_early=False)


def stop_early_plot_workers() -> None:
    """Stop the early workers the run did not take (an error before its report, say)."""
    global _early
    if _early is not None:
        _early.close()
        _early = None
