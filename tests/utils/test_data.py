"""graphjit.utils.data: datasets, samplers, default_collate and the DataLoader, in the main
process and in worker processes. Expectations are written out independently (manual slicing,
sets of indices, PyTorch's documented dtypes and counts), not taken from the code under test.

Worker tests start real processes; each is small and bounded by ``_deadline`` so a hang
fails the test instead of the run."""
from __future__ import annotations

import collections
import contextlib
import math
import os
import signal
import time
import warnings

import numpy as np
import pytest

import graphjit as gj
from graphjit.utils import data as D
from graphjit.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset,
                                 IterableDataset, RandomSampler, SequentialSampler, StackDataset,
                                 Subset, SubsetRandomSampler, TensorDataset,
                                 WeightedRandomSampler, default_collate, default_convert,
                                 get_worker_info, random_split)


@contextlib.contextmanager
def _deadline(seconds):
    """Fail (rather than hang) when the block takes longer than ``seconds``."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- datasets used below (module level: worker processes started by spawn import them) ----


class Squares(Dataset):
    """Sample i is (float32 vector [i, i*i], int label i)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return gj.tensor([float(i), float(i * i)]), i


class Slow(Dataset):
    """Sample i after a delay that makes later batches finish first in some workers."""

    def __init__(self, n, delays):
        self.n, self.delays = n, delays

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(self.delays.get(i, 0.0))
        return i


class WhoLoads(Dataset):
    """Sample i is (i, worker id, worker seed, value set by worker_init_fn, a gj.rand draw)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return {"i": i, "id": info.id, "seed": info.seed, "init": _INIT_MARK.get("value", -1),
                "num_workers": info.num_workers, "rand": gj.rand(1).item()}


_INIT_MARK = {}


def _mark_init(worker_id):
    _INIT_MARK["value"] = 100 + worker_id


class Failing(Dataset):
    def __init__(self, bad, exc=ValueError):
        self.bad, self.exc = bad, exc

    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == self.bad:
            raise self.exc(f"sample {i} is corrupt")
        return i


class Sleepy(Dataset):
    def __init__(self, n, sleep_at, seconds):
        self.n, self.sleep_at, self.seconds = n, sleep_at, seconds

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.sleep_at:
            time.sleep(self.seconds)
        return i


class Dies(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5 and get_worker_info() is not None:
            os._exit(3)
        return i


class Range(IterableDataset):
    """start..stop-1, split between workers as PyTorch's IterableDataset example does."""

    def __init__(self, start, stop, shard=True):
        self.start, self.stop, self.shard = start, stop, shard

    def __len__(self):
        return self.stop - self.start

    def __iter__(self):
        info = get_worker_info()
        if info is None or not self.shard:
            return iter(range(self.start, self.stop))
        per = math.ceil((self.stop - self.start) / info.num_workers)
        lo = self.start + info.id * per
        return iter(range(lo, min(lo + per, self.stop)))


def _arrays(batch):
    """A batch as nested NumPy arrays / plain values, for comparisons."""
    if isinstance(batch, gj.Tensor):
        return batch.numpy()
    if isinstance(batch, dict):
        return {k: _arrays(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [_arrays(b) for b in batch]
    return batch


def _assert_same_batches(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _assert_same(g, w)


def _assert_same(g, w):
    if isinstance(w, gj.Tensor):
        assert isinstance(g, gj.Tensor) and g.dtype is w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    elif isinstance(w, dict):
        assert type(g) is type(w) and g.keys() == w.keys()
        for k in w:
            _assert_same(g[k], w[k])
    elif isinstance(w, (list, tuple)):
        assert type(g) is type(w) and len(g) == len(w)
        for a, b in zip(g, w):
            _assert_same(a, b)
    else:
        assert g == w


# ---- datasets --------------------------------------------------------------------------------


def test_tensor_dataset_indexes_every_tensor():
    x = gj.arange(12).reshape(6, 2).float()
    y = gj.arange(6) * 10
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    a, b = ds[4]
    assert a.tolist() == [8.0, 9.0] and b.item() == 40
    with pytest.raises(AssertionError, match="Size mismatch"):
        TensorDataset(x, gj.arange(5))


def test_subset_concat_stack_chain():
    base = Squares(10)
    sub = Subset(base, [7, 2, 5])
    assert len(sub) == 3 and sub[0][1] == 7 and sub[2][1] == 5
    assert [s[1] for s in sub.__getitems__([2, 0])] == [5, 7]

    cat = ConcatDataset([Squares(3), Squares(4)])
    assert len(cat) == 7 and cat.cumulative_sizes == [3, 7]
    assert [cat[i][1] for i in range(7)] == [0, 1, 2, 0, 1, 2, 3]
    assert cat[-1][1] == 3 and cat[-7][1] == 0
    with pytest.raises(ValueError, match="absolute value of index"):
        cat[-8]
    with pytest.raises(IndexError):
        cat[7]
    assert len(Squares(2) + Squares(5)) == 7  # Dataset.__add__
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        ConcatDataset([Range(0, 3)])

    st = StackDataset(Squares(3), Subset(Squares(9), [8, 7, 6]))
    assert st[1][0][1] == 1 and st[1][1][1] == 7 and len(st) == 3
    assert StackDataset(a=Squares(2), b=Squares(2))[1]["b"][1] == 1
    with pytest.raises(ValueError, match="Size mismatch"):
        StackDataset(Squares(2), Squares(3))

    chain = Range(0, 3) + Range(10, 12)
    assert isinstance(chain, ChainDataset)
    assert list(chain) == [0, 1, 2, 10, 11] and len(chain) == 5


def test_dataset_base_needs_getitem():
    with pytest.raises(NotImplementedError):
        Dataset()[0]


@pytest.mark.parametrize("lengths,sizes", [
    ([3, 7], [3, 7]),
    ([0.5, 0.5], [5, 5]),
    ([0.7, 0.2, 0.1], [7, 2, 1]),
])
def test_random_split_sizes_disjoint_cover(lengths, sizes):
    parts = random_split(range(10), lengths, generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == sizes
    seen = [p[i] for p in parts for i in range(len(p))]
    assert sorted(seen) == list(range(10))  # disjoint and covering


def test_random_split_fraction_remainder_goes_to_first_splits():
    # floor(11 * 0.7) = 7, floor(11 * 0.2) = 2, floor(11 * 0.1) = 1: one left over, to split 0.
    parts = random_split(range(11), [0.7, 0.2, 0.1])
    assert [len(p) for p in parts] == [8, 2, 1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = random_split(range(2), [0.1, 0.9])
    assert [len(p) for p in parts] == [1, 1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = random_split(range(1), [0.5, 0.5])
    assert [len(p) for p in parts] == [1, 0] and "index 1 is 0" in str(caught[0].message)


def test_random_split_errors():
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(range(10), [3, 3])
    with pytest.raises(ValueError, match="not between 0 and 1"):
        random_split(range(10), [1.5, -0.5])


def test_random_split_reproducible():
    def split(**kw):
        return [list(p.indices) for p in random_split(range(20), [5, 15], **kw)]

    gj.manual_seed(3)
    a = split()
    gj.manual_seed(3)
    assert split() == a
    gj.manual_seed(4)
    assert split() != a
    assert split(generator=np.random.default_rng(9)) == split(generator=np.random.default_rng(9))


# ---- samplers --------------------------------------------------------------------------------


def test_sequential_and_random_sampler():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    rs = RandomSampler(range(50))
    order = list(rs)
    assert len(rs) == 50 and sorted(order) == list(range(50)) and order != list(range(50))
    assert list(rs) != order  # a new permutation every epoch


def test_random_sampler_num_samples_and_replacement():
    # Without replacement, more samples than items chains whole permutations.
    order = list(RandomSampler(range(4), num_samples=10))
    counts = collections.Counter(order)
    assert len(order) == 10 and sorted(counts.values()) == [2, 2, 3, 3]
    assert sorted(order[:4]) == [0, 1, 2, 3] and sorted(order[4:8]) == [0, 1, 2, 3]
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=300))
    assert len(drawn) == 300 and set(drawn) == {0, 1, 2}
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(range(3), replacement=1)


def test_random_sampler_seeding():
    gj.manual_seed(11)
    a = list(RandomSampler(range(30)))
    gj.manual_seed(11)
    assert list(RandomSampler(range(30))) == a
    gj.manual_seed(12)
    assert list(RandomSampler(range(30))) != a
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert list(RandomSampler(range(30), generator=g1)) == \
        list(RandomSampler(range(30), generator=g2))
    with pytest.raises(TypeError, match="generator must be"):
        list(RandomSampler(range(3), generator=5))


@pytest.mark.parametrize("n,bs,drop_last,sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
])
def test_batch_sampler(n, bs, drop_last, sizes):
    bsamp = BatchSampler(SequentialSampler(range(n)), bs, drop_last)
    batches = list(bsamp)
    assert [len(b) for b in batches] == sizes and len(bsamp) == len(sizes)
    assert sum(batches, []) == list(range(sum(sizes)))


def test_batch_sampler_errors():
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(range(3), True, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean"):
        BatchSampler(range(3), 2, None)


def test_subset_random_sampler():
    s = SubsetRandomSampler([3, 9, 4, 7])
    assert sorted(s) == [3, 4, 7, 9] and len(s) == 4


def test_weighted_random_sampler():
    s = WeightedRandomSampler([0.0, 1.0, 3.0, 0.0], 400, generator=np.random.default_rng(0))
    counts = collections.Counter(s)
    assert len(s) == 400 and set(counts) == {1, 2}
    assert 200 < counts[2] < 400  # about 300
    assert s.weights.dtype is gj.float64
    distinct = list(WeightedRandomSampler([1, 1, 1, 5], 4, replacement=False))
    assert sorted(distinct) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="1d sequence"):
        WeightedRandomSampler([[1.0]], 1)
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler([1.0, 0.0], 2, replacement=False)


# ---- collate ---------------------------------------------------------------------------------


def test_collate_tensors_stack():
    rows = [gj.tensor([1.0, 2.0]), gj.tensor([3.0, 4.0]), gj.tensor([5.0, 6.0])]
    out = default_collate(rows)
    assert out.dtype is gj.float32 and out.tolist() == [[1, 2], [3, 4], [5, 6]]
    ints = default_collate([gj.tensor(1), gj.tensor(2)])
    assert ints.dtype is gj.int64 and ints.shape == (2,)


def test_collate_keeps_autograd():
    w = gj.tensor([1.0, 2.0], requires_grad=True)
    out = default_collate([w * 2, w * 3])
    out.sum().backward()
    assert w.grad.tolist() == [5.0, 5.0]


def test_collate_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        default_collate([gj.zeros(2), gj.zeros(3)])


@pytest.mark.parametrize("samples,dtype,values", [
    ([1.5, 2.5], gj.float64, [1.5, 2.5]),           # Python floats -> float64
    ([1, 2, 3], gj.int64, [1, 2, 3]),               # ints -> int64
    ([True, False], gj.bool, [True, False]),        # bools -> bool
    ([np.float32(1.5), np.float32(2)], gj.float32, [1.5, 2.0]),
    ([np.float64(1.5), np.float64(2)], gj.float64, [1.5, 2.0]),
    ([np.int32(4), np.int32(5)], gj.int64, [4, 5]),  # graphjit's only integer dtype
    ([np.bool_(True), np.bool_(False)], gj.bool, [True, False]),
])
def test_collate_numbers(samples, dtype, values):
    out = default_collate(samples)
    assert out.dtype is dtype and out.tolist() == values


@pytest.mark.parametrize("np_dtype,dtype", [
    (np.float32, gj.float32), (np.float64, gj.float64), (np.int64, gj.int64),
    (np.int32, gj.int64), (np.bool_, gj.bool), (np.float16, gj.float32),
])
def test_collate_numpy_arrays(np_dtype, dtype):
    arrays = [(np.arange(6).reshape(2, 3) + k).astype(np_dtype) for k in range(4)]
    out = default_collate(arrays)
    assert out.dtype is dtype and out.shape == (4, 2, 3)
    np.testing.assert_array_equal(out.numpy(), np.stack(arrays).astype(dtype.np))


def test_collate_numpy_strings_rejected():
    with pytest.raises(TypeError, match="default_collate: batch must contain"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(TypeError, match="found <class 'object'>"):
        default_collate([object(), object()])


Point = collections.namedtuple("Point", "x y")


def test_collate_nested_structures():
    batch = [
        {"img": np.full((2,), k, np.float32), "label": k, "meta": {"name": f"s{k}", "w": 0.5 * k},
         "pt": Point(k, gj.tensor([k, -k])), "pair": (k, 2.0 * k), "seq": [k, [k, k + 1]]}
        for k in range(3)
    ]
    out = default_collate(batch)
    assert list(out) == ["img", "label", "meta", "pt", "pair", "seq"]
    assert out["img"].dtype is gj.float32 and out["img"].tolist() == [[0, 0], [1, 1], [2, 2]]
    assert out["label"].dtype is gj.int64 and out["label"].tolist() == [0, 1, 2]
    assert out["meta"]["name"] == ["s0", "s1", "s2"]  # strings stay as they came (a list here)
    assert out["meta"]["w"].dtype is gj.float64 and out["meta"]["w"].tolist() == [0, 0.5, 1]
    assert isinstance(out["pt"], Point) and out["pt"].x.tolist() == [0, 1, 2]
    assert out["pt"].y.tolist() == [[0, 0], [1, -1], [2, -2]]
    assert isinstance(out["pair"], list)  # tuples become lists (PyTorch's rule)
    assert out["pair"][0].tolist() == [0, 1, 2] and out["pair"][1].dtype is gj.float64
    assert isinstance(out["seq"], list) and out["seq"][0].tolist() == [0, 1, 2]
    assert [t.tolist() for t in out["seq"][1]] == [[0, 1, 2], [1, 2, 3]]


def test_collate_strings_in_tuples_stay_a_tuple():
    out = default_collate([(gj.tensor([1.0]), "a"), (gj.tensor([2.0]), "b")])
    assert out[0].tolist() == [[1.0], [2.0]] and out[1] == ("a", "b")


def test_collate_ragged_sequences_error():
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])


def test_collate_keeps_mapping_type():
    batch = [collections.OrderedDict(a=1), collections.OrderedDict(a=2)]
    out = default_collate(batch)
    assert type(out) is collections.OrderedDict and out["a"].tolist() == [1, 2]


def test_default_convert():
    arr = np.arange(3, dtype=np.float64)
    out = default_convert({"a": arr, "b": (np.int64(2), "s"), "c": [np.float32(1)], "d": 7})
    assert out["a"].dtype is gj.float64 and out["a"].tolist() == [0, 1, 2]
    assert isinstance(out["b"], list) and out["b"][0].item() == 2 and out["b"][1] == "s"
    assert out["c"][0].dtype is gj.float32 and out["d"] == 7
    t = gj.tensor([1])
    assert default_convert(t) is t
    strs = np.array(["x"])
    assert default_convert(strs) is strs


# ---- DataLoader, one process -------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n,bs,drop_last", [
    (10, 1, False), (10, 3, False), (10, 3, True), (10, 5, True), (10, 10, False),
    (10, 11, False), (10, 11, True), (7, 2, False),
])
def test_loader_batches_equal_manual_slicing(rng, n, bs, drop_last, per_sample):
    x_np = rng.standard_normal((n, 3)).astype(np.float32)
    y_np = rng.integers(0, 5, n)
    # default_collate itself gathers TensorDataset rows at once; a wrapper of it goes sample
    # by sample: both must slice the same.
    collate = (lambda b: default_collate(b)) if per_sample else None
    loader = DataLoader(TensorDataset(gj.tensor(x_np), gj.tensor(y_np)), batch_size=bs,
                        drop_last=drop_last, collate_fn=collate)
    batches = list(loader)
    want_count = n // bs if drop_last else math.ceil(n / bs)
    assert len(loader) == want_count == len(batches)
    for k, (xb, yb) in enumerate(batches):
        assert xb.dtype is gj.float32 and yb.dtype is gj.int64
        np.testing.assert_array_equal(xb.numpy(), x_np[k * bs:(k + 1) * bs])
        np.testing.assert_array_equal(yb.numpy(), y_np[k * bs:(k + 1) * bs])


def test_tensor_dataset_gather_matches_samples():
    x = gj.arange(40).reshape(20, 2).float()
    y = gj.arange(20)
    inner = Subset(TensorDataset(x, y), list(range(19, -1, -1)))
    ds = Subset(inner, [3, 0, 7, 7, 12, 19, 5])  # a Subset of a Subset, a repeated index
    fast = list(DataLoader(ds, batch_size=3))
    slow = list(DataLoader(ds, batch_size=3, collate_fn=lambda b: default_collate(b)))
    _assert_same_batches(fast, slow)
    assert fast[0][1].tolist() == [16, 19, 12] and isinstance(fast[0], list)
    # Tensors that need grad take the sample path, and the batch keeps its graph.
    w = gj.ones(4, 2, requires_grad=True)
    (xb,) = next(iter(DataLoader(TensorDataset(w), batch_size=4)))
    xb.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0]] * 4


def test_loader_default_batch_size_is_one():
    batches = list(DataLoader(Squares(3)))
    assert len(batches) == 3
    assert batches[2][0].tolist() == [[2.0, 4.0]] and batches[2][1].tolist() == [2]


def test_loader_shuffle_epoch_is_a_permutation():
    loader = DataLoader(Squares(23), batch_size=4, shuffle=True)
    epoch1 = [i for _, y in loader for i in y.tolist()]
    epoch2 = [i for _, y in loader for i in y.tolist()]
    assert sorted(epoch1) == sorted(epoch2) == list(range(23))
    assert epoch1 != epoch2 and epoch1 != list(range(23))
    assert len(loader) == 6


def test_loader_shuffle_seeded_by_manual_seed():
    def order(**kw):
        return [y.tolist() for _, y in DataLoader(Squares(30), batch_size=7, shuffle=True, **kw)]

    gj.manual_seed(0)
    a = order()
    gj.manual_seed(0)
    assert order() == a  # two loaders, one seed: the same batches
    gj.manual_seed(1)
    assert order() != a
    assert order(generator=np.random.default_rng(4)) == order(generator=np.random.default_rng(4))
    assert order(generator=np.random.default_rng(4)) != order(generator=np.random.default_rng(5))


def test_loader_without_batching():
    loader = DataLoader(Squares(3), batch_size=None)
    items = list(loader)
    assert len(loader) == 3 and items[1][0].tolist() == [1.0, 1.0] and items[1][1] == 1
    arrays = list(DataLoader([np.ones(2, np.float32)], batch_size=None))
    assert isinstance(arrays[0], gj.Tensor) and arrays[0].shape == (2,)


def test_loader_custom_sampler_batch_sampler_collate():
    loader = DataLoader(Squares(6), batch_size=2, sampler=[5, 4, 3, 2, 1, 0])
    assert [y.tolist() for _, y in loader] == [[5, 4], [3, 2], [1, 0]]
    loader = DataLoader(Squares(6), batch_sampler=[[0, 1, 2], [5]])
    assert [y.tolist() for _, y in loader] == [[0, 1, 2], [5]] and len(loader) == 2
    loader = DataLoader(Squares(5), batch_size=2, collate_fn=lambda b: [s[1] for s in b])
    assert list(loader) == [[0, 1], [2, 3], [4]]


def test_loader_getitems_is_used_for_batches():
    class Batched(Squares):
        def __getitems__(self, indices):
            return [(None, -i) for i in indices]

    loader = DataLoader(Batched(4), batch_size=2, collate_fn=lambda b: [s[1] for s in b])
    assert list(loader) == [[0, -1], [-2, -3]]


def test_loader_option_errors():
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(Squares(3), sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(Squares(3), batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="mutually exclusive with drop_last"):
        DataLoader(Squares(3), batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(Squares(3), num_workers=-1)
    with pytest.raises(ValueError, match="timeout option should be non-negative"):
        DataLoader(Squares(3), timeout=-1)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified"):
        DataLoader(Squares(3), prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(Squares(3), persistent_workers=True)
    with pytest.raises(ValueError, match="multiprocessing_context can only be used"):
        DataLoader(Squares(3), multiprocessing_context="spawn")
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        DataLoader(Range(0, 3), shuffle=True)
    loader = DataLoader(Squares(3), pin_memory=True)  # accepted, nothing to pin on the CPU
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        loader.batch_size = 4
    assert DataLoader(Squares(3), num_workers=2).prefetch_factor == 2


@pytest.mark.parametrize("bs,drop_last,want", [
    (4, False, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]),
    (4, True, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (None, False, list(range(10))),
])
def test_loader_iterable_dataset(bs, drop_last, want):
    loader = DataLoader(Range(0, 10), batch_size=bs, drop_last=drop_last)
    got = [b.tolist() if isinstance(b, gj.Tensor) and b.ndim else int(b) for b in loader]
    assert got == want and len(loader) == len(want)


def test_len_of_iterable_dataset_without_len_is_a_type_error():
    class NoLen(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(TypeError):
        len(DataLoader(NoLen()))


# ---- DataLoader, worker processes ------------------------------------------------------


def test_workers_equal_single_process():
    ds = Squares(37)
    with _deadline(30):
        for kw in ({"batch_size": 4}, {"batch_size": 5, "drop_last": True, "shuffle": True}):
            gj.manual_seed(7)
            want = list(DataLoader(ds, **kw))
            gj.manual_seed(7)
            loader = DataLoader(ds, num_workers=2, **kw)
            got = list(loader)
            assert len(loader) == len(got)
            _assert_same_batches(got, want)


def test_workers_return_batches_in_order():
    # Batch 0 (worker 0) is slow, so batches 1 and 2 arrive first; they must wait.
    ds = Slow(12, {0: 0.3, 3: 0.1})
    with _deadline(30):
        got = [b.tolist() for b in DataLoader(ds, batch_size=2, num_workers=2, prefetch_factor=3)]
    assert got == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]


def test_worker_info_seeds_and_init_fn():
    assert get_worker_info() is None
    with _deadline(30):
        gj.manual_seed(21)
        first = list(DataLoader(WhoLoads(), batch_size=2, num_workers=2,
                                worker_init_fn=_mark_init))
        gj.manual_seed(21)
        again = list(DataLoader(WhoLoads(), batch_size=2, num_workers=2,
                                worker_init_fn=_mark_init))
    assert [b["i"].tolist() for b in first] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    ids = [b["id"].tolist() for b in first]
    assert ids == [[0, 0], [1, 1], [0, 0], [1, 1]]  # tasks go round-robin over the workers
    assert [b["init"].tolist() for b in first] == [[100 + i[0]] * 2 for i in ids]
    assert all(b["num_workers"].tolist() == [2, 2] for b in first)
    seeds = {b["id"][0].item(): b["seed"][0].item() for b in first}
    assert seeds[1] == seeds[0] + 1  # base_seed + worker_id
    rand = [v for b in first for v in b["rand"].tolist()]
    assert len(set(rand)) == 8  # workers draw different numbers
    assert rand == [v for b in again for v in b["rand"].tolist()]  # reproducible by manual_seed


def test_iterable_dataset_sharded_between_workers():
    with _deadline(30):
        got = [b.tolist() for b in DataLoader(Range(0, 10), batch_size=2, num_workers=2)]
        # Without sharding every worker yields the whole dataset (PyTorch's behaviour).
        dup = [v for b in DataLoader(Range(0, 4, shard=False), batch_size=3, num_workers=2)
               for v in b.tolist()]
    # Worker 0 has 0..4, worker 1 has 5..9; batches alternate between them.
    assert got == [[0, 1], [5, 6], [2, 3], [7, 8], [4], [9]]
    assert sorted(dup) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_worker_exception_is_reraised_with_traceback():
    with _deadline(30):
        it = iter(DataLoader(Failing(bad=5), batch_size=2, num_workers=2))
        assert next(it).tolist() == [0, 1]
        assert next(it).tolist() == [2, 3]
        with pytest.raises(ValueError) as info:
            next(it)
        message = str(info.value)
        assert "Caught ValueError in DataLoader worker process 0" in message
        assert "sample 5 is corrupt" in message
        assert "Traceback (most recent call last)" in message and "__getitem__" in message
        assert next(it).tolist() == [6, 7]  # later batches still come, as in PyTorch
        del it


def test_worker_key_error_and_init_fn_error():
    def bad_init(worker_id):
        raise KeyError("no config")

    with _deadline(30):
        with pytest.raises(KeyError) as info:
            list(DataLoader(Failing(bad=1, exc=KeyError), batch_size=2, num_workers=1))
        assert "sample 1 is corrupt" in str(info.value) and "\\n" not in str(info.value)
        with pytest.raises(KeyError, match="no config"):
            list(DataLoader(Squares(4), num_workers=2, worker_init_fn=bad_init))


def test_unpicklable_batch_is_an_error_not_a_hang():
    with _deadline(30):
        with pytest.raises(Exception, match="must be picklable"):
            list(DataLoader(Squares(4), batch_size=2, num_workers=1,
                            collate_fn=lambda b: (lambda: b)))


def test_early_break_does_not_hang_and_stops_workers():
    loader = DataLoader(Slow(200, {}), batch_size=2, num_workers=2)
    with _deadline(20):
        it = iter(loader)
        assert next(it).tolist() == [0, 1]
        workers = list(it._workers)
        del it
        assert not any(w.is_alive() for w in workers)
        for batch in loader:  # the usual way: break out of the loop
            break
        assert batch.tolist() == [0, 1]


def test_timeout_is_honoured(monkeypatch):
    from graphjit.utils.data import dataloader
    monkeypatch.setattr(dataloader, "_SHUTDOWN_JOIN_TIMEOUT", 0.2)
    loader = DataLoader(Sleepy(4, sleep_at=0, seconds=60), num_workers=1, timeout=0.5)
    with _deadline(20):
        start = time.monotonic()
        it = iter(loader)
        with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.5 seconds"):
            next(it)
        assert time.monotonic() - start < 10
        workers = list(it._workers)
        del it  # terminates the worker still sleeping
        assert not any(w.is_alive() for w in workers)


def test_dead_worker_is_reported(monkeypatch):
    from graphjit.utils.data import dataloader
    monkeypatch.setattr(dataloader, "STATUS_CHECK_INTERVAL", 0.1)
    with _deadline(20):
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            list(DataLoader(Dies(), batch_size=2, num_workers=2))


def test_persistent_workers_keep_processes():
    ds = Squares(11)
    gj.manual_seed(5)
    want = list(DataLoader(ds, batch_size=3, shuffle=True))
    gj.manual_seed(5)
    loader = DataLoader(ds, batch_size=3, shuffle=True, num_workers=2, persistent_workers=True)
    with _deadline(30):
        _assert_same_batches(list(loader), want)  # the first epoch draws as without workers
        pids = [w.pid for w in loader._iterator._workers]
        for epoch in range(2):
            if epoch:
                for _ in loader:  # an epoch cut short: its leftovers must not leak into the next
                    break
            batches = list(loader)
            assert [w.pid for w in loader._iterator._workers] == pids
            assert sorted(i for _, y in batches for i in y.tolist()) == list(range(11))
            for x, y in batches:
                assert x.tolist() == [[i, i * i] for i in y.tolist()]
        workers = loader._iterator._workers
        del loader
        assert not any(w.is_alive() for w in workers)


def test_persistent_workers_with_iterable_dataset():
    loader = DataLoader(Range(0, 6), batch_size=2, num_workers=2, persistent_workers=True)
    with _deadline(30):
        assert [b.tolist() for b in loader] == [[0, 1], [3, 4], [2], [5]]
        assert [b.tolist() for b in loader] == [[0, 1], [3, 4], [2], [5]]


def test_spawn_start_method():
    # Everything a worker needs travels by pickle: the spawn-safe path.
    loader = DataLoader(Squares(6), batch_size=4, num_workers=1, multiprocessing_context="spawn")
    with _deadline(60):
        _assert_same_batches(list(loader), list(DataLoader(Squares(6), batch_size=4)))


def test_package_access():
    assert gj.utils.data.DataLoader is DataLoader
    assert D.random_split is random_split
