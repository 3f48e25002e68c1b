"""What both targets' ``rand_uniform`` kernels share: the Philox4x64-10 rounds in 64-bit
unsigned arithmetic, and a word as a float in [0, 1), the same bits as NumPy's Philox in
eager mode (see [Counter-based random numbers] in graphjit/ops/random.py). The CPU walks
the counter blocks in a loop (backend/cpu/random.py), CUDA one thread per block
(backend/cuda/random.py)."""
from __future__ import annotations

from ...ops.random import KEY_STEPS, MULTIPLIERS, ROUNDS


def philox_lines(k, block: str, seed: str, offset: str) -> list:
    """``(lines, words)``: source lines computing the four words of counter block ``offset +
    block`` under key ``seed`` (uint64 variables) into the locals ``words``, named by
    ``k.fresh``. A 64 x 64 -> 128-bit product is four 32-bit ones: no intermediate passes
    2**64."""
    u = "np.uint64"
    names = {n: k.fresh(n) for n in ("c0", "c1", "c2", "c3", "k0", "k1", "r", "xl", "xh",
                                     "p0", "p1", "p2", "p3", "mid", "hi0", "lo0", "hi1", "lo1")}
    c0, c1, c2, c3, k0, k1, r = (names[n] for n in ("c0", "c1", "c2", "c3", "k0", "k1", "r"))
    lines = [f"{c0} = {offset} + {u}({block})", f"{c1} = {u}(0)", f"{c2} = {u}(0)",
             f"{c3} = {u}(0)", f"{k0} = {seed}", f"{k1} = {u}(0)",
             f"for {r} in range({ROUNDS}):"]

    def mulhilo(m, x, hi, lo):
        ml, mh = m & 0xFFFFFFFF, m >> 32
        n = names
        return [f"    {n['xl']} = {x} & {u}(0xFFFFFFFF)",
                f"    {n['xh']} = {x} >> {u}(32)",
                f"    {n['p0']} = {u}({ml}) * {n['xl']}",
                f"    {n['p1']} = {u}({ml}) * {n['xh']}",
                f"    {n['p2']} = {u}({mh}) * {n['xl']}",
                f"    {n['p3']} = {u}({mh}) * {n['xh']}",
                f"    {n['mid']} = ({n['p0']} >> {u}(32)) + ({n['p1']} & {u}(0xFFFFFFFF)) + "
                f"({n['p2']} & {u}(0xFFFFFFFF))",
                f"    {hi} = {n['p3']} + ({n['p1']} >> {u}(32)) + ({n['p2']} >> {u}(32)) + "
                f"({n['mid']} >> {u}(32))",
                f"    {lo} = {u}({m}) * {x}"]

    lines += mulhilo(MULTIPLIERS[0], c0, names["hi0"], names["lo0"])
    lines += mulhilo(MULTIPLIERS[1], c2, names["hi1"], names["lo1"])
    lines += [f"    {c0}, {c1}, {c2}, {c3} = ({names['hi1']} ^ {c1} ^ {k0}), {names['lo1']}, "
              f"({names['hi0']} ^ {c3} ^ {k1}), {names['lo0']}",
              f"    {k0} = {k0} + {u}({KEY_STEPS[0]})",
              f"    {k1} = {k1} + {u}({KEY_STEPS[1]})"]
    return lines, (c0, c1, c2, c3)


def philox(k, block: str, seed: str, offset: str) -> tuple:
    """Write ``philox_lines`` into the kernel ``k``; returns the four words' names."""
    lines, words = philox_lines(k, block, seed, offset)
    for text in lines:
        k.line(text)
    return words


def load_key(k) -> tuple:
    """Lines loading the kernel's seed and counter offset (its inputs 0 and 1, one element
    each) into uint64 locals; returns their names."""
    seed, offset = k.fresh("seed"), k.fresh("offset")
    k.line(f"{seed} = np.uint64({k.ins[0]}[0])")
    k.line(f"{offset} = np.uint64({k.ins[1]}[0])")
    return seed, offset


def unit_float(word: str, dtype) -> str:
    """A word as a float in [0, 1), exactly as ``graphjit.ops.random.to_unit_float``."""
    if dtype.name == "float32":
        return f"np.float32({word} >> np.uint64(40)) * np.float32(5.9604644775390625e-08)"
    return f"np.float64({word} >> np.uint64(11)) * 1.1102230246251565e-16"
