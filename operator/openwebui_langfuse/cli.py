"""Command line: ``openwebui-langfuse run`` (the operator) and what the chart's hooks call.

``run`` flags override ``OPENWEBUI_LANGFUSE_*`` environment variables (``config``).
``pre-delete`` deletes a release's LangfuseTracings and waits until their finalizers are gone,
so the operator cleans up upstream before Helm removes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from openwebui_langfuse.config import ConfigError, Settings, settings_from_env
from openwebui_langfuse.kube import KubeClient, KubeError, resource_path

if TYPE_CHECKING:
    from openwebui_langfuse.leader import LeaseLock

_QUIET_LOGGERS = ("kopf", "httpx", "httpcore", "aiohttp")


def _configure_logging(settings: Settings) -> None:
    import kopf

    debug = settings.log_level == "DEBUG"
    kopf.configure(
        debug=debug,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(settings.log_level)
    # One line per transition is the operator's own job; kopf's per-cycle INFO lines and the
    # HTTP libraries' per-request lines would bury them.
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_env()
        overrides: dict[str, object] = {}
        if args.namespace:
            overrides["namespaces"] = tuple(args.namespace)
            overrides["all_namespaces"] = False
        if args.all_namespaces:
            overrides["all_namespaces"] = True
            overrides["namespaces"] = ()
        if args.liveness:
            overrides["liveness"] = args.liveness
        if args.readiness:
            overrides["readiness"] = args.readiness
        if args.log_format:
            overrides["log_format"] = args.log_format
        if args.log_level:
            overrides["log_level"] = args.log_level.upper()
        settings = dataclasses.replace(settings, **overrides).validate()  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"openwebui-langfuse: {exc}", file=sys.stderr)
        return 2

    import kopf

    _configure_logging(settings)
    # Named explicitly, so only this module's handlers are registered (never a test's).
    import openwebui_langfuse.handlers  # noqa: F401

    logging.getLogger("openwebui_langfuse").info(
        "starting: watching %s",
        "all namespaces" if settings.all_namespaces else ", ".join(settings.namespaces),
    )
    lease = _lead(settings)
    try:
        kopf.run(
            standalone=True,
            clusterwide=settings.all_namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=settings.liveness,
            memo=kopf.Memo(settings=settings),
        )
    finally:
        if lease is not None:
            lease.release()  # a standby takes over at once
    return 0


def _lead(settings: Settings) -> LeaseLock | None:
    """With a leader Lease: wait as a standby until this replica holds it, then keep it (the
    process ends at once if it is lost: leader.py says why)."""
    if settings.leader_lease is None:
        return None
    from openwebui_langfuse.kube import login
    from openwebui_langfuse.leader import LeaseLock, standby_probes

    namespace, _, name = settings.leader_lease.partition("/")
    lease = LeaseLock(login(), namespace, name)
    with standby_probes(settings.liveness, settings.readiness):
        lease.acquire()

    def lost() -> None:
        logging.getLogger("openwebui_langfuse").critical(
            "lost the leader lease %s: stopping at once so that only one replica reconciles",
            settings.leader_lease,
        )
        logging.shutdown()
        os._exit(3)

    lease.keep(on_lost=lost)
    return lease


def _names(kube: KubeClient, args: argparse.Namespace) -> list[str]:
    params = {"labelSelector": args.selector} if args.selector else None
    listing = kube.get(resource_path(args.namespace), params)
    return [o["metadata"]["name"] for o in listing.get("items", [])]


def _pre_delete(args: argparse.Namespace) -> int:
    try:
        kube = KubeClient()
        deadline = time.monotonic() + args.timeout
        names = _names(kube, args)
        for name in names:
            if kube.delete(resource_path(args.namespace, name)):
                print(f"deleting langfusetracing {args.namespace}/{name}")
        remaining = list(names)
        while remaining:
            left = set(_names(kube, args))
            remaining = [name for name in names if name in left]
            if not remaining:
                break
            if time.monotonic() > deadline:
                print(
                    f"timed out after {args.timeout}s waiting for: {', '.join(remaining)}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
    except KubeError as exc:
        print(f"pre-delete: {exc}", file=sys.stderr)
        return 1
    print(f"{len(names)} langfusetracing(s) deleted and cleaned up")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openwebui-langfuse",
        description="Declarative Langfuse tracing for Open WebUI: the operator and its helpers.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="namespace to watch (repeatable; env OPENWEBUI_LANGFUSE_NAMESPACES)",
    )
    run.add_argument(
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (env OPENWEBUI_LANGFUSE_ALL_NAMESPACES)",
    )
    run.add_argument(
        "--liveness",
        metavar="URL",
        help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz "
        "(env OPENWEBUI_LANGFUSE_LIVENESS)",
    )
    run.add_argument(
        "--readiness",
        metavar="URL",
        help="readiness endpoint, ready once the watches run, e.g. http://0.0.0.0:8081/readyz "
        "(env OPENWEBUI_LANGFUSE_READINESS)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log format (env OPENWEBUI_LANGFUSE_LOG_FORMAT, default text)",
    )
    run.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR (env OPENWEBUI_LANGFUSE_LOG_LEVEL)",
    )
    run.set_defaults(func=_run)

    pre = sub.add_parser(
        "pre-delete", help="delete a release's LangfuseTracings and wait for their cleanup"
    )
    pre.add_argument("--namespace", required=True, metavar="NS")
    pre.add_argument(
        "--selector", default="", metavar="LABELS", help="label selector of the release's resources"
    )
    pre.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    pre.set_defaults(func=_pre_delete)

    # smoke-test (issue 7, the chart's `helm test` hook): flags and logic live in smoke.py.
    from openwebui_langfuse import smoke

    smoke_test = sub.add_parser(
        "smoke-test", help="send a marked chat through Open WebUI, confirm its trace in Langfuse"
    )
    smoke.add_arguments(smoke_test)
    smoke_test.set_defaults(func=smoke.run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
