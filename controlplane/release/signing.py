"""Signed releases: a release wheel carries a detached Ed25519 signature, `<wheel>.sig`, which
`erpctl release install` checks against the installation's trusted public keys before it opens the
wheel (no code of an unsigned, untrusted or altered wheel is ever imported or installed).

The signature file is JSON: {"format", "version", "algorithm": "ed25519", "key_id", "file", "sha256",
"signature"}. What is signed is MESSAGE_PREFIX + the wheel's file name + NUL + its sha256 (hex): the
signature names one file of one content. A key id is the first 16 hex digits of the sha256 of the raw
public key. Keys are PEM files: the private key (PKCS#8, mode 0600) stays with the build, the public
key (`<key>.pub`, SubjectPublicKeyInfo) goes into the installation's trusted keys (a file, or a
directory of *.pub / *.pem files).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ReleaseUntrusted, SettingInvalid
from ..fsutil import atomic_write_text
from .wheel import sha256_of

FORMAT = "erpctl-release-signature"
VERSION = 1
SUFFIX = ".sig"
MESSAGE_PREFIX = b"erpctl release signature v1\0"
_SIGN_FIX = ("Sign the wheel where releases are built: 'erpctl release sign WHEEL --key SIGNING_KEY' writes "
             "WHEEL.sig; keep the .sig beside the wheel.")


@dataclass(frozen=True)
class Verified:
    """How a wheel passed: signed by the trusted key `key_id` (from `key_file`), or allowed unsigned."""

    signed: bool
    key_id: str | None = None
    key_file: str | None = None
    problem: str | None = None  # why it would have been refused, when allowed unsigned
    sha256: str | None = None   # the content that was verified

    def as_dict(self) -> dict:
        return {"signed": self.signed, "key_id": self.key_id, "key_file": self.key_file, "problem": self.problem}


def signature_path(wheel: str | os.PathLike) -> Path:
    return Path(f"{wheel}{SUFFIX}")


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(file_name: str, sha256: str) -> bytes:
    return MESSAGE_PREFIX + file_name.encode() + b"\0" + sha256.encode()


def generate_key(path: str | os.PathLike) -> dict:
    """A new signing key at `path` (mode 0600, never overwritten) and its public key at `path`.pub."""
    path = Path(path)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = private.public_key()
    pub_path = Path(f"{path}.pub")
    atomic_write_text(pub_path, public.public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return {"key": str(path), "public_key": str(pub_path), "key_id": key_id(public)}


def sign(wheel: str | os.PathLike, key_file: str | os.PathLike) -> dict:
    """Write `<wheel>.sig`, signed with the private key in `key_file`."""
    wheel, key_file = Path(wheel), Path(key_file)
    try:
        private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SettingInvalid(f"cannot read the signing key {key_file}: {exc}",
                             fix="Pass the PEM key 'erpctl release keygen KEY' wrote.") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SettingInvalid(f"{key_file} is not an Ed25519 key", fix="Make one with 'erpctl release keygen KEY'.")
    digest = sha256_of(wheel)
    record = {"format": FORMAT, "version": VERSION, "algorithm": "ed25519", "key_id": key_id(private.public_key()),
              "file": wheel.name, "sha256": digest,
              "signature": base64.b64encode(private.sign(_message(wheel.name, digest))).decode()}
    atomic_write_text(signature_path(wheel), json.dumps(record, indent=1) + "\n")
    return {"wheel": str(wheel), "signature": str(signature_path(wheel)), "key_id": record["key_id"],
            "sha256": digest}


def trusted_keys(where: str | os.PathLike | None) -> dict[str, tuple[Ed25519PublicKey, str]]:
    """The trusted public keys in a file or a directory of *.pub / *.pem files: {key_id: (key, file)}."""
    if not where:
        return {}
    where = Path(where)
    files = sorted(p for p in where.iterdir() if p.suffix in (".pub", ".pem")) if where.is_dir() else \
        [where] if where.is_file() else []
    keys = {}
    for f in files:
        try:
            public = serialization.load_pem_public_key(f.read_bytes())
        except (OSError, ValueError) as exc:
            raise SettingInvalid(f"the trusted release key {f} cannot be read: {exc}",
                                 fix="Put only PEM Ed25519 public keys (from 'erpctl release keygen') there.") from None
        if not isinstance(public, Ed25519PublicKey):
            raise SettingInvalid(f"the trusted release key {f} is not an Ed25519 public key",
                                 fix="Put only PEM Ed25519 public keys (from 'erpctl release keygen') there.")
        keys[key_id(public)] = (public, str(f))
    return keys


def verify(wheel: str | os.PathLike, keys_location: str | os.PathLike | None, *,
           allow_unsigned: bool = False) -> Verified:
    """Check `<wheel>.sig` against the trusted keys, reading the wheel only as bytes. ReleaseUntrusted
    when it is missing, made by a key that is not trusted, or does not match the wheel's bytes — unless
    `allow_unsigned` (then Verified(signed=False, problem=...))."""
    wheel = Path(wheel)
    try:
        return _verify(wheel, keys_location)
    except ReleaseUntrusted as exc:
        if allow_unsigned:
            return Verified(False, problem=exc.detail)
        raise


def _verify(wheel: Path, keys_location) -> Verified:
    sig = signature_path(wheel)
    where = dict(path=str(wheel), signature=str(sig))
    try:
        record = json.loads(sig.read_text())
    except FileNotFoundError:
        raise ReleaseUntrusted(f"{wheel.name} is not signed: there is no {sig.name} beside it",
                               fix=f"{_SIGN_FIX} To install it anyway (recorded in the evidence log), pass "
                                   "--allow-unsigned.", **where) from None
    except (OSError, ValueError) as exc:
        raise ReleaseUntrusted(f"{sig.name} is not a release signature: {exc}", fix=_SIGN_FIX, **where) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("algorithm") != "ed25519":
        raise ReleaseUntrusted(f"{sig.name} is not an Ed25519 release signature", fix=_SIGN_FIX, **where)
    keys = trusted_keys(keys_location)
    kid = str(record.get("key_id"))
    if kid not in keys:
        raise ReleaseUntrusted(
            f"{wheel.name} is signed by key {kid}, which this installation does not trust "
            f"({len(keys)} trusted key(s) in {keys_location or '(none configured)'})",
            fix="If that key is the release builder's, add its public key file to the trusted keys "
                "(setting release_trusted_keys, 'erpctl settings' shows where); otherwise do not install "
                "this wheel.", key_id=kid, **where)
    public, key_file = keys[kid]
    digest = sha256_of(wheel)
    try:
        signature = base64.b64decode(str(record.get("signature")), validate=True)
        public.verify(signature, _message(wheel.name, digest))
    except (InvalidSignature, ValueError):
        raise ReleaseUntrusted(f"{wheel.name} does not match its signature: the wheel (or its name) was altered "
                               "after it was signed", fix="Do not install it; fetch the release again from where "
                               "releases are built and compare its sha256.", key_id=kid, **where) from None
    return Verified(True, key_id=kid, key_file=key_file, sha256=digest)
