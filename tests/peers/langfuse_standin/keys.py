"""The per-instance key table and HTTP Basic authentication, with Langfuse's messages."""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
from dataclasses import dataclass, field

NO_HEADER = "No authorization header"
INVALID_HEADER = "Invalid authorization header"
INVALID_CREDENTIALS = "Invalid credentials. Confirm that you've configured the correct host."
ORGANIZATION_KEY = "Invalid API key. Are you using an organization key?"


@dataclass(frozen=True)
class Project:
    """One Langfuse project and its API key pair (the secret never leaves the key table)."""

    public_key: str
    secret_key: str = field(repr=False)
    project_id: str
    name: str
    organization_id: str = "standin-org"
    organization_name: str = "Stand-in Organization"

    def as_api_project(self) -> dict[str, object]:
        """The project as `GET /api/public/projects` lists it (server ≥ 3.143 shape)."""
        return {
            "id": self.project_id,
            "name": self.name,
            "organization": {"id": self.organization_id, "name": self.organization_name},
            "metadata": {},
        }


@dataclass(frozen=True)
class AuthResult:
    project: Project | None
    error: str | None
    public_key: str | None  # whatever the client claimed, for the request log


class KeyTable:
    """Public key → project, private to one stand-in instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, Project] = {}

    def add(self, project: Project) -> None:
        with self._lock:
            self._projects[project.public_key] = project

    def projects(self) -> list[Project]:
        with self._lock:
            return list(self._projects.values())

    def secrets(self) -> list[str]:
        """Every secret key known here, for redaction."""
        with self._lock:
            return [project.secret_key for project in self._projects.values()]

    def authenticate(self, authorization: str | None) -> AuthResult:
        """Check an `Authorization` header: Basic public:secret against the table."""
        if not authorization:
            return AuthResult(None, NO_HEADER, None)
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "basic" or not credentials:
            return AuthResult(None, INVALID_HEADER, None)
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return AuthResult(None, INVALID_HEADER, None)
        public_key, separator, secret_key = decoded.partition(":")
        if not separator:
            return AuthResult(None, INVALID_HEADER, None)
        with self._lock:
            project = self._projects.get(public_key)
        if project is None or not hmac.compare_digest(
            project.secret_key.encode(), secret_key.encode()
        ):
            return AuthResult(None, INVALID_CREDENTIALS, public_key)
        return AuthResult(project, None, public_key)
