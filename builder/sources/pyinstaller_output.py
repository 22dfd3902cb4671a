"""What pip and PyInstaller print, made fit for people: each command named for the
progress display, and PyInstaller warnings known to be harmless counted, not repeated.

A warning is hidden only when it is in :data:`KNOWN_HARMLESS`, with the reason it is
harmless; every other one is still shown on every build (cached ones included), so a
real one stands out. ``--verbose`` shows the hidden ones too, with their reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Callable, Sequence

from ..humanize import count


@dataclass(frozen=True)
class Harmless:
    pattern: re.Pattern[str]
    reason: str


KNOWN_HARMLESS: tuple[Harmless, ...] = (
    Harmless(re.compile(r'WARNING: Hidden import "scipy\.special\._cdflib" not found!'),
             "PyInstaller's scipy hook (hook-scipy.special._ufuncs) names it for every "
             "scipy >= 1.13, but scipy 1.15 and later have no such extension (cdflib is "
             "compiled into scipy.special._ufuncs), so nothing is missing from the bundle"),
)


def harmless_reason(line: str) -> str | None:
    """Why a PyInstaller output line can be ignored, or None if it may matter."""
    for known in KNOWN_HARMLESS:
        if known.pattern.search(line):
            return known.reason
    return None


class WarningFilter:
    """A ``log`` callable for :func:`~builder.sources.pyinstaller.freeze` that passes
    everything to ``log`` except known-harmless PyInstaller warnings, which it counts
    (or, with ``verbose``, shows with their reason); :meth:`summary` says how many."""

    PREFIX = "pyinstaller: "

    def __init__(self, log: Callable[[str], None], verbose: bool = False) -> None:
        self.log, self.verbose = log, verbose
        self.hidden = 0

    def __call__(self, message: str) -> None:
        reason = harmless_reason(message) if message.startswith(self.PREFIX) else None
        if reason is None:
            self.log(message)
        elif self.verbose:
            self.log(f"{message} (known harmless: {reason})")
        else:
            self.hidden += 1

    def summary(self) -> None:
        if self.hidden:
            self.log(f"pyinstaller: {count(self.hidden, 'known-harmless PyInstaller warning')}"
                     " hidden (--verbose shows them)")
            self.hidden = 0


def command_label(cmd: Sequence[str]) -> str | None:
    """What the progress display calls a command freezing runs; None for quick ones
    (the interpreter probe, strip), which run without a display row."""
    args = list(cmd)
    if "-m" not in args:
        return None
    module_at = args.index("-m") + 1
    module = args[module_at] if module_at < len(args) else ""
    rest = args[module_at + 1:]
    if module == "venv":
        return "python -m venv"
    if module == "pip":
        if "-r" in rest and rest.index("-r") + 1 < len(rest):
            return f"pip install -r {PurePath(rest[rest.index('-r') + 1]).name}"
        pins = [a for a in rest if re.search(r"[=<>~]", a) and not a.startswith("-")]
        return " ".join(["pip install", *pins])
    if module == "PyInstaller":  # named for the app (--name), not the launcher script
        name = rest[rest.index("--name") + 1] if "--name" in rest[:-1] else PurePath(args[-1]).name
        return f"PyInstaller {name}"
    return None
