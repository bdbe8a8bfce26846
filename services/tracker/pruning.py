"""Pruning at a release's success: what earlier releases of its service there applied and
it no longer has is deleted (``shared.release.pruning``), and the transcript says so."""

from shared.cluster.client import Cluster
from shared.errors import FabuError
from shared.models.release import Release
from shared.release import pruning
from shared.worker import Context


async def prune(ctx: Context, cluster: Cluster, release: Release) -> tuple[list[str], str]:
    """Delete what earlier releases of the service there applied and this one no longer
    has: what was deleted, and the transcript's line about it ("" for nothing)."""
    if not release.inventory:
        return [], ""  # an older record: what it applied is not known
    earlier = await ctx.releases.inventories(release.service, release.environment, limit=50)
    try:
        found = await pruning.leftovers(
            cluster,
            release.namespace,
            release.service,
            release.environment,
            release.inventory,
            None if earlier is None else [o for inventory in earlier for o in inventory],
        )
        pruned = await pruning.prune(cluster, release.namespace, found)
    except FabuError as exc:
        return [], f"could not prune what this release no longer has: {exc.message}"
    return pruned, f"pruned what this release no longer has: {', '.join(pruned)}" if pruned else ""
