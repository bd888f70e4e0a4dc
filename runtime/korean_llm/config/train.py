"""The CPT and SFT stage sections (the TRL arguments themselves are the free-form `training:` block)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from korean_llm.config.base import DEFAULT_SYSTEM_PROMPT, Strict
from korean_llm.config.data import DataSource


class CptConfig(Strict):
    """Continued pre-training: raw text packed into fixed-length blocks, loss on every token."""

    block_size: int | None = Field(None, ge=16)  # default: model.max_seq_length
    # Token appended after every document; None: `<|endoftext|>` when the tokenizer has it, else its eos.
    document_separator: str | None = None
    num_proc: int = Field(1, ge=1)  # tokenizer workers
    # After the vocab stage: the first steps train only the new tokens' rows of embed_tokens (and of an untied
    # lm_head) with everything else frozen, then the configured LoRA / embedding training starts (EEVE's schedule).
    embedding_warmup_steps: int = Field(0, ge=0)
    embedding_warmup_learning_rate: float | None = Field(None, gt=0)  # None: lora.embedding_learning_rate or lr


class VocabConfig(Strict):
    """Korean vocabulary extension of a byte-level BPE base before CPT (stages/vocab).

    A Korean BPE is trained with `tokenizers` on the stage's `data.sources` (the cleaned CPT corpus); up to
    `max_new_tokens` of its tokens that the base splits are added as BPE merges learned on the base's own
    segmentation, most frequent first; existing ids and the tokenization of text without Hangul do not change.
    """

    max_new_tokens: int = Field(16000, ge=1)
    # Size of the Korean BPE whose tokens are the candidates.
    korean_vocab_size: int = Field(32000, ge=300)
    # A merge must occur at least this often in the corpus (as the base tokenizer leaves it) to be added.
    min_frequency: int = Field(2, ge=1)
    # Stop reading the corpus after this many characters (None: all of it).
    max_training_chars: int | None = Field(200_000_000, ge=1)
    # Rows of the resized embedding matrix are a multiple of this (tensor-core friendly shapes).
    pad_to_multiple_of: int | None = Field(64, ge=1)
    # Extra texts on which fertility before/after is reported in the manifest (e.g. held-out documents).
    fertility_sources: list[DataSource] = Field(default_factory=list)


class SftConfig(Strict):
    """Supervised fine-tuning on chats: loss only on assistant tokens."""

    # Added as the system turn of rows that have none (None: rows are left as they are; the chat template may add
    # its own). On short chats it is a large share of the tokens: the stage logs and records the share.
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    # auto: pack (padding-free, one attention segment per chat) when the median chat is at most a quarter of
    # model.max_seq_length and the backend's attention keeps packed chats apart without a dense mask; true / false.
    packing: bool | Literal["auto"] = "auto"
    assistant_only_loss: bool = True
