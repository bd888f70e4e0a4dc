"""tests/chart/argo_conditions.py against the upstream behaviour it reproduces.

Selector cases are Kubernetes' own (k8s.io/apimachinery v0.35.4, pkg/labels/selector_test.go: TestSelectorParse,
TestSelectorMatches); the match semantics are Argo's (v4.1.2 workflow/executor/resource.go matchConditions).
"""

from __future__ import annotations

from typing import Any

import pytest

from .chart.argo_conditions import ConditionSyntaxError, evaluate, gjson_lookup, parse_selector

# TestSelectorParse
GOOD = ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5"]
BAD = ["x=a||y=b", "x==a==b", "!x=a", "x<a"]


@pytest.mark.parametrize("selector", GOOD)
def test_kubernetes_good_selectors_parse(selector: str) -> None:
    parse_selector(selector)


@pytest.mark.parametrize("selector", BAD)
def test_kubernetes_bad_selectors_are_rejected(selector: str) -> None:
    with pytest.raises(ConditionSyntaxError):
        parse_selector(selector)


@pytest.mark.parametrize(
    "selector",
    [
        'status.conditions.#(type=="Failed")',  # gjson query: not a label key
        "status.phase in (Failed",
        "status.phase=Failed,",
        "a" * 64,  # name part longer than 63
        "status.x > 1.5",  # Gt needs an integer
        "status.message = has space",
    ],
)
def test_conditions_argo_cannot_parse_are_rejected(selector: str) -> None:
    with pytest.raises(ConditionSyntaxError):
        parse_selector(selector)


# TestSelectorMatches, with the label set as a flat JSON object (gjson paths of one component)
@pytest.mark.parametrize(
    ("selector", "labels", "match"),
    [
        ("x=y", {"x": "y"}, True),
        ("x=y,z=w", {"x": "y", "z": "w"}, True),
        ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
        ("notin=in", {"notin": "in"}, True),
        ("x", {"x": "z"}, True),
        ("!x", {"y": "z"}, True),
        ("x>1", {"x": "2"}, True),
        ("x<1", {"x": "0"}, True),
        ("x=z", {}, False),
        ("x=y", {"x": "z"}, False),
        ("x=y,z=w", {"x": "w", "z": "w"}, False),
        ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
        ("x", {"y": "z"}, False),
        ("!x", {"x": "z"}, False),
        ("x>1", {"x": "0"}, False),
        ("x<1", {"x": "2"}, False),
        ("foo=bar,foobar=bar,baz=blah", {"foo": "bar", "baz": "blah"}, False),
    ],
)
def test_kubernetes_selector_matches_as_a_success_condition(selector: str, labels: dict[str, str], match: bool) -> None:
    # A success condition is an AND of its requirements, exactly Kubernetes' selector semantics.
    assert (evaluate(labels, success_condition=selector) == "succeeded") is match


def test_failure_requirements_are_ored_and_checked_before_success() -> None:
    obj = {"status": {"phase": "Running", "ready": 1}}
    assert evaluate(obj, failure_condition="status.phase == Failed, status.ready > 0") == "failed"
    assert evaluate(obj, "status.ready > 0", "status.phase = Running") == "failed"
    assert evaluate(obj, "status.ready > 0, status.phase = Done", "status.phase = Failed") == "waiting"
    assert evaluate(obj, "status.ready > 0", "status.phase = Failed") == "succeeded"


def test_a_step_with_only_a_failure_condition_succeeds_on_its_first_poll() -> None:
    assert evaluate({"status": {}}, failure_condition="status.failed > 0") == "succeeded"


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("status.active", (True, "1")),
        ("status.conditions.1.type", (True, "Running")),
        ("status.conditions.2.type", (False, "")),
        ("status.conditions.type", (False, "")),  # no implicit search in arrays
        ("status.ratio", (True, "0.5")),
        ("status.whole", (True, "2")),  # 2.0 formatted as Go's FormatFloat(f, 'f', -1)
        ("status.done", (True, "true")),
        ("status.nothing", (True, "")),  # JSON null exists
        ("status.replicaStatuses.Master", (True, '{"active":1}')),
        ("status.missing", (False, "")),
    ],
)
def test_gjson_lookup(path: str, found: tuple[bool, str]) -> None:
    obj: dict[str, Any] = {
        "status": {
            "active": 1,
            "conditions": [{"type": "Created"}, {"type": "Running"}],
            "ratio": 0.5,
            "whole": 2.0,
            "done": True,
            "nothing": None,
            "replicaStatuses": {"Master": {"active": 1}},
        }
    }
    assert gjson_lookup(obj, path) == found


def test_gt_on_a_non_integer_value_does_not_match() -> None:
    assert evaluate({"status": {"ratio": 0.5}}, success_condition="status.ratio > 0") == "waiting"
    assert evaluate({"status": {"n": "7"}}, success_condition="status.n > 6") == "succeeded"
