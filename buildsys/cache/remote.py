"""A client for Bazel's HTTP remote cache: action records at URL/ac/<key>, blobs at URL/cas/<sha256>,
GET, HEAD and PUT only, so bazel-remote, nginx's WebDAV module or any WebDAV server serves it as is.

The remote cache only saves time: a server that is down, slow or failing costs one warning and the
build goes on without it. Nothing it sends is trusted. A record must name the key it was fetched
for and, with a key configured, carry that key's signature (a record decides which programs this
machine loads, and loading a .pt2 runs pickle). A blob enters the local CAS only once its bytes
hash to its name. https trusts certifi's roots, or $SSL_CERT_FILE.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import httpx

from ..digests import canonical_json, digest_file
from ..errors import UserError
from .cas import CAS
from .record_signing import RecordKey

HEADER_ENV = "MODELBUILD_REMOTE_CACHE_HEADER"
_MAX_RECORD = 16 << 20  # records are a few KB; a body larger than this is not one
_NAME = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)


def headers_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Request headers from $MODELBUILD_REMOTE_CACHE_HEADER, one `Name: value` a line."""
    headers = {}
    for n, line in enumerate(environ.get(HEADER_ENV, "").splitlines(), 1):
        name, sep, value = line.partition(":")
        if not line.strip():
            continue
        if not sep or not _TOKEN.fullmatch(name.strip()) or not value.strip() or not value.isprintable():
            # The line itself is not shown: it may hold a secret.
            raise UserError(f"line {n} is not a `Name: value` header; allowed: one or more lines such as "
                            "`Authorization: Bearer <token>`", f"${HEADER_ENV}")
        headers[name.strip()] = value.strip()
    return headers


def redact(url: str) -> str:
    """The URL with any user:password@ replaced by ***@."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return url
    return f"{scheme}{sep}***@{netloc.rpartition('@')[2]}{slash}{path}"


@dataclass
class RemoteStats:
    hits: int = 0  # records found and accepted
    misses: int = 0  # records the server does not have
    rejected: int = 0  # records and blobs refused: unreadable, another key's, unsigned, badly signed, wrong bytes
    bytes_downloaded: int = 0  # bodies of records and blobs
    bytes_uploaded: int = 0
    records_uploaded: int = 0
    blobs_uploaded: int = 0


class RemoteCache:
    def __init__(self, url: str, *, upload: bool = True, key: Path | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 20.0, connect_timeout: float = 2.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError("not an http(s) URL; allowed: http://host[:port][/path] or https://...", redact(url))
        self._base = url.rstrip("/")
        self.url = redact(self._base)  # what messages show
        self._secrets = [s for s in (parts.username, parts.password, *(headers or {}).values()) if s]
        self.upload = upload
        self.enabled = True
        self.stats = RemoteStats()
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._bad: set[str] = set()  # blobs the server gave wrong bytes for: overwritten when uploaded
        self._key = RecordKey.load(key) if key is not None else None
        self._lock = threading.Lock()
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "RemoteCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Records.
    def get_record(self, key: str) -> dict | None:
        """The record stored for key, or None: not there, not acceptable, or the cache is off."""
        if not self.enabled:
            return None
        try:
            with self._client.stream("GET", self._url("ac", key)) as response:
                if response.status_code == 404:
                    self.stats.misses += 1
                    return None
                if not self._answered(response, "GET ac/"):
                    return None
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_RECORD:
                        break
        except httpx.HTTPError as err:
            self._fail(err)
            return None
        self.stats.bytes_downloaded += len(body)
        record = self._accept(key, bytes(body))
        if record is not None:
            self.stats.hits += 1
        return record

    def put_record(self, key: str, record: dict) -> None:
        if not (self.upload and self.enabled):
            return
        stored = {"key": key, "record": record}
        if self._key is not None and self._key.can_sign:
            stored |= {"signature": self._key.sign(_signed(key, record)), "signer": self._key.fingerprint}
        body = canonical_json(stored).encode()
        if self._put("ac", key, body, len(body)):
            self.stats.records_uploaded += 1

    def _accept(self, key: str, body: bytes) -> dict | None:
        where = f"ac/{key[:12]}..."
        if len(body) > _MAX_RECORD:
            return self._reject("large", f"a record over {_MAX_RECORD >> 20} MiB at {where}")
        try:
            stored = json.loads(body)
        except ValueError:
            return self._reject("unreadable", f"a record that is not JSON at {where}")
        if not isinstance(stored, dict) or not isinstance(stored.get("record"), dict):
            return self._reject("unreadable", f"a record that is not a {{key, record}} object at {where}")
        if stored.get("key") != key:
            return self._reject("misplaced", f"a record made for another key at {where}")
        if self._key is not None:
            signature, signer = stored.get("signature"), stored.get("signer")
            if not signature:
                return self._reject("unsigned", f"an unsigned record at {where} (with a key configured, "
                                                "only records that key signed are used)")
            if signer != self._key.fingerprint:
                return self._reject("other signer", f"a record at {where} signed by another key "
                                                    f"({str(signer)[:16]}, not {self._key.fingerprint})")
            if not self._key.verify(_signed(key, stored["record"]), signature):
                return self._reject("bad signature", f"a record at {where} whose signature does not match it")
        return stored["record"]

    # Blobs.
    def fetch_blob(self, digest: str, cas: CAS) -> bool:
        """Whether the blob is now in the local CAS; bytes that do not hash to digest are never stored."""
        if not self.enabled:
            return False
        if cas.has(digest):
            return True
        try:
            with self._client.stream("GET", self._url("cas", digest)) as response:
                if not self._answered(response, "GET cas/"):
                    return False
                stored = cas.adopt(self._counted(response.iter_bytes()), digest)
        except httpx.HTTPError as err:
            self._fail(err)
            return False
        if not stored:
            self._bad.add(digest)
            self._reject("blob", f"a blob whose bytes do not hash to its name cas/{digest[:12]}...")
        return stored

    def put_blob(self, digest: str, cas: CAS) -> None:
        if not (self.upload and self.enabled):
            return
        if digest not in self._bad:  # a bad copy there is replaced, not skipped
            try:
                response = self._client.head(self._url("cas", digest))
            except httpx.HTTPError as err:
                self._fail(err)
                return
            if response.status_code != 404:
                self._answered(response, "HEAD cas/")  # 200: there already
                return
        if not cas.verify(digest):
            return  # gone or corrupt here: nothing worth sharing
        try:
            with open(cas.path(digest), "rb") as f:
                stored = self._put("cas", digest, f, os.fstat(f.fileno()).st_size)
        except FileNotFoundError:  # removed since (gc)
            return
        if stored:
            self.stats.blobs_uploaded += 1

    # Files, for executors that move inputs and outputs through the CAS (exec/ray_transport.py).
    def put_file(self, path: Path) -> str | None:
        """Share a file as the blob cas/<its sha256> (unless the server has it), read as it goes up, never
        whole in memory: its digest, or None if it could not be shared."""
        digest = digest_file(path)
        if not (self.upload and self.enabled):
            return None
        try:
            there = self._client.head(self._url("cas", digest)).status_code == 200
        except httpx.HTTPError as err:
            self._fail(err)
            return None
        if not there:
            with open(path, "rb") as f:
                if not self._put("cas", digest, f, os.fstat(f.fileno()).st_size):
                    return None
        return digest

    def get_file(self, digest: str, dest: Path) -> bool:
        """Write the blob cas/<digest> to dest as it comes down; False (and no dest) if it is missing,
        does not hash to its name, or the cache is off."""
        if not self.enabled:
            return False
        sha = hashlib.sha256()
        try:
            with self._client.stream("GET", self._url("cas", digest)) as response:
                if not self._answered(response, "GET cas/"):
                    return False
                with open(dest, "wb") as f:
                    for chunk in self._counted(response.iter_bytes()):
                        sha.update(chunk)
                        f.write(chunk)
        except httpx.HTTPError as err:
            self._fail(err)
            dest.unlink(missing_ok=True)
            return False
        if sha.hexdigest() != digest:
            dest.unlink(missing_ok=True)
            self._reject("blob", f"a blob whose bytes do not hash to its name cas/{digest[:12]}...")
            return False
        return True

    def _counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.stats.bytes_downloaded += len(chunk)
            yield chunk

    # HTTP and its faults.
    def _url(self, kind: str, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a SHA-256 hex digest: {name!r}")
        return f"{self._base}/{kind}/{name}"

    def _put(self, kind: str, name: str, content, size: int) -> bool:
        try:
            response = self._client.put(self._url(kind, name), content=content)
        except httpx.HTTPError as err:
            self._fail(err)
            return False
        if response.is_success:
            self.stats.bytes_uploaded += size
            return True
        if response.status_code >= 500:
            self._disable(f"answered {_status(response)} to PUT {kind}/")
        else:  # refused (read-only server, no write permission): downloads may still work
            self.stop_uploads(f"refused an upload ({_status(response)} to PUT {kind}/){_credentials(response)}")
        return False

    def _answered(self, response: httpx.Response, request: str) -> bool:
        """True on 200, False on 404; any other answer turns the cache off."""
        if response.status_code in (200, 404):
            return response.status_code == 200
        self._disable(f"answered {_status(response)} to {request}{_credentials(response)}")
        return False

    def _fail(self, err: httpx.HTTPError) -> None:
        if "CERTIFICATE_VERIFY_FAILED" in str(err):
            what = ("not trusted: its TLS certificate does not verify against certifi's roots; for a private CA, "
                    "set $SSL_CERT_FILE to a PEM bundle that holds it")
        elif isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout)):
            what = "unreachable"
        elif isinstance(err, httpx.TimeoutException):
            what = "no answer in time"
        else:
            what = "failed"
        self._disable(f"{what} ({type(err).__name__}: {self._scrub(str(err)) or 'no detail'})")

    def _disable(self, why: str) -> None:
        with self._lock:  # uploads run on a thread of their own: one warning, whichever side fails first
            if not self.enabled:
                return
            self.enabled = False
        self._warn(f"{why}; building without it from here on")

    def stop_uploads(self, why: str) -> None:
        with self._lock:
            if not (self.upload and self.enabled):
                return
            self.upload = False
        self._warn(f"{why}; uploading nothing more, downloads continue")

    def reject(self, key: str, why: str) -> None:
        """The caller refuses a record this client accepted (it is not a valid result)."""
        self._reject("result", f"the record {key[:16]}: {why}")

    def _reject(self, kind: str, what: str) -> None:
        """Count a refused record or blob; one warning per kind of refusal, not per item."""
        self.stats.rejected += 1
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(f"rejected {what}; treated as a miss (more like it are counted in the stats, not repeated)")

    def _warn(self, message: str) -> None:
        self.warnings.append(f"remote cache {self.url}: {message}")

    def _scrub(self, text: str) -> str:
        """An exception's message without the credentials it may quote (a header, the URL)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _signed(key: str, record: dict) -> bytes:
    """The bytes a record's signature covers: the record tied to its key."""
    return canonical_json({"key": key, "record": record}).encode()


def _status(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}".strip()


def _credentials(response: httpx.Response) -> str:
    if response.status_code not in (401, 403):
        return ""
    return (f": it wants credentials, which come from ${HEADER_ENV} (`Name: value` lines, "
            "e.g. `Authorization: Bearer <token>`) or the URL's user:password@")
