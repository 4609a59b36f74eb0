"""docs/install.md's install path, run as written, ends with a chat traced in Langfuse.

A user's first hour on a cluster of their own: the official open-webui chart from its Helm
repository (API keys on, its pipelines subchart off), an admin key, the Secrets, this chart from
its OCI registry, the ``LangfuseTracing``, ``kubectl wait`` and ``get``, then
``openwebui-langfuse smoke-test``, which chats through Open WebUI and finds the trace in Langfuse.
Each command is the guide's own fenced block, run by bash; the test changes only what cannot be
the same here:

- hosts and ports: helm.openwebui.com is a Helm repository on loopback (the peer chart, packaged
  as it is), ghcr.io a registry on loopback (this chart, packaged from the tree), and the three
  URLs of the resource lead to the local processes (pod addresses lead nowhere on kwok);
  ``--plain-http`` goes with the registry's host, since the loopback registry has no TLS;
- placeholders (``pk-lf-...``, ``sk-...``, the admin's address and password, the chat model) are
  the world's values.

The cluster is a fresh one (no CRD, no namespace yet), as a user's is; kwok runs no pods, so the
operator runs as a process with the token of the ServiceAccount the chart created, and Pipelines
as the real server with the key the operator made (tests/e2e/stack.py).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.stack import ECHO_MODEL, Stack
from tests.install_guide import GUIDE_NAMESPACE, blocks, section
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.open_webui import OpenWebUI
from tests.world.operator import CHART
from tests.world.proc import LOOPBACK
from tests.world.registry import Registry

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO.parent / "shared" / "peers" / "open-webui-chart" / "open-webui"
RELEASE = "openwebui-langfuse"  # the guide's release name
SECRETS = "## 1. Create the Secrets"
INSTALL = "## 2. Install the chart"
APPLY = "## 3. Apply a LangfuseTracing"
CHECK = "## 4. Check it"


@pytest.fixture(scope="module")
def fresh_cluster(world: World) -> Iterator[Cluster]:
    with Cluster(world) as c:
        yield c


@pytest.fixture
def helm_repository(tmp_path: Path, world: World) -> Iterator[str]:
    """The official chart as a Helm repository on loopback: ``helm package`` of the peer chart
    (its subcharts placed as ``helm dependency build`` would), an index, a static HTTP server."""
    served = tmp_path / "helm-repository"
    served.mkdir()
    helm = str(world.binary("helm"))
    subprocess.run(
        [helm, "package", str(OFFICIAL), "-d", str(served)], check=True, capture_output=True
    )
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    url = f"http://{LOOPBACK}:{server.server_address[1]}/"
    subprocess.run(
        [helm, "repo", "index", str(served), "--url", url], check=True, capture_output=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def chart_registry(world: World, tmp_path: Path) -> Iterator[Registry]:
    """A loopback registry holding this chart as ``<host>/openwebui-langfuse/charts``."""
    with Registry(world) as registry:
        helm = str(world.binary("helm"))
        env = _helm_homes(tmp_path / "push")
        packaged = subprocess.run(
            [helm, "package", str(CHART), "-d", str(tmp_path)],
            check=True, capture_output=True, text=True, env=env,
        )  # fmt: skip
        tgz = packaged.stdout.strip().rsplit(" ", 1)[-1]
        subprocess.run(
            [helm, "push", tgz, f"oci://{registry.host}/openwebui-langfuse/charts", "--plain-http"],
            check=True, capture_output=True, env=env, timeout=60,
        )  # fmt: skip
        yield registry


def _helm_homes(base: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HELM_CACHE_HOME": str(base / "helm-cache"),
        "HELM_CONFIG_HOME": str(base / "helm-config"),
        "HELM_DATA_HOME": str(base / "helm-data"),
    }


class Guide:
    """Runs the guide's blocks with bash in one directory, as a user's shell would."""

    def __init__(self, world: World, cluster: Cluster, workdir: Path) -> None:
        self.workdir = workdir
        tools = workdir / "bin"
        tools.mkdir(parents=True)
        for name, path in [
            ("kubectl", world.binary("kubectl")),
            ("helm", world.binary("helm")),
            ("openwebui-langfuse", world.venv("project") / "bin" / "openwebui-langfuse"),
        ]:
            (tools / name).symlink_to(path)
        self.env = {
            **_helm_homes(workdir),
            "PATH": f"{tools}:/usr/bin:/bin",
            "HOME": str(workdir),
            "KUBECONFIG": str(cluster.kubeconfig),
        }
        self.replacements: list[tuple[str, str]] = []
        self.secrets: list[str] = []

    def replace(self, written: str, here: str, *, secret: str | None = None) -> None:
        """``written`` in the guide becomes ``here``; ``secret``, a value it holds, must never
        appear in what the commands print."""
        self.replacements.append((written, here))
        if secret is not None:
            self.secrets.append(secret)

    def localise(self, text: str) -> str:
        for written, here in self.replacements:
            text = text.replace(written, here)
        return text

    def write(self, block: str) -> Path:
        """A yaml block whose first line is ``# <file>``, written to that file."""
        first, _, rest = block.partition("\n")
        name = first.removeprefix("# ").strip()
        assert re.fullmatch(r"[\w.-]+\.yaml", name), f"not a file block: {first!r}"
        path = self.workdir / name
        path.write_text(self.localise(rest))
        return path

    def run(self, block: str, *, timeout: float = 180) -> str:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.localise(block)],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        output = result.stdout + result.stderr
        printed = [value for value in self.secrets if value in output]
        for value in printed:  # the guide puts keys on command lines; never in a report
            output = output.replace(value, "<secret>")
        # pytest.fail, not assert: an assert would show the localised script, which holds the
        # world's secrets. The block as the guide writes it is what a reader needs.
        if result.returncode != 0:
            pytest.fail(f"the guide's block failed:\n{block}\n---\n{output}", pytrace=False)
        if printed:
            pytest.fail(f"a secret appears in the output of the guide's block:\n{block}")
        return output


def _one(candidates: list[str], containing: str) -> str:
    (block,) = [b for b in candidates if containing in b]
    return block


def _prompted(console: str) -> list[tuple[str, list[str]]]:
    """A console block's ``$ command`` lines, each with the output lines the guide shows."""
    runs: list[tuple[str, list[str]]] = []
    for line in console.strip().splitlines():
        if line.startswith("$ "):
            runs.append((line[2:], []))
        elif line.strip():
            runs[-1][1].append(line)
    return runs


def test_the_install_guide_as_written_ends_with_a_traced_chat(
    world: World,
    fresh_cluster: Cluster,
    open_webui: OpenWebUI,
    langfuse: LangfuseStandIn,
    helm_repository: str,
    chart_registry: Registry,
    tmp_path: Path,
) -> None:
    guide = Guide(world, fresh_cluster, tmp_path / "shell")
    project = langfuse.default_project
    guide.replace("https://helm.openwebui.com/", helm_repository)
    guide.replace("oci://ghcr.io/", f"--plain-http oci://{chart_registry.host}/")
    guide.replace("https://cloud.langfuse.com", langfuse.url)
    guide.replace("http://open-webui.open-webui.svc:80", open_webui.url)
    guide.replace("https://chat.example.com", open_webui.url)
    guide.replace("gpt-4o-mini", ECHO_MODEL)
    guide.replace("pk-lf-...", project.public_key)
    guide.replace("sk-lf-...", project.secret_key, secret=project.secret_key)
    guide.replace("admin@example.com", open_webui.admin_email)
    guide.replace(
        "password=...",
        f"password={open_webui.admin_password}",
        secret=open_webui.admin_password,
    )

    # Open WebUI from the official chart, as the API-key steps install it.
    values_block = _one(blocks(SECRETS, "yaml"), "# open-webui-values.yaml")
    values = guide.write(values_block)
    assert yaml.safe_load(values.read_text())["pipelines"] == {"enabled": False}
    guide.run(_one(blocks(SECRETS, "bash"), "helm upgrade --install open-webui"))
    workload = json.loads(
        guide.run(f"kubectl -n {GUIDE_NAMESPACE} get statefulset open-webui -o json")
    )
    (container, *_) = workload["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ENABLE_API_KEYS"] == "true"  # what the local Open WebUI runs with, too
    # Step 3 of the API-key steps, "create the key": what the account page does.
    api_key = open_webui.mint_api_key()
    guide.replace("api-key=sk-...", f"api-key={api_key}", secret=api_key)

    stack = Stack(world, fresh_cluster, open_webui, langfuse, GUIDE_NAMESPACE, release=RELEASE)
    with stack:
        guide.run(_one(blocks(SECRETS, "bash"), "create secret generic langfuse-keys"))
        install = _one(blocks(INSTALL, "bash"), f"helm install {RELEASE}")
        version = re.search(r"--version (\S+)", install)
        chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        assert version and version.group(1) == chart_version, "the guide installs another version"
        guide.run(install)
        stack.installed = True
        # What the pods would do on a cluster: the operator starts and makes the Pipelines key,
        # then Pipelines starts with it (plus the chat model, a Pipelines pipe here).
        stack.start_operator()
        pipelines = stack.start_pipelines()
        guide.secrets.append(stack.secret_value(*stack.pipelines_key_ref()))
        guide.replace("http://openwebui-langfuse-pipelines.open-webui.svc:9099", pipelines.url)

        (tracing,) = [b for b in blocks(APPLY, "yaml") if "kind: LangfuseTracing" in b]
        (tmp_path / "shell" / "tracing.yaml").write_text(guide.localise(tracing))
        guide.run(_one(blocks(APPLY, "bash"), "kubectl apply -f tracing.yaml"))

        # Section 4's console, command by command, against what the guide shows.
        (console, *_) = blocks(CHECK, "console")
        for command, shown in _prompted(console):
            out = guide.run(command).splitlines()
            if "wait" in command:
                assert out == shown
            else:  # get lft: the columns, and the row but for AGE
                assert out[0].split() == shown[0].split()
                assert out[1].split()[:-1] == guide.localise(shown[1]).split()[:-1]

        # The chat: the guide's smoke-test command, its key files where it reads them.
        (guide.workdir / "owui-key").write_text(api_key + "\n")
        (guide.workdir / "langfuse-secret").write_text(project.secret_key + "\n")
        smoke = _one(blocks(CHECK, "bash"), "openwebui-langfuse smoke-test")
        verdict = guide.run(smoke, timeout=120).strip().splitlines()[-1]
        assert verdict.startswith(f"PASS: a chat with '{ECHO_MODEL}' through Open WebUI")
        trace_id = verdict.split(" as trace ")[1].split()[0]
        (trace,) = [t for t in langfuse.traces(project.project_id) if t["id"] == trace_id]
        assert trace["name"] and trace["userId"]


def test_the_guide_names_only_what_its_own_commands_create() -> None:
    """Every Secret the install path's resource names is made by a command of the guide, or by
    the operator (the Pipelines key, named in section 1)."""
    created = set(re.findall(r"create secret generic ([\w-]+)", section(SECRETS)))
    (tracing,) = [b for b in blocks(APPLY, "yaml") if "kind: LangfuseTracing" in b]
    named = set(re.findall(r"name: ([\w-]+)\b", tracing)) - {"tracing"}
    operator_made = {"openwebui-langfuse-pipelines-api-key"}
    assert operator_made <= set(re.findall(r"`([\w-]+-api-key)`", section(SECRETS)))
    assert named <= created | operator_made, sorted(named - created - operator_made)


@pytest.fixture(autouse=True)
def _official_chart_present() -> None:
    assert (OFFICIAL / "Chart.yaml").is_file(), f"missing peer chart {OFFICIAL}"
