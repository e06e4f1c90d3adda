"""Field-key escrow: a copy of the field-encryption key kept where losing the data directory (or its
field.key) does not lose it, encrypted so that only its keepers can open it.

The copy is one JSON file (mode 0600), outside the data directory by default
(`<data dir>.field-key.escrow` beside it; setting field_key_escrow_file), holding the key encrypted to
each escrow secret configured:

    passphrase   ERPCTL_ESCROW_PASSPHRASE: scrypt (n=2**15, r=8, p=1) -> AES-256-GCM
    public key   ERPCTL_ESCROW_PUBLIC_KEY or [field_key] escrow_public_key: an RSA public key (PEM); the
                 key is sealed with RSA-OAEP (SHA-256), opened with the private key kept elsewhere

and the key's fingerprint (SHA-256 of the key, 16 hex digits) so a recovered key is recognised. It is
written when the key is created (the first `erpctl up` or `erpctl erp migrate`) when a secret is
configured, and by `erpctl field-key escrow`. Recovery (`erpctl field-key recover`) opens the copy,
proves the key decrypts the encrypted fields stored in the database (erp_core.ops.field_key_check), and
only then puts it in place. Every write and recovery is an evidence record (field_key.escrow,
field_key.recover); the key itself is never logged or printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from erp_core import ops

from . import config, erp_admin, layout
from .errors import ControlPlaneError, EscrowLocked, EscrowMissing, FieldKeyWrong, SettingInvalid
from .evidence import EvidenceLog
from .fsutil import fsync_dir
from .installation import Installation

log = logging.getLogger("controlplane.escrow")

FORMAT = "erpctl-field-key-escrow"
VERSION = 1
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
AAD = b"erpctl field-key escrow v1"


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.strip().encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


def _load_public(path: Path):
    try:
        pub = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise SettingInvalid(f"cannot read the escrow public key {path}: {exc}",
                             fix="Give an RSA public key in PEM (openssl rsa -in escrow.pem -pubout).") from None
    if not isinstance(pub, rsa.RSAPublicKey):
        raise SettingInvalid(f"the escrow public key {path} is not an RSA key",
                             fix="Give an RSA public key in PEM (openssl genrsa 3072 | openssl rsa -pubout).")
    return pub


def _oaep():
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def seal(key: str, passphrase: str | None = None, public_key: Path | None = None) -> dict:
    """The escrow document of `key`, encrypted to each secret given (at least one)."""
    if not passphrase and not public_key:
        raise EscrowMissing("no escrow secret is set: the field key cannot be escrowed",
                            fix="Set ERPCTL_ESCROW_PASSPHRASE, or an RSA public key in ERPCTL_ESCROW_PUBLIC_KEY "
                                "([field_key] escrow_public_key in erpctl.toml), then run 'erpctl field-key escrow'.")
    raw = key.strip().encode()
    copies = []
    if passphrase:
        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(_scrypt(passphrase, {**SCRYPT, "salt": _b64(salt)})).encrypt(nonce, raw, AAD)
        copies.append({"method": "passphrase", "kdf": {"name": "scrypt", **SCRYPT, "salt": _b64(salt)},
                       "nonce": _b64(nonce), "ciphertext": _b64(sealed)})
    if public_key:
        pub = _load_public(public_key)
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        copies.append({"method": "rsa-oaep-sha256", "public_key_sha256": hashlib.sha256(der).hexdigest(),
                       "ciphertext": _b64(pub.encrypt(raw, _oaep()))})
    return {"format": FORMAT, "version": VERSION, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "key_fingerprint": fingerprint(key), "copies": copies}


def open_copy(doc: dict, passphrase: str | None = None, private_key: Path | None = None,
              private_key_passphrase: str | None = None) -> str:
    """The key an escrow document holds, opened with the passphrase or the RSA private key."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EscrowLocked("not a field-key escrow copy", fix="Give the file 'erpctl field-key escrow' wrote.")
    tried = []
    for copy in doc.get("copies") or []:
        try:
            if copy.get("method") == "passphrase" and passphrase:
                tried.append("passphrase")
                aead = AESGCM(_scrypt(passphrase, copy["kdf"]))
                raw = aead.decrypt(_unb64(copy["nonce"]), _unb64(copy["ciphertext"]), AAD)
            elif copy.get("method") == "rsa-oaep-sha256" and private_key:
                tried.append("private key")
                priv = serialization.load_pem_private_key(
                    Path(private_key).read_bytes(),
                    private_key_passphrase.encode() if private_key_passphrase else None)
                raw = priv.decrypt(_unb64(copy["ciphertext"]), _oaep())
            else:
                continue
        except (InvalidTag, ValueError, KeyError, TypeError, OSError):
            continue
        key_text = raw.decode()
        if fingerprint(key_text) != doc.get("key_fingerprint"):
            continue
        return key_text
    if not tried:
        methods = ", ".join(c.get("method", "?") for c in doc.get("copies") or [])
        raise EscrowMissing(f"no secret given that opens this copy (it is sealed with: {methods})",
                            fix="Set ERPCTL_ESCROW_PASSPHRASE, or pass --private-key FILE.")
    raise EscrowLocked(f"the escrow copy does not open with the {' or the '.join(tried)} given",
                       fix="Check the passphrase (or private key) with the keepers of the escrow.")


def _scrypt(passphrase: str, kdf: dict) -> bytes:
    return Scrypt(salt=_unb64(kdf["salt"]), length=32, n=int(kdf["n"]), r=int(kdf["r"]),
                  p=int(kdf["p"])).derive(passphrase.encode())


def read_copy(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EscrowMissing(f"no escrow copy at {path}",
                            fix="Give the copy with --from FILE (where 'erpctl field-key escrow' wrote it).") from None
    except (OSError, ValueError) as exc:
        raise EscrowLocked(f"cannot read the escrow copy {path}: {exc}", fix="Give an intact copy.") from None


def write_copy(path: Path, doc: dict) -> None:
    """Write the copy atomically, mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def escrow_settings(inst) -> tuple[Path, str | None, Path | None]:
    """(escrow file, passphrase, public key) of the installation."""
    return inst.get("field_key_escrow_file"), inst.get("field_key_escrow_passphrase"), \
        inst.get("field_key_escrow_public_key")


def escrow(inst, key: str, out: Path | None = None, *, reason: str = "erpctl field-key escrow") -> dict:
    """Write the escrow copy of `key` (to `out`, else the setting) and record it as evidence. A copy sealed
    with a passphrase is opened again before this returns, so a copy that would not open is never left."""
    path, passphrase, public_key = escrow_settings(inst)
    path = Path(out) if out else path
    doc = seal(key, passphrase, public_key)
    if passphrase and open_copy(doc, passphrase=passphrase) != key.strip():
        raise EscrowLocked("the escrow copy did not open again", fix="Report this as a bug.")
    write_copy(path, doc)
    inside = Path(inst.data_dir) in Path(path).resolve().parents
    result = {"file": str(path), "key_fingerprint": doc["key_fingerprint"],
              "methods": [c["method"] for c in doc["copies"]], "inside_data_dir": inside, "reason": reason}
    EvidenceLog(inst.data_dir).append("field_key.escrow", result)
    if inside:
        log.warning("the field-key escrow copy is inside the data directory: losing the directory loses both",
                    extra={"file": str(path)})
    return result


def at_install(target, key: str) -> dict | None:
    """Escrow a key just created (the first `erpctl up` or `erp migrate`) when an escrow secret is set; a
    warning when none is (the key then has no copy outside the data directory and its backups). A copy that
    cannot be written is logged and recorded (evidence outcome failed); it never stops the installation."""
    try:
        inst = Installation.of(target)
        _path, passphrase, public_key = escrow_settings(inst)
    except ControlPlaneError as exc:
        log.error("the new field-encryption key could not be escrowed", extra={"error": exc.detail})
        return None
    if not (passphrase or public_key):
        log.warning("the new field-encryption key is not escrowed: no escrow secret is set",
                    extra={"fix": "Set ERPCTL_ESCROW_PASSPHRASE (or ERPCTL_ESCROW_PUBLIC_KEY) and run "
                                  "'erpctl field-key escrow'."})
        return None
    try:
        return escrow(inst, key, reason="the field key was created")
    except (ControlPlaneError, OSError) as exc:
        log.error("the new field-encryption key could not be escrowed", extra={"error": str(exc)})
        EvidenceLog(inst.data_dir).append("field_key.escrow", {"reason": "the field key was created",
                                                               "error": str(exc)}, outcome="failed")
        return None


def check_key(target, key: str) -> dict:
    """Does `key` decrypt the encrypted fields stored in the ERP's database (nothing changed)."""
    with erp_admin.open_database(target) as db:
        return ops.field_key_check(db.engine, key)


def current(target) -> dict:
    """The key in use (ERP_FIELD_KEY, else field.key), whether it decrypts the stored fields, and whether the
    escrow copy exists and holds this key. FieldKeyWrong when it does not decrypt them."""
    inst = Installation.of(target)
    key = config.field_key(inst, create=False)
    check = check_key(inst, key)
    path = inst.get("field_key_escrow_file")
    try:
        escrowed = read_copy(path).get("key_fingerprint") == fingerprint(key)
    except ControlPlaneError:
        escrowed = None  # no copy (or unreadable)
    result = {"key_fingerprint": fingerprint(key), "source": "ERP_FIELD_KEY" if os.environ.get("ERP_FIELD_KEY")
              else layout.name("field_key"), **check, "escrow_file": str(path), "escrowed": escrowed}
    if not check["ok"]:
        raise FieldKeyWrong(f"the field key in use ({result['source']}, fingerprint {result['key_fingerprint']}) "
                            f"does not decrypt {check['failed']} of the {check['checked']} encrypted values checked",
                            fix="The key was lost or replaced: recover it from its escrow copy (the FieldKeyLost "
                                "runbook: 'erpctl field-key recover --yes', then 'erpctl restart').", **result)
    return result


def recover(target, source: Path | None = None, *, private_key: Path | None = None, yes: bool = False,
            out: Path | None = None) -> dict:
    """Open the escrow copy, prove its key decrypts the stored fields, then put it in place (field.key, or
    `out`); a different key in place is moved aside (only with `yes`). Evidence field_key.recover."""
    inst = Installation.of(target)
    path = Path(source) if source else inst.get("field_key_escrow_file")
    doc = read_copy(path)
    key = open_copy(doc, passphrase=inst.get("field_key_escrow_passphrase"), private_key=private_key,
                    private_key_passphrase=os.environ.get("ERPCTL_ESCROW_PRIVATE_KEY_PASSPHRASE"))
    check = check_key(inst, key)
    result = {"from": str(path), "key_fingerprint": fingerprint(key), "escrowed_at": doc.get("created_at"), **check}
    evidence = EvidenceLog(inst.data_dir)
    if not check["ok"]:
        evidence.append("field_key.recover", result, outcome="failed")
        raise FieldKeyWrong(f"the escrowed key (fingerprint {result['key_fingerprint']}) does not decrypt "
                            f"{check['failed']} of the {check['checked']} encrypted values checked: not put in place",
                            fix="This copy escrows another key (another installation, or a key replaced since): "
                                "find the copy of this database's key.", **result)
    if out is None and os.environ.get("ERP_FIELD_KEY"):
        raise SettingInvalid("ERP_FIELD_KEY is set, so field.key is not used: the recovered key would not be",
                             fix="Write it elsewhere with --out FILE and set ERP_FIELD_KEY from it, or unset "
                                 "ERP_FIELD_KEY.")
    dest = Path(out) if out else layout.path(inst.data_dir, "field_key")
    result.update(written=str(dest), replaced=None, already=False)
    if dest.exists():
        old = dest.read_text().strip()
        if fingerprint(old) == result["key_fingerprint"]:
            result["already"] = True
            evidence.append("field_key.recover", result)
            return result
        if not yes:
            raise SettingInvalid(f"{dest} holds another key (fingerprint {fingerprint(old)})",
                                 fix="Pass --yes to replace it (it is kept beside it, renamed).")
        aside = layout.path(inst.data_dir, "field_key_replaced",
                            at=dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
        os.replace(dest, aside if not out else dest.with_name(aside.name))
        result["replaced"] = str(aside)
    config.write_private(dest, key.strip() + "\n")
    evidence.append("field_key.recover", result)
    return result
