"""Signing keys in cosign's format.

``cosign generate-key-pair`` writes an ECDSA P-256 private key as PKCS#8 DER,
encrypted with the securesystemslib ``encrypted`` envelope (scrypt KDF +
NaCl secretbox, serialized as JSON whose byte fields are standard base64),
inside a PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older versions wrote
``ENCRYPTED COSIGN PRIVATE KEY``); the public key is PKIX ``PUBLIC KEY`` PEM.
The password comes from ``COSIGN_PASSWORD`` when set (empty is allowed, as
cosign allows it), else from a prompt on the terminal, else from one line of
standard input.

Plain PEM keys (``EC PRIVATE KEY``, ``PRIVATE KEY``, ``ENCRYPTED PRIVATE KEY``)
are read too. Only ECDSA P-256 keys are accepted: that is what cosign
generates, and the signature is ECDSA over SHA-256 of the payload.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import InputError, SupplyChainError
from ..sinks.atomic import atomic_file, check_file_output

SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
ENCRYPTED_TYPES = (SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE)

SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
"""What cosign (securesystemslib's legacy parameter set) writes."""
_ACCEPTED_SCRYPT = {(32768, 8, 1), (65536, 8, 1), (1048576, 8, 1)}
"""Parameter sets securesystemslib reads; anything else is refused (a DoS guard)."""
_SALT_SIZE, _KEY_SIZE = 32, 32

PasswordSource = Callable[[bool], bytes]
"""``source(confirm)`` returns the password; ``confirm`` asks twice (keygen)."""


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes


# -- the encrypted envelope -------------------------------------------------------

def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_SIZE, n=n, r=r, p=p).derive(password)


def encrypt_envelope(plaintext: bytes, password: bytes) -> bytes:
    """securesystemslib ``encrypted.Encrypt``: the JSON envelope cosign stores in the PEM."""
    from nacl.secret import SecretBox
    from nacl.utils import random as nacl_random

    salt = os.urandom(_SALT_SIZE)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    nonce = nacl_random(SecretBox.NONCE_SIZE)
    sealed = SecretBox(key).encrypt(plaintext, nonce).ciphertext
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    envelope = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    return json.dumps(envelope, separators=(",", ":")).encode("ascii")


def decrypt_envelope(data: bytes, password: bytes) -> bytes:
    """securesystemslib ``encrypted.Decrypt``; a wrong password is a clear error."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        env = json.loads(data)
        kdf, cipher = env["kdf"], env["cipher"]
        params = (int(kdf["params"]["N"]), int(kdf["params"]["r"]), int(kdf["params"]["p"]))
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(env["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise SupplyChainError(f"malformed encrypted key envelope: {e}") from e
    if kdf.get("name") != "scrypt":
        raise SupplyChainError(f"encrypted key: unknown kdf {kdf.get('name')!r}")
    if cipher.get("name") != "nacl/secretbox":
        raise SupplyChainError(f"encrypted key: unknown cipher {cipher.get('name')!r}")
    if params not in _ACCEPTED_SCRYPT:
        raise SupplyChainError(f"encrypted key: unexpected scrypt parameters N,r,p={params}")
    if len(nonce) != SecretBox.NONCE_SIZE:
        raise SupplyChainError("encrypted key: incorrect nonce size")
    key = _scrypt(password, salt, *params)
    try:
        return SecretBox(key).decrypt(sealed, nonce)
    except CryptoError:
        raise SupplyChainError("decrypting the private key failed: wrong password?") from None


# -- PEM ----------------------------------------------------------------------------

def _pem_block(data: bytes) -> tuple[str, bytes]:
    """The type and DER body of the first PEM block in ``data``."""
    text = data.decode("ascii", "replace")
    start = text.find("-----BEGIN ")
    if start < 0:
        raise SupplyChainError("no PEM block found")
    head_end = text.find("-----", start + 11)
    kind = text[start + 11:head_end]
    end_marker = f"-----END {kind}-----"
    end = text.find(end_marker, head_end)
    if head_end < 0 or end < 0:
        raise SupplyChainError(f"unterminated PEM block {kind!r}")
    body = "".join(line for line in text[head_end + 5:end].splitlines()
                   if line and ":" not in line)
    try:
        return kind, base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error) as e:
        raise SupplyChainError(f"PEM block {kind!r} is not valid base64") from e


def _pem(kind: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _check_p256(key: object, what: str) -> None:
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise SupplyChainError(f"{what}: only ECDSA P-256 keys are supported, "
                               f"not {type(key).__name__}")
    if key.curve.name != "secp256r1":
        raise SupplyChainError(f"{what}: only ECDSA P-256 keys are supported, "
                               f"not curve {key.curve.name}")


# -- keys ---------------------------------------------------------------------------

def generate_key_pair(password: bytes) -> KeyPair:
    """A fresh P-256 key pair, the private half encrypted as cosign does."""
    private = ec.generate_private_key(ec.SECP256R1())
    return export_key_pair(private, password)


def export_key_pair(private: ec.EllipticCurvePrivateKey, password: bytes,
                    pem_type: str = SIGSTORE_PEM_TYPE) -> KeyPair:
    _check_p256(private, "key")
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(_pem(pem_type, encrypt_envelope(der, password)), public)


def write_key_pair(prefix: Path, password: PasswordSource, *, force: bool = False) -> KeyPair:
    """``ocibuild keygen``: write ``<prefix>.key`` (mode 0600) and ``<prefix>.pub``."""
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(
        prefix.name + ".pub")
    for path in (key_path, pub_path):
        check_file_output(path, "--output-key-prefix")
        if path.exists() and not force:
            raise InputError(f"{path} already exists; pass --force to overwrite it")
    pair = generate_key_pair(password(True))
    # written beside and renamed (the temp file is 0600 from the start): a symlink at
    # PREFIX.key is replaced, never written through
    with atomic_file(key_path, mode=0o600) as f:
        f.write(pair.private_pem)
    with atomic_file(pub_path) as f:
        f.write(pair.public_pem)
    return pair


def load_private_key(data: bytes, password: PasswordSource,
                     what: str = "private key") -> ec.EllipticCurvePrivateKey:
    """A signing key from cosign's encrypted PEM or a plain PEM EC / PKCS#8 key."""
    kind, der = _pem_block(data)
    try:
        if kind in ENCRYPTED_TYPES:
            plain = decrypt_envelope(der, password(False))
            key = serialization.load_der_private_key(plain, None)
        elif kind in ("EC PRIVATE KEY", "PRIVATE KEY"):
            key = serialization.load_pem_private_key(data, None)
        elif kind == "ENCRYPTED PRIVATE KEY":
            key = serialization.load_pem_private_key(data, password(False))
        else:
            raise SupplyChainError(f"{what}: unsupported PEM block {kind!r}")
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise SupplyChainError(f"{what}: cannot read the key: {e}") from e
    _check_p256(key, what)
    return key  # type: ignore[return-value]


def load_public_key(data: bytes, what: str = "public key") -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise SupplyChainError(f"{what}: not a PEM public key: {e}") from e
    _check_p256(key, what)
    return key  # type: ignore[return-value]


def read_key_file(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{what} {path}: {e.strerror or e}") from e


# -- signatures -----------------------------------------------------------------------

def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256 over SHA-256, ASN.1 DER encoded (what cosign puts in the annotation)."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


# -- passwords --------------------------------------------------------------------------

def cosign_password(confirm: bool) -> bytes:
    """``COSIGN_PASSWORD`` if set (may be empty), else a terminal prompt, else a stdin line."""
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode()
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("Enter password for private key: ")
        if confirm and getpass.getpass("Enter password for private key again: ") != first:
            raise InputError("passwords do not match")
        return first.encode()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n").encode()
