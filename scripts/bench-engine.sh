#!/usr/bin/env bash
# bench-engine.sh: time a no-op `eigentrace run` of a sweep against `dvc status`
# on the same DAG, side by side, on this machine.
#
#   scripts/bench-engine.sh [--quick] [--json FILE] [path/to/eigentrace]
#
# Default binary: ${CARGO_TARGET_DIR:-target}/release/eigentrace. dvc comes from
# PyPI into a venv cached in ${XDG_CACHE_HOME:-~/.cache}/eigentrace/bench-dvc-venv
# (reused while its stamp matches; delete the folder to reinstall). No network
# other than PyPI; dvc analytics and update checks are switched off.
#
# --quick: 2 seeds and 3 timed runs (CI checks that it runs and that its
# output is consistent; the times mean nothing). --json FILE: the results,
# with the machine and the date, for scripts/bench-tables.py.
# Environment: BENCH_RUNS (timed no-op runs per tool, default 10).
#
# The DAG is the bench config's own: its instances and their inputs come
# from `eigentrace status --json`, and dvc.yaml gets one stage per instance
# with the same dependencies (dataset, null, 33 x train -> hessian ->
# metrics, findings, report). Each tool is run once to populate, checked
# once to be fully up to date (untimed, also a warm-up), then timed
# BENCH_RUNS times; the median wall time is reported.
set -euo pipefail

QUICK=0
JSON_OUT=
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1; shift ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --json=*) JSON_OUT=${1#--json=}; shift ;;
    *) break ;;
  esac
done
if ((QUICK)); then
  RUNS=${BENCH_RUNS:-3}
  SEEDS=2
else
  RUNS=${BENCH_RUNS:-10}
  SEEDS=11                          # x 3 optimizers = 33 runs
fi
OPTIMIZERS=(sgd adam rmsprop)
NCHAINS=$((SEEDS * ${#OPTIMIZERS[@]}))

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-engine: error: %s\n' "$*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
ET=${1:-$target_dir/release/eigentrace}
[[ -x $ET ]] || die "no eigentrace binary at $ET (build it with 'make', or pass its path)"
ET=$(cd "$(dirname "$ET")" && pwd)/$(basename "$ET")
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"
command -v python3 >/dev/null || die "python3 is needed (for the dvc venv)"
command -v git >/dev/null || die "git is needed (dvc init wants a git repo)"

started=$SECONDS
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-engine.XXXXXX")
# shellcheck disable=SC2329  # invoked by the trap
cleanup() { chmod -R u+w "$T" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

# now: wall clock in seconds with nanoseconds.
now() { date +%s.%N; }
# median of the numbers on stdin.
median() {
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) exit 1
    if (NR % 2) printf "%.3f", a[(NR + 1) / 2]
    else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# time_runs FILE CMD...: run CMD $RUNS times (output discarded), one wall time a line to FILE.
time_runs() {
  local file=$1 i t0 t1
  shift
  : >"$file"
  for ((i = 1; i <= RUNS; i++)); do
    t0=$(now)
    "$@" >/dev/null 2>&1 || die "timed run $i failed: $*"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }' >>"$file"
  done
}

# ---------------------------------------------------------------- dvc venv
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/eigentrace
venv=$cache_root/bench-dvc-venv
stamp_want="dvc venv v1; $(python3 -c 'import sys; print(sys.version.split()[0], sys.executable)')"
if [[ -f $venv/.bench-stamp && $(cat "$venv/.bench-stamp") == "$stamp_want" && -x $venv/bin/dvc ]]; then
  say "dvc: reusing $venv"
else
  say "dvc: installing from PyPI into $venv (once; a minute or two)"
  rm -rf "$venv"
  mkdir -p "$cache_root"
  python3 -m venv "$venv" || die "python3 -m venv failed (is the venv module installed?)"
  "$venv/bin/pip" install -q --disable-pip-version-check dvc || die "pip install dvc failed"
  printf '%s\n' "$stamp_want" >"$venv/.bench-stamp"
fi
DVC=$venv/bin/dvc
# No telemetry, and dvc's per-repo state (normally /var/tmp/dvc) inside $T.
export DVC_NO_ANALYTICS=1 DVC_SITE_CACHE_DIR=$T/dvc-site-cache
dvc_version=$(cd "$T" && "$DVC" --version 2>/dev/null) || die "$DVC does not run"

# ---------------------------------------------------------------- eigentrace
say "eigentrace: $("$ET" --version) at $ET"
et_dir=$T/eigentrace
mkdir -p "$et_dir"
seeds=$(seq -s ', ' 0 $((SEEDS - 1)))
cat >"$et_dir/bench.toml" <<EOF
# bench-engine.sh: ${NCHAINS} runs (${SEEDS} seeds x ${#OPTIMIZERS[@]} optimizers), tiny stages.
name = "bench"
seeds = [${seeds}]
dtype = "f64"

[dataset]
kind = "gaussian_mixture"
classes = 3
dim = 4
samples = 60
separation = 2.5
test_fraction = 0.25
seed = 0

[model]
widths = [4, 6, 3]
activation = "tanh"
init = "torch_default"

[train]
steps = 5
log_every = 5
checkpoints = { every = 5 }

[[optimizer]]
name = "sgd"
lr = 0.1

[[optimizer]]
name = "adam"
lr = 1e-3

[[optimizer]]
name = "rmsprop"
lr = 1e-3

[hessian]
k = 2
EOF
et_run=("$ET" run "$et_dir/bench.toml" --store "$et_dir/store" --out "$et_dir/out" --device cpu)

# The DAG, as eigentrace builds it: every instance and its inputs.
"$ET" status "$et_dir/bench.toml" --store "$et_dir/store" --device cpu --json >"$et_dir/dag.json" \
  || die "eigentrace status --json failed"
NSTAGES=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["stages"]))' "$et_dir/dag.json")

say "eigentrace: populating (computes all $NSTAGES instances)"
t0=$(now)
"${et_run[@]}" >"$et_dir/populate.log" 2>&1 || { tail -20 "$et_dir/populate.log" >&2; die "eigentrace populate run failed"; }
et_populate=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')

say "eigentrace: checking that a second run caches everything"
"${et_run[@]}" --json >"$et_dir/check.json" 2>"$et_dir/check.log" || { tail -20 "$et_dir/check.log" >&2; die "eigentrace check run failed"; }
et_check=$(python3 - "$et_dir/check.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
st = d["stages"]
bad = [s["id"] + ":" + s["status"] for s in st if s["status"] != "cached"]
print(len(st), "ok" if d["ok"] and not bad else "NOT-CACHED " + " ".join(bad[:5]))
EOF
)
read -r et_instances et_verdict <<<"$et_check"
[[ $et_verdict == ok ]] || die "eigentrace no-op run recomputed stages: $et_check"
[[ $et_instances == "$NSTAGES" ]] || die "eigentrace status lists $NSTAGES instances, its run reports $et_instances"

say "eigentrace: timing $RUNS no-op runs"
time_runs "$T/et.times" "${et_run[@]}"
et_median=$(median <"$T/et.times")

say "eigentrace: timing $RUNS 'eigentrace status' calls (read-only, for reference)"
time_runs "$T/ets.times" "$ET" status "$et_dir/bench.toml" --store "$et_dir/store" --device cpu
ets_median=$(median <"$T/ets.times")

# ---------------------------------------------------------------- dvc
say "dvc: $dvc_version"
dvc_dir=$T/dvc
mkdir -p "$dvc_dir"
(
  cd "$dvc_dir"
  git init -q .
  "$DVC" init -q
  "$DVC" config --local core.analytics false
  "$DVC" config --local core.check_update false
  # One dvc stage per eigentrace instance, depending on its inputs' outputs.
  python3 - "$et_dir/dag.json" >dvc.yaml <<'EOF'
import json, re, sys
stages = json.load(open(sys.argv[1]))["stages"]
# "s_" keeps every name a plain YAML string (an instance named null is not null).
name = lambda i: "s_" + re.sub(r"[^A-Za-z0-9_]", "_", i)
print("stages:")
for s in stages:
    n = name(s["id"])
    deps = [name(d) + ".txt" for d in s["inputs"]]
    print(f"  {n}:")
    print(f"    cmd: echo {n} | cat - {' '.join(deps)} > {n}.txt")
    if deps:
        print(f"    deps: [{', '.join(deps)}]")
    print(f"    outs: [{n}.txt]")
EOF
)
dvc_stages=$(grep -c '^  [A-Za-z_0-9]*:$' "$dvc_dir/dvc.yaml")
[[ $dvc_stages == "$NSTAGES" ]] || die "generated dvc.yaml has $dvc_stages stages, expected $NSTAGES"

say "dvc: populating with dvc repro ($NSTAGES stages; this is the slow part)"
t0=$(now)
(cd "$dvc_dir" && "$DVC" repro -q) >"$T/dvc-repro.log" 2>&1 || { tail -20 "$T/dvc-repro.log" >&2; die "dvc repro failed"; }
dvc_populate=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')

say "dvc: checking that dvc status reports everything up to date"
dvc_check=$(cd "$dvc_dir" && "$DVC" status --json 2>/dev/null) || die "dvc status failed"
[[ $(tr -d '[:space:]' <<<"$dvc_check") == "{}" ]] || die "dvc status is not clean after repro: ${dvc_check:0:300}"

say "dvc: timing $RUNS dvc status calls"
time_runs "$T/dvc.times" "$DVC" --cd "$dvc_dir" status
dvc_median=$(median <"$T/dvc.times")

# ---------------------------------------------------------------- report
ratio=$(awk -v d="$dvc_median" -v e="$et_median" 'BEGIN { if (e > 0) printf "%.1f", d / e; else print "inf" }')
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
minmax() { sort -g "$1" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f-%.3f", lo, hi }'; }

echo
echo "no-op check of a $NSTAGES-instance DAG (dataset, null, ${NCHAINS} x train->hessian->metrics, findings, report), median of $RUNS"
printf '%-34s %9s %12s %15s %11s\n' tool instances "median (s)" "range (s)" "populate (s)"
printf '%-34s %9s %12s %15s %11s\n' "eigentrace run ($("$ET" --version | awk '{print $2}'), cpu)" \
  "$et_instances" "$et_median" "$(minmax "$T/et.times")" "$et_populate"
printf '%-34s %9s %12s %15s %11s\n' "eigentrace status (reference)" \
  "$et_instances" "$ets_median" "$(minmax "$T/ets.times")" "-"
printf '%-34s %9s %12s %15s %11s\n' "dvc status ($dvc_version)" \
  "$dvc_stages" "$dvc_median" "$(minmax "$T/dvc.times")" "$dvc_populate"
echo "ratio dvc status / eigentrace run (median): ${ratio}x"
echo "machine: nproc=$(nproc), cpu=${cpu:-unknown}, $(uname -sm), python $(python3 -c 'import platform; print(platform.python_version())')"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo "total: $((SECONDS - started)) s"
if [[ -n $JSON_OUT ]]; then
  python3 - "$JSON_OUT" "$T" "$NSTAGES" "$dvc_stages" "$RUNS" "$QUICK" "$dvc_version" "$("$ET" --version)" "$repo/scripts/bench" <<'EOF'
import json, os, platform, statistics, sys
out, T, n, n_dvc, runs, quick, dvc_version, et_version, lib = sys.argv[1:]
sys.path.insert(0, lib)
import provenance
times = lambda f: [float(l) for l in open(os.path.join(T, f)) if l.strip()]
et, ets, dvc = times("et.times"), times("ets.times"), times("dvc.times")
med = lambda v: round(statistics.median(v), 3)
cmd = "scripts/bench-engine.sh" + (" --quick" if quick == "1" else "")
json.dump({
    "bench": "engine", "quick": quick == "1", "command": cmd,
    "date": provenance.today(),
    "machine": provenance.machine(python=platform.python_version(), eigentrace=et_version.split()[-1]),
    "instances": int(n), "dvc_stages": int(n_dvc), "runs": int(runs),
    "dvc_version": dvc_version,
    "eigentrace_run_s": et, "eigentrace_status_s": ets, "dvc_status_s": dvc,
    "eigentrace_run_median_s": med(et), "eigentrace_status_median_s": med(ets),
    "dvc_status_median_s": med(dvc), "ratio": round(med(dvc) / med(et), 1),
}, open(out, "w"), indent=1)
EOF
  say "results: $JSON_OUT"
fi
exit 0
