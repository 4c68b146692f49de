"""A real WebDAV server (WsgiDAV on cheroot) in a subprocess on 127.0.0.1, serving a temporary
directory in Bazel's HTTP cache layout (ac/ and cas/ made up front: a WebDAV PUT needs its parent
collection, where nginx would use create_full_put_path).

It can require a bearer token, refuse writes (readonly: PUT answers 403), serve https with a
self-signed certificate for 127.0.0.1 (tls: `server.ca` is the file a client must trust), take
uploads slowly (rate: bytes per second, as over a thin link), and it answers 503 to everything while
`<root>/../unavailable` exists. The subprocess dies with the process that
started it (PR_SET_PDEATHSIG).

    with DavServer(tmp_path) as server:
        server.url, server.root, server.stop(), server.start(), server.unavailable(True)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from local_server import LocalServer


class DavServer(LocalServer):
    name = "WsgiDAV"

    def __init__(self, base: Path, token: str | None = None, readonly: bool = False, tls: bool = False,
                 rate: float | None = None):
        super().__init__()
        self.root = base / "dav"
        for sub in ("ac", "cas"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.token, self.readonly, self.rate = token, readonly, rate
        self.ca: Path | None = None
        if tls:
            self.ca, self._key = _self_signed(base)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log = self.root.parent / "dav.log"  # a file, not a pipe nobody reads: the server never blocks on it

    def _launch(self) -> subprocess.Popen:
        env = dict(os.environ, DAV_TOKEN=self.token or "", DAV_READONLY="1" if self.readonly else "",
                   DAV_CERT=str(self.ca or ""), DAV_KEY=str(self._key) if self.ca else "",
                   DAV_RATE=str(self.rate or ""))
        with open(self.log, "ab") as log:
            return subprocess.Popen([sys.executable, __file__, str(self.root), str(self.port)], env=env,
                                    stdout=log, stderr=log, start_new_session=True)

    def _log(self) -> Path:
        return self.log

    def unavailable(self, on: bool) -> None:
        """Make the server answer 503 Service Unavailable to every request (or stop doing so)."""
        flag = self.root.parent / "unavailable"
        flag.touch() if on else flag.unlink(missing_ok=True)


def _self_signed(base: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key, written under base."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelbuild test cache")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = base / "cache-cert.pem", base / "cache-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _serve(root: Path, port: int, token: str, readonly: bool, cert: str, key: str, rate: float | None) -> None:
    import ctypes
    import logging

    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    # Die with the parent, however it dies; and if it already died before the call, go now.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        sys.exit(0)
    logging.disable(logging.CRITICAL)

    dav = WsgiDAVApp({
        "host": "127.0.0.1", "port": port, "provider_mapping": {"/": {"root": str(root), "readonly": readonly}},
        "simple_dc": {"user_mapping": {"*": True}},  # anonymous: the token check below is the auth
        "http_authenticator": {"domain_controller": None, "accept_basic": False, "accept_digest": False},
        "dir_browser": {"enable": False}, "lock_storage": False, "verbose": 0, "logging": {"enable": False},
    })
    flag = root.parent / "unavailable"

    def app(environ, start_response):
        if flag.exists():
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        if token and environ.get("HTTP_AUTHORIZATION") != f"Bearer {token}":
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer"), ("Content-Length", "0")])
            return [b""]
        if rate and environ["REQUEST_METHOD"] == "PUT":  # the body takes as long as a link of that rate needs
            time.sleep(int(environ.get("CONTENT_LENGTH") or 0) / rate)
        return dav(environ, start_response)

    server = wsgi.Server(("127.0.0.1", port), app)
    if cert:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(cert, key)
    server.safe_start()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]), os.environ["DAV_TOKEN"], bool(os.environ["DAV_READONLY"]),
           os.environ["DAV_CERT"], os.environ["DAV_KEY"], float(os.environ["DAV_RATE"] or 0) or None)
