"""``make bench``: Fabu's release pipeline measured on the local real stack; prints a table.

``python -m bench <part>...`` runs only the named parts, in the order given:

- latency: added latency per release, 50 releases one after another:
  (request accepted → apply sent) + (Deployment complete, as seen by this
  program's own watch → release ``succeeded`` stored).
- kubectl: the article's method against Fabu for the same 20 Deployments,
  all 20 at once: ``kubectl apply -f`` + ``kubectl rollout status`` (the
  built kubectl) per service, against 20 Fabu releases.
- throughput: 500 releases of 500 services at once against a direct
  server-side apply of the same manifests: each release's time in each step
  (STEPS), every process's CPU seconds and database commands, the documents
  those examined and the database's milliseconds (``bench.examined``: the
  server's profiler and explain; "n/a" where the server has neither), py-spy
  profiles of the stages (kept in the run's log folder); then the peak memory
  of each stage process so far.
- intake: the API alone (the renderer stopped meanwhile): 500 release requests
  of 500 services at once, the requests per second it accepted, the CPU each
  process spent and the documents the database examined per request, profiled;
  then the renderer started again and the 500 released.
- replicas: a second process of every stage and of the API started (each
  logging to ``<stage>-2.log``), 500 releases of 500 services at once, half
  asked of each API: the wall time and how many succeeded; that nothing was
  done twice, from the store (every release's history holds render, apply and
  succeed once each) and from each
  process's /metrics (each stage's two replicas together handled each message
  once, the notifier's two a release, and both did some; the two APIs created
  the 500 records between them). The second replicas are stopped after it.
- flight: 1,000 releases whose pods never become Ready (so they stay
  tracked), followed by one tracker; cancelled; then 1,000 more followed by
  two trackers. Counted from each tracker's ``fabu_releases_tracked``.
- steady: 10 releases in flight at all times (40 services alternating two
  versions) for a minute's warm-up and then 10 minutes; the memory of every
  process at the start and at the end of those 10 minutes.
- render: what rendering in worker processes within a budget costs: the demo
  template rendered 500 times in this process, then 500 at once through
  ``shared.templating.sandbox.Renderers`` (two worker processes, as each renderer and API
  process keeps by default): renders per second and each render's time.
- live: what watching costs: 1,000 services (a Service and a one-pod
  Deployment each) applied straight to one namespace; then the live state of
  each read through one ``shared.cluster.live.Observer``: the requests to the API
  server and the memory (Python's allocations) of its watches, the states
  without a release to compare, then with one (the drift check: a read and a
  dry run per object), then again within the drift check's keep time.
- list: flat as releases grow: 20 releases at once with the records stored so
  far (none when run alone) and again with 100,000 stored, the documents the
  database examined and its milliseconds per release at each end
  (``bench.examined``); between them the release list (50 rows) with 1,000,
  10,000 and 100,000 records stored: copies of a real finished release
  (manifest, transcript, pod timeline and all) over 500 services, 3
  environments and 20 operators; up to 20 requests per query shape (at least
  3, fewer once a size's requests took a minute), p50 and p99 against the goal
  at 100,000. It stops growing the collection once the newest-first page takes
  more than 10 s. ``FABU_BENCH_LIST_RECORDS`` grows it to fewer (a quick look).
"""

import asyncio
import sys

from aiosmtpd.handlers import Sink

from bench.flight import flight_rows
from bench.harness import on_stack
from bench.intake import intake_rows
from bench.kubectl import kubectl_rows
from bench.latency import latency_rows
from bench.listing import list_rows
from bench.live import live_rows
from bench.readings import Row, print_table
from bench.render import render_rows
from bench.replicas import replicas_rows
from bench.steady import steady_rows
from bench.throughput import throughput_rows

PARTS = {
    "latency": latency_rows,
    "kubectl": kubectl_rows,
    "throughput": throughput_rows,
    "intake": intake_rows,
    "flight": flight_rows,
    "steady": steady_rows,
    "list": list_rows,
    "replicas": replicas_rows,
    "live": live_rows,
    "render": render_rows,
}


async def main(parts: list[str]) -> None:
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"no such part: {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    rows: list[Row] = []
    async with on_stack("bench", Sink()) as (system, bench):
        for part in parts:
            rows += await PARTS[part](system, bench)
    print_table(rows)
    print(f"\n(logs of the run: {system.logs})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or list(PARTS)))
    sys.exit(0)
