"""Decode an OTLP/HTTP trace export (protobuf or JSON) into plain spans.

Both encodings end in the same `DecodedSpan` list, so the Langfuse mapping does not care
how the client encoded. Validation follows the Langfuse route: a span without a
well-formed trace or span id, or a non-array where an array belongs, rejects the export.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


class OtlpError(ValueError):
    """The export is malformed; the message is safe to return to the client."""


@dataclass
class DecodedSpan:
    trace_id: str  # 32 lowercase hex characters
    span_id: str  # 16 lowercase hex characters
    parent_span_id: str | None
    name: str
    start_nanos: int
    end_nanos: int
    attributes: dict[str, Any] = field(default_factory=dict)
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    status_code: int = 0
    status_message: str = ""


# --- protobuf -------------------------------------------------------------------------


def _any_value_from_proto(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value_from_proto(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes_from_proto(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _attributes_from_proto(pairs: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        attributes[pair.key] = _any_value_from_proto(pair.value)
    return attributes


def _id_from_bytes(raw: bytes, length: int, what: str) -> str:
    if len(raw) != length or raw == bytes(length):
        raise OtlpError(f"Invalid {what}: expected {length} non-zero bytes, got {len(raw)}")
    return raw.hex()


def decode_protobuf(body: bytes) -> list[DecodedSpan]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise OtlpError(f"Invalid protobuf payload: {error}") from error
    spans: list[DecodedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes_from_proto(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                parent = span.parent_span_id
                spans.append(
                    DecodedSpan(
                        trace_id=_id_from_bytes(span.trace_id, 16, "traceId"),
                        span_id=_id_from_bytes(span.span_id, 8, "spanId"),
                        parent_span_id=_id_from_bytes(parent, 8, "parentSpanId")
                        if parent
                        else None,
                        name=span.name,
                        start_nanos=span.start_time_unix_nano,
                        end_nanos=span.end_time_unix_nano,
                        attributes=_attributes_from_proto(span.attributes),
                        resource_attributes=resource,
                        scope_name=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                        status_code=span.status.code,
                        status_message=span.status.message,
                    )
                )
    return spans


# --- JSON (OTLP/JSON: ids are hex strings, 64-bit integers may be decimal strings) -------


def _require_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpError(f"{what} must be an array")
    return value


def _any_value_from_json(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        items = _require_list((value["arrayValue"] or {}).get("values"), "arrayValue.values")
        return [_any_value_from_json(item) for item in items]
    if "kvlistValue" in value:
        return _attributes_from_json((value["kvlistValue"] or {}).get("values"), "kvlistValue")
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attributes_from_json(pairs: Any, what: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for pair in _require_list(pairs, what):
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
            raise OtlpError(f"{what} entries must be objects with a string key")
        attributes[pair["key"]] = _any_value_from_json(pair.get("value"))
    return attributes


def _id_from_hex(value: Any, length: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != 2 * length:
        raise OtlpError(f"Invalid {what}: expected {2 * length} hex characters")
    try:
        raw = bytes.fromhex(value)
    except ValueError as error:
        raise OtlpError(f"Invalid {what}: not hex") from error
    if raw == bytes(length):
        raise OtlpError(f"Invalid {what}: all zero")
    return raw.hex()


def _nanos(value: Any, what: str) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise OtlpError(f"Invalid {what}") from error


def decode_json(document: Any) -> list[DecodedSpan]:
    if not isinstance(document, dict):
        raise OtlpError("Request body must be an ExportTraceServiceRequest object")
    spans: list[DecodedSpan] = []
    for resource_spans in _require_list(document.get("resourceSpans"), "resourceSpans"):
        if not isinstance(resource_spans, dict):
            raise OtlpError("resourceSpans entries must be objects")
        resource = _attributes_from_json(
            (resource_spans.get("resource") or {}).get("attributes"), "resource.attributes"
        )
        for scope_spans in _require_list(resource_spans.get("scopeSpans"), "scopeSpans"):
            if not isinstance(scope_spans, dict):
                raise OtlpError("scopeSpans entries must be objects")
            scope = scope_spans.get("scope") or {}
            for span in _require_list(scope_spans.get("spans"), "spans"):
                if not isinstance(span, dict):
                    raise OtlpError("spans entries must be objects")
                parent = span.get("parentSpanId")
                status = span.get("status") or {}
                spans.append(
                    DecodedSpan(
                        trace_id=_id_from_hex(span.get("traceId"), 16, "traceId"),
                        span_id=_id_from_hex(span.get("spanId"), 8, "spanId"),
                        parent_span_id=_id_from_hex(parent, 8, "parentSpanId") if parent else None,
                        name=str(span.get("name", "")),
                        start_nanos=_nanos(span.get("startTimeUnixNano"), "startTimeUnixNano"),
                        end_nanos=_nanos(span.get("endTimeUnixNano"), "endTimeUnixNano"),
                        attributes=_attributes_from_json(span.get("attributes"), "attributes"),
                        resource_attributes=resource,
                        scope_name=str(scope.get("name", "")),
                        scope_version=str(scope.get("version", "")),
                        status_code=_status_code(status.get("code")),
                        status_message=str(status.get("message", "")),
                    )
                )
    return spans


def _status_code(value: Any) -> int:
    # OTLP/JSON encodes enums as integers; tolerate the protobuf-JSON enum names too.
    names = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
    if isinstance(value, str):
        return names.get(value, 0)
    return int(value or 0)
