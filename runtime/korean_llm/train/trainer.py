"""The trainer every training stage runs: its TRL trainer class (or Unsloth's patched one) with `StageTrainerMixin`.

The mixin overrides private methods of transformers' `Trainer` and TRL's `SFTTrainer`, read and checked against
transformers 5.17.0 (`transformers/trainer.py`: `_track_num_input_tokens`, `_save_checkpoint`, `floating_point_ops`,
`training_step`, `log`, `compute_loss`) and TRL 1.14.2 (`trl/trainer/sft_trainer.py`: `SFTTrainer.compute_loss`
and its `_metrics` / `_total_train_tokens`), the versions `constraints.txt` pins; `tests/test_stage_trainer.py`
holds the behaviour to theirs. Check them again when either pin moves.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("korean_llm")


class StageTrainerMixin:
    """What every stage adds to its TRL trainer: less host work per step, which short GPU steps wait for.

    - Tokens seen: transformers reads the count of each batch back with `.item()`, so the host waits for the GPU
      after every step and the step's host-side work (optimizer launches, callbacks, the next batch) then runs with
      the GPU idle. Here the count is summed on the device and read back when the Trainer logs, saves or ends.
    - FLOPs: transformers counts the model's parameters again for every batch (730 tensors on a 1.5B QLoRA
      model, about 5 ms of Python per step); here they are counted once.
    - Train mode: transformers calls `model.train()`, a walk over every module, at every step (5 ms of Python on
      a 28-layer PEFT model); here at the first step and whenever the model has left train mode (evaluation).
      Unsloth's patched training step does the same.
    - SFT metrics: TRL's `SFTTrainer.compute_loss` reads entropy, token accuracy and the token count back at every
      step (five syncs with its chunked loss). Where TRL's own `compute_loss` is in use with that loss (the HF
      backend; Unsloth replaces it and logs none of them), their sums stay on the device until the Trainer logs:
      the same metrics, weighted by tokens over the logging window instead of averaged per step.
    """

    _pending_tokens: Any = None
    _parameter_count: int | None = None
    _sft_sums: Any = None  # entropy sum, scored tokens, correct tokens, attention-mask tokens since the last log
    _walked: Any = None  # the model whose modules this trainer has put in train mode
    # False for trainers that generate inside their training step (GRPO): generation switches modes itself
    walk_train_mode_once = True

    def _defers_sft_metrics(self, model: Any, inputs: dict[str, Any]) -> bool:
        from transformers import Trainer

        args = self.args  # type: ignore[attr-defined]
        theirs = super().compute_loss.__func__  # type: ignore[misc]
        return (
            # TRL's own SFT loss with transformers' own Trainer below it: not Unsloth's rewrites of either (Unsloth
            # also rebinds trl.SFTTrainer), whose paths this does not reproduce
            (theirs.__module__, theirs.__qualname__) == ("trl.trainer.sft_trainer", "SFTTrainer.compute_loss")
            and Trainer.compute_loss.__module__ == "transformers.trainer"
            and model.training
            and getattr(args, "loss_type", None) == "chunked_nll"
            and not args.use_liger_kernel
            and not getattr(self, "aux_loss_enabled", False)
            and getattr(self, "_tp_size", 1) == 1
            and "attention_mask" in inputs
            and "shift_labels" not in inputs
        )

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
        if not self._defers_sft_metrics(model, inputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)  # type: ignore[misc]
        import torch
        from transformers import Trainer

        inputs["use_cache"] = False  # as TRL's compute_loss
        loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True, **kwargs)  # type: ignore[arg-type]
        parts = (
            outputs.entropy_sum,
            outputs.num_valid_tokens,
            outputs.num_correct_tokens,
            inputs["attention_mask"].sum(),
        )
        dtype = torch.float32 if loss.device.type == "mps" else torch.float64  # exact counts where float64 exists
        local = torch.stack([torch.as_tensor(t, device=loss.device).detach().to(dtype) for t in parts])
        sums = self.accelerator.gather(local).view(-1, 4).sum(0)  # type: ignore[attr-defined]
        self._sft_sums = sums if self._sft_sums is None else self._sft_sums + sums
        return (loss, outputs) if return_outputs else loss

    def _flush_sft_metrics(self) -> None:
        if self._sft_sums is None:
            return
        entropy, scored, correct, tokens = self._sft_sums.tolist()
        self._sft_sums = None
        self._total_train_tokens += int(tokens)  # type: ignore[attr-defined]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        metrics["num_tokens"] = [self._total_train_tokens]  # type: ignore[attr-defined]
        if scored > 0:
            metrics["entropy"].append(entropy / scored)
            metrics["mean_token_accuracy"].append(correct / scored)

    def training_step(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        # `model.training` alone says nothing about the modules below: after loading, the root can be in train mode
        # while the base model's modules are still in eval mode (and skip gradient checkpointing, dropout).
        if not self.walk_train_mode_once or not model.training or self._walked is not model:
            self._walked = model
            return super().training_step(model, *args, **kwargs)  # type: ignore[misc]
        model.train = _already_training(model)  # shadows the method for this call only
        try:
            return super().training_step(model, *args, **kwargs)  # type: ignore[misc]
        finally:
            del model.train

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        name = getattr(self.model, "main_input_name", "input_ids")  # type: ignore[attr-defined]
        if name not in inputs or not hasattr(self.model, "num_parameters"):  # type: ignore[attr-defined]
            return super().floating_point_ops(inputs)  # type: ignore[misc]
        if self._parameter_count is None:
            self._parameter_count = self.model.num_parameters(exclude_embeddings=True)  # type: ignore[attr-defined]
        return 6 * inputs[name].numel() * self._parameter_count

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        import torch

        mode = self.args.include_num_input_tokens_seen  # type: ignore[attr-defined]
        name = getattr(self.model, "main_input_name", "input_ids")  # type: ignore[attr-defined]
        if mode == "no" or name not in inputs:
            super()._track_num_input_tokens(inputs)  # type: ignore[misc]  # (its warning for a missing input)
            return
        ids = inputs[name]
        pad = getattr(self.processing_class, "pad_token_id", None)  # type: ignore[attr-defined]
        if mode == "non_padding" and "attention_mask" in inputs:
            count = inputs["attention_mask"].sum()
        elif mode == "non_padding" and pad is not None:
            count = (ids != pad).sum()
        else:
            count = ids.numel()
        count = torch.as_tensor(count, device=self.args.device, dtype=torch.int64)  # type: ignore[attr-defined]
        count = self.accelerator.gather(count).sum()  # type: ignore[attr-defined]
        self._pending_tokens = count if self._pending_tokens is None else self._pending_tokens + count

    def flush_token_count(self) -> None:
        if self._pending_tokens is not None:
            self.state.num_input_tokens_seen += int(self._pending_tokens.item())  # type: ignore[attr-defined]
            self._pending_tokens = None

    def log(self, *args: Any, **kwargs: Any) -> None:
        self.flush_token_count()
        self._flush_sft_metrics()
        super().log(*args, **kwargs)  # type: ignore[misc]

    def _save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.flush_token_count()
        super()._save_checkpoint(*args, **kwargs)  # type: ignore[misc]

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.flush_token_count()


def _already_training(model: Any) -> Any:
    def train(mode: bool = True) -> Any:
        if mode and model.training:  # still in train mode: nothing to walk
            return model
        return type(model).train(model, mode)

    return train


def stage_trainer(base: type, embedding_lr: float | None = None, *, generates: bool = False) -> type:
    """Subclass a TRL trainer (or Unsloth's patched one) with `StageTrainerMixin`.

    With `embedding_lr`, embed_tokens/lm_head get their own learning rate (the CPT recipe). `generates`: the
    trainer generates inside its training step (GRPO), so train mode is asserted at every step as transformers
    does."""

    class StageTrainer(StageTrainerMixin, base):
        walk_train_mode_once = not generates

        def create_optimizer(self, model: Any = None) -> Any:
            if embedding_lr is None or getattr(self, "optimizer", None) is not None:
                return super().create_optimizer(model)
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[bool, bool], list[Any]] = {}
            for name, param in opt_model.named_parameters():
                if param.requires_grad:
                    is_embedding = "embed_tokens" in name or "lm_head" in name
                    groups.setdefault((is_embedding, name in decay), []).append(param)
            param_groups = [
                {
                    "params": params,
                    "weight_decay": self.args.weight_decay if decayed else 0.0,
                    **({"lr": embedding_lr} if is_embedding else {}),
                }
                for (is_embedding, decayed), params in groups.items()
            ]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
            return self.optimizer

    # Unsloth and TRL look at trainer class names ("...SFTTrainer"): keep the base's name in ours.
    StageTrainer.__name__ = StageTrainer.__qualname__ = f"Stage{base.__name__}"
    return StageTrainer
