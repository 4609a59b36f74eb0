"""``openwebui-langfuse smoke-test``: prove the whole path with one marked chat (``helm test``).

It sends a chat through Open WebUI's API (``POST /api/chat/completions``, non-streaming) whose
message carries a unique marker, then polls Langfuse's public read API until an observation with
that marker shows up, and prints what arrived: the trace as Langfuse shows it (name, user,
session, model, input, output, usage). The last line is the verdict, ``PASS: ...`` or
``FAIL: ...``; the exit code is 0 or 1 (2 for a usage error).

Where the settings come from:

* ``--namespace NS --name NAME`` (what the chart's test hook passes): read the LangfuseTracing and
  the Secrets it references with the pod's ServiceAccount (the operator's own rights), wait until
  it is Ready, and take the Langfuse host and keys and the Open WebUI URL and admin auth from it.
* Explicit flags (``--open-webui-url``, ``--langfuse-host``, ...) override those, or replace them
  entirely when no resource is named. Secret values never go on a command line (``ps`` shows
  it): they come from files (``--...-file``) or from environment variables
  ``OPENWEBUI_LANGFUSE_SMOKE_*`` (which a pod fills from Secrets).

Reading back: ``GET /api/public/v2/observations`` (Langfuse v4, and what the v5 SDK reads), and
when that answers 404 (a Langfuse v3 server) ``GET /api/public/observations`` plus
``GET /api/public/traces/{id}`` (docs/upstream/langfuse.md, "Reading data back"). The marker is
found in the generation's input, so the filter must capture message content (the bundled
filter's default).

Nothing secret is printed: not the keys, not the password, not a token, not a response body
(only the ``detail`` field of an Open WebUI error and the trace's own input and output, which
are the test chat's).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from openwebui_langfuse.clients.openwebui import ApiKeyAuth, CredentialsAuth
from openwebui_langfuse.kube import KubeClient, KubeError, resource_path, secret_path
from openwebui_langfuse.models import (
    ApiKeyAuthSpec,
    LangfuseTracingSpec,
    SecretKeyRef,
    SpecError,
    parse_spec,
)

ENV_PREFIX = "OPENWEBUI_LANGFUSE_SMOKE_"
MARKER_PREFIX = "owl-smoke-"
CHAT_PATH = "/api/chat/completions"
MODELS_PATH = "/api/models"
SIGNIN_PATH = "/api/v1/auths/signin"
OBSERVATIONS_V2_PATH = "/api/public/v2/observations"
OBSERVATIONS_V1_PATH = "/api/public/observations"
TRACES_V1_PATH = "/api/public/traces"
# Clocks of the test pod and of Langfuse may disagree; look back generously (the marker, not
# the time window, identifies the trace).
LOOKBACK = timedelta(minutes=10)
# Langfuse ingests asynchronously; the filter batches for about a second.
POLL_FIRST, POLL_MAX = 0.5, 3.0
# The chat and the read-back get at least this long after the Ready wait.
MIN_CHAT_SECONDS = 10.0
# A single HTTP call never waits longer than this, whatever is left of the overall deadline.
REQUEST_TIMEOUT_CAP = 60.0


class SmokeFailed(Exception):
    """The smoke test failed; the message is the verdict (no secret in it)."""


class _LangfuseBusy(Exception):
    """A read answered 5xx: Langfuse may recover before the deadline, so keep polling."""


class UsageError(Exception):
    """The command line or environment is incomplete; the message says what is missing."""


@dataclass(frozen=True)
class SmokeTarget:
    """Everything one smoke test needs. Secret fields never show in a repr."""

    openwebui_url: str
    openwebui_auth: ApiKeyAuth | CredentialsAuth
    langfuse_host: str
    langfuse_public_key: str
    langfuse_secret_key: str = field(repr=False)
    model: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class TraceView:
    """The test chat as Langfuse shows it."""

    trace_id: str
    name: str | None
    user_id: str | None
    session_id: str | None
    model: str | None
    input: Any
    output: Any
    usage: Mapping[str, Any]
    api: str  # which read API found it


@dataclass(frozen=True)
class SmokeResult:
    model: str
    reply: str
    trace: TraceView
    seconds: float


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.end = self.started + seconds
        self.seconds = seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def request_timeout(self) -> float:
        return max(1.0, min(self.left(), REQUEST_TIMEOUT_CAP))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def polls(self) -> Iterator[None]:
        """Yield until the deadline, sleeping with a growing interval in between."""
        delay = POLL_FIRST
        while True:
            yield
            if self.left() <= 0:
                return
            time.sleep(min(delay, self.left()))
            delay = min(delay * 1.5, POLL_MAX)


# -- Open WebUI ---------------------------------------------------------------------------------


def _detail(response: httpx.Response) -> str:
    """Open WebUI's ``detail`` field (an error message meant for users), never the raw body."""
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return f": {str(detail)[:200]}" if detail else ""


def _openwebui_headers(http: httpx.Client, auth: ApiKeyAuth | CredentialsAuth) -> dict[str, str]:
    if isinstance(auth, ApiKeyAuth):
        return {"Authorization": f"Bearer {auth.api_key}"}
    response = http.post(SIGNIN_PATH, json={"email": auth.email, "password": auth.password})
    if response.status_code in (400, 401, 403):
        raise SmokeFailed("Open WebUI refused the sign-in (wrong email or password)")
    if response.status_code != 200:
        raise SmokeFailed(f"Open WebUI sign-in answered HTTP {response.status_code}")
    token = response.json().get("token")
    if not isinstance(token, str) or not token:
        raise SmokeFailed(
            "Open WebUI sign-in gave no token (two-factor sign-in on? use an API key)"
        )
    return {"Authorization": f"Bearer {token}"}


def _first_model(http: httpx.Client, headers: Mapping[str, str]) -> str:
    response = http.get(MODELS_PATH, headers=headers)
    if response.status_code == 401:
        raise SmokeFailed("Open WebUI refused the credentials (HTTP 401)")
    if response.status_code != 200:
        raise SmokeFailed(f"listing Open WebUI's models answered HTTP {response.status_code}")
    data = response.json().get("data", [])
    models = [str(m["id"]) for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if not models:
        raise SmokeFailed("Open WebUI lists no model to chat with (pass --model)")
    return models[0]


def _chat(
    http: httpx.Client, headers: Mapping[str, str], model: str, content: str, timeout: float
) -> str:
    body = {"model": model, "stream": False, "messages": [{"role": "user", "content": content}]}
    response = http.post(CHAT_PATH, headers=headers, json=body, timeout=timeout)
    if response.status_code == 401:
        raise SmokeFailed("Open WebUI refused the credentials (HTTP 401)")
    if response.status_code != 200:
        raise SmokeFailed(
            f"the chat with model {model!r} failed: Open WebUI answered HTTP "
            f"{response.status_code}{_detail(response)}"
        )
    try:
        reply = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise SmokeFailed("the chat answered 200 but not with a chat completion") from None
    return str(reply)


# -- Langfuse -----------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _langfuse_get(http: httpx.Client, path: str, params: Mapping[str, Any]) -> Any | None:
    """GET a read endpoint; None on 404 (this server lacks the endpoint)."""
    response = http.get(path, params=dict(params))
    if response.status_code == 404:
        return None
    if response.status_code in (401, 403):
        raise SmokeFailed(
            f"Langfuse refused the project keys on {path} (HTTP {response.status_code})"
        )
    if response.status_code >= 500:
        raise _LangfuseBusy(f"Langfuse answered HTTP {response.status_code} on {path}")
    if response.status_code != 200:
        raise SmokeFailed(f"Langfuse answered HTTP {response.status_code} on {path}")
    try:
        return response.json()
    except ValueError:
        raise SmokeFailed(
            f"Langfuse answered {path} with something that is not JSON (is the host a Langfuse?)"
        ) from None


def _parsed(value: Any) -> Any:
    """v2 returns input/output as the raw ingested strings; show JSON as JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _carries(item: Mapping[str, Any], marker: str) -> bool:
    return marker in json.dumps(item, default=str)


def _pick(items: Sequence[Mapping[str, Any]], marker: str) -> Mapping[str, Any] | None:
    """The generation that carries the marker (a span with it will do when there is none)."""
    hits = [i for i in items if _carries(i, marker)]
    hits.sort(key=lambda i: str(i.get("type", "")).upper() != "GENERATION")
    return hits[0] if hits else None


def _find_v2(http: httpx.Client, marker: str, since: str) -> TraceView | None | bool:
    """False: the server has no v2 API. None: not (yet) there."""
    body = _langfuse_get(
        http,
        OBSERVATIONS_V2_PATH,
        {
            "fields": "core,basic,io,model,usage,metadata,trace_context",
            "fromStartTime": since,
            "limit": 1000,
        },
    )
    if body is None:
        return False
    hit = _pick(body.get("data", []), marker)
    if hit is None:
        return None
    return TraceView(
        trace_id=str(hit.get("traceId")),
        name=hit.get("traceName"),
        user_id=hit.get("userId"),
        session_id=hit.get("sessionId"),
        model=hit.get("providedModelName") or hit.get("model"),
        input=_parsed(hit.get("input")),
        output=_parsed(hit.get("output")),
        usage=hit.get("usageDetails") or {},
        api=OBSERVATIONS_V2_PATH,
    )


def _find_v1(http: httpx.Client, marker: str, since: str) -> TraceView | None:
    body = _langfuse_get(http, OBSERVATIONS_V1_PATH, {"fromStartTime": since, "limit": 100})
    if body is None:
        raise SmokeFailed(
            "this Langfuse serves neither /api/public/v2/observations nor "
            "/api/public/observations: cannot read traces back"
        )
    hit = _pick(body.get("data", []), marker)
    if hit is None:
        return None
    trace = _langfuse_get(http, f"{TRACES_V1_PATH}/{hit.get('traceId')}", {}) or {}
    return TraceView(
        trace_id=str(hit.get("traceId")),
        name=trace.get("name"),
        user_id=trace.get("userId"),
        session_id=trace.get("sessionId"),
        model=hit.get("model"),
        input=_parsed(hit.get("input")),
        output=_parsed(hit.get("output")),
        usage=hit.get("usageDetails") or {},
        api=OBSERVATIONS_V1_PATH,
    )


def _wait_for_trace(http: httpx.Client, marker: str, since: str, deadline: _Deadline) -> TraceView:
    v2 = True
    seen: TraceView | None = None
    trouble = ""  # the last transient read failure, for the verdict
    for _ in deadline.polls():
        try:
            if v2:
                found = _find_v2(http, marker, since)
                if found is False:
                    v2 = False
                    found = _find_v1(http, marker, since)
            else:
                found = _find_v1(http, marker, since)
        except _LangfuseBusy as exc:
            trouble = str(exc)
            continue
        except httpx.TimeoutException:
            trouble = "a read from Langfuse timed out"
            continue
        except httpx.TransportError as exc:
            raise SmokeFailed(f"cannot reach Langfuse ({exc or type(exc).__name__})") from None
        if isinstance(found, TraceView):
            seen = found
            if found.output not in (None, "", []):
                return found
    if seen is not None:
        raise SmokeFailed(
            f"the chat reached Langfuse as trace {seen.trace_id} but without output: Open "
            "WebUI did not run the outlet (it needs >= 0.10 and ENABLE_API_OUTLET_FILTERS)"
        )
    if trouble:
        raise SmokeFailed(
            f"the chat went through Open WebUI, but no trace with marker {marker} could be read "
            f"back from Langfuse within {deadline.seconds:g}s (last: {trouble})"
        )
    raise SmokeFailed(
        f"the chat went through Open WebUI, but no trace with marker {marker} reached Langfuse "
        f"within {deadline.seconds:g}s: check `kubectl get lft` (Ready, ConnectionRegistered) "
        "and the Pipelines logs"
    )


# -- the test -----------------------------------------------------------------------------------


def run_smoke_test(
    target: SmokeTarget,
    *,
    say: Callable[[str], None] = print,
    transport: httpx.BaseTransport | None = None,
) -> SmokeResult:
    """Send the marked chat and wait for its trace. Raises :class:`SmokeFailed`."""
    deadline = _Deadline(target.timeout)
    marker = MARKER_PREFIX + uuid.uuid4().hex[:16]
    since = _iso(datetime.now(UTC) - LOOKBACK)
    content = (
        f"openwebui-langfuse smoke test {marker}: this message checks that chats reach "
        "Langfuse; any short answer will do."
    )
    basic = httpx.BasicAuth(target.langfuse_public_key, target.langfuse_secret_key)
    try:
        with (
            httpx.Client(
                base_url=target.openwebui_url.rstrip("/"),
                transport=transport,
                timeout=deadline.request_timeout(),
            ) as owui,
            httpx.Client(
                base_url=target.langfuse_host.rstrip("/"),
                transport=transport,
                auth=basic,
                timeout=deadline.request_timeout(),
            ) as lf,
        ):
            headers = _openwebui_headers(owui, target.openwebui_auth)
            model = target.model or _first_model(owui, headers)
            say(
                f"chat: model {model!r} through Open WebUI {target.openwebui_url} (marker {marker})"
            )
            reply = _chat(owui, headers, model, content, deadline.request_timeout())
            say(f"chat: answered in {deadline.elapsed():.1f}s: {_short(reply)}")
            say(f"langfuse: waiting for the trace at {target.langfuse_host}")
            trace = _wait_for_trace(lf, marker, since, deadline)
    except httpx.TimeoutException:
        raise SmokeFailed(f"timed out after {target.timeout:g}s") from None
    except httpx.TransportError as exc:
        raise SmokeFailed(f"network error: {exc or type(exc).__name__}") from None
    return SmokeResult(model=model, reply=reply, trace=trace, seconds=deadline.elapsed())


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_trace(trace: TraceView) -> list[str]:
    """The trace as Langfuse shows it, one field per line."""
    usage = ", ".join(f"{k}={v}" for k, v in trace.usage.items()) or "none"
    return [
        f"trace     {trace.trace_id}  ({trace.name or 'unnamed'})",
        f"user      {trace.user_id or '-'}",
        f"session   {trace.session_id or '-'}",
        f"model     {trace.model or '-'}",
        f"input     {_short(trace.input)}",
        f"output    {_short(trace.output)}",
        f"usage     {usage}",
    ]


# -- settings: from a LangfuseTracing, flags, files and environment -----------------------------


def _read_secret_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _env(env: Mapping[str, str], name: str) -> str | None:
    return env.get(ENV_PREFIX + name) or None


class _ResourceReader:
    """Reads a LangfuseTracing and its Secrets with in-cluster or kubeconfig credentials."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._kube = KubeClient()

    def resource(self, name: str) -> dict[str, Any]:
        return self._kube.get(resource_path(self.namespace, name))

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self._kube.get(secret_path(self.namespace, name))
        data = secret.get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def key(self, ref: SecretKeyRef) -> str:
        data = self.secret_data(ref.name)
        if ref.key not in data:
            raise SmokeFailed(f"Secret {self.namespace}/{ref.name} has no key {ref.key!r}")
        return data[ref.key]


def _ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            ok = cond.get("status") == "True"
            return ok, f"Ready={cond.get('status')} ({cond.get('reason')}: {cond.get('message')})"
    return False, "no Ready condition yet"


def target_from_resource(
    namespace: str, name: str, *, timeout: float, say: Callable[[str], None] = print
) -> SmokeTarget:
    """Settings from a LangfuseTracing (waits up to ``timeout`` for it to be Ready); the
    target's own timeout is what is left of ``timeout``, so the whole test keeps one budget
    (the chart's hook Job has a deadline of that budget plus a margin)."""
    try:
        reader = _ResourceReader(namespace)
        deadline = _Deadline(timeout)
        for _ in deadline.polls():
            obj = reader.resource(name)
            ready, summary = _ready(obj)
            if ready:
                break
        say(f"resource: langfusetracing {namespace}/{name}: {summary}")
        if not ready:
            raise SmokeFailed(f"langfusetracing {namespace}/{name} is not Ready: {summary}")
        spec: LangfuseTracingSpec = parse_spec(obj.get("spec", {}), namespace=namespace, name=name)
        public = spec.langfuse.public_key
        if public.value is not None:
            public_key = public.value
        else:
            assert public.secret_key_ref is not None  # parse_spec guarantees one of the two
            public_key = reader.key(public.secret_key_ref)
        secret_key = reader.key(spec.langfuse.secret_key)
        auth: ApiKeyAuth | CredentialsAuth | None = None
        url = ""
        if spec.open_webui is not None:
            url = spec.open_webui.url
            spec_auth = spec.open_webui.auth
            if isinstance(spec_auth, ApiKeyAuthSpec):
                auth = ApiKeyAuth(reader.key(spec_auth.api_key))
            else:
                data = reader.secret_data(spec_auth.secret_name)
                try:
                    auth = CredentialsAuth(data[spec_auth.email_key], data[spec_auth.password_key])
                except KeyError as exc:
                    raise SmokeFailed(
                        f"Secret {namespace}/{spec_auth.secret_name} has no key {exc.args[0]!r}"
                    ) from None
    except KubeError as exc:
        raise SmokeFailed(
            f"reading langfusetracing {namespace}/{name} or its Secrets: {exc}"
        ) from None
    except SpecError as exc:
        raise SmokeFailed(f"langfusetracing {namespace}/{name}: {exc}") from None
    return SmokeTarget(
        openwebui_url=url,
        openwebui_auth=auth if auth is not None else ApiKeyAuth(""),
        langfuse_host=spec.langfuse.host,
        langfuse_public_key=public_key,
        langfuse_secret_key=secret_key,
        # At least a few seconds for the chat, even when Ready came at the very end.
        timeout=max(deadline.left(), MIN_CHAT_SECONDS),
    )


def target_from_args(
    args: argparse.Namespace, env: Mapping[str, str], say: Callable[[str], None] = print
) -> SmokeTarget:
    """Resource settings (if named), overridden by flags, files and environment."""
    if bool(args.namespace) != bool(args.name):
        raise UsageError("--namespace and --name go together")
    base = (
        target_from_resource(args.namespace, args.name, timeout=args.timeout, say=say)
        if args.name
        else None
    )

    api_key = _read_secret_file(args.open_webui_api_key_file) or _env(env, "OPEN_WEBUI_API_KEY")
    email = args.open_webui_email or _env(env, "OPEN_WEBUI_EMAIL")
    password = _read_secret_file(args.open_webui_password_file) or _env(env, "OPEN_WEBUI_PASSWORD")
    auth: ApiKeyAuth | CredentialsAuth | None = base.openwebui_auth if base else None
    if api_key:
        auth = ApiKeyAuth(api_key)
    elif email and password:
        auth = CredentialsAuth(email, password)
    elif email or password:
        raise UsageError("Open WebUI credentials need both an email and a password")

    values = {
        "openwebui_url": args.open_webui_url
        or _env(env, "OPEN_WEBUI_URL")
        or (base.openwebui_url if base else ""),
        "langfuse_host": args.langfuse_host
        or _env(env, "LANGFUSE_HOST")
        or (base.langfuse_host if base else ""),
        "langfuse_public_key": args.langfuse_public_key
        or _read_secret_file(args.langfuse_public_key_file)
        or _env(env, "LANGFUSE_PUBLIC_KEY")
        or (base.langfuse_public_key if base else ""),
        "langfuse_secret_key": _read_secret_file(args.langfuse_secret_key_file)
        or _env(env, "LANGFUSE_SECRET_KEY")
        or (base.langfuse_secret_key if base else ""),
    }
    missing = [
        flag
        for flag, key in (
            ("--open-webui-url", "openwebui_url"),
            ("--langfuse-host", "langfuse_host"),
            ("--langfuse-public-key", "langfuse_public_key"),
            ("--langfuse-secret-key-file", "langfuse_secret_key"),
        )
        if not values[key]
    ]
    if auth is None or (isinstance(auth, ApiKeyAuth) and not auth.api_key):
        missing.append(
            "--open-webui-api-key-file (or --open-webui-email and --open-webui-password-file)"
        )
    if missing:
        raise UsageError(
            "missing: "
            + ", ".join(missing)
            + (" (the resource has no spec.openWebUI)" if base else "")
        )
    assert auth is not None
    return SmokeTarget(
        openwebui_auth=auth,
        model=args.model or _env(env, "MODEL"),
        timeout=base.timeout if base else args.timeout,
        **values,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``smoke-test`` flags (cli.py registers the subcommand with these)."""
    add = parser.add_argument
    add("--namespace", metavar="NS", help="namespace of the LangfuseTracing to test")
    add("--name", metavar="NAME", help="name of the LangfuseTracing to test")
    add(
        "--open-webui-url",
        "--openwebui-url",
        metavar="URL",
        help=f"Open WebUI base URL (env {ENV_PREFIX}OPEN_WEBUI_URL)",
    )
    add(
        "--open-webui-api-key-file",
        "--openwebui-api-key-file",
        metavar="PATH",
        help=f"file holding an Open WebUI API key (env {ENV_PREFIX}OPEN_WEBUI_API_KEY)",
    )
    add(
        "--open-webui-email",
        "--openwebui-email",
        metavar="EMAIL",
        help=f"Open WebUI account email (env {ENV_PREFIX}OPEN_WEBUI_EMAIL)",
    )
    add(
        "--open-webui-password-file",
        "--openwebui-password-file",
        metavar="PATH",
        help=f"file holding its password (env {ENV_PREFIX}OPEN_WEBUI_PASSWORD)",
    )
    add("--langfuse-host", metavar="URL", help=f"Langfuse base URL (env {ENV_PREFIX}LANGFUSE_HOST)")
    add(
        "--langfuse-public-key",
        metavar="PK",
        help=f"Langfuse public key (env {ENV_PREFIX}LANGFUSE_PUBLIC_KEY)",
    )
    add("--langfuse-public-key-file", metavar="PATH", help="file holding the public key")
    add(
        "--langfuse-secret-key-file",
        metavar="PATH",
        help=f"file holding the Langfuse secret key (env {ENV_PREFIX}LANGFUSE_SECRET_KEY)",
    )
    add(
        "--model",
        metavar="MODEL",
        help="model to chat with (default: the first one Open WebUI lists)",
    )
    add(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="overall time for the chat and the trace (default 60)",
    )


def run_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """The ``smoke-test`` command: progress lines, then the one-line verdict; 0, 1 or 2."""
    env = os.environ if env is None else env

    def say(line: str) -> None:
        print(f"smoke-test: {line}", flush=True)

    try:
        target = target_from_args(args, env, say)
        result = run_smoke_test(target, say=say)
    except UsageError as exc:
        print(f"smoke-test: usage: {exc}", file=sys.stderr, flush=True)
        return 2
    except SmokeFailed as exc:
        print(f"FAIL: {exc}", flush=True)
        return 1
    for line in describe_trace(result.trace):
        say(line)
    print(
        f"PASS: a chat with {result.model!r} through Open WebUI reached Langfuse as trace "
        f"{result.trace.trace_id} in {result.seconds:.1f}s",
        flush=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m openwebui_langfuse.smoke``), same as the subcommand."""
    parser = argparse.ArgumentParser(
        prog="openwebui-langfuse smoke-test",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
