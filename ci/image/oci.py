"""An OCI image layout (oci-layout, index.json, blobs/sha256/) written by hand.

By hand rather than with umoci or crane: the layout is three small JSON documents over the
layer blobs, and writing them here keeps every byte that goes into the digest under this
project's control (sorted keys, compact separators, no tool version or wall-clock time).
https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layers import Layer

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    sha = hashlib.sha256(data).hexdigest()
    (blobs / sha).write_bytes(data)
    return f"sha256:{sha}", len(data)


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config (what `docker inspect` shows under Config)."""

    user: str
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    ports: list[str]
    labels: dict[str, str]
    workdir: str = ""


def write_layout(
    layout: Path, layers: list[tuple[Layer, str]], config: ImageConfig, created: str, ref_name: str
) -> str:
    """Write the image of ``layers`` (each with its history line) and return its digest.

    The layers' blobs must already be in ``layout/blobs/sha256``.
    """
    blobs = layout / "blobs" / "sha256"
    runtime: dict[str, Any] = {
        "User": config.user,
        "Env": config.env,
        "Entrypoint": config.entrypoint,
        "Cmd": config.cmd,
        "ExposedPorts": {port: {} for port in config.ports},
        "Labels": config.labels,
    }
    if config.workdir:
        runtime["WorkingDir"] = config.workdir
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer, _ in layers]},
        "history": [{"created": created, "created_by": why} for _, why in layers],
    }
    config_digest, config_size = write_blob(blobs, canonical(image_config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size}
            for layer, _ in layers
        ],
    }
    manifest_digest, manifest_size = write_blob(blobs, canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {REF_NAME: ref_name},
            }
        ],
    }
    (layout / "index.json").write_bytes(canonical(index))
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    return manifest_digest
