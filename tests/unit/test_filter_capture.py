"""A loopback OTLP/JSON capture server for the bundled filter's tests, and its own checks.

It records what the filter's exporter posts to `/api/public/otel/v1/traces` (gunzipped and
decoded), answers with a switchable status, and checks Basic auth against the keys it was
given. Kept deliberately small: the Langfuse stand-in is the full peer; this one lets the
unit tests see the raw wire format and control failures precisely.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.world.http_server import LoopbackHTTPServer

FILTER_PATH = (
    Path(__file__).resolve().parents[2]
    / "operator"
    / "openwebui_langfuse"
    / "filters"
    / "langfuse_tracing_filter.py"
)


def load_filter_module(name: str = "langfuse_tracing_filter_under_test") -> ModuleType:
    """Import the filter file by path under a module name of its own, as Pipelines does."""
    spec = importlib.util.spec_from_file_location(name, FILTER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def attribute_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return value["doubleValue"]
    if "arrayValue" in value:
        return [attribute_value(v) for v in value["arrayValue"].get("values", [])]
    raise AssertionError(f"unexpected OTLP value {value!r}")


def attributes_of(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: attribute_value(pair["value"]) for pair in pairs}


class OtlpCapture(LoopbackHTTPServer):
    """Records OTLP exports; `status` decides the answer (200 by default)."""

    def __init__(self, public_key: str = "pk-lf-test", secret_key: str = "sk-lf-test") -> None:
        self.keys = {public_key: secret_key}
        self.status = 200
        self.exports: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                record = {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(raw),
                    "body_bytes": len(raw),  # after gunzip: what a request limit applies to
                    "public_key": capture._public_key_of(self.headers.get("Authorization")),
                }
                status = capture.status
                authorised = capture._authorised(self.headers.get("Authorization"))
                if status == 200 and not authorised:
                    status = 401
                with capture._lock:
                    (capture.exports if status == 200 else capture.rejected).append(record)
                payload = b"{}" if status == 200 else b'{"message":"no"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, poll_interval=0.02)

    def _decoded_auth(self, header: str | None) -> tuple[str, str] | None:
        if not header or not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    def _public_key_of(self, header: str | None) -> str | None:
        decoded = self._decoded_auth(header)
        return decoded[0] if decoded else None

    def _authorised(self, header: str | None) -> bool:
        decoded = self._decoded_auth(header)
        return decoded is not None and self.keys.get(decoded[0]) == decoded[1]

    def spans(self) -> list[dict[str, Any]]:
        """Every accepted span, flattened, with decoded attributes and its resource/scope."""
        with self._lock:
            exports = list(self.exports)
        spans = []
        for export in exports:
            for resource_spans in export["body"]["resourceSpans"]:
                resource = attributes_of(resource_spans["resource"]["attributes"])
                for scope_spans in resource_spans["scopeSpans"]:
                    for span in scope_spans["spans"]:
                        spans.append(
                            {
                                **span,
                                "attributes": attributes_of(span["attributes"]),
                                "resource": resource,
                                "scope": scope_spans["scope"],
                                "public_key": export["public_key"],
                            }
                        )
        return spans

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.spans()) >= count, timeout, f"{count} spans")
        return self.spans()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def capture() -> Iterator[OtlpCapture]:
    with OtlpCapture() as server:
        yield server


# --- checks of the capture server itself (the other filter tests rely on it) -------------


def test_capture_decodes_gzip_json_and_checks_basic_auth(capture: OtlpCapture) -> None:
    import httpx

    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "a", "value": {"intValue": "3"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "s"},
                        "spans": [
                            {
                                "traceId": "1" * 32,
                                "spanId": "2" * 16,
                                "name": "n",
                                "attributes": [
                                    {"key": "t", "value": {"arrayValue": {"values": []}}}
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    data = gzip.compress(json.dumps(body).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    url = capture.url + "/api/public/otel/v1/traces"
    good = httpx.post(url, content=data, headers=headers, auth=("pk-lf-test", "sk-lf-test"))
    bad = httpx.post(url, content=data, headers=headers, auth=("pk-lf-test", "wrong"))
    assert (good.status_code, bad.status_code) == (200, 401)
    [span] = capture.spans()
    assert span["attributes"] == {"t": []}
    assert span["resource"] == {"a": 3}
    assert len(capture.rejected) == 1
