"""``<name>.lock.json``: the exact packages a base is built from.

A definition for one ``architecture`` has a lock of one document; one listing
``architectures`` has ``{"lockVersion": 1, "architectures": {"amd64": {…},
"arm64": {…}}}``, each value the same document a single-architecture lock holds
(without ``lockVersion``), so an old lock keeps its meaning and its bytes.

The lock names no mirror (any mirror of the same archive serves the same
paths), only archive paths and digests, so it can be committed and used on
any machine. Written to a temp file beside the target and renamed, so a
reader never sees half a lock and an error leaves the old one in place.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...errors import DebianError

LOCK_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    architecture: str
    filename: str        # archive path, e.g. pool/main/g/glibc/libc6_..._amd64.deb
    size: int
    sha256: str
    suite: str = ""      # the suite it was resolved from (bookworm, bookworm-security, ...)


@dataclass(frozen=True)
class LockedIndex:
    path: str            # e.g. dists/bookworm/InRelease
    size: int
    sha256: str


@dataclass(frozen=True)
class Lock:
    suite: str
    codename: str
    version: str         # Release "Version", e.g. 12.12 (feeds /etc/os-release)
    architecture: str
    components: tuple[str, ...]
    requested: tuple[str, ...]
    exclude: tuple[str, ...]
    indexes: tuple[LockedIndex, ...]
    packages: tuple[LockedPackage, ...]
    suites: tuple[str, ...] = ()   # every suite resolved from, the main one first

    def to_json(self) -> bytes:
        return _dump({"lockVersion": LOCK_VERSION, **self.to_doc()})

    def to_doc(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "codename": self.codename, "version": self.version,
            "suites": list(self.suites or (self.codename,)),
            "architecture": self.architecture, "components": list(self.components),
            "requested": list(self.requested), "exclude": list(self.exclude),
            "indexes": [asdict(i) for i in self.indexes],
            "packages": [asdict(p) for p in sorted(self.packages, key=lambda p: p.name)],
        }


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


def locks_json(locks: list[Lock]) -> bytes:
    """The lock file of a definition listing ``architectures``, one section each."""
    return _dump({"lockVersion": LOCK_VERSION,
                  "architectures": {lock.architecture: lock.to_doc() for lock in locks}})


def write_lock(lock: Lock | list[Lock], path: Path) -> Path:
    """Atomically write ``lock`` (or a list: one per architecture) to ``path`` (temp
    file in the same dir + rename)."""
    path = Path(path)
    data = lock.to_json() if isinstance(lock, Lock) else locks_json(lock)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)   # mkstemp's 0600 is wrong for a committed file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_lock(path: Path, architecture: str | None = None) -> Lock:
    """Load and validate a lock (of a multi-architecture lock, the section for
    ``architecture``); every problem is a :class:`DebianError` naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DebianError(f"{path}: lock file not found (run 'ocibuild lock' on the "
                          "base definition first)") from e
    except (OSError, ValueError) as e:
        raise DebianError(f"{path}: unreadable lock file: {e}") from e
    if not isinstance(doc, dict) or doc.get("lockVersion") != LOCK_VERSION:
        raise DebianError(f"{path}: unsupported lockVersion "
                          f"{doc.get('lockVersion') if isinstance(doc, dict) else None!r}")
    sections = doc.get("architectures")
    if isinstance(sections, dict):
        if architecture not in sections:
            raise DebianError(f"{path} has no lock for {architecture} (it has "
                              f"{', '.join(sorted(sections)) or 'none'}): run 'ocibuild "
                              "lock' on the base definition")
        doc = sections[architecture]
        if not isinstance(doc, dict):
            raise DebianError(f"{path}: architectures.{architecture} is not an object")
    return _parse(doc, path)


def lock_architectures(path: Path) -> tuple[str, ...] | None:
    """The architectures a multi-architecture lock holds; None for a single one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sections = doc.get("architectures") if isinstance(doc, dict) else None
    return tuple(sections) if isinstance(sections, dict) else None


def _parse(doc: dict[str, Any], path: Path) -> Lock:
    try:
        packages = tuple(LockedPackage(str(p["name"]), str(p["version"]),
                                       str(p["architecture"]), str(p["filename"]),
                                       int(p["size"]), str(p["sha256"]),
                                       str(p.get("suite") or doc["codename"]))
                         for p in doc["packages"])
        indexes = tuple(LockedIndex(str(i["path"]), int(i["size"]), str(i["sha256"]))
                        for i in doc["indexes"])
        lock = Lock(str(doc["suite"]), str(doc["codename"]), str(doc.get("version", "")),
                    str(doc["architecture"]), tuple(doc["components"]),
                    tuple(doc["requested"]), tuple(doc["exclude"]), indexes, packages,
                    tuple(doc.get("suites") or (doc["codename"],)))
    except (KeyError, TypeError, ValueError) as e:
        raise DebianError(f"{path}: malformed lock file: {e!r}") from e
    for p in lock.packages:
        if not _SHA256.match(p.sha256):
            raise DebianError(f"{path}: package {p.name}: sha256 {p.sha256!r} is not 64 hex digits")
        if p.filename.startswith("/") or ".." in p.filename.split("/"):
            raise DebianError(f"{path}: package {p.name}: unsafe filename {p.filename!r}")
    return lock
