"""Strip symbols from the shared libraries of a frozen bundle, safely.

PyInstaller's own ``--strip`` runs GNU strip on every collected binary, and GNU
strip (binutils 2.40) breaks libraries that patchelf rewrote, which is every
library auditwheel vendored into ``numpy.libs``/``scipy.libs``: ld.so then
refuses them with "ELF load command address/offset not page-aligned". So
ocibuild strips itself, into a temporary file, and keeps the stripped copy only
if its load segments are still mappable and it still reads as the same ELF
object (same interpreter, needs and search paths); otherwise the original stays.

Never stripped: the bundle's executable (PyInstaller appends its archive to it),
files with a FIPS ``.hmac``/``.chk`` companion (their checksum would break), and
anything that is not ELF.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .elf import is_elf, load_segments_aligned, read_elf

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
STRIP_ARGS: tuple[str, ...] = ("strip", "--strip-unneeded")


@dataclass
class StripReport:
    """``stripped``: relative paths of files now stripped; ``kept``: ELF files left as
    they were because stripping failed or would have broken them; ``saved``: bytes."""

    stripped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    saved: int = 0


def strip_tree(root: Path, *, skip: Sequence[str] = (), runner: Runner = subprocess.run,
               strip: Sequence[str] = STRIP_ARGS) -> StripReport:
    """Strip every ELF file under ``root`` except the relative paths in ``skip``."""
    report = StripReport()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel in skip or _has_checksum(path) or not _is_elf_file(path):
            continue
        tmp = path.with_name(f".{path.name}.stripped")
        try:
            proc = runner([*strip, "-o", str(tmp), str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
            if proc.returncode == 0 and _same_object(path, tmp):
                report.saved += path.stat().st_size - tmp.stat().st_size
                os.chmod(tmp, path.stat().st_mode & 0o7777)
                os.replace(tmp, path)
                report.stripped.append(rel)
            else:
                report.kept.append(rel)
        except OSError:
            report.kept.append(rel)
        finally:
            tmp.unlink(missing_ok=True)
    return report


def _is_elf_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return is_elf(f.read(4))


def _has_checksum(path: Path) -> bool:
    return (path.with_name(f".{path.name}.hmac").is_file()
            or path.with_suffix(".chk").is_file())


def _same_object(original: Path, stripped: Path) -> bool:
    with open(original, "rb") as a, open(stripped, "rb") as b:
        before = read_elf(a)
        after = read_elf(b)
        b.seek(0)
        return before is not None and before == after and load_segments_aligned(b)
