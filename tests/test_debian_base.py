"""Base definitions and the base layer's entries, built from a local signed archive."""

from __future__ import annotations

import hashlib
import io
import textwrap

import pytest
from debian.deb822 import Deb822

from builder.errors import DebianError, ManifestError
from builder.layers.build import build_layer
from builder.layers.entries import Kind
from builder.sources.debian import base_entries, load_base_definition, lock_base
from builder.sources.debian.base import is_base_definition, load_lock
from debian_fixtures import (CERT_A, CERT_B, gpg_key, mirror, tiny_archive,  # noqa: F401
                             write_definition)

PACKAGES = ["app", "ca-certificates", "tzdata"]


@pytest.fixture
def locked(tmp_path, mirror, tiny_archive):
    definition = load_base_definition(write_definition(tmp_path, tiny_archive, PACKAGES,
                                                       exclude=["debconf"]))
    lock_base(definition, mirror, cache_dir=tmp_path / "cache")
    return definition, load_lock(definition)


def _read(entry) -> bytes:
    with entry.opener() as f:
        return f.read()


def _fingerprint(entries) -> list[tuple]:
    return [(e.path, e.kind, e.mode, e.uid, e.gid, e.size, e.target, e.link_key,
             hashlib.sha256(_read(e)).hexdigest() if e.kind == Kind.FILE else "")
            for e in entries]


def test_accounts_directories_and_config(tmp_path, locked):
    definition, lock = locked
    entries = {e.path: e for e in base_entries(definition, lock, tmp_path / "cache")}
    passwd = _read(entries["/etc/passwd"]).decode().splitlines()
    assert "root:x:0:0:root:/root:/sbin/nologin" in passwd
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" in passwd
    assert "app:x:1000:1000:app:/home/app:/sbin/nologin" in passwd
    group = _read(entries["/etc/group"]).decode().splitlines()
    assert {"root:x:0:", "nonroot:x:65532:", "app:x:1000:"} <= set(group)
    home = entries["/home/nonroot"]
    assert (home.kind, home.mode, home.uid, home.gid) == (Kind.DIR, 0o700, 65532, 65532)
    assert (entries["/tmp"].kind, entries["/tmp"].mode) == (Kind.DIR, 0o1777)
    assert b"hosts:" in _read(entries["/etc/nsswitch.conf"])
    os_release = _read(entries["/etc/os-release"]).decode()
    assert "ID=debian" in os_release and 'VERSION_ID="99"' in os_release
    assert definition.config.user == "nonroot"
    assert definition.config.env_dict == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    assert definition.user("nonroot").uid == 65532


def test_ca_bundle_localtime_and_drop_rules(tmp_path, locked):
    definition, lock = locked
    entries = {e.path: e for e in base_entries(definition, lock, tmp_path / "cache")}
    # Sorted by path (a.crt, b.crt); a certificate without a final newline gets one.
    assert _read(entries["/etc/ssl/certs/ca-certificates.crt"]) == CERT_A + CERT_B + b"\n"
    localtime = entries["/etc/localtime"]
    assert (localtime.kind, localtime.target) == (Kind.SYMLINK, "/usr/share/zoneinfo/Etc/UTC")
    assert "/usr/share/doc/tiny-libc/copyright" in entries
    for dropped in ("/usr/share/doc/tiny-libc/changelog.gz", "/usr/share/man",
                    "/usr/share/man/man1/tool.1.gz", "/usr/share/locale"):
        assert dropped not in entries
    assert entries["/usr/bin/tool"].mode == 0o755
    assert entries["/usr/lib/libtiny.so"].target == "libtiny.so.1"
    tool, tool2 = entries["/usr/bin/tool"], entries["/usr/bin/tool2"]
    assert tool.link_key is not None and tool.link_key == tool2.link_key
    assert "/usr/bin/debconf" not in entries and "/usr/bin/unused" not in entries


def test_status_d_stanzas_parse_for_every_locked_package(tmp_path, locked):
    definition, lock = locked
    entries = {e.path: e for e in base_entries(definition, lock, tmp_path / "cache")}
    stanzas = {p: e for p, e in entries.items()
               if p.startswith("/var/lib/dpkg/status.d/") and not p.endswith(".md5sums")}
    assert len(stanzas) == len(lock.packages)
    for pkg in lock.packages:
        (stanza,) = list(Deb822.iter_paragraphs(io.BytesIO(
            _read(entries[f"/var/lib/dpkg/status.d/{pkg.name}"]))))
        assert (stanza["Package"], stanza["Version"], stanza["Architecture"]) == \
            (pkg.name, pkg.version, pkg.architecture)
        assert stanza["Status"] == "install ok installed"


def test_building_twice_gives_identical_entries_and_layer(tmp_path, locked):
    definition, lock = locked
    first = base_entries(definition, lock, tmp_path / "cache")
    # A second cache, filled without the network: copy only the .debs over.
    second_cache = tmp_path / "cache2" / "debian" / "debs"
    second_cache.mkdir(parents=True)
    for deb in (tmp_path / "cache" / "debian" / "debs").glob("*.deb"):
        (second_cache / deb.name).write_bytes(deb.read_bytes())
    second = base_entries(definition, lock, tmp_path / "cache2", mirror="http://127.0.0.1:9")
    assert _fingerprint(first) == _fingerprint(second)
    layers = [build_layer(entries, blob_dir=tmp_path / f"blobs{i}", epoch=0,
                          keep_special_bits=True) for i, entries in enumerate((first, second))]
    assert layers[0].digest == layers[1].digest
    assert layers[0].diff_id == layers[1].diff_id


def test_missing_deb_without_mirror_is_an_error(tmp_path, locked):
    definition, lock = locked
    with pytest.raises(DebianError, match="127.0.0.1:9"):
        base_entries(definition, lock, tmp_path / "empty-cache", mirror="http://127.0.0.1:9")


def test_damaged_cached_deb_is_fetched_again(tmp_path, locked, mirror):
    definition, lock = locked
    pkg = next(p for p in lock.packages if p.name == "tiny-libc")
    cached = tmp_path / "cache" / "debian" / "debs" / f"{pkg.sha256}.deb"
    good = cached.read_bytes()
    cached.write_bytes(bytes(len(good)))               # right size, wrong bytes
    with pytest.raises(DebianError, match="127.0.0.1:9"):
        base_entries(definition, lock, tmp_path / "cache", mirror="http://127.0.0.1:9")
    base_entries(definition, lock, tmp_path / "cache", mirror=mirror)
    assert cached.read_bytes() == good


def _definition_error(tmp_path, text: str) -> ManifestError:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ManifestError) as info:
        load_base_definition(path)
    return info.value


GOOD = """\
debian:
  suite: bookworm
  architecture: amd64
packages: [libc6]
"""


def test_minimal_definition_gets_defaults(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(GOOD)
    definition = load_base_definition(path)
    assert definition.name == "mini" and definition.components == ("main",)
    assert definition.lock_path == tmp_path / "mini.lock.json"
    assert [u.name for u in definition.users] == ["root", "nonroot", "nobody"]
    assert is_base_definition(path)


@pytest.mark.parametrize("text, where, message", [
    (GOOD + "colour: blue\n", "bad.yaml:5: colour", "unknown key"),
    (GOOD.replace("  suite: bookworm\n", ""), "bad.yaml:2: debian.suite", "is required"),
    (GOOD + "directories:\n  - {path: /tmp, mode: 1777}\n", "bad.yaml:6: directories[0].mode",
     "not an octal file mode"),
    (GOOD + "directories:\n  - {path: tmp}\n", "bad.yaml:6: directories[0].path",
     "must be an absolute path"),
    (GOOD.replace("[libc6]", "[libc6, Not_A_Name]"), "bad.yaml:4: packages[1]",
     "not a Debian package name"),
    (GOOD + "users:\n  - {name: other, uid: 65532}\n", "bad.yaml:6: users[0]",
     "already used by nonroot"),
    (GOOD + "config:\n  user: ghost\n", "bad.yaml:6: config.user", "not one of the base's users"),
    (GOOD + "timezone: ../etc/shadow\n", "bad.yaml:5: timezone", "not a time zone name"),
    (GOOD + "config:\n  env: {A: [1]}\n", "bad.yaml:6: config.env.A", "expected a string"),
])
def test_definition_errors_name_file_line_and_field(tmp_path, text, where, message):
    error = str(_definition_error(tmp_path, text))
    assert error.startswith(f"{tmp_path}/{where}") and message in error, error
