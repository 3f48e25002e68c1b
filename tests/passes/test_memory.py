"""passes/memory: buffer liveness and peak bytes, on IR text and random graphs."""
import textwrap

import numpy as np
import pytest

from graphjit.ir import parse_graph
from graphjit.shapes import numel
from passes.dce import dce
from passes.memory import live_ranges, peak_bytes

from test_fuse import random_graph


def test_a_chain_holds_two_buffers_at_a_time_and_reshapes_are_free():
    g = parse_graph(textwrap.dedent("""
    graph f(%x: f32[256] {arg}) {
      %0 = exp(%x) : f32[256]
      %1 = reshape(%0, shape=[16, 16]) : f32[16,16]
      %2 = neg(%1) : f32[16,16]
      %3 = sin(%2) : f32[16,16]
      %4 = sum(%3, dims=[0, 1], keepdim=false) : f32[]
      return %4
    }""").strip())
    ranges = live_ranges(g)
    n = g.nodes
    assert ranges[n[0].out] == (0, 2)      # read through the reshape by %2
    assert n[1].out not in ranges          # the reshape owns no buffer
    assert ranges[n[4].out] == (4, 5)      # the output lives to the end
    assert peak_bytes(g) == 2 * 1024       # never more than two 1 KiB buffers at once


@pytest.mark.parametrize("seed", range(30))
def test_peak_is_between_the_largest_buffer_and_all_of_them(seed):
    g = random_graph(np.random.default_rng(seed))
    ranges = live_ranges(g)
    sizes = [numel(v.shape) * v.dtype.itemsize for v in ranges]
    peak = peak_bytes(g)
    assert max(sizes) <= peak <= sum(sizes)
    # Brute force: at every node, the buffers whose range covers it.
    brute = max(sum(numel(v.shape) * v.dtype.itemsize for v, (a, b) in ranges.items()
                    if a <= i <= b) for i in range(len(g.nodes)))
    assert peak == brute


# ---- the buffer plan ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(60))
def test_the_plan_never_shares_a_buffer_between_two_live_values(seed):
    from passes.fuse import fuse
    from passes.memory import buffer_owner, plan_buffers
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n_nodes=int(rng.integers(6, 30)))
    if seed % 2:
        g = dce.run(fuse.run(g))  # multi-result nodes too
    owner = buffer_owner(g)
    results = {owner[v] for v in g.outputs}
    temps = [v for n in g.nodes for v in n.outs if owner[v] is v and v not in results]
    slot_of, slots = plan_buffers(g, temps, owner)
    assert set(slot_of) == set(temps)
    ranges = live_ranges(g, owner)
    for v, k in slot_of.items():
        dtype, size = slots[k]
        assert dtype is v.dtype and size >= int(np.prod(v.shape))
    by_slot = {}
    for v, k in slot_of.items():
        by_slot.setdefault(k, []).append(ranges[v])
    for k, spans in by_slot.items():
        spans.sort()
        for (d0, last0), (d1, _) in zip(spans, spans[1:]):
            assert last0 < d1, f"slot {k} holds two values alive at once: {spans}"
    # Reuse happens: fewer slots than temporaries whenever lifetimes allow it.
    if len(temps) > 3:
        assert len(slots) <= len(temps)


def test_a_chain_of_temporaries_reuses_two_slots():
    g = parse_graph(textwrap.dedent("""
    graph f(%x: f32[256] {arg}, %w: f32[256,256] {arg}) {
      %0 = matmul(%w, %w) : f32[256,256]
      %1 = matmul(%0, %w) : f32[256,256]
      %2 = matmul(%1, %w) : f32[256,256]
      %3 = matmul(%2, %w) : f32[256,256]
      %4 = sum(%3, dims=[0, 1], keepdim=false) : f32[]
      return %4
    }"""))
    from passes.memory import buffer_owner, plan_buffers
    temps = [n.out for n in g.nodes[:4]]
    slot_of, slots = plan_buffers(g, temps, buffer_owner(g))
    assert len(slots) == 2 and slot_of[temps[0]] == slot_of[temps[2]]
