"""License names as packages state them → SPDX license identifiers.

Only identifiers on the SPDX license list are ever emitted as ids; anything
else stays a free-text name (CycloneDX) or ``NOASSERTION`` (SPDX), so the
documents validate against their schemas.
"""

from __future__ import annotations

import re

SPDX_IDS = frozenset({
    "0BSD", "AFL-2.1", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0",
    "Artistic-1.0", "Artistic-2.0", "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause",
    "BSD-4-Clause", "BSL-1.0", "bzip2-1.0.6", "CC-BY-4.0", "CC0-1.0", "curl", "EPL-2.0",
    "GFDL-1.2-or-later", "GFDL-1.3-or-later", "GPL-1.0-or-later", "GPL-2.0-only",
    "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "HPND", "ISC", "LGPL-2.0-only",
    "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only",
    "LGPL-3.0-or-later", "MIT", "MIT-0", "MPL-1.1", "MPL-2.0", "OpenSSL", "PSF-2.0",
    "Python-2.0", "Unicode-DFS-2016", "Unlicense", "X11", "Zlib", "ZPL-2.1",
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
