"""Field mapping (the schema): one mapping that turns a user's columns into the row shapes the stages read.

Applied to rows by `korean_llm.data.mapping`; this module holds the pydantic models and the kind check.

A data source may carry `mapping:`; each key is a field the stage reads, each value says where it
comes from in the user's row:

- `"Q"` or `"meta.question.text"`: a column, or a dotted path into nested JSON (a number indexes a
  list: `"turns.0.text"`). A key that itself contains dots is found before the path is split.
- `["A", "B", "C", "D"]` (choices only): several columns make one list.
- `{value: "..."}`: a constant (e.g. a fixed system prompt for every row).
- `{path: "sys", default: "..."}`: a column, and the constant when the row lacks it or it is empty.

Which keys each kind of row takes (`KIND_FIELDS`):

| kind | stage / input | keys |
| --- | --- | --- |
| text | CPT text, evaluate.perplexity | text |
| chat | SFT chats | messages (+ role, content, roles), or user + assistant, or instruction + input + output, |
| | | or prompt + completion; system |
| preference | DPO / ORPO pairs | prompt, chosen, rejected (strings or message lists: + role, content, roles); system |
| kto | KTO rows | prompt, completion, label, or a pair (chosen, rejected); system |
| prompt | GRPO prompts, evaluate.prompts | prompt; system; extra (more fields kept for reward functions) |
| task | evaluate.tasks | question, choices, answer, context |

`role` and `content` name the keys inside each turn of a message list (ShareGPT: `from`, `value`);
`roles` renames role values (`{human: user, gpt: assistant, 질문: user, 답변: assistant}`); the
usual ShareGPT names are understood without it. Mapping is checked twice: its keys against the
row kind when the stage starts (`check_kind`), and its columns against the first record of each
file (`check_columns`): a mapped column that is missing is one error naming the source, the column
and the columns found. A later row that lacks a mapped column is rejected with that reason.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from korean_llm.errors import ConfigError

Role = Literal["system", "user", "assistant"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Constant(_Strict):
    """A fixed value for every row."""

    value: Any


class PathDefault(_Strict):
    """A column or dotted path, and the value used when a row lacks it (or it is empty)."""

    path: str
    default: Any


Spec = str | Constant | PathDefault


class FieldMapping(_Strict):
    """Where each field a stage reads comes from in the source's rows (see the module docstring)."""

    text: Spec | None = None
    messages: Spec | None = None
    role: str | None = None
    content: str | None = None
    roles: dict[str, Role] = {}
    system: Spec | None = None
    user: Spec | None = None
    assistant: Spec | None = None
    instruction: Spec | None = None
    input: Spec | None = None
    output: Spec | None = None
    prompt: Spec | None = None
    completion: Spec | None = None
    chosen: Spec | None = None
    rejected: Spec | None = None
    label: Spec | None = None
    question: Spec | None = None
    choices: Spec | list[Spec] | None = None
    answer: Spec | None = None
    context: Spec | None = None
    extra: dict[str, Spec] = {}

    def fields(self) -> dict[str, Any]:
        """The keys set in this mapping (turn keys and role names included)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, [])}


_TURN_KEYS = {"role", "content", "roles", "system"}
KIND_FIELDS: dict[str, set[str]] = {
    "text": {"text"},
    "chat": {"messages", "user", "assistant", "instruction", "input", "output", "prompt", "completion"} | _TURN_KEYS,
    "preference": {"prompt", "chosen", "rejected"} | _TURN_KEYS,
    "kto": {"prompt", "completion", "label", "chosen", "rejected"} | _TURN_KEYS,
    "prompt": {"prompt", "extra"} | _TURN_KEYS,
    "task": {"question", "choices", "answer", "context"},
}
# Fields whose value may be a list of turns: the turn keys and role names apply to them.
TURN_LISTS = ("messages", "prompt", "completion", "chosen", "rejected")


def parse_map_options(items: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A mapping from command-line `--map FIELD=COLUMN` options, over `base` (e.g. a registry entry's mapping).

    The value is a column or dotted path; one that starts with `{` or `[` is YAML (`system={value: ...}`,
    `choices=[A, B, C, D]`). ConfigError for an option without `=`."""
    import yaml

    mapping = dict(base or {})
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--map {item!r}: expected FIELD=COLUMN")
        key, value = item.split("=", 1)
        try:
            mapping[key.strip()] = yaml.safe_load(value) if value.strip().startswith(("{", "[")) else value
        except yaml.YAMLError as exc:
            raise ConfigError(f"--map {item!r}: the value is not valid YAML: {exc}") from None
    return mapping


def check_kind(mapping: FieldMapping | None, kind: str, where: str) -> None:
    """ConfigError when `mapping` sets a key the `kind` of rows does not read."""
    if mapping is None:
        return
    allowed = KIND_FIELDS[kind]
    for key in mapping.fields():
        if key not in allowed:
            raise ConfigError(
                f"{where}: mapping key '{key}' is not read from {kind} rows (keys for {kind} rows: "
                f"{', '.join(sorted(allowed))})"
            )
    f = mapping.fields()
    if kind == "chat":
        shapes = [("messages",), ("user", "assistant"), ("instruction", "output"), ("prompt", "completion")]
        given = [s for s in shapes if any(k in f for k in s)]
        if len(given) > 1:
            raise ConfigError(f"{where}: mapping mixes {given[0]} with {given[1]}: map one shape of chat")
        for shape in given:
            missing = [k for k in shape if k not in f]
            if missing:
                raise ConfigError(
                    f"{where}: mapping sets {shape[0] if shape[0] in f else shape[1]} without {missing[0]}"
                )
