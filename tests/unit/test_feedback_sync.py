"""One feedback poll over HTTP (feedback_sync.poll), against in-process fakes of the two routes
of Open WebUI and of Langfuse that it uses; the real servers are in
tests/integration/test_feedback_sync.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from openwebui_langfuse import feedback
from openwebui_langfuse.clients.langfuse_scores import LangfuseScores
from openwebui_langfuse.clients.openwebui import ApiKeyAuth, OpenWebUIClient
from openwebui_langfuse.feedback_sync import (
    FeedbackSyncs,
    FeedbackTarget,
    PollResult,
    SharedLists,
    SyncPointStore,
    feedback_status,
    poll,
)
from openwebui_langfuse.filters.langfuse_tracing_filter import generation_id_for, trace_id_for

SECRET = "sk-lf-never-printed"
ADMIN_KEY = "sk-admin-never-printed"


@dataclass
class World:
    """Open WebUI's feedback table and Langfuse's scores and generations."""

    now: int = 1_800_000_000
    feedbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    generations: set[tuple[str, str]] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    list_answer: tuple[int, str, str] | None = None  # (status, content type, body) override
    refuse_scores: int | None = None

    def rate(self, fid: str, rating: int, *, model: str = "gpt-4o", **data: Any) -> None:
        chat, message = f"chat-{fid}", f"msg-{fid}"
        self.feedbacks[fid] = {
            "id": fid,
            "user_id": "u1",
            "type": "rating",
            "data": {"rating": rating, "model_id": model, **data},
            "meta": {"chat_id": chat, "message_id": message, "model_id": model},
            "created_at": self.feedbacks.get(fid, {}).get("created_at", self.now),
            "updated_at": self.now,
        }

    def trace(self, fid: str) -> None:
        self.generations.add((trace_id_for(f"chat-{fid}"), generation_id_for(f"msg-{fid}")))

    def open_webui(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"owui {request.method} {request.url.path}")
        assert request.headers["authorization"] == f"Bearer {ADMIN_KEY}"
        date = {"date": formatdate(self.now, usegmt=True)}
        if request.url.path == "/api/v1/evaluations/feedbacks/all/ids":
            if self.list_answer is not None:
                status, ctype, body = self.list_answer
                return httpx.Response(status, headers={"content-type": ctype}, text=body)
            rows = [
                {k: f[k] for k in ("id", "user_id", "created_at", "updated_at")}
                for f in sorted(self.feedbacks.values(), key=lambda f: -f["updated_at"])
            ]
            return httpx.Response(200, json=rows, headers=date)
        match = re.fullmatch(r"/api/v1/evaluations/feedback/(.+)", request.url.path)
        if match and match[1] in self.feedbacks:
            return httpx.Response(200, json=self.feedbacks[match[1]], headers=date)
        return httpx.Response(404, json={"detail": "Not found"})

    def langfuse(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"lf {request.method} {request.url.path}")
        path = request.url.path
        if request.method == "POST" and path == "/api/public/scores":
            if self.refuse_scores:
                return httpx.Response(
                    self.refuse_scores, json={"message": "Invalid request data: value"}
                )
            body = json.loads(request.content)
            self.scores[body["id"]] = body
            return httpx.Response(200, json={"id": body["id"]})
        if request.method == "DELETE" and path.startswith("/api/public/scores/"):
            gone = self.scores.pop(path.rsplit("/", 1)[1], None)
            return httpx.Response(204 if gone else 404, json={"message": "Score not found"})
        if path == "/api/public/v2/observations":
            trace = request.url.params["traceId"]
            rows = [{"id": o, "traceId": t} for t, o in self.generations if t == trace]
            return httpx.Response(200, json={"data": rows, "meta": {}})
        return httpx.Response(404, json={"message": "no such route"})


@pytest.fixture
def world() -> World:
    return World()


def target(models: tuple[str, ...] = ("*",)) -> FeedbackTarget:
    return FeedbackTarget(
        uid="uid-1",
        open_webui_url="http://owui",
        auth=ApiKeyAuth(ADMIN_KEY),
        langfuse_host="http://langfuse",
        public_key="pk-lf-1",
        secret_key=SECRET,
        models=models,
        poll_seconds=2.0,
        slow_seconds=300.0,
    )


async def run_poll(
    world: World, point: feedback.SyncPoint, models: tuple[str, ...] = ("*",)
) -> PollResult:
    owui = OpenWebUIClient(
        "http://owui", ApiKeyAuth(ADMIN_KEY), transport=httpx.MockTransport(world.open_webui)
    )
    langfuse_http = httpx.AsyncClient(transport=httpx.MockTransport(world.langfuse))
    scores = LangfuseScores("http://langfuse", "pk-lf-1", SECRET, http=langfuse_http)
    try:
        # A fresh list cache per poll: these tests step the clock between polls themselves.
        return await poll(target(models), point, client=owui, scores=scores, lists=SharedLists())
    finally:
        await owui.aclose()
        await langfuse_http.aclose()


def score_names(world: World) -> set[str]:
    return {s["name"] for s in world.scores.values()}


async def test_a_thumbs_down_becomes_scores_then_an_edit_updates_and_a_delete_removes_them(
    world: World,
) -> None:
    point = feedback.SyncPoint()
    world.rate("f1", -1, reason="Inaccurate information", comment="wrong")
    world.trace("f1")
    result = await run_poll(world, point)
    assert (result.state, result.changed, result.failed) == ("Syncing", True, False)
    assert score_names(world) == {"user_feedback", "user_feedback_reason"}
    rating = world.scores[feedback.score_id("f1", "user_feedback")]
    assert rating["value"] == -1 and rating["comment"] == "wrong"
    assert rating["traceId"] == trace_id_for("chat-f1")
    assert rating["observationId"] == generation_id_for("msg-f1")

    world.now += 10
    world.rate("f1", 1)  # changed to thumbs up, the reason taken back
    result = await run_poll(world, point)
    assert result.changed and score_names(world) == {"user_feedback"}
    assert world.scores[feedback.score_id("f1", "user_feedback")]["value"] == 1

    world.now += 10
    del world.feedbacks["f1"]
    result = await run_poll(world, point)
    assert result.changed and world.scores == {} and point.sent == {}


async def test_a_quiet_poll_reads_only_the_list_and_writes_nothing(world: World) -> None:
    point = feedback.SyncPoint()
    world.rate("f1", 1)
    world.trace("f1")
    world.rate("other", -1, model="llama3")
    await run_poll(world, point, models=("gpt-4o",))
    world.now += 60  # past the recheck margin: this poll reads them once more (unchanged)
    assert not (await run_poll(world, point, models=("gpt-4o",))).changed
    world.requests.clear()
    result = await run_poll(world, point, models=("gpt-4o",))
    assert not result.changed
    assert world.requests == ["owui GET /api/v1/evaluations/feedbacks/all/ids"]


async def test_feedback_on_a_model_this_resource_does_not_trace_is_left_to_the_other(
    world: World,
) -> None:
    world.rate("theirs", -1, model="llama3")
    world.trace("theirs")
    point = feedback.SyncPoint()
    await run_poll(world, point, models=("gpt-4o",))
    assert world.scores == {} and point.sent == {} and point.untraced == {}


async def test_a_rating_of_an_untraced_message_is_counted_and_sent_once_its_trace_arrives(
    world: World,
) -> None:
    point = feedback.SyncPoint()
    world.rate("f1", -1)
    result = await run_poll(world, point)
    assert world.scores == {} and point.untraced == {"f1": world.now}
    assert feedback_status(result, point, None)["untraced"] == 1
    world.now += 30  # Langfuse ingested the span meanwhile
    world.trace("f1")
    await run_poll(world, point)
    assert score_names(world) == {"user_feedback"} and point.untraced == {}


async def test_langfuse_refusing_a_score_is_reported_and_retried_and_nothing_is_dropped(
    world: World,
) -> None:
    point = feedback.SyncPoint()
    world.rate("f1", -1)
    world.trace("f1")
    world.refuse_scores = 400
    result = await run_poll(world, point)
    assert (result.state, result.failed) == ("Failing", True)
    assert "HTTP 400" in (result.message or "") and "Invalid request data" in result.message
    assert SECRET not in result.message and ADMIN_KEY not in result.message
    assert point.watermark == 0 and point.sent == {}

    world.now += 600  # much later: the watermark did not move past it
    world.refuse_scores = None
    result = await run_poll(world, point)
    assert result.state == "Syncing" and score_names(world) == {"user_feedback"}


async def test_an_open_webui_without_the_evaluations_api_is_unavailable_not_failing(
    world: World,
) -> None:
    world.list_answer = (200, "text/html; charset=utf-8", "<!doctype html><html></html>")
    result = await run_poll(world, feedback.SyncPoint())
    assert (result.state, result.failed) == ("Unavailable", False)
    assert "no evaluations API" in (result.message or "")


async def test_after_a_restart_the_sync_point_sends_nothing_twice_and_misses_no_delete(
    world: World,
) -> None:
    store, key = SyncPointStore(None), ("ns", "tracing")
    point = feedback.SyncPoint()
    for fid in ("f1", "f2"):
        world.rate(fid, -1)
        world.trace(fid)
    await run_poll(world, point)
    await store.save(key, "uid-1", point)
    # The operator is down: one feedback is deleted, one added.
    world.now += 120
    del world.feedbacks["f1"]
    world.rate("f3", 1)
    world.trace("f3")
    world.requests.clear()
    restored = await store.load(key, "uid-1")
    await run_poll(world, restored)
    posted = [r for r in world.requests if r == "lf POST /api/public/scores"]
    assert len(posted) == 1  # f3 only; f2 is not sent again
    assert {s["metadata"]["feedback_id"] for s in world.scores.values()} == {"f2", "f3"}


class Published:
    """What the syncs wrote to status.feedback, per resource, in order."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def __call__(self, key: tuple[str, str], status: dict[str, Any]) -> bool:
        self.statuses.append(status)
        self.changed.set()
        return True


def syncs_for(world: World, published: Published, rating_enabled: bool) -> FeedbackSyncs:
    def open_webui(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/config":
            world.requests.append("owui GET /api/config")
            features = {"enable_message_rating": rating_enabled}
            return httpx.Response(200, json={"features": features})
        return world.open_webui(request)

    def client_for(url: str, auth: Any) -> OpenWebUIClient:
        return OpenWebUIClient(url, auth, transport=httpx.MockTransport(open_webui))

    langfuse_http = httpx.AsyncClient(transport=httpx.MockTransport(world.langfuse))
    return FeedbackSyncs(
        client_for=client_for,
        http_for=lambda _url: langfuse_http,
        store=SyncPointStore(None),
        publish=published,
        timeout=5.0,
        max_backoff=60.0,
    )


async def first_status(published: Published) -> dict[str, Any]:
    await asyncio.wait_for(published.changed.wait(), timeout=5)
    return published.statuses[0]


async def test_rating_switched_off_is_reported_and_polled_at_the_slow_pace(world: World) -> None:
    published = Published()
    syncs = syncs_for(world, published, rating_enabled=False)
    fast = dataclasses.replace(target(), poll_seconds=0.05, slow_seconds=300.0)
    syncs.track(("ns", "tracing"), fast)
    try:
        status = await first_status(published)
        await asyncio.sleep(0.3)  # six fast periods: a hot loop would have polled again
    finally:
        await syncs.aclose()
    assert status["state"] == "RatingDisabled" and "ENABLE_MESSAGE_RATING" in status["message"]
    assert world.requests.count("owui GET /api/v1/evaluations/feedbacks/all/ids") == 1


async def test_no_evaluations_api_is_not_retried_hot(world: World) -> None:
    world.list_answer = (200, "text/html", "<!doctype html>")
    published = Published()
    syncs = syncs_for(world, published, rating_enabled=True)
    syncs.track(("ns", "tracing"), dataclasses.replace(target(), poll_seconds=0.05))
    try:
        status = await first_status(published)
        await asyncio.sleep(0.3)
    finally:
        await syncs.aclose()
    assert status["state"] == "Unavailable"
    assert world.requests.count("owui GET /api/v1/evaluations/feedbacks/all/ids") == 1


async def test_a_poll_that_read_feedback_keeps_its_watermark_even_when_nothing_was_sent(
    world: World,
) -> None:
    # Another resource's ratings only: no score, and yet a restart must not read them all again.
    world.rate("theirs", -1, model="llama3")
    published = Published()
    syncs = syncs_for(world, published, rating_enabled=True)
    store = syncs._store  # the in-memory store of this test
    key = ("ns", "tracing")
    syncs.track(key, dataclasses.replace(target(models=("gpt-4o",)), poll_seconds=0.05))
    try:
        await first_status(published)
        saved = await store.load(key, "uid-1")
        deadline = asyncio.get_running_loop().time() + 5
        while saved.watermark == 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
            saved = await store.load(key, "uid-1")
    finally:
        await syncs.aclose()
    assert saved.watermark == world.now - feedback.RECHECK_MARGIN_SECONDS and saved.sent == {}
