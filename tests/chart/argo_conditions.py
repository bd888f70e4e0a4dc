"""Argo resource-step conditions, evaluated exactly as Argo's executor evaluates them.

What an Argo `resource` step does with `successCondition` / `failureCondition` (argo-workflows v4.1.2):

- `workflow/executor/resource.go`, `WaitResource`: each condition string is parsed with Kubernetes'
  `labels.Parse` (k8s.io/apimachinery v0.35.4, the version in Argo's go.mod, `pkg/labels/selector.go`:
  `Lexer`, `Parser.parse`, `parseRequirement`, `NewRequirement`). A string that does not parse fails the step.
- `checkResourceState` GETs the object as JSON; `matchConditions` then evaluates the requirements against it
  through `gjsonLabels` (the label key is a gjson path, github.com/tidwall/gjson v1.19.0: `Has` = `Exists()`,
  `Get` = `String()`):
    * failure: the step FAILS as soon as ANY ONE failure requirement matches (an OR over the comma-separated
      terms, although the docs describe the comma as AND: argo-workflows#11217);
    * success: the step SUCCEEDS when EVERY success requirement matches (an AND; with no success condition,
      `numMatched >= len(successReqs)` holds at once, so a step with only a failureCondition succeeds on its
      first poll unless that failure requirement already matches);
    * failure is checked before success; otherwise the step keeps polling.
- `Requirement.Matches` (selector.go): `in`/`=`/`==` need the key present and the value in the set; `notin`/
  `!=` match when the key is absent or the value differs; `key` = exists, `!key` = does not exist; `>`/`<` need
  the key present and both sides parsed as base-10 int64 (else no match).

Label keys must be qualified names (`[prefix/]name`, name <= 63 characters of `[A-Za-z0-9_.-]`, starting and
ending alphanumeric), so gjson queries such as `status.conditions.#(type=="Failed")` cannot be written; an
array element is reached by its index (`status.conditions.2.type`).

Used by the chart tests with status snapshots shaped like the ones the training operators write.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

# --- k8s.io/apimachinery v0.35.4 pkg/labels/selector.go ----------------------------------------------------------

_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")
_TOKENS = {
    ")": "ClosedPar",
    ",": "Comma",
    "!": "DoesNotExist",
    "==": "DoubleEquals",
    "=": "Equals",
    ">": "GreaterThan",
    "in": "In",
    "<": "LessThan",
    "!=": "NotEquals",
    "notin": "NotIn",
    "(": "OpenPar",
}
# k8s.io/apimachinery/pkg/util/validation: IsQualifiedName / IsValidLabelValue
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_INT64 = re.compile(r"^[+-]?[0-9]+$")

Operator = Literal["in", "notin", "=", "==", "!=", "exists", "!", "gt", "lt"]


class ConditionSyntaxError(ValueError):
    """The condition does not parse: Argo fails the step ("success condition '...' failed to parse")."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...]

    def matches(self, obj: Any) -> bool:
        exists, value = gjson_lookup(obj, self.key)
        if self.operator in ("in", "=", "=="):
            return exists and value in self.values
        if self.operator in ("notin", "!="):
            return not exists or value not in self.values
        if self.operator == "exists":
            return exists
        if self.operator == "!":
            return not exists
        if not exists or not _parse_int64(value):
            return False
        lhs, rhs = int(value), int(self.values[0])
        return lhs > rhs if self.operator == "gt" else lhs < rhs


def _parse_int64(text: str) -> bool:
    # strconv.ParseInt(s, 10, 64): optional sign, decimal digits, within int64
    return bool(_INT64.match(text)) and -(2**63) <= int(text) < 2**63


def _lex(selector: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    i, n = 0, len(selector)
    while True:
        while i < n and selector[i] in _WHITESPACE:
            i += 1
        if i >= n:
            items.append(("EndOfString", ""))
            return items
        if selector[i] in _SPECIAL:
            buf, last = "", None
            while i < n and selector[i] in _SPECIAL:
                buf += selector[i]
                if buf in _TOKENS:
                    last = (_TOKENS[buf], buf)
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            if last is None:
                items.append(("Error", f"error expected: keyword found '{buf}'"))
            else:
                items.append(last)
            continue
        start = i
        while i < n and selector[i] not in _SPECIAL and selector[i] not in _WHITESPACE:
            i += 1
        word = selector[start:i]
        items.append((_TOKENS.get(word, "Identifier"), word))


def _validate_key(key: str) -> None:
    prefix, sep, name = key.rpartition("/")
    problems = []
    if sep and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        problems.append("prefix part must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME.match(name):
        problems.append("name part must be <= 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends")
    if problems:
        raise ConditionSyntaxError(f"key {key!r}: " + "; ".join(problems))


def _requirement(key: str, op: Operator, values: list[str]) -> Requirement:
    # NewRequirement
    _validate_key(key)
    if op in ("in", "notin") and not values:
        raise ConditionSyntaxError("for 'in', 'notin' operators, values set can't be empty")
    if op in ("=", "==", "!=") and len(values) != 1:
        raise ConditionSyntaxError("exact-match compatibility requires one single value")
    if op in ("gt", "lt"):
        if len(values) != 1:
            raise ConditionSyntaxError("for 'Gt', 'Lt' operators, exactly one value is required")
        if not _parse_int64(values[0]):
            raise ConditionSyntaxError(f"{values[0]!r}: for 'Gt', 'Lt' operators, the value must be an integer")
    for v in values:
        if len(v) > 63 or not _VALUE.match(v):
            raise ConditionSyntaxError(f"value {v!r} of {key!r} is not a valid label value")
    return Requirement(key, op, tuple(sorted(set(values))))


def parse_selector(selector: str) -> list[Requirement]:
    """labels.Parse: the requirements of a selector, sorted by key as Kubernetes sorts them."""
    items = _lex(selector)
    pos = 0

    def look(values: bool = True) -> tuple[str, str]:
        tok, lit = items[pos]
        return ("Identifier", lit) if values and tok in ("In", "NotIn") else (tok, lit)

    def take(values: bool = True) -> tuple[str, str]:
        nonlocal pos
        pos += 1
        tok, lit = items[pos - 1]
        return ("Identifier", lit) if values and tok in ("In", "NotIn") else (tok, lit)

    reqs: list[Requirement] = []
    while True:
        tok, lit = look()
        if tok == "EndOfString":
            break
        if tok not in ("Identifier", "DoesNotExist"):
            raise ConditionSyntaxError(f"found '{lit}', expected: !, identifier, or 'end of string'")
        # parseKeyAndInferOperator
        op: Operator | None = None
        tok, lit = take()
        if tok == "DoesNotExist":
            op = "!"
            tok, lit = take()
        if tok != "Identifier":
            raise ConditionSyntaxError(f"found '{lit}', expected: identifier")
        key = lit
        _validate_key(key)
        if look()[0] in ("EndOfString", "Comma"):
            reqs.append(_requirement(key, op or "exists", []))
        else:
            if op == "!":
                raise ConditionSyntaxError(f"found '{look()[1]}', expected: ',' or 'end of string'")
            tok, lit = take(values=False)
            ops: dict[str, Operator] = {
                "In": "in",
                "Equals": "=",
                "DoubleEquals": "==",
                "GreaterThan": "gt",
                "LessThan": "lt",
                "NotIn": "notin",
                "NotEquals": "!=",
            }
            if tok not in ops:
                raise ConditionSyntaxError(f"found '{lit}', expected: one of in, notin, =, ==, !=, >, <")
            op = ops[tok]
            values: list[str] = []
            if op in ("in", "notin"):
                tok, lit = take()
                if tok != "OpenPar":
                    raise ConditionSyntaxError(f"found '{lit}' expected: '('")
                tok, lit = look()
                if tok == "ClosedPar":
                    take()
                    values = [""]
                elif tok in ("Identifier", "Comma"):
                    seen: set[str] = set()
                    while True:
                        tok, lit = take()
                        if tok == "Identifier":
                            seen.add(lit)
                            nxt, nlit = look()
                            if nxt == "Comma":
                                continue
                            if nxt == "ClosedPar":
                                break
                            raise ConditionSyntaxError(f"found '{nlit}', expected: ',' or ')'")
                        if tok == "Comma":
                            if not seen:
                                seen.add("")
                            nxt, _ = look()
                            if nxt == "ClosedPar":
                                seen.add("")
                                break
                            if nxt == "Comma":
                                seen.add("")
                            continue
                        raise ConditionSyntaxError(f"found '{lit}', expected: ',', or identifier")
                    if take()[0] != "ClosedPar":
                        raise ConditionSyntaxError("expected: ')'")
                    values = sorted(seen)
                else:
                    raise ConditionSyntaxError(f"found '{lit}', expected: ',', ')' or identifier")
            else:
                tok, lit = look()
                if tok in ("EndOfString", "Comma"):
                    values = [""]
                else:
                    tok, lit = take()
                    if tok != "Identifier":
                        raise ConditionSyntaxError(f"found '{lit}', expected: identifier")
                    values = [lit]
            reqs.append(_requirement(key, op, values))
        tok, lit = take()
        if tok == "EndOfString":
            break
        if tok != "Comma":
            raise ConditionSyntaxError(f"found '{lit}', expected: ',' or 'end of string'")
        if look()[0] not in ("Identifier", "DoesNotExist"):
            raise ConditionSyntaxError(f"found '{look()[1]}', expected: identifier after ','")
    return sorted(reqs, key=lambda r: r.key)


# --- github.com/tidwall/gjson v1.19.0: Get(json, path).Exists() / .String() for label-key paths -----------------


def _string(value: Any) -> str:
    """gjson's Result.String() of a value of the object (as JSON: what the API server returns)."""
    if value is None:
        return ""  # JSON null: Exists() is true, String() is ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)  # an integer's raw text
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")  # strconv.FormatFloat(f, 'f', -1, 64)
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # objects and arrays: their raw JSON


def gjson_lookup(obj: Any, path: str) -> tuple[bool, str]:
    """(Exists(), String()) of gjson.Get on the JSON of `obj`, for paths made of label-key characters: dot-separated
    object keys; an all-digit component indexes an array."""
    node = obj
    for part in path.split("."):
        if isinstance(node, dict):
            if part not in node:
                return False, ""
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                return False, ""
            node = node[index]
        else:
            return False, ""
    return True, _string(node)


# --- workflow/executor/resource.go matchConditions ---------------------------------------------------------------

Outcome = Literal["succeeded", "failed", "waiting"]


def evaluate(obj: dict[str, Any], success_condition: str = "", failure_condition: str = "") -> Outcome:
    """What one poll of Argo's executor decides for the resource `obj` (the whole object, status included)."""
    success = parse_selector(success_condition) if success_condition else []
    failure = parse_selector(failure_condition) if failure_condition else []
    if not success_condition and not failure_condition:
        return "succeeded"  # WaitResource returns at once
    if any(req.matches(obj) for req in failure):
        return "failed"
    if sum(req.matches(obj) for req in success) >= len(success):
        return "succeeded"
    return "waiting"


def evaluate_step(step: dict[str, Any], obj: dict[str, Any]) -> Outcome:
    """`evaluate` with the conditions of an Argo template that has a `resource` block."""
    res = step["resource"]
    return evaluate(obj, res.get("successCondition", ""), res.get("failureCondition", ""))
