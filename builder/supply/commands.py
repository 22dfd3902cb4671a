"""The supply-chain verbs the ``build`` command chains after building and pushing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..oci.index import Artifact, Index, images_of
from ..sinks.atomic import atomic_file
from .sbom import SUFFIX, generate, render
from .source import Subject


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, then rename)."""
    with atomic_file(path) as out:
        out.write(data)


def sbom_path(image_path: Path, fmt: str, platform: str | None = None) -> Path:
    """``iris.tar`` → ``iris.spdx.json`` (or ``iris.cdx.json``), beside the image; with
    ``platform`` (an index's image) ``iris.linux-arm64.spdx.json``."""
    stem = image_path.name[:-4] if image_path.name.endswith(".tar") else image_path.name
    if platform:
        stem += "." + platform.replace("/", "-")
    return image_path.with_name(stem + SUFFIX[fmt])


def build_sbom(artifact: Artifact, name: str | None, image_path: Path, fmt: str) -> list[Path]:
    """``build --sbom FORMAT``: the SBOM of the built image, next to its output; of
    each platform's image, for an index."""
    several = isinstance(artifact, Index)
    paths = []
    for image in images_of(artifact):
        path = sbom_path(image_path, fmt, str(image.platform) if several else None)
        write_bytes(path, render(generate(Subject(image, name, image.digest), fmt)))
        paths.append(path)
    return paths


def sign_pushed(refs: Sequence[str], digest: str, key: Any, *,
                insecure: bool = False) -> list[dict[str, Any]]:
    """``build --push REF… --sign-key KEY``: sign the pushed digest in every repository.

    ``key`` is a key file's path or a key already loaded with ``load_signing_key``
    (the CLI loads it before building, so a wrong password fails before any push).
    """
    from ..registry.push import ClientPool
    from ..registry.reference import parse_reference
    from .sign import load_signing_key, sign_with_key

    if isinstance(key, (str, Path)):
        key = load_signing_key(key)
    pool = ClientPool(insecure=insecure)
    done: dict[str, dict[str, Any]] = {}
    for text in refs:
        ref = parse_reference(text)
        if ref.name not in done:
            done[ref.name] = sign_with_key(ref.with_digest(digest), key, pool=pool).to_json()
    return list(done.values())


SBOM_PREDICATE = {"spdx-json": "spdxjson", "cyclonedx-json": "cyclonedx"}
"""``sign --attach-sbom FORMAT`` → the cosign ``--type`` of the attestation."""


def sign_with_sbom(ref: str, key_path: Path | str, fmt: str, *,
                   annotations: dict[str, str] | None = None,
                   insecure: bool = False) -> dict[str, Any]:
    """``sign REF --key K --attach-sbom FORMAT``: sign the image, then attest its SBOM;
    for an image index, sign it and each manifest and attest each platform's SBOM to
    that platform's manifest (``attestations``, in the index's order).

    The key is read once; the SBOM describes the image pulled by the signed digest, so
    a tag moved in between cannot put another image's packages under this signature.
    """
    from ..registry.push import ClientPool
    from ..registry.reference import parse_reference
    from .attest import attest
    from .sign import load_signing_key, sign_with_key
    from .source import open_subjects

    key = load_signing_key(key_path)
    pool = ClientPool(insecure=insecure)
    signed = sign_with_key(ref, key, annotations=annotations, pool=pool)
    subjects = open_subjects(signed.reference, insecure=insecure)
    pinned = parse_reference(signed.reference)
    attested = []
    for subject in subjects:
        sbom = render(generate(subject, fmt))
        done = attest(pinned.with_digest(subject.digest), sbom, SBOM_PREDICATE[fmt], key,
                      pool=pool).to_json()
        attested.append({"platform": str(subject.image.platform), **done}
                        if signed.manifests else done)
    if signed.manifests:
        return {"signature": signed.to_json(), "attestations": attested}
    return {"signature": signed.to_json(), "attestation": attested[0]}
