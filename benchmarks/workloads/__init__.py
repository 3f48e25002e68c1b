"""The workloads of ``benchmarks/suite.py``, in order (W1 ... W8)."""
from . import mlp, w1_poly, w4_gelu_layernorm, w5_rnn, w6_adam, w7_cifar, w8_resnet

WORKLOADS = {w.key: w for w in (w1_poly.WORKLOAD, mlp.W2, mlp.W3, w4_gelu_layernorm.WORKLOAD,
                                w5_rnn.WORKLOAD, w6_adam.WORKLOAD,
                                w7_cifar.WORKLOAD, w8_resnet.WORKLOAD)}
