"""YAML loading that remembers where every value came from.

Config errors must name the bad key *and its line*; PyYAML's plain loader
forgets positions, so we compose the node tree and convert it ourselves,
keeping a map from each value's path (``("models", "gpt-4o", "deployments", 0)``)
to its line. Duplicate keys, which YAML silently overwrites, are errors here.
"""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]


class SourceError(ValueError):
    """A problem in a source file, with the line it is on."""

    def __init__(self, message: str, *, source: str = "", line: int | None = None) -> None:
        where = f"{source}:{line}: " if line else (f"{source}: " if source else "")
        super().__init__(where + message)


def path_str(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class Located:
    """Parsed YAML plus the line of every path in it."""

    def __init__(self, data: Any, lines: dict[Path, int], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def line(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path, message: str) -> SourceError:
        return SourceError(f"{path_str(path)}: {message}", source=self.source, line=self.line(path))


def load_located(text: str, source: str = "<config>") -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SourceError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", source=source,
                          line=mark.line + 1 if mark else None) from None
    lines: dict[Path, int] = {}
    if node is None:
        return Located({}, lines, source)
    constructor = yaml.SafeLoader("")

    def convert(n: yaml.Node, path: Path) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    raise SourceError("mapping keys must be plain scalars", source=source, line=key_node.start_mark.line + 1)
                key = str(key)
                if key in out:
                    raise SourceError(f"{path_str(path + (key,))}: duplicate key {key!r}", source=source,
                                      line=key_node.start_mark.line + 1)
                lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [convert(item, path + (i,)) for i, item in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    try:
        return Located(convert(node, ()), lines, source)
    except yaml.YAMLError as exc:  # e.g. a merge key (<<), which this line-keeping reader does not expand
        mark = getattr(exc, "problem_mark", None)
        raise SourceError(f"unsupported YAML: {getattr(exc, 'problem', None) or exc} (write the keys out; merge "
                          f"keys are not supported)", source=source, line=mark.line + 1 if mark else None) from None
