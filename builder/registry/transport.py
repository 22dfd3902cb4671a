"""HTTP to one registry: scheme choice, authentication, bounded retries, errors.

The session is passed in (tests and callers may share or instrument one).
HTTPS with certificate verification is the default. Like docker, a loopback
registry (``localhost``, ``127.0.0.0/8``, ``::1``) and one marked ``insecure``
are first tried over HTTPS without verification and fall back to plain HTTP
when the server does not speak TLS.

Retries: connection errors, timeouts, ``429`` and ``5xx`` (not ``501``) are
retried with exponential backoff, honouring ``Retry-After``, bounded both in
attempts and in total time (:class:`RetryPolicy`). A ``401`` is answered
once by refreshing authentication, then reported.

Nothing here logs or raises a header, a query string or a credential: URLs in
errors and log lines go through :func:`redact_url`.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from ..errors import RegistryError
from .auth import Authorizer, Challenge, Credentials, CredentialStore, parse_challenge
from .reference import is_loopback, normalize_registry, DEFAULT_REGISTRY, DOCKER_HUB_API_HOST

log = logging.getLogger("ocibuild.registry")

class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Body = bytes | Callable[[], Readable] | None
"""A request body: bytes, or an opener giving a fresh stream for every attempt."""

_NOT_GIVEN = object()
SEND_BLOCK = 1 << 20
"""Bytes per ``send`` of a request body (urllib3 sends 16 KiB at a time by default:
a 100 MB layer took ~10 % longer to push in 6 000 more Python-level reads)."""


class _LargeBlockAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("blocksize", SEND_BLOCK)
        super().init_poolmanager(*args, **kwargs)


def new_session() -> requests.Session:
    """A session whose connections send request bodies in :data:`SEND_BLOCK` pieces."""
    session = requests.Session()
    for prefix in ("https://", "http://"):
        session.mount(prefix, _LargeBlockAdapter())
    return session


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``deadline`` bounds all attempts of one request, in seconds."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    deadline: float = 120.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return float(min(self.base_delay * (2 ** attempt), self.max_delay))


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: safe for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _is_temporary_status(status: int) -> bool:
    return status == 429 or (status >= 500 and status not in (501, 505))


def error_from_response(resp: requests.Response, what: str) -> RegistryError:
    """A :class:`RegistryError` from a registry's error answer (OCI error JSON if any)."""
    codes: list[str] = []
    messages: list[str] = []
    try:
        body = resp.json() if resp.content else {}
        for err in (body.get("errors") or []) if isinstance(body, dict) else []:
            if isinstance(err, dict):
                if err.get("code"):
                    codes.append(str(err["code"]))
                if err.get("message"):
                    messages.append(str(err["message"]))
    except (ValueError, requests.RequestException):
        pass
    detail = "; ".join(f"{c}: {m}" if m else c for c, m in
                       zip(codes + [""] * len(messages), messages + [""] * len(codes))
                       if c or m)
    reason = detail or resp.reason or "error"
    method = resp.request.method if resp.request is not None else None
    return RegistryError(f"{what}: {resp.status_code} {reason}", status=resp.status_code,
                         codes=tuple(codes), method=method, url=redact_url(resp.url),
                         temporary=_is_temporary_status(resp.status_code))


class SizedReader:
    """A read-only stream of exactly ``length`` bytes with ``len()``.

    ``requests`` sends a body with ``__len__`` with a Content-Length and streams
    it in blocks, instead of reading it whole or falling back to chunked encoding.
    """

    def __init__(self, stream: Readable, length: int, *, owns: bool = True) -> None:
        self._stream, self._left, self._len, self._owns = stream, length, length, owns

    def __len__(self) -> int:
        return self._len

    def close(self) -> None:
        closer = getattr(self._stream, "close", None)
        if self._owns and callable(closer):
            closer()

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(size)
        self._left -= len(data)
        return data


def _close(data: object) -> None:
    closer = getattr(data, "close", None)
    if callable(closer):
        closer()


class Transport:
    """Requests to one registry's v2 API, authenticated and retried."""

    def __init__(self, registry: str, *, session: requests.Session | None = None,
                 credentials: Credentials | None | object = _NOT_GIVEN,
                 insecure: bool = False, retry: RetryPolicy | None = None,
                 store: CredentialStore | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.registry = normalize_registry(registry)
        self.host = DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry
        self.session = session or new_session()
        self.insecure = insecure
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        if credentials is _NOT_GIVEN:
            credentials = (store or CredentialStore()).get(self.registry)
        self.loose = insecure or is_loopback(self.host)
        self.auth = Authorizer(self.registry, credentials,  # type: ignore[arg-type]
                               self.session, insecure=self.loose)
        self._base: str | None = None
        self._verify = not self.loose
        self._ping_lock = threading.Lock()

    # -- scheme and first contact --------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base is None:
            self.ping()
        assert self._base is not None
        return self._base

    def ping(self) -> None:
        """``GET /v2/``: pick the scheme and learn the authentication challenge."""
        with self._ping_lock:
            if self._base is not None:
                return
            schemes = ["https", "http"] if self.loose else ["https"]
            start = time.monotonic()
            last: Exception | None = None
            for attempt in range(self.retry.attempts):
                for scheme in schemes:
                    url = f"{scheme}://{self.host}/v2/"
                    try:
                        resp = self.session.get(url, verify=self._verify, timeout=self._timeouts,
                                                allow_redirects=True)
                    except requests.exceptions.SSLError as e:
                        last = e
                        continue
                    except (requests.ConnectionError, requests.Timeout) as e:
                        last = e
                        break
                    if _is_temporary_status(resp.status_code):
                        last = error_from_response(resp, f"{self.registry}: ping")
                        break
                    self._base = f"{scheme}://{self.host}"
                    if resp.status_code == 401:
                        ch = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                        self.auth.refresh(ch, ())
                    log.debug("registry %s speaks %s", self.registry, scheme)
                    return
                else:
                    break  # every scheme failed TLS: retrying will not help
                if time.monotonic() - start + self.retry.delay(attempt) > self.retry.deadline:
                    break
                if attempt + 1 < self.retry.attempts:
                    self._sleep(self.retry.delay(attempt))
            raise self._unreachable(last, "GET", f"https://{self.host}/v2/")

    @property
    def _timeouts(self) -> tuple[float, float]:
        return (self.retry.connect_timeout, self.retry.read_timeout)

    def _unreachable(self, exc: Exception | None, method: str, url: str) -> RegistryError:
        if isinstance(exc, RegistryError):
            return exc
        kind = type(exc).__name__ if exc else "no answer"
        if isinstance(exc, requests.exceptions.SSLError):
            why = "TLS failed (certificate not trusted? use --insecure for a self-signed registry)"
        elif isinstance(exc, requests.Timeout):
            why = "timed out"
        else:
            why = f"cannot connect ({kind})"
        return RegistryError(f"registry {self.registry} unreachable: {why}", method=method,
                             url=redact_url(url), temporary=True)

    def url(self, path_or_url: str) -> str:
        """An absolute URL for an API path (``/v2/…``) or a Location header value."""
        return urljoin(self.base_url + "/", path_or_url)

    # -- requests ---------------------------------------------------------------

    def request(self, method: str, path_or_url: str, *, what: str,
                scopes: Iterable[str] = (), headers: Mapping[str, str] | None = None,
                body: Body = None, length: int | None = None,
                params: Mapping[str, str] | None = None, stream: bool = False,
                ok: Iterable[int] = (200,), retry: bool = True,
                allow_redirects: bool = True) -> requests.Response:
        """Send one API request; return the response when its status is in ``ok``.

        ``what`` names the operation for error messages ("HEAD blob sha256:…").
        Statuses outside ``ok`` raise :class:`RegistryError`; with ``retry``
        false, connection errors and temporary statuses are raised at once
        (the caller knows better, e.g. a half-sent upload chunk).
        """
        url = self.url(path_or_url)
        scopes = tuple(scopes)
        ok = tuple(ok)
        start = time.monotonic()
        attempts = self.retry.attempts if retry else 1
        reauthed = False
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            auth = self.auth.header(scopes)
            if auth:
                hdrs["Authorization"] = auth
            data = self._body(body, length)
            try:
                resp = self.session.request(method, url, headers=hdrs, data=data, params=params,
                                            stream=stream, verify=self._verify,
                                            timeout=self._timeouts,
                                            allow_redirects=allow_redirects)
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as e:
                _close(data)
                log.debug("%s %s: %s", method, redact_url(url), type(e).__name__)
                err: Exception = e
                retry_after = None
            else:
                _close(data)
                log.debug("%s %s -> %s", method, redact_url(url), resp.status_code)
                if resp.status_code in ok:
                    return resp
                if resp.status_code == 401 and not reauthed:
                    reauthed = True
                    ch = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                    resp.close()
                    self._learn(ch, scopes)
                    continue
                if resp.status_code == 401:
                    raise self._unauthorized(resp, what)
                if not _is_temporary_status(resp.status_code):
                    raise error_from_response(resp, what)
                err = error_from_response(resp, what)
                retry_after = _retry_after(resp)
                resp.close()
            attempt += 1
            delay = self.retry.delay(attempt - 1, retry_after)
            if attempt >= attempts or time.monotonic() - start + delay > self.retry.deadline:
                if isinstance(err, RegistryError):
                    raise RegistryError(f"{err} (gave up after {attempt} attempts)",
                                        status=err.status, codes=err.codes, method=err.method,
                                        url=err.url, temporary=True)
                raise self._failed(err, method, url, what, attempt)
            log.info("%s: retrying in %.1fs (%s)", what, delay,
                     err if isinstance(err, RegistryError) else type(err).__name__)
            self._sleep(delay)

    def _learn(self, ch: Challenge | None, scopes: tuple[str, ...]) -> None:
        self.auth.refresh(ch, scopes)

    def _unauthorized(self, resp: requests.Response, what: str) -> RegistryError:
        err = error_from_response(resp, what)
        who = "credentials were refused" if self.auth.credentials else \
            "anonymous access refused; run `ocibuild login` first"
        return RegistryError(f"{what}: unauthorized ({who})", status=401,
                             codes=err.codes or ("UNAUTHORIZED",), method=err.method,
                             url=err.url)

    def _failed(self, exc: Exception, method: str, url: str, what: str,
                attempts: int) -> RegistryError:
        base = self._unreachable(exc, method, url)
        return RegistryError(f"{what}: {base} (gave up after {attempts} attempts)",
                             method=method, url=redact_url(url), temporary=True)

    @staticmethod
    def _body(body: Body, length: int | None):  # type: ignore[no-untyped-def]
        if body is None or isinstance(body, bytes):
            return body
        stream = body()
        if length is None:
            return stream
        return SizedReader(stream, length)
