"""The chart's NetworkPolicies admit what the product needs and nothing else (``netpol`` model).

Ingress: Pipelines from Open WebUI and the operator only; the operator on its probe ports only;
the hook Jobs not at all. Egress (``networkPolicy.egress``): every pod the cluster DNS; the
operator the Kubernetes API, this chart's Pipelines, Open WebUI and Langfuse; Pipelines
Langfuse; the pre-delete hook the API; the ``helm test`` Job the API, Open WebUI and Langfuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import CHART, SCENARIOS, Helm, by_kind, documents
from tests.chart.netpol import Address, Cluster, Pod, pods_of, selects
from tests.world.manifest import World

NS = "tracing"
OPEN_WEBUI = Pod("open-webui-0", NS, {"app.kubernetes.io/component": "open-webui"}, {"http": 8080})
DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"})
STRANGER = Pod("someone", NS, {"app": "someone"}, {"http": 8080, "db": 5432})
API = Address("172.18.0.2")  # an API server endpoint (the `kubernetes` Service's backend)
LANGFUSE_CLOUD = Address("52.1.2.3")
TRACING = CHART / "ci" / "tracing-values.yaml"
# The egress addresses narrowed as the README shows (the defaults allow any address on the ports).
NARROW = [
    "--set-json",
    f'networkPolicy.egress.kubernetesAPI.cidrs=["{API.ip}/32"]',
    "--set-json",
    f'networkPolicy.egress.langfuse.cidrs=["{LANGFUSE_CLOUD.ip}/32"]',
]


@pytest.fixture(scope="module")
def helm(world: World) -> Helm:
    return Helm(world)


def _world(docs: list[dict[str, Any]]) -> tuple[Cluster, dict[str, Pod]]:
    return Cluster({"kube-system": {}}, by_kind(docs, "NetworkPolicy")), pods_of(docs)


def _policy(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (policy,) = [d for d in by_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == name]
    return policy


def test_the_product_paths_are_open(helm: Helm) -> None:
    cluster, pods = _world(documents(helm.template("-f", TRACING)))
    operator, pipelines = pods["operator"], pods["pipelines"]
    allowed = [
        (OPEN_WEBUI, pipelines, 9099, "TCP"),  # chats, models, filters
        (operator, pipelines, 9099, "TCP"),  # filter and valves
        (operator, OPEN_WEBUI, 8080, "TCP"),  # the Pipelines connection
        (operator, API, 443, "TCP"),
        (operator, API, 6443, "TCP"),
        (operator, LANGFUSE_CLOUD, 443, "TCP"),  # credential check
        (pipelines, LANGFUSE_CLOUD, 443, "TCP"),  # the filter's traces
        (pods["pre-delete"], API, 443, "TCP"),
        (pods["smoke-test"], API, 443, "TCP"),
        (pods["smoke-test"], OPEN_WEBUI, 8080, "TCP"),  # the marked chat
        (pods["smoke-test"], LANGFUSE_CLOUD, 443, "TCP"),  # its trace
    ]
    allowed += [(pod, DNS, 53, proto) for pod in pods.values() for proto in ("UDP", "TCP")]
    closed = [
        (src.name, dst, port)
        for src, dst, port, p in allowed
        if not cluster.allows(src, dst, port, p)
    ]
    assert closed == []


def test_everything_else_is_closed(helm: Helm) -> None:
    cluster, pods = _world(documents(helm.template("-f", TRACING, *NARROW)))
    operator, pipelines = pods["operator"], pods["pipelines"]
    denied = [
        (STRANGER, pipelines, 9099),  # valves answer without a key: nobody else
        (OPEN_WEBUI, operator, 9443),  # the operator serves nothing but its probes...
        (STRANGER, pods["pre-delete"], 8080),  # ...and the hooks nothing at all
        (pipelines, API, 443),  # Pipelines has no business with the API
        (pipelines, API, 6443),
        (pipelines, OPEN_WEBUI, 8080),
        (pipelines, STRANGER, 5432),
        (operator, STRANGER, 5432),
        (operator, STRANGER, 8080),  # Open WebUI's port, but not Open WebUI
        (operator, LANGFUSE_CLOUD, 22),
        (operator, Address("52.1.2.4"), 443),
        (pods["pre-delete"], OPEN_WEBUI, 8080),  # the pre-delete hook needs the API only
        (pods["pre-delete"], LANGFUSE_CLOUD, 443),
    ]
    opened = [(src.name, dst, port) for src, dst, port in denied if cluster.allows(src, dst, port)]
    assert opened == []
    # With the default addresses (any) the ports still hold.
    cluster, pods = _world(documents(helm.template("-f", TRACING)))
    assert not cluster.allows(pods["pipelines"], API, 6443)
    assert not cluster.allows(pods["operator"], Address("52.1.2.4"), 22)


def test_probes_reach_the_operator_on_its_probe_ports_only(helm: Helm) -> None:
    docs = documents(helm.template())
    policy = _policy(docs, "owl-openwebui-langfuse-operator")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    # From anywhere: kubelet probes come from the node's addresses.
    assert "from" not in rule
    assert rule["ports"] == [
        {"port": "health", "protocol": "TCP"},
        {"port": "ready", "protocol": "TCP"},
    ]
    cluster, pods = _world(docs)
    operator = pods["operator"]
    assert cluster.allows(STRANGER, operator, 8080) and cluster.allows(STRANGER, operator, 8081)
    assert not cluster.allows(STRANGER, operator, 9000)


def test_dns_and_the_api_server_as_configured(helm: Helm) -> None:
    egress = _policy(documents(helm.template()), "owl-openwebui-langfuse-operator-egress")
    assert egress["spec"]["policyTypes"] == ["Egress"]
    dns, api = egress["spec"]["egress"][:2]
    assert dns == {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }
    assert api == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
    }
    # Narrowed in the cluster-wide scenario: only that endpoint, only that port.
    docs = documents(helm.template("-f", CHART / "ci" / "cluster-wide-values.yaml"))
    cluster, pods = _world(docs)
    assert cluster.allows(pods["operator"], Address("10.0.0.10"), 6443)
    assert not cluster.allows(pods["operator"], Address("10.0.0.11"), 6443)


def test_no_egress_rule_without_a_destination(helm: Helm) -> None:
    """An egress rule without `to` would open every destination: an emptied address list
    removes the rule instead."""
    docs = documents(
        helm.template(
            "--set-json",
            "networkPolicy.egress.kubernetesAPI.cidrs=[]",
            "--set-json",
            "networkPolicy.egress.langfuse.cidrs=[]",
        )
    )
    for policy in by_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("egress") or []:
            assert rule.get("to"), policy["metadata"]["name"]
    cluster, pods = _world(docs)
    assert not cluster.allows(pods["operator"], API, 443)
    assert not cluster.allows(pods["pipelines"], LANGFUSE_CLOUD, 443)


def test_an_in_cluster_langfuse_replaces_any_address(helm: Helm) -> None:
    docs = documents(helm.template("-f", CHART / "ci" / "tracing-open-webui-values.yaml"))
    cluster, pods = _world(docs)
    cluster.namespaces["langfuse"] = {}
    web = Pod("langfuse-web", "langfuse", {"app.kubernetes.io/name": "langfuse"})
    for component in ("operator", "pipelines", "smoke-test"):
        assert cluster.allows(pods[component], web, 3000), component
    assert not cluster.allows(pods["pipelines"], LANGFUSE_CLOUD, 443)
    assert not cluster.allows(pods["pipelines"], web, 5432)


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=lambda v: v.name if v else "default")
def test_every_pod_is_isolated_both_ways_and_every_policy_selects_a_pod(
    helm: Helm, values: Path | None
) -> None:
    docs = documents(helm.template(*(["-f", values] if values else [])))
    cluster, pods = _world(docs)
    open_ = [
        f"{c} {d}"
        for c, p in pods.items()
        for d in ("Ingress", "Egress")
        if not cluster.isolated(p, d)
    ]
    assert open_ == []
    idle = [
        p["metadata"]["name"]
        for p in by_kind(docs, "NetworkPolicy")
        if not any(selects(p["spec"]["podSelector"], pod.labels) for pod in pods.values())
    ]
    assert idle == []


def test_egress_switches_off_and_ingress_stays(helm: Helm) -> None:
    docs = documents(helm.template("-f", TRACING, "--set", "networkPolicy.egress.enabled=false"))
    names = sorted(p["metadata"]["name"] for p in by_kind(docs, "NetworkPolicy"))
    assert names == [
        "owl-openwebui-langfuse-hooks",
        "owl-openwebui-langfuse-operator",
        "owl-openwebui-langfuse-pipelines",
    ]
    cluster, pods = _world(docs)
    assert cluster.allows(pods["pipelines"], Address("1.1.1.1"), 25)  # egress is the cluster's
    assert not cluster.allows(STRANGER, pods["pipelines"], 9099)  # ingress is still ours
    docs = documents(helm.template("-f", TRACING, "--set", "operator.networkPolicy.enabled=false"))
    names = sorted(p["metadata"]["name"] for p in by_kind(docs, "NetworkPolicy"))
    assert "owl-openwebui-langfuse-operator" not in names
    assert "owl-openwebui-langfuse-hooks" not in names


# A pod that has only the label a user names, and one that has only the chart's default label.
USERS_OPEN_WEBUI = Pod("webui-0", NS, {"app": "open-webui"}, {"http": 8080})


def test_a_users_open_webui_selector_replaces_the_default(helm: Helm) -> None:
    docs = documents(
        helm.template(
            "-f",
            TRACING,
            "--set-json",
            'pipelines.networkPolicy.openWebUI.podSelector={"app":"open-webui"}',
        )
    )
    ingress = _policy(docs, "owl-openwebui-langfuse-pipelines")["spec"]["ingress"][0]["from"]
    assert ingress[0]["podSelector"] == {"matchLabels": {"app": "open-webui"}}
    cluster, pods = _world(docs)
    for src, dst, port in [
        (USERS_OPEN_WEBUI, pods["pipelines"], 9099),
        (pods["operator"], USERS_OPEN_WEBUI, 8080),
        (pods["smoke-test"], USERS_OPEN_WEBUI, 8080),
    ]:
        assert cluster.allows(src, dst, port), (src.name, dst.name)
    for src, dst, port in [
        (OPEN_WEBUI, pods["pipelines"], 9099),
        (pods["operator"], OPEN_WEBUI, 8080),
        (pods["smoke-test"], OPEN_WEBUI, 8080),
    ]:
        assert not cluster.allows(src, dst, port), (src.name, dst.name)


SELECTOR = "pipelines.networkPolicy.openWebUI.podSelector"


@pytest.mark.parametrize(
    "emptied", [["--set", f"{SELECTOR}=null"], ["--set-json", f"{SELECTOR}={{}}"]]
)
def test_an_empty_open_webui_selector_is_the_official_charts_label(
    helm: Helm, emptied: list[str]
) -> None:
    # Empty never reaches a policy: it would admit every pod of the namespace.
    cluster, pods = _world(documents(helm.template("-f", TRACING, *emptied)))
    assert cluster.allows(OPEN_WEBUI, pods["pipelines"], 9099)
    assert cluster.allows(pods["operator"], OPEN_WEBUI, 8080)
    assert not cluster.allows(STRANGER, pods["pipelines"], 9099)
    assert not cluster.allows(pods["operator"], STRANGER, 8080)


BAD_VALUES = [
    (["--set-json", "networkPolicy.egress.kubernetesAPI.ports=[]"], "kubernetesAPI/ports"),
    (["--set-json", 'networkPolicy.egress.langfuse.cidrs=["langfuse.com"]'], "langfuse/cidrs/0"),
    (["--set", "networkPolicy.egress.dns.podSelector=null"], "missing property 'podSelector'"),
    (["--set", "networkPolicy.egress.openWebUI.port=0"], "openWebUI/port"),
    (["--set", "networkPolicy.egres.enabled=false"], "additional properties 'egres' not allowed"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_bad_policy_values_fail_naming_the_value(helm: Helm, args: list[str], message: str) -> None:
    result = helm.run("template", "owl", CHART, "--namespace", NS, *args)
    assert result.returncode != 0, result.stdout[:300]
    assert message in result.stderr
