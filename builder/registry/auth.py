"""Registry credentials and authentication schemes.

Where credentials come from, as docker reads them: ``$DOCKER_CONFIG/config.json``
or ``~/.docker/config.json`` with ``credHelpers`` (per registry), then
``credsStore`` (default helper), then ``auths.<registry>.auth`` (base64
``user:password``). A helper is the program ``docker-credential-<name>``,
speaking the docker-credential-helpers protocol (``get``/``store`` on stdin).

How they are used: a registry answers ``401`` with a ``WWW-Authenticate``
challenge. ``Basic`` means credentials go on every request; ``Bearer`` names a
token service (realm, service, scope) that swaps credentials — or nothing —
for a short-lived token. Tokens are cached per set of scopes until they
expire, and dropped when the registry refuses them (see
:class:`Authorizer`).

Credentials never reach a log line, an exception message or ``repr``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from ..errors import InputError, RegistryError
from .reference import DEFAULT_REGISTRY, is_loopback, normalize_registry
from .wire import connection_error, read_answer, redact_url

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
"""The key docker uses for Docker Hub in ``config.json``."""

_TOKEN_DEFAULT_TTL = 60.0  # seconds; the token spec's default for a missing expires_in
_TOKEN_EARLY_RENEW = 10.0


@dataclass(frozen=True)
class Credentials:
    """A user name and a secret (password, access token or identity token)."""

    username: str
    secret: str = field(repr=False)

    @property
    def is_identity_token(self) -> bool:
        """docker stores OAuth refresh tokens with the user name ``<token>``."""
        return self.username == "<token>"

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.secret}".encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")


HelperRunner = Callable[[list[str], str], "subprocess.CompletedProcess[str]"]


def _run_helper(argv: list[str], stdin: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60,
                          check=False)


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _config_keys(registry: str) -> list[str]:
    """The ``auths`` keys that may name ``registry`` (docker writes several spellings)."""
    if registry == DEFAULT_REGISTRY:
        return [DOCKER_HUB_CONFIG_KEY, "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [registry, f"https://{registry}", f"http://{registry}"]


class CredentialStore:
    """Reads (and, for :func:`login`, writes) docker's credential configuration."""

    def __init__(self, path: Path | None = None, runner: HelperRunner = _run_helper) -> None:
        self.path = path or docker_config_path()
        self._runner = runner

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InputError(f"{self.path}: unreadable docker config: {e}") from e
        if not isinstance(data, dict):
            raise InputError(f"{self.path}: docker config is not a JSON object")
        return data

    def helper_for(self, registry: str, config: dict[str, Any] | None = None) -> str | None:
        config = self.load() if config is None else config
        helpers = config.get("credHelpers") or {}
        for key in _config_keys(registry):
            if key in helpers:
                return str(helpers[key])
        store = config.get("credsStore")
        return str(store) if store else None

    def get(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` (normalized name), or None for anonymous."""
        registry = normalize_registry(registry)
        config = self.load()
        helper = self.helper_for(registry, config)
        if helper:
            for key in _config_keys(registry)[:2]:
                creds = self._helper_get(helper, key)
                if creds:
                    return creds
        auths = {normalize_registry(k) if "://" in k else k: v
                 for k, v in (config.get("auths") or {}).items()}
        for key in _config_keys(registry) + [registry]:
            entry = auths.get(key) or auths.get(normalize_registry(key))
            if not isinstance(entry, dict):
                continue
            if entry.get("identitytoken"):
                return Credentials("<token>", str(entry["identitytoken"]))
            if entry.get("auth"):
                return _decode_auth(str(entry["auth"]), self.path, key)
            if entry.get("username") and entry.get("password"):
                return Credentials(str(entry["username"]), str(entry["password"]))
        return None

    def _helper_get(self, helper: str, server: str) -> Credentials | None:
        program = f"docker-credential-{helper}"
        if not shutil.which(program):
            raise InputError(f"docker config names credential helper {helper!r} but "
                             f"{program} is not on PATH")
        done = self._runner([program, "get"], server)
        if done.returncode != 0:
            if "credentials not found" in (done.stdout + done.stderr).lower():
                return None
            raise InputError(f"{program} get failed (exit {done.returncode})")
        try:
            data = json.loads(done.stdout)
            return Credentials(str(data["Username"]), str(data["Secret"]))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{program} get printed an unexpected answer") from e

    def store(self, registry: str, creds: Credentials) -> None:
        """Save ``creds`` the way ``docker login`` does: helper if configured, else file."""
        registry = normalize_registry(registry)
        config = self.load()
        key = DOCKER_HUB_CONFIG_KEY if registry == DEFAULT_REGISTRY else registry
        helper = self.helper_for(registry, config)
        auths = config.setdefault("auths", {})
        if helper:
            program = f"docker-credential-{helper}"
            payload = json.dumps({"ServerURL": key, "Username": creds.username,
                                  "Secret": creds.secret})
            if not shutil.which(program):
                raise InputError(f"credential helper {program} is not on PATH")
            done = self._runner([program, "store"], payload)
            if done.returncode != 0:
                raise InputError(f"{program} store failed (exit {done.returncode})")
            auths.setdefault(key, {})
            auths[key].pop("auth", None)
        else:
            raw = f"{creds.username}:{creds.secret}".encode("utf-8")
            auths[key] = {**(auths.get(key) or {}),
                          "auth": base64.b64encode(raw).decode("ascii")}
        self._write(config)

    def _write(self, config: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.json.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(config, f, indent="\t")
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _decode_auth(value: str, path: Path, key: str) -> Credentials:
    try:
        user, sep, secret = base64.b64decode(value).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: auths[{key!r}].auth is not base64 user:password") from e
    if not sep:
        raise InputError(f"{path}: auths[{key!r}].auth is not base64 user:password")
    return Credentials(user, secret)


# --- challenges -------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False)


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="…",service="…",scope="…"`` (or ``Basic realm=…``)."""
    header = (header or "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
        pos = m.end()
    return Challenge(scheme.lower(), params)


# --- the authorizer ---------------------------------------------------------

class Authorizer:
    """Adds ``Authorization`` to a registry's requests, per the challenge it met.

    One per registry. ``header(scopes)`` gives what to send now; after a 401,
    ``refresh(challenge, scopes)`` learns the challenge, forgets a refused
    token and fetches a new one. Thread-safe: pushes run blobs in parallel.
    """

    def __init__(self, registry: str, credentials: Credentials | None,
                 session: requests.Session, *, insecure: bool = False,
                 timeout: float = 30.0) -> None:
        self.registry = registry
        self.credentials = credentials
        self.session = session
        self.insecure = insecure
        self.timeout = timeout
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def header(self, scopes: tuple[str, ...]) -> str | None:
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self.credentials.basic_header() if self.credentials else None
        if ch.scheme == "bearer":
            key = tuple(sorted(scopes))
            with self._lock:
                cached = self._tokens.get(key)
                if cached and cached[1] > time.monotonic():
                    return "Bearer " + cached[0]
                token, ttl = self._fetch_token(ch, key)
                self._tokens[key] = (token, time.monotonic() + max(ttl - _TOKEN_EARLY_RENEW, 1.0))
                return "Bearer " + token
        return None

    def refresh(self, challenge: Challenge | None, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(tuple(sorted(scopes)), None)
            if challenge is not None:
                self.challenge = challenge

    def _fetch_token(self, ch: Challenge, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = ch.params.get("realm")
        if not realm:
            raise RegistryError(f"{self.registry}: bearer challenge without a realm",
                                status=401)
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"{self.registry}: bearer realm is not an http(s) URL",
                                status=401)
        plain_remote = parts.scheme == "http" and not is_loopback(parts.netloc)
        creds = self.credentials
        if creds and plain_remote and not self.insecure:
            raise RegistryError(
                f"{self.registry}: refusing to send credentials to a plain-http token service "
                f"({parts.hostname}); use --insecure if that is intended", status=401)
        params: list[tuple[str, str]] = []
        if ch.params.get("service"):
            params.append(("service", ch.params["service"]))
        params += [("scope", s) for s in scopes]
        verify = not self.insecure
        try:
            if creds and creds.is_identity_token:
                form = dict(params)
                form.update(grant_type="refresh_token", refresh_token=creds.secret,
                            client_id="ocibuild")
                form.pop("scope", None)
                if scopes:
                    form["scope"] = " ".join(scopes)
                resp = self.session.post(realm, data=form, timeout=self.timeout, verify=verify,
                                         stream=True)
            else:
                headers = {"Authorization": creds.basic_header()} if creds else {}
                resp = self.session.get(realm, params=params, headers=headers,
                                        timeout=self.timeout, verify=verify, stream=True)
        except requests.RequestException as e:
            raise connection_error(e, what=f"{self.registry}: token service {parts.hostname}",
                                   method="GET", url=realm, read_timeout=self.timeout) from None
        with resp:
            return self._token_from(resp, creds is not None, realm)

    def _token_from(self, resp: requests.Response, with_creds: bool,
                    realm: str) -> tuple[str, float]:
        """The token and its lifetime from the token service's answer (read at most
        :data:`MAX_ANSWER_BYTES`, within the timeout)."""
        creds = with_creds
        if resp.status_code in (401, 403):
            raise RegistryError(
                f"{self.registry}: authentication failed at the token service "
                f"({'bad credentials' if creds else 'anonymous access refused'})",
                status=resp.status_code, codes=("UNAUTHORIZED",), method=resp.request.method,
                url=redact_url(realm))
        if resp.status_code != 200:
            raise RegistryError(f"{self.registry}: token service answered {resp.status_code}",
                                status=resp.status_code, url=redact_url(realm),
                                temporary=resp.status_code >= 500)
        data = read_answer(resp, f"{self.registry}: token service", seconds=self.timeout)
        try:
            body = json.loads(data)
            token = body.get("token") or body.get("access_token")
            ttl = float(body.get("expires_in") or _TOKEN_DEFAULT_TTL)
        except (ValueError, AttributeError, TypeError, RecursionError):
            token, ttl = None, 0.0
        if not token or not isinstance(token, str):
            raise RegistryError(f"{self.registry}: token service gave no token",
                                status=200, url=redact_url(realm))
        return token, min(max(ttl, 0.0), 86400.0)
