"""The evidence log's signing key: Ed25519, kept outside the data directory.

Where. The private key is the setting `evidence_key_file` (ERPCTL_EVIDENCE_KEY_FILE, erpctl.toml
[evidence] key_file); by default `$XDG_CONFIG_HOME/erpctl/evidence-<installation id>.key` (else
~/.config/erpctl/...), where the installation id is the first 16 hex digits of the SHA-256 of the
data directory's absolute path. A copy of the data directory (or a backup of it) therefore holds no
key: whoever can rewrite the data directory alone cannot sign records.

When. The first record appended creates the key (its directory 0700, the file 0600, PEM PKCS#8).
A key file that others may read or write (any of the mode bits 077) is refused, naming the file
and the chmod that fixes it: records are not signed with a key others may have copied.

The public key. Every key that signs records is also written to evidence.pub in the data
directory (PEM, one block per key, appended), for `erpctl evidence verify` on this machine; an
auditor keeps their own copy (`erpctl evidence public-key --out F`) and verifies with
`--public-key F`, which trusts only the keys in F. Each record names its key by `key_id` (the first
16 hex digits of the SHA-256 of the raw public key) and carries `sig`: the Ed25519 signature of
its `hash` (which covers every other field, the link to the previous record included).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EvidenceKeyRefused
from .fsutil import create_exclusive, fsync_dir
from . import layout, permissions

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_DIR_MODE = 0o700
KEY_MODE = 0o600
PEM_BEGIN = b"-----BEGIN PUBLIC KEY-----"


# cryptography is imported by the functions that sign or check: commands that only import the
# evidence log (and record nothing) stay light (tests/controlplane/test_cli.py).

def key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, record_hash: str) -> str:
        return base64.b64encode(self.private.sign(record_hash.encode())).decode()


def _refuse_loose(path: Path) -> None:
    if (mode := permissions.loose_mode(path)) is not None:
        raise EvidenceKeyRefused(
            f"the evidence signing key {path} may be read or written by others (mode {mode:04o}); "
            "records are not signed with it",
            fix=f"chmod 600 {path} (and 700 its directory), if nobody else could have copied it; "
                "else move it away: a new key is made and its public key must be given to the auditors again.",
            key_file=str(path))


def load_or_create(path: str | os.PathLike) -> Signer:
    """The signing key at `path`, made (0600, directory 0700) when there is none; a loose one refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            made = not path.parent.exists()
            path.parent.mkdir(parents=True, exist_ok=True, mode=KEY_DIR_MODE)
            if made:
                os.chmod(path.parent, KEY_DIR_MODE)
            create_exclusive(path, pem, mode=KEY_MODE)  # two first appends at once: the second reads the first's
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
                raise  # a full disk and the like: what any write of evidence meets
            raise EvidenceKeyRefused(f"cannot make the evidence signing key {path}: {exc.strerror or exc}",
                                     fix="Set evidence_key_file ([evidence] key_file in erpctl.toml, or "
                                         "ERPCTL_EVIDENCE_KEY_FILE) to a writable place outside the data "
                                         "directory (contrib/systemd/erpctl@.service uses "
                                         "/var/lib/erpctl/keys/NAME/evidence.key).", key_file=str(path)) from None
    _refuse_loose(path)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise EvidenceKeyRefused(f"cannot read the evidence signing key {path}: {exc}",
                                 fix="Restore the key file, or move it away to make a new one.",
                                 key_file=str(path)) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise EvidenceKeyRefused(f"{path} is not an Ed25519 private key", fix="Point evidence_key_file at the "
                                 "evidence key (or move the file away to make a new one).", key_file=str(path))
    return Signer(private, path)


def parse_public_keys(data: bytes) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 public keys in PEM text (one or more blocks), by key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {}
    for block in data.split(PEM_BEGIN)[1:]:
        key = serialization.load_pem_public_key(PEM_BEGIN + block.split(b"-----END PUBLIC KEY-----")[0]
                                                + b"-----END PUBLIC KEY-----\n")
        if isinstance(key, Ed25519PublicKey):
            keys[key_id(key)] = key
    return keys


def read_public_keys(path: str | os.PathLike) -> dict[str, Ed25519PublicKey]:
    try:
        return parse_public_keys(Path(path).read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise EvidenceKeyRefused(f"{path} holds no readable public key: {exc}",
                                 fix="Give the file 'erpctl evidence public-key' wrote.", key_file=str(path)) from None


def publish(data_dir: str | os.PathLike, signer: Signer) -> None:
    """Add the signer's public key to the data directory's evidence.pub (once)."""
    path = layout.path(data_dir, "evidence_public_keys")
    if signer.key_id in read_public_keys(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(public_pem(signer.public))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


# Signatures this process has already checked, by (key id, hash, signature): a key id is the hash of
# its public key, so a hit is the same check. The exporter verifies the whole log on every scrape.
_VERIFIED: set[tuple[str, str, str]] = set()


def signature_ok(public: Ed25519PublicKey, record_hash: str, sig: str, kid: str | None = None) -> bool:
    """Whether `sig` signs `record_hash` with `public` (`kid`: its key id, when the caller has it)."""
    from cryptography.exceptions import InvalidSignature

    seen = (kid or key_id(public), record_hash, sig)
    if seen in _VERIFIED:
        return True
    try:
        public.verify(base64.b64decode(sig), record_hash.encode())
    except (InvalidSignature, ValueError, TypeError):
        return False
    _VERIFIED.add(seen)
    return True
