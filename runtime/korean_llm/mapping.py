"""Field mapping: one schema that turns a user's columns into the row shapes the stages read.

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

from korean_llm.errors import ConfigError, DataError

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
_TURN_LISTS = ("messages", "prompt", "completion", "chosen", "rejected")


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


def _paths(spec: Spec | list[Spec] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, list):
        return [p for s in spec for p in _paths(s)]
    if isinstance(spec, str):
        return [spec]
    return []  # constants and paths with a default need no column


def required_columns(mapping: FieldMapping) -> dict[str, str]:
    """Column (first component of each mapped path) -> the mapped field, for the up-front check."""
    out: dict[str, str] = {}
    for name in ("text", "messages", "system", "user", "assistant", "instruction", "input", "output", "prompt"):
        for p in _paths(getattr(mapping, name)):
            out.setdefault(p, name)
    for name in ("completion", "chosen", "rejected", "label", "question", "choices", "answer", "context"):
        for p in _paths(getattr(mapping, name)):
            out.setdefault(p, name)
    for name, spec in mapping.extra.items():
        for p in _paths(spec):
            out.setdefault(p, f"extra.{name}")
    return out


def _has(obj: dict[str, Any], path: str) -> bool:
    try:
        lookup(obj, path)
    except KeyError:
        return False
    return True


def check_columns(mapping: FieldMapping | None, row: dict[str, Any], source: str, file: str) -> None:
    """DataError naming the source, the column and the columns found when a mapped path is not in `row`."""
    if mapping is None:
        return
    for path, name in required_columns(mapping).items():
        if not _has(row, path):
            found = ", ".join(map(str, row)) or "none"
            raise DataError(
                f"data source '{source}': mapped column '{path}' (for {name}) does not exist in {file}; "
                f"columns found: {found}"
            )


def lookup(obj: Any, path: str) -> Any:
    """Value at a column name or dotted path; KeyError(path) when it is not there."""
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    node = obj
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


_MISSING = object()


def _value(row: dict[str, Any], spec: Spec | list[Spec] | None, name: str) -> Any:
    if spec is None:
        return _MISSING
    if isinstance(spec, list):
        return [_value(row, s, name) for s in spec]
    if isinstance(spec, Constant):
        return spec.value
    if isinstance(spec, PathDefault):
        try:
            found = lookup(row, spec.path)
        except KeyError:
            return spec.default
        return spec.default if found is None or (isinstance(found, str) and not found.strip()) else found
    try:
        return lookup(row, spec)
    except KeyError:
        raise ValueError(f"missing field '{spec}' (mapped to {name})") from None


def _turns(value: Any, mapping: FieldMapping, name: str) -> Any:
    """A list of turns with the mapped role/content keys and role names; a string is left as it is."""
    if not isinstance(value, list):
        return value
    role_key, content_key = mapping.role or "role", mapping.content or "content"
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise ValueError(f"{name}[{i}] is {type(turn).__name__}, expected an object")
        if role_key not in turn:
            keys = ", ".join(map(str, turn))
            raise ValueError(f"{name}[{i}] has no key '{role_key}' (mapped to role; keys: {keys})")
        if content_key not in turn:
            keys = ", ".join(map(str, turn))
            raise ValueError(f"{name}[{i}] has no key '{content_key}' (mapped to content; keys: {keys})")
        role = turn[role_key]
        role = mapping.roles.get(str(role), mapping.roles.get(str(role).strip(), role))
        out.append({"role": role, "content": turn[content_key]})
    return out


def apply(mapping: FieldMapping | None, row: dict[str, Any]) -> dict[str, Any]:
    """The row in the stage's own field names; ValueError (a reject reason) when a mapped field is missing.

    Unmapped fields of the row are kept (GRPO passes them to reward functions); mapped ones are
    written under their stage names, a single-turn user/assistant pair as `messages`.
    """
    if mapping is None:
        return row
    out = dict(row)
    f = mapping.fields()
    system = _value(row, mapping.system, "system")
    if "user" in f:
        msgs = [
            {"role": "user", "content": _value(row, mapping.user, "user")},
            {"role": "assistant", "content": _value(row, mapping.assistant, "assistant")},
        ]
        out["messages"] = msgs
    for name in ("messages", *(n for n in _TURN_LISTS if n != "messages")):
        if name in f:
            out[name] = _turns(_value(row, getattr(mapping, name), name), mapping, name)
    if "messages" not in f and "user" not in f and ("role" in f or "content" in f or "roles" in f):
        for key in ("messages", "conversations", "conversation"):
            if key in row:
                out["messages"] = _turns(row[key], mapping, key)
                break
    for name in ("text", "instruction", "input", "output", "label", "question", "choices", "answer", "context"):
        if name in f:
            value = _value(row, getattr(mapping, name), name)
            if value is not _MISSING:
                out[name] = value
    for name, spec in mapping.extra.items():
        out[name] = _value(row, spec, f"extra.{name}")
    if system is not _MISSING and isinstance(system, str) and system.strip():
        out["_system"] = system
    return out
