"""The chart's schema for runtime config, generated from the pydantic models so the two never drift.

    python -m korean_llm.config.schema            # rewrite the runtime part of charts/values.schema.json
    python -m korean_llm.config.schema --check    # exit 1 when the committed file is not current (a test runs it)

`runtimeDefaults`, `models[].config`, `stageDefaults.<stage>.config` and `models[].stages.<stage>.config` are
layers of one `StageConfig` (config/stage.py), merged by the chart: each layer is the StageConfig schema with nothing
required (pydantic's `extra="forbid"` becomes `additionalProperties: false`, so an unknown key fails
`helm template`), `stage` left out (the chart sets it) and, everywhere in it, no value that looks like a
credential: tokens of the usual providers, `user:password@` in a URI, and keys named like secrets in the
free-form `training:` block. Credentials reach the stages only from existing Secrets (`secrets.*.existingSecret`).
The definitions live in values.schema.json under `definitions` (the file is draft-07), named `runtime.<Model>`, and
every runtime config layer of the chart refers to `runtime.StageConfig`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from korean_llm.config import StageConfig

PREFIX = "runtime."
DEFS = "definitions"
ROOT = f"{PREFIX}StageConfig"
NO_SECRETS = f"{PREFIX}noSecrets"
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "charts" / "values.schema.json"

# Values that are credentials whatever key they sit under (RE2 syntax: Helm validates with Go's regexp).
SECRET_VALUE = (
    r"(?i)[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"  # user:password@host in a URI
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI-style API keys
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|dapi[0-9a-f]{32}"  # Databricks (MLflow) token
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."  # a JWT
    r"|^Bearer\s"
)
# Keys whose value would be a credential (TrainingArguments has `hub_token`); `pad_token`, `eos_token` stay allowed.
SECRET_KEY = (
    r"(?i)^(hub_token|push_to_hub_token|token|auth_token|access_token|api_token)$"
    r"|password|passwd|secret|api_?key|access_?key|private_?key|credential"
)


def _rewrite(node: Any) -> Any:
    """Refs into our namespace, nothing required, no pydantic-only formats or titles."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "required" or key == "title" or (key == "format" and value == "path"):
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = f"#/{DEFS}/{PREFIX}{value.removeprefix('#/$defs/')}"
            elif key == "properties" and isinstance(value, dict):
                out[key] = {name: _rewrite(v) for name, v in value.items()}  # property names, not keywords
            else:
                out[key] = _rewrite(value)
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def runtime_defs() -> dict[str, Any]:
    """The `$defs` entries the chart schema needs for runtime config (see the module docstring)."""
    schema = StageConfig.model_json_schema(mode="validation")
    defs = {f"{PREFIX}{name}": _rewrite(d) for name, d in schema.pop("$defs", {}).items()}
    root = _rewrite(schema)
    for excluded in ("stage", "source"):
        root["properties"].pop(excluded, None)
    root["properties"]["training"] = {
        "type": "object",
        "description": "arguments of the stage's TRL config class (checked by the runtime against that class)",
        "propertyNames": {"not": {"pattern": SECRET_KEY}},
    }
    root["description"] = (
        "runtime config (StageConfig of runtime/korean_llm/config/stage.py; `python -m korean_llm.config.schema`)"
    )
    # A data source may name an entry of the `datasets:` registry instead (config/stage.py resolves it first).
    source = f"{PREFIX}DataSource"
    if source in defs:
        defs[source] = {"anyOf": [{"type": "string", "description": "a `datasets:` entry by name"}, defs[source]]}
    defs[ROOT] = {"allOf": [root, {"$ref": f"#/{DEFS}/{NO_SECRETS}"}]}
    defs[NO_SECRETS] = {
        "description": "no credential anywhere in runtime config: they come from existing Secrets",
        "if": {"type": "string"},
        "then": {"not": {"pattern": SECRET_VALUE}},
        "else": {
            "if": {"type": "object"},
            "then": {"additionalProperties": {"$ref": f"#/{DEFS}/{NO_SECRETS}"}},
            "else": {"if": {"type": "array"}, "then": {"items": {"$ref": f"#/{DEFS}/{NO_SECRETS}"}}},
        },
    }
    return dict(sorted(defs.items()))


def _wire(node: Any, top: bool = True) -> Any:
    """Point every runtime config layer of the chart schema at the generated root definition."""
    ref = {"$ref": f"#/{DEFS}/{ROOT}"}
    if isinstance(node, list):
        return [_wire(v, False) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            props = {}
            for name, sub in value.items():
                layer = (top and name == "runtimeDefaults") or (
                    name == "config" and str(sub.get("description", "")).startswith("runtime config")
                )
                props[name] = {**ref, "description": sub.get("description", "")} if layer else _wire(sub, False)
            out[key] = props
        elif key == DEFS:
            out[key] = value
        else:
            out[key] = _wire(value, False)
    return out


def updated(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (values.schema.json) with its runtime definitions regenerated and every runtime layer wired to them."""
    defs = {k: v for k, v in schema.get(DEFS, {}).items() if not k.startswith(PREFIX)}
    out = _wire(schema)
    out[DEFS] = dict(sorted({**defs, **runtime_defs()}.items()))
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m korean_llm.config.schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is not current")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, help="values.schema.json to update")
    args = parser.parse_args(argv)
    current = args.schema.read_text(encoding="utf-8")
    fresh = render(updated(json.loads(current)))
    if args.check:
        if fresh != current:
            print(f"{args.schema}: runtime config schema is stale; run `python -m korean_llm.config.schema`")
            return 1
        return 0
    args.schema.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
