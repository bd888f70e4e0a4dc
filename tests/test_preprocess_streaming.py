"""Streaming: the preprocess stage's memory does not grow with the input size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from korean_llm.builtin import corpus_texts

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
# Holding the 32 MB more of Korean text as Python strings alone would take over 20 MB (2 bytes per Hangul
# syllable). The small run is 16 MB, not tiny: the process reaches its steady state (imports, arrow buffers,
# batches in flight) within the first ~10 MB, and from there on memory must stay flat.
SMALL_MB, BIG_MB, BUDGET_MB = 16, 48, 10


def write_corpus(path: Path, size_mb: int) -> None:
    base = "\n".join(corpus_texts())[:3000]
    with open(path, "w", encoding="utf-8") as fh:
        written, i = 0, 0
        while written < size_mb * MB:
            line = json.dumps({"text": f"문서 {i}번.\n{base}"}, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            i += 1


def peak_rss_mb(tmp_path: Path, name: str, corpus: Path) -> float:
    config = {
        "stage": "preprocess",
        "run": {"run_id": name, "data_root": str(tmp_path / "data"), "output_root": str(tmp_path / "output")},
        "metrics": {"enabled": False},
        # Documents differ only in their first line: exact dedup keeps them all; near dedup is the index
        # that grows with unique documents by design, so it is left out of this measurement.
        "preprocess": {"cpt_sources": [{"path": str(corpus)}], "dedup": {"near": False}},
    }
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True))
    code = (
        "import resource, sys\n"
        "from korean_llm.cli import main\n"
        f"rc = main(['preprocess', '--config', {str(cfg)!r}])\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.rsplit("MAXRSS", 1)[1]) / 1024


def test_memory_stays_flat_as_the_input_grows(tmp_path: Path) -> None:
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    write_corpus(small, SMALL_MB)
    write_corpus(big, BIG_MB)
    base = peak_rss_mb(tmp_path, "small", small)
    peak = peak_rss_mb(tmp_path, "big", big)
    rows = json.loads((tmp_path / "data" / "tiny-ko" / "big" / "processed" / "stats.json").read_text())
    assert rows["inputs"]["cpt"]["rows_out"] == rows["inputs"]["cpt"]["rows_in"] > 7_000
    assert peak - base < BUDGET_MB, f"peak RSS grew {peak - base:.1f} MB for {BIG_MB - SMALL_MB} MB more input"
