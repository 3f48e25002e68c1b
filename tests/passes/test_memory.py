"""passes/memory: buffer liveness and peak bytes, on IR text and random graphs."""
import textwrap

import numpy as np
import pytest

from graphjit.ir import parse_graph
from graphjit.shapes import numel
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
