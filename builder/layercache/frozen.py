"""A frozen app's dependency layers, found by the freeze's key before anything runs.

A onedir app is split into dependency layers (the Python runtime, its largest
distributions, the other packages, the executable with its pure-Python modules)
and the app's own code. The dependency layers follow from the freeze key alone
(Python identity, requirements, pins, options, the app's import set), which is
computed without pip or PyInstaller. So after a freeze, each of them is recorded
under :func:`part_key` with its view rows (its files, which are ELF, /etc/passwd
content) and a note under :func:`app_key` lists them (name and what it holds)
with PyInstaller's warnings. A later build, on any machine, that finds the note
and every part uses them: no venv, no pip, no PyInstaller; the image view comes
from the rows, and an ELF file is read out of its layer only if the library
closure opens it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..layers.build import layer_cache_key
from ..layers.entries import Entry
from ..oci.image import Layer
from . import Hit
from .tiered import TieredCache

NOTE_FORMAT = 1


def app_key(freeze_key: str, dest: str, *parts: object) -> str:
    """The note key of a frozen app: its freeze key, where it goes, the layer options."""
    return layer_cache_key("frozen-app", NOTE_FORMAT, freeze_key, dest, *parts)


def part_key(app: str, name: str) -> str:
    """The content key of one dependency layer of the frozen app noted under ``app``."""
    return layer_cache_key("frozen-part", app, name)


@dataclass(frozen=True)
class FoundPart:
    name: str
    detail: str
    hit: Hit
    entries: list[Entry]


@dataclass(frozen=True)
class FoundApp:
    parts: list[FoundPart]
    warnings: list[str]


def find_app(cache: TieredCache, app: str, rebuild: Callable[[str], Layer],
             workdir: Path) -> FoundApp | None:
    """The dependency layers noted under ``app`` if the cache has the note and every
    one of them, else None. ``rebuild(name)`` makes a part here should its remote
    blob turn out bad (it freezes, so it is called only then)."""
    from ..layers.view import row_entries

    note = cache.get_note(app)
    try:
        listed = [(str(p["name"]), str(p["detail"])) for p in note["parts"]]  # type: ignore[index]
        warnings = [str(w) for w in note.get("warnings") or []]  # type: ignore[union-attr]
    except (TypeError, KeyError, AttributeError):
        return None
    parts = []
    for name, detail in listed:
        hit = cache.find(part_key(app, name), lambda name=name: rebuild(name))
        if hit is None:
            return None
        try:
            entries = row_entries(hit.record.extra.get("rows"), hit.layer, workdir)
        except ValueError:
            return None
        parts.append(FoundPart(name, detail, hit, entries))
    return FoundApp(parts, warnings)


def note_app(cache: TieredCache, app: str, parts: list[tuple[str, str]],
             warnings: list[str]) -> None:
    """Note the dependency layers (name, what it holds) just recorded for ``app``."""
    cache.put_note(app, {"parts": [{"name": n, "detail": d} for n, d in parts],
                         "warnings": list(warnings)})


def rows_extra(entries: list[Entry], cache: TieredCache) -> Callable[[Layer], dict]:
    """The ``extra`` of a dependency layer's record: its view rows."""
    from ..layers.view import entry_rows
    from .local import elf_members

    def extra(layer: Layer) -> dict:
        elf = elf_members(cache.local.blob_dir, layer.diff_id) or []
        return {"rows": entry_rows(entries, set(elf))}
    return extra
