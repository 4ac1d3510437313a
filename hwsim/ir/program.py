"""The integer program: a DAG of integer ops on a networkx.DiGraph. Plain data, no torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import networkx as nx
import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir.tensor import TensorQuant


@dataclass(frozen=True)
class Node:
    """One integer op.

    `inputs` are producer node names in operand order (the graph's edges carry no order).
    `attrs` hold JSON-able values (ints, floats, strings, lists, dicts); `arrays` hold numpy
    arrays (integer weight codes in their smallest dtype, int64 bias, requantization constants).
    `out_shape` includes the batch dimension of the program's declared input; `out` says how to
    read the output codes.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    out_shape: tuple[int, ...]
    out: TensorQuant
    attrs: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""  # where the node came from (module path, ONNX node name)

    def __post_init__(self) -> None:
        # A program's constants never change: read-only arrays let kernels cache prepared weights.
        for arr in self.arrays.values():
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False


class IntProgram:
    """A bit-accurate integer program: nodes in a DAG, one input, one output."""

    def __init__(self, name: str = "program") -> None:
        self.name = name
        self.graph = nx.DiGraph()
        self.input_name: str | None = None
        self.output_name: str | None = None
        self._order: list[Node] | None = None

    def add(self, node: Node) -> Node:
        """Append a node whose inputs are already in the program."""
        if node.name in self.graph:
            raise ProgramError(f"program {self.name!r}: duplicate node name {node.name!r}")
        for src in node.inputs:
            if src not in self.graph:
                raise ProgramError(
                    f"program {self.name!r}: node {node.name!r} reads {src!r}, which is not "
                    "defined before it"
                )
        self._order = None
        self.graph.add_node(node.name, node=node)
        for src in node.inputs:
            self.graph.add_edge(src, node.name)
        if node.op == "input":
            if self.input_name is not None:
                raise ProgramError(f"program {self.name!r}: a second input node {node.name!r}")
            self.input_name = node.name
        self.output_name = node.name
        return node

    def node(self, name: str) -> Node:
        try:
            return self.graph.nodes[name]["node"]
        except KeyError:
            raise ProgramError(f"program {self.name!r} has no node {name!r}") from None

    def nodes(self) -> Iterator[Node]:
        """Nodes in a deterministic topological order (insertion order breaks ties)."""
        return iter(self._topological_order())

    def _topological_order(self) -> list[Node]:
        # Cached: the executor walks the order on every run. `add` is the only way nodes
        # enter, and it drops the cache.
        if self._order is None:
            order = {name: i for i, name in enumerate(self.graph.nodes)}
            names = nx.lexicographical_topological_sort(self.graph, key=order.__getitem__)
            self._order = [self.graph.nodes[name]["node"] for name in names]
        return self._order

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __contains__(self, name: str) -> bool:
        return name in self.graph

    @property
    def input(self) -> Node:
        if self.input_name is None:
            raise ProgramError(f"program {self.name!r} has no input node")
        return self.node(self.input_name)

    @property
    def output(self) -> Node:
        if self.output_name is None:
            raise ProgramError(f"program {self.name!r} is empty")
        return self.node(self.output_name)

    def summary(self) -> str:
        """One line per node: name, op, output shape and scale."""
        lines = [f"IntProgram {self.name!r}: {len(self)} nodes"]
        for n in self.nodes():
            lines.append(f"  {n.name:40s} {n.op:10s} {str(n.out_shape):22s} scale={n.out.scale:.4g}"
                         f" zp={n.out.zero_point}")
        return "\n".join(lines)
