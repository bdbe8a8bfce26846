"""Push small images to an OCI registry over plain HTTP, as a CI job would, without Docker."""

import hashlib
import json

import httpx

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


async def _push_blob(client: httpx.AsyncClient, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = await client.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    done = await client.put(
        f"{location}{separator}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    done.raise_for_status()
    return digest


async def push_image(
    registry_url: str, repository: str, tag: str, headers: dict[str, str] | None = None
) -> str:
    """Push a one-layer image; returns the manifest digest. ``headers``: e.g. Authorization."""
    async with httpx.AsyncClient(base_url=registry_url, headers=headers) as client:
        layer = f"layer of {repository}:{tag}".encode()
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        layer_digest = await _push_blob(client, repository, layer)
        config_digest = await _push_blob(client, repository, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        put = await client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": MANIFEST_TYPE},
        )
        put.raise_for_status()
        return "sha256:" + hashlib.sha256(manifest).hexdigest()
