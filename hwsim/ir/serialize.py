"""Save and load integer programs without torch: one JSON file for the graph, one .npz for arrays.

`save_program(p, "net")` writes `net.json` and `net.npz`; `load_program("net.json")` reads both.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from hwsim.errors import ProgramError
from hwsim.ir.check import check_program
from hwsim.ir.ops import op_def
from hwsim.ir.program import IntProgram, Node
from hwsim.ir.tensor import TensorQuant

FORMAT_VERSION = 1


def save_program(program: IntProgram, path: str | Path) -> Path:
    """Write `<path>.json` and `<path>.npz`; return the JSON path. A file that cannot be written
    raises ProgramError naming it."""
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
    json_path, npz_path = base.with_suffix(".json"), base.with_suffix(".npz")
    target = base.parent
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        target = json_path
        json_path.write_text(json.dumps(doc, indent=1))
        target = npz_path
        np.savez(npz_path, **arrays)
    except OSError as exc:
        raise ProgramError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return json_path


# What a truncated or corrupted .npz raises while it is opened or an array is read from it.
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError)


def load_program(path: str | Path) -> IntProgram:
    """Read a program written by `save_program` (give the .json, the .npz or the common stem).

    Anything wrong with the files (missing, unreadable, truncated, not JSON, fields of the wrong
    type, arrays missing from the .npz, a graph that fails `check_program`) raises one
    ProgramError, on one line, naming the file."""
    base = Path(path)
    if base.suffix in (".json", ".npz"):
        base = base.with_suffix("")
    json_path, npz_path = base.with_suffix(".json"), base.with_suffix(".npz")
    for p in (json_path, npz_path):
        if p.is_dir():
            raise ProgramError(f"{p}: is a directory (a saved program is a .json and a .npz "
                               "pair)")
        if not p.is_file():
            raise ProgramError(f"{p}: no such file (a saved program is a .json and a .npz pair)")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProgramError(f"{json_path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProgramError(f"{json_path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ProgramError(f"{json_path}: not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ProgramError(f"{json_path}: expected a JSON object (a saved hwsim program), got "
                           f"a JSON {_json_type(doc)}")
    if doc.get("format") != "hwsim-int-program":
        raise ProgramError(f"{json_path}: field 'format': expected 'hwsim-int-program', "
                           f"got {doc.get('format')!r}")
    if doc.get("version") != FORMAT_VERSION or isinstance(doc.get("version"), bool):
        raise ProgramError(f"{json_path}: field 'version': this hwsim reads version "
                           f"{FORMAT_VERSION}, got {doc.get('version')!r}")
    for key, kind in (("nodes", list), ("output", str)):
        if not isinstance(doc.get(key), kind):
            raise ProgramError(f"{json_path}: field {key!r}: expected a JSON "
                               f"{_json_type(kind())}, got {_describe(doc.get(key), key in doc)}")
    name = doc.get("name", base.name)
    if not isinstance(name, str):
        raise ProgramError(f"{json_path}: field 'name': expected a string, got "
                           f"{_describe(name, True)}")
    program = IntProgram(name)
    try:
        arrays = np.load(npz_path, allow_pickle=False)
    except OSError as exc:
        if exc.errno is not None:
            raise ProgramError(f"{npz_path}: cannot read ({exc.strerror or exc})") from None
        raise ProgramError(f"{npz_path}: not a .npz archive ({exc})") from None
    except _NPZ_ERRORS as exc:
        raise ProgramError(f"{npz_path}: not a .npz archive, or a corrupt one "
                           f"({type(exc).__name__}: {exc})") from None
    if not isinstance(arrays, NpzFile):
        raise ProgramError(f"{npz_path}: not a .npz archive (it holds a single array)")
    with arrays:
        try:
            for i, nd in enumerate(doc["nodes"]):
                node = _node(json_path, npz_path, i, nd, arrays)
                try:
                    program.add(node)
                except ProgramError as exc:
                    raise ProgramError(f"{json_path}: nodes[{i}]: {_one_line(exc)}") from None
        except ProgramError:
            raise
        except Exception as exc:
            raise ProgramError(f"{json_path}: malformed program ({type(exc).__name__}: {exc})"
                               ) from None
    program.output_name = doc["output"]
    if program.output_name not in program.graph:
        raise ProgramError(f"{json_path}: field 'output': no node named {program.output_name!r}")
    try:
        check_program(program)
    except ProgramError as exc:
        raise ProgramError(f"{json_path}: {_one_line(exc)}") from None
    except Exception as exc:  # a field of a type check_program does not expect
        raise ProgramError(f"{json_path}: malformed program ({type(exc).__name__}: {exc})"
                           ) from None
    _check_geometry(program, json_path)
    return program


def _check_geometry(program: IntProgram, json_path: Path) -> None:
    """Derive the layer shape of every node a compute unit runs (its op's `workload`), which
    reads geometry attrs (stride, padding, dilation, groups, ...) that `check_program` only
    checks for presence: a file with one of the wrong type or length fails here, naming the
    file and the node, rather than later in whatever uses the program."""
    for node in program.nodes():
        workload = op_def(node.op).workload
        if workload is None:
            continue
        try:
            workload(program, node, 1)
        except Exception as exc:  # TypeError, IndexError, ValueError, a WorkloadError, ...
            raise ProgramError(f"{json_path}: node {node.name!r} ({node.op}): unusable "
                               f"attributes or arrays ({type(exc).__name__}: "
                               f"{_one_line(exc)})") from None


def _node(json_path: Path, npz_path: Path, i: int, nd, arrays) -> Node:
    where = f"{json_path}: nodes[{i}]"
    if not isinstance(nd, dict):
        raise ProgramError(f"{where}: expected a JSON object, got {_describe(nd, True)}")
    expect = {"name": str, "op": str, "inputs": list, "out_shape": list, "out": dict,
              "attrs": dict, "arrays": dict}
    for key, kind in expect.items():
        if not isinstance(nd.get(key), kind):
            raise ProgramError(f"{where}: field {key!r}: expected a JSON {_json_type(kind())}, "
                               f"got {_describe(nd.get(key), key in nd)}")
    if not all(isinstance(s, str) for s in nd["inputs"]):
        raise ProgramError(f"{where}: field 'inputs': expected a list of node names")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
               for d in nd["out_shape"]):
        raise ProgramError(f"{where}: field 'out_shape': expected a list of non-negative "
                           f"integers, got {nd['out_shape']!r}")
    out = nd["out"]
    for key, kind in (("scale", (int, float)), ("zero_point", int), ("qmin", int),
                      ("qmax", int)):
        if not isinstance(out.get(key), kind) or isinstance(out.get(key), bool):
            raise ProgramError(f"{where}: field 'out.{key}': expected a number, got "
                               f"{_describe(out.get(key), key in out)}")
    source = nd.get("source", "")
    if not isinstance(source, str):
        raise ProgramError(f"{where}: field 'source': expected a string, got "
                           f"{_describe(source, True)}")
    stored = {}
    for key, ref in nd["arrays"].items():
        if not isinstance(ref, str) or ref not in arrays.files:
            raise ProgramError(f"{where}: field 'arrays.{key}': {ref!r} is not an array in "
                               f"{npz_path}")
        try:
            stored[key] = arrays[ref]
        except _NPZ_ERRORS as exc:
            raise ProgramError(f"{npz_path}: array {ref!r} is corrupt ({type(exc).__name__}: "
                               f"{exc})") from None
    try:
        tq = TensorQuant.from_dict(out)
        tq.dtype  # noqa: B018  (a code range no integer dtype holds raises ValueError)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProgramError(f"{where}: field 'out': {exc}") from None
    return Node(name=nd["name"], op=nd["op"], inputs=tuple(nd["inputs"]),
                out_shape=tuple(nd["out_shape"]), out=tq, attrs=nd["attrs"], source=source,
                arrays=stored)


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _describe(value, present: bool) -> str:
    if not present:
        return "nothing (the field is missing)"
    text = repr(value)
    return f"a JSON {_json_type(value)} ({text if len(text) <= 40 else text[:37] + '...'})"


def _one_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "") if lines else ""
