"""Edge cases a hostile or careless input hits: outputs, names, archives, YAML, clocks."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from builder.errors import UnsafePathError
from builder.layers.reader import iter_members
from builder.oci.image import Layer
from builder.oci.types import Descriptor, MediaType, sha256_digest
from helpers import cli, write

MANIFEST = "image: t/x:1\nlayers:\n  - name: d\n    files:\n      - {src: a.txt, dest: /a}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("a\n")
    return write(tmp_path / "ocibuild.yaml", MANIFEST)


def test_oci_dir_never_replaces_a_directory_it_did_not_write(project, capsys):
    precious = project.parent / "notimage"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    code, _, err = cli("build", project, "-o", precious, "--format", "oci-dir", capsys=capsys)
    assert code == 1 and "not an OCI layout" in err
    assert (precious / "data").read_text() == "keep me"
    layout = project.parent / "layout"
    for _ in range(2):  # a layout it wrote is replaced fine, and is world-readable
        assert cli("build", project, "-o", layout, "--format", "oci-dir", capsys=capsys)[0] == 0
    assert (layout / "oci-layout").is_file() and layout.stat().st_mode & 0o755 == 0o755


@pytest.mark.parametrize("target", ["ocibuild.yaml", "a.txt", "cache/x.tar", "."])
def test_output_that_would_destroy_an_input_is_refused(project, target, capsys):
    before = project.read_bytes()
    code, _, err = cli("build", project, "-o", project.parent / target, "--cache-dir",
                       project.parent / "cache", capsys=capsys)
    assert code == 1 and err.startswith("error: -o"), err
    assert project.read_bytes() == before and (project.parent / "a.txt").read_text() == "a\n"


def test_invalid_tag_is_refused(project, capsys):
    code, _, err = cli("build", project, "-o", project.parent / "i.tar", "-t", "Bad Name!!",
                       capsys=capsys)
    assert code == 1 and "not a valid image name" in err


@pytest.mark.parametrize("value", ["²", "99999999999999999999", "-5", "1.5"])
def test_bad_source_date_epoch_is_a_clear_error(project, value, monkeypatch, capsys):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    code, _, err = cli("build", project, "-o", project.parent / "i.tar", capsys=capsys)
    assert code == 1 and "SOURCE_DATE_EPOCH" in err


def test_yaml_tags_that_construct_objects_are_errors(tmp_path, capsys):
    manifest = write(tmp_path / "m.yaml", "image: !!python/object:os.system x\nlayers: []\n")
    code, _, err = cli("build", manifest, capsys=capsys)
    assert code == 1 and err.startswith(f"error: {manifest}:1: image: unsupported YAML value")


def test_yaml_merge_keys_may_be_overridden(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a")
    manifest = write(tmp_path / "m.yaml", """\
        image: t/merge:1
        layers:
          - &common
            name: one
            files: [{src: a.txt, dest: /one}]
          - <<: *common
            name: two
        """)
    code, out, err = cli("build", manifest, "--json", capsys=capsys)
    assert code == 0, err
    assert [layer["name"] for layer in json.loads(out)["layers"]] == ["one", "two"]


@pytest.mark.parametrize("field,text", [
    ("layers[0].files[0].src", "      - {src: '', dest: /a}\n"),
    ("layers[0].directories[0].path", "    directories: [{path: /}]\n"),
])
def test_empty_src_and_root_paths_are_errors(tmp_path, field, text, capsys):
    body = "image: t/x:1\nlayers:\n  - name: d\n"
    body += ("    files:\n" + text) if "src" in text else text
    manifest = write(tmp_path / "m.yaml", body)
    code, _, err = cli("build", manifest, capsys=capsys)
    assert code == 1 and f": {field}: " in err


def test_inspect_rejects_negative_top(project, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("inspect", "--top", "-1", project.parent / "i.tar")
    assert exc.value.code == 2


def test_layout_dir_names_cannot_leave_the_directory(tmp_path, capsys):
    (tmp_path / "outside.json").write_text('{"config": {"Env": ["SECRET=1"]}}')
    layout = tmp_path / "img"
    layout.mkdir()
    (layout / "manifest.json").write_text('[{"Config": "../outside.json", "Layers": []}]')
    code, out, err = cli("inspect", layout, capsys=capsys)
    assert code == 1 and "SECRET" not in out and "refusing member name" in err


@pytest.mark.parametrize("name,link", [("../evil", ""), ("a/../../evil", ""),
                                       ("link", "../../../etc/shadow")])
def test_hostile_layer_members_are_refused(tmp_path, name, link):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info, io.BytesIO(b""))
    data = buf.getvalue()
    digest = sha256_digest(data)
    layer = Layer(Descriptor(MediaType.OCI_LAYER.value, digest, len(data)), digest,
                  lambda: io.BytesIO(data))
    with pytest.raises(UnsafePathError, match="escapes the image root"):
        list(iter_members(layer))


def test_sparse_tar_members_are_refused_not_corrupted(tmp_path, capsys):
    import subprocess

    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as f:
        f.write(b"A" * 4096)
        f.seek(1 << 20)
        f.write(b"B" * 4096)
    (tmp_path / "next.bin").write_bytes(b"N" * 5000)
    subprocess.run(["tar", "--sparse", "-cf", "s.tar", "sparse.bin", "next.bin"],
                   cwd=tmp_path, check=True)
    manifest = write(tmp_path / "m.yaml", "image: t/s:1\nlayers:\n  - name: t\n    tar: s.tar\n")
    code, _, err = cli("build", manifest, "-o", tmp_path / "o.tar", capsys=capsys)
    assert code == 1 and "sparse" in err and not (tmp_path / "o.tar").exists()


def _unpacked(tmp_path: Path, manifest: Path, capsys) -> Path:
    from runtime import unpack

    code, _, err = cli("build", manifest, "-o", tmp_path / "img.tar", capsys=capsys)
    assert code == 0, err
    return unpack(tmp_path / "img.tar", tmp_path / "run") / "rootfs"


def test_files_into_a_lower_layers_directory_keep_its_mode_and_owner(tmp_path, capsys):
    import os
    import stat

    (tmp_path / "x").write_text("x")
    manifest = write(tmp_path / "m.yaml", """\
        image: t/parents:1
        layers:
          - name: fs
            directories:
              - {path: /tmp, mode: "1777"}
              - {path: /home/nonroot, mode: "0700", uid: 65532, gid: 65532}
          - name: more
            files:
              - {src: x, dest: /tmp/x}
              - {src: x, dest: /home/nonroot/.config/f, uid: 65532, gid: 65532}
        """)
    rootfs = _unpacked(tmp_path, manifest, capsys)
    tmp = os.lstat(rootfs / "tmp")
    assert stat.S_IMODE(tmp.st_mode) == 0o1777
    home = os.lstat(rootfs / "home/nonroot")
    assert (stat.S_IMODE(home.st_mode), home.st_uid) == (0o700, 65532)


def test_host_hard_links_with_different_declared_modes_stay_separate(tmp_path, capsys):
    import os
    import stat

    (tmp_path / "f").write_text("data\n")
    os.link(tmp_path / "f", tmp_path / "f2")
    manifest = write(tmp_path / "m.yaml", """\
        image: t/links:1
        layers:
          - name: a
            files:
              - {src: f, dest: /a/script, mode: "0755"}
              - {src: f, dest: /b/config, mode: "0600", uid: 1000}
        """)
    rootfs = _unpacked(tmp_path, manifest, capsys)
    script, config = os.lstat(rootfs / "a/script"), os.lstat(rootfs / "b/config")
    assert stat.S_IMODE(script.st_mode) == 0o755 and script.st_uid == 0
    assert (stat.S_IMODE(config.st_mode), config.st_uid) == (0o600, 1000)


def test_absolute_symlinks_into_the_tree_become_relative(tmp_path, capsys):
    import os

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("a")
    os.symlink(tree / "a", tree / "sub" / "abs")
    os.symlink("/usr/share/zoneinfo/UTC", tree / "tz")
    manifest = write(tmp_path / "m.yaml", """\
        image: t/links:1
        layers:
          - name: a
            files: [{src: tree, dest: /app}]
        """)
    rootfs = _unpacked(tmp_path, manifest, capsys)
    assert os.readlink(rootfs / "app/sub/abs") == "../a"
    assert os.readlink(rootfs / "app/tz") == "/usr/share/zoneinfo/UTC"
    assert str(tmp_path) not in (tmp_path / "img.tar").read_bytes().decode("latin-1")


def test_escaping_symlink_in_a_tree_names_the_manifest_and_layer(tmp_path, capsys):
    import os

    (tmp_path / "tree").mkdir()
    os.symlink("../../../../../../etc/passwd", tmp_path / "tree" / "evil")
    manifest = write(tmp_path / "m.yaml", "image: t/x:1\nlayers:\n  - name: app\n"
                                          "    files: [{src: tree, dest: /app}]\n")
    code, _, err = cli("build", manifest, capsys=capsys)
    assert code == 1 and f"{manifest}:3: layers[app].files[0].src" in err and "escapes" in err


def test_closure_verdict_is_reused_until_a_layer_changes(tmp_path, busybox, monkeypatch, capsys):
    """A rebuild of unchanged layers reads no ELF header; a changed layer is checked again."""
    import shutil

    import builder.sources.elf as elf

    shutil.copy(busybox, tmp_path / "busybox")
    (tmp_path / "note.txt").write_text("one")
    manifest = write(tmp_path / "m.yaml", """\
        image: t/verdict:1
        layers:
          - name: bin
            files: [{src: busybox, dest: /bin/busybox}]
          - name: data
            files: [{src: note.txt, dest: /note.txt}]
        """)
    assert cli("build", manifest, capsys=capsys)[0] == 0

    def no_reading(*args, **kwargs):
        raise AssertionError("the closure read an ELF file")

    monkeypatch.setattr(elf, "read_elf", no_reading)  # the closure imports it when it reads
    assert cli("build", manifest, capsys=capsys)[0] == 0
    (tmp_path / "note.txt").write_text("two")
    with pytest.raises(AssertionError, match="read an ELF file"):
        cli("build", manifest, capsys=capsys)


@pytest.mark.parametrize("command", ["audit", "sbom"])
@pytest.mark.parametrize("source", ["nothere.tar", "./nothere", "/nonexistent/image.tar"])
def test_a_missing_image_file_is_not_looked_up_in_a_registry(command, source, capsys):
    extra = ["--format", "spdx-json"] if command == "sbom" else []
    code, _, err = cli(command, source, *extra, capsys=capsys)
    assert code == 1
    assert f"{source}: no such image tarball or layout directory" in err
