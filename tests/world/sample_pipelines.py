"""Pipeline modules written for the tests (no upstream copies), as source text.

Upload one to a Pipelines server as ``<id>.py``; its id is the file stem.

- ``RECORDING_FILTER``: a filter whose Valves are ``pipelines`` (class default ``[]``, set to
  ``["*"]`` in ``__init__``, so a partial update visibly resets it), ``priority``, a required
  ``secret_key``, ``note`` and ``count``. Its inlet and outlet append one JSON line each to the
  file named by the server's ``OWL_PIPELINES_RECORD`` environment variable (the Pipelines
  launcher sets it), so a test can prove they ran and see what they were given.
- ``ECHO_PIPE``: a pipe model answering ``echo: <last user message>`` (no ``type`` attribute:
  Pipelines lists a module as a pipe only then).
"""

from __future__ import annotations

RECORD_ENV = "OWL_PIPELINES_RECORD"

RECORDING_FILTER = '''\
"""
title: Recording Filter
description: Test filter of openwebui-langfuse; records every inlet and outlet call.
"""

import json
import os
import time
from typing import List, Optional

from pydantic import BaseModel


class Pipeline:
    class Valves(BaseModel):
        pipelines: List[str] = []
        priority: int = 0
        secret_key: str
        note: str = "default-note"
        count: int = 1

    def __init__(self):
        self.type = "filter"
        self.name = "Recording Filter"
        self.valves = self.Valves(pipelines=["*"], secret_key="unset")

    def _record(self, hook, body, user):
        path = os.environ.get("__RECORD_ENV__")
        if not path:
            return
        entry = {
            "hook": hook,
            "time": time.time(),
            "valves": self.valves.model_dump(),
            "body": body,
            "user": user,
        }
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=str) + "\\n")

    async def inlet(self, body: dict, user: Optional[dict] = None) -> dict:
        self._record("inlet", body, user)
        body.setdefault("metadata", {})["owl_recording_filter"] = self.valves.note
        return body

    async def outlet(self, body: dict, user: Optional[dict] = None) -> dict:
        self._record("outlet", body, user)
        return body
'''.replace("__RECORD_ENV__", RECORD_ENV)

ECHO_PIPE = '''\
"""
title: Echo Pipe
description: Test pipe of openwebui-langfuse; answers with the last user message.
"""

from typing import Generator, Iterator, List, Union


class Pipeline:
    def __init__(self):
        self.name = "Echo Pipe"

    def pipe(self, user_message: str, model_id: str, messages: List[dict],
             body: dict) -> Union[str, Generator, Iterator]:
        return f"echo: {user_message}"
'''

RECORDING_FILTER_ID = "recording_filter"
ECHO_PIPE_ID = "echo_pipe"

SOURCES = {RECORDING_FILTER_ID: RECORDING_FILTER, ECHO_PIPE_ID: ECHO_PIPE}
