"""cosign's key format, checked against an independent implementation in the test.

The test's own encoder/decoder follows securesystemslib ``encrypted`` (scrypt
N=32768 r=8 p=1, NaCl secretbox, JSON with base64 fields) using
``cryptography`` and ``nacl`` directly, never ocibuild's code.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess

import nacl.secret
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from builder.errors import InputError, SupplyChainError
from builder.supply.keys import (load_private_key, load_public_key, sign_bytes, verify_bytes,
                                 write_key_pair)
from helpers import cli


def cosign_style_key(password: bytes, pem_type: str = "ENCRYPTED SIGSTORE PRIVATE KEY"
                     ) -> tuple[bytes, bytes, ec.EllipticCurvePrivateKey]:
    """A key pair as ``cosign generate-key-pair`` writes it, made without ocibuild."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    box_key = Scrypt(salt=salt, length=32, n=32768, r=8, p=1).derive(password)
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    envelope = json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode()}).encode()
    body = base64.encodebytes(envelope).decode().replace("\n", "")
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    private = f"-----BEGIN {pem_type}-----\n{lines}\n-----END {pem_type}-----\n".encode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public, key


def independent_decrypt(pem: bytes, password: bytes) -> ec.EllipticCurvePrivateKey:
    lines = pem.decode().strip().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    env = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert env["kdf"]["name"] == "scrypt" and env["cipher"]["name"] == "nacl/secretbox"
    assert env["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    salt = base64.b64decode(env["kdf"]["salt"])
    assert len(salt) == 32
    box_key = Scrypt(salt=salt, length=32, n=32768, r=8, p=1).derive(password)
    der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(env["ciphertext"]),
                                                 base64.b64decode(env["cipher"]["nonce"]))
    key = serialization.load_der_private_key(der, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    return key


def test_keygen_writes_cosign_format_readable_independently(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COSIGN_PASSWORD", "correct horse")
    code, out, _ = cli("keygen", "--output-key-prefix", tmp_path / "cosign", capsys=capsys)
    assert code == 0
    assert out.split() == [str(tmp_path / "cosign.key"), str(tmp_path / "cosign.pub")]
    key_file = tmp_path / "cosign.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = independent_decrypt(key_file.read_bytes(), b"correct horse")
    pub = serialization.load_pem_public_key((tmp_path / "cosign.pub").read_bytes())
    assert pub.public_numbers() == key.public_key().public_numbers()
    # refuses to overwrite without --force
    code, _, err = cli("keygen", "--output-key-prefix", tmp_path / "cosign", capsys=capsys)
    assert code == 1 and "already exists" in err


def test_empty_password_is_allowed_like_cosign(tmp_path):
    write_key_pair(tmp_path / "k", lambda confirm: b"")
    independent_decrypt((tmp_path / "k.key").read_bytes(), b"")


@pytest.mark.parametrize("pem_type", ["ENCRYPTED SIGSTORE PRIVATE KEY",
                                      "ENCRYPTED COSIGN PRIVATE KEY"])
def test_reads_keys_made_the_cosign_way(pem_type):
    private, public, original = cosign_style_key(b"pw", pem_type)
    key = load_private_key(private, lambda confirm: b"pw")
    assert key.private_numbers() == original.private_numbers()
    sig = sign_bytes(key, b"payload")
    original.public_key().verify(sig, b"payload", ec.ECDSA(hashes.SHA256()))
    assert verify_bytes(load_public_key(public), sig, b"payload")
    assert not verify_bytes(load_public_key(public), sig, b"payloaD")


def test_wrong_password_is_a_clear_error():
    private, _, _ = cosign_style_key(b"right")
    with pytest.raises(SupplyChainError, match="wrong password"):
        load_private_key(private, lambda confirm: b"wrong")


def test_plain_pem_ec_keys_are_accepted():
    key = ec.generate_private_key(ec.SECP256R1())
    for fmt in (serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.PrivateFormat.PKCS8):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        loaded = load_private_key(pem, lambda confirm: pytest.fail("no password needed"))
        assert loaded.private_numbers() == key.private_numbers()


def test_other_curves_and_garbage_are_refused(tmp_path):
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(SupplyChainError, match="P-256"):
        load_private_key(p384, lambda confirm: b"")
    with pytest.raises(SupplyChainError, match="PEM"):
        load_private_key(b"not a key", lambda confirm: b"")
    with pytest.raises(InputError):
        write_key_pair(tmp_path / "k", lambda confirm: b"")
        write_key_pair(tmp_path / "k", lambda confirm: b"")


def test_openssl_reads_the_public_key_and_checks_a_signature(tmp_path):
    write_key_pair(tmp_path / "cosign", lambda confirm: b"")
    key = load_private_key((tmp_path / "cosign.key").read_bytes(), lambda confirm: b"")
    (tmp_path / "data").write_bytes(b"hello")
    (tmp_path / "sig.der").write_bytes(sign_bytes(key, b"hello"))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", tmp_path / "cosign.pub",
                           "-signature", tmp_path / "sig.der", tmp_path / "data"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Verified OK" in done.stdout
