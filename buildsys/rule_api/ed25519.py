"""ed25519 keys from PEM files: one loader for whatever signs or verifies (the remote cache's
records, a release's provenance). Its messages say what the file is instead; the caller says
where it is and how to make the key it wants."""
from __future__ import annotations

from pathlib import Path


def _kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").removesuffix("PrivateKey").removesuffix("PublicKey") or "non-ed25519"


def read_ed25519_key(path: Path, private: bool | None = None):
    """The ed25519 key a PEM file holds: its private key (private=True), its public key (False), or
    whichever it holds (None). ValueError says what is wrong, without the path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    what = {True: "private key", False: "public key", None: "key"}[private]
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the {what}: {err.strerror or err}") from None
    if private or (private is None and b"PRIVATE KEY-----" in data):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as err:  # TypeError: encrypted
            raise ValueError(f"not an unencrypted PEM private key ({err})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"holds a {_kind(key)} private key, not an ed25519 one")
        return key
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"not a PEM {what} ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"holds a {_kind(key)} public key, not an ed25519 one")
    return key
