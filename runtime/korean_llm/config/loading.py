"""Reading a stage config: YAML (1.2 number rules), environment overrides, `--set`, validation.

Precedence, lowest first: the YAML file, the environment (`STAGE`, `MODEL_SIZE`,
`BASE_MODEL_PATH`, `WANDB_PROJECT`), then `--set key.sub=value` on the command line.
Every key is checked: an unknown one is an error naming the key and the file.
The `training:` block is handed to TRL's own config class for the stage, so every TRL /
transformers training argument works; its keys are checked against that class when the stage starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from korean_llm.config.stage import StageConfig
from korean_llm.errors import ConfigError

ENV_OVERRIDES = {
    "STAGE": "stage",
    "MODEL_SIZE": "model.size",
    "BASE_MODEL_PATH": "model.base_model",
    "WANDB_PROJECT": "tracking.wandb_project",
}


def parse_set(expr: str) -> tuple[str, Any]:
    """`a.b=value` → ("a.b", value), the value read as YAML (numbers, booleans, lists)."""
    if "=" not in expr:
        raise ConfigError(f"--set {expr!r}: expected key.sub=value")
    key, raw = expr.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {expr!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' holds {type(child).__name__}, not a mapping")
        node = child
    node[parts[-1]] = value


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per error: the source, the key, what was expected and what was found."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{loc}'")
        else:
            found = item.get("input")
            shown = json.dumps(found, ensure_ascii=False, default=str)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            lines.append(f"{source}: key '{loc}': {item['msg']} (found {shown})")
    return "\n".join(lines)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that also reads `5e-05` as a number (YAML 1.2 does; PyYAML's 1.1 rules want a dot).

    Helm renders small floats from values files in that form, so without this a learning rate of
    0.00005 would reach TRL as the string "5e-05".
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse one YAML document with YAML 1.2 number rules (see `_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def build_config(
    data: Mapping[str, Any],
    *,
    source: str = "<inline>",
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> StageConfig:
    """Apply env then `--set` overrides to `data` and validate it into a StageConfig."""
    merged: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    environ = os.environ if env is None else env
    for name, key in ENV_OVERRIDES.items():
        if environ.get(name):
            value = environ[name]
            if name == "MODEL_SIZE" and not environ.get("BASE_MODEL_PATH"):
                # The size only decides the base model when no path is given explicitly.
                merged.setdefault("model", {})["base_model"] = None
            set_path(merged, key, value)
    for expr in overrides:
        set_path(merged, *parse_set(expr))
    try:
        cfg = StageConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    cfg.source = source
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = (), env: Mapping[str, str] | None = None) -> StageConfig:
    """Read a stage config file; see the module docstring for precedence."""
    path = Path(path)
    return build_config(read_yaml(path), source=str(path), overrides=overrides, env=env)


def check_training_keys(cfg: StageConfig, config_class: type) -> None:
    """Fail with the file and key when `training:` holds something the TRL config class does not know."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(cfg.training) - known)
    if unknown:
        raise ConfigError(
            f"{cfg.source}: unknown key 'training.{unknown[0]}' for {config_class.__name__} "
            f"(stage {cfg.stage}); see the TRL documentation of {config_class.__name__} for valid arguments"
        )
    check_training_types(cfg, config_class)


def check_training_types(cfg: StageConfig, config_class: type) -> None:
    """Each `training:` value against the type its field declares (`max_steps: ten` is a config error, exit 2).

    The dataclass does not check types itself: a wrong one surfaces later as a TypeError deep in the Trainer.
    Types pydantic cannot build a validator for are left to the dataclass.
    """
    from pydantic import TypeAdapter

    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # unresolvable forward references: check what is resolvable
        hints = {f.name: f.type for f in dataclasses.fields(config_class) if not isinstance(f.type, str)}
    for key, value in cfg.training.items():
        hint = hints.get(key)
        if hint is None:
            continue
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(hint)
        except Exception:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError:
            shown = json.dumps(value, ensure_ascii=False, default=str)
            raise ConfigError(
                f"{cfg.source}: key 'training.{key}': expected {_type_name(hint)} for {config_class.__name__}, "
                f"found {shown[:80]} ({type(value).__name__})"
            ) from None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
