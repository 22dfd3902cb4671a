"""Hostile ``files:``/``tar:``/``pyinstaller:`` sources: symlink loops, FIFOs, devices and
sockets are refused with file:line:field before anything opens them; sources outside
the manifest's folder are warned about by name, and refused under ``--strict``."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from hostile import assert_unchanged, check_bounded, refused, run_cli, snapshot


def _manifest(folder, layer):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.yaml"
    path.write_text(f"image: a/b:1\nlayers:\n  - name: a\n    {layer}\n")
    return path


def _refused_source(tmp_path, layer, match, setup=None):
    src = tmp_path / "src"
    src.mkdir()
    if setup:
        setup(src)
    manifest = _manifest(src, layer)
    before = snapshot(tmp_path, os.environ["OCIBUILD_CACHE"])
    outcome = refused(["build", manifest, "-o", tmp_path / "out.tar"], cwd=src, match=match)
    assert_unchanged(before, snapshot(tmp_path, os.environ["OCIBUILD_CACHE"]))
    return outcome


def _loop(src):
    os.symlink("b", src / "a")
    os.symlink("a", src / "b")


def test_a_files_src_that_is_a_symlink_loop_is_a_clear_error(tmp_path):
    _refused_source(tmp_path, "files: [{src: a, dest: /a}]",
                    r"m\.yaml:4: layers\[0\]\.files\[0\]\.src: 'a' is a symlink loop", _loop)


def test_a_tar_that_is_a_symlink_loop_is_a_clear_error(tmp_path):
    _refused_source(tmp_path, "tar: a", r"layers\[0\]\.tar: 'a' is a symlink loop", _loop)


def test_a_pyinstaller_entry_that_is_a_symlink_loop_is_a_clear_error(tmp_path):
    _refused_source(tmp_path, "pyinstaller: {entry: a}",
                    r"layers\[0\]\.pyinstaller\.entry: 'a' is a symlink loop", _loop)


def test_a_files_src_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    _refused_source(tmp_path, "files: [{src: pipe, dest: /p}]",
                    r"files\[0\]\.src: 'pipe' is not a regular file \(a FIFO",
                    lambda src: os.mkfifo(src / "pipe"))


def test_a_tar_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    _refused_source(tmp_path, "tar: pipe", r"layers\[0\]\.tar: 'pipe' is not a regular file",
                    lambda src: os.mkfifo(src / "pipe"))


def test_requirements_that_are_a_fifo_are_refused_without_blocking(tmp_path):
    def setup(src):
        (src / "app.py").write_text("print(1)\n")
        os.mkfifo(src / "req.txt")
    _refused_source(tmp_path, "pyinstaller: {entry: app.py, requirements: req.txt}",
                    r"pyinstaller\.requirements: 'req\.txt' is not a regular file", setup)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_files_src_that_is_a_device_is_refused(tmp_path):
    _refused_source(tmp_path, "files: [{src: zero, dest: /z}]", r"'zero' is not a regular file",
                    lambda src: os.mknod(src / "zero", stat.S_IFCHR | 0o666,
                                         os.makedev(1, 5)))


def test_a_files_src_that_is_a_socket_is_refused(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        _refused_source(tmp_path, "files: [{src: s, dest: /s}]", r"'s' is not a regular file",
                        lambda src: sock.bind(str(src / "s")))
    finally:
        sock.close()


def test_a_fifo_inside_a_src_directory_is_refused_without_blocking(tmp_path):
    def setup(src):
        (src / "tree").mkdir()
        (src / "tree" / "ok").write_text("x")
        os.mkfifo(src / "tree" / "pipe")
    _refused_source(tmp_path, "files: [{src: tree, dest: /t}]",
                    r"tree/pipe: not a regular file, directory or symlink", setup)


def test_a_dangling_tar_symlink_is_a_clear_error(tmp_path):
    _refused_source(tmp_path, "tar: gone.tar", r"'gone\.tar' is a symlink to nothing",
                    lambda src: os.symlink("nowhere.tar", src / "gone.tar"))


# -- sources outside the manifest's folder ----------------------------------------------

def _build(tmp_path, layer, *flags):
    src = tmp_path / "proj" / "app"
    manifest = _manifest(src, layer)
    outcome = run_cli(["build", manifest, "-o", tmp_path / "out.tar", *flags], cwd=src)
    check_bounded(outcome)
    return outcome


def _warnings(outcome):
    return [line for line in outcome.stderr.splitlines() if line.startswith("warning:")]


def test_an_absolute_source_outside_the_folder_is_named_in_a_warning(tmp_path):
    outcome = _build(tmp_path, "files: [{src: /etc/hostname, dest: /h}]")
    assert outcome.code == 0, outcome.stderr
    [warning] = _warnings(outcome)
    assert "m.yaml:4: layers[0].files[0].src: /etc/hostname is outside the manifest's " \
           "folder" in warning and "--strict" in warning


def test_a_dotdot_source_outside_the_folder_is_named_by_its_real_path(tmp_path):
    outcome = _build(tmp_path, "files: [{src: ../../../../../../../../etc/hostname, dest: /h}]")
    assert outcome.code == 0, outcome.stderr
    [warning] = _warnings(outcome)
    assert "src: /etc/hostname is outside" in warning


def test_a_source_reached_through_a_symlinked_directory_outside_is_warned_about(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_text("s")
    (tmp_path / "proj" / "app").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", tmp_path / "proj" / "app" / "door")
    outcome = _build(tmp_path, "files: [{src: door/secret, dest: /s}]")
    assert outcome.code == 0, outcome.stderr
    assert len(_warnings(outcome)) == 1 and "door/secret is outside" in outcome.stderr


def test_strict_refuses_a_source_outside_the_folder_before_writing(tmp_path):
    outcome = refused(["build", _manifest(tmp_path / "p", "files: [{src: /etc/shadow, dest: /s}]"),
                       "-o", tmp_path / "out.tar", "--strict"], cwd=tmp_path,
                      match=r"m\.yaml:4: layers\[0\]\.files\[0\]\.src: /etc/shadow is outside "
                            r"the manifest's folder .* \(--strict refuses")
    assert not (tmp_path / "out.tar").exists() and outcome.code == 1


def test_sources_inside_the_folder_and_links_kept_as_links_give_no_warning(tmp_path):
    src = tmp_path / "proj" / "app"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    os.symlink("/etc/hostname", src / "hostlink")  # goes in as a link, nothing read
    outcome = _build(tmp_path, "files: [{src: sub, dest: /s}, {src: hostlink, dest: /l}, "
                               "{src: ./sub/../sub/f, dest: /f}]", "--strict")
    assert outcome.code == 0, outcome.stderr
    assert _warnings(outcome) == []


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path):
    """shutil.rmtree (and so pytest's clean-up) recurses per level: unmake deep trees."""
    yield
    for tree in (tmp_path / "src" / "tree", tmp_path / "proj" / "app" / "tree"):
        if (tree / "a").is_dir() and not (tree / "a").is_symlink():
            _unnest(tree)


def _unnest(root):
    """Remove ``root/a/a/…/a`` bottom up, through descriptors."""
    fds = [os.open(root, os.O_RDONLY)]
    try:
        while True:
            try:
                fds.append(os.open("a", os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY,
                                   dir_fd=fds[-1]))
            except OSError:
                break
        while len(fds) > 1:  # fds[-1] is the deepest, empty directory
            os.close(fds.pop())
            os.rmdir("a", dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


def _nest(root, depth):
    """``root/a/a/…/a`` ``depth`` levels deep, made relative to descriptors (the full
    path may be longer than PATH_MAX)."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)


def test_a_src_tree_1500_levels_deep_builds_without_recursion_error(tmp_path):
    src = tmp_path / "proj" / "app"
    src.mkdir(parents=True)
    _nest(src / "tree", 1500)
    outcome = run_cli(["build", _manifest(src, "files: [{src: tree, dest: /t}]"), "-o",
                       tmp_path / "out.tar", "--json", "-q"], cwd=src)
    check_bounded(outcome)
    assert outcome.code == 0, outcome.stderr[-2000:]


def test_a_src_tree_deeper_than_path_max_is_one_clear_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _nest(src / "tree", 2200)  # no snapshot: its paths are longer than PATH_MAX
    outcome = refused(["build", _manifest(src, "files: [{src: tree, dest: /t}]"), "-o",
                       tmp_path / "out.tar"], cwd=src, match=r"File name too long")
    assert "characters left out" in outcome.error and not (tmp_path / "out.tar").exists()


def test_a_symlink_loop_inside_a_src_tree_goes_in_as_links(tmp_path):
    src = tmp_path / "proj" / "app"
    (src / "tree").mkdir(parents=True)
    _loop(src / "tree")
    outcome = _build(tmp_path, "files: [{src: tree, dest: /t}]")
    assert outcome.code == 0, outcome.stderr
