"""The CPT and SFT stage sections (the TRL arguments themselves are the free-form `training:` block)."""

from __future__ import annotations

from pydantic import Field

from korean_llm.config.base import DEFAULT_SYSTEM_PROMPT, Strict


class CptConfig(Strict):
    """Continued pre-training: raw text packed into fixed-length blocks, loss on every token."""

    block_size: int | None = Field(None, ge=16)  # default: model.max_seq_length
    # Token appended after every document; None: `<|endoftext|>` when the tokenizer has it, else its eos.
    document_separator: str | None = None
    num_proc: int = Field(1, ge=1)  # tokenizer workers


class SftConfig(Strict):
    """Supervised fine-tuning on chats: loss only on assistant tokens."""

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    packing: bool = False
    assistant_only_loss: bool = True
