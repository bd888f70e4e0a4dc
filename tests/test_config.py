"""Config loading: YAML, env overrides, --set overrides, unknown keys, TRL passthrough."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from korean_llm.config import build_config, check_training_keys, load_config, parse_set
from korean_llm.errors import ConfigError


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return p


def test_loads_file_and_set_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, {"stage": "sft", "lora": {"r": 8}})
    cfg = load_config(p, ["lora.r=32", "training.max_steps=5", "sft.system_prompt=너는 도우미야"], env={})
    assert cfg.lora.r == 32
    assert cfg.training == {"max_steps": 5}
    assert cfg.sft.system_prompt == "너는 도우미야"


def test_seed_env_names_override_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, {"stage": "cpt", "model": {"base_model": "some/model"}})
    env = {"STAGE": "sft", "BASE_MODEL_PATH": "/models/base", "WANDB_PROJECT": "ko-proj"}
    cfg = load_config(p, env=env)
    assert (cfg.stage, cfg.model.base_model, cfg.tracking.wandb_project) == ("sft", "/models/base", "ko-proj")


def test_model_size_picks_the_base_model_unless_a_path_is_given(tmp_path: Path) -> None:
    p = write(tmp_path, {"stage": "cpt", "model": {"base_model": "some/model"}})
    assert load_config(p, env={"MODEL_SIZE": "72b"}).model.base_model == "Qwen/Qwen2.5-72B"
    both = load_config(p, env={"MODEL_SIZE": "72b", "BASE_MODEL_PATH": "/m"})
    assert both.model.base_model == "/m"


def test_set_wins_over_env(tmp_path: Path) -> None:
    p = write(tmp_path, {"stage": "cpt"})
    cfg = load_config(p, ["model.base_model=/cli"], env={"BASE_MODEL_PATH": "/env"})
    assert cfg.model.base_model == "/cli"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"stage": "cpt", "lora": {"rank": 8}}, "lora.rank"),
        ({"stage": "cpt", "bogus": 1}, "bogus"),
        ({"stage": "cpt", "data": {"sources": [{"path": "x", "txt_field": "a"}]}}, "data.sources.0.txt_field"),
    ],
)
def test_unknown_key_names_key_and_file(tmp_path: Path, data: dict, key: str) -> None:
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(p, env={})
    assert f"unknown key '{key}'" in str(err.value)
    assert str(p) in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    p = write(tmp_path, {"stage": "cpt", "lora": {"r": "many"}})
    with pytest.raises(ConfigError, match=r"key 'lora.r'.*found \"many\""):
        load_config(p, env={})


def test_unknown_stage_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'stage'"):
        load_config(write(tmp_path, {"stage": "pretrain"}), env={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_training_block_is_checked_against_trl() -> None:
    from trl import SFTConfig

    ok = build_config({"stage": "sft", "training": {"neftune_noise_alpha": 5, "max_steps": 3}}, env={})
    check_training_keys(ok, SFTConfig)
    bad = build_config({"stage": "sft", "training": {"learning_rat": 1e-4}}, source="sft.yaml", env={})
    with pytest.raises(ConfigError, match=r"sft.yaml: unknown key 'training.learning_rat' for SFTConfig"):
        check_training_keys(bad, SFTConfig)


def test_parse_set_reads_yaml_values() -> None:
    assert parse_set("a.b=3") == ("a.b", 3)
    assert parse_set("a=[q_proj, v_proj]") == ("a", ["q_proj", "v_proj"])
    with pytest.raises(ConfigError):
        parse_set("novalue")


def test_run_paths_follow_model_and_run_id() -> None:
    cfg = build_config({"stage": "sft", "run": {"model_name": "qwen7b", "run_id": "r7"}}, env={})
    assert str(cfg.stage_dir) == "/output/qwen7b/r7/sft"
    assert str(cfg.run.data_dir) == "/data/qwen7b/r7"


def test_source_paths_expand_run_placeholders() -> None:
    cfg = build_config(
        {"stage": "cpt", "run": {"model_name": "m", "run_id": "r2"}, "data": {"sources": [{"path": "{data_dir}/x"}]}},
        overrides=["run.run_id=r3"],
        env={},
    )
    assert cfg.data.sources[0].path == "/data/m/r3/x"


def test_small_floats_rendered_by_helm_are_numbers(tmp_path: Path) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text("stage: rlhf\ntraining:\n  learning_rate: 5e-05\n  weight_decay: 1E-2\n")
    cfg = load_config(p, env={})
    assert cfg.training == {"learning_rate": 5e-05, "weight_decay": 0.01}
