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
from typing import Iterable

from ..cache import file_sha256
from ..layers.build import layer_cache_key
from ..layers.entries import Entry, FileOpener, Kind

_BLOCK = 1 << 20


def content_key(entries: Iterable[Entry], *parts: object) -> str:
    """The key of a layer made of ``entries`` with options ``parts``, from content alone.

    Every FILE entry is read once (streamed); callers remember the result under
    the local key, so an unchanged layer is not read again.
    """
    h = hashlib.sha256(layer_cache_key("content", *parts).encode())
    links: dict[object, int] = {}
    for index, e in enumerate(entries):
        digest, link = "", -1
        if e.kind is Kind.FILE:
            digest = entry_sha256(e)
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
