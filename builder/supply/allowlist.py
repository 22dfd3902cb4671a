"""The audit allowlist: findings a person has looked at and accepted, each with a reason.

A YAML file (strict keys, ``file:line: field`` errors)::

    allow:
      - rule: private-key                       # a rule name, or a list of them
        path: /app/_internal/tornado/test/*.key  # optional glob; `*` also matches `/`
        reason: tornado's own test key, published with its source

A finding an entry matches (rule, and path when the entry has one) is still reported,
marked suppressed with the entry's reason and ``FILE:LINE``; it never fails the audit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from ..yamlspec import Node, load


@dataclass(frozen=True)
class AllowEntry:
    rules: tuple[str, ...]
    path: str | None
    """A glob over the image path; ``None`` matches every path, and findings without one."""
    reason: str
    where: str
    """``FILE:LINE`` of the entry, shown with each finding it suppresses."""

    def matches(self, rule: str, path: str | None) -> bool:
        if rule not in self.rules:
            return False
        return self.path is None or (path is not None and fnmatchcase(path, self.path))


def load_allowlist(path: Path | str, known_rules: Iterable[str]) -> list[AllowEntry]:
    """Read an allowlist; any mistake is a ManifestError naming file, line and field."""
    known = sorted(known_rules)
    root = load(Path(path), display=str(path))
    top = root.mapping()
    items = top.required("allow").list()
    top.done()
    return [_entry(item, known) for item in items]


def _entry(node: Node, known: list[str]) -> AllowEntry:
    fields = node.mapping()
    rule_node = fields.required("rule")
    rule_nodes = rule_node.list() if isinstance(rule_node.value, list) else [rule_node]
    rules = []
    for item in rule_nodes:
        name = item.str()
        if name not in known:
            raise item.error(f"unknown rule {name!r} (rules: {', '.join(known)})")
        rules.append(name)
    if not rules:
        raise rule_node.error("names no rule")
    path = fields.optional("path", Node.str, None)
    if path is not None and not path.startswith(("/", "*")):
        raise fields.get("path").error(f"{path!r} must be an image path, starting with /")
    reason = fields.required("reason").str().strip()
    if not reason:
        raise fields.get("reason").error("must say why the finding is accepted")
    fields.done()
    return AllowEntry(tuple(rules), path, reason, f"{node.file}:{node.line}")
