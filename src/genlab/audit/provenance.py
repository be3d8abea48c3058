"""Provenance anyone can verify: C2PA manifests on PNG/JPEG samples, signed JSON sidecars on every other file.

Signing records what made a file — the run (its id, folder name, family, data), SHA-256 hashes of the run's
``config.json`` and ``model.safetensors``, the sampling seed and options, the time and the genlab version — and
binds it to the file's bytes with the user's key (:mod:`genlab.audit.keys`):

* ``.png``/``.jpg``/``.jpeg``: a C2PA manifest embedded in the file (``c2pa-python``, fully offline), with a
  ``c2pa.created`` action of digital source type *trainedAlgorithmicMedia* and the record as the
  ``org.genlab.provenance`` assertion. Any C2PA reader (e.g. contentcredentials.org) can inspect it.
* anything else (``.npz``, ``.txt``, CSV, SMILES, MIDI, …): a detached sidecar ``FILE.sig.json`` holding the file's
  SHA-256 and the record, signed (ECDSA P-256/SHA-256 or Ed25519) with the signing certificate chain beside it.

Verification gives ``valid`` (intact and signed; ``trusted`` when the chain leads to a root in the verifier's trust
list — their own ``root.pem`` and any ``--trust`` files), ``invalid`` (the file or its signature changed after
signing, or the manifest is damaged) or ``unsigned``. A changed byte anywhere is caught: the C2PA hard binding
covers the image bytes and the signature covers the manifest; for PNG every chunk's CRC is checked as well (the
bytes around the embedded manifest are outside the C2PA hash); a sidecar must be byte-for-byte its signed form.
Stripping a manifest leaves an unsigned file (no signature can prevent that; watermarks are the soft binding).

References:
    C2PA Technical Specification 2.1 (c2pa.org/specifications): manifests, hard bindings, validation states.
    IPTC digital source type vocabulary: ``trainedAlgorithmicMedia``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from genlab.audit.keys import Identity, load_identity
from genlab.checkpoint import write_bytes
from genlab.errors import ConfigError
from genlab.extras import require

if TYPE_CHECKING:
    from genlab.run import Run

MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
SIDECAR = ".sig.json"
ASSERTION = "org.genlab.provenance"
SIDECAR_FORMAT = "genlab-signature/1"
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
Status = Literal["valid", "invalid", "unsigned"]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version() -> str:
    from genlab.api import __version__

    return __version__


def provenance_record(run: Run | None = None, *, seed: int | None = None, n: int | None = None,
                      options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What made a set of samples: run id and name, family, data, config and weights hashes, seed, options, time.

    A watermark key in ``options`` is a secret and is never recorded: only that a watermark was embedded.

    Arguments:
        run: the run the samples came from (None: only time and version are recorded).
        seed: the sampling seed.
        n: how many samples the file holds.
        options: the sampling options used.
    """
    rec: dict[str, Any] = {"generator": "genlab", "genlab_version": _version(),
                           "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if run is not None:
        rec.update({"family": run.family, "data": run.data, "kind": run.modality.kind})
        if run.path is not None:
            cfg, weights = Path(run.path) / "config.json", Path(run.path) / "model.safetensors"
            cfg_hash = sha256_file(cfg) if cfg.is_file() else None
            rec.update({"run": Path(run.path).resolve().name, "run_id": (cfg_hash or "")[:16] or None,
                        "config_sha256": cfg_hash,
                        "weights_sha256": sha256_file(weights) if weights.is_file() else None})
    if seed is not None:
        rec["seed"] = int(seed)
    if n is not None:
        rec["n_samples"] = int(n)
    if options:
        opts = {k: v for k, v in options.items() if not k.startswith("watermark")}
        rec["sample_options"] = json.loads(json.dumps(opts, default=str))
        rec["watermarked"] = bool(options.get("watermark"))
    return rec


def _c2pa() -> Any:
    return require("c2pa", "audit", "C2PA signing and verification")


def _manifest(record: Mapping[str, Any], title: str, mime: str) -> dict[str, Any]:
    version = str(record.get("genlab_version", _version()))
    return {"claim_generator_info": [{"name": "genlab", "version": version}], "title": title, "format": mime,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                               {"action": "c2pa.created", "digitalSourceType": SOURCE_TYPE,
                                "softwareAgent": {"name": "genlab", "version": version}}]}},
                           {"label": ASSERTION, "data": dict(record)}]}


def canonical(doc: Any) -> bytes:
    """The one byte form of a JSON document that genlab signs and writes (sorted keys, no spaces, ASCII)."""
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


@dataclass(frozen=True)
class Signed:
    """Where a signature went: the file itself (``c2pa``) or a sidecar next to it (``sidecar``)."""

    path: Path
    method: Literal["c2pa", "sidecar"]
    signature_path: Path


def sign_file(path: str | Path, record: Mapping[str, Any] | None = None, *, keys: str | Path | None = None,
              identity: Identity | None = None) -> Signed:
    """Sign ``path`` in place (C2PA for PNG/JPEG) or with a ``path.sig.json`` sidecar (every other file).

    Arguments:
        path: the file to sign (written by genlab or not).
        record: what made it (:func:`provenance_record`; default: time and version only).
        keys: the key folder (default ``$GENLAB_KEYS`` or ``~/.config/genlab/keys``).
        identity: an already loaded identity (overrides ``keys``).

    Raises:
        ConfigError: for a missing file or key, or a file C2PA cannot embed into (e.g. a corrupt PNG).
        ExtraMissing: without the ``audit`` extra.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"cannot sign {p}: no such file")
    ident = identity or load_identity(keys)
    rec = dict(record or provenance_record())
    mime = MEDIA.get(p.suffix.lower())
    if mime is None:
        payload = {"format": SIDECAR_FORMAT, "file": p.name, "size": p.stat().st_size, "sha256": sha256_file(p),
                   "record": rec}
        doc = {"alg": ident.alg, "chain": ident.chain_pem.decode("ascii"), "payload": payload,
               "signature": base64.b64encode(ident.sign(canonical(payload))).decode("ascii")}
        side = p.with_name(p.name + SIDECAR)
        write_bytes(side, canonical(doc))
        return Signed(p, "sidecar", side)
    c2pa = _c2pa()
    alg = c2pa.C2paSigningAlg.ED25519 if ident.alg == "ed25519" else c2pa.C2paSigningAlg.ES256
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, ident.chain_pem, ident.key_pem, None))
        ctx = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
        builder = c2pa.Builder(json.dumps(_manifest(rec, p.name, mime)), ctx)
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(p.read_bytes()), out)
    except c2pa.C2paError as e:
        raise ConfigError(f"cannot sign {p.name} with C2PA ({str(e).splitlines()[0]})") from None
    write_bytes(p, out.getvalue())
    return Signed(p, "c2pa", p)


@dataclass
class Verification:
    """The result of verifying one file.

    Arguments:
        file: the file.
        status: ``valid`` (signed and intact), ``invalid`` (changed after signing, or a damaged manifest) or
            ``unsigned``.
        method: ``c2pa`` (embedded manifest) or ``sidecar`` (``FILE.sig.json``), None when unsigned.
        trusted: the signing certificate chains to a root in the verifier's trust list.
        genlab: the manifest carries genlab's provenance record (False: a foreign manifest).
        signer: subject of the signing certificate (who signed).
        generator: the claim generator (``genlab 0.1.0``, or another tool's name).
        record: the provenance record (what made the file), empty when unsigned or foreign.
        problems: why it is invalid (or what is unusual about a valid file, e.g. an untrusted signer).
    """

    file: str
    status: Status
    method: str | None = None
    trusted: bool = False
    genlab: bool = False
    signer: str = ""
    generator: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        """One line: the status and the first reason."""
        if self.status == "unsigned":
            return f"{self.file}: unsigned (no C2PA manifest and no {Path(self.file).name}{SIDECAR})"
        if self.status == "invalid":
            return f"{self.file}: INVALID, {self.problems[0] if self.problems else 'tampered'}"
        who = self.signer or "unknown signer"
        trust = "trusted" if self.trusted else "untrusted signer"
        return f"{self.file}: valid ({self.method}, signed by {who}, {trust})"


def png_crc_problem(data: bytes) -> str | None:
    """The first structural damage in PNG bytes (signature, chunk lengths, CRC-32 of each chunk), or None."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "the PNG signature bytes are damaged"
    pos = 8
    while pos < len(data):
        if pos + 12 > len(data):
            return f"a PNG chunk header at byte {pos} is cut off"
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return f"PNG chunk {kind!r} at byte {pos} runs past the end of the file"
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return f"PNG chunk {kind.decode('latin-1')!r} at byte {pos} fails its CRC (changed after writing)"
        pos = end
        if kind == b"IEND":
            return None if pos == len(data) else f"{len(data) - pos} bytes follow the PNG's IEND chunk"
    return "the PNG has no IEND chunk"


_TRACES = (b"c2pa.claim", b"c2pa.signature", b"c2pa.assertions", b"caBX", b"jumb")


def _anchors(keys: str | Path | None, trust: Sequence[str | Path]) -> list[bytes]:
    """PEM roots the verifier trusts: their own ``root.pem`` (when they have keys) and each ``--trust`` file."""
    from genlab.audit.keys import ROOT_FILE, default_dir

    x509 = require("cryptography.x509", "audit", "verification")
    out = []
    own = (Path(keys).expanduser() if keys is not None else default_dir()) / ROOT_FILE
    if own.is_file():
        out.append(own.read_bytes())
    for t in trust:
        tp = Path(t)
        if not tp.is_file():
            raise ConfigError(f"--trust file {tp} does not exist")
        try:
            x509.load_pem_x509_certificates(tp.read_bytes())
        except ValueError:
            raise ConfigError(f"--trust file {tp} holds no PEM certificate") from None
        out.append(tp.read_bytes())
    return out


def _verify_c2pa(p: Path, data: bytes, mime: str, anchors: list[bytes]) -> Verification | None:
    """C2PA verification of an image, or None when it carries no manifest and no trace of one."""
    c2pa = _c2pa()
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if anchors:
        settings["trust"] = {"user_anchors": b"".join(anchors).decode("ascii")}
    damaged = png_crc_problem(data) if mime == "image/png" else None
    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), None, c2pa.Context.from_dict(settings))
        store = json.loads(reader.json())
    except Exception as e:  # any failure to read an untrusted file's manifest (c2pa.C2paError and the like)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "ManifestNotFound" in type(e).__name__ and damaged is None and not any(t in data for t in _TRACES):
            return None
        return Verification(str(p), "invalid", "c2pa", problems=[
            damaged or f"the C2PA manifest is damaged and cannot be read ({msg})"])
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    info = (active.get("claim_generator_info") or [{}])[0]
    generator = " ".join(str(v) for v in (info.get("name"), info.get("version")) if v) or str(
        active.get("claim_generator", ""))
    record = next((a.get("data", {}) for a in active.get("assertions", []) if a.get("label") == ASSERTION), None)
    sig = active.get("signature_info", {})
    signer = ", ".join(str(v) for v in (sig.get("common_name"), sig.get("issuer")) if v)
    state = store.get("validation_state", "")
    codes = store.get("validation_status") or []
    failures = [f"{c.get('code')}: {c.get('explanation', '')}".strip() for c in codes
                if c.get("code") != "signingCredential.untrusted"]
    v = Verification(str(p), "valid", "c2pa", trusted=state == "Trusted", genlab=record is not None,
                     signer=signer, generator=generator, record=dict(record or {}))
    if damaged:
        v.status, v.problems = "invalid", [damaged]
    elif state == "Invalid" or failures:
        v.status, v.problems = "invalid", failures or ["the C2PA validation failed"]
    elif not v.trusted:
        v.problems = ["the signing certificate does not chain to a root in your trust list (add it with --trust)"]
    return v


def _verify_sidecar(p: Path, side: Path, anchors: list[bytes]) -> Verification:
    x509 = require("cryptography.x509", "audit", "verification")
    exc = require("cryptography.exceptions", "audit", "verification")
    ec = require("cryptography.hazmat.primitives.asymmetric.ec", "audit", "verification")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519", "audit", "verification")
    hashes = require("cryptography.hazmat.primitives.hashes", "audit", "verification")

    def bad(why: str, **kw: Any) -> Verification:
        return Verification(str(p), "invalid", "sidecar", problems=[why], **kw)

    raw = side.read_bytes()
    try:
        doc = json.loads(raw)
        payload, chain = doc["payload"], str(doc["chain"]).encode("ascii")
        signature = base64.b64decode(doc["signature"], validate=True)
        if base64.b64encode(signature).decode("ascii") != doc["signature"]:
            raise ValueError("the signature is not in canonical base64")
        certs = x509.load_pem_x509_certificates(chain)
        leaf = certs[0]
        signer, key = leaf.subject.rfc4514_string(), leaf.public_key()
        validity = (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        if len(certs) != 2:
            raise ValueError("a genlab chain is a signing certificate and its root")
        leaf.verify_directly_issued_by(certs[1])  # the chain it carries is whole: signer <- its own root,
        certs[1].verify_directly_issued_by(certs[1])  # and the root is intact (self-signed)
        pem = require("cryptography.hazmat.primitives.serialization", "audit", "verification").Encoding.PEM
        if b"".join(c.public_bytes(pem) for c in certs) != chain:  # base64 decoders forgive stray characters
            raise ValueError("the chain is not the PEM of its certificates")
    except Exception:  # untrusted input: any parse or chain failure (JSON, base64, PEM, X.509) means damage
        return bad(f"{side.name} is damaged (not a readable genlab signature, or its certificate chain is broken)")
    wanted = "ed25519" if isinstance(key, ed.Ed25519PublicKey) else "es256"
    if doc.get("alg") != wanted:
        return bad(f"{side.name} names algorithm {doc.get('alg')!r} but its certificate holds an {wanted} key")
    if not isinstance(payload, dict) or payload.get("format") != SIDECAR_FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else None
        return bad(f"{side.name} is not a genlab signature (format {fmt!r})")
    if canonical(doc) != raw:
        return bad(f"{side.name} was changed after signing (it is not byte-for-byte its signed form)")
    record = dict(payload.get("record", {}))
    try:
        if isinstance(key, ed.Ed25519PublicKey):
            key.verify(signature, canonical(payload))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, canonical(payload), ec.ECDSA(hashes.SHA256()))
        else:
            return bad(f"{side.name} uses an unsupported key type")
    except exc.InvalidSignature:
        return bad(f"the signature in {side.name} does not match its content (the sidecar was altered)",
                   signer=signer)
    if payload.get("sha256") != sha256_file(p) or payload.get("size") != p.stat().st_size:
        return bad(f"{p.name} changed after it was signed (its SHA-256 no longer matches {side.name})",
                   signer=signer, record=record)
    trusted = False
    roots = [c for a in anchors for c in x509.load_pem_x509_certificates(a)]
    for root in roots:
        try:
            leaf.verify_directly_issued_by(root)  # genlab chains are one level deep: signer <- root
            trusted = True
            break
        except (ValueError, TypeError, exc.InvalidSignature):
            continue
    v = Verification(str(p), "valid", "sidecar", trusted=trusted, genlab=True, signer=signer,
                     generator=f"genlab {record.get('genlab_version', '')}".strip(), record=record)
    now = _dt.datetime.now(_dt.UTC)
    if not validity[0] <= now <= validity[1]:
        v.problems.append("the signing certificate is outside its validity period")
    if not trusted:
        v.problems.append("the signing certificate does not chain to a root in your trust list (add it with --trust)")
    if payload.get("file") != p.name:
        v.problems.append(f"signed as {payload.get('file')!r}, since renamed")
    return v


def verify_file(path: str | Path, *, keys: str | Path | None = None,
                trust: Sequence[str | Path] = ()) -> Verification:
    """Verify a file's provenance: its embedded C2PA manifest (PNG/JPEG) or its ``FILE.sig.json`` sidecar.

    Arguments:
        path: the file.
        keys: the verifier's key folder, whose ``root.pem`` is trusted (default ``$GENLAB_KEYS`` or
            ``~/.config/genlab/keys``; none needed to verify).
        trust: further PEM root certificates to trust (e.g. a colleague's or a server's ``root.pem``).

    Returns:
        the :class:`Verification` (``valid`` / ``invalid`` / ``unsigned``, who signed, what made the file).

    Raises:
        ConfigError: for a missing file or an unreadable ``--trust`` file.
        ExtraMissing: without the ``audit`` extra.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"cannot verify {p}: no such file")
    anchors = _anchors(keys, trust)
    mime = MEDIA.get(p.suffix.lower())
    side = p.with_name(p.name + SIDECAR)
    if mime is not None:
        v = _verify_c2pa(p, p.read_bytes(), mime, anchors)
        if v is not None:
            return v
    if side.is_file():
        return _verify_sidecar(p, side, anchors)
    return Verification(str(p), "unsigned")
