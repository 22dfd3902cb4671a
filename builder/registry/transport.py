"""HTTP to one registry: scheme choice, authentication, bounded retries, errors.

The session is passed in (tests and callers may share or instrument one).
HTTPS with certificate verification is the default. Like docker, a loopback
registry (``localhost``, ``127.0.0.0/8``, ``::1``) and one marked ``insecure``
are first tried over HTTPS without verification and fall back to plain HTTP
when the server does not speak TLS.

Retries: connection errors, timeouts, ``429`` and ``5xx`` (not ``501``) are
retried with exponential backoff, honouring ``Retry-After``, bounded both in
attempts and in total time (:class:`RetryPolicy`), by the one helper
:func:`retrying`; an error that gave up says so once and is not retried again
by an outer loop. A ``401`` is answered once by refreshing authentication,
then reported. What failed on the wire is said in words
(:func:`connection_error`): cannot connect, connection dropped, stalled.

Nothing a registry sends is read without a bound: the ping's body is never
read, other API answers (errors, tokens, upload status) at most
:data:`MAX_ANSWER_BYTES` within the read timeout; manifests and blobs have
their own limits (the client).

Nothing here logs or raises a header, a query string or a credential: URLs in
errors and log lines go through :func:`redact_url`.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from ..errors import InputError, RegistryError
from .auth import Authorizer, Challenge, Credentials, CredentialStore, parse_challenge
from .wire import (MAX_ANSWER_BYTES, connection_error, load_answer, read_answer,  # noqa: F401
                   redact_url)
from .reference import is_loopback, normalize_registry, DEFAULT_REGISTRY, DOCKER_HUB_API_HOST

log = logging.getLogger("ocibuild.registry")

class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Body = bytes | Callable[[], Readable] | None
"""A request body: bytes, or an opener giving a fresh stream for every attempt."""

T = TypeVar("T")
_NOT_GIVEN = object()
PROGRESS_BYTES = 1 << 20
"""Bytes a failed transfer attempt must have moved for its time not to count
against the retry deadline."""
TIMEOUT_ENV = "OCIBUILD_REGISTRY_TIMEOUT"
"""Seconds a registry request may take, all its attempts included, and a read may wait
for data (default :attr:`RetryPolicy.deadline`, 120)."""
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

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """The default policy, its deadline and read timeout from :data:`TIMEOUT_ENV`."""
        value = os.environ.get(TIMEOUT_ENV)
        if not value:
            return cls()
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 86400:
            raise InputError(f"{TIMEOUT_ENV}={value[:40]!r}: not a number of seconds "
                             "between 0 and 86400")
        return cls(deadline=seconds, read_timeout=seconds,
                   connect_timeout=min(cls.connect_timeout, seconds))


def retrying(attempt: Callable[[], T], policy: RetryPolicy, *, what: str,
             attempts: int | None = None, sleep: Callable[[float], None] = time.sleep,
             progress: Callable[[], int] | None = None) -> T:
    """``attempt()`` until it returns, or fails for good: the one retry loop.

    A temporary :class:`RegistryError` is retried after ``policy.delay`` (or the
    ``Retry-After`` it carries), at most ``attempts`` (default ``policy.attempts``)
    times and not past ``policy.deadline``; the last one is raised saying how many
    attempts were made. A permanent error, or one that already gave up (an inner
    retry's), is raised at once as it is. For a transfer, ``progress`` counts the
    bytes moved so far: an attempt that moved :data:`PROGRESS_BYTES` or more before
    failing restarts the deadline's clock (a long download that drops near its end
    is resumed; one that stalls after a few bytes is not tried for ever).
    """
    limit = policy.attempts if attempts is None else attempts
    start = time.monotonic()
    moved = progress() if progress else 0
    tries = 0
    while True:
        try:
            return attempt()
        except RegistryError as e:
            tries += 1
            if not e.temporary or e.attempts is not None:
                raise
            if progress is not None and progress() - moved >= PROGRESS_BYTES:
                start, moved = time.monotonic(), progress()
            delay = policy.delay(tries - 1, e.retry_after)
            if tries >= limit or time.monotonic() - start + delay > policy.deadline:
                raise e.gave_up(tries) from e.__cause__
            log.info("%s: retrying in %.1fs (%s)", what, delay, e)
            sleep(delay)


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


def error_from_response(resp: requests.Response, what: str,
                        seconds: float = RetryPolicy.read_timeout) -> RegistryError:
    """A :class:`RegistryError` from a registry's error answer (OCI error JSON if any,
    read at most :data:`MAX_ANSWER_BYTES`)."""
    codes: list[str] = []
    messages: list[str] = []
    try:
        load_answer(resp, what, seconds)
        body = resp.json() if resp.content else {}
        for err in (body.get("errors") or []) if isinstance(body, dict) else []:
            if isinstance(err, dict):
                if err.get("code"):
                    codes.append(str(err["code"])[:100])
                if err.get("message"):
                    messages.append(str(err["message"])[:300])
    except (ValueError, RecursionError, requests.RequestException, RegistryError):
        pass
    detail = "; ".join(f"{c}: {m}" if m else c for c, m in
                       zip(codes + [""] * len(messages), messages + [""] * len(codes))
                       if c or m)[:1000]
    reason = detail or resp.reason or "error"
    method = resp.request.method if resp.request is not None else None
    return RegistryError(f"{what}: {resp.status_code} {reason}", status=resp.status_code,
                         codes=tuple(codes), method=method, url=redact_url(resp.url),
                         temporary=_is_temporary_status(resp.status_code),
                         retry_after=_retry_after(resp))


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
        self.retry = retry or RetryPolicy.from_env()
        self._sleep = sleep
        if credentials is _NOT_GIVEN:
            credentials = (store or CredentialStore()).get(self.registry)
        self.loose = insecure or is_loopback(self.host)
        self.auth = Authorizer(self.registry, credentials,  # type: ignore[arg-type]
                               self.session, insecure=self.loose,
                               timeout=min(self.retry.read_timeout, 30.0))
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
        """``GET /v2/``: pick the scheme and learn the authentication challenge.

        Only the status and headers matter: the body is never read (a registry
        answering with an endless one costs nothing).
        """
        with self._ping_lock:
            if self._base is None:
                retrying(self._ping_once, self.retry, what=f"{self.registry}: ping",
                      sleep=self._sleep)

    def _ping_once(self) -> None:
        schemes = ["https", "http"] if self.loose else ["https"]
        tls_failure: RegistryError | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                resp = self.session.get(url, verify=self._verify, timeout=self._timeouts,
                                        allow_redirects=True, stream=True)
            except requests.exceptions.SSLError as e:
                tls_failure = self._connection_error(e, "GET", url)
                continue
            except requests.RequestException as e:
                raise self._connection_error(e, "GET", url) from None
            try:
                if _is_temporary_status(resp.status_code):
                    raise error_from_response(resp, f"registry {self.registry}: ping",
                                              self.retry.read_timeout)
                self._base = f"{scheme}://{self.host}"
                if resp.status_code == 401:
                    ch = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                    self.auth.refresh(ch, ())
                log.debug("registry %s speaks %s", self.registry, scheme)
                return
            finally:
                resp.close()
        assert tls_failure is not None
        raise tls_failure  # every scheme failed TLS: permanent, retrying will not help

    @property
    def _timeouts(self) -> tuple[float, float]:
        return (self.retry.connect_timeout, self.retry.read_timeout)

    def _connection_error(self, exc: BaseException, method: str, url: str,
                          what: str | None = None) -> RegistryError:
        return connection_error(exc, what=what or f"registry {self.registry} unreachable",
                                method=method, url=url, read_timeout=self.retry.read_timeout)

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
        (the caller knows better, e.g. a half-sent upload chunk). Without
        ``stream`` the answer is read here, at most :data:`MAX_ANSWER_BYTES`.
        """
        url = self.url(path_or_url)
        scopes = tuple(scopes)
        ok = tuple(ok)

        def once() -> requests.Response:
            return self._send(method, url, what=what, scopes=scopes, headers=headers,
                              body=body, length=length, params=params, stream=stream, ok=ok,
                              allow_redirects=allow_redirects)

        if not retry:
            return once()
        return retrying(once, self.retry, what=what, sleep=self._sleep)

    def _send(self, method: str, url: str, *, what: str, scopes: tuple[str, ...],
              headers: Mapping[str, str] | None, body: Body, length: int | None,
              params: Mapping[str, str] | None, stream: bool, ok: tuple[int, ...],
              allow_redirects: bool) -> requests.Response:
        """One attempt (and, after a ``401``, one more with fresh authentication)."""
        for reauth in (False, True):
            hdrs = dict(headers or {})
            auth = self.auth.header(scopes)
            if auth:
                hdrs["Authorization"] = auth
            data = self._body(body, length)
            try:
                resp = self.session.request(method, url, headers=hdrs, data=data, params=params,
                                            stream=True, verify=self._verify,
                                            timeout=self._timeouts,
                                            allow_redirects=allow_redirects)
            except requests.RequestException as e:
                log.debug("%s %s: %s", method, redact_url(url), type(e).__name__)
                raise self._connection_error(e, method, url, what) from None
            finally:
                _close(data)
            log.debug("%s %s -> %s", method, redact_url(url), resp.status_code)
            if resp.status_code in ok:
                return resp if stream else load_answer(resp, what, self.retry.read_timeout)
            if resp.status_code == 401 and not reauth:
                ch = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.close()
                self._learn(ch, scopes)
                continue
            if resp.status_code == 401:
                raise self._unauthorized(resp, what)
            raise error_from_response(resp, what, self.retry.read_timeout)
        raise AssertionError("unreachable")

    def _learn(self, ch: Challenge | None, scopes: tuple[str, ...]) -> None:
        self.auth.refresh(ch, scopes)

    def _unauthorized(self, resp: requests.Response, what: str) -> RegistryError:
        err = error_from_response(resp, what, self.retry.read_timeout)
        who = "credentials were refused" if self.auth.credentials else \
            "anonymous access refused; run `ocibuild login` first"
        return err.replace(message=f"{what}: unauthorized ({who})",
                           codes=err.codes or ("UNAUTHORIZED",), temporary=False)

    @staticmethod
    def _body(body: Body, length: int | None):  # type: ignore[no-untyped-def]
        if body is None or isinstance(body, bytes):
            return body
        stream = body()
        if length is None:
            return stream
        return SizedReader(stream, length)
