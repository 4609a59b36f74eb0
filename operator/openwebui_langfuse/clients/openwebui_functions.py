"""Async client for Open WebUI 0.12.x Functions (``/api/v1/functions``) and model ``filterIds``.

The second install target: the filter as an Open WebUI Filter Function, no Pipelines server.
:class:`FunctionsApi` wraps an :class:`~openwebui_langfuse.clients.openwebui.OpenWebUIClient`,
which owns the URL, the admin authentication (API key, or sign-in with a token cache) and the
transport errors; this module owns the paths and what Open WebUI's answers mean
(docs/upstream/open-webui-functions.md). Quirks it absorbs so callers need not:

* An unknown function id answers **401** "We could not find what you're looking for :/" on
  get, toggle and valves: that is :class:`FunctionNotFound` (``get_function`` returns None),
  never an auth failure, and it does not make a password client sign in again. A non-admin
  identity also answers 401 ("You do not have permission…"): :class:`NotAdmin`.
* Ids are lower-cased by Open WebUI and must be identifiers: :func:`normalize_function_id`
  checks and lower-cases them before any call (:class:`InvalidFunctionId`).
* ``toggle`` and ``toggle/global`` flip: :meth:`FunctionsApi.set_active` and
  :meth:`FunctionsApi.set_global` read first and toggle only when the state differs.
* A module that fails to import: create answers a generic 400, update the real message (and
  keeps the old version): :class:`FunctionRejected`, with Open WebUI's text.
* ``valves/update`` replaces the whole stored object; valves hold the Langfuse secret key, so
  no valve value ever reaches an exception message, a repr or a log line.
* ``filterIds`` live in a model record's ``meta``: attach and detach read the record, change
  that one id and write the record back only when it changed. A base (connection or pipe)
  model without a record gets a "base-model override" record (``base_model_id`` null).
  Model changes take effect in chats only after ``OpenWebUIClient.refresh_models()``.

Errors copy the shape of ``clients.pipelines.PipelinesError``: ``reason`` (a condition reason),
``message`` and ``temporary`` (worth retrying).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from openwebui_langfuse.clients.openwebui import (
    MODEL_LIST_SLACK,
    NOT_ADMIN_MESSAGE,
    OpenWebUIClient,
    OpenWebUIError,
    OpenWebUIServerError,
    OpenWebUIUnauthorized,
    OpenWebUIUnreachable,
)

__all__ = [
    "FunctionExists",
    "FunctionInfo",
    "FunctionNotFound",
    "FunctionRejected",
    "FunctionsApi",
    "FunctionsError",
    "FunctionsServerError",
    "FunctionsUnauthorized",
    "FunctionsUnexpectedResponse",
    "FunctionsUnreachable",
    "InvalidFunctionId",
    "ModelNotFound",
    "NotAdmin",
    "ValvesRejected",
    "normalize_function_id",
]

FUNCTIONS_PATH = "/api/v1/functions"
MODEL_PATH = "/api/v1/models/model"
MODEL_CREATE_PATH = "/api/v1/models/create"
MODEL_UPDATE_PATH = "/api/v1/models/model/update"
BASE_MODELS_PATH = "/api/models/base"

# Open WebUI's own texts (0.12.4) for the 401s that are no auth failure.
NOT_FOUND_DETAIL = "We could not find what you're looking for :/"
NO_PERMISSION_PREFIX = "You do not have permission"
TAKEN_PREFIX = "Uh-oh!"  # "... This model id is already registered ..." answers 401 too

# Create, update and valves answers of Open WebUI's own making (no module text, no values).
DUPLICATE_ID_PREFIX = "Uh-oh! This id is already registered"
BAD_ID_PREFIX = "Only alphanumeric characters and underscores"
UPDATE_NOT_FOUND_DETAIL = "Function not found"

# Stricter than Open WebUI's str.isidentifier() (ASCII only), lower-cased as it stores them.
_FUNCTION_ID = re.compile(r"[a-z_][a-z0-9_]*")
DETAIL_LIMIT = 300


# -- errors -------------------------------------------------------------------------------------


class FunctionsError(Exception):
    """A Functions call failed; ``reason`` is a condition reason, ``temporary`` says retry.

    The message never holds a valve value, a key, a password or a response body beyond Open
    WebUI's own error text for a module that failed to load.
    """

    reason = "OpenWebUIError"
    temporary = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class FunctionsUnreachable(FunctionsError):
    """Connection refused, DNS failure or timeout."""

    reason = "OpenWebUIUnreachable"


class FunctionsServerError(FunctionsError):
    """5xx, or 429 (sign-ins are rate-limited): retry later."""

    reason = "OpenWebUIError"


class FunctionsUnauthorized(FunctionsError):
    """Credentials refused: wrong key or password, API keys disabled, or two-factor sign-in."""

    reason = "OpenWebUIUnauthorized"
    temporary = False


class NotAdmin(FunctionsUnauthorized):
    """The credentials are valid but belong to a user who is not an admin."""

    reason = "NotAdmin"


class FunctionsUnexpectedResponse(FunctionsError):
    """An answer of a status or shape this client does not expect (a wrong URL, a new
    version): retrying the same call will not help."""

    reason = "OpenWebUIError"
    temporary = False


class InvalidFunctionId(FunctionsError):
    """The id is no identifier (Open WebUI allows letters, digits and ``_`` only)."""

    reason = "InvalidFunctionId"
    temporary = False


class FunctionNotFound(FunctionsError):
    """No function of that id (deleted meanwhile, or never created): the retry re-creates."""

    reason = "FunctionNotFound"


class FunctionExists(FunctionsError):
    """Create of an id that is already registered (created meanwhile): the retry updates."""

    reason = "FunctionExists"


class FunctionRejected(FunctionsError):
    """Open WebUI refused the module: it does not import (syntax error, missing package) or
    has no ``Filter``/``Pipe``/``Action``/``Event`` class. ``detail`` is Open WebUI's text
    (generic on create; the real cause is then only in Open WebUI's log)."""

    reason = "FunctionRejected"
    temporary = False

    def __init__(self, message: str, *, detail: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.detail = detail


class ValvesRejected(FunctionsError):
    """Open WebUI refused a valves update (a value of the wrong type). Names no value."""

    reason = "ValvesRejected"
    temporary = False


class ModelNotFound(FunctionsError):
    """No model of that id: no record and no base model (its connection may be down)."""

    reason = "ModelNotFound"


# -- wire types ---------------------------------------------------------------------------------


def normalize_function_id(function_id: str) -> str:
    """The id as Open WebUI stores it (lower case); :class:`InvalidFunctionId` unless it is
    an ASCII identifier (Open WebUI rejects ``-``, spaces and dots with a 400)."""
    normalized = function_id.lower()
    if not _FUNCTION_ID.fullmatch(normalized):
        raise InvalidFunctionId(
            f"invalid Open WebUI function id {function_id!r}: use letters, digits and "
            "underscores only, not starting with a digit"
        )
    return normalized


@dataclass(frozen=True)
class FunctionInfo:
    """A stored function. ``content`` (the module source, no secret) is None when the answer
    carried none (create's)."""

    id: str
    name: str
    type: str
    is_active: bool
    is_global: bool
    description: str | None
    updated_at: int | None
    content: str | None = field(default=None, repr=False)

    @property
    def content_sha256(self) -> str | None:
        if self.content is None:
            return None
        return hashlib.sha256(self.content.encode()).hexdigest()

    @classmethod
    def from_wire(cls, body: object, what: str) -> FunctionInfo:
        if not isinstance(body, dict):
            raise FunctionsUnexpectedResponse(f"{what}: answer is not a JSON object")
        fid, name, ftype = body.get("id"), body.get("name"), body.get("type")
        active, global_ = body.get("is_active"), body.get("is_global")
        if not (isinstance(fid, str) and isinstance(name, str) and isinstance(ftype, str)):
            raise FunctionsUnexpectedResponse(f"{what}: answer has no id, name or type")
        if not (isinstance(active, bool) and isinstance(global_, bool)):
            raise FunctionsUnexpectedResponse(f"{what}: answer has no is_active or is_global")
        meta = body.get("meta")
        description = meta.get("description") if isinstance(meta, dict) else None
        updated = body.get("updated_at")
        content = body.get("content")
        return cls(
            id=fid,
            name=name,
            type=ftype,
            is_active=active,
            is_global=global_,
            description=description if isinstance(description, str) else None,
            updated_at=updated if isinstance(updated, int) else None,
            content=content if isinstance(content, str) else None,
        )


# -- answers ------------------------------------------------------------------------------------


def _detail(response: httpx.Response) -> str | None:
    """Open WebUI's ``{"detail": "..."}`` text, if the answer is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else None


def _is_not_found(response: httpx.Response) -> bool:
    return response.status_code in (401, 404) and _detail(response) == NOT_FOUND_DETAIL


def _not_a_refusal(response: httpx.Response) -> bool:
    """401s that are no auth failure: passed back to us, no fresh sign-in."""
    detail = _detail(response) or ""
    return (
        detail == NOT_FOUND_DETAIL
        or detail.startswith(NO_PERMISSION_PREFIX)
        or detail.startswith(TAKEN_PREFIX)
    )


def _module_detail(response: httpx.Response) -> str:
    """Open WebUI's text for a module that failed to load, cut short. A pydantic validation
    text quotes input values (``input_value=...``), so such a text is dropped."""
    detail = _detail(response) or ""
    if "input_value" in detail or "validation error" in detail:
        return "(details withheld: they may quote values)"
    return detail[:DETAIL_LIMIT]


def _json(response: httpx.Response, what: str) -> object:
    try:
        return response.json()
    except ValueError:
        raise FunctionsUnexpectedResponse(
            f"{what}: answer is not JSON (is this URL an Open WebUI?)",
            status=response.status_code,
        ) from None


def _unexpected(response: httpx.Response, what: str) -> FunctionsUnexpectedResponse:
    return FunctionsUnexpectedResponse(
        f"{what}: Open WebUI answered HTTP {response.status_code}", status=response.status_code
    )


def _raw_filter_ids(record: Mapping[str, Any]) -> list[Any]:
    """``meta.filterIds`` as stored (written back as it was, but for our one id)."""
    meta = record.get("meta")
    ids = meta.get("filterIds") if isinstance(meta, dict) else None
    return list(ids) if isinstance(ids, list) else []


def _filter_ids(record: Mapping[str, Any]) -> list[str]:
    return [i for i in _raw_filter_ids(record) if isinstance(i, str)]


# -- the API ------------------------------------------------------------------------------------


class FunctionsApi:
    """Functions and model ``filterIds`` of the Open WebUI behind ``client`` (an admin).

    Cheap; lives as long as the client, which the caller opens and closes::

        async with OpenWebUIClient(url, auth, token_cache=cache) as client:
            api = FunctionsApi(client)
            info = await api.get_function("langfuse_tracing")
    """

    def __init__(self, client: OpenWebUIClient, *, model_list_timeout: float = 10.0) -> None:
        self._client = client
        # Listing base models makes Open WebUI ask every connection for its models.
        self._model_list_timeout = httpx.Timeout(model_list_timeout + MODEL_LIST_SLACK)

    # -- plumbing -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        what = f"{method} {path}"
        try:
            response = await self._client.admin_request(
                method, path, not_a_refusal=_not_a_refusal, **kwargs
            )
        except OpenWebUIUnauthorized as exc:
            if str(exc) == NOT_ADMIN_MESSAGE:  # a password sign-in of a non-admin account
                raise NotAdmin(
                    f"{what}: the Open WebUI account is not an admin (Functions need one)",
                    status=exc.status,
                ) from exc
            raise FunctionsUnauthorized(str(exc), status=exc.status) from exc
        except OpenWebUIUnreachable as exc:
            raise FunctionsUnreachable(str(exc), status=exc.status) from exc
        except OpenWebUIServerError as exc:
            raise FunctionsServerError(str(exc), status=exc.status) from exc
        except OpenWebUIError as exc:
            raise FunctionsUnexpectedResponse(str(exc), status=exc.status) from exc
        if response.status_code in (401, 403) and (_detail(response) or "").startswith(
            NO_PERMISSION_PREFIX
        ):
            raise NotAdmin(
                f"{what}: the Open WebUI account is not an admin (Functions need one)",
                status=response.status_code,
            )
        return response

    async def _function_call(
        self, method: str, function_id: str, suffix: str = "", **kwargs: Any
    ) -> tuple[httpx.Response, str]:
        """A call on ``/id/{id}{suffix}``; :class:`FunctionNotFound` for an unknown id."""
        fid = normalize_function_id(function_id)
        path = f"{FUNCTIONS_PATH}/id/{fid}{suffix}"
        what = f"{method} {path}"
        response = await self._request(method, path, **kwargs)
        if _is_not_found(response):
            raise FunctionNotFound(f"Open WebUI has no function {fid!r}", status=404)
        return response, what

    # -- functions ----------------------------------------------------------------------------

    async def list_functions(self) -> list[FunctionInfo]:
        """``GET /api/v1/functions/list``: every function, without content."""
        path = f"{FUNCTIONS_PATH}/list"
        what = f"GET {path}"
        response = await self._request("GET", path)
        if response.status_code != 200:
            raise _unexpected(response, what)
        body = _json(response, what)
        if not isinstance(body, list):
            raise FunctionsUnexpectedResponse(f"{what}: answer is not a list")
        return [FunctionInfo.from_wire(row, what) for row in body]

    async def get_function(self, function_id: str) -> FunctionInfo | None:
        """``GET /id/{id}``: the stored function with its content; None when there is none."""
        try:
            response, what = await self._function_call("GET", function_id)
        except FunctionNotFound:
            return None
        if response.status_code != 200:
            raise _unexpected(response, what)
        return FunctionInfo.from_wire(_json(response, what), what)

    async def create_function(
        self, function_id: str, name: str, content: str, description: str = ""
    ) -> FunctionInfo:
        """``POST /create``: a new function, **inactive and not global**. The answer carries
        no content (``FunctionInfo.content`` is None)."""
        fid = normalize_function_id(function_id)
        path = f"{FUNCTIONS_PATH}/create"
        what = f"POST {path}"
        body = {"id": fid, "name": name, "content": content, "meta": {"description": description}}
        response = await self._request("POST", path, json=body)
        if response.status_code == 200:
            return FunctionInfo.from_wire(_json(response, what), what)
        detail = _detail(response) or ""
        if response.status_code == 400 and detail.startswith(DUPLICATE_ID_PREFIX):
            raise FunctionExists(f"Open WebUI already has a function {fid!r}", status=400)
        if response.status_code == 400 and detail.startswith(BAD_ID_PREFIX):
            raise InvalidFunctionId(f"Open WebUI refused the function id {fid!r}", status=400)
        if response.status_code == 400:
            shown = _module_detail(response)
            raise FunctionRejected(
                f"Open WebUI could not load function {fid!r}: {shown} (on create Open WebUI "
                "names no cause; its log has it)",
                detail=shown,
                status=400,
            )
        raise _unexpected(response, what)

    async def update_function(
        self, function_id: str, name: str, content: str, description: str = ""
    ) -> FunctionInfo:
        """``POST /id/{id}/update``: new name, content and description, re-imported at once.

        Open WebUI keeps the old version (and ``is_active``) when the new module fails to load:
        :class:`FunctionRejected` with its message. Every update re-imports, even an unchanged
        one: compare first (``content_sha256``) to spare the filter a restart.
        """
        fid = normalize_function_id(function_id)
        body = {"id": fid, "name": name, "content": content, "meta": {"description": description}}
        response, what = await self._function_call("POST", fid, "/update", json=body)
        if response.status_code == 200:
            return FunctionInfo.from_wire(_json(response, what), what)
        if response.status_code == 400 and _detail(response) == UPDATE_NOT_FOUND_DETAIL:
            raise FunctionNotFound(f"Open WebUI has no function {fid!r}", status=404)
        if response.status_code == 400:
            shown = _module_detail(response)
            raise FunctionRejected(
                f"Open WebUI could not load the new version of function {fid!r} (the old one "
                f"stays): {shown}",
                detail=shown,
                status=400,
            )
        raise _unexpected(response, what)

    async def set_active(self, function_id: str, active: bool) -> bool:
        """Switch the function on or off; True when it changed (``toggle`` flips, so the
        state is read first)."""
        return await self._set_flag(function_id, "is_active", "/toggle", active)

    async def set_global(self, function_id: str, global_: bool) -> bool:
        """Make the filter run for every model (or not); True when it changed."""
        return await self._set_flag(function_id, "is_global", "/toggle/global", global_)

    async def _set_flag(self, function_id: str, flag: str, suffix: str, wanted: bool) -> bool:
        fid = normalize_function_id(function_id)
        info = await self.get_function(fid)
        if info is None:
            raise FunctionNotFound(f"Open WebUI has no function {fid!r}", status=404)
        if getattr(info, flag) is wanted:
            return False
        response, what = await self._function_call("POST", fid, suffix)
        if response.status_code != 200:
            raise _unexpected(response, what)
        after = FunctionInfo.from_wire(_json(response, what), what)
        if getattr(after, flag) is not wanted:
            # Someone else flipped it between our read and our toggle: read again next time.
            raise FunctionsError(f"{what}: {flag} changed meanwhile; it is {not wanted} now")
        return True

    async def get_valves(self, function_id: str) -> dict[str, Any]:
        """``GET /id/{id}/valves``: the stored valves (``{}`` if never set). They hold the
        secret key in clear: never log the result."""
        response, what = await self._function_call("GET", function_id, "/valves")
        if response.status_code != 200:
            raise _unexpected(response, what)
        body = _json(response, what)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise FunctionsUnexpectedResponse(f"{what}: answer is not a JSON object")
        return body

    async def valves_spec(self, function_id: str) -> dict[str, Any]:
        """``GET /id/{id}/valves/spec``: the JSON schema of the ``Valves`` class (no values;
        ``{}`` when the module has none)."""
        response, what = await self._function_call("GET", function_id, "/valves/spec")
        if response.status_code != 200:
            raise _unexpected(response, what)
        body = _json(response, what)
        return body if isinstance(body, dict) else {}

    async def update_valves(self, function_id: str, valves: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /id/{id}/valves/update``: **replaces** the whole stored object (absent and
        null fields fall back to the class defaults, unknown keys are dropped); returns what
        was stored. Send every field."""
        response, what = await self._function_call(
            "POST", function_id, "/valves/update", json=dict(valves)
        )
        if response.status_code == 400:
            keys = ", ".join(sorted(str(k) for k in valves)) or "none"
            raise ValvesRejected(
                f"Open WebUI rejected the valves of function {normalize_function_id(function_id)!r}"
                f" (a value does not fit its field's type; keys sent: {keys})",
                status=400,
            )
        if response.status_code != 200:
            raise _unexpected(response, what)
        body = _json(response, what)
        if not isinstance(body, dict):
            raise FunctionsUnexpectedResponse(f"{what}: answer is not a JSON object")
        return body

    async def delete_function(self, function_id: str) -> None:
        """``DELETE /id/{id}/delete``; fine for an id that is not there (Open WebUI says
        ``true`` either way)."""
        response, what = await self._function_call("DELETE", function_id, "/delete")
        if response.status_code != 200:
            raise _unexpected(response, what)

    # -- models -------------------------------------------------------------------------------

    async def get_model(self, model_id: str) -> dict[str, Any] | None:
        """``GET /api/v1/models/model?id=…``: the stored model record (custom model or
        base-model override), as Open WebUI keeps it; None when there is none."""
        what = f"GET {MODEL_PATH}"
        response = await self._request("GET", MODEL_PATH, params={"id": model_id})
        if _is_not_found(response):
            return None
        if response.status_code != 200:
            raise _unexpected(response, what)
        body = _json(response, what)
        if not isinstance(body, dict) or body.get("id") != model_id:
            raise FunctionsUnexpectedResponse(f"{what}: answer is no model record")
        return body

    async def model_filter_ids(self, model_id: str) -> list[str]:
        """The model record's ``meta.filterIds`` (``[]`` without a record)."""
        record = await self.get_model(model_id)
        return [] if record is None else _filter_ids(record)

    async def attach_filter(self, model_id: str, function_id: str) -> bool:
        """Add the function to the model's ``filterIds``; True when the record was written.

        Every other filter id and field of the record stays. A base model without a record
        gets a base-model override (its current name, nothing else). Takes effect in chats
        after ``OpenWebUIClient.refresh_models()``.
        """
        fid = normalize_function_id(function_id)
        record = await self.get_model(model_id)
        if record is None:
            name = await self._base_model_name(model_id)
            form = {
                "id": model_id,
                "base_model_id": None,
                "name": name,
                "meta": {"filterIds": [fid]},
                "params": {},
            }
            await self._write_model(MODEL_CREATE_PATH, form, model_id)
            return True
        ids = _raw_filter_ids(record)
        if fid in ids:
            return False
        await self._write_model(MODEL_UPDATE_PATH, _model_form(record, [*ids, fid]), model_id)
        return True

    async def detach_filter(self, model_id: str, function_id: str) -> bool:
        """Remove the function from the model's ``filterIds``; True when the record was
        written. The record itself stays (a base-model override may carry a person's
        settings)."""
        fid = normalize_function_id(function_id)
        record = await self.get_model(model_id)
        if record is None:
            return False
        ids = _raw_filter_ids(record)
        if fid not in ids:
            return False
        kept = [i for i in ids if i != fid]
        await self._write_model(MODEL_UPDATE_PATH, _model_form(record, kept), model_id)
        return True

    async def _base_model_name(self, model_id: str) -> str:
        what = f"GET {BASE_MODELS_PATH}"
        response = await self._request("GET", BASE_MODELS_PATH, timeout=self._model_list_timeout)
        if response.status_code != 200:
            raise _unexpected(response, what)
        body = _json(response, what)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise FunctionsUnexpectedResponse(f"{what}: answer has no 'data' list")
        for entry in data:
            if isinstance(entry, dict) and entry.get("id") == model_id:
                name = entry.get("name")
                return name if isinstance(name, str) and name else model_id
        raise ModelNotFound(
            f"Open WebUI has no model {model_id!r} (no model record and no base model of that "
            "id; is its connection up?)",
            status=404,
        )

    async def _write_model(self, path: str, form: dict[str, Any], model_id: str) -> None:
        what = f"POST {path}"
        response = await self._request("POST", path, json=form)
        if response.status_code == 200:
            return
        if _is_not_found(response):
            raise ModelNotFound(f"Open WebUI has no model record {model_id!r}", status=404)
        if (_detail(response) or "").startswith(TAKEN_PREFIX):
            # Someone created the record between our read and our create: read again.
            raise FunctionsError(
                f"{what}: a record for model {model_id!r} appeared meanwhile", status=401
            )
        raise _unexpected(response, what)


def _model_form(record: Mapping[str, Any], filter_ids: list[Any]) -> dict[str, Any]:
    """The update form for ``record`` with other ``filterIds``; everything else as read.

    Update replaces ``meta`` and ``params`` whole and keeps fields it is not sent (the access
    grants), so the form carries every form field of the record.
    """
    meta = record.get("meta")
    new_meta = copy.deepcopy(meta) if isinstance(meta, dict) else {}
    new_meta["filterIds"] = filter_ids
    params = record.get("params")
    form: dict[str, Any] = {
        "id": record["id"],
        "base_model_id": record.get("base_model_id"),
        "name": record.get("name"),
        "meta": new_meta,
        "params": copy.deepcopy(params) if isinstance(params, dict) else {},
    }
    if isinstance(record.get("is_active"), bool):
        form["is_active"] = record["is_active"]
    return form
