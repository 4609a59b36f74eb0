"""Where the demo's filter runs: what differs between ``spec.target: pipelines`` (the default)
and ``spec.target: function``. Everything else in demo/run.py is one flow for both.

- ``pipelines``: the chart deploys a Pipelines server (run here as a local process with the key
  from the chart's Secret); the echo model is a pipe in Pipelines; the operator installs the
  filter into Pipelines and registers Pipelines as a connection in Open WebUI.
- ``function``: the chart is installed with ``pipelines.enabled=false``, nothing Pipelines
  runs; the same echo model is a Pipe function served by Open WebUI itself; the operator
  installs the filter into Open WebUI as a Filter Function (no connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from tests.e2e.stack import (
    ECHO_MODEL,
    ECHO_PIPE,
    LANGFUSE_SECRET,
    OPENWEBUI_SECRET,
    TRACING,
    Stack,
    StackError,
)

if TYPE_CHECKING:
    from demo.run import Printer

# The Pipelines echo model (tests/e2e/stack.py) as an Open WebUI Pipe function: the same code
# answers and counts tokens, so both targets' traces show the same model and usage. Open WebUI
# hands a pipe the whole request body (with ``stream_options`` when its usage capability is on).
ECHO_PIPE_FUNCTION = (
    ECHO_PIPE
    + """

class Pipe:
    def __init__(self):
        self.name = "OWL Echo"
        self._echo = Pipeline()

    def pipe(self, body: dict):
        messages = body.get("messages") or []
        last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        return self._echo.pipe(str(last.get("content", "")), body.get("model"), messages, body)
"""
)


class DemoTarget(Protocol):
    """One value of ``spec.target``, as the demo sets it up and shows it."""

    name: str
    chart: str  # what `helm install` brings, for the step's title
    helm_flags: str  # the values it is installed with, as printed on the command line
    runs: str  # what runs next to the cluster, for the cleanup line

    def chart_values(self) -> dict[str, Any]: ...

    def start_model(self, p: Printer, stack: Stack) -> None:
        """After the operator started: the servers the chats need and the echo model."""

    def manifest(self, stack: Stack) -> dict[str, Any]:
        """The LangfuseTracing to apply."""

    def show_installed(self, p: Printer, stack: Stack, status: dict[str, Any]) -> None:
        """What the operator set up, once Ready."""

    def show_removed(self, p: Printer, stack: Stack) -> None:
        """What is left after the LangfuseTracing is deleted."""


def _connections(stack: Stack) -> str:
    return str(stack.openai_config()["OPENAI_API_BASE_URLS"])


class PipelinesTarget:
    name = "pipelines"
    chart = "CRD, Pipelines, operator, RBAC"
    helm_flags = ""
    runs = "the operator and Pipelines"

    def chart_values(self) -> dict[str, Any]:
        return {}

    def start_model(self, p: Printer, stack: Stack) -> None:
        key_secret, _key = stack.pipelines_key_ref()
        p.line(f"  it made the Pipelines key Secret {key_secret} (once; renders hold no key)")
        pipelines = stack.start_pipelines()
        p.line(f"Pipelines (real server) {pipelines.url}  with the key from that Secret,")
        p.line(f"  and a model to chat with: {ECHO_MODEL} (echoes, reports token usage)")

    def manifest(self, stack: Stack) -> dict[str, Any]:
        return stack.tracing_manifest()

    def show_installed(self, p: Printer, stack: Stack, status: dict[str, Any]) -> None:
        p.line(f"status.pipelineId: {status.get('pipelineId')}")
        p.line(f"Open WebUI connections now: {_connections(stack)}")

    def show_removed(self, p: Printer, stack: Stack) -> None:
        assert stack.pipelines is not None
        with stack.pipelines.client() as http:
            left = [f"{x['id']} ({x['type']})" for x in http.get("/pipelines").json()["data"]]
        p.line(f"Pipelines now holds: {', '.join(left) or 'nothing'}")
        p.line(f"Open WebUI connections now: {_connections(stack)}")


class FunctionTarget:
    name = "function"
    chart = "CRD, operator, RBAC; no Pipelines"
    helm_flags = " --set pipelines.enabled=false"
    runs = "the operator"

    def chart_values(self) -> dict[str, Any]:
        return {"pipelines": {"enabled": False}}

    def start_model(self, p: Printer, stack: Stack) -> None:
        with stack.open_webui.client() as http:
            created = http.post(
                "/api/v1/functions/create",
                json={
                    "id": ECHO_MODEL,
                    "name": "OWL Echo",
                    "content": ECHO_PIPE_FUNCTION,
                    "meta": {"description": "the demo's model: echoes, reports token usage"},
                },
            )
            on = http.post(f"/api/v1/functions/id/{ECHO_MODEL}/toggle")  # created switched off
            models = http.get("/api/models", params={"refresh": "true"})
        for answer, what in ((created, "creating"), (on, "switching on"), (models, "listing")):
            if answer.status_code != 200:
                raise StackError(
                    f"{what} the echo Pipe function in Open WebUI answered HTTP "
                    f"{answer.status_code}: {answer.text[:300]}"
                )
        if ECHO_MODEL not in {m["id"] for m in models.json()["data"]}:
            raise StackError(f"Open WebUI does not list the Pipe function {ECHO_MODEL} as a model")
        p.line("no Pipelines server: the filter will run inside Open WebUI")
        p.line(f"a model to chat with, served by Open WebUI itself: the Pipe function {ECHO_MODEL}")
        p.line("  (the same echo model as with Pipelines: echoes, reports token usage)")

    def manifest(self, stack: Stack) -> dict[str, Any]:
        return {
            "apiVersion": "openwebui-langfuse.io/v1alpha1",
            "kind": "LangfuseTracing",
            "metadata": {"name": TRACING},
            "spec": {
                "target": "function",
                "langfuse": {
                    "host": stack.langfuse.url,
                    "publicKey": {"secretKeyRef": {"name": LANGFUSE_SECRET, "key": "public-key"}},
                    "secretKey": {"secretKeyRef": {"name": LANGFUSE_SECRET, "key": "secret-key"}},
                },
                "openWebUI": {
                    "url": stack.open_webui.url,
                    "auth": {"credentials": {"secretRef": {"name": OPENWEBUI_SECRET}}},
                },
            },
        }

    def show_installed(self, p: Printer, stack: Stack, status: dict[str, Any]) -> None:
        p.line(f"status.functionId: {status.get('functionId')}")
        p.line(f"Open WebUI functions now: {_functions(stack)}")
        p.line(f"Open WebUI connections now: {_connections(stack)}  (none needed)")

    def show_removed(self, p: Printer, stack: Stack) -> None:
        p.line(f"Open WebUI functions now: {_functions(stack)}")
        p.line(f"Open WebUI connections now: {_connections(stack)}")


def _functions(stack: Stack) -> str:
    with stack.open_webui.client() as http:
        answer = http.get("/api/v1/functions/")
    answer.raise_for_status()
    shown = []
    for fn in sorted(answer.json(), key=lambda fn: str(fn["id"])):
        flags = [fn["type"], *(f for f in ("active", "global") if fn.get(f"is_{f}"))]
        shown.append(f"{fn['id']} ({', '.join(flags)})")
    return ", ".join(shown) or "nothing"


TARGETS: dict[str, DemoTarget] = {t.name: t for t in (PipelinesTarget(), FunctionTarget())}
