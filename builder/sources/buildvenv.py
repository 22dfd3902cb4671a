"""The build venv a freeze runs in: ``python -m venv``, then pip installs the app's
requirements and PyInstaller's pins into it, under a temporary name renamed into place
(``cache_dir/venv/<key>``), so a crash never leaves a half-made venv where a complete
one is expected. The Python is a build root's (:mod:`.buildroot`) or, with
``build_root: host``, the one running ocibuild; ``runner`` runs each command (inside
the root, when there is one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from ..errors import FreezeError
from .pyinstaller_log import output_of, tail

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Log = Callable[[str], None]

PIP_OPTIONS: tuple[str, ...] = ("--disable-pip-version-check", "--no-input", "--progress-bar",
                                "off")
"""How the venv's packages are installed; part of the venv's key. pip byte-compiles
what it installs: PyInstaller never reads those ``.pyc`` files (it compiles the source
itself), but its hooks' subprocesses, which import the packages, do. Measured side by
side for iris under qemu (arm64): ``--no-compile`` made pip 76 s faster and PyInstaller
24 s slower; natively, PyInstaller's re-analysis (a new import in the daily loop) was
10-35 % slower in two runs. So pip compiles."""


def ensure_venv(venv: Path, python: str, requirements: Path | None, pins: Sequence[str], *,
                runner: Runner, log: Log, env: dict[str, str]) -> Path:
    """The venv at ``venv``, made by ``python`` (unless it exists) with ``requirements``
    and ``pins`` installed; built under a temporary name and renamed into place."""
    # pyvenv.cfg, not bin/python: a build root's venv links its python to the root's
    # /usr/bin/python3.N, which the host may lack (exists() follows the link)
    if (venv / "pyvenv.cfg").is_file():
        return venv
    log(f"pyinstaller: creating build venv {venv.name[:12]}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=venv.parent))
    try:
        _check_run(runner, [python, "-m", "venv", str(tmp)], "creating the venv", env=env)
        # python -m pip, never bin/pip: the scripts' shebangs name the temporary path.
        pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", *PIP_OPTIONS]
        if requirements is not None:
            _check_run(runner, [*pip, "-r", str(requirements)],
                       f"pip install -r {requirements.name}", env=env, hint=_pip_hint)
        _check_run(runner, [*pip, *pins], "pip install pyinstaller", env=env, hint=_pip_hint)
        publish(tmp, venv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return venv


def _check_run(runner: Runner, cmd: Sequence[str], what: str, *, env: dict[str, str],
               hint: Callable[[str], str | None] = lambda out: None) -> None:
    proc = run_tool(runner, cmd, env=env)
    if proc.returncode != 0:
        out = output_of(proc)
        fix = hint(out)
        raise FreezeError(f"{what} failed (exit {proc.returncode}):\n{tail(out)}"
                          + (f"\nlikely fix: {fix}" if fix else ""))


def _pip_hint(out: str) -> str | None:
    m = re.search(r"No matching distribution found for (\S+)", out)
    if m:
        return (f"check that {m.group(1)} is spelled right and that its version exists "
                "for this Python on the configured package index")
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in out:
        return "update the hashes in the requirements file"
    m = re.search(r"Failed building wheel for (\S+)|Could not build wheels for ([^\s,]+)", out)
    if m:
        return (f"{m.group(1) or m.group(2)} has no wheel for this Python and architecture "
                "and did not build from source (a build root has no compiler or headers "
                "unless its definition adds them): pin a version that has a wheel, or name a "
                "build_root whose packages include what the build needs")
    return None


def drop_outside_records(site: Path) -> None:
    """Remove RECORD rows for files outside site-packages (``../../../bin/flask``) in
    the build venv, before PyInstaller copies the dist-info into the bundle (in
    onefile mode into the executable's archive, where nothing can edit it later).

    Those are console scripts, which a bundle never holds; their hashes cover a
    shebang naming the build venv's path, so keeping the rows would make two
    builds from different cache paths differ. Each file is replaced whole (the
    venv is shared by concurrent freezes).
    """
    for record in sorted(site.glob("python*/site-packages/*.dist-info/RECORD")):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("../")]
        if kept != lines:
            tmp = record.with_name(f".RECORD.{os.getpid()}.tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, record)


def run_tool(runner: Runner, cmd: Sequence[str], *, env: dict[str, str],
             cwd: Path | None = None) -> "subprocess.CompletedProcess[str]":
    try:
        return runner(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True, check=False)
    except OSError as e:
        raise FreezeError(f"cannot run {cmd[0]}: {e}") from e


def publish(tmp: Path, final: Path) -> None:
    """Rename a finished ``tmp`` to ``final``; if another build won the race, keep theirs."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
