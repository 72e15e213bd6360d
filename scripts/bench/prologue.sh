# The study benchmarks' common start, sourced as
#   source scripts/bench/prologue.sh NAME "$@"
# from the repository root: takes [--quick] [path/to/eigentrace] and sets
# `quick` (true/false), `ET` (the binary, checked) and `T` (a temp dir,
# removed when the script exits; so the script must not `exec` away).
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
trap 'rm -rf "$T"' EXIT
