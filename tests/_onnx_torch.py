"""A float ONNX CNN rebuilt as a torch ``fx.GraphModule`` of standard modules and functions, the
ones ``quant.capture`` knows (nn.Conv2d, nn.BatchNorm2d, nn.Linear, torch.cat, ...), for the
model gallery's hwsim int8 flow. Small by design: an op without a direct torch equivalent here
raises OnnxToTorchError naming it, and what capture does not support it refuses itself.

Expects a model with a static input shape whose shape arithmetic is folded into constants
(``quant_pre_process`` output).
"""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn


class OnnxToTorchError(Exception):
    """The model has an op (or an attribute) this rebuild has no torch equivalent for."""


class _Scaled:
    """An activation times a scalar constant (Paddle's inference-time dropout scale), folded
    into the weights of the conv / linear that reads it."""

    def __init__(self, node: fx.Node, factor: float, source: str) -> None:
        self.node, self.factor, self.source = node, factor, source


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(node, attrs: dict, rank: int = 2) -> tuple[int, ...]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise OnnxToTorchError(f"{node.op_type} {node.name!r}: auto_pad {attrs['auto_pad']!r}")
    pads = list(attrs.get("pads", [0] * 2 * rank))
    if pads[:rank] != pads[rank:]:
        raise OnnxToTorchError(f"{node.op_type} {node.name!r}: asymmetric pads {pads}")
    return tuple(pads[:rank])


def _pool_geometry(node, attrs: dict, in_hw) -> dict:
    """A pool's stride, padding and ceil_mode in torch's terms. Extra padding at the end only
    (Caffe's ceil-mode pools, exported) is torch's ceil_mode when the output sizes agree."""
    k, s = attrs["kernel_shape"], list(attrs.get("strides", (1, 1)))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    ceil = bool(attrs.get("ceil_mode", 0))
    if pads[:2] != pads[2:] and not ceil and all(e >= b for b, e in zip(pads[:2], pads[2:])):
        def size(n, k_, s_, b, e, c):
            num = n + b + e - k_
            return (-(-num // s_) if c else num // s_) + 1
        if all(size(n, k_, s_, b, e, False) == size(n, k_, s_, b, b, True)
               for n, k_, s_, b, e in zip(in_hw, k, s, pads[:2], pads[2:])):
            pads, ceil = pads[:2] * 2, True
    return dict(stride=tuple(s), padding=_pads(node, {**attrs, "pads": pads}), ceil_mode=ceil)


def _whole_input_mean(attrs: dict, in_hw) -> bool:
    """An AveragePool whose single window covers the whole (H, W) input and whose padding is
    left out of the divisor (count_include_pad 0): the mean over H and W, whatever the pads
    (Caffe's final 7x7 pool on a 6x6 map, pads [0, 0, 1, 1])."""
    k, s = attrs["kernel_shape"], list(attrs.get("strides", (1, 1)))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or attrs.get(
            "count_include_pad", 0) and any(pads) or attrs.get("ceil_mode", 0):
        return False
    for n, k_, s_, b, e in zip(in_hw, k, s, pads[:2], pads[2:]):
        if not 0 <= n + b + e - k_ < s_ or k_ - b < n:  # one window, covering every row
            return False
    return True


def _symmetric_crop(op: str, attrs: dict, in_hw) -> tuple[list[int], tuple] | None:
    """Asymmetric pool pads (top, left, bottom, right) as the larger pad on both sides and a
    crop of the output rows / columns: exact for MaxPool and for AveragePool with
    count_include_pad 0 (padding is never the max / never counted) when the windows line up
    (the extra pad a multiple of the stride) and torch accepts the pad (at most half the
    kernel). None: pads symmetric, or no such exact form (left to ``_pool_geometry``)."""
    k, s = attrs["kernel_shape"], list(attrs.get("strides", (1, 1)))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] == pads[2:] or attrs.get("ceil_mode", 0) or (
            op == "AveragePool" and attrs.get("count_include_pad", 0)) or any(
            d != 1 for d in attrs.get("dilations", (1, 1))):
        return None
    sym, crops = [], []
    for n, k_, s_, b, e in zip(in_hw, k, s, pads[:2], pads[2:]):
        p = max(b, e)
        if (p - b) % s_ or 2 * p > k_:
            return None
        first, count = (p - b) // s_, (n + b + e - k_) // s_ + 1
        sym.append(p)
        crops.append(slice(first, first + count))
    return sym, tuple(crops)


def _scale_module(mod: nn.Module, factor, shift=None) -> None:
    """mod's output times `factor` plus `shift` (scalars or per output channel)."""
    n = mod.weight.shape[1] if isinstance(mod, nn.ConvTranspose2d) else mod.weight.shape[0]
    factor = torch.tensor(np.broadcast_to(np.asarray(factor, np.float32).reshape(-1), (n,)))
    with torch.no_grad():
        shape = (1, n, 1, 1) if isinstance(mod, nn.ConvTranspose2d) else (n,) + (1,) * (
            mod.weight.ndim - 1)
        mod.weight.mul_(factor.reshape(shape))
        if mod.bias is None and shift is not None:
            mod.bias = nn.Parameter(torch.zeros(n), requires_grad=False)
        if mod.bias is not None:
            mod.bias.mul_(factor)
            if shift is not None:
                mod.bias.add_(torch.tensor(np.broadcast_to(
                    np.asarray(shift, np.float32).reshape(-1), (n,))))


def _fold_into_producer(node, ins, const_ins, env, made_by, users) -> bool:
    """Mul / Add / Sub / Div of a conv or dense output (read by nothing else) by a scalar or
    per-channel constant, folded into that layer's weights and bias (as exported BN-like
    affine steps are). True if folded."""
    if node.op_type not in ("Mul", "Add", "Sub", "Div") or len(ins) != 2 or not any(const_ins):
        return False
    ci = const_ins.index(True)
    xi = 1 - ci
    if const_ins[xi] or ins[xi] not in made_by or users.get(ins[xi]) != 1:
        return False
    c = np.asarray(env[ins[ci]], np.float32)
    mod = made_by[ins[xi]]
    n = mod.weight.shape[1] if isinstance(mod, nn.ConvTranspose2d) else mod.weight.shape[0]
    squeezed = c.reshape(-1)
    if squeezed.size not in (1, n) or (squeezed.size == n and c.ndim >= 1 and c.shape[-1] == n
                                       and isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))
                                       and n > 1):
        return False  # a per-channel constant must broadcast over channels (C, 1, 1)
    op = node.op_type
    if op == "Div" and ci == 0:
        return False
    if op == "Mul":
        _scale_module(mod, squeezed)
    elif op == "Div":
        _scale_module(mod, 1 / squeezed)
    elif op == "Add":
        _scale_module(mod, 1.0, squeezed)
    elif ci == 1:  # x - c
        _scale_module(mod, 1.0, -squeezed)
    else:  # c - x
        _scale_module(mod, -1.0, squeezed)
    env[node.output[0]] = env[ins[xi]]
    made_by[node.output[0]] = mod
    return True


def _with_hardswish(nodes: list, consts: dict) -> list:
    """x * Clip(x + 3, 0, 6) / 6 (Paddle's exported hard-swish) as one HardSwish node."""
    from onnx import helper

    producer = {o: n for n in nodes for o in n.output}
    uses: dict[str, int] = {}
    for n in nodes:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1

    def const(name, value) -> bool:
        return name in consts and np.size(consts[name]) == 1 and float(
            np.asarray(consts[name]).reshape(-1)[0]) == value

    drop, replace = set(), {}
    for d in nodes:
        mul = producer.get(d.input[0]) if d.op_type == "Div" else None
        if mul is None or mul.op_type != "Mul" or not const(d.input[1], 6.0):
            continue
        for x, c in (mul.input, mul.input[::-1]):
            clip, add = producer.get(c), None
            if clip is not None and clip.op_type == "Clip" and len(clip.input) == 3 \
                    and const(clip.input[1], 0.0) and const(clip.input[2], 6.0):
                add = producer.get(clip.input[0])
            if add is not None and add.op_type == "Add" and list(add.input) in (
                    [x, add.input[1]], [add.input[0], x]) and const(
                    next(i for i in add.input if i != x), 3.0) and all(
                    uses[t] == 1 for t in (add.output[0], clip.output[0], mul.output[0])):
                drop |= {id(add), id(clip), id(mul)}
                replace[id(d)] = helper.make_node("HardSwish", [x], [d.output[0]],
                                                  name=d.name)
                break
    return [replace.get(id(n), n) for n in nodes if id(n) not in drop]


def to_torch(proto) -> fx.GraphModule:
    import onnx
    from onnx import numpy_helper

    graph = onnx.shape_inference.infer_shapes(proto).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.input)}
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    root, g = nn.Module(), fx.Graph()
    env: dict[str, object] = dict(consts)
    feed = next(v.name for v in graph.input if v.name not in consts)
    env[feed] = g.placeholder("x")
    for node in graph.node:
        if node.op_type == "Constant" and "value" in _attrs(node):
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    nodes = _with_hardswish(list(graph.node), consts)
    users: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    made_by: dict[str, nn.Module] = {}  # conv / dense outputs, for constants folded into them

    def module(node, mod: nn.Module, arg) -> fx.Node:
        name = f"m{len(root._modules)}"
        root.add_module(name, mod)
        return g.call_module(name, (arg,))

    def act(node, i: int) -> fx.Node:
        v = env[node.input[i]]
        if isinstance(v, _Scaled):  # not read by a conv / dense layer: an explicit product
            v = env[node.input[i]] = g.create_node("call_function", operator.mul,
                                                   (v.node, float(v.factor)), name=v.source)
        if not isinstance(v, fx.Node):
            raise OnnxToTorchError(f"{node.op_type} {node.name!r}: input {i} is a constant")
        return v

    def param(a) -> nn.Parameter:
        return nn.Parameter(torch.from_numpy(np.array(a, dtype=np.float32)), requires_grad=False)

    def weighted_input(node) -> tuple[fx.Node, float]:
        v = env[node.input[0]]
        return (v.node, v.factor) if isinstance(v, _Scaled) else (act(node, 0), 1.0)

    for node in nodes:
        op, a, ins = node.op_type, _attrs(node), list(node.input)
        const_ins = [n in consts or (n in env and not isinstance(env[n], (fx.Node, _Scaled)))
                     for n in ins]
        if op == "Constant":
            env[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if _fold_into_producer(node, ins, const_ins, env, made_by, users):
            continue
        if op in ("Identity", "Dropout"):
            out = env[ins[0]]
        elif op in ("Conv", "ConvTranspose"):
            w = env[ins[1]]
            if w.ndim != 4:
                raise OnnxToTorchError(f"{op} {node.name!r}: {w.ndim - 2}-D")
            kw = dict(stride=tuple(a.get("strides", (1, 1))), padding=_pads(node, a),
                      dilation=tuple(a.get("dilations", (1, 1))), groups=a.get("group", 1),
                      bias=len(ins) > 2)
            if op == "Conv":
                mod = nn.Conv2d(w.shape[1] * kw["groups"], w.shape[0], w.shape[2:], **kw)
            else:
                mod = nn.ConvTranspose2d(w.shape[0], w.shape[1] * kw["groups"], w.shape[2:],
                                         output_padding=tuple(a.get("output_padding", (0, 0))),
                                         **kw)
            x, factor = weighted_input(node)
            mod.weight = param(w * np.float32(factor))
            if len(ins) > 2:
                mod.bias = param(env[ins[2]])
            out = module(node, mod, x)
            made_by[node.output[0]] = mod
        elif op == "BatchNormalization":
            s, b, m, v = (env[n] for n in ins[1:5])
            mod = nn.BatchNorm2d(len(s), eps=a.get("epsilon", 1e-5)).eval()
            mod.weight, mod.bias = param(s), param(b)
            mod.running_mean.copy_(torch.tensor(np.asarray(m, np.float32)))
            mod.running_var.copy_(torch.tensor(np.asarray(v, np.float32)))
            out = module(node, mod, act(node, 0))
        elif op in ("Relu", "Sigmoid", "HardSwish", "Tanh"):
            mod = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "HardSwish": nn.Hardswish,
                   "Tanh": nn.Tanh}[op]()
            out = module(node, mod, act(node, 0))
        elif op == "HardSigmoid":
            # HardSigmoid(alpha, 0.5)(x) = torch's Hardsigmoid(6 alpha x); the factor folds into
            # the conv / dense layer computing x
            alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
            exact = abs(alpha - 1 / 6) < 1e-6
            if abs(beta - 0.5) > 1e-6 or not (exact or (ins[0] in made_by
                                                         and users[ins[0]] == 1)):
                raise OnnxToTorchError(f"HardSigmoid {node.name!r}: alpha {alpha:g}, beta {beta:g} "
                                       "(torch's Hardsigmoid is alpha 1/6, beta 0.5)")
            if not exact:
                _scale_module(made_by[ins[0]], 6 * alpha)
            out = module(node, nn.Hardsigmoid(), act(node, 0))
        elif op == "Clip":
            lo = a.get("min", env[ins[1]] if len(ins) > 1 and ins[1] else -np.inf)
            hi = a.get("max", env[ins[2]] if len(ins) > 2 and ins[2] else np.inf)
            out = module(node, nn.Hardtanh(float(lo), float(hi)), act(node, 0))
        elif op in ("Add", "Sum", "Mul", "Sub") and not any(const_ins) and (
                op != "Sub" or len(ins) == 2):
            fn = {"Mul": operator.mul, "Sub": operator.sub}.get(op, operator.add)
            out = act(node, 0)
            for i in range(1, len(ins)):
                out = g.call_function(fn, (out, act(node, i)))
        elif op == "Mul" and sum(const_ins) == 1 and np.size(env[ins[const_ins.index(True)]]) == 1:
            v = env[ins[1 - const_ins.index(True)]]
            c = float(np.asarray(env[ins[const_ins.index(True)]]).reshape(-1)[0])
            out = (_Scaled(v.node, v.factor * c, v.source) if isinstance(v, _Scaled)
                   else _Scaled(act(node, 1 - const_ins.index(True)), c, node.name))
        elif op in ("Flatten", "Reshape") and isinstance(env[ins[0]], _Scaled):
            v = env[ins[0]]
            shape = [int(d) for d in env[ins[1]]] if op == "Reshape" else [0, -1]
            if len(shape) != 2 or a.get("axis", 1) != 1:
                raise OnnxToTorchError(f"{op} {node.name!r} of a scaled activation")
            out = _Scaled(g.call_function(torch.flatten, (v.node, 1)), v.factor, v.source)
        elif op == "AveragePool" and _whole_input_mean(a, shapes[ins[0]][2:]):
            out = module(node, nn.AdaptiveAvgPool2d(1), act(node, 0))
        elif op in ("MaxPool", "AveragePool"):
            k = tuple(a["kernel_shape"])
            try:
                kw, crop = _pool_geometry(node, a, shapes[ins[0]][2:]), None
            except OnnxToTorchError:
                crop = _symmetric_crop(op, a, shapes[ins[0]][2:])
                if crop is None:
                    raise
                # the larger pad on both sides, then a crop of the output
                kw = _pool_geometry(node, {**a, "pads": crop[0] * 2}, shapes[ins[0]][2:])
            if op == "MaxPool":
                if len(node.output) > 1 and node.output[1]:
                    raise OnnxToTorchError(f"MaxPool {node.name!r}: indices output")
                mod = nn.MaxPool2d(k, dilation=tuple(a.get("dilations", (1, 1))), **kw)
            else:
                mod = nn.AvgPool2d(k, count_include_pad=bool(a.get("count_include_pad", 0)), **kw)
            out = module(node, mod, act(node, 0))
            if crop is not None:
                out = g.call_function(operator.getitem, (out, (slice(None), slice(None),
                                                               *crop[1])))
        elif op == "GlobalAveragePool":
            out = module(node, nn.AdaptiveAvgPool2d(1), act(node, 0))
        elif op == "Gemm" or (op == "MatMul" and const_ins[1] and np.ndim(env[ins[1]]) == 2):
            w = np.asarray(env[ins[1]], np.float32)
            if op == "Gemm":
                if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                    raise OnnxToTorchError(f"Gemm {node.name!r}: transA / alpha / beta")
                w = w if a.get("transB", 0) else w.T
            else:
                w = w.T
            mod = nn.Linear(w.shape[1], w.shape[0], bias=op == "Gemm" and len(ins) > 2)
            x, factor = weighted_input(node)
            mod.weight = param(w * np.float32(factor))
            if mod.bias is not None:
                mod.bias = param(np.broadcast_to(env[ins[2]], (w.shape[0],)))
            out = module(node, mod, x)
            made_by[node.output[0]] = mod
        elif op == "Flatten":
            if a.get("axis", 1) != 1:
                raise OnnxToTorchError(f"Flatten {node.name!r}: axis {a['axis']}")
            out = g.call_function(torch.flatten, (act(node, 0), 1))
        elif op == "Reshape":
            shape = [int(d) for d in env[ins[1]]]
            if -1 in shape[1:] and shapes.get(node.output[0]):  # the inferred size instead
                shape = [int(d) for d in shapes[node.output[0]]]
            out = (g.call_function(torch.flatten, (act(node, 0), 1)) if len(shape) == 2
                   else g.call_method("reshape", (act(node, 0), -1, *shape[1:])))
        elif op == "Transpose":
            out = g.call_method("permute", (act(node, 0), *a["perm"]))
        elif op == "Concat":
            out = g.call_function(torch.cat, ([act(node, i) for i in range(len(ins))],
                                              a["axis"]))
        elif op == "Softmax":
            out = g.call_function(F.softmax, (act(node, 0),), {"dim": a.get("axis", -1)})
        elif op == "Split":
            axis = int(a.get("axis", 0))
            if len(ins) > 1 and ins[1]:
                sizes = [int(v) for v in env[ins[1]]]
            elif "split" in a:
                sizes = [int(v) for v in a["split"]]
            else:  # equal parts: the inferred output shapes
                sizes = [int(shapes[o][axis]) for o in node.output]
            parts = g.create_node("call_function", torch.split, (act(node, 0), sizes, axis),
                                  name=node.name)
            for i, o in enumerate(node.output):
                env[o] = g.call_function(operator.getitem, (parts, i))
            continue
        elif op == "Slice" and all(i in consts or not isinstance(env.get(i), fx.Node)
                                   for i in ins[1:] if i):
            starts, ends = (np.asarray(env[i]).reshape(-1) for i in ins[1:3])
            axes = (np.asarray(env[ins[3]]).reshape(-1) if len(ins) > 3 and ins[3]
                    else np.arange(len(starts)))
            steps = (np.asarray(env[ins[4]]).reshape(-1) if len(ins) > 4 and ins[4]
                     else np.ones(len(starts), np.int64))
            rank = len(shapes[ins[0]])
            index = [slice(None)] * rank
            for st, en, ax, sp in zip(starts, ends, axes, steps):
                size = shapes[ins[0]][int(ax) % rank]
                index[int(ax) % rank] = slice(*slice(int(max(min(st, size), -size - 1)),
                                                     int(max(min(en, size), -size - 1)),
                                                     int(sp)).indices(size))
            out = g.call_function(operator.getitem, (act(node, 0), tuple(index)))
        elif op == "LRN":
            if a["size"] % 2 == 0:  # torch's window is c - size/2 .. c + size/2 - 1, ONNX's
                raise OnnxToTorchError(f"LRN {node.name!r}: even size {a['size']} (torch's "
                                       "channel window differs from ONNX's)")
            out = module(node, nn.LocalResponseNorm(a["size"], a.get("alpha", 1e-4),
                                                    a.get("beta", 0.75), a.get("bias", 1.0)),
                         act(node, 0))
        elif op == "Resize" and a.get("mode", b"nearest") in (b"nearest", "nearest"):
            scales = env[ins[2]] if len(ins) > 2 and ins[2] else None
            if scales is None or len(scales) != 4 or tuple(scales[:2]) != (1, 1):
                raise OnnxToTorchError(f"Resize {node.name!r}: only scales on H and W")
            out = g.call_function(F.interpolate, (act(node, 0),), {
                "scale_factor": (float(scales[2]), float(scales[3])), "mode": "nearest"})
        elif op in ("Add", "Sub", "Mul", "Div") and sum(const_ins) == 1 and len(ins) == 2:
            # a constant operand that folds into no conv / dense layer: the torch op with the
            # constant as a buffer (capture: a per-channel affine, a depthwise 1x1 conv; any
            # other constant that broadcasts onto the tensor: a constant record of its own)
            ci = const_ins.index(True)
            c_shape, x_shape = np.shape(env[ins[ci]]), shapes.get(ins[1 - ci], [])
            try:
                fits = tuple(np.broadcast_shapes(c_shape, tuple(x_shape))) == tuple(x_shape)
            except ValueError:
                fits = False
            if len(x_shape) < 2 or not fits:
                raise OnnxToTorchError(f"ONNX {op} {node.name!r}: a constant of shape "
                                       f"{tuple(c_shape)} does not broadcast onto the tensor "
                                       f"{tuple(x_shape)}")
            buf = f"const{len(root._buffers)}"
            root.register_buffer(buf, torch.from_numpy(np.array(env[ins[ci]], dtype=np.float32)))
            operands = [None, None]
            operands[ci], operands[1 - ci] = g.get_attr(buf), act(node, 1 - ci)
            fn = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul,
                  "Div": operator.truediv}[op]
            out = g.create_node("call_function", fn, tuple(operands), name=node.name)
        else:
            raise OnnxToTorchError(f"no torch mapping here for ONNX {op} (node {node.name!r})")
        env[node.output[0]] = out
    result = env[graph.output[0].name]
    if not isinstance(result, fx.Node):
        raise OnnxToTorchError("the model output is not an activation computed here")
    g.output(result)
    return fx.GraphModule(root, g).eval()


def check_against_ort(model: fx.GraphModule, proto, x: np.ndarray) -> float:
    """The rebuilt module's output against ONNX Runtime's float model on ``x``: the largest
    difference relative to the output's range; OnnxToTorchError above 1e-3 of it plus 1e-6."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else np.inf
    rel = diff / max(float(np.abs(theirs).max()), 1e-12)
    if ours.shape != theirs.shape or diff > 1e-3 * float(np.abs(theirs).max()) + 1e-6:
        # (the absolute 1e-6: a saturated sigmoid output, ~1e-9 everywhere, whose float32 tails
        # differ between torch and ONNX Runtime by more than 1e-3 relative)
        raise OnnxToTorchError(f"the torch rebuild differs from ONNX Runtime's float model "
                               f"(shape {ours.shape} vs {theirs.shape}, largest difference "
                               f"{diff:.2g}, relative {rel:.2g})")
    return rel
