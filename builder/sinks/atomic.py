"""Write-then-rename helpers: an interrupted write never leaves a partial output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import InputError


@contextlib.contextmanager
def atomic_file(path: Path, *, remove_stale: bool = False) -> Iterator[BinaryIO]:
    """Yield a temp file beside ``path``; rename it over ``path`` only on success.

    An interrupted or failed write leaves ``path`` as it was. There is no fsync:
    like ``tar``, ``docker save`` and the layer cache, the output is safe against
    the build being killed, not against the machine losing power (an fsync of a
    100 MB image costs more than the rest of a no-op rebuild).

    The temp file's name holds the writer's pid. With ``remove_stale``, temp files
    for ``path`` left by writers that no longer run (a build killed with SIGKILL,
    which nothing can clean up after) are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if remove_stale:
        remove_stale_temps(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(directory: Path, prefix: str) -> None:
    """Unlink ``<prefix><pid>.….tmp`` files in ``directory`` whose pid is not a live
    process: what writers killed with SIGKILL left behind."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(directory / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; swap it in only on success.

    An existing ``path`` is replaced only if it is an OCI layout (it holds an
    ``oci-layout`` file) or empty: ocibuild never deletes a directory it did not
    write.
    """
    path = Path(path)
    if path.exists() and not _replaceable_layout(path):
        raise InputError(f"{path} exists and is not an OCI layout directory; "
                         "refusing to replace it (remove it or choose another -o)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replaceable_layout(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    return (path / "oci-layout").is_file() or not any(path.iterdir())
