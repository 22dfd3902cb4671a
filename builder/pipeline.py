"""The build pipeline: the only module that knows the whole flow.

    manifest → base image → one layer per manifest layer (+ a libraries layer)
             → config (user, entrypoint, env …) → Image → sink

Sources produce entries, :func:`builder.layers.build.build_layer` turns them
into blobs, and :mod:`builder.oci.image` functions assemble the image value.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import InputError, ManifestError
from .layers.build import build_layer
from .layers.entries import Entry
from .layers.reader import read_file
from .manifest import ConfigSpec, LayerSpec, Manifest
from .oci.image import Image, Layer, append_layers, empty_image, with_config
from .sources.files import tree_entries
from .sources.tar_layer import tar_entries

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


def build_epoch(environ: dict[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` when set (and valid), else 0: the build's only clock."""
    value = (environ if environ is not None else os.environ).get("SOURCE_DATE_EPOCH", "")
    if not value:
        return 0
    if not value.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH={value!r} is not a non-negative integer")
    return int(value)


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def default_cache_dir() -> Path:
    env = os.environ.get("OCIBUILD_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "ocibuild" if xdg else Path.home() / ".cache" / "ocibuild"


@dataclass(frozen=True)
class LayerReport:
    name: str
    detail: str
    layer: Layer
    cached: bool = False


@dataclass
class BuildResult:
    image: Image
    name: str
    layers: list[LayerReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BuildContext:
    """What a build needs from its surroundings, passed in rather than looked up."""

    cache_dir: Path
    epoch: int
    log: Log = lambda message: None
    strict: bool = False
    insecure: bool = False

    @property
    def blob_dir(self) -> Path:
        return self.cache_dir / "blobs"


def build_image(manifest: Manifest, ctx: BuildContext) -> BuildResult:
    """Build the image a manifest describes; layer blobs land in the cache."""
    created = rfc3339(ctx.epoch)
    base, base_reports, warnings = _base_image(manifest, ctx, created)
    result = BuildResult(base, manifest.image, list(base_reports), list(warnings))
    image = base
    all_entries: list[list[Entry]] = []
    with tempfile.TemporaryDirectory(prefix="ocibuild-") as work:
        for spec in manifest.layers:
            entries, detail, cached = _layer_entries(spec, ctx, Path(work))
            all_entries.append(entries)
            layer = build_layer(entries, blob_dir=ctx.blob_dir, epoch=ctx.epoch,
                                compression=manifest.compression, name=spec.name,
                                history=_history(spec.name, created),
                                keep_special_bits=spec.keep_special_bits)
            image = append_layers(image, layer)
            result.layers.append(LayerReport(spec.name, detail, layer, cached))
    image = _apply_config(image, manifest.config, manifest)
    result.image = image
    return result


def _history(name: str, created: str) -> dict[str, str]:
    return {"created": created, "created_by": f"ocibuild: layer {name}", "comment": name}


def _base_image(manifest: Manifest, ctx: BuildContext,
                created: str) -> tuple[Image, list[LayerReport], list[str]]:
    image = empty_image(manifest.platform, created)
    if manifest.base.kind == "scratch":
        return image, [], []
    raise ManifestError(f"base {manifest.base.describe()!r}: only scratch is supported by "
                        "this build of ocibuild", file=str(manifest.file), field="base")


def _layer_entries(spec: LayerSpec, ctx: BuildContext, work: Path) -> tuple[list[Entry], str, bool]:
    entries: list[Entry] = []
    cached = False
    for d in spec.directories:
        entries.append(Entry.directory(d.path, d.mode, d.uid, d.gid))
    for f in spec.files:
        entries.extend(tree_entries(f.src, f.dest, f.mode, f.uid, f.gid))
    for s in spec.symlinks:
        entries.append(Entry.symlink(s.path, s.target, s.uid, s.gid))
    if spec.tar is not None:
        entries.extend(tar_entries(spec.tar, work))
    if spec.pyinstaller is not None:
        from .sources.pyinstaller import bundle_entries, freeze
        frozen = freeze(spec.pyinstaller, cache_dir=ctx.cache_dir / "pyinstaller",
                        log=ctx.log)
        cached = frozen.cached
        entries.extend(bundle_entries(frozen.dist_dir, spec.dest))
    files = sum(1 for e in entries if e.kind.value == "file")
    detail = f"{files} file{'s' if files != 1 else ''}"
    if spec.pyinstaller is not None:
        detail = f"pyinstaller {spec.pyinstaller.entry.name}" + (" (cached)" if cached else "")
    return entries, detail, cached


# -- config --------------------------------------------------------------------

def _apply_config(image: Image, spec: ConfigSpec, manifest: Manifest) -> Image:
    current = dict(image.config.get("config") or {})
    env = dict(e.split("=", 1) for e in current.get("Env") or [] if "=" in e)
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(dict(spec.env))
    changes: dict[str, object] = {"Env": [f"{k}={v}" for k, v in env.items()]}
    if spec.entrypoint is not None:
        changes["Entrypoint"] = list(spec.entrypoint)
        if spec.cmd is None:
            changes["Cmd"] = None  # a new entrypoint resets an inherited cmd, as docker does
    if spec.cmd is not None:
        changes["Cmd"] = list(spec.cmd)
    if spec.user is not None:
        changes["User"] = resolve_user(image, spec.user, manifest, spec.user_line)
    if spec.workdir is not None:
        changes["WorkingDir"] = spec.workdir
    if spec.ports:
        changes["ExposedPorts"] = {**(current.get("ExposedPorts") or {}),
                                   **{p: {} for p in spec.ports}}
    if spec.labels:
        changes["Labels"] = {**(current.get("Labels") or {}), **dict(spec.labels)}
    if spec.volumes:
        changes["Volumes"] = {**(current.get("Volumes") or {}), **{v: {} for v in spec.volumes}}
    if spec.stop_signal is not None:
        changes["StopSignal"] = spec.stop_signal
    return with_config(image, **changes)


def resolve_user(image: Image, user: str, manifest: Manifest, line: int) -> str:
    """``uid[:gid]`` as given, or a name looked up in the image's own /etc/passwd.

    Names become numbers in the config, so the runtime never needs to read
    /etc/passwd and ``runAsNonRoot`` policies can check the uid.
    """
    name, _, group = user.partition(":")
    if name.isdigit() and (not group or group.isdigit()):
        return user

    def fail(message: str) -> ManifestError:
        return ManifestError(message, file=str(manifest.file), line=line or None,
                             field="config.user")

    uid = gid = None
    if name.isdigit():
        uid = name
    else:
        passwd = read_file(image, "/etc/passwd")
        if passwd is None:
            raise fail(f"user {name!r} cannot be resolved: the image has no /etc/passwd "
                       "(a scratch base has none); use a numeric uid such as 65532")
        for row in passwd.decode("utf-8", "replace").splitlines():
            cols = row.split(":")
            if len(cols) >= 4 and cols[0] == name:
                uid, gid = cols[2], cols[3]
                break
        if uid is None:
            raise fail(f"user {name!r} is not in the image's /etc/passwd")
    if group:
        if group.isdigit():
            gid = group
        else:
            groups = read_file(image, "/etc/group")
            for row in (groups or b"").decode("utf-8", "replace").splitlines():
                cols = row.split(":")
                if len(cols) >= 3 and cols[0] == group:
                    gid = cols[2]
                    break
            else:
                raise fail(f"group {group!r} is not in the image's /etc/group")
    return f"{uid}:{gid}" if gid is not None else str(uid)
