"""The bundled Langfuse filter, shipped as package data for the operator to upload.

The filter file is never imported by the operator: it is a Pipelines module, uploaded as text
(`filter.source: bundled`), so no network is needed to install it.
"""

import functools
import hashlib
from importlib import resources

BUNDLED_FILTER_FILENAME = "langfuse_tracing_filter.py"


@functools.cache
def bundled_filter_bytes() -> bytes:
    """The exact bytes of the bundled filter file, as uploaded to Pipelines: read once, and
    shared by every pass (200 passes waiting on Pipelines held 200 copies)."""
    return resources.files(__package__).joinpath(BUNDLED_FILTER_FILENAME).read_bytes()


def bundled_filter_text() -> str:
    return bundled_filter_bytes().decode("utf-8")


def bundled_filter_sha256() -> str:
    """Lowercase hex sha256 of the bundled file (what `filter.sha256` would pin)."""
    return hashlib.sha256(bundled_filter_bytes()).hexdigest()


def bundled_filter_version() -> str:
    """The `version:` of the file's frontmatter, e.g. for status and Events."""
    text = bundled_filter_text()
    if text.startswith('"""'):
        for line in text[3:].split('"""', 1)[0].splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == "version":
                return value.strip()
    raise ValueError(f"{BUNDLED_FILTER_FILENAME} has no version in its frontmatter")
