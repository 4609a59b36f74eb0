"""The whole product on the local world, one step per method: the end-to-end tests and the demo.

What a user has, here real or stood in: a Kubernetes cluster (kwok; the real control plane and
the real Helm), the chart installed with ``helm install``, the real Pipelines server and the real
Open WebUI (local processes: kwok never runs containers), a Langfuse (the stand-in), and the
operator, run as a process with a token of the chart's own ServiceAccount, so every call it
makes is checked against the chart's RBAC.

How the pieces meet: the chart generates the Pipelines API key into a Secret and the local
Pipelines server is started with that key (as the chart's pod would read it). The
``LangfuseTracing`` names loopback URLs for Pipelines, Open WebUI and Langfuse, since pod IPs lead
nowhere on kwok (docs/design.md, "The test world").

The cluster, Open WebUI and the stand-in are handed in (pytest fixtures own them in the tests,
the demo starts its own); the stack starts and stops the rest: the Helm release, Pipelines and
the operator.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.peers.langfuse_standin.keys import Project
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.open_webui import OpenWebUI
from tests.world.operator import CHART, Launcher, OperatorProcess, token_kubeconfig
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

RELEASE = "owl"
TRACING = "tracing"
LANGFUSE_SECRET = "langfuse-keys"
OPENWEBUI_SECRET = "open-webui-admin"
PIPELINES_SECRET = "pipelines-key"
CRD_NAME = "langfusetracings.openwebui-langfuse.io"
ECHO_MODEL = "owl_echo"

# A model for the chats: echoes the last user message and reports token usage the way an
# OpenAI-compatible provider does (Pipelines passes a dict answer through as it is), so the
# trace can show usage. Written for these tests; uploaded to Pipelines as owl_echo.py.
ECHO_PIPE = '''\
"""
title: OWL Echo
description: Test model of openwebui-langfuse; echoes the last user message, reports usage.
"""

import time
import uuid
from typing import List


class Pipeline:
    def __init__(self):
        self.name = "OWL Echo"

    def pipe(self, user_message: str, model_id: str, messages: List[dict], body: dict):
        answer = "echo: " + user_message
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(answer.split())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        base = {"id": "owl-echo-" + uuid.uuid4().hex, "created": int(time.time()),
                "model": model_id}
        if not body.get("stream"):
            return {**base, "object": "chat.completion", "usage": usage,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}]}
        # Streamed: like an OpenAI provider, usage only when the caller asked for it (Open
        # WebUI asks when the model has the "usage" capability, which the operator turns on).
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        return self._chunks(base, answer, usage if include_usage else None)

    def _chunks(self, base, answer, usage):
        for word in answer.split(" "):
            yield {**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {"content": word + " "},
                                "finish_reason": None}]}
        yield {**base, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if usage is not None:
            yield {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
'''


class StackError(RuntimeError):
    """A step of the stack failed; the message says which and shows the tool's own words."""


@dataclass(frozen=True)
class ChatTurn:
    chat_id: str
    user_id: str
    model: str
    prompt: str
    reply: str


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result.stdout


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


class Stack:
    """The chart, Pipelines, the operator and one LangfuseTracing in ``namespace``."""

    def __init__(
        self,
        world: World,
        cluster: Cluster,
        open_webui: OpenWebUI,
        langfuse: LangfuseStandIn,
        namespace: str,
        *,
        say: Callable[[str], None] = lambda line: None,
        openwebui_auth: str = "credentials",
        chart: Sequence[str] = (str(CHART),),
        operator_launcher: Launcher | None = None,
        release: str = RELEASE,
    ) -> None:
        # What `helm install` installs: the source tree's chart, or e.g. ("oci://...",
        # "--version", "X") from a registry; and how the operator runs (the source tree, or
        # the released image).
        self.chart = list(chart)
        self.operator_launcher = operator_launcher
        self.release = release
        self.world = world
        self.cluster = cluster
        self.open_webui = open_webui
        self.langfuse = langfuse
        self.namespace = namespace
        self.say = say
        self.openwebui_auth = openwebui_auth
        self.project: Project = langfuse.default_project
        self.tmp = Path(tempfile.mkdtemp(prefix="owl-stack-"))
        self.pipelines: PipelinesServer | None = None
        self.operator: OperatorProcess | None = None
        self.installed = False
        self.user_id = ""
        self.own_pipelines_secret: tuple[str, str] | None = None

    # -- tools ------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input_text: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            str(self.world.binary("kubectl")),
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "-n",
            self.namespace,
            *args,
        ]
        return subprocess.run(
            argv, capture_output=True, text=True, input=input_text, timeout=timeout, check=False
        )

    def helm(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        argv = [
            str(self.world.binary("helm")),
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "--namespace",
            self.namespace,
            *args,
        ]
        env = {
            "HELM_CACHE_HOME": str(self.tmp / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.tmp / "helm-config"),
            "HELM_DATA_HOME": str(self.tmp / "helm-data"),
            "PATH": "/usr/bin:/bin",
        }
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )

    def apply(self, manifest: dict[str, Any]) -> None:
        """``kubectl apply`` from stdin (Secret values never appear on a command line)."""
        _ok(
            self.kubectl("apply", "-f", "-", input_text=json.dumps(manifest)),
            f"kubectl apply {manifest['kind']}/{manifest['metadata']['name']}",
        )

    # -- the chart ---------------------------------------------------------------------------

    def crd_exists(self) -> bool:
        return self.kubectl("get", "crd", CRD_NAME).returncode == 0

    def install_chart(self, values: dict[str, Any] | None = None, *, wait: bool = True) -> str:
        """``helm install --wait`` of the chart; returns Helm's output.

        The CRD is cluster-wide and Helm keeps it on uninstall; when an earlier release (or test)
        already put it there, this release leaves it alone (``crd.install=false``), exactly as a
        second release of the chart in one cluster must.
        """
        merged: dict[str, Any] = {"crd": {"install": not self.crd_exists()}, **(values or {})}
        values_file = self.tmp / "values.yaml"
        values_file.write_text(yaml.safe_dump(merged))
        waiting = ["--wait", "--timeout", "2m"] if wait else []
        out = _ok(
            self.helm("install", self.release, *self.chart, "--values", str(values_file), *waiting),
            "helm install",
        )
        self.installed = True
        return out

    def chart_resource_name(self, kind: str, component: str) -> str:
        """Name of the chart's object of ``kind`` with label component=``component``."""
        selector = (
            f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={component}"
        )
        out = _ok(self.kubectl("get", kind, "-l", selector, "-o", "json"), f"get {kind}")
        items = json.loads(out)["items"]
        if len(items) != 1:
            raise StackError(f"expected one {kind} with component={component}, got {len(items)}")
        return str(items[0]["metadata"]["name"])

    def pipelines_key_ref(self) -> tuple[str, str]:
        """Where the Pipelines API key is: the Secret the operator made at its start (waited
        for, as the Pipelines pod waits for it), or our own one."""
        if self.own_pipelines_secret is not None:
            return self.own_pipelines_secret
        secret = wait_for(
            lambda: self._chart_secret("pipelines"), 20, "the operator's Pipelines key Secret"
        )
        return secret, "api-key"

    def _chart_secret(self, component: str) -> str | None:
        selector = f"app.kubernetes.io/component={component}"
        out = _ok(self.kubectl("get", "secret", "-l", selector, "-o", "json"), "get secret")
        items = json.loads(out)["items"]
        return str(items[0]["metadata"]["name"]) if len(items) == 1 else None

    def operator_env(self) -> dict[str, str]:
        """The plain environment of the installed operator Deployment (what its pod gets), less
        its health endpoints: they listen on 0.0.0.0 in a pod, a free loopback port here."""
        name = self.chart_resource_name("deployment", "operator")
        out = _ok(self.kubectl("get", "deployment", name, "-o", "json"), "get deployment")
        containers = json.loads(out)["spec"]["template"]["spec"]["containers"]
        return {
            e["name"]: e["value"]
            for e in containers[0].get("env", [])
            if "value" in e and not e["name"].endswith(("_LIVENESS", "_READINESS"))
        }

    def create_pipelines_secret(self, name: str = PIPELINES_SECRET) -> tuple[str, str]:
        """A Pipelines key Secret of our own, for ``pipelines.apiKey.existingSecret`` (needed
        when Helm itself renders the LangfuseTracing: its spec must name the key before the
        chart exists)."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name},
                "stringData": {"api-key": f"owl-{secrets.token_hex(16)}"},
            }
        )
        self.own_pipelines_secret = (name, "api-key")
        return self.own_pipelines_secret

    def secret_value(self, name: str, key: str) -> str:
        import base64

        out = _ok(self.kubectl("get", "secret", name, "-o", "json"), f"get secret {name}")
        return base64.b64decode(json.loads(out)["data"][key]).decode()

    # -- the servers -------------------------------------------------------------------------

    def start_pipelines(self) -> PipelinesServer:
        """The real Pipelines server with the key from the chart's Secret, plus the echo model."""
        name, key = self.pipelines_key_ref()
        self.pipelines = PipelinesServer(
            self.world, api_key=self.secret_value(name, key), base_dir=self.tmp
        ).start()
        response = self.pipelines.upload(ECHO_MODEL, ECHO_PIPE)
        response.raise_for_status()
        return self.pipelines

    def start_operator(self) -> OperatorProcess:
        """``openwebui-langfuse run`` with a token of the chart's operator ServiceAccount."""
        account = self.chart_resource_name("serviceaccount", "operator")
        kubeconfig = token_kubeconfig(
            self.cluster, self.namespace, account, self.tmp / "operator-kubeconfig"
        )
        log_dir = self.tmp / "operator"
        log_dir.mkdir(exist_ok=True)
        # The chart's environment for the operator; the launcher's flags pick the namespace and
        # a free loopback port for the liveness endpoint.
        env = self.operator_env()
        self.operator = OperatorProcess(
            self.world,
            kubeconfig,
            [self.namespace],
            env=env,
            log_dir=log_dir,
            launcher=self.operator_launcher,
        ).start()
        return self.operator

    def operator_kubeconfig(self) -> Path:
        """The chart ServiceAccount's kubeconfig (what a hook pod of the chart holds)."""
        path = self.tmp / "operator-kubeconfig"
        if not path.exists():
            raise StackError("start the operator first")
        return path

    # -- the resource ------------------------------------------------------------------------

    def create_secrets(self) -> None:
        self.apply(self.langfuse_secret_manifest(self.project))
        data = (
            {"email": self.open_webui.admin_email, "password": self.open_webui.admin_password}
            if self.openwebui_auth == "credentials"
            else {"api-key": self.open_webui.mint_api_key()}
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": OPENWEBUI_SECRET},
                "stringData": data,
            }
        )

    def langfuse_secret_manifest(self, project: Project) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": LANGFUSE_SECRET},
            "stringData": {"public-key": project.public_key, "secret-key": project.secret_key},
        }

    def tracing_manifest(self) -> dict[str, Any]:
        assert self.pipelines is not None, "start Pipelines first"
        secret, key = self.pipelines_key_ref()
        auth: dict[str, Any] = (
            {"credentials": {"secretRef": {"name": OPENWEBUI_SECRET}}}
            if self.openwebui_auth == "credentials"
            else {"apiKey": {"secretKeyRef": {"name": OPENWEBUI_SECRET, "key": "api-key"}}}
        )
        return {
            "apiVersion": "openwebui-langfuse.io/v1alpha1",
            "kind": "LangfuseTracing",
            "metadata": {"name": TRACING},
            "spec": {
                "langfuse": {
                    "host": self.langfuse.url,
                    "publicKey": {"secretKeyRef": {"name": LANGFUSE_SECRET, "key": "public-key"}},
                    "secretKey": {"secretKeyRef": {"name": LANGFUSE_SECRET, "key": "secret-key"}},
                },
                "pipelines": {
                    "url": self.pipelines.url,
                    "apiKey": {"secretKeyRef": {"name": secret, "key": key}},
                },
                "openWebUI": {"url": self.open_webui.url, "auth": auth},
            },
        }

    def apply_tracing(self) -> dict[str, Any]:
        manifest = self.tracing_manifest()
        self.apply(manifest)
        return manifest

    def get_tracing(self) -> dict[str, Any] | None:
        result = self.kubectl("get", "langfusetracing", TRACING, "-o", "json")
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise StackError(f"kubectl get langfusetracing: {result.stderr.strip()}")
        obj: dict[str, Any] = json.loads(result.stdout)
        return obj

    def wait_ready(
        self, timeout: float = 90, also: Callable[[dict[str, Any]], bool] = lambda obj: True
    ) -> dict[str, Any]:
        """Until Ready=True for the current generation (and ``also`` holds); the object."""

        def ready() -> dict[str, Any] | None:
            obj = self.get_tracing()
            if obj is None:
                return None
            cond = _condition(obj, "Ready")
            current = obj.get("status", {}).get("observedGeneration") == obj["metadata"].get(
                "generation"
            )
            if cond and cond.get("status") == "True" and current and also(obj):
                return obj
            return None

        try:
            return wait_for(ready, timeout, f"langfusetracing {self.namespace}/{TRACING} Ready")
        except TimeoutError as exc:
            raise StackError(
                f"{exc}\nstatus: {json.dumps(self._status(), indent=1)}\n"
                f"operator log tail:\n{self._operator_tail()}"
            ) from None

    def _status(self) -> Any:
        obj = self.get_tracing()
        return obj.get("status") if obj else None

    def _operator_tail(self, lines: int = 30) -> str:
        if self.operator is None:
            return "(operator not started)"
        return "\n".join(self.operator.log_text().splitlines()[-lines:])

    def rotate_langfuse_keys(self, name: str = "rotated-project") -> Project:
        """Point the Langfuse Secret at a new project's keys (a key rotation)."""
        self.project = self.langfuse.add_project(name=name)
        self.apply(self.langfuse_secret_manifest(self.project))
        return self.project

    def delete_tracing(self, timeout: float = 60) -> None:
        _ok(
            self.kubectl("delete", "langfusetracing", TRACING, "--wait=false"),
            "kubectl delete langfusetracing",
        )
        wait_for(
            lambda: self.get_tracing() is None,
            timeout,
            f"langfusetracing {TRACING} to be gone (finalizer released)",
        )

    # -- Open WebUI --------------------------------------------------------------------------

    def chat(self, prompt: str, *, model: str = ECHO_MODEL, stream: bool = False) -> ChatTurn:
        """One turn of a new, saved chat in Open WebUI, through its API as the web UI sends it:
        create the chat, then a completion naming the chat, the user message and the id of the
        answer (Open WebUI stores the turn in the chat; the trace gets the chat as session).

        A streamed turn of a saved chat runs in Open WebUI's background (the browser would get
        it over its socket); the answer is read from the stored chat once it is done."""
        answer_id = str(uuid.uuid4())
        with self.open_webui.client() as http:
            me = http.get("/api/v1/auths/")
            me.raise_for_status()
            self.user_id = str(me.json()["id"])
            created = http.post(
                "/api/v1/chats/new",
                json={
                    "chat": {
                        "title": "openwebui-langfuse",
                        "models": [model],
                        "messages": [],
                        "history": {"messages": {}, "currentId": None},
                    }
                },
            )
            created.raise_for_status()
            chat_id = str(created.json()["id"])
            response = http.post(
                "/api/chat/completions",
                json={
                    "model": model,
                    "stream": stream,
                    "chat_id": chat_id,
                    "id": answer_id,
                    "user_message": {"id": str(uuid.uuid4()), "role": "user", "content": prompt},
                    "messages": [{"role": "user", "content": prompt}],
                },
            )
            if response.status_code != 200:
                raise StackError(
                    f"chat through Open WebUI answered HTTP {response.status_code}: "
                    f"{response.text[:300]}"
                )
            if stream:
                reply = wait_for(
                    lambda: self._stored_answer(http, chat_id, answer_id),
                    30,
                    f"the streamed answer in chat {chat_id}",
                )
            else:
                reply = str(response.json()["choices"][0]["message"]["content"])
        return ChatTurn(
            chat_id=chat_id, user_id=self.user_id, model=model, prompt=prompt, reply=reply
        )

    @staticmethod
    def _stored_answer(http: httpx.Client, chat_id: str, answer_id: str) -> str | None:
        chat = http.get(f"/api/v1/chats/{chat_id}").json()
        message = chat["chat"]["history"]["messages"].get(answer_id) or {}
        return str(message["content"]).strip() if message.get("done") else None

    def wait_trace(
        self, turn: ChatTurn, project: Project | None = None, timeout: float = 30
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The trace of ``turn`` in the stand-in (project's keys) and its generation."""
        project_id = (project or self.project).project_id

        def found() -> tuple[dict[str, Any], dict[str, Any]] | None:
            for trace in self.langfuse.traces(project_id):
                if trace.get("sessionId") != turn.chat_id:
                    continue
                for obs in self.langfuse.observations(trace_id=trace["id"]):
                    if obs.get("type") == "GENERATION" and obs.get("output"):
                        return trace, obs
            return None

        return wait_for(found, timeout, f"a trace of chat {turn.chat_id} in project {project_id}")

    def openai_config(self) -> dict[str, Any]:
        with self.open_webui.client() as http:
            response = http.get("/openai/config")
            response.raise_for_status()
            config: dict[str, Any] = response.json()
            return config

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop what the stack started; the namespace (and with it the release's objects) is
        its owner's to delete. The LangfuseTracing is deleted first, while the operator still
        runs, so its finalizer does not hold the namespace up.

        Every step runs even when an earlier one fails or a Ctrl-C arrives meanwhile; the first
        such error is raised at the end."""
        first: BaseException | None = None
        for step in (
            self._delete_while_operator_runs,
            self._stop_operator,
            self._uninstall,
            self._stop_pipelines,
        ):
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others
                first = first or exc
        shutil.rmtree(self.tmp, ignore_errors=True)
        if first is not None:
            raise first

    def _delete_while_operator_runs(self) -> None:
        try:
            if self.operator is not None and self.get_tracing() is not None:
                self.delete_tracing()
        except (StackError, TimeoutError, httpx.HTTPError, subprocess.SubprocessError):
            pass  # the operator releases finalizers after its bound anyway; teardown goes on

    def _stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def _uninstall(self) -> None:
        if self.installed:
            self.installed = False
            self.helm("uninstall", self.release, "--no-hooks", "--wait", "--timeout", "1m")

    def _stop_pipelines(self) -> None:
        if self.pipelines is not None:
            self.pipelines.stop()
            self.pipelines = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f}s"
