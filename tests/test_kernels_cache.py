"""Prepared-weight caching never changes a result: only read-only weights are cached, keyed by
buffer and zero points; writeable weights are prepared afresh on every call."""
import numpy as np

from hwsim.kernels import conv2d_int, conv2d_int_reference, linear_int, linear_int_reference


def _case(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (1, 4, 6, 6)).astype(np.uint8)
    w = rng.integers(-127, 128, (3, 4, 3, 3)).astype(np.int8)
    return x, w


def test_mutating_a_writeable_weight_is_seen():
    x, w = _case(0)
    first = conv2d_int(x, 7, w, padding=1).values
    w[0] = -w[0]
    np.testing.assert_array_equal(conv2d_int(x, 7, w, padding=1).values,
                                  conv2d_int_reference(x, 7, w, padding=1).values)
    assert not np.array_equal(first, conv2d_int(x, 7, w, padding=1).values)


def test_read_only_weight_with_other_zero_points_is_not_confused():
    x, w = _case(1)
    w.flags.writeable = False
    for zp in (None, np.array([1, -2, 3]), np.array([0, 0, 5])):
        np.testing.assert_array_equal(conv2d_int(x, 7, w, zp, padding=1).values,
                                      conv2d_int_reference(x, 7, w, zp, padding=1).values)


def test_views_of_one_read_only_buffer_are_keyed_by_shape():
    rng = np.random.default_rng(2)
    buf = rng.integers(-127, 128, (6, 8)).astype(np.int8)
    buf.flags.writeable = False
    x = rng.integers(0, 256, (2, 8)).astype(np.uint8)
    for w in (buf, buf[:3], buf[3:], buf.reshape(6, 8)):
        np.testing.assert_array_equal(linear_int(x, 3, w).values, linear_int_reference(x, 3, w).values)


def test_a_freed_weight_does_not_leak_into_a_new_one():
    x, _ = _case(3)
    for seed in range(20):  # new arrays often reuse a freed array's address
        w = np.random.default_rng(seed).integers(-127, 128, (3, 4, 3, 3)).astype(np.int8)
        w.flags.writeable = False
        np.testing.assert_array_equal(conv2d_int(x, 7, w, padding=1).values,
                                      conv2d_int_reference(x, 7, w, padding=1).values)
        del w
