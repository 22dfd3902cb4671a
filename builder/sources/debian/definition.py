"""Base definitions (``base_images/*.yaml``): strict YAML -> :class:`BaseDefinition`.

Schema (Required marked; everything else Optional)::

    name: cc                          default: the file name without .yaml
    debian:                           Required
      suite: bookworm                 Required. The main suite (os-release, lock)
      updates: [bookworm-updates, bookworm-security]   suites layered on top
      architecture: amd64             Required: one, or
      architectures: [amd64, arm64]   several, each resolved and locked on its own
      components: [main]
      keyring: path.gpg               default: Debian's archive keyring
    packages: [libc6, ...]            Required. Their Depends/Pre-Depends come too
    exclude: [debconf, ...]           dependencies the image does without
    users:   [{name, uid, gid, home, shell}]   added to root 0, nobody, nonroot 65532
    groups:  [{name, gid}]
    directories: [{path, mode: "1777", uid, gid}]
    drop: [/usr/share/foo/**]         added to the defaults (docs but copyright, man,
    keep: [/usr/share/doc/*/copyright]  info, locales, lintian)
    timezone: Etc/UTC                 /etc/localtime points at it
    config: {user: "65532", env: {K: V}}   image config defaults the base contributes

Errors name file, line and field, e.g. ``cc.yaml:12: directories[0].mode: ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ... import yamlspec
from ...manifest import DirectorySpec
from ...manifest import absolute_image_path as _abs_path

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
"""The keyring a definition trusts unless it names another (``debian.keyring``)."""

DEFAULT_DROP = ("/usr/share/doc/**", "/usr/share/man/**", "/usr/share/info/**",
                "/usr/share/locale/**", "/usr/share/lintian/**")
DEFAULT_KEEP = ("/usr/share/doc/*/copyright",)
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
    directories: tuple[DirectorySpec, ...]
    drop: tuple[str, ...] = DEFAULT_DROP
    keep: tuple[str, ...] = DEFAULT_KEEP
    timezone: str = "Etc/UTC"
    config: BaseConfig = field(default_factory=BaseConfig)
    updates: tuple[str, ...] = ()  # suites layered on top: bookworm-updates, bookworm-security
    architectures: tuple[str, ...] = ()
    """``architectures:`` as listed (empty for ``architecture:``); ``architecture`` is
    then the one this value is for (see :meth:`for_architecture`)."""

    @property
    def all_architectures(self) -> tuple[str, ...]:
        return self.architectures or (self.architecture,)

    def for_architecture(self, architecture: str) -> "BaseDefinition":
        """This definition, for one of the architectures it lists."""
        if architecture not in self.all_architectures:
            raise ValueError(f"{self.path.name} lists {', '.join(self.all_architectures)}, "
                             f"not {architecture}")
        return replace(self, architecture=architecture)

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


def _strings(node: yamlspec.Node) -> tuple[str, ...]:
    return node.str_list()


def _nodes(node: yamlspec.Node) -> list[yamlspec.Node]:
    return node.list()


NO_STRINGS: tuple[str, ...] = ()
MAIN: tuple[str, ...] = ("main",)
NO_NODES: list[yamlspec.Node] = []


def _users(top: yamlspec.Fields) -> dict[str, User]:
    """root, nobody and nonroot, plus (or replaced by) the definition's ``users:``."""
    users = {u.name: u for u in DEFAULT_USERS}
    for item in top.optional("users", _nodes, NO_NODES):
        f = item.mapping()
        name = _name(f.required("name"))
        uid = _int(f.required("uid"))
        user = User(name, uid, f.optional("gid", _int, uid),
                    f.optional("home", _abs_path, f"/home/{name}"),
                    f.optional("shell", _abs_path, NOLOGIN))
        f.done()
        clash = [u for u in users.values() if u.uid == uid and u.name != name]
        if clash:
            raise item.error(f"uid {uid} is already used by {clash[0].name}")
        users[name] = user
    return users


def _groups(top: yamlspec.Fields, users: dict[str, User]) -> dict[str, Group]:
    """The default groups, ``groups:``, and a group of its own for each user lacking one."""
    groups = {g.name: g for g in DEFAULT_GROUPS}
    for item in top.optional("groups", _nodes, NO_NODES):
        f = item.mapping()
        group = Group(_name(f.required("name")), _int(f.required("gid")))
        f.done()
        groups[group.name] = group
    gids = {g.gid for g in groups.values()}
    for user in users.values():
        if user.gid not in gids and user.name not in groups:
            groups[user.name] = Group(user.name, user.gid)
            gids.add(user.gid)
    return groups


def _directories(top: yamlspec.Fields) -> tuple[DirectorySpec, ...]:
    out = []
    for item in top.optional("directories", _nodes, NO_NODES):
        f = item.mapping()
        out.append(DirectorySpec(_abs_path(f.required("path")), f.optional("mode", _mode, 0o755),
                             f.optional("uid", _int, 0), f.optional("gid", _int, 0)))
        f.done()
    return tuple(out)


def _config(node: yamlspec.Node | None, users: dict[str, User]) -> BaseConfig:
    if node is None:
        return BaseConfig()
    cf = node.mapping()
    user_node = cf.get("user")
    user: str | None = None
    if user_node is not None:
        user = str(user_node.value) if isinstance(user_node.value, int) else user_node.str()
        wanted = user.split(":")[0]
        if not any(u.name == wanted or str(u.uid) == wanted for u in users.values()):
            raise user_node.error(f"user {user!r} is not one of the base's users")
    env_node = cf.get("env")
    env: tuple[tuple[str, str], ...] = ()
    if env_node is not None:
        ef = env_node.mapping()
        env = tuple((key, ef.required(key).str()) for key in sorted(ef.keys()))
    cf.done()
    return BaseConfig(user, env)


def _timezone(node: yamlspec.Node) -> str:
    zone = node.str()
    if not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", zone):
        raise node.error(f"{zone!r} is not a time zone name")
    return zone


def load_base_definition(path: Path, display: str | None = None) -> BaseDefinition:
    """Read a base definition strictly; errors name file (``display``, else ``path``),
    line and field."""
    path = Path(path)
    top = yamlspec.load(path, display).mapping()
    name = top.optional("name", lambda n: n.str(), path.stem)
    deb = top.required("debian").mapping()
    suite = deb.required("suite").str()
    architectures = deb.optional("architectures", _architectures, NO_STRINGS)
    if architectures and "architecture" in deb:
        raise deb.get("architectures").error(  # type: ignore[union-attr]
            "give either architecture (one) or architectures (a list), not both")
    architecture = architectures[0] if architectures else deb.required("architecture").str()
    updates = deb.optional("updates", _strings, NO_STRINGS)
    components = deb.optional("components", _strings, MAIN)
    keyring = deb.optional("keyring", lambda n: Path(n.str()), DEBIAN_KEYRING)
    if not keyring.is_absolute():
        keyring = (path.parent / keyring).resolve()
    deb.done()
    packages_node = top.required("packages")
    packages = _package_list(packages_node)
    if not packages:
        raise packages_node.error("lists no packages")
    exclude = top.optional("exclude", _package_list, NO_STRINGS)
    users = _users(top)
    groups = _groups(top, users)
    directories = _directories(top)
    # drop/keep add to the defaults (docs but copyright, man, info, locales, lintian).
    drop = DEFAULT_DROP + top.optional("drop", _strings, NO_STRINGS)
    keep = DEFAULT_KEEP + top.optional("keep", _strings, NO_STRINGS)
    timezone = top.optional("timezone", _timezone, "Etc/UTC")
    config = _config(top.get("config"), users)
    top.done()
    return BaseDefinition(path, name, suite, architecture, components, keyring, packages,
                          exclude, tuple(sorted(users.values(), key=lambda u: u.uid)),
                          tuple(sorted(groups.values(), key=lambda g: g.gid)),
                          directories, drop, keep, timezone, config, updates, architectures)


_ARCHITECTURE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _architectures(node: yamlspec.Node) -> tuple[str, ...]:
    out: list[str] = []
    for item in node.list():
        arch = item.str()
        if not _ARCHITECTURE.match(arch):
            raise item.error(f"{arch!r} is not a Debian architecture name (amd64, arm64, …)")
        if arch in out:
            raise item.error(f"{arch} is listed twice")
        out.append(arch)
    if not out:
        raise node.error("lists no architecture")
    return tuple(out)
