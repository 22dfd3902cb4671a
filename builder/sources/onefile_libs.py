"""What the libraries packed inside a onefile executable need from the image.

A onefile app unpacks libpython, the extension modules and the libraries
PyInstaller collected into a temporary directory at start and loads them from
there; the image's files never show them, so the library closure would check
only the bootloader's own ``DT_NEEDED`` and a base without glibc's ``libm``
(``base: scratch`` with host libraries) would build and then fail at start.
:func:`packed_needs` reads the executable's archive (:mod:`.carchive`) and
returns the libraries its packed binaries need that the archive does not carry
itself: the closure treats them as needs of the executable.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

from .carchive import BINARY, archive_entries, copy_entry
from .elf import read_elf


def packed_needs(executable: Path, *, scratch: Path | None = None) -> tuple[str, ...] | None:
    """The sonames the binaries packed in ``executable`` need and do not pack, sorted;
    None when the archive cannot be read (the closure then checks what it can). Each
    binary is unpacked in turn to a temporary file under ``scratch``, to be read."""
    needed: set[str] = set()
    provided: set[str] = set()
    try:
        with open(executable, "rb") as stream:
            entries = [e for e in archive_entries(stream, os.fstat(stream.fileno()).st_size)
                       if e.type_code == BINARY]
            if not entries:
                return None
            for entry in entries:
                provided.add(entry.name.rsplit("/", 1)[-1])
                with tempfile.TemporaryFile(dir=scratch) as unpacked:
                    copy_entry(stream, entry, unpacked)
                    unpacked.seek(0)
                    info = read_elf(unpacked)
                if info is not None:
                    needed.update(info.needed)
                    if info.soname:
                        provided.add(info.soname)
    except (OSError, ValueError, zlib.error):
        return None
    return tuple(sorted(needed - provided))


def recorded_needs(executable: Path, *, scratch: Path | None = None) -> tuple[str, ...]:
    """:func:`packed_needs` of a cached onefile output (``<dist>/<exe>``), kept beside
    it as ``<dist>.needs`` so a cached build reads it instead; () when it cannot be
    told (the archive unreadable)."""
    record = executable.parent.with_name(executable.parent.name + ".needs")
    try:
        return tuple(record.read_text(encoding="utf-8").split())
    except OSError:
        pass
    needs = packed_needs(executable, scratch=scratch)
    if needs is None:
        return ()
    tmp = record.with_name(record.name + ".tmp")
    try:
        tmp.write_text("".join(name + "\n" for name in needs), encoding="utf-8")
        tmp.replace(record)
    except OSError:
        pass  # best effort: the next build reads the archive again
    return needs
