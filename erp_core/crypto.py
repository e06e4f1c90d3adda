"""Field encryption at rest (AES-256-GCM) and masking for roles that may not see a value."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1:"
_key: bytes | None = None


def configure(key: str | bytes) -> None:
    """Set the field key: 32 raw bytes, or any passphrase (stretched with SHA-256)."""
    global _key
    raw = key.encode() if isinstance(key, str) else key
    try:
        decoded = base64.urlsafe_b64decode(raw)
        _key = decoded if len(decoded) == 32 else hashlib.sha256(raw).digest()
    except Exception:
        _key = hashlib.sha256(raw).digest()


@contextlib.contextmanager
def key_loaded(key: str | bytes):
    """The field key set for the duration of the block; the key set before (or none) afterwards."""
    global _key
    previous = _key
    configure(key)
    try:
        yield
    finally:
        _key = previous


def _require_key() -> AESGCM:
    if _key is None:
        raise RuntimeError("no field encryption key: set ERP_FIELD_KEY (see README)")
    return AESGCM(_key)


def encrypt(plain: str | None) -> str | None:
    if plain is None:
        return None
    nonce = os.urandom(12)
    sealed = _require_key().encrypt(nonce, plain.encode(), b"erp-field")
    return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(stored: str | None) -> str | None:
    if stored is None:
        return None
    if not stored.startswith(_PREFIX):
        raise ValueError("stored field is not encrypted with a known scheme")
    blob = base64.urlsafe_b64decode(stored[len(_PREFIX):])
    return _require_key().decrypt(blob[:12], blob[12:], b"erp-field").decode()


def mask(value: str | None) -> str | None:
    """Show only the last four characters."""
    if value is None:
        return None
    tail = value[-4:] if len(value) > 4 else ""
    return "*" * max(len(value) - len(tail), 4) + tail
