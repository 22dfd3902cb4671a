"""The public API of distroless-style bases: definition -> lock -> layer entries.

A base definition (``base_images/cc.yaml``) names a Debian suite, the
packages, exclusions, users and directories. :func:`lock_base` resolves it
against the archive and writes ``cc.lock.json``; :func:`base_entries` turns a
lock into the :class:`Entry` list of one layer: the packages' files after the
drop rules, plus what maintainer scripts would have made and a shell-less
image still needs (CA bundle, ``/etc/localtime``, passwd/group, os-release,
nsswitch.conf) and ``/var/lib/dpkg/status.d/<package>`` for scanners.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import DebianError, ManifestError
from ...layers.entries import Entry, Kind, image_path
from ... import yamlspec
from .apt_sources import find_mirror
from .archive import DEBIAN_KEYRING, Transport, load_index
from .deb import Member
from .fetch import DebCache, default_cache_dir
from .lock import Lock, LockedIndex, LockedPackage, read_lock, write_lock
from .resolve import resolve

DEFAULT_DROP = ("/usr/share/doc/**", "/usr/share/man/**", "/usr/share/info/**",
                "/usr/share/locale/**", "/usr/share/lintian/**")
DEFAULT_KEEP = ("/usr/share/doc/*/copyright",)
CA_DIR = "/usr/share/ca-certificates/"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NOLOGIN = "/sbin/nologin"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str = NOLOGIN


@dataclass(frozen=True)
class Group:
    name: str
    gid: int


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


# distroless's accounts: root, nobody and nonroot (65532), with their groups.
DEFAULT_USERS = (User("root", 0, 0, "/root"), User("nobody", 65534, 65534, "/nonexistent"),
                 User("nonroot", 65532, 65532, "/home/nonroot"))
DEFAULT_GROUPS = (Group("root", 0), Group("tty", 5), Group("staff", 50),
                  Group("nonroot", 65532), Group("nogroup", 65534))


@dataclass(frozen=True)
class BaseConfig:
    """Image config a base contributes as defaults (a manifest's ``config`` overrides)."""

    user: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class BaseDefinition:
    path: Path
    name: str
    suite: str                    # the main suite (bookworm): os-release, lock name
    architecture: str
    components: tuple[str, ...]
    keyring: Path
    packages: tuple[str, ...]
    exclude: tuple[str, ...]
    users: tuple[User, ...]
    groups: tuple[Group, ...]
    directories: tuple[Directory, ...]
    drop: tuple[str, ...] = DEFAULT_DROP
    keep: tuple[str, ...] = DEFAULT_KEEP
    timezone: str = "Etc/UTC"
    config: BaseConfig = field(default_factory=BaseConfig)
    updates: tuple[str, ...] = ()  # suites layered on top: bookworm-updates, bookworm-security

    @property
    def suites(self) -> tuple[str, ...]:
        return (self.suite,) + self.updates

    @property
    def lock_path(self) -> Path:
        """``cc.yaml`` -> ``cc.lock.json`` beside it."""
        return self.path.with_name(f"{self.path.stem}.lock.json")

    def user(self, name_or_uid: str) -> User | None:
        """Look a user up as ``/etc/passwd`` would (for ``config.user: nonroot``)."""
        for u in self.users:
            if u.name == name_or_uid or str(u.uid) == name_or_uid:
                return u
        return None


# ---------------------------------------------------------------- definitions

def is_base_definition(path: Path) -> bool:
    """True when a YAML file is a base definition (it has a top-level ``debian:``)."""
    root = yamlspec.load(Path(path))
    return isinstance(root.value, dict) and "debian" in root.value


def _int(node: yamlspec.Node) -> int:
    value = node.as_type(int, "an integer")
    if not 0 <= value < 2**31:
        raise node.error(f"{value} is out of range")
    return value


def _mode(node: yamlspec.Node) -> int:
    if isinstance(node.value, str) and re.fullmatch(r"0?[0-7]{3,4}", node.value):
        return int(node.value, 8)
    raise node.error(f"{node.value!r} is not an octal file mode in quotes (e.g. \"1777\")")


def _abs_path(node: yamlspec.Node) -> str:
    text = node.str()
    if not text.startswith("/"):
        raise node.error(f"{text!r} must be an absolute path")
    try:
        return image_path(text)
    except Exception as e:
        raise node.error(str(e)) from e


def _name(node: yamlspec.Node) -> str:
    text = node.str()
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", text):
        raise node.error(f"{text!r} is not a valid user or group name")
    return text


def _package_list(node: yamlspec.Node) -> tuple[str, ...]:
    names = node.str_list()
    for item, name in zip(node.list(), names):
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name):
            raise item.error(f"{name!r} is not a Debian package name")
    return names


def load_base_definition(path: Path) -> BaseDefinition:
    """Read a base definition strictly; errors name file, line and field."""
    path = Path(path)
    root = yamlspec.load(path)
    top = root.mapping()
    name = top.optional("name", lambda n: n.str(), path.stem)
    deb = top.required("debian").mapping()
    suite = deb.required("suite").str()
    architecture = deb.required("architecture").str()
    updates = deb.optional("updates", lambda n: n.str_list(), ())
    components = deb.optional("components", lambda n: n.str_list(), ("main",))
    keyring_node = deb.get("keyring")
    keyring = DEBIAN_KEYRING
    if keyring_node is not None:
        keyring = Path(keyring_node.str())
        if not keyring.is_absolute():
            keyring = (path.parent / keyring).resolve()
    deb.done()
    packages_node = top.required("packages")
    packages = _package_list(packages_node)
    if not packages:
        raise packages_node.error("lists no packages")
    exclude = top.optional("exclude", _package_list, ())

    users = {u.name: u for u in DEFAULT_USERS}
    for item in top.optional("users", lambda n: n.list(), []):
        f = item.mapping()
        uname = _name(f.required("name"))
        uid = _int(f.required("uid"))
        user = User(uname, uid, f.optional("gid", _int, uid),
                    f.optional("home", _abs_path, f"/home/{uname}"),
                    f.optional("shell", _abs_path, NOLOGIN))
        f.done()
        clash = [u for u in users.values() if u.uid == uid and u.name != uname]
        if clash:
            raise item.error(f"uid {uid} is already used by {clash[0].name}")
        users[uname] = user
    groups = {g.name: g for g in DEFAULT_GROUPS}
    for item in top.optional("groups", lambda n: n.list(), []):
        f = item.mapping()
        group = Group(_name(f.required("name")), _int(f.required("gid")))
        f.done()
        groups[group.name] = group
    gids = {g.gid for g in groups.values()}
    for user in users.values():
        if user.gid not in gids and user.name not in groups:
            groups[user.name] = Group(user.name, user.gid)
            gids.add(user.gid)

    directories = []
    for item in top.optional("directories", lambda n: n.list(), []):
        f = item.mapping()
        directories.append(Directory(_abs_path(f.required("path")),
                                     f.optional("mode", _mode, 0o755),
                                     f.optional("uid", _int, 0), f.optional("gid", _int, 0)))
        f.done()
    # drop/keep add to the defaults (docs but copyright, man, info, locales, lintian).
    drop = DEFAULT_DROP + top.optional("drop", lambda n: n.str_list(), ())
    keep = DEFAULT_KEEP + top.optional("keep", lambda n: n.str_list(), ())
    timezone = top.optional("timezone", lambda n: n.str(), "Etc/UTC")
    if not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", timezone):
        raise ManifestError(f"{timezone!r} is not a time zone name", file=str(path),
                            field="timezone")

    config = BaseConfig()
    config_node = top.get("config")
    if config_node is not None:
        cf = config_node.mapping()
        user_node = cf.get("user")
        user = None
        if user_node is not None:
            user = str(user_node.value) if isinstance(user_node.value, int) else user_node.str()
            if not any(u.name == user or str(u.uid) == user.split(":")[0] for u in users.values()):
                raise user_node.error(f"user {user!r} is not one of the base's users")
        env_node = cf.get("env")
        env: tuple[tuple[str, str], ...] = ()
        if env_node is not None:
            ef = env_node.mapping()
            env = tuple((k, ef.get(k).str()) for k in sorted(ef.keys()))  # type: ignore[union-attr]
        cf.done()
        config = BaseConfig(user, env)
    top.done()
    return BaseDefinition(path, name, suite, architecture, tuple(components), keyring,
                          packages, tuple(exclude), tuple(sorted(users.values(), key=lambda u: u.uid)),
                          tuple(sorted(groups.values(), key=lambda g: g.gid)),
                          tuple(directories), tuple(drop), tuple(keep), timezone, config,
                          tuple(updates))


# ---------------------------------------------------------------- locking

def lock_base(definition: BaseDefinition, mirror: str | None = None, *,
              cache_dir: Path | None = None, transport: Transport | None = None,
              prefetch: bool = True) -> Path:
    """Resolve ``definition`` against the archive and write its lock file.

    With ``prefetch`` (the default) every ``.deb`` is also downloaded into the
    cache and checked against the sha256 from ``Packages``, so a lock is only
    written once every package it names is known to be fetchable and intact.
    Nothing is written on any error.
    """
    urls = {suite: find_mirror(suite, mirror) for suite in definition.suites}
    archives = [load_index(urls[suite], suite, definition.components, definition.architecture,
                           definition.keyring, transport) for suite in definition.suites]
    main = archives[0]
    for extra in archives[1:]:
        main.packages.merge(extra.packages)
    where = " + ".join(f"{urls[s]} {s}" for s in definition.suites)
    where += f" ({','.join(definition.components)})"
    resolved = resolve(main.packages, definition.packages, definition.architecture,
                       definition.exclude, where)
    packages = tuple(LockedPackage(r.name, r.version, r.architecture, r.filename, r.size,
                                   r.sha256, r.suite) for r in resolved)
    if prefetch:
        cache = DebCache(cache_dir or default_cache_dir())
        for pkg in packages:
            cache.ensure(pkg, functools.partial(urls.__getitem__, pkg.suite), transport)
    indexes = tuple(LockedIndex(f.path, f.size, f.sha256) for a in archives for f in a.files)
    lock = Lock(main.suite, main.codename, main.version, definition.architecture,
                definition.components, definition.packages, definition.exclude,
                indexes, packages, definition.suites)
    return write_lock(lock, definition.lock_path)


def load_lock(definition: BaseDefinition, path: Path | None = None) -> Lock:
    """Read the definition's lock and check it still matches the definition."""
    lock_path = path or definition.lock_path
    lock = read_lock(lock_path)
    stale = []
    if set(lock.requested) != set(definition.packages):
        stale.append("packages")
    if set(lock.exclude) != set(definition.exclude):
        stale.append("exclude")
    if lock.architecture != definition.architecture:
        stale.append("architecture")
    if definition.suite not in (lock.suite, lock.codename) or \
            tuple(lock.suites[1:]) != definition.updates:
        stale.append("suites")
    if stale:
        raise DebianError(f"{lock_path} is out of date with {definition.path} "
                          f"({', '.join(stale)} changed): run 'ocibuild lock {definition.path}'")
    return lock


# ---------------------------------------------------------------- building

def _glob_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for pattern in patterns:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("/**", i) and i + 3 == len(pattern):
                out, i = out + "(?:/.*)?", i + 3   # "dir/**": the dir and all below it
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        parts.append(out)
    return re.compile("^(?:" + "|".join(parts) + ")$" if parts else "(?!)")


def _blob_opener(path: Path) -> Callable:
    return functools.partial(open, path, "rb")


def _status_stanza(control: bytes) -> bytes:
    """The package's control stanza with ``Status`` added, as dpkg's status file has it."""
    text = control.decode("utf-8", errors="replace").strip("\n")
    lines = text.split("\n")
    if not any(line.startswith("Status:") for line in lines):
        lines.insert(1, "Status: install ok installed")
    return ("\n".join(lines) + "\n").encode()


def _control_field(control: bytes, name: str) -> str:
    m = re.search(rf"^{name}:[ \t]*(\S+)", control.decode("utf-8", "replace"), re.M)
    return m.group(1) if m else ""


def base_entries(definition: BaseDefinition, lock: Lock | None = None,
                 cache_dir: Path | None = None, *, mirror: str | None = None,
                 transport: Transport | None = None) -> list[Entry]:
    """Every entry of the base layer, sorted by path, identical for the same lock.

    ``.deb`` files come from the cache; only a package missing there makes
    this look up a mirror (``mirror``, ``$OCIBUILD_DEBIAN_MIRROR`` or apt sources).
    """
    lock = lock or load_lock(definition)
    cache = DebCache(cache_dir or default_cache_dir())
    @functools.cache
    def mirror_for(suite: str) -> str:
        return find_mirror(suite, mirror)

    drop, keep = _glob_regex(definition.drop), _glob_regex(definition.keep)
    entries: dict[str, Entry] = {}
    owner: dict[str, str] = {}
    generated: list[Entry] = []
    for pkg in sorted(lock.packages, key=lambda p: p.name):
        deb = cache.ensure(pkg, functools.partial(mirror_for, pkg.suite), transport)
        control, members = cache.members(pkg, deb)
        got = (_control_field(control["control"], "Package"),
               _control_field(control["control"], "Version"))
        if got != (pkg.name, pkg.version):
            raise DebianError(f"{deb}: is {got[0]} {got[1]}, but the lock pins "
                              f"{pkg.name} {pkg.version}")
        for entry in _package_entries(pkg, members, cache):
            previous = owner.get(entry.path)
            if previous is not None:
                old = entries[entry.path]
                if (old.kind == Kind.DIR) != (entry.kind == Kind.DIR):
                    raise DebianError(f"{entry.path} is a {old.kind.value} in {previous} "
                                      f"but a {entry.kind.value} in {pkg.name}")
                if old.kind == Kind.DIR:
                    continue  # the first package's directory wins
            entries[entry.path] = entry
            owner[entry.path] = pkg.name
        status = f"/var/lib/dpkg/status.d/{pkg.name}"
        generated.append(Entry.bytes_file(status, _status_stanza(control["control"])))
        if "md5sums" in control:
            generated.append(Entry.bytes_file(f"{status}.md5sums", control["md5sums"]))

    # Drop rules; a dropped directory stays if something kept lies below it.
    kept = {p: e for p, e in entries.items()
            if e.kind == Kind.DIR or not drop.match(p) or keep.match(p)}
    needed_dirs = {parent for p, e in kept.items() if e.kind != Kind.DIR
                   for parent in _parents(p)}
    kept = {p: e for p, e in kept.items()
            if e.kind != Kind.DIR or not drop.match(p) or p in needed_dirs}

    generated += _system_files(definition, lock, entries, kept)
    for entry in generated:
        kept[entry.path] = entry
    return [kept[p] for p in sorted(kept)]


def _parents(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _package_entries(pkg: LockedPackage, members: list[Member], cache: DebCache) -> list[Entry]:
    """Entries of one package; hard links become FILE entries sharing a ``link_key``."""
    by_path = {m.path: m for m in members}
    link_targets = {m.target for m in members if m.kind == Kind.HARDLINK}
    out = []
    for m in members:
        if m.kind == Kind.DIR:
            out.append(Entry.directory(m.path, m.mode, m.uid, m.gid))
        elif m.kind == Kind.SYMLINK:
            out.append(Entry.symlink(m.path, m.target, m.uid, m.gid))
        elif m.kind == Kind.FILE:
            key = ("deb", pkg.sha256, m.path) if m.path in link_targets else None
            out.append(Entry.file(m.path, _blob_opener(cache.blob_path(m.blob)), m.size,
                                  m.mode, m.uid, m.gid, link_key=key))
        else:  # HARDLINK
            target = by_path.get(m.target)
            if target is None or target.kind != Kind.FILE:
                raise DebianError(f"{pkg.name}: hard link {m.path} -> {m.target}: "
                                  "target is not a file in the package")
            out.append(Entry.file(m.path, _blob_opener(cache.blob_path(target.blob)),
                                  target.size, target.mode, target.uid, target.gid,
                                  link_key=("deb", pkg.sha256, target.path)))
    return out


def _system_files(definition: BaseDefinition, lock: Lock, shipped: dict[str, Entry],
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
