"""Side-by-side speed of ocibuild against the native tools, as ratios.

    python bench/run.py            # full run (~200 MB tree, 100 000-file tree), < 10 min
    python bench/run.py --quick    # small inputs, a smoke test (< 1 min)
    python bench/run.py --markdown bench/RESULTS.md

Everything is prepared in a temporary directory: a tree shaped like a frozen
ML app (many small ``.py``/``.pyc`` files, large ``.so``-like files, some barely
compressible, some compressible; deterministic from ``--seed``) and a tree of
100 000 small files. Each scenario runs ocibuild and its peer as child
processes, interleaved, ``--reps`` times; the table shows medians, the ratio
ocibuild / peer, and ocibuild's peak RSS (from ``/usr/bin/time``). The
machine is noisy: only ratios within one run mean anything.

Peers: ``tar -c | gzip -6``, ``tar -c | pigz``, ``tar -c | zstd -T0 -3``,
``buildah bud`` (vfs, chroot) + ``buildah push … oci-archive:``, ``skopeo copy
oci-archive:… docker://…`` to a local ``docker-registry``, and ``tar -c``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("/usr/bin/time", "tar", "gzip", "pigz", "zstd", "buildah", "skopeo", "docker-registry")


# -- running and measuring ---------------------------------------------------------------

@dataclasses.dataclass
class Run:
    seconds: float
    rss_kb: int
    stdout: str


def run(argv: Sequence[str] | str, *, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> Run:
    """Run a child (a shell line when ``argv`` is a str); its wall time and peak RSS.

    The peak RSS comes from ``/usr/bin/time`` (the largest of the command and
    its descendants): the rusage of a child forked straight from this process
    would count this process's own pages, inherited at the fork.
    """
    command = ["/bin/bash", "-c", argv] if isinstance(argv, str) else list(argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
                              cwd=cwd, env=env, stdout=out, stderr=err, check=False)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        rss_kb = int((rss.read().strip().splitlines() or ["0"])[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({proc.returncode}):\n"
                           f"{stderr.decode(errors='replace')[-3000:]}")
    return Run(seconds, rss_kb, stdout.decode(errors="replace"))


def ocibuild(*args: str) -> list[str]:
    return [sys.executable, "-m", "builder", *args]


@dataclasses.dataclass
class Row:
    scenario: str
    ours: float
    peer_name: str
    peer: float | None
    rss_mb: float
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.peer if self.peer else None


def settle() -> None:
    """Let the kernel finish the writeback of earlier runs (and of deleting their
    outputs) before a measured run starts, so no run pays for the one before."""
    os.sync()
    time.sleep(0.2)


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- inputs ------------------------------------------------------------------------------

WORDS = (b"import numpy as np def return self class for in if else elif while with as "
         b"try except finally raise lambda yield from None True False model predict fit "
         b"transform array shape dtype float64 int32 sklearn ensemble tree estimator "
         b"params kwargs args len range dict list tuple set print __init__ __name__ "
         b"super isinstance ValueError TypeError np.asarray X y n_samples n_features").split()


def _lines(rng: random.Random, count: int) -> list[bytes]:
    pool = []
    for _ in range(count):
        indent = b"    " * rng.randrange(0, 4)
        pool.append(indent + b" ".join(rng.choices(WORDS, k=rng.randrange(2, 12))) + b"\n")
    return pool


def _skewed_table(rng: random.Random, alphabet: int) -> bytes:
    """A byte translation table folding 256 values onto a skewed alphabet (entropy < 8 bits)."""
    symbols = rng.sample(range(256), alphabet)
    weights = sorted((rng.random() ** 3 for _ in range(alphabet)), reverse=True)
    total = sum(weights)
    table = bytearray()
    for sym, w in zip(symbols, weights):
        table += bytes([sym]) * max(1, round(256 * w / total))
    table = (table * 2)[:256]
    return bytes(table)


def make_ml_tree(root: Path, total_mb: int, seed: int) -> int:
    """A frozen-app-like tree: ~1/3 small .py/.pyc, ~2/3 large .so-like; returns bytes."""
    rng = random.Random(seed)
    lines = _lines(rng, 20_000)
    dense = _skewed_table(rng, 200)   # ~7 bits/byte: like packed machine code, data
    sparse = _skewed_table(rng, 24)   # ~4 bits/byte: like tables, relocations, strings
    written = 0
    small_budget = total_mb * (1 << 20) // 3
    internal = root / "_internal"
    packages = ["numpy", "scipy", "sklearn", "flask", "werkzeug", "jinja2", "joblib",
                "threadpoolctl", "markupsafe", "click", "itsdangerous", "blinker"]
    n = 0
    while written < small_budget:
        pkg = packages[n % len(packages)]
        sub = internal / pkg / f"sub{(n // len(packages)) % 40:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        text = b"".join(rng.choices(lines, k=rng.randrange(10, 250)))
        (sub / f"mod{n:05d}.py").write_bytes(text)
        code = rng.randbytes(len(text) // 2).translate(sparse) + text[: len(text) // 3]
        (sub / f"mod{n:05d}.pyc").write_bytes(b"\xa7\r\r\n" + bytes(12) + code)
        written += len(text) + len(code) + 16
        n += 1
    big_budget = total_mb * (1 << 20) - written
    sizes = [0.22, 0.16, 0.12, 0.1, 0.08, 0.08, 0.06, 0.06, 0.05, 0.04, 0.03]
    for i, share in enumerate(sizes):
        size = int(big_budget * share / sum(sizes))
        table = dense if i % 2 == 0 else sparse
        parts = []
        left = size
        while left > 0:
            block = min(left, 1 << 20)
            if rng.random() < 0.15:   # zero padding and repeated sections, as in real ELF
                parts.append(bytes(block // 4) + rng.randbytes(block - block // 4).translate(table))
            else:
                parts.append(rng.randbytes(block).translate(table))
            left -= block
        name = f"lib{packages[i % len(packages)]}_core{i}.cpython-311-x86_64-linux-gnu.so"
        (internal / packages[i % len(packages)] / name).write_bytes(b"\x7fELF" + b"".join(parts))
        written += size + 4
    (root / "app").write_bytes(b"\x7fELF" + rng.randbytes(2 << 20).translate(dense))
    (root / "model.joblib").write_bytes(rng.randbytes(1 << 20).translate(sparse))
    return written + (3 << 20)


def make_small_tree(root: Path, count: int, seed: int) -> None:
    """``count`` files of 100 B – 2 kB, 100 per directory."""
    rng = random.Random(seed + 1)
    blob = rng.randbytes(4096).translate(_skewed_table(rng, 40))
    for i in range(count):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        size = rng.randrange(100, 2000)
        off = rng.randrange(0, 4096 - size)
        (d / f"f{i:06d}.txt").write_bytes(blob[off:off + size])


def write_manifest(path: Path, tree: Path, compression: str) -> None:
    """Three layers, like the iris image: runtime, app code, model."""
    path.write_text(
        f"image: bench/app:1\ncompression: {compression}\nlayers:\n"
        f"  - name: runtime\n    files:\n      - {{src: {tree}/_internal, dest: /app/_internal}}\n"
        f"  - name: app\n    files:\n      - {{src: {tree}/app, dest: /app/app, mode: \"0755\"}}\n"
        f"  - name: model\n    files:\n      - {{src: {tree}/model.joblib, dest: /app/model.joblib}}\n"
        "config:\n  user: \"65532\"\n  entrypoint: [\"/app/app\"]\n")


def write_flat_manifest(path: Path, tree: Path) -> None:
    path.write_text(f"image: bench/small:1\nlayers:\n"
                    f"  - name: files\n    files:\n      - {{src: {tree}, dest: /data}}\n")


# -- the registry ------------------------------------------------------------------------

def start_registry(root: Path):
    """``docker-registry serve`` on a free loopback port (peers/registry.py, which the
    tests use too; no pytest needed)."""
    sys.path.insert(0, str(ROOT))
    from peers.registry import start_registry as start

    return start(root)


# -- scenarios ---------------------------------------------------------------------------

class Bench:
    def __init__(self, work: Path, reps: int, log: Callable[[str], None]) -> None:
        self.work, self.reps, self.log = work, reps, log
        self.rows: list[Row] = []
        self._n = 0

    def fresh(self, name: str) -> Path:
        self._n += 1
        path = self.work / f"{name}-{self._n}"
        shutil.rmtree(path, ignore_errors=True)  # left by an earlier run in --workdir
        path.mkdir(parents=True)
        settle()
        return path

    def compare(self, scenario: str, ours: Callable[[], Run], peers: dict[str, Callable[[], Run]],
                targets: dict[str, tuple[str, float]]) -> dict[str, list[float]]:
        """Run ours and each peer ``reps`` times, interleaved; add one row per peer."""
        times: dict[str, list[float]] = {"ours": [], **{p: [] for p in peers}}
        rss: list[int] = []
        for rep in range(self.reps):
            order = [("ours", ours), *peers.items()]
            if rep % 2:
                order.reverse()
            for name, fn in order:
                settle()
                r = fn()
                times[name].append(r.seconds)
                if name == "ours":
                    rss.append(r.rss_kb)
        ours_s = median(times["ours"])
        for name in peers:
            peer_s = median(times[name])
            label, limit = targets.get(name, ("", 0.0))
            met = (ours_s / peer_s <= limit) if limit else None
            self.add(Row(scenario, ours_s, name, peer_s, max(rss) / 1024, label, met))
        return times

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        self.log(f"  {row.scenario:<28} ocibuild {row.ours:7.2f}s  {row.peer_name:<26} "
                 f"{row.peer or 0:7.2f}s  ratio {ratio:>5}  rss {row.rss_mb:6.1f} MB  "
                 f"{'' if row.met is None else 'met' if row.met else 'NOT MET'} {row.note}")


def assemble(b: Bench, tree: Path) -> dict[str, Path]:
    """Cold assembly, gzip and zstd, against tar|gzip, tar|pigz, tar|zstd and buildah."""
    images: dict[str, Path] = {}
    for comp in ("gzip", "zstd"):
        manifest = b.work / f"ocibuild-{comp}.yaml"
        write_manifest(manifest, tree, comp)

        def ours(comp: str = comp, manifest: Path = manifest) -> Run:
            d = b.fresh(f"cold-{comp}")
            images[comp] = d / "image.tar"
            return run(ocibuild("build", str(manifest), "-o", str(d / "image.tar"), "-q",
                                "--cache-dir", str(d / "cache")), cwd=ROOT)

        out = b.work / "peer.out"
        tar = f"tar -cf - -C {tree} ."
        if comp == "gzip":
            peers = {"tar | gzip -6": lambda: run(f"{tar} | gzip -6 > {out}"),
                     "tar | pigz": lambda: run(f"{tar} | pigz > {out}")}
            targets = {"tar | gzip -6": ("≤ 0.6×", 0.6)}
        else:
            peers = {"tar | zstd -T0 -3": lambda: run(f"{tar} | zstd -q -T0 -3 > {out}")}
            targets = {"tar | zstd -T0 -3": ("≤ 1.2×", 1.2)}
        b.compare(f"cold assembly ({comp})", ours, peers, targets)
    if shutil.which("buildah"):
        containerfile = b.work / "Containerfile"
        containerfile.write_text("FROM scratch\nCOPY . /app/\n")

        def buildah() -> Run:
            d = b.fresh("buildah")
            flags = (f"--storage-driver vfs --root {d}/root --runroot {d}/run")
            r = run(f"buildah {flags} bud --isolation chroot -q -t bench-app -f {containerfile} {tree} "
                    f"&& buildah {flags} push -q bench-app oci-archive:{d}/image.tar")
            subprocess.run(f"buildah {flags} rmi -a -f >/dev/null 2>&1; rm -rf {d}",
                           shell=True, check=False)
            return r

        def ours_gzip() -> Run:
            d = b.fresh("cold-gzip")
            return run(ocibuild("build", str(b.work / "ocibuild-gzip.yaml"), "-o",
                                str(d / "image.tar"), "-q", "--cache-dir", str(d / "cache")),
                       cwd=ROOT)

        saved, b.reps = b.reps, max(1, b.reps - 1)  # buildah is slow; fewer reps
        b.compare("cold assembly (gzip)", ours_gzip, {"buildah bud + push": buildah},
                  {"buildah bud + push": ("≤ 1×", 1.0)})
        b.reps = saved
    return images


def rebuilds(b: Bench, tree: Path, cold_seconds: float) -> None:
    """No-op rebuild and one-file-changed rebuild on a warm cache, against the cold build."""
    manifest = b.work / "ocibuild-gzip.yaml"
    d = b.fresh("warm")
    cmd = ocibuild("build", str(manifest), "-o", str(d / "image.tar"), "-q", "--json",
                   "--cache-dir", str(d / "cache"))
    run(cmd, cwd=ROOT)
    noop = [run(cmd, cwd=ROOT) for _ in range(max(2, b.reps))]
    secs = median([r.seconds for r in noop])
    summary = json.loads(noop[-1].stdout)
    cached = [layer["cached"] for layer in summary["layers"]]
    b.add(Row("no-op rebuild (gzip)", secs, "ocibuild cold build", cold_seconds,
              max(r.rss_kb for r in noop) / 1024, "< 1 s and ≤ 0.05×",
              secs < 1.0 and secs / cold_seconds <= 0.05 and all(cached)
              and not summary["output_written"],
              f"layers reused: {sum(cached)}/{len(cached)}, output unchanged"))
    # The same, into a new output file each time: the archive is written (copied from
    # the cache); shown for what it costs, the target is for the no-op above.
    fresh = []
    for i in range(max(2, b.reps)):
        out = d / f"copy-{i}.tar"
        fresh.append(run([*cmd[:cmd.index("-o") + 1], str(out), *cmd[cmd.index("-o") + 2:]],
                         cwd=ROOT))
        out.unlink()
    b.add(Row("no-op rebuild, new -o file", median([r.seconds for r in fresh]),
              "ocibuild cold build", cold_seconds, max(r.rss_kb for r in fresh) / 1024,
              "(not a target)", None, "the archive is written again"))
    changed = tree / "model.joblib"
    original = changed.read_bytes()
    times, rss, rebuilt = [], [], []
    try:
        for i in range(max(1, b.reps)):
            changed.write_bytes(original[:-8] + i.to_bytes(8, "big"))
            r = run(cmd, cwd=ROOT)
            times.append(r.seconds)
            rss.append(r.rss_kb)
            rebuilt = [layer["name"] for layer in json.loads(r.stdout)["layers"]
                       if not layer["cached"]]
    finally:
        changed.write_bytes(original)
    secs = median(times)
    b.add(Row("one file changed (gzip)", secs, "ocibuild cold build", cold_seconds,
              max(rss) / 1024, "only that layer rebuilt", rebuilt == ["model"],
              f"rebuilt: {', '.join(rebuilt) or 'none'}"))


def pushes(b: Bench, image: Path) -> None:
    """Cold and warm push to a local docker-registry, against ``skopeo copy``.

    Each cold sample pushes into two fresh registries (one each), so neither tool
    finds a blob already there; the warm samples push again into the last pair.
    """
    def ours(reg) -> Run:
        return run(ocibuild("push", str(image), f"{reg.host}/bench/app:1", "--insecure", "-q"),
                   cwd=ROOT)

    def skopeo(reg) -> Run:
        return run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{image}",
                    f"docker://{reg.host}/bench/app:1"])

    registries: list = []
    try:
        cold_ours, cold_peer, rss = [], [], []
        for rep in range(b.reps):
            mine, theirs = start_registry(b.fresh("registry")), start_registry(b.fresh("registry"))
            registries += [mine, theirs]
            pair = [lambda: ours(mine), lambda: skopeo(theirs)]
            results = [f() for f in (pair if rep % 2 == 0 else pair[::-1])]
            if rep % 2:
                results.reverse()
            cold_ours.append(results[0].seconds)
            cold_peer.append(results[1].seconds)
            rss.append(results[0].rss_kb)
        secs, peer = median(cold_ours), median(cold_peer)
        b.add(Row("cold push", secs, "skopeo copy", peer, max(rss) / 1024, "≤ 1.2×",
                  secs / peer <= 1.2))
        mine, theirs = registries[-2], registries[-1]
        b.compare("warm push", lambda: ours(mine), {"skopeo copy": lambda: skopeo(theirs)},
                  {"skopeo copy": ("≤ 2×", 2.0)})
    finally:
        for reg in registries:
            reg.stop()


def fleet(b: Bench) -> None:
    """Fresh runner, warm registry cache: ``examples/iris`` built cold by runner A (its
    own cache dir, filling a cache repository in a local docker-registry), then by
    runner B (an empty cache dir, a copy of the checkout in another directory).

    Runner A builds once (a venv, pip, PyInstaller, the base's .debs: the expensive
    part, so not repeated); B builds ``reps`` times, each from an empty cache. B must
    get A's digest without a venv or a PyInstaller run of its own.
    """
    reg = start_registry(b.fresh("cache-registry"))
    try:
        repo = f"{reg.host}/bench/cache"

        def runner(name: str) -> tuple[Run, Path]:
            d = b.fresh(name)
            for part in ("examples/iris", "base_images"):
                shutil.copytree(ROOT / part, d / "src" / part,
                                ignore=shutil.ignore_patterns("__pycache__", "*.tar"))
            manifest = d / "src" / "examples" / "iris" / "ocibuild.yaml"
            return run(ocibuild("build", str(manifest), "-o", str(d / "iris.tar"), "--json",
                                "-q", "--cache-dir", str(d / "cache"), "--cache-repo", repo,
                                "--insecure"), cwd=ROOT), d / "cache"

        cold, _ = runner("runner-a")
        first = json.loads(cold.stdout)
        warm, fetched, rss, frozen = [], [], [], []
        same = True
        for _ in range(max(1, b.reps)):
            r, cache = runner("runner-b")
            summary = json.loads(r.stdout)
            warm.append(r.seconds)
            rss.append(r.rss_kb)
            fetched.append(summary["cache_repo"]["bytes_fetched"])
            same = same and summary["digest"] == first["digest"]
            frozen.append((cache / "pyinstaller" / "venv").exists()
                          or (cache / "pyinstaller" / "dist").exists())
        secs = median(warm)
        layers = summary["layers"]
        remote = sum(1 for layer in layers if layer["cache"] == "remote")
        b.add(Row("fresh runner, warm registry cache", secs, "cold build (runner A)",
                  cold.seconds, max(rss) / 1024, "≤ 0.15×, same digest, no pip/PyInstaller",
                  secs / cold.seconds <= 0.15 and same and not any(frozen),
                  f"fetched {median(fetched) / 1e6:.1f} MB; {remote}/{len(layers)} layers "
                  f"remote; digest {'same' if same else 'DIFFERENT'}; "
                  f"{'froze' if any(frozen) else 'no venv, no PyInstaller'}"))
    finally:
        reg.stop()


def small_files(b: Bench, tree: Path, count: int) -> None:
    manifest = b.work / "ocibuild-small.yaml"
    write_flat_manifest(manifest, tree)

    def ours() -> Run:
        d = b.fresh("small")
        return run([sys.executable, __file__, "--build-uncompressed", str(manifest),
                    str(d / "image.tar"), str(d / "cache")], cwd=ROOT)

    out = b.work / "peer.out"
    b.compare(f"{count:,} small files (none)", ours,
              {"tar -c": lambda: run(f"tar -cf {out} -C {tree} .")}, {"tar -c": ("≤ 2×", 2.0)})


# -- report ------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            text = (done.stdout or done.stderr).strip().splitlines()
            return text[0].strip("* ").split(", by ")[0] if text else "?"
        except OSError:
            return "missing"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "gzip": version(["gzip", "--version"]),
        "pigz": version(["pigz", "--version"]),
        "zstd": version(["zstd", "--version"]),
        "buildah": version(["buildah", "--version"]),
        "skopeo": version(["skopeo", "--version"]),
    }


def table(rows: list[Row]) -> str:
    out = ["| scenario | ocibuild | peer | peer time | ratio | target | met | ocibuild peak RSS |",
           "| --- | ---: | --- | ---: | ---: | --- | --- | ---: |"]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
        met = "–" if r.met is None else ("yes" if r.met else "**no**")
        note = f" ({r.note})" if r.note else ""
        peer_name = r.peer_name.replace("|", "\\|")
        out.append(f"| {r.scenario} | {r.ours:.2f} s | {peer_name} | "
                   f"{(r.peer or 0):.2f} s | {ratio} | {r.target}{note} | {met} | "
                   f"{r.rss_mb:.0f} MB |")
    return "\n".join(out)


def build_uncompressed(manifest_path: str, output: str, cache: str) -> int:
    """``ocibuild build`` with uncompressed layers (the manifest only offers gzip and zstd):
    the same calls as the CLI's build command, with ``compression`` set to ``none``."""
    sys.path.insert(0, str(ROOT))
    from builder.manifest import load_manifest
    from builder.pipeline import BuildContext, build_image
    from builder.sinks.tarball import write_tarball

    manifest = dataclasses.replace(load_manifest(Path(manifest_path)), compression="none")
    result = build_image(manifest, BuildContext(cache_dir=Path(cache), epoch=0))
    write_tarball(result.image, Path(output), result.name)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--build-uncompressed"]:
        return build_uncompressed(*argv[1:4])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke test")
    parser.add_argument("--reps", type=int, help="runs per measurement (default 3; quick 1)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--size-mb", type=int, help="size of the app tree (default 200)")
    parser.add_argument("--files", type=int, help="files in the small-file tree (100 000)")
    parser.add_argument("--workdir", help="where to put inputs (default: a temp dir, removed)")
    parser.add_argument("--markdown", help="also write the report to this Markdown file")
    parser.add_argument("--only", nargs="*",
                        choices=("assemble", "rebuild", "push", "small", "fleet"),
                        help="run only these groups (fleet: iris through a registry cache; "
                             "not in --quick)")
    args = parser.parse_args(argv)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"error: missing tools: {' '.join(missing)} (apt-get install -y tar gzip pigz "
              "zstd buildah skopeo docker-registry)", file=sys.stderr)
        return 1
    size_mb = args.size_mb or (20 if args.quick else 200)
    files = args.files or (5_000 if args.quick else 100_000)
    reps = args.reps or (1 if args.quick else 3)
    groups = set(args.only or ("assemble", "rebuild", "push", "small",
                               *(() if args.quick else ("fleet",))))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    # ocibuild runs as an installed package would: with its modules byte-compiled
    # (pip does this on install; PYTHONDONTWRITEBYTECODE would otherwise make every
    # run compile them again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "builder")],
                   check=False, capture_output=True)
    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ocibuild-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        tree, small = tmp / "ml-app", tmp / "small-files"
        if not tree.exists() and groups & {"assemble", "rebuild", "push"}:
            t = time.perf_counter()
            size = make_ml_tree(tree, size_mb, args.seed)
            log(f"prepared {tree}: {size / 1e6:.0f} MB in {time.perf_counter() - t:.0f} s")
        b = Bench(tmp / "runs", reps, log)
        b.work.mkdir(exist_ok=True)
        image = None
        cold_gzip = None
        if groups & {"assemble", "rebuild", "push"}:
            images = assemble(b, tree) if "assemble" in groups else {}
            for row in b.rows:
                if row.scenario == "cold assembly (gzip)" and cold_gzip is None:
                    cold_gzip = row.ours
            if cold_gzip is None or "gzip" not in images:
                write_manifest(b.work / "ocibuild-gzip.yaml", tree, "gzip")
                d = b.fresh("cold-gzip")
                r = run(ocibuild("build", str(b.work / "ocibuild-gzip.yaml"), "-o",
                                 str(d / "image.tar"), "-q", "--cache-dir", str(d / "cache")),
                        cwd=ROOT)
                cold_gzip, images["gzip"] = r.seconds, d / "image.tar"
            image = images["gzip"]
            if "rebuild" in groups:
                rebuilds(b, tree, cold_gzip)
            if "push" in groups:
                pushes(b, image)
        if "small" in groups:
            if not small.exists():
                t = time.perf_counter()
                make_small_tree(small, files, args.seed)
                log(f"prepared {small}: {files} files in {time.perf_counter() - t:.0f} s")
            small_files(b, small, files)
        if "fleet" in groups:
            fleet(b)
        info = machine()
        report = (f"ocibuild bench — {info['date']}, {'quick' if args.quick else 'full'} run, "
                  f"median of {reps}\n\n"
                  f"machine: {info['nproc']} × {info['cpu']}; Python {info['python']}; "
                  f"{info['gzip']}; {info['pigz']}; {info['zstd']}; {info['buildah']}; "
                  f"{info['skopeo']}\n\n"
                  f"inputs: app tree {size_mb} MiB (seed {args.seed}), {files:,} small files; "
                  f"whole run {time.perf_counter() - started:.0f} s\n\n"
                  + table(b.rows) + "\n")
        print(report)
        if args.markdown:
            Path(args.markdown).write_text("# Benchmark results\n\n" + report)
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
