"""A release's provenance: a SLSA v1 provenance predicate in an in-toto v1 Statement, optionally
wrapped in a DSSE envelope signed with an ed25519 key (securesystemslib signs and verifies,
cryptography reads the keys). ed25519 signatures are deterministic, so a signed release is as
reproducible as an unsigned one."""
from __future__ import annotations

import json
from pathlib import Path

from buildsys.rule_api import read_ed25519_key

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:modelbuild:release:v1"
BUILDER_ID = "urn:modelbuild:builder:local"


def statement(subjects: dict[str, str], release: dict, revision: dict, toolchain: dict[str, str | None]) -> dict:
    """subjects: archive path -> sha256, for every file of the release but the provenance itself."""
    source = ({"commit": revision.get("commit"), "dirty": revision.get("dirty")} if revision.get("vcs")
              else {"repository": None, "note": "the workspace is not in a git repository"})
    dependencies = [
        {"name": name, "uri": f"pkg:pypi/{name}@{version}", "annotations": {"version": version}}
        for name, version in sorted(toolchain.items()) if version is not None and name not in ("python", "platform")
    ]
    if revision.get("commit"):
        dependencies.insert(0, {"name": "workspace", "digest": {"gitCommit": revision["commit"]},
                                "annotations": {"dirty": revision.get("dirty")}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"release": release["label"], "version": release["version"], "source": source},
                "internalParameters": {"sourceDateEpoch": release["epoch"], "python": toolchain.get("python"),
                                       "platform": toolchain.get("platform")},
                "resolvedDependencies": dependencies,
            },
            # No timestamps or invocation ids: they would make two builds of one commit differ.
            "runDetails": {"builder": {"id": BUILDER_ID}, "metadata": {}},
        },
    }


def dumps(value: dict) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def signing_key(value: str) -> Path:
    """The --sign-key flag: the path of a usable ed25519 private key (ValueError says what is wrong)."""
    path = Path(value).resolve()
    load_private_key(path)
    return path


# How to make the key each use wants, said after what is wrong with the one given.
_HOW = {True: "releases are signed with an ed25519 key: create one with `openssl genpkey -algorithm ed25519 -out release.key`",
        False: "derive the public key from the signing key with `openssl pkey -in release.key -pubout -out release.pub`"}


def _load(path: Path, private: bool):
    try:
        return read_ed25519_key(path, private=private)
    except ValueError as err:
        raise ValueError(f"{path}: {err}; {_HOW[private]}") from None


def load_private_key(path: Path):
    return _load(path, private=True)


def load_public_key(path: Path):
    return _load(path, private=False)


def sign(statement_bytes: bytes, private_key) -> bytes:
    """The statement in a DSSE envelope signed with the key."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    envelope = Envelope(payload=statement_bytes, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(private_key))
    return dumps(envelope.to_dict())


def open_provenance(data: bytes, public_key=None) -> tuple[dict, bool]:
    """The statement in a provenance file, and whether it was signed. With a public key the file
    must be an envelope that key signed; ValueError says what is wrong."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    try:
        doc = json.loads(data)
    except ValueError as err:
        raise ValueError(f"provenance.intoto.json is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError("provenance.intoto.json is not a JSON object")
    if "payload" not in doc:  # a bare statement
        if public_key is not None:
            raise ValueError("provenance.intoto.json is not signed (a bare statement, no DSSE envelope), but --key "
                             "asks for a signature")
        return doc, False
    try:
        envelope = Envelope.from_dict(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"provenance.intoto.json is not a DSSE envelope: {err!r}") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise ValueError(f"provenance.intoto.json carries {envelope.payload_type!r}, not an in-toto statement")
    if public_key is not None:
        try:
            envelope.verify([SSlibKey.from_crypto(public_key)], 1)
        except VerificationError as err:
            raise ValueError(f"provenance.intoto.json: the signature does not verify with the given key ({err})") from None
    try:
        return json.loads(envelope.payload), True
    except ValueError as err:
        raise ValueError(f"provenance.intoto.json: the envelope's payload is not JSON: {err}") from None
