"""License names as packages state them → SPDX license identifiers.

Only identifiers on the SPDX license list are ever emitted as ids; anything
else stays a free-text name (CycloneDX) or ``NOASSERTION`` (SPDX), so the
documents validate against their schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPDX_IDS = frozenset({
    "0BSD", "AFL-2.1", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0",
    "Artistic-1.0", "Artistic-2.0", "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause",
    "BSD-4-Clause", "BSL-1.0", "bzip2-1.0.6", "CC-BY-4.0", "CC0-1.0", "curl", "EPL-2.0",
    "GFDL-1.2-only", "GFDL-1.2-or-later", "GFDL-1.3-only", "GFDL-1.3-or-later", "GPL-1.0-or-later", "GPL-2.0-only",
    "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "HPND", "ISC", "LGPL-2.0-only",
    "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only",
    "LGPL-3.0-or-later", "MIT", "MIT-0", "MPL-1.1", "MPL-2.0", "OpenSSL", "PSF-2.0",
    "Python-2.0", "Unicode-DFS-2016", "AGPL-3.0-only", "GPL-1.0-only", "Unlicense", "X11", "Zlib", "ZPL-2.1",
})

_EXCEPTIONS = frozenset({"GCC-exception-3.1", "Classpath-exception-2.0", "LLVM-exception",
                         "Autoconf-exception-3.0", "Bison-exception-2.2"})

_ALIASES = {
    # Debian copyright (DEP-5) short names
    "gpl-1+": "GPL-1.0-or-later", "gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later",
    "gpl-3": "GPL-3.0-only", "gpl-3+": "GPL-3.0-or-later", "lgpl-2": "LGPL-2.0-only",
    "lgpl-2+": "LGPL-2.0-or-later", "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-2.1+": "LGPL-2.1-or-later", "lgpl-3": "LGPL-3.0-only",
    "lgpl-3+": "LGPL-3.0-or-later", "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause", "expat": "MIT",
    "mit": "MIT", "isc": "ISC", "zlib": "Zlib", "apache-2.0": "Apache-2.0",
    "mpl-2.0": "MPL-2.0", "gfdl-1.3+": "GFDL-1.3-or-later", "artistic": "Artistic-1.0",
    "artistic-2.0": "Artistic-2.0", "psf-2": "PSF-2.0", "cc0-1.0": "CC0-1.0",
    "unicode-dfs-2016": "Unicode-DFS-2016", "x11": "X11", "curl": "curl",
    # Python trove classifiers (the last segment)
    "mit license": "MIT", "apache software license": "Apache-2.0",
    "isc license (iscl)": "ISC", "python software foundation license": "PSF-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "the unlicense (unlicense)": "Unlicense", "zope public license": "ZPL-2.1",
    "zpl 2.1": "ZPL-2.1", "zpl-2.1": "ZPL-2.1",
    # free-text License: fields seen in the wild
    "new bsd": "BSD-3-Clause", "bsd-3": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause", "modified bsd": "BSD-3-Clause", "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "psf": "PSF-2.0",
}
_CANONICAL = {i.lower(): i for i in SPDX_IDS}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def spdx_id(name: str) -> str | None:
    """The SPDX id for one license name, or None when it is not known."""
    key = name.strip().lower()
    return _CANONICAL.get(key) or _ALIASES.get(key)


def spdx_expression(text: str) -> str | None:
    """``text`` as a valid SPDX expression of known ids (normalized), or None."""
    whole = spdx_id(text)
    if whole:
        return whole
    out: list[str] = []
    for token in _TOKEN.findall(text.strip()):
        upper = token.upper()
        if token in "()" or upper in ("AND", "OR", "WITH"):
            out.append(token if token in "()" else upper)
        elif out and out[-1] == "WITH" and token in _EXCEPTIONS:
            out.append(token)
        else:
            ident = spdx_id(token)
            if ident is None:
                return None
            out.append(ident)
    if not out:
        return None
    return " ".join(out).replace("( ", "(").replace(" )", ")")


# -- licenses stated in prose (Debian copyright files that are not DEP-5) ---------------

_FAMILIES = {"general": "GPL", "lesser general": "LGPL", "library general": "LGPL",
             "affero general": "AGPL", "free documentation": "GFDL"}
_NUMBER_DOT = r"(?:[^.]|\.(?=\d))"
"""A character of a sentence: anything but a full stop (the dot of ``2.1`` is kept)."""
_GRANT = re.compile(
    r"GNU (?P<family>Affero General|Lesser General|Library General|General|Free Documentation)"
    r" (?:Public )?License(?P<terms>" + _NUMBER_DOT + r"*?(?:version|\(v) ?"
    r"(?P<version>\d(?:\.\d)?)" + _NUMBER_DOT + r"*)", re.IGNORECASE)
_GRANT_WORDS = re.compile(r"^\s*\(v|published by|either version", re.IGNORECASE)
"""A grant, not a mention ("the GPL is in /usr/share/common-licenses/GPL, version 3 …")."""
_LATER = re.compile(r"\bor (?:\(at your option\) )?(?:any )?later\b", re.IGNORECASE)
_TEXTS = (  # the opening words of well-known permissive license texts
    ("MIT", re.compile(r"Permission is hereby granted, free of charge, to any person "
                       r"obtaining a copy", re.IGNORECASE)),
    ("ISC", re.compile(r"Permission to use, copy, modify, and(?:/or)? distribute this "
                       r"software for any purpose with or without fee is hereby granted",
                       re.IGNORECASE)),
    ("Zlib", re.compile(r"provided 'as-is', without any express or implied warranty[^$]{0,600}"
                        r"plainly marked", re.IGNORECASE)),
)
_BSD = re.compile(r"Redistribution and use in source and binary forms, with or without "
                  r"modification, are permitted", re.IGNORECASE)


def _grant_id(match: re.Match[str]) -> str | None:
    family = _FAMILIES[match.group("family").lower()]
    version = match.group("version")
    if "." not in version:
        version += ".0"
    terms = match.group("terms")
    if not _GRANT_WORDS.search(terms):
        return None
    ident = f"{family}-{version}-{'or-later' if _LATER.search(terms) else 'only'}"
    if ident not in SPDX_IDS:
        return None
    if family == "GPL" and re.search(r"GCC Runtime Library Exception", terms, re.IGNORECASE):
        return f"{ident} WITH GCC-exception-3.1"
    return ident


def prose_licenses(text: str) -> list[str]:
    """SPDX ids (or ``ID WITH exception``) of the licenses a copyright file grants in
    prose: GNU license grants ("… either version 2 of the License, or (at your option)
    any later version") and the opening words of the MIT, ISC, zlib and BSD texts."""
    flat = re.sub(r"\s+", " ", text)
    found: list[str] = []
    for match in _GRANT.finditer(flat):
        ident = _grant_id(match)
        if ident and ident not in found:
            found.append(ident)
    for ident, pattern in _TEXTS:
        if pattern.search(flat) and ident not in found:
            found.append(ident)
    for match in _BSD.finditer(flat):
        clause = flat[match.end():match.end() + 1500]
        ident = ("BSD-4-Clause" if "advertising materials" in clause else
                 "BSD-3-Clause" if re.search(r"endorse or promote", clause, re.I) else
                 "BSD-2-Clause")
        if ident not in found:
            found.append(ident)
    return found


# -- Debian copyright files ------------------------------------------------------------

@dataclass(frozen=True)
class StatedLicenses:
    names: tuple[str, ...] = ()
    """The licenses as the file names them."""
    expression: str | None = None
    """SPDX ids (and ``LicenseRef-…`` for names SPDX has none for), joined with AND."""
    refs: tuple[tuple[str, str], ...] = ()
    """``(LicenseRef-…, text)`` for each name SPDX has no id for."""


def license_ref(name: str) -> str:
    return "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "unknown")


def debian_copyright(data: bytes) -> StatedLicenses:
    """The licenses of a Debian ``copyright`` file: its DEP-5 ``License:`` fields (a name
    SPDX lacks, such as ``ad-hoc``, becomes a ``LicenseRef-`` with the file's text for it),
    else the grants written in prose (:func:`prose_licenses`)."""
    text = data.decode("utf-8", "replace")
    names: list[str] = []
    texts: dict[str, str] = {}
    lines = text.splitlines()
    for at, line in enumerate(lines):
        if not line.startswith("License:"):
            continue
        body = []
        for more in lines[at + 1:]:
            if not more.startswith((" ", "\t")):
                break
            body.append("" if more.strip() == "." else more.strip())
        parts = [p.strip() for p in re.split(r"\s+(?:or|and)\s+|\s*[|,]\s*", line[8:].strip())]
        for part in parts:
            if part and part not in names and " " not in part:
                names.append(part)
            if part and body and len(parts) == 1:
                texts.setdefault(part, "\n".join(body).strip())
    if not names:
        found = prose_licenses(text)
        return StatedLicenses(tuple(found), " AND ".join(sorted(found)) or None)
    ids: list[str] = []
    refs: list[tuple[str, str]] = []
    for name in names:
        ident = spdx_id(name)
        if ident is None:
            ident = license_ref(name)
            refs.append((ident, texts.get(name) or
                         f"Stated as {name!r} in the package's Debian copyright file."))
        ids.append(ident)
    return StatedLicenses(tuple(names), " AND ".join(sorted(set(ids))), tuple(refs))
