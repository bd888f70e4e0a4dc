"""A Kubernetes API server double on 127.0.0.1: the paths `korean-llm pipeline --backend cluster` calls.

It keeps objects per resource, answers GET (object, list with labelSelector / fieldSelector, watch stream),
POST, PATCH (JSON merge patch), DELETE, pod logs and the pod proxy, and records every request so tests can
assert what the client sent. Bodies are built by `k8s_shapes` in the shapes upstream projects produce.
Resources not registered answer 404 like an API server without that CRD.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from . import k8s_shapes as shapes

KINDS = {  # plural -> (apiVersion, kind)
    "workflows": ("argoproj.io/v1alpha1", "Workflow"),
    "workflowtemplates": ("argoproj.io/v1alpha1", "WorkflowTemplate"),
    "pytorchjobs": ("kubeflow.org/v1", "PyTorchJob"),
    "trainjobs": ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    "pods": ("v1", "Pod"),
}
CUSTOM = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
CORE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?P<sub>/log|/proxy/.*)?)?$")
USER = "system:serviceaccount:ml:trainer"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def selector_matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, eq, value = term.partition("=")
        if eq and labels.get(key) != value:
            return False
        if not eq and key not in labels:
            return False
    return True


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, its own CA (what a pod's ca.crt is to the apiserver's), and its key."""
    cert, key = folder / "ca.crt", folder / "server.key"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        [*cmd, "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


class FakeKube:
    def __init__(self, namespace: str = "ml", tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) to serve HTTPS, as the in-cluster address is `https://` only."""
        self.namespace = namespace
        self.tls = tls
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "workflows": {},
            "workflowtemplates": {},
            "pytorchjobs": {},
            "pods": {},
        }
        self.logs: dict[tuple[str, str], str] = {}
        self.proxy: dict[str, str] = {}  # "<pod>:<port>/<path>" -> body
        self.watch_events: list[dict[str, Any]] = []  # sent on the next watch, then cleared
        self.forbid: set[tuple[str, str]] = set()  # (verb, plural)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive like the apiserver; the watch stream is chunked

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_PATCH(self) -> None:
                fake.handle(self, "PATCH")

            def do_DELETE(self) -> None:
                fake.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "trainer", "user": {"token": "test-token"}}],
                    "contexts": [
                        {"name": "fake", "context": {"cluster": "fake", "user": "trainer", "namespace": self.namespace}}
                    ],
                    "current-context": "fake",
                }
            )
        )
        return path

    def add(self, plural: str, obj: dict[str, Any]) -> None:
        self.objects.setdefault(plural, {})[obj["metadata"]["name"]] = copy.deepcopy(obj)

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(plural, {}).get(name)

    # ---- request handling ---------------------------------------------------------------------------
    def send(self, h: BaseHTTPRequestHandler, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)  # the apiserver decodes the path (a pod proxy name carries '%3A')
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        # The client sends `watch=True`; the apiserver reads booleans with Go's strconv.ParseBool.
        watching = query.get("watch", "").lower() in ("1", "t", "true")
        length = int(h.headers.get("Content-Length") or 0)
        body: Any = json.loads(h.rfile.read(length)) if length else None
        self.requests.append(
            {
                "method": method,
                "path": path,
                "query": query,
                "body": body,
                "content_type": h.headers.get("Content-Type"),
                "auth": h.headers.get("Authorization"),
            }
        )
        m = CUSTOM.match(path)
        core = CORE.match(path)
        if m:
            plural, name, group = m["plural"], m["name"], m["group"]
        elif core:
            plural, name, group = "pods", core["name"], ""
        else:
            self.send(h, 404, shapes.status_error(404, "NotFound", "the server could not find the requested resource"))
            return
        verb = {
            "GET": "get" if name else ("watch" if watching else "list"),
            "POST": "create",
            "PATCH": "patch",
            "DELETE": "delete",
        }[method]
        resource = plural if not (core and core["sub"]) else ("pods/log" if core["sub"] == "/log" else "pods/proxy")
        self.requests[-1]["rbac"] = (verb, group, resource)  # what the apiserver's authorizer checks
        if (verb, resource) in self.forbid:
            self.send(h, 403, shapes.forbidden(verb, resource, group, self.namespace, USER))
            return
        if plural not in self.objects:
            self.send(h, 404, shapes.status_error(404, "NotFound", "the server could not find the requested resource"))
            return
        if core and core["sub"] == "/log":
            text = self.logs.get((name, query.get("container", "")))
            if text is None:
                self.send(h, 404, shapes.not_found("pods", "", name))
            else:
                self.send(h, 200, text, "text/plain")
            return
        if core and core["sub"]:
            key = name + core["sub"].replace("/proxy", "")
            if key in self.proxy:
                self.send(h, 200, self.proxy[key], "text/plain; version=0.0.4")
            else:
                self.send(h, 503, shapes.status_error(503, "ServiceUnavailable", "error trying to reach service"))
            return
        store = self.objects[plural]
        api_version, kind = KINDS[plural]
        if method == "GET" and name is None and watching:
            self.watch(h, plural, query)
            return
        if method == "GET" and name is None:
            items = [
                o
                for o in store.values()
                if selector_matches(o["metadata"].get("labels", {}) or {}, query.get("labelSelector"))
            ]
            fs = query.get("fieldSelector", "")
            if fs.startswith("metadata.name="):
                items = [o for o in items if o["metadata"]["name"] == fs.split("=", 1)[1]]
            self.send(h, 200, shapes.k8s_list(api_version, kind, items))
            return
        if method == "POST":
            obj_name = body["metadata"]["name"]
            if obj_name in store:
                self.send(
                    h,
                    409,
                    shapes.status_error(
                        409,
                        "AlreadyExists",
                        f'{plural}.{group} "{obj_name}" already exists',
                        {"name": obj_name, "group": group, "kind": plural},
                    ),
                )
                return
            created = copy.deepcopy(body)
            created["metadata"].update(
                uid=str(uuid.uuid4()),
                creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                resourceVersion="1",
                generation=1,
            )
            store[obj_name] = created
            self.send(h, 201, created)
            return
        obj = store.get(name or "")
        if obj is None:
            self.send(h, 404, shapes.not_found(plural, group, name or ""))
            return
        if method == "GET":
            self.send(h, 200, obj)
        elif method == "PATCH":
            store[obj["metadata"]["name"]] = merge_patch(obj, body)
            self.send(h, 200, store[obj["metadata"]["name"]])
        else:
            del store[obj["metadata"]["name"]]
            self.send(h, 200, obj)

    def watch(self, h: BaseHTTPRequestHandler, plural: str, query: dict[str, str]) -> None:
        """A watch stream: the scripted events, one JSON object per line, then (like the apiserver at
        timeoutSeconds) the end of the response."""
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        events, self.watch_events = self.watch_events, []
        for ev in events:
            if ev["type"] != "ERROR" and ev["object"]["metadata"]["name"] in self.objects[plural]:
                self.objects[plural][ev["object"]["metadata"]["name"]] = copy.deepcopy(ev["object"])
            line = (json.dumps(ev) + "\n").encode()
            h.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            h.wfile.flush()
            time.sleep(0.05)
        if not events:
            time.sleep(min(float(query.get("timeoutSeconds", "1")), 2.0))
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
