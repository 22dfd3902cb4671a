"""Image references: ``[registry[:port]/]repository[:tag][@sha256:…]``.

Parsing follows the docker/distribution reference grammar
(``reference/regexp.go``) and docker's normalization (``normalize.go``): a
first path component is a registry only if it contains ``.`` or ``:`` or is
``localhost``; otherwise the registry is ``docker.io`` and a single-component
repository gets the ``library/`` namespace. Repository names must be
lowercase; tags are ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; only sha256 digests
are accepted, because that is the only algorithm ocibuild verifies.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import InputError

DEFAULT_REGISTRY = "docker.io"
"""docker's default registry name, as written in normalized references."""

DOCKER_HUB_API_HOST = "registry-1.docker.io"
"""The host that serves the v2 API for ``docker.io`` (docker's documented default)."""

_LEGACY_HUB_NAMES = frozenset({"index.docker.io", "registry-1.docker.io"})

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"^{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_ANY_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_MAX_NAME = 255


class BadReferenceError(InputError):
    """A malformed image reference; the message says which part is wrong."""


@dataclass(frozen=True)
class Reference:
    """A normalized image reference.

    ``registry`` is the name as users write it (``docker.io``, ``127.0.0.1:5000``);
    :attr:`api_host` is where its v2 API lives. At least one of ``tag`` and
    ``digest`` is set once parsed (``latest`` is the default tag).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @staticmethod
    def parse(text: str, *, default_tag: str | None = "latest") -> "Reference":
        return parse_reference(text, default_tag=default_tag)

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def name(self) -> str:
        """``registry/repository``, fully qualified."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG.match(tag):
            raise BadReferenceError(f"invalid tag {tag!r}")
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        if not _DIGEST.match(digest):
            raise BadReferenceError(f"invalid digest {digest!r}")
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:name.index("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def normalize_registry(host: str) -> str:
    """``index.docker.io`` and friends become ``docker.io``; others are kept as written."""
    host = host.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0]
    return DEFAULT_REGISTRY if host.lower() in _LEGACY_HUB_NAMES else host


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        return DEFAULT_REGISTRY, name
    return first, rest


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalize ``text``; raise :class:`BadReferenceError` when malformed.

    ``default_tag`` is applied when neither tag nor digest is given (pass None
    to leave both unset, e.g. for a repository name).
    """
    if not isinstance(text, str) or not text:
        raise BadReferenceError("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise BadReferenceError(f"invalid reference {text!r}: contains whitespace")
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _ANY_DIGEST.match(digest):
            raise BadReferenceError(f"invalid reference {text!r}: malformed digest {digest!r}")
        if not _DIGEST.match(digest):
            raise BadReferenceError(
                f"invalid reference {text!r}: only sha256 digests (64 lowercase hex) are supported")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise BadReferenceError(f"invalid reference {text!r}: invalid tag {tag!r}")
    if not rest:
        raise BadReferenceError(f"invalid reference {text!r}: no repository name")
    registry, repository = _split_registry(rest)
    if not _DOMAIN.match(registry):
        raise BadReferenceError(f"invalid reference {text!r}: invalid registry {registry!r}")
    registry = normalize_registry(registry)
    if repository.lower() != repository:
        raise BadReferenceError(
            f"invalid reference {text!r}: repository name must be lowercase")
    for part in repository.split("/"):
        if not _PATH_COMPONENT.match(part):
            raise BadReferenceError(
                f"invalid reference {text!r}: invalid repository component {part!r}")
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = "library/" + repository
    if len(repository) > _MAX_NAME:
        raise BadReferenceError(
            f"invalid reference {text!r}: repository name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, repository, tag, digest)
