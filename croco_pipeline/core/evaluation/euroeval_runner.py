"""Run EuroEval on one model inside EuroEval's own environment, and write what it scored as JSON.

EuroEval 17.0.0 (the paper's) needs Python >= 3.12 and transformers < 5, which cannot share croco's
environment (transformers 5). croco therefore calls this file with that environment's interpreter
(``settings.euroeval_python``, made by ``scripts/euroeval_env.sh``); it imports nothing but the standard
library and ``euroeval``, so it runs there as a plain script:

    <euroeval python> euroeval_runner.py request.json result.json

``request.json``: {"model", "datasets", "num_iterations", "evaluate_test_split", "few_shot", "cache_dir",
"options"}. ``result.json``: {"datasets": {name: {"error": text or null, "results": [BenchmarkResult as a
dict, ...]}}}: one entry per dataset, so one unreachable dataset does not hide the others' scores.
"""

from __future__ import annotations

import json
import sys


def main(request_path: str, result_path: str) -> int:
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    from euroeval import Benchmarker

    settings = dict(
        progress_bar=False,
        save_results=False,
        raise_errors=True,
        evaluate_test_split=request["evaluate_test_split"],
        few_shot=request["few_shot"],
        num_iterations=request["num_iterations"],
    )
    if request.get("cache_dir"):
        settings["cache_dir"] = request["cache_dir"]
    settings.update(request.get("options") or {})
    benchmarker = Benchmarker(**settings)
    outcome = {}
    for dataset in request["datasets"]:
        try:
            results = list(benchmarker.benchmark(model=request["model"], dataset=dataset))
            dumped = [r.model_dump() if hasattr(r, "model_dump") else dict(vars(r)) for r in results]
            outcome[dataset] = {"error": None, "results": json.loads(json.dumps(dumped, default=str))}
        except Exception as error:  # noqa: BLE001 - each dataset's failure reason goes back to croco
            outcome[dataset] = {"error": f"{type(error).__name__}: {error}", "results": []}
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump({"datasets": outcome}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
