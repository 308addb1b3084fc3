"""Run every fuzz target (or those named) for a while and record what each did.

    .venv/bin/python bench/fuzz/run.py --seconds 600 --jobs 2          # 10 minutes each
    .venv/bin/python bench/fuzz/run.py --seconds 60 json yaml          # a quick look at two

Each target runs under libFuzzer (atheris) with ``-timeout=10`` (a call over 10 s is a hang) and
``-rss_limit_mb=2048``; its corpus grows in ``bench/fuzz/corpus/<name>/`` (not committed) from
the seeds in ``bench/fuzz/seeds/<name>/``; a crash or hang is written to
``bench/fuzz/crashes/<name>/`` (kept in git once fixed, and copied to the seeds, so every run
tries it again). The record (seconds run, executions, crashes) goes to
``bench/results/fuzz.json`` (or ``--out``). Every crash found becomes a test in tests/ and a fix.

``speedups`` is a differential target: the C modules against their Python twins; to run it (or
any target) with the C under AddressSanitizer, see bench/fuzz/asan.sh.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ("json", "form", "yaml", "prometheus", "compression", "lz64", "posthog", "config",
           "speedups")


def run(name: str, seconds: int) -> dict[str, object]:
    corpus = os.path.join(HERE, "corpus", name)
    seeds = os.path.join(HERE, "seeds", name)
    crashes = os.path.join(HERE, "crashes", name)
    for path in (corpus, crashes):
        os.makedirs(path, exist_ok=True)
    known = set(os.listdir(crashes))  # inputs of crashes found (and fixed) before
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, f"fuzz_{name}.py"), corpus, seeds,
         f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
         f"-artifact_prefix={crashes}/", "-print_final_stats=1"],
        capture_output=True, text=True)
    elapsed = time.monotonic() - started
    log = done.stderr
    with open(os.path.join(crashes, "last_run.log"), "w") as fh:
        fh.write(log[-20000:])
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    coverage = re.findall(r"cov: (\d+)", log)
    found = sorted(f for f in set(os.listdir(crashes)) - known if not f.endswith(".log"))
    return {"target": name, "seconds": round(elapsed),
            "executions": int(execs[-1]) if execs else None,
            "coverage_edges": int(coverage[-1]) if coverage else None,
            "corpus_files": len(os.listdir(corpus)), "exit_code": done.returncode,
            "crashes": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "fuzz.json"))
    args = parser.parse_args()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda t: run(t, args.seconds), args.targets))
    for result in results:
        print(json.dumps(result))
    with open(args.out, "w") as fh:
        json.dump({"seconds_asked": args.seconds, "jobs": args.jobs, "targets": results}, fh,
                  indent=1)
    sys.exit(1 if any(r["crashes"] for r in results) else 0)


if __name__ == "__main__":
    main()
