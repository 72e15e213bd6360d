# The study benchmarks' common start, sourced as
#   source scripts/bench/prologue.sh NAME "$@"
# from the repository root: takes [--quick] [path/to/eigentrace] and sets
# `quick` (true/false), `ET` (the binary, checked) and `T` (a temp dir,
# removed when the script exits, so the script must not `exec` away; kept,
# and named on stderr, with BENCH_KEEP=1, to look at what the study made).
name=$1
shift
quick=false
if [[ ${1:-} == --quick ]]; then
  quick=true
  shift
fi
ET=${1:-${CARGO_TARGET_DIR:-target}/release/eigentrace}
[[ -x $ET ]] || { echo "$name: no eigentrace binary at $ET (make build)" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
if [[ -n ${BENCH_KEEP:-} ]]; then
  trap 'echo "$name: kept $T" >&2' EXIT
else
  trap 'rm -rf "$T"' EXIT
fi
