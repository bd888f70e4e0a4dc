"""CPT's embedding warm-up after a vocabulary extension (EEVE's first stage: only the new embeddings learn).

With `cpt.embedding_warmup_steps: N`, CPT first trains only the new tokens' rows of `embed_tokens` (and of
`lm_head` when it is not tied) for N steps, everything else frozen, then loads the model again with those
rows and runs the configured LoRA / embedding training. The rows are trained with PEFT's `TrainableTokens`
(peft 0.21.2, `tuners/trainable_tokens/`: the layer keeps a delta only for `token_indices` and writes it
into the weight with `index_copy` in forward; a layer whose weight is tied to the input embedding, such as
a tied `lm_head`, gets a tied adapter that follows the embedding's delta, `TrainableTokensModel.inject_adapter`;
an untied `nn.Linear` lm_head is targeted by name and uses its own rows through `F.linear`). So the
optimizer holds only len(new ids) x hidden values per matrix, not the whole vocabulary.

Phase 1 always runs on transformers + PEFT (Unsloth's `get_peft_model` has no trainable-token option);
phase 2 runs on the configured backend: the warmed rows are written into the base model right after
loading and before LoRA is attached (`models.load_for_training(prepare=...)`).

Resume and SIGTERM: phase 1 works in `<cpt>.partial/embedding_warmup.partial/` with its own checkpoints
and the usual `.complete` markers; SIGTERM saves a checkpoint there and stops (exit 143), a restart
resumes phase 1 from it. When phase 1 ends, its rows are saved to `warm_rows.safetensors`, its checkpoints
are removed and the folder is renamed `embedding_warmup/` (the marker that phase 1 is done); a restart then
goes straight to phase 2, which resumes from its own checkpoints as any CPT run.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError
from korean_llm.observe.metrics import StageMetrics
from korean_llm.pipeline.artifacts import StageDir, safetensors_complete
from korean_llm.pipeline.locking import DirLock
from korean_llm.train.models import InitPoint, Loaded, load_plain, load_tokenizer, torch_dtype

log = logging.getLogger("korean_llm")

WARMUP = "embedding_warmup"
ROWS = "warm_rows.safetensors"


def new_token_ids(cfg: StageConfig, init: InitPoint) -> list[int]:
    prev = init.previous
    if prev is None or prev.stage != "vocab" or "new_token_ids" not in prev.extra:
        raise ConfigError(
            f"{cfg.source}: key 'cpt.embedding_warmup_steps' ({cfg.cpt.embedding_warmup_steps}) needs the vocab "
            f"stage's model (run.previous_stage: vocab), found previous stage {cfg.run.previous_stage!r}"
        )
    first, end = (int(x) for x in prev.extra["new_token_ids"])
    return list(range(first, end))


def _module_name(model: Any, module: Any) -> str:
    for name, mod in model.named_modules():
        if mod is module:
            return name.rsplit(".", 1)[-1]
    raise RuntimeError("embedding module not found in the model")


def warmup_config(cfg: StageConfig) -> StageConfig:
    """The phase-1 config: the stage's training arguments with N steps, only the new rows trainable."""
    steps = cfg.cpt.embedding_warmup_steps
    training = dict(cfg.training)
    for key in ("num_train_epochs", "max_steps", "warmup_ratio"):
        training.pop(key, None)
    training["max_steps"] = steps
    training["save_steps"] = min(int(training.get("save_steps", 200)), steps)
    training["learning_rate"] = (
        cfg.cpt.embedding_warmup_learning_rate
        or cfg.lora.embedding_learning_rate
        or training.get("learning_rate", 2e-4)
    )
    # TRL's chunked loss reads lm_head.weight directly, past the trainable-token layer on lm_head.
    training["loss_type"] = "nll"
    lora = cfg.lora.model_copy(update={"train_embeddings": False, "embedding_learning_rate": None})
    return cfg.model_copy(update={"training": training, "lora": lora})


def _load_rows(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def run_warmup(
    cfg: StageConfig,
    init: InitPoint,
    work: Path,
    metrics: StageMetrics,
    make_blocks: Callable[[Any], Any],
    make_trainer: Callable[[StageConfig, Loaded, Any, StageDir], Any],
    lock: DirLock | None = None,
) -> tuple[Callable[[Any], None], dict[str, Any]]:
    """Phase 1 (or its saved result); returns the function that writes the warmed rows into a loaded model.

    `make_blocks(tokenizer)` packs the stage's data, `make_trainer(cfg, loaded, blocks, stage_dir)` is the stage's
    own trainer (CPT's `build_trainer`), so phase 1 trains exactly as phase 2 does."""
    import torch
    from peft import TrainableTokensConfig, get_peft_model

    from korean_llm.train.loop import train

    ids = new_token_ids(cfg, init)
    sub = StageDir(work, WARMUP)
    rows_path = sub.final / ROWS
    summary: dict[str, Any] = {"embedding_warmup_steps": cfg.cpt.embedding_warmup_steps, "new_tokens": len(ids)}
    if rows_path.is_file() and safetensors_complete(rows_path):
        log.info("cpt: embedding warm-up already done (%s), continuing with the main phase", rows_path)
        summary["embedding_warmup_resumed"] = True
    else:
        sub.work.mkdir(parents=True, exist_ok=True)
        wcfg = warmup_config(cfg)
        tokenizer = load_tokenizer(init, cfg)
        model = load_plain(init.weights, cfg)
        out = model.get_output_embeddings()
        tied = out is None or out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        targets = [_module_name(model, model.get_input_embeddings())]
        if not tied:
            targets.append(_module_name(model, out))
        peft_model = get_peft_model(model, TrainableTokensConfig(target_modules=targets, token_indices=ids))
        loaded = Loaded(peft_model, tokenizer, "hf", str(torch_dtype(cfg.model.dtype)), weights=init.weights)
        trainer = make_trainer(wcfg, loaded, make_blocks(tokenizer), sub)
        log.info("cpt: embedding warm-up, %d steps on %d new rows (%s)", wcfg.training["max_steps"], len(ids), targets)
        result = train(trainer, wcfg, sub, metrics, lock)
        merged: Any = peft_model.merge_and_unload()  # the base model class, untyped for mypy
        index = torch.tensor(ids, dtype=torch.long)
        rows = {"input": merged.get_input_embeddings().weight.detach()[index].float().cpu().contiguous()}
        if not tied:
            rows["output"] = merged.get_output_embeddings().weight.detach()[index].float().cpu().contiguous()
        from safetensors.torch import save_file

        tmp = sub.work / f".{ROWS}.tmp-{os.getpid()}"
        save_file(rows, str(tmp))
        if lock is not None:  # the rows replace, and the checkpoints are deleted, in the shared work folder
            lock.ensure_held(f"publishing the embedding warm-up into {sub.final}")
        os.replace(tmp, sub.work / ROWS)
        shutil.rmtree(sub.checkpoints, ignore_errors=True)
        shutil.rmtree(sub.final, ignore_errors=True)  # a folder left by a crash between these two lines
        os.rename(sub.work, sub.final)  # the warm-up is done once its folder has its final name
        summary.update({f"embedding_warmup/{k}": v for k, v in result.items() if isinstance(v, int | float)})
        del trainer, merged, peft_model, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    rows = _load_rows(rows_path)

    def apply(model: Any) -> None:
        index = torch.tensor(ids, dtype=torch.long)
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb.index_copy_(0, index.to(emb.device), rows["input"].to(emb.device, emb.dtype))
            if "output" in rows:
                head = model.get_output_embeddings().weight
                head.index_copy_(0, index.to(head.device), rows["output"].to(head.device, head.dtype))

    return apply, summary
