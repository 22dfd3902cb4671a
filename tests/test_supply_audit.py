"""Audit: a deliberately bad image fails with every finding named; a clean one passes."""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import rsa

from builder.sources.archive import read_image
from builder.supply.audit import audit
from helpers import cli, write

ALNUM = string.ascii_letters + string.digits
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()).decode()
TOKEN = "ghp_" + "".join(secrets.choice(ALNUM) for _ in range(36))
DB_PASSWORD = "".join(secrets.choice(ALNUM) for _ in range(24))
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
        "dotenv": f"DEBUG=1\nDB_PASSWORD={DB_PASSWORD}\n".encode(), "settings": f"token: {TOKEN}\n".encode(),
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
    assert any("an RSA (2048 bits) private key" in line and "/root/.ssh/id_rsa" in line
               and "[-----BEGIN RSA PRIVATE KEY----- MIIE****" in line for line in lines)
    # the secrets themselves are never printed, only redacted excerpts
    assert TOKEN not in out and DB_PASSWORD not in out and RSA_KEY.splitlines()[1] not in out


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


# -- secrets in real images ------------------------------------------------------------

def test_real_keys_are_caught_in_any_layer(tmp_path, capsys):
    """Keys made by cryptography and ssh-keygen: one deleted by a later layer, one inside a
    tar layer, an encrypted PKCS#8 key, an OpenSSH key, and one compiled into a program
    (inside an ELF file only a whole key counts: the program with half of one is quiet)."""
    import io
    import subprocess
    import tarfile

    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "tls.key").write_bytes(ec_key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "",
                    "-f", str(tmp_path / "id_ed25519")], check=True)
    (tmp_path / "deploy.pem").write_text(RSA_KEY)
    (tmp_path / "empty").write_bytes(b"")
    vendored = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption())
    with tarfile.open(tmp_path / "vendor.tar", "w") as tar:
        info = tarfile.TarInfo("opt/vendor/server.key")
        info.size = len(vendored)
        tar.addfile(info, io.BytesIO(vendored))
    # an ELF program with a whole key compiled in, and one with only its first half
    key_c = json.dumps(vendored.decode())  # a C string literal (JSON escapes are C's)
    half_c = json.dumps(vendored.decode()[:len(vendored) // 2])
    for name, literal in (("embedded", key_c), ("truncated", half_c)):
        (tmp_path / f"{name}.c").write_text(f"const char *key = {literal};\n"
                                            "int main(void) { return key[0] == 0; }\n")
        subprocess.run(["gcc", "-O0", "-o", str(tmp_path / name), str(tmp_path / f"{name}.c")],
                       check=True)
    manifest = write(tmp_path / "ocibuild.yaml", """\
        image: test/keys:1
        layers:
          - name: keys
            files:
              - {src: embedded, dest: /app/bin/embedded, mode: "0755"}
              - {src: truncated, dest: /app/bin/truncated, mode: "0755"}
              - {src: tls.key, dest: /etc/tls/tls.key}
              - {src: id_ed25519, dest: /home/app/.ssh/id_ed25519}
              - {src: deploy.pem, dest: /app/deploy.pem}
          - name: vendor
            tar: vendor.tar
          - name: cleanup
            files:
              - {src: empty, dest: /app/.wh.deploy.pem}
        config:
          user: "65532"
        """)
    assert cli("build", manifest, "-o", tmp_path / "image.tar", "-q", capsys=capsys)[0] == 0
    code, out, _ = cli("audit", tmp_path / "image.tar", "--json", capsys=capsys)
    keys = {f["path"]: f for f in json.loads(out)["findings"] if f["id"] == "private-key"}
    assert code == 1
    assert sorted(keys) == ["/app/bin/embedded", "/app/deploy.pem", "/etc/tls/tls.key",
                            "/home/app/.ssh/id_ed25519", "/opt/vendor/server.key"]
    assert "encrypted PKCS#8" in keys["/etc/tls/tls.key"]["message"]
    assert "OpenSSH Ed25519" in keys["/home/app/.ssh/id_ed25519"]["message"]
    assert "EC (secp384r1)" in keys["/opt/vendor/server.key"]["message"]
    assert keys["/opt/vendor/server.key"]["layer"] == 1
    assert "deleted or replaced by a later layer" in keys["/app/deploy.pem"]["message"]
    assert all(f["severity"] == "critical" for f in keys.values())


def _package_dir(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, f"{name} is not installed (pip install -e .[test])"
    return Path(spec.origin).parent


def test_no_false_alarms_on_real_wheels_with_tls_libraries(tmp_path, capsys):
    """onnxruntime's shared objects hold every PEM header as a constant; cryptography's
    ssh module and OpenSSH's ssh-keygen name OpenSSH keys; none holds a key."""
    import shutil

    onnx = _package_dir("onnxruntime")
    crypto = _package_dir("cryptography")
    pems = [p for p in (onnx / "capi").glob("*.so*")
            if b"-----BEGIN RSA PRIVATE KEY-----" in p.read_bytes()]
    assert pems, "the onnxruntime wheel no longer holds PEM header constants"
    keygen = shutil.which("ssh-keygen")
    assert keygen and b"-----BEGIN OPENSSH PRIVATE KEY-----" in Path(keygen).read_bytes()
    manifest = write(tmp_path / "ocibuild.yaml", f"""\
        image: test/tls-wheels:1
        layers:
          - name: wheels
            files:
              - {{src: {onnx}, dest: /app/site-packages/onnxruntime/}}
              - {{src: {crypto}, dest: /app/site-packages/cryptography/}}
              - {{src: {keygen}, dest: /app/bin/ssh-keygen}}
        libraries: {{from: host}}
        config:
          user: "65532"
        """)
    assert cli("build", manifest, "-o", tmp_path / "image.tar", "-q", capsys=capsys)[0] == 0
    code, out, _ = cli("audit", tmp_path / "image.tar", "--json", capsys=capsys)
    report = json.loads(out)
    serious = [f for f in report["findings"] if f["severity"] in ("critical", "high")]
    assert serious == [] and code == 0, report["findings"]


# -- the allowlist -----------------------------------------------------------------------

def test_allowlisted_findings_are_shown_as_suppressed(bad, tmp_path, capsys):
    allow = write(tmp_path / "allow.yaml", """\
        allow:
          - rule: private-key
            path: /root/.ssh/*
            reason: a throwaway key for the test, revoked
          - rule: [github-token, env-secret, env-file]
            path: /app/*
            reason: fixtures
          - rule: [root-user, shell, package-manager, setuid, world-writable, dpkg-modified]
            reason: this image is bad on purpose
        """)
    code, out, err = cli("audit", bad, "--json", "--allowlist", allow, capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["passed"] is True
    key = next(f for f in report["findings"] if f["id"] == "private-key")
    assert key["suppressed"] == {"reason": "a throwaway key for the test, revoked",
                                 "allowlist": f"{allow}:2"}
    assert all("suppressed" in f for f in report["findings"])
    code, out, err = cli("audit", bad, "--allowlist", allow, capsys=capsys)
    assert code == 0 and "suppressed" in err
    line = next(line for line in out.splitlines() if "/root/.ssh/id_rsa" in line)
    assert line.startswith("CRITICAL") and f"(suppressed by {allow}:2: a throwaway key" in line


def test_an_allowlist_entry_suppresses_only_what_it_names(bad, tmp_path, capsys):
    allow = write(tmp_path / "allow.yaml", """\
        allow:
          - rule: private-key
            path: /etc/*
            reason: not this path
        """)
    code, out, _ = cli("audit", bad, "--json", "--allowlist", allow, capsys=capsys)
    key = next(f for f in json.loads(out)["findings"] if f["id"] == "private-key")
    assert code == 1 and "suppressed" not in key


@pytest.mark.parametrize("text,error", [
    ("allow:\n  - rule: privat-key\n    reason: x\n",
     "allow.yaml:2: allow[0].rule: unknown rule 'privat-key'"),
    ("allow:\n  - rule: shell\n    path: /bin/sh\n", "allow.yaml:2: allow[0].reason: is required"),
    ("allow:\n  - rule: shell\n    reason: '  '\n", "allow.yaml:3: allow[0].reason: must say why"),
    ("allow:\n  - rule: shell\n    path: bin/*\n    reason: x\n",
     "allow.yaml:3: allow[0].path: 'bin/*' must be an image path"),
    ("allow:\n  - rule: shell\n    reason: x\n    paths: /bin/*\n",
     "allow.yaml:4: allow[0].paths: unknown key"),
])
def test_allowlist_errors_name_file_and_line(bad, tmp_path, capsys, text, error):
    (tmp_path / "allow.yaml").write_text(text)
    code, _, err = cli("audit", bad, "--allowlist", tmp_path / "allow.yaml", capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert f"error: {tmp_path}/{error}" in err
