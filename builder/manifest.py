"""The image manifest: YAML → a frozen, validated build spec.

Schema (Required fields marked; everything else Optional)::

    image: NAME[:TAG]                 Required. Name written into the tarball.
    platform: linux/amd64             os/arch[/variant]: one image
    platforms: [linux/amd64, linux/arm64]   or: an image index, one image per platform
    base: scratch                     scratch | path/to/base.yaml | REGISTRY/REPO@sha256:…
    compression: gzip                 gzip | zstd
    libraries: {from: none}           where missing shared libraries come from: none | host
    layers:                           Required, ordered bottom to top; each needs a unique
      - name: app                     name and at least one of:
        files:       [{src, dest, mode, uid, gid}]       a host file or directory tree
        directories: [{path, mode, uid, gid}]            empty directories
        symlinks:    [{path, target, uid, gid}]
        tar: path/to/layer.tar[.gz]                      an existing tarball
        pyinstaller: {entry, requirements, hidden_imports, collect_data,
                      collect_submodules, collect_all, excludes, strip, mode,
                      extra_args}                        a frozen Python app
        dest: /app                                       where pyinstaller output goes
        keep_special_bits: false                         keep setuid/setgid bits
        exclude: [/app/torch/bin/*]                      image paths left out of the layer
        closure: {skip: [/app/tools/*]}                  kept, but left out of the closure
    config:
      user: nonroot | 65532 | 65532:65532
      entrypoint: [..] | "cmd"        cmd: [..]       env: {K: V}      workdir: /app
      ports: ["5000/tcp", 8080]       labels: {k: v}  volumes: [/data]  stop_signal: SIGTERM

Relative paths resolve against the manifest's folder. Every error names the
file, the line and the field (``iris.yaml:14: layers[1].files[0].mode: …``).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnsafePathError
from .layers.compress import COMPRESSIONS
from .layers.entries import check_symlink_target, image_path
from .oci.types import Platform
from .yamlspec import Node, load

MAX_LAYERS = 125
"""Most layers an image may have, base included: docker refuses to run more ("max depth
exceeded", moby's maxLayerDepth), and overlay mounts stop at 127-128 lower layers."""

_LAYER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_IMAGE_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
_PORT = re.compile(r"^[0-9]{1,5}(?:/(?:tcp|udp|sctp))?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DIGEST_REF = re.compile(r"@sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Source:
    """A host path the build reads (a ``files`` src, a ``tar``, a frozen app's entry or
    requirements), with where the manifest names it."""

    path: Path
    line: int
    field: str


@dataclass(frozen=True)
class FileSpec:
    src: Path
    dest: str
    mode: int | None = None
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class DirectorySpec:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class SymlinkSpec:
    path: str
    target: str
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class PathGlob:
    """An image-path pattern (``*`` also matches ``/``; a dir stands for what is under
    it) and the manifest line that gives it."""

    pattern: str
    line: int

    def matches(self, path: str) -> bool:
        return (fnmatch.fnmatchcase(path, self.pattern)
                or fnmatch.fnmatchcase(path, self.pattern.rstrip("/") + "/*"))


@dataclass(frozen=True)
class LayerSpec:
    name: str
    line: int
    files: tuple[FileSpec, ...] = ()
    directories: tuple[DirectorySpec, ...] = ()
    symlinks: tuple[SymlinkSpec, ...] = ()
    tar: Path | None = None
    pyinstaller: Any | None = None      # builder.sources.pyinstaller.PyInstallerOptions
    dest: str = "/app"
    keep_special_bits: bool = False
    exclude: tuple[PathGlob, ...] = ()
    closure_skip: tuple[PathGlob, ...] = ()


@dataclass(frozen=True)
class BaseSpec:
    """Where the image starts: ``scratch``, a base definition file, or a registry image."""

    kind: str                     # "scratch" | "definition" | "registry"
    path: Path | None = None
    ref: str | None = None
    line: int = 0                 # where the manifest says it (0: not given)
    display: str = field(default="", compare=False)  # a definition's name for messages

    def describe(self) -> str:
        return {"scratch": "scratch", "definition": str(self.path), "registry": str(self.ref)}[
            self.kind]


@dataclass(frozen=True)
class ConfigSpec:
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str | None = None
    user_line: int = 0


@dataclass(frozen=True)
class Manifest:
    file: Path
    image: str
    platform: Platform
    base: BaseSpec
    layers: tuple[LayerSpec, ...]
    config: ConfigSpec
    compression: str = "gzip"
    libraries_from: str = "none"
    raw_lines: dict[str, int] = field(default_factory=dict, compare=False)
    display: str = field(default="", compare=False)   # the file's name as the user typed it
    platforms: tuple[Platform, ...] = ()
    """``platforms:`` as listed (the build writes an index); empty for ``platform:``."""
    platforms_line: int = 0
    sources: tuple[Source, ...] = field(default=(), compare=False)

    @property
    def folder(self) -> Path:
        return self.file.parent

    @property
    def where(self) -> str:
        """The manifest's name for messages: as typed (``examples/iris/ocibuild.yaml``)."""
        return self.display or str(self.file)

    def outside_sources(self) -> list[Source]:
        """The sources outside the manifest's folder (``/etc/shadow``, ``../../x``), by
        their real path; a symlink named as a source goes in as a link, so only where
        the link itself lies counts."""
        folder = os.path.realpath(self.folder)
        out = []
        for source in self.sources:
            where = os.path.join(os.path.realpath(source.path.parent), source.path.name) \
                if source.path.is_symlink() else os.path.realpath(source.path)
            if os.path.commonpath([folder, where]) != folder:
                out.append(source)
        return out


def valid_image_name(name: str) -> bool:
    """``[registry[:port]/]repo[:tag]`` with docker's lowercase rules."""
    return bool(_IMAGE_NAME.match(name))


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate a manifest; raise :class:`ManifestError` on the first problem."""
    display = str(path)
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    root = load(path, display)
    top = root.mapping()
    folder = path.parent
    image = top.required("image")
    image_name = image.str()
    if not valid_image_name(image_name):
        raise image.error(f"{image_name!r} is not a valid image name (lowercase "
                          "[registry/]repo[:tag])")
    platform = top.optional("platform", _platform, Platform())
    platforms = top.optional("platforms", _platform_list, ())
    if platforms and "platform" in top:
        raise top.get("platforms").error(  # type: ignore[union-attr]
            "give either platform (one image) or platforms (an index), not both")
    platforms_line = top.get("platforms").line if platforms else 0  # type: ignore[union-attr]
    base = top.optional("base", lambda n: _base(n, folder, display), BaseSpec("scratch"))
    compression = top.optional("compression", lambda n: _choice(n, COMPRESSIONS[:2]), "gzip")
    libraries = top.optional("libraries", _libraries, "none")
    layers_node = top.required("layers")
    if len(layers_node.list()) > MAX_LAYERS:
        raise layers_node.error(f"{len(layers_node.list())} layers: an image may have at most "
                                f"{MAX_LAYERS} (MAX_LAYERS), the most docker will run")
    sources: list[Source] = []
    layers = tuple(_layer(item, folder, sources) for item in layers_node.list())
    seen: dict[str, LayerSpec] = {}
    for spec, node in zip(layers, layers_node.list()):
        if spec.name in seen:
            raise node.value["name"].error(f"duplicate layer name {spec.name!r} (first used "
                                           f"on line {seen[spec.name].line})")
        seen[spec.name] = spec
    config = top.optional("config", _config, ConfigSpec())
    top.done()
    if not layers and base.kind == "scratch":
        raise layers_node.error("an image on scratch needs at least one layer")
    return Manifest(path, image_name, platforms[0] if platforms else platform, base, layers,
                    config, compression, libraries, display=display, platforms=platforms,
                    platforms_line=platforms_line, sources=tuple(sources))


# -- field readers -------------------------------------------------------------

def _platform(node: Node) -> Platform:
    try:
        platform = Platform.parse(node.str())
        platform.check_linux()
        return platform
    except ValueError as e:
        raise node.error(str(e)) from e


def _platform_list(node: Node) -> tuple[Platform, ...]:
    items = node.list()
    if not items:
        raise node.error("lists no platform")
    out: list[Platform] = []
    for item in items:
        platform = _platform(item)
        if platform in out:
            raise item.error(f"{platform} is listed twice")
        out.append(platform)
    return tuple(out)


def _choice(node: Node, choices: tuple[str, ...]) -> str:
    value = node.str()
    if value not in choices:
        raise node.error(f"{value!r} is not one of {', '.join(choices)}")
    return value


def _libraries(node: Node) -> str:
    fields = node.mapping()
    source = fields.optional("from", lambda n: _choice(n, ("none", "host")), "none")
    fields.done()
    return source


def _base(node: Node, folder: Path, manifest_display: str) -> BaseSpec:
    value = node.str().strip()
    if value == "scratch":
        return BaseSpec("scratch")
    if value.endswith((".yaml", ".yml")):
        target = Path(os.path.realpath(folder / value))
        if not target.is_file():
            raise node.error(f"base definition {value!r} not found (looked at {target})")
        # named for messages as the user would type it from here, like the manifest
        display = os.path.normpath(os.path.join(os.path.dirname(manifest_display), value))
        return BaseSpec("definition", path=target, line=node.line, display=display)
    if "/" in value or ":" in value or "@" in value:
        if "@" in value and not _DIGEST_REF.search(value):
            raise node.error(f"{value!r}: a digest must be @sha256: followed by 64 hex digits")
        return BaseSpec("registry", ref=value, line=node.line)
    raise node.error(f"{value!r} is not scratch, a base definition (.yaml) or a registry "
                     "reference (registry/repo@sha256:…)")


def _definition_file(node: Node, folder: Path) -> Path:
    """A base definition named relative to the manifest (``build_root:``)."""
    value = node.str().strip()
    target = Path(os.path.realpath(folder / value))
    if not value.endswith((".yaml", ".yml")) or not target.is_file():
        raise node.error(f"{value!r} is not a base definition file (looked at {target})")
    return target


_DEFAULT_ROOT = object()


def _build_root(node: Node, folder: Path) -> Path | None:
    """``build_root:``: a base definition to freeze in, or ``host`` (None)."""
    from .sources.buildroot import HOST

    return None if node.value == HOST else _definition_file(node, folder)


def _default_build_root(node: Node) -> Path:
    from .sources.buildroot import DEFAULT_DEFINITION, HOST

    if not DEFAULT_DEFINITION.is_file():
        raise node.error(f"ocibuild's default build root {DEFAULT_DEFINITION} is missing (an "
                         "install without base_images/): name one with build_root: "
                         f"DEFINITION.yaml, or freeze with the host's Python: build_root: {HOST}")
    return DEFAULT_DEFINITION


def _int(node: Node, what: str, low: int = 0, high: int = 2**31 - 1) -> int:
    value = node.as_type(int, what)
    if not low <= value <= high:
        shown = str(value) if abs(value) < 10**20 else f"a {len(str(abs(value)))}-digit number"
        raise node.error(f"{shown} is out of range for {what} ({low}..{high})")
    return value


def _id(node: Node) -> int:
    return _int(node, "a numeric uid/gid", 0, 2**31 - 1)


def _mode(node: Node) -> int:
    """Modes are octal as written: "0644", 0644, 644, "1777" or 0o755."""
    text = (node.raw or "").strip()
    if re.fullmatch(r"0?[0-7]{3,4}|0o[0-7]{3,4}", text) and not isinstance(node.value, bool):
        value = int(text.removeprefix("0o"), 8)
        if value <= 0o7777:
            return value
    raise node.error(f"\"{text or node.value}\" is not an octal file mode (e.g. \"0644\")")


def absolute_image_path(node: Node) -> str:
    """An image path as written: absolute, normalized, inside ``/``. A relative one is
    refused rather than guessed at (Docker's COPY resolves it against WORKDIR, which
    silently changes meaning when the workdir does)."""
    text = node.str()
    try:
        path = image_path(text)
    except UnsafePathError as e:
        raise node.error(str(e)) from e
    if not text.startswith("/"):
        raise node.error(f"{text!r} must be an absolute path (write {path!r}; paths in "
                         "the image are not relative to config.workdir)")
    return path



def _source(node: Node, folder: Path, sources: list[Source], directory_ok: bool = True) -> Path:
    """A host path the build reads. With ``directory_ok`` (``files:``) it may be a file,
    a directory or a symlink (which goes in as a link); else it must be a regular file.
    Symlink loops, FIFOs, devices and sockets are refused here, before anything opens
    them (a FIFO would block the build)."""
    if not node.str().strip():
        raise node.error("must not be empty (use \".\" for the manifest's folder)")
    src = (folder / node.str()).absolute()
    try:
        st = os.stat(src)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise node.error(f"{node.value!r} is a symlink loop (at {src})") from None
        if not src.is_symlink():
            raise node.error(f"{node.value!r} does not exist (looked at {src})") from None
        if not directory_ok:
            raise node.error(f"{node.value!r} is a symlink to nothing (at {src})") from None
        st = os.lstat(src)
    if src.is_symlink() and directory_ok:
        pass  # the link itself goes into the image, whatever it points at
    elif stat.S_ISDIR(st.st_mode):
        if not directory_ok:
            raise node.error(f"{node.value!r} is a directory; a file is expected here")
    elif not stat.S_ISREG(st.st_mode):
        raise node.error(f"{node.value!r} is not a regular file (a FIFO, device or socket "
                         f"cannot be read into an image; at {src})")
    sources.append(Source(src, node.line, node.path))
    return src


def _file(node: Node, folder: Path, sources: list[Source]) -> FileSpec:
    f = node.mapping()
    src = _source(f.required("src"), folder, sources)
    dest_node = f.required("dest")
    dest = absolute_image_path(dest_node)
    if dest_node.str().endswith("/") and src.is_file():
        dest = dest.rstrip("/") + "/" + src.name
    spec = FileSpec(src, dest, f.optional("mode", _mode, None), f.optional("uid", _id, 0),
                    f.optional("gid", _id, 0))
    f.done()
    return spec


def _not_root(node: Node) -> str:
    path = absolute_image_path(node)
    if path == "/":
        raise node.error("cannot be the image root /")
    return path


def _directory(node: Node) -> DirectorySpec:
    f = node.mapping()
    spec = DirectorySpec(_not_root(f.required("path")), f.optional("mode", _mode, 0o755),
                         f.optional("uid", _id, 0), f.optional("gid", _id, 0))
    f.done()
    return spec


def _symlink(node: Node) -> SymlinkSpec:
    f = node.mapping()
    path = _not_root(f.required("path"))
    target_node = f.required("target")
    target = target_node.str()
    try:
        check_symlink_target(path, target)
    except UnsafePathError as e:
        raise target_node.error(str(e)) from e
    spec = SymlinkSpec(path, target, f.optional("uid", _id, 0), f.optional("gid", _id, 0))
    f.done()
    return spec


def _layer(node: Node, folder: Path, sources: list[Source]) -> LayerSpec:
    f = node.mapping()
    name_node = f.required("name")
    name = name_node.str()
    if not _LAYER_NAME.match(name):
        raise name_node.error(f"{name!r} is not a valid layer name (letters, digits, . _ -)")
    files = tuple(_file(n, folder, sources) for n in f.optional("files", Node.list, []))
    dirs = tuple(_directory(n) for n in f.optional("directories", Node.list, []))
    links = tuple(_symlink(n) for n in f.optional("symlinks", Node.list, []))
    tar = f.optional("tar", lambda n: _source(n, folder, sources, directory_ok=False), None)
    pyinstaller = f.optional("pyinstaller", lambda n: _pyinstaller(n, folder, sources), None)
    dest = f.optional("dest", absolute_image_path, "/app")
    keep = f.optional("keep_special_bits", lambda n: n.as_type(bool, "true or false"), False)
    exclude = tuple(_glob(n) for n in f.optional("exclude", Node.list, []))
    skip = f.optional("closure", _closure, ())
    f.done()
    if not (files or dirs or links or tar or pyinstaller):
        raise node.error(f"layer {name!r} has no content: give files, directories, "
                         "symlinks, tar or pyinstaller")
    return LayerSpec(name, node.line, files, dirs, links, tar, pyinstaller, dest, keep,
                     exclude, skip)


def _glob(node: Node) -> PathGlob:
    text = node.str()
    if not text.startswith("/"):
        raise node.error(f"{text!r} is not an image path pattern (start it with /)")
    return PathGlob(text, node.line)


def _closure(node: Node) -> tuple[PathGlob, ...]:
    fields = node.mapping()
    skip = tuple(_glob(n) for n in fields.optional("skip", Node.list, []))
    fields.done()
    return skip


def _pyinstaller(node: Node, folder: Path, sources: list[Source]) -> Any:
    from .sources.pyinstaller import PyInstallerOptions

    f = node.mapping()
    entry = _source(f.required("entry"), folder, sources, directory_ok=False)
    requirements = f.optional("requirements", lambda n: _source(n, folder, sources, False),
                              None)
    names = {k: f.optional(k, Node.str_list, ()) for k in (
        "hidden_imports", "collect_data", "collect_submodules", "collect_all", "excludes",
        "extra_args")}
    strip = f.optional("strip", lambda n: n.as_type(bool, "true or false"), True)
    mode = f.optional("mode", lambda n: _choice(n, ("onedir", "onefile")), "onedir")
    build_root = f.optional("build_root", lambda n: _build_root(n, folder), _DEFAULT_ROOT)
    if build_root is _DEFAULT_ROOT:
        build_root = _default_build_root(node)
    f.done()
    return PyInstallerOptions(entry=entry, requirements=requirements, strip=strip, mode=mode,
                              build_root=build_root, **names)


def _command(node: Node) -> tuple[str, ...]:
    if isinstance(node.value, str):
        _no_nul(node, node.value)
        return tuple(node.value.split()) if node.value.strip() else ()
    for item in node.list():
        _no_nul(item, item.str())
    return node.str_list()


def _no_nul(node: Node, text: str) -> None:
    """A NUL cannot be passed to a program (argv, environment): refuse it here rather
    than let the runtime fail when the container starts."""
    if "\0" in text:
        raise node.error("contains a NUL character, which no program can receive")


def _str_map(node: Node, key_check: re.Pattern[str] | None = None) -> tuple[tuple[str, str], ...]:
    fields = node.mapping()
    out = []
    for key in fields.keys():
        value = fields.get(key)
        assert value is not None
        if key_check and not key_check.match(key):
            raise value.error("is not a valid environment variable name")
        if isinstance(value.value, bool) or value.value is None:
            raise value.error("must be a string (quote it)")
        if not isinstance(value.value, (str, int, float)):
            raise value.error("must be a string")
        _no_nul(value, key + str(value.value))
        out.append((key, str(value.value)))
    return tuple(out)


def _port(node: Node) -> str:
    value = node.value
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else node.str()
    if not _PORT.match(text) or not 0 < int(text.split("/")[0]) < 65536:
        raise node.error(f"{text!r} is not a port (e.g. 5000 or \"5000/tcp\")")
    return text if "/" in text else text + "/tcp"


_SIGNALS = frozenset({"SIGABRT", "SIGALRM", "SIGBUS", "SIGCHLD", "SIGCONT", "SIGFPE", "SIGHUP",
                      "SIGILL", "SIGINT", "SIGIO", "SIGKILL", "SIGPIPE", "SIGPROF", "SIGPWR",
                      "SIGQUIT", "SIGSEGV", "SIGSTKFLT", "SIGSTOP", "SIGSYS", "SIGTERM",
                      "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGUSR1", "SIGUSR2",
                      "SIGVTALRM", "SIGWINCH", "SIGXCPU", "SIGXFSZ"})
"""Linux signal names a runtime accepts as ``StopSignal`` (besides SIGRTMIN+n and numbers)."""
_REALTIME_SIGNAL = re.compile(r"SIGRTM(IN|AX)([+-]([0-9]|[1-2][0-9]|3[0-2]))?")


def _stop_signal(node: Node) -> str:
    """A signal name (``SIGTERM``, ``TERM``, ``SIGRTMIN+3``) or number (1-64), as the
    runtime will parse it: names get their ``SIG`` prefix."""
    value = node.value
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else node.str()
    if text.isdigit() and 0 < int(text) <= 64:
        return str(int(text))
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    if name in _SIGNALS or _REALTIME_SIGNAL.fullmatch(name):
        return name
    raise node.error(f"{text!r} is not a signal (e.g. SIGTERM, SIGINT, SIGRTMIN+3 or 15)")


def _user(node: Node) -> str:
    value = node.value
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else node.str()
    if not _USER.match(text):
        raise node.error(f"{text!r} is not a user (a name, uid, or uid:gid)")
    return text


def _config(node: Node) -> ConfigSpec:
    f = node.mapping()
    user_node = f.get("user")
    spec = ConfigSpec(
        user=_user(user_node) if user_node is not None else None,
        entrypoint=f.optional("entrypoint", _command, None),
        cmd=f.optional("cmd", _command, None),
        env=f.optional("env", lambda n: _str_map(n, _ENV_NAME), ()),
        workdir=f.optional("workdir", absolute_image_path, None),
        ports=tuple(_port(n) for n in f.optional("ports", Node.list, [])),
        labels=f.optional("labels", _str_map, ()),
        volumes=tuple(absolute_image_path(n) for n in f.optional("volumes", Node.list, [])),
        stop_signal=f.optional("stop_signal", _stop_signal, None),
        user_line=user_node.line if user_node is not None else 0,
    )
    f.done()
    return spec
