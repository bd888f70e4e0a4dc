"""The embedded default: a tiny Qwen2 model with a Korean byte-level BPE, and the data shipped with it.

`builtin:tiny-ko` is built on first use (about a second) from the Korean constitution and
National Assembly bills that the `konlpy` wheel ships, then cached under
`$KOREAN_LLM_CACHE` (default `~/.cache/korean-llm`). Weights are random (seeded): the point is
a real model folder that every stage can load, train and save in seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from korean_llm.errors import ConfigError

TINY_MODEL = "builtin:tiny-ko"
TINY_VERSION = "v1"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML (as Qwen uses) with {% generation %} markers so TRL can mask everything but assistant turns;
# the end-of-turn token sits inside the markers so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def cache_root() -> Path:
    env = os.environ.get("KOREAN_LLM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "korean-llm"


def konlpy_corpus_dir(name: str) -> Path:
    """Folder of a corpus shipped by the konlpy wheel (`kolaw` or `kobill`)."""
    try:
        import konlpy
    except ImportError as exc:
        raise ConfigError(
            f"builtin:{name} needs the konlpy package (pip install 'korean-llm[cpu]' or konlpy==0.6.0)"
        ) from exc
    folder = Path(konlpy.__file__).parent / "data" / "corpus" / name
    if not folder.is_dir():
        raise ConfigError(f"builtin:{name}: {folder} not found in the installed konlpy")
    return folder


def fixture_path(name: str) -> Path:
    return Path(str(resources.files("korean_llm") / "fixtures" / name))


BUILTIN_DATA = {
    "kolaw": lambda: [konlpy_corpus_dir("kolaw")],
    "kobill": lambda: [konlpy_corpus_dir("kobill")],
    "korean-corpus": lambda: [konlpy_corpus_dir("kolaw"), konlpy_corpus_dir("kobill")],
    "sft-ko": lambda: [fixture_path("sft_ko.jsonl")],
    "eval-ko-tasks": lambda: [fixture_path("eval/tasks")],
    "eval-ko-prompts": lambda: [fixture_path("eval/prompts_ko.jsonl")],
    "eval-ko-text": lambda: [fixture_path("eval/heldout_ko.txt")],
    "preference-ko": lambda: [fixture_path("preference_ko.jsonl")],
    "grpo-prompts-ko": lambda: [fixture_path("grpo_prompts_ko.jsonl")],
}


def resolve_builtin_data(spec: str) -> list[Path]:
    name = spec.removeprefix("builtin:")
    if name not in BUILTIN_DATA:
        raise ConfigError(f"unknown data source '{spec}': builtin sources are {', '.join(BUILTIN_DATA)}")
    return BUILTIN_DATA[name]()


def corpus_texts() -> list[str]:
    paths = sorted(p for d in resolve_builtin_data("builtin:korean-corpus") for p in d.glob("*.txt"))
    return [p.read_text(encoding="utf-8").replace("\r\n", "\n") for p in paths]


def _build_tiny(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=3000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_texts(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=512,
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def tiny_model_path() -> Path:
    """Path of the cached tiny model, built on first call (safe against concurrent builders)."""
    target = cache_root() / f"tiny-ko-{TINY_VERSION}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-ko-", dir=target.parent))
    try:
        _build_tiny(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return target


def resolve_model(spec: str) -> str:
    """Hub id or path unchanged; `builtin:tiny-ko` to its cached folder."""
    if spec == TINY_MODEL:
        return str(tiny_model_path())
    if spec.startswith("builtin:"):
        raise ConfigError(f"unknown model '{spec}': the builtin model is {TINY_MODEL}")
    return spec
