"""Verifier for integer programs: every node well-formed before anything executes it."""
from __future__ import annotations

import networkx as nx
import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir.ops import ACCUMULATOR_MODES, BINARY_SCALINGS, OPS, REQUANT_MODES
from hwsim.ir.program import IntProgram, Node


def check_program(program: IntProgram) -> None:
    """Raise ProgramError listing every malformed node; return None when the program is sound."""
    errors: list[str] = []
    if program.input_name is None:
        errors.append("no input node")
    if not nx.is_directed_acyclic_graph(program.graph):
        errors.append("the graph has a cycle")
    for name in program.graph.nodes:
        errors.extend(f"node {name!r}: {msg}" for msg in _node_errors(program, program.node(name)))
    if errors:
        raise ProgramError(f"program {program.name!r} is malformed:\n  " + "\n  ".join(errors))


def _node_errors(program: IntProgram, node: Node) -> list[str]:
    spec = OPS.get(node.op)
    if spec is None:
        return [f"unknown op {node.op!r}; known ops: {', '.join(sorted(OPS))}"]
    errs: list[str] = []
    n_in = len(node.inputs)
    if spec.arity is None and n_in < 1:
        errs.append(f"{node.op} needs at least one input, got none")
    elif spec.arity is not None and n_in != spec.arity:
        errs.append(f"{node.op} takes {spec.arity} input(s), got {n_in}")
    for src in node.inputs:
        if src not in program:
            errs.append(f"input {src!r} is not a node of the program")
    errs += [f"missing attribute {a!r}" for a in spec.attrs if a not in node.attrs]
    errs += [f"missing array {a!r}" for a in spec.arrays if a not in node.arrays]
    if errs:
        return errs
    if "accumulator" in spec.attrs:
        acc = node.attrs["accumulator"]
        if acc.get("mode") not in ACCUMULATOR_MODES:
            errs.append(f"accumulator mode must be one of {ACCUMULATOR_MODES}, got {acc.get('mode')!r}")
        if not isinstance(acc.get("bits"), int) or not 8 <= acc["bits"] <= 64:
            errs.append(f"accumulator bits must be an int in [8, 64], got {acc.get('bits')!r}")
        elif acc.get("mode") == "int16_pairs" and acc["bits"] < 16:
            errs.append(f"accumulator mode 'int16_pairs' widens int16 pairs: bits must be >= 16, "
                        f"got {acc['bits']}")
    if spec.requantizes:
        errs += _requant_errors(node)
    if node.op in ("conv2d", "linear"):
        errs += _weight_errors(program, node)
        engine = node.attrs.get("engine")
        if engine not in (None, "ort", "qnnpack", "onednn", "fbgemm"):
            errs.append(f"engine must be ort, qnnpack, onednn or fbgemm, got {engine!r}")
        elif engine not in (None, "ort") and "engine_int16_pairs" not in node.attrs:
            errs.append(f"engine {engine!r} needs attribute 'engine_int16_pairs'")
    if node.op in ("binary_conv2d", "binary_linear"):
        errs += _binary_errors(node)
    return errs


def _binary_errors(node: Node) -> list[str]:
    errs = []
    planes, scales = node.arrays["weight_planes"], node.arrays["weight_scales"]
    ndim = 5 if node.op == "binary_conv2d" else 3
    if planes.dtype != np.int8 or planes.ndim != ndim or not np.all(np.abs(planes) == 1):
        errs.append(f"weight_planes must be int8 -1/+1 of {ndim} dims (k_w, K, ...), got "
                    f"{planes.dtype} of shape {planes.shape}")
    elif scales.shape != (planes.shape[1], planes.shape[0]) or not np.all(np.isfinite(scales)):
        errs.append(f"weight_scales must be finite of shape (K, k_w) = "
                    f"{(planes.shape[1], planes.shape[0])}, got {scales.shape}")
    b = node.attrs["input_binarizer"]
    if b is not None:
        if not isinstance(b, dict) or b.get("scaling") not in BINARY_SCALINGS:
            errs.append(f"input_binarizer must be null or {{method, k, scaling in "
                        f"{BINARY_SCALINGS}}}, got {b!r}")
        elif b["scaling"] == "running":
            v = node.arrays.get("input_scales")
            if v is None or v.shape != (b.get("k"),):
                errs.append(f"running binarizer needs array 'input_scales' of shape "
                            f"({b.get('k')},), got {None if v is None else v.shape}")
    lo, hi = node.attrs["output_clamp"]
    if not (isinstance(lo, int) and isinstance(hi, int) and node.out.qmin <= lo <= hi <= node.out.qmax):
        errs.append(f"output_clamp {node.attrs['output_clamp']!r} must be ints within "
                    f"[{node.out.qmin}, {node.out.qmax}]")
    return errs


def _requant_errors(node: Node) -> list[str]:
    rq = node.attrs["requant"]
    mode = rq.get("mode")
    if mode not in REQUANT_MODES:
        return [f"requant mode must be one of {REQUANT_MODES}, got {mode!r}"]
    needed = ("rq_multiplier", "rq_shift") if mode == "dyadic" else ("rq_scale_f32",)
    errs = [f"requant mode {mode!r} needs array {a!r}" for a in needed if a not in node.arrays]
    lo, hi = rq.get("clamp", (None, None))
    if not (isinstance(lo, int) and isinstance(hi, int) and node.out.qmin <= lo <= hi <= node.out.qmax):
        errs.append(f"requant clamp {rq.get('clamp')!r} must be ints within "
                    f"[{node.out.qmin}, {node.out.qmax}]")
    return errs


def _weight_errors(program: IntProgram, node: Node) -> list[str]:
    w = node.arrays["weight"]
    errs = []
    if not np.issubdtype(w.dtype, np.integer):
        errs.append(f"weight must hold integer codes, got dtype {w.dtype}")
    k = w.shape[0]
    if node.arrays["weight_zero_point"].shape not in ((), (k,)):
        errs.append(f"weight_zero_point must be a scalar or ({k},), "
                    f"got {node.arrays['weight_zero_point'].shape}")
    if "bias" in node.arrays and node.arrays["bias"].shape != (k,):
        errs.append(f"bias must have shape ({k},), got {node.arrays['bias'].shape}")
    expected_w_ndim = 4 if node.op == "conv2d" else 2
    if w.ndim != expected_w_ndim:
        errs.append(f"{node.op} weight must be {expected_w_ndim}-D, got shape {w.shape}")
    return errs
