"""Verifier for integer programs: every node well-formed before anything executes it.

What a node must and may carry comes from its op's registry entry (``hwsim.ir.ops``); an attr
or array the entry does not declare is an error, so a misspelled one cannot be ignored.
"""
from __future__ import annotations

import networkx as nx

from hwsim.errors import ProgramError
from hwsim.ir.ops import OPS
from hwsim.ir.program import IntProgram, Node
from hwsim.ir.specs import AccumulatorConfig, RequantSpec


def check_program(program: IntProgram) -> None:
    """Raise ProgramError listing every malformed node; return None when the program is sound."""
    errors: list[str] = []
    if program.input_name is None:
        errors.append("no input node")
    if not nx.is_directed_acyclic_graph(program.graph):
        errors.append("the graph has a cycle")
    for name in program.graph.nodes:
        errors.extend(f"node {name!r}: {msg}" for msg in node_errors(program, program.node(name)))
    if errors:
        raise ProgramError(f"program {program.name!r} is malformed:\n  " + "\n  ".join(errors))


def node_errors(program: IntProgram | None, node: Node) -> list[str]:
    """Every problem of one node (inputs are checked against ``program`` when given)."""
    spec = OPS.get(node.op)
    if spec is None:
        return [f"unknown op {node.op!r}; known ops: {', '.join(sorted(OPS))}"]
    errs: list[str] = []
    n_in = len(node.inputs)
    if spec.arity is None and n_in < 1:
        errs.append(f"{node.op} needs at least one input, got none")
    elif spec.arity is not None and n_in != spec.arity:
        errs.append(f"{node.op} takes {spec.arity} input(s), got {n_in}")
    if program is not None:
        errs += [f"input {src!r} is not a node of the program" for src in node.inputs
                 if src not in program]
    errs += [f"missing attribute {a!r}" for a in spec.attrs if a not in node.attrs]
    errs += [f"missing array {a!r}" for a in spec.arrays if a not in node.arrays]
    errs += [f"attribute {a!r} is not declared by op {node.op!r} (declared: "
             f"{', '.join(spec.all_attrs)})" for a in node.attrs if a not in spec.all_attrs]
    errs += [f"array {a!r} is not declared by op {node.op!r} (declared: "
             f"{', '.join(spec.all_arrays)})" for a in node.arrays if a not in spec.all_arrays]
    if errs:
        return errs
    if spec.accumulates:
        try:
            AccumulatorConfig.from_attrs(node.attrs)
        except ProgramError as exc:
            errs.append(str(exc))
    if spec.requantizes:
        errs += _requant_errors(node)
    if spec.check is not None:
        errs += spec.check(node)
    return errs


def _requant_errors(node: Node) -> list[str]:
    try:
        rq = RequantSpec.from_attrs(node.attrs)
    except ProgramError as exc:
        return [str(exc)]
    except (TypeError, ValueError, KeyError):
        return [f"requant must be {{mode, clamp: [lo, hi]}}, got {node.attrs['requant']!r}"]
    errs = [f"requant mode {rq.mode.value!r} needs array {a!r}" for a in rq.constant_arrays
            if a not in node.arrays]
    errs += clamp_errors(node, node.attrs["requant"].get("clamp"), "requant clamp")
    return errs


def clamp_errors(node: Node, clamp, what: str) -> list[str]:
    """``clamp`` must be two ints within the node's output code range."""
    ok = (isinstance(clamp, (list, tuple)) and len(clamp) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in clamp)
          and node.out.qmin <= clamp[0] <= clamp[1] <= node.out.qmax)
    return [] if ok else [f"{what} {clamp!r} must be ints within [{node.out.qmin}, {node.out.qmax}]"]
