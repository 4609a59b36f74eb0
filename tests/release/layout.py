"""Reading an OCI image layout as a registry or runtime would: by digest, checking every blob.

Independent of the builder (ci/image/): it follows index.json -> manifest -> config and layers
and trusts nothing it has not hashed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class LayoutError(AssertionError):
    """The layout breaks the OCI image-layout rules (a digest, size or media type is off)."""


@dataclass(frozen=True)
class Layout:
    path: Path

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        """A blob's bytes, after checking them against the descriptor's digest and size."""
        algorithm, _, hexdigest = descriptor["digest"].partition(":")
        if algorithm != "sha256":
            raise LayoutError(f"unsupported digest {descriptor['digest']}")
        data = (self.path / "blobs" / "sha256" / hexdigest).read_bytes()
        if hashlib.sha256(data).hexdigest() != hexdigest:
            raise LayoutError(f"blob {descriptor['digest']} does not hash to its name")
        if len(data) != descriptor["size"]:
            raise LayoutError(
                f"blob {descriptor['digest']}: {len(data)} bytes, descriptor says "
                f"{descriptor['size']}"
            )
        return data

    def index(self) -> dict[str, Any]:
        version = json.loads((self.path / "oci-layout").read_text())
        if version != {"imageLayoutVersion": "1.0.0"}:
            raise LayoutError(f"oci-layout is {version}")
        return dict(json.loads((self.path / "index.json").read_text()))

    def manifest_descriptor(self) -> dict[str, Any]:
        manifests = self.index()["manifests"]
        if len(manifests) != 1 or manifests[0]["mediaType"] != MANIFEST:
            raise LayoutError(f"expected one image manifest in index.json, got {manifests}")
        return dict(manifests[0])

    def manifest(self) -> dict[str, Any]:
        manifest = json.loads(self.blob(self.manifest_descriptor()))
        if manifest.get("mediaType") != MANIFEST or manifest["config"]["mediaType"] != CONFIG:
            raise LayoutError(
                f"manifest media types: {manifest.get('mediaType')}, "
                f"{manifest['config']['mediaType']}"
            )
        return dict(manifest)

    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.blob(self.manifest()["config"])))

    def layers(self) -> list[bytes]:
        """Each layer uncompressed, checked against its blob digest and the config's diff_id."""
        manifest = self.manifest()
        diff_ids = self.config()["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest["layers"]):
            raise LayoutError("config diff_ids and manifest layers differ in number")
        tars = []
        for descriptor, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            if descriptor["mediaType"] != LAYER:
                raise LayoutError(f"layer media type {descriptor['mediaType']}")
            tar = gzip.decompress(self.blob(descriptor))
            if f"sha256:{hashlib.sha256(tar).hexdigest()}" != diff_id:
                raise LayoutError(f"layer {descriptor['digest']} does not match diff_id {diff_id}")
            tars.append(tar)
        return tars

    def members(self) -> Iterator[tuple[int, tarfile.TarInfo, bytes | None]]:
        """(layer number, entry, content of a regular file) for every entry of every layer."""
        for number, tar in enumerate(self.layers()):
            with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
                for info in archive:
                    data = None
                    if info.isreg():
                        extracted = archive.extractfile(info)
                        assert extracted is not None
                        data = extracted.read()
                    yield number, info, data
