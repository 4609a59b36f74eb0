"""The table of invalid LangfuseTracing resources and the message the API server answers each with.

Each case starts from a valid resource, breaks one thing, and names a substring that the API
server's rejection must contain: the field's path, and for CEL rules the rule's own message.
The same table is printed in the chart README's "Validation" section by hand-picked rows and
used by tests/chart/test_crd_validation.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Resource = dict[str, Any]


def valid_resource(name: str = "valid") -> Resource:
    """A minimal valid LangfuseTracing (the base every invalid case breaks)."""
    return {
        "apiVersion": "openwebui-langfuse.io/v1alpha1",
        "kind": "LangfuseTracing",
        "metadata": {"name": name},
        "spec": {
            "langfuse": {
                "host": "https://cloud.langfuse.com",
                "publicKey": {"value": "pk-lf-1"},
                "secretKey": {"secretKeyRef": {"name": "langfuse", "key": "secret-key"}},
            },
            "pipelines": {
                "url": "http://pipelines.tracing.svc:9099",
                "apiKey": {"secretKeyRef": {"name": "pipelines", "key": "api-key"}},
            },
        },
    }


OPEN_WEBUI = {
    "url": "http://open-webui.ns.svc:80",
    "auth": {"apiKey": {"secretKeyRef": {"name": "owui", "key": "api-key"}}},
}
FILTER_URL = "https://example.com/filters/langfuse_filter_pipeline.py"


def valid_function_resource(name: str = "valid-function") -> Resource:
    """A minimal valid LangfuseTracing with target function: Open WebUI, no Pipelines."""
    body = valid_resource(name)
    del body["spec"]["pipelines"]
    body["spec"]["target"] = "function"
    body["spec"]["openWebUI"] = copy.deepcopy(OPEN_WEBUI)
    return body


@dataclass(frozen=True)
class Invalid:
    """One invalid resource: how to break the valid one, and what the rejection must say."""

    case: str
    breaks: Callable[[Resource], None]
    message: str

    def resource(self, name: str) -> Resource:
        body = copy.deepcopy(valid_resource(name))
        self.breaks(body)
        return body


def _set(path: str, value: Any) -> Callable[[Resource], None]:
    """Set spec.<path> (dotted) to value, creating objects on the way."""

    def apply(body: Resource) -> None:
        node = body["spec"]
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = copy.deepcopy(value)

    return apply


def _drop(path: str) -> Callable[[Resource], None]:
    def apply(body: Resource) -> None:
        node = body
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        del node[last]

    return apply


def _all(*steps: Callable[[Resource], None]) -> Callable[[Resource], None]:
    def apply(body: Resource) -> None:
        for step in steps:
            step(body)

    return apply


def _as_function(*steps: Callable[[Resource], None]) -> Callable[[Resource], None]:
    """Turn the valid resource into valid_function_resource, then apply steps."""

    def apply(body: Resource) -> None:
        body["spec"] = valid_function_resource()["spec"]
        for step in steps:
            step(body)

    return apply


HOST_MSG = "spec.langfuse.host must be an http(s) URL without a path, query or trailing slash"

INVALID: list[Invalid] = [
    Invalid("no spec", _drop("spec"), "spec: Required value"),
    Invalid("no langfuse", _drop("spec.langfuse"), "spec.langfuse: Required value"),
    Invalid("no langfuse host", _drop("spec.langfuse.host"), "spec.langfuse.host: Required value"),
    Invalid("host without scheme", _set("langfuse.host", "cloud.langfuse.com"), HOST_MSG),
    Invalid("host ftp scheme", _set("langfuse.host", "ftp://cloud.langfuse.com"), HOST_MSG),
    Invalid("host trailing slash", _set("langfuse.host", "https://cloud.langfuse.com/"), HOST_MSG),
    Invalid("host with path", _set("langfuse.host", "https://cloud.langfuse.com/api"), HOST_MSG),
    Invalid("host with credentials", _set("langfuse.host", "https://u:p@lf.example"), HOST_MSG),
    Invalid(
        "publicKey value and secretKeyRef",
        _set("langfuse.publicKey", {"value": "pk", "secretKeyRef": {"name": "s", "key": "k"}}),
        "spec.langfuse.publicKey must set exactly one of value or secretKeyRef",
    ),
    Invalid(
        "publicKey empty",
        _set("langfuse.publicKey", {}),
        "spec.langfuse.publicKey must set exactly one of value or secretKeyRef",
    ),
    Invalid(
        "publicKey value empty",
        _set("langfuse.publicKey", {"value": ""}),
        "spec.langfuse.publicKey.value",
    ),
    Invalid(
        "no secretKey", _drop("spec.langfuse.secretKey"), "spec.langfuse.secretKey: Required value"
    ),
    Invalid(
        "secretKey inline value",
        _set("langfuse.secretKey", {"value": "sk-lf-1"}),
        'unknown field "spec.langfuse.secretKey.value"',
    ),
    Invalid(
        "secretKeyRef empty name",
        _set("langfuse.secretKey.secretKeyRef.name", ""),
        "spec.langfuse.secretKey.secretKeyRef.name",
    ),
    Invalid(
        "secretKeyRef without key",
        _drop("spec.langfuse.secretKey.secretKeyRef.key"),
        "spec.langfuse.secretKey.secretKeyRef.key: Required value",
    ),
    Invalid(
        "secretKeyRef key with slash",
        _set("langfuse.secretKey.secretKeyRef.key", "a/b"),
        "spec.langfuse.secretKey.secretKeyRef.key",
    ),
    Invalid("verify not a boolean", _set("langfuse.verify", "yes"), "spec.langfuse.verify"),
    Invalid(
        "unknown langfuse field",
        _set("langfuse.hostname", "x"),
        'unknown field "spec.langfuse.hostname"',
    ),
    Invalid(
        "no pipelines",
        _drop("spec.pipelines"),
        "spec.pipelines: Required value: spec.pipelines is required when spec.target is pipelines",
    ),
    Invalid(
        "pipelines url trailing slash",
        _set("pipelines.url", "http://pipelines:9099/"),
        "spec.pipelines.url must be an http(s) URL",
    ),
    Invalid(
        "pipelines url not a url",
        _set("pipelines.url", "pipelines:9099"),
        "spec.pipelines.url must be an http(s) URL",
    ),
    Invalid(
        "no pipelines apiKey",
        _drop("spec.pipelines.apiKey"),
        "spec.pipelines.apiKey: Required value",
    ),
    Invalid(
        "pipelines apiKey empty ref",
        _set("pipelines.apiKey.secretKeyRef", {}),
        "spec.pipelines.apiKey.secretKeyRef.name: Required value",
    ),
    Invalid(
        "unknown filter source",
        _set("filter.source", "git"),
        'spec.filter.source: Unsupported value: "git"',
    ),
    Invalid(
        "source url without url",
        _set("filter.source", "url"),
        "spec.filter.url is required when spec.filter.source is url",
    ),
    Invalid(
        "url with source bundled",
        _set("filter.url", FILTER_URL),
        "spec.filter.url is only allowed when spec.filter.source is url (it is bundled)",
    ),
    Invalid(
        "source configMap without configMap",
        _set("filter.source", "configMap"),
        "spec.filter.configMap is required when spec.filter.source is configMap",
    ),
    Invalid(
        "two filter sources",
        _set(
            "filter",
            {"source": "url", "url": FILTER_URL, "configMap": {"name": "f", "key": "filter.py"}},
        ),
        "spec.filter.configMap is only allowed when spec.filter.source is configMap (it is url)",
    ),
    Invalid(
        "filter url not a .py file",
        _set("filter", {"source": "url", "url": "https://example.com/filter.txt"}),
        "spec.filter.url must be an http(s) URL whose path ends in .py",
    ),
    Invalid(
        "filter url file name not a module name",
        _set("filter", {"source": "url", "url": "https://example.com/langfuse-filter.py"}),
        "spec.filter.pipelineId is required when the file name in spec.filter.url",
    ),
    Invalid(
        "configMap without key",
        _set("filter", {"source": "configMap", "configMap": {"name": "f"}}),
        "spec.filter.configMap.key: Required value",
    ),
    Invalid("sha256 upper case", _set("filter.sha256", "AB" * 32), "spec.filter.sha256"),
    Invalid("sha256 too short", _set("filter.sha256", "ab" * 31), "spec.filter.sha256"),
    Invalid(
        "pipelineId starts with a digit",
        _set("filter.pipelineId", "1filter"),
        "spec.filter.pipelineId",
    ),
    Invalid(
        "pipelineId with a dash", _set("filter.pipelineId", "my-filter"), "spec.filter.pipelineId"
    ),
    Invalid("models empty", _set("filter.models", []), "spec.filter.models"),
    Invalid(
        "models duplicate",
        _set("filter.models", ["a", "a"]),
        "spec.filter.models[1]: Duplicate value",
    ),
    Invalid("priority not an integer", _set("filter.priority", "high"), "spec.filter.priority"),
    Invalid(
        "secret key in valves",
        _set("filter.valves", {"secret_key": "sk-lf-1"}),
        "spec.filter.valves must not set secret_key",
    ),
    Invalid(
        "openWebUI without auth",
        _set("openWebUI", {"url": OPEN_WEBUI["url"]}),
        "spec.openWebUI.auth: Required value",
    ),
    Invalid(
        "openWebUI without url",
        _set("openWebUI", {"auth": OPEN_WEBUI["auth"]}),
        "spec.openWebUI.url: Required value",
    ),
    Invalid(
        "openWebUI both auths",
        _set(
            "openWebUI",
            {
                **OPEN_WEBUI,
                "auth": {**OPEN_WEBUI["auth"], "credentials": {"secretRef": {"name": "a"}}},
            },
        ),
        "spec.openWebUI.auth must set exactly one of apiKey or credentials",
    ),
    Invalid(
        "openWebUI no auth method",
        _set("openWebUI", {**OPEN_WEBUI, "auth": {}}),
        "spec.openWebUI.auth must set exactly one of apiKey or credentials",
    ),
    Invalid(
        "credentials without secretRef",
        _set("openWebUI", {**OPEN_WEBUI, "auth": {"credentials": {"emailKey": "email"}}}),
        "spec.openWebUI.auth.credentials.secretRef: Required value",
    ),
    Invalid(
        "openWebUI url with path",
        _set("openWebUI", {**OPEN_WEBUI, "url": "http://open-webui:8080/api"}),
        "spec.openWebUI.url must be an http(s) URL",
    ),
    Invalid(
        "connectionUrl trailing slash",
        _set("openWebUI", {**OPEN_WEBUI, "connectionUrl": "http://pipelines:9099/"}),
        "spec.openWebUI.connectionUrl must be an http(s) URL",
    ),
    Invalid(
        "usageCapability not a boolean",
        _all(_set("openWebUI", OPEN_WEBUI), _set("openWebUI.usageCapability", "on")),
        "spec.openWebUI.usageCapability",
    ),
    Invalid(
        "resyncInterval words",
        _set("resyncInterval", "5 minutes"),
        "spec.resyncInterval must be a duration of h, m and s units",
    ),
    Invalid(
        "resyncInterval days",
        _set("resyncInterval", "1d"),
        "spec.resyncInterval must be a duration of h, m and s units",
    ),
    Invalid(
        "resyncInterval below minimum",
        _set("resyncInterval", "5s"),
        "spec.resyncInterval must be at least 10s",
    ),
    Invalid("resyncInterval an integer", _set("resyncInterval", 300), "spec.resyncInterval"),
    Invalid(
        "unknown deletionPolicy",
        _set("deletionPolicy", "Orphan"),
        'spec.deletionPolicy: Unsupported value: "Orphan"',
    ),
    Invalid("suspend not a boolean", _set("suspend", "true"), "spec.suspend"),
    Invalid(
        "unknown target", _set("target", "openwebui"), 'spec.target: Unsupported value: "openwebui"'
    ),
    Invalid(
        "target pipelines without pipelines",
        _all(_set("target", "pipelines"), _drop("spec.pipelines")),
        "spec.pipelines: Required value: spec.pipelines is required when spec.target is pipelines",
    ),
    Invalid(
        "pipelines with target function",
        _as_function(_set("pipelines", valid_resource()["spec"]["pipelines"])),
        "spec.pipelines: Forbidden: spec.pipelines is not allowed when spec.target is function: "
        "the filter runs inside Open WebUI",
    ),
    Invalid(
        "target function without openWebUI",
        _as_function(_drop("spec.openWebUI")),
        "spec.openWebUI: Required value: spec.openWebUI is required when spec.target is function",
    ),
    Invalid(
        "connectionUrl with target function",
        _as_function(_set("openWebUI.connectionUrl", "http://pipelines:9099")),
        "spec.openWebUI.connectionUrl: Forbidden: spec.openWebUI.connectionUrl is not allowed "
        "when spec.target is function: there is no connection",
    ),
    Invalid(
        "pipelineId with target function",
        _as_function(_set("filter.pipelineId", "lft_ns_name")),
        "spec.filter.pipelineId: Forbidden: spec.filter.pipelineId is not allowed when "
        "spec.target is function: use spec.filter.functionId",
    ),
    Invalid(
        "functionId with target pipelines",
        _set("filter.functionId", "lft_ns_name"),
        "spec.filter.functionId: Forbidden: spec.filter.functionId is only allowed when "
        "spec.target is function (it is pipelines)",
    ),
    Invalid(
        "functionId upper case",
        _as_function(_set("filter.functionId", "Langfuse")),
        'spec.filter.functionId: Invalid value: "Langfuse"',
    ),
    Invalid(
        "functionId starts with a digit",
        _as_function(_set("filter.functionId", "1filter")),
        'spec.filter.functionId: Invalid value: "1filter"',
    ),
    Invalid(
        "functionId with a dash",
        _as_function(_set("filter.functionId", "my-filter")),
        'spec.filter.functionId: Invalid value: "my-filter"',
    ),
    Invalid(
        "functionId too long",
        _as_function(_set("filter.functionId", "f" * 64)),
        "spec.filter.functionId: Invalid value",
    ),
]
