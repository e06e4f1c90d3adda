"""Field encryption at rest (AES-256-GCM) and masking for roles that may not see a value.

Two stored formats:

    v1:<base64(nonce | ciphertext)>   release 1.0: associated data b"erp-field", bound to nothing; the key is
                                      the 32-byte key itself, or SHA-256 of a passphrase (no salt)
    v2:<base64(nonce | ciphertext)>   release 1.1: associated data = table, column and row id (a value copied
                                      to another row or column fails to decrypt, FieldTampered); the key is
                                      the 32-byte key itself, or scrypt of a passphrase with the salt and
                                      parameters stored in the database (system setting field_key_kdf)

Both are read; which one is written is decided by the caller (erp_core.models.sealing: v2 once release 1.0
can no longer run on the schema). Release 1.0 refuses a v2 value ("stored field is not encrypted with a known
scheme") -- it never meets one: see docs/threat-model.md.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import FieldTampered  # noqa: F401 - raised here, named crypto.FieldTampered too

_PREFIX = "v1:"
BOUND = "v2:"
_LEGACY_AAD = b"erp-field"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}  # the parameters a new database's field_key_kdf gets
_key: bytes | None = None       # the 32-byte key, or SHA-256 of the passphrase (release 1.0's derivation)
_passphrase: bytes | None = None  # set when the key is a passphrase: v2 values use scrypt of it


def configure(key: str | bytes) -> None:
    """Set the field key: 32 raw bytes (base64), or any passphrase."""
    global _key, _passphrase
    raw = key.encode() if isinstance(key, str) else key
    try:
        decoded = base64.urlsafe_b64decode(raw)
    except Exception:
        decoded = b""
    if len(decoded) == 32:
        _key, _passphrase = decoded, None
    else:
        _key, _passphrase = hashlib.sha256(raw).digest(), raw


@contextlib.contextmanager
def key_loaded(key: str | bytes):
    """The field key set for the duration of the block; the key set before (or none) afterwards."""
    global _key, _passphrase
    previous = _key, _passphrase
    configure(key)
    try:
        yield
    finally:
        _key, _passphrase = previous


def is_passphrase() -> bool:
    """Whether the key set is a passphrase (its v2 key needs the database's KDF parameters)."""
    return _passphrase is not None


def new_kdf() -> dict:
    """The KDF parameters a database stores once (field_key_kdf): scrypt with a random salt."""
    return {"name": "scrypt", **SCRYPT, "salt": base64.b64encode(os.urandom(16)).decode()}


@functools.lru_cache(maxsize=8)
def _derive(passphrase: bytes, name: str, n: int, r: int, p: int, salt: str) -> bytes:
    if name != "scrypt":
        raise ValueError(f"unknown field-key KDF {name!r}")
    return Scrypt(salt=base64.b64decode(salt), length=32, n=n, r=r, p=p).derive(passphrase)


def _require_key() -> AESGCM:
    if _key is None:
        raise RuntimeError("no field encryption key: set ERP_FIELD_KEY (see README)")
    return AESGCM(_key)


def _bound_key(kdf: dict | None) -> AESGCM:
    if _key is None:
        raise RuntimeError("no field encryption key: set ERP_FIELD_KEY (see README)")
    if _passphrase is None:
        return AESGCM(_key)
    if not kdf:
        raise RuntimeError("the field key is a passphrase and the database holds no KDF parameters "
                           "(system setting field_key_kdf): run 'erpctl erp migrate'")
    return AESGCM(_derive(_passphrase, kdf["name"], int(kdf["n"]), int(kdf["r"]), int(kdf["p"]), kdf["salt"]))


def _aad(table: str, column: str, row_id) -> bytes:
    return b"erp-field-v2\x00" + "\x00".join((table, column, str(row_id))).encode()


def encrypt(plain: str | None) -> str | None:
    """Release 1.0's format (v1), bound to no row: what is written while 1.0 may still read the database."""
    if plain is None:
        return None
    nonce = os.urandom(12)
    sealed = _require_key().encrypt(nonce, plain.encode(), _LEGACY_AAD)
    return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(stored: str | None) -> str | None:
    """A v1 value (no row binding)."""
    if stored is None:
        return None
    if not stored.startswith(_PREFIX):
        raise ValueError("stored field is not encrypted with a known scheme")
    blob = base64.urlsafe_b64decode(stored[len(_PREFIX):])
    return _require_key().decrypt(blob[:12], blob[12:], _LEGACY_AAD).decode()


def seal(plain: str | None, table: str, column: str, row_id, kdf: dict | None) -> str | None:
    """A v2 value bound to its table, column and row id."""
    if plain is None:
        return None
    if row_id is None:
        raise ValueError(f"{table}.{column}: a bound value needs its row id")
    nonce = os.urandom(12)
    sealed = _bound_key(kdf).encrypt(nonce, plain.encode(), _aad(table, column, row_id))
    return BOUND + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(stored: str | None, table: str, column: str, row_id, kdf: dict | None) -> str | None:
    """The plain value of a stored v1 or v2 value; a v2 value must be stored where it was sealed
    (FieldTampered names the table, column and row when it is not)."""
    if stored is None:
        return None
    if stored.startswith(_PREFIX):
        try:
            return decrypt(stored)
        except InvalidTag:
            raise FieldTampered(table, column, row_id, "release 1.0 format, wrong key or altered") from None
    if not stored.startswith(BOUND):
        raise FieldTampered(table, column, row_id, "not encrypted with a known scheme")
    try:
        blob = base64.urlsafe_b64decode(stored[len(BOUND):])
        return _bound_key(kdf).decrypt(blob[:12], blob[12:], _aad(table, column, row_id)).decode()
    except (InvalidTag, ValueError):
        raise FieldTampered(table, column, row_id) from None


def mask(value: str | None) -> str | None:
    """Show only the last four characters."""
    if value is None:
        return None
    tail = value[-4:] if len(value) > 4 else ""
    return "*" * max(len(value) - len(tail), 4) + tail
