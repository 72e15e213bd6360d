#!/usr/bin/env bash
# What storing the eigenvectors in f16 or bf16 (`hessian.vector_dtype`) does
# to every number downstream. Each config runs three times into one store
# (training is shared; the hessian and null stages differ only in how they
# store their vectors), and `eigentrace compare` measures every column of
# every output of the f16 and bf16 runs against the f32 run. JSON on stdout
# (`make bench BENCH=storage` keeps it in bench/results/storage.json).
#
#   scripts/bench-storage.sh [--quick] [path/to/eigentrace]
#
# configs/quick.toml (P = 1,476) and configs/mnist-scale.toml (P = 669,706):
# about 15 minutes on 2 cores. --quick: quick.toml only (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/prologue.sh bench-storage "$@"
python3 - "$ET" "$T" "$quick" "$("$ET" --version)" "$PWD/scripts/bench" <<'PY'
import json, os, re, subprocess, sys
et, tmp, quick, version, lib = sys.argv[1:]
quick = quick == "true"
sys.path.insert(0, lib)
import provenance
from study import file_bytes, mlp_params, mlp_widths

configs = ["configs/quick.toml"] + ([] if quick else ["configs/mnist-scale.toml"])
UNIT = {"f16": 2.0**-11, "bf16": 2.0**-8}
store = os.path.join(tmp, "store")
results = []
for path in configs:
    base = open(path).read()
    name = re.search(r'^name = "([^"]+)"', base, re.M).group(1)
    params = mlp_params(mlp_widths(base))
    sizes, diffs = {}, {}
    for d in ["f32", "f16", "bf16"]:
        text = re.sub(r'^name = "[^"]+"', f'name = "{name}-{d}"', base, count=1, flags=re.M)
        text = re.sub(r"^\[hessian\]\n", f'[hessian]\nvector_dtype = "{d}"\n', text, count=1, flags=re.M)
        assert f'vector_dtype = "{d}"' in text
        cfg = os.path.join(tmp, f"{name}-{d}.toml")
        open(cfg, "w").write(text)
        print(f"bench-storage: {name}, vector_dtype = {d}", file=sys.stderr)
        subprocess.run([et, "run", cfg, "-j", "2", "--store", store, "--out", os.path.join(tmp, "out")],
                       check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(tmp, "out", f"{name}-{d}")
        sizes[d] = file_bytes(out, lambda dp, f: f == "vectors.arrow")
        if d != "f32":
            r = subprocess.run([et, "--json", "compare", os.path.join(tmp, "out", f"{name}-f32"), out],
                               check=True, capture_output=True, text=True)
            c = json.loads(r.stdout)
            assert not c["missing_in_b"], c["missing_in_b"]
            # Per file kind (runs/<run>/ dropped) and column: the worst over runs.
            for col in c["columns"]:
                assert col.get("mismatch") is None, col
                kind = re.sub(r"^runs/[^/]+/", "", col["file"])
                key = f"{kind}:{col['column']}"
                e = diffs.setdefault(key, {"file": kind, "column": col["column"]})
                prev = e.get(d)
                rel = col["relative"]
                cur = {"relative": rel, "max_abs": col["max_abs"], "differing": col["differing"],
                       "values": col["values"]}
                if prev is None or (rel or 0) > (prev["relative"] or 0) or (rel is None and col["differing"] > prev["differing"]):
                    e[d] = cur
    results.append({
        "config": path, "params": params, "vector_bytes": sizes,
        "columns": sorted(diffs.values(), key=lambda e: (e["file"], e["column"])),
    })
print(json.dumps({
    "bench": "storage", "quick": quick,
    "command": "scripts/bench-storage.sh" + (" --quick" if quick else ""),
    "date": provenance.today(),
    "machine": provenance.machine(eigentrace=version.split()[-1]),
    "unit_roundoff": UNIT, "results": results,
}, indent=1))
PY
