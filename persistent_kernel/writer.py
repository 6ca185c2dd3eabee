"""The background writer: large blobs reach the disk after the cell's reply, not before.

A cell that changes a gigabyte array must not wait two seconds for the disk.
Its checkpoint commits at once, in the cell's one transaction, with the array's
version marked *not landed*; the version's large buffers are queued here, and
this thread writes each to a file (``blobfiles``), fsyncs it, and only then marks
the version landed in LMDB. Until then the journal claims nothing: a kernel
killed in that window restores the array from its previous landed version and
replays the cells since (see ``restore``).

The buffers are the live arrays, not copies (no second gigabyte in RAM). If the
next cell changes an array before its write is done, the bytes hash differently
and the write is dropped as torn; the newer cell has queued its own version. A
queued version whose names a newer job covers is skipped without writing.

No IPython here; the kernel owns one ``BackgroundWriter`` per store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .blobfiles import COPY_CHUNK, TornWrite, WriteCancelled, write_failure
from .errors import StoreWriteError

log = logging.getLogger(__name__)

THROTTLED_CHUNK = 1024**2  # a throttled write pauses between small chunks, not 64 MiB ones


@dataclass
class WriteJob:
    """One group version whose large buffers must land."""

    version_key: bytes
    names: frozenset[str]
    buffers: dict[bytes, Any]  # digest -> live buffer
    queued_at: float = field(default_factory=time.monotonic)


class BackgroundWriter:
    """One thread, one queue, in order.

    ``on_unlanded(job, reason, failed)`` is told of every version that did not land;
    ``failed`` when the write itself failed (rather than the value moving on).
    """

    def __init__(
        self,
        store: Any,
        *,
        history_budget: int = -1,
        throttle_bytes_per_second: float = 0.0,
        on_unlanded: Callable[[WriteJob, str, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.history_budget = history_budget
        self.throttle_bytes_per_second = throttle_bytes_per_second
        self.on_unlanded = on_unlanded
        self._queue: deque[WriteJob] = deque()
        self._condition = threading.Condition()
        self._busy: WriteJob | None = None
        self._stopping = False
        self._cancel = threading.Event()  # stop(timeout=0): the write in progress is called off too
        self.landed = 0
        self.dropped = 0
        self.bytes_written = 0
        self.last_landed_seconds: float | None = None  # queue → durable, for the last version
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="persistent-kernel-writer", daemon=True)
        self._thread.start()

    # -- the kernel's side ----------------------------------------------------------

    def submit(self, job: WriteJob) -> None:
        with self._condition:
            self._queue.append(job)
            self._condition.notify_all()

    @property
    def pending(self) -> int:
        """Versions queued or being written."""
        with self._condition:
            return len(self._queue) + (self._busy is not None)

    def pending_bytes(self) -> int:
        with self._condition:
            jobs = list(self._queue) + ([self._busy] if self._busy is not None else [])
        return sum(memoryview(b).nbytes for job in jobs for b in job.buffers.values())

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued version has landed or been dropped; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._queue or self._busy is not None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Finish what is queued (up to ``timeout``), drop the rest, end the thread; False if work was dropped.

        A write still in progress then is called off between two chunks (its
        temporary file is removed; a file is never left half written).
        """
        finished = self.drain(timeout)
        if not finished:
            self._cancel.set()
        with self._condition:
            self._stopping = True
            self.dropped += len(self._queue)
            self._queue.clear()
            self._condition.notify_all()
        self._thread.join(timeout=60)
        return finished

    # -- the thread -------------------------------------------------------------------

    def _next(self) -> WriteJob | None:
        """The next job worth writing (None when stopping); jobs a later one covers are skipped."""
        with self._condition:
            while True:
                while not self._queue and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return None
                job = self._queue.popleft()
                if any(job.names <= later.names for later in self._queue):
                    self.dropped += 1
                    self._tell(job, "a newer version of the same variables was queued after it")
                    self._condition.notify_all()
                    continue
                self._busy = job
                return job

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._write(job)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one failure
                if isinstance(exc, StoreWriteError):
                    # The disk (full, failing): the journal tells the user once. A traceback on
                    # stderr would reach the cell running now, and every retry would add one.
                    log.debug("persistent_kernel: background write failed: %s", exc)
                else:
                    log.exception("persistent_kernel: background write failed")
                self.problem = f"{type(exc).__name__}: {exc}"
                self.dropped += 1
                # The journal tells the user once per run of failures (until a version lands again).
                self._tell(job, f"writing it failed ({exc})", failed=True)
            finally:
                with self._condition:
                    self._busy = None
                    self._condition.notify_all()

    def _write(self, job: WriteJob) -> None:
        started = time.monotonic()
        try:
            throttle = self._throttle(started)
            chunk_size = THROTTLED_CHUNK if throttle is not None else COPY_CHUNK
            for blob_digest, buffer in job.buffers.items():
                self.bytes_written += self.store.write_file(
                    blob_digest, buffer, throttle=throttle, chunk_size=chunk_size, cancelled=self._cancel.is_set
                )
        except WriteCancelled:
            self.dropped += 1
            return  # stopping: nothing to tell (the store is being closed or cleared)
        except TornWrite as exc:
            self.dropped += 1
            self._tell(job, str(exc))
            return
        except OSError as exc:
            raise StoreWriteError(write_failure(f"writing a large value to {self.store.blob_directory}", exc)) from exc
        self.store.mark_landed(job.version_key)
        self.landed += 1
        self.problem = None
        self.last_landed_seconds = time.monotonic() - job.queued_at
        if self.history_budget >= 0:
            self.store.prune_history(self.history_budget)

    def _throttle(self, started: float) -> Callable[[int], None] | None:
        rate = self.throttle_bytes_per_second
        if rate <= 0:
            return None
        done = [0]

        def wait(size: int) -> None:
            done[0] += size
            ahead = done[0] / rate - (time.monotonic() - started)
            if ahead > 0:
                self._cancel.wait(ahead)  # a stop calls the write off at once, not after the pause

        return wait

    def _tell(self, job: WriteJob, reason: str, *, failed: bool = False) -> None:
        if self.on_unlanded is not None:
            try:
                self.on_unlanded(job, reason, failed)
            except Exception:  # noqa: BLE001 - a callback's bug must not stop the writer
                log.exception("persistent_kernel: on_unlanded callback failed")
