"""Read what the dynamic loader reads from an ELF file: nothing more.

:func:`read_elf` takes a stream and returns :class:`ElfInfo` (class, machine,
``PT_INTERP``, ``DT_NEEDED``, ``DT_RPATH``, ``DT_RUNPATH``, ``DT_SONAME``), or None
for anything that is not a loadable ELF object. Only the file header, the
program headers and the dynamic segment (with its string table) are read, through
pyelftools, so a 100 MB shared library costs a few small reads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
_MIN_SIZE = 52  # the smallest ELF header (32-bit)
_LOADABLE = ("ET_EXEC", "ET_DYN")


@dataclass(frozen=True)
class ElfInfo:
    """The loader-relevant facts of one ELF file.

    ``rpath``/``runpath`` are the colon-separated entries, unexpanded (``$ORIGIN``
    kept). ``elf_class`` is 32 or 64; ``machine`` is pyelftools' ``e_machine`` name
    (``EM_X86_64``): the loader skips candidates whose class or machine differ.
    """

    elf_class: int
    machine: str
    interpreter: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname: str | None = None

    def compatible(self, other: "ElfInfo") -> bool:
        """Whether the loader would accept ``other`` as a dependency of this file."""
        return (self.elf_class, self.machine) == (other.elf_class, other.machine)


def is_elf(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like an ELF file."""
    return head[:4] == ELF_MAGIC


def read_elf(stream: BinaryIO) -> ElfInfo | None:
    """Parse the loader's view of an ELF file; None if it is not a loadable ELF.

    Non-ELF content, relocatable objects (``.o``), core files and files too
    damaged for pyelftools all give None. A non-seekable stream is read into
    memory first.
    """
    head = stream.read(4)
    if not is_elf(head):
        return None
    if not _seekable(stream):
        stream = io.BytesIO(head + stream.read())
    try:
        stream.seek(0)
        elf = ELFFile(stream)
        if elf["e_type"] not in _LOADABLE:
            return None
        interp: str | None = None
        needed: list[str] = []
        rpath: list[str] = []
        runpath: list[str] = []
        soname: str | None = None
        for segment in elf.iter_segments():
            kind = segment["p_type"]
            if kind == "PT_INTERP":
                interp = segment.get_interp_name()  # type: ignore[attr-defined]
            elif kind == "PT_DYNAMIC" and isinstance(segment, DynamicSegment):
                for tag in segment.iter_tags():
                    d_tag = tag.entry.d_tag
                    if d_tag == "DT_NEEDED":
                        needed.append(tag.needed)  # type: ignore[attr-defined]
                    elif d_tag == "DT_RPATH":
                        rpath += _split_path(tag.rpath)  # type: ignore[attr-defined]
                    elif d_tag == "DT_RUNPATH":
                        runpath += _split_path(tag.runpath)  # type: ignore[attr-defined]
                    elif d_tag == "DT_SONAME":
                        soname = tag.soname  # type: ignore[attr-defined]
        return ElfInfo(elf.elfclass, elf["e_machine"], interp, tuple(needed), tuple(rpath),
                       tuple(runpath), soname)
    except (ELFError, ValueError, KeyError, AttributeError, OSError):
        return None


def _split_path(value: str) -> list[str]:
    return [part for part in value.split(":") if part]


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError):
        return False


def load_segments_aligned(stream: BinaryIO, page_size: int = 4096) -> bool:
    """Whether every ``PT_LOAD`` segment can be mapped: offset and address agree
    modulo the page size. GNU strip breaks this on libraries that patchelf
    rewrote (auditwheel's ``*.libs``); ld.so then refuses them ("ELF load command
    address/offset not page-aligned").
    """
    try:
        elf = ELFFile(stream)
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_LOAD" and (
                    segment["p_offset"] % page_size != segment["p_vaddr"] % page_size):
                return False
        return True
    except (ELFError, ValueError, KeyError, OSError):
        return False
