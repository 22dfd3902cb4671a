"""The secret rules of ``ocibuild audit``: a whole secret, not a string that names one.

A TLS library holds ``-----BEGIN PRIVATE KEY-----`` as a constant, documentation holds
``AKIAIOSFODNN7EXAMPLE``; neither is a secret. So every rule here fires only on a
complete secret of a known shape (as gitleaks, trufflehog and trivy do):

* ``private-key``: a complete PEM block (BEGIN line, base64 body, the matching END line)
  whose body parses as a key of the type the label names: PKCS#1/SEC1/DSA/PKCS#8 keys
  load with ``cryptography``; an encrypted PKCS#8 key must be an
  ``EncryptedPrivateKeyInfo``, a legacy encrypted PEM key must carry ``Proc-Type`` and
  ``DEK-Info`` over whole cipher blocks; an OpenSSH key must start ``openssh-key-v1``
  and have a well-formed header (and load, when unencrypted); a cosign key must be the
  scrypt/secretbox JSON envelope; a PGP block must start with a secret-key packet.
* token rules: a known prefix, the token's exact length and alphabet, word boundaries,
  no documentation placeholder, and enough entropy in the random part.
* ``env-secret``: in a ``.env`` file, a ``*PASSWORD*``/``*SECRET*``/``*TOKEN*``/``*KEY*``
  assignment whose value is long and random enough and not a placeholder or a
  ``${VAR}`` reference.

:class:`SecretScanner` takes a file block by block and keeps a window of
:data:`MAX_PEM_BLOCK` bytes, so a secret split across two reads is still seen whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Callable

MAX_PEM_BLOCK = 64 << 10
"""The longest PEM block looked for (a 16384-bit RSA key is about 12 KiB)."""
MIN_KEY_BYTES = 40
"""The shortest key body (DER or OpenSSH binary) that can be a key (Ed25519 PKCS#8: 48)."""
TOKEN_MIN_ENTROPY = 2.5
"""Bits per character the random part of a fixed-shape token must reach."""
ENV_MIN_LENGTH = 10
"""The shortest ``.env`` secret value reported."""
ENV_MIN_ENTROPY = 2.5
"""Bits per character a ``.env`` secret value must reach."""

PLACEHOLDER_WORDS = ("example", "placeholder", "changeme", "change_me", "dummy", "xxxx",
                     "redacted", "secret_here", "token_here")
"""A value containing one of these (any case) is documentation, not a secret."""
PLACEHOLDER_PREFIXES = ("sample", "your", "fake", "test", "insert", "replace", "todo")
"""…and so is one with one of these not right after a letter (``latest`` is no ``test``)."""
_PLACEHOLDER = re.compile("|".join(PLACEHOLDER_WORDS) + "|(?<![a-z])(?:"
                          + "|".join(PLACEHOLDER_PREFIXES) + ")")
_SEQUENCE_RUN = 6
"""A run of this many consecutive characters (``abcdef``, ``123456``) marks a made-up value."""


@dataclass(frozen=True)
class Secret:
    rule: str
    what: str
    """What was found, e.g. ``an RSA private key (2048 bits)``."""
    excerpt: str
    """The secret redacted: its fixed prefix and a few characters, the rest masked."""
    offset: int


# -- helpers --------------------------------------------------------------------------

def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _has_sequence(text: str) -> bool:
    run = 1
    for a, b in zip(text, text[1:]):
        run = run + 1 if ord(b) - ord(a) == 1 else 1
        if run >= _SEQUENCE_RUN:
            return True
    return False


def is_placeholder(text: str) -> bool:
    """Documentation or test filler: a placeholder word, a counting run, one repeated char."""
    low = text.lower()
    return bool(_PLACEHOLDER.search(low)) or _has_sequence(low) or len(set(low)) <= 2


def redact(text: str, keep: int) -> str:
    """The first ``keep`` characters, the rest masked (at most 8 stars shown) and counted."""
    shown = text[:keep]
    hidden = len(text) - keep
    return f"{shown}{'*' * min(hidden, 8)}…({len(text)} chars)" if hidden > 0 else shown


# -- private keys ---------------------------------------------------------------------

_NL = rb"(?:\r?\n|\\(?:r\\)?n)"
"""A line break, also written as ``\\n`` inside a JSON or YAML string."""
_SEP = rb"(?:[ \t]*" + _NL + rb"[ \t]*|[ \t]+)"
"""Between base64 lines: a line break (lines may be indented, as in YAML), or spaces (a
key pasted on one line)."""
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?)-----" + _SEP +
    rb"((?:[A-Za-z][A-Za-z0-9-]*:[^\r\n\\]*" + _NL + rb"[ \t]*)*)" +   # RFC 1421 headers
    rb"(?:" + _NL + rb"[ \t]*)?" +
    rb"((?:[A-Za-z0-9+/][A-Za-z0-9+/=]{0,8191}" + _SEP + rb"){1,2000})" +  # the base64 body
    rb"(?:=[A-Za-z0-9+/]{4}" + _SEP + rb")?" +                            # a PGP checksum
    rb"-----END \1-----")
_NOT_BASE64 = re.compile(rb"\s+|\\[rn]")

_PKCS_TYPES = {"RSA PRIVATE KEY": "RSA", "EC PRIVATE KEY": "EC", "DSA PRIVATE KEY": "DSA",
               "PRIVATE KEY": None}
_COSIGN_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
_LEGACY_BLOCK = {"DES-CBC": 8, "DES-EDE3-CBC": 8, "AES-128-CBC": 16, "AES-192-CBC": 16,
                 "AES-256-CBC": 16}


def _key_name(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA ({key.key_size} bits)"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC ({key.curve.name})"
    if isinstance(key, dsa.DSAPrivateKey):
        return f"DSA ({key.key_size} bits)"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "Ed448"
    return type(key).__name__.removeprefix("_")


def _der_is_encrypted_pkcs8(der: bytes) -> bool:
    """EncryptedPrivateKeyInfo (RFC 5958): SEQUENCE { SEQUENCE { OID, … }, OCTET STRING }."""
    def tlv(data: bytes, at: int) -> tuple[int, int, int] | None:
        if at + 2 > len(data):
            return None
        tag, length, at = data[at], data[at + 1], at + 2
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > 4 or at + size > len(data):
                return None
            length, at = int.from_bytes(data[at:at + size], "big"), at + size
        return (tag, at, at + length) if at + length <= len(data) else None

    outer = tlv(der, 0)
    if not outer or outer[0] != 0x30 or outer[2] != len(der):
        return False
    algorithm = tlv(der, outer[1])
    if not algorithm or algorithm[0] != 0x30:
        return False
    oid = tlv(der, algorithm[1])
    data = tlv(der, algorithm[2])
    return bool(oid and oid[0] == 0x06 and data and data[0] == 0x04 and data[2] == len(der)
                and data[2] - data[1] >= 16)


def _ssh_strings(blob: bytes, at: int, count: int) -> list[bytes] | None:
    out = []
    for _ in range(count):
        if at + 4 > len(blob):
            return None
        (size,) = struct.unpack(">I", blob[at:at + 4])
        if at + 4 + size > len(blob):
            return None
        out.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    return out


def _openssh_key(pem: bytes, body: bytes) -> str | None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    magic = b"openssh-key-v1\0"
    if not body.startswith(magic):
        return None
    header = _ssh_strings(body, len(magic), 3)  # ciphername, kdfname, kdfoptions
    if header is None:
        return None
    cipher = header[0].decode("ascii", "replace")
    try:
        return f"an OpenSSH {_key_name(load_ssh_private_key(pem, None))} private key"
    except TypeError:  # password-protected: the structure parsed up to the encrypted part
        return f"an encrypted OpenSSH private key ({cipher})"
    except UnsupportedAlgorithm:
        return f"an encrypted OpenSSH private key ({cipher})" if cipher != "none" else \
            "an OpenSSH private key"
    except ValueError:
        return None


def _pem_key(label: str, headers: str, body: bytes, pem: bytes) -> str | None:
    """What the block is, if its body is a key of the type ``label`` names."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if label in _PKCS_TYPES:
        if "Proc-Type: 4,ENCRYPTED" in headers:
            dek = re.search(r"DEK-Info: ([A-Z0-9-]+),([0-9A-Fa-f]+)", headers)
            block = _LEGACY_BLOCK.get(dek.group(1)) if dek else None
            if block and len(dek.group(2)) == 2 * block and len(body) % block == 0:
                kind = _PKCS_TYPES[label] or "PKCS#8"
                return f"an encrypted {kind} private key ({dek.group(1)}, legacy PEM encryption)"
            return None
        try:
            key = load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return None
        name = _key_name(key)
        wanted = _PKCS_TYPES[label]
        if wanted is not None and not name.startswith(wanted):
            return None
        return f"{'a' if name.startswith('DSA') else 'an'} {name} private key"
    if label == "ENCRYPTED PRIVATE KEY":
        try:
            load_pem_private_key(pem, None)
        except TypeError:  # cryptography parsed EncryptedPrivateKeyInfo and wants a password
            return "an encrypted PKCS#8 private key"
        except (ValueError, UnsupportedAlgorithm):
            pass  # an algorithm cryptography does not know: check the structure ourselves
        else:
            return "a PKCS#8 private key labelled encrypted"
        return "an encrypted PKCS#8 private key" if _der_is_encrypted_pkcs8(body) else None
    if label == "OPENSSH PRIVATE KEY":
        return _openssh_key(pem, body)
    if label in _COSIGN_TYPES:
        try:
            envelope = json.loads(body)
            ok = {"kdf", "cipher", "ciphertext"} <= set(envelope)
        except (ValueError, TypeError):
            ok = False
        return "an encrypted cosign private key" if ok else None
    if label == "PGP PRIVATE KEY BLOCK":
        first = body[0]
        tag = (first & 0x3F) if first & 0x40 else (first >> 2) & 0x0F
        return "a PGP secret key" if first & 0x80 and tag == 5 else None
    return None


def _find_keys(data: bytes, base: int) -> list[Secret]:
    out = []
    for m in _PEM_BLOCK.finditer(data):
        label = m.group(1).decode()
        b64 = _NOT_BASE64.sub(b"", m.group(3))
        try:
            body = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            continue
        if len(body) < MIN_KEY_BYTES:
            continue
        headers = b"\n".join(h.strip() for h in re.split(_NL, m.group(2))
                             if h.strip()).decode("ascii", "replace")
        wrapped = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
        pem = (f"-----BEGIN {label}-----\n".encode() +
               (headers.encode() + b"\n\n" if headers else b"") + wrapped +
               f"\n-----END {label}-----\n".encode())
        what = _pem_key(label, headers, body, pem)
        if what:
            excerpt = f"-----BEGIN {label}----- {redact(b64.decode(), 4)}"
            out.append(Secret("private-key", what, excerpt, base + m.start()))
    return out


# -- tokens ---------------------------------------------------------------------------

_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True)
class TokenRule:
    rule: str
    what: str
    pattern: re.Pattern[bytes]
    """Starts with a literal (no look-behind), so that the scan is a fast substring search."""
    not_after: frozenset[int]
    """Bytes that must not come just before the token (it would be part of a longer word)."""
    prefix: Callable[[bytes], int]
    """How many leading characters are the fixed prefix (kept in the excerpt)."""
    lead: bytes = b""
    """If set, one of these bytes must come just before the literal; it starts the token."""


def _fixed(n: int) -> Callable[[bytes], int]:
    return lambda token: n


_E = rb"(?![A-Za-z0-9_])"
TOKEN_RULES = (
    TokenRule("aws-access-key", "an AWS access key ID",
              re.compile(rb"AKIA[A-Z2-7]{16}(?![A-Z0-9])"), _UPPER, _fixed(4)),
    TokenRule("aws-access-key", "an AWS temporary access key ID",
              re.compile(rb"ASIA[A-Z2-7]{16}(?![A-Z0-9])"), _UPPER, _fixed(4)),
    TokenRule("github-token", "a GitHub token",
              re.compile(rb"g(?:h[pousr]_[A-Za-z0-9]{36}|ithub_pat_[A-Za-z0-9]{22}_"
                         rb"[A-Za-z0-9]{59})" + _E), _WORD,
              lambda t: 11 if t.startswith(b"github_pat_") else 4),
    TokenRule("slack-token", "a Slack token",
              re.compile(rb"xox[baprs]-(?:[0-9]{8,13}-){1,3}[A-Za-z0-9]{20,40}" + _E), _WORD,
              _fixed(5)),
    TokenRule("stripe-key", "a Stripe live secret key",
              re.compile(rb"k_live_[A-Za-z0-9]{24,99}" + _E), _WORD, _fixed(8), lead=b"rs"),
    TokenRule("google-api-key", "a Google API key",
              re.compile(rb"AIza[A-Za-z0-9_-]{35}" + _E), _WORD, _fixed(4)),
)


def _find_tokens(data: bytes, base: int, limit: int | None = None) -> list[Secret]:
    """Tokens in ``data`` (at file offset ``base``) that end at or before ``limit``."""
    out = []
    limit = len(data) if limit is None else limit
    for rule in TOKEN_RULES:
        for m in rule.pattern.finditer(data):
            if m.end() > limit:
                break
            start = m.start()
            if rule.lead:
                if start == 0 or data[start - 1] not in rule.lead:
                    continue
                start -= 1
            if start > 0 and data[start - 1] in rule.not_after:
                continue
            token = data[start:m.end()]
            keep = rule.prefix(token)
            random_part = token[keep:].decode("ascii")
            if is_placeholder(random_part) or entropy(random_part) < TOKEN_MIN_ENTROPY:
                continue
            out.append(Secret(rule.rule, rule.what, redact(token.decode(), keep + 2),
                              base + start))
    return out


# -- .env files -----------------------------------------------------------------------

ENV_SECRET_NAMES = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|"
                              r"ACCESS_?KEY|CREDENTIAL|AUTH", re.IGNORECASE)
"""A ``.env`` key whose name contains one of these holds a secret."""
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$")


def is_env_file(name: str) -> bool:
    """``.env``, ``.env.production``, ``app.env``; not ``.env.example`` and friends."""
    if not (name == ".env" or name.startswith(".env.") or name.endswith(".env")):
        return False
    return not any(w in name.lower() for w in ("example", "sample", "template", "dist"))


def _env_value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        end = raw.find(raw[0], 1)
        return raw[1:end] if end > 0 else raw[1:]
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def find_env_secrets(text: str) -> list[Secret]:
    out = []
    offset = 0
    for line in text.splitlines(keepends=True):
        m = _ENV_LINE.match(line)
        start, offset = offset, offset + len(line)
        if not m or not ENV_SECRET_NAMES.search(m.group(1)):
            continue
        value = _env_value(m.group(2))
        if len(value) < ENV_MIN_LENGTH or "$" in value or is_placeholder(value) or \
                entropy(value) < ENV_MIN_ENTROPY:
            continue
        out.append(Secret("env-secret", f"a secret value for {m.group(1)}",
                          f"{m.group(1)}={redact(value, 2)}", start))
    return out


# -- the scanner ----------------------------------------------------------------------

class SecretScanner:
    """Secrets in one file, fed block by block; each found once, in file order.

    Each block is searched together with the last :data:`MAX_PEM_BLOCK` bytes before it;
    a token that ends near the end of what has been read so far is taken only once the
    next block (or the end of the file) shows where it really ends.
    """

    _MARGIN = 256
    """Longer than any token, so a token cut by a block boundary is judged whole."""

    def __init__(self) -> None:
        self._window = b""
        self._pending = b""
        self._base = 0
        self._found: dict[tuple[str, int], Secret] = {}

    def feed(self, block: bytes) -> None:
        if self._pending:
            self._scan(final=False)
        self._pending = block

    def secrets(self) -> list[Secret]:
        if self._pending:
            self._scan(final=True)
            self._pending = b""
        return sorted(self._found.values(), key=lambda s: s.offset)

    def _scan(self, final: bool) -> None:
        data = self._window + self._pending
        limit = len(data) if final else len(data) - self._MARGIN
        found = _find_keys(data, self._base) if b"PRIVATE KEY" in data else []
        found += _find_tokens(data, self._base, limit)
        for secret in found:
            self._found.setdefault((secret.rule, secret.offset), secret)
        keep = min(len(data), MAX_PEM_BLOCK)
        self._base += len(data) - keep
        self._window = data[len(data) - keep:]
