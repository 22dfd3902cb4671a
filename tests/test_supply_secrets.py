"""Secret rules: real keys and tokens of every kind are found; strings that only name one
(a TLS library's PEM constants, documentation examples, placeholders) stay quiet."""

from __future__ import annotations

import base64
import json
import os
import random
import secrets as pysecrets
import string
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from builder.supply.keys import generate_key_pair
from builder.supply.secrets import SecretScanner, find_env_secrets, is_env_file

NONE = ser.NoEncryption()
PASSWORD = ser.BestAvailableEncryption(b"correct horse")


def scan(data: bytes, block: int = 1 << 20) -> list:
    scanner = SecretScanner()
    for i in range(0, len(data), block):
        scanner.feed(data[i:i + block])
    return scanner.secrets()


def pem(key, fmt, enc=NONE) -> bytes:
    return key.private_bytes(ser.Encoding.PEM, fmt, enc)


def ssh_keygen(tmp: Path, kind: str, password: str = "") -> bytes:
    path = tmp / f"id_{kind}{'_enc' if password else ''}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", password, "-C", "", "-f", str(path)],
                   check=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory) -> dict[str, tuple[bytes, str]]:
    """Each kind of real private key, with words its finding must say."""
    tmp = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    return {
        "rsa-pkcs1": (pem(rsa_key, ser.PrivateFormat.TraditionalOpenSSL), "RSA (2048 bits)"),
        "rsa-pkcs8": (pem(rsa_key, ser.PrivateFormat.PKCS8), "RSA (2048 bits)"),
        "ec-sec1": (pem(ec_key, ser.PrivateFormat.TraditionalOpenSSL), "EC (secp384r1)"),
        "ed25519-pkcs8": (pem(ed25519.Ed25519PrivateKey.generate(), ser.PrivateFormat.PKCS8),
                          "Ed25519"),
        "dsa": (pem(dsa.generate_private_key(2048), ser.PrivateFormat.TraditionalOpenSSL),
                "DSA"),
        "encrypted-pkcs8": (pem(ec_key, ser.PrivateFormat.PKCS8, PASSWORD),
                            "encrypted PKCS#8"),
        "legacy-encrypted": (pem(rsa_key, ser.PrivateFormat.TraditionalOpenSSL, PASSWORD),
                             "legacy PEM encryption"),
        "openssh-ed25519": (ssh_keygen(tmp, "ed25519"), "OpenSSH Ed25519"),
        "openssh-rsa": (ssh_keygen(tmp, "rsa"), "OpenSSH RSA"),
        "openssh-ecdsa": (ssh_keygen(tmp, "ecdsa"), "OpenSSH EC"),
        "openssh-encrypted": (ssh_keygen(tmp, "ed25519", "s3cret pass"),
                              "encrypted OpenSSH private key (aes256-ctr)"),
        "cosign": (generate_key_pair(b"pw").private_pem, "encrypted cosign"),
        "pgp": (gpg_secret_key(tmp), "PGP secret key"),
    }


def gpg_secret_key(tmp: Path) -> bytes:
    from debian_fixtures import make_gpg_key

    key = make_gpg_key(tmp / "pgp")
    return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                           "--armor", "--export-secret-keys"], env=key.env(), check=True,
                          capture_output=True).stdout


KINDS = ["rsa-pkcs1", "rsa-pkcs8", "ec-sec1", "ed25519-pkcs8", "dsa", "encrypted-pkcs8",
         "legacy-encrypted", "openssh-ed25519", "openssh-rsa", "openssh-ecdsa",
         "openssh-encrypted", "cosign", "pgp"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_key_is_found_and_named(real_keys, kind):
    key, words = real_keys[kind]
    found = scan(b"some text before\n" + key + b"and after\n")
    assert [s.rule for s in found] == ["private-key"]
    assert words in found[0].what
    lines = key.decode().splitlines()
    body = max(lines, key=len)  # a full line of the key's base64
    assert body not in found[0].excerpt  # redacted: the key's bytes are not shown
    assert found[0].excerpt.startswith("-----BEGIN ") and "chars)" in found[0].excerpt
    assert found[0].offset == len(b"some text before\n")


def test_a_key_is_found_in_json_indented_yaml_and_on_one_line(real_keys):
    key = real_keys["rsa-pkcs8"][0].decode()
    as_json = json.dumps({"type": "service_account", "private_key": key}).encode()
    as_yaml = ("tls:\n  key: |\n" + "".join(f"    {line}\n" for line in key.splitlines())).encode()
    one_line = " ".join(key.splitlines()).encode()  # pasted into a one-line variable
    for data in (as_json, as_yaml, one_line):
        assert [s.what for s in scan(data)] == ["an RSA (2048 bits) private key"]


@pytest.mark.parametrize("block", [7, 100, 1000, 4096])
def test_a_secret_split_across_reads_is_found_once(real_keys, block):
    token = "ghp_" + "".join(random.Random(block).choices(string.ascii_letters + string.digits,
                                                          k=36))
    data = os.urandom(3000) + real_keys["ec-sec1"][0] + os.urandom(500) + b"\n" + token.encode() + b"\n"
    found = scan(data, block)
    assert [s.rule for s in found] == ["private-key", "github-token"]
    assert found[0].offset == 3000


def _random(alphabet: str, n: int) -> str:
    return "".join(pysecrets.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits


def real_tokens() -> list[tuple[str, str]]:
    return [
        ("aws-access-key", "AKIA" + _random("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        ("aws-access-key", "ASIA" + _random("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        ("github-token", "ghp_" + _random(ALNUM, 36)),
        ("github-token", "ghs_" + _random(ALNUM, 36)),
        ("github-token", "github_pat_" + _random(ALNUM, 22) + "_" + _random(ALNUM, 59)),
        ("slack-token", f"xoxb-{_random(string.digits, 12)}-{_random(string.digits, 13)}-"
                        + _random(ALNUM, 24)),
        ("stripe-key", "sk_live_" + _random(ALNUM, 24)),
        ("google-api-key", "AIza" + _random(ALNUM + "-_", 35)),
    ]


def test_real_token_shapes_are_found_redacted():
    for rule, token in real_tokens():
        for context in (f"key = '{token}'\n", f"\0\0{token}\0\0"):  # text, and a binary's
            found = scan(context.encode())
            assert [s.rule for s in found] == [rule], token
            assert token not in found[0].excerpt and found[0].excerpt[:4] == token[:4]


A_TLS_PEM_MODULE = (  # how OpenSSL-, mbedTLS- and BoringSSL-based libraries hold them
    b"\0-----BEGIN PRIVATE KEY-----\0-----END PRIVATE KEY-----\0"
    b"-----BEGIN RSA PRIVATE KEY-----\0-----END RSA PRIVATE KEY-----\0"
    b"-----BEGIN EC PRIVATE KEY-----\0-----END EC PRIVATE KEY-----\0"
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\0-----END ENCRYPTED PRIVATE KEY-----\0"
    b"-----BEGIN OPENSSH PRIVATE KEY-----\0Proc-Type: 4,ENCRYPTED\0DEK-Info: \0")


def near_misses() -> list[tuple[str, bytes]]:
    rsa_key = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                  ser.PrivateFormat.TraditionalOpenSSL)
    noise = base64.encodebytes(os.urandom(600))
    import cryptography.hazmat.primitives.serialization.ssh as ssh_module
    return [
        ("a header alone", b"-----BEGIN RSA PRIVATE KEY-----\n"),
        ("a header and footer, empty body",
         b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
        ("a header and footer with a blank line",
         b"-----BEGIN EC PRIVATE KEY-----\n\n-----END EC PRIVATE KEY-----\n"),
        ("a base64 body that is not a key",
         b"-----BEGIN RSA PRIVATE KEY-----\n" + noise + b"-----END RSA PRIVATE KEY-----\n"),
        ("a base64 body that is not an encrypted key",
         b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + noise
         + b"-----END ENCRYPTED PRIVATE KEY-----\n"),
        ("not an OpenSSH key",
         b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + noise + b"-----END OPENSSH PRIVATE KEY-----\n"),
        ("a documentation ellipsis",
         b"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n-----END RSA PRIVATE KEY-----\n"),
        ("a truncated key", rsa_key[:800] + b"\n-----END RSA PRIVATE KEY-----\n"),
        ("an RSA key labelled EC", rsa_key.replace(b"RSA PRIVATE", b"EC PRIVATE")),
        ("mismatched BEGIN and END", rsa_key.replace(b"END RSA", b"END EC")),
        ("the strings of a TLS library's PEM module", A_TLS_PEM_MODULE * 3),
        ("cryptography's own ssh.py", Path(ssh_module.__file__).read_bytes()),
        ("AWS's documented example key id", b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"),
        ("an AWS-like id inside a longer word", b"XAKIA" + b"ABCDEFGHIJKLMNOP" * 2 + b"\n"),
        ("a GitHub token placeholder", b"token: ghp_" + b"x" * 36 + b"\n"),
        ("a GitHub token one character short", b"ghp_" + b"aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h" + b"\n"),
        ("a counting GitHub token", b"ghp_" + b"1234567890abcdefghijklmnopqrstuvwxyz" + b"\n"),
        ("a Stripe test key", b"sk_test_" + b"4eC39HqLyjWDarjtT1zdp7dc" + b"\n"),
    ]


def test_near_misses_stay_quiet():
    loud = [name for name, data in near_misses() if scan(data)]
    assert loud == []


def test_env_secret_needs_a_real_looking_value():
    token = _random(ALNUM, 32)
    text = (f"DEBUG=1\nDB_PASSWORD='{token}'\nexport API_TOKEN=hunter2\nSECRET_KEY=changeme_now\n"
            "AUTH_TOKEN=${AUTH_TOKEN}\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
            "GITHUB_TOKEN=<your-token-here>\nUSER_NAME=a-long-random-Qz81x\n"
            "TEST_API_KEY=test-key-123\nAPI_SECRET=Latest-Qz81xWp3Lm\n")
    found = find_env_secrets(text)
    assert [s.what for s in found] == ["a secret value for DB_PASSWORD",
                                       "a secret value for API_SECRET"]  # latest ≠ test
    assert token not in found[0].excerpt and found[0].excerpt.startswith("DB_PASSWORD=")


@pytest.mark.parametrize("name,expected", [(".env", True), (".env.production", True),
                                           ("app.env", True), (".env.example", False),
                                           (".env.sample", False), ("environment", False)])
def test_env_file_names(name, expected):
    assert is_env_file(name) is expected
