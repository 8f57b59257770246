"""YAML for configs with limits, so a hostile or broken file fails in milliseconds instead of hanging the CLI.

`yaml.safe_load` builds an alias as a shared reference, which is cheap; the cost comes later, when the config
is validated, copied or dumped and every alias is walked as the full subtree it names. Nine levels of nine
aliases ("billion laughs") is a 1 KiB file that walks as 9^9 nodes. So the document is composed first, its
size *with every alias expanded* is counted on the node graph (linear time: each distinct node once), and
only a document under MAX_NODES is constructed. Recursive aliases and nesting deeper than Python's stack are
refused too.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1 << 20  # a config file; the shipped ones are a few KiB
MAX_NODES = 100_000  # scalars + collections, counting an alias's subtree at every use


class YamlLimitError(ValueError):
    """The document is over a limit; the message says which."""


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_size(root: Node, limit: int = MAX_NODES) -> int:
    """Node count of `root` with aliases expanded; YamlLimitError past `limit` or on a recursive alias."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a deep document must not need a deep Python stack here
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > limit:
                raise YamlLimitError(
                    f"expands to more than {limit} nodes (an alias repeats its anchor's whole content at every "
                    "use); write the values out or use fewer aliases"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlLimitError("an alias refers to a node that contains it (recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


def load_yaml(text: str, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """`yaml.safe_load(text)` within the limits; YamlLimitError over them, yaml.YAMLError when malformed."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise YamlLimitError(f"larger than {max_bytes} bytes")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node, max_nodes)
        return loader.construct_document(node)
    except RecursionError:  # PyYAML composes and constructs recursively
        raise YamlLimitError("nested too deeply") from None
    finally:
        loader.dispose()
