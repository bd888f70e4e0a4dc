"""Korean evaluation of the trained model against a baseline, with a release gate.

    python -m korean_llm evaluate --config /etc/korean-llm/evaluate.yaml

Measures, for the candidate (the previous stage's weights plus its adapter, loaded with PEFT) and
the baseline (`evaluate.baseline`: the base model, the current release, a folder, or none):
perplexity on held-out text, multiple-choice accuracy by log-likelihood per task, greedy answers to
a prompt set and the share of them that are Korean, and lm-evaluation-harness tasks when `lm_eval`
imports and its data loads (skipped with the reason otherwise).

Task files are JSONL, one item a line, one task per file (named by the file's stem):
`{"question": str, "choices": [str, ...], "answer": int, "context": str?}` where `answer` is the
0-based index of the right choice (KoBEST / KMMLU / HAE-RAE items convert to this shape). Prompt
files are JSONL rows with `prompt`. Rows that break these rules are reported as `file:line: reason`
in rejected.jsonl; a task file with no valid row is an error (exit 2). See eval_inputs.py.

Writes eval.json, eval.html, samples.jsonl. A failed gate exits 3 and publishes nothing: the
reports stay in `evaluate.partial/` (named in the error). A published stage folder always means
"usable by the next stage", so a refusal must not look like one; and a rerun after fixing the
model or the gate can evaluate again without deleting anything. The DAG stops before deploy.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from korean_llm.builtin import resolve_model
from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError, GateFailed
from korean_llm.korean import fertility, hangul_ratio
from korean_llm.pipeline.artifacts import Manifest, atomic_write_json, atomic_write_text
from korean_llm.pipeline.release import current_release, releases_dir
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.stages.evaluate import scoring
from korean_llm.stages.evaluate.inputs import EvalInputs, load_inputs
from korean_llm.stages.evaluate.report import Scores, gate_checks, render_html
from korean_llm.train.models import InitPoint, init_point, load_for_scoring, load_tokenizer

log = logging.getLogger("korean_llm")


def baseline_point(cfg: StageConfig, notes: list[str]) -> InitPoint | None:
    spec = cfg.evaluate.baseline
    if spec == "none":
        return None
    if spec == "release":
        current = current_release(releases_dir(cfg))
        if current is not None:
            return InitPoint(weights=str(current))
        notes.append("baseline 'release': no current release yet, compared with the base model instead")
        spec = "base"
    if spec == "base":
        return InitPoint(weights=resolve_model(cfg.model.base_model or ""))
    if not Path(spec).is_dir():
        raise ConfigError(
            f"{cfg.source}: key 'evaluate.baseline': '{spec}' is not base, release, none or a model folder"
        )
    return InitPoint(weights=spec)


def measure(
    cfg: StageConfig,
    point: InitPoint,
    inputs: EvalInputs,
    skipped: list[str],
    details: dict[str, Any] | None = None,
) -> tuple[Scores, list[str], float]:
    """Every configured metric for one model; returns scores, generated answers and seconds taken.

    `details`, when given, receives per-item multiple-choice results (`details["tasks"][name]`, a
    scoring.ChoiceScores) and the perplexity counts (`details["perplexity"]`).
    """
    texts, tasks, prompts = inputs.texts, inputs.tasks, inputs.prompts
    ev, started = cfg.evaluate, time.time()
    tokenizer = load_tokenizer(point, cfg)
    model = load_for_scoring(point, cfg)
    length, scores = cfg.model.max_seq_length, Scores()
    if texts:
        ppl = scoring.perplexity(
            model, tokenizer, texts, max_length=length, max_tokens=ev.perplexity_max_tokens, batch_size=ev.batch_size
        )
        scores.update(perplexity=ppl.perplexity, perplexity_tokens=float(ppl.tokens))
        if ppl.bits_per_character is not None and ppl.bits_per_byte is not None:  # comparable across tokenizers
            scores.update(bits_per_character=ppl.bits_per_character, bits_per_byte=ppl.bits_per_byte)
        if details is not None:
            details["perplexity"] = ppl
    for name, items in tasks.items():
        mc = scoring.multiple_choice(model, tokenizer, items, max_length=length, batch_size=ev.batch_size)
        scores[f"accuracy/{name}"], scores[f"accuracy_norm/{name}"] = mc.accuracy, mc.accuracy_norm
        scores[f"accuracy_bytes/{name}"] = mc.accuracy_bytes
        if details is not None:
            details.setdefault("tasks", {})[name] = mc
    answers: list[str] = []
    if prompts:
        answers = scoring.generate_answers(
            model,
            tokenizer,
            prompts,
            system_prompt=ev.system_prompt,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
        )
        scores["korean_share"] = sum(hangul_ratio(a) >= ev.korean_threshold for a in answers) / len(answers)
    if ev.lm_eval_tasks:
        scores.update(run_lm_eval(model, tokenizer, cfg, skipped))
    del model
    gc.collect()
    return scores, answers, time.time() - started


def run_lm_eval(model: Any, tokenizer: Any, cfg: StageConfig, skipped: list[str]) -> Scores:
    """Harness tasks through lm_eval's Python API; any reason they cannot run is recorded, not raised."""
    ev = cfg.evaluate
    if importlib.util.find_spec("lm_eval") is None:
        skipped.append(f"lm-eval tasks {ev.lm_eval_tasks}: lm_eval is not installed (pip install lm-eval)")
        return {}
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        out = simple_evaluate(
            model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=ev.batch_size),
            tasks=ev.lm_eval_tasks,
            limit=ev.lm_eval_limit,
        )
    except Exception as exc:  # unreachable hub data, unknown task name, version drift: all mean "not measured"
        skipped.append(f"lm-eval tasks {ev.lm_eval_tasks}: could not run: {type(exc).__name__}: {exc}")
        return {}
    scores = {}
    for task, result in (out or {}).get("results", {}).items():
        if "acc,none" in result:
            scores[f"accuracy/{task}"] = float(result["acc,none"])
        if "acc_norm,none" in result:
            scores[f"accuracy_norm/{task}"] = float(result["acc_norm,none"])
    return scores


def tokenizer_fertility(cfg: StageConfig, candidate: InitPoint, texts: list[str]) -> dict[str, Any] | None:
    """Tokens per Hangul syllable and characters per token of the candidate's and the base model's tokenizers."""
    if not texts:
        return None
    base = load_tokenizer(InitPoint(weights=resolve_model(cfg.model.base_model or "")), cfg)
    return {"candidate": fertility(load_tokenizer(candidate, cfg), texts), "base": fertility(base, texts)}


def _distribution(values: list[int], n_choices: int) -> dict[str, int]:
    return {str(k): values.count(k) for k in range(n_choices)}


def task_report(
    items: list[dict[str, Any]], cand: scoring.ChoiceScores, base: scoring.ChoiceScores | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per task: answer and prediction label distributions, chance level; per item: what each model picked.

    A model that always picks the same label scores the share of that label among the answers, which
    is chance on a balanced task: the prediction distribution shows it at once.
    """
    n_choices = max(len(it["choices"]) for it in items)
    answers = [it["answer"] for it in items]

    def summary(mc: scoring.ChoiceScores) -> dict[str, Any]:
        dist = _distribution(mc.predictions, n_choices)
        return {
            "accuracy": mc.accuracy,
            "accuracy_norm": mc.accuracy_norm,
            "accuracy_bytes": mc.accuracy_bytes,
            "prediction_distribution": dist,
            "most_common_prediction_share": max(dist.values()) / len(items),
        }

    task = {
        "items": len(items),
        "chance": sum(1 / len(it["choices"]) for it in items) / len(items),
        "answer_distribution": _distribution(answers, n_choices),
        "candidate": summary(cand),
        "baseline": summary(base) if base is not None else None,
    }

    def picked(mc: scoring.ChoiceScores, i: int) -> dict[str, Any]:
        return {
            "prediction": mc.predictions[i],
            "prediction_norm": (mc.predictions_norm or [])[i],
            "prediction_bytes": (mc.predictions_bytes or [])[i],
            "correct": mc.predictions[i] == items[i]["answer"],
            "loglikelihoods": [round(x, 4) for x in (mc.loglikelihoods or [])[i]],
        }

    rows = [
        {
            "index": i,
            "question": it["question"],
            "choices": it["choices"],
            "answer": it["answer"],
            "candidate": picked(cand, i),
            "baseline": picked(base, i) if base is not None else None,
        }
        for i, it in enumerate(items)
    ]
    return task, rows


def input_warnings(cfg: StageConfig, details: dict[str, Any]) -> list[str]:
    """What a reader of eval.json must know about how much of the input was scored."""
    out = []
    ppl = details.get("perplexity")
    if ppl is not None and ppl.tokens < ppl.tokens_available:
        out.append(
            f"perplexity scored {ppl.tokens:,} of {ppl.tokens_available:,} tokens ({ppl.documents} of "
            f"{ppl.documents_available} documents): evaluate.perplexity_max_tokens is "
            f"{cfg.evaluate.perplexity_max_tokens:,}; raise it to score all of the given text"
        )
    for name, mc in details.get("tasks", {}).items():
        top = max(set(mc.predictions), key=mc.predictions.count)
        if mc.items >= 4 and mc.predictions.count(top) == mc.items:
            out.append(f"task {name}: the candidate picked choice {top} for all {mc.items} items")
    return out


def _run(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg
    inputs = load_inputs(cfg)
    ctx.record_rejects(inputs.rejects, "evaluate inputs")
    skipped: list[str] = []
    candidate = init_point(cfg)
    cand_details: dict[str, Any] = {}
    base_details: dict[str, Any] = {}
    cand_scores, cand_answers, cand_s = measure(cfg, candidate, inputs, skipped, cand_details)
    base_point = baseline_point(cfg, skipped)
    base_scores, base_answers, base_s = (
        measure(cfg, base_point, inputs, skipped, base_details) if base_point else (None, [], 0.0)
    )
    warnings = input_warnings(cfg, cand_details)
    for line in warnings:
        log.warning("evaluate: %s", line)
    tasks_out: dict[str, Any] = {}
    items_out: dict[str, Any] = {}
    for name, items in inputs.tasks.items():
        tasks_out[name], items_out[name] = task_report(
            items, cand_details["tasks"][name], base_details.get("tasks", {}).get(name)
        )
    checks = gate_checks(cfg.evaluate.gate, cand_scores, base_scores)
    failed = [c for c in checks if not c["passed"]]
    describe = str(candidate.previous_dir or candidate.weights) + (
        f" + adapter {candidate.adapter}" if candidate.adapter else ""
    )
    samples = [
        {
            "prompt": p,
            "candidate": a,
            "baseline": base_answers[i] if base_answers else None,
            "hangul_share": hangul_ratio(a),
        }
        for i, (p, a) in enumerate(zip(inputs.prompts, cand_answers, strict=True))
    ]
    report = {
        "status": "failed" if failed else "passed",
        "name": cfg.evaluate.name,
        "model_name": cfg.run.model_name,
        "run_id": cfg.run.run_id,
        "candidate": {"model": describe, "scores": cand_scores, "seconds": cand_s},
        "baseline": {"model": base_point.weights, "scores": base_scores, "seconds": base_s} if base_point else None,
        "checks": checks,
        "skipped": skipped,
        "warnings": warnings,
        "tasks": tasks_out,
        "items": items_out,
        "samples": samples,
        "fertility": tokenizer_fertility(cfg, candidate, inputs.texts),
    }
    work = ctx.dir.work
    atomic_write_text(work / "samples.jsonl", "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_json(work / "eval.json", report)
    atomic_write_text(work / "eval.html", render_html(report))
    for line in skipped:
        log.warning("skipped: %s", line)
    if failed:
        what = "; ".join(
            f"{c['check']} = {c['value'] if c['value'] is None else round(c['value'], 4)} (limit {c['limit']})"
            for c in failed
        )
        raise GateFailed(f"evaluate: gate failed: {what}; report in {work / 'eval.html'} (nothing published)")
    prev = candidate.previous
    return ctx.manifest(
        tokenizer_hash=prev.tokenizer_hash if prev else None,
        inputs=[s.path for s in (*cfg.evaluate.perplexity, *cfg.evaluate.tasks, *cfg.evaluate.prompts)],
        outputs={"report": "eval.json", "html": "eval.html", "samples": "samples.jsonl", "rejected": "rejected.jsonl"},
        metrics={
            **{f"candidate/{k}": v for k, v in cand_scores.items()},
            **{f"baseline/{k}": v for k, v in (base_scores or {}).items()},
        },
        extra={
            "candidate_stage": cfg.run.previous_stage,
            "evaluation": cfg.evaluate.name,
            "gate": "passed",
            "checks": checks,
            "skipped": skipped,
            "warnings": warnings,
        },
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm evaluate --config /etc/korean-llm/evaluate.yaml"""
    return execute(config, _run)
