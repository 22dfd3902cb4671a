"""Keys that travel: a layer's key from what it holds, not from where its files are.

The local key (:func:`builder.layers.build.entries_cache_key`) uses each file's
device, inode, mtime and ctime: cheap, and meaningless on another machine. The
*content key* hashes, per entry, its image path, kind, mode, owner, size, link
target, which entries are hard links of one file, and the sha256 of each file's
bytes; then the layer's options (compression, epoch, special bits, history) and
the layer format version. Two checkouts of the same inputs anywhere give the same
content key, and the tar writer turns the same entries into the same bytes, so
the same layer digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from ..cache import file_sha256
from ..layers.build import layer_cache_key
from ..layers.entries import Entry, FileOpener, Kind
from ..sinks.atomic import atomic_file

_BLOCK = 1 << 20


def content_key(entries: Iterable[Entry], *parts: object,
                memo: "DigestMemo | None" = None) -> str:
    """The key of a layer made of ``entries`` with options ``parts``, from content alone.

    Every FILE entry is read (streamed), unless ``memo`` knows the digest of its
    stamp: after one file of a layer changed, only that file is read again.
    """
    h = hashlib.sha256(layer_cache_key("content", *parts).encode())
    links: dict[object, int] = {}
    for index, e in enumerate(entries):
        digest, link = "", -1
        if e.kind is Kind.FILE:
            digest = memo.sha256(e) if memo is not None else entry_sha256(e)
            if e.link_key is not None:
                link = links.setdefault(e.link_key, index)
        h.update(f"{len(e.path)}:{e.path}\0{e.kind.value}\0{e.mode}\0{e.uid}\0{e.gid}\0"
                 f"{e.size}\0{len(e.target)}:{e.target}\0{link}\0{digest}\n"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def entry_sha256(entry: Entry) -> str:
    """The hex sha256 of a FILE entry's content, streamed from its opener."""
    if isinstance(entry.opener, FileOpener):
        return file_sha256(entry.opener.path)  # type: ignore[arg-type]
    assert entry.opener is not None, entry.path
    h = hashlib.sha256()
    with entry.opener() as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


class DigestMemo:
    """File digests by content stamp (host device, inode, size, mtime, ctime), kept
    per layer in ``<cache>/digests/<scope>.json``; only the stamps last seen are kept.

    A stamp that matches says the file was not written since it was hashed, as the
    local layer key already trusts.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        self._known: dict[str, str] = known if isinstance(known, dict) else {}
        self._seen: dict[str, str] = {}

    @classmethod
    def open(cls, cache_dir: Path, scope: str) -> "DigestMemo":
        name = hashlib.sha256(scope.encode("utf-8", "surrogateescape")).hexdigest()
        return cls(Path(cache_dir) / "digests" / f"{name}.json")

    def sha256(self, entry: Entry) -> str:
        if entry.stamp is None:
            return entry_sha256(entry)
        stamp = repr(entry.stamp)
        digest = self._known.get(stamp)
        if not (isinstance(digest, str) and len(digest) == 64):
            digest = entry_sha256(entry)
        self._seen[stamp] = digest
        return digest

    def save(self) -> None:
        """Keep what this pass saw (best effort: a memo that cannot be written costs
        a re-read next time)."""
        if self._seen == self._known:
            return
        try:
            with atomic_file(self.path) as out:
                out.write(json.dumps(self._seen, separators=(",", ":")).encode())
        except OSError:
            pass


def memoized_content_key(cache_dir: Path, scope: str, entries: Iterable[Entry],
                         *parts: object) -> str:
    """:func:`content_key` with a :class:`DigestMemo` for ``scope`` (a layer's name in
    its manifest), saved afterwards."""
    memo = DigestMemo.open(cache_dir, scope)
    key = content_key(entries, *parts, memo=memo)
    memo.save()
    return key
