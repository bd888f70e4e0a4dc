"""Block-diagonal (varlen) attention for padding-free packed batches on Unsloth.

TRL's padding-free collator (trl 1.14.2, `trainer/sft_trainer.py`, `DataCollatorForLanguageModeling`
with `padding_free=True`, which `packing=True` with the default 'bfd' strategy switches on) flattens a
batch into one row and restarts `position_ids` at every conversation. Unsloth 2026.10.9 turns those
resets into segment lengths (`models/llama.py`, `get_packed_info_from_kwargs`) and runs attention per
segment (`utils/attention_dispatch.py`, `run_attention`):

- with flash-attn installed: `flash_attn_varlen_func`, one launch per layer;
- else with torch's `torch.nn.attention.varlen.varlen_attn`, but only where it takes both `window_size`
  and `enable_gqa` (`_load_torch_varlen_attn`: torch >= 2.12);
- else `_sdpa_packed_segments`: one SDPA launch per run of equal segment lengths. Real chats have
  almost no two lengths alike, so a packed batch of 16k tokens in ~100-token chats becomes ~160
  tiny launches per layer, forward, recomputation and backward: the step is launch-bound.

The CUDA image runs torch 2.11 without flash-attn, so it is the third case. `enable_unsloth_varlen`
gives Unsloth the varlen function it looks for: aten's flash-attention varlen kernel
(`torch.ops.aten._flash_attention_forward` / `_flash_attention_backward`, the kernels torch's own
`varlen_attn` calls and Unsloth's `_LeanFlashVarlen` calls on newer torch), which takes grouped K/V
heads natively. It is checked against per-segment SDPA on the device before it is installed.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("korean_llm")

_STATE: dict[str, str] = {}


def _flash_varlen_function() -> Any:
    import torch

    class FlashVarlen(torch.autograd.Function):
        """aten flash varlen forward / backward (torch 2.11 `native_functions.yaml` signatures)."""

        @staticmethod
        def forward(
            ctx: Any,
            q: Any,
            k: Any,
            v: Any,
            cu_q: Any,
            cu_k: Any,
            max_q: int,
            max_k: int,
            is_causal: bool,
            scale: float | None,
            left: int,
            right: int,
        ) -> Any:
            out, lse, seed, offset, _ = torch.ops.aten._flash_attention_forward(
                q,
                k,
                v,
                cu_q,
                cu_k,
                max_q,
                max_k,
                0.0,
                is_causal,
                False,
                scale=scale,
                window_size_left=left,
                window_size_right=right,
            )
            ctx.save_for_backward(q, k, v, cu_q, cu_k, out, lse, seed, offset)
            ctx.args = (max_q, max_k, is_causal, scale, left, right)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            q, k, v, cu_q, cu_k, out, lse, seed, offset = ctx.saved_tensors
            max_q, max_k, is_causal, scale, left, right = ctx.args
            dq, dk, dv = torch.ops.aten._flash_attention_backward(
                grad.contiguous(),
                q,
                k,
                v,
                out,
                lse,
                cu_q,
                cu_k,
                max_q,
                max_k,
                0.0,
                is_causal,
                seed,
                offset,
                scale=scale,
                window_size_left=left,
                window_size_right=right,
            )
            return dq, dk, dv, None, None, None, None, None, None, None, None

    def varlen_attn(
        query: Any,
        key: Any,
        value: Any,
        cu_seq_q: Any,
        cu_seq_k: Any,
        max_q: int,
        max_k: int,
        *,
        scale: float | None = None,
        window_size: tuple[int, int] = (-1, -1),
        enable_gqa: bool = False,
    ) -> Any:
        """torch 2.12's `varlen_attn` signature (what Unsloth calls); (total, heads, dim) tensors, K/V may
        have fewer heads (grouped-query attention: the flash kernel reads each K/V head once per group)."""
        left, right = window_size
        causal = (left, right) == (-1, 0)
        return FlashVarlen.apply(
            query, key, value, cu_seq_q, cu_seq_k, int(max_q), int(max_k), causal, scale, left, -1 if causal else right
        )

    return varlen_attn


def _check(fn: Any) -> float:
    """Largest relative error of `fn` (outputs and input gradients) against per-segment SDPA, bf16, GQA."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device="cuda").manual_seed(0)
    lengths = [37, 1, 200, 64, 131]
    heads, kv_heads, dim = 12, 2, 128
    total = sum(lengths)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()

    q, k, v = rand(total, heads, dim), rand(total, kv_heads, dim), rand(total, kv_heads, dim)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    grad = torch.randn(total, heads, dim, device="cuda", dtype=torch.bfloat16, generator=g)
    out = fn(q, k, v, cu, cu, max(lengths), max(lengths), window_size=(-1, 0), enable_gqa=True)
    got = [out, *torch.autograd.grad(out, (q, k, v), grad)]
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    parts, start = [], 0
    for n in lengths:
        seg = [t[start : start + n].transpose(0, 1).unsqueeze(0) for t in (qf, kf, vf)]
        ks, vs = (s.repeat_interleave(heads // kv_heads, dim=1) for s in seg[1:])
        parts.append(F.scaled_dot_product_attention(seg[0], ks, vs, is_causal=True)[0].transpose(0, 1))
        start += n
    ref_out = torch.cat(parts)
    ref = [ref_out, *torch.autograd.grad(ref_out, (qf, kf, vf), grad.float())]
    return max(float((a.float() - b).norm() / b.norm().clamp_min(1e-12)) for a, b in zip(got, ref, strict=True))


def enable_unsloth_varlen() -> str:
    """Make Unsloth's packed attention one varlen flash launch per layer where it would otherwise run SDPA per
    segment; returns what packed attention runs, for the log and the manifest. Call after Unsloth is imported."""
    if "attention" in _STATE:
        return _STATE["attention"]
    import torch

    try:
        from unsloth.utils import attention_dispatch as dispatch
    except ImportError:
        _STATE["attention"] = "unsloth attention dispatch not found: as Unsloth chooses"
        return _STATE["attention"]
    if getattr(dispatch, "HAS_FLASH_ATTENTION", False):
        _STATE["attention"] = "flash-attn varlen (Unsloth, flash_attn installed)"
    elif getattr(dispatch, "_TORCH_VARLEN_ATTN", None) is not None:
        _STATE["attention"] = "torch varlen_attn (Unsloth, torch >= 2.12)"
    elif not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 8:
        _STATE["attention"] = "per-segment SDPA (Unsloth; flash varlen needs an sm_80+ GPU)"
    else:
        fn = _flash_varlen_function()
        try:
            error = _check(fn)
        except Exception as exc:  # an aten signature this torch does not have: keep Unsloth's own path
            log.warning("packed attention: aten flash varlen unusable on torch %s (%s)", torch.__version__, exc)
            _STATE["attention"] = "per-segment SDPA (Unsloth; aten flash varlen unusable)"
            return _STATE["attention"]
        if error > 2e-2:  # bf16 against fp32 lands near 4e-3
            log.warning("packed attention: aten flash varlen differs from SDPA by %.2e; not used", error)
            _STATE["attention"] = f"per-segment SDPA (Unsloth; flash varlen check failed, error {error:.1e})"
            return _STATE["attention"]
        dispatch._TORCH_VARLEN_ATTN = fn
        _STATE["attention"] = f"aten flash varlen (torch {torch.__version__}; checked, relative error {error:.1e})"
    log.info("packed attention: %s", _STATE["attention"])
    return _STATE["attention"]
