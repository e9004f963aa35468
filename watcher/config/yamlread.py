"""Reading a YAML config that cannot hurt: bounded in size, nesting and alias expansion.

YAML's aliases let a few lines stand for billions of values (the "billion laughs"): loading
shares them, but anything that walks the result (validation, rendering, an error message
quoting a value) pays for every copy. Deep nesting ends Python's recursion. So before anything
is built, the file is checked: at most `MAX_CONFIG_BYTES`, nested at most `MAX_DEPTH` levels
and `MAX_NODES` values once every alias is expanded (both counted on the document as written
and as expanded), and no alias that contains itself. A config needs a tiny fraction of each.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000


class YamlRefused(Exception):
    """The document is valid YAML but not one we read; ``where`` is "line L, column C"."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


def _where(node_or_event: Any) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _check_written_depth(text: str) -> None:
    """Nesting as written, from the event stream (which, unlike composing, has no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlRefused(_where(event), f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded(root: Node) -> None:
    """Values and depth once aliases are expanded, each shared node counted once per use
    (memoised, so a billion laughs is measured in microseconds, not expanded)."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            if sizes[key] > MAX_NODES:
                raise YamlRefused(
                    _where(node), f"more than {MAX_NODES} values once aliases are expanded"
                )
            if depths[key] > MAX_DEPTH:
                raise YamlRefused(
                    _where(node),
                    f"nested more than {MAX_DEPTH} levels deep once aliases are expanded",
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlRefused(_where(node), "an alias refers to a value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def load_yaml(text: str) -> Any:
    """The document in ``text``, if it is within the bounds; `YamlRefused` or `yaml.YAMLError`
    otherwise."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_CONFIG_BYTES:
        raise YamlRefused("", f"larger than {MAX_CONFIG_BYTES} bytes")
    _check_written_depth(text)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return None
    _check_expanded(root)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()
