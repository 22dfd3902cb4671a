"""YAML syntax errors a person can act on: where, the line itself, and a hint.

PyYAML's own words (``mapping values are not allowed here``) name the parser's
state, not the mistake. :func:`syntax_error` keeps them, adds the column, shows
the offending line with a caret under the spot, and guesses the usual causes::

    ocibuild.yaml:2:7: invalid YAML: mapping values are not allowed here
        2 |  layers:
          |       ^
      hint: this line is indented differently from the key above it; …
"""

from __future__ import annotations

import re

import yaml

from .errors import ManifestError

_NO_SPACE_AFTER_COLON = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w.-]*:(?=[^\s:/])")
_NO_SPACE_AFTER_DASH = re.compile(r"^\s*-(?=[^\s-])")


def syntax_error(e: yaml.MarkedYAMLError, text: str, file: str) -> ManifestError:
    """A :class:`ManifestError` for a YAML syntax error, with the line, a caret and a hint."""
    lines = text.splitlines()
    mark = e.problem_mark or e.context_mark
    if mark is None:
        return ManifestError(f"invalid YAML: {e}", file=file)
    index, column = mark.line, mark.column
    if (index >= len(lines) or not lines[index].strip()) and e.context_mark:
        index, column = e.context_mark.line, e.context_mark.column  # where it was opened
    if index >= len(lines) or not lines[index].strip():
        # the end of the file: point just after the last thing written
        index = max((i for i in range(min(index, len(lines))) if lines[i].strip()),
                    default=0)
        column = len(lines[index].rstrip()) if lines else 0
    source = lines[index] if index < len(lines) else ""
    problem = e.problem or str(e)
    shown = source.replace("\t", " ")  # keep the caret under the right character
    gutter = f"{index + 1:>5} | "
    message = (f"invalid YAML: {problem}\n{gutter}{shown}\n"
               f"{' ' * (len(gutter) - 2)}| {' ' * column}^")
    hint = _hint(e, lines, index)
    if hint:
        message += f"\n  hint: {hint}"
    return ManifestError(message, file=file, line=index + 1, column=column + 1)


def _hint(e: yaml.MarkedYAMLError, lines: list[str], index: int) -> str | None:
    """The likely mistake, from the lines around the error and PyYAML's words."""
    problem = e.problem or ""
    context = e.context or ""
    nearby = [(i, lines[i]) for i in range(max(index - 2, 0), min(index + 1, len(lines)))]
    if "\t" in problem or any("\t" in line[:len(line) - len(line.lstrip())]
                              for _, line in nearby):
        return "YAML indents with spaces only; replace the tab(s) with spaces"
    for i, line in reversed(nearby):
        if _NO_SPACE_AFTER_COLON.match(line):
            key = line.strip().lstrip("- ").split(":", 1)[0]
            return (f"line {i + 1}: a key needs a space after ':' "
                    f"(`{key}: value`, not `{key}:value`)")
        if _NO_SPACE_AFTER_DASH.match(line):
            return f"line {i + 1}: a list item needs a space after '-' (`- name: …`)"
    if "quoted scalar" in context:
        return "a quote is opened here and never closed"
    if "flow" in context or "expected ',' or" in problem:
        return "a [ or { is not closed before this point (or an item lacks its comma)"
    if "mapping values are not allowed" in problem:
        return ("this line is indented differently from the key above it, or a value "
                "contains ': ' and needs quotes")
    if "expected <block end>" in problem or "could not find expected ':'" in problem \
            or "expected key" in problem:
        return ("check the indentation: the keys of one mapping, and the '-' items of "
                "one list, must start in the same column")
    return None
