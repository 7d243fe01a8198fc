"""Which PyTorch ops count as doing the problem's work, and a recorder that sees them at run time.

A candidate may use PyTorch to allocate, view and move data; the arithmetic must happen in its kernels.
The recorder sits below autograd (a TorchDispatchMode), so every route into aten is seen: F.linear,
`x @ w`, `tensor.sum()`, nn modules alike.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

DATA_MOVEMENT = frozenset(
    """
    empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones ones_like new_ones
    full full_like new_full fill fill_ zero_ copy_ clone contiguous view _unsafe_view view_as reshape
    _reshape_alias as_strided expand expand_as permute transpose t squeeze unsqueeze flatten unflatten select
    slice narrow split split_with_sizes chunk unbind cat stack detach alias lift lift_fresh lift_fresh_copy
    _to_copy to resize_ set_ arange scalar_tensor _local_scalar_dense item is_same_size
    _has_compatible_shallow_copy_type index_select repeat movedim swapaxes sym_size sym_stride sym_numel
    sym_storage_offset _make_dep_token record_stream is_nonzero view_as_real view_as_complex diagonal
    """.split()
)

HEAVY = frozenset(
    """
    mm bmm addmm addbmm baddbmm matmul linear dot vdot mv addmv einsum tensordot _convolution convolution
    conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d cudnn_convolution
    mkldnn_convolution _slow_conv2d_forward slow_conv3d_forward sum nansum mean prod amax amin max min var
    std var_mean std_mean norm linalg_vector_norm logsumexp cumsum cumprod logcumsumexp _softmax softmax
    _log_softmax log_softmax native_layer_norm layer_norm native_batch_norm _native_batch_norm_legit
    _native_batch_norm_legit_no_training batch_norm native_group_norm group_norm instance_norm
    _fused_rms_norm rms_norm mse_loss l1_loss smooth_l1_loss huber_loss nll_loss_forward nll_loss2d_forward
    nll_loss cross_entropy_loss binary_cross_entropy binary_cross_entropy_with_logits kl_div
    _scaled_dot_product_flash_attention _scaled_dot_product_efficient_attention
    _scaled_dot_product_cudnn_attention scaled_dot_product_attention _scaled_dot_product_attention_math
    max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices avg_pool1d avg_pool2d
    avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
    _adaptive_avg_pool3d adaptive_max_pool2d adaptive_max_pool3d topk sort argmax argmin median kthvalue
    """.split()
)


def compute_ops(counts: dict[str, int]) -> set[str]:
    return {name for name, n in counts.items() if n and name not in DATA_MOVEMENT}


def fallback_ops(candidate: dict[str, int], reference: dict[str, int]) -> list[str]:
    """PyTorch ops that mean the candidate left the work to PyTorch.

    Any heavy op (matmul, reductions, norms, softmax, losses, ...) counts; so does re-running every compute
    op of the reference, which catches elementwise problems answered in PyTorch beside a decoy kernel.
    """
    cand = compute_ops(candidate)
    ref = compute_ops(reference)
    found = cand & HEAVY
    if ref and ref <= cand:
        found |= ref
    return sorted(found)


class OpRecorder(TorchDispatchMode):
    """Counts aten ops by name while `active`; the launch hooks pause it during kernel launches."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.active = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if self.active:
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def is_plain_tensor(x: object) -> bool:
    return type(x) is torch.Tensor
