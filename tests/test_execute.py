"""The executor: fast kernels equal the int64 reference on whole programs, codes and overflows."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwsim.errors import ProgramError
from hwsim.executor import execute, execute_node
from tests._programs import random_input, random_program


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["dyadic", "float32"]),
       acc=st.sampled_from([(32, "wrap"), (16, "wrap"), (14, "saturate"), (32, "saturate")]),
       act_bits=st.integers(2, 8))
def test_fast_equals_reference_on_random_programs(seed, mode, acc, act_bits):
    p = random_program(seed, mode=mode, acc_bits=acc[0], acc_mode=acc[1], act_bits=act_bits)
    x = random_input(p, seed)
    fast = execute(p, x, record=True, backend="fast")
    ref = execute(p, x, record=True, backend="reference")
    assert fast.tensors.keys() == ref.tensors.keys()
    for name in ref.tensors:
        np.testing.assert_array_equal(fast.tensors[name], ref.tensors[name], err_msg=name)
        assert fast.tensors[name].dtype == p.node(name).out.dtype
    assert fast.overflow_counts == ref.overflow_counts


def test_narrow_accumulator_overflows_are_counted_per_layer():
    p = random_program(3, acc_bits=12, acc_mode="wrap")
    res = execute(p, random_input(p, 3))
    assert set(res.overflow_counts) == {"conv1", "conv2", "fc"}
    assert res.total_overflows > 0
    wide = execute(random_program(3, acc_bits=32), random_input(p, 3))
    assert wide.total_overflows == 0


def test_outputs_stay_in_the_code_range_and_relu_clamp_holds():
    p = random_program(11)
    res = execute(p, random_input(p, 11), record=True)
    for node in p.nodes():
        codes = res.tensors[node.name]
        assert codes.min() >= node.out.qmin and codes.max() <= node.out.qmax
    assert res.tensors["conv1"].min() >= p.node("conv1").out.zero_point  # fused ReLU


def test_execute_node_matches_the_program_run():
    p = random_program(5)
    res = execute(p, random_input(p, 5), record=True)
    for node in p.nodes():
        if node.op == "input":
            continue
        out, _ = execute_node(node, [res.tensors[s] for s in node.inputs])
        np.testing.assert_array_equal(out, res.tensors[node.name])


def test_batch_size_is_free_and_rows_are_independent():
    p = random_program(7)
    x = random_input(p, 7)
    both = execute(p, x).output
    first = execute(p, x[:1]).output
    np.testing.assert_array_equal(both[:1], first)


def test_bad_input_codes_are_named():
    p = random_program(1)
    x = random_input(p, 1)
    with pytest.raises(ProgramError, match="expected shape"):
        execute(p, x[:, :1])
    with pytest.raises(ProgramError, match="integer codes"):
        execute(p, x.astype(np.float32))
    with pytest.raises(ProgramError, match="must lie in"):
        execute(p, np.full_like(x, p.input.out.qmax).astype(np.int64) + 1)
    with pytest.raises(ProgramError, match="unknown backend"):
        execute(p, x, backend="gpu")
