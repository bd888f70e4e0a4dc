"""`runs/<run-id>/report.html`: per stage a loss curve (PNG) and the manifest, for every model of the run."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from korean_llm.pipeline.artifacts import atomic_write_text


def loss_curve(history: list[dict[str, Any]], title: str, out: Path) -> bool:
    """Plot `loss` against `step` from a Trainer log history; False when there is nothing to plot."""
    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return True


def _stage_section(root: Path, model: str, stage: str, status: str) -> str:
    matches = sorted((root / "output" / model).glob(f"*/{stage}/manifest.json"))
    head = f"<h3>{html.escape(model)} / {html.escape(stage)} <small>{html.escape(status)}</small></h3>"
    if not matches:
        return head + "<p>no manifest (the stage did not finish or does not publish one)</p>"
    stage_dir = matches[0].parent
    manifest = json.loads(matches[0].read_text(encoding="utf-8"))
    parts = [head]
    history_file = stage_dir / "log_history.json"
    if history_file.is_file():
        png = root / f"{model}-{stage}-loss.png"
        if loss_curve(json.loads(history_file.read_text()), f"{model} {stage}", png):
            parts.append(f'<img src="{png.name}" alt="{html.escape(stage)} loss curve">')
    for page in sorted(stage_dir.glob("*.html")):
        rel = page.relative_to(root)
        parts.append(f'<p><a href="{html.escape(str(rel))}">{html.escape(page.name)}</a></p>')
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in manifest.get("metrics", {}).items()
        if not isinstance(v, dict | list)
    )
    parts.append(f"<table>{rows}</table>")
    parts.append(
        "<details><summary>manifest.json</summary><pre>"
        + html.escape(json.dumps(manifest, indent=2, ensure_ascii=False))
        + "</pre></details>"
    )
    return "\n".join(parts)


def write_report(root: Path, steps: list[tuple[str, str, str]]) -> Path:
    """Write `root/report.html` for (model, stage, status) rows; returns its path."""
    body = "\n".join(_stage_section(root, m, s, st) for m, s, st in steps)
    page = f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>korean-llm run {html.escape(root.name)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td{{border:1px solid #ccc;padding:2px 8px}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head>
<body><h1>korean-llm run {html.escape(root.name)}</h1>
{body}
</body></html>
"""
    out = root / "report.html"
    atomic_write_text(out, page)
    return out
