"""Strict YAML reading with file:line:field errors.

``load(path)`` returns a tree of :class:`Node` (value + line + dotted field path);
:class:`Fields` reads one mapping strictly: each key is taken once, typed, and
``done()`` reports any key nobody asked for. Used by the image manifest and by
base-image definitions, so both give errors like::

    iris.yaml:14: layers[1].files[0].mode: "0999" is not an octal file mode

Reading is bounded, whatever the file holds (see the README's Limits): at most
:data:`MAX_YAML_BYTES` bytes of a regular file, :data:`MAX_YAML_DEPTH` levels of
nesting and :data:`MAX_YAML_VALUES` values counted with every alias expanded (a
"billion laughs" file is refused at its first few aliases, not expanded).
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from .errors import ManifestError
from .yamlerrors import syntax_error

T = TypeVar("T")

MAX_YAML_BYTES = 256 * 1024
"""Largest manifest or base definition read (ocibuild's own are 1-2 kB)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists (a manifest needs 5)."""
MAX_YAML_VALUES = 20_000
"""Most values (scalars, lists, mappings) in one file, every alias counted as a full copy
of what it names: bounds the time and memory of expanding aliases and ``<<`` merges, and
of PyYAML's pure-Python composer (about 1 s for 20 000 values; iris's manifest has 60)."""


@dataclass
class Node:
    value: Any          # dict[str, Node] | list[Node] | str | int | float | bool | None
    line: int
    path: str           # dotted field path, "" for the document root
    file: str
    raw: str | None = None  # a scalar's text as written (without quotes)
    key_lines: dict[str, int] | None = None  # a mapping's keys: the line each is on

    def error(self, message: str) -> ManifestError:
        return ManifestError(message, file=self.file, line=self.line, field=self.path or None)

    @property
    def plain(self) -> Any:
        """The value with all Node wrappers removed."""
        if isinstance(self.value, dict):
            return {k: v.plain for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain for v in self.value]
        return self.value

    def as_type(self, kind: type | tuple[type, ...], what: str) -> Any:
        ok = isinstance(self.value, kind) and not (
            isinstance(self.value, bool) and kind in (int, float, (int, float)))
        if not ok:
            raise self.error(f"expected {what}, got {_describe(self.value)}")
        return self.value

    def str(self) -> str:
        return self.as_type(str, "a string")

    def mapping(self) -> "Fields":
        self.as_type(dict, "a mapping")
        return Fields(self)

    def list(self) -> list["Node"]:
        return self.as_type(list, "a list")

    def str_list(self) -> tuple[str, ...]:
        return tuple(item.str() for item in self.list())


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return f"{type(value).__name__} {value!r}"


def _child_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if not key.isprintable():  # a newline or escape in a key must not reach the terminal
        key = repr(key)
    return f"{parent}.{key}" if parent else key


def load(path: Path, display: str | None = None) -> Node:
    """Parse ``path`` into a :class:`Node` tree; YAML errors name file and line."""
    name = display or str(path)
    text = _read(Path(path), name)
    try:
        root = _BoundedLoader(text).get_single_node()
    except _TooBig as e:
        raise ManifestError(e.message, file=name, line=e.line) from None
    except yaml.MarkedYAMLError as e:
        raise syntax_error(e, text, name) from e
    except yaml.YAMLError as e:
        raise ManifestError(f"invalid YAML: {e}", file=name) from e
    if root is None:
        raise ManifestError("the file is empty", file=name, line=1)
    return _convert(root, "", name)


def _read(path: Path, name: str) -> str:
    """The text of a regular file of at most MAX_YAML_BYTES (a FIFO or device is refused
    without blocking on it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise ManifestError("file not found", file=name) from e
    except OSError as e:
        raise ManifestError(f"cannot read: {e.strerror}", file=name) from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ManifestError("is not a regular file", file=name)
        try:
            data = f.read(MAX_YAML_BYTES + 1)
        except OSError as e:
            raise ManifestError(f"cannot read: {e.strerror}", file=name) from e
    if len(data) > MAX_YAML_BYTES:
        raise ManifestError(f"is larger than {MAX_YAML_BYTES // 1024} KiB (MAX_YAML_BYTES); "
                            "a manifest this big is not one", file=name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"cannot read: not UTF-8 ({e.reason} at byte {e.start})",
                            file=name) from e


class _TooBig(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message, self.line = message, mark.line + 1 if mark else None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer with MAX_YAML_DEPTH and MAX_YAML_VALUES enforced while the
    node graph is built (aliases are shared nodes there; each counts as the values it
    names), and aliases that name their own enclosing node refused."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._values = 0
        self._weight: dict[int, int] = {}   # id(finished collection node) -> its values

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if isinstance(node, yaml.CollectionNode) and id(node) not in self._weight:
                raise _TooBig("an alias names a mapping or list it is inside of (a cycle)",
                              mark)
            self._count(self._weight.get(id(node), 1), mark)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _TooBig(f"nested more than {MAX_YAML_DEPTH} levels deep (MAX_YAML_DEPTH)",
                          mark)
        before = self._values
        self._count(1, mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.CollectionNode):
            self._weight[id(node)] = self._values - before
        return node

    def _count(self, values: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            raise _TooBig(f"holds more than {MAX_YAML_VALUES} values, each alias counted as a "
                          "copy of what it names (MAX_YAML_VALUES)", mark)


_constructor = yaml.SafeLoader("")


def _construct(node: yaml.Node, file: str, path: str) -> object:
    try:
        return _constructor.construct_object(node, deep=True)
    except ValueError as e:  # int("9" * 5000): Python refuses more than 4300 digits
        raise ManifestError(f"a {len(node.value)}-character number is too large to read",
                            file=file, line=node.start_mark.line + 1, field=path or None) from None
    except yaml.YAMLError as e:
        raise ManifestError(f"unsupported YAML value: {getattr(e, 'problem', None) or e}",
                            file=file, line=node.start_mark.line + 1, field=path or None) from e


def _convert(node: yaml.Node, path: str, file: str) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        try:
            _constructor.flatten_mapping(node)
        except yaml.YAMLError as e:
            raise ManifestError(f"invalid merge (<<): {getattr(e, 'problem', None) or e}",
                                file=file, line=line) from e
        merged = len(node.value) - own  # flatten_mapping puts merged pairs first
        out: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        written: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _construct(key_node, file, path)
            if not isinstance(key, str):
                raise ManifestError(f"keys must be strings, got {key!r}", file=file,
                                    line=key_node.start_mark.line + 1, field=path or None)
            child = _child_path(path, key)
            if index >= merged:  # a key written here, not merged in with <<
                if key in written:
                    raise ManifestError("duplicate key", file=file,
                                        line=key_node.start_mark.line + 1, field=child)
                written.add(key)
            out[key] = _convert(value_node, child, file)
            key_lines[key] = key_node.start_mark.line + 1
        return Node(out, line, path, file, key_lines=key_lines)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(item, _child_path(path, i), file)
                     for i, item in enumerate(node.value)], line, path, file)
    return Node(_construct(node, file, path), line, path, file,
                raw=node.value if isinstance(node.value, str) else None)


TYPO_CUTOFF = 0.6
"""How alike (difflib's ratio, 0..1) an unknown key must be to a known one to be
reported as its misspelling (``dset`` → ``dest`` is 0.75, ``colour`` → ``config`` 0.33)."""


class Fields:
    """Strict reader of one YAML mapping: typed getters plus an unknown-key check."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._items: dict[str, Node] = node.value
        self._taken: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def get(self, key: str) -> Node | None:
        self._taken.add(key)
        return self._items.get(key)

    def required(self, key: str) -> Node:
        node = self.get(key)
        if node is None:
            typo = self._misspelt(key)
            if typo is not None:  # `dset:` for `dest:` says so, not "dest: is required"
                raise self._unknown(typo, f"did you mean {key!r}?")
        if node is None or node.value is None:
            raise ManifestError("is required", file=self.node.file, line=self.node.line,
                                field=_child_path(self.node.path, key))
        return node

    def _misspelt(self, key: str) -> str | None:
        """A key given here, asked for by nobody so far, that looks like ``key``."""
        untaken = [k for k in self._items if k not in self._taken]
        close = difflib.get_close_matches(key, untaken, n=1, cutoff=TYPO_CUTOFF)
        return close[0] if close else None

    def _unknown(self, key: str, hint: str) -> ManifestError:
        line = (self.node.key_lines or {}).get(key, self._items[key].line)
        return ManifestError(f"unknown key {key!r} ({hint})", file=self.node.file, line=line,
                             field=_child_path(self.node.path, key))

    def optional(self, key: str, convert: Callable[[Node], T], default: T) -> T:
        node = self.get(key)
        if node is None:
            return default
        return convert(node)

    def done(self, allowed_hint: str | None = None) -> None:
        """Raise on the first key that no getter asked for."""
        for key in self._items:
            if key not in self._taken:
                known = sorted(self._taken)
                close = difflib.get_close_matches(key, known, n=1, cutoff=TYPO_CUTOFF)
                if close:
                    raise self._unknown(key, f"did you mean {close[0]!r}?")
                hint = allowed_hint or (", ".join(known) if known else "none")
                raise self._unknown(key, f"known keys here: {hint}")
