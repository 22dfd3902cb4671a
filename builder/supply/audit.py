"""``ocibuild audit``: the classic container mistakes, found in a finished image.

One streaming pass over the layers, bottom to top. Each regular file is read
once, in blocks: its MD5 is kept (to compare with the image's own dpkg
``status.d/<pkg>.md5sums``), and its bytes are searched for whole secrets
(:mod:`.secrets`: complete private keys that parse, tokens of their real shape,
``.env`` values random enough). Secrets count in every layer, including files a
later layer deletes with a whiteout: the bytes are still in the image's blobs.
Everything else is judged on the final file system the container sees. An
allowlist (:mod:`.allowlist`) marks accepted findings suppressed.

Severities: ``critical`` and ``high`` and ``medium`` fail the audit by
default (``--fail-on`` moves the threshold); ``low`` and ``info`` are reported
only.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..layers.entries import image_path
from ..layers.reader import iter_members
from ..oci.image import Image
from ..oci.types import BASE_NAME_ANNOTATION
from ..layers.whiteouts import apply_whiteouts, whiteout_target
from .allowlist import AllowEntry
from .secrets import TOKEN_RULES, Secret, SecretScanner, find_env_secrets, is_env_file

SEVERITIES = ("info", "low", "medium", "high", "critical")
DEFAULT_FAIL_ON = "medium"

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish",
                    "busybox", "toybox"})
PACKAGE_MANAGERS = frozenset({"apt", "apt-get", "aptitude", "dpkg", "rpm", "yum", "dnf",
                              "microdnf", "zypper", "apk", "pip", "pip3", "pacman", "conda",
                              "npm", "gem"})
_BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
_PIP_VERSIONED = re.compile(r"^pip3\.\d+$")

_BLOCK = 1 << 20
_SHELL_BANNERS = tuple(re.compile(p) for p in (rb"BusyBox v[0-9]", rb"GNU bash, version ",
                                                rb"Toybox [0-9]"))
"""Version banners compiled into shell binaries: a shell under any name is found. (One
pattern each: an alternation has no literal prefix, and re then scans 10x slower.)"""
_TEXT_LIMIT = 1 << 20


RULES = tuple(sorted({"root-user", "base-unpinned", "private-key", "env-file", "env-secret",
                      "shell", "package-manager", "setuid", "world-writable", "dpkg-modified"}
                     | {rule.rule for rule in TOKEN_RULES}))
"""Every rule a finding can come from (its ``id``; what an allowlist names)."""


@dataclass(frozen=True)
class Suppression:
    reason: str
    where: str
    """``FILE:LINE`` of the allowlist entry."""


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    message: str
    path: str | None = None
    layer: int | None = None
    excerpt: str | None = None
    """For a secret: what matched, redacted."""
    suppressed: Suppression | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "severity": self.severity, "message": self.message}
        if self.path is not None:
            out["path"] = self.path
        if self.layer is not None:
            out["layer"] = self.layer
        if self.excerpt is not None:
            out["excerpt"] = self.excerpt
        if self.suppressed is not None:
            out["suppressed"] = {"reason": self.suppressed.reason,
                                 "allowlist": self.suppressed.where}
        return out


@dataclass
class AuditReport:
    digest: str
    name: str | None
    findings: list[Finding]
    fail_on: str = DEFAULT_FAIL_ON

    @property
    def failures(self) -> list[Finding]:
        threshold = SEVERITIES.index(self.fail_on)
        return [f for f in self.findings
                if SEVERITIES.index(f.severity) >= threshold and f.suppressed is None]

    @property
    def suppressed(self) -> list[Finding]:
        return [f for f in self.findings if f.suppressed is not None]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"image": self.name, "digest": self.digest, "passed": self.passed,
                "fail_on": self.fail_on, "findings": [f.to_json() for f in self.findings]}


@dataclass
class _File:
    """What the final view needs to know about one path."""

    layer: int
    mode: int
    uid: int
    kind: bytes
    md5: str | None = None
    linkname: str = ""
    shell: str | None = None
    """For an ELF program: which shell it is by its content (a renamed busybox)."""


@dataclass
class _Scan:
    view: dict[str, _File] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    secrets: list[tuple[str, int, Secret]] = field(default_factory=list)
    """(path, layer, secret) for every secret seen in any layer."""
    md5sums: dict[str, bytes] = field(default_factory=dict)


def audit(image: Image, *, name: str | None = None, digest: str | None = None,
          fail_on: str = DEFAULT_FAIL_ON, allowlist: Sequence[AllowEntry] = ()) -> AuditReport:
    """Audit ``image``; the report's ``passed`` says whether nothing reached ``fail_on``
    (findings an ``allowlist`` entry matches are kept, marked suppressed, and never fail)."""
    scan = _Scan()
    for index, layer in enumerate(image.layers):
        _scan_layer(scan, index, layer)
    findings = _user_findings(image)
    findings += _base_findings(image)
    findings += _secret_findings(scan)
    findings += _file_findings(scan.view)
    findings += _dpkg_findings(scan)
    findings = [_suppress(f, allowlist) for f in findings]
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (f.suppressed is not None, order[f.severity], f.id,
                                 f.path or "", f.layer or 0))
    return AuditReport(digest or image.digest, name, findings, fail_on)


# -- the scan ---------------------------------------------------------------------

def _scan_layer(scan: _Scan, index: int, layer: Any) -> None:
    whiteouts: list[tuple[str, bool]] = []
    added: dict[str, _File] = {}
    for member, tar, info in iter_members(layer, index):
        if member.path == "/":
            continue
        hidden = whiteout_target(member.path)
        if hidden is not None:
            whiteouts.append(hidden)
            continue
        entry = _File(index, info.mode, info.uid, info.type, linkname=info.linkname)
        if info.isfile():
            entry.md5, entry.shell = _read_file(scan, tar, info, member.path, index)
        elif info.islnk():
            target = image_path(info.linkname)
            source = added.get(target) or scan.view.get(target)
            entry.md5 = source.md5 if source else None
            entry.shell = source.shell if source else None
        added[member.path] = entry
    apply_whiteouts(scan.view, whiteouts)
    for path, entry in added.items():
        old = scan.view.get(path)
        if old is not None and old.kind == tarfile.DIRTYPE and entry.kind != tarfile.DIRTYPE:
            apply_whiteouts(scan.view, [(path, True)])  # a file replaces a whole directory
        scan.view[path] = entry


def _read_file(scan: _Scan, tar: tarfile.TarFile, info: tarfile.TarInfo, path: str,
               index: int) -> tuple[str, str | None]:
    """A file's md5 (for dpkg's md5sums) and, for an ELF program, the shell it is;
    secrets found on the way go to ``scan``."""
    stream = tar.extractfile(info)
    md5 = hashlib.md5(usedforsecurity=False)
    if stream is None:
        return md5.hexdigest(), None
    small = info.size <= _TEXT_LIMIT
    head = b""
    tail = b""
    elf: bool | None = None
    shell: str | None = None
    secrets = SecretScanner()
    while True:
        block = stream.read(_BLOCK)
        if not block:
            break
        md5.update(block)
        if elf is None:
            elf = block.startswith(b"\x7fELF")
        if small:
            head += block
        secrets.feed(block)
        if elf and shell is None:
            window = tail + block
            banner = next((m for p in _SHELL_BANNERS if (m := p.search(window))), None)
            if banner:
                shell = banner.group(0).split()[0].decode()
        tail = block[-64:]
    scan.secrets += [(path, index, secret) for secret in secrets.secrets()]
    if small and is_env_file(posixpath.basename(path)) and b"\0" not in head[:8192]:
        scan.secrets.append((path, index, Secret("env-file", "an .env file", "", 0)))
        scan.secrets += [(path, index, secret)
                         for secret in find_env_secrets(head.decode("utf-8", "replace"))]
    if path.startswith("/var/lib/dpkg/status.d/") and path.endswith(".md5sums") and small:
        scan.md5sums[path] = head
    return md5.hexdigest(), shell


def format_finding(f: Finding) -> str:
    """One line of the text report."""
    line = f"{f.severity.upper():<8} {f.id:<16} {f.message}"
    if f.excerpt:
        line += f" [{f.excerpt}]"
    if f.suppressed:
        line = f"{line} (suppressed by {f.suppressed.where}: {f.suppressed.reason})"
    return line


def _suppress(finding: Finding, allowlist: Sequence[AllowEntry]) -> Finding:
    for entry in allowlist:
        if entry.matches(finding.id, finding.path):
            return replace(finding, suppressed=Suppression(entry.reason, entry.where))
    return finding


# -- judging -------------------------------------------------------------------------

def _user_findings(image: Image) -> list[Finding]:
    user = str((image.config.get("config") or {}).get("User") or "").strip()
    name = user.split(":", 1)[0]
    if name in ("", "root", "0"):
        shown = f"User is {user!r}" if user else "no User is set"
        return [Finding("root-user", "high", f"the container runs as root ({shown}); set "
                                             "config.user to a non-root uid such as 65532")]
    return []


def _base_findings(image: Image) -> list[Finding]:
    """A base named by tag (``org.opencontainers.image.base.name`` without a digest)
    means the next build may start from different bytes."""
    base = image.manifest_annotations.get(BASE_NAME_ANNOTATION, "")
    if base and "@sha256:" not in base:
        pinned = image.manifest_annotations.get("org.opencontainers.image.base.digest")
        hint = ""
        if pinned:
            from ..registry.reference import parse_reference
            try:
                hint = f"; pin it: {parse_reference(base).name}@{pinned}"
            except Exception:  # noqa: BLE001 - the hint is a courtesy
                hint = f"; it was {pinned}"
        return [Finding("base-unpinned", "medium",
                        f"the base image {base} is not pinned by digest{hint}")]
    return []


def _secret_findings(scan: _Scan) -> list[Finding]:
    out = []
    for path, layer, secret in scan.secrets:
        entry = scan.view.get(path)
        live = entry is not None and entry.layer == layer
        where = f"layer {layer}" + ("" if live else
                                    " (deleted or replaced by a later layer, but still in "
                                    "that layer's blob)")
        severity = "low" if secret.rule == "env-file" else "critical"
        out.append(Finding(secret.rule, severity, f"{path} holds {secret.what}, in {where}",
                           path, layer, secret.excerpt or None))
    return out


def _file_findings(view: dict[str, _File]) -> list[Finding]:
    out = []
    for path in sorted(view):
        entry = view[path]
        base = posixpath.basename(path)
        directory = posixpath.dirname(path)
        is_exec = entry.kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE,
                                 tarfile.SYMTYPE)
        if entry.shell and base not in SHELLS:
            out.append(Finding("shell", "medium", f"{path}: a shell ({entry.shell}, by its "
                               "content) is present (an attacker's first tool)", path,
                               entry.layer))
        elif is_exec and directory in _BIN_DIRS or (is_exec and base == "busybox"):
            if base in SHELLS:
                out.append(Finding("shell", "medium", f"{path}: a shell is present "
                                   "(an attacker's first tool)", path, entry.layer))
            elif base in PACKAGE_MANAGERS or _PIP_VERSIONED.match(base):
                out.append(Finding("package-manager", "medium",
                                   f"{path}: a package manager is present", path, entry.layer))
        if entry.kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE) and \
                entry.mode & (stat.S_ISUID | stat.S_ISGID):
            bits = " and ".join(b for b, m in (("setuid", stat.S_ISUID),
                                                ("setgid", stat.S_ISGID)) if entry.mode & m)
            out.append(Finding("setuid", "high", f"{path}: {bits} (mode "
                               f"{entry.mode & 0o7777:04o})", path, entry.layer))
        if entry.kind not in (tarfile.SYMTYPE,) and entry.mode & stat.S_IWOTH and \
                not _under_tmp(path, entry):
            # a sticky directory (/var/lock, /run/lock) is shared like /tmp: worth a note only
            sticky_dir = entry.kind == tarfile.DIRTYPE and entry.mode & stat.S_ISVTX
            out.append(Finding("world-writable", "low" if sticky_dir else "high",
                               f"{path}: world-writable (mode {entry.mode & 0o7777:04o})"
                               + (", sticky" if sticky_dir else ""), path, entry.layer))
    return out


def _under_tmp(path: str, entry: _File) -> bool:
    for tmp in ("/tmp", "/var/tmp"):
        if path == tmp:
            return bool(entry.mode & stat.S_ISVTX)
        if path.startswith(tmp + "/"):
            return True
    return False


def _dpkg_findings(scan: _Scan) -> list[Finding]:
    out = []
    for sums_path, data in sorted(scan.md5sums.items()):
        sums = scan.view.get(sums_path)
        if sums is None:
            continue  # deleted later: not the image's metadata any more
        package = posixpath.basename(sums_path)[:-len(".md5sums")]
        for line in data.decode("utf-8", "replace").splitlines():
            digest, _, rel = line.strip().partition(" ")
            rel = rel.strip().lstrip("*")
            if not rel or len(digest) != 32:
                continue
            path = "/" + rel.lstrip("/")
            entry = scan.view.get(path)
            if entry is None or entry.md5 is None:
                continue  # distroless bases drop docs and such on purpose
            if entry.md5 != digest.lower():
                out.append(Finding("dpkg-modified", "medium",
                                   f"{path} differs from what package {package} installed "
                                   f"(md5 {entry.md5}, dpkg says {digest})", path, entry.layer))
    return out
