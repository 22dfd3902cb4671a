"""A content-addressed cache of ``.deb`` files and of the files inside them.

Layout under the cache root (``$OCIBUILD_CACHE`` or ``~/.cache/ocibuild``)::

    debian/debs/<sha256>.deb             the package, exactly as the lock pins it
    debian/debs/<sha256>.members.json    its data.tar listing (paths, modes, blobs)
    debian/blobs/<sha256>                each regular file's content

Every write goes to a temp file in the same directory, is checked, then
renamed into place; a digest mismatch deletes the temp file and raises. Once a
package is cached nothing touches the network: the mirror is only looked up
(lazily) for a package that is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ...cache import clear_non_file, file_sha256, read_record
from ...errors import DebianError, DigestMismatchError, InputError
from ...layers.entries import Kind, image_path
from ...progress import NullProgress, Progress
from .archive import RequestsTransport, Transport
from .deb import DebFile, Member
from .lock import LockedPackage

_MEMBERS_VERSION = 1



_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _valid_member(m: object) -> bool:
    """A members-index row as :meth:`DebCache.members` writes them: a damaged or planted
    index (a blob name like ``../../etc/shadow``, a path out of the image) is rebuilt."""
    if not (isinstance(m, list) and len(m) == 8):
        return False
    path, kind, mode, uid, gid, size, blob, target = m
    if not (isinstance(path, str) and isinstance(kind, str) and isinstance(blob, str)
            and isinstance(target, str)):
        return False
    if not all(type(v) is int and v >= 0 for v in (mode, uid, gid, size)):
        return False
    try:
        if image_path(path) != path:
            return False
    except InputError:
        return False
    return blob == "" or bool(_SHA256_HEX.fullmatch(blob))

class DebCache:
    """The Debian part of the ocibuild cache."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "debian"
        self.debs = self.root / "debs"
        self.blobs = self.root / "blobs"

    def deb_path(self, sha256: str) -> Path:
        return self.debs / f"{sha256}.deb"

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def ensure(self, pkg: LockedPackage, mirror: Callable[[], str],
               transport: Transport | None = None, progress: Progress | None = None) -> Path:
        """Return the cached ``.deb`` for ``pkg``, downloading it if needed.

        ``mirror`` is only called when the package is not cached yet; ``progress``
        shows the download's bytes.
        """
        path = self.deb_path(pkg.sha256)
        if path.is_file():
            if path.stat().st_size == pkg.size and file_sha256(path) == pkg.sha256:
                return path
            path.unlink()   # damaged in the cache: fetch it again
        self.debs.mkdir(parents=True, exist_ok=True)
        url = f"{mirror().rstrip('/')}/{pkg.filename}"
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=self.debs)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with (progress or NullProgress()).task(f"download {pkg.name} {pkg.version}",
                                                   total=pkg.size) as task:
                (transport or RequestsTransport()).get_file(url, tmp, on_bytes=task.advance)
            size, digest = tmp.stat().st_size, file_sha256(tmp)
            if size != pkg.size or digest != pkg.sha256:
                raise DigestMismatchError(f"{url} (package {pkg.name} {pkg.version} from the lock)",
                                          f"sha256:{pkg.sha256} ({pkg.size} bytes)",
                                          f"sha256:{digest} ({size} bytes)")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def store_blob(self, stream: BinaryIO, size: int) -> str:
        """Copy a stream into ``blobs/`` under its sha256; return the hex digest."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".blob-", dir=self.blobs)
        h = hashlib.sha256()
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
            if written != size:
                raise DebianError(f"short read: expected {size} bytes, got {written}")
            digest = h.hexdigest()
            final = self.blob_path(digest)
            if final.exists():
                os.unlink(tmp_name)
            else:
                os.replace(tmp_name, final)
            return digest
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def _blob_ok(self, member: Member) -> bool:
        try:
            return self.blob_path(member.blob).stat().st_size == member.size
        except OSError:
            return False

    def members(self, pkg: LockedPackage, deb: Path) -> tuple[dict[str, bytes], list[Member]]:
        """The control files and data members of a cached ``.deb`` (memoized on disk)."""
        index = self.debs / f"{pkg.sha256}.members.json"
        doc = read_record(index)
        if isinstance(doc, dict):
            try:
                if doc.get("v") == _MEMBERS_VERSION and all(
                        _valid_member(m) for m in doc["members"]):
                    members = [Member(m[0], Kind(m[1]), m[2], m[3], m[4], m[5], m[6], m[7])
                               for m in doc["members"]]
                    if all(m.kind != Kind.FILE or self._blob_ok(m) for m in members):
                        control = {k: v.encode("latin-1") for k, v in doc["control"].items()}
                        return control, members
            except (ValueError, KeyError, IndexError, TypeError):
                pass  # rebuild below
        with DebFile(deb) as f:
            control = {k: v for k, v in f.control_files().items()
                       if k in ("control", "md5sums")}
            members = list(f.data_members(self.store_blob))
        doc = {"v": _MEMBERS_VERSION,
               "control": {k: v.decode("latin-1") for k, v in control.items()},
               "members": [[m.path, m.kind.value, m.mode, m.uid, m.gid, m.size, m.blob, m.target]
                           for m in members]}
        fd, tmp_name = tempfile.mkstemp(prefix=".members-", dir=self.debs)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(doc, out)
            clear_non_file(index)
            os.replace(tmp_name, index)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return control, members
