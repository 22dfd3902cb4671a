"""Against the real Debian archive named by the host's apt sources (or $OCIBUILD_DEBIAN_MIRROR).

Marked ``network``: where the archive cannot be reached the tests are *skipped
with the reason and the mirror tried* (visible with ``pytest -rs``), never passed.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from debian.deb822 import Deb822

from builder.layers.entries import Kind
from builder.sources.debian import base_entries, load_base_definition, lock_base
from builder.sources.debian.apt_sources import find_mirror
from builder.sources.debian.base import load_lock
from builder.errors import DebianError
from conftest import unavailable

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parent.parent
BASES = REPO / "base_images"


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    """cc.yaml copied to a temp dir, locked afresh there, with its .debs cached.

    Each suite's mirror comes from $OCIBUILD_DEBIAN_MIRROR or the host's apt
    sources; an unconfigured or unreachable one skips with the URL tried.
    """
    work = tmp_path_factory.mktemp("cc")
    shutil.copy(BASES / "cc.yaml", work / "cc.yaml")
    definition = load_base_definition(work / "cc.yaml")
    for suite in definition.suites:
        try:
            mirror = find_mirror(suite)
        except DebianError as e:
            unavailable(f"no Debian mirror configured: {e}")
        url = f"{mirror}/dists/{suite}/InRelease"
        try:
            response = requests.head(url, timeout=15, allow_redirects=True)
        except requests.RequestException as e:
            unavailable(f"Debian archive unreachable: tried {url}: {e}")
        if response.status_code != 200:
            unavailable(f"Debian archive unusable: tried {url}: HTTP {response.status_code}")
    cache = work / "cache"
    lock_base(definition, cache_dir=cache)
    return definition, load_lock(definition), cache


def _read(entry) -> bytes:
    with entry.opener() as f:
        return f.read()


def test_cc_locks_and_builds(cc):
    definition, lock, cache = cc
    names = {p.name for p in lock.packages}
    assert {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "ca-certificates", "tzdata",
            "gcc-12-base"} <= names
    assert not names & {"debconf", "perl-base", "dpkg", "openssl"}
    entries = {e.path: e for e in base_entries(definition, lock, cache)}
    assert entries["/lib64/ld-linux-x86-64.so.2"].kind == Kind.SYMLINK
    assert "/lib/x86_64-linux-gnu/libc.so.6" in entries
    bundle = _read(entries["/etc/ssl/certs/ca-certificates.crt"])
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") > 100
    assert entries["/etc/localtime"].target == "/usr/share/zoneinfo/Etc/UTC"
    assert not [p for p in entries if p.startswith("/usr/share/man/")]
    for pkg in lock.packages:
        (stanza,) = list(Deb822.iter_paragraphs(io.BytesIO(
            _read(entries[f"/var/lib/dpkg/status.d/{pkg.name}"]))))
        assert (stanza["Package"], stanza["Version"], stanza["Architecture"]) == \
            (pkg.name, pkg.version, pkg.architecture)


def test_committed_locks_match_their_definitions():
    for name in ("static", "cc", "python-ml"):
        definition = load_base_definition(BASES / f"{name}.yaml")
        assert "amd64" in definition.all_architectures
        for arch in definition.all_architectures:
            lock = load_lock(definition.for_architecture(arch))  # raises when stale
            assert lock.codename == "bookworm" and lock.architecture == arch
            assert all(p.architecture in (arch, "all") for p in lock.packages)


PROGRAM = r"""
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    FILE *f = fopen("/etc/ssl/certs/ca-certificates.crt", "r");
    if (!f) { perror("ca-certificates.crt"); return 2; }
    char line[8192];
    int certs = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "-----BEGIN CERTIFICATE-----", 27) == 0) certs++;
    fclose(f);
    struct passwd *pw = getpwuid(getuid());
    if (!pw) { fprintf(stderr, "uid %d not in /etc/passwd\n", (int)getuid()); return 3; }
    tzset();
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    printf("user=%s uid=%d certs=%d tz=%s\n", pw->pw_name, (int)getuid(), certs, tm.tm_zone);
    return 0;
}
"""

MANIFEST = """\
image: test/cc-hello:1.0
platform: linux/amd64
base: {base}
layers:
  - name: app
    files:
      - {{src: hello, dest: /app/hello, mode: "0755"}}
config:
  user: nonroot
  entrypoint: ["/app/hello"]
"""


def test_gcc_program_runs_on_cc_under_runc_as_nonroot(cc, tmp_path):
    from conftest import require_tool
    from helpers import cli
    from runtime import prepare_bundle, runc_run, unpack

    gcc = require_tool("gcc")
    definition, _lock, cache = cc
    (tmp_path / "hello.c").write_text(PROGRAM)
    subprocess.run([gcc, "-O2", "-o", str(tmp_path / "hello"), str(tmp_path / "hello.c")],
                   check=True, capture_output=True)
    interp = subprocess.run(["readelf", "-l", str(tmp_path / "hello")], capture_output=True,
                            text=True).stdout
    assert "ld-linux-x86-64.so.2" in interp            # dynamically linked against glibc
    manifest = tmp_path / "ocibuild.yaml"
    manifest.write_text(MANIFEST.format(base=definition.path))
    out = tmp_path / "image.tar"
    code, _, err = cli("build", manifest, "-o", out, "--cache-dir", cache)
    assert code == 0, err
    bundle = unpack(out, tmp_path)
    prepare_bundle(bundle, readonly=True)
    result = runc_run(bundle)
    assert result.returncode == 0, result.stderr
    fields = dict(item.split("=", 1) for item in result.stdout.split())
    assert fields["user"] == "nonroot" and fields["uid"] == "65532"
    assert int(fields["certs"]) > 100
    assert fields["tz"] == "UTC"


def test_committed_static_lock_builds_the_same_layer_from_two_caches(cc, tmp_path):
    """The committed lock is what manifests use: it must fetch and build bit for bit."""
    from builder.layers.build import build_layer

    definition = load_base_definition(BASES / "static.yaml")
    lock = load_lock(definition)
    layers = [build_layer(base_entries(definition, lock, tmp_path / f"cache{i}"),
                          blob_dir=tmp_path / f"blobs{i}", epoch=0, keep_special_bits=True)
              for i in range(2)]
    assert layers[0].digest == layers[1].digest
    assert layers[0].diff_id == layers[1].diff_id
