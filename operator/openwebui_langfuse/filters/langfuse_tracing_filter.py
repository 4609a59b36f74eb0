"""
title: Langfuse Tracing
author: openwebui-langfuse
version: 0.1.0
license: MIT
description: Open WebUI chats to Langfuse over OTLP: a trace per chat, a generation per turn.
"""

# This file is loaded as a module of its own by two runtimes, so it must stay a single
# self-contained file:
#   - the open-webui Pipelines server, which instantiates `Pipeline` (a filter pipeline);
#   - Open WebUI itself, as a Filter Function (Admin > Functions), which instantiates `Filter`.
#     Open WebUI picks a function's type from the first class it finds among Pipe, Filter,
#     Action and Event, so no class of those other names may be defined here.
# It deliberately has no frontmatter dependency line: both runtimes pip-install those (from the
# internet) on every load.
#
# Shape of the work:
#   inlet  -> remember when and what was asked (a small record in a bounded map)
#   outlet -> complete the record and put it on the exporter's queue (no I/O)
#   worker -> a background thread per exporter encodes OTLP/JSON and posts batches to Langfuse
# The exporter is rebuilt whenever the valves change; nothing is shared across instances. It is
# made lazily by the first request that needs it and flushes on its own (no hook must run).

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
import uuid
import weakref
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

FILTER_VERSION = "0.2.0"
OTLP_TRACES_PATH = "/api/public/otel/v1/traces"
SCOPE_NAME = "openwebui-langfuse-filter"

# Langfuse accepts 4.5 MB per ingestion request and advises batches under 3.5 MB; the default
# keeps the uncompressed body below that, so the gzip body on the wire is smaller still.
DEFAULT_MAX_REQUEST_BYTES = 3_000_000
# Each captured text (a message, the answer), in UTF-8 bytes. A span carries the answer and the
# last question twice (on the observation and on the trace): with a full prompt that is still
# well under one request.
DEFAULT_MAX_FIELD_BYTES = 256 * 1024
# The prompt kept per turn (its newest messages first), in bytes of memory.
DEFAULT_MAX_PROMPT_BYTES = 1024 * 1024
DEFAULT_MAX_QUEUE_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024
# Smaller valves are raised to these: below them a cut marker or a request envelope won't fit.
MIN_REQUEST_BYTES = 64 * 1024
MIN_FIELD_BYTES = 1024
# The safety net for text the valves did not bound (debug logs, joined content parts).
MAX_TEXT_BYTES = 1024 * 1024
# Room kept for the "... [truncated N characters]" marker, so a cut text stays within its limit.
CUT_MARKER_RESERVE = 48
# Inline media (base64 data URLs) would dominate every payload; Langfuse gets a placeholder.
MAX_INLINE_DATA_URL_CHARS = 256
# Deeper structures in a message are replaced by a placeholder instead of walked.
MAX_CAPTURE_DEPTH = 32
# What an observation holds besides its prompt, answer and usage (ids, names, the object).
OBSERVATION_OVERHEAD_BYTES = 1024
RETRY_BACKOFF_MAX_SECONDS = 30.0
# zlib's window bits for a gzip container (what `Content-Encoding: gzip` means).
GZIP_WBITS = 16 + zlib.MAX_WBITS
# Spans too large for a request come one by one: their losses are logged this often at most.
SIZE_LOSS_REPORT_SECONDS = 600.0
MODEL_PARAMETER_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "reasoning_effort",
)

ConversationKind = Literal["chat", "temporary-chat", "channel", "api"]
TRACE_NAMES: dict[ConversationKind, str] = {
    "chat": "open-webui chat",
    "temporary-chat": "open-webui temporary chat",
    "channel": "open-webui channel",
    "api": "open-webui api request",
}
USER_TURN_NAME = "assistant response"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# What one observation is, from inlet to export
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Observation:
    """One LLM call seen by the filter: a user turn (inlet + outlet) or a background task."""

    trace_key: str
    kind: ConversationKind
    session_id: str | None
    user_id: str | None
    tags: tuple[str, ...]
    name: str
    start_ns: int
    model: str | None
    model_id: str | None
    model_name: str | None
    chat_id: str | None
    message_id: str | None
    task: str | None
    stream: bool | None
    capture_content: bool
    model_parameters: dict[str, Any] | None = None
    messages: list[Any] | None = None
    end_ns: int | None = None
    output: Any = None
    usage: Any = None
    level: str | None = None
    status_message: str | None = None
    inlet_seen: bool = True
    # The custom Workspace model's base model (`info.base_model_id`) when it differs from model_id.
    base_model_id: str | None = None
    # Bytes this observation holds, estimated once when its content is captured: what the
    # pending turns and the export queue count against their byte bounds.
    size: int = 0


# --------------------------------------------------------------------------------------------
# OTLP/JSON encoding (runs on the worker thread, never on the chat path)
# --------------------------------------------------------------------------------------------


def trace_id_for(trace_key: str) -> str:
    """A stable 32-hex trace id per conversation, so no chat -> trace map has to be kept:
    the first 32 hex digits of sha256(trace_key), trace_key being the chat id for chats.
    Part of the contract: docs/tracing.md."""
    return hashlib.sha256(trace_key.encode("utf-8")).hexdigest()[:32]


def generation_id_for(message_id: str, task: str | None = None) -> str:
    """A stable 16-hex span (observation) id per Open WebUI message, so a later span for the
    same message (a retried outlet, a turn sent again after a reload) updates the same
    generation, and anyone who knows the message id can address it (feedback scores). A
    background task on the message gets its own id. Part of the contract: docs/tracing.md."""
    key = "message:" + message_id if task is None else f"message:{message_id}:task:{task}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def base_model_id_of(model_info: Any) -> str | None:
    """`info.base_model_id` of an Open WebUI model dict (a custom Workspace model), or None."""
    info = model_info.get("info") if isinstance(model_info, Mapping) else None
    base = info.get("base_model_id") if isinstance(info, Mapping) else None
    return base if isinstance(base, str) and base else None


def pricing_model_name(
    model_id: str, model_info: Mapping[str, Any] | None = None, prefixes: Iterable[str] = ()
) -> str:
    """The model name to send so Langfuse can price the generation.

    `model_info` is Open WebUI's model dict: an entry of `/api/models`, a Filter Function's
    `__model__`, or `metadata["model"]` of a Pipelines filter's body. A custom Workspace model
    is priced as its base model (`info.base_model_id`). Then a connection prefix is removed:
    Open WebUI names a prefixed connection's models "<prefix_id>.<upstream id>" and keeps no
    unprefixed id in the model dict, so the prefixes come from the caller (the longest
    "<prefix>." that starts the name is cut). Pure; the operator reuses it. See docs/tracing.md.
    """
    name = base_model_id_of(model_info) or model_id
    for prefix in sorted({p for p in prefixes if p}, key=len, reverse=True):
        head = prefix + "."
        if name.startswith(head) and len(name) > len(head):
            return name[len(head) :]
    return name


def otlp_value(value: Any) -> dict[str, Any]:
    """Encode one attribute value the way the OTLP JSON mapping does."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [otlp_value(item) for item in value]}}
    return {"stringValue": str(value)}


def otlp_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": key, "value": otlp_value(value)}
        for key, value in attributes.items()
        if value is not None
    ]


# CPython keeps a non-ASCII str with 1, 2 or 4 bytes per character behind one header of fixed
# size (PEP 393); measuring that header once lets `utf8_size_bound` read the width in O(1).
_WIDE_STR_HEADER = sys.getsizeof("\u00e9") - 2
# UTF-8 needs at most 2, 3 or 4 bytes for a character stored in 1, 2 or 4 bytes.
_UTF8_PER_STORED_WIDTH = {1: 2, 2: 3, 4: 4}


def utf8_size_bound(text: str) -> int:
    """An upper bound of `len(text.encode())` in O(1): exact for ASCII, which most text is."""
    length = len(text)
    if text.isascii():
        return length
    width = (sys.getsizeof(text) - _WIDE_STR_HEADER) // (length + 1)
    return length * _UTF8_PER_STORED_WIDTH.get(width, 4)


def cut(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """`text` if its UTF-8 form fits in `limit` bytes, else its head and a marker that fit.

    Constant time unless the text is near or over the limit; then linear in `limit`, not in
    the text's length (a 10 MB paste costs what a `limit`-sized one does).
    """
    if utf8_size_bound(text) <= limit:
        return text
    keep = max(limit - CUT_MARKER_RESERVE, 0)
    if text.isascii():
        kept = text[:keep]
    else:
        head = text[: limit + 1].encode("utf-8")
        if len(head) <= limit and len(text) <= limit:
            return text  # the bound was pessimistic: it fits
        # A character split at the cut is dropped whole.
        kept = head[:keep].decode("utf-8", "ignore")
    return kept + f"... [truncated {len(text) - len(kept)} characters]"


def to_json(value: Any) -> str:
    return cut(json.dumps(value, ensure_ascii=False, default=str))


def captured_text(text: str, limit: int) -> str:
    """A string as the filter keeps it: cut to `limit` UTF-8 bytes, inline media replaced."""
    length = len(text)
    if length > MAX_INLINE_DATA_URL_CHARS and text.startswith("data:"):
        return media_placeholder(text)
    if length * 4 <= limit:  # fits whatever its characters: most strings stop here
        return text
    return cut(text, limit)


def text_bytes(text: str) -> int:
    """The memory a str holds: exact for ASCII without a call into `sys.getsizeof`."""
    return len(text) + _ASCII_STR_HEADER if text.isascii() else sys.getsizeof(text)


def captured(value: Any, limit: int, depth: int = 0) -> tuple[Any, int]:
    """What the filter keeps of a JSON value from a request, and about how many bytes that holds.

    Every string is cut to `limit` UTF-8 bytes and every long `data:` URL (pasted images and
    files) becomes a short placeholder, so a turn keeps at most its limits, whatever it was
    sent. Containers are copied only where something was cut. The size is estimated once,
    here, in constant time per object (CPython's sizes of str, dict and list objects); this
    runs on the chat path, so strings and numbers inside a container are handled inline.
    """
    kind = type(value)
    if kind is str:
        text = captured_text(value, limit)
        return text, text_bytes(text)
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_CAPTURE_DEPTH:
            return "[nested too deep]", 64
        is_dict = kind is dict
        if is_dict:
            size = _DICT_BYTES + _DICT_ITEM_BYTES * len(value)
            pairs = value.items()
        else:
            size = _LIST_BYTES + 8 * len(value)
            pairs = enumerate(value)
        copy: Any = None
        for key, item in pairs:
            item_kind = type(item)
            if item_kind is str:
                length = len(item)
                if length * 4 <= limit and (
                    length <= MAX_INLINE_DATA_URL_CHARS or not item.startswith("data:")
                ):
                    size += text_bytes(item)
                    continue
                kept: Any = captured_text(item, limit)
                size += text_bytes(kept)
            elif item is None or item_kind is bool or item_kind is int or item_kind is float:
                size += 32
                continue
            else:
                kept, item_size = captured(item, limit, depth + 1)
                size += item_size
            if kept is not item:
                if copy is None:
                    copy = dict(value) if is_dict else list(value)
                copy[key] = kept
        return (value if copy is None else copy), size
    if value is None or isinstance(value, bool | int | float):
        return value, 32
    # Subclasses as their base type; anything else (not JSON) as the text that would be sent.
    if isinstance(value, dict):
        return captured(dict(value), limit, depth)
    if isinstance(value, list | tuple):
        return captured(list(value), limit, depth)
    return captured(str(value), limit, depth)


# CPython object sizes (64-bit): a str's header, and a small dict or list with its slots.
_ASCII_STR_HEADER = sys.getsizeof("")
_DICT_BYTES = 120
_DICT_ITEM_BYTES = 32
_LIST_BYTES = sys.getsizeof([])


def media_placeholder(data_url: str) -> str:
    media_type = data_url[5:].split(";", 1)[0].split(",", 1)[0] or "unknown"
    return f"[inline {media_type} omitted: {len(data_url)} characters]"


def without_inline_media(value: Any) -> Any:
    """Replace long `data:` URLs (pasted images, files) by a short placeholder, copying lazily."""
    if isinstance(value, str):
        if value.startswith("data:") and len(value) > MAX_INLINE_DATA_URL_CHARS:
            return media_placeholder(value)
        return value
    if isinstance(value, list):
        items = [without_inline_media(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        changed = {key: without_inline_media(item) for key, item in value.items()}
        return changed if any(changed[k] is not value[k] for k in value) else value
    return value


def message_text(message: Any) -> str | None:
    """The text of a chat message whose content is a string or a list of OpenAI content parts."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None


def _first_count(usage: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        found = _count(usage.get(key))
        if found is not None:
            return found
    return None


def _detail_count(usage: Mapping[str, Any], parents: tuple[str, ...], key: str) -> int:
    for parent in parents:
        details = usage.get(parent)
        if isinstance(details, Mapping):
            found = _count(details.get(key))
            if found:
                return found
    return 0


def usage_and_cost(usage: Any) -> tuple[dict[str, int] | None, dict[str, float] | None]:
    """Map the usage Open WebUI puts on the assistant message to Langfuse usage/cost details.

    Langfuse prices each usage key with the model price of the same key, so the keys are
    `input`/`output` (not `prompt_tokens` or `input_tokens`), with cached and reasoning tokens
    split out of them the way Langfuse itself splits an OpenAI usage object.
    """
    if not isinstance(usage, Mapping):
        return None, None
    prompt = _first_count(usage, "prompt_tokens", "input_tokens", "prompt_eval_count")
    completion = _first_count(usage, "completion_tokens", "output_tokens", "eval_count")
    details: dict[str, int] = {}
    if prompt is not None:
        cached = _detail_count(
            usage, ("prompt_tokens_details", "input_tokens_details"), "cached_tokens"
        )
        cached = min(cached, prompt)
        details["input"] = prompt - cached
        if cached:
            details["input_cached_tokens"] = cached
    if completion is not None:
        reasoning = _detail_count(
            usage, ("completion_tokens_details", "output_tokens_details"), "reasoning_tokens"
        )
        reasoning = min(reasoning, completion)
        details["output"] = completion - reasoning
        if reasoning:
            details["output_reasoning_tokens"] = reasoning
    if details:
        total = _count(usage.get("total_tokens"))
        details["total"] = total if total is not None else (prompt or 0) + (completion or 0)
    cost: dict[str, float] | None = None
    reported = usage.get("cost")
    if isinstance(reported, int | float) and not isinstance(reported, bool) and reported >= 0:
        cost = {"total": float(reported)}
    return details or None, cost


def span_attributes(obs: Observation, content_note: str | None = None) -> dict[str, Any]:
    """Langfuse's OTLP attribute mapping (langfuse.* plus user.id / session.id).

    `content_note` stands in for every prompt and answer text (a span too large to send).
    """
    attributes: dict[str, Any] = {
        "langfuse.trace.name": TRACE_NAMES[obs.kind],
        "langfuse.trace.tags": list(obs.tags),
        "user.id": obs.user_id,
        "session.id": obs.session_id,
        "langfuse.trace.metadata.source": json.dumps("open-webui"),
        "langfuse.trace.metadata.conversation": json.dumps(obs.kind),
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": obs.model,
        "langfuse.observation.level": obs.level,
        "langfuse.observation.status_message": obs.status_message,
    }
    if obs.chat_id:
        attributes["langfuse.trace.metadata.chat_id"] = json.dumps(obs.chat_id)
    if obs.model_parameters:
        attributes["langfuse.observation.model.parameters"] = to_json(obs.model_parameters)
    metadata = {
        "interface": "open-webui",
        "filter_version": FILTER_VERSION,
        "chat_id": obs.chat_id,
        "message_id": obs.message_id,
        "task": obs.task,
        "stream": obs.stream,
        "model_id": obs.model_id,
        "model_name": obs.model_name,
        "base_model_id": obs.base_model_id,
        "inlet_seen": obs.inlet_seen,
    }
    for key, value in metadata.items():
        if value is not None:
            attributes[f"langfuse.observation.metadata.{key}"] = json.dumps(value)
    usage_details, cost_details = usage_and_cost(obs.usage)
    if usage_details:
        attributes["langfuse.observation.usage_details"] = json.dumps(usage_details)
    if cost_details:
        attributes["langfuse.observation.cost_details"] = json.dumps(cost_details)
    if obs.capture_content:
        content: dict[str, Any] = {}
        if obs.messages is not None:
            # Bounded when captured: the whole prompt stays valid JSON (no cut here).
            content["langfuse.observation.input"] = json.dumps(
                without_inline_media(obs.messages), ensure_ascii=False, default=str
            )
        output = obs.output
        if output is not None:
            content["langfuse.observation.output"] = (
                cut(output) if isinstance(output, str) else to_json(output)
            )
        if obs.task is None:
            # The chat's own turns (never its background tasks) define what the trace shows as
            # its input and output: the last question and answer.
            last_question = None
            for message in reversed(obs.messages or []):
                if isinstance(message, dict) and message.get("role") == "user":
                    last_question = message_text(message)
                    break
            if last_question is not None:
                content["langfuse.trace.input"] = cut(last_question)
            if isinstance(output, str):
                content["langfuse.trace.output"] = cut(output)
        if content_note is not None:
            content = dict.fromkeys(content, content_note)
        attributes.update(content)
    return attributes


def encode_span(obs: Observation, content_note: str | None = None) -> str:
    end_ns = obs.end_ns if obs.end_ns is not None else obs.start_ns
    span = {
        "traceId": trace_id_for(obs.trace_key),
        "spanId": (
            generation_id_for(obs.message_id, obs.task) if obs.message_id else os.urandom(8).hex()
        ),
        "name": obs.name,
        "kind": 1,
        "startTimeUnixNano": str(obs.start_ns),
        "endTimeUnixNano": str(max(end_ns, obs.start_ns)),
        "attributes": otlp_attributes(span_attributes(obs, content_note)),
        "status": {},
    }
    return json.dumps(span, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# The exporter: one per valves configuration, with its own queue, worker thread and HTTP client
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    host: str
    public_key: str
    secret_key: str = field(repr=False)
    environment: str = ""
    release: str = ""
    flush_interval: float = 1.0
    max_batch_size: int = 200
    max_queue_size: int = 10_000
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    timeout: float = 10.0
    debug: bool = False

    @property
    def endpoint(self) -> str:
        return self.host.rstrip("/") + OTLP_TRACES_PATH


def sanitized_environment(value: str) -> str:
    """Langfuse accepts `^(?!langfuse)[a-z0-9_-]+$`; anything else would be rejected."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in value)
    cleaned = cleaned.lower().strip("-")[:40]
    return "" if cleaned.startswith("langfuse") else cleaned


class RetryableExportError(Exception):
    """Langfuse could not take the batch now (unreachable, timeout, 5xx, 429): try again."""


class RejectedExportError(Exception):
    """Langfuse refused the batch for good (bad keys, malformed request): drop it."""


class LangfuseExporter:
    """Batches finished observations and posts them to Langfuse's OTLP endpoint.

    `submit` is the only method on the chat path: an append to a deque bounded in spans
    (`max_queue_size`) and in bytes (`max_queue_bytes`, each observation counted with the size
    estimated when its content was captured, plus the request being retried). A full queue
    drops its oldest entries (counted in `dropped`). The worker takes one request at a time from
    the head of the queue, at most `max_batch_size` spans and `max_request_bytes` of JSON; a
    span larger than a request is sent without its prompt and answer (`oversized`) or, should
    even that not fit, dropped (`unsendable`): none is ever sent over the limit. Delivery
    problems and losses are logged when they start and when they end, never per message;
    retryable failures keep the request and back off.
    """

    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self.sent_spans = 0
        self.dropped = 0
        self.oversized = 0
        self.unsendable = 0
        self.rejected_spans = 0
        self._queue: deque[Observation] = deque()
        self._queued_bytes = 0
        self._max_spans = max(1, config.max_queue_size)
        self._max_bytes = max(1, config.max_queue_bytes)
        self._batch_size = max(1, config.max_batch_size)
        # The request being delivered (gzip body, span count); its bytes count against
        # max_queue_bytes too, so a long outage holds at most that much in all.
        self._inflight: tuple[bytes, int] | None = None
        self._inflight_bytes = 0
        # submit() runs on the event loop, the worker on its own thread: the counters and the
        # deque change together under this lock (held for a few operations, never for I/O).
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._failing_since: float | None = None
        self._failure_reason = ""
        self._drop_cause = ""
        self._drops_reported = 0
        self._queue_full_logged = False
        self._size_losses_reported = (0, 0)
        self._size_losses_logged_at: float | None = None
        self._client: httpx.Client | None = None
        # Parsed once: a str URL would be re-parsed by httpx on every request.
        self._endpoint = httpx.URL(config.endpoint)
        self._envelope_head, self._envelope_tail = self._envelope_parts()
        self._span_budget = (
            config.max_request_bytes - len(self._envelope_head) - len(self._envelope_tail)
        )
        self._thread = threading.Thread(
            target=self._run, name=f"langfuse-export-{config.public_key[:12]}", daemon=True
        )
        self._thread.start()

    # -- chat path --------------------------------------------------------------------------

    def submit(self, obs: Observation) -> None:
        if obs.size <= 0:
            obs.size = OBSERVATION_OVERHEAD_BYTES  # made without capture (on_shutdown, tests)
        size = obs.size
        with self._lock:
            if size > self._max_bytes:
                # Larger than the whole queue: keeping it would mean dropping everything else.
                self.dropped += 1
                self._drop_cause = "max_queue_bytes"
                return
            queue = self._queue
            queue.append(obs)
            self._queued_bytes += size
            while len(queue) > 1 and (
                len(queue) > self._max_spans
                or self._queued_bytes + self._inflight_bytes > self._max_bytes
            ):
                self._drop_cause = (
                    "max_queue_size" if len(queue) > self._max_spans else "max_queue_bytes"
                )
                self._queued_bytes -= queue.popleft().size
                self.dropped += 1
            ready = len(queue) >= self._batch_size or self._queued_bytes >= self._span_budget
        if ready:
            self._wake.set()

    # -- control ----------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was delivered or given up; False on timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._wake.set()
        with self._idle:
            while self._queue or self._inflight is not None or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float) -> None:
        """Flush within `timeout` seconds, then stop the worker; what is left is reported lost."""
        if self._closing.is_set():
            return
        delivered = self.flush(timeout)
        self._closing.set()
        self._wake.set()
        # A request in flight finishes on its own (the thread is a daemon and exits after it);
        # waiting for it here would stretch the bound by the HTTP timeout.
        self._thread.join(timeout=1.0)
        inflight = self._inflight
        left = len(self._queue) + (inflight[1] if inflight is not None else 0)
        if not delivered and left:
            log.warning(
                "Langfuse exporter for %s closed with undelivered spans (%s); %d spans lost",
                self.config.host,
                self._failure_reason or "flush timed out",
                left,
            )

    # -- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                self._wake.wait(self.config.flush_interval)
                self._wake.clear()
                self._drain()
        finally:
            if self._client is not None:
                self._client.close()
            with self._idle:
                self._idle.notify_all()

    def _drain(self) -> None:
        backoff = 0.5
        while not self._closing.is_set():
            with self._idle:
                self._busy = True
            try:
                if self._inflight is None:
                    self._take_request()
                inflight = self._inflight
                if inflight is None:
                    self._report_drops()
                    return
                self._send_one(*inflight)
                self._finish_request()
                backoff = 0.5
            except RetryableExportError as exc:
                self._note_failure(str(exc))
                self._report_drops()
                # Interruptible wait: close() ends it at once.
                if self._closing.wait(backoff):
                    return
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_SECONDS)
            except RejectedExportError as exc:
                self._note_failure(str(exc))
                self._finish_request()
            except Exception as exc:  # never let the worker die
                log.warning("Langfuse export failed unexpectedly: %s", type(exc).__name__)
                self._finish_request()
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _take_request(self) -> None:
        """Make the next request from the oldest queued spans: as many as fit in one.

        Each span is compressed as soon as it is taken, so building a request holds its gzip
        body and one span, never the whole request uncompressed.
        """
        compressor = zlib.compressobj(5, zlib.DEFLATED, GZIP_WBITS)
        chunks = [compressor.compress(self._envelope_head)]
        count = 0
        size = 0
        while count < self._batch_size:
            with self._lock:
                if not self._queue:
                    break
                obs = self._queue[0]
            # Encoded outside the lock: the chat path never waits for the encoder.
            span, outcome = self._encoded(obs)
            with self._lock:
                if not self._queue or self._queue[0] is not obs:
                    continue  # dropped as the oldest while it was being encoded
                if span is not None and count and size + 1 + len(span) > self._span_budget:
                    break  # it opens the next request
                self._queued_bytes -= self._queue.popleft().size
                if outcome == "oversized":
                    self.oversized += 1
                elif outcome == "unsendable":
                    self.unsendable += 1
            if span is not None:
                if count:
                    chunks.append(compressor.compress(b","))
                    size += 1
                chunks.append(compressor.compress(span))
                size += len(span)
                count += 1
        if not count:
            return
        chunks.append(compressor.compress(self._envelope_tail))
        chunks.append(compressor.flush())
        payload = b"".join(chunks)
        with self._lock:
            self._inflight = (payload, count)
            self._inflight_bytes = len(payload)

    def _finish_request(self) -> None:
        with self._lock:
            self._inflight = None
            self._inflight_bytes = 0

    def _encoded(self, obs: Observation) -> tuple[bytes | None, str]:
        """The span as JSON bytes that fit one request, and whether content had to go."""
        try:
            span = encode_span(obs).encode("utf-8")
            if len(span) <= self._span_budget:
                return span, ""
            note = (
                f"[content omitted: this span was {len(span)} bytes, over the request limit "
                f"of {self.config.max_request_bytes} bytes (max_request_bytes)]"
            )
            span = encode_span(obs, note).encode("utf-8")
            if len(span) <= self._span_budget:
                return span, "oversized"
        except Exception:  # one odd observation must not stop the others
            if self.config.debug:
                log.exception("Langfuse export could not encode one observation")
        return None, "unsendable"

    def _envelope_parts(self) -> tuple[bytes, bytes]:
        """The request body around its spans, made once: spans are spliced in as bytes."""
        resource: dict[str, Any] = {"service.name": "open-webui-pipelines"}
        environment = sanitized_environment(self.config.environment)
        if environment:
            resource["langfuse.environment"] = environment
        if self.config.release:
            resource["langfuse.release"] = self.config.release
        scope = {
            "name": SCOPE_NAME,
            "version": FILTER_VERSION,
            "attributes": otlp_attributes({"public_key": self.config.public_key}),
        }
        compact = (",", ":")
        head = (
            '{"resourceSpans":[{"resource":'
            + json.dumps({"attributes": otlp_attributes(resource)}, separators=compact)
            + ',"scopeSpans":[{"scope":'
            + json.dumps(scope, separators=compact)
            + ',"spans":['
        )
        return head.encode("utf-8"), b"]}]}]}"

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                auth=httpx.BasicAuth(self.config.public_key, self.config.secret_key),
                timeout=self.config.timeout,
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "User-Agent": f"{SCOPE_NAME}/{FILTER_VERSION}",
                    "x-langfuse-sdk-name": SCOPE_NAME,
                    "x-langfuse-sdk-version": FILTER_VERSION,
                    "x-langfuse-public-key": self.config.public_key,
                },
            )
        return self._client

    def _send_one(self, payload: bytes, spans: int) -> None:
        try:
            response = self._http().post(self._endpoint, content=payload)
        except httpx.TimeoutException as exc:
            raise RetryableExportError(f"timeout after {self.config.timeout}s") from exc
        except httpx.HTTPError as exc:
            raise RetryableExportError(f"unreachable ({type(exc).__name__})") from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise RetryableExportError(f"HTTP {status}")
        if status >= 300:
            self.rejected_spans += spans
            hint = " (check public/secret key and host)" if status in (401, 403) else ""
            raise RejectedExportError(f"HTTP {status}{hint}; {spans} spans rejected")
        self.sent_spans += spans
        self._note_success()
        if self.config.debug:
            log.info("Langfuse accepted a batch (%d bytes gzip)", len(payload))

    # -- outage bookkeeping: one line when it starts, one when it ends -----------------------

    def _note_failure(self, reason: str) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self._failure_reason = reason
            log.warning(
                "Langfuse export to %s failing: %s; chats continue, spans are kept and retried",
                self.config.endpoint,
                reason,
            )
        elif self.config.debug:
            log.info("Langfuse export still failing: %s", reason)

    def _note_success(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "Langfuse export to %s recovered after %.1fs (was: %s)",
                self.config.endpoint,
                time.monotonic() - self._failing_since,
                self._failure_reason,
            )
            self._failing_since = None
            self._failure_reason = ""
        self._report_drops()

    def _report_drops(self) -> None:
        """Losses, logged per episode and never per span. The queue: one line when it starts
        dropping, one with the count once it has drained and Langfuse takes requests again.
        Spans over the request limit: one line at the first, then at most one line with the
        counts per `SIZE_LOSS_REPORT_SECONDS` (they come one by one, not in outages)."""
        if self.dropped > self._drops_reported and not self._queue_full_logged:
            self._queue_full_logged = True
            limit = (
                f"max_queue_size = {self._max_spans} spans"
                if self._drop_cause == "max_queue_size"
                else f"max_queue_bytes = {self._max_bytes} bytes"
            )
            log.warning("Langfuse export queue full (%s): dropping the oldest spans", limit)
        elif (
            self._queue_full_logged
            and not self._queue
            and self._inflight is None
            and self._failing_since is None
        ):
            log.warning(
                "Langfuse export queue drained; %d spans were dropped while it was full",
                self.dropped - self._drops_reported,
            )
            self._drops_reported = self.dropped
            self._queue_full_logged = False
        sized = (self.oversized, self.unsendable)
        if sized == self._size_losses_reported:
            return
        now = time.monotonic()
        last = self._size_losses_logged_at
        if last is not None and now - last < SIZE_LOSS_REPORT_SECONDS:
            return
        log.warning(
            "Langfuse export: %d spans over the request limit (max_request_bytes = %d) were "
            "sent without their prompt and answer, %d could not be sent at all%s",
            sized[0] - self._size_losses_reported[0],
            self.config.max_request_bytes,
            sized[1] - self._size_losses_reported[1],
            "" if last is not None else "; further ones are counted here every 10 minutes",
        )
        self._size_losses_reported = sized
        self._size_losses_logged_at = now


# --------------------------------------------------------------------------------------------
# The Pipelines filter
# --------------------------------------------------------------------------------------------


class PendingTurns:
    """User turns between inlet and outlet, bounded by count, bytes and age (oldest first).

    A turn is found again by its message id. Plain API calls have none at inlet time (Open
    WebUI mints the outlet's id later), so those wait in a first-in-first-out line per
    (user, model) and an outlet without a known id takes the oldest of its line.
    """

    def __init__(self) -> None:
        self._turns: OrderedDict[str, Observation] = OrderedDict()
        self._lines: dict[str, deque[str]] = {}
        self._line_of: dict[str, str] = {}
        self._sequence = 0
        self.bytes = 0
        # Turns sent unfinished early because the count or byte bound was reached.
        self.evicted_over_limits = 0

    def __len__(self) -> int:
        return len(self._turns)

    def put(self, message_id: str, obs: Observation) -> Observation | None:
        """Remember a turn; return a previous one with the same id (a retried request)."""
        key = "id:" + message_id
        previous = self._remove(key)
        self._turns[key] = obs
        self.bytes += obs.size
        return previous

    def put_in_line(self, line: str, obs: Observation) -> None:
        self._sequence += 1
        key = f"#{self._sequence}"
        self._turns[key] = obs
        self.bytes += obs.size
        self._line_of[key] = line
        self._lines.setdefault(line, deque()).append(key)

    def pop(self, message_id: str) -> Observation | None:
        return self._remove("id:" + message_id)

    def pop_from_line(self, line: str) -> Observation | None:
        keys = self._lines.get(line)
        if not keys:
            return None
        return self._remove(keys[0])

    def evict(
        self, now_ns: int, max_age_ns: int, max_count: int, max_bytes: int
    ) -> list[Observation]:
        """Take out the oldest turns until every bound holds again (the newest always stays)."""
        evicted: list[Observation] = []
        turns = self._turns
        while turns:
            key, oldest = next(iter(turns.items()))
            over_limits = len(turns) > max_count or (self.bytes > max_bytes and len(turns) > 1)
            if not over_limits and now_ns - oldest.start_ns <= max_age_ns:
                break
            if over_limits:
                self.evicted_over_limits += 1
            self._remove(key)
            evicted.append(oldest)
        return evicted

    def drain(self) -> list[Observation]:
        turns = list(self._turns.values())
        self._turns.clear()
        self._lines.clear()
        self._line_of.clear()
        self.bytes = 0
        return turns

    def _remove(self, key: str) -> Observation | None:
        obs = self._turns.pop(key, None)
        if obs is not None:
            self.bytes -= obs.size
        line = self._line_of.pop(key, None)
        if line is not None:
            keys = self._lines[line]
            # Lines are first-in-first-out and eviction takes the oldest, so the key is
            # almost always the head; remove() covers a retried request.
            if keys[0] == key:
                keys.popleft()
            else:
                keys.remove(key)
            if not keys:
                del self._lines[line]
        return obs


def prompt_to_keep(
    messages: Any,
    field_limit: int = DEFAULT_MAX_FIELD_BYTES,
    prompt_limit: int = DEFAULT_MAX_PROMPT_BYTES,
) -> tuple[list[Any] | None, int]:
    """The prompt a turn keeps, and about how many bytes it holds.

    Each message is `captured` (texts cut to `field_limit` bytes, inline media replaced by a
    placeholder, containers copied only where something was cut: the caller may reuse its
    list), and the newest messages are kept while they fit in `prompt_limit` bytes; older ones
    become one placeholder message. The last message (the question) is always kept. So a turn
    waiting for its outlet, or queued during an outage, holds at most its limits.
    """
    if not isinstance(messages, list):
        return None, 0
    kept: list[Any] = []
    size = _LIST_BYTES + 8 * len(messages)
    for index in range(len(messages) - 1, -1, -1):
        message, message_size = captured(messages[index], field_limit)
        if kept and size + message_size > prompt_limit:
            note = (
                f"[{index + 1} earlier messages left out: the prompt kept per turn is at most "
                f"{prompt_limit} bytes (max_prompt_bytes)]"
            )
            placeholder = {"role": "system", "content": note}
            kept.append(placeholder)
            size += _DICT_BYTES + 2 * _DICT_ITEM_BYTES + text_bytes(note)
            break
        kept.append(message)
        size += message_size
    kept.reverse()
    return kept, size


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# Open WebUI's chat id prefixes: temporary chats (`local:` before 0.10) are never stored,
# channel conversations are group chats; any other non-empty id is a saved chat.
TEMPORARY_CHAT_PREFIXES = ("temporary:", "local:")
CHANNEL_PREFIX = "channel:"


def _is_saved(chat_id: str | None) -> bool:
    if not chat_id or chat_id == "local":
        return False
    return not chat_id.startswith((*TEMPORARY_CHAT_PREFIXES, CHANNEL_PREFIX))


def exporter_config(valves: Any) -> tuple[ExporterConfig | None, str]:
    """The exporter settings the valves ask for, or None and why tracing stays off."""
    public_key, secret_key = valves.public_key.strip(), valves.secret_key.strip()
    host = valves.host.strip()
    if not (public_key and secret_key and host):
        return None, "public_key, secret_key or host not set"
    try:
        parts = urllib.parse.urlsplit(host)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        httpx.URL(host.rstrip("/") + OTLP_TRACES_PATH)
    except (ValueError, httpx.InvalidURL):
        valid = False
    if not valid:
        return None, f"host {host[:200]!r} is not an http(s) URL"
    return (
        ExporterConfig(
            host=host,
            public_key=public_key,
            secret_key=secret_key,
            environment=valves.environment,
            release=valves.release,
            flush_interval=min(max(valves.flush_interval_seconds, 0.05), 60.0),
            max_batch_size=max(valves.max_batch_size, 1),
            max_queue_size=max(valves.max_queue_size, 1),
            # A queue smaller than a request could not hold the one being retried.
            max_queue_bytes=max(valves.max_queue_bytes, 2 * MIN_REQUEST_BYTES),
            max_request_bytes=max(valves.max_request_bytes, MIN_REQUEST_BYTES),
            timeout=min(max(valves.request_timeout_seconds, 0.1), 120.0),
            debug=valves.debug,
        ),
        "",
    )


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = Field(
            default=["*"], description="Model ids this filter applies to; ['*'] means all."
        )
        priority: int = Field(default=0, description="Filter order in Open WebUI (lower first).")
        public_key: str = Field(default="", description="Langfuse project public key (pk-lf-…).")
        secret_key: str = Field(default="", description="Langfuse project secret key (sk-lf-…).")
        host: str = Field(
            default="https://cloud.langfuse.com", description="Langfuse base URL, no path."
        )
        tags: list[str] = Field(default=["open-webui"], description="Tags put on every trace.")
        use_model_name_instead_of_id_for_generation: bool = Field(
            default=False,
            description="Report the model's display name instead of its id (decides price match).",
        )
        model_prefixes: list[str] = Field(
            default=[],
            description="Connection prefix ids: '<prefix>.' is cut from the model name sent.",
        )
        user_identity: Literal["id", "email"] = Field(
            default="id", description="What identifies the user in Langfuse: 'id' or 'email'."
        )
        capture_content: bool = Field(
            default=True, description="Send prompts and answers; off sends only usage and timing."
        )
        capture_temporary_chat_content: bool = Field(
            default=False,
            description="Send prompts and answers of temporary (unsaved) chats too.",
        )
        environment: str = Field(
            default="", description="Langfuse environment (lowercase letters, digits, - and _)."
        )
        release: str = Field(default="", description="Langfuse release label.")
        flush_interval_seconds: float = Field(
            default=1.0, description="Longest time a finished turn waits before it is sent."
        )
        max_batch_size: int = Field(default=200, description="Spans per export request.")
        max_queue_size: int = Field(
            default=10_000, description="Spans kept while Langfuse is unreachable; oldest dropped."
        )
        max_queue_bytes: int = Field(
            default=DEFAULT_MAX_QUEUE_BYTES,
            description="Bytes kept while Langfuse is unreachable (about); oldest dropped.",
        )
        max_request_bytes: int = Field(
            default=DEFAULT_MAX_REQUEST_BYTES,
            description="JSON bytes per export request, at most (Langfuse accepts 4.5 MB).",
        )
        max_field_bytes: int = Field(
            default=DEFAULT_MAX_FIELD_BYTES,
            description="UTF-8 bytes kept of each message and answer; longer text is cut.",
        )
        max_prompt_bytes: int = Field(
            default=DEFAULT_MAX_PROMPT_BYTES,
            description="Bytes of prompt kept per turn (about); the oldest messages go first.",
        )
        request_timeout_seconds: float = Field(
            default=10.0, description="HTTP timeout of one export request."
        )
        flush_timeout_seconds: float = Field(
            default=5.0, description="Time bound for flushing on shutdown and valves updates."
        )
        pending_turn_timeout_seconds: float = Field(
            default=900.0,
            description="A turn whose outlet never comes is sent unfinished after this long.",
        )
        max_pending_turns: int = Field(
            default=2_000, description="Turns awaiting their outlet, at most."
        )
        max_pending_bytes: int = Field(
            default=DEFAULT_MAX_PENDING_BYTES,
            description="Bytes held by turns awaiting their outlet (about), at most.",
        )
        debug: bool = Field(
            default=False, description="Log payloads and export details (includes prompts)."
        )

    def __init__(self) -> None:
        self.type = "filter"
        self.name = "Langfuse Tracing"
        # Environment variables only seed the first valves, like other Pipelines filters do;
        # valves stored by Pipelines (or pushed by the operator) win over them.
        self.valves = self.Valves(
            public_key=os.environ.get("LANGFUSE_PUBLIC_KEY", ""),
            secret_key=os.environ.get("LANGFUSE_SECRET_KEY", ""),
            host=os.environ.get("LANGFUSE_BASE_URL")
            or os.environ.get("LANGFUSE_HOST")
            or "https://cloud.langfuse.com",
        )
        self._exporter: LangfuseExporter | None = None
        self._exporter_valves: Pipeline.Valves | None = None
        self._pending = PendingTurns()
        self._pending_reported = 0
        self._pending_overflowing = False
        self._error_counts: dict[str, int] = {}
        self._disabled_reason = ""

    # -- lifecycle hooks called by Pipelines ------------------------------------------------

    # Pipelines aborts its own start (and every later restart: valves are persisted) when
    # on_startup raises, and answers a valves update with 500 when on_valves_updated does;
    # so these hooks log their problems and leave tracing off instead of raising.

    async def on_startup(self) -> None:
        try:
            self._sync_exporter()
        except Exception as exc:
            self._report_error("on_startup", exc)

    async def on_valves_updated(self) -> None:
        try:
            old = self._sync_exporter(close_old=False)
        except Exception as exc:
            self._report_error("on_valves_updated", exc)
            return
        if old is not None:
            # Flush what the old keys were collecting without holding the event loop.
            await _in_thread(old.close, self.valves.flush_timeout_seconds)

    async def on_shutdown(self) -> None:
        exporter = self._exporter
        self._exporter = None
        self._exporter_valves = None
        if exporter is None:
            return
        now = time.time_ns()
        for obs in self._pending.drain():
            exporter.submit(self._unfinished(obs, now))
        await _in_thread(exporter.close, self.valves.flush_timeout_seconds)

    # -- chat hooks -------------------------------------------------------------------------

    async def inlet(
        self, body: dict[str, Any], user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            self._on_inlet(body, user)
        except Exception as exc:
            self._report_error("inlet", exc)
        return body

    async def outlet(
        self, body: dict[str, Any], user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            self._on_outlet(body, user)
        except Exception as exc:
            self._report_error("outlet", exc)
        return body

    # -- internals --------------------------------------------------------------------------

    def _sync_exporter(self, close_old: bool = True) -> LangfuseExporter | None:
        """Make the exporter match the valves; return the replaced exporter if not closed."""
        valves = self.valves
        self._exporter_valves = valves
        old = self._exporter
        config, problem = exporter_config(valves)
        if old is not None and old.config == config:
            return None
        self._exporter = LangfuseExporter(config) if config is not None else None
        if config is None:
            if problem != self._disabled_reason:  # once per reason, not per chat
                log.warning("Langfuse tracing is off: %s", problem)
                self._disabled_reason = problem
        else:
            self._disabled_reason = ""
            log.info("Langfuse tracing to %s (public key %s)", config.host, config.public_key)
        if old is not None and close_old:
            # Not on the event loop's critical path: a background thread does the bounded flush.
            threading.Thread(
                target=old.close, args=(valves.flush_timeout_seconds,), daemon=True
            ).start()
            return None
        return old

    def _current_exporter(self) -> LangfuseExporter | None:
        if self._exporter_valves is not self.valves:
            # Valves replaced without on_valves_updated (e.g. set directly): follow them.
            self._sync_exporter()
        return self._exporter

    def _on_inlet(self, body: Any, user: Any, fallback_metadata: Any = None) -> None:
        """Record a turn's start. `fallback_metadata` stands in for `body["metadata"]` when the
        body has none (a Filter Function gets it as `__metadata__` too)."""
        exporter = self._current_exporter()
        if exporter is None or not isinstance(body, dict):
            return
        valves = self.valves
        if valves.debug:
            log.info("inlet body: %s", to_json(body))
        metadata = _metadata_of(body, fallback_metadata)
        now = time.time_ns()
        chat_id = _str_or_none(metadata.get("chat_id")) or _str_or_none(body.get("chat_id"))
        message_id = _str_or_none(metadata.get("message_id"))
        task = _str_or_none(metadata.get("task"))
        obs = self._observation(
            body, metadata, user, chat_id, message_id, task, now, body.get("messages")
        )

        if task is not None:
            # Open WebUI runs only the inlet for background tasks (titles, tags, follow-ups):
            # there is no outlet to wait for, so the task is recorded now.
            obs.end_ns = now
            exporter.submit(obs)
        else:
            if message_id is not None:
                replaced = self._pending.put(message_id, obs)
                if replaced is not None:
                    exporter.submit(self._unfinished(replaced, now))
            else:
                line = self._line(chat_id, obs.user_id, obs.model_id)
                self._pending.put_in_line(line, obs)
        pending = self._pending
        max_turns = max(valves.max_pending_turns, 1)
        max_bytes = max(valves.max_pending_bytes, 1)
        for stale in pending.evict(
            now, int(valves.pending_turn_timeout_seconds * 1e9), max_turns, max_bytes
        ):
            exporter.submit(self._unfinished(stale, now))
        self._report_pending(max_turns, max_bytes)

    def _on_outlet(self, body: Any, user: Any, fallback_metadata: Any = None) -> None:
        """Complete a turn and queue it (no I/O). Body fields win over `fallback_metadata`."""
        exporter = self._current_exporter()
        if exporter is None or not isinstance(body, dict):
            return
        if self.valves.debug:
            log.info("outlet body: %s", to_json(body))
        now = time.time_ns()
        metadata = _metadata_of(body, fallback_metadata)
        chat_id = _str_or_none(body.get("chat_id")) or _str_or_none(metadata.get("chat_id"))
        message_id = _str_or_none(body.get("id")) or _str_or_none(metadata.get("message_id"))
        messages = body.get("messages")
        if not isinstance(messages, list):
            messages = []
        answer: Any = None
        prompt_end = len(messages)
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if isinstance(message, dict) and message.get("role") == "assistant":
                answer = message
                prompt_end = index
                break
        user_id = self._user_id(user)
        model_id = _str_or_none(body.get("model"))
        prompt = messages[:prompt_end]
        obs = self._pending.pop(message_id) if message_id is not None else None
        if obs is None and not _is_saved(chat_id):
            # API calls reach the outlet under an id Open WebUI mints after the inlet.
            obs = self._pending.pop_from_line(self._line(chat_id, user_id, model_id))
        field_limit = max(self.valves.max_field_bytes, MIN_FIELD_BYTES)
        if obs is None:
            # No inlet seen (restart in between, or a filter added mid-turn): still record it.
            obs = self._observation(body, metadata, user, chat_id, message_id, None, now, prompt)
            obs.inlet_seen = False
        obs.end_ns = now
        if obs.message_id is None:
            obs.message_id = message_id
        if answer is not None:
            # Cut now: the queue holds the answer until Langfuse takes it.
            obs.usage, usage_size = captured(answer.get("usage"), field_limit)
            obs.size += usage_size
            if obs.capture_content:
                output = message_text(answer)
                if output is not None:
                    obs.output = cut(output, field_limit)
                    obs.size += text_bytes(obs.output)
        exporter.submit(obs)

    def _observation(
        self,
        body: dict[str, Any],
        metadata: dict[str, Any],
        user: Any,
        chat_id: str | None,
        message_id: str | None,
        task: str | None,
        now: int,
        prompt: Any,
    ) -> Observation:
        valves = self.valves
        kind: ConversationKind
        if chat_id is None:
            kind = "api"
            trace_key = "api:" + (message_id or uuid.uuid4().hex)
            session_id = None
        elif chat_id == "local" or chat_id.startswith(TEMPORARY_CHAT_PREFIXES):
            kind = "temporary-chat"
            if chat_id == "local":
                chat_id = "local:" + str(
                    metadata.get("session_id") or body.get("session_id") or "unknown"
                )
            trace_key = chat_id
            session_id = chat_id
        else:
            kind = "channel" if chat_id.startswith(CHANNEL_PREFIX) else "chat"
            trace_key = chat_id
            session_id = chat_id
        model_id = _str_or_none(body.get("model"))
        model_info = metadata.get("model")
        model_name = None
        if isinstance(model_info, dict):
            model_name = _str_or_none(model_info.get("name"))
        base_model_id = base_model_id_of(model_info)
        if base_model_id == model_id:
            base_model_id = None
        model = None
        if model_id is not None:
            model = pricing_model_name(
                model_id,
                model_info if isinstance(model_info, dict) else None,
                valves.model_prefixes,
            )
        if valves.use_model_name_instead_of_id_for_generation and model_name:
            model = model_name
        tags = tuple(valves.tags)
        if kind != "chat":
            tags += (kind,)
        if task is not None:
            tags += (task,)
        capture = valves.capture_content and (
            kind != "temporary-chat" or valves.capture_temporary_chat_content
        )
        field_limit = max(valves.max_field_bytes, MIN_FIELD_BYTES)
        parameters, size = captured(
            {key: body[key] for key in MODEL_PARAMETER_KEYS if key in body}, field_limit
        )
        messages = None
        if capture:
            prompt_limit = max(valves.max_prompt_bytes, field_limit)
            messages, prompt_size = prompt_to_keep(prompt, field_limit, prompt_limit)
            size += prompt_size
        stream = body.get("stream")
        return Observation(
            trace_key=trace_key,
            kind=kind,
            session_id=session_id,
            user_id=self._user_id(user),
            tags=tags,
            name=f"task:{task}" if task else USER_TURN_NAME,
            start_ns=now,
            model=model,
            model_id=model_id,
            model_name=model_name,
            base_model_id=base_model_id,
            chat_id=chat_id,
            message_id=message_id,
            task=task,
            stream=stream if isinstance(stream, bool) else None,
            capture_content=capture,
            model_parameters=parameters or None,
            messages=messages,
            size=OBSERVATION_OVERHEAD_BYTES + size,
        )

    def _report_pending(self, max_turns: int, max_bytes: int) -> None:
        """One line when turns start being sent unfinished early for lack of room, and one
        with their count once the waiting turns are back under half of both bounds."""
        pending = self._pending
        evicted = pending.evicted_over_limits - self._pending_reported
        if not evicted:
            return
        if not self._pending_overflowing:
            self._pending_overflowing = True
            log.warning(
                "Langfuse filter: turns awaiting their outlet reached max_pending_turns = %d "
                "or max_pending_bytes = %d; the oldest are sent unfinished",
                max_turns,
                max_bytes,
            )
        elif len(pending) <= max_turns // 2 and pending.bytes <= max_bytes // 2:
            log.warning(
                "Langfuse filter: turns awaiting their outlet are back under their bounds; "
                "%d turns were sent unfinished early",
                evicted,
            )
            self._pending_reported = pending.evicted_over_limits
            self._pending_overflowing = False

    def _user_id(self, user: Any) -> str | None:
        if not isinstance(user, dict):
            return None
        if self.valves.user_identity == "email":
            return _str_or_none(user.get("email")) or _str_or_none(user.get("id"))
        return _str_or_none(user.get("id"))

    @staticmethod
    def _line(chat_id: str | None, user_id: str | None, model_id: str | None) -> str:
        return f"{chat_id}\x00{user_id}\x00{model_id}"

    @staticmethod
    def _unfinished(obs: Observation, now: int) -> Observation:
        obs.end_ns = now
        obs.level = "WARNING"
        obs.status_message = "no outlet received for this turn (aborted, failed or not traced)"
        return obs

    def _report_error(self, hook: str, exc: Exception) -> None:
        # Never raise into Open WebUI (that would abort the chat) and never log the prompt:
        # the exception type and where it happened are enough to file a bug.
        where = type(exc).__name__
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where += f" at line {tb.tb_lineno}"
        key = f"{hook}:{where}"
        count = self._error_counts.get(key, 0) + 1
        if len(self._error_counts) < 100 or key in self._error_counts:
            self._error_counts[key] = count
        if count == 1 or count % 1000 == 0:
            log.warning(
                "Langfuse filter %s error (%s), occurrence %d; the chat is not affected",
                hook,
                where,
                count,
            )
        if self.valves.debug:
            log.exception("Langfuse filter %s error details", hook)


async def _in_thread(function: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.to_thread(function, *args)


def _metadata_of(body: dict[str, Any], fallback: Any) -> dict[str, Any]:
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        return metadata
    return fallback if isinstance(fallback, dict) else {}


def _close_in_background(exporter: LangfuseExporter, timeout: float) -> None:
    with contextlib.suppress(Exception):
        threading.Thread(target=exporter.close, args=(timeout,), daemon=True).start()


# --------------------------------------------------------------------------------------------
# The Open WebUI Filter Function
# --------------------------------------------------------------------------------------------


class Filter(Pipeline):
    """The same filter as an Open WebUI Filter Function, sharing every code path with `Pipeline`.

    What differs in that runtime: Open WebUI injects only the named parameters a hook declares
    (`__user__`, `__metadata__`, ...), replaces `self.valves` with a fresh `Valves(**stored)` on
    every request (the exporter follows when the settings differ from the ones it was built
    for), and never calls `on_startup`, `on_valves_updated` or `on_shutdown`: the exporter is
    made by the first request and its worker flushes on its own. Outlet is awaited before the
    answer completes, so it only queues. When Open WebUI drops this instance (the function's
    code was updated), its exporter is closed in the background instead of running forever.
    `type` and `name`, set by `Pipeline.__init__`, are not read by Open WebUI for filters.
    """

    def __init__(self) -> None:
        super().__init__()
        self._retire: weakref.finalize[Any, Any] | None = None

    async def inlet(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            self._on_inlet(body, __user__, __metadata__)
        except Exception as exc:
            self._report_error("inlet", exc)
        return body

    async def outlet(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            self._on_outlet(body, __user__, __metadata__)
        except Exception as exc:
            self._report_error("outlet", exc)
        return body

    def _sync_exporter(self, close_old: bool = True) -> LangfuseExporter | None:
        before = self._exporter
        old = super()._sync_exporter(close_old)
        exporter = self._exporter
        if exporter is not before:
            if self._retire is not None:
                self._retire.detach()
                self._retire = None
            if exporter is not None:
                self._retire = weakref.finalize(
                    self, _close_in_background, exporter, self.valves.flush_timeout_seconds
                )
                self._retire.atexit = False
        return old
