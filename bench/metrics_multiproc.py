"""What prometheus-client's multiprocess mode (``serve --workers N``) costs per metric update,
against the single-process mode of the same run: the ingest path makes two counter increments
and one histogram observation per request (router/web/beacon.py, intake.py).

    .venv/bin/python bench/metrics_multiproc.py

Each mode runs in a subprocess of its own, since prometheus-client picks its value store once,
at import, from ``$PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

PROBE = """
import json, timeit
from prometheus_client import CollectorRegistry, Counter, Histogram
r = CollectorRegistry()
counter = Counter("c", "c", ["source"], registry=r).labels("beacon")
histogram = Histogram("h", "h", ["route"], registry=r).labels("/beacon")
n = 200_000
best = lambda f: min(timeit.repeat(f, number=n, repeat=7)) / n * 1e9
inc, observe = best(counter.inc), best(lambda: histogram.observe(0.003))
print(json.dumps({"inc_ns": inc, "observe_ns": observe, "request_ns": 2 * inc + observe}))
"""


def measure(multiprocess: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory() as directory:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    single, multi = measure(False), measure(True)
    for key in ("inc_ns", "observe_ns", "request_ns"):
        print(f"{key:<11} single {single[key]:7.0f}  multiprocess {multi[key]:7.0f}  "
              f"ratio {multi[key] / single[key]:.2f}")


if __name__ == "__main__":
    main()
