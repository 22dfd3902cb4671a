"""Which mirror: --mirror, then $OCIBUILD_DEBIAN_MIRROR, then the host's apt sources."""

from __future__ import annotations

import pytest

from builder.errors import DebianError
from builder.sources.debian.apt_sources import find_mirror, host_sources

DEB822 = """\
# comment
Types: deb deb-src
# a comment inside the stanza
URIs: http://mirror.example.invalid/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example.invalid/debian
Suites: trixie
Components: main
"""

ONE_LINE = """\
# deb http://commented.example.invalid/debian trixie main
deb-src http://src.example.invalid/debian sid main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://one.example.invalid/debian sid main
deb [ arch=amd64 ] http://spaced.example.invalid/debian experimental main
"""


@pytest.fixture
def apt_dir(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text(ONE_LINE)
    return tmp_path


def test_deb822_and_one_line_sources(apt_dir):
    assert find_mirror("bookworm", env={}, apt_dir=apt_dir) == \
        "http://mirror.example.invalid/debian"
    assert find_mirror("bookworm-security", env={}, apt_dir=apt_dir) == \
        "http://security.example.invalid/debian-security"
    assert find_mirror("sid", env={}, apt_dir=apt_dir) == "http://one.example.invalid/debian"
    assert find_mirror("experimental", env={}, apt_dir=apt_dir) == \
        "http://spaced.example.invalid/debian"
    origins = [s.origin for s in host_sources(apt_dir)]
    assert origins[0].endswith("sources.list:3")


def test_disabled_and_source_only_entries_are_ignored(apt_dir):
    with pytest.raises(DebianError, match="no Debian mirror for suite 'trixie'"):
        find_mirror("trixie", env={}, apt_dir=apt_dir)


def test_explicit_and_environment_win(apt_dir):
    env = {"OCIBUILD_DEBIAN_MIRROR": "http://env.example.invalid/debian/"}
    assert find_mirror("bookworm", env=env, apt_dir=apt_dir) == "http://env.example.invalid/debian"
    assert find_mirror("bookworm", "http://cli.example.invalid/d/", env=env,
                       apt_dir=apt_dir) == "http://cli.example.invalid/d"


def test_no_sources_says_what_to_do(tmp_path):
    with pytest.raises(DebianError, match=r"--mirror URL or set \$OCIBUILD_DEBIAN_MIRROR"):
        find_mirror("bookworm", env={}, apt_dir=tmp_path)


def test_per_suite_mirrors_fall_through_to_apt_sources(apt_dir):
    setting = "bookworm=http://a.example.invalid/debian/, sid=http://b.example.invalid/d"
    assert find_mirror("bookworm", setting, env={}, apt_dir=apt_dir) == \
        "http://a.example.invalid/debian"
    assert find_mirror("bookworm-security", setting, env={}, apt_dir=apt_dir) == \
        "http://security.example.invalid/debian-security"
    env = {"OCIBUILD_DEBIAN_MIRROR": "bookworm-security=file:///srv/security"}
    assert find_mirror("bookworm-security", env=env, apt_dir=apt_dir) == "file:///srv/security"


@pytest.mark.parametrize("mirror", ["ftp://x/debian", "deb.example/debian"])
def test_a_mirror_that_is_not_http_is_refused_clearly(mirror, tmp_path):
    with pytest.raises(DebianError, match=r"--mirror: .* is not an http://, https:// or file:/"):
        find_mirror("bookworm", mirror, env={}, apt_dir=tmp_path)
