"""The user's signing identity: a private key and an X.509 certificate chain the user creates on their machine.

``genlab keys init`` makes a one-off local root certificate authority, issues a signing certificate from it for a
fresh ES256 (P-256) or Ed25519 key, and throws the root's private key away: the folder then holds the signing key
(``signer.key``, readable only by its owner), the chain ``signer.pem`` (signing certificate + root) that goes into
every manifest, and ``root.pem``, the trust anchor anyone who wants to check your files adds to their trust list.
Nothing is shipped with genlab; a signature is only worth the trust a verifier gives the root.

C2PA validators require an end-entity certificate issued by a CA (not self-signed), with the digital-signature
key usage and an extended key usage such as e-mail protection: the chain made here has exactly that.

References:
    C2PA Technical Specification 2.1, "Trust model" and "X.509 certificates" (c2pa.org/specifications).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from genlab.errors import ConfigError
from genlab.extras import require

Algorithm = Literal["es256", "ed25519"]
KEY_FILE, CHAIN_FILE, ROOT_FILE, INFO_FILE = "signer.key", "signer.pem", "root.pem", "identity.json"


def default_dir() -> Path:
    """``$GENLAB_KEYS``, else ``$XDG_CONFIG_HOME/genlab/keys`` (default ``~/.config/genlab/keys``)."""
    if os.environ.get("GENLAB_KEYS"):
        return Path(os.environ["GENLAB_KEYS"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "genlab" / "keys"


@dataclass(frozen=True)
class Identity:
    """A loaded signing identity.

    Arguments:
        directory: where it lives.
        alg: ``es256`` or ``ed25519``.
        key_pem: the PKCS#8 private key (PEM).
        chain_pem: signing certificate followed by the root certificate (PEM).
        root_pem: the root certificate (the trust anchor).
        subject: the signing certificate's subject, e.g. ``CN=genlab signer,O=Ada``.
        fingerprint: SHA-256 fingerprint of the signing certificate (hex).
    """

    directory: Path
    alg: Algorithm
    key_pem: bytes
    chain_pem: bytes
    root_pem: bytes
    subject: str
    fingerprint: str

    def private_key(self) -> Any:
        """The private key as a ``cryptography`` object."""
        ser = require("cryptography.hazmat.primitives.serialization", "audit", "signing")
        return ser.load_pem_private_key(self.key_pem, password=None)

    def sign(self, data: bytes) -> bytes:
        """Signature of ``data``: ECDSA P-256 with SHA-256 (DER) or Ed25519."""
        key = self.private_key()
        if self.alg == "ed25519":
            return bytes(key.sign(data))
        ec = require("cryptography.hazmat.primitives.asymmetric.ec", "audit", "signing")
        hashes = require("cryptography.hazmat.primitives.hashes", "audit", "signing")
        return bytes(key.sign(data, ec.ECDSA(hashes.SHA256())))


def _new_key(alg: Algorithm) -> Any:
    if alg == "ed25519":
        ed = require("cryptography.hazmat.primitives.asymmetric.ed25519", "audit", "genlab keys init")
        return ed.Ed25519PrivateKey.generate()
    ec = require("cryptography.hazmat.primitives.asymmetric.ec", "audit", "genlab keys init")
    return ec.generate_private_key(ec.SECP256R1())


def init_keys(directory: str | Path | None = None, *, name: str = "genlab user", alg: str = "es256",
              force: bool = False, years: int = 10) -> Identity:
    """Create a signing identity in ``directory`` (default :func:`default_dir`).

    Arguments:
        directory: folder to create (it must not hold an identity unless ``force``).
        name: organisation recorded in the certificates (who signs, e.g. a person, lab or server).
        alg: ``es256`` (ECDSA P-256, the C2PA default) or ``ed25519``.
        force: replace an existing identity (files signed with the old key then verify as untrusted).
        years: validity of the signing certificate.

    Returns:
        the new :class:`Identity`.

    Raises:
        ConfigError: for an unknown algorithm, an empty name, or an existing identity without ``force``.
        ExtraMissing: without the ``audit`` extra.
    """
    if alg not in ("es256", "ed25519"):
        raise ConfigError(f"--alg must be es256 or ed25519, got {alg!r}")
    algorithm: Algorithm = "ed25519" if alg == "ed25519" else "es256"
    if not name.strip():
        raise ConfigError("--name must not be empty")
    folder = Path(directory).expanduser() if directory is not None else default_dir()
    if (folder / KEY_FILE).exists() and not force:
        raise ConfigError(f"{folder} already holds a signing key; pass --force to replace it (files signed with "
                          "the old key will no longer verify as trusted)")
    x509 = require("cryptography.x509", "audit", "genlab keys init")
    oid = require("cryptography.x509.oid", "audit", "genlab keys init")
    hashes = require("cryptography.hazmat.primitives.hashes", "audit", "genlab keys init")
    ser = require("cryptography.hazmat.primitives.serialization", "audit", "genlab keys init")
    now = _dt.datetime.now(_dt.UTC)
    digest = None if alg == "ed25519" else hashes.SHA256()
    ca_key, key = _new_key(algorithm), _new_key(algorithm)

    def subject(cn: str) -> Any:
        return x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(oid.NameOID.ORGANIZATION_NAME, name.strip())])

    def usage(sign: bool) -> Any:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign, crl_sign=not sign,
                             encipher_only=False, decipher_only=False)

    root_name = subject("genlab local root")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=366 * years))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, digest))
    leaf = (x509.CertificateBuilder().subject_name(subject("genlab signer")).issuer_name(root_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, digest))
    del ca_key  # the root signs only this certificate: its key is never written anywhere
    pem = ser.Encoding.PEM
    key_pem = key.private_bytes(pem, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    root_pem, leaf_pem = root.public_bytes(pem), leaf.public_bytes(pem)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (KEY_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.replace(tmp, folder / KEY_FILE)
    from genlab.checkpoint import write_bytes

    write_bytes(folder / CHAIN_FILE, leaf_pem + root_pem)
    write_bytes(folder / ROOT_FILE, root_pem)
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex()
    info = {"alg": alg, "subject": leaf.subject.rfc4514_string(), "fingerprint": fingerprint,
            "created": now.isoformat(timespec="seconds"), "not_after": leaf.not_valid_after_utc.isoformat()}
    write_bytes(folder / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode())
    return load_identity(folder)


def load_identity(directory: str | Path | None = None) -> Identity:
    """The identity in ``directory`` (default :func:`default_dir`).

    Raises:
        ConfigError: when there is none or its files are damaged (one line saying to run ``genlab keys init``).
    """
    folder = Path(directory).expanduser() if directory is not None else default_dir()
    missing = [f for f in (KEY_FILE, CHAIN_FILE, ROOT_FILE) if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"no signing key in {folder} (missing {missing[0]}); create one with `genlab keys init`"
                          " (or point $GENLAB_KEYS at your key folder)")
    x509 = require("cryptography.x509", "audit", "signing")
    hashes = require("cryptography.hazmat.primitives.hashes", "audit", "signing")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519", "audit", "signing")
    try:
        chain = (folder / CHAIN_FILE).read_bytes()
        leaf = x509.load_pem_x509_certificates(chain)[0]
        key_pem = (folder / KEY_FILE).read_bytes()
        ident = Identity(folder, "es256", key_pem, chain, (folder / ROOT_FILE).read_bytes(),
                         leaf.subject.rfc4514_string(), leaf.fingerprint(hashes.SHA256()).hex())
        key = ident.private_key()
    except (ValueError, IndexError, TypeError) as e:
        raise ConfigError(f"the signing key in {folder} is damaged ({str(e).splitlines()[0]}); recreate it with "
                          "`genlab keys init --force`") from None
    alg: Algorithm = "ed25519" if isinstance(key, ed.Ed25519PrivateKey) else "es256"
    return Identity(folder, alg, key_pem, chain, ident.root_pem, ident.subject, ident.fingerprint)
