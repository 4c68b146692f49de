"""The remote cache's uploads: one thread of their own, in the order results were stored, so a large
blob going up never holds back the next action; the build waits for them at its end.

The thread is a daemon, not a ThreadPoolExecutor's: those are joined when the process exits, so an
interrupted build would wait for the PUT under way, however slow the link. Here an interrupt drops
what is queued and the process leaves at once. A PUT cut short leaves no record on the server (a
record goes up after its blobs, and a blob is checked against its name when it comes down).
"""
from __future__ import annotations

import queue
import threading
from typing import Callable


class Uploads:
    def __init__(self, upload: Callable[..., None]):
        self._upload = upload
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, *args) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="remote-upload", daemon=True)
            self._thread.start()
        with self._lock:
            self._pending += 1
        self._queue.put(args)

    def pending(self) -> int:
        return self._pending

    def finish(self, cancel: bool = False) -> None:
        """Wait for every upload, or (cancel) for none: the queued ones are dropped, and the one under
        way is left to end with the process."""
        if self._thread is None:
            return
        if cancel:
            self._cancelled.set()
        self._queue.put(None)
        if not cancel:
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while (args := self._queue.get()) is not None:
            if not self._cancelled.is_set():
                self._upload(*args)
            with self._lock:
                self._pending -= 1
