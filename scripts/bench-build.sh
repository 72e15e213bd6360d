#!/usr/bin/env bash
# The README's "first build" number: a clean `make build` (the release build
# of both binaries, `cargo build --release --locked`) of the committed tree,
# into an empty target dir, with the crates already downloaded. Prints the
# wall time, the CPU time, and the crates that take the most compile time
# (from cargo's --timings report, which it also leaves in the target dir),
# as JSON on stdout (`make bench` keeps it in bench/results/build.json).
#
#   scripts/bench-build.sh            # HEAD
#   scripts/bench-build.sh <commit>   # any commit
#   scripts/bench-build.sh --quick    # CI: only the `experiment` crate, to
#                                     # check the script and its output
#
# It takes as long as a newcomer's first build (about 12 min on 2 cores) and
# keeps both cores busy: run it on an otherwise idle machine.
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
trap 'rm -rf "$work/src"' EXIT
git worktree add --detach -q "$work/src" "$rev"
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true' EXIT
export CARGO_TARGET_DIR="$work/target"
scripts/bootstrap-libtorch.sh >/dev/null
cd "$work/src"
echo "bench-build: $(git rev-parse --short HEAD), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(rustc --version)" >&2
start=$(date +%s.%N)
/usr/bin/time -f '%U %S' -o "$work/cpu" \
  scripts/with-libtorch.sh --no-python cargo build --release --locked --timings "${pkgs[@]}" >"$work/build.log" 2>&1 || {
  tail -20 "$work/build.log" >&2
  exit 1
}
end=$(date +%s.%N)
html=$(ls -t "$CARGO_TARGET_DIR"/cargo-timings/cargo-timing-*.html | head -1)
python3 - "$start" "$end" "$work/cpu" "$html" "$quick" <<'EOF'
import json, os, re, sys
start, end, cpu_file, html = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
quick = sys.argv[5] == "true"
user, sys_ = map(float, open(cpu_file).read().split())
wall = end - start
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
sys.path.insert(0, os.environ["BENCH_LIB"])
import provenance
print(json.dumps({
    "bench": "build", "quick": quick, "command": "scripts/bench-build.sh" + (" --quick" if quick else ""),
    "units": len(units),
    "date": provenance.today(),
    "machine": provenance.machine(),
    "wall_s": round(wall, 1),
    "wall": f"{int(wall // 60)} min {int(wall % 60)} s",
    "cpu_s": round(user + sys_, 1),
    "compile_share": {k: round(v / total, 3) for k, v in top},
    "timings": html,
}, indent=1))
EOF
# The quick check keeps nothing; a full measurement keeps its timings report.
if $quick; then
  git worktree remove --force "$work/src" >/dev/null 2>&1 || true
  rm -rf "$work"
fi
