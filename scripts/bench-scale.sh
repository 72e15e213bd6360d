#!/usr/bin/env bash
# Studies at scale: configs/mnist-scale.toml (784-512-512-10, P = 669,706)
# and the same study at 784-1024-1024-10 (P = 1,863,690), each run with
# `eigentrace run -j 2` into an empty store. For each: the wall time, the
# peak memory of the whole process tree (sampled every 0.1 s from /proc),
# the largest single process's peak, and the bytes on disk by kind. JSON on
# stdout (`make bench BENCH=scale` keeps it in bench/results/scale.json).
#
#   scripts/bench-scale.sh [--quick] [path/to/eigentrace]
#
# About 20 minutes on 2 cores. --quick: configs/quick.toml only (CI checks
# the output's form; its numbers mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/prologue.sh bench-scale "$@"
python3 - "$ET" "$T" "$quick" "$("$ET" --version)" "$PWD/scripts/bench" <<'PY'
import json, os, re, subprocess, sys, time
et, tmp, quick, version, lib = sys.argv[1:]
quick = quick == "true"
sys.path.insert(0, lib)
import provenance
from study import file_bytes, mlp_params, mlp_widths

base = open("configs/quick.toml" if quick else "configs/mnist-scale.toml").read()
shapes = [None] if quick else [None, "[784, 1024, 1024, 10]"]


def tree_rss(root):
    """Resident bytes of `root` and every descendant, from /proc."""
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
                total += int(m.group(1)) * 1024 if m else 0
        except OSError:
            pass
    return total


def du(path):
    """Bytes allocated on disk under `path`."""
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(path) for f in fs)


rows = []
for widths in shapes:
    text = base if widths is None else re.sub(r"widths = \[[^\]]*\]", f"widths = {widths}", base, count=1)
    name = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
    if widths is not None:
        name += "-" + "-".join(re.findall(r"\d+", widths))
        text = re.sub(r'^name = "[^"]+"', f'name = "{name}"', text, count=1, flags=re.M)
    d = os.path.join(tmp, name)
    os.makedirs(d)
    cfg = os.path.join(d, "config.toml")
    open(cfg, "w").write(text)
    store = os.path.join(d, "store")
    t0 = time.time()
    proc = subprocess.Popen(
        [et, "run", cfg, "-j", "2", "--store", store, "--out", os.path.join(d, "out"), "--json"],
        stdout=subprocess.PIPE,
    )
    peak, largest, status = 0, 0, None
    while status is None:
        peak = max(peak, tree_rss(proc.pid))
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, largest = st, ru.ru_maxrss * 1024
        else:
            time.sleep(0.1)
    wall = time.time() - t0
    out = proc.stdout.read()
    assert os.waitstatus_to_exitcode(status) == 0, f"{name}: eigentrace run failed"
    summary = json.loads(out)
    ran = [s for s in summary["stages"] if s["status"] == "ran"]
    assert summary["ok"] and len(ran) == len(summary["stages"]), "every stage must run, into an empty store"
    w = mlp_widths(text)
    p = mlp_params(w)
    by_stage = {}
    for s in ran:
        kind = s["id"].split("[")[0]
        by_stage[kind] = round(by_stage.get(kind, 0.0) + s.get("seconds", 0.0), 1)

    def size(match):
        return file_bytes(os.path.join(d, "out"), match)

    rows.append({
        "config": name, "widths": w, "params": p, "seconds": round(wall, 1),
        "wall": f"{int(wall // 60)} min {int(wall % 60)} s",
        "peak_rss_bytes": peak, "largest_process_rss_bytes": largest,
        "store_bytes": du(store),
        "vector_bytes": size(lambda dp, f: f == "vectors.arrow"),
        "checkpoint_bytes": size(lambda dp, f: os.path.basename(dp) == "checkpoints"),
        "stage_seconds": by_stage, "instances": len(ran),
    })
    print(f"bench-scale: {name}: P = {p:,}, {rows[-1]['wall']}, peak {peak / 1e9:.2f} GB, "
          f"store {rows[-1]['store_bytes'] / 1e9:.2f} GB", file=sys.stderr)
print(json.dumps({
    "bench": "scale", "quick": quick,
    "command": "scripts/bench-scale.sh" + (" --quick" if quick else ""),
    "date": provenance.today(),
    "machine": provenance.machine(eigentrace=version.split()[-1]),
    "jobs": 2, "results": rows,
}, indent=1))
PY
