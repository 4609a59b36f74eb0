"""Async client for the Open WebUI admin API (0.12.x), as used by the operator.

The module owns every URL, timeout, the authentication dance and the mapping of upstream
failures to typed errors. It never logs or embeds a request or response body, a key, a password
or a token: error messages name the call and the HTTP status only.

Facts this rests on (docs/upstream/open-webui.md, "The OpenAI connection config", "Admin
authentication", "Pipelines detection and the proxy" and "Usage capability"): the
``/openai/config`` object, admin calls answering 401 for a wrong role and sign-in 400 for a
bad password, the pipelines proxy and model lists, the default model metadata.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

__all__ = [
    "ApiKeyAuth",
    "CredentialsAuth",
    "OpenAIConfig",
    "OpenWebUIClient",
    "OpenWebUIError",
    "OpenWebUIServerError",
    "OpenWebUIUnauthorized",
    "OpenWebUIUnexpectedResponse",
    "OpenWebUIUnreachable",
    "PipelinesConnection",
    "TokenCache",
]

SIGNIN_PATH = "/api/v1/auths/signin"
OPENAI_CONFIG_PATH = "/openai/config"
OPENAI_CONFIG_UPDATE_PATH = "/openai/config/update"
MODELS_REFRESH_PATH = "/api/models"
PIPELINES_LIST_PATH = "/api/v1/pipelines/list"
MODELS_CONFIG_PATH = "/api/v1/configs/models"
CONFIG_IMPORT_PATH = "/api/v1/configs/import"
CONFIG_NAMESPACE_PATH = "/api/v1/configs/namespace"
USER_INFO_PATH = "/api/v1/users/user/info"
USER_INFO_UPDATE_PATH = "/api/v1/users/user/info/update"
VERSION_PATH = "/api/version"

#: What a password sign-in of a non-admin account raises (OpenWebUIUnauthorized) with.
NOT_ADMIN_MESSAGE = "the signed-in account is not an admin"

#: Extra seconds for calls that make Open WebUI list every connection's models: it waits up to
#: AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST (10 s by default) for each, so one slow provider of a
#: person's must not look like Open WebUI itself being unreachable.
MODEL_LIST_SLACK = 20.0


# -- auth ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKeyAuth:
    """An admin's ``sk-…`` API key, sent as ``Authorization: Bearer``."""

    api_key: str = field(repr=False)


@dataclass(frozen=True)
class CredentialsAuth:
    """An admin's email and password, exchanged for a JWT at ``/api/v1/auths/signin``."""

    email: str
    password: str = field(repr=False)


# -- errors -------------------------------------------------------------------------------------


class OpenWebUIError(Exception):
    """Any failure talking to Open WebUI. The message never holds a secret or a body."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenWebUIUnauthorized(OpenWebUIError):
    """Credentials refused, or they do not belong to an admin (Open WebUI answers 401 then)."""


class OpenWebUIUnreachable(OpenWebUIError):
    """Connection refused, DNS failure or timeout."""


class OpenWebUIServerError(OpenWebUIError):
    """Open WebUI answered 5xx, or 429 (it rate-limits sign-ins): worth retrying later."""


class OpenWebUIUnexpectedResponse(OpenWebUIError):
    """Any other status, or a body that is not the JSON shape this client expects."""


# -- wire types ---------------------------------------------------------------------------------


@dataclass
class OpenAIConfig:
    """The four fields of ``GET /openai/config`` (and the body of ``/openai/config/update``).

    ``configs`` is keyed by connection index as a string (``"0"``, ``"1"``, …); its values are
    kept exactly as Open WebUI returned them.
    """

    enable: bool | None
    base_urls: list[str]
    keys: list[str]
    configs: dict[str, Any]

    @classmethod
    def from_wire(cls, body: object) -> OpenAIConfig:
        if not isinstance(body, dict):
            raise OpenWebUIUnexpectedResponse("GET /openai/config: answer is not a JSON object")
        urls = body.get("OPENAI_API_BASE_URLS")
        keys = body.get("OPENAI_API_KEYS")
        configs = body.get("OPENAI_API_CONFIGS")
        enable = body.get("ENABLE_OPENAI_API")
        if urls is None:  # no connection configured at all
            urls = []
        if not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
            raise OpenWebUIUnexpectedResponse("/openai/config: OPENAI_API_BASE_URLS is not a list")
        if keys is None:
            keys = []
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise OpenWebUIUnexpectedResponse("/openai/config: OPENAI_API_KEYS is not a list")
        if configs is None:
            configs = {}
        if not isinstance(configs, dict):
            raise OpenWebUIUnexpectedResponse("/openai/config: OPENAI_API_CONFIGS is not an object")
        if enable is not None and not isinstance(enable, bool):
            raise OpenWebUIUnexpectedResponse("/openai/config: ENABLE_OPENAI_API is not a bool")
        return cls(enable=enable, base_urls=list(urls), keys=list(keys), configs=dict(configs))

    def to_wire(self) -> dict[str, Any]:
        return {
            "ENABLE_OPENAI_API": self.enable,
            "OPENAI_API_BASE_URLS": list(self.base_urls),
            "OPENAI_API_KEYS": list(self.keys),
            "OPENAI_API_CONFIGS": dict(self.configs),
        }

    def __repr__(self) -> str:  # keys are secrets: never in a repr, a log line or a traceback
        return (
            f"OpenAIConfig(enable={self.enable!r}, base_urls={self.base_urls!r}, "
            f"keys=<{len(self.keys)} hidden>, configs={self.configs!r})"
        )


@dataclass(frozen=True)
class PipelinesConnection:
    """One entry of ``GET /api/v1/pipelines/list``: a connection detected as Pipelines."""

    url: str
    idx: int


# -- client -------------------------------------------------------------------------------------


class TokenCache:
    """JWTs by (Open WebUI URL, email), for clients that live for one reconcile pass each.

    Open WebUI counts every sign-in per email (15 in 3 minutes, then HTTP 429) and a JWT lives
    4 weeks by default, so signing in on every resync of every resource would be wasteful and
    could lock the operator out. A token is only handed out for the same password (compared
    by digest; nothing here is ever logged), so a rotated password signs in afresh.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[bytes, str]] = {}

    @staticmethod
    def _digest(password: str) -> bytes:
        return hashlib.sha256(password.encode()).digest()

    def get(self, base_url: str, auth: CredentialsAuth) -> str | None:
        entry = self._tokens.get((base_url, auth.email))
        if entry is not None and hmac.compare_digest(entry[0], self._digest(auth.password)):
            return entry[1]
        return None

    def put(self, base_url: str, auth: CredentialsAuth, token: str) -> None:
        self._tokens[(base_url, auth.email)] = (self._digest(auth.password), token)

    def drop(self, base_url: str, auth: CredentialsAuth) -> None:
        self._tokens.pop((base_url, auth.email), None)


def open_webui_pool(
    base_url: str,
    timeout: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The HTTP pool of one Open WebUI (no redirects followed: a login page is no answer).
    ``verify``: the process's one TLS context (``tls.shared_context``), not a new one."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout),
        transport=transport,
        follow_redirects=False,
        verify=verify,
    )


class OpenWebUIClient:
    """One Open WebUI server, one admin identity. Use as ``async with``.

    With :class:`CredentialsAuth` the client signs in lazily, caches the JWT for its lifetime
    (and in ``token_cache`` when given, for the next client) and signs in again once when a call
    answers 401 (the token expired or was revoked); a second 401 means the account is not (or no
    longer) an admin.
    """

    def __init__(
        self,
        base_url: str,
        auth: ApiKeyAuth | CredentialsAuth,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        token_cache: TokenCache | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        """``http``: a pool of this Open WebUI's URL (its ``base_url``) that outlives the client
        and is reused by the next one; otherwise the client has a pool of its own."""
        self._auth = auth
        self._base_url = base_url.rstrip("/")
        self._token_cache = token_cache
        self._slow = httpx.Timeout(timeout + MODEL_LIST_SLACK)
        self._token: str | None
        if isinstance(auth, ApiKeyAuth):
            self._token = auth.api_key
        else:
            self._token = token_cache.get(self._base_url, auth) if token_cache else None
        self._owns_http = http is None
        self._http = http or open_webui_pool(self._base_url, timeout, transport=transport)

    async def __aenter__(self) -> OpenWebUIClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- the calls the operator makes ---------------------------------------------------------

    async def get_version(self) -> str | None:
        """``GET /api/version`` (no auth needed): the server's version, e.g. ``"0.12.4"``.

        None when the answer names none (a 4xx, or not the expected JSON): callers treat an
        unknown version as one they cannot rely on. 5xx, 429 and transport failures raise as
        for every other call.
        """
        what = f"GET {VERSION_PATH}"
        response = await self._send("GET", VERSION_PATH, what)
        status = response.status_code
        if status >= 500 or status == 429:
            _raise_for_status(response, what)
        if not 200 <= status < 300:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        version = body.get("version") if isinstance(body, dict) else None
        return version if isinstance(version, str) and version else None

    async def get_openai_config(self) -> OpenAIConfig:
        """``GET /openai/config``: every OpenAI-API connection, its key and its config."""
        return OpenAIConfig.from_wire(await self._admin_json("GET", OPENAI_CONFIG_PATH))

    async def update_openai_config(self, config: OpenAIConfig) -> OpenAIConfig:
        """``POST /openai/config/update``: replaces all four fields; returns what was stored."""
        body = await self._admin_json("POST", OPENAI_CONFIG_UPDATE_PATH, json=config.to_wire())
        return OpenAIConfig.from_wire(body)

    async def refresh_models(self) -> list[dict[str, Any]]:
        """``GET /api/models?refresh=true``: makes Open WebUI re-read every connection's models.

        Filters only take part in chats after this (docs/upstream/open-webui.md, "How filters
        run in a chat"). Returns the chat-visible models (filters are hidden from this list).
        """
        body = await self._admin_json(
            "GET", MODELS_REFRESH_PATH, params={"refresh": "true"}, timeout=self._slow
        )
        return _data_list(body, "GET /api/models")

    async def list_models(self) -> list[dict[str, Any]]:
        """``GET /api/models``: the chat-visible models as Open WebUI last read them (no
        refresh: each model with its ``info``, e.g. a Workspace model's ``base_model_id``)."""
        body = await self._admin_json("GET", MODELS_REFRESH_PATH, timeout=self._slow)
        return _data_list(body, "GET /api/models")

    async def list_pipelines_connections(self) -> list[PipelinesConnection]:
        """``GET /api/v1/pipelines/list``: the connections whose ``/models`` says ``pipelines``."""
        body = await self._admin_json("GET", PIPELINES_LIST_PATH, timeout=self._slow)
        found: list[PipelinesConnection] = []
        for entry in _data_list(body, "GET /api/v1/pipelines/list"):
            url, idx = entry.get("url"), entry.get("idx")
            if isinstance(url, str) and isinstance(idx, int) and not isinstance(idx, bool):
                found.append(PipelinesConnection(url=url, idx=idx))
        return found

    async def connection_models(self, idx: int) -> list[dict[str, Any]]:
        """``GET /openai/models/{idx}``: the raw ``/models`` answer of one connection.

        Unlike ``/api/models`` this still holds the filters, each with ``pipeline.type``.
        """
        body = await self._admin_json("GET", f"/openai/models/{idx}", timeout=self._slow)
        return _data_list(body, "GET /openai/models/{idx}")

    async def get_models_config(self) -> dict[str, Any]:
        """``GET /api/v1/configs/models``: default models, order and default model metadata."""
        return _object(await self._admin_json("GET", MODELS_CONFIG_PATH), MODELS_CONFIG_PATH)

    async def update_models_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/configs/models``: a full form; send back everything that was read."""
        body = await self._admin_json("POST", MODELS_CONFIG_PATH, json=config)
        return _object(body, MODELS_CONFIG_PATH)

    async def get_config_namespace(self, namespace: str) -> dict[str, Any]:
        """``GET /api/v1/configs/namespace/{ns}``: stored config keys ``<ns>.*`` as they are
        served (from memory for keys Open WebUI does not persist)."""
        path = f"{CONFIG_NAMESPACE_PATH}/{namespace}"
        return _object(await self._admin_json("GET", path), path)

    async def set_config_values(self, values: dict[str, Any]) -> None:
        """``POST /api/v1/configs/import``: upsert the given flat config keys, nothing else.

        The answer is the whole configuration, OAuth client secrets included: it is dropped
        unread.
        """
        await self._admin_json("POST", CONFIG_IMPORT_PATH, json={"config": values})

    async def get_user_info(self) -> dict[str, Any]:
        """``GET /api/v1/users/user/info``: the signed-in account's free-form ``info``."""
        body = await self._admin_json("GET", USER_INFO_PATH)
        return body if isinstance(body, dict) else {}

    async def merge_user_info(self, values: dict[str, Any]) -> None:
        """``POST /api/v1/users/user/info/update``: merges top-level keys into ``info``."""
        await self._admin_json("POST", USER_INFO_UPDATE_PATH, json=values)

    # -- plumbing -----------------------------------------------------------------------------

    async def admin_request(
        self,
        method: str,
        path: str,
        *,
        not_a_refusal: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One admin call whose answer the caller interprets: authenticate, send, sign in again
        once on 401, raise for refusals (:class:`OpenWebUIUnauthorized`), 5xx and 429
        (:class:`OpenWebUIServerError`) and transport failures; return any other answer.

        Some routes answer 401 for what is no auth failure (an unknown function id); for such
        answers ``not_a_refusal`` returns True, and they are returned as they are, without a
        fresh sign-in. ``kwargs`` go to ``httpx.AsyncClient.request``.
        """
        what = f"{method} {path}"

        def refused(response: httpx.Response) -> bool:
            if response.status_code not in (401, 403):
                return False
            return not_a_refusal is None or not not_a_refusal(response)

        if self._token is None:
            await self._sign_in()
        response = await self._send(method, path, what, **kwargs)
        if (
            response.status_code == 401
            and refused(response)
            and isinstance(self._auth, CredentialsAuth)
        ):
            # The cached JWT may have expired or been revoked (sign-out, password change,
            # secret-key rotation): one fresh sign-in, then a second 401 is the account's fault.
            self._token = None
            if self._token_cache is not None:
                self._token_cache.drop(self._base_url, self._auth)
            await self._sign_in()
            response = await self._send(method, path, what, **kwargs)
        if refused(response):
            raise OpenWebUIUnauthorized(_refusal_message(self._auth, what), status=401)
        status = response.status_code
        if status >= 500 or status == 429:
            _raise_for_status(response, what)
        return response

    async def _admin_json(self, method: str, path: str, **kwargs: Any) -> object:
        """One admin call: authenticate, send, sign in again once on 401, map errors, parse."""
        what = f"{method} {path}"
        response = await self.admin_request(method, path, **kwargs)
        _raise_for_status(response, what)
        return _parse_json(response, what)

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise OpenWebUIUnreachable(f"{what}: Open WebUI did not answer in time") from exc
        except httpx.TransportError as exc:
            # The exception text is a socket error ("Connection refused"); never a body.
            reason = str(exc) or type(exc).__name__
            raise OpenWebUIUnreachable(f"{what}: cannot reach Open WebUI ({reason})") from exc
        except (OSError, ValueError, ExceptionGroup) as exc:
            # What the socket layer raises for URLs it cannot even try (a port out of range
            # surfaces as an ExceptionGroup from the connection task group): no text kept.
            raise OpenWebUIUnreachable(
                f"{what}: cannot reach Open WebUI ({type(exc).__name__})"
            ) from exc

    async def _sign_in(self) -> None:
        if not isinstance(self._auth, CredentialsAuth):
            return
        what = f"POST {SIGNIN_PATH}"
        response = await self._send(
            "POST",
            SIGNIN_PATH,
            what,
            json={"email": self._auth.email, "password": self._auth.password},
        )
        if response.status_code in (400, 401, 403):
            # 400 is Open WebUI's answer to a wrong email or password
            # (docs/upstream/open-webui.md, "Admin authentication").
            raise OpenWebUIUnauthorized(
                "sign-in refused: wrong email or password", status=response.status_code
            )
        _raise_for_status(response, what)
        body = _object(_parse_json(response, what), what)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise OpenWebUIUnauthorized(
                "sign-in gave no token (is two-factor sign-in on? then use an admin API key)"
            )
        if body.get("role") != "admin":
            raise OpenWebUIUnauthorized(NOT_ADMIN_MESSAGE)
        self._token = token
        if self._token_cache is not None:
            self._token_cache.put(self._base_url, self._auth, token)


def _refusal_message(auth: ApiKeyAuth | CredentialsAuth, what: str) -> str:
    if isinstance(auth, ApiKeyAuth):
        return (
            f"{what}: API key refused (wrong key, not an admin's key, or API keys are "
            "disabled in Open WebUI)"
        )
    return f"{what}: refused after a fresh sign-in (the account is not an admin)"


def _raise_for_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status >= 500 or status == 429:
        raise OpenWebUIServerError(f"{what}: Open WebUI answered HTTP {status}", status=status)
    raise OpenWebUIUnexpectedResponse(f"{what}: Open WebUI answered HTTP {status}", status=status)


def _parse_json(response: httpx.Response, what: str) -> object:
    try:
        return response.json()
    except ValueError as exc:
        raise OpenWebUIUnexpectedResponse(
            f"{what}: answer is not JSON (is this URL an Open WebUI?)", status=response.status_code
        ) from exc


def _object(body: object, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise OpenWebUIUnexpectedResponse(f"{what}: answer is not a JSON object")
    return body


def _data_list(body: object, what: str) -> list[dict[str, Any]]:
    data = _object(body, what).get("data")
    if not isinstance(data, list):
        raise OpenWebUIUnexpectedResponse(f"{what}: answer has no 'data' list")
    return [entry for entry in data if isinstance(entry, dict)]
