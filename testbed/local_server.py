"""What the test servers share (dav_server.py, nginx_server.py): a subprocess serving 127.0.0.1 on a
free port, in a session of its own, ready once it accepts a connection and gone after its `with`.
A subclass says how to launch it (`_launch`) and where it says why it failed (`_log`)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class LocalServer:
    name = "server"

    def __init__(self):
        with socket.socket() as s:  # a free port, kept across restarts
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._proc: subprocess.Popen | None = None

    def _launch(self) -> subprocess.Popen:
        raise NotImplementedError

    def _log(self) -> Path:
        raise NotImplementedError

    def start(self) -> None:
        self._proc = self._launch()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self._log().read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within 20 s")

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        proc.terminate()
        try:
            proc.wait(2)  # servers wait for requests in flight (a slow upload): no need here
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the server and whatever it started
            proc.wait()

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
