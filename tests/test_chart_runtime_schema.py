"""The chart refuses secrets in values, unknown runtime keys and duplicate model names at `helm template`.

The runtime part of values.schema.json is generated from the pydantic models (korean_llm.config.schema); the
first test fails when the committed file is not what the models give today.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from korean_llm.config import schema as config_schema
from korean_llm.local.runner import find_helm

from .conftest import REPO


def helm_template(tmp_path: Path, values: dict) -> subprocess.CompletedProcess[str]:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(values, allow_unicode=True))
    cmd = [find_helm(), "template", "x", str(REPO / "charts"), "-f", str(REPO / "values" / "local.yaml")]
    return subprocess.run([*cmd, "-f", str(extra)], capture_output=True, text=True, check=False)


def test_the_committed_schema_is_generated_from_the_current_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_schema.main(["--check"]) == 0, capsys.readouterr().out


def test_a_stale_schema_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "values.schema.json"
    text = config_schema.SCHEMA_PATH.read_text()
    stale.write_text(text.replace('"keep_after_success"', '"keep_after_succes"', 1))
    assert config_schema.main(["--check", "--schema", str(stale)]) == 1
    assert "runtime config schema is stale" in capsys.readouterr().out
    assert config_schema.main(["--schema", str(stale)]) == 0
    assert stale.read_text() == text


TINY = {"name": "tiny-ko", "config": {"model": {"base_model": "builtin:tiny-ko"}}}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            {"runtimeDefaults": {"tracking": {"mlflow_tracking_uri": "https://bob:hunter2@mlflow.example.com"}}},
            "at '/runtimeDefaults/tracking/mlflow_tracking_uri': 'not' failed",
        ),
        (
            {"models": [{**TINY, "config": {"training": {"hub_token": "hf_live"}}}]},
            "invalid propertyName 'hub_token'",
        ),
        (
            {"models": [{**TINY, "stages": {"sft": {"config": {"tracking": {"wandb_project": "hf_" + "a1B2" * 9}}}}}]},
            "at '/models/0/stages/sft/config/tracking/wandb_project': 'not' failed",
        ),
        (
            {
                "stageDefaults": {
                    "cpt": {"config": {"data": {"sources": [{"path": "s3://AKIAIOSFODNN7EXAMPLE:x@b/k"}]}}}
                }
            },
            "at '/stageDefaults/cpt/config/data/sources/0/path': 'not' failed",
        ),
        ({"models": [{**TINY, "config": {"lora": {"rank": 4}}}]}, "additional properties 'rank' not allowed"),
        ({"runtimeDefaults": {"trainig": {"max_steps": 3}}}, "additional properties 'trainig' not allowed"),
        ({"runtimeDefaults": {"lock": {"wait": "yes"}}}, "at '/runtimeDefaults/lock/wait'"),
        (
            {"secrets": {"huggingface": {"existingSecret": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"}}},
            "at '/secrets/huggingface/existingSecret'",
        ),
        (
            {"secrets": {"wandb": {"existingSecret": "0123456789abcdef0123456789abcdef01234567"}}},  # a W&B key
            "at '/secrets/wandb/existingSecret': 'not' failed",
        ),
        (  # the subchart's Slack webhook Secret: the URL itself pasted, a Slack token, a URL as the key
            {"monitoring": {"alertmanager": {"existingSecret": "https://hooks.slack.com/services/T0/B0/XXXXXXXX"}}},
            "monitoring:\n- at '/alertmanager/existingSecret': 'https://hooks.slack.com/",
        ),
        (
            {"monitoring": {"alertmanager": {"existingSecret": "xoxb" + "0123456789abcdef" * 2}}},
            "monitoring:\n- at '/alertmanager/existingSecret': 'not' failed",
        ),
        (
            {"monitoring": {"alertmanager": {"existingSecret": "slack", "secretKey": "https://hooks.slack.com/x"}}},
            "monitoring:\n- at '/alertmanager/secretKey'",
        ),
        (
            {"models": [TINY, {**TINY, "config": {}}]},
            "models[1].name 'tiny-ko' is already the name of another model: model names must be unique",
        ),
    ],
)
def test_helm_template_refuses(tmp_path: Path, values: dict, error: str) -> None:
    result = helm_template(tmp_path, values)
    assert result.returncode != 0, result.stdout[-2000:]
    assert error in result.stderr, result.stderr[-3000:]


def test_the_monitoring_subchart_names_secrets_by_the_umbrella_rule() -> None:
    """helm checks a subchart's values against the subchart's own schema only: it carries a copy of the rule."""
    import json

    umbrella = json.loads((REPO / "charts" / "values.schema.json").read_text())["definitions"]["secretName"]
    sub = json.loads((REPO / "charts" / "charts" / "monitoring" / "values.schema.json").read_text())
    assert sub["definitions"]["secretName"] == umbrella
    assert sub["properties"]["alertmanager"]["properties"]["existingSecret"] == {"$ref": "#/definitions/secretName"}


def test_ordinary_runtime_values_pass(tmp_path: Path) -> None:
    """Real keys that look a little like secrets are not refused: TRL's pad/eos tokens, a revision hash, paths."""
    values = {
        "secrets": {"huggingface": {"existingSecret": "hf-token"}, "wandb": {"existingSecret": "wandb.api-key"}},
        "monitoring": {"alertmanager": {"existingSecret": "slack-webhook", "secretKey": "webhook_url.v2"}},
        "runtimeDefaults": {
            "tracking": {"mlflow_tracking_uri": "http://mlflow.mlops.svc:5000"},
            "lock": {"wait": True, "stale_seconds": 300},
            "checkpoint": {"checksums": False},
        },
        "models": [
            {
                **TINY,
                "stages": {
                    "sft": {"config": {"training": {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"}}},
                    "cpt": {"config": {"data": {"sources": [{"path": "{data_dir}/processed/cpt"}]}}},
                },
            }
        ],
    }
    result = helm_template(tmp_path, values)
    assert result.returncode == 0, result.stderr[-3000:]
