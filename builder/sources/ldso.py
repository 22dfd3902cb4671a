"""What glibc's dynamic loader knows before it reads an object: its trusted dirs, the
values of ``$LIB`` and ``$PLATFORM`` per architecture, and ``/etc/ld.so.cache``.

The layouts are Debian's (multiarch: ``/lib/<triplet>`` first, then ``/lib`` and
``/usr/lib``), as ``ld.so --help`` prints them under "system search path"; ``/lib64``
is *not* searched there (only the interpreter lives in it on x86_64).

The cache is glibc's "new" format (``glibc-ld.so.cache1.1``, alone since glibc 2.32,
or after an old ``ld.so-1.7.0`` table): a header, ``nlibs`` entries of (flags, key,
value, osversion, hwcap), then the string table; string offsets count from the new
header. The loader does not read ``/etc/ld.so.conf``: only ``ldconfig`` does, to
write the cache, so dirs listed there but absent from the cache are not searched
(:func:`ld_so_conf_dirs` is read only to say so in an error).
"""

from __future__ import annotations

import fnmatch
import posixpath
import struct
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import ClosureError


@dataclass(frozen=True)
class LoaderLayout:
    """One architecture's loader: its default dirs and what ``$LIB``/``$PLATFORM`` are."""

    machine: str
    triplet: str
    platform: str
    cache_flags: int  # the architecture bits an ld.so.cache entry must carry
    interpreter: str  # the PT_INTERP its programs name (the process's ld.so)

    @property
    def default_dirs(self) -> tuple[str, ...]:
        return (f"/lib/{self.triplet}", f"/usr/lib/{self.triplet}", "/lib", "/usr/lib")

    @property
    def lib(self) -> str:
        """``$LIB`` as Debian's glibc expands it (relative to ``/`` or ``/usr``)."""
        return f"lib/{self.triplet}"


# (e_machine, ELF class) -> layout; cache flags are ldconfig's FLAG_* machine bits
# (0x0300 x86-64, 0x0a00 AArch64, 0x0900 ARM hard-float, 0x0500 PowerPC 64,
# 0x0400 S390 64; 0x1000 RISC-V double float; 0 for plain i386) ORed with ELF libc6 (3).
LAYOUTS: dict[tuple[str, int], LoaderLayout] = {
    ("EM_X86_64", 64): LoaderLayout("EM_X86_64", "x86_64-linux-gnu", "x86_64", 0x0303,
                                        "/lib64/ld-linux-x86-64.so.2"),
    ("EM_AARCH64", 64): LoaderLayout("EM_AARCH64", "aarch64-linux-gnu", "aarch64", 0x0a03,
                                          "/lib/ld-linux-aarch64.so.1"),
    ("EM_386", 32): LoaderLayout("EM_386", "i386-linux-gnu", "i686", 0x0003, "/lib/ld-linux.so.2"),
    ("EM_ARM", 32): LoaderLayout("EM_ARM", "arm-linux-gnueabihf", "v7l", 0x0903,
                                   "/lib/ld-linux-armhf.so.3"),
    ("EM_PPC64", 64): LoaderLayout("EM_PPC64", "powerpc64le-linux-gnu", "power8", 0x0503,
                                       "/lib64/ld64.so.2"),
    ("EM_S390", 64): LoaderLayout("EM_S390", "s390x-linux-gnu", "z196", 0x0403, "/lib/ld64.so.1"),
    ("EM_RISCV", 64): LoaderLayout("EM_RISCV", "riscv64-linux-gnu", "riscv64", 0x1003,
                                        "/lib/ld-linux-riscv64-lp64d.so.1"),
}
"""The loaders ocibuild models, keyed as :class:`~builder.sources.elf.ElfInfo` names them."""

_BY_ARCH = {"amd64": ("EM_X86_64", 64), "arm64": ("EM_AARCH64", 64), "386": ("EM_386", 32),
            "arm": ("EM_ARM", 32), "ppc64le": ("EM_PPC64", 64), "s390x": ("EM_S390", 64),
            "riscv64": ("EM_RISCV", 64)}


def layout_for(machine: str, elf_class: int) -> LoaderLayout:
    """The loader layout for objects of this machine and class (x86-64's if unknown:
    its dirs then match nothing of another machine, since candidates must match)."""
    return LAYOUTS.get((machine, elf_class), LAYOUTS[("EM_X86_64", 64)])


def layout_for_platform(architecture: str) -> LoaderLayout:
    """The loader layout for an OCI platform architecture (``amd64``, ``arm64`` …)."""
    key = _BY_ARCH.get(architecture)
    if key is None:
        raise ClosureError(f"no dynamic loader layout is known for architecture "
                           f"{architecture!r} (known: {', '.join(sorted(_BY_ARCH))})")
    return LAYOUTS[key]


LD_SO_CACHE = "/etc/ld.so.cache"
LD_SO_CONF = "/etc/ld.so.conf"
_OLD_MAGIC = b"ld.so-1.7.0"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_NEW_HEADER = struct.Struct("<20sII")  # magic+version, nlibs, len_strings (then 24 bytes)
_NEW_HEADER_SIZE = 48
_NEW_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap
_OLD_ENTRY_SIZE = 12
_MAX_CONF_DEPTH = 16


def read_ld_cache(data: bytes) -> list[tuple[str, int, str]]:
    """The (soname, flags, path) entries of an ld.so.cache, in the file's order (the
    loader takes the first one that fits). Raises :class:`ClosureError` for a file
    that is not one, since the loader would then ignore it."""
    offset = 0
    if data.startswith(_OLD_MAGIC):
        (count,) = struct.unpack_from("<I", data, len(_OLD_MAGIC))
        offset = len(_OLD_MAGIC) + 4 + count * _OLD_ENTRY_SIZE
        offset = (offset + 7) & ~7  # the new table is aligned as cache_file_new
    if data[offset:offset + len(_NEW_MAGIC)] != _NEW_MAGIC:
        raise ClosureError(f"{LD_SO_CACHE}: not a glibc ld.so.cache (format 1.1)")
    magic, count, _ = _NEW_HEADER.unpack_from(data, offset)
    entries = []
    for i in range(count):
        at = offset + _NEW_HEADER_SIZE + i * _NEW_ENTRY.size
        if at + _NEW_ENTRY.size > len(data):
            raise ClosureError(f"{LD_SO_CACHE}: truncated ({count} entries announced)")
        flags, key, value, _, hwcap = _NEW_ENTRY.unpack_from(data, at)
        if hwcap:  # an entry for a CPU feature subdir; the plain one follows
            continue
        entries.append((_string(data, offset + key), flags, _string(data, offset + value)))
    return entries


def _string(data: bytes, at: int) -> str:
    end = data.find(b"\0", at)
    if at >= len(data) or end < 0:
        raise ClosureError(f"{LD_SO_CACHE}: a string points outside the file")
    return data[at:end].decode("utf-8", "surrogateescape")


def ld_so_conf_dirs(read: Callable[[str], bytes | None],
                    listdir: Callable[[str], Iterable[str]]) -> list[str]:
    """The dirs ``/etc/ld.so.conf`` names, following ``include`` globs (relative ones
    against ``/etc``) as ldconfig does; ``hwcap`` lines are skipped."""
    dirs: list[str] = []
    seen: set[str] = set()

    def walk(path: str, depth: int) -> None:
        if depth > _MAX_CONF_DEPTH or path in seen:
            return
        seen.add(path)
        data = read(path)
        if data is None:
            return
        for raw in data.decode("utf-8", "replace").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("hwcap "):
                continue
            if line.startswith("include ") or line.startswith("include\t"):
                for pattern in line[len("include"):].split():
                    if not pattern.startswith("/"):
                        pattern = posixpath.join(posixpath.dirname(path), pattern)
                    folder, glob = posixpath.split(pattern)
                    for name in sorted(listdir(folder)):
                        if fnmatch.fnmatchcase(name, glob):
                            walk(posixpath.join(folder, name), depth + 1)
                continue
            for d in line.replace(",", " ").replace(":", " ").split():
                d = posixpath.normpath(d.split("=", 1)[0])
                if d.startswith("/") and d not in dirs:
                    dirs.append(d)

    walk(LD_SO_CONF, 0)
    return dirs
