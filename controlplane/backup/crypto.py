"""The repository's keys and how chunks are sealed.

A random master key (an encryption key and an id key) is made when the repository is created and
stored in its config only wrapped (AES-256-GCM) by a key-encryption key derived from a passphrase
with argon2id (memory-hard; its parameters kept beside the wrapped key) or from a key file (HKDF).

    chunk id  = BLAKE2b-256 keyed with the id key, of the plaintext: equal data, equal id (dedup),
                and the id tells nothing about the data to whoever lacks the key.
    sealed    = nonce (12) || AES-256-GCM(body, associated data = purpose + id)
    body      = 0 || plaintext, or 1 || zstd frame, or 2 || zstd frame made with the repository's
                dictionary (see dictionary.py; no dictionary id or content size in the frame)

The associated data binds each ciphertext to its id (a chunk swapped for another fails to open).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass

import zstandard
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..permissions import check_private

NONCE = 12
TAG = 16
RAW, ZSTD, ZSTD_DICT = 0, 1, 2
_RAW_PREFIX, _ZSTD_PREFIX, _DICT_PREFIX = bytes([RAW]), bytes([ZSTD]), bytes([ZSTD_DICT])

# argon2id: 64 MiB, 3 passes, 2 lanes (about 0.2 s here). Stored per key slot, so changing the
# defaults never locks out an existing repository.
DEFAULT_KDF = {"name": "argon2id", "time_cost": 3, "memory_cost": 65536, "parallelism": 2}


def chunk_aad(chunk_id: bytes) -> bytes:
    """The associated data that binds a sealed chunk to its id."""
    return b"chunk:" + chunk_id


class AuthenticationFailed(Exception):
    """A sealed object did not open: wrong key, or the bytes were altered."""


class NoDictionary(AuthenticationFailed):
    """A chunk compressed with the repository's dictionary, opened without one."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass(frozen=True)
class MasterKey:
    enc: bytes  # AES-256-GCM key for chunks, packs' headers, indexes and manifests
    ident: bytes  # BLAKE2b key for chunk ids (and the chunker's gear table)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32), secrets.token_bytes(32))

    def to_bytes(self) -> bytes:
        return json.dumps({"enc": b64(self.enc), "id": b64(self.ident)}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MasterKey:
        d = json.loads(data)
        return cls(unb64(d["enc"]), unb64(d["id"]))


def _kek_from_passphrase(passphrase: str, kdf: dict) -> bytes:
    if kdf.get("name") != "argon2id":
        raise ValueError(f"unknown key derivation {kdf.get('name')!r}")
    return hash_secret_raw(passphrase.encode(), unb64(kdf["salt"]), time_cost=int(kdf["time_cost"]),
                           memory_cost=int(kdf["memory_cost"]), parallelism=int(kdf["parallelism"]),
                           hash_len=32, type=Type.ID)


def _kek_from_key_file(secret: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"erpctl backup key file").derive(secret)


def wrap_with_passphrase(master: MasterKey, passphrase: str, kdf: dict | None = None) -> dict:
    params = {**DEFAULT_KDF, **(kdf or {}), "salt": b64(secrets.token_bytes(16))}
    kek = _kek_from_passphrase(passphrase, params)
    nonce = secrets.token_bytes(NONCE)
    return {"kind": "passphrase", "kdf": params,
            "wrapped": b64(nonce + AESGCM(kek).encrypt(nonce, master.to_bytes(), b"master-key"))}


def wrap_with_key_file(master: MasterKey, secret: bytes) -> dict:
    salt = secrets.token_bytes(16)
    kek = _kek_from_key_file(secret, salt)
    nonce = secrets.token_bytes(NONCE)
    return {"kind": "key_file", "kdf": {"name": "hkdf-sha256", "salt": b64(salt)},
            "wrapped": b64(nonce + AESGCM(kek).encrypt(nonce, master.to_bytes(), b"master-key"))}


def unwrap(slot: dict, *, passphrase: str | None = None, key_file_secret: bytes | None = None) -> MasterKey:
    """The master key from one key slot, or AuthenticationFailed."""
    if slot["kind"] == "passphrase":
        if passphrase is None:
            raise AuthenticationFailed("no passphrase")
        kek = _kek_from_passphrase(passphrase, slot["kdf"])
    elif slot["kind"] == "key_file":
        if key_file_secret is None:
            raise AuthenticationFailed("no key file")
        kek = _kek_from_key_file(key_file_secret, unb64(slot["kdf"]["salt"]))
    else:
        raise AuthenticationFailed(f"unknown key slot kind {slot['kind']!r}")
    blob = unb64(slot["wrapped"])
    try:
        return MasterKey.from_bytes(AESGCM(kek).decrypt(blob[:NONCE], blob[NONCE:], b"master-key"))
    except InvalidTag:
        raise AuthenticationFailed("wrong key") from None


def read_key_file(path) -> bytes:
    """A key file holds at least 32 random bytes (raw, or as text such as base64/hex), and only its
    owner may read it (DataDirProblem otherwise, naming the chmod)."""
    check_private(path)
    with open(path, "rb") as f:
        data = f.read()
    secret = data.strip() if data.strip().isascii() else data
    if len(secret) < 32:
        raise ValueError(f"the key file {path} holds {len(secret)} bytes; at least 32 are needed")
    return secret


def new_key_file_text() -> str:
    return b64(secrets.token_bytes(48)) + "\n"


class Sealer:
    """Chunk ids, sealing and opening under one master key (one per repository per process)."""

    def __init__(self, master: MasterKey, zstd_level: int = 3, dictionary: bytes | None = None):
        """With a dictionary (its bytes, see dictionary.py), chunks are compressed with it (body type 2);
        chunks of either kind open."""
        self.master = master
        self.zstd_level = zstd_level
        self.dictionary = dictionary or None
        self._aead = AESGCM(master.enc)
        self._dctx = zstandard.ZstdDecompressor()
        if self.dictionary is None:
            self._cctx, self._prefix, self._ddctx = zstandard.ZstdCompressor(level=zstd_level), _ZSTD_PREFIX, None
        else:
            zdict = zstandard.ZstdCompressionDict(self.dictionary, dict_type=zstandard.DICT_TYPE_FULLDICT)
            self._cctx = zstandard.ZstdCompressor(level=zstd_level, dict_data=zdict, write_dict_id=False,
                                                  write_content_size=False)
            self._prefix, self._ddctx = _DICT_PREFIX, zstandard.ZstdDecompressor(dict_data=zdict)

    def copy(self) -> Sealer:
        """Another Sealer with the same key, level and dictionary (a zstd context is single-threaded)."""
        return Sealer(self.master, self.zstd_level, self.dictionary)

    def chunk_id(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self.master.ident, digest_size=32).digest()

    def derive(self, purpose: bytes, size: int = 32) -> bytes:
        return hashlib.blake2b(purpose, key=self.master.ident, digest_size=size).digest()

    def seal(self, plaintext: bytes, aad: bytes, compress: bool = True) -> bytes:
        body = None
        if compress:
            packed = self._cctx.compress(plaintext)
            if len(packed) < len(plaintext):
                body = self._prefix + packed
        if body is None:
            body = _RAW_PREFIX + plaintext
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, body, aad)

    def seal_many(self, plaintexts: list, aads: list[bytes]) -> list[bytes]:
        """[seal(p, aad) ...] for many small plaintexts: zstd compresses them all in one call (the
        same frames as one by one, without a Python round trip each)."""
        if not plaintexts:
            return []
        out, urandom, encrypt, prefix = [], os.urandom, self._aead.encrypt, self._prefix
        for plain, packed, aad in zip(plaintexts, self._cctx.multi_compress_to_buffer(plaintexts, threads=0), aads):
            body = prefix + packed if len(packed) < len(plain) else _RAW_PREFIX + plain
            nonce = urandom(NONCE)
            out.append(nonce + encrypt(nonce, body, aad))
        return out

    def open(self, sealed: bytes, aad: bytes, raw_length: int | None = None) -> bytes:
        if len(sealed) < NONCE + TAG + 1:
            raise AuthenticationFailed("too short")
        try:
            body = self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], aad)
        except InvalidTag:
            raise AuthenticationFailed("authentication failed") from None
        if body[0] == RAW:
            return body[1:]
        if body[0] == ZSTD:
            dctx = self._dctx
        elif body[0] == ZSTD_DICT:
            if self._ddctx is None:
                raise NoDictionary("the chunk was compressed with the repository's dictionary, and the "
                                   "repository has none")
            dctx = self._ddctx
        else:
            raise AuthenticationFailed(f"unknown body type {body[0]}")
        if raw_length is not None:
            return dctx.decompress(body[1:], max_output_size=raw_length)
        return dctx.decompressobj().decompress(body[1:])
