"""Convolution layers (``torch.nn``'s): ``Conv1d``, ``Conv2d``, ``ConvTranspose2d``, and the
``Unfold``/``Fold`` block extractors."""
from __future__ import annotations

import math

from .. import creation
from . import functional_conv as F
from . import functional_resample
from ._spatial import _option_error, _tuple
from . import init
from .module import Module
from .parameter import Parameter


class _ConvNd(Module):
    """Shared by the convolutions: PyTorch's parameter shapes and initialisation
    (kaiming_uniform_ with a=sqrt(5) for the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    the bias, fan_in from the weight's dims 1 and up, for the transposed layers too)."""

    _op = "conv"
    _n = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, padding_mode, output_padding=0, device=None, dtype=None):
        super().__init__()
        n, op = self._n, self._op
        if not isinstance(groups, int) or groups < 1:
            raise _option_error(op, f"groups must be a positive integer, got {groups!r}")
        if in_channels % groups:
            raise _option_error(op, "in_channels must be divisible by groups")
        if out_channels % groups:
            raise _option_error(op, "out_channels must be divisible by groups")
        modes = ("zeros", "reflect", "replicate", "circular")
        if padding_mode not in modes:
            raise _option_error(op, f"padding_mode must be one of {modes}, got "
                                    f"{padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple(op, "kernel_size", kernel_size, n, 1)
        self.stride = _tuple(op, "stride", stride, n, 1)
        self.dilation = _tuple(op, "dilation", dilation, n, 1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise _option_error(op, f"invalid padding string {padding!r}, should be one "
                                        "of {'valid', 'same'}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise _option_error(op, "padding='same' is not supported for strided "
                                        "convolutions")
            self.padding = padding
        else:
            self.padding = _tuple(op, "padding", padding, n, 0)
        self.output_padding = _tuple(op, "output_padding", output_padding, n, 0)
        self.groups = groups
        self.padding_mode = padding_mode
        # F.pad's (left, right, top, bottom) for padding_mode != "zeros", last dim first.
        pads = F._conv_padding(op, self.padding, self.kernel_size, self.dilation, self.stride, n)
        self._reversed_padding_repeated_twice = tuple(p for pair in reversed(pads) for p in pair)
        if self._transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(creation.empty(*shape, dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)  # initialised on the host (one random stream), then moved

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
            f"stride={self.stride}"
        if self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def _padded(self, x):
        """(input, padding for the convolution): a non-zeros padding_mode pads with F.pad."""
        if self.padding_mode == "zeros":
            return x, self.padding
        padded = functional_resample.pad(x, self._reversed_padding_repeated_twice,
                                         mode=self.padding_mode)
        return padded, 0


class _Conv(_ConvNd):
    """PyTorch's ``ConvNd`` signature; ``forward`` is ``_fn`` (F.conv1d or F.conv2d)."""

    _fn = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)

    def forward(self, input):
        x, padding = self._padded(input)
        return type(self)._fn(x, self.weight, self.bias, self.stride, padding, self.dilation,
                              self.groups)


class Conv1d(_Conv):
    """1-D convolution over [N, C_in, L]: weight [out_channels, in_channels/groups,
    kernel_size]; ``padding`` ints, "valid" or "same"; ``padding_mode`` "zeros",
    "reflect", "replicate" or "circular"."""

    _op = "Conv1d"
    _n = 1
    _fn = staticmethod(F.conv1d)


class Conv2d(_Conv):
    """2-D convolution over [N, C_in, H, W]: weight [out_channels, in_channels/groups, kH,
    kW]; ``padding`` ints, "valid" or "same"; ``padding_mode`` "zeros", "reflect",
    "replicate" or "circular"."""

    _op = "Conv2d"
    _fn = staticmethod(F.conv2d)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution: weight [in_channels, out_channels/groups, kH, kW].
    ``forward(input, output_size=None)``: ``output_size`` picks the output_padding that
    gives that size, as in PyTorch."""

    _op = "ConvTranspose2d"
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None):
        if padding_mode != "zeros":
            raise _option_error("ConvTranspose2d", f"only 'zeros' padding mode is supported, "
                                                   f"got {padding_mode!r}")
        if isinstance(padding, str):
            raise _option_error("ConvTranspose2d", f"padding must be ints, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, output_padding, device=device,
                         dtype=dtype)

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        output_size = tuple(output_size)[-2:]
        if len(output_size) != 2:
            raise _option_error(self._op, f"output_size must have 2 or 4 elements, got "
                                          f"{output_size!r}")
        spatial = tuple(input.shape[-2:])
        out = []
        for d in range(2):
            smallest = ((spatial[d] - 1) * self.stride[d] - 2 * self.padding[d]
                        + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            largest = smallest + self.stride[d] - 1
            if not smallest <= output_size[d] <= largest:
                raise _option_error(self._op, f"requested an output size of {output_size}, "
                                              f"but valid sizes range from "
                                              f"({smallest}..{largest}) along dim {d} for an "
                                              f"input of shape {tuple(input.shape)}")
            out.append(output_size[d] - smallest)
        return tuple(out)

    def forward(self, input, output_size=None):
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)


class Unfold(Module):
    """``F.unfold`` as a module: sliding blocks as columns [N, C * prod(kernel_size), L]."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.padding, self.stride = padding, stride

    def forward(self, input):
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")


class Fold(Module):
    """``F.fold`` as a module: columns summed back into [N, C, *output_size]."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size, self.dilation = output_size, kernel_size, dilation
        self.padding, self.stride = padding, stride

    def forward(self, input):
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding,
                      self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}")
