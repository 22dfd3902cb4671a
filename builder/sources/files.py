"""Host files and directory trees → layer entries.

Host permission bits are normalized (0755 if any execute bit is set, else 0644;
directories 0755) so the umask of a checkout cannot change an image digest;
an explicit ``mode`` overrides them. Host owners, times and xattrs are ignored.
"""

from __future__ import annotations

import operator
import os
import posixpath
import stat
from pathlib import Path

from ..errors import InputError
from ..layers.entries import Entry, FileOpener, Kind, collector_paused, image_path


def normalized_mode(st_mode: int) -> int:
    if stat.S_ISDIR(st_mode):
        return 0o755
    return 0o755 if st_mode & 0o111 else 0o644


def file_entry(src: Path | str, dest: str, st: os.stat_result, mode: int | None, uid: int,
               gid: int) -> Entry:
    return _file_entry(os.fspath(src), image_path(dest), st, mode, uid, gid)


def _file_entry(src: str, dest: str, st: os.stat_result, mode: int | None, uid: int,
                gid: int) -> Entry:
    """A FILE entry for host file ``src`` at the already-normalized image path ``dest``."""
    st_mode, ino, dev, nlink, _, _, size = st[:7]
    if mode is None:
        mode = (0o755 if st_mode & 0o111 else 0o644) | (st_mode & 0o6000)
    return Entry(dest, Kind.FILE, mode, uid, gid, size, FileOpener(src),
                 link_key=(dev, ino) if nlink > 1 else None,
                 stamp=(dev, ino, size, st.st_mtime_ns, st.st_ctime_ns))


def tree_entries(src: Path, dest: str, mode: int | None = None, uid: int = 0,
                 gid: int = 0, dir_mode: int | None = None) -> list[Entry]:
    """Entries for a host file or directory tree placed at image path ``dest``.

    For a file, ``dest`` is the file's image path (or a directory when it ends
    with ``/``). For a directory, its *contents* go under ``dest``. Symlinks are
    kept as symlinks (their targets must stay inside the image root); sockets,
    devices and FIFOs are refused.
    """
    src = Path(src)
    try:
        top = src.lstat()
    except FileNotFoundError as e:
        raise InputError(f"{src}: no such file or directory") from e
    if stat.S_ISDIR(top.st_mode):
        root = image_path(dest)
        entries = [Entry.directory(root, dir_mode or 0o755, uid, gid)] if root != "/" else []
        with collector_paused():
            _walk(os.fspath(src), "" if root == "/" else root, entries, mode, uid, gid,
                  dir_mode or 0o755)
        return _relative_inner_links(entries, os.path.abspath(src), root)
    if dest.endswith("/"):
        dest = posixpath.join(dest, src.name)
    return [_one(src, image_path(dest), mode, uid, gid, dir_mode)]


def _relative_inner_links(entries: list[Entry], host_root: str, image_root: str) -> list[Entry]:
    """Absolute symlinks that point into the walked tree become relative links.

    ``/home/me/proj/data/current -> /home/me/proj/data/v2`` would otherwise put a
    build-host path into the image (dangling there, and a digest that depends on
    the checkout's location); it becomes ``current -> v2``. Absolute targets
    elsewhere are image paths (``/usr/share/zoneinfo/UTC``) and stay as written.
    """
    prefix = host_root.rstrip("/") + "/"
    out = []
    for entry in entries:
        if entry.kind is Kind.SYMLINK and (entry.target + "/").startswith(prefix):
            inside = posixpath.join(image_root, os.path.relpath(entry.target, host_root))
            target = posixpath.relpath(image_path(inside), posixpath.dirname(entry.path))
            entry = Entry.symlink(entry.path, target, entry.uid, entry.gid)
        out.append(entry)
    return out


def _walk(host: str, base: str, out: list[Entry], mode: int | None, uid: int, gid: int,
          dir_mode: int) -> None:
    """Append the entries under host dir ``host`` (image dir ``base``, "" for the root).

    The order is that of ``os.walk`` (top-down; per dir, the sorted names of its
    dirs, symlinks to dirs included, then of its other members). A name read from
    a directory has no ``/`` and is never ``.`` or ``..``, so ``base + "/" + name``
    is already a normalized image path below ``base``: no :func:`image_path` call.
    Members are listed and stat'ed relative to the directory's descriptor, which
    spares the kernel a lookup of every parent per file. The walk keeps its own
    stack, so a tree nested thousands of levels deep is no RecursionError.
    """
    stack = [(host, base)]
    while stack:
        host, base = stack.pop()
        dirs = _list(host, base, out, mode, uid, gid, dir_mode)
        stack.extend((host + "/" + name, base + "/" + name) for name in reversed(dirs))


def _list(host: str, base: str, out: list[Entry], mode: int | None, uid: int, gid: int,
          dir_mode: int) -> list[str]:
    """Append the members of one host dir; return its subdirectories to walk into."""
    dirs: list[tuple[str, bool]] = []
    others: list[os.DirEntry[str]] = []
    files: list[tuple[str, os.stat_result | None]] = []
    try:
        fd = os.open(host, _DIR_FLAGS)
        try:  # DirEntry calls may need the descriptor (fstatat): all of them in here
            with os.scandir(fd) as it:
                for d in it:
                    try:
                        is_dir = d.is_dir()
                    except OSError:
                        is_dir = False
                    if is_dir:
                        dirs.append((d.name, d.is_symlink()))
                    else:
                        others.append(d)
            others.sort(key=_by_name)
            for d in others:
                try:
                    files.append((d.name, d.stat(follow_symlinks=False)))
                except OSError:
                    files.append((d.name, None))
        finally:
            os.close(fd)
    except OSError as e:
        raise InputError(f"{host}: cannot list the directory ({e.strerror})") from e
    dirs.sort()
    for name, _ in dirs:
        out.append(_member(host + "/" + name, base + "/" + name, mode, uid, gid, dir_mode))
    for name, st in files:
        if st is not None and stat.S_ISREG(st.st_mode):
            out.append(_file_entry(host + "/" + name, base + "/" + name, st, mode, uid, gid))
        else:  # not a file, or gone since listed: _member says so, naming the full path
            out.append(_member(host + "/" + name, base + "/" + name, mode, uid, gid, dir_mode))
    return [name for name, is_link in dirs if not is_link]


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_by_name = operator.attrgetter("name")


def _member(host: str, dest: str, mode: int | None, uid: int, gid: int,
            dir_mode: int) -> Entry:
    """One walked member; ``dest`` is already a normalized image path."""
    st = os.lstat(host)
    if stat.S_ISREG(st.st_mode):
        return _file_entry(host, dest, st, mode, uid, gid)
    if stat.S_ISDIR(st.st_mode):
        return Entry(dest, Kind.DIR, dir_mode, uid, gid)
    return _one(Path(host), dest, mode, uid, gid, dir_mode)


def _one(host: Path, dest: str, mode: int | None, uid: int, gid: int,
         dir_mode: int | None) -> Entry:
    st = host.lstat()
    if stat.S_ISLNK(st.st_mode):
        return Entry.symlink(dest, os.readlink(host), uid, gid)
    if stat.S_ISDIR(st.st_mode):
        return Entry.directory(dest, dir_mode or 0o755, uid, gid)
    if stat.S_ISREG(st.st_mode):
        return _file_entry(os.fspath(host), dest, st, mode, uid, gid)
    raise InputError(f"{host}: not a regular file, directory or symlink "
                     "(sockets, devices and FIFOs cannot go into an image)")
