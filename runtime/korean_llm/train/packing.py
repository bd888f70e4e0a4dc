"""SFT packing: which combination of options runs, what `sft.packing: auto` chooses, and what the tokens are spent on.

TRL 1.14.2 (`trainer/sft_trainer.py`) is the ground truth here:

- `packing=True` with `packing_strategy` 'bfd' (the default) or 'bfd_split' always runs padding-free
  (`self.padding_free = args.padding_free or (args.packing and args.packing_strategy in {"bfd", "bfd_split"})`):
  conversations are packed into rows of at most `max_length` tokens, the collator
  (`DataCollatorForLanguageModeling`, `padding_free=True`) flattens the batch into one row, restarts
  `position_ids` at every conversation and masks the label of each conversation's first token. The
  attention then has to keep conversations apart (block-diagonal): transformers 5.17 finds the
  boundaries from the position ids (`masking_utils.find_packed_sequence_indices`) and builds a
  block-diagonal mask for sdpa / eager / flex (a dense (T, T) mask for sdpa) or varlen flash calls for
  `flash_attention_*`; Unsloth 2026.10.9 runs varlen attention per segment (korean_llm.train.packed_attention).
- 'wrapped' packing cuts the token stream into rows regardless of conversation boundaries, without
  position resets: conversations attend to each other. Refused for chats.
- `padding_free=True` without packing raises a ValueError while building the trainer ("max_length is not
  enforced"). Refused up front.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError

log = logging.getLogger("korean_llm")

# `sft.packing: auto` packs when the median conversation is at most this share of max_seq_length.
AUTO_MAX_MEDIAN_SHARE = 0.25
PADDING_FREE_STRATEGIES = ("bfd", "bfd_split")
# transformers attention implementations that run a padding-free row as one varlen call per layer
# (modeling_flash_attention_utils: cu_seqlens from position_ids); sdpa / eager build a dense (T, T) mask.
VARLEN_HF_ATTENTION = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn", "flex_attention")


# What the preference stage records: TRL 1.14.2 has no padding-free preference training to measure.
PREFERENCE_PADDING = (
    "padded: TRL 1.14.2's DPOTrainer turns padding_free off ('temporarily unavailable after a refactor', "
    "trl/trainer/dpo_trainer.py), so preference pairs are padded per batch"
)


@dataclass
class PackingChoice:
    packing: bool
    padding_free: bool
    strategy: str | None
    setting: str  # what the config said: auto, true, false
    reason: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def check_options(cfg: StageConfig) -> None:
    """Refuse, before anything is loaded, every packing / padding-free combination that would not run as asked."""
    training = cfg.training
    where = f"{cfg.source}"
    if "packing" in training:
        raise ConfigError(
            f"{where}: training.packing is set by the stage from sft.packing (auto, true or false); set sft.packing"
        )
    strategy = training.get("packing_strategy", "bfd")
    padding_free = training.get("padding_free")
    if cfg.stage != "sft":
        if padding_free:
            raise ConfigError(
                f"{where}: training.padding_free is not supported by the {cfg.stage} stage: "
                + (
                    "TRL 1.14.2's DPOTrainer turns it off with a warning (trl/trainer/dpo_trainer.py) and pads"
                    if cfg.stage == "rlhf"
                    else "its blocks are full-length, there is no padding to remove"
                )
            )
        return
    if strategy == "wrapped":
        raise ConfigError(
            f"{where}: training.packing_strategy 'wrapped' cuts chats at row boundaries and lets packed chats "
            "attend to each other (no position reset); use 'bfd' (the default, one chat per segment) or 'bfd_split'"
        )
    if strategy not in PADDING_FREE_STRATEGIES:
        raise ConfigError(f"{where}: training.packing_strategy '{strategy}': expected one of bfd, bfd_split")
    if padding_free is False and cfg.sft.packing is True:
        raise ConfigError(
            f"{where}: sft.packing true with training.padding_free false cannot run: TRL packs with '{strategy}' and "
            "always flattens the batch without padding (SFTTrainer: padding_free = args.padding_free or bfd packing); "
            "leave training.padding_free unset"
        )
    if padding_free is True and cfg.sft.packing is False:
        raise ConfigError(
            f"{where}: training.padding_free true needs packing: TRL refuses padding-free batches without it "
            "(max_length would not be enforced); set sft.packing true (padding-free packing) or auto, "
            "or leave training.padding_free unset"
        )


def packed_attention(backend: str, attn_implementation: str | None) -> tuple[bool, str]:
    """Whether the backend keeps packed chats apart with varlen attention, and what it runs."""
    if backend == "unsloth":
        from korean_llm.train.packed_attention import enable_unsloth_varlen

        what = enable_unsloth_varlen()
        return not what.startswith("per-segment"), what
    impl = attn_implementation or "sdpa"
    if impl in VARLEN_HF_ATTENTION:
        return True, f"transformers {impl} (varlen from position ids)"
    return False, f"transformers {impl}: one dense block-diagonal (T, T) mask over the flattened batch"


def unsloth_packed_note() -> str:
    """What the reason of a packed choice on Unsloth adds. Unsloth 2026.10.9 compiles each decoder layer as one
    region for full-length rows (`models/_block_compile.py`) and runs a batch with `packed_seq_lengths` through the
    layer's eager forward (the wrapper's `forward`, line 930) whatever `model.unsloth_block_compile` says, so a
    packed step of a small model at few tokens per step is bound by host work (docs/benchmarks.md)."""
    return (
        "; Unsloth runs packed batches through its eager decoder layer: with a small model and few tokens per step "
        "the step is bound by host work, a larger per_device_train_batch_size keeps the GPU busy (docs/benchmarks.md)"
    )


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def length_summary(lengths: list[int]) -> dict[str, int | float]:
    if not lengths:
        return {"rows": 0}
    return {
        "rows": len(lengths),
        "mean": round(statistics.fmean(lengths), 1),
        "p50": percentile(lengths, 50),
        "p90": percentile(lengths, 90),
        "p99": percentile(lengths, 99),
        "max": max(lengths),
    }


def padded_share(lengths: list[int], batch_size: int, max_length: int, seed: int) -> float:
    """Share of padding in unpacked batches of `batch_size` rows in a seeded random order (each batch padded to its
    longest row, rows cut at `max_length`), as the Trainer's random sampler forms them."""
    if not lengths:
        return 0.0
    order = list(lengths)
    random.Random(seed).shuffle(order)
    slots = real = 0
    for i in range(0, len(order), batch_size):
        chunk = [min(n, max_length) for n in order[i : i + batch_size]]
        slots += max(chunk) * len(chunk)
        real += sum(chunk)
    return 1 - real / slots if slots else 0.0


def choose(cfg: StageConfig, lengths: list[int], backend: str) -> PackingChoice:
    """Resolve `sft.packing` (auto / true / false) against the rows' token lengths and the backend's attention."""
    setting = cfg.sft.packing
    strategy = cfg.training.get("packing_strategy", "bfd")
    max_len = cfg.model.max_seq_length
    batch = int(cfg.training.get("per_device_train_batch_size", 2))
    summary = length_summary(lengths)
    pad = padded_share(lengths, batch, max_len, cfg.run.seed)
    stats = (
        f"median {summary.get('p50', 0)} tokens of max_seq_length {max_len}, "
        f"{pad:.0%} padding unpacked at batch {batch}"
    )
    if setting is False:
        return PackingChoice(False, False, None, "false", f"sft.packing false ({stats})")
    varlen, attention = packed_attention(backend, cfg.model.attn_implementation)
    note = unsloth_packed_note() if backend == "unsloth" else ""
    if setting is True:
        reason = f"sft.packing true ({stats}); attention: {attention}{note}"
        return PackingChoice(True, True, strategy, "true", reason)
    asked = cfg.training.get("padding_free")
    if asked is True:  # padding-free batches need packing in TRL
        reason = f"auto: packed, training.padding_free is true ({stats}){note}"
        return PackingChoice(True, True, strategy, "auto", reason)
    if asked is False:  # TRL's packing is always padding-free
        return PackingChoice(False, False, None, "auto", f"auto: not packed, training.padding_free is false ({stats})")
    short = bool(lengths) and summary["p50"] <= AUTO_MAX_MEDIAN_SHARE * max_len
    if short and varlen:
        reason = f"auto: packed, {stats}; attention: {attention}{note}"
        return PackingChoice(True, True, strategy, "auto", reason)
    if not short:
        reason = f"auto: not packed, the median is over {AUTO_MAX_MEDIAN_SHARE:.0%} of max_seq_length ({stats})"
    else:
        reason = f"auto: not packed, {attention} ({stats}); set sft.packing true to pack anyway"
    return PackingChoice(False, False, None, "auto", reason)


# ----------------------------------------------------------------------------------------- token accounting


def system_turn_tokens(tokenizer: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Tokens of each row's system turn as the chat template renders it (0 without one); cached per prompt text."""
    cache: dict[str, int] = {}
    out = []
    for row in rows:
        first = row["messages"][0]
        if first["role"] != "system":
            out.append(0)
            continue
        text = first["content"]
        if text not in cache:
            ids = tokenizer.apply_chat_template([first], tokenize=True, return_dict=True)["input_ids"]
            cache[text] = len(ids)
        out.append(cache[text])
    return out


def conversation_lengths(tokenizer: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Tokens of each rendered conversation (the chat template, no truncation)."""
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def prepared_counts(dataset: Any) -> tuple[list[int], int, int]:
    """(conversation lengths, tokens, loss tokens) of a dataset as SFTTrainer prepared it (packed or not)."""
    lengths: list[int] = []
    tokens = loss = 0
    has_seq = "seq_lengths" in dataset.column_names
    for row in dataset:
        ids, labels = row["input_ids"], row["labels"]
        tokens += len(ids)
        loss += sum(1 for x in labels if x != -100)
        lengths += list(row["seq_lengths"]) if has_seq else [len(ids)]
    return lengths, tokens, loss


def token_accounting(
    dataset: Any, system_tokens: list[int], choice: PackingChoice, batch_size: int, max_length: int, seed: int
) -> dict[str, Any]:
    """Shares of system-prompt, prompt (user turns and template) and loss tokens of the prepared dataset, and the
    padding share of its batches (unpacked: estimated for the Trainer's random order; padding-free: none)."""
    lengths, tokens, loss = prepared_counts(dataset)
    system = sum(system_tokens)  # the system turn comes first: truncation keeps it ('keep_start')
    system = min(system, tokens - loss)
    prompt = tokens - loss - system
    padding = 0.0 if choice.padding_free else padded_share(lengths, batch_size, max_length, seed)
    share = (lambda n: round(n / tokens, 4)) if tokens else (lambda n: 0.0)
    return {
        "conversations": len(system_tokens),
        "tokens": tokens,
        "system_prompt_tokens": system,
        "prompt_tokens": prompt,
        "loss_tokens": loss,
        "system_prompt_share": share(system),
        "prompt_share": share(prompt),
        "loss_share": share(loss),
        "padding_share": round(padding, 4),
        "lengths": length_summary(lengths),
    }


def flat_metrics(acc: dict[str, Any]) -> dict[str, float | int]:
    """The accounting as flat numbers for the manifest's metrics (what tracking records)."""
    out = {k: v for k, v in acc.items() if isinstance(v, int | float) and k != "conversations"}
    out.update({f"length_{k}": v for k, v in acc["lengths"].items() if k in ("p50", "p90", "p99", "max")})
    return out


def describe(acc: dict[str, Any]) -> str:
    lens = acc["lengths"]
    return (
        f"{acc['tokens']:,} tokens in {acc['conversations']:,} conversations (p50 {lens.get('p50')}, "
        f"p90 {lens.get('p90')}, p99 {lens.get('p99')}): system prompt {acc['system_prompt_share']:.1%}, "
        f"prompt {acc['prompt_share']:.1%}, loss {acc['loss_share']:.1%}; padding {acc['padding_share']:.1%}"
    )
