"""Find the Debian archive to use, without ever naming a host in the code.

Order: an explicit ``--mirror``, then ``$OCIBUILD_DEBIAN_MIRROR``, then the
host's apt configuration: deb822 files ``/etc/apt/sources.list.d/*.sources``
and the one-line ``/etc/apt/sources.list`` (plus ``sources.list.d/*.list``).
A source is taken only if it is a ``deb`` (binary) source serving the suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from debian.deb822 import Deb822

from ...errors import DebianError

ENV_MIRROR = "OCIBUILD_DEBIAN_MIRROR"


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` line or deb822 stanza, reduced to what we need."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str          # "file:line" or "file", for messages


def parse_one_line(text: str, origin: str) -> list[AptSource]:
    """Parse one-line style ``deb [opts] uri suite comp...`` entries."""
    out: list[AptSource] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            # options may contain spaces: [ arch=amd64 signed-by=... ]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) < 2:
            continue
        out.append(AptSource(words[0], (words[1],), tuple(words[2:]), f"{origin}:{number}"))
    return out


def parse_deb822(text: str, origin: str) -> list[AptSource]:
    """Parse deb822 ``.sources`` stanzas (``Types``, ``URIs``, ``Suites``, ``Components``)."""
    out: list[AptSource] = []
    # Deb822 keeps comment lines out of field values.
    for stanza in Deb822.iter_paragraphs(text.splitlines(keepends=True)):
        if "deb" not in stanza.get("Types", "").split():
            continue
        if stanza.get("Enabled", "yes").strip().lower() == "no":
            continue
        suites = tuple(stanza.get("Suites", "").split())
        components = tuple(stanza.get("Components", "").split())
        for uri in stanza.get("URIs", "").split():
            out.append(AptSource(uri, suites, components, origin))
    return out


def host_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every binary source the host's apt configuration names, in apt's reading order."""
    sources: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        sources += parse_one_line(main_list.read_text(errors="replace"), str(main_list))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += parse_one_line(path.read_text(errors="replace"), str(path))
            elif path.suffix == ".sources":
                sources += parse_deb822(path.read_text(errors="replace"), str(path))
    return sources


def _pick(setting: str, suite: str) -> str | None:
    """``URL`` serves every suite; ``SUITE=URL,SUITE=URL`` names a URL per suite."""
    if "=" not in setting.split("://", 1)[0] and "," not in setting:
        return setting.rstrip("/")
    for item in setting.split(","):
        name, sep, url = item.strip().partition("=")
        if sep and name.strip() == suite:
            return url.strip().rstrip("/")
    return None


def find_mirror(suite: str, explicit: str | None = None,
                env: Mapping[str, str] | None = None,
                apt_dir: Path = Path("/etc/apt")) -> str:
    """The archive base URL (no trailing slash) that serves ``suite``.

    ``explicit`` (``--mirror``) and ``$OCIBUILD_DEBIAN_MIRROR`` hold either one
    URL for every suite or ``SUITE=URL,...`` pairs; a suite they do not name
    falls through to the host's apt sources.
    """
    env = os.environ if env is None else env
    for setting, origin in ((explicit, "--mirror"), (env.get(ENV_MIRROR), f"${ENV_MIRROR}")):
        if setting:
            url = _pick(setting, suite)
            if url:
                if not url.startswith(("http://", "https://", "file:/")):
                    raise DebianError(f"{origin}: {url!r} is not an http://, https:// or file:/ "
                                      "archive URL")
                return url
    sources = host_sources(apt_dir)
    for source in sources:
        if suite in source.suites:
            return source.uri.rstrip("/")
    seen = ", ".join(sorted({s for src in sources for s in src.suites})) or "none"
    raise DebianError(
        f"no Debian mirror for suite {suite!r}: pass --mirror URL or set ${ENV_MIRROR}"
        f" (the host's apt sources under {apt_dir} serve suites: {seen})")
