"""Drive the real `langfuse` SDK (v5, project venv) against a Langfuse server, in a
process of its own.

The v3+ SDK keeps process-global state (one client per public key, a global OTel TracerProvider,
atexit hooks; docs/upstream/langfuse.md, "SDK client lifecycle"), so conformance runs it in a
subprocess: nothing leaks into the test process or between tests. The secret key comes from the
environment (`PROBE_SECRET_KEY`), never from argv; the result is one JSON line on stdout.

    python -m tests.peers.langfuse_standin.sdk_probe auth-check --host URL --public-key PK
    python -m tests.peers.langfuse_standin.sdk_probe trace --host URL --public-key PK
    python -m tests.peers.langfuse_standin.sdk_probe scores --host URL --public-key PK
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

SECRET_ENV = "PROBE_SECRET_KEY"


def _client(args: argparse.Namespace) -> Any:
    from langfuse import Langfuse

    return Langfuse(
        public_key=args.public_key,
        secret_key=os.environ[SECRET_ENV],
        base_url=args.host,
        timeout=args.timeout,
    )


def _describe_error(error: BaseException) -> dict[str, Any]:
    kind = type(error)
    return {
        "error": f"{kind.__module__}.{kind.__qualname__}",
        "status_code": getattr(error, "status_code", None),
        "body": getattr(error, "body", None)
        if isinstance(getattr(error, "body", None), dict | str)
        else None,
    }


def auth_check(args: argparse.Namespace) -> dict[str, Any]:
    client = _client(args)
    try:
        return {"result": client.auth_check()}
    except Exception as error:  # the probe reports what the SDK raised, by class
        return _describe_error(error)
    finally:
        client.shutdown()


def trace(args: argparse.Namespace) -> dict[str, Any]:
    """One trace: a root span and a child generation with model, usage and cost, with
    user/session/tags/name propagated, a score; flushed, then read back through v2."""
    from langfuse import propagate_attributes

    client = _client(args)
    try:
        with (
            client.start_as_current_observation(
                name="conformance-root", input={"question": "2+2?"}
            ) as root,
            propagate_attributes(
                user_id="alice@example.com",
                session_id="chat-123",
                tags=["open-webui", "conformance"],
                trace_name="chat:chat-123",
                metadata={"interface": "open-webui"},
            ),
        ):
            with client.start_as_current_observation(
                name="llm_response",
                as_type="generation",
                model="gpt-4o",
                input=[{"role": "user", "content": "2+2?"}],
                metadata={"chat_id": "chat-123"},
                model_parameters={"temperature": 0.2},
            ) as generation:
                generation.update(
                    output="4",
                    usage_details={"input": 10, "output": 5},
                    cost_details={"input": 0.001, "output": 0.002},
                )
            root.update(output={"answer": "4"})
            trace_id, root_id, generation_id = root.trace_id, root.id, generation.id
        client.create_score(name="helpfulness", value=0.9, trace_id=trace_id)
        client.flush()
        page = client.api.observations.get_many(
            trace_id=trace_id, fields="core,basic,io,usage,model,metadata,trace_context"
        )
        return {
            "trace_id": trace_id,
            "root_id": root_id,
            "generation_id": generation_id,
            "observations": [item.dict(by_alias=True) for item in page.data],
        }
    finally:
        client.shutdown()


def _read_scores(client: Any, **filters: Any) -> list[dict[str, Any]]:
    page = client.api.scores.get_many(fields="details,subject", **filters)
    return [item.dict(by_alias=True) for item in page.data]


def scores(args: argparse.Namespace) -> dict[str, Any]:
    """A score written twice with one id (the second time without a comment), read back
    through v3 after each flush, then deleted through the API and read once more."""
    client = _client(args)
    trace_id = client.create_trace_id()
    score_id = "probe-score-1"
    try:
        client.create_score(
            name="helpfulness", value=0.5, trace_id=trace_id, score_id=score_id, comment="first"
        )
        client.create_score(name="rating", value="good", trace_id=trace_id, data_type="CATEGORICAL")
        client.flush()
        first = _read_scores(client, trace_id=trace_id)
        client.create_score(name="helpfulness", value=0.9, trace_id=trace_id, score_id=score_id)
        client.flush()
        replaced = _read_scores(client, id=score_id)
        numeric = _read_scores(client, trace_id=trace_id, data_type="numeric")
        client.api.scores.delete(score_id)
        after_delete = _read_scores(client, trace_id=trace_id)
        return {
            "trace_id": trace_id,
            "score_id": score_id,
            "first": first,
            "replaced": replaced,
            "numeric": numeric,
            "after_delete": after_delete,
        }
    finally:
        client.shutdown()


COMMANDS = {"auth-check": auth_check, "trace": trace, "scores": scores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.langfuse_standin.sdk_probe")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--host", required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--timeout", type=int, default=5)
    args = parser.parse_args(argv)
    result = COMMANDS[args.command](args)
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
