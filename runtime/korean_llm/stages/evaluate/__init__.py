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
from korean_llm.korean import hangul_ratio
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
    cfg: StageConfig, point: InitPoint, inputs: EvalInputs, skipped: list[str]
) -> tuple[Scores, list[str], float]:
    """Every configured metric for one model; returns scores, generated answers and seconds taken."""
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
    for name, items in tasks.items():
        mc = scoring.multiple_choice(model, tokenizer, items, max_length=length, batch_size=ev.batch_size)
        scores[f"accuracy/{name}"], scores[f"accuracy_norm/{name}"] = mc.accuracy, mc.accuracy_norm
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


def _run(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg
    inputs = load_inputs(cfg)
    ctx.record_rejects(inputs.rejects, "evaluate inputs")
    skipped: list[str] = []
    candidate = init_point(cfg)
    cand_scores, cand_answers, cand_s = measure(cfg, candidate, inputs, skipped)
    base_point = baseline_point(cfg, skipped)
    base_scores, base_answers, base_s = measure(cfg, base_point, inputs, skipped) if base_point else (None, [], 0.0)
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
        "model_name": cfg.run.model_name,
        "run_id": cfg.run.run_id,
        "candidate": {"model": describe, "scores": cand_scores, "seconds": cand_s},
        "baseline": {"model": base_point.weights, "scores": base_scores, "seconds": base_s} if base_point else None,
        "checks": checks,
        "skipped": skipped,
        "samples": samples,
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
        extra={"candidate_stage": cfg.run.previous_stage, "gate": "passed", "checks": checks, "skipped": skipped},
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm evaluate --config /etc/korean-llm/evaluate.yaml"""
    return execute(config, _run)
