"""Push an :class:`~builder.oci.image.Image` or an :class:`~builder.oci.index.Index`
to one or more references.

Per repository: every layer blob is checked with ``HEAD`` and skipped when
present, else mounted from a repository of the same registry that has it
(one pushed earlier in this call, or one named in ``mount_from``), else
uploaded; a few blobs go in parallel. The config blob follows, and the
manifest goes last, once per tag, so a tag never names an image whose blobs
are not all there; for an index, every image's manifest is put by digest first.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import requests

from ..errors import InputError, RegistryError
from ..humanize import short_digest
from ..oci.index import Artifact, Blob, Index, blobs_of, images_of
from ..oci.types import BASE_NAME_ANNOTATION
from ..progress import CountingReader, NullProgress, Progress
from .client import RegistryClient
from .reference import Reference, parse_reference
from .transport import RetryPolicy, new_session

log = logging.getLogger("ocibuild.registry")

Event = Callable[[str, str, int], None]
"""``on_event(action, digest, size)``; action is skipped, mounted, uploaded, manifest
(an index's image manifest) or tagged."""


class ClientPool:
    """One :class:`RegistryClient` per registry, made on first use and shared."""

    def __init__(self, *, session: requests.Session | None = None, insecure: bool = False,
                 retry: RetryPolicy | None = None, chunk_size: int | None = None) -> None:
        self.session = session or new_session()
        self.insecure, self.retry, self.chunk_size = insecure, retry, chunk_size
        self._clients: dict[str, RegistryClient] = {}

    def get(self, registry: str) -> RegistryClient:
        if registry not in self._clients:
            kwargs = {"chunk_size": self.chunk_size} if self.chunk_size else {}
            self._clients[registry] = RegistryClient.for_registry(
                registry, session=self.session, insecure=self.insecure, retry=self.retry,
                **kwargs)
        return self._clients[registry]

    def totals(self) -> dict[str, int]:
        """Blob counts over every registry used: uploaded, mounted, skipped, and the
        bytes uploaded."""
        out = {"uploaded": 0, "mounted": 0, "skipped": 0, "bytes_uploaded": 0}
        for client in self._clients.values():
            for key in out:
                out[key] += getattr(client.stats, key)
        return out


def push_image(image: Artifact, refs: Sequence[str], *, insecure: bool = False,
               jobs: int = 3, mount_from: Iterable[str] = (),
               pool: ClientPool | None = None, on_event: Event | None = None,
               progress: Progress | None = None) -> str:
    """Push ``image`` (an Image or an Index) to every reference in ``refs``; return
    the digest of its manifest (of the index, for an Index).

    A reference pinned by digest must name this digest. ``mount_from`` lists
    repositories (``registry/repo``) that may already hold some blobs; the base
    each image was built on (its ``org.opencontainers.image.base.name``) is
    always one, so a base's layers are mounted, not uploaded again. An index's
    manifests are pushed by digest before the index itself is tagged.
    """
    if not refs:
        raise InputError("push: no destination reference given")
    parsed = [parse_reference(r) for r in refs]
    digest = image.digest
    for ref in parsed:
        if ref.digest and ref.digest != digest:
            raise InputError(f"push: {ref} is pinned to a digest, but the image is {digest}")
    pool = pool or ClientPool(insecure=insecure)
    sources: dict[str, list[str]] = {}
    bases = [b for b in (i.manifest_annotations.get(BASE_NAME_ANNOTATION)
                         for i in images_of(image)) if b]
    for text in [*mount_from, *bases]:
        try:
            src = parse_reference(text, default_tag=None)
        except InputError:
            continue  # an annotation of someone else's image need not be a reference
        sources.setdefault(src.registry, []).append(src.repository)
    emit = on_event or (lambda action, dgst, size: None)

    by_repo: dict[tuple[str, str], list[Reference]] = {}
    for ref in parsed:
        by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
    blobs = blobs_of(image)
    children = images_of(image) if isinstance(image, Index) else ()
    for (registry, repo), repo_refs in by_repo.items():
        client = pool.get(registry)
        others = [r for r in sources.get(registry, []) if r != repo]
        _push_blobs(client, repo, blobs, others, jobs, emit, progress or NullProgress())
        for child in children:
            got = client.put_manifest(repo, child.digest, child.manifest_bytes,
                                      child.manifest_media_type)
            emit("manifest", got, len(child.manifest_bytes))
        manifest = image.manifest_bytes
        for ref in repo_refs:
            got = client.put_manifest(repo, ref.tag or digest, manifest,
                                      image.manifest_media_type)
            emit("tagged", got, len(manifest))
            log.info("pushed %s", ref)
        sources.setdefault(registry, []).insert(0, repo)
    return digest


def _push_blobs(client: RegistryClient, repo: str, blobs: list[Blob], mount_from: list[str],
                jobs: int, emit: Event, progress: Progress) -> None:
    """Layers a few at a time, then the configs (what makes an image whole)."""
    layers = [b for b in blobs if not b.is_config]
    configs = [b for b in blobs if b.is_config]

    def one(blob: Blob) -> None:
        d = blob.descriptor
        size = client.blob_size(repo, d.digest)
        if size is not None:
            client.stats.add(skipped=1)
            emit("skipped", d.digest, d.size)
            return
        for source in mount_from:
            if client.mount_blob(repo, d.digest, source):
                emit("mounted", d.digest, d.size)
                return
        try:
            with progress.task(f"upload {short_digest(d.digest)}", total=d.size) as task:
                client.upload_blob(repo, d, lambda: CountingReader(blob.opener(), task))
        except RegistryError as e:
            raise e.replace(message=f"push failed: {e.message}") from e
        emit("uploaded", d.digest, d.size)

    if layers:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            for future in [ex.submit(one, b) for b in layers]:
                future.result()
    for config in configs:
        one(config)
