"""Reading an ONNX model: the file (or bytes, or ModelProto), its constants, attributes and the
static shape of its input. Every failure is an OnnxImportError naming the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.onnx._deps import require
from hwsim.onnx.errors import OnnxImportError

ModelSource = Any  # str | os.PathLike | bytes | onnx.ModelProto


@dataclass
class OnnxModel:
    """A parsed model. `label` names it in messages (its path, or "<in-memory model>");
    `constants` maps every initializer and Constant-node output to its numpy value."""

    proto: Any
    label: str
    constants: dict[str, np.ndarray]

    @property
    def graph(self):
        return self.proto.graph

    @property
    def name(self) -> str:
        return Path(self.label).name if self.label != IN_MEMORY else (self.graph.name or "onnx")

    def graph_input(self):
        """The model's single runtime input (graph inputs that are not initializers)."""
        inputs = [v for v in self.graph.input if v.name not in self.constants]
        if len(inputs) != 1:
            raise OnnxImportError(f"{self.label}: hwsim imports models with exactly one input; "
                                  f"this one has {len(inputs)}: {[v.name for v in inputs]}")
        return inputs[0]

    def fail(self, node, message: str) -> OnnxImportError:
        """An OnnxImportError naming the file and the node."""
        return OnnxImportError(f"{self.label}: node {node_label(node)}: {message}")


IN_MEMORY = "<in-memory model>"


def node_label(node) -> str:
    """How messages name an ONNX node: its name (or first output) and op type."""
    name = node.name or (node.output[0] if node.output else "?")
    domain = f"{node.domain}:" if node.domain not in ("", "ai.onnx") else ""
    return f"{name!r} ({domain}{node.op_type})"


def load_model(source: ModelSource) -> OnnxModel:
    """Parse `source` (a path, serialized bytes or an onnx.ModelProto) into an OnnxModel."""
    onnx = require("onnx", "reading ONNX models")
    from google.protobuf.message import DecodeError

    if isinstance(source, onnx.ModelProto):
        proto, label = source, IN_MEMORY
    elif isinstance(source, (bytes, bytearray)):
        label = IN_MEMORY
        try:
            proto = onnx.load_model_from_string(bytes(source))
        except DecodeError as exc:
            raise OnnxImportError(f"{label}: not an ONNX model: the bytes do not parse as a "
                                  f"ModelProto ({exc})") from None
    elif isinstance(source, (str, os.PathLike)):
        label = str(source)
        if Path(label).is_dir():
            raise OnnxImportError(f"{label}: is a directory, not an ONNX model file")
        if not Path(label).is_file():
            raise OnnxImportError(f"{label}: no such file")
        try:
            with open(label, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise OnnxImportError(f"{label}: cannot read ({exc.strerror or exc})") from None
        try:
            proto = onnx.load_model_from_string(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OnnxImportError(f"{label}: not an ONNX model: the file does not parse as a "
                                  f"ModelProto ({_first_line(exc)})") from None
        try:  # weights stored next to the model, as onnx.load reads them
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(proto, os.path.dirname(os.path.abspath(label)))
        except Exception as exc:
            raise OnnxImportError(f"{label}: its external weight data cannot be read "
                                  f"({type(exc).__name__}: {_first_line(exc)})") from None
    else:
        raise OnnxImportError(f"expected a path, bytes or an onnx.ModelProto; got "
                              f"{type(source).__name__}")
    if not proto.HasField("graph") or not proto.graph.node or not proto.opset_import:
        raise OnnxImportError(f"{label}: not an ONNX model: it has no graph, no nodes or no "
                              "opset import (an empty or truncated file?)")
    _check_nodes(proto, label)
    try:
        constants = _constants(proto.graph, label)
    except OnnxImportError:
        raise
    except Exception as exc:  # a corrupt initializer: raw data of the wrong size, a bad type, ...
        raise OnnxImportError(f"{label}: a constant tensor cannot be read ({type(exc).__name__}: "
                              f"{_first_line(exc)}); a corrupt file?") from None
    return OnnxModel(proto, label, constants)


# ONNX attributes whose meaning is the same on every op that has them (Conv, the pools,
# QLinearConv, ConvInteger, ...): integers >= 1, and pads >= 0.
_POSITIVE_INTS = ("strides", "dilations", "kernel_shape", "group")
_NON_NEGATIVE_INTS = ("pads",)


def _check_nodes(proto, label: str) -> None:
    """Structure every reader relies on: a standard-domain node has as many inputs and outputs
    as its op's schema allows, every attribute carries a value of its declared type, and the
    geometry attributes are integers in range. A corrupt file fails here, naming the node."""
    from onnx import defs, helper

    opset = {o.domain if o.domain != "ai.onnx" else "": o.version for o in proto.opset_import}
    version = opset.get("", defs.onnx_opset_version())
    for node in proto.graph.node:
        if node.domain in ("", "ai.onnx"):
            try:
                schema = defs.get_schema(node.op_type, max(1, int(version)), "")
            except Exception:  # an op ONNX does not define: the importers name it
                schema = None
            if schema is not None:
                for what, n, lo, hi in (("inputs", len(node.input), schema.min_input,
                                         schema.max_input),
                                        ("outputs", len(node.output), schema.min_output,
                                         schema.max_output)):
                    if not lo <= n <= hi:
                        raise OnnxImportError(f"{label}: node {node_label(node)}: {n} {what}; "
                                              f"{node.op_type} takes {lo} to {hi}")
        for a in node.attribute:
            where = f"{label}: node {node_label(node)}: attribute {a.name!r}"
            try:
                value = helper.get_attribute_value(a)
            except Exception as exc:
                raise OnnxImportError(f"{where} cannot be read ({_first_line(exc)})") from None
            if value is None:
                raise OnnxImportError(f"{where} has no value (attribute type "
                                      f"{a.type}); a corrupt file?")
            lo = 1 if a.name in _POSITIVE_INTS else 0 if a.name in _NON_NEGATIVE_INTS else None
            if lo is None:
                continue
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= lo
                       for v in values):
                raise OnnxImportError(f"{where}: expected integers >= {lo}, got {value!r}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _constants(graph, label: str) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            attrs = {a.name: a for a in node.attribute}
            if "value" not in attrs:
                raise OnnxImportError(f"{label}: node {node_label(node)}: only Constant nodes "
                                      f"with a 'value' tensor are supported; got "
                                      f"{sorted(attrs)}")
            values[node.output[0]] = numpy_helper.to_array(attrs["value"].t)
    return values


def attributes(node) -> dict[str, Any]:
    """A node's attributes as Python values (ints, floats, lists, bytes decoded to str)."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def static_dims(model: OnnxModel, value_info, batch: int,
                given: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The shape of a graph input/output: a symbolic first (batch) dimension becomes `batch`;
    any other symbolic or missing dimension is taken from `given` (the shape (N, ...) of the
    inputs the model will run on, of the same rank) or, without it, is an error (hwsim needs
    static shapes). Static dimensions are kept: inputs that disagree with them are reported
    where the inputs are checked."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        raise OnnxImportError(f"{model.label}: input {value_info.name!r} has no shape; hwsim "
                              "needs static shapes")
    declared = list(t.shape.dim)
    if given is not None and len(given) != len(declared):
        given = None
    dims = []
    for i, d in enumerate(declared):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif i == 0:
            dims.append(int(batch))
        elif given is not None:
            dims.append(int(given[i]))
        else:
            raise OnnxImportError(f"{model.label}: input {value_info.name!r} dimension {i} is "
                                  f"symbolic ({d.dim_param or '?'}); hwsim needs static shapes "
                                  "except for the batch dimension: pass the input shape "
                                  "(load_onnx_program(..., input_shape=x.shape))")
    return tuple(dims)
