"""``mode: onefile``: the SBOM lists the Python packages inside the executable's
archive, and the image has the same digest from two cache paths (a console script's
RECORD row named the build venv)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import cli, write

pytestmark = [pytest.mark.slow]

MANIFEST = """\
image: t/onefile:1
libraries: {from: host}
layers:
  - name: app
    pyinstaller:
      entry: app.py
      requirements: requirements.txt
      mode: onefile
    dest: /app
config:
  entrypoint: ["/app/app"]
"""


def test_onefile_lists_its_packages_and_does_not_depend_on_the_cache_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    write(project / "app.py", "import flask\nprint(flask.Flask.__name__)\n")
    write(project / "requirements.txt", "flask\n")  # has a console script: bin/flask
    manifest = write(project / "ocibuild.yaml", MANIFEST)
    digests = []
    for cache in ("cache-a", "somewhere/else/cache-b"):
        code, out, err = cli("build", manifest, "-o", tmp_path / f"{Path(cache).name}.tar",
                             "--json", "--cache-dir", tmp_path / cache, capsys=capsys)
        assert code == 0, err
        digests.append(json.loads(out)["digest"])
    assert digests[0] == digests[1]
    code, out, err = cli("sbom", tmp_path / "cache-a.tar", "--format", "cyclonedx-json",
                         capsys=capsys)
    assert code == 0, err
    found = {c["name"].lower(): c for c in json.loads(out)["components"]}
    for name in ("flask", "werkzeug", "jinja2", "click"):
        assert name in found, sorted(found)
        location = {p["name"]: p["value"] for p in found[name]["properties"]}
        assert location["ocibuild:location"].startswith("/app/app!/")
