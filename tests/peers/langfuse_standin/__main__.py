"""Run a Langfuse stand-in by hand: `python -m tests.peers.langfuse_standin --port 3000
--project pk-lf-demo:sk-lf-demo`. Drive it over HTTP under `/_standin/` (see README.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import LangfuseStandIn
from .state import DEFAULT_VERSION, FAILURE_MODES


def _key_pair(text: str) -> tuple[str, str]:
    public_key, separator, secret_key = text.partition(":")
    if not separator or not public_key or not secret_key:
        raise argparse.ArgumentTypeError("expected PUBLIC_KEY:SECRET_KEY")
    return public_key, secret_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.peers.langfuse_standin",
        description="Serve a Langfuse stand-in on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--project",
        type=_key_pair,
        action="append",
        default=[],
        metavar="PK:SK",
        help="a project's key pair; repeatable (default: one random pair, printed)",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="version /health reports")
    parser.add_argument(
        "--events-only",
        action="store_true",
        help="behave like a Langfuse v4 server in events_only write mode",
    )
    parser.add_argument(
        "--no-otlp",
        action="store_true",
        help="no OTLP endpoint, like a self-hosted Langfuse v2 (also pass --version 2.95.11)",
    )
    parser.add_argument(
        "--failure", choices=sorted(FAILURE_MODES), help="start with this failure switch on"
    )
    parser.add_argument(
        "--slow-seconds", type=float, default=None, help="delay of the 'slow' failure mode"
    )
    args = parser.parse_args(argv)

    standin = LangfuseStandIn(port=args.port, version=args.version)
    standin.events_only = args.events_only
    standin.otlp = not args.no_otlp
    standin.set_failure(args.failure)
    if args.slow_seconds is not None:
        standin.slow_seconds = args.slow_seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Keys go in before the port opens: no client ever sees a keyless server.
    for index, (public_key, secret_key) in enumerate(args.project):
        standin.add_project(public_key, secret_key, name=f"project-{index + 1}")
    generated = None if args.project else standin.add_project()
    try:
        standin.start()
    except OSError as error:
        print(
            f"Langfuse stand-in: cannot listen on 127.0.0.1:{args.port}: {error}", file=sys.stderr
        )
        return 2
    try:
        if generated is None:
            print(
                f"Langfuse stand-in on {standin.url} with {len(args.project)} project(s)",
                flush=True,
            )
        else:
            # Printed because nobody else knows it: this is a hand-run, throwaway key.
            print(
                f"Langfuse stand-in on {standin.url}\n  public key: {generated.public_key}\n"
                f"  secret key: {generated.secret_key}",
                flush=True,
            )
        stop.wait()
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
