"""The database commands a part's releases cost: each process's, per release, from its
/metrics (what the server did with them: ``bench.examined``)."""

from collections import Counter

from bench.readings import Row, samples
from devstack.system import STAGES, FabuSystem

Commands = dict[str, Counter[str]]


async def database_commands(system: FabuSystem) -> Commands:
    """The database commands each process has sent so far, by ``command collection``,
    from its /metrics."""
    sent: Commands = {}
    for process in system.processes:
        counted: Counter[str] = Counter()
        for sample in await samples(system.ports[process], "fabu_database_commands_total"):
            counted[f"{sample.labels['command']} {sample.labels['collection']}"] += int(
                sample.value
            )
        sent[process] = counted
    return sent


def commands_rows(
    before: Commands, after: Commands, per: int, processes: tuple[str, ...] = STAGES
) -> list[Row]:
    """Each process's database commands per release between two readings, its most
    frequent ones named."""
    rows: list[Row] = []
    for process in processes:
        used = after.get(process, Counter()) - before.get(process, Counter())
        rows += per_release(f"database commands per release: {process}", used, per, 1)
    return rows


def per_release(title: str, used: Counter[str], per: int, digits: int) -> list[Row]:
    """A row of ``used`` per release, and one for each of its five largest parts."""
    parts = [(f"    {name}", n) for name, n in used.most_common(5)]
    return [(row, f"{n / per:.{digits}f}", "") for row, n in [(f"  {title}", used.total()), *parts]]
