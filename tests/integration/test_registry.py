"""The stack's OCI registry: push without Docker, then list tags."""

import httpx

from devstack.registry import MANIFEST_TYPE, push_image
from shared.outside.registry import Registries, RegistryAccess
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


async def test_a_digest_is_kept_for_release_checks_and_asked_afresh_for_registration(
    stack_env: StackEnv,
) -> None:
    repository = f"team/{unique('svc')}"
    first = await push_image(stack_env.registry_url, repository, "1.0.0")
    other = await push_image(stack_env.registry_url, repository, "2.0.0")
    host = stack_env.registry_url.removeprefix("http://")
    registries = Registries({host: RegistryAccess(url=stack_env.registry_url)})
    try:
        assert await registries.digest(f"{host}/{repository}", "1.0.0") == first
        # The tag is pushed again, now naming 2.0.0's image.
        async with httpx.AsyncClient(base_url=stack_env.registry_url) as http:
            accept = {"Accept": MANIFEST_TYPE}
            manifest = await http.get(f"/v2/{repository}/manifests/2.0.0", headers=accept)
            moved = await http.put(
                f"/v2/{repository}/manifests/1.0.0",
                content=manifest.content,
                headers={"Content-Type": MANIFEST_TYPE},
            )
            assert moved.status_code == 201, moved.text
        assert await registries.digest(f"{host}/{repository}", "1.0.0") == first
        assert await registries.digest(f"{host}/{repository}", "1.0.0", fresh=True) == other
        assert await registries.digest(f"{host}/{repository}", "1.0.0") == other
        assert await registries.digest(f"{host}/{repository}", "9.9.9") is None
    finally:
        await registries.close()
