"""What came over the wire from a registry or a token service, read with bounds and
its failures said in words.

Shared by the transport and the authorizer: :func:`read_answer` reads a body
with a size cap and a wall-clock bound; :func:`connection_error` names what
went wrong when no usable answer came (cannot connect, connection dropped
after connecting, stalled, TLS); :func:`redact_url` keeps credentials and
query strings out of every message.
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from ..errors import RegistryError

MAX_ANSWER_BYTES = 1 << 20
"""The largest registry or token-service answer read that is not a manifest or a blob
(an error body, a token, an upload status): 1 MiB."""


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: safe for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<unparseable url>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


_DROPPED = (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError,
            BrokenPipeError, urllib3.exceptions.ProtocolError,
            requests.exceptions.ChunkedEncodingError)


def _causes(exc: BaseException):  # type: ignore[no-untyped-def]
    """``exc``, what it wraps (requests and urllib3 put causes in ``args`` and
    ``reason``) and its chain, outermost first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__,
                 *(a for a in e.args if isinstance(a, BaseException))]


def connection_error(exc: BaseException, *, what: str, method: str, url: str,
                     read_timeout: float) -> RegistryError:
    """A failed exchange with no usable answer, said as what happened: TLS refused,
    cannot connect (nothing accepted the connection), stalled (no data for the read
    timeout), or connection dropped (closed after connecting)."""
    causes = list(_causes(exc))
    kinds = tuple(type(c) for c in causes)

    def has(*types: type) -> bool:
        return any(issubclass(k, types) for k in kinds)

    temporary = True
    if has(requests.exceptions.SSLError, urllib3.exceptions.SSLError):
        why = "TLS failed (certificate not trusted? use --insecure for a self-signed registry)"
        temporary = False
    elif has(requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError):
        why = ("cannot connect (refused or timed out)"
               if has(urllib3.exceptions.NewConnectionError) else "timed out connecting")
    elif has(requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError,
             TimeoutError):
        why = f"stalled: no data for {read_timeout:g} s"
    elif has(urllib3.exceptions.NewConnectionError, ConnectionRefusedError):
        why = "cannot connect (refused)"
    elif has(*_DROPPED):
        why = "connection dropped by the registry after connecting"
    else:
        why = f"connection failed ({type(exc).__name__})"
    return RegistryError(f"{what}: {why}", method=method, url=redact_url(url),
                         temporary=temporary)


def read_answer(resp: requests.Response, what: str, *, limit: int = MAX_ANSWER_BYTES,
                seconds: float) -> bytes:
    """The body of a streamed response: at most ``limit`` bytes, within ``seconds``
    (a registry trickling an endless answer is cut off either way)."""
    end = time.monotonic() + seconds
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            block = resp.raw.read1(64 * 1024, decode_content=True)
            if not block:
                return b"".join(chunks)
            size += len(block)
            if size > limit:
                raise RegistryError(f"{what}: the answer is larger than {limit} bytes",
                                    status=resp.status_code, url=redact_url(resp.url))
            chunks.append(block)
            if time.monotonic() > end:
                raise RegistryError(f"{what}: the answer took longer than {seconds:g} s",
                                    status=resp.status_code, url=redact_url(resp.url),
                                    temporary=True)
    except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as e:
        raise connection_error(e, what=what, method=resp.request.method or "GET",
                               url=resp.url, read_timeout=seconds) from None


def load_answer(resp: requests.Response, what: str, seconds: float) -> requests.Response:
    """``resp`` (streamed) with its body read through :func:`read_answer`, so
    ``.content`` and ``.json()`` work without reading an unbounded body. A body read
    to its end gives the connection back to the pool; any other is closed."""
    if not resp._content_consumed:  # type: ignore[attr-defined]
        complete = False
        try:
            resp._content = read_answer(resp, what, seconds=seconds)  # type: ignore[attr-defined]
            complete = True
        finally:
            resp._content_consumed = True  # type: ignore[attr-defined]
            if complete:
                resp.raw.release_conn()
            else:
                resp.close()
    return resp
