"""This chart installed next to the official open-webui chart, both ways users have it.

The official chart (16.0.0) is read in place from ../shared/peers/open-webui-chart, its
subcharts placed as ``helm dependency build`` would. Both charts are installed with the real
Helm into one namespace of the kwok cluster, under the release names docs/install.md uses
(``open-webui`` and ``openwebui-langfuse``); kwok makes the pods Ready without running them.
What is checked is that the two charts fit: the Services, ports and labels as the API server
holds them after the install, against the URLs the guide's resources use and this chart's
NetworkPolicies as installed (the ``netpol`` model: nothing enforces policies here).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import yaml
from openwebui_langfuse.clients.openwebui import OpenAIConfig
from openwebui_langfuse.connection import plan_registration, same_connection_url

from tests.chart.helm import CHART, Helm
from tests.chart.netpol import Cluster, Pod, selects
from tests.install_guide import GUIDE_NAMESPACE, yaml_blocks

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO.parent / "shared" / "peers" / "open-webui-chart" / "open-webui"
# As in docs/install.md: the official chart's release and this chart's release.
OFFICIAL_RELEASE = "open-webui"
RELEASE = "openwebui-langfuse"
# The official chart with nothing the local cluster cannot give it (no volumes, no Ollama).
OFFICIAL_VALUES = ["--set", "ollama.enabled=false", "--set", "persistence.enabled=false"]
NO_CRD = ["--set", "crd.install=false"]  # the module's CRD comes from the `crd` fixture
WAIT = ["--wait", "--timeout", "90s"]


def _guide_tracing(heading: str, namespace: str) -> dict[str, Any]:
    """The section's LangfuseTracing, moved from the guide's namespace to the test's."""
    (resource,) = [b for b in yaml_blocks(heading) if b.get("kind") == "LangfuseTracing"]
    assert resource["metadata"]["namespace"] == GUIDE_NAMESPACE
    text = yaml.safe_dump(resource).replace(f".{GUIDE_NAMESPACE}.svc", f".{namespace}.svc")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def _pods(kube: ApiClient, namespace: str) -> dict[str, Pod]:
    from kubernetes.client import CoreV1Api

    pods = {}
    for item in CoreV1Api(kube).list_namespaced_pod(namespace).items:
        ports = {
            p.name: p.container_port for c in item.spec.containers for p in c.ports or [] if p.name
        }
        pods[item.metadata.name] = Pod(
            item.metadata.name, namespace, item.metadata.labels or {}, ports
        )
    return pods


def _policies(kube: ApiClient, namespace: str) -> Cluster:
    from kubernetes.client import NetworkingV1Api

    items = NetworkingV1Api(kube).list_namespaced_network_policy(namespace).items
    policies = [kube.sanitize_for_serialization(p) for p in items]
    return Cluster({namespace: {"kubernetes.io/metadata.name": namespace}}, policies)


def _serving(kube: ApiClient, url: str, namespace: str, pods: dict[str, Pod]) -> dict[str, int]:
    """The pods behind a ``http://name.namespace.svc:port`` URL, as installed: pod name ->
    the container port the Service's port leads to."""
    from kubernetes.client import CoreV1Api

    parts = urlsplit(url)
    name, ns, svc = (parts.hostname or "").split(".")
    assert (ns, svc) == (namespace, "svc"), url
    service = CoreV1Api(kube).read_namespaced_service(name, namespace)
    port = parts.port or 80
    (target,) = [p.target_port for p in service.spec.ports if p.port == port]
    selector = {"matchLabels": service.spec.selector}
    return {
        pod.name: pod.ports[target] if isinstance(target, str) else target
        for pod in pods.values()
        if selects(selector, pod.labels)
    }


def _one(pods: dict[str, Pod], **labels: str) -> Pod:
    (pod,) = [
        p
        for p in pods.values()
        if all(p.labels.get(f"app.kubernetes.io/{k}") == v for k, v in labels.items())
    ]
    return pod


def test_subchart_off_this_charts_pipelines_admits_the_official_open_webui_and_the_operator(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    from kubernetes.client import AppsV1Api

    helm_cluster.ok(
        "install", OFFICIAL_RELEASE, OFFICIAL, "-n", namespace, *OFFICIAL_VALUES,
        "--set", "pipelines.enabled=false", *WAIT,
    )  # fmt: skip
    helm_cluster.ok("install", RELEASE, CHART, "-n", namespace, *NO_CRD, *WAIT)
    pods = _pods(kube, namespace)
    open_webui = _one(pods, instance=OFFICIAL_RELEASE, component="open-webui")
    redis = _one(pods, instance=OFFICIAL_RELEASE, component="open-webui-redis")
    pipelines = _one(pods, instance=RELEASE, component="pipelines")
    operator = _one(pods, instance=RELEASE, component="operator")
    assert len(pods) == 4, sorted(pods)  # nothing else, so "exactly" below means something
    cluster = _policies(kube, namespace)

    admitted = {p.name for p in pods.values() if cluster.allows(p, pipelines, 9099)}
    assert admitted == {open_webui.name, operator.name}
    assert cluster.allows(operator, open_webui, open_webui.ports["http"])
    assert not cluster.allows(operator, redis, redis.ports["http"])

    # The guide's resource: both URLs name a Service as installed, on the port it serves, and
    # lead to the pod that should answer, on a port the operator's egress allows.
    spec = _guide_tracing("## 3. Apply a LangfuseTracing", namespace)["spec"]
    assert _serving(kube, spec["openWebUI"]["url"], namespace, pods) == {
        open_webui.name: open_webui.ports["http"]
    }
    assert _serving(kube, spec["pipelines"]["url"], namespace, pods) == {pipelines.name: 9099}
    for pod, port in [(open_webui, open_webui.ports["http"]), (pipelines, 9099)]:
        assert cluster.allows(operator, pod, port), pod.name
    # Its Pipelines key is the Secret the operator is told to make.
    deployment = AppsV1Api(kube).read_namespaced_deployment(f"{RELEASE}-operator", namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert spec["pipelines"]["apiKey"]["secretKeyRef"] == {
        "name": env["OPENWEBUI_LANGFUSE_PIPELINES_KEY_SECRET"].split("/")[-1],
        "key": env["OPENWEBUI_LANGFUSE_PIPELINES_KEY_SECRET_KEY"],
    }


SUBCHART = "## Keep the open-webui chart's own Pipelines"


def test_subchart_kept_the_guide_adopts_its_pipelines_without_a_second_connection(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str, tmp_path: Path
) -> None:
    from kubernetes.client import CoreV1Api

    helm_cluster.ok(
        "install", OFFICIAL_RELEASE, OFFICIAL, "-n", namespace, *OFFICIAL_VALUES,
        "--set", "pipelines.persistence.enabled=false", *WAIT,
    )  # fmt: skip
    (values,) = [b for b in yaml_blocks(SUBCHART) if "kind" not in b]
    assert values["pipelines"] == {"enabled": False}
    path = tmp_path / "keep-subchart.yaml"
    path.write_text(yaml.safe_dump(values))
    helm_cluster.ok("install", RELEASE, CHART, "-n", namespace, "-f", path, *NO_CRD, *WAIT)
    pods = _pods(kube, namespace)
    pipelines = _one(pods, instance=OFFICIAL_RELEASE, component="pipelines")
    operator = _one(pods, instance=RELEASE, component="operator")
    ours = [p.name for p in pods.values() if p.labels.get("app.kubernetes.io/instance") == RELEASE]
    assert ours == [operator.name]  # no second Pipelines

    spec = _guide_tracing(SUBCHART, namespace)["spec"]
    assert _serving(kube, spec["pipelines"]["url"], namespace, pods) == {pipelines.name: 9099}
    assert _policies(kube, namespace).allows(operator, pipelines, 9099)

    # The connection the official chart gives Open WebUI at its first boot, as installed, is
    # the guide's Pipelines URL for the operator: adopted in place, never added a second time.
    open_webui = _one(pods, instance=OFFICIAL_RELEASE, component="open-webui")
    pod = CoreV1Api(kube).read_namespaced_pod(open_webui.name, namespace)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    urls = env["OPENAI_API_BASE_URLS"].split(";")
    assert urls[0] == f"http://{OFFICIAL_RELEASE}-pipelines.{namespace}.svc.cluster.local:9099"
    assert same_connection_url(urls[0], spec["pipelines"]["url"])
    current = OpenAIConfig(enable=True, base_urls=urls, keys=[""] * len(urls), configs={})
    plan = plan_registration(current, spec["pipelines"]["url"], "0p3n-w3bu!")
    assert (plan.idx, plan.added, plan.config.base_urls) == (0, False, urls)


@pytest.fixture(autouse=True)
def _official_chart_present() -> None:
    assert (OFFICIAL / "Chart.yaml").is_file(), f"missing peer chart {OFFICIAL}"
