#!/usr/bin/env python3
"""The README's performance tables, generated from the benchmarks' results.

    scripts/bench-tables.py            # rewrite the README's generated blocks
    scripts/bench-tables.py --check    # exit 1 if a block differs from its results
    scripts/bench-tables.py --results DIR --readme FILE [--check]

Each benchmark writes a JSON file into bench/results/ (`make bench`): the
numbers, what machine they were measured on, the date and the command that
produced them. The README holds each table between

    <!-- bench:NAME -->  ...  <!-- /bench:NAME -->

and this script renders every block from bench/results/NAME.json, so that a
table and its source cannot disagree (a test runs --check). A block whose
results file is missing is an error; a quick-mode result (CI's) is refused.
Standard library only.
"""
import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fmt_int(n):
    return f"{int(n):,}"


def machine_line(r):
    m = r["machine"]
    threads = f", {m['threads']} threads" if "threads" in m else ""
    torch = f", torch {m['torch']}" if "torch" in m else ""
    return (
        f"Measured by `{r['command']}` on {r['date']}: {m['cpu']}, "
        f"{m['cores']} cores{threads}{torch}, {m['os']}."
    )


def engine(r):
    rows = [
        "| tool | median no-op |",
        "| --- | --- |",
        f"| `eigentrace run` | {r['eigentrace_run_median_s']:.3f} s |",
        f"| `eigentrace status` | {r['eigentrace_status_median_s']:.3f} s |",
        f"| `dvc status` ({r['dvc_version']}) | {r['dvc_status_median_s']:.3f} s |",
        f"| ratio `dvc status` / `eigentrace run` | **{r['ratio']:.0f}×** |",
        "",
        f"{r['instances']} instances, the same DAG for both tools, median of {r['runs']} runs. "
        + machine_line(r),
    ]
    return rows


TRAIN_TARGETS = {3466: "2×", 26122: "1.5×"}


def train(r):
    rows = [
        "| widths | optimizer | P | rows per step | ours ms/step | ours, the one pass on rayon | ours, the optimizer as ATen's passes | eager ms/step | speedup | target | ours GFLOP/s | GEMM GFLOP/s at these shapes | of the GEMM floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["results"]:
        speedup = x["torch_eager_ms_per_step"] / x["ours_ms_per_step"]
        batch = x.get("batch")
        per_step = f"{batch} of {fmt_int(x['rows'])}" if batch else f"{fmt_int(x['rows'])} (full batch)"
        target = TRAIN_TARGETS.get(x["params"], "")
        p = x.get("ours_optimizer_as_passes_ms_per_step")
        passes = f"{p:.3f}" if p is not None else "–"
        q = x.get("ours_pass_on_rayon_ms_per_step")
        on_rayon = f"{q:.3f}" if q is not None else "–"
        if batch and not target:
            target = "80% of the floor"
        rows.append(
            f"| {'-'.join(map(str, x['widths']))} | {x.get('optimizer', 'adam')} | {fmt_int(x['params'])} | {per_step} "
            f"| {x['ours_ms_per_step']:.3f} | {on_rayon} | {passes} | {x['torch_eager_ms_per_step']:.3f} "
            f"| **{speedup:.2f}×** | {target} "
            f"| {x['achieved_gflops']:.0f} | {x['gemm_gflops']:.0f} "
            f"| {100 * x['achieved_gflops'] / x['gemm_gflops']:.0f}% |"
        )
    rows += [
        "",
        f"f32, {r['steps']} steps per round, {r['rounds']} rounds each side, medians; Adam at lr 1e-3, plain SGD at lr 0.1 "
        "(torch.optim's on the eager side). "
        "Minibatch rows are gathered by index each step, on both sides. "
        "Ours runs the optimizer as one pass over θ and its state, on ATen's OpenMP team; the two columns beside it are "
        "the same step with that pass on rayon's pool, and with the optimizer as ATen's elementwise passes (as on CUDA: "
        "nine for Adam, two for SGD), timed in the same rounds. "
        "The GEMM floor is the step's matmuls alone, at its shapes. " + machine_line(r),
    ]
    return rows


def hessian(r):
    sp = r["scipy_eigsh"]
    pw = r["power_iteration"]
    ws = r["warm_start"]
    blocks = r["rop_blocks"]
    b_label = " / ".join(str(b["b"]) for b in blocks)
    b_ms = " / ".join(f"{b['seconds_per_vector'] * 1e3:.3f}" for b in blocks)
    b_vs = " / ".join(f"{b['vs_autograd']:.2f}×" for b in blocks)
    b_gf = " / ".join(f"{b['gflops']:.0f}" for b in blocks)
    b_of = " / ".join(f"{100 * b['of_gemm']:.0f}%" for b in blocks)
    rows = [
        "| measurement | result | target |",
        "| --- | --- | --- |",
        f"| HVP (double backprop, cached graph) ÷ gradient | {r['hvp_s'] * 1e3:.3f} ms ÷ "
        f"{r['gradient_s'] * 1e3:.3f} ms = **{r['hvp_s'] / r['gradient_s']:.2f}** | ≤ 1.5 |",
        f"| R-operator H·V per vector, b = {b_label} | {b_ms} ms: {b_vs} autograd's speed; "
        f"{b_gf} GFLOP/s = {b_of} of one f64 GEMM at the first layer's shape "
        f"({r['gemm_gflops']:.0f} GFLOP/s) | |",
        f"| our Lanczos vs scipy `eigsh` on a LinearOperator of torch HVPs | "
        f"{r['ours']['seconds']:.3f} s ({r['ours']['hvps']} HVPs) vs {sp['seconds']:.3f} s "
        f"({sp['hvps']} HVPs): **{r['ours']['seconds'] / sp['seconds']:.2f}×** the time; "
        f"eigenvalues agree to {r['eigenvalue_max_rel_diff']:.1e} | ≤ 0.5× |",
        f"| deflated power iteration (PyHessian's method) to the same residual | "
        f"{'≥ ' if pw['capped'] else ''}{fmt_int(pw['hvps'])} HVPs: "
        f"**{pw['hvps'] / r['ours']['hvps']:.1f}×** more than ours | ≥ 10× |",
        f"| warm start from the checkpoint 10 steps later | {ws['warm_hvps']} HVPs instead of "
        f"{ws['cold_hvps']} ({ws['warm_s']:.3f} s instead of {ws['cold_s']:.3f} s) | |",
        "",
        "| block b | " + " | ".join(str(b["block"]) for b in r["block_lanczos"]) + " |",
        "| --- | " + " | ".join("---" for _ in r["block_lanczos"]) + " |",
        "| HVPs to tol 1e-6 | " + " | ".join(str(b["hvps"]) for b in r["block_lanczos"]) + " |",
        "| block iterations | "
        + " | ".join(str(b["iterations"]) for b in r["block_lanczos"])
        + " |",
        "| seconds | "
        + " | ".join(
            (f"**{b['seconds']:.3f}**" if b["block"] == r["default_block"] else f"{b['seconds']:.3f}")
            for b in r["block_lanczos"]
        )
        + " |",
        "",
        f"{'-'.join(map(str, r['widths']))} tanh MLP (P = {fmt_int(r['params'])}) after 200 Adam "
        f"steps, N = {fmt_int(r['rows'])} rows, f64, k = {r['k']}, tol {('%g' % r['tol']).replace('e-0', 'e-')}; Lanczos "
        "times are medians of 3. " + machine_line(r),
    ]
    return rows


def hessian_scale(r):
    rows = [
        "| widths | P | dtype | one GEMM (GFLOP/s) | R-operator b = 1 | of the GEMM rate | its GEMMs alone | autograd HVP | Lanczos per product, unrestarted | in the products | with a 40-vector restarted basis | in the products | unrestarted with an f64 basis |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["results"]:
        b1 = next(b for b in x["rop_blocks"] if b["b"] == 1)
        stage = x["dtype"] == "f32"
        plain = next(l for l in x["lanczos"] if l["max_basis"] is None and l.get("f32_basis", False) == stage)
        restarted = next(l for l in x["lanczos"] if l["max_basis"] is not None)
        f64_basis = next((l for l in x["lanczos"] if l["max_basis"] is None and stage and l.get("f32_basis") is False), None)
        other = f"{f64_basis['seconds_per_product'] * 1e3:.1f} ms" if f64_basis else "(the stage's)"
        fl = x.get("gemm_floor_s")
        alone = f"{100 * x['product_gemm_flops'] / fl / (x['gemm_gflops'] * 1e9):.0f}%" if fl else "–"
        rows.append(
            f"| {'-'.join(map(str, x['widths']))} | {fmt_int(x['params'])} | {x['dtype']} "
            f"| {x['gemm_gflops']:.0f} | {b1['seconds_per_vector'] * 1e3:.1f} ms | **{100 * b1['of_gemm_rate']:.0f}%** "
            f"| {alone} "
            f"| {x['autograd_s'] * 1e3:.1f} ms | {plain['seconds_per_product'] * 1e3:.1f} ms "
            f"| {100 * plain['in_products']:.0f}% | {restarted['seconds_per_product'] * 1e3:.1f} ms "
            f"| {100 * restarted['in_products']:.0f}% | {other} |"
        )
    steps = r["results"][0]["lanczos"][0]["products"] if r["results"] else 0
    rows += [
        "",
        f"{fmt_int(r['rows'])} random rows, tanh, θ at initialization. \"Of the GEMM rate\": the "
        "product's GEMM flops (per layer, the forward R-pass, R(∇W) and R(δ) back: six GEMMs past "
        "the first layer, two in it) over its time, against one GEMM at the first layer's shape; "
        "\"its GEMMs alone\": the same GEMMs at the product's shapes, without the rest of the product, "
        "against the same rate. "
        f"Lanczos: {steps} products with no early stop, the time inside the products against the "
        "rest (reorthogonalization, the projected eigenproblem, copies), with the basis the stage "
        "uses: f32 in f32 runs, f64 in f64 runs; the last column times an f32 run's Lanczos with "
        "an f64 basis in the same run. " + machine_line(r),
    ]
    return rows


PYHESSIAN_LABEL = {
    "eigenvalues": "top 10 eigenvalues",
    "trace": "trace, PyHessian at its defaults",
    "trace_1000": "trace, PyHessian at 1000 probes",
    "density": "spectral density",
}


def pyhessian(r):
    rows = [
        "| task | PyHessian (settings) | time | products | error | eigentrace (settings) | time | products | error | speedup | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in r["tasks"]:
        p, o = t["pyhessian"], t["ours"]
        ps, os_ = p["summary"], o["summary"]
        mark = "" if t["equal_accuracy_budget"] else " (no budget matched PyHessian's error)"
        rows.append(
            f"| {PYHESSIAN_LABEL.get(t['task'], t['task'])} | `{p['settings']}` | {ps['seconds']:.3f} s "
            f"| {ps['hvps']:.0f} | {ps['error']:.1e} | {o['settings']} | {os_['seconds']:.3f} s "
            f"| {os_['hvps']:.0f} | {os_['error']:.1e} | **{t['speedup']:.1f}×**{mark} | ≥ 5× |"
        )
    rows += [
        "",
        f"PyHessian {r['pyhessian_version']} (pip) and eigentrace on one checkpoint: "
        f"{'-'.join(map(str, r['widths']))} tanh MLP (P = {fmt_int(r['params'])}) after 200 Adam steps, "
        f"N = {fmt_int(r['rows'])} rows, {r['dtype']}, the same torch and threads. Errors against "
        f"PyTorch's dense Hessian: the top ten's worst |λ̂ − λ|/λ₁; the trace's relative error; the "
        f"density's 1-Wasserstein distance to the true spectrum over its width. Times are medians and "
        f"errors means over {r['seeds']} seeds (five for 1000 probes); each call includes building its "
        f"operator. Our density budget is the cheapest of a fixed ladder whose error, on separate seeds, "
        f"is no worse than PyHessian's. " + machine_line(r),
    ]
    return rows


def metrics(r):
    return [
        f"The whole metrics stage on {r['checkpoints']} checkpoints × k = {r['k']} × "
        f"P = {fmt_int(r['params'])} (reading a zstd vectors.arrow, every output written): "
        f"**{r['seconds']:.1f} s**, against a 10 s target. " + machine_line(r),
    ]


def build(r):
    share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(r["compile_share"].items())[:4])
    lines = []
    if r.get("first_run_s") is not None:
        parts = r["venv_s"] + r["wall_s"] + r["run_s"]
        if abs(parts - r["first_run_s"]) > 0.2:
            raise ValueError(f"first_run_s {r['first_run_s']} is not the sum of its phases ({parts:.1f})")
        lines.append(
            f"A newcomer's first `make run`, phase by phase: **{r['first_run']}** in all. "
            f"Installing the libtorch venv from PyPI into an empty folder: {r['venv_s']:.0f} s; "
            f"the release build of both binaries (`cargo build --release --locked` into an "
            f"empty target dir, crates already downloaded): {r['wall']} "
            f"({r['cpu_s']:.0f} CPU-seconds; of the compile time: {share}); "
            f"`eigentrace run configs/quick.toml` into an empty store: {r['run_s']:.0f} s. "
            + machine_line(r)
        )
    else:
        lines.append(
            f"A clean release build of both binaries (`cargo build --release --locked` into an "
            f"empty target dir, crates already downloaded): **{r['wall']}** "
            f"({r['cpu_s']:.0f} CPU-seconds; of the compile time: {share}). "
            + machine_line(r)
        )
    return lines


def paper(r):
    return [
        f"`eigentrace run {r['config']} -j {r['jobs']}` into an empty store: "
        f"**{r['wall']}** for {r['instances']} stage instances. " + machine_line(r),
    ]


def storage_bound(file, column):
    """The first-order bound of docs/science.md §4d, in words."""
    if column in ("principal_angles", "grassmann"):
        return "√(2δ) near 0"
    if file.startswith("findings/"):
        return "derived"
    if column.startswith("frac"):
        return "1/P per swap"
    if column in ("ipr", "p_ipr", "p_ipr_min", "p_ipr_mean", "p_ipr_max"):
        return "4u"
    if column == "vector":
        return "u"
    return "2u"


def storage(r):
    res = r["results"]
    head = "| output | column | bound |"
    rule = "| --- | --- | --- |"
    for x in res:
        name = os.path.basename(x["config"])
        head += f" {name} (P = {fmt_int(x['params'])}) f16 | bf16 |"
        rule += " --- | --- |"
    rows = [head, rule]
    keys = []
    for x in res:
        for c in x["columns"]:
            k = (c["file"], c["column"])
            if k not in keys and not c["file"].startswith("report/"):
                keys.append(k)

    def cell(x, k, d):
        for c in x["columns"]:
            if (c["file"], c["column"]) == k:
                e = c.get(d)
                if e is None or e["differing"] == 0:
                    return "0"
                if e["relative"] is None:
                    return f"{e['differing']} of {e['values']} rows"
                if k[1].startswith("frac"):
                    return f"{e['max_abs'] * x['params']:.1f}/P"
                return f"{e['relative']:.1e}"
        return "—"

    shown = 0
    for k in sorted(keys, key=lambda k: (not k[0].endswith("vectors.arrow"), k)):
        cells = [cell(x, k, d) for x in res for d in ("f16", "bf16")]
        if all(c in ("0", "—") for c in cells):
            continue
        shown += 1
        rows.append(f"| `{k[0]}` | `{k[1]}` | {storage_bound(*k)} | " + " | ".join(cells) + " |")
    sizes = " | ".join(
        f"{x['vector_bytes']['f16'] / x['vector_bytes']['f32']:.2f} | {x['vector_bytes']['bf16'] / x['vector_bytes']['f32']:.2f}"
        for x in res
    )
    rows.append(f"| every `vectors.arrow` | bytes, against f32 | ½ | {sizes} |")
    u = r["unit_roundoff"]
    rows += [
        "",
        f"Each cell: max |Δ| over the column (the worst run) over the column's largest |value| in the f32 run "
        f"(for frac50/frac90, max |Δ| in units of 1/P); 0: identical. `findings.arrow` holds statistics derived "
        f"from the metrics (means over seeds, fitted exponents, the null's quantiles). u = {u['f16']:.1e} (f16), {u['bf16']:.1e} (bf16). Every other column of every output "
        f"({sum(len(x['columns']) for x in res) - shown} in all, the eigenvalues, training and every flag among them) is identical. "
        + machine_line(r),
    ]
    return rows


def scale(r):
    rows = [
        "| config | widths | P | wall time | peak memory (all processes) | largest process | store on disk | of which vectors | of which checkpoints |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    gb = lambda b: f"{b / 1e9:.2f} GB"
    for x in r["results"]:
        rows.append(
            f"| {x['config']} | {'-'.join(map(str, x['widths']))} | {fmt_int(x['params'])} | **{x['wall']}** "
            f"| {gb(x['peak_rss_bytes'])} | {gb(x['largest_process_rss_bytes'])} | {gb(x['store_bytes'])} "
            f"| {gb(x['vector_bytes'])} | {gb(x['checkpoint_bytes'])} |"
        )
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in r["results"][0]["stage_seconds"].items())
    rows += [
        "",
        f"`eigentrace run -j {r['jobs']}` into an empty store; the stages' own times, summed over "
        f"instances, for the first row: {stages}. Peak memory sums every process of the run, "
        "sampled every 0.1 s. " + machine_line(r),
    ]
    return rows


def null(r):
    rows = [
        "| null.tol | block | max_basis | products per replica | converged | top-k subspace overlap with the reference (worst replica) | largest eigenvalue shift, over \\|λ₁\\| | largest P·IPR change (one vector) | band mean P·IPR change (worst rank) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["results"]:
        ref = x["tol"] == r["reference_tol"] and x.get("block", 1) == 1 and not x.get("max_basis")
        tol = f"{x['tol']:g}" + (" (reference)" if ref else "")
        pct = lambda v: "0" if v == 0 else f"{100 * v:.1f}%" if v >= 1e-3 else f"{100 * v:.2f}%"
        conv = "yes" if x["converged"] else "**no** (max_iter)"
        rows.append(
            f"| {tol} | {x.get('block', 1)} | {x.get('max_basis') or '–'} | {x['hvps_per_replica']:.0f} | {conv} "
            f"| {x['subspace_overlap_min']:.3f} | {x['eigenvalue_diff']:.1e} "
            f"| {pct(x['p_ipr_rel_diff_max'])} | {pct(x['p_ipr_band_mean_rel_diff'])} |"
        )
    w = "-".join(map(str, r["widths"]))
    rows += [
        "",
        f"The null of {w} (P = {fmt_int(r['params'])}), k = {r['k']}, {r['replicas']} replicas, f32, each "
        f"compared with the same initialization at null.tol = {r['reference_tol']:g}, block 1, no max_basis. "
        "Products: Lanczos's (vectors, a block of b counting b), plus the rounding-level probe; converged: every "
        "replica passed the stop test within max_iter (300). " + machine_line(r),
    ]
    return rows


RENDER = {
    "engine": engine,
    "train": train,
    "hessian": hessian,
    "hessian_scale": hessian_scale,
    "pyhessian": pyhessian,
    "metrics": metrics,
    "build": build,
    "paper": paper,
    "storage": storage,
    "scale": scale,
    "null": null,
}

BLOCK = re.compile(r"(<!-- bench:(\w+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.S)


def render(readme, results_dir):
    errors = []

    def one(m):
        name = m.group(2)
        if name not in RENDER:
            errors.append(f"unknown block bench:{name}")
            return m.group(0)
        path = os.path.join(results_dir, f"{name}.json")
        try:
            r = json.load(open(path))
        except (OSError, ValueError) as e:
            errors.append(f"{path}: {e} (run `make bench`)")
            return m.group(0)
        if r.get("quick"):
            errors.append(f"{path}: a --quick result; the README takes full runs only")
            return m.group(0)
        try:
            body = "\n".join(RENDER[name](r)) + "\n"
        except (KeyError, ValueError) as e:
            errors.append(f"{path}: {e!r}")
            return m.group(0)
        return m.group(1) + body + m.group(4)

    text = BLOCK.sub(one, readme)
    return text, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README is not up to date")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    a = ap.parse_args()
    readme = open(a.readme).read()
    text, errors = render(readme, a.results)
    if errors:
        for e in errors:
            print(f"bench-tables: {e}", file=sys.stderr)
        return 2
    if not BLOCK.search(readme):
        print(f"bench-tables: {a.readme} has no <!-- bench:NAME --> block", file=sys.stderr)
        return 2
    if a.check:
        if text != readme:
            names = [
                m.group(2)
                for m, n in zip(BLOCK.finditer(readme), BLOCK.finditer(text))
                if m.group(0) != n.group(0)
            ]
            print(
                f"bench-tables: {a.readme} disagrees with {a.results} in "
                f"{', '.join(names)}; run scripts/bench-tables.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if text != readme:
        with open(a.readme, "w") as f:
            f.write(text)
        print(f"bench-tables: {a.readme} updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
