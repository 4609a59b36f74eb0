"""NetworkPolicy semantics, enough to ask "may this pod reach that one on this port?".

The local cluster has no CNI, so nothing enforces NetworkPolicies there. The chart's tests ask
this model instead, with the rules of the Kubernetes API reference: a pod selected by no policy
of a direction is open in that direction; a selected pod admits only what some rule of a policy
selecting it admits; a peer's podSelector without a namespaceSelector means the policy's own
namespace; an empty rule list admits nothing; a rule without ``to``/``from`` or ``ports`` admits
every peer or port; named ports resolve against the destination pod's container ports.
ipBlock peers match addresses outside the pods (``Address``), which is what the chart uses them
for (the API server's endpoints, Langfuse).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str]
    # container port name -> number (named ports in policies resolve against these)
    ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """Something outside the pod network: an API server endpoint, a SaaS."""

    ip: str


Endpoint = Pod | Address


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels; {} selects all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Cluster:
    """Namespaces (name -> labels) and the NetworkPolicies in force."""

    namespaces: dict[str, dict[str, str]]
    policies: list[dict[str, Any]]

    def _ns_labels(self, name: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": name, **self.namespaces.get(name, {})}

    def _peer_matches(self, policy_ns: str, peer: Mapping[str, Any], other: Endpoint) -> bool:
        if "ipBlock" in peer:
            if not isinstance(other, Address):
                return False
            block = peer["ipBlock"]
            ip = ipaddress.ip_address(other.ip)
            if ip not in ipaddress.ip_network(block["cidr"]):
                return False
            return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
        if not isinstance(other, Pod):
            return False
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self._ns_labels(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        return "podSelector" not in peer or selects(peer["podSelector"], other.labels)

    @staticmethod
    def _port_matches(rule: Mapping[str, Any], dst: Endpoint, port: int, protocol: str) -> bool:
        ports = rule.get("ports")
        if not ports:
            return True
        for entry in ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            wanted = entry.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str):
                if not isinstance(dst, Pod) or dst.ports.get(wanted) != port:
                    continue
            elif not int(wanted) <= port <= int(entry.get("endPort", wanted)):
                continue
            return True
        return False

    def _governing(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == pod.namespace
            and selects(p["spec"].get("podSelector"), pod.labels)
            and direction in _policy_types(p)
        ]

    def _admits(
        self,
        policies: Iterable[dict[str, Any]],
        key: str,
        peers_key: str,
        other: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                namespace = policy["metadata"]["namespace"]
                if peers and not any(self._peer_matches(namespace, p, other) for p in peers):
                    continue
                if self._port_matches(rule, dst, port, protocol):
                    return True
        return False

    def allows(self, src: Pod, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether ``src`` may open a connection to ``dst`` on ``port``."""
        egress = self._governing(src, "Egress")
        if egress and not self._admits(egress, "egress", "to", dst, dst, port, protocol):
            return False
        if isinstance(dst, Pod):
            ingress = self._governing(dst, "Ingress")
            if ingress and not self._admits(ingress, "ingress", "from", src, dst, port, protocol):
                return False
        return True

    def isolated(self, pod: Pod, direction: str) -> bool:
        """Whether some policy governs ``pod`` in ``direction`` (Ingress or Egress)."""
        return bool(self._governing(pod, direction))


def _policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def pods_of(docs: Iterable[Mapping[str, Any]]) -> dict[str, Pod]:
    """The pods a render's Deployments and Jobs make, by component label."""
    out = {}
    for doc in docs:
        if doc.get("kind") not in ("Deployment", "Job"):
            continue
        template = doc["spec"]["template"]
        labels = template["metadata"]["labels"]
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports") or []
            if "name" in p
        }
        out[labels["app.kubernetes.io/component"]] = Pod(
            doc["metadata"]["name"], doc["metadata"]["namespace"], labels, ports
        )
    return out
