"""The layout of docs/install.md, "Keep the credentials in a namespace of their own", holds.

The test reads that section's commands and values file as written and renders the chart with
them: the operator may read Secrets in the dedicated namespace only, every Secret the resource
references is one the commands (or the operator) create there, and the network paths between
Open WebUI in its own namespace, Pipelines and the operator are open while others stay closed
(the ``netpol`` model; nothing enforces policies on the local cluster).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.chart.helm import Helm, by_kind, documents
from tests.chart.netpol import Cluster, Pod, pods_of
from tests.world.manifest import World

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Keep the credentials in a namespace of their own"
NS = "openwebui-langfuse"
OPEN_WEBUI_NS = "open-webui"
OPEN_WEBUI_LABELS = {"app.kubernetes.io/component": "open-webui"}


def _section() -> str:
    doc = (REPO / "docs" / "install.md").read_text()
    start = doc.index(SECTION)
    end = doc.find("\n## ", start + len(SECTION))
    return doc[start : end if end != -1 else len(doc)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.DOTALL)


def _created_secrets() -> set[tuple[str, str]]:
    """(namespace, name) of every `kubectl -n NS create secret generic NAME` in the section."""
    commands = " ".join(_blocks("bash")).replace("\\\n", " ")
    return set(re.findall(r"kubectl -n (\S+) create secret generic (\S+)", commands))


def _referenced_secrets(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secretKeyRef", "secretRef") and isinstance(value, dict):
                found.add(value["name"])
            else:
                found |= _referenced_secrets(value)
    elif isinstance(node, list):
        for item in node:
            found |= _referenced_secrets(item)
    return found


@pytest.fixture(scope="module")
def docs(world: World, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    (values,) = _blocks("yaml")
    path = tmp_path_factory.mktemp("isolated") / "isolated.yaml"
    path.write_text(values)
    # The install command of the section, rendered: release and namespace as written there.
    (install,) = [c for c in _blocks("bash") if "helm install" in c]
    release = re.search(r"helm install (\S+)", install)
    namespace = re.search(r"helm install .*?-n (\S+)", install.replace("\\\n", " "))
    assert release and namespace and namespace.group(1) == NS
    return documents(Helm(world).template("-f", path, release=release.group(1), namespace=NS))


def test_the_operator_reads_secrets_in_the_dedicated_namespace_only(
    docs: list[dict[str, Any]],
) -> None:
    for role in by_kind(docs, "ClusterRole"):
        assert not [r for r in role["rules"] if "secrets" in r.get("resources", [])], role
    secret_roles = [
        role
        for role in by_kind(docs, "Role")
        if any("secrets" in r.get("resources", []) for r in role["rules"])
    ]
    assert secret_roles
    assert {role["metadata"]["namespace"] for role in secret_roles} == {NS}
    for binding in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding"):
        assert binding["metadata"].get("namespace", NS) == NS
        assert {s["namespace"] for s in binding["subjects"]} == {NS}


def test_every_referenced_secret_is_created_in_the_resources_namespace(
    docs: list[dict[str, Any]],
) -> None:
    (tracing,) = by_kind(docs, "LangfuseTracing")
    assert tracing["metadata"]["namespace"] == NS
    # The Secret the operator makes for the Pipelines key (its Deployment says which).
    (operator,) = [d for d in by_kind(docs, "Deployment") if "operator" in d["metadata"]["name"]]
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    key_namespace, key_name = env["OPENWEBUI_LANGFUSE_PIPELINES_KEY_SECRET"].split("/")
    made = _created_secrets() | {(key_namespace, key_name)}
    referenced = _referenced_secrets(tracing["spec"])
    assert {"langfuse-keys", "open-webui-admin", key_name} <= referenced
    assert {(NS, name) for name in referenced} <= made, (referenced, made)


def test_the_connection_url_is_a_name_open_webuis_namespace_resolves(
    docs: list[dict[str, Any]],
) -> None:
    (tracing,) = by_kind(docs, "LangfuseTracing")
    spec = tracing["spec"]
    connection = urlsplit(spec["openWebUI"].get("connectionUrl") or spec["pipelines"]["url"])
    (service,) = [s for s in by_kind(docs, "Service") if "pipelines" in s["metadata"]["name"]]
    assert connection.hostname == f"{service['metadata']['name']}.{NS}.svc"
    assert connection.port == service["spec"]["ports"][0]["port"]
    assert (urlsplit(spec["openWebUI"]["url"]).hostname or "").endswith(f".{OPEN_WEBUI_NS}.svc")


def test_open_webui_in_its_namespace_reaches_pipelines_and_nothing_else_does(
    docs: list[dict[str, Any]],
) -> None:
    cluster = Cluster({OPEN_WEBUI_NS: {}, NS: {}, "elsewhere": {}}, by_kind(docs, "NetworkPolicy"))
    pods = pods_of(docs)
    pipelines, operator = pods["pipelines"], pods["operator"]
    open_webui = Pod("open-webui-0", OPEN_WEBUI_NS, OPEN_WEBUI_LABELS, {"http": 8080})
    neighbour = Pod("worker", OPEN_WEBUI_NS, {"app": "worker"}, {"http": 8080})
    lookalike = Pod("open-webui-0", "elsewhere", OPEN_WEBUI_LABELS, {"http": 8080})
    assert cluster.allows(open_webui, pipelines, 9099)  # chats, models, filters
    assert cluster.allows(operator, pipelines, 9099)  # filter and valves
    assert cluster.allows(operator, open_webui, 8080)  # the connection
    assert not cluster.allows(neighbour, pipelines, 9099)
    assert not cluster.allows(lookalike, pipelines, 9099)
    assert not cluster.allows(operator, neighbour, 8080)
