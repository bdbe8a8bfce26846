"""The stack's OCI registry: push without Docker, then list tags."""

import httpx

from devstack.registry import push_image
from tests.conftest import unique
from tests.support.stack import StackEnv


async def test_pushed_manifest_appears_in_tags_list(stack_env: StackEnv) -> None:
    repository = f"team/{unique('svc')}"
    digest = await push_image(stack_env.registry_url, repository, "1.4.2")
    await push_image(stack_env.registry_url, repository, "1.4.3")

    async with httpx.AsyncClient(base_url=stack_env.registry_url) as http:
        tags = (await http.get(f"/v2/{repository}/tags/list")).json()
        head = await http.head(
            f"/v2/{repository}/manifests/1.4.2",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        missing = await http.head(f"/v2/{repository}/manifests/9.9.9")

    assert tags["name"] == repository
    assert sorted(tags["tags"]) == ["1.4.2", "1.4.3"]
    assert head.headers["Docker-Content-Digest"] == digest
    assert missing.status_code == 404
