//! `eigentrace status`: each stage fresh, stale or missing, and why.

use crate::*;

pub(crate) fn cmd_status(cli: &Cli, a: &StatusArgs) -> Result<(), Failure> {
    let exp = load(&a.config, a.force_size)?;
    let device = resolve_device(a.device)?;
    let graph = exp.graph(&torch_env(&device));
    // Reading only: a store that does not exist yet reads as empty, and
    // nothing is created.
    let store = Store::at(&cli.store).map_err(engine_err)?;
    let states = pipeline::status(&store, &graph, a.verify)?;
    // The view's own problems: results edited or replaced in out/.
    let view = if states.iter().all(|s| s.state == pipeline::State::Fresh) {
        let recs: Vec<pipeline::Record> = states
            .iter()
            .filter_map(|s| store.read_record(s.key.as_deref()?).ok().flatten())
            .collect();
        pipeline::view::problems(
            &store,
            &cli.out.join(&exp.name),
            &recs.iter().collect::<Vec<_>>(),
        )
    } else {
        Vec::new()
    };
    if cli.json {
        // Each stage with the ids of its inputs: the graph itself, e.g. for
        // a peer tool's equivalent DAG (scripts/bench-engine.sh).
        let mut stages = serde_json::to_value(&states).unwrap_or_default();
        if let Some(list) = stages.as_array_mut() {
            for (s, inst) in list.iter_mut().zip(&graph.instances) {
                let inputs: Vec<&str> = inst.inputs.iter().map(|(_, id)| id.as_str()).collect();
                s["inputs"] = json!(inputs);
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "experiment": exp.name, "stages": stages, "view": view })
            )
            .unwrap()
        );
    } else {
        for s in &states {
            let why = if s.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", pipeline::reason::join(&s.reasons))
            };
            println!("{:<8} {}{}", s.state, s.id, why);
        }
        for p in &view {
            println!("view     {}/{p}", cli.out.join(&exp.name).display());
        }
        let fresh = states
            .iter()
            .filter(|s| s.state == pipeline::State::Fresh)
            .count();
        println!("{} of {} stages fresh", fresh, states.len());
    }
    Ok(())
}
