"""Numbers for people: sizes, counts with the right plural, short digests."""

from __future__ import annotations


def size(n: int | None) -> str:
    """``999 B``, ``12.3 kB``, ``45.6 MB`` (decimal units, as docker and pip print)."""
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    if n < 1000 * 1000:
        return f"{n / 1000:.1f} kB"
    if n < 1000 ** 3:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 file``, ``2 files``, ``0 files``; ``plural`` for irregular words."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab…``: enough to tell layers apart in a listing."""
    return digest[:19] + "…"
