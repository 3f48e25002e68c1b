"""Numba's CUDA simulator as the tests (and users without a GPU) run it: graphjit guards the
simulator's shared-array lookup, which races between a block's threads
([The simulator's shared arrays] in graphjit/cuda.py)."""
import sys
import threading

import numpy as np
import pytest

import graphjit as gj


@pytest.fixture
def switch_often():
    """Python threads switch every microsecond: races between simulated threads show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_threads_that_ask_at_once_get_one_shared_array(switch_often):
    assert gj.cuda.is_simulator()
    from numba.cuda.simulator import kernelapi
    for _ in range(30):
        shared = kernelapi.FakeCUDAShared(0)
        start, got = threading.Barrier(16), []

        def thread():
            start.wait()
            got.append(shared.array(8, np.float32))

        threads = [threading.Thread(target=thread) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 16 and all(a is got[0] for a in got)

