"""The iris model server, frozen and closed over its libraries, run on a scratch root.

This is the freeze + closure half of the iris end-to-end test: the PyInstaller
bundle from ``examples/iris`` plus the host libraries the closure adds, written
to a bare root (no shell, no Python, nothing else), run by runc as uid 65532 on
a read-only root, answering ``{"result": 2}``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from builder.layers.entries import Entry, Kind
from builder.sources.closure import resolve_closure
from builder.sources.pyinstaller import FrozenApp, PyInstallerOptions, bundle_entries, freeze
from builder.sources.files import tree_entries

from conftest import require_tool
from runtime import runc_start_detached, runc_stop, run

IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris"
SAMPLE = {"data": [5.9, 3.0, 5.1, 1.8]}

pytestmark = pytest.mark.slow


def iris_options(src: Path = IRIS) -> PyInstallerOptions:
    """What ``examples/iris/ocibuild.yaml``'s ``pyinstaller:`` layer says."""
    return PyInstallerOptions(entry=src / "app.py", requirements=src / "requirements.txt",
                              hidden_imports=("sklearn.ensemble",), strip=True)


APP = ["/app/app"]  # the bundle's bootloader: the entrypoint


@pytest.fixture(scope="module")
def frozen(iris_image: dict) -> FrozenApp:
    """The iris freeze, from the session's iris cache (the same options: a cache hit)."""
    return freeze(iris_options(), cache_dir=iris_image["cache"] / "pyinstaller")


def test_iris_model_is_trained_deterministically(tmp_path: Path, frozen: FrozenApp) -> None:
    """``train.py`` run by the frozen app's own venv gives the committed model, byte for byte."""
    venvs = list((frozen.dist_dir.parent.parent / "venv").iterdir())
    python = [v / "bin" / "python" for v in venvs if (v / "bin" / "python").exists()][0]
    subprocess.run([str(python), str(IRIS / "train.py"), str(tmp_path / "model.joblib")],
                   check=True, capture_output=True)
    assert (tmp_path / "model.joblib").read_bytes() == (IRIS / "model.joblib").read_bytes()


def test_iris_bundle_needs_only_the_c_runtime_from_the_host(frozen: FrozenApp) -> None:
    view = {e.path: e for e in bundle_entries(frozen, "/app")}
    lib_path = {f"/app/{d}": [f"/app/{d}"] for d in frozen.library_dirs}
    missing = {name for _, name in resolve_closure(view, strict=False, programs=APP,
                                                   library_path=lib_path).missing}
    # PyInstaller collects libpython, libstdc++, libgcc_s, openblas, ...; the bootloader
    # itself needs libz and the C runtime, which a scratch base lacks.
    assert "libc.so.6" in missing and "/lib64/ld-linux-x86-64.so.2" in missing
    assert not {n for n in missing if "python" in n or "openblas" in n or "gfortran" in n}
    result = resolve_closure(view, host=True, library_path=lib_path, programs=APP)
    names = {Path(e.path).name for e in result.host_entries}
    assert {"libc.so.6", "libm.so.6", "libz.so.1", "ld-linux-x86-64.so.2"} <= names
    assert not any(n.startswith(("libpython", "libstdc++")) for n in names)


def test_iris_serves_predictions_on_a_scratch_root_as_nonroot(tmp_path: Path,
                                                             frozen: FrozenApp) -> None:
    require_tool("runc")
    entries = bundle_entries(frozen, "/app")
    view = {e.path: e for e in entries}
    libs = resolve_closure(view, host=True, library_path={"/app/_internal": ["/app/_internal"]},
                           programs=APP)
    model = tree_entries(IRIS / "model.joblib", "/app/model.joblib", mode=0o444)
    bundle = tmp_path / "bundle"
    _materialize(entries + libs.host_entries + model, bundle / "rootfs")
    assert not (bundle / "rootfs" / "bin").exists() and not (bundle / "rootfs" / "usr").exists()
    port = free_port()
    _runtime_config(bundle, ["/app/app"], env=["MODEL_PATH=/app/model.joblib", f"PORT={port}",
                                               "JOBLIB_MULTIPROCESSING=0"])
    assert predict_in_runc(bundle, port, tmp_path / "container.log") == {"result": 2}


def predict_in_runc(bundle: Path, port: int, log: Path, timeout: float = 60) -> object:
    """Start the bundle's server with runc, POST the sample, stop it; the answer."""
    cid, proc = runc_start_detached(bundle, log)
    try:
        return post_when_up(f"http://127.0.0.1:{port}/predict", SAMPLE, proc, log, timeout)
    finally:
        runc_stop(cid, proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _materialize(entries: list[Entry], root: Path) -> None:
    """Write entries to a directory, as a layer extraction would (owner 0, given modes)."""
    for e in sorted(entries, key=lambda e: e.path):
        target = root / e.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if e.kind is Kind.DIR:
            target.mkdir(exist_ok=True)
            target.chmod(e.mode)
        elif e.kind is Kind.SYMLINK:
            target.symlink_to(e.target)
        elif e.kind is Kind.FILE:
            assert e.opener is not None
            with e.opener() as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            target.chmod(e.mode)


def _runtime_config(bundle: Path, args: list[str], env: list[str]) -> None:
    run("runc", "spec", "--bundle", str(bundle))
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"].update(terminal=False, args=args, cwd="/app",
                             user={"uid": 65532, "gid": 65532},
                             env=["PATH=/usr/bin:/bin", *env])
    config["root"]["readonly"] = True
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "network"]
    config_path.write_text(json.dumps(config))


def post_when_up(url: str, body: dict, proc: subprocess.Popen, log: Path,
                 timeout: float = 60) -> object:
    """POST JSON to a server starting in ``proc``; its answer, or fail with its log."""
    data = json.dumps(body).encode()
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(url, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer; its log:\n"
                                     f"{log.read_text(errors='replace')[-3000:]}") from None
            time.sleep(0.5)
