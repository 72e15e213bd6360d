//! `eigentrace gc`: remove what no current result needs.

use crate::*;

pub(crate) fn cmd_gc(cli: &Cli, a: &GcArgs) -> Result<(), Failure> {
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let _lock = lock_store(&store, &cli.store, a.no_wait, &|m| eprintln!("{m}"))?;
    store.sweep_tmp()?;
    let rep = pipeline::maintain::gc(&store, a.dry_run)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    } else {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        println!(
            "{verb} {} records and {} objects ({:.1} MB); kept {} records",
            rep.removed_records.len(),
            rep.removed_objects.len(),
            rep.freed_bytes as f64 / 1e6,
            rep.kept_records
        );
    }
    Ok(())
}
