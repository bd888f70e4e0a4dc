"""The release gate and the evaluation report (`eval.json`, `eval.html`).

Scores of one model are a flat mapping: `perplexity`, `korean_share`, `accuracy/<task>`,
`accuracy_norm/<task>`. The gate compares the candidate's scores with absolute limits and,
when a baseline was measured, with the baseline's.
"""

from __future__ import annotations

import html
from typing import Any

from korean_llm.config import GateConfig

Scores = dict[str, float]


def gate_checks(gate: GateConfig, candidate: Scores, baseline: Scores | None) -> list[dict[str, Any]]:
    """Every configured check with its value, limit and verdict; a metric that was not measured fails its check."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, ok: bool | None, note: str = "") -> None:
        passed = value is not None and bool(ok)
        checks.append({"check": name, "value": value, "limit": limit, "passed": passed, "note": note})

    ppl = candidate.get("perplexity")
    if gate.max_perplexity is not None:
        add("max_perplexity", ppl, gate.max_perplexity, ppl is not None and ppl <= gate.max_perplexity)
    tasks = sorted(k.split("/", 1)[1] for k in candidate if k.startswith("accuracy/"))
    for key, limit in sorted(gate.min_accuracy.items()):
        for task in tasks if key == "*" else [key]:
            acc = candidate.get(f"accuracy/{task}")
            note = "" if acc is not None else "task not measured"
            add(f"min_accuracy[{task}]", acc, limit, acc is not None and acc >= limit, note)
    share = candidate.get("korean_share")
    if gate.min_korean_share is not None:
        add("min_korean_share", share, gate.min_korean_share, share is not None and share >= gate.min_korean_share)
    if baseline is None:
        return checks
    if gate.max_perplexity_ratio is not None:
        base_ppl = baseline.get("perplexity")
        ratio = ppl / base_ppl if ppl is not None and base_ppl else None
        add(
            "max_perplexity_ratio",
            ratio,
            gate.max_perplexity_ratio,
            ratio is not None and ratio <= gate.max_perplexity_ratio,
        )
    if gate.max_accuracy_drop is not None:
        for task in tasks:
            base_acc = baseline.get(f"accuracy/{task}")
            drop = base_acc - candidate[f"accuracy/{task}"] if base_acc is not None else None
            add(
                f"max_accuracy_drop[{task}]",
                drop,
                gate.max_accuracy_drop,
                drop is not None and drop <= gate.max_accuracy_drop,
            )
    if gate.max_korean_share_drop is not None:
        base_share = baseline.get("korean_share")
        drop = base_share - share if base_share is not None and share is not None else None
        add(
            "max_korean_share_drop",
            drop,
            gate.max_korean_share_drop,
            drop is not None and drop <= gate.max_korean_share_drop,
        )
    return checks


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: verdict, scores side by side, gate checks, skipped parts, a few samples."""
    cand: Scores = report["candidate"]["scores"]
    base: Scores = (report.get("baseline") or {}).get("scores") or {}
    rows = []
    for key in sorted(set(cand) | set(base)):
        c, b = cand.get(key), base.get(key)
        delta = c - b if c is not None and b is not None else None
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{_fmt(b)}</td><td>{_fmt(c)}</td><td>{_fmt(delta)}</td></tr>")
    checks = [
        f"<tr class='{'ok' if ch['passed'] else 'bad'}'><td>{html.escape(ch['check'])}</td>"
        f"<td>{_fmt(ch['value'])}</td><td>{_fmt(ch['limit'])}</td><td>{'pass' if ch['passed'] else 'FAIL'}</td>"
        f"<td>{html.escape(ch['note'])}</td></tr>"
        for ch in report["checks"]
    ]
    samples = [
        f"<tr><td>{html.escape(s['prompt'])}</td><td>{html.escape(s.get('baseline') or '')}</td>"
        f"<td>{html.escape(s['candidate'])}</td></tr>"
        for s in report.get("samples", [])[:10]
    ]
    skipped = "".join(f"<li>{html.escape(s)}</li>" for s in report["skipped"]) or "<li>nothing</li>"
    base_desc = html.escape((report.get("baseline") or {}).get("model") or "none")
    status = report["status"]
    return f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>Evaluation {html.escape(report["model_name"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.ok{{background:#e8f5e9}}.bad{{background:#ffebee}}
.status-passed{{color:#2e7d32}}.status-failed{{color:#c62828}}</style></head><body>
<h1>Evaluation of {html.escape(report["model_name"])} run {html.escape(report["run_id"])}:
<span class="status-{status}">{status.upper()}</span></h1>
<p>Candidate: {html.escape(report["candidate"]["model"])}<br>Baseline: {base_desc}</p>
<h2>Scores</h2><table><tr><th>metric</th><th>baseline</th><th>candidate</th><th>candidate − baseline</th></tr>
{"".join(rows)}</table>
<h2>Gate</h2><table><tr><th>check</th><th>value</th><th>limit</th><th>verdict</th><th>note</th></tr>
{"".join(checks) or "<tr><td colspan=5>no checks configured</td></tr>"}</table>
<h2>Skipped and notes</h2><ul>{skipped}</ul>
<h2>Samples</h2><table><tr><th>prompt</th><th>baseline</th><th>candidate</th></tr>{"".join(samples)}</table>
</body></html>
"""
