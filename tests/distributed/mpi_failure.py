"""An MPI program that fails on purpose (run by test_mpi.py under ``mpiexec -n 2``):

    raise             rank 1 raises before a collective rank 0 is waiting in
    timeout-eager     rank 1 never joins rank 0's all_reduce (a 1.5 s timeout)
    timeout-compiled  the same, the all_reduce inside a compiled function

Each must end the whole job quickly with a non-zero status and a message naming the
rank ([Abort on error] and [Collective timeouts] in graphjit/distributed/group.py).
"""
import sys
import time

import graphjit as gj
import graphjit.distributed as dist

mode = sys.argv[1]
dist.init_process_group("mpi", timeout=1.5)
rank = dist.get_rank()


@gj.compile
def reduce_twice(x):
    y = x * 2.0
    dist.all_reduce(y)
    return y


if rank == 1:
    if mode == "raise":
        raise ValueError("rank 1 fails on purpose")
    time.sleep(120)  # never joins; the abort ends it
    sys.exit(0)
if mode == "timeout-compiled":
    reduce_twice(gj.ones(4))
else:
    dist.all_reduce(gj.ones(4))
print("rank 0 should not get here", flush=True)
