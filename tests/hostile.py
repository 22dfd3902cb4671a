"""Run one hostile input against the real CLI in a subprocess and check how it ends.

Issue 12's rules for every hostile case: exit 1, exactly one ``error:`` line on
stderr, no traceback, under :data:`TIME_LIMIT` seconds, peak RSS under
:data:`RSS_LIMIT` bytes (the CLI's own ``ru_maxrss``, taken by a small measuring
parent: a child forked straight from pytest would count pytest's pages, inherited at
the fork, and a long session's pytest holds hundreds of MB),
and nothing outside the declared outputs and the cache changed::

    from hostile import refused, snapshot, assert_unchanged

    before = snapshot(tmp_path)
    result = refused(["build", manifest, "-o", out], cwd=tmp_path, match="alias")
    assert_unchanged(before, snapshot(tmp_path))

The child runs under an address-space limit (:data:`ADDRESS_SPACE_LIMIT`) so a case
that does blow up fails the test instead of taking the shared machine down with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import builder

ROOT = Path(builder.__file__).resolve().parent.parent
TIME_LIMIT = 10.0                      # seconds, per case
RSS_LIMIT = 300 * 1024 * 1024          # bytes, peak resident set of the CLI process
ADDRESS_SPACE_LIMIT = 3 * 1024 ** 3    # bytes of virtual memory the child may map
MAX_ERROR_LINE = 2000                  # characters: an error must not echo a huge input
_KILL_AFTER = 3 * TIME_LIMIT           # a hung child is killed here (and the case fails)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    rss: int                            # peak RSS in bytes

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    @property
    def error(self) -> str:
        """The one ``error:`` line (asserted by :func:`refused`)."""
        return self.error_lines[0] if self.error_lines else ""


def run_cli(args: Sequence[object], *, cwd: Path | None = None,
            env: dict[str, str] | None = None, stdin: bytes | None = None,
            address_space: int | None = ADDRESS_SPACE_LIMIT) -> Outcome:
    """``python3 -m builder.cli ARGS`` in a child; its exit code, output, time and RSS.

    ``env`` entries are added to (not substituted for) this process's environment;
    PYTHONPATH is set so the child imports this checkout. A value of None removes a
    variable.
    """
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = str(ROOT)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value

    report = os.pipe()
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", _MEASURE, str(report[1]),
                             str(address_space or 0), sys.executable, "-m", "builder.cli",
                             *map(str, args)],
                            cwd=cwd, env=child_env, start_new_session=True,
                            pass_fds=(report[1],),
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(report[1])
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    if stdin is not None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    killer = threading.Timer(_KILL_AFTER, _kill_group, args=(proc.pid,))
    killer.start()
    try:
        with os.fdopen(report[0], "rb") as measured:
            code, maxrss_kb = (int(v) for v in (measured.read().split() or [b"-9", b"0"]))
        proc.wait()
    finally:
        killer.cancel()
    seconds = time.monotonic() - start
    for reader in readers:
        reader.join()
    return Outcome(code, chunks.get("out", b"").decode(errors="replace"),
                   chunks.get("err", b"").decode(errors="replace"), seconds,
                   maxrss_kb * 1024)


_MEASURE = """\
import os, resource, sys
fd, limit, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    os.close(fd)
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
os.write(fd, b"%d %d" % (os.waitstatus_to_exitcode(status), usage.ru_maxrss))
"""
"""The measuring parent: forks the CLI, waits for it, reports its exit code and its own
peak RSS (KiB) on a pipe. Its own pages are few, so the fork adds little to the CLI's."""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def check_bounded(outcome: Outcome) -> None:
    """No traceback, within the time and memory limits."""
    assert "Traceback" not in outcome.stderr, outcome.stderr[-4000:]
    assert outcome.seconds < TIME_LIMIT, f"took {outcome.seconds:.1f} s: {outcome.stderr[-2000:]}"
    assert outcome.rss < RSS_LIMIT, f"peak RSS {outcome.rss / 2**20:.0f} MiB"


def refused(args: Sequence[object], *, match: str | None = None,
            forbid: Iterable[str] = (), **kwargs) -> Outcome:
    """Run a hostile case and assert it was refused properly: exit 1, exactly one
    ``error:`` line (matching the regex ``match``), no traceback, bounded time and
    RSS, and none of the strings in ``forbid`` (a password) anywhere in the output."""
    outcome = run_cli(args, **kwargs)
    check_bounded(outcome)
    assert outcome.code == 1, (outcome.code, outcome.stderr[-4000:])
    lines = outcome.error_lines
    assert len(lines) == 1, outcome.stderr[-4000:]
    assert len(lines[0]) <= MAX_ERROR_LINE, lines[0][:300] + "…"
    if match is not None:
        assert re.search(match, lines[0]), lines[0]
    for secret in forbid:
        assert secret not in outcome.stdout and secret not in outcome.stderr, outcome.stderr
    return outcome


def snapshot(*roots: Path, skip: Iterable[Path] = ()) -> dict[str, tuple]:
    """Every entry under ``roots`` (not following links): type, mode, ids, size, mtime,
    device numbers, link target, and a regular file's sha256. ``skip`` trees (the
    cache, a declared output) are left out."""
    skipped = {os.path.abspath(p) for p in skip}
    out: dict[str, tuple] = {}

    stack = [os.path.abspath(root) for root in reversed(roots)]
    while stack:  # not recursive: a tree may be thousands of levels deep
        path = stack.pop()
        if path in skipped:
            continue
        st = os.lstat(path)
        extra: object = None
        if stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            extra = h.hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = st.st_rdev
        out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_ino, None if stat.S_ISDIR(st.st_mode) else st.st_size,
                     None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns, extra)
        if stat.S_ISDIR(st.st_mode):
            stack.extend(os.path.join(path, name) for name in sorted(os.listdir(path),
                                                                       reverse=True))
    return out


def assert_unchanged(before: dict[str, tuple], after: dict[str, tuple]) -> None:
    """The two snapshots are equal; else name what appeared, vanished or changed."""
    appeared = sorted(set(after) - set(before))
    vanished = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (appeared or vanished or changed), (
        f"appeared {appeared[:10]}, vanished {vanished[:10]}, changed {changed[:10]}")


def small_project(folder: Path, extra_layer_yaml: str = "") -> Path:
    """A one-file manifest in ``folder`` (``m.yaml`` + ``a.txt``) that builds in well
    under a second; ``extra_layer_yaml`` is appended to its ``layers:`` list."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("hello\n")
    manifest = folder / "m.yaml"
    manifest.write_text("image: hostile/test:1\nlayers:\n  - name: a\n"
                        "    files: [{src: a.txt, dest: /a.txt}]\n" + extra_layer_yaml)
    return manifest
