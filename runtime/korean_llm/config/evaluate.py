"""The evaluate stage: inputs, metrics and the release gate."""

from __future__ import annotations

from pydantic import Field, model_validator

from korean_llm.config.base import DEFAULT_SYSTEM_PROMPT, Strict
from korean_llm.config.data import DataSource


class GateConfig(Strict):
    """What a candidate must reach to be released; a check left unset (null) is not applied.

    Regression limits compare the candidate with the baseline measured in the same run.
    """

    max_perplexity: float | None = Field(None, gt=0)
    # Task name (the task file's stem, or an lm-eval task name) -> lowest accuracy accepted; "*" applies to every task.
    min_accuracy: dict[str, float] = Field(default_factory=dict)
    # Share of generated answers that are Korean (see evaluate.korean_threshold).
    min_korean_share: float | None = Field(None, ge=0.0, le=1.0)
    # Largest accepted drop in accuracy per task, in absolute points (0.05 = five points), against the baseline.
    max_accuracy_drop: float | None = Field(None, ge=0.0, le=1.0)
    # Largest accepted candidate/baseline perplexity ratio (1.1 = at most 10% worse).
    max_perplexity_ratio: float | None = Field(None, gt=0)
    # Bits per character of the held-out text: comparable across tokenizers (a model with an extended vocabulary).
    max_bits_per_character: float | None = Field(None, gt=0)
    # Largest accepted candidate/baseline bits-per-character ratio.
    max_bits_per_character_ratio: float | None = Field(None, gt=0)
    max_korean_share_drop: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _accuracies_in_range(self) -> GateConfig:
        for task, value in self.min_accuracy.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"gate.min_accuracy.{task} is {value}: expected a share between 0 and 1")
        return self


class EvaluateConfig(Strict):
    """Korean evaluation of the previous stage's model against a baseline, with a release gate.

    Task files are JSONL rows `{"question", "choices", "answer", "context"?}` (answer: 0-based index
    into choices); each file is one task named by its stem. Prompt files are JSONL rows `{"prompt"}`.
    """

    # A named evaluation writes `<output>/<model>/<run>/evaluations/<name>/` instead of `evaluate/`, so a trained
    # model can be evaluated again on other data without touching the pipeline's own evaluation (deploy reads that).
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    # Held-out text for perplexity (`text_field` of each row, or whole text files).
    perplexity: list[DataSource] = Field(default_factory=list)
    perplexity_max_tokens: int = Field(20000, ge=16)  # stop after this many scored tokens (bounds the cost)
    tasks: list[DataSource] = Field(default_factory=list)
    prompts: list[DataSource] = Field(default_factory=list)
    prompt_field: str = "prompt"
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    max_new_tokens: int = Field(64, ge=1)
    # An answer counts as Korean when Hangul is at least this share of its letters.
    korean_threshold: float = Field(0.5, ge=0.0, le=1.0)
    # lm-evaluation-harness task names (kobest_*, kmmlu, haerae_*): run only when lm_eval imports and its data loads.
    lm_eval_tasks: list[str] = Field(default_factory=list)
    lm_eval_limit: int | None = Field(None, ge=1)  # items per harness task (None: all)
    # base: model.base_model; release: <output_root>/<model>/releases/current (base when none yet);
    # none: no baseline; anything else: a model folder.
    baseline: str = "base"
    batch_size: int = Field(8, ge=1)
    gate: GateConfig = Field(default_factory=GateConfig)
