"""Verification in batches: the same figures whatever the batch size, inputs read from a .npy
file (a batch at a time) or an image folder, and bad inputs named."""
import numpy as np
import pytest
import torch
from torch import nn

import quant
from hwsim.datasets import ArraySource, FolderSource, NpySource, image_source
from hwsim.errors import WorkloadError
from hwsim.lower import lower
from hwsim.verify import verify


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 6)).eval()
    x = torch.randn(13, 3, 16, 16)
    qm = quant.quantize(model, quant.QuantConfig(weight=quant.IntFormat(4, per_channel=True)), [x])
    return qm, lower(qm, accumulator_bits=10, accumulator_mode="saturate"), x


EXACT = ["max_lsb_diff", "mismatches", "bit_exact", "max_lsb_diff_e2e", "mismatch_pct",
         "mismatch_pct_e2e", "overflows", "shape"]


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_figures_do_not_depend_on_the_batch_size(small, batch_size):
    qm, program, x = small
    whole = verify(qm, program, x, batch_size=len(x))
    split = verify(qm, program, x, batch_size=batch_size)
    assert split.per_layer[EXACT].equals(whole.per_layer[EXACT])
    # The float model's own float32 convs differ in their last bits with the batch size (torch
    # picks other kernels), and the float64 sums run in another order: ~1e-8 relative.
    np.testing.assert_allclose(split.per_layer["sqnr_db"], whole.per_layer["sqnr_db"], rtol=1e-6)
    np.testing.assert_allclose(split.per_layer["cosine"], whole.per_layer["cosine"], rtol=1e-6)
    for key, value in whole.summary.items():
        if isinstance(value, float):
            assert split.summary[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert split.summary[key] == value, key
    assert whole.summary["total_overflows"] > 0  # the 10-bit accumulator really saturates


def test_limit_and_sources(small, tmp_path):
    qm, program, x = small
    path = tmp_path / "x.npy"
    np.save(path, x.numpy())
    source = image_source(path)
    assert isinstance(source, NpySource) and len(source) == 13
    first = next(source.batches(4))
    np.testing.assert_array_equal(first, x.numpy()[:4])
    got = verify(qm, program, source, batch_size=3, limit=7)
    want = verify(qm, program, x[:7])
    assert got.summary["images"] == 7
    assert got.per_layer[EXACT].equals(want.per_layer[EXACT])


def test_folder_source_preprocesses_like_the_zoo(tmp_path):
    import skimage.data
    import skimage.io

    from hwsim.zoo.images import preprocess

    for i, name in enumerate(["chelsea", "coffee", "camera"]):
        skimage.io.imsave(tmp_path / f"{i}_{name}.png", getattr(skimage.data, name)())
    (tmp_path / "notes.txt").write_text("not an image")
    source = image_source(tmp_path)
    assert isinstance(source, FolderSource) and len(source) == 3
    batches = list(source.batches(2))
    assert [b.shape for b in batches] == [(2, 3, 224, 224), (1, 3, 224, 224)]
    np.testing.assert_array_equal(batches[0][0], preprocess(skimage.data.chelsea()))
    gray = batches[1][0]  # camera is grayscale: repeated over the channels before normalizing
    assert gray.dtype == np.float32 and np.isfinite(gray).all()


def test_bad_sources_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkloadError, match="no image files"):
        image_source(tmp_path / "empty")
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(WorkloadError, match=r"x.npy: not a .npy file"):
        image_source(tmp_path / "x.npy")
    np.save(tmp_path / "ints.npy", np.zeros((2, 3), np.int32))
    with pytest.raises(WorkloadError, match="expected float inputs"):
        image_source(tmp_path / "ints.npy")
    np.save(tmp_path / "short.npy", np.zeros((4, 3), np.float32))
    data = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-5])
    with pytest.raises(WorkloadError, match=r"short.npy: truncated: the header promises 4 inputs"):
        image_source(tmp_path / "short.npy")
    with pytest.raises(WorkloadError, match="no such file"):
        image_source(tmp_path / "missing.npy")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(WorkloadError, match=r"a.png: not a readable image"):
        list(image_source(tmp_path / "bad").batches(1))
    assert len(ArraySource(np.zeros((4, 2)))) == 4
