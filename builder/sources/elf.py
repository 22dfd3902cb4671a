"""Read what the dynamic loader reads from an ELF file: nothing more.

:func:`read_elf` takes a stream and returns :class:`ElfInfo` (class, machine,
``PT_INTERP``, ``DT_NEEDED``, ``DT_RPATH``, ``DT_RUNPATH``, ``DT_SONAME``, and the
symbol versions of ``DT_VERNEED``/``DT_VERDEF``), or None for anything that is not
a loadable ELF object. Only the file header, the program and section headers, the
dynamic segment and the version sections (with their string table) are read,
through pyelftools, so a 100 MB shared library costs a few small reads.
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
_VER_FLG_BASE = 1  # the verdef entry naming the file itself
_VER_FLG_WEAK = 2  # a version the loader does not insist on


@dataclass(frozen=True)
class ElfInfo:
    """The loader-relevant facts of one ELF file.

    ``rpath``/``runpath`` are the colon-separated entries, unexpanded (``$ORIGIN``
    kept). ``elf_class`` is 32 or 64; ``machine`` is pyelftools' ``e_machine`` name
    (``EM_X86_64``): the loader skips candidates whose class or machine differ.
    ``verneed`` pairs a needed file (a ``DT_NEEDED`` name) with the symbol versions
    wanted from it (``("libc.so.6", ("GLIBC_2.34",))``; weak ones left out); ``verdef`` are the
    versions this object defines (its base version, the soname, left out).
    """

    elf_class: int
    machine: str
    interpreter: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname: str | None = None
    verneed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    verdef: tuple[str, ...] = ()

    @property
    def effective_rpath(self) -> tuple[str, ...]:
        """``DT_RPATH`` as the loader uses it: ignored when ``DT_RUNPATH`` is present."""
        return () if self.runpath else self.rpath

    @property
    def is_program(self) -> bool:
        """An executable (it names an interpreter) rather than a shared library (libc
        and ld.so name one too, but they have a soname)."""
        return self.interpreter is not None and self.soname is None

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
        verneed, verdef = _versions(elf)
        return ElfInfo(elf.elfclass, elf["e_machine"], interp, tuple(needed), tuple(rpath),
                       tuple(runpath), soname, verneed, verdef)
    except (ELFError, ValueError, KeyError, AttributeError, OSError):
        return None


def _versions(elf: ELFFile) -> tuple[tuple[tuple[str, tuple[str, ...]], ...],
                                       tuple[str, ...]]:
    """The ``.gnu.version_r`` needs and ``.gnu.version_d`` definitions (by section
    type, so a renamed section is still found)."""
    needs: list[tuple[str, tuple[str, ...]]] = []
    defs: list[str] = []
    for section in elf.iter_sections():
        kind = section["sh_type"]
        if kind == "SHT_GNU_verneed":
            for verneed, aux in section.iter_versions():  # type: ignore[attr-defined]
                needs.append((verneed.name, tuple(a.name for a in aux
                                                     if not a.entry["vna_flags"] & _VER_FLG_WEAK)))
        elif kind == "SHT_GNU_verdef":
            for verdef, aux in section.iter_versions():  # type: ignore[attr-defined]
                names = [a.name for a in aux]
                if names and not verdef["vd_flags"] & _VER_FLG_BASE:
                    defs.append(names[0])
    return tuple(needs), tuple(defs)


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
