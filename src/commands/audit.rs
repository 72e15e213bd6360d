//! `eigentrace audit`: the provenance of a file or hash, verified; `--reproduce`, `--cold`.

use crate::*;

pub(crate) fn cmd_audit(cli: &Cli, a: &AuditArgs) -> Result<(), Failure> {
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let found = pipeline::maintain::find_records(&store, &a.target).map_err(usage)?;
    let Some(rec) = found.first() else {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "{}: no record in {} produced this (is it from another store, or corrupt?)",
                a.target,
                cli.store.display()
            ),
        });
    };
    if a.cold {
        return cold_audit(cli, a, &store, rec);
    }
    let chain = pipeline::maintain::audit(&store, rec)?;
    let problems: usize = chain.iter().map(|n| n.problems.len()).sum();
    let mut repro = None;
    if a.reproduce {
        let runner = audit_runner(a)?;
        let _lock = store.lock(LockMode::Wait, &|h| {
            eprintln!("waiting for the store lock (held by {h})")
        })?;
        repro = Some(pipeline::maintain::reproduce(&store, rec, &runner)?);
    }
    let repro_bad = repro
        .as_ref()
        .map(|r| r.values().filter(|(a, b)| a != b).count())
        .unwrap_or(0);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "target": a.target,
                "record": rec.key,
                "chain": chain,
                "problems": problems,
                "reproduce": repro,
                "ok": problems == 0 && repro_bad == 0,
            }))
            .unwrap()
        );
    } else {
        println!(
            "{} was produced by {} (experiment {})",
            a.target, rec.id, rec.experiment
        );
        for n in &chain {
            println!("\n{} [{}]", n.id, n.kind);
            println!("  key      {}", n.key);
            println!("  code     {} v{}   env {}", n.kind, n.code_version, n.env);
            println!("  params   {}", n.params);
            for (role, key) in &n.inputs {
                println!("  input    {role} ← {}", &key[..16]);
            }
            let ok = n.outputs.values().filter(|(_, ok)| *ok).count();
            println!(
                "  outputs  {} of {} verified; content {}",
                ok,
                n.outputs.len(),
                &n.content[..16]
            );
            for p in &n.problems {
                println!("  PROBLEM  {p}");
            }
        }
        if let Some(r) = &repro {
            println!("\nreproduce {}:", rec.id);
            for (name, (want, got)) in r {
                let same = if want == got {
                    "identical"
                } else {
                    "DIFFERENT"
                };
                println!("  {same:<9} {name}");
            }
        }
        println!(
            "\n{} stages, {} problems{}",
            chain.len(),
            problems,
            repro
                .as_ref()
                .map(|r| format!(
                    ", {} of {} outputs reproduced byte for byte",
                    r.len() - repro_bad,
                    r.len()
                ))
                .unwrap_or_default()
        );
    }
    if problems > 0 || repro_bad > 0 {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "audit found {problems} problem(s) and {repro_bad} differing output(s)"
            ),
        });
    }
    Ok(())
}

/// The stage runner `audit --reproduce` and `--cold` execute with: every
/// core, data paths relative to the working directory.
pub(crate) fn audit_runner(a: &AuditArgs) -> Result<executor::StageRunner, Failure> {
    Ok(executor::StageRunner::new(
        resolve_device(a.device)?,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::env::current_dir()?,
    ))
}

pub(crate) fn cold_audit(
    cli: &Cli,
    a: &AuditArgs,
    store: &Store,
    rec: &pipeline::Record,
) -> Result<(), Failure> {
    let runner = audit_runner(a)?;
    let _lock = store.lock(LockMode::Wait, &|h| {
        eprintln!("waiting for the store lock (held by {h})")
    })?;
    let rows = cold::audit(store, rec, &runner, a.samples.max(1))
        .map_err(|e| usage(anyhow::anyhow!(e)))?;
    let max = |f: &dyn Fn(&cold::ColdRow) -> f64, trusted: bool| {
        rows.iter()
            .filter(|r| !trusted || r.trusted)
            .map(f)
            .fold(0f64, f64::max)
    };
    let (ev, sub) = (
        max(&|r| r.eigenvalue_rel_diff, true),
        max(&|r| r.subspace_diff, true),
    );
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "record": rec.key,
                "id": rec.id,
                "rows": rows,
                "max_eigenvalue_rel_diff_trusted": ev,
                "max_subspace_diff_trusted": sub,
            }))
            .unwrap()
        );
    } else {
        println!(
            "cold audit of {} (warm-started) against random starts:",
            rec.id
        );
        println!(
            "  {:>8}  {:<15} {:>14} {:>14}  trusted",
            "step", "operator", "max |Δλ|/|λ|", "1 − q"
        );
        for r in &rows {
            println!(
                "  {:>8}  {:<15} {:>14.3e} {:>14.3e}  {}",
                r.step, r.operator, r.eigenvalue_rel_diff, r.subspace_diff, r.trusted
            );
        }
        println!(
            "largest over trusted pairs: eigenvalue {ev:.3e} (relative), subspace {sub:.3e} \
             (1 − q; a last rank that is nearly degenerate with the next makes the top-k span \
             itself uncertain)"
        );
    }
    Ok(())
}
