"""A cold start, measured from outside: a fresh process that loads the models and the index and answers one
question (`citeqa ask --no-service`), and which heavy libraries it imported (docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Libraries a process may load only for the path it runs: torch and transformers for the torch runtimes,
# sentence-transformers for converting or running the embedder on torch.
HEAVY = ("torch", "transformers", "sentence_transformers")

_ASK = """
import json, sys
from citeqa.cli import main
code = main(["ask", "--no-service", "--json", sys.argv[1]])
print(json.dumps({"exit": code, "imported": sorted(set(sys.argv[2].split(",")) & set(sys.modules))}))
"""


def measure_cold_start(
    data_dir: Path, question: str, runs: int = 3, timeout_s: float = 300
) -> dict[str, Any]:
    """Wall seconds of `runs` fresh processes answering `question` over the index in `data_dir` (the first
    one may also read the files into the page cache), and what the last imported of `HEAVY`."""
    env = {**os.environ, "CITEQA_DATA_DIR": str(data_dir)}
    seconds, outcome = [], {}
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _ASK, question, ",".join(HEAVY)],
            env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
        seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"the cold ask failed: {done.stderr.strip()[-500:]}")
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        if outcome["exit"] != 0:
            raise RuntimeError(f"the cold ask exited {outcome['exit']}: {done.stderr.strip()[-500:]}")
    return {
        "runs": runs,
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds), 2),
        "imported": outcome["imported"],
    }
