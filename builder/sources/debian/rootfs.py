"""What maintainer scripts and distroless add to a base's root filesystem.

No package script runs (there is no shell); instead these files are made
in Python, deterministically: ``/etc/passwd`` and ``/etc/group``, home and
declared directories, ``/etc/nsswitch.conf``, the CA bundle that
``update-ca-certificates`` would build, ``/etc/localtime``/``/etc/timezone``,
``/etc/os-release``, and the dpkg metadata scanners read
(``/var/lib/dpkg/status.d/<package>`` plus ``<package>.md5sums``, as distroless).
"""

from __future__ import annotations

import re

from ...errors import DebianError
from ...layers.entries import Entry, Kind
from .definition import BaseDefinition
from .lock import Lock

CA_DIR = "/usr/share/ca-certificates/"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STATUS_DIR = "/var/lib/dpkg/status.d"


def status_entries(package: str, control: dict[str, bytes]) -> list[Entry]:
    """``status.d/<package>`` (the control stanza) and its ``.md5sums``, like distroless."""
    out = [Entry.bytes_file(f"{STATUS_DIR}/{package}", _status_stanza(control["control"]))]
    if "md5sums" in control:
        out.append(Entry.bytes_file(f"{STATUS_DIR}/{package}.md5sums", control["md5sums"]))
    return out


def _status_stanza(control: bytes) -> bytes:
    """The package's control stanza with ``Status`` added, as dpkg's status file has it."""
    text = control.decode("utf-8", errors="replace").strip("\n")
    lines = text.split("\n")
    if not any(line.startswith("Status:") for line in lines):
        lines.insert(1, "Status: install ok installed")
    return ("\n".join(lines) + "\n").encode()


def control_field(control: bytes, name: str) -> str:
    m = re.search(rf"^{name}:[ \t]*(\S+)", control.decode("utf-8", "replace"), re.M)
    return m.group(1) if m else ""


def system_files(definition: BaseDefinition, lock: Lock, shipped: dict[str, Entry],
                  entries: dict[str, Entry]) -> list[Entry]:
    """What maintainer scripts and distroless add: accounts, dirs, CA bundle, tz, os-release.

    ``shipped`` is every package file (the CA bundle is made from the shipped
    certificates even when drop rules leave them out); ``entries`` what is kept.
    """
    out: list[Entry] = []
    passwd = "".join(f"{u.name}:x:{u.uid}:{u.gid}:{u.name}:{u.home}:{u.shell}\n"
                     for u in definition.users)
    group = "".join(f"{g.name}:x:{g.gid}:\n" for g in definition.groups)
    out.append(Entry.bytes_file("/etc/passwd", passwd.encode()))
    out.append(Entry.bytes_file("/etc/group", group.encode()))
    for u in definition.users:
        if u.home != "/nonexistent":
            out.append(Entry.directory(u.home, 0o700, u.uid, u.gid))
    for d in definition.directories:
        out.append(Entry.directory(d.path, d.mode, d.uid, d.gid))
    out.append(Entry.bytes_file("/etc/nsswitch.conf", b"".join(
        f"{db + ':':<16}{src}\n".encode() for db, src in (
            ("passwd", "files"), ("group", "files"), ("shadow", "files"),
            ("gshadow", "files"), ("hosts", "files dns"), ("networks", "files"),
            ("protocols", "files"), ("services", "files"), ("ethers", "files"),
            ("rpc", "files")))))

    certs = sorted(p for p, e in shipped.items()
                   if p.startswith(CA_DIR) and p.endswith(".crt") and e.kind == Kind.FILE)
    if certs:
        bundle = bytearray()
        for path in certs:
            entry = shipped[path]
            assert entry.opener is not None
            with entry.opener() as f:
                pem = f.read()
            bundle += pem if pem.endswith(b"\n") else pem + b"\n"
        out.append(Entry.directory("/etc/ssl/certs"))
        out.append(Entry.bytes_file(CA_BUNDLE, bytes(bundle)))

    zone = f"/usr/share/zoneinfo/{definition.timezone}"
    if zone in entries:
        out.append(Entry.symlink("/etc/localtime", zone))
        out.append(Entry.bytes_file("/etc/timezone", f"{definition.timezone}\n".encode()))
    elif any(p.startswith("/usr/share/zoneinfo/") for p in entries):
        raise DebianError(f"{definition.path}: timezone {definition.timezone!r} is not in "
                          "the tzdata package")

    major = lock.version.split(".", 1)[0]
    lines = [f'PRETTY_NAME="Debian GNU/Linux {major} ({lock.codename}), '
             f'ocibuild {definition.name}"' if major else
             f'PRETTY_NAME="Debian GNU/Linux ({lock.codename}), ocibuild {definition.name}"',
             'NAME="Debian GNU/Linux"', "ID=debian"]
    if major:
        lines += [f'VERSION_ID="{major}"', f'VERSION="{major} ({lock.codename})"']
    lines.append(f"VERSION_CODENAME={lock.codename}")
    out.append(Entry.bytes_file("/etc/os-release", ("\n".join(lines) + "\n").encode()))
    return out
