"""F.pad (constant, reflect, replicate, circular; negative amounts crop), the padding modules,
F.interpolate (nearest, nearest-exact, linear/bilinear with and without align_corners, area)
and Upsample, against NumPy references, with float64 gradcheck and the errors."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn.functional as F
from graphjit import nn
from graphjit.testing import assert_close, gradcheck

from nn_testing import raises_naming, t64

THIS_FILE = os.path.basename(__file__)


def _raises(exc, call, *fragments):
    return raises_naming(exc, call, *fragments, file=THIS_FILE)


# ---- pad --------------------------------------------------------------------------------------

NP_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_ref(x, pad, mode, value=0.0):
    """NumPy's np.pad; negative amounts crop: after padding (reflect and replicate mirror or
    repeat the whole input), before it (circular wraps the cropped values, as PyTorch)."""
    widths = [(0, 0)] * x.ndim
    crop = [slice(None)] * x.ndim
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        widths[d] = (max(before, 0), max(after, 0))
        crop[d] = (before, after)
    kw = {"constant_values": value} if mode == "constant" else {}
    if mode == "circular":
        x = x[tuple(slice(max(-c[0], 0), x.shape[d] - max(-c[1], 0)) if isinstance(c, tuple)
                    else c for d, c in enumerate(crop))]
        return np.pad(x, widths, mode="wrap")
    out = np.pad(x, widths, mode=NP_MODE[mode], **kw)
    return out[tuple(slice(max(-c[0], 0), out.shape[d] - max(-c[1], 0)) if isinstance(c, tuple)
                     else c for d, c in enumerate(crop))]


PADS = [
    ("constant_2d", (2, 3, 4, 5), (1, 2, 0, 3), "constant", None),
    ("constant_value_3_dims", (2, 3, 4), (1, 1, 2, 0, 1, 1), "constant", -1.5),
    ("constant_negative_crop", (2, 3, 5, 6), (-1, 2, 1, -2), "constant", 0.5),
    ("constant_last_dim_only", (2, 3, 4), (2, 1), "constant", 0.0),
    ("reflect_2d", (1, 2, 4, 5), (2, 1, 3, 0), "reflect", None),
    ("reflect_1d_unbatched", (2, 5), (3, 4), "reflect", None),
    ("replicate_2d", (2, 1, 3, 4), (2, 3, 1, 4), "replicate", None),
    ("replicate_negative", (1, 2, 5, 5), (-1, 2, 2, -2), "replicate", None),
    ("circular_2d", (1, 2, 3, 4), (4, 1, 2, 3), "circular", None),
    ("circular_negative", (1, 1, 4, 5), (2, -1, -2, 1), "circular", None),
    ("reflect_3d", (1, 1, 3, 3, 4), (1, 2, 2, 1, 1, 0), "reflect", None),
]


@pytest.mark.parametrize("shape,pad,mode,value", [pytest.param(*r[1:], id=r[0]) for r in PADS])
def test_pad_matches_numpy_and_gradcheck(shape, pad, mode, value, rng):
    x = rng.standard_normal(shape)
    expected = pad_ref(x, pad, mode, 0.0 if value is None else value)
    kw = {} if value is None else {"value": value}
    out = F.pad(t64(x), pad, mode=mode, **kw)
    assert_close(out, expected, rtol=0, atol=0)
    out32 = F.pad(gj.tensor(x.astype(np.float32)), pad, mode=mode, **kw)
    assert out32.dtype is gj.float32
    small = t64(x[:1], True)
    assert gradcheck(lambda t: F.pad(t, pad, mode=mode, **kw), (small,))


def test_pad_modules(rng):
    x = rng.standard_normal((1, 2, 3, 4))
    assert_close(nn.ZeroPad2d(1)(t64(x)), np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), rtol=0,
                 atol=0)
    assert_close(nn.ConstantPad2d((1, 0, 2, 1), 3.5)(t64(x)),
                 np.pad(x, ((0, 0), (0, 0), (2, 1), (1, 0)), constant_values=3.5), rtol=0, atol=0)
    assert_close(nn.ReflectionPad2d(2)(t64(x)), np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)),
                                                       mode="reflect"), rtol=0, atol=0)
    assert_close(nn.ReplicationPad1d((1, 3))(t64(x[0])),
                 np.pad(x[0], ((0, 0), (0, 0), (1, 3)), mode="edge"), rtol=0, atol=0)
    assert_close(nn.CircularPad2d(1)(t64(x)), np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)),
                                                     mode="wrap"), rtol=0, atol=0)
    assert nn.ZeroPad1d(2)(t64(x[0])).shape == (2, 3, 8)
    assert repr(nn.ZeroPad2d(1)) == "ZeroPad2d((1, 1, 1, 1), value=0.0)"


def test_pad_errors():
    x = gj.randn(1, 2, 3, 3)
    _raises(gj.ShapeError, lambda: F.pad(x, (1, 3, 0, 0), mode="reflect"), "pad",
            "should be less than", "(1, 2, 3, 3)")
    _raises(gj.ShapeError, lambda: F.pad(x, (1, 1), mode="reflect"), "pad", "2-D or 3-D",
            "(1, 2, 3, 3)")  # as PyTorch: two values pad [C, W] or [N, C, W] only
    _raises(gj.ShapeError, lambda: F.pad(x, (4, 0, 0, 0), mode="circular"), "pad",
            "wrap around")
    _raises(ValueError, lambda: F.pad(x, (1, 2, 3)), "pad", "divisible by 2")
    _raises(gj.ShapeError, lambda: F.pad(gj.randn(3), (1, 1, 1, 1)), "pad", "(3,)")
    _raises(ValueError, lambda: F.pad(x, (1, 1), mode="wrap"), "pad", "'wrap'")
    _raises(ValueError, lambda: F.pad(x, (1, 1), mode="reflect", value=2.0), "pad", "value")
    _raises(gj.ShapeError, lambda: F.pad(x, (1, 1, 1, 1, 1, 1, 1, 1), mode="replicate"),
            "pad", "(1, 2, 3, 3)")
    _raises(gj.ShapeError, lambda: F.pad(x, (-2, -2)), "pad", "negative output size")


# ---- interpolate ------------------------------------------------------------------------------

def nearest_ref(x, out_size, scales, exact=False):
    """PyTorch's nearest index per output position: floor(dst * scale) in float32 (with
    legacy nearest's shortcuts for equal and doubled sizes), or floor((dst + 0.5) * scale)."""
    out = x
    for d, o in enumerate(out_size):
        dim = 2 + d
        n = x.shape[dim]
        src = []
        for i in range(o):
            if not exact and o == n:
                j = i
            elif not exact and o == 2 * n:
                j = i // 2
            else:
                s = np.float32(1.0 / scales[d]) if scales[d] else np.float32(n) / np.float32(o)
                j = int(np.floor(np.float32(i + (0.5 if exact else 0.0)) * s))
            src.append(min(j, n - 1))
        out = np.take(out, src, axis=dim)
    return out


def linear_source(n, o, i, scale, align_corners):
    if align_corners:
        s = (n - 1) / (o - 1) if o > 1 else 0.0
        return s * i
    s = 1.0 / scale if scale else n / o
    return max(s * (i + 0.5) - 0.5, 0.0)


def bilinear_ref(x, out_size, scales, align_corners):
    """Each output point from its four neighbours (PyTorch's weights and edge rules)."""
    n, c, h, w = x.shape
    oh, ow = out_size
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        r = linear_source(h, oh, i, scales[0], align_corners)
        r0 = min(int(math.floor(r)), h - 1)
        r1 = r0 + (1 if r0 < h - 1 else 0)
        lr = min(max(r - r0, 0.0), 1.0)
        for j in range(ow):
            q = linear_source(w, ow, j, scales[1], align_corners)
            q0 = min(int(math.floor(q)), w - 1)
            q1 = q0 + (1 if q0 < w - 1 else 0)
            lq = min(max(q - q0, 0.0), 1.0)
            out[:, :, i, j] = ((1 - lr) * ((1 - lq) * x[:, :, r0, q0] + lq * x[:, :, r0, q1])
                               + lr * ((1 - lq) * x[:, :, r1, q0] + lq * x[:, :, r1, q1]))
    return out


INTERP = [
    # id, input shape, kwargs, reference
    ("nearest_size", (1, 2, 3, 5), dict(size=(5, 7))),
    ("nearest_double", (1, 2, 3, 4), dict(scale_factor=2)),
    ("nearest_shrink", (1, 1, 7, 6), dict(size=(3, 4))),
    ("nearest_scale_odd", (1, 1, 3, 4), dict(scale_factor=(1.7, 2.5))),
    ("nearest_recompute", (1, 1, 3, 4), dict(scale_factor=1.7, recompute_scale_factor=True)),
    ("nearest_exact", (1, 2, 4, 3), dict(size=(7, 5), mode="nearest-exact")),
    ("nearest_1d", (2, 2, 5), dict(size=8)),
    ("bilinear", (1, 2, 3, 4), dict(size=(5, 7), mode="bilinear")),
    ("bilinear_align", (1, 2, 3, 4), dict(size=(5, 7), mode="bilinear", align_corners=True)),
    ("bilinear_scale_down", (1, 1, 6, 5), dict(scale_factor=0.6, mode="bilinear")),
    ("bilinear_align_to_one", (1, 1, 3, 4), dict(size=(1, 3), mode="bilinear",
                                                 align_corners=True)),
    ("linear_1d", (2, 1, 4), dict(scale_factor=2.5, mode="linear")),
]


def _interp_ref(x, kw):
    nd = x.ndim - 2
    spatial = x.shape[2:]
    if kw.get("size") is not None:
        size = kw["size"]
        out = tuple(size) if isinstance(size, tuple) else (size,) * nd
        scales = (None,) * nd
    else:
        sf = kw["scale_factor"]
        scales = tuple(sf) if isinstance(sf, tuple) else (float(sf),) * nd
        out = tuple(int(math.floor(n * s)) for n, s in zip(spatial, scales))
        if kw.get("recompute_scale_factor"):
            scales = (None,) * nd
    mode = kw.get("mode", "nearest")
    if mode.startswith("nearest"):
        return nearest_ref(x, out, scales, exact=mode == "nearest-exact")
    if nd == 1:
        return bilinear_ref(x[:, :, None], (1,) + out, (None,) + scales,
                            kw.get("align_corners", False))[:, :, 0]
    return bilinear_ref(x, out, scales, kw.get("align_corners", False))


@pytest.mark.parametrize("shape,kw", [pytest.param(*r[1:], id=r[0]) for r in INTERP])
def test_interpolate_matches_references(shape, kw, rng):
    x = rng.standard_normal(shape)
    expected = _interp_ref(x, kw)
    assert_close(F.interpolate(t64(x), **kw), expected, rtol=1e-12, atol=1e-12)
    out32 = F.interpolate(gj.tensor(x.astype(np.float32)), **kw)
    assert_close(out32, expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    small = t64(x[:1, :1], True)
    assert gradcheck(lambda t: F.interpolate(t, **kw), (small,))


def test_interpolate_area_and_upsample(rng):
    x = rng.standard_normal((1, 2, 6, 4))
    assert_close(F.interpolate(t64(x), size=(3, 2), mode="area"),
                 x.reshape(1, 2, 3, 2, 2, 2).mean(axis=(3, 5)), rtol=1e-12, atol=1e-12)
    up = nn.Upsample(scale_factor=2, mode="nearest")
    assert_close(up(t64(x)), x.repeat(2, axis=2).repeat(2, axis=3), rtol=0, atol=0)
    assert repr(up) == "Upsample(scale_factor=2.0, mode='nearest')"
    assert_close(nn.UpsamplingBilinear2d(size=(5, 7))(t64(x)),
                 bilinear_ref(x, (5, 7), (None, None), True), rtol=1e-12, atol=1e-12)
    assert_close(nn.UpsamplingNearest2d(size=(3, 8))(t64(x)),
                 nearest_ref(x, (3, 8), (None, None)), rtol=0, atol=0)


def test_interpolate_errors():
    x = gj.randn(1, 2, 4, 4)
    _raises(ValueError, lambda: F.interpolate(x, size=(8, 8), align_corners=True),
            "interpolate", "align_corners")
    _raises(gj.ShapeError, lambda: F.interpolate(gj.randn(1, 2, 4), size=8, mode="bilinear"),
            "interpolate", "4-D", "(1, 2, 4)")
    _raises(ValueError, lambda: F.interpolate(x), "interpolate", "size and scale_factor")
    _raises(ValueError, lambda: F.interpolate(x, size=2, scale_factor=2.0), "interpolate")
    _raises(ValueError, lambda: F.interpolate(x, size=2, mode="bicubic"), "interpolate",
            "'bicubic'")
    _raises(gj.ShapeError, lambda: F.interpolate(gj.randn(4, 4), size=2), "interpolate",
            "(4, 4)")
