"""The real loader's verdict, to hold the closure's against: a small C program run
inside an image under runc.

``dlprobe [-L DIRS] (-x PATH | -d PATH)...`` checks each object in a fresh child
process and prints one line for it:

* ``-d``: ``dlopen(PATH, RTLD_NOW)``. ``OK`` when it loads, ``UNBOUND`` when every
  library and version was found but a symbol was not (an extension module needs
  the interpreter's symbols; the closure checks libraries and versions, not
  symbols), ``FAIL`` with ``dlerror()`` otherwise.
* ``-x``: exec PATH with ``LD_TRACE_LOADED_OBJECTS=1`` (what ``ldd`` does: the
  loader maps every library and checks versions, then exits without running
  it); ``FAIL`` when it prints "not found" or the exec fails.

``-L DIRS`` sets ``LD_LIBRARY_PATH`` for the objects after it (the child re-execs
the probe so the loader sees it at start, as it only reads it then).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import require_tool
from runtime import prepare_bundle, runc_run

PROBE_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *self;

static void trace(const char *path, const char *libpath) {
    int fd[2];
    if (pipe(fd) != 0) { perror("pipe"); exit(2); }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1); dup2(fd[1], 2); close(fd[0]);
        setenv("LD_TRACE_LOADED_OBJECTS", "1", 1);
        if (libpath) setenv("LD_LIBRARY_PATH", libpath, 1); else unsetenv("LD_LIBRARY_PATH");
        execl(path, path, (char *)0);
        printf("exec failed\n");
        _exit(127);
    }
    close(fd[1]);
    char buf[65536]; size_t n = 0; ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0) n += r;
    buf[n] = 0; close(fd[0]);
    int status; waitpid(pid, &status, 0);
    char *bad = strstr(buf, "not found");
    if (!bad && strstr(buf, "exec failed")) bad = buf;
    if (!bad && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) bad = buf;
    if (bad) {
        char *line = bad; while (line > buf && line[-1] != '\n') line--;
        char *end = strchr(line, '\n'); if (end) *end = 0;
        printf("FAIL %s: %s\n", path, line);
    } else {
        printf("OK %s\n", path);
    }
}

static void load(const char *path, const char *libpath) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (libpath) {
            setenv("LD_LIBRARY_PATH", libpath, 1);
            execl(self, self, "-d", path, (char *)0);
            _exit(127);
        }
        void *h = dlopen(path, RTLD_NOW);
        if (h) { printf("OK %s\n", path); _exit(0); }
        const char *e = dlerror();
        printf("%s %s: %s\n", strstr(e, "undefined symbol") ? "UNBOUND" : "FAIL", path, e);
        fflush(stdout);
        _exit(0);
    }
    int status; waitpid(pid, &status, 0);
}

int main(int argc, char **argv) {
    self = argv[0];
    const char *libpath = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-L")) libpath = *argv[i + 1] ? argv[i + 1] : NULL;
        else if (!strcmp(argv[i], "-x")) trace(argv[i + 1], libpath);
        else if (!strcmp(argv[i], "-d")) load(argv[i + 1], libpath);
        fflush(stdout);
    }
    return 0;
}
"""


def build_probe(out: Path) -> Path:
    """Compile the probe (dynamically linked: it must dlopen with the image's glibc)."""
    src = out.with_suffix(".c")
    src.write_text(PROBE_C)
    subprocess.run([require_tool("gcc"), "-O1", "-o", str(out), str(src), "-ldl"], check=True,
                   capture_output=True)
    return out


def probe_args(verdicts: dict, library_path: dict[str, list[str]]) -> list[str]:
    """The probe's arguments for the closure's ``verdicts`` (path -> Verdict); objects
    under a ``library_path`` key get its dirs as ``LD_LIBRARY_PATH``."""
    args: list[str] = []
    current: str | None = None
    for path, verdict in sorted(verdicts.items()):
        dirs = [d for top, extra in sorted(library_path.items())
                if top == "/" or path.startswith(top.rstrip("/") + "/") for d in extra]
        wanted = ":".join(dirs)
        if wanted != (current or ""):
            args += ["-L", wanted]
            current = wanted
        args += ["-x" if verdict.program else "-d", path]
    return args


def loader_verdicts(bundle: Path, probe: str, args: list[str]) -> dict[str, tuple[bool, str]]:
    """Run the probe in the unpacked image ``bundle``; path -> (loads, probe's line)."""
    config = prepare_bundle(bundle, readonly=True, host_network=False)
    config["process"]["args"] = [probe, *args]
    config["process"]["user"] = {"uid": 0, "gid": 0}
    (bundle / "config.json").write_text(json.dumps(config))
    result = runc_run(bundle, timeout=300)
    assert result.returncode == 0, result.stderr
    out: dict[str, tuple[bool, str]] = {}
    for line in result.stdout.splitlines():
        word, _, rest = line.partition(" ")
        path = rest.split(": ", 1)[0]
        out[path] = (word in ("OK", "UNBOUND"), line)
    return out
