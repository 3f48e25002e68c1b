"""passes/memory and the buffer plan it records (graphjit/ir/buffers.py): liveness, peak
bytes, workspace slots and in-place updates, on IR text and random graphs."""
import textwrap

import numpy as np
import pytest

from graphjit.ir import parse_graph
from graphjit.ir.buffers import (assign_slots, buffer_owner, live_ranges, peak_bytes, plan_buffers,
                                 plan_of)
from graphjit.shapes import numel
from passes.dce import dce
from passes.memory import memory

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
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n_nodes=int(rng.integers(6, 30)))
    if seed % 2:
        g = dce.run(fuse.run(g))  # multi-result nodes too
    owner = buffer_owner(g)
    results = {owner[v] for v in g.outputs}
    temps = [v for n in g.nodes for v in n.outs if owner[v] is v and v not in results]
    slot_of, slots = assign_slots(g, temps, owner)
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
    # The plan of the whole graph: its temporaries are those, slotted the same way.
    plan = plan_buffers(g)
    assert plan.temps == temps and plan.slot_of == slot_of and plan.slots == slots


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
    temps = [n.out for n in g.nodes[:4]]
    slot_of, slots = assign_slots(g, temps, buffer_owner(g))
    assert len(slots) == 2 and slot_of[temps[0]] == slot_of[temps[2]]


STEP = """
graph step(%x: f32[4,3] {arg}, %w: f32[3,3] {param}, %m: f32[3,3] {state}, %n: f32[] {state}, %lr: f32[] {hyper}) {
  %0 = matmul(%x, %w) : f32[4,3]
  %1 = sum(%0, dims=[0, 1], keepdim=false) : f32[]
  %2 = full(shape=[], value=1.0, dtype=f32) : f32[]
  %3 = add(%n, %2) : f32[]
  %4 = mul(%m, %lr) : f32[3,3]
  %5 = sub(%w, %4) : f32[3,3]
  return %1
  update %w <- %5
  update %n <- %3
}"""


def test_the_pass_records_the_plan_the_backends_read():
    g = parse_graph(STEP)
    g = memory.run(g)
    plan = g.buffer_plan
    assert plan_of(g) is plan  # what a code generator reads
    # %5 into w's buffer (elementwise, reads w at the index it writes); %3 into n's.
    assert {t.name for t in plan.in_place.values()} == {"w", "n"}
    assert plan.temps == [g.nodes[i].out for i in (0, 2, 4)]  # the product, the 1, %4
    assert memory.last_stats["in_place"] == ["n", "w"]
    # A graph changed after the pass is planned again, never with the stale plan.
    g.outputs = [g.nodes[0].out]
    assert plan_of(g) is not plan and g.nodes[0].out not in plan_of(g).temps


def test_host_values_take_no_buffer_and_are_never_updated_in_place():
    g = parse_graph(STEP)
    g.host_inputs = [v for v in g.inputs if v.name in ("n", "lr")]
    plan = plan_buffers(g)
    assert {t.name for t in plan.in_place.values()} == {"w"}  # not the host step count
    assert g.nodes[3].out in plan.host and g.nodes[3].out not in plan.temps


def test_every_pipeline_ends_with_the_memory_pass():
    from passes.pipeline import PIPELINES
    for name, passes in PIPELINES.items():
        assert passes[-1] is memory, name
