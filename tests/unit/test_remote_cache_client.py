"""The remote cache client against a real WebDAV server (WsgiDAV on cheroot, testbed/dav_server.py)."""
import hashlib
import json
import socket
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dav_server import DavServer
from helpers import keypair

from buildsys.cache.cas import CAS
from buildsys.cache.remote import HEADER_ENV, RemoteCache, headers_from_env
from buildsys.digests import canonical_json
from buildsys.errors import UserError

RECORD = {"outputs": {"program": "ab" * 32}, "metrics": {"size": 12, "snr_db": 41.5}, "log": None}


def key(n: int) -> str:
    return hashlib.sha256(f"action {n}".encode()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with DavServer(tmp_path_factory.mktemp("remote")) as server:
        yield server


@pytest.fixture
def cas(tmp_path):
    store = CAS(tmp_path / "local" / "cas")
    yield store
    store.close()


def listing(root):
    return sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*") if p.is_file())


def test_record_round_trip(server):
    with RemoteCache(server.url) as remote:
        assert remote.get_record(key(1)) is None
        remote.put_record(key(1), RECORD)
        assert remote.get_record(key(1)) == RECORD
        stored = (server.root / "ac" / key(1)).read_bytes()
        assert remote.stats.misses == 1 and remote.stats.hits == 1 and remote.stats.records_uploaded == 1
        assert remote.stats.bytes_uploaded == remote.stats.bytes_downloaded == len(stored)
        assert remote.warnings == []
    assert stored.decode() == canonical_json({"key": key(1), "record": RECORD})  # unsigned: no signature fields


def test_blob_round_trip_into_a_fresh_cas(server, tmp_path, cas):
    data = b"program bytes " * 1000
    digest = cas.put_bytes(data)
    with RemoteCache(server.url) as remote:
        remote.put_blob(digest, cas)
        remote.put_blob(digest, cas)  # there already (HEAD): not sent again
        assert remote.stats.blobs_uploaded == 1 and remote.stats.bytes_uploaded == len(data)
    assert (server.root / "cas" / digest).read_bytes() == data

    fresh = CAS(tmp_path / "fresh" / "cas")
    try:
        with RemoteCache(server.url) as remote:
            assert remote.fetch_blob(digest, fresh)
            assert remote.stats.bytes_downloaded == len(data) and remote.warnings == []
            assert not remote.fetch_blob(hashlib.sha256(b"never stored").hexdigest(), fresh)  # 404: a miss
            assert remote.warnings == [] and remote.enabled
        assert fresh.read(digest) == data
    finally:
        fresh.close()


def test_a_blob_tampered_on_the_server_is_rejected_and_never_installed(server, cas):
    digest = hashlib.sha256(b"the real bytes").hexdigest()
    (server.root / "cas" / digest).write_bytes(b"other bytes")
    with RemoteCache(server.url) as remote:
        assert not remote.fetch_blob(digest, cas)
        assert not remote.fetch_blob(digest, cas)
        assert remote.stats.rejected == 2 and remote.enabled
        assert len(remote.warnings) == 1 and "do not hash to its name" in remote.warnings[0]
    assert not cas.has(digest)
    assert [p.name for p in cas.root.iterdir()] == [CAS.SESSIONS]  # no staged leftovers either


def test_records_that_are_not_json_or_name_another_key_are_rejected(server):
    (server.root / "ac" / key(2)).write_bytes(b"\x00 not json")
    (server.root / "ac" / key(3)).write_text(canonical_json({"key": key(4), "record": RECORD}))
    (server.root / "ac" / key(4)).write_text(canonical_json({"key": key(4), "record": "not a dict"}))
    with RemoteCache(server.url) as remote:
        assert [remote.get_record(key(n)) for n in (2, 3, 4)] == [None, None, None]
        assert remote.stats.rejected == 3 and remote.stats.hits == 0 and remote.enabled
        assert len(remote.warnings) == 2  # one per kind of refusal: unreadable, made for another key
        assert "not JSON" in remote.warnings[0] and "another key" in remote.warnings[1]


def test_a_read_only_client_uploads_nothing(server, cas):
    before = listing(server.root)
    digest = cas.put_bytes(b"read-only client's blob")
    with RemoteCache(server.url, upload=False) as remote:
        remote.put_record(key(5), RECORD)
        remote.put_blob(digest, cas)
        assert remote.stats.records_uploaded == remote.stats.blobs_uploaded == remote.stats.bytes_uploaded == 0
    assert listing(server.root) == before


def test_signed_records(server, tmp_path):
    priv, pub = keypair(tmp_path, "ours")
    other_priv, _ = keypair(tmp_path, "theirs")
    with RemoteCache(server.url, key=priv) as signer:
        signer.put_record(key(10), RECORD)
        assert signer.get_record(key(10)) == RECORD  # the private key verifies with its public half
    stored = json.loads((server.root / "ac" / key(10)).read_bytes())
    assert set(stored) == {"key", "record", "signature", "signer"} and len(stored["signer"]) == 16
    with RemoteCache(server.url, key=other_priv) as other:
        other.put_record(key(11), RECORD)
    with RemoteCache(server.url) as unsigned:
        unsigned.put_record(key(12), RECORD)
        unsigned.put_record(key(13), RECORD)
        assert unsigned.get_record(key(10)) == RECORD  # without a key, signatures are ignored
    forged = dict(stored, record=dict(RECORD, log="ff" * 32))
    (server.root / "ac" / key(14)).write_text(canonical_json(dict(forged, key=key(14))))

    with RemoteCache(server.url, key=pub) as verifier:
        assert verifier.get_record(key(10)) == RECORD
        assert [verifier.get_record(key(n)) for n in (11, 12, 13, 14)] == [None] * 4
        assert verifier.stats.hits == 1 and verifier.stats.rejected == 4
        verifier.put_record(key(15), RECORD)  # a public key cannot sign: uploads go unsigned
        assert verifier.get_record(key(15)) is None
        # One warning per kind of refusal, however many records: another key's, unsigned, forged.
        assert len(verifier.warnings) == 3, verifier.warnings
        assert ["another key" in verifier.warnings[0], "unsigned" in verifier.warnings[1],
                "signature does not match" in verifier.warnings[2]] == [True] * 3


def test_a_key_that_is_not_an_ed25519_pem_key_is_a_user_error(tmp_path):
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    for path, says in [(rsa_key, "RSA private key"), (encrypted, "not an unencrypted PEM private key"),
                       (garbage, "not a PEM key"), (tmp_path / "missing.pem", "cannot read")]:
        with pytest.raises(UserError) as err:
            RemoteCache("http://127.0.0.1:1", key=path)
        assert str(err.value).startswith(f"{path}: ") and says in str(err.value)
        assert "allowed: a PEM ed25519 private key" in str(err.value)


def test_a_stopped_server_costs_one_warning_and_the_build_goes_on(tmp_path, cas):
    digest = cas.put_bytes(b"a blob")
    with DavServer(tmp_path) as server:
        server.stop()
        started = time.monotonic()
        with RemoteCache(server.url) as remote:
            assert remote.get_record(key(20)) is None
            assert not remote.fetch_blob(hashlib.sha256(b"x").hexdigest(), cas)
            remote.put_record(key(20), RECORD)
            remote.put_blob(digest, cas)
            assert remote.get_record(key(21)) is None
            assert not remote.enabled
            assert len(remote.warnings) == 1 and "unreachable (ConnectError" in remote.warnings[0]
            assert remote.warnings[0].endswith("building without it from here on")
        assert time.monotonic() - started < 5  # a bound, not a speed measurement

        server.start()  # back on the same port: a new client uses it
        with RemoteCache(server.url) as remote:
            remote.put_record(key(20), RECORD)
            assert remote.get_record(key(20)) == RECORD and remote.warnings == []


def test_a_server_that_answers_503_turns_the_cache_off(server):
    server.unavailable(True)
    try:
        with RemoteCache(server.url) as remote:
            assert remote.get_record(key(1)) is None
            assert not remote.enabled and remote.stats.misses == 0
            assert remote.get_record(key(1)) is None
            assert remote.warnings == [f"remote cache {server.url}: answered 503 Service Unavailable to GET ac/; "
                                       "building without it from here on"]
    finally:
        server.unavailable(False)


def test_a_server_that_never_answers_times_out(cas):
    with socket.socket() as listener:  # listens (the kernel completes the handshake) but never accepts
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        started = time.monotonic()
        with RemoteCache(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3) as remote:
            assert remote.get_record(key(1)) is None
            assert remote.get_record(key(2)) is None
        assert time.monotonic() - started < 5
    assert len(remote.warnings) == 1 and "no answer in time (ReadTimeout" in remote.warnings[0]


def test_a_server_that_refuses_uploads_still_serves_downloads(server, tmp_path, cas):
    with RemoteCache(server.url) as writer:
        writer.put_record(key(30), RECORD)
    digest = cas.put_bytes(b"refused blob")
    with DavServer(tmp_path, readonly=True) as readonly:
        (readonly.root / "ac" / key(30)).write_bytes((server.root / "ac" / key(30)).read_bytes())
        with RemoteCache(readonly.url) as remote:
            remote.put_record(key(31), RECORD)
            remote.put_blob(digest, cas)
            assert remote.upload is False and remote.enabled
            assert len(remote.warnings) == 1 and "refused an upload (403 Forbidden to PUT ac/)" in remote.warnings[0]
            assert "downloads continue" in remote.warnings[0]
            assert remote.stats.records_uploaded == remote.stats.blobs_uploaded == 0
            assert remote.get_record(key(30)) == RECORD
        assert not (readonly.root / "ac" / key(31)).exists() and not (readonly.root / "cas" / digest).exists()


def test_credentials_are_sent_and_never_shown(tmp_path):
    token = "s3cret-token-value"
    with DavServer(tmp_path, token=token) as server:
        headers = headers_from_env({HEADER_ENV: f"Authorization: Bearer {token}\n"})
        with RemoteCache(server.url, headers=headers) as remote:
            remote.put_record(key(40), RECORD)
            assert remote.get_record(key(40)) == RECORD and remote.warnings == []

        for headers in (None, {"Authorization": "Bearer wrong-value"}):
            with RemoteCache(server.url, headers=headers) as remote:
                assert remote.get_record(key(40)) is None and not remote.enabled
                [warning] = remote.warnings
                assert "answered 401 Unauthorized to GET ac/" in warning and f"${HEADER_ENV}" in warning
                assert "wrong-value" not in warning

        userinfo = server.url.replace("http://", "http://alice:hunter2@")
        with RemoteCache(userinfo) as remote:  # sent as basic auth, which this server does not take
            assert remote.url == server.url.replace("http://", "http://***@")
            assert remote.get_record(key(40)) is None
            [warning] = remote.warnings
            assert warning.startswith(f"remote cache {remote.url}: answered 401") and "hunter2" not in warning
            assert "it wants credentials, which come from" in warning
        server.stop()
        with RemoteCache(userinfo, headers={"Authorization": "Bearer wrong-value"}) as remote:
            remote.get_record(key(40))
            [warning] = remote.warnings
            assert "unreachable" in warning and "hunter2" not in warning and "alice" not in warning


def test_headers_from_env():
    assert headers_from_env({}) == {}
    assert headers_from_env({HEADER_ENV: "Authorization: Bearer a:b\n\nX-Team:  vision \n"}) == {
        "Authorization": "Bearer a:b", "X-Team": "vision"}
    for bad in ("Bearer secretvalue", "Bad Name: secretvalue", "X: \x01secretvalue", "Authorization:"):
        with pytest.raises(UserError) as err:
            headers_from_env({HEADER_ENV: f"X-Ok: 1\n{bad}"})
        assert str(err.value).startswith(f"${HEADER_ENV}: line 2 is not a `Name: value` header")
        assert "secretvalue" not in str(err.value)


def test_a_url_that_is_not_http_is_a_user_error():
    with pytest.raises(UserError, match=r"^ftp://\*\*\*@host/: not an http\(s\) URL"):
        RemoteCache("ftp://me:pw@host/")


def test_https_with_a_private_ca(tmp_path, cas, monkeypatch):
    """A cache behind TLS: trusted through $SSL_CERT_FILE it works as over http; untrusted, it is one
    warning that says what to set, and nothing is read from it."""
    with DavServer(tmp_path / "tls", tls=True) as server:
        assert server.url.startswith("https://")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        with RemoteCache(server.url) as untrusted:
            assert untrusted.get_record(key(40)) is None and not untrusted.enabled
            (warning,) = untrusted.warnings
            assert "not trusted" in warning and "$SSL_CERT_FILE" in warning, warning
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))
        digest = cas.put_bytes(b"over tls " * 100)
        with RemoteCache(server.url) as remote:
            remote.put_blob(digest, cas)
            remote.put_record(key(40), RECORD)
            assert remote.get_record(key(40)) == RECORD and remote.warnings == []
        assert (server.root / "cas" / digest).read_bytes() == b"over tls " * 100
