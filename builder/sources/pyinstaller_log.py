"""What PyInstaller said: a failed run's report and likely fix, a good run's warnings.

PyInstaller succeeds with warnings where the app would fail at run time (a
misspelled hidden import), and fails with a log whose last lines rarely say what
to change; these functions turn its output into what a user can act on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import FreezeOptionError

if TYPE_CHECKING:
    from .pyinstaller import PyInstallerOptions

LOG_TAIL_LINES = 40

_FIXES: tuple[tuple[str, Callable[[re.Match[str]], str]], ...] = (
    (r"ModuleNotFoundError: No module named '([\w.]+)'",
     lambda m: f"add {m.group(1)} to hidden_imports (or to requirements if it is not installed)"),
    (r"Hidden import '([\w.]+)' not found",
     lambda m: f"install the package that provides {m.group(1)} (requirements) "
               "or remove it from hidden_imports"),
    (r"FileNotFoundError: .*?'([^']+)'",
     lambda m: f"{m.group(1)} is missing from the bundle: add its package to collect_data"),
    (r"Script file '([^']+)' does not exist",
     lambda m: f"check the entry path ({m.group(1)})"),
    (r"SyntaxError", lambda m: "fix the syntax error shown above (PyInstaller compiles every "
                                "module it collects)"),
)


def freeze_failure(options: "PyInstallerOptions", proc: "subprocess.CompletedProcess[str]",
                    full_log: Path | None = None, copy: Path | None = None) -> str:
    """The error for a failed run; paths into the scratch ``copy`` of the app's folder
    (a syntax error's ``File "…/app.py", line 2``) name the user's files instead."""
    out = output_of(proc)
    if copy is not None:
        out = out.replace(str(copy) + "/", str(options.entry.parent.resolve()) + "/")
    where = f" (full log: {full_log})" if full_log else ""
    message = (f"PyInstaller failed to freeze {options.entry.name} (exit {proc.returncode}); "
               f"last lines of its log{where}:\n{tail(out)}")
    for pattern, fix in _FIXES:
        m = re.search(pattern, out)
        if m:
            return f"{message}\nlikely fix: {fix(m)}"
    return message


def problems(out: str, most: int = 10) -> list[str]:
    """PyInstaller's WARNING/ERROR lines from a run that still succeeded (without
    their timestamps): a misspelled hidden import shows up here, not as a failure."""
    found = [m.group(1) for m in re.finditer(r"^\d+ ((?:WARNING|ERROR): .*)$", out, re.M)]
    return found[:most] + ([f"... and {len(found) - most} more"] if len(found) > most else [])


_MISSING_HIDDEN_IMPORT = re.compile(r"ERROR: Hidden import '([^']+)' not found")
_NOT_A_PACKAGE = re.compile(r"collect_data_files - skipping data collection for module "
                            r"'([^']+)' as it is not a package")


def check_declared(options: "PyInstallerOptions", out: str) -> None:
    """Refuse a run in which something the manifest declares was not found (PyInstaller
    reports it and succeeds; the app would fail at run time). Raised before the
    bundle is cached, so every build says it until the manifest is fixed."""
    hidden = [m for m in _MISSING_HIDDEN_IMPORT.findall(out) if m in options.hidden_imports]
    if hidden:
        raise FreezeOptionError(
            f"{', '.join(map(repr, hidden))}: no such module in the app or its requirements "
            "(check the name, or add the package that provides it to requirements)",
            "hidden_imports")
    declared = set(options.collect_data) | set(options.collect_all)
    not_packages = [m for m in _NOT_A_PACKAGE.findall(out) if m in declared]
    if not_packages:
        option = "collect_data" if not_packages[0] in options.collect_data else "collect_all"
        raise FreezeOptionError(
            f"{', '.join(map(repr, not_packages))}: not a package of the app or its "
            "requirements, so it has no data to collect", option)


def keep_log(cache_dir: Path, key: str, proc: "subprocess.CompletedProcess[str]") -> Path | None:
    """Save a failed run's whole output under ``cache_dir/logs``; None if that fails."""
    path = cache_dir / "logs" / f"{key[:16]}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output_of(proc), encoding="utf-8")
    except OSError:
        return None
    return path


def tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join("  | " + line for line in lines)


def output_of(proc: "subprocess.CompletedProcess[str]") -> str:
    return (proc.stdout or "") + (proc.stderr or "")
