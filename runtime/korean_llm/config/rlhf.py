"""The rlhf stage: method, reference model and GRPO reward functions."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from korean_llm.config.base import DEFAULT_SYSTEM_PROMPT, Strict


class KoreanRewardConfig(Strict):
    """Share of Hangul among the letters of the answer; answers mostly in another language are penalised.

    LogicKor gives an answer that is not in Korean no points whatever its content: below
    `min_hangul_share` the reward drops by `penalty`.
    """

    type: Literal["korean"] = "korean"
    weight: float = 1.0
    min_hangul_share: float = Field(0.5, ge=0.0, le=1.0)
    penalty: float = Field(1.0, ge=0.0)


class LengthRewardConfig(Strict):
    """1 for an answer of `min_chars`..`max_chars` characters; shorter: chars / min_chars; longer: max_chars / chars."""

    type: Literal["length"] = "length"
    weight: float = 1.0
    min_chars: int = Field(20, ge=0)
    max_chars: int = Field(400, ge=1)

    @model_validator(mode="after")
    def _range(self) -> LengthRewardConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        return self


class FormatRewardConfig(Strict):
    """1 when the answer matches `pattern` (Python regex, `re.search`, DOTALL), else 0."""

    type: Literal["format"] = "format"
    weight: float = 1.0
    pattern: str

    @model_validator(mode="after")
    def _compiles(self) -> FormatRewardConfig:

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        return self


class PythonRewardConfig(Strict):
    """A user reward `package.module:function` with TRL's signature (prompts, completions, **kwargs) -> list[float]."""

    type: Literal["python"] = "python"
    weight: float = 1.0
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


RewardConfig = Annotated[
    KoreanRewardConfig | LengthRewardConfig | FormatRewardConfig | PythonRewardConfig, Field(discriminator="type")
]


class RlhfConfig(Strict):
    """Preference tuning after SFT: DPO (default), ORPO, KTO, or GRPO with reward functions."""

    method: Literal["dpo", "orpo", "kto", "grpo"] = "dpo"
    # A frozen reference model (path or hub id) for DPO/KTO. None: no second model in memory; TRL takes the
    # policy with its LoRA adapter disabled, or a frozen copy of the adapter the stage continues (the SFT policy).
    reference_model: str | None = None
    # Added as the system turn of prompts that have none, as the SFT stage does, so prompts look like SFT's.
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    # GRPO only: the reward functions, summed with their weights (GRPOConfig.reward_weights).
    rewards: list[RewardConfig] = Field(default_factory=lambda: list[RewardConfig]([KoreanRewardConfig()]))
    # GRPO only: generate with vLLM (colocated) when it is installed and CUDA is present; else with the model.
    use_vllm: bool = False

    @model_validator(mode="after")
    def _method_options(self) -> RlhfConfig:
        if self.reference_model is not None and self.method not in ("dpo", "kto"):
            raise ValueError(f"reference_model is used by dpo and kto only; method is {self.method}")
        if self.method == "grpo" and not self.rewards:
            raise ValueError("method grpo needs at least one entry in rewards")
        return self
