"""nginx's WebDAV module serving a directory in Bazel's HTTP cache layout, on 127.0.0.1, configured
as Bazel's remote-caching docs configure it (PUT with create_full_put_path, no size limit): the
server teams already run for Bazel, unchanged. `.ci/run` installs nginx when it is missing.

    with NginxDav(tmp_path) as server:
        server.url, server.root, server.stop()
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from local_server import LocalServer

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


# util-linux's setpriv sets PR_SET_PDEATHSIG and execs nginx, which keeps it: the server gets SIGTERM
# when the test process dies, with no Python code (preexec_fn) run between fork and exec.
SETPRIV = shutil.which("setpriv")


class NginxDav(LocalServer):
    name = "nginx"

    def __init__(self, base: Path):
        super().__init__()
        self.prefix = base / "nginx"
        self.root = base / "dav"
        self.root.mkdir(parents=True, exist_ok=True)  # ac/ and cas/ are made by the first PUT
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.prefix / "nginx.conf"
        # Started as root, nginx's workers would run as nobody, who cannot read a test's private tmp_path.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config.write_text(CONFIG.format(user=user, prefix=self.prefix, port=self.port, root=self.root))

    def _launch(self) -> subprocess.Popen:
        with open(self.prefix / "stderr.log", "ab") as log:
            dies_with_us = [SETPRIV, "--pdeathsig", "TERM"] if SETPRIV else []
            return subprocess.Popen([*dies_with_us, NGINX, "-p", str(self.prefix), "-c", str(self.config), "-e",
                                     str(self._log())], stdout=log, stderr=log, start_new_session=True)

    def _log(self) -> Path:
        return self.prefix / "error.log"
