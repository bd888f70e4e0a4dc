"""`korean-llm data inspect NAME|PATH`: what the stages would make of a data set, before any run.

    korean-llm data inspect qa-ko -f values/local-csv.yaml      # a `datasets:` entry of values files
    korean-llm data inspect sft_qa --config sft.yaml            # ... or of a stage config
    korean-llm data inspect data/qa.csv --map user=Q --map assistant=A --kind chat

Prints, for each file: the detected format and encoding (and why, for `auto`), the rows as the
stage reads them after the mapping (the first `--rows`), the token length distribution with the
model's tokenizer (chat template for chats), and what would be rejected, counted by reason with
the first lines. Reads the data exactly as the stages do (korean_llm.data.read_source and the
stage's row validator), so what it reports is what a run would do: chats get the SFT stage's
`sft.system_prompt` when they have no system turn, preference, KTO and GRPO rows the RLHF stage's
`rlhf.system_prompt` (the configured value from `--config`, or from the SFT / RLHF stage config the
chart renders for the first model of the values files, else the default Korean prompt; null adds
none). Exit 0, or 2 with the message for a bad name, path or mapping.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from korean_llm.command import Command
from korean_llm.config import DataSource, RlhfConfig, SftConfig, read_yaml
from korean_llm.config.loading import format_validation_error
from korean_llm.config.mapping import KIND_FIELDS, check_kind, parse_map_options
from korean_llm.data.readers import ReadLog
from korean_llm.data.rows import kto_row, mc_item, preference_row, prompt_row, sft_row, text_row, with_system_prompt
from korean_llm.data.sources import read_source
from korean_llm.errors import ConfigError

KINDS = tuple(KIND_FIELDS)
# The stage whose `<stage>.system_prompt` a row kind gets (stages/sft.py, stages/rlhf training_rows).
SYSTEM_PROMPT_STAGE = {"chat": "sft", "preference": "rlhf", "kto": "rlhf", "prompt": "rlhf"}


def commands() -> list[Command]:
    """`korean-llm data inspect`."""
    return [Command("data", "inspect a data set as the stages would read it", add_arguments, run_command)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("inspect", help="format, encoding, mapped rows, token lengths and rejects of a data set")
    q.add_argument("target", help="a name in the `datasets:` registry, or a file, folder, glob or hf: id")
    q.add_argument("-f", "--values", action="append", default=[], help="values file with a `datasets:` block")
    q.add_argument("--config", "-c", default=None, help="stage config with a `datasets:` block")
    q.add_argument("--kind", choices=KINDS, default=None, help="row kind (default: guessed from mapping and rows)")
    q.add_argument("--format", default=None, help="format of a path target (default: from the extension)")
    q.add_argument("--encoding", default=None, help="auto | utf-8 | utf-8-sig | cp949 | euc-kr")
    q.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN", help="mapping for a path target")
    q.add_argument("--rows", type=int, default=3, help="mapped rows to print")
    q.add_argument("--scan", type=int, default=10_000, help="rows to read for lengths and rejects (0: all)")
    q.add_argument("--model", default=None, help="tokenizer for token lengths (default: the config's model)")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Maps merged key by key, anything else replaced: helm's merge of values files and the chart's mergeOverwrite."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _deep_merge(out[key], value) if both else value
    return out


def values_stage_config(values: dict[str, Any], stage: str) -> dict[str, Any]:
    """The runtime config the chart renders for `stage` of the first model (charts/templates/_stage.tpl
    `korean-llm.stageConfig`): runtimeDefaults < models[].config < stageDefaults.<stage>.config <
    models[].stages.<stage>.config."""
    models = values.get("models") or [{}]
    model = models[0] or {}
    cfg: dict[str, Any] = {}
    for layer in (
        values.get("runtimeDefaults"),
        model.get("config"),
        ((values.get("stageDefaults") or {}).get(stage) or {}).get("config"),
        ((model.get("stages") or {}).get(stage) or {}).get("config"),
    ):
        cfg = _deep_merge(cfg, layer or {})
    return cfg


def _registry(args: argparse.Namespace) -> tuple[dict[str, Any], str | None, dict[str, dict[str, Any]]]:
    """The `datasets:` registry, the model, and the runtime config of the SFT and RLHF stages (for their system
    prompts), from the values files (merged in order, as helm does) and the stage config (which wins)."""
    values: dict[str, Any] = {}
    for path in args.values:
        values = _deep_merge(values, read_yaml(Path(path)))
    datasets: dict[str, Any] = dict(values.get("datasets") or {})
    stages = {stage: values_stage_config(values, stage) for stage in ("sft", "rlhf")}
    model = ((stages["sft"].get("model") or {}).get("base_model")) if args.values else None
    if args.config:
        data = read_yaml(Path(args.config))
        datasets.update(data.get("datasets") or {})
        model = ((data.get("model") or {}).get("base_model")) or model
        for stage in stages:
            stages[stage] = _deep_merge(stages[stage], data)
    return datasets, model, stages


def system_prompt_of(stages: dict[str, dict[str, Any]], kind: str) -> str | None:
    """The system prompt the stage reading `kind` rows adds to rows without one (None: the kind gets none)."""
    stage = SYSTEM_PROMPT_STAGE.get(kind)
    if stage is None:
        return None
    block = stages.get(stage, {}).get(stage) or {}
    try:  # validated as the stage validates its block, defaults included
        return (SftConfig if stage == "sft" else RlhfConfig).model_validate(block).system_prompt
    except ValueError as exc:
        raise ConfigError(f"{stage}: {exc}") from None


def resolve_source(
    target: str,
    *,
    values: list[str] | None = None,
    config: str | None = None,
    fmt: str | None = None,
    encoding: str | None = None,
    maps: list[str] | None = None,
) -> tuple[DataSource, str | None, dict[str, dict[str, Any]]]:
    """A data source as the command line names it: a `datasets:` entry of the values files (`-f`) or stage config
    (`--config`) by name, or a file, folder, glob or hf: id; `--format`, `--encoding` and `--map FIELD=COLUMN`
    (config/mapping.py parse_map_options) over it. Also the model and the SFT / RLHF stage configs found there.
    Shared by `data inspect` and `bench --data`; ConfigError (exit 2) for an unknown name or a bad option."""
    args = argparse.Namespace(values=list(values or []), config=config)
    datasets, model, stages = _registry(args)
    if target in datasets:
        spec = dict(datasets[target])
        origin = " ".join(args.values + ([config] if config else []))
        where = f"datasets.{target} in {origin}"
    else:
        if datasets and not any(ch in target for ch in "/.:*"):
            raise ConfigError(f"unknown dataset '{target}' (datasets: {', '.join(sorted(datasets))})")
        spec = {"path": target}
        where = target
    if fmt:
        spec["format"] = fmt
    if encoding:
        spec["encoding"] = encoding
    if maps:
        spec["mapping"] = parse_map_options(maps, spec.get("mapping"))
    try:
        source = DataSource.model_validate({**spec, "dataset": target if target in datasets else None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None
    return source, model, stages


def resolve_target(args: argparse.Namespace) -> tuple[DataSource, str | None, dict[str, dict[str, Any]]]:
    """`data inspect`'s target: see resolve_source."""
    return resolve_source(
        args.target, values=args.values, config=args.config, fmt=args.format, encoding=args.encoding, maps=args.map
    )


def guess_kind(source: DataSource, first: dict[str, Any] | None) -> str:
    """The row kind from the mapping's keys, else from the first row's fields."""
    keys = set(source.mapping.fields()) if source.mapping else set(first or {})
    for kind, needs in (
        ("task", {"question", "choices"}),
        ("preference", {"prompt", "chosen", "rejected"}),
        ("kto", {"prompt", "completion", "label"}),
    ):
        if needs <= keys:
            return kind
    if keys & {"messages", "conversations", "conversation", "user", "instruction", "role", "content", "roles"}:
        return "chat"
    if "prompt" in keys:
        return "chat" if keys & {"completion", "response"} else "prompt"
    return "text"


def validator(kind: str, system_prompt: str | None) -> Callable[[DataSource, dict[str, Any]], dict[str, Any]]:
    """The row validator of the stage that reads `kind` rows, with that stage's system prompt."""

    def with_prompt(validate: Callable[[DataSource, dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        def read(source: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
            row = validate(source, obj)
            return {**row, "prompt": with_system_prompt(row["prompt"], system_prompt)}

        return read

    return {
        "text": text_row,
        "chat": sft_row(system_prompt),
        "preference": with_prompt(preference_row),
        "kto": with_prompt(kto_row),
        "prompt": with_prompt(prompt_row),
        "task": lambda _s, obj: mc_item(obj),
    }[kind]


def token_length(tok: Any, kind: str, row: dict[str, Any]) -> int:
    def chat(msgs: list[dict[str, str]]) -> int:
        if getattr(tok, "chat_template", None):
            out = tok.apply_chat_template(msgs, tokenize=True, return_dict=False)
            return len(out["input_ids"] if isinstance(out, dict) else out)
        return len(tok(" ".join(m["content"] for m in msgs), add_special_tokens=False)["input_ids"])

    if kind == "chat":
        return chat(row["messages"])
    if kind == "preference":
        return max(chat(row["prompt"] + row["chosen"]), chat(row["prompt"] + row["rejected"]))
    if kind == "kto":
        return chat(row["prompt"] + row.get("completion", row.get("chosen", [])))
    if kind == "prompt":
        return chat(row["prompt"])
    if kind == "task":  # context, question and the longest choice (the evaluate stage adds a short answer cue)
        longest = max(row["choices"], key=len)
        text = "\n".join(filter(None, [row.get("context"), row["question"], longest]))
        return len(tok(text, add_special_tokens=False)["input_ids"])
    return len(tok(row["text"], add_special_tokens=False)["input_ids"])


def percentiles(values: list[int]) -> dict[str, int]:
    if not values:
        return {}
    v = sorted(values)

    def at(q: float) -> int:
        return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]

    return {"min": v[0], "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": v[-1]}


def inspect(
    source: DataSource,
    kind: str | None,
    model: str | None,
    rows: int,
    scan: int,
    stages: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Read `source` as a stage would; returns the report `korean-llm data inspect` prints.

    `stages`: the runtime config of the SFT and RLHF stages (their `system_prompt`); none given, their defaults."""
    read_log = ReadLog()
    kept: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    first: dict[str, Any] | None = None
    records = []
    for n, rec in enumerate(read_source(source, "reject", read_log), start=1):
        if scan and n > scan:
            break
        records.append(rec)
        if first is None and rec.data is not None:
            first = rec.data
    kind = kind or guess_kind(source, first)
    check_kind(source.mapping, kind, "mapping")
    system_prompt = system_prompt_of(stages or {}, kind)
    validate = validator(kind, system_prompt)
    for rec in records:
        if rec.error is not None or rec.data is None:
            rejects.append({"file": rec.file, "line": rec.line, "reason": rec.error or "unreadable row"})
            continue
        try:
            kept.append(validate(source, rec.data))
        except ValueError as exc:
            rejects.append({"file": rec.file, "line": rec.line, "reason": str(exc)})
    lengths: list[int] = []
    tokenizer_name = None
    if model and kept:
        from transformers import AutoTokenizer

        from korean_llm.builtin import resolve_model

        tokenizer_name = model
        tok = AutoTokenizer.from_pretrained(resolve_model(model))
        lengths = [token_length(tok, kind, r) for r in kept]
    return {
        "source": source.dataset or source.path,
        "kind": kind,
        "mapping": source.mapping.model_dump(mode="json", exclude_defaults=True) if source.mapping else None,
        "system_prompt_setting": f"{SYSTEM_PROMPT_STAGE[kind]}.system_prompt" if kind in SYSTEM_PROMPT_STAGE else None,
        "system_prompt": system_prompt,
        "files": read_log.as_dict(),
        "rows_read": len(records),
        "rows_kept": len(kept),
        "rows_rejected": len(rejects),
        "first_rows": kept[:rows],
        "tokenizer": tokenizer_name,
        "token_lengths": percentiles(lengths),
        "rejected_by_reason": dict(Counter(r["reason"] for r in rejects).most_common()),
        "first_rejects": rejects[:10],
    }


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{escape(report['source'])}[/]: {report['kind']} rows")
    if report.get("mapping"):
        console.print(f"mapping: {escape(json.dumps(report['mapping'], ensure_ascii=False))}")
    if report.get("system_prompt_setting"):
        prompt = report["system_prompt"]
        said = json.dumps(prompt, ensure_ascii=False) if prompt else "none (null)"
        console.print(escape(f"{report['system_prompt_setting']}: {said}, added to rows without a system turn"))
    files = Table("file", "format", "encoding", "records", "lines", "undecodable")
    for f in report["files"]:
        files.add_row(
            escape(f["file"]), f["format"], f["encoding"], str(f["records"]), str(f["lines"]), str(f["undecodable"])
        )
    console.print(files)
    for f in report["files"]:
        if f.get("note"):
            console.print(escape(f"{f['file']}: {f['note']}"))
    console.print(
        f"rows read {report['rows_read']:,}, kept {report['rows_kept']:,}, "
        f"would be rejected {report['rows_rejected']:,}"
    )
    for i, row in enumerate(report["first_rows"], start=1):
        console.print(f"[bold]row {i} as the stage reads it:[/]")
        console.print(escape(json.dumps(row, ensure_ascii=False, indent=2)))
    if report["token_lengths"]:
        t = report["token_lengths"]
        console.print(
            f"token lengths ({escape(report['tokenizer'])}): " + ", ".join(f"{k} {v:,}" for k, v in t.items())
        )
    if report["rejected_by_reason"]:
        table = Table("reason", "rows", title="would be rejected")
        for reason, n in report["rejected_by_reason"].items():
            table.add_row(escape(reason), str(n))
        console.print(table)
        for r in report["first_rejects"]:
            console.print(escape(f"  {r['file']}:{r['line']}: {r['reason']}"))


def run_command(args: argparse.Namespace) -> int:
    source, model, stages = resolve_target(args)
    report = inspect(source, args.kind, args.model or model or "builtin:tiny-ko", args.rows, args.scan, stages)
    print_report(report)
    return 0


__all__ = ["commands", "inspect", "resolve_source", "run_command"]
