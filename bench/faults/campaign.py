"""Run the suite's fault tests (tests/faults/) several times and sum what each fault did:
times injected, events acknowledged, lost and duplicated — the rows of docs/reliability.md.

    .venv/bin/python bench/faults/campaign.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "faults_campaign.json"))
    args = parser.parse_args()
    record = tempfile.mktemp(suffix=".jsonl")
    failed = 0
    for _ in range(args.runs):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                               "tests/faults"], cwd=REPO, env={**os.environ,
                                                               "FAULT_RECORD": record})
        failed += done.returncode != 0
    totals: dict[str, dict[str, object]] = defaultdict(lambda: {"runs": 0})
    with open(record, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            total = totals[row.pop("fault")]
            total["runs"] = int(total["runs"]) + 1  # type: ignore[call-overload]
            for key, value in row.items():
                if isinstance(value, int):
                    total[key] = int(total.get(key, 0)) + value  # type: ignore[call-overload]
                else:
                    total[key] = value
    result = {"runs": args.runs, "failed_runs": failed, "faults": totals}
    print(json.dumps(result, indent=1))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
