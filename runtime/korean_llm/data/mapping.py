"""Field mapping applied to rows: the schema is `korean_llm.config.mapping` (see its docstring for the keys).

`check_columns` checks a mapping against the first record of each file (a missing column stops the stage with
one message naming the source, the column and the columns found); `apply` turns one row into the stage's
field names, and a row that lacks a mapped field becomes a reject with that reason.
"""

from __future__ import annotations

from typing import Any

from korean_llm.config.mapping import TURN_LISTS, Constant, FieldMapping, PathDefault, Spec
from korean_llm.errors import DataError


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
    for name in ("messages", *(n for n in TURN_LISTS if n != "messages")):
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
