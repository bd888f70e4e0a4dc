"""The CPT and SFT stage sections (the TRL arguments themselves are the free-form `training:` block)."""

from __future__ import annotations

from typing import Literal

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

    # Added as the system turn of rows that have none (None: rows are left as they are; the chat template may add
    # its own). On short chats it is a large share of the tokens: the stage logs and records the share.
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    # auto: pack (padding-free, one attention segment per chat) when the median chat is at most a quarter of
    # model.max_seq_length and the backend's attention keeps packed chats apart without a dense mask; true / false.
    packing: bool | Literal["auto"] = "auto"
    assistant_only_loss: bool = True
