//! `eigentrace verify`: rehash every object; list the corrupt and the missing.

use crate::*;

pub(crate) fn cmd_verify(cli: &Cli) -> Result<(), Failure> {
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let rep = pipeline::maintain::verify(&store)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    } else {
        for h in &rep.corrupt {
            println!("corrupt  object {h} ({})", store.object_path(h).display());
        }
        for (id, key, name, h) in &rep.missing {
            println!(
                "missing  {name} of {id} (record {}): object {h}",
                &key[..16]
            );
        }
        for e in &rep.bad_records {
            println!("bad      {e}");
        }
        for e in &rep.unreadable {
            println!("unreadable object {e} (not verified: no permission to read it)");
        }
        println!(
            "{} objects rehashed, {} records checked: {} corrupt, {} missing, {} bad records, {} unreadable objects",
            rep.objects,
            rep.records,
            rep.corrupt.len(),
            rep.missing.len(),
            rep.bad_records.len(),
            rep.unreadable.len()
        );
    }
    if rep.ok() {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "the store at {} has problems; `eigentrace run` recomputes what they affect",
                cli.store.display()
            ),
        })
    }
}
