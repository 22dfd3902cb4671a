"""The Depends/Pre-Depends closure of a package list, the way apt would pick it.

Rules, in order, for each dependency group ``a (>= 1) | b | c``:

1. a group naming an excluded package (``exclude:`` in the definition) is taken
   as satisfied — the user said the image does without it (debconf, perl-base);
2. a group already satisfied by a chosen package (by name, or by ``Provides``)
   adds nothing;
3. otherwise the first alternative that can be satisfied is chosen: a real
   package whose highest version meets the constraint, else the first (sorted)
   package that provides it.

Architecture qualifiers (``:any``, ``:native``, ``:amd64``) are dropped: a base
is built for one architecture. The result is sorted by name, so the same index
always gives the same lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from debian.deb822 import Packages
from debian.debian_support import Version, version_compare

from ...errors import DebianError
from .archive import SUITE_FIELD, PackageIndex

_OPS = {
    "<<": lambda c: c < 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0,
    ">=": lambda c: c >= 0, ">>": lambda c: c > 0,
    "<": lambda c: c <= 0, ">": lambda c: c >= 0,   # obsolete spellings, as dpkg reads them
}


@dataclass(frozen=True)
class Resolved:
    """One chosen package, straight from its ``Packages`` stanza."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    suite: str           # the suite whose index named it (picks the mirror to fetch from)
    stanza: str          # the raw Packages stanza, for messages and debugging


def _satisfies(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    op, wanted = constraint
    return _OPS[op](version_compare(version, wanted))


def _best(index: PackageIndex, name: str, architecture: str,
          constraint: tuple[str, str] | None = None):
    """The highest version of ``name`` for the architecture that meets ``constraint``."""
    ok = [p for p in index.candidates(name)
          if p.get("Architecture") in (architecture, "all")
          and _satisfies(p["Version"], constraint)]
    if not ok:
        return None
    return max(ok, key=lambda p: Version(p["Version"]))


def _provides(stanza) -> dict[str, str | None]:
    """Virtual names a stanza provides, with the version it provides (or None)."""
    out: dict[str, str | None] = {}
    for group in stanza.relations.get("provides", []):
        for rel in group:
            out[rel["name"]] = rel["version"][1] if rel.get("version") else None
    return out


def resolve(index: PackageIndex, requested: Iterable[str], architecture: str,
            exclude: Iterable[str] = (), where: str = "the archive") -> list[Resolved]:
    """Resolve ``requested`` and its closure; raise :class:`DebianError` naming what fails."""
    excluded = set(exclude)
    chosen: dict[str, Packages] = {}          # name -> stanza
    provided: dict[str, list[str | None]] = {}  # virtual -> provided versions
    queue: list[tuple[Packages, str]] = []     # (stanza, why)

    def choose(stanza, why: str) -> None:
        name = stanza["Package"]
        if name in chosen:
            return
        chosen[name] = stanza
        for virtual, version in _provides(stanza).items():
            provided.setdefault(virtual, []).append(version)
        queue.append((stanza, why))

    for name in requested:
        name = name.split(":", 1)[0]
        if name in excluded:
            raise DebianError(f"package {name!r} is both listed in packages and excluded")
        stanza = _best(index, name, architecture)
        if stanza is None:
            providers = index.providers(name)
            hint = f" (it is virtual, provided by: {', '.join(providers)})" if providers else ""
            raise DebianError(f"package {name!r} not found in {where} for {architecture}{hint}")
        choose(stanza, "requested")

    def group_satisfied(group) -> bool:
        for rel in group:
            name, constraint = rel["name"], rel.get("version")
            if name in chosen and _satisfies(chosen[name]["Version"], constraint):
                return True
            if name in provided:
                if constraint is None:
                    return True
                if any(v is not None and _satisfies(v, constraint) for v in provided[name]):
                    return True
        return False

    def pick(group):
        for rel in group:
            stanza = _best(index, rel["name"], architecture, rel.get("version"))
            if stanza is not None:
                return stanza
        for rel in group:
            constraint = rel.get("version")
            for provider in index.providers(rel["name"]):
                stanza = _best(index, provider, architecture)
                if stanza is None or provider in excluded:
                    continue
                version = _provides(stanza).get(rel["name"])
                if constraint is None or (version is not None and _satisfies(version, constraint)):
                    return stanza
        return None

    while queue:
        stanza, _why = queue.pop(0)
        owner = f"{stanza['Package']} {stanza['Version']}"
        for field in ("pre-depends", "depends"):
            for group in stanza.relations.get(field, []):
                if any(rel["name"] in excluded for rel in group):
                    continue
                if group_satisfied(group):
                    continue
                target = pick(group)
                if target is None:
                    text = " | ".join(_format(rel) for rel in group)
                    raise DebianError(f"{owner} depends on {text}, which is not available "
                                      f"in {where} for {architecture} (add it to 'exclude:' "
                                      "if the image can do without it)")
                choose(target, f"needed by {owner}")

    out = []
    for name in sorted(chosen):
        s = chosen[name]
        try:
            out.append(Resolved(name, s["Version"], s["Architecture"], s["Filename"],
                                int(s["Size"]), s["SHA256"].lower(), s.get(SUITE_FIELD, ""),
                                str(s)))
        except KeyError as e:
            raise DebianError(f"{where}: stanza of {name} lacks field {e}") from e
    return out


def _format(rel) -> str:
    version = rel.get("version")
    return f"{rel['name']} ({version[0]} {version[1]})" if version else rel["name"]
