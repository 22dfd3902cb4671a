"""The build pipeline: the only module that knows the whole flow.

    manifest → base image → one layer per manifest layer (+ a libraries layer)
             → config (user, entrypoint, env …) → Image → sink

Sources produce entries, :func:`builder.layers.build.build_layer` turns them
into blobs, and :mod:`builder.oci.image` functions assemble the image value.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable


from .errors import FreezeOptionError, InputError, ManifestError, UnsafePathError
from .humanize import count
from .layercache import BUILT, Hit
from .layercache.local import LocalLayerCache, elf_members
from .layercache.tiered import TieredCache
from .layers.build import build_layer, entries_cache_key, layer_cache_key
from .layers.entries import Entry, Kind, collector_paused
from .layers.tarwriter import normalize
from .layers.view import blob_layer_entries, merge
from .manifest import MAX_LAYERS, ConfigSpec, LayerSpec, Manifest
from .oci.image import Image, Layer, append_layers, empty_image, with_config
from .oci.types import BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION
from .oserrors import naming
from .progress import NullProgress, Progress
from .sources.files import tree_entries

LAYER_JOBS = 3  # layers built at once; compression has its own pool
CLOSURE_RULES = 3  # bump when the closure's verdict can change for the same image
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: RFC 3339 has four-digit years


def build_epoch(environ: dict[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` when set (and valid), else 0: the build's only clock."""
    value = (environ if environ is not None else os.environ).get("SOURCE_DATE_EPOCH", "")
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 20 or int(value) > MAX_EPOCH:
        raise InputError(f"SOURCE_DATE_EPOCH={value!r} is not a time in seconds between 0 "
                         f"and {MAX_EPOCH} (9999-12-31T23:59:59Z)")
    return int(value)


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class LayerReport:
    name: str
    detail: str
    layer: Layer
    cached: bool = False
    cache: str = BUILT
    """Where the layer came from: ``local`` or ``remote`` (a layer cache), ``built``,
    or ``pulled`` (a registry base's)."""


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
    progress: Progress = field(default_factory=NullProgress)  # rows for what is running
    verbose: bool = False      # also show PyInstaller warnings known to be harmless
    layer_cache: TieredCache | None = None
    """Where finished layers are looked up (default: the local cache in ``cache_dir``)."""

    def __post_init__(self) -> None:
        if self.layer_cache is None:
            self.layer_cache = TieredCache(LocalLayerCache(self.cache_dir))

    @property
    def layers(self) -> TieredCache:
        assert self.layer_cache is not None
        return self.layer_cache

    @property
    def blob_dir(self) -> Path:
        return self.cache_dir / "blobs"


def build_image(manifest: Manifest, ctx: BuildContext) -> BuildResult:
    """Build the image a manifest describes; layer blobs land in the cache.

    Python's cyclic garbage collector is paused meanwhile: a build's objects are
    long-lived and acyclic, and its passes over them cost ~10 % of a big build.
    """
    with collector_paused():
        result = _build_image(manifest, ctx)
    result.warnings.extend(ctx.layers.drain_warnings())
    return result


ZSTD_WARNING = ("zstd layers need Docker 23 or later: Docker 20.10's `docker load` fails "
                "on all but tiny ones with 'archive/tar: invalid tar header' (podman, "
                "containerd, skopeo and registries read them); use compression: gzip for "
                "older Docker engines")


def _build_image(manifest: Manifest, ctx: BuildContext) -> BuildResult:
    created = rfc3339(ctx.epoch)
    outside = _outside_context(manifest, ctx.strict)
    base, base_reports, warnings = _base_image(manifest, ctx, created)
    if len(base.layers) + len(manifest.layers) > MAX_LAYERS:
        raise ManifestError(f"{len(base.layers)} base layers and {len(manifest.layers)} of its "
                            f"own make more than {MAX_LAYERS} (MAX_LAYERS), the most docker "
                            "will run", file=manifest.where, line=manifest.base.line or None,
                            field="base")
    if manifest.compression == "zstd":
        warnings = [*warnings, ZSTD_WARNING]
    result = BuildResult(base, manifest.image, list(base_reports), outside + list(warnings))
    image = base
    with tempfile.TemporaryDirectory(prefix="ocibuild-") as tmp, naming(tmp):
        work = Path(tmp)
        view: dict[str, Entry] = {}
        sized = []
        # The layers whose files' libraries the closure checks: those this build makes
        # (a base built from a definition included), not a pulled base's.
        own: list[list[Entry]] = []
        for layer in base.layers:
            entries, tar_bytes = blob_layer_entries(layer, work, ctx.cache_dir / "views")
            if manifest.base.kind == "definition":
                own.append(entries)
            merge(view, entries)
            sized.append(layer if layer.uncompressed_size is not None
                         else replace(layer, uncompressed_size=tar_bytes))
        # A pulled layer's uncompressed size is known once it has been read (for the
        # summary; the manifest does not carry it).
        image = replace(base, layers=tuple(sized))
        base_view = dict(view)  # what the base provides, for "prefer the base's copy"
        bundled: list[tuple[list[Entry], list[str], LayerSpec]] = []  # for host origins
        by_digest = {layer.digest: layer for layer in sized}
        result.layers = [replace(r, layer=by_digest.get(r.layer.digest, r.layer))
                         for r in result.layers]
        library_path: dict[str, list[str]] = {}
        env_dirs = _env_library_path(base, manifest.config)
        if env_dirs:  # LD_LIBRARY_PATH in the config applies to every program
            library_path["/"] = env_dirs
        # Layers are built concurrently (each compresses on the shared pool too);
        # they are appended in manifest order, so the image does not depend on timing.
        # What the tar writer saw of each file (ELF magic or not), top layer winning,
        # so the library closure opens only ELF files (and, on a rebuild, no other).
        known: dict[str, None] = {}
        names: dict[str, str] = {}  # image path -> the manifest layer that gives it
        with ThreadPoolExecutor(max_workers=LAYER_JOBS,
                                thread_name_prefix="ocibuild-layer") as builds:
            pending = []
            for spec in manifest.layers:
                parts, lib_dirs = _layer_parts(spec, ctx, work, manifest.where,
                                               manifest.platform.architecture,
                                               compression=manifest.compression, view=view)
                for lib_dir in lib_dirs:
                    library_path.setdefault(lib_dir, []).append(lib_dir)
                # a part the layer cache gave holds its entries as they were recorded
                # (and its inputs were checked when it was made)
                selection = _Selection(spec, manifest.where)
                selected = [part.entries if part.hit else selection.keep(part.entries)
                            for part in parts]
                if not any(part.hit for part in parts):
                    selection.check()
                for part, entries in zip(parts, selected):
                    if spec.pyinstaller is not None:
                        if lib_dirs and not part.hit:
                            entries = _prefer_base(entries, base_view, lib_dirs, manifest,
                                                   ctx, base)
                        bundled.append((entries, lib_dirs, spec))
                    try:
                        entries = normalize(entries, keep_special_bits=spec.keep_special_bits,
                                            below=view)
                    except InputError as e:  # a path given as a file and as a directory …
                        raise ManifestError(str(e), file=manifest.where, line=spec.line,
                                            field=f"layers[{spec.name}]") from e
                    own.append(entries)
                    names.update((e.path, spec.name) for e in entries)
                    merge(view, entries)
                    future = (_done((part.hit.layer, part.hit.source)) if part.hit else
                              builds.submit(_build_or_reuse, entries, part.name, manifest, ctx,
                                            created, spec.keep_special_bits, part.content))
                    pending.append((part, entries, future))
            for part, entries, future in pending:
                layer, source = future.result()
                _note_non_elf(known, entries, elf_members(ctx.blob_dir, layer.diff_id))
                _note_needs(known, entries, part.needs)
                image = append_layers(image, layer)
                result.layers.append(LayerReport(part.name, part.detail or _count(entries),
                                                 layer, part.cached or source != BUILT, source))
            pending.clear()
        image = _apply_config(image, manifest.config, manifest, view)
        libraries, host_sources = _library_closure(view, library_path, manifest, ctx, created,
                                                   result, known, image, own, names)
        if libraries is not None:
            image = append_layers(image, libraries.layer)
            result.layers.append(libraries)
        image = _label_host_files(image, manifest, bundled, host_sources, libraries, ctx)
    result.image = image
    return result


def _done(value: object) -> "Future[object]":
    future: Future[object] = Future()
    future.set_result(value)
    return future


def _build_or_reuse(entries: list[Entry], name: str, manifest: Manifest, ctx: BuildContext,
                    created: str, keep_special_bits: bool,
                    content: str | None = None) -> tuple[Layer, str]:
    """Build a layer, or reuse the one built from the very same inputs before; say
    where it came from (``local``, ``remote`` or ``built``).

    The local key covers every entry's metadata and its content stamp (host inode,
    size, mtime and ctime, like git's index); an entry without a stamp means it
    is not looked up locally. The content key (file digests instead of stamps, or
    ``content`` when the source knows it: a frozen app's dependency layer) is what
    a remote cache is asked for.
    """
    from .layercache.keys import memoized_content_key

    history = _history(name, created)

    def make() -> Layer:
        return build_layer(entries, blob_dir=ctx.blob_dir, epoch=ctx.epoch,
                           compression=manifest.compression, name=name, history=history,
                           keep_special_bits=keep_special_bits, progress=ctx.progress)

    parts = (manifest.compression, ctx.epoch, keep_special_bits, sorted(history.items()))
    key = None
    if not any(e.kind is Kind.FILE and e.stamp is None for e in entries):
        key = entries_cache_key(entries, *parts)
    if content is not None:
        from .layercache.frozen import rows_extra

        hit = ctx.layers.layer(key, make, content=content, extra=rows_extra(entries, ctx.layers))
        return hit.layer, hit.source
    hit = ctx.layers.layer(key, make, content=lambda: memoized_content_key(
        ctx.cache_dir, f"{manifest.file}\0{name}", entries, *parts))
    return hit.layer, hit.source


def _note_needs(known: dict, entries: list[Entry],
                needs: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """Lay what an ELF file loads beyond its DT_NEEDED over ``known`` (read once here)."""
    from .sources.elf import read_elf

    by_path = {e.path: e for e in entries}
    for path, extra in needs:
        entry = by_path.get(path)
        if entry is None or entry.kind is not Kind.FILE or entry.opener is None or not extra:
            continue
        with entry.opener() as f:
            info = read_elf(f)
        if info is not None:
            known[path] = replace(info, needed=tuple(dict.fromkeys(info.needed + extra)))


def _note_non_elf(known: dict[str, None], entries: list[Entry],
                  elf: list[str] | None) -> None:
    """Lay one layer's verdicts over ``known``: its FILE paths that are not in ``elf``
    (the members the tar writer saw start with the ELF magic) map to None, "not a
    loadable ELF file"; with ``elf`` unknown, or for other kinds, the path is dropped
    (the closure reads it)."""
    magic = set(elf) if elf is not None else None
    for e in entries:
        if magic is not None and e.kind is Kind.FILE and e.path not in magic:
            known[e.path] = None
        else:
            known.pop(e.path, None)


def _library_closure(view: dict[str, Entry], library_path: dict[str, list[str]],
                     manifest: Manifest,
                     ctx: BuildContext, created: str,
                     result: BuildResult, known: dict[str, None],
                     image: Image, own: list[list[Entry]],
                     names: dict[str, str]) -> tuple[LayerReport | None, dict[str, str]]:
    """Check that what the ELF files of the ``own`` layers load resolves in the image,
    starting from the configured programs (``image`` has its config); add host
    libraries if allowed. ``names`` maps paths to the layer giving them (for the
    way out an error suggests, and ``closure: {skip}``)."""
    from .sources.closure import resolve_closure

    host = manifest.libraries_from == "host"
    runtime = image.config.get("config") or {}
    programs = [argv[0] for argv in (runtime.get("Entrypoint"), runtime.get("Cmd")) if argv]
    env = dict(e.split("=", 1) for e in runtime.get("Env") or [] if "=" in e)
    path_dirs = [d for d in env.get("PATH", DEFAULT_PATH).split(":") if d.startswith("/")]
    # An image whose layers were all seen complete before needs no second look: the
    # verdict is keyed by every layer's diff_id (which of them are checked follows
    # from the kind of base), the programs and the loader's search path.
    verdict = layer_cache_key(
        "closure-ok", CLOSURE_RULES, [layer.diff_id for layer in image.layers],
        manifest.base.kind, sorted(library_path.items()), programs, path_dirs,
        [(s.name, [g.pattern for g in s.closure_skip]) for s in manifest.layers])
    if ctx.layers.has_verdict(verdict):
        return None, {}
    scope = {e.path for entries in own for e in entries
             if e.kind is Kind.FILE or e.kind is Kind.HARDLINK}
    skips = {spec.name: spec.closure_skip for spec in manifest.layers if spec.closure_skip}

    def skip(path: str) -> bool:
        return any(glob.matches(path) for glob in skips.get(names.get(path, ""), ()))

    with ctx.progress.task("checking shared libraries", brief=True):
        closure = resolve_closure(view, library_path=library_path, host=host, known=known,
                                  scope=scope, programs=programs, path_dirs=path_dirs,
                                  skip=skip, layer_of=names.get)
    result.warnings.extend(closure.warnings)
    if not closure.host_entries:
        ctx.layers.put_verdict(verdict)
        return None, {}
    libs = sorted({p for p, e in ((e.path, e) for e in closure.host_entries)
                   if e.kind is Kind.FILE})
    result.warnings.append(
        f"{count(len(libs), 'shared library', 'shared libraries')} copied from the build "
        "host into layer 'libraries' "
        "(vulnerability scanners cannot see host files; prefer a Debian base)")
    entries = normalize(closure.host_entries)
    layer, source = _build_or_reuse(entries, "libraries", manifest, ctx, created, False)
    return (LayerReport("libraries", f"{len(libs)} from host", layer, source != BUILT, source),
            {p: closure.host_sources[p] for p in libs})


def _prefer_base(entries: list[Entry], base_view: dict[str, Entry], lib_dirs: list[str],
                 manifest: Manifest, ctx: BuildContext, base: Image) -> list[Entry]:
    """A bundle's entries without the host libraries its base provides from Debian.

    The answer is remembered (:func:`_memo`) by the base's layers and the candidate
    files' stamps: working it out reads the base's dpkg database from its layer."""
    from .sources.attribution import prefer_base_libraries
    from .sources.ldso import layout_for_platform

    if not base_view:
        return entries
    arch = manifest.platform.architecture

    def compute() -> dict[str, str]:
        kept, dropped = prefer_base_libraries(entries, base_view, lib_dirs,
                                              layout_for_platform(arch))
        return {e.path: real for e, real in dropped}

    stamps = [(e.path, e.stamp) for e in entries if e.kind is Kind.FILE
              and posixpath.dirname(e.path) in lib_dirs]
    dropped = _memo(ctx, compute, "prefer-base", [layer.diff_id for layer in base.layers],
                    arch, sorted(lib_dirs), stamps) if all(s for _, s in stamps) else compute()
    if dropped:
        ctx.log(f"pyinstaller: {len(dropped)} bundled libraries left out, the base's "
                "Debian copies used instead: "
                + ", ".join(f"{posixpath.basename(path)} ({real})"
                            for path, real in sorted(dropped.items())))
    return [e for e in entries if e.path not in dropped]


def _memo(ctx: BuildContext, compute: Callable[[], Any], *key: object) -> Any:
    """``compute()``'s JSON value, remembered in the cache under ``key`` (which must name
    every input): a no-op build then skips work whose inputs did not change."""
    from .cache import read_record, write_record

    path = ctx.cache_dir / "memo" / f"{layer_cache_key('memo', *key)}.json"
    recorded = read_record(path)
    if isinstance(recorded, dict) and "value" in recorded:
        return recorded["value"]
    value = compute()
    try:
        write_record(path, {"value": value})
    except OSError:
        pass  # best effort: the next build works it out again
    return value


def _label_host_files(image: Image, manifest: Manifest,
                      bundled: list[tuple[list[Entry], list[str], LayerSpec]],
                      host_sources: dict[str, str], libraries: LayerReport | None,
                      ctx: BuildContext) -> Image:
    """Record where each copy a bundle (or the closure) took from outside the image's
    packages came from (label :data:`~builder.sources.attribution.HOST_FILES_LABEL`),
    for the SBOM: the host's dpkg package, or a build root's locked one.

    Remembered (:func:`_memo`) by the files' paths and stamps, the build roots' keys
    and the state of the host's dpkg database, whose reading is most of the work."""
    if not bundled and not host_sources:
        return image
    from .sources.attribution import (HOST_FILES_LABEL, build_root_origins, host_files_label,
                                      host_origins)
    from .sources.buildroot import locate
    from .sources.ldso import layout_for_platform
    from .supply.owners import HostDpkg

    arch = manifest.platform.architecture
    layout = layout_for_platform(arch)
    roots = {spec.name: locate(spec.pyinstaller.build_root, arch, ctx.cache_dir)
             for _, _, spec in bundled if spec.pyinstaller.build_root is not None}

    def compute() -> str | None:
        dpkg = HostDpkg()
        origins: dict[str, tuple[str, str, str, str]] = {}
        for entries, lib_dirs, spec in bundled:
            exe = posixpath.join(spec.dest, spec.pyinstaller.name)
            root = roots.get(spec.name)
            if root is None:
                origins.update(host_origins(entries, lib_dirs, {}, layout, dpkg,
                                            spec.pyinstaller.python, [exe]))
            else:
                where = f"{spec.pyinstaller.build_root.name} ({arch})"
                origins.update(build_root_origins(entries, lib_dirs,
                                                  _build_root_libraries(root, layout, ctx),
                                                  where, [exe]))
        if libraries is not None:
            origins.update(host_origins([Entry.file(p, lambda: None, 0) for p in host_sources],
                                        [], host_sources, layout, dpkg))
        return host_files_label(origins) if origins else None

    files = [[(e.path, e.stamp) for e in entries if e.kind is Kind.FILE]
             for entries, _, _ in bundled]
    complete = all(stamp for group in files for _, stamp in group)
    label = _memo(ctx, compute, "host-files", arch, files,
                  [(lib_dirs, spec.dest, spec.pyinstaller.name, spec.pyinstaller.python,
                    roots[spec.name].key if spec.name in roots else None)
                   for _, lib_dirs, spec in bundled],
                  sorted(host_sources.items()), _dpkg_state()) if complete else compute()
    if label is None:
        return image
    labels = dict((image.config.get("config") or {}).get("Labels") or {})
    labels[HOST_FILES_LABEL] = label
    return with_config(image, Labels=labels)


_ROOT_LIBRARIES_VERSION = 1
"""Bumped when what :func:`_build_root_libraries` notes would differ for the same root."""


def _build_root_libraries(root, layout, ctx: BuildContext) -> dict[str, list[str]]:
    """The libraries a bundle may copy from build ``root``
    (:func:`~builder.sources.attribution.build_root_libraries`), kept in the layer cache
    under the root's key: a build whose frozen layers all came from a cache repository
    (a fresh CI runner) labels them without making the root."""
    from .layers.build import layer_cache_key
    from .sources.attribution import build_root_libraries
    from .sources.buildroot import ensure

    key = layer_cache_key("build-root-libraries", _ROOT_LIBRARIES_VERSION, root.key,
                          layout.default_dirs)
    note = ctx.layers.get_note(key)
    libraries = note.get("libraries") if isinstance(note, dict) else None
    if isinstance(libraries, dict):
        return libraries
    ensure(root, ctx.cache_dir, ctx.log)
    libraries = build_root_libraries(root.path, layout)
    ctx.layers.put_note(key, {"libraries": libraries})
    return libraries


def _dpkg_state() -> list[object]:
    """What changes when the host's dpkg database does (a package installed or removed)."""
    from .cache import file_status

    return [file_status(Path("/var/lib/dpkg/status")),
            [getattr(os.stat(p), "st_mtime_ns", 0) if os.path.exists(p) else None
             for p in ("/var/lib/dpkg/info",)]]


class _Selection:
    """A manifest layer's ``exclude`` applied to each of its image layers (a frozen app
    makes several); a pattern of ``exclude`` or ``closure.skip`` that matches nothing in
    any of them is an error (a typo would otherwise leave the file in, or in the
    check)."""

    def __init__(self, spec: LayerSpec, manifest_file: str) -> None:
        self.spec, self.manifest_file = spec, manifest_file
        self.matched: set[tuple[str, int]] = set()

    def keep(self, entries: list[Entry]) -> list[Entry]:
        spec = self.spec
        kept = [e for e in entries if not any(g.matches(e.path) for g in spec.exclude)]
        for field_name, globs, pool in (("exclude", spec.exclude, entries),
                                        ("closure.skip", spec.closure_skip, kept)):
            for index, glob in enumerate(globs):
                if (field_name, index) not in self.matched and \
                        any(glob.matches(e.path) for e in pool):
                    self.matched.add((field_name, index))
        return kept

    def check(self) -> None:
        spec = self.spec
        for field_name, globs in (("exclude", spec.exclude), ("closure.skip", spec.closure_skip)):
            for index, glob in enumerate(globs):
                if (field_name, index) not in self.matched:
                    raise ManifestError(
                        f"{glob.pattern!r} matches nothing in layer {spec.name!r}",
                        file=self.manifest_file, line=glob.line,
                        field=f"layers[{spec.name}].{field_name}[{index}]")


def _env_library_path(base: Image, spec: ConfigSpec) -> list[str]:
    """The absolute dirs of ``LD_LIBRARY_PATH`` in the image's config: the manifest's
    ``env`` if it sets it, else the base's."""
    value = dict(spec.env).get("LD_LIBRARY_PATH")
    if value is None:
        for item in (base.config.get("config") or {}).get("Env") or []:
            if item.startswith("LD_LIBRARY_PATH="):
                value = item.split("=", 1)[1]
    return [d for d in (value or "").split(":") if d.startswith("/")]


def _history(name: str, created: str) -> dict[str, str]:
    return {"created": created, "created_by": f"ocibuild: layer {name}", "comment": name}


def _base_image(manifest: Manifest, ctx: BuildContext,
                created: str) -> tuple[Image, list[LayerReport], list[str]]:
    image = empty_image(manifest.platform, created)
    if manifest.base.kind == "scratch":
        return image, [], []
    if manifest.base.kind == "definition":
        assert manifest.base.path is not None
        return _debian_base(manifest.base.path, image, manifest, ctx, created)
    return _registry_base(manifest, ctx, created)


def _debian_base(path: Path, image: Image, manifest: Manifest, ctx: BuildContext,
                 created: str) -> tuple[Image, list[LayerReport], list[str]]:
    """A base built from a definition's locked Debian packages, as one cached layer."""
    from .sources.debian import BASE_FORMAT, base_entries, load_base_definition
    from .sources.debian.base import load_lock

    definition = load_base_definition(path, manifest.base.display or None)
    arch = manifest.platform.architecture
    if arch not in definition.all_architectures:
        raise ManifestError(f"base {path.name} is for {', '.join(definition.all_architectures)}"
                            f", the image for {arch}", file=manifest.where,
                            line=manifest.base.line or None, field="base")
    definition = definition.for_architecture(arch)
    lock = load_lock(definition)
    key = layer_cache_key("debian-base", BASE_FORMAT, definition.lock_path.read_bytes(),
                          path.read_bytes(), manifest.compression, ctx.epoch, arch)
    history = _history("base", created)
    history["created_by"] = f"ocibuild: base {definition.name}"

    def make() -> Layer:
        return build_layer(base_entries(definition, lock, ctx.cache_dir,
                                        progress=ctx.progress),
                           blob_dir=ctx.blob_dir, epoch=ctx.epoch,
                           compression=manifest.compression, name="base", history=history,
                           keep_special_bits=True, progress=ctx.progress)

    # The key is content already (the lock's and the definition's bytes): it travels.
    hit = ctx.layers.layer(key, make, content=key)
    layer = hit.layer
    image = append_layers(image, layer)
    defaults: dict[str, object] = {"Env": [f"{k}={v}" for k, v in definition.config.env]}
    if definition.config.user:
        defaults["User"] = definition.config.user
    image = with_config(image, **defaults)
    detail = f"{definition.name} ({definition.suite}, {count(len(lock.packages), 'package')}, locked)"
    return image, [LayerReport("base", detail, layer, hit.source != BUILT, hit.source)], []


def _outside_context(manifest: Manifest, strict: bool) -> list[str]:
    """A warning per source outside the manifest's folder (the build's context), as
    ``docker build`` would refuse them; under ``--strict``, an error for the first."""
    warnings = []
    for source in manifest.outside_sources():
        what = f"{os.path.normpath(source.path)} is outside the manifest's folder " \
               f"{manifest.folder}"
        if strict:
            raise ManifestError(f"{what} (--strict refuses sources outside it)",
                                file=manifest.where, line=source.line, field=source.field)
        warnings.append(f"{manifest.where}:{source.line}: {source.field}: {what}; read anyway "
                        "(--strict refuses it)")
    return warnings


def _registry_base(manifest: Manifest, ctx: BuildContext,
                   created: str) -> tuple[Image, list[LayerReport], list[str]]:
    """A base pulled from a registry (verified into the cache), its layers reused as-is."""
    import copy

    from .registry.base import load_base

    try:
        base = load_base(manifest.base.ref or "", manifest.platform, strict=ctx.strict,
                         cache_dir=ctx.cache_dir, insecure=ctx.insecure,
                         progress=ctx.progress)
    except InputError as e:
        raise ManifestError(str(e), file=manifest.where, line=manifest.base.line or None,
                            field="base") from e
    config = copy.deepcopy(base.image.config)
    config["created"] = created
    # The OCI annotations for "built on": what the manifest named, and what it was.
    annotations = {BASE_NAME_ANNOTATION: manifest.base.ref or "",
                   BASE_DIGEST_ANNOTATION: base.digest}
    image = replace(base.image, config=config, raw=None, manifest_annotations=annotations)
    reports = [LayerReport(f"base[{i}]", f"from {base.pinned.split('@')[0]}", layer, True,
                           "pulled")
               for i, layer in enumerate(image.layers)]
    return image, reports, [base.warning] if base.warning else []


def _count(entries: list[Entry]) -> str:
    files = sum(1 for e in entries if e.kind is Kind.FILE or e.kind is Kind.HARDLINK)
    return count(files, "file")


@dataclass(frozen=True)
class LayerPart:
    """One image layer a manifest layer makes (a frozen app makes several): its name,
    its entries, what it holds (None: counted from its entries) and whether a cache
    (the frozen bundle's) served it."""

    name: str
    entries: list[Entry]
    detail: str | None = None
    cached: bool = False
    needs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """ELF files of the layer (image path) that load more than their DT_NEEDED says:
    a onefile executable's packed libraries (:mod:`builder.sources.onefile_libs`)."""
    content: str | None = None
    """The content key, when the source knows it without hashing the entries."""
    hit: Hit | None = None
    """The finished layer, when the layer cache had it (``entries`` are its view)."""


def _layer_parts(spec: LayerSpec, ctx: BuildContext, work: Path, manifest_file: str,
                 architecture: str = "amd64", *, compression: str,
                 view: dict[str, Entry]) -> tuple[list[LayerPart], list[str]]:
    """The image layers of a manifest layer, bottom to top, and the image dirs its
    programs add to the loader's search path.

    A layer is one image layer, except a onedir ``pyinstaller:`` layer, which is
    split by :func:`builder.sources.bundle_plan.plan_bundle` into its Python
    runtime, its largest distributions, the others, the executable and, last
    and named after the manifest layer, the app's own code together with the
    layer's other content.
    """
    entries: list[Entry] = []
    for d in spec.directories:
        entries.append(Entry.directory(d.path, d.mode, d.uid, d.gid))
    for index, f in enumerate(spec.files):
        try:
            entries.extend(tree_entries(f.src, f.dest, f.mode, f.uid, f.gid))
        except UnsafePathError as e:  # a symlink in the tree that climbs out
            raise ManifestError(f"{f.src}: {e}", file=manifest_file, line=spec.line,
                                field=f"layers[{spec.name}].files[{index}].src") from e
    for s in spec.symlinks:
        entries.append(Entry.symlink(s.path, s.target, s.uid, s.gid))
    if spec.tar is not None:
        from .sources.tar_layer import tar_entries

        entries.extend(tar_entries(spec.tar, work))
    if spec.pyinstaller is None:
        return [LayerPart(spec.name, entries)], []
    from .layercache.frozen import note_app, part_key
    from .sources.pyinstaller import bundle_entries, freeze, freeze_warnings, plan_freeze

    from .progress import streaming_runner
    from .sources.pyinstaller_output import WarningFilter, command_label, harmless_reason

    from .sources.buildroot import freeze_setup

    log = WarningFilter(ctx.log, verbose=ctx.verbose)

    def option_error(e: FreezeOptionError) -> ManifestError:
        return ManifestError(str(e), file=manifest_file, line=spec.line,
                             field=f"layers[{spec.name}].pyinstaller.{e.option}")

    try:
        options, runner = freeze_setup(spec.pyinstaller, architecture, ctx.cache_dir,
                                       streaming_runner(ctx.progress, command_label,
                                                        harmless_reason), log)
    except FreezeOptionError as e:
        raise option_error(e) from e
    plan = plan_freeze(options, runner=runner, source_date_epoch=ctx.epoch)
    app = _frozen_app_key(plan.key, spec, compression, ctx.epoch, view) if plan.app else None

    def frozen_now():
        try:
            frozen = freeze(options, cache_dir=ctx.cache_dir / "pyinstaller", log=log,
                            source_date_epoch=ctx.epoch, runner=runner, plan=plan)
            log.summary()
        except FreezeOptionError as e:
            raise option_error(e) from e
        return frozen

    if app is not None and ctx.layers.remote is not None:
        found = _cached_frozen_app(spec, ctx, work, entries, app, plan, log, frozen_now,
                                   compression, dict(view))
        if found is not None:
            return found
    frozen = frozen_now()
    lib_dirs = [posixpath.join(spec.dest, d) for d in frozen.library_dirs]
    bundle = bundle_entries(frozen, spec.dest)
    entry = spec.pyinstaller.entry.name
    if frozen.app is None:  # onefile: one executable, one layer
        exe = posixpath.join(spec.dest, frozen.executable)
        return [LayerPart(spec.name, bundle + entries, f"pyinstaller {entry} (onefile)",
                          frozen.cached, ((exe, frozen.packed_needs),))], lib_dirs
    groups = _bundle_groups(frozen, spec.dest, bundle)
    parts = [LayerPart(f"{spec.name}:{g.part}", list(g.entries), g.detail, frozen.cached,
                       content=part_key(app, g.part) if app else None)
             for g in groups if g.part != "code"]
    if app is not None:
        note_app(ctx.layers, app, [(g.part, g.detail) for g in groups if g.part != "code"],
                 freeze_warnings(frozen))
    code = [e for g in groups if g.part == "code" for e in g.entries]
    parts.append(LayerPart(spec.name, code + entries, f"pyinstaller {entry}: app code, "
                           + _count(code + entries)))
    return parts, lib_dirs


def _bundle_groups(frozen, dest: str, bundle: list[Entry] | None = None) -> list:
    """A split bundle's layer groups (:func:`builder.sources.bundle_plan.plan_bundle`)."""
    from .sources.bundle_plan import INTERNAL, distribution_owners, plan_bundle
    from .sources.pyinstaller import bundle_entries

    return plan_bundle(bundle if bundle is not None else bundle_entries(frozen, dest), dest,
                       frozen.executable, distribution_owners(frozen.dist_dir / INTERNAL))


def _frozen_app_key(freeze_key: str, spec: LayerSpec, compression: str, epoch: int,
                    view: dict[str, Entry]) -> str:
    """The key a frozen app's dependency layers are noted under: the freeze's key, the
    layer's name, place and options, and what the image below holds."""
    from .layercache.frozen import app_key

    dest = spec.dest.rstrip("/") or "/"
    # all of it: a missing parent directory takes its mode and owner from there, and a
    # bundled library the base has is left out (_prefer_base)
    below = sorted((p, e.kind.value, e.mode, e.uid, e.gid, e.size, e.target)
                   for p, e in view.items())
    return app_key(freeze_key, spec.name, dest, compression, epoch, spec.keep_special_bits,
                   [g.pattern for g in spec.exclude], below)


def _cached_frozen_app(spec: LayerSpec, ctx: BuildContext, work: Path, entries: list[Entry],
                       app: str, plan, log, frozen_now, compression: str,
                       below: dict[str, Entry]) -> tuple[list[LayerPart], list[str]] | None:
    """A onedir app's layers without freezing: its dependency layers from the layer
    cache (found by the freeze's key, their entries from their records), its code
    layer from the app's own files; None if the cache lacks any dependency layer."""
    from .layercache.frozen import find_app
    from .sources.bundle_plan import INTERNAL, plan_bundle
    from .sources.pyinstaller import app_entries

    options = spec.pyinstaller
    created = rfc3339(ctx.epoch)

    def rebuild(part: str) -> Layer:  # a remote blob turned out bad: make it here
        group = next(g for g in _bundle_groups(frozen_now(), spec.dest) if g.part == part)
        kept = [e for e in group.entries if not any(g.matches(e.path) for g in spec.exclude)]
        name = f"{spec.name}:{part}"
        return build_layer(normalize(kept, keep_special_bits=spec.keep_special_bits,
                                     below=below),
                           blob_dir=ctx.blob_dir, epoch=ctx.epoch, compression=compression,
                           name=name, history=_history(name, created),
                           keep_special_bits=spec.keep_special_bits)

    found = find_app(ctx.layers, app, rebuild, work)
    if found is None:
        return None
    for line in found.warnings:
        log(f"pyinstaller: {line}")
    log(f"pyinstaller: {options.entry.name}: dependencies from the layer cache "
        f"({plan.key[:12]})")
    parts = [LayerPart(f"{spec.name}:{p.name}", p.entries, p.detail, True, hit=p.hit)
             for p in found.parts]
    paths = {e.path for p in found.parts for e in p.entries}
    internal = posixpath.join(spec.dest, INTERNAL)

    def in_bundle(name: str) -> bool:  # the dependency layers hold _internal/<name>
        there = posixpath.join(internal, name)
        return there in paths or any(p.startswith(there + "/") for p in paths)

    code = [e for g in plan_bundle(app_entries(plan.app, spec.dest, in_bundle), spec.dest,
                                   options.name, {}) if g.part == "code" for e in g.entries]
    parts.append(LayerPart(spec.name, code + entries, f"pyinstaller {options.entry.name}: "
                           f"app code, {_count(code + entries)}"))
    return parts, [posixpath.join(spec.dest, d) for d in plan.library_dirs]


# -- config --------------------------------------------------------------------

def _apply_config(image: Image, spec: ConfigSpec, manifest: Manifest,
                  view: dict[str, Entry]) -> Image:
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
        changes["User"] = resolve_user(view, spec.user, manifest, spec.user_line)
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


def _view_file(view: dict[str, Entry], path: str, limit: int = 1 << 20) -> bytes | None:
    """A small file's content as the finished image will have it (None if absent)."""
    entry = view.get(path)
    if entry is None or entry.kind is not Kind.FILE or entry.opener is None:
        return None
    with entry.opener() as f:
        return f.read(limit)


def resolve_user(view: dict[str, Entry], user: str, manifest: Manifest, line: int) -> str:
    """``uid[:gid]`` as given, or a name looked up in the image's own /etc/passwd.

    Names become numbers in the config, so the runtime never needs to read
    /etc/passwd and ``runAsNonRoot`` policies can check the uid.
    """
    name, _, group = user.partition(":")
    if name.isdigit() and (not group or group.isdigit()):
        return user

    def fail(message: str) -> ManifestError:
        return ManifestError(message, file=manifest.where, line=line or None,
                             field="config.user")

    uid = gid = None
    if name.isdigit():
        uid = name
    else:
        passwd = _view_file(view, "/etc/passwd")
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
            groups = _view_file(view, "/etc/group")
            for row in (groups or b"").decode("utf-8", "replace").splitlines():
                cols = row.split(":")
                if len(cols) >= 3 and cols[0] == group:
                    gid = cols[2]
                    break
            else:
                raise fail(f"group {group!r} is not in the image's /etc/group")
    return f"{uid}:{gid}" if gid is not None else str(uid)
