"""What the libraries packed inside a onefile executable need from the image.

A onefile app unpacks libpython, the extension modules and the libraries
PyInstaller collected into a temporary directory at start and loads them from
there; the image's files never show them, so the library closure would check
only the bootloader's own ``DT_NEEDED`` and a base without glibc's ``libm``
(``base: scratch`` with host libraries) would build and then fail at start.
:func:`packed_needs` reads the executable's archive with PyInstaller's own
reader (in the build venv, where PyInstaller is) and returns the libraries its
packed binaries need that the archive does not carry itself: the closure treats
them as needs of the executable.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from .elf import read_elf

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

_EXTRACT = """\
import json, os, sys
from PyInstaller.archive.readers import CArchiveReader
archive = CArchiveReader(sys.argv[1])
names = []
for name, entry in sorted(archive.toc.items()):
    if entry[-1] == 'b':  # PKG_ITEM_BINARY: libpython, extensions, shared libraries
        path = os.path.join(sys.argv[2], str(len(names)))
        with open(path, 'wb') as out:
            out.write(archive.extract(name))
        names.append(name)
print(json.dumps(names))
"""


def packed_needs(venv_python: Path, executable: Path, *, runner: Runner = subprocess.run,
                 env: dict[str, str] | None = None,
                 scratch: Path | None = None) -> tuple[str, ...] | None:
    """The sonames the binaries packed in ``executable`` need and do not pack, sorted;
    None when the archive cannot be read (the closure then checks what it can).
    ``scratch`` is where they are unpacked to be read (a dir the runner can write)."""
    with tempfile.TemporaryDirectory(prefix="onefile-", dir=scratch) as tmp:
        proc = runner([str(venv_python), "-c", _EXTRACT, str(executable), tmp], env=env,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if proc.returncode != 0:
            return None
        try:
            names = json.loads((proc.stdout or "").strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
        provided = {name.rsplit("/", 1)[-1] for name in names}
        needed: set[str] = set()
        for index in range(len(names)):
            with open(Path(tmp) / str(index), "rb") as f:
                info = read_elf(f)
            if info is not None:
                needed.update(info.needed)
                if info.soname:
                    provided.add(info.soname)
    return tuple(sorted(needed - provided))


def recorded_needs(executable: Path, venv_python: Path, *, runner: Runner = subprocess.run,
                   env: dict[str, str] | None = None,
                   scratch: Path | None = None) -> tuple[str, ...]:
    """:func:`packed_needs` of a cached onefile output (``<dist>/<exe>``), kept beside
    it as ``<dist>.needs`` so a cached build reads it instead; () when it cannot be told
    (the build venv is gone, the archive unreadable)."""
    record = executable.parent.with_name(executable.parent.name + ".needs")
    try:
        return tuple(record.read_text(encoding="utf-8").split())
    except OSError:
        pass
    if not venv_python.exists():
        return ()
    needs = packed_needs(venv_python, executable, runner=runner, env=env, scratch=scratch)
    if needs is None:
        return ()
    tmp = record.with_name(record.name + ".tmp")
    try:
        tmp.write_text("".join(name + "\n" for name in needs), encoding="utf-8")
        tmp.replace(record)
    except OSError:
        pass  # best effort: the next build reads the archive again
    return needs
