#!/usr/bin/env bash
# The README's "first run" numbers: what a newcomer's first `make run` does,
# phase by phase, on the committed tree:
#   1. install the libtorch venv from PyPI into an empty folder
#      (scripts/bootstrap-libtorch.sh; pip's cache is not used);
#   2. the release build of both binaries (`cargo build --release --locked`)
#      into an empty target dir, with the crates already downloaded;
#   3. `eigentrace run configs/quick.toml` into an empty store.
# Prints each phase's wall time, their sum, the build's CPU time and the
# crates that take the most compile time (from cargo's --timings report,
# which it leaves in the target dir), as JSON on stdout (`make bench` keeps
# it in bench/results/build.json).
#
#   scripts/bench-build.sh            # HEAD
#   scripts/bench-build.sh <commit>   # any commit
#   scripts/bench-build.sh --quick    # CI: only the `experiment` crate, with
#                                     # the cached venv and no run, to check
#                                     # the script and its output
#
# It takes as long as a newcomer's first run (about 15 min on 2 cores), keeps
# both cores busy and needs ~5 GB of disk for the venv (removed after): run it
# on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
pkgs=()
if [[ ${1:-} == --quick ]]; then
  quick=true
  pkgs=(-p experiment)
  shift
fi
rev="${1:-HEAD}"
export BENCH_LIB="$PWD/scripts/bench"
work="$(mktemp -d "${TMPDIR:-/tmp}/eigentrace-build.XXXXXX")"
cleanup() {
  git worktree remove --force "$work/src" >/dev/null 2>&1 || true
  rm -rf "$work/venv" "$work/store" "$work/out"
  if $quick; then rm -rf "$work"; fi
}
trap cleanup EXIT
git worktree add --detach -q "$work/src" "$rev"
export CARGO_TARGET_DIR="$work/target"
if ! $quick; then
  export EIGENTRACE_TORCH_VENV="$work/venv"
fi
cd "$work/src"
echo "bench-build: $(git rev-parse --short HEAD), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(rustc --version)" >&2
now() { date +%s.%N; }

t0=$(now)
scripts/bootstrap-libtorch.sh >/dev/null
t1=$(now)
/usr/bin/time -f '%U %S' -o "$work/cpu" \
  scripts/with-libtorch.sh --no-python cargo build --release --locked --timings "${pkgs[@]}" >"$work/build.log" 2>&1 || {
  tail -20 "$work/build.log" >&2
  exit 1
}
t2=$(now)
run_s=null
if ! $quick; then
  "$CARGO_TARGET_DIR/release/eigentrace" run configs/quick.toml \
    --store "$work/store" --out "$work/out" >"$work/run.log" 2>&1 || {
    tail -20 "$work/run.log" >&2
    exit 1
  }
  t3=$(now)
  run_s=$(python3 -c "print(round($t3 - $t2, 1))")
fi
html=$(ls -t "$CARGO_TARGET_DIR"/cargo-timings/cargo-timing-*.html | head -1)
python3 - "$t0" "$t1" "$t2" "$run_s" "$work/cpu" "$html" "$quick" <<'PY'
import json, os, re, sys
t0, t1, t2 = map(float, sys.argv[1:4])
run_s = None if sys.argv[4] == "null" else float(sys.argv[4])
cpu_file, html, quick = sys.argv[5], sys.argv[6], sys.argv[7] == "true"
user, sys_ = map(float, open(cpu_file).read().split())
venv_s, wall = round(t1 - t0, 1), round(t2 - t1, 1)
text = open(html).read()
m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S)
units = json.loads(m.group(1)) if m else []
by = {}
for u in units:
    name = u["name"]
    group = "polars" if name.startswith("polars") else "arrow" if name.startswith("arrow") else name
    by[group] = by.get(group, 0.0) + u["duration"]
total = sum(by.values()) or 1.0
top = sorted(by.items(), key=lambda kv: -kv[1])[:8]
mins = lambda s: f"{int(s // 60)} min {int(s % 60)} s"
sys.path.insert(0, os.environ["BENCH_LIB"])
import provenance
first = None if run_s is None else round(venv_s + wall + run_s, 1)
print(json.dumps({
    "bench": "build", "quick": quick, "command": "scripts/bench-build.sh" + (" --quick" if quick else ""),
    "units": len(units),
    "date": provenance.today(),
    "machine": provenance.machine(),
    # quick mode reuses the cached venv: its venv_s is a no-op's time.
    "venv_s": venv_s,
    "wall_s": wall,
    "wall": mins(wall),
    "run_s": run_s,
    "first_run_s": first,
    "first_run": None if first is None else mins(first),
    "cpu_s": round(user + sys_, 1),
    "compile_share": {k: round(v / total, 3) for k, v in top},
    "timings": html,
}, indent=1))
PY
