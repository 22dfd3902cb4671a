"""Hostile ``-o`` targets: only a new name, a regular file or a symlink is ever
replaced; anything else is refused before any work is done and left as it was."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from hostile import assert_unchanged, check_bounded, refused, run_cli, small_project, snapshot

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")


@pytest.fixture
def project(tmp_path):
    return small_project(tmp_path / "src")


@pytest.fixture
def cache():
    return os.environ["OCIBUILD_CACHE"]


def _refused_untouched(tmp_path, cache, args, match):
    """Refused, and neither the tree nor the cache changed (no work was done)."""
    before = snapshot(tmp_path, cache)
    refused(args, cwd=tmp_path, match=match)
    assert_unchanged(before, snapshot(tmp_path, cache))


def test_a_fifo_at_o_is_refused_and_left_a_fifo(tmp_path, project, cache):
    os.mkfifo(tmp_path / "out")
    _refused_untouched(tmp_path, cache, ["build", project, "-o", tmp_path / "out"],
                       r"-o .*out: is a FIFO")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out").st_mode)


@needs_root
def test_a_null_device_at_o_is_refused_and_left_a_device(tmp_path, project, cache):
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    _refused_untouched(tmp_path, cache, ["build", project, "-o", null],
                       r"is a character device, not a regular file")
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


@needs_root
def test_a_block_device_at_o_is_refused(tmp_path, project, cache):
    os.mknod(tmp_path / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    _refused_untouched(tmp_path, cache, ["build", project, "-o", tmp_path / "blk"],
                       r"is a block device")


def test_a_socket_at_o_is_refused(tmp_path, project, cache):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        _refused_untouched(tmp_path, cache, ["build", project, "-o", tmp_path / "sock"],
                           r"is a socket")
    finally:
        sock.close()


def test_a_directory_at_o_for_a_tarball_is_refused(tmp_path, project, cache):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep.txt").write_text("mine")
    _refused_untouched(tmp_path, cache, ["build", project, "-o", tmp_path / "dir"],
                       r"is a directory")


def test_an_empty_o_is_refused_not_taken_as_no_output(tmp_path, project, cache):
    _refused_untouched(tmp_path, cache, ["build", project, "-o", ""], r"-o: the path is empty")


def test_o_below_a_regular_file_is_refused_before_building(tmp_path, project, cache):
    _refused_untouched(tmp_path, cache, ["build", project, "-o", project.parent / "a.txt" / "x"],
                       r"a\.txt/x: cannot use it as an output: Not a directory")


def test_a_symlink_at_o_is_replaced_and_its_fifo_target_left_alone(tmp_path, project):
    os.mkfifo(tmp_path / "fifo")
    os.symlink("fifo", tmp_path / "out.tar")
    outcome = run_cli(["build", project, "-o", tmp_path / "out.tar"], cwd=tmp_path)
    check_bounded(outcome)
    assert outcome.code == 0, outcome.stderr
    assert stat.S_ISREG(os.lstat(tmp_path / "out.tar").st_mode)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


def test_a_fifo_where_build_sbom_would_go_is_refused_before_building(tmp_path, project,
                                                                    cache):
    os.mkfifo(tmp_path / "img.spdx.json")
    _refused_untouched(tmp_path, cache, ["build", project, "-o", tmp_path / "img.tar",
                                         "--sbom", "spdx-json"],
                       r"--sbom .*img\.spdx\.json: is a FIFO")


def test_sbom_o_at_a_fifo_is_refused(tmp_path, project, cache):
    image = tmp_path / "img.tar"
    assert run_cli(["build", project, "-o", image]).code == 0
    os.mkfifo(tmp_path / "sbom.json")
    _refused_untouched(tmp_path, cache, ["sbom", image, "-o", tmp_path / "sbom.json"],
                       r"is a FIFO")


def test_pull_o_at_a_fifo_is_refused_before_any_request(tmp_path, cache):
    os.mkfifo(tmp_path / "pulled.tar")
    # 127.0.0.1:9 (discard) answers nothing: the refusal must come first
    _refused_untouched(tmp_path, cache, ["pull", "127.0.0.1:9/x/y:1", "-o",
                                         tmp_path / "pulled.tar", "--insecure"],
                       r"is a FIFO")


def test_keygen_never_writes_into_a_fifo(tmp_path, cache):
    os.mkfifo(tmp_path / "k.key")
    _refused_untouched(tmp_path, cache, ["keygen", "--output-key-prefix", tmp_path / "k",
                                         "--force"], r"k\.key: is a FIFO")


# -- --format oci-dir ------------------------------------------------------------------

def test_oci_dir_with_a_foreign_file_beside_oci_layout_is_refused_and_kept(tmp_path, project,
                                                                         cache):
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "notes.txt").write_text("my notes")
    _refused_untouched(tmp_path, cache, ["build", project, "--format", "oci-dir", "-o", layout],
                       r"not an OCI layout directory \(it holds 'notes\.txt'\)")


def test_oci_dir_with_a_foreign_file_among_the_blobs_is_refused(tmp_path, project, cache):
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text("{}")
    (layout / "blobs" / "sha256" / "README").write_text("mine")
    _refused_untouched(tmp_path, cache, ["build", project, "--format", "oci-dir", "-o", layout],
                       r"blobs/sha256/README")


def test_oci_dir_that_is_a_non_empty_plain_directory_is_refused(tmp_path, project, cache):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "a").write_text("x")
    _refused_untouched(tmp_path, cache, ["build", project, "--format", "oci-dir", "-o",
                                         tmp_path / "home"], r"no oci-layout file")


def test_oci_dir_at_a_fifo_is_refused(tmp_path, project, cache):
    os.mkfifo(tmp_path / "fifo")
    _refused_untouched(tmp_path, cache, ["build", project, "--format", "oci-dir", "-o",
                                         tmp_path / "fifo"], r"is a FIFO, not an OCI layout")


def test_oci_dir_at_a_symlink_is_refused(tmp_path, project, cache):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "link")
    _refused_untouched(tmp_path, cache, ["build", project, "--format", "oci-dir", "-o",
                                         tmp_path / "link"], r"is a symlink, not an OCI layout")


def test_oci_dir_rebuild_replaces_its_own_layout(tmp_path, project):
    layout = tmp_path / "layout"
    for _ in range(2):
        outcome = run_cli(["build", project, "--format", "oci-dir", "-o", layout], cwd=tmp_path)
        check_bounded(outcome)
        assert outcome.code == 0, outcome.stderr
    assert sorted(os.listdir(layout)) == ["blobs", "index.json", "oci-layout"]


def test_keygen_force_replaces_a_symlinked_key_file_never_its_target(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    os.symlink(precious, tmp_path / "k.key")
    outcome = run_cli(["keygen", "--output-key-prefix", tmp_path / "k", "--force"],
                      cwd=tmp_path, env={"COSIGN_PASSWORD": "pw"})
    check_bounded(outcome)
    assert outcome.code == 0, outcome.stderr
    assert precious.read_text() == "keep me"
    key = os.lstat(tmp_path / "k.key")
    assert stat.S_ISREG(key.st_mode) and stat.S_IMODE(key.st_mode) == 0o600



@pytest.mark.parametrize("command", [["inspect"], ["audit"], ["sbom"], ["push", "IMAGE",
                                                                       "127.0.0.1:9/a/b:1"]])
def test_an_image_argument_that_is_a_fifo_is_refused_without_blocking(tmp_path, command):
    os.mkfifo(tmp_path / "image.tar")
    args = [tmp_path / "image.tar" if a == "IMAGE" else a for a in command]
    if len(args) == 1:
        args.append(tmp_path / "image.tar")
    refused(args, cwd=tmp_path, match=r"image\.tar: not a regular file or directory")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "image.tar").st_mode)


def test_the_library_reader_refuses_a_fifo_without_blocking(tmp_path):
    """read_artifact (what inspect, audit, sbom, push and open_subjects use) checks the
    kind itself, so a library caller is not left waiting on a FIFO either."""
    import threading

    from builder.errors import InputError
    from builder.sources.archive import read_artifact

    os.mkfifo(tmp_path / "image.tar")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_artifact(tmp_path / "image.tar")
        except BaseException as e:  # noqa: BLE001 (the test inspects it)
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the reader before failing
        with open(tmp_path / "image.tar", "wb"):
            pass
        pytest.fail("read_artifact blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], InputError)
    assert "not a regular file or directory" in str(outcome[0])
