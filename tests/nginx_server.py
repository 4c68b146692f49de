"""nginx's WebDAV module serving a directory in Bazel's HTTP cache layout, on 127.0.0.1, configured
as Bazel's remote-caching docs configure it (PUT with create_full_put_path, no size limit): the
server teams already run for Bazel, unchanged. `.ci/run` installs nginx when it is missing.

    with NginxDav(tmp_path) as server:
        server.url, server.root, server.stop()
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)

CONFIG = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            root {root};
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"""


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NginxDav:
    def __init__(self, base: Path):
        self.prefix = base / "nginx"
        self.root = base / "dav"
        self.root.mkdir(parents=True, exist_ok=True)  # ac/ and cas/ are made by the first PUT
        self.prefix.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.prefix / "nginx.conf"
        # Started as root, nginx's workers would run as nobody, who cannot read a test's private tmp_path.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config.write_text(CONFIG.format(user=user, prefix=self.prefix, port=self.port, root=self.root))
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.prefix / "stderr.log", "ab")
        with log:
            self._proc = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", str(self.config), "-e",
                                           str(self.prefix / "error.log")], stdout=log, stderr=log,
                                          preexec_fn=_die_with_parent, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.prefix / 'error.log').read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on port {self.port} within 20 s")

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        proc.terminate()  # the master stops its worker and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> "NginxDav":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
