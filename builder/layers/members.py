"""The one check every tar member ocibuild reads goes through.

A ``tar:`` layer, a pulled base's layers and the layers of an image tarball
(inspect, audit, SBOM, push) are all read with :class:`CheckedTarInfo` as
``tarfile``'s header class and every member passed to a :class:`MemberCheck`,
so what is refused in one is refused in all:

* a path, symlink or hard link that leaves the image root, and a whiteout
  naming no file (``.wh.``, ``.wh..``, ``.wh...``);
* a name or link name holding a NUL byte (a ustar field with bytes after its
  terminating NUL, which ``tarfile`` would silently cut);
* an owner id outside ``0 … MAX_ID`` (GNU tar refuses those too);
* a pax or GNU long-name header larger than :data:`MAX_PAX_HEADER_BYTES`
  (``tarfile`` reads one whole into memory);
* a hard link to anything but an earlier regular file of the same archive;
* a member below an earlier symlink of the same archive (``a -> /`` then
  ``a/x``: an extractor following the link writes outside the root);
* a member ending past ``limit`` (:data:`MAX_LAYER_TAR_BYTES`) of tar stream;
* unless ``special_files`` is allowed: devices, FIFOs and sparse files.
"""

from __future__ import annotations

import tarfile

from ..errors import InputError, UnsafePathError
from .entries import tar_member_paths

MAX_ID = 2**32 - 2
"""The largest uid/gid a member may carry (Linux ids are 32-bit; ``2**32 - 1`` is -1)."""
MAX_LAYER_TAR_BYTES = 8 << 30
"""The largest uncompressed tar stream a layer (``tar:`` or pulled) may expand to
(8 GiB): a member ending past it is refused at its header, a stream growing past
it as it is read, so a gzip bomb stops there."""
MAX_PAX_HEADER_BYTES = 1 << 20
"""The largest pax extended header or GNU long name/link record read (1 MiB)."""

_LONG_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# ustar fields holding names: name, linkname, prefix (offset, length)
_NAME_FIELDS = ((0, 100, "name"), (157, 100, "link name"), (345, 155, "name prefix"))


class MemberError(InputError):
    """A member refused while its header was read (the archive is named by the caller)."""


class CheckedTarInfo(tarfile.TarInfo):
    """``tarfile``'s header class, refusing what cannot be checked after parsing:
    oversized pax/long-name records and name fields with bytes after a NUL."""

    nul_in_name = False

    @classmethod
    def frombuf(cls, buf, encoding, errors):  # type: ignore[no-untyped-def, override]
        info = super().frombuf(buf, encoding, errors)
        if info.type in _LONG_TYPES and info.size > MAX_PAX_HEADER_BYTES:
            raise MemberError(f"a {info.size}-byte extended header (at most "
                              f"{MAX_PAX_HEADER_BYTES} are read)")
        if info.type not in _LONG_TYPES:
            is_ustar = buf[257:262] == b"ustar"
            for start, length, what in _NAME_FIELDS:
                if what == "name prefix" and not is_ustar:
                    continue
                field = buf[start:start + length]
                cut = field.find(b"\0")
                if cut >= 0 and field[cut:].strip(b"\0"):
                    info.nul_in_name = True
        return info

    def _proc_gnulong(self, tarfile_):  # type: ignore[no-untyped-def]
        """As ``tarfile``'s, but a long name or link with a NUL inside is marked, not cut."""
        buf = tarfile_.fileobj.read(self._block(self.size))
        try:
            next_ = self.fromtarfile(tarfile_)
        except tarfile.HeaderError as e:
            raise tarfile.SubsequentHeaderError(str(e)) from None
        next_.offset = self.offset
        value = tarfile.nts(buf, tarfile_.encoding, tarfile_.errors)
        if b"\0" in buf[:self.size].rstrip(b"\0"):
            next_.nul_in_name = True
        if self.type == tarfile.GNUTYPE_LONGNAME:
            next_.name = value
        elif self.type == tarfile.GNUTYPE_LONGLINK:
            next_.linkname = value
        if next_.isdir():
            next_.name = next_.name.removesuffix("/")
        return next_


class MemberCheck:
    """Checks the members of one archive, in archive order (see the module doc)."""

    def __init__(self, archive: str, *, special_files: bool = False,
                 limit: int = MAX_LAYER_TAR_BYTES) -> None:
        self.archive = archive
        self.special_files = special_files
        self.limit = limit
        self._files: set[str] = set()
        self._symlinks: set[str] = set()

    def __call__(self, info: tarfile.TarInfo) -> tuple[str, str]:
        """The member's image path and checked link target (see
        :func:`tar_member_paths`); raises :class:`InputError` for a refused member."""
        name = info.name
        if getattr(info, "nul_in_name", False) or "\0" in name or "\0" in info.linkname:
            raise UnsafePathError(f"{self.archive}: member {name!r} has a NUL byte in its "
                                  "name or link name")
        path, target = tar_member_paths(info, self.archive)
        if info.offset_data + info.size > self.limit:
            raise InputError(f"{self.archive}: member {name!r} ends past {self.limit} bytes "
                             "of tar; a layer is at most that large")
        for what, value in (("uid", info.uid), ("gid", info.gid)):
            if not 0 <= value <= MAX_ID:
                raise InputError(f"{self.archive}: member {name!r} has {what} {value}, "
                                 f"outside 0…{MAX_ID}")
        if info.size < 0:
            raise InputError(f"{self.archive}: member {name!r} has a negative size")
        if self._symlinks:
            parent = path.rpartition("/")[0]
            while parent:
                if parent in self._symlinks:
                    raise UnsafePathError(
                        f"{self.archive}: member {name!r} lies below the symlink {parent} "
                        "of the same archive; an extractor would follow the link")
                parent = parent.rpartition("/")[0]
        if info.issym():
            self._symlinks.add(path)
        elif info.islnk():
            if target not in self._files:
                raise UnsafePathError(
                    f"{self.archive}: hard link {name!r} points to {info.linkname!r}, which "
                    "is not an earlier regular file of the archive")
            self._files.add(path)
        elif info.isreg():
            if info.issparse() and not self.special_files:
                raise InputError(f"{self.archive}: member {name!r} is a sparse file, which "
                                 "ocibuild does not read; re-create the tarball without "
                                 "--sparse")
            self._files.add(path)
        elif not info.isdir() and not self.special_files:
            raise InputError(f"{self.archive}: member {name!r} is a device or FIFO; "
                             "those cannot go into an image layer")
        if not info.isreg() and not info.islnk():
            self._files.discard(path)
        return path, target
