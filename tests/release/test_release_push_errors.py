"""A push that fails says why, in the registry's own words, and is never reported as done.

``ci/release.py``'s push step against a registry that is not there and one that refuses every
write (401 on the OCI routes, as a registry without credentials answers), with the session's
operator image (built once by tests/release/conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import ci_scripts
from tests.release.conftest import BuiltImage
from tests.world.proc import LOOPBACK, free_port

pytestmark = pytest.mark.world


release = ci_scripts.load("release")


class _Refusing(BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        body = b'{"errors":[{"code":"DENIED","message":"push to this repository is denied"}]}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _refuse

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def refusing_registry() -> Iterator[str]:
    server = ThreadingHTTPServer((LOOPBACK, 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _push(image: BuiltImage, registry: str) -> str:
    with pytest.raises(release.ReleaseError) as raised:
        release.push(
            f"{registry}/openwebui-langfuse",
            "0.0.0-test",
            {image.name: image.digest},
            image.output / "no-chart.tgz",  # never reached: the image push fails first
            image.output,
            True,
        )
    return str(raised.value)


def test_an_unreachable_registry_fails_the_push_with_its_answer(
    operator_image: BuiltImage,
) -> None:
    message = _push(operator_image, f"{LOOPBACK}:{free_port()}")
    assert message.startswith("push of ")
    assert "connection refused" in message.lower()


def test_a_refusing_registry_fails_the_push_with_its_answer(
    operator_image: BuiltImage, refusing_registry: str
) -> None:
    message = _push(operator_image, refusing_registry)
    assert message.startswith("push of ")
    assert "DENIED" in message or "403" in message, message
