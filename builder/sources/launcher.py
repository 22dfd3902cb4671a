"""What ocibuild adds to a frozen app: a launcher for split bundles and a SIGTERM hook.

A split bundle (see :mod:`builder.sources.app_code`) is frozen from a generated
*launcher* instead of the app's entry script. The launcher is PyInstaller's
ordinary entry script — no patched bootloader — that puts the app's own code
directory (``_app/`` beside the executable) first on ``sys.path``, as Python does
for a script's folder, and runs the entry there as ``__main__``. Its body also
holds the app's import statements in a function nothing calls, which is how
PyInstaller's analysis sees what the app needs without seeing the app: the
executable, and so the dependency layers, depend on what the app imports, not
on its code.

Every frozen app (split or not) gets a runtime hook that makes SIGTERM end it
the way Ctrl-C does: Python raises an exception in the main thread
(``SystemExit(143)``), so ``finally`` blocks, context managers and ``atexit``
handlers run, and the process exits promptly. As PID 1 in a container the kernel
ignores a signal the process has no handler for, so without this ``docker stop``
waits its 10 s and kills. An app that installs its own SIGTERM handler replaces
this one.
"""

from __future__ import annotations

APP_DIR = "_app"
"""Where a split bundle's own code lives, relative to the executable."""

SCRIPT_NAME = "_ocibuild_launcher.py"
"""The file name PyInstaller is given as the entry script of a split bundle."""

HOOK_NAME = "pyi_rth_ocibuild_sigterm.py"

SIGTERM_HOOK = '''\
# ocibuild: end on SIGTERM the way Ctrl-C ends a program (see builder/sources/launcher.py).
def _ocibuild_sigterm():
    import signal

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)


_ocibuild_sigterm()
del _ocibuild_sigterm
'''


def launcher_source(entry: str, imports: tuple[str, ...]) -> str:
    """The launcher script for an app whose entry is ``entry`` (relative to its folder,
    POSIX) and whose own code imports ``imports`` (import statements)."""
    lines = [
        '"""ocibuild launcher: runs the app\'s own code from _app/ (see ocibuild\'s README)."""',
        "import os",
        "import sys",
        "import types",
        "",
        f"_APP = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), {APP_DIR!r})",
        "sys.path.insert(0, _APP)",
        "sys.dont_write_bytecode = True  # the image's root is read-only, and rightly so",
        "",
        "",
        "def _ocibuild_app_imports():  # never called: the app's imports, for PyInstaller",
        "    pass",
    ]
    for statement in imports:
        lines += ["    try:", f"        {statement}", "    except ImportError:", "        pass"]
    lines += ["", ""]
    if any(s.split()[1].split(".")[0] in _PROCESS_POOLS for s in imports):
        lines += _SERVE_WORKER.splitlines()
    lines += [*_RUN_ENTRY.format(entry=entry).splitlines(), ""]
    return "\n".join(lines)


_PROCESS_POOLS = frozenset({"multiprocessing", "concurrent"})
"""Top-level modules whose import makes the launcher serve multiprocessing's workers."""

# A frozen app started as a spawn or forkserver worker (``--multiprocessing-fork``)
# must hand over to multiprocessing before the app's code runs: PyInstaller asks the
# app to call freeze_support() first thing. The launcher does it for the app, so
# workers start with or without that call, and load the entry as ``__mp_main__``
# the way ``python entry.py``'s workers do.
_SERVE_WORKER = """\
import multiprocessing
multiprocessing.freeze_support()  # a worker process of the app: serve it and exit
"""

# The entry runs as ``__main__`` the way ``python entry.py`` runs it, not through
# runpy.run_path: that sets sys.argv[0] to the script (a frozen app's is the
# executable, which code re-executes and argparse names) and puts the launcher back
# as __main__ when the entry returns, while its threads may still pickle by __main__.
_RUN_ENTRY = """\
_entry = os.path.join(_APP, {entry!r})
_main = types.ModuleType("__main__")
_main.__file__ = _entry
_main.__builtins__ = __builtins__
sys.modules["__main__"] = _main
with open(_entry, "rb") as _source:
    _code = compile(_source.read(), _entry, "exec")
del _source
exec(_code, _main.__dict__)
"""
