"""The exception tree of ocibuild.

Every error a user can cause or meet derives from :class:`OcibuildError`; the CLI
turns it into ``error: <message>`` and exit code 1, with no traceback::

    OcibuildError
    ├── ManifestError        a manifest (or base definition) is malformed: file, line, field
    ├── InputError           a file, directory or tarball named by the user is unusable
    │   └── UnsafePathError  a path would land outside the image root
    ├── ImageError           an image tarball / layout is invalid or inconsistent
    ├── DigestMismatchError  downloaded or read bytes do not match their digest
    ├── RegistryError        the registry refused a request (status, codes, redacted URL)
    ├── DebianError          the Debian archive, a lock file or a .deb is unusable
    ├── FreezeError          PyInstaller (or pip in its venv) failed
    │   └── FreezeOptionError  a declared hidden import / collect_data names nothing
    ├── ClosureError         an ELF file needs a library that the image does not hold
    └── SupplyChainError     signing, verification, SBOM or audit failed
"""

from __future__ import annotations

import re

MAX_ECHO_CHARS = 1000
"""Longest line of an error message: a hostile value (or a 4 kB path) echoed in it is cut
in the middle."""


def printable(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` safe to print: control characters other than newline and tab escaped
    (no ANSI sequence from a value), every line cut in the middle beyond ``limit``, and
    every line after the first indented, so no value can start a fake ``error:`` line."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.isprintable():
            line = "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in line)
        if len(line) > limit:
            head, tail = limit * 2 // 3, limit // 4
            line = f"{line[:head]}…[{len(line) - head - tail} characters left out]…{line[-tail:]}"
        if i and not line.startswith((" ", "\t")):
            line = "  " + line
        lines[i] = line
    return "\n".join(lines)


_USERINFO = re.compile(r"(?:^|(?<=[\s'\"(=,\[])|(?<=//))([^\s/@'\":]+):([^\s/'\"]+)@(?!sha256:)")


def redact(text: str) -> str:
    """``text`` with the password of every ``user:password@host`` in it replaced by
    ``***`` (a reference or URL with credentials echoed in a message)."""
    return _USERINFO.sub(r"\1:***@", text) if "@" in text else text


class OcibuildError(Exception):
    """Root of every error ocibuild raises on purpose."""


class ManifestError(OcibuildError):
    """A manifest is malformed. The message names file, line and field path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, column: int | None = None) -> None:
        self.file, self.line, self.field, self.detail = file, line, field, message
        self.column = column
        where = ""
        if file:
            where = f"{file}: "
            if line:
                where = f"{file}:{line}:{column}: " if column else f"{file}:{line}: "
        super().__init__(printable(f"{where}{field + ': ' if field else ''}{message}"))


class InputError(OcibuildError):
    """A file or directory named by the user is missing or unusable."""


class UnsafePathError(InputError):
    """A path would escape the image root (``..``, absolute symlink tricks)."""


class ImageError(OcibuildError):
    """An image tarball, layout or blob is invalid or inconsistent."""


class DigestMismatchError(OcibuildError):
    """Bytes do not match the digest (or size) they were announced with."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")


class RegistryError(OcibuildError):
    """A registry answered with an error, or could not be reached.

    ``status`` is the HTTP status (None when no answer came), ``codes`` the
    registry's error codes, ``url`` has credentials and query strings removed,
    and ``temporary`` says whether retrying later may help. ``retry_after`` is
    the wait the registry asked for; ``attempts`` is set once retrying gave up
    (an error that has it is final: no outer loop tries again).
    """

    def __init__(self, message: str, *, status: int | None = None,
                 codes: tuple[str, ...] = (), method: str | None = None,
                 url: str | None = None, temporary: bool = False,
                 retry_after: float | None = None, attempts: int | None = None) -> None:
        self.status, self.codes, self.method, self.url = status, codes, method, url
        self.temporary, self.retry_after, self.attempts = temporary, retry_after, attempts
        self.message = message
        super().__init__(message)

    def replace(self, **changes: object) -> "RegistryError":
        """A copy with ``changes`` (``message`` included): the one way an error is
        re-worded or given context, keeping everything else it carries."""
        fields = dict(message=self.message, status=self.status, codes=self.codes,
                      method=self.method, url=self.url, temporary=self.temporary,
                      retry_after=self.retry_after, attempts=self.attempts)
        fields.update(changes)
        message = fields.pop("message")
        return RegistryError(message, **fields)  # type: ignore[arg-type]

    def gave_up(self, attempts: int) -> "RegistryError":
        """This error, final, saying how many attempts were made (said once only)."""
        if self.attempts is not None:
            return self
        plural = "" if attempts == 1 else "s"
        return self.replace(message=f"{self.message} (gave up after {attempts} "
                                    f"attempt{plural})", attempts=attempts)


class DebianError(OcibuildError):
    """The Debian archive, a lock file or a .deb package is unusable."""


class FreezeError(OcibuildError):
    """Freezing a Python app (venv, pip, PyInstaller) failed."""


class FreezeOptionError(FreezeError):
    """A declared freeze option names nothing (a hidden import that does not exist);
    ``option`` is its name in the manifest (``hidden_imports``), for file:line:field."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class ClosureError(OcibuildError):
    """An ELF file in the image needs a shared library the image does not have."""


class SupplyChainError(OcibuildError):
    """Signing, verification, SBOM generation or audit failed."""
