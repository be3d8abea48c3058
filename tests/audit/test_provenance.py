"""Signing and verifying: C2PA on PNG/JPEG, sidecars elsewhere; one flipped byte is always caught."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import assert_one_line_error, run_cli

pytest.importorskip("c2pa", reason="provenance needs the audit extra (c2pa-python)")
pytest.importorskip("cryptography", reason="provenance needs the audit extra (cryptography)")

from genlab.audit import keys as K
from genlab.audit import provenance as P
from genlab.errors import ConfigError


@pytest.fixture(scope="module")
def ident(tmp_path_factory):
    return K.init_keys(tmp_path_factory.mktemp("keys"), name="Test Lab")


def _png(path, seed=0, size=24):
    Image.fromarray((np.random.default_rng(seed).random((size, size)) * 255).astype(np.uint8)).save(path)
    return path


def test_keys_are_made_by_the_user(ident, tmp_path):
    assert (ident.directory / K.KEY_FILE).stat().st_mode & 0o077 == 0  # private key readable by its owner only
    assert "Test Lab" in ident.subject and ident.alg == "es256"
    with pytest.raises(ConfigError, match="already holds a signing key"):
        K.init_keys(ident.directory)
    with pytest.raises(ConfigError, match="genlab keys init"):
        K.load_identity(tmp_path / "none")
    ed = K.init_keys(tmp_path / "ed", alg="ed25519")
    assert ed.alg == "ed25519" and K.load_identity(tmp_path / "ed").fingerprint == ed.fingerprint


def _app11(data: bytes) -> tuple[int, int]:
    """Byte range of the APP11 (JUMBF / C2PA) segments of a JPEG."""
    i, lo, hi = 2, None, None
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] != 0xDA:
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if data[i + 1] == 0xEB:
            lo, hi = (i if lo is None else lo), end
        i = end
    assert lo is not None and hi is not None, "no C2PA segment"
    return lo, hi


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_c2pa_roundtrip_and_single_byte_tampering(ident, tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    im = Image.fromarray((np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8))
    im.save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    assert P.verify_file(path, keys=ident.directory).status == "unsigned"
    P.sign_file(path, {**P.provenance_record(seed=7), "family": "diffusion"}, identity=ident)
    v = P.verify_file(path, keys=ident.directory)
    assert (v.status, v.method, v.trusted, v.genlab) == ("valid", "c2pa", True, True)
    assert v.record["seed"] == 7 and v.record["family"] == "diffusion" and v.generator.startswith("genlab")
    assert not P.verify_file(path, keys=tmp_path / "stranger").trusted  # someone without our root
    assert P.verify_file(path, keys=tmp_path / "stranger", trust=[ident.directory / K.ROOT_FILE]).trusted
    data = path.read_bytes()
    positions = random.Random(0).sample(range(len(data)), 40) + list(range(0, 48, 3)) + [len(data) - 1]
    if suffix == ".jpg":  # JPEG segments carry no checksum: C2PA's unsigned labels/padding inside its APP11
        lo, hi = _app11(data)  # segment can change unseen; every byte outside the manifest is caught
        positions = [i for i in positions if not lo <= i < hi] + [lo - 1, hi, hi + 1]
    bad = tmp_path / f"t{suffix}"
    for i in positions:
        b = bytearray(data)
        b[i] ^= 1 << (i % 8)
        bad.write_bytes(bytes(b))
        assert P.verify_file(bad, keys=ident.directory).status == "invalid", f"flip at byte {i} missed"


def test_sidecar_roundtrip_and_every_byte_of_the_sidecar(ident, tmp_path):
    path = tmp_path / "samples.txt"
    path.write_text("a generated poem\n")
    signed = P.sign_file(path, P.provenance_record(seed=1, options={"watermark": "SECRET", "top_k": 5}),
                         identity=ident)
    assert signed.method == "sidecar" and signed.signature_path.name == "samples.txt.sig.json"
    assert b"SECRET" not in signed.signature_path.read_bytes()  # a watermark key is never recorded
    v = P.verify_file(path, keys=ident.directory)
    assert v.status == "valid" and v.trusted and v.record["watermarked"] and v.record["sample_options"]["top_k"] == 5
    raw = signed.signature_path.read_bytes()
    for i in range(0, len(raw), 7):
        b = bytearray(raw)
        b[i] ^= 0x0D
        signed.signature_path.write_bytes(bytes(b))
        assert P.verify_file(path, keys=ident.directory).status == "invalid", f"sidecar flip at {i} missed"
    signed.signature_path.write_bytes(raw)
    path.write_text("a generated poem!\n")
    v = P.verify_file(path, keys=ident.directory)
    assert v.status == "invalid" and "changed after it was signed" in v.problems[0]


def test_png_crc_check():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert P.png_crc_problem(bytes(data)) is None
    data[20] ^= 4
    assert "CRC" in P.png_crc_problem(bytes(data))


def test_cli_keys_sign_verify(tmp_path, capsys, monkeypatch):
    from tests.test_cli import FAST

    monkeypatch.setenv("GENLAB_KEYS", str(tmp_path / "k"))
    run = tmp_path / "vae"
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", run, *FAST], capsys)
    assert code == 0, err
    code, _, err = run_cli(["sample", run, "-n", "4", "--out", tmp_path / "g.png", "--sign"], capsys)
    assert_one_line_error(code, err, "genlab keys init")
    assert not (tmp_path / "g.png").exists()  # nothing is sampled without a key
    code, out, err = run_cli(["keys", "init", "--name", "CLI Lab"], capsys)
    assert code == 0 and "root.pem" in out, err
    code, out, err = run_cli(["sample", run, "-n", "4", "--out", tmp_path / "g.png", "--sign"], capsys)
    assert code == 0 and "c2pa" in out, err
    code, out, err = run_cli(["sample", run, "-n", "4", "--format", "npz", "--out", tmp_path / "g.npz", "--sign"],
                             capsys)
    assert code == 0 and (tmp_path / "g.npz.sig.json").is_file(), err
    code, out, err = run_cli(["verify", tmp_path / "g.png", "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["status"] == "valid" and res["trusted"] and res["record"]["family"] == "vae"
    assert len(res["record"]["weights_sha256"]) == 64 and res["record"]["n_samples"] == 4
    code, out, err = run_cli(["verify", tmp_path / "g.npz"], capsys)
    assert code == 0 and "valid (sidecar" in out
    _png(tmp_path / "plain.png")
    code, out, err = run_cli(["verify", tmp_path / "plain.png"], capsys)
    assert code == 1 and "unsigned" in out
    data = bytearray((tmp_path / "g.png").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "g.png").write_bytes(bytes(data))
    code, _, err = run_cli(["verify", tmp_path / "g.png"], capsys)
    assert_one_line_error(code, err, "INVALID")
    code, _, err = run_cli(["verify", tmp_path / "nope.png"], capsys)
    assert_one_line_error(code, err, "no such file")
    code, _, err = run_cli(["verify", tmp_path / "g.npz", "--trust", tmp_path / "plain.png"], capsys)
    assert_one_line_error(code, err, "no PEM certificate")


def test_foreign_manifest_is_one_line(ident, tmp_path, capsys):
    import c2pa

    path = _png(tmp_path / "foreign.png")
    manifest = {"claim_generator_info": [{"name": "othertool", "version": "9"}], "title": "x",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": P.SOURCE_TYPE}]}}]}
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, ident.chain_pem, ident.key_pem,
                                                      None))
    out = io.BytesIO()
    c2pa.Builder(json.dumps(manifest)).sign(signer, "image/png", io.BytesIO(path.read_bytes()), out)
    path.write_bytes(out.getvalue())
    v = P.verify_file(path, keys=ident.directory)
    assert v.status == "valid" and not v.genlab and "othertool" in v.generator
    code, _, err = run_cli(["verify", path, "--keys", ident.directory], capsys)
    assert_one_line_error(code, err, "foreign C2PA manifest", "othertool")
