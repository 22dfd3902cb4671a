"""A frozen app's dependency layers are found by the freeze's key alone, locally or in a
cache repository, with the entries the image view needs."""

from __future__ import annotations

from builder.layercache.frozen import app_key, find_app, note_app, part_key, rows_extra
from builder.layercache.tiered import open_cache
from builder.layers.build import build_layer
from builder.layers.entries import Entry
from registry_fixtures import registry  # noqa: F401

ELF = b"\x7fELF" + bytes(100)


def _parts():
    return {"python": [Entry.bytes_file("/app/_internal/libpython3.so", ELF, 0o755)],
            "packages": [Entry.bytes_file("/app/_internal/six.py", b"# six\n")]}


def _record_app(cache, app, built):
    for name, entries in _parts().items():
        def make(entries=entries, name=name):
            built.append(name)
            return build_layer(entries, blob_dir=cache.local.blob_dir, epoch=0, name=name)
        cache.layer(None, make, content=part_key(app, name), extra=rows_extra(entries, cache))
    note_app(cache, app, [("python", "runtime"), ("packages", "1 distribution")], ["W: x"])


def test_a_noted_app_is_found_on_another_runner_without_building(tmp_path, registry):  # noqa: F811
    repo = f"{registry.host}/fleet/frozen"
    app = app_key("f" * 64, "/app", "gzip", 0)
    a = open_cache(tmp_path / "a", repo, required=True)
    built: list[str] = []
    _record_app(a, app, built)
    assert built == ["python", "packages"]

    b = open_cache(tmp_path / "b", repo, required=True)
    work = tmp_path / "work"
    work.mkdir()
    found = find_app(b, app, lambda name: (_ for _ in ()).throw(AssertionError(name)), work)
    assert found is not None and found.warnings == ["W: x"]
    assert [(p.name, p.detail, p.hit.source) for p in found.parts] == [
        ("python", "runtime", "remote"), ("packages", "1 distribution", "remote")]
    lib = next(e for e in found.parts[0].entries if e.path.endswith("libpython3.so"))
    assert lib.mode == 0o755
    with lib.opener() as f:  # read out of the layer blob, fetched from the registry
        assert f.read() == ELF

    assert find_app(b, app_key("e" * 64, "/app", "gzip", 0), lambda n: None, work) is None


def test_an_app_with_a_part_missing_is_not_found(tmp_path):
    cache = open_cache(tmp_path / "a")
    app = app_key("d" * 64, "/app", "gzip", 0)
    note_app(cache, app, [("python", "runtime")], [])
    assert find_app(cache, app, lambda n: None, tmp_path) is None
