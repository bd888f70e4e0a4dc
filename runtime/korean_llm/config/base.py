"""Shared pieces of the configuration: the stage names, the strict base model, the default Korean system prompt."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

# The pipeline's stages in DAG order: the one list the runtime knows. The chart's stage order and the stage keys of
# its values schema are held to it by tests/test_stage_list.py.
Stage = Literal["preprocess", "cpt", "sft", "rlhf", "evaluate", "deploy"]
STAGES: tuple[Stage, ...] = get_args(Stage)

DEFAULT_SYSTEM_PROMPT = "당신은 정확하고 친절한 한국어 AI 어시스턴트입니다. 질문에 한국어로 명확하게 답하세요."


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
