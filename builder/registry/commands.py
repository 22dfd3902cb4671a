"""The registry verbs as the CLI calls them: plain functions returning data.

Each returns a JSON-ready dict (or a digest); none prints. Credentials never
appear in what they return. Progress goes to the ``on_event`` callback, which
the CLI may render on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from ..errors import InputError
from ..oci.types import Platform
from ..progress import Progress
from .auth import Credentials, CredentialStore
from .client import RegistryClient
from .pull import pull as _pull
from .push import ClientPool, Event, push_image
from .reference import normalize_registry, parse_reference
from .transport import Transport


def push(tar_path: str | Path, refs: Sequence[str], insecure: bool = False,
         json: bool = False, *, on_event: Event | None = None,
         pool: ClientPool | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """``ocibuild push IMAGE.tar REF…``: returns digest, references and blob counts.

    ``json`` is accepted for symmetry with the CLI flag; the result is the same
    dict either way (the caller renders it).
    """
    from ..cache import default_cache_dir
    from ..layers.reader import check_layers
    from ..oci.index import images_of
    from ..sources.archive import read_artifact

    image = read_artifact(Path(tar_path))
    for each in images_of(image):  # refused members are refused before any blob is sent
        check_layers(each, default_cache_dir())
    pool = pool or ClientPool(insecure=insecure)
    digest = push_image(image, list(refs), insecure=insecure, pool=pool, on_event=on_event,
                        progress=progress)
    names = [str(parse_reference(r).with_digest(digest)) for r in refs]
    return {"digest": digest, "references": [str(parse_reference(r)) for r in refs],
            "pinned": sorted(set(names)), "blobs": pool.totals()}


def pull(ref: str, out: str | Path, platform: str | None = None, insecure: bool = False,
         *, cache_dir: Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """``ocibuild pull REF -o IMAGE.tar``: fetch verified (blobs against their digests,
    layers' tars against the config's diff_ids, members checked), write the tarball
    atomically."""
    from ..layers.reader import check_layers
    from ..sinks.tarball import write_tarball

    plat = _platform(platform)
    pulled = _pull(ref, plat, cache_dir, insecure=insecure, progress=progress)
    check_layers(pulled.image)
    reference = pulled.reference
    name = f"{reference.name}:{reference.tag}" if reference.tag else reference.name
    write_tarball(pulled.image, Path(out), name)
    return {"reference": str(reference), "manifest_digest": pulled.manifest_digest,
            "digest": pulled.image.digest, "layers": len(pulled.image.layers),
            "output": str(out),
            "pinned": str(reference.with_digest(pulled.resolved_digest))}


def resolve(ref: str, insecure: bool = False) -> str:
    """``ocibuild resolve REF``: the manifest digest the reference names now."""
    reference = parse_reference(ref)
    client = RegistryClient.for_registry(reference.registry, insecure=insecure)
    return client.resolve(reference.repository, reference.identifier)


def login(registry: str, user: str, password_stdin: bool | str = True,
          insecure: bool = False, *, stdin: TextIO | None = None,
          store: CredentialStore | None = None) -> dict[str, Any]:
    """``ocibuild login REGISTRY -u USER --password-stdin``.

    Checks the credentials against the registry first (``GET /v2/`` and, for
    token auth, a token for no scope), then stores them as ``docker login``
    does. ``password_stdin`` may be the password itself (for library use).
    """
    if isinstance(password_stdin, str):
        password = password_stdin
    elif password_stdin:
        password = (stdin or sys.stdin).read().rstrip("\r\n")
    else:
        raise InputError("login: give the password on stdin (--password-stdin)")
    if not user or not password:
        raise InputError("login: user name and password must not be empty")
    creds = Credentials(user, password)
    host = normalize_registry(registry)
    transport = Transport(host, credentials=creds, insecure=insecure)
    transport.request("GET", "/v2/", what=f"login to {host}", ok=(200,))
    store = store or CredentialStore()
    store.store(host, creds)
    return {"registry": host, "username": user, "config": str(store.path)}


def _platform(text: str | None) -> Platform | None:
    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError as e:
        raise InputError(f"--platform: {e}") from e
