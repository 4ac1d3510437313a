"""Which torch callable, method name or module type capture handles as which kind.

Tables only, read by the dispatch in ``quant.capture`` and by a few handlers (no graph logic).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

_DROPOUT_FUNCS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout)
_FUNC_KINDS: dict[Callable, str] = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    operator.sub: "sub", operator.isub: "sub", torch.sub: "sub", torch.subtract: "sub",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div", torch.divide: "div",
    F.conv2d: "conv2d", F.conv_transpose2d: "conv_transpose2d",
    torch.split: "split", torch.chunk: "chunk", F.local_response_norm: "lrn",
    torch.relu: "relu", F.relu: "relu", F.relu6: "relu6", F.hardtanh: "hardtanh",
    torch.clamp: "clamp", torch.clip: "clamp",
    torch.flatten: "flatten", torch.cat: "cat", torch.concat: "cat",
    F.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    torch.matmul: "matmul", operator.matmul: "matmul", torch.bmm: "matmul",
    F.gelu: "gelu", F.softmax: "softmax", torch.softmax: "softmax",
    torch.transpose: "transpose", torch.permute: "permute",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
    F.hardsigmoid: "hardsigmoid", F.hardswish: "hardswish", F.silu: "silu",
    F.interpolate: "interpolate", torch.unsqueeze: "unsqueeze",
    **{f: "dropout" for f in _DROPOUT_FUNCS},
}
_METHOD_KINDS = {
    "relu": "relu", "relu_": "relu", "clamp": "clamp", "clamp_": "clamp", "clip": "clamp",
    "clip_": "clamp", "add": "add", "add_": "add", "flatten": "flatten", "view": "reshape",
    "reshape": "reshape", "contiguous": "identity", "matmul": "matmul", "softmax": "softmax",
    "transpose": "transpose", "permute": "permute", "mul": "mul", "mul_": "mul",
    "sigmoid": "sigmoid", "tanh": "tanh", "unsqueeze": "unsqueeze", "expand_as": "expand",
    "expand": "expand", "split": "split", "chunk": "chunk", "sub": "sub", "sub_": "sub",
    "div": "div", "div_": "div",
}
# Kinds whose handler reads node.args itself.
_SELF_BINDING = ("reshape", "transpose", "permute", "matmul", "softmax", "gelu", "expand",
                 "split", "chunk")
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POINTWISE_MODULES: dict[type, str] = {nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid",
                                       nn.Hardswish: "hardswish", nn.SiLU: "silu",
                                       nn.Tanh: "tanh"}
_UPSAMPLE_MODULES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
