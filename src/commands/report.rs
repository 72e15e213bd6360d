//! `eigentrace report`: re-render the report from cached results alone.

use crate::*;

pub(crate) fn cmd_report(cli: &Cli, a: &StatusArgs) -> Result<(), Failure> {
    let exp = load(&a.config, a.force_size)?;
    let device = resolve_device(a.device)?;
    let graph = exp.graph(&torch_env(&device));
    // A store that does not exist reads as empty (and is not created): the
    // report then names what is missing.
    let store = Store::at(&cli.store).map_err(engine_err)?;
    let states = pipeline::status(&store, &graph, a.verify)?;
    let stale: Vec<String> = states
        .iter()
        // The findings are recomputed with the report when they are stale.
        .filter(|s| !is_summary(&s.kind) && s.state != pipeline::State::Fresh)
        .map(|s| format!("{} ({})", s.id, s.state))
        .collect();
    if !stale.is_empty() {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "the report needs every stage computed; not fresh: {}. Run `eigentrace run {}` first",
                stale.join(", "),
                a.config.display()
            ),
        });
    }
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let _lock = store.lock(LockMode::Wait, &|h| {
        eprintln!("waiting for the store lock (held by {h})")
    })?;
    pipeline::view::check_dest(&store, &cli.out.join(&exp.name)).map_err(engine_err)?;
    let mut force = globset::GlobSetBuilder::new();
    force.add(globset::Glob::new("report").map_err(usage)?);
    let opts = RunOptions {
        force: Some(force.build().map_err(usage)?),
        force_exact: vec!["report".into()],
        jobs: 1,
        verify: a.verify,
        ..Default::default()
    };
    let runner = executor::StageRunner::new(device, 1, exp.base_dir.clone());
    let ui = ui::Ui::new(graph.instances.len());
    let (reports, records) = pipeline::run(&store, &graph, &runner, &opts, &ui)?;
    ui.finish();
    if reports
        .iter()
        .any(|r| !is_summary(&r.kind) && r.status == Outcome::Ran)
    {
        return Err(anyhow::anyhow!("internal error: the report computed a stage").into());
    }
    let out_dir = cli.out.join(&exp.name);
    write_view(&store, &out_dir, &records)?;
    if let Some(rep) = reports
        .iter()
        .find(|r| r.kind == StageKind::Report.name() && r.status == Outcome::Failed)
    {
        return Err(
            anyhow::anyhow!("the report failed: {}", rep.error.as_deref().unwrap_or("?")).into(),
        );
    }
    eprintln!("report: {}", out_dir.join("report/index.html").display());
    Ok(())
}
