"""Messages under attack or failure: no password is ever printed, a full disk names the
path and whether it is the output, the cache or the temporary directory, and the .deb
reader stops on a garbage ar header."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import time

import pytest

from builder.errors import DebianError, redact
from builder.oserrors import describe
from builder.sources.debian.deb import ar_members
from conftest import unavailable
from hostile import assert_unchanged, refused, small_project, snapshot

SECRET = "s3cr3t-Pa55"
REF = f"alice:{SECRET}@127.0.0.1:9/team/app:1"


@pytest.mark.parametrize("args", [
    ["pull", REF, "-o", "out.tar", "--insecure"],
    ["resolve", REF, "--insecure"],
    ["push", "image.tar", REF, "--insecure"],
    ["sign", REF, "--key", "cosign.key", "--insecure"],
], ids=["pull", "resolve", "push", "sign"])
def test_a_password_in_a_reference_is_never_printed(tmp_path, args):
    outcome = refused(args, cwd=tmp_path, forbid=[SECRET])
    assert "alice:***@" in outcome.stderr or "alice" not in outcome.stderr


def test_a_password_in_a_manifest_base_is_never_printed(tmp_path):
    project = small_project(tmp_path / "src")
    text = project.read_text().replace("layers:", f"base: {REF}\nlayers:")
    project.write_text(text)
    refused(["build", project, "-o", tmp_path / "out.tar", "--insecure"], cwd=tmp_path,
            forbid=[SECRET])


def test_a_password_in_a_push_target_is_never_printed(tmp_path):
    project = small_project(tmp_path / "src")
    refused(["build", project, "--push", REF, "--insecure", "-o", tmp_path / "o.tar"],
            cwd=tmp_path, forbid=[SECRET])


@pytest.mark.parametrize("text, shown", [
    (f"cannot reach https://bob:{SECRET}@reg.local/v2/", "cannot reach https://bob:***@reg.local/v2/"),
    (f"'bob:{SECRET}@reg.local/r:t'", "'bob:***@reg.local/r:t'"),
    ("repo:tag@sha256:" + "a" * 64, "repo:tag@sha256:" + "a" * 64),   # a tag, not a login
    ("reg.local:5000/repo:v1@sha256:" + "b" * 64, "reg.local:5000/repo:v1@sha256:" + "b" * 64),
    (f"bob:pa@ss{SECRET}@reg.local/r", "bob:***@reg.local/r"),
])
def test_redact_hides_passwords_and_keeps_tags(text, shown):
    assert redact(text) == shown


# -- a full disk -------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (the machine's disk is never filled)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        unavailable(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _big_project(tmp_path):
    project = small_project(tmp_path / "src")
    (project.parent / "a.txt").write_bytes(os.urandom(3 * 1024 * 1024))  # does not compress
    return project


def test_a_full_disk_under_the_output_is_named_as_the_output(tmp_path, small_fs):
    project = _big_project(tmp_path)
    before = snapshot(project.parent)
    refused(["build", project, "-o", small_fs / "out.tar"], cwd=tmp_path,
            match=rf"error: the output {small_fs}/(\.out\.tar\.[^ ]+|out\.tar): "
                  r"No space left on device")
    assert os.listdir(small_fs) == []          # no half-written output, no temp file
    assert_unchanged(before, snapshot(project.parent))


def test_a_full_disk_under_the_cache_is_named_as_the_cache(tmp_path, small_fs):
    project = _big_project(tmp_path)
    refused(["build", project, "-o", tmp_path / "out.tar", "--cache-dir", small_fs / "c"],
            cwd=tmp_path, match=rf"error: the cache {small_fs}/c/\S+: No space left on device")
    assert not (tmp_path / "out.tar").exists()


def test_a_full_disk_without_a_file_name_is_found_by_its_filesystem(tmp_path, small_fs):
    with open(small_fs / "fill", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    message = describe(OSError(errno.ENOSPC, "No space left on device"),
                       [("the output", tmp_path / "out.tar"), ("the cache", small_fs / "c"),
                        ("the temporary directory", "/nonexistent-tmp")])
    assert message.startswith(f"No space left on device: the cache {small_fs}/c is on a full "
                              "filesystem")
    assert "the output" not in message


def test_an_error_in_the_temporary_directory_says_so(tmp_path):
    places = [("the output", tmp_path / "o.tar"), ("the cache", tmp_path / "c"),
              ("the temporary directory", f"{tmp_path}/ocibuild-")]
    ours = tmp_path / "ocibuild-x1y2" / "elf-1"
    assert describe(OSError(errno.ENOSPC, "No space left on device", str(ours)), places) == \
        f"the temporary directory {ours}: No space left on device"
    # a source that merely lies in the temporary directory is not blamed on it
    theirs = tmp_path / "project" / "big.bin"
    assert describe(OSError(errno.ENOSPC, "No space left on device", str(theirs)), places) == \
        f"{theirs}: No space left on device"


def test_a_cache_dir_that_is_a_fifo_is_one_error_naming_the_cache(tmp_path):
    project = small_project(tmp_path / "src")
    os.mkfifo(tmp_path / "cache")
    refused(["build", project, "-o", tmp_path / "out.tar", "--cache-dir", tmp_path / "cache"],
            cwd=tmp_path, match=r"error: the cache .*cache/\S+: Not a directory")


# -- the .deb reader --------------------------------------------------------------------

def _ar(size_field: bytes, body: bytes = b"") -> io.BytesIO:
    header = b"debian-binary".ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) \
        + b"100644".ljust(8) + size_field.ljust(10) + b"`\n"
    assert len(header) == 60
    return io.BytesIO(b"!<arch>\n" + header + body)


@pytest.mark.parametrize("size_field", [b"-60", b"-1", b"+4", b"1_0", b"0x10", b"\xff\xfe",
                                        b"99999999"])
def test_the_deb_reader_stops_on_a_garbage_ar_member_size(size_field):
    start = time.monotonic()
    with pytest.raises(DebianError, match=r"x\.deb: (corrupt ar member size|ar member)"):
        ar_members(_ar(size_field, b"2.0\n"), "x.deb")
    assert time.monotonic() - start < 1


def test_the_deb_reader_still_reads_a_sound_ar_header():
    [member] = ar_members(_ar(b"4", b"2.0\n"), "x.deb")
    assert (member.name, member.offset, member.size) == ("debian-binary", 68, 4)


def test_a_5000_digit_source_date_epoch_is_a_clear_error(tmp_path):
    project = small_project(tmp_path / "src")
    outcome = refused(["build", project, "-o", tmp_path / "out.tar"], cwd=tmp_path,
                      env={"SOURCE_DATE_EPOCH": "9" * 5000},
                      match=r"SOURCE_DATE_EPOCH=.* is not a time in seconds")
    assert "characters left out" in outcome.error
