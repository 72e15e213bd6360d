#!/usr/bin/env bash
# The end-to-end time of a study: `eigentrace run CONFIG -j 2` into an empty
# store, every stage computed, as JSON on stdout (`make bench` keeps it in
# bench/results/paper.json).
#
#   scripts/bench-paper.sh [--quick] [path/to/eigentrace]
#
# Default: configs/paper.toml (7 optimizers × 5 seeds; about half an hour on
# 2 cores). --quick: configs/quick.toml (CI checks the output's form).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/prologue.sh bench-paper "$@"
config=configs/paper.toml
if $quick; then
  config=configs/quick.toml
fi
jobs=2
start=$(date +%s.%N)
"$ET" run "$config" -j "$jobs" --store "$T/store" --out "$T/out" --json >"$T/summary.json"
end=$(date +%s.%N)
python3 - "$T/summary.json" "$start" "$end" "$config" "$jobs" "$quick" "$("$ET" --version)" "$PWD/scripts/bench" <<'PY'
import json, sys
summary, start, end, config, jobs, quick, version, lib = sys.argv[1:]
sys.path.insert(0, lib)
import provenance
d = json.load(open(summary))
wall = float(end) - float(start)
ran = [s for s in d["stages"] if s["status"] == "ran"]
assert d["ok"] and len(ran) == len(d["stages"]), "every stage must run, into an empty store"
print(json.dumps({
    "bench": "paper", "quick": quick == "true",
    "command": "scripts/bench-paper.sh" + (" --quick" if quick == "true" else ""),
    "date": provenance.today(),
    "machine": provenance.machine(eigentrace=version.split()[-1]),
    "config": config, "jobs": int(jobs), "instances": len(d["stages"]),
    "seconds": round(wall, 1), "wall": f"{int(wall // 60)} min {int(wall % 60)} s",
    "stage_seconds": round(sum(s.get("seconds", 0.0) for s in ran), 1),
}, indent=1))
PY
