"""One stage list: the runtime's `config.STAGES` is the chart's stage order and the stage keys of its values schema.

The chart cannot import Python, so it keeps its own copies (the `korean-llm.stageOrder` helper that orders the
DAG, and the `stageDefaults` / `models[].stages` keys of `values.schema.json`); this test holds them to the runtime's.
The schema may define a stage block once and `$ref` it (JSON Schema `definitions` / `$defs`): references are
followed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from korean_llm.config import STAGES, StageConfig

CHART = Path(__file__).resolve().parents[1] / "charts"


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"values.schema.json: only local $ref is followed, found {ref}"
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _stage_keys(schema: dict[str, Any], *path: str) -> list[str]:
    node = _resolve(schema, schema)
    for key in path:
        node = _resolve(schema, node["items"] if key == "[]" else node["properties"][key])
    return list(node["properties"])


def test_the_chart_orders_the_dag_by_the_runtime_stage_list() -> None:
    found = {}
    for tpl in CHART.rglob("*.tpl"):
        m = re.search(r'define "korean-llm\.stageOrder" -}}\s*(.*?)\s*{{-? end', tpl.read_text(encoding="utf-8"), re.S)
        if m:
            found[tpl] = m.group(1).split()
    assert len(found) == 1, f"expected one korean-llm.stageOrder definition under {CHART}, found {list(found)}"
    assert tuple(next(iter(found.values()))) == STAGES


def test_the_values_schema_knows_exactly_the_runtime_stages() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert tuple(_stage_keys(schema, "stageDefaults")) == STAGES
    assert tuple(_stage_keys(schema, "models", "[]", "stages")) == STAGES


def test_the_runtime_list_is_the_stage_literal_and_a_stage_section_exists_for_each() -> None:
    field = StageConfig.model_fields["stage"].annotation
    assert getattr(field, "__args__", None) == STAGES
    # cpt, sft, rlhf, evaluate, deploy and preprocess each have their section in the stage config
    assert set(STAGES) <= set(StageConfig.model_fields)
