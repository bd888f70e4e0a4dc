"""Inputs of the evaluate stage: held-out text, multiple-choice task files and prompt files, validated.

Task files are JSONL (or any format data.py reads), one item a row, one task per file, named by the
file's stem: `{"question": str, "choices": [str, ...], "answer": int, "context": str?}`, where
`answer` is the 0-based index of the right choice. Prompt files have a `prompt` field
(`evaluate.prompt_field`). Bad rows go to the RejectLog with their file and line; a task file with
no valid row, or a gate that limits something no input measures, stops the stage before any model loads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from korean_llm.config import DataSource, StageConfig
from korean_llm.data import RejectLog, collect_rows, mc_item, source_files, text_row
from korean_llm.errors import ConfigError, DataError


@dataclass
class EvalInputs:
    texts: list[str]
    tasks: dict[str, list[dict[str, Any]]]
    prompts: list[str]
    rejects: RejectLog


def _rows(
    cfg: StageConfig,
    source: DataSource,
    check: Callable[[dict[str, Any]], dict[str, Any]],
    rejects: RejectLog,
    input: str,
) -> list[dict[str, Any]]:
    one = cfg.data.model_copy(update={"sources": [source]})
    return collect_rows(one, lambda _source, obj: check(obj), rejects, input)


def load_tasks(cfg: StageConfig, rejects: RejectLog) -> dict[str, list[dict[str, Any]]]:
    """Every task file of `evaluate.tasks`, by name; a file without one valid item is a DataError."""
    tasks: dict[str, list[dict[str, Any]]] = {}
    for source in cfg.evaluate.tasks:
        files = source_files(source)
        for path, fmt in files:
            # A registry entry of one file is named as in the registry; otherwise a task is its file's stem.
            name = source.dataset if source.dataset and len(files) == 1 else path.stem
            one = source.model_copy(update={"path": str(path), "format": fmt})
            before = len(rejects.rejected)
            items = _rows(cfg, one, mc_item, rejects, "tasks")
            if not items:
                first = rejects.rejected[before] if len(rejects.rejected) > before else None
                why = f"; first problem: line {first['line']}: {first['reason']}" if first else ""
                raise DataError(f"{path}: task file has no valid multiple-choice rows{why}")
            if name in tasks:
                raise ConfigError(f"{cfg.source}: two task files are named '{name}' in evaluate.tasks")
            tasks[name] = items
    return tasks


def load_inputs(cfg: StageConfig) -> EvalInputs:
    """Everything evaluate.perplexity, .tasks and .prompts name, checked against the gate."""
    ev, rejects = cfg.evaluate, RejectLog()
    texts = [
        r["text"] for s in ev.perplexity for r in _rows(cfg, s, functools.partial(text_row, s), rejects, "perplexity")
    ]
    tasks = load_tasks(cfg, rejects)
    prompt_source = DataSource(path="-", text_field=ev.prompt_field)
    prompts = [
        r["text"] for s in ev.prompts for r in _rows(cfg, s, lambda o: text_row(prompt_source, o), rejects, "prompts")
    ]
    if ev.perplexity and not texts:
        raise DataError("evaluate.perplexity: no text to score")
    if ev.prompts and not prompts:
        raise DataError(f"evaluate.prompts: no valid rows with a '{ev.prompt_field}' field")
    if not (texts or tasks or prompts or ev.lm_eval_tasks):
        raise ConfigError(
            f"{cfg.source}: evaluate has nothing to measure: set perplexity, tasks, prompts or lm_eval_tasks"
        )
    _check_gate_inputs(cfg, bool(texts), tasks, bool(prompts))
    return EvalInputs(texts, tasks, prompts, rejects)


def _check_gate_inputs(cfg: StageConfig, has_text: bool, tasks: dict[str, Any], has_prompts: bool) -> None:
    """A gate check on something never measured is a config mistake: say so before loading any model."""
    gate, ev = cfg.evaluate.gate, cfg.evaluate
    if (gate.max_perplexity or gate.max_perplexity_ratio) and not has_text:
        raise ConfigError(f"{cfg.source}: evaluate.gate limits perplexity but evaluate.perplexity is empty")
    if (gate.min_korean_share is not None or gate.max_korean_share_drop is not None) and not has_prompts:
        raise ConfigError(f"{cfg.source}: evaluate.gate limits the Korean share but evaluate.prompts is empty")
    known = set(tasks) | set(ev.lm_eval_tasks) | {"*"}
    for name in gate.min_accuracy:
        if name not in known:
            tasks_known = ", ".join(sorted(known - {"*"})) or "none"
            raise ConfigError(f"{cfg.source}: key 'evaluate.gate.min_accuracy.{name}': no such task ({tasks_known})")
    regression = (gate.max_perplexity_ratio, gate.max_accuracy_drop, gate.max_korean_share_drop)
    if ev.baseline == "none" and any(v is not None for v in regression):
        raise ConfigError(f"{cfg.source}: evaluate.gate has regression limits but evaluate.baseline is 'none'")
