"""Exit handler of the pipeline: posts the run's result to a Slack incoming webhook.

Run by Argo as `python -c <this file>` in the runtime image, so it holds no Argo placeholder (double braces)
itself. Its environment:
  MODEL, RUN_ID, STATUS      model name(s), run id, Argo's workflow.status (Succeeded, Failed, Error)
  FAILURES                   Argo's workflow.failures
  SLACK_WEBHOOK_URL          from an existing Secret

What Argo puts in FAILURES (argo-workflows v4.1.2, workflow/controller/operator.go, wfOperationCtx.operate):
`strconv.Quote(string(json.Marshal(failures)))`, a Go-quoted string whose content is a JSON list of
{displayName, message, templateName, phase, podName, finishedAt}, or `"null"` (with the quotes) when no node
failed. Argo's template substitution (util/template/simple_template.go) escapes it once more for the JSON
of the template and the env value arrives exactly as produced. Older controllers passed the bare JSON; an
unresolved placeholder stays as written (double braces). All of these are read; anything else is reported as
unreadable instead of crashing.

The handler never fails the workflow: Argo marks a Succeeded run Failed when its exit handler fails, so a
Slack outage or a bad webhook is logged to stderr and the script exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from typing import Any

_GO_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def go_unquote(text: str) -> str:
    """The inverse of Go's strconv.Quote: a double-quoted Go string literal to its content.

    Go's escapes are \\a \\b \\f \\n \\r \\t \\v \\\\ \\" \\xHH \\ooo \\uHHHH \\UHHHHHHHH (JSON has no \\x,
    \\U or octal, which strconv.Quote writes for control and non-printable characters, so json.loads is not
    enough)."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("not a double-quoted Go string")
    body, out, i = text[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("dangling backslash")
        esc = body[i + 1]
        if esc in _GO_ESCAPES:
            out += _GO_ESCAPES[esc].encode("utf-8")
            i += 2
        elif esc == "x":
            out.append(int(body[i + 2 : i + 4], 16))  # a raw byte: Go quotes invalid UTF-8 this way
            i += 4
        elif esc in "01234567":
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
        else:
            raise ValueError(f"unknown escape \\{esc}")
    return out.decode("utf-8", errors="replace")


def parse_failures(raw: str) -> list[dict[str, Any]] | None:
    """Failed nodes from workflow.failures as Argo passes it; [] when none; None when unreadable."""
    raw = raw.strip()
    if not raw or raw == "null" or raw.startswith("{" * 2):
        return []
    try:
        value: Any = go_unquote(raw) if raw.startswith('"') else raw
        value = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return None


def message(model: str, run_id: str, status: str, failures: list[dict[str, Any]] | None) -> str:
    text = f"korean-llm {model} run {run_id}: {status}"
    if failures is None:
        return text + " - failed steps: (unreadable workflow.failures)"
    # The DAG node of a failed step fails too, and a retried step has one failed node per attempt: list each
    # step once, in the order Argo reported them.
    names: list[str] = []
    for f in failures:
        name = str(f.get("displayName") or f.get("templateName") or "?")
        detail = f"{name} ({f['message']})" if f.get("message") else name
        if name not in {n.split(" (")[0] for n in names}:
            names.append(detail)
    if names:
        text += " - failed step(s): " + ", ".join(names)
    return text


def post(url: str, text: str, timeout: float = 30.0) -> None:
    body = json.dumps({"text": text}).encode("utf-8")
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()


def main(env: dict[str, str]) -> int:
    text = message(
        env.get("MODEL", "?"),
        env.get("RUN_ID", "?"),
        env.get("STATUS", "?"),
        parse_failures(env.get("FAILURES", "")),
    )
    print(text)
    url = env.get("SLACK_WEBHOOK_URL", "")
    if not url:
        print("notify: SLACK_WEBHOOK_URL is empty; nothing posted", file=sys.stderr)
        return 0
    try:
        post(url, text)
    except Exception as exc:
        print(
            f"notify: posting to Slack failed ({type(exc).__name__}: {exc}); the run's result stands", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
