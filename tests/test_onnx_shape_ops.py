"""Shape ops on codes: Reshape (any shape keeping the batch first), Transpose, Split, Slice,
Squeeze and Unsqueeze between a DequantizeLinear and a QuantizeLinear with the same parameters
(QDQ, as ONNX Runtime drops the pair) or directly on codes (QOperator) become ``reshape`` /
``transpose`` / ``slice`` program nodes, which move codes without arithmetic: exact against
ONNX Runtime, listed (not priced) by the cost model; what they cannot express is refused with
a one-line error naming the node. LRN is refused with its reason.

How it is checked: small hand-built models through ``verify_onnx`` (0 mismatches over every
named node), the fast and reference backends equal, and the float-island kernels of
``hwsim.kernels.float_island_ops`` on random shapes (hypothesis): Slice and MaxPool (pads,
strides, dilations, ceil_mode) against ONNX Runtime's float kernels bit for bit, Split pieces
tiling the axis, Transpose / Squeeze / Unsqueeze / N-input Sum fast = reference. The island
sweeps against ONNX Runtime (u8 / s8, tie-heavy scales) are in test_onnx_float_islands.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from hwsim import execute  # noqa: E402
from hwsim.errors import ProgramError  # noqa: E402
from hwsim.ir import check_program  # noqa: E402
from hwsim.kernels import float_island_ops as ops  # noqa: E402
from hwsim.kernels.float_island import FloatIslandError  # noqa: E402
from hwsim.onnx import OnnxImportError, load_onnx_program, quantize_input, verify_onnx  # noqa: E402
from hwsim.workloads.program import uncosted_ops  # noqa: E402
from tests._onnx_helpers import model_bytes, session  # noqa: E402

F32 = np.float32
SHAPE = (2, 8, 6, 5)


def _x(shape=SHAPE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def _qdq_chain(steps, dtype=np.uint8, opset=18) -> bytes:
    """x -> Q -> [DQ -> op -> Q] per step (same scale / zero point throughout) -> DQ -> out.
    A step is (op type, extra inputs (initializer names), attrs, number of outputs); the chain
    follows the op's last output."""
    zp = np.asarray(128 if dtype == np.uint8 else 3, dtype)
    inits = {"s": F32(0.05), "z": zp, "shuffle": np.array([0, 2, 4, 6, 5], np.int64),
             "back": np.array([0, -1, 6, 5], np.int64), "split": np.array([3, 5], np.int64),
             "st": np.array([1, 0], np.int64), "en": np.array([-1, 100], np.int64),
             "ax": np.array([2, 3], np.int64), "sp": np.array([1, 2], np.int64),
             "a2": np.array([2], np.int64)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q0"])]
    cur = "q0"
    for i, (op, extra, attrs, n_out) in enumerate(steps):
        nodes.append(helper.make_node("DequantizeLinear", [cur, "s", "z"], [f"d{i}"]))
        outs = [f"f{i}_{k}" for k in range(n_out)]
        nodes.append(helper.make_node(op, [f"d{i}", *extra], outs, name=f"{op.lower()}{i}",
                                      **attrs))
        for k, o in enumerate(outs):
            nodes.append(helper.make_node("QuantizeLinear", [o, "s", "z"], [f"q{i + 1}_{k}"]))
        cur = f"q{i + 1}_{n_out - 1}"
    nodes.append(helper.make_node("DequantizeLinear", [cur, "s", "z"], ["out"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE[1:]])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    return model_bytes(nodes, [x], [out], inits, opset)


SHUFFLE_SPLIT_SLICE = [
    ("Reshape", ["shuffle"], {}, 1),                    # (N, 2, 4, 6, 5): a channel shuffle
    ("Transpose", [], {"perm": [0, 2, 1, 3, 4]}, 1),
    ("Reshape", ["back"], {}, 1),
    ("Split", ["split"], {"axis": 1}, 2),               # the chain follows the second piece
    ("Slice", ["st", "en", "ax", "sp"], {}, 1),
    ("Unsqueeze", ["a2"], {}, 1),
    ("Squeeze", ["a2"], {}, 1),
]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_shape_ops_on_codes_are_exact_and_move_codes(tmp_path, dtype):
    path = tmp_path / "chain.onnx"
    path.write_bytes(_qdq_chain(SHUFFLE_SPLIT_SLICE, dtype))
    x = _x()
    v = verify_onnx(path, x)
    print(f"\n{np.dtype(dtype)}: {v.summary['outputs_compared']} codes, "
          f"{v.summary['total_mismatches']} mismatches")
    assert v.summary["total_mismatches"] == 0
    program = v.program
    assert [n.op for n in program.nodes()] == ["input", "reshape", "transpose", "reshape",
                                               "slice", "slice", "slice", "reshape", "reshape"]
    sl = [n for n in program.nodes() if n.op == "slice"]
    assert [(n.attrs["axis"], n.attrs["start"], n.attrs["stop"], n.attrs.get("step", 1))
            for n in sl] \
        == [(1, 3, 8, 1), (2, 1, 5, 1), (3, 0, 5, 2)]
    assert program.node(program.output_name).out_shape == (1, 5, 4, 3)
    assert set(uncosted_ops(program)) == {"reshape", "transpose", "slice"}
    codes = quantize_input(program, _x((3, *SHAPE[1:]), seed=1))  # another batch size
    fast = execute(program, codes).output
    assert np.array_equal(fast, execute(program, codes, backend="reference").output)
    assert fast.shape == (3, 5, 4, 3)


def test_qoperator_shape_ops_on_codes(tmp_path):
    inits = {"s": F32(0.1), "z": np.uint8(100), "sh": np.array([0, 0, -1], np.int64),
             "sz": np.array([10, 20], np.int64)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("Transpose", ["q"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Reshape", ["t", "sh"], ["r"]),
             helper.make_node("Split", ["r", "sz"], ["a", "b"], axis=2),
             helper.make_node("DequantizeLinear", ["b", "s", "z"], ["out"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 6])
    path = tmp_path / "qop.onnx"
    path.write_bytes(model_bytes(nodes, [x], [helper.make_tensor_value_info(
        "out", TensorProto.FLOAT, None)], inits, 13))
    v = verify_onnx(path, _x((1, 3, 5, 6)))
    assert v.summary["total_mismatches"] == 0
    assert [n.op for n in v.program.nodes()] == ["input", "transpose", "reshape", "slice"]


def _refused(steps, match: str, opset=18):
    with pytest.raises(OnnxImportError, match=match):
        load_onnx_program(_qdq_chain(steps, opset=opset), input_shape=SHAPE)


@pytest.mark.parametrize("steps, match", [
    ([("Reshape", ["split"], {}, 1)], r"node 'reshape0' \(Reshape\): Reshape: cannot reshape"),
    ([("Transpose", [], {"perm": [1, 0, 2, 3]}, 1)],
     r"node 'transpose0' \(Transpose\): only transposes that keep the batch dimension first"),
    ([("Split", [], {"axis": 0, "num_outputs": 2}, 2)],
     r"node 'split0' \(Split\): Split: axis length 2 is not divisible|a Split along the batch"),
    ([("Split", ["split"], {"axis": 2}, 2)],
     r"node 'split0' \(Split\): Split: sizes \[3, 5\] do not add up to the axis length 6"),
    ([("Squeeze", ["a2"], {}, 1)], r"node 'squeeze0' \(Squeeze\): Squeeze: axes \[2\]"),
])
def test_bad_shape_ops_name_the_node(steps, match):
    _refused(steps, match)


def test_batch_changing_reshape_and_reversed_slice_are_refused():
    inits_model = _qdq_chain([("Reshape", ["shuffle"], {}, 1)])
    load_onnx_program(inits_model, input_shape=SHAPE)  # the batch stays first: fine
    import onnx

    m = onnx.load_from_string(_qdq_chain([("Reshape", ["shuffle"], {}, 1)]))
    for t in m.graph.initializer:
        if t.name == "shuffle":
            t.CopyFrom(onnx.numpy_helper.from_array(np.array([-1, 30], np.int64), "shuffle"))
    with pytest.raises(OnnxImportError, match="only reshapes that keep the batch dimension"):
        load_onnx_program(m.SerializeToString(), input_shape=SHAPE)
    m = onnx.load_from_string(_qdq_chain([("Slice", ["st", "en", "ax", "sp"], {}, 1)]))
    for t in m.graph.initializer:
        if t.name == "sp":
            t.CopyFrom(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "sp"))
    with pytest.raises(OnnxImportError, match=r"slice0.*steps >= 1"):
        load_onnx_program(m.SerializeToString(), input_shape=SHAPE)


def test_slice_node_checks_its_attributes():
    program = load_onnx_program(_qdq_chain([("Split", ["split"], {"axis": 1}, 2)]),
                                input_shape=SHAPE)
    node = next(n for n in program.nodes() if n.op == "slice")
    node.attrs["axis"] = 0
    with pytest.raises(ProgramError, match="axis must be >= 1"):
        check_program(program)


def test_lrn_with_integer_beta_is_refused_with_its_reason():
    steps = [("LRN", [], {"size": 3, "alpha": 1e-4, "beta": 2.0}, 1)]
    _refused(steps, r"node 'lrn0' \(LRN\): LRN with an integer beta \(2\) is not imported")


# --- the index arithmetic, against numpy and ONNX Runtime --------------------------------------

@st.composite
def _slice_case(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    axes = draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                         unique_by=lambda a: a % rank))
    starts = [draw(st.integers(-9, 9)) for _ in axes]
    ends = [draw(st.integers(-9, 9)) for _ in axes]
    steps = [draw(st.sampled_from([-3, -2, -1, 1, 2, 3])) for _ in axes]
    return shape, starts, ends, axes, steps


@settings(max_examples=60, deadline=None)
@given(_slice_case())
def test_slice_fast_reference_and_ort_agree(case):
    shape, starts, ends, axes, steps = case
    x = np.arange(int(np.prod(shape)), dtype=F32).reshape(shape)
    ins = [x] + [np.array(v, np.int64) for v in (starts, ends, axes, steps)]
    fast, ref = ops._slice(ins, {}), ops._slice_ref(ins, {})
    assert np.array_equal(fast, ref) and fast.shape == ref.shape
    names = ["x", "st", "en", "ax", "sp"]
    node = helper.make_node("Slice", names, ["y"])
    model = model_bytes([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                        dict(zip(names[1:], ins[1:])), 13)
    theirs = session(model).run(None, {"x": x})[0]
    assert fast.shape == theirs.shape and np.array_equal(fast, theirs)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.booleans(), st.data())
def test_split_pieces_tile_the_axis(dim, n, by_sizes, data):
    x = np.arange(dim * 3, dtype=F32).reshape(3, dim)
    if by_sizes:
        cuts = sorted(data.draw(st.lists(st.integers(0, dim), min_size=n - 1, max_size=n - 1)))
        sizes = np.diff([0, *cuts, dim]).astype(np.int64)
        attrs, split = {"axis": 1, "outputs_count": n}, sizes
    else:
        attrs, split = {"axis": -1, "num_outputs": n}, None
        if dim - -(-dim // n) * (n - 1) < 0:  # ceil(dim / n)-long pieces overrun the axis
            with pytest.raises(FloatIslandError, match="cannot make"):
                ops._split([x, None], dict(attrs, output_index=0))
            return
    pieces = []
    for i in range(n):
        a = dict(attrs, output_index=i)
        fast, ref = ops._split([x, split], a), ops._split_ref([x, split], a)
        assert np.array_equal(fast, ref)
        pieces.append(fast)
    assert np.array_equal(np.concatenate(pieces, axis=1), x)
    if not by_sizes:  # ONNX's num_outputs rule: ceil(dim / n) each, the last one shorter
        assert all(p.shape[1] == -(-dim // n) for p in pieces[:-1])


def test_split_of_a_float_op_makes_one_island_per_piece(tmp_path):
    """DQ -> HardSwish -> Split -> Q, Q (other parameters) -> Concat: each piece is its own
    float island, holding the Split with its output index."""
    inits = {"s": F32(0.05), "z": np.uint8(128), "s2": F32(0.03), "z2": np.uint8(120),
             "sp": np.array([3, 5], np.int64)}
    n = helper.make_node
    nodes = [n("QuantizeLinear", ["x", "s", "z"], ["q"]),
             n("DequantizeLinear", ["q", "s", "z"], ["d"]), n("HardSwish", ["d"], ["h"]),
             n("Split", ["h", "sp"], ["a", "b"], axis=1),
             n("QuantizeLinear", ["a", "s2", "z2"], ["qa"]),
             n("QuantizeLinear", ["b", "s2", "z2"], ["qb"]),
             n("DequantizeLinear", ["qa", "s2", "z2"], ["da"]),
             n("DequantizeLinear", ["qb", "s2", "z2"], ["db"]),
             n("Concat", ["db", "da"], ["c"], axis=1),
             n("QuantizeLinear", ["c", "s2", "z2"], ["qc"]),
             n("DequantizeLinear", ["qc", "s2", "z2"], ["out"])]
    path = tmp_path / "split_island.onnx"
    path.write_bytes(model_bytes(nodes, [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 8, 6, 5])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, None)], inits, 14))
    v = verify_onnx(path, _x((1, 8, 6, 5)) * F32(3))
    assert v.summary["total_mismatches"] == 0
    islands = [nd for nd in v.program.nodes() if nd.op == "float_island"]
    assert [nd.out_shape for nd in islands] == [(1, 3, 6, 5), (1, 5, 6, 5)]
    split = [[m for m in nd.attrs["nodes"] if m["op"] == "Split"] for nd in islands]
    assert all(len(s) == 2 for s in split)  # one island node per Split output
    assert [nd.attrs["output"] for nd in islands] == ["a", "b"]


@st.composite
def _pool_case(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = [draw(st.integers(0, k[i % 2] - 1)) for i in range(4)]  # ONNX: pad < kernel
    h = draw(st.integers((k[0] - 1) * d[0] + 1, 9))
    w = draw(st.integers((k[1] - 1) * d[1] + 1, 9))
    return (2, 3, h, w), {"kernel_shape": list(k), "strides": list(s), "dilations": list(d),
                          "pads": pads, "ceil_mode": draw(st.integers(0, 1))}


@settings(max_examples=60, deadline=None)
@given(_pool_case())
def test_float_maxpool_fast_reference_and_ort_agree(case):
    shape, attrs = case
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(F32)
    fast, ref = ops._maxpool([x], attrs), ops._maxpool_ref([x], attrs)
    assert np.array_equal(fast, ref)
    model = model_bytes([helper.make_node("MaxPool", ["x"], ["y"], **attrs)],
                        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {}, 13)
    theirs = session(model).run(None, {"x": x})[0]
    assert fast.shape == theirs.shape and np.array_equal(fast, theirs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4)), min_size=1, max_size=4),
       st.integers(0, 2 ** 31))
def test_transpose_squeeze_unsqueeze_and_sum_fast_equal_reference(dims, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(d for d, _ in dims)
    x = rng.standard_normal(shape).astype(F32)
    perm = {"perm": [int(p) for p in rng.permutation(len(shape))]}
    assert np.array_equal(ops._transpose([x], perm), ops._transpose_ref([x], perm))
    assert np.array_equal(ops._transpose([x], perm), x.transpose(perm["perm"]))
    axes = np.array([int(rng.integers(-len(shape) - 1, len(shape) + 1))], np.int64)
    u = ops._unsqueeze([x, axes], {})
    assert np.array_equal(u, ops._flat_copy(ops.unsqueeze_shape)([x, axes], {}))
    assert np.array_equal(ops._squeeze([u, axes], {}), x)
    terms = [rng.standard_normal(shape).astype(F32) * F32(10.0 ** rng.integers(-3, 4))
             for _ in range(len(dims) + 1)]
    total = ops._sum(terms, {})
    assert np.array_equal(total, ops._sum_ref(terms, {}))
    acc = terms[0]
    for t in terms[1:]:  # left to right, one float32 rounding per add
        acc = (acc + t).astype(F32)
    assert np.array_equal(total, acc)
