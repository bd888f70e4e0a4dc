"""Same config, same `run.seed` -> same model: seeding, thread count and deterministic kernels.

Where randomness enters a training stage, in order:

1. the LoRA adapter's initial weights (PEFT draws `lora_A` from torch's global generator when the adapter is
   created, before the Trainer exists): `seed_for_model` seeds every generator right before the model is loaded;
2. the Trainer's own draws (data order, dropout): transformers 5.17.0 `Trainer.__init__` calls
   `set_seed(args.seed)` (trainer.py, line 409) and seeds the train sampler from `args.data_seed or args.seed`
   (line 1140); `build_args` passes `run.seed` as `seed`;
3. on a resume, the generators' states come back from the checkpoint's `rng_state.pth`
   (`Trainer._load_rng_state`).

What stays machine-dependent on the CPU is the reduction order of matrix products, which follows the number of
threads: `run.num_threads` pins it (the manifest records the count used either way). On CUDA, cuBLAS and cuDNN
pick kernels with atomics unless told not to: `run.deterministic` asks PyTorch for deterministic algorithms
(`torch.use_deterministic_algorithms`) with the workspace setting cuBLAS needs for it. Kernels that have no
deterministic form (bitsandbytes' 4-bit matmuls, Unsloth's Triton kernels, flash-attention's backward) are
not covered: PyTorch warns about the ones it knows of instead of failing (`warn_only=True`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from korean_llm.config import StageConfig

log = logging.getLogger("korean_llm")

# cuBLAS is deterministic only with a fixed workspace (CUDA docs, "Results reproducibility"); PyTorch raises
# in deterministic mode without one. It must be set before the first cuBLAS handle is created.
CUBLAS_WORKSPACE = ":4096:8"


def configure(cfg: StageConfig) -> dict[str, Any]:
    """Apply `run.num_threads` and `run.deterministic` to this process; return what was applied, for the manifest."""
    import torch

    if cfg.run.num_threads is not None:
        torch.set_num_threads(cfg.run.num_threads)
    applied: dict[str, Any] = {
        "seed": cfg.run.seed,
        "torch_threads": torch.get_num_threads(),
        "deterministic": cfg.run.deterministic,
    }
    if cfg.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        applied["cublas_workspace_config"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]
    return applied


def seed_for_model(cfg: StageConfig) -> None:
    """Seed Python's, NumPy's and torch's generators (every device) with `run.seed` before a model is built."""
    from transformers import set_seed

    set_seed(cfg.run.seed)
