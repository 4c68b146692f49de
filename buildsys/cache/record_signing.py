"""ed25519 signatures on the remote cache's action records.

A record names the blobs this machine will install and load, and loading a `.pt2` runs pickle,
so a record from a shared cache is only as trustworthy as whoever could write to it. With a key
configured, the client signs what it uploads (private key) and accepts only records signed by
that key (private or public key).
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import UserError
from ..rule_api.ed25519 import read_ed25519_key

_ALLOWED = ("allowed: a PEM ed25519 private key (signs uploads and verifies downloads; "
            "`openssl genpkey -algorithm ed25519 -out cache.key`) or its PEM public key (verifies only; "
            "`openssl pkey -in cache.key -pubout -out cache.pub`)")


class RecordKey:
    """An ed25519 key: signs when it holds the private half, verifies always."""

    def __init__(self, public: Ed25519PublicKey, private: Ed25519PrivateKey | None = None):
        self._public, self._private = public, private
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.fingerprint = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def load(cls, path: Path) -> "RecordKey":
        try:
            key = read_ed25519_key(path)
        except ValueError as err:
            raise UserError(f"{err}; {_ALLOWED}", path) from None
        if isinstance(key, Ed25519PrivateKey):
            return cls(key.public_key(), key)
        return cls(key)

    @property
    def can_sign(self) -> bool:
        return self._private is not None

    def sign(self, payload: bytes) -> str:
        assert self._private is not None
        return base64.b64encode(self._private.sign(payload)).decode()

    def verify(self, payload: bytes, signature: str) -> bool:
        try:
            self._public.verify(base64.b64decode(signature, validate=True), payload)
        except (InvalidSignature, ValueError, TypeError):  # ValueError: not base64
            return False
        return True
