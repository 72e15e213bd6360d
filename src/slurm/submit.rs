//! Submitting one instance, or one array of one kind, with its job script.

use super::*;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Plan {
    /// Fresh: nothing to do.
    Fresh,
    /// A live job of the same spec is already queued.
    Queued(String),
    /// Submitted now.
    Submitted(String),
}

pub(super) struct Submitter<'a> {
    pub(super) exp: &'a Experiment,
    pub(super) graph: &'a Graph,
    pub(super) specs: &'a [String],
    pub(super) dirs: &'a SlurmDir,
    pub(super) ledger: &'a Ledger,
    /// The job script's command up to `exec`'s arguments.
    pub(super) command: String,
    pub(super) store: PathBuf,
    pub(super) config: PathBuf,
}

impl Submitter<'_> {
    pub(super) fn resources_args(&self, res: &SlurmResources) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(c) = res.cpus {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &res.mem {
            a.push(format!("--mem={m}"));
        }
        if let Some(g) = res.gpus.filter(|&g| g > 0) {
            a.push(format!("--gres=gpu:{g}"));
        }
        if let Some(t) = &res.time {
            a.push(format!("--time={t}"));
        }
        if let Some(p) = &res.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(acc) = &res.account {
            a.push(format!("--account={acc}"));
        }
        a.extend(res.extra.iter().cloned());
        a
    }

    /// Submit `members` (one instance, or one array of one kind) after `deps`;
    /// `force`: they execute even when they find themselves fresh (--force).
    /// Returns each member's job id.
    pub(super) fn submit(
        &self,
        members: &[usize],
        deps: &BTreeSet<String>,
        force: bool,
    ) -> anyhow::Result<Vec<String>> {
        let first = &self.graph.instances[members[0]];
        let res = self.exp.slurm.resources(&first.kind);
        let mut args = vec![
            "--parsable".to_string(),
            format!("--chdir={}", self.store.display()),
            "--kill-on-invalid-dep=yes".to_string(),
        ];
        if !deps.is_empty() {
            let list: Vec<&str> = deps.iter().map(String::as_str).collect();
            args.push(format!("--dependency=afterok:{}", list.join(":")));
        }
        let mut script = format!("#!/bin/sh\n# eigentrace: {}\n", self.config.display());
        let force = if force { " --force" } else { "" };
        if members.len() == 1 {
            args.push(format!(
                "--job-name={}",
                job_name(&self.graph.experiment, &first.id)
            ));
            args.push(format!(
                "--output={}",
                self.dirs.logs().join("%j.out").display()
            ));
            script += &format!(
                "exec {} --id {} --spec {}{force}\n",
                self.command,
                shell_quote(&first.id),
                self.specs[members[0]]
            );
        } else {
            let list: String = members
                .iter()
                .map(|&i| format!("{}\t{}\n", self.graph.instances[i].id, self.specs[i]))
                .collect();
            let list = put_by_content(&self.dirs.root.join("arrays"), "txt", list.as_bytes())?;
            args.push(format!(
                "--job-name={}",
                job_name(&self.graph.experiment, &first.kind)
            ));
            args.push(format!("--array=0-{}", members.len() - 1));
            args.push(format!(
                "--output={}",
                self.dirs.logs().join("%A_%a.out").display()
            ));
            script += &format!(
                "exec {} --list {}{force}\n",
                self.command,
                shell_quote(&list.display().to_string())
            );
        }
        args.extend(self.resources_args(&res));
        let id = sbatch(&args, &script)?;
        let jobs: Vec<String> = if members.len() == 1 {
            vec![id]
        } else {
            (0..members.len()).map(|t| format!("{id}_{t}")).collect()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (&i, job) in members.iter().zip(&jobs) {
            let inst = &self.graph.instances[i];
            self.ledger.put(&Entry {
                experiment: self.graph.experiment.clone(),
                id: inst.id.clone(),
                kind: inst.kind.clone(),
                spec: self.specs[i].clone(),
                job: job.clone(),
                log: self.dirs.log(job),
                config: self.config.clone(),
                submitted_unix: now,
            })?;
        }
        Ok(jobs)
    }
}
