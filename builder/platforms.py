"""One manifest, several platforms: the loop above :func:`~builder.pipeline.build_image`.

A manifest with ``platforms:`` is built once per platform, each time as a
manifest narrowed to that platform, and the images become one
:class:`~builder.oci.index.Index` in the order listed (apko's
``buildImageComponents``, ko's ``Result``). A manifest with ``platform:``
gives one image, as before. Layers that do not depend on the architecture
(files, directories, symlinks, tar) come out byte for byte the same on every
platform, so they are stored, written and pushed once.
"""

from __future__ import annotations

import platform as _host
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .errors import InputError, ManifestError
from .manifest import Manifest
from .oci.image import Image
from .oci.index import Index, IndexManifest
from .oci.types import Platform
from .pipeline import BuildContext, BuildResult, build_image

MACHINE_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64",
                         "arm64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
                         "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}
"""``uname -m`` → the OCI architecture name (GOARCH's spelling)."""


def host_architecture() -> str:
    machine = _host.machine()
    return MACHINE_ARCHITECTURES.get(machine, machine)


@dataclass
class Build:
    """What a build made: one image, or an index of one image per platform."""

    artifact: Image | Index
    name: str
    results: list[BuildResult]
    """One per platform, in the index's order."""

    @property
    def is_index(self) -> bool:
        return isinstance(self.artifact, Index)

    @property
    def warnings(self) -> list[str]:
        if len(self.results) == 1:
            return list(self.results[0].warnings)
        return [f"{r.image.platform}: {w}" for r in self.results for w in r.warnings]


def parse_platforms(texts: Sequence[str]) -> list[Platform]:
    """``--platform`` values (each may be a comma-separated list) as platforms."""
    out: list[Platform] = []
    for text in texts:
        for part in text.split(","):
            try:
                out.append(Platform.parse(part.strip()))
            except ValueError as e:
                raise InputError(f"--platform: {e}") from e
    return out


def select_platforms(manifest: Manifest, only: Sequence[Platform] = ()) -> list[Platform]:
    """The platforms to build: the manifest's, or the subset ``only`` names."""
    listed = list(manifest.platforms) or [manifest.platform]
    if not only:
        return listed
    for want in only:
        if not any(p.satisfies(want) for p in listed):
            raise InputError(f"--platform {want}: {manifest.file.name} builds "
                             f"{', '.join(str(p) for p in listed)}")
    return [p for p in listed if any(p.satisfies(want) for want in only)]


def build(manifest: Manifest, ctx: BuildContext, only: Sequence[Platform] = ()) -> Build:
    """Build ``manifest`` for each of its platforms (or the subset ``only`` names).

    ``platforms:`` always gives an index (even of one, under ``--platform``);
    ``platform:`` gives an image.
    """
    chosen = select_platforms(manifest, only)
    for target in chosen:
        check_buildable(manifest, target)
    if not manifest.platforms:
        result = build_image(manifest, ctx)
        return Build(result.image, result.name, [result])
    results = [build_image(narrow(manifest, p), ctx) for p in chosen]
    index = Index(tuple(IndexManifest(r.image) for r in results))
    return Build(index, manifest.image, results)


def _architectures(definition: Path) -> tuple[str, ...]:
    from .sources.debian import load_base_definition

    return tuple(load_base_definition(definition).all_architectures)


def _default_root_architectures() -> tuple[str, ...]:
    from .sources.buildroot import DEFAULT_DEFINITION

    return _architectures(DEFAULT_DEFINITION) if DEFAULT_DEFINITION.is_file() else ()


def narrow(manifest: Manifest, target: Platform) -> Manifest:
    """``manifest`` as a single-platform manifest for ``target``."""
    return replace(manifest, platform=target, platforms=())


def check_buildable(manifest: Manifest, target: Platform) -> None:
    """Refuse, before any work, what would silently put host-architecture files into an
    image for another architecture: a frozen app, and libraries copied from the host."""
    for spec in manifest.layers:
        root = spec.pyinstaller.build_root if spec.pyinstaller is not None else None
        if root is not None and target.architecture not in _architectures(root):
            raise ManifestError(
                f"build root {root.name} is locked for {', '.join(_architectures(root))}, "
                f"not {target.architecture}: add it to its architectures and run "
                f"'ocibuild lock {root.name}'", file=str(manifest.file), line=spec.line,
                field=f"layers[{spec.name}].pyinstaller.build_root")
    host = host_architecture()
    if target.architecture == host:
        return
    line = manifest.platforms_line or None
    if manifest.libraries_from == "host":
        raise ManifestError(f"libraries: {{from: host}} copies this {host} machine's "
                            f"libraries, which cannot serve {target}; put them in the base",
                            file=str(manifest.file), line=line, field="libraries")
    for spec in manifest.layers:
        if spec.pyinstaller is not None and spec.pyinstaller.build_root is None:
            raise ManifestError(
                f"a pyinstaller layer with build_root: host freezes with this {host} "
                f"machine's Python, so it cannot be built for {target}: leave build_root "
                f"out (the default build root, base_images/python-build.yaml, is locked "
                f"for {', '.join(_default_root_architectures())}) or name a base "
                f"definition locked for {target.architecture}",
                file=str(manifest.file), line=spec.line,
                field=f"layers[{spec.name}].pyinstaller")
