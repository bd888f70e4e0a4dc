"""Row schemas: validators that turn a raw row into what a stage trains on, or raise ValueError naming the problem.

Each is a `collect_rows` validator `(source, row) -> row`: CPT text, chats (messages, ShareGPT, Alpaca,
prompt/completion), preference pairs in TRL's conversational form, KTO examples and GRPO prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from korean_llm.config import DataSource

ROLES = {"system", "user", "assistant"}


# Role names seen in ShareGPT-style and other public chat dumps, mapped to the chat-template roles.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "assistant": "assistant",
    "system": "system",
}


# Keys under which a conversation (a list of turns) is stored, in order of preference.
CHAT_KEYS = ("messages", "conversations", "conversation")


def text_row(source: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A CPT document: the configured text field, a non-empty string."""
    if source.text_field not in obj:
        raise ValueError(f"missing field '{source.text_field}'")
    text = obj[source.text_field]
    if not isinstance(text, str):
        raise ValueError(f"field '{source.text_field}' is {type(text).__name__}, expected a string")
    if not text.strip():
        raise ValueError(f"empty text in field '{source.text_field}'")
    return {"text": text}


def _message(i: int, msg: Any) -> dict[str, str]:
    if not isinstance(msg, dict):
        raise ValueError(f"messages[{i}] is {type(msg).__name__}, expected an object")
    if "from" in msg and "value" in msg:  # ShareGPT
        raw_role, content = msg["from"], msg["value"]
    else:
        raw_role, content = msg.get("role"), msg.get("content")
    role = SHAREGPT_ROLES.get(str(raw_role).lower()) if raw_role is not None else None
    if role is None:
        raise ValueError(f"unknown role '{raw_role}' in messages[{i}] (expected one of {sorted(ROLES)})")
    if content is None:
        raise ValueError(f"content is null in messages[{i}]")
    if not isinstance(content, str):
        raise ValueError(f"content of messages[{i}] is {type(content).__name__}, expected a string")
    if not content.strip():
        raise ValueError(f"empty content in messages[{i}]")
    return {"role": role, "content": content}


def chat_messages(obj: dict[str, Any]) -> list[dict[str, str]]:
    """Normalise a chat row to `[{"role", "content"}, ...]` ending with an assistant turn.

    Accepted: `messages` / ShareGPT `conversations` / `conversation` (turns as `role`/`content` or
    `from`/`value`, roles such as `human`/`gpt` mapped), `instruction`/`input`/`output` (Alpaca), and
    `prompt` with `completion` or `response`.
    """
    chat_key = next((k for k in CHAT_KEYS if k in obj), None)
    if chat_key is not None:
        raw = obj[chat_key]
        if not isinstance(raw, list):
            raise ValueError(f"messages is {type(raw).__name__}, expected a list")
        if not raw:
            raise ValueError("empty messages list")
        msgs = [_message(i, m) for i, m in enumerate(raw)]
    elif "instruction" in obj:
        instruction, extra, output = obj.get("instruction"), obj.get("input") or "", obj.get("output")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("empty or non-string 'instruction'")
        if not isinstance(output, str) or not output.strip():
            raise ValueError("missing or empty 'output'")
        if not isinstance(extra, str):
            raise ValueError(f"'input' is {type(extra).__name__}, expected a string")
        prompt = f"{instruction.strip()}\n\n{extra.strip()}" if extra.strip() else instruction.strip()
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    elif "prompt" in obj and ("completion" in obj or "response" in obj):
        answer_key = "completion" if "completion" in obj else "response"
        msgs = [
            _message(0, {"role": "user", "content": obj["prompt"]}),
            _message(1, {"role": "assistant", "content": obj[answer_key]}),
        ]
    else:
        raise ValueError("missing field 'messages' (or 'conversations', 'instruction'/'output', 'prompt'/'completion')")
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("no assistant message")
    if msgs[-1]["role"] != "assistant":
        raise ValueError(f"last message is from '{msgs[-1]['role']}', expected 'assistant'")
    check_turn_order(msgs)
    return msgs


def check_turn_order(msgs: list[dict[str, str]]) -> None:
    """A chat is an optional system message first, then user and assistant turns alternating, user first.

    Anything else (two user turns in a row, an assistant speaking first, a system message mid-chat) is
    rejected with the position: chat templates render such rows differently or not at all, and the loss
    masks of assistant turns would no longer line up with what the model sees.
    """
    turns = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
    offset = len(msgs) - len(turns)
    for i, m in enumerate(turns):
        if m["role"] == "system":
            raise ValueError(f"system message at messages[{i + offset}]: only messages[0] may be 'system'")
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            previous = f" after '{turns[i - 1]['role']}'" if i else " first"
            raise ValueError(
                f"roles do not alternate: messages[{i + offset}] is '{m['role']}'{previous}, expected '{expected}'"
            )


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """`messages` with `system_prompt` as the first turn when they have no system turn (and a prompt is set).

    The one place the Korean system prompt enters a conversation: SFT chats, RLHF prompts, evaluate's prompts."""
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def mapped_system(messages: list[dict[str, str]], obj: dict[str, Any]) -> list[dict[str, str]]:
    """Prepend the source's mapped system prompt (`mapping.system`, kept as `_system`) unless there is one."""
    system = obj.get("_system")
    return with_system_prompt(messages, system) if isinstance(system, str) and system.strip() else messages


def sft_row(system_prompt: str | None) -> Callable[[DataSource, dict[str, Any]], dict[str, Any]]:
    def validate(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
        return {"messages": with_system_prompt(mapped_system(chat_messages(obj), obj), system_prompt)}

    return validate


def _turns(value: Any, field_name: str, role: str) -> list[dict[str, str]]:
    """A plain string or a message list, as chat messages; a string becomes one `role` turn."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"empty '{field_name}'")
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise ValueError(f"'{field_name}' is {type(value).__name__}, expected a string or a list of messages")
    if not value:
        raise ValueError(f"empty '{field_name}'")
    try:
        msgs = [_message(i, m) for i, m in enumerate(value)]
    except ValueError as exc:
        raise ValueError(f"'{field_name}': {exc}") from None
    if msgs[-1]["role"] != role:
        raise ValueError(f"last message of '{field_name}' is from '{msgs[-1]['role']}', expected '{role}'")
    return msgs


def _required(obj: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in obj or obj[name] is None:
            raise ValueError(f"missing field '{name}'")


def preference_row(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A preference pair in TRL's conversational form: `{"prompt": [...], "chosen": [...], "rejected": [...]}`.

    `prompt` is a non-empty string (one user turn) or messages ending with a user turn; `chosen` and
    `rejected` are strings (one assistant turn) or messages ending with an assistant turn. Identical
    `chosen` and `rejected` are refused: the pair teaches nothing. A `collect_rows` validator.
    """
    _required(obj, "prompt", "chosen", "rejected")
    prompt = mapped_system(_turns(obj["prompt"], "prompt", "user"), obj)
    chosen = _turns(obj["chosen"], "chosen", "assistant")
    rejected = _turns(obj["rejected"], "rejected", "assistant")
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise ValueError("'chosen' and 'rejected' are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


_LABELS = {"true": True, "false": False, "1": True, "0": False}


def _label(value: Any) -> bool:
    """A KTO label: a boolean, 1 / 0, or (CSV cells, surrounding spaces ignored) true / false / 1 / 0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise ValueError(f"'label' is {value!r}, expected true or false (or 1 / 0)")


def kto_row(source: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A KTO example: `prompt` + `completion` + boolean `label` (desirable or not), or a preference pair.

    A pair is kept whole here; the stage unpairs it into chosen -> True and rejected -> False.
    """
    if "chosen" in obj or "rejected" in obj:
        return preference_row(source, obj)
    _required(obj, "prompt", "completion", "label")
    return {
        "prompt": mapped_system(_turns(obj["prompt"], "prompt", "user"), obj),
        "completion": _turns(obj["completion"], "completion", "assistant"),
        "label": _label(obj["label"]),
    }


def prompt_row(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A GRPO prompt (string or messages); other fields are kept for user reward functions (TRL passes them on)."""
    _required(obj, "prompt")
    kept = {k: v for k, v in obj.items() if k != "_system"}
    return {**kept, "prompt": mapped_system(_turns(obj["prompt"], "prompt", "user"), obj)}


def mc_item(obj: dict[str, Any]) -> dict[str, Any]:
    """A multiple-choice item of an evaluate task: question, choices, 0-based answer, optional context.

    ValueError names what is wrong; an answer written as digits with spaces around (a CSV cell such as "2   ")
    is read as that number."""
    for key in ("question", "choices", "answer"):
        if key not in obj:
            raise ValueError(f"missing field '{key}'")
    question, choices, answer = obj["question"], obj["choices"], obj["answer"]
    if isinstance(answer, str) and answer.strip().isdigit():  # a CSV cell such as "2   "
        answer = int(answer.strip())
    if not isinstance(question, str) or not question.strip():
        raise ValueError("field 'question' must be a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2:
        raise ValueError("field 'choices' must be a list of at least two strings")
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError("every entry of 'choices' must be a non-empty string")
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise ValueError(f"field 'answer' must be an integer index into choices, found {answer!r}")
    if not 0 <= answer < len(choices):
        raise ValueError(f"answer {answer} is outside choices (0..{len(choices) - 1})")
    context = obj.get("context")
    if context is not None and not isinstance(context, str):
        raise ValueError(f"field 'context' must be a string, found {type(context).__name__}")
    return {"question": question, "choices": choices, "answer": answer, "context": context}
