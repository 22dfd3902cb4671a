"""Audit: a deliberately bad image fails with every finding named; a clean one passes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builder.sources.archive import read_image
from builder.supply.audit import audit
from helpers import cli, write

RSA_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7\n"
           "-----END RSA PRIVATE KEY-----\n")
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
LIBFOO = b"\x7fELF the real libfoo\n"

BAD = """\
image: test/bad:1
layers:
  - name: tools
    keep_special_bits: true
    files:
      - {src: busybox, dest: /bin/busybox, mode: "0755"}
      - {src: busybox, dest: /usr/bin/su, mode: "4755"}
      - {src: busybox, dest: /usr/bin/pip3, mode: "0755"}
    symlinks:
      - {path: /bin/sh, target: busybox}
  - name: secrets
    files:
      - {src: id_rsa, dest: /root/.ssh/id_rsa, mode: "0600"}
      - {src: dotenv, dest: /app/.env}
      - {src: settings, dest: /app/settings.yml}
      - {src: shared, dest: /data/shared, mode: "0666"}
  - name: dpkg
    files:
      - {src: libfoo-changed, dest: /usr/lib/libfoo.so.1}
      - {src: md5sums, dest: /var/lib/dpkg/status.d/libfoo.md5sums}
      - {src: stanza, dest: /var/lib/dpkg/status.d/libfoo}
  - name: cleanup
    files:
      - {src: empty, dest: /root/.ssh/.wh.id_rsa}
"""

CLEAN = """\
image: test/clean:1
layers:
  - name: base
    files:
      - {src: libfoo, dest: /usr/lib/libfoo.so.1}
      - {src: md5sums, dest: /var/lib/dpkg/status.d/libfoo.md5sums}
      - {src: stanza, dest: /var/lib/dpkg/status.d/libfoo}
    directories:
      - {path: /tmp, mode: "1777"}
      - {path: /home/nonroot, uid: 65532, gid: 65532}
  - name: app
    files:
      - {src: passwd, dest: /etc/passwd}
      - {src: app.py, dest: /app/app.py}
      - {src: scratch, dest: /tmp/scratch, mode: "0666"}
config:
  user: nonroot
"""


def project(root: Path, manifest: str) -> Path:
    files = {
        "busybox": b"\x7fELF pretend busybox\n", "id_rsa": RSA_KEY.encode(),
        "dotenv": b"DEBUG=1\nDB_PASSWORD=hunter2\n", "settings": f"token: {TOKEN}\n".encode(),
        "shared": b"x", "libfoo": LIBFOO, "libfoo-changed": LIBFOO + b"patched",
        "md5sums": f"{hashlib.md5(LIBFOO).hexdigest()}  usr/lib/libfoo.so.1\n"
                   f"{'0' * 32}  usr/share/doc/libfoo/changelog.gz\n".encode(),
        "stanza": b"Package: libfoo\nVersion: 1.0\nArchitecture: amd64\n",
        "empty": b"", "app.py": b"print('hi')\n", "scratch": b"",
        "passwd": b"root:x:0:0::/root:/sbin/nologin\n"
                  b"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return write(root / "ocibuild.yaml", manifest)


def build(root: Path, manifest: str) -> Path:
    path = project(root, manifest)
    out = root / "image.tar"
    code = cli("build", path, "-o", out, "-q", "--cache-dir", root / "cache")[0]
    assert code == 0
    return out


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("bad"), BAD)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("clean"), CLEAN)


def test_bad_image_fails_with_each_finding_named(bad, capsys):
    code, out, err = cli("audit", bad, "--json", capsys=capsys)
    assert code == 1
    report = json.loads(out)
    assert report["passed"] is False
    found = {(f["id"], f.get("path")) for f in report["findings"]}
    assert ("root-user", None) in found
    assert ("shell", "/bin/busybox") in found
    assert ("shell", "/bin/sh") in found
    assert ("package-manager", "/usr/bin/pip3") in found
    assert ("setuid", "/usr/bin/su") in found
    assert ("world-writable", "/data/shared") in found
    assert ("private-key", "/root/.ssh/id_rsa") in found
    assert ("github-token", "/app/settings.yml") in found
    assert ("env-file", "/app/.env") in found
    assert ("env-secret", "/app/.env") in found
    assert ("dpkg-modified", "/usr/lib/libfoo.so.1") in found
    key = next(f for f in report["findings"] if f["id"] == "private-key")
    assert key["severity"] == "critical" and key["layer"] == 1
    assert "deleted or replaced by a later layer" in key["message"]
    # the docs dpkg lists but the image dropped are not a finding
    assert not any("changelog" in (f.get("path") or "") for f in report["findings"])
    # the text report names them too, most severe first
    code, out, err = cli("audit", bad, capsys=capsys)
    assert code == 1 and "FAILED" in err
    lines = out.splitlines()
    assert lines[0].startswith("CRITICAL")
    assert any("RSA PRIVATE KEY" in line and "/root/.ssh/id_rsa" in line for line in lines)


def test_clean_image_passes(clean, capsys):
    code, out, err = cli("audit", clean, "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 0, report
    assert report["findings"] == []
    assert report["digest"] == read_image(clean).digest


def test_fail_on_moves_the_threshold(bad):
    report = audit(read_image(bad), fail_on="critical")
    assert {f.id for f in report.failures} == {"private-key", "github-token", "env-secret"}
    assert not report.passed


def test_a_renamed_shell_is_found_by_its_content(tmp_path, busybox, capsys):
    import shutil

    shutil.copy(busybox, tmp_path / "tool")
    manifest = write(tmp_path / "ocibuild.yaml", """\
        image: test/renamed:1
        layers:
          - name: app
            files:
              - {src: tool, dest: /app/bb, mode: "0755"}
        config:
          user: "65532"
        """)
    assert cli("build", manifest, "-o", tmp_path / "image.tar", "-q", capsys=capsys)[0] == 0
    code, out, _ = cli("audit", tmp_path / "image.tar", "--json", capsys=capsys)
    shells = [f for f in json.loads(out)["findings"] if f["id"] == "shell"]
    assert code == 1 and [f["path"] for f in shells] == ["/app/bb"]
    assert "BusyBox" in shells[0]["message"]
