"""The distribution-spec operations on one registry: blobs and manifests.

Uploads (``POST`` → ``PATCH``\\* → ``PUT ?digest=``) stream from the layer's
opener; nothing is read whole. A blob no larger than ``chunk_size`` goes in
one ``PUT``; a larger one in ``PATCH`` chunks with ``Content-Range``, the last
one carried by the closing ``PUT``. When a chunk fails half-way (dropped
connection, 5xx) the client asks the registry where the upload stands
(``GET`` on the upload URL, ``Range: 0-<last>``) and continues from there; a
registry that has lost or invalidated the session (docker/distribution 2.8
cancels it when the stored size disagrees with its upload token) gets a fresh
upload. Every blob's digest is checked by the registry on ``PUT`` and every
downloaded byte by :meth:`RegistryClient.fetch_blob`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import requests
import urllib3

from ..errors import DigestMismatchError, ImageError, RegistryError
from ..oci.types import MAX_MANIFEST_BYTES, Descriptor, MediaType, check_digest, sha256_digest
from ..progress import CountingWriter, Task
from .transport import (RetryPolicy, SizedReader, Transport, connection_error, read_answer,
                        redact_url, retrying)

log = logging.getLogger("ocibuild.registry")

MANIFEST_TYPES = (MediaType.OCI_MANIFEST.value, MediaType.OCI_INDEX.value,
                  MediaType.DOCKER_MANIFEST.value, MediaType.DOCKER_MANIFEST_LIST.value)
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
DEFAULT_CHUNK = 32 * 1024 * 1024
_READ_BLOCK = 1024 * 1024
MIN_BLOB_RATE = 1024
"""Bytes per second a blob download must average over each read-timeout window
(``OCIBUILD_REGISTRY_TIMEOUT``, 120 s by default), as curl's ``--speed-limit``: a
registry trickling a byte now and then never stalls a read, but is cut off."""
_RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


@dataclass
class TransferStats:
    """What a client did; thread-safe counters, read by tests and progress output."""

    uploaded: int = 0
    mounted: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    resumed: int = 0
    restarted: int = 0
    downloaded: int = 0
    bytes_downloaded: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


@dataclass(frozen=True)
class ManifestBlob:
    """A manifest or index as the registry served it: exact bytes, type, digest."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        try:
            obj = json.loads(self.data)
        except RecursionError:
            raise ImageError(f"manifest {self.digest} is nested too deeply") from None
        except ValueError as e:
            raise ImageError(f"manifest {self.digest} is not JSON: {e}") from e
        if not isinstance(obj, dict):
            raise ImageError(f"manifest {self.digest} is not a JSON object")
        return obj

    @property
    def is_index(self) -> bool:
        return self.media_type in (MediaType.OCI_INDEX.value,
                                   MediaType.DOCKER_MANIFEST_LIST.value)


class BlobCursor:
    """Reads a blob from any offset, reopening or seeking as needed.

    Every attempt at a request body asks for ``section(offset, n)``, so a
    request re-sent (after a 401, say) sends the same bytes again rather
    than the next ones.
    """

    def __init__(self, opener: Callable[[], BinaryIO]) -> None:
        self._opener = opener
        self._stream: BinaryIO | None = None
        self._pos = 0

    def section(self, offset: int, length: int) -> SizedReader:
        if self._stream is None or self._pos != offset:
            self._position(offset)
        assert self._stream is not None
        return SizedReader(_Counting(self._stream, self), length, owns=False)

    def _position(self, offset: int) -> None:
        stream = self._stream
        try:
            if stream is not None and stream.seekable():
                stream.seek(offset)
                self._pos = offset
                return
        except (AttributeError, OSError):
            pass
        if stream is None or self._pos > offset:
            self.close()
            stream = self._stream = self._opener()
            self._pos = 0
        left = offset - self._pos
        while left:
            data = stream.read(min(left, _READ_BLOCK))
            if not data:
                raise ImageError(f"blob stream ended before offset {offset}")
            left -= len(data)
        self._pos = offset

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class _Counting:
    """Keeps :class:`BlobCursor` told of the position as bytes are read."""

    def __init__(self, stream: BinaryIO, cursor: BlobCursor) -> None:
        self._stream, self._cursor = stream, cursor

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._cursor._pos += len(data)
        return data

    def close(self) -> None:
        pass


class _Progress:
    """Where an upload stands: the session URL and the bytes the registry holds."""

    def __init__(self) -> None:
        self.location: str | None = None
        self.offset = 0


class RegistryClient:
    """Blob and manifest operations against one registry (any of its repositories)."""

    def __init__(self, transport: Transport, *, chunk_size: int = DEFAULT_CHUNK,
                 stats: TransferStats | None = None) -> None:
        self.transport = transport
        self.chunk_size = chunk_size
        self.stats = stats or TransferStats()

    @classmethod
    def for_registry(cls, registry: str, *, session: requests.Session | None = None,
                     insecure: bool = False, retry: RetryPolicy | None = None,
                     **kwargs: Any) -> "RegistryClient":
        return cls(Transport(registry, session=session, insecure=insecure, retry=retry),
                   **kwargs)

    @property
    def registry(self) -> str:
        return self.transport.registry

    # -- blobs ------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int | None:
        """The size of blob ``digest`` in ``repo``, or None if the registry lacks it."""
        resp = self.transport.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", what=f"HEAD blob {digest} in {repo}",
            scopes=(pull_scope(repo),), ok=(200, 404))
        if resp.status_code == 404:
            return None
        try:
            return int(resp.headers.get("Content-Length", ""))
        except ValueError:
            return -1

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Ask the registry to link ``digest`` from ``from_repo``; True if it did."""
        resp = self.transport.request(
            "POST", f"/v2/{repo}/blobs/uploads/", what=f"mount blob {digest} into {repo}",
            scopes=(push_scope(repo), pull_scope(from_repo)),
            params={"mount": digest, "from": from_repo}, ok=(201, 202))
        if resp.status_code == 201:
            self.stats.add(mounted=1)
            return True
        # 202: the registry opened an ordinary upload instead; drop it.
        location = resp.headers.get("Location")
        if location:
            try:
                self.transport.request("DELETE", location, what="cancel upload",
                                       scopes=(push_scope(repo),), ok=(204, 404), retry=False)
            except RegistryError:
                pass
        return False

    def upload_blob(self, repo: str, desc: Descriptor, opener: Callable[[], BinaryIO],
                    *, attempts: int = 5) -> None:
        """Upload one blob, streaming from ``opener``, resuming after failures."""
        what = f"upload blob {desc.digest} ({desc.size} bytes) to {self.registry}/{repo}"
        scopes = (push_scope(repo),)
        state = _Progress()
        src = BlobCursor(opener)
        failed = False

        def attempt() -> None:
            nonlocal failed
            if failed:
                self._recover(repo, state, what, scopes)
            failed = True
            if state.location is None:
                state.location, state.offset = self._start_upload(repo, what, scopes), 0
            self._send(repo, desc, src, state, what, scopes)

        try:
            retrying(attempt, self.transport.retry, what=what, attempts=attempts,
                     sleep=self.transport._sleep, progress=lambda: state.offset)
            self.stats.add(uploaded=1)
        finally:
            src.close()

    def _start_upload(self, repo: str, what: str, scopes: tuple[str, ...]) -> str:
        resp = self.transport.request("POST", f"/v2/{repo}/blobs/uploads/", what=what,
                                      scopes=scopes, ok=(202,))
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: registry gave no upload Location", status=202,
                                method="POST", url=redact_url(resp.url))
        return self.transport.url(location)

    def _recover(self, repo: str, state: _Progress, what: str,
                 scopes: tuple[str, ...]) -> None:
        """After a failed chunk: learn the registry's offset, or start over."""
        if state.location is None:
            return
        try:
            resp = self.transport.request("GET", state.location, what=f"{what}: status",
                                          scopes=scopes, ok=(204,))
        except RegistryError as e:
            log.info("%s: upload session lost (%s); starting again", what, e)
            self.stats.add(restarted=1)
            state.location, state.offset = None, 0
            return
        m = _RANGE.match(resp.headers.get("Range", "").strip())
        offset = int(m.group(1)) + 1 if m else 0
        if m and offset == 1 and state.offset == 0:
            offset = 0  # "0-0" is how distribution spells an empty upload
        state.location = self.transport.url(resp.headers.get("Location") or state.location)
        state.offset = offset
        self.stats.add(resumed=1)
        log.info("%s: resuming at byte %d", what, offset)

    def _send(self, repo: str, desc: Descriptor, src: BlobCursor, state: _Progress,
              what: str, scopes: tuple[str, ...]) -> None:
        assert state.location is not None
        while desc.size - state.offset > self.chunk_size:
            n, start = self.chunk_size, state.offset
            resp = self.transport.request(
                "PATCH", state.location, what=what, scopes=scopes, retry=False,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{start}-{start + n - 1}"},
                body=lambda: src.section(start, n), ok=(202,))
            m = _RANGE.match(resp.headers.get("Range", "").strip())
            if m and int(m.group(1)) + 1 != start + n:
                raise RegistryError(f"{what}: registry holds {int(m.group(1)) + 1} bytes "
                                    f"after a chunk ending at {start + n}", method="PATCH",
                                    url=redact_url(resp.url), temporary=True)
            state.location = self.transport.url(resp.headers.get("Location") or state.location)
            state.offset = start + n
            self.stats.add(bytes_uploaded=n)
        start, rest = state.offset, desc.size - state.offset
        try:
            resp = self.transport.request(
                "PUT", state.location, what=what, scopes=scopes, retry=False,
                headers={"Content-Type": "application/octet-stream"},
                params={"digest": desc.digest}, body=lambda: src.section(start, rest),
                ok=(201,))
        except RegistryError as e:
            if "DIGEST_INVALID" in e.codes or "SIZE_INVALID" in e.codes:
                raise e.replace(
                    message=f"{what}: the registry computed a different digest or size: the "
                            "blob's bytes do not match its descriptor", temporary=False) from e
            raise
        self.stats.add(bytes_uploaded=rest)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != desc.digest:
            raise DigestMismatchError(what, desc.digest, got)

    def fetch_blob(self, repo: str, desc: Descriptor, dest: Path, *,
                   attempts: int = 3, task: Task | None = None) -> Path:
        """Download a blob to ``dest``, verified; nothing is left there on mismatch.

        The bytes go to a temporary file next to ``dest`` and are renamed into
        place only when both size and sha256 match the descriptor. A body that
        stalls (no data for the read timeout) or drops is fetched again, within
        the retry policy's attempts and deadline.
        """
        check_digest(desc.digest, "blob digest")
        what = f"blob {desc.digest} from {self.registry}/{repo}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        received = [0]  # bytes over all attempts: a retry's deadline counts from progress

        def attempt() -> Path:
            resp = self.transport.request("GET", f"/v2/{repo}/blobs/{desc.digest}", what=what,
                                          scopes=(pull_scope(repo),), stream=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as raw:
                    if task is not None:  # a progress row, told of the bytes as they come
                        task.restart()
                    out = CountingWriter(raw, task.advance) if task is not None else raw
                    digest, size = _copy_hashed(resp, out, desc.size, what,  # type: ignore[arg-type]
                                                self.transport.retry.read_timeout, received)
                if size > desc.size:
                    raise ImageError(f"{what}: the registry sent more than the {desc.size} "
                                     "bytes its descriptor says")
                if size < desc.size:
                    raise ImageError(f"{what}: the registry sent {size} of the {desc.size} "
                                     "bytes its descriptor says")
                if digest != desc.digest:
                    raise DigestMismatchError(what, desc.digest, digest)
                os.replace(tmp, dest)
                self.stats.add(downloaded=1, bytes_downloaded=size)
                return dest
            finally:
                Path(tmp).unlink(missing_ok=True)
                resp.close()

        return retrying(attempt, self.transport.retry, what=what, attempts=attempts,
                        sleep=self.transport._sleep, progress=lambda: received[0])

    # -- manifests ----------------------------------------------------------------

    def get_manifest(self, repo: str, identifier: str) -> ManifestBlob:
        """Fetch a manifest or index by tag or digest; its digest is verified."""
        what = f"manifest {_ref(self.registry, repo, identifier)}"
        resp = self.transport.request("GET", f"/v2/{repo}/manifests/{identifier}", what=what,
                                      scopes=(pull_scope(repo),),
                                      headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        try:
            data = read_answer(resp, what, limit=MAX_MANIFEST_BYTES,
                               seconds=self.transport.retry.read_timeout)
        except RegistryError as e:
            if e.temporary:
                raise
            raise ImageError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes") from None
        finally:
            resp.close()
        digest = sha256_digest(data)
        if identifier.startswith("sha256:") and digest != identifier:
            raise DigestMismatchError(what, identifier, digest)
        header = resp.headers.get("Docker-Content-Digest", "")
        if header.startswith("sha256:") and header != digest:
            raise DigestMismatchError(what, header, digest)
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            declared = json.loads(data).get("mediaType")
        except (ValueError, AttributeError, RecursionError):
            declared = None
        media_type = declared or media_type
        if media_type not in MANIFEST_TYPES:
            raise ImageError(f"{what}: unsupported manifest media type {media_type!r}")
        return ManifestBlob(data, media_type, digest)

    def put_manifest(self, repo: str, identifier: str, data: bytes, media_type: str) -> str:
        what = f"PUT manifest {_ref(self.registry, repo, identifier)}"
        resp = self.transport.request("PUT", f"/v2/{repo}/manifests/{identifier}", what=what,
                                      scopes=(push_scope(repo),), body=data,
                                      headers={"Content-Type": media_type}, ok=(201,))
        digest = sha256_digest(data)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatchError(what, digest, got)
        return digest

    def has_manifest(self, repo: str, identifier: str) -> bool:
        """Whether ``repo`` has a manifest by that tag or digest (one ``HEAD``)."""
        resp = self.transport.request("HEAD", f"/v2/{repo}/manifests/{identifier}",
                                      what=f"HEAD {_ref(self.registry, repo, identifier)}",
                                      scopes=(pull_scope(repo),),
                                      headers={"Accept": MANIFEST_ACCEPT}, ok=(200, 404))
        return resp.status_code == 200

    def resolve(self, repo: str, identifier: str) -> str:
        """The manifest digest a tag (or digest) names right now."""
        if identifier.startswith("sha256:"):
            return self.get_manifest(repo, identifier).digest
        resp = self.transport.request("HEAD", f"/v2/{repo}/manifests/{identifier}",
                                      what=f"resolve {_ref(self.registry, repo, identifier)}",
                                      scopes=(pull_scope(repo),),
                                      headers={"Accept": MANIFEST_ACCEPT})
        header = resp.headers.get("Docker-Content-Digest", "")
        if header.startswith("sha256:"):
            return check_digest(header, "Docker-Content-Digest")
        return self.get_manifest(repo, identifier).digest


def _ref(registry: str, repo: str, identifier: str) -> str:
    """``registry/repo:tag`` or ``registry/repo@sha256:…``, as a user would write it."""
    return f"{registry}/{repo}{'@' if identifier.startswith('sha256:') else ':'}{identifier}"


def _copy_hashed(resp: requests.Response, out: BinaryIO, limit: int, what: str,
                 read_timeout: float, received: list[int]) -> tuple[str, int]:
    """Copy a streamed body, hashing it; stop one byte past ``limit``; count the bytes
    in ``received[0]``. A stall or a dropped connection is a temporary
    :class:`RegistryError` saying which."""
    h = hashlib.sha256()
    size = 0
    window_start, window_size = time.monotonic(), 0
    try:
        while block := resp.raw.read1(_READ_BLOCK, decode_content=True):
            if size + len(block) > limit:
                block = block[:limit + 1 - size]
            h.update(block)
            out.write(block)
            size += len(block)
            received[0] += len(block)
            if size > limit:
                break
            window_size += len(block)
            elapsed = time.monotonic() - window_start
            if elapsed >= read_timeout:
                if window_size < MIN_BLOB_RATE * elapsed:
                    raise RegistryError(
                        f"{what}: download too slow after {size} bytes: {window_size} bytes "
                        f"in the last {elapsed:.0f} s (under {MIN_BLOB_RATE} bytes/s)",
                        method="GET", url=redact_url(resp.url), temporary=True)
                window_start, window_size = time.monotonic(), 0
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        raise connection_error(e, what=f"{what}: download failed after {size} bytes",
                               method="GET", url=resp.url, read_timeout=read_timeout) from None
    return "sha256:" + h.hexdigest(), size
