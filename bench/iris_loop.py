"""The daily loop on a real frozen app (examples/iris), against its own cold build.

    python3 bench/iris_loop.py                       # about 5 minutes here
    python3 bench/iris_loop.py --markdown out.md     # also write the report

What a team pays per commit, measured in one run (these machines are noisy, so
every figure is shown beside the cold build of the same run):

* **cold build** — a fresh cache: venv, pip, PyInstaller, the cc base's .debs;
* **no-op rebuild** — nothing changed;
* **one-line code change** — ``app.py`` answers with one more field: rebuild
  time as a ratio to the cold build, the compressed bytes that are new, and the
  bytes the next ``ocibuild push`` to a local docker-registry uploads;
* **second app, same requirements** — another model server (other routes,
  other code, the same requirements and freeze options): the share of its
  compressed bytes that the registry already holds after the first app's push.

Targets (issue 11): at most 2 MB new and at most 10 % of the cold build's time
for a code change (PyInstaller's analysis does not run), at least 90 % of the
second app already in the registry. Needs the tools ``bench/run.py`` needs
(docker-registry, /usr/bin/time) and the Debian archive the host's apt sources
name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Row, median, ocibuild, run, settle, start_registry, table  # noqa: E402

IRIS = ROOT / "examples" / "iris"
EDIT = ("return jsonify(result=int(model.predict([data])[0]))",
        "return jsonify(result=int(model.predict([data])[0]), version=2)")

SECOND_APP = '''\
"""A second model server on the same stack: class probabilities, and a version route."""

import json
import os

import joblib
from flask import Flask, jsonify, request

MODEL_PATH = os.environ.get("MODEL_PATH", "/app/model.joblib")


def create_app(model_path: str = MODEL_PATH) -> Flask:
    app = Flask(__name__)
    model = joblib.load(model_path)

    @app.post("/proba")
    def proba():  # type: ignore[no-untyped-def]
        rows = (request.get_json(silent=True) or {}).get("rows") or []
        return jsonify(proba=model.predict_proba(rows).round(4).tolist())

    @app.get("/version")
    def version():  # type: ignore[no-untyped-def]
        return jsonify(model=os.path.basename(model_path), classes=len(model.classes_),
                       params=json.dumps(model.get_params(), default=str)[:200])

    return app


if __name__ == "__main__":
    from waitress import serve

    serve(create_app(), host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
'''


def copy_project(root: Path) -> Path:
    """examples/iris and the base definitions, as in a checkout; the manifest."""
    shutil.copytree(IRIS, root / "examples" / "iris",
                    ignore=shutil.ignore_patterns("__pycache__", "*.tar"))
    shutil.copytree(ROOT / "base_images", root / "base_images")
    return root / "examples" / "iris" / "ocibuild.yaml"


def build(manifest: Path, out: Path, cache: Path) -> tuple[float, dict, float]:
    """Build; wall seconds, the --json summary, peak RSS in MB."""
    settle()
    r = run(ocibuild("build", str(manifest), "-o", str(out), "--json", "--cache-dir",
                     str(cache)), cwd=ROOT)
    return r.seconds, json.loads(r.stdout), r.rss_kb / 1024


def push(image: Path, ref: str) -> dict:
    r = run(ocibuild("push", str(image), ref, "--insecure", "--json"), cwd=ROOT)
    return json.loads(r.stdout)["blobs"]


def in_registry(host: str, repo: str, summary: dict) -> int:
    """Compressed bytes of ``summary``'s layers that the registry already has."""
    have = 0
    for layer in summary["layers"]:
        head = requests.head(f"http://{host}/v2/{repo}/blobs/{layer['digest']}", timeout=10)
        have += layer["size"] if head.status_code == 200 else 0
    return have


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", help="also write the report to this Markdown file")
    parser.add_argument("--reps", type=int, default=3, help="no-op rebuilds to take the median of")
    args = parser.parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ocibuild-iris-bench-") as tmp:
        work = Path(tmp)
        manifest = copy_project(work / "project")
        cache = work / "cache"
        cold, first, cold_rss = build(manifest, work / "iris.tar", cache)
        total = sum(layer["size"] for layer in first["layers"])
        log(f"cold build {cold:.1f} s, {total / 1e6:.1f} MB compressed, "
            f"{len(first['layers'])} layers")

        rows.append(Row("iris: cold build", cold, "-", None, cold_rss, "", None,
                        f"{len(first['layers'])} layers, {total / 1e6:.1f} MB compressed"))
        noops = [build(manifest, work / "iris.tar", cache) for _ in range(args.reps)]
        noop = median([n[0] for n in noops])
        rows.append(Row("iris: no-op rebuild", noop, "ocibuild cold build", cold,
                        max(n[2] for n in noops), "< 1 s", noop < 1.0))

        registry = start_registry(work / "registry")
        try:
            push(work / "iris.tar", f"{registry.host}/ml/iris:1")
            app = manifest.parent / "app.py"
            app.write_text(app.read_text().replace(*EDIT))
            seconds, edited, rss = build(manifest, work / "edited.tar", cache)
            known = {layer["digest"] for layer in first["layers"]}
            new = sum(layer["size"] for layer in edited["layers"] if layer["digest"] not in known)
            rebuilt = [layer["name"] for layer in edited["layers"] if not layer["cached"]]
            uploaded = push(work / "edited.tar", f"{registry.host}/ml/iris:2")["bytes_uploaded"]
            rows.append(Row("iris: one-line code change", seconds, "ocibuild cold build", cold,
                            rss, "≤ 0.10× and ≤ 2 MB new",
                            seconds / cold <= 0.10 and new <= 2e6,
                            f"new {new / 1e3:.1f} kB compressed, push uploaded "
                            f"{uploaded / 1e3:.1f} kB; rebuilt: {', '.join(rebuilt)}"))

            second = work / "second"
            manifest2 = copy_project(second)
            (manifest2.parent / "app.py").write_text(SECOND_APP)
            manifest2.write_text(manifest2.read_text().replace("ml/iris:1.0.0",
                                                               "ml/iris-proba:1.0.0"))
            seconds2, other, rss2 = build(manifest2, second / "proba.tar", cache)
            have = in_registry(registry.host, "ml/iris", other)
            total2 = sum(layer["size"] for layer in other["layers"])
            uploaded2 = push(second / "proba.tar", f"{registry.host}/ml/iris:proba")
            rows.append(Row("second app, same requirements", seconds2, "ocibuild cold build",
                            cold, rss2, "≥ 90 % already in the registry", have / total2 >= 0.90,
                            f"{100 * have / total2:.1f} % of {total2 / 1e6:.1f} MB already "
                            f"there; push uploaded {uploaded2['bytes_uploaded'] / 1e3:.1f} kB"))
        finally:
            registry.stop()
    report = (f"iris daily loop — {time.strftime('%Y-%m-%d')}, cold build {cold:.1f} s\n\n"
              + table(rows) + "\n")
    print(report)
    if args.markdown:
        Path(args.markdown).write_text("# iris daily loop\n\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
