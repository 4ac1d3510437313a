"""Save and load integer programs without torch: one JSON file for the graph, one .npz for arrays.

`save_program(p, "net")` writes `net.json` and `net.npz`; `load_program("net.json")` reads both.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir.check import check_program
from hwsim.ir.program import IntProgram, Node
from hwsim.ir.tensor import TensorQuant

FORMAT_VERSION = 1


def save_program(program: IntProgram, path: str | Path) -> Path:
    """Write `<path>.json` and `<path>.npz`; return the JSON path."""
    base = Path(path)
    if base.suffix in (".json", ".npz"):
        base = base.with_suffix("")
    check_program(program)
    nodes, arrays = [], {}
    for i, node in enumerate(program.nodes()):
        keys = {}
        for key, arr in node.arrays.items():
            stored = f"n{i}.{key}"
            arrays[stored] = np.asarray(arr)
            keys[key] = stored
        nodes.append({"name": node.name, "op": node.op, "inputs": list(node.inputs),
                      "out_shape": list(node.out_shape), "out": node.out.to_dict(),
                      "attrs": node.attrs, "arrays": keys, "source": node.source})
    doc = {"format": "hwsim-int-program", "version": FORMAT_VERSION, "name": program.name,
           "input": program.input_name, "output": program.output_name, "nodes": nodes}
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=1))
    np.savez(base.with_suffix(".npz"), **arrays)
    return json_path


def load_program(path: str | Path) -> IntProgram:
    """Read a program written by `save_program` (give the .json, the .npz or the common stem)."""
    base = Path(path)
    if base.suffix in (".json", ".npz"):
        base = base.with_suffix("")
    json_path, npz_path = base.with_suffix(".json"), base.with_suffix(".npz")
    for p in (json_path, npz_path):
        if not p.is_file():
            raise ProgramError(f"{p}: no such file (a saved program is a .json and a .npz pair)")
    try:
        doc = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise ProgramError(f"{json_path}: not valid JSON ({exc})") from None
    if doc.get("format") != "hwsim-int-program":
        raise ProgramError(f"{json_path}: field 'format': expected 'hwsim-int-program', "
                           f"got {doc.get('format')!r}")
    if doc.get("version") != FORMAT_VERSION:
        raise ProgramError(f"{json_path}: field 'version': this hwsim reads version "
                           f"{FORMAT_VERSION}, got {doc.get('version')!r}")
    program = IntProgram(doc.get("name", base.name))
    with np.load(npz_path, allow_pickle=False) as arrays:
        for i, nd in enumerate(doc["nodes"]):
            try:
                node = Node(
                    name=nd["name"], op=nd["op"], inputs=tuple(nd["inputs"]),
                    out_shape=tuple(nd["out_shape"]), out=TensorQuant.from_dict(nd["out"]),
                    attrs=nd["attrs"], source=nd.get("source", ""),
                    arrays={k: arrays[v] for k, v in nd["arrays"].items()},
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ProgramError(f"{json_path}: nodes[{i}] is malformed ({exc!r})") from None
            program.add(node)
    program.output_name = doc["output"]
    check_program(program)
    return program
