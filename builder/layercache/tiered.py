"""Local first, then the registry: the layer cache a build talks to.

A layer is looked up by its local key (host file stamps: nothing is read), then,
when a remote cache is configured, by its content key (:mod:`.keys`) locally
(the same content built from another checkout) and in the remote cache. A
layer built here is recorded under both keys and pushed under the content key.

The remote cache is never the reason a build fails: a fault (unreachable, 5xx,
auth refused, bytes that do not match their digest) becomes one warning, the
remote is left alone for the rest of the build, and the layer is built here;
unless ``required``, which makes it an error. ``readonly`` reads and never writes.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Callable


from ..errors import ImageError, OcibuildError, RegistryError
from ..oci.image import Layer
from . import BUILT, LOCAL, REMOTE, Hit, LayerCache, Record
from .local import LocalLayerCache

FAULTS = (OcibuildError, OSError, ValueError, KeyError, TypeError)
"""What a remote cache may raise that means "use it no more, build here" (requests'
exceptions are OSErrors; requests itself is not imported for a local-only build)."""


class TieredCache:
    """A :class:`LocalLayerCache` and, optionally, a remote :class:`LayerCache`."""

    def __init__(self, local: LocalLayerCache, remote: LayerCache | None = None, *,
                 name: str = "", readonly: bool = False, required: bool = False) -> None:
        self.local, self.remote = local, remote
        self.name = name or "the cache repository"
        self.readonly, self.required = readonly, required
        self._reads = self._writes = remote is not None
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self.counts = {LOCAL: 0, REMOTE: 0, BUILT: 0}

    # -- layers --------------------------------------------------------------------

    def layer(self, key: str | None, make: Callable[[], Layer], *,
              content: str | Callable[[], str] | None = None,
              extra: Callable[[Layer], dict[str, Any]] | None = None) -> Hit:
        """The layer under ``key`` (local) or its content key (local, then remote), else
        ``make()``, recorded. ``key`` None: nothing identifies the inputs cheaply.
        ``content`` is the content key, or a function computing it (called only when
        a remote cache is in use). ``extra(layer)`` is what the record keeps for the
        layer's source."""
        hit = self.local.get(key) if key else None
        if hit is not None:
            self._backfill(self._content_key(key, content) if self._can_write() else None,
                           hit)
            return self._count(hit)
        ckey = self._content_key(key, content)
        if ckey is not None:
            hit = self._find(ckey, make, local=ckey != key)
            if hit is not None:
                if key and key != ckey:
                    self.local.put(key, hit.layer, hit.record)
                return self._count(hit)
        layer = make()
        record = self.local.record_of(layer, extra(layer) if extra else {})
        for k in {key, ckey}:
            if k:
                self.local.put(k, layer, record)
        if ckey is not None and self._remote_put(ckey, layer, record):
            self.local.mark_pushed(self.name, ckey)
        return self._count(Hit(layer, record, BUILT))

    def find(self, ckey: str, make: Callable[[], Layer]) -> Hit | None:
        """The layer under content key ``ckey``, locally or remotely; None (nothing is
        built) if neither has it. ``make`` builds it should a remote blob turn out bad."""
        hit = self._find(ckey, make)
        return self._count(hit) if hit is not None else None

    def _find(self, ckey: str, make: Callable[[], Layer], local: bool = True) -> Hit | None:
        hit = self.local.get(ckey) if local else None
        if hit is not None:
            self._backfill(ckey, hit)
            return hit
        hit = self._remote_get(ckey, make)
        if hit is not None:
            self.local.put(ckey, hit.layer, hit.record)
            self.local.mark_pushed(self.name, ckey)
        return hit

    def _can_write(self) -> bool:
        return self._writes and not self.readonly and self.remote is not None

    def _backfill(self, ckey: str | None, hit: Hit) -> None:
        """Push a local hit the remote cache lacks, once per key and repository (a
        runner whose cache was warm before it had a cache repository fills it)."""
        if ckey is None or not self._can_write() or self.local.pushed(self.name, ckey):
            return
        there = self._read(lambda remote: remote.has(ckey))
        if there is None:  # the remote failed (and is now left alone)
            return
        if there or self._remote_put(ckey, hit.layer, hit.record):
            self.local.mark_pushed(self.name, ckey)

    def _content_key(self, key: str | None,
                     content: str | Callable[[], str] | None) -> str | None:
        """The content key: as given, or computed when a remote is in use (and
        remembered under the local key)."""
        if content is None or isinstance(content, str):
            return content
        if not self._reads and not self._writes:
            return None
        ckey = self.local.memo(key) if key else None
        if ckey is None:
            ckey = content()
            if key:
                self.local.remember(key, ckey)
        return ckey

    def _count(self, hit: Hit) -> Hit:
        with self._lock:
            self.counts[hit.source] += 1
        return hit

    def _remote_get(self, key: str, make: Callable[[], Layer]) -> Hit | None:
        hit = self._read(lambda remote: remote.get(key))
        if hit is None:
            return None
        opener = _Fallback(hit.layer, make, self)
        return Hit(replace(hit.layer, opener=opener), hit.record, REMOTE)

    def _remote_put(self, key: str, layer: Layer, record: Record) -> bool:
        return self._write(lambda remote: remote.put(key, layer, record))

    def _read(self, call: Callable[[LayerCache], Any]) -> Any:
        """``call(remote)``, or None when there is no remote to read or it failed."""
        if not self._reads or self.remote is None:
            return None
        try:
            return call(self.remote)
        except FAULTS as e:
            self._fault(e, "read")
            return None

    def _write(self, call: Callable[[LayerCache], None]) -> bool:
        """``call(remote)``; False when there is no remote to write or it failed."""
        if not self._can_write():
            return False
        try:
            call(self.remote)  # type: ignore[arg-type]
        except FAULTS as e:
            self._fault(e, "write")
            return False
        return True

    # -- verdicts ------------------------------------------------------------------

    def has_verdict(self, key: str) -> bool:
        if self.local.has_verdict(key):
            if self._can_write() and not self.local.pushed(self.name, f"v-{key}"):
                there = self._read(lambda remote: remote.has_verdict(key))
                if there is not None and (there or self._write(
                        lambda remote: remote.put_verdict(key))):
                    self.local.mark_pushed(self.name, f"v-{key}")
            return True
        found = bool(self._read(lambda remote: remote.has_verdict(key)))
        if found:
            self.local.put_verdict(key)
            self.local.mark_pushed(self.name, f"v-{key}")
        return found

    def put_verdict(self, key: str) -> None:
        self.local.put_verdict(key)
        if self._write(lambda remote: remote.put_verdict(key)):
            self.local.mark_pushed(self.name, f"v-{key}")

    # -- notes ----------------------------------------------------------------------

    def get_note(self, key: str) -> dict[str, Any] | None:
        note = self.local.get_note(key)
        if note is None:
            note = self._read(lambda remote: remote.get_note(key))
            if note is not None:
                self.local.put_note(key, note)
        return note

    def put_note(self, key: str, note: dict[str, Any]) -> None:
        self.local.put_note(key, note)
        self._write(lambda remote: remote.put_note(key, note))

    # -- faults --------------------------------------------------------------------

    def _fault(self, error: BaseException, what: str) -> None:
        """One warning per build, then the remote is left alone (``required``: raise)."""
        message = f"cache repository {self.name}: {what} failed: {error}"
        if self.required:
            raise RegistryError(f"{message} (--cache-repo-required)") from error
        with self._lock:
            if what == "write":
                first, self._writes = self._writes, False
            else:
                first, self._reads, self._writes = self._reads, False, False
            if first:
                self._warnings.append(f"{message}; building locally without it")

    def warn(self, message: str) -> None:
        with self._lock:
            self._warnings.append(message)

    def drain_warnings(self) -> list[str]:
        with self._lock:
            out, self._warnings = self._warnings, []
        return out

    def summary(self) -> dict[str, Any]:
        """What the build did with the cache: layers per source, bytes moved."""
        stats = getattr(getattr(self.remote, "client", None), "stats", None)
        return {"repository": self.name, "readonly": self.readonly,
                "layers": dict(self.counts),
                "bytes_fetched": stats.bytes_downloaded if stats else 0,
                "bytes_pushed": stats.bytes_uploaded if stats else 0}

    def mount_sources(self) -> list[str]:
        """Repositories a push may mount blobs from (``registry/repo``)."""
        origin = getattr(self.remote, "origin", None)
        return [origin] if origin else []


class _Fallback:
    """The opener of a remote hit: the remote blob (fetched and verified on first
    use), or, if that fails, the layer built here, which must have the same digest."""

    def __init__(self, layer: Layer, make: Callable[[], Layer], cache: TieredCache) -> None:
        self._remote, self._make, self._cache = layer, make, cache
        self._lock = threading.Lock()
        self._built: Layer | None = None

    @property
    def origin(self) -> str | None:
        return getattr(self._remote.opener, "origin", None)

    def __call__(self) -> BinaryIO:
        with self._lock:
            if self._built is None:
                try:
                    return self._remote.opener()
                except FAULTS as e:
                    if self._cache.required:
                        raise RegistryError(f"cache repository {self._cache.name}: "
                                            f"{e} (--cache-repo-required)") from e
                    self._cache.warn(f"cache repository {self._cache.name}: layer "
                                     f"{self._remote.name or self._remote.digest}: {e}; "
                                     "built locally instead")
                    built = self._make()
                    if built.digest != self._remote.digest:
                        raise ImageError(
                            f"layer {self._remote.name}: built locally as {built.digest}, but "
                            f"the cache repository's record says {self._remote.digest}; "
                            "the cache entry is wrong: rebuild without --cache-repo") from e
                    self._built = built
            return self._built.opener()


def open_cache(cache_dir: Path, repo: str | None = None, *, readonly: bool = False,
               required: bool = False, insecure: bool = False) -> TieredCache:
    """The build's layer cache: ``cache_dir``, and the registry repository ``repo``
    (``REGISTRY/REPO``) if given. Nothing is contacted yet."""
    local = LocalLayerCache(cache_dir)
    if not repo:
        return TieredCache(local)
    from .registry import RegistryLayerCache

    remote = RegistryLayerCache.open(repo, local.blob_dir, insecure=insecure)
    return TieredCache(local, remote, name=remote.origin, readonly=readonly,
                       required=required)
