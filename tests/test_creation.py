"""Creation functions: dtypes, values, shapes, memory sharing, as torch documents them."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj


def test_default_dtypes():
    assert gj.tensor([1.0, 2.0]).dtype is gj.float32
    assert gj.tensor([1, 2]).dtype is gj.int64
    assert gj.tensor([True]).dtype is gj.bool
    assert gj.tensor(np.array([1.0])).dtype is gj.float64  # a NumPy array keeps its dtype
    gj.set_default_dtype(gj.float64)
    assert gj.zeros(2).dtype is gj.float64 and gj.tensor([1.0]).dtype is gj.float64


@pytest.mark.parametrize("make,expected", [
    (lambda: gj.zeros(2, 3), np.zeros((2, 3), np.float32)),
    (lambda: gj.ones((2,)), np.ones(2, np.float32)),
    (lambda: gj.full((2, 2), 7.5), np.full((2, 2), 7.5, np.float32)),
    (lambda: gj.full((2,), 3), np.full(2, 3, np.int64)),
    (lambda: gj.arange(5), np.arange(5)),
    (lambda: gj.arange(1.0, 2.0, 0.25), np.arange(1.0, 2.0, 0.25, dtype=np.float32)),
    (lambda: gj.zeros_like(gj.ones(2, dtype=gj.float64)), np.zeros(2)),
    (lambda: gj.ones_like(gj.tensor([1, 2])), np.ones(2, np.int64)),
    (lambda: gj.eye(2), np.eye(2, dtype=np.float32)),
    (lambda: gj.linspace(0, 1, 5), np.linspace(0, 1, 5, dtype=np.float32)),
])
def test_creation_values_and_dtypes(make, expected):
    t = make()
    assert t.dtype.np == expected.dtype and t.shape == expected.shape
    np.testing.assert_array_equal(t.numpy(), expected)


def test_random_creation_is_seeded_and_floating():
    gj.manual_seed(3)
    a, b = gj.randn(1000), gj.rand(1000)
    gj.manual_seed(3)
    np.testing.assert_array_equal(gj.randn(1000).numpy(), a.numpy())
    assert abs(float(a.mean().item())) < 0.15 and 0.9 < float(a.std().item()) < 1.1
    assert 0.0 <= float(b.amin().item()) and float(b.amax().item()) < 1.0
    assert gj.randn_like(gj.zeros(2, 2, dtype=gj.float64)).dtype is gj.float64
    assert gj.rand(2, requires_grad=True).requires_grad
    with pytest.raises(gj.DTypeError, match="floating"):
        gj.rand_like(gj.tensor([1, 2]))


def test_from_numpy_shares_memory_both_ways():
    arr = np.array([1.0, 2.0, 3.0])
    t = gj.from_numpy(arr)
    assert t.dtype is gj.float64
    arr[0] = 10.0
    assert t[0].item() == 10.0
    with gj.no_grad():
        t.mul_(2.0)
    np.testing.assert_array_equal(arr, [20.0, 4.0, 6.0])
    with pytest.raises(TypeError, match="numpy.ndarray"):
        gj.from_numpy([1.0])


def test_numpy_subclasses_are_cpu_tensors_sharing_memory(tmp_path):
    mm = np.memmap(tmp_path / "a.bin", dtype=np.float32, mode="w+", shape=(2, 3))
    mm[:] = 1.5
    for t in (gj.from_numpy(mm), gj.Tensor(mm), gj.as_tensor(mm)):
        assert t.device == "cpu" and not t.is_cuda
        assert type(t.numpy()) is np.ndarray and np.shares_memory(t.numpy(), mm)
        assert (t * 2).sum().item() == 18.0
    gj.from_numpy(mm).add_(1.0)  # writes reach the memmap, as with torch.from_numpy
    assert float(mm[0, 0]) == 2.5


def test_tensor_metadata_and_conversions():
    t = gj.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and len(t) == 2
    np.testing.assert_array_equal(t.T.numpy(), [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(np.asarray(t), t.numpy())
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert t[1, 2].item() == 6.0 and isinstance(t[1, 2].item(), float)
    assert gj.tensor([3]).sum().item() == 3 and isinstance(gj.tensor([3]).sum().item(), int)
    with pytest.raises((ValueError, gj.GraphjitError)):
        t.item()  # more than one element


def test_tensor_constructor_takes_sizes_or_data_as_pytorch():
    t = gj.Tensor(2, 3)
    assert t.shape == (2, 3) and t.dtype is gj.float32 and not t.requires_grad
    assert gj.Tensor().shape == (0,)
    assert gj.Tensor(4).shape == (4,)
    data = gj.Tensor([1, 2])  # the legacy constructor makes floats of int data
    assert data.dtype is gj.float32 and data.tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="sizes"):
        gj.Tensor(2.5)
    with pytest.raises(TypeError):
        gj.Tensor([1.0], 3)


def test_new_tensors_take_dtype_and_device_from_self():
    x = gj.ones(2, dtype=gj.float64)
    for t, shape, value in ((x.new_zeros(2, 3), (2, 3), 0.0), (x.new_ones((3,)), (3,), 1.0),
                            (x.new_full((2, 2), 7.0), (2, 2), 7.0)):
        assert t.shape == shape and t.dtype is gj.float64 and (t == value).all().item()
    assert x.new_empty(4).shape == (4,) and x.new_empty(4).dtype is gj.float64
    assert x.new_tensor([1, 2]).dtype is gj.float64
    assert x.new_zeros(2, dtype=gj.int64).dtype is gj.int64
