"""Progress: a live display on a terminal, plain rate-limited lines in logs, nothing
with -q, and stdout left to the result (--json stays JSON)."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from debian_fixtures import gpg_key, mirror, tiny_archive, write_definition  # noqa: F401
from registry_fixtures import registry  # noqa: F401 - fixture

from builder.progress import PlainProgress, streaming_runner
from builder.sources.pyinstaller_output import WarningFilter, command_label

ROOT = Path(__file__).resolve().parent.parent
ANSI_CSI = "\x1b["


def _big_manifest(tmp_path: Path, size: int = 24 << 20) -> Path:
    """A layer big enough (incompressible) that gzip takes a few display refreshes."""
    (tmp_path / "big.bin").write_bytes(os.urandom(size))
    manifest = tmp_path / "ocibuild.yaml"
    manifest.write_text("image: t/progress:1\nlayers:\n  - name: data\n    files:\n"
                        "      - {src: big.bin, dest: /big.bin}\n")
    return manifest


def _ocibuild(*args: object) -> list[str]:
    return [sys.executable, "-m", "builder", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}


def _run_on_pty(argv: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (and stdout a pipe); return the exit code,
    what the terminal showed and stdout."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, cwd=ROOT,
                            env=_env())
    os.close(follower)
    shown = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the build on the terminal")
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(leader)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout), shown.decode(errors="replace"), out


def test_a_terminal_gets_a_live_display_and_stdout_stays_json(tmp_path):
    manifest = _big_manifest(tmp_path, 40 << 20)  # gzip takes several 1/8 s refreshes
    code, shown, out = _run_on_pty(_ocibuild("build", manifest, "-o", tmp_path / "i.tar",
                                             "--json", "--cache-dir", tmp_path / "cache"))
    assert code == 0, shown
    assert "compressing layer data (gzip)" in shown
    assert "\x1b[?25l" in shown            # the live display hides the cursor …
    assert "\x1b[?25h" in shown            # … and gives it back
    assert "\r" in shown and "\x1b[2K" in shown  # its rows are redrawn in place
    assert "MB" in shown                    # bytes of the layer as they go
    summary = json.loads(out)               # nothing but the result on stdout
    assert summary["output"] == str(tmp_path / "i.tar")


def test_a_pipe_gets_plain_lines_without_escape_codes(tmp_path):
    manifest = _big_manifest(tmp_path, 4 << 20)
    done = subprocess.run(_ocibuild("build", manifest, "-o", tmp_path / "i.tar",
                                    "--cache-dir", tmp_path / "cache"),
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert ANSI_CSI not in done.stderr
    assert "✔ data" in done.stderr
    # a layer's row is brief: its ✔ line reports it, so no "done" line unless it was slow
    assert "done  compressing layer data" not in done.stderr


def test_quiet_prints_nothing_but_the_result(tmp_path):
    manifest = _big_manifest(tmp_path, 1 << 20)
    code, shown, out = _run_on_pty(_ocibuild("build", manifest, "-o", tmp_path / "i.tar",
                                             "-q", "--cache-dir", tmp_path / "cache"))
    assert code == 0
    assert shown == ""
    assert out.startswith("image  sha256:")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_brief_task_says_done_only_after_saying_it_runs():
    stream, clock = io.StringIO(), _Clock()
    progress = PlainProgress(stream, interval=10.0, clock=clock, heartbeat=False)
    with progress.task("compressing layer a (gzip)", total=100, brief=True) as task:
        task.advance(100)
    assert stream.getvalue() == ""
    with progress.task("compressing layer b (gzip)", total=100, brief=True) as task:
        clock.now = 11.0
        task.advance(100)
    assert [line[:5] for line in stream.getvalue().splitlines()] == ["...  ", "done "]


def test_plain_lines_are_rate_limited_per_task():
    stream, clock = io.StringIO(), _Clock()
    progress = PlainProgress(stream, interval=10.0, clock=clock, heartbeat=False)
    with progress.task("download x", total=10_000_000) as task:
        for _ in range(100):            # 100 updates within 9.9 s: no line yet
            task.advance(10_000)
            clock.now += 0.099
        assert stream.getvalue() == ""
        clock.now = 10.0
        task.advance(1_000_000)         # the interval has passed: one line
        task.advance(1_000_000)         # and not another right away
        clock.now = 20.0
        task.status("still going")
    lines = stream.getvalue().splitlines()
    assert lines == [
        "...   download x (2.0 MB/10.0 MB, 10.0 s, 200.0 kB/s)",
        "...   download x (3.0 MB/10.0 MB, 20.0 s, 150.0 kB/s): still going",
        "done  download x (3.0 MB, 20.0 s, 150.0 kB/s)",
    ]


def test_a_silent_task_still_gets_a_heartbeat_line():
    stream = io.StringIO()
    progress = PlainProgress(stream, interval=0.2)
    import time
    with progress.task("PyInstaller app.py"):
        time.sleep(0.7)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert 2 <= len([x for x in lines if x.startswith("...   PyInstaller app.py (")]) <= 4
    assert lines[-1].startswith("done  PyInstaller app.py (")


def test_subprocess_output_streams_as_status_and_is_still_returned():
    stream, clock = io.StringIO(), _Clock()
    progress = PlainProgress(stream, interval=0.0, clock=clock, heartbeat=False)
    run = streaming_runner(progress, lambda cmd: "pip install demo")
    script = "import sys\nfor i in range(3): print(f'Collecting pkg{i}', flush=True)\nsys.exit(3)"
    proc = run([sys.executable, "-c", script], stdout=subprocess.PIPE,
               stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 3
    assert proc.stdout == "Collecting pkg0\nCollecting pkg1\nCollecting pkg2\n"
    shown = stream.getvalue().splitlines()
    assert [line.rsplit(": ", 1)[1] for line in shown[:3]] == [
        "Collecting pkg0", "Collecting pkg1", "Collecting pkg2"]
    assert shown[-1].startswith("done  pip install demo (")


def test_freeze_commands_are_named_for_the_display():
    venv_python = "/c/venv/tmp/bin/python"
    assert command_label(["/usr/bin/python3", "-m", "venv", "/c/venv/x"]) == "python -m venv"
    assert command_label([venv_python, "-m", "pip", "install", "--no-input", "-r",
                          "/src/requirements.txt"]) == "pip install -r requirements.txt"
    assert command_label([venv_python, "-m", "pip", "install", "--no-input",
                          "pyinstaller==6.22.0"]) == "pip install pyinstaller==6.22.0"
    assert command_label([venv_python, "-m", "PyInstaller", "--noconfirm", "--name", "app",
                          "_ocibuild_launcher.py"]) == "PyInstaller app"
    assert command_label([venv_python, "-m", "PyInstaller", "app.py"]) == "PyInstaller app.py"
    assert command_label(["/usr/bin/python3", "-c", "print(1)"]) is None
    assert command_label(["strip", "-o", "x", "y"]) is None


def test_known_harmless_pyinstaller_warnings_are_counted_not_repeated():
    lines: list[str] = []
    log = WarningFilter(lines.append)
    harmless = 'pyinstaller: WARNING: Hidden import "scipy.special._cdflib" not found!'
    real = 'pyinstaller: WARNING: Hidden import "sklearn.missing" not found!'
    for message in ("pyinstaller: freezing app.py (onedir)", harmless, real):
        log(message)
    log.summary()
    assert lines == ["pyinstaller: freezing app.py (onedir)", real,
                     "pyinstaller: 1 known-harmless PyInstaller warning hidden "
                     "(--verbose shows them)"]
    verbose: list[str] = []
    log = WarningFilter(verbose.append, verbose=True)
    log(harmless)
    log.summary()
    assert len(verbose) == 1 and verbose[0].startswith(harmless + " (known harmless: ")
    assert "scipy" in verbose[0]


def test_push_shows_each_upload(tmp_path, registry):  # noqa: F811 - fixture
    manifest = _big_manifest(tmp_path, 3 << 20)
    image = tmp_path / "i.tar"
    subprocess.run(_ocibuild("build", manifest, "-o", image, "-q", "--cache-dir",
                             tmp_path / "cache"), check=True, cwd=ROOT, env=_env(),
                   timeout=120)
    done = subprocess.run(_ocibuild("push", image, f"{registry.host}/t/progress:1"),
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert ANSI_CSI not in done.stderr
    uploads = [line for line in done.stderr.splitlines() if line.startswith("done  upload ")]
    assert len(uploads) == 2, done.stderr  # the layer and the config
    assert any("3.1 MB" in line or "3.2 MB" in line for line in uploads), uploads
    done = subprocess.run(_ocibuild("pull", f"{registry.host}/t/progress:1", "-o",
                                    tmp_path / "pulled.tar"),
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    downloads = [line for line in done.stderr.splitlines()
                 if line.startswith("done  download sha256:")]
    assert len(downloads) == 1 and " MB, " in downloads[0], done.stderr


@pytest.mark.slow
def test_a_cold_freeze_streams_pip_and_pyinstaller_as_they_run(tmp_path):
    """Through the real pip and PyInstaller: each command gets a row of its own, and
    pip's own lines (Collecting …, Installing …) arrive while it runs."""
    from builder.sources.pyinstaller import PyInstallerOptions, freeze

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello.py").write_text("print('hello')\n")
    stream, clock = io.StringIO(), _Clock()
    progress = PlainProgress(stream, interval=0.0, clock=clock, heartbeat=False)
    freeze(PyInstallerOptions(entry=tmp_path / "src" / "hello.py"),
           cache_dir=tmp_path / "cache", runner=streaming_runner(progress, command_label))
    lines = stream.getvalue().splitlines()
    done = [line.rpartition(" (")[0] for line in lines if line.startswith("done  ")]
    assert done[0] == "done  python -m venv"
    assert done[1].startswith("done  pip install pyinstaller==")
    assert done[-1] == "done  PyInstaller hello"
    pip_status = [line for line in lines
                  if line.startswith("...   pip install pyinstaller==") and "): " in line]
    assert any("Collecting" in line or "Installing" in line or "Processing" in line
               for line in pip_status), lines


def test_the_iris_build_hides_the_known_harmless_scipy_warning(iris_image):
    """PyInstaller's scipy hook asks for scipy.special._cdflib on every build of iris;
    the log says how many such warnings it hid, not the warning itself."""
    log = iris_image["log"]
    assert "scipy.special._cdflib" not in log
    assert "pyinstaller: 1 known-harmless PyInstaller warning hidden (--verbose shows them)" \
        in log


def test_each_debian_package_download_gets_a_line(tmp_path, mirror, tiny_archive):  # noqa: F811
    """Through a real (loopback) HTTP mirror: one row per .deb, with its bytes."""
    from builder.sources.debian import base_entries, load_base_definition, lock_base
    from builder.sources.debian.base import load_lock

    definition = load_base_definition(write_definition(tmp_path, tiny_archive,
                                                       ["app", "ca-certificates", "tzdata"],
                                                       exclude=["debconf"]))
    lock_base(definition, mirror, cache_dir=tmp_path / "locked")
    lock = load_lock(definition)
    stream, clock = io.StringIO(), _Clock()
    base_entries(definition, lock, tmp_path / "cache", mirror=mirror,
                 progress=PlainProgress(stream, clock=clock, heartbeat=False))
    lines = stream.getvalue().splitlines()
    assert sorted(line.split(" (")[0] for line in lines) == sorted(
        f"done  download {p.name} {p.version}" for p in lock.packages)
    for p in lock.packages:
        line = next(x for x in lines if x.startswith(f"done  download {p.name} "))
        assert f"({p.size} B, " in line or "kB, " in line, line
    stream.truncate(0)
    base_entries(definition, lock, tmp_path / "cache", mirror=mirror,
                 progress=PlainProgress(stream, clock=clock, heartbeat=False))
    assert stream.getvalue() == ""   # cached: nothing downloaded, nothing said
