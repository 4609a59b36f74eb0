"""Bad input and faults (issue 5): each ends in a truthful status and, where it can, recovers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    pipeline_ids,
    secret_guard_fixture,
    secrets_in_fixture,
    spec,
    valves,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.operator import Harness, OperatorProcess
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for
from tests.world.proc import free_port

pytestmark = [pytest.mark.world, pytest.mark.usefixtures("secret_guard", "secrets_in")]

NAME = "tracing"
BROKEN_FILTER = "import no_such_module_for_this_test\nclass Pipeline:\n    pass\n"


def pid_of(namespace: str, name: str = NAME) -> str:
    return f"lft_{namespace}_{name}".replace("-", "_")


@pytest.mark.parametrize(
    ("mode", "reason", "stalled"),
    [
        ("403", "AccessDenied", "True"),
        ("500", "LangfuseServerError", "False"),
        ("slow", "LangfuseTimeout", "False"),
    ],
)
def test_langfuse_failures_keep_valves_and_recover(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    mode: str,
    reason: str,
    stalled: str,
) -> None:
    langfuse.slow_seconds = 5  # beyond the operator's 2 s HTTP timeout in these tests
    langfuse.set_failure(mode)
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    cond = harness.wait_condition(namespace, NAME, "CredentialsValid", "False", reason=reason)
    assert langfuse.secret_key not in cond["message"]
    assert harness.condition(namespace, NAME, "Stalled")["status"] == stalled  # type: ignore[index]
    reconciling = harness.condition(namespace, NAME, "Reconciling")
    assert reconciling is not None
    assert reconciling["status"] == ("False" if stalled == "True" else "True")
    # The filter is in (it needs no Langfuse keys) but has none of the keys.
    pid = pid_of(namespace)
    assert pipeline_ids(pipelines) == [pid]
    assert valves(pipelines, pid)["secret_key"] != langfuse.secret_key

    langfuse.set_failure(None)
    if stalled == "True":
        # Permanent: only a change brings it back (here a Secret write, or the next resync).
        harness.put_secret(
            namespace,
            "langfuse",
            {"public-key": langfuse.public_key, "secret-key": langfuse.secret_key},
        )
    harness.wait_condition(namespace, NAME, "Ready", "True", timeout=15)
    assert valves(pipelines, pid)["secret_key"] == langfuse.secret_key


def test_langfuse_unreachable(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    body = spec(pipelines, langfuse)
    body["langfuse"]["host"] = f"http://127.0.0.1:{free_port()}"
    harness.apply(namespace, NAME, body)
    harness.wait_condition(
        namespace, NAME, "CredentialsValid", "False", reason="LangfuseUnreachable"
    )
    assert harness.condition(namespace, NAME, "Reconciling")["status"] == "True"  # type: ignore[index]


def test_pipelines_down_then_up(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    pipelines.stop(keep_files=True)
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    cond = harness.wait_condition(
        namespace, NAME, "FilterInstalled", "False", reason="PipelinesUnreachable"
    )
    assert pipelines.api_key not in cond["message"]
    pipelines.start()
    harness.wait_condition(namespace, NAME, "Ready", "True", timeout=20)
    assert pipeline_ids(pipelines) == [pid_of(namespace)]


def test_filter_that_fails_to_load_is_retried_with_backoff_not_in_a_hot_loop(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    operator: OperatorProcess,
) -> None:
    apply_with_config_map_filter(harness, namespace, pipelines, langfuse, BROKEN_FILTER)
    cond = harness.wait_condition(
        namespace, NAME, "FilterInstalled", "False", reason="FilterLoadFailed"
    )
    assert "did not load" in cond["message"]
    assert harness.condition(namespace, NAME, "Stalled")["status"] == "True"  # type: ignore[index]
    time.sleep(3)  # observation window: a retry loop would upload again within it
    assert operator.log_text().count("uploaded filter") == 1
    # ... and yet tried again by itself (the cause may be transient): 10 s after the failure.
    wait_for(lambda: operator.log_text().count("uploaded filter") >= 2, 20, "the first load retry")

    harness.put_config_map(namespace, "filter", {"filter.py": pipelines_sample_filter()})
    harness.wait_condition(namespace, NAME, "FilterInstalled", "True", timeout=10)


def apply_with_config_map_filter(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    text: str,
) -> None:
    """A resource whose filter file comes from the ConfigMap ``filter`` (key filter.py)."""
    harness.put_config_map(namespace, "filter", {"filter.py": text})
    harness.apply(
        namespace,
        NAME,
        spec(
            pipelines,
            langfuse,
            filter={"source": "configMap", "configMap": {"name": "filter", "key": "filter.py"}},
        ),
    )


def pipelines_sample_filter() -> str:
    from tests.world.sample_pipelines import RECORDING_FILTER

    return RECORDING_FILTER


def test_valves_edited_by_hand_are_repaired_at_resync(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    pid = pid_of(namespace)
    edited = {**valves(pipelines, pid), "secret_key": "typed-by-hand", "pipelines": []}
    httpx.post(f"{pipelines.url}/{pid}/valves/update", json=edited, timeout=10).raise_for_status()
    assert valves(pipelines, pid)["secret_key"] == "typed-by-hand"
    # resyncInterval is 10s in these resources.
    wait_for(
        lambda: valves(pipelines, pid)["secret_key"] == langfuse.secret_key,
        15,
        "valves repaired by the resync",
    )
    assert valves(pipelines, pid)["pipelines"] == ["*"]


def test_pipelines_restarted_empty_is_repaired_at_once_not_at_resync(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    # An hour between resyncs: only the operator's probe of Pipelines can bring it back soon
    # (bench/restart_repair.py measures how soon).
    harness.apply(namespace, NAME, spec(pipelines, langfuse, resyncInterval="1h"))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    pipelines.restart(wipe=True)
    pid = pid_of(namespace)
    wait_for(lambda: pipeline_ids(pipelines) == [pid], 20, "filter re-installed after the probe")
    wait_for(
        lambda: valves(pipelines, pid)["secret_key"] == langfuse.secret_key,
        5,
        "valves pushed again",
    )


def test_operator_killed_mid_reconcile_converges(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    operator: OperatorProcess,
) -> None:
    # A slow Langfuse holds the pass open; the kill lands inside it.
    langfuse.slow_seconds = 1.5
    langfuse.set_failure("slow")
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    wait_for(lambda: pipeline_ids(pipelines), 15, "the pass to upload the filter")
    operator.kill()
    langfuse.set_failure(None)
    operator.start()
    harness.wait_condition(namespace, NAME, "Ready", "True", timeout=20)
    pid = pid_of(namespace)
    assert pipeline_ids(pipelines) == [pid]  # nothing duplicated
    assert valves(pipelines, pid)["secret_key"] == langfuse.secret_key
    obj = harness.get(namespace, NAME)
    assert obj is not None
    assert obj["metadata"]["finalizers"].count("openwebui-langfuse.io/cleanup") == 1
    types = [c["type"] for c in obj["status"]["conditions"]]
    assert len(types) == len(set(types))


@pytest.mark.parametrize(("policy", "kept"), [("Delete", False), ("Retain", True)])
def test_deletion_policy(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    policy: str,
    kept: bool,
) -> None:
    harness.apply(namespace, NAME, spec(pipelines, langfuse, deletionPolicy=policy))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    harness.delete(namespace, NAME)
    wait_for(lambda: harness.get(namespace, NAME) is None, 15, "the resource to be gone")
    assert pipeline_ids(pipelines) == ([pid_of(namespace)] if kept else [])


def test_delete_while_pipelines_is_down_releases_after_the_bound(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    pipelines.stop(keep_files=True)
    started = time.monotonic()
    harness.delete(namespace, NAME)
    wait_for(lambda: harness.get(namespace, NAME) is None, 20, "the finalizer to be released")
    # The bound is 4 s; deletionTimestamp has whole seconds, so up to 1 s of it may be gone.
    assert 2.9 <= time.monotonic() - started < 15
    warning = wait_for(
        lambda: [e for e in harness.events(namespace) if e["reason"] == "CleanupAbandoned"],
        10,
        "a Warning Event",
    )
    assert warning[0]["type"] == "Warning"
    pipelines.start()


def test_suspend_leaves_upstream_alone(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    harness.patch_spec(namespace, NAME, {"suspend": True, "filter": {"models": ["m1"]}})
    harness.wait_condition(namespace, NAME, "Reconciling", "False", reason="Suspended")
    pid = pid_of(namespace)
    assert valves(pipelines, pid)["pipelines"] == ["*"]
    harness.patch_spec(namespace, NAME, {"suspend": False})
    wait_for(lambda: valves(pipelines, pid)["pipelines"] == ["m1"], 10, "resumed reconcile")


def test_restarted_operator_does_not_upload_again(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    operator: OperatorProcess,
) -> None:
    from openwebui_langfuse.filters import bundled_filter_text

    # The bundled filter's content, frozen in a ConfigMap: a checkout being edited meanwhile
    # would otherwise (rightly) cause a second upload.
    apply_with_config_map_filter(harness, namespace, pipelines, langfuse, bundled_filter_text())
    harness.wait_condition(namespace, NAME, "Ready", "True")
    obj = harness.get(namespace, NAME) or {}
    record = obj["metadata"]["annotations"]["openwebui-langfuse.io/installed-filter"]
    assert langfuse.secret_key not in record
    operator.stop()
    pid = pid_of(namespace)
    edited = {**valves(pipelines, pid), "priority": 42}
    httpx.post(f"{pipelines.url}/{pid}/valves/update", json=edited, timeout=10).raise_for_status()
    operator.start()
    # The resumed pass repairs the valves (proof that it ran) without a new upload.
    wait_for(lambda: valves(pipelines, pid)["priority"] == 0, 15, "valves repaired on resume")
    assert operator.log_text().count("uploaded filter") == 1


def test_wrong_pipelines_key_is_stalled_until_fixed(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.put_secret(namespace, "pipelines", {"api-key": "owl-not-the-pipelines-key"})
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    harness.wait_condition(
        namespace, NAME, "FilterInstalled", "False", reason="PipelinesUnauthorized"
    )
    assert harness.condition(namespace, NAME, "Stalled")["status"] == "True"  # type: ignore[index]
    harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})
    harness.wait_condition(namespace, NAME, "Ready", "True", timeout=5)


@pytest.fixture
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server for filter files (what a pinned GitHub raw URL is in real life)."""
    import http.server
    import threading

    root = tmp_path_factory.mktemp("files")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_url_sources_plain_and_pinned(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    file_server: tuple[str, Path],
) -> None:
    import hashlib

    from openwebui_langfuse.filters import bundled_filter_text

    base, root = file_server
    source = bundled_filter_text()
    (root / "shared_filter.py").write_text(source)
    harness.apply(
        namespace,
        "by-url",
        spec(pipelines, langfuse, filter={"source": "url", "url": f"{base}/shared_filter.py"}),
    )
    harness.wait_condition(namespace, "by-url", "Ready", "True")
    assert "shared_filter" in pipeline_ids(pipelines)

    digest = hashlib.sha256(source.encode()).hexdigest()
    harness.apply(
        namespace,
        "pinned",
        spec(
            pipelines,
            langfuse,
            filter={
                "source": "url",
                "url": f"{base}/shared_filter.py",
                "sha256": digest,
                "pipelineId": "pinned_filter",
            },
        ),
    )
    harness.wait_condition(namespace, "pinned", "Ready", "True")
    assert "pinned_filter" in pipeline_ids(pipelines)

    harness.apply(
        namespace,
        "tampered",
        spec(
            pipelines,
            langfuse,
            filter={
                "source": "url",
                "url": f"{base}/shared_filter.py",
                "sha256": "0" * 64,
                "pipelineId": "tampered_filter",
            },
        ),
    )
    cond = harness.wait_condition(
        namespace, "tampered", "FilterInstalled", "False", reason="DigestMismatch"
    )
    assert digest in cond["message"]
    assert "tampered_filter" not in pipeline_ids(pipelines)
