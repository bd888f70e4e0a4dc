"""The Slack exit handler (charts/files/notify.py), run exactly as the rendered workflow runs it: `python -c
<script>` with the environment Argo gives it, against a local webhook.

FAILURES values are the strings Argo v4.1.2 produces: workflow/controller/operator.go (wfOperationCtx.operate)
sets `strconv.Quote(string(json.Marshal(failures)))`; with no failed node `json.Marshal(nil slice)` is `null`, so
the value is `"null"` with its quotes. The first list below is the one in Argo's own test
(workflow/controller/hooks_test.go, TestWfHookHasFailures); json.Marshal escapes <, >, & and control characters
as \\u00XX, and strconv.Quote writes non-printable runes above U+FFFF as \\UXXXXXXXX (not JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from .chart.rendered import CHART, helm_template, load_all

ARGO_FAILURES = (
    r'"[{\"displayName\":\"hook-failures\",\"message\":\"Pod failed\",\"templateName\":\"intentional-fail\",'
    r'\"phase\":\"Failed\",\"podName\":\"hook-failures\",\"finishedAt\":\"2026-12-01T03:04:05Z\"}]"'
)
# A failed training step and its DAG node, with a Korean message, an escaped "<", a newline and a tag character.
ARGO_FAILURES_MESSY = (
    r'"[{\"displayName\":\"cpt\",\"message\":\"평가 실패 \\u003cexit 3\\u003e\\nsee logs \U000e0001\",'
    r"\"templateName\":\"cpt\",\"phase\":\"Failed\",\"podName\":\"korean-llm-qwen7b-r1-cpt-1234\","
    r"\"finishedAt\":\"2026-12-01T03:04:05Z\"},"
    r"""{\"displayName\":\"korean-llm-qwen7b-r1\",\"message\":\"child 'korean-llm-qwen7b-r1-1234' failed\","""
    r"\"templateName\":\"pipeline\",\"phase\":\"Failed\",\"podName\":\"korean-llm-qwen7b-r1\","
    r'\"finishedAt\":\"2026-12-01T03:04:06Z\"}]"'
)


@pytest.fixture(scope="module")
def script() -> str:
    docs = load_all(helm_template([CHART / "ci" / "all-features-values.yaml"]))
    wt = next(d for d in docs if d["kind"] == "WorkflowTemplate" and d["metadata"]["name"] == "korean-llm-qwen7b")
    notify = next(t for t in wt["spec"]["templates"] if t["name"] == "notify")
    assert notify["container"]["command"] == ["python", "-c"]
    (text,) = notify["container"]["args"]
    assert "{{" not in text  # Argo would substitute inside the script
    return text


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX", handler
    server.shutdown()
    server.server_close()


def run(script: str, url: str, status: str, failures: str) -> subprocess.CompletedProcess[str]:
    env = {"MODEL": "qwen7b", "RUN_ID": "7b-r1", "STATUS": status, "FAILURES": failures, "SLACK_WEBHOOK_URL": url}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_succeeded_run_with_no_failures(script: str, webhook: tuple[str, type[_Hook]]) -> None:
    url, hook = webhook
    out = run(script, url, "Succeeded", '"null"')
    assert out.returncode == 0, out.stderr
    assert hook.received == [{"text": "korean-llm qwen7b run 7b-r1: Succeeded"}]


def test_failed_run_names_the_failed_step(script: str, webhook: tuple[str, type[_Hook]]) -> None:
    url, hook = webhook
    out = run(script, url, "Failed", ARGO_FAILURES)
    assert out.returncode == 0, out.stderr
    assert hook.received == [
        {"text": "korean-llm qwen7b run 7b-r1: Failed - failed step(s): hook-failures (Pod failed)"}
    ]


def test_go_quoted_unicode_and_escapes_are_decoded(script: str, webhook: tuple[str, type[_Hook]]) -> None:
    url, hook = webhook
    out = run(script, url, "Failed", ARGO_FAILURES_MESSY)
    assert out.returncode == 0, out.stderr
    (msg,) = hook.received
    assert msg["text"].startswith(
        "korean-llm qwen7b run 7b-r1: Failed - failed step(s): cpt (평가 실패 <exit 3>\nsee logs "
    )
    assert (
        "\U000e0001" in msg["text"] and "korean-llm-qwen7b-r1 (child 'korean-llm-qwen7b-r1-1234' failed)" in msg["text"]
    )


@pytest.mark.parametrize(
    "failures",
    [
        "null",  # an older controller's bare JSON
        '[{"displayName":"sft","phase":"Error"}]',
        "{{workflow.failures}}",  # never substituted
        "",
    ],
)
def test_other_shapes_are_read(script: str, webhook: tuple[str, type[_Hook]], failures: str) -> None:
    url, hook = webhook
    out = run(script, url, "Error", failures)
    assert out.returncode == 0, out.stderr
    expected = "korean-llm qwen7b run 7b-r1: Error" + (" - failed step(s): sft" if "sft" in failures else "")
    assert hook.received == [{"text": expected}]


@pytest.mark.parametrize("failures", ['"[{\\"displayName\\":', "not json", '"42"', "[1, 2]"])
def test_unreadable_failures_still_notify(script: str, webhook: tuple[str, type[_Hook]], failures: str) -> None:
    url, hook = webhook
    out = run(script, url, "Failed", failures)
    assert out.returncode == 0, out.stderr
    assert hook.received == [
        {"text": "korean-llm qwen7b run 7b-r1: Failed - failed steps: (unreadable workflow.failures)"}
    ]


def test_slack_error_does_not_fail_the_run(script: str, webhook: tuple[str, type[_Hook]]) -> None:
    url, hook = webhook
    hook.status = 500
    out = run(script, url, "Succeeded", '"null"')
    assert out.returncode == 0
    assert "posting to Slack failed (HTTPError" in out.stderr and len(hook.received) == 1


def test_unreachable_webhook_does_not_fail_the_run(script: str) -> None:
    # Port 9 on localhost: nothing listens; the connection is refused at once.
    out = run(script, "http://127.0.0.1:9/hook", "Succeeded", '"null"')
    assert out.returncode == 0
    assert "posting to Slack failed" in out.stderr
