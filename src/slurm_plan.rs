//! The Slurm planner, pure: from the graph, what is fresh, what was forced,
//! the ledger's last job of each instance and what the queue holds, decide
//! which instances wait on a live job, which are submitted (grouped into
//! arrays), and which queued jobs are superseded. No cluster, no files: the
//! IO around it (`slurm.rs`) reads the ledger and squeue, then submits.

use pipeline::Graph;
use std::collections::{BTreeSet, HashMap};

/// A job's state in squeue (`%T`) and the reason (`%r`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QState {
    pub state: String,
    pub reason: String,
}

impl QState {
    /// Still queued or running: it may yet commit its instance.
    pub fn live(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "CANCELLED"
                | "TIMEOUT"
                | "NODE_FAIL"
                | "PREEMPTED"
                | "OUT_OF_MEMORY"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "REVOKED"
        ) && !self.doomed()
    }
    /// Pending on a dependency that failed: it will never run.
    pub fn doomed(&self) -> bool {
        self.state == "PENDING" && self.reason.contains("DependencyNeverSatisfied")
    }
}

/// The ledger's last job of an instance, and the spec it was submitted with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastJob {
    pub job: String,
    pub spec: String,
}

/// What the planner reads, per instance in graph order.
pub struct PlanInput<'a> {
    pub graph: &'a Graph,
    /// Not fresh in the store.
    pub stale: Vec<bool>,
    /// Forced by `--force`.
    pub forced: Vec<bool>,
    /// Each instance's spec (what it computes, up to its inputs' contents).
    pub specs: &'a [String],
    /// The ledger's last job of each instance.
    pub last: Vec<Option<LastJob>>,
    /// The jobs of ledger entries whose instances left the config.
    pub orphans: Vec<String>,
    /// squeue's answer for every job above.
    pub queue: &'a HashMap<String, QState>,
    /// `[slurm] arrays`: a sweep level is one job array.
    pub arrays: bool,
}

/// One instance's part in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Fresh: nothing to do.
    Fresh,
    /// A live job of the same spec is already queued.
    Queued(String),
    /// Member of submission n.
    Submit(usize),
}

/// One sbatch call: its members (instance indices, one job or one array),
/// the instances whose jobs it waits on (`afterok`), and whether forced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub members: Vec<usize>,
    pub deps: BTreeSet<usize>,
    pub forced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub parts: Vec<Part>,
    /// In an order where every dependency comes first.
    pub submissions: Vec<Submission>,
    /// Queued or doomed jobs that must not commit: their instance changed,
    /// left the config, or depends on an input submitted again.
    pub superseded: Vec<String>,
}

/// Plans a `run --executor slurm`. An instance needs a job when it is not
/// fresh, forced, or an input of it needs one; it reuses its ledger job when
/// that job is live with the same spec and no input is submitted again;
/// otherwise it is submitted, and its old job, if queued, is superseded.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let g = input.graph;
    let n = g.instances.len();
    let q = |job: &str| input.queue.get(job);
    let mut superseded: Vec<String> = input
        .orphans
        .iter()
        .filter(|job| q(job).is_some_and(|s| s.live() || s.doomed()))
        .cloned()
        .collect();
    let inputs_of = |i: usize| -> Vec<usize> {
        g.instances[i]
            .inputs
            .iter()
            .map(|(_, d)| g.position(d).expect("validated graph"))
            .collect()
    };
    let mut parts = vec![Part::Fresh; n];
    let mut to_submit = vec![false; n];
    for i in 0..n {
        let inputs = inputs_of(i);
        let needs =
            input.stale[i] || input.forced[i] || inputs.iter().any(|&j| parts[j] != Part::Fresh);
        if !needs {
            continue;
        }
        let reusable = input.last[i].as_ref().filter(|e| {
            e.spec == input.specs[i]
                && q(&e.job).is_some_and(QState::live)
                && !inputs.iter().any(|&j| to_submit[j])
        });
        match (reusable, &input.last[i]) {
            (Some(e), _) => parts[i] = Part::Queued(e.job.clone()),
            (None, last) => {
                if let Some(e) = last {
                    if q(&e.job).is_some_and(|s| s.live() || s.doomed()) {
                        superseded.push(e.job.clone());
                    }
                }
                to_submit[i] = true;
                // Assigned below.
                parts[i] = Part::Submit(usize::MAX);
            }
        }
    }
    // Group into submissions in topological order. An instance's deps are
    // its non-fresh inputs; it can join a submission only when each of them
    // is queued or in an earlier submission.
    let mut submissions: Vec<Submission> = Vec::new();
    let deps_of = |parts: &[Part], i: usize, current: usize| -> Option<BTreeSet<usize>> {
        let mut deps = BTreeSet::new();
        for j in inputs_of(i) {
            match parts[j] {
                Part::Fresh => {}
                Part::Queued(_) => {
                    deps.insert(j);
                }
                Part::Submit(s) if s < current => {
                    deps.insert(j);
                }
                Part::Submit(_) => return None,
            }
        }
        Some(deps)
    };
    for i in 0..n {
        if parts[i] != Part::Submit(usize::MAX) {
            continue;
        }
        let s = submissions.len();
        let deps = deps_of(&parts, i, s).expect("inputs come first in graph order");
        let mut members = vec![i];
        if input.arrays {
            let kind = &g.instances[i].kind;
            members.extend((i + 1..n).filter(|&k| {
                parts[k] == Part::Submit(usize::MAX)
                    && g.instances[k].kind == *kind
                    && input.forced[k] == input.forced[i]
                    && deps_of(&parts, k, s).as_ref() == Some(&deps)
            }));
        }
        for &m in &members {
            parts[m] = Part::Submit(s);
        }
        submissions.push(Submission {
            members,
            deps,
            forced: input.forced[i],
        });
    }
    Plan {
        parts,
        submissions,
        superseded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::StageInstance;

    /// dataset → train[a], train[b] → report; the trains are one kind.
    fn graph() -> Graph {
        let inst = |id: &str, kind: &str, inputs: &[&str]| StageInstance {
            id: id.into(),
            kind: kind.into(),
            code_version: 1,
            params: serde_json::json!({ "id": id }),
            env: serde_json::json!({}),
            inputs: inputs
                .iter()
                .map(|d| (d.to_string(), d.to_string()))
                .collect(),
            view: String::new(),
        };
        Graph::new(
            "t".to_string(),
            vec![
                inst("dataset", "dataset", &[]),
                inst("train[a]", "train", &["dataset"]),
                inst("train[b]", "train", &["dataset"]),
                inst("report", "report", &["train[a]", "train[b]"]),
            ],
        )
        .unwrap()
    }

    fn specs() -> Vec<String> {
        ["s0", "s1", "s2", "s3"].map(String::from).to_vec()
    }

    fn queue(jobs: &[(&str, &str, &str)]) -> HashMap<String, QState> {
        jobs.iter()
            .map(|(j, s, r)| {
                (
                    j.to_string(),
                    QState {
                        state: s.to_string(),
                        reason: r.to_string(),
                    },
                )
            })
            .collect()
    }

    fn input<'a>(
        g: &'a Graph,
        specs: &'a [String],
        q: &'a HashMap<String, QState>,
        stale: [bool; 4],
        last: Vec<Option<LastJob>>,
    ) -> PlanInput<'a> {
        PlanInput {
            graph: g,
            stale: stale.to_vec(),
            forced: vec![false; 4],
            specs,
            last,
            orphans: vec![],
            queue: q,
            arrays: true,
        }
    }

    fn last(job: &str, spec: &str) -> Option<LastJob> {
        Some(LastJob {
            job: job.into(),
            spec: spec.into(),
        })
    }

    #[test]
    fn everything_fresh_submits_nothing() {
        let (g, s, q) = (graph(), specs(), queue(&[]));
        let p = plan(&input(&g, &s, &q, [false; 4], vec![None; 4]));
        assert_eq!(p.parts, vec![Part::Fresh; 4]);
        assert!(p.submissions.is_empty() && p.superseded.is_empty());
    }

    #[test]
    fn a_stale_sweep_level_is_one_array_after_its_input() {
        let (g, s, q) = (graph(), specs(), queue(&[]));
        let p = plan(&input(
            &g,
            &s,
            &q,
            [true, false, false, false],
            vec![None; 4],
        ));
        // The dataset, then both trains as one array, then the report.
        assert_eq!(
            p.submissions,
            vec![
                Submission {
                    members: vec![0],
                    deps: BTreeSet::new(),
                    forced: false
                },
                Submission {
                    members: vec![1, 2],
                    deps: BTreeSet::from([0]),
                    forced: false
                },
                Submission {
                    members: vec![3],
                    deps: BTreeSet::from([1, 2]),
                    forced: false
                },
            ]
        );
        assert_eq!(
            p.parts,
            vec![
                Part::Submit(0),
                Part::Submit(1),
                Part::Submit(1),
                Part::Submit(2)
            ]
        );
    }

    #[test]
    fn without_arrays_each_instance_is_its_own_job() {
        let (g, s, q) = (graph(), specs(), queue(&[]));
        let mut i = input(&g, &s, &q, [true, false, false, false], vec![None; 4]);
        i.arrays = false;
        let p = plan(&i);
        assert_eq!(p.submissions.len(), 4);
        assert!(p.submissions.iter().all(|s| s.members.len() == 1));
    }

    /// A second invocation while the jobs are pending submits nothing.
    #[test]
    fn live_jobs_of_the_same_spec_are_reused() {
        let (g, s) = (graph(), specs());
        let q = queue(&[
            ("10", "RUNNING", "None"),
            ("11_0", "PENDING", "Dependency"),
            ("11_1", "PENDING", "Dependency"),
            ("12", "PENDING", "Dependency"),
        ]);
        let lasts = vec![
            last("10", "s0"),
            last("11_0", "s1"),
            last("11_1", "s2"),
            last("12", "s3"),
        ];
        let p = plan(&input(&g, &s, &q, [true; 4], lasts));
        assert!(p.submissions.is_empty() && p.superseded.is_empty());
        assert_eq!(p.parts[1], Part::Queued("11_0".into()));
    }

    /// A changed spec (or a dead job) resubmits the instance, supersedes its
    /// queued job, and resubmits what depends on it even if that was live.
    #[test]
    fn a_changed_instance_supersedes_its_job_and_its_dependents() {
        let (g, s) = (graph(), specs());
        let q = queue(&[
            ("11_0", "PENDING", "None"),
            ("11_1", "RUNNING", "None"),
            ("12", "PENDING", "Dependency"),
        ]);
        let lasts = vec![
            None,
            last("11_0", "old-spec"),
            last("11_1", "s2"),
            last("12", "s3"),
        ];
        let p = plan(&input(&g, &s, &q, [false, true, true, true], lasts));
        assert_eq!(p.parts[2], Part::Queued("11_1".into()));
        assert_eq!(p.parts[1], Part::Submit(0));
        // The report waits on the new train[a] and the queued train[b].
        assert_eq!(p.submissions[1].members, vec![3]);
        assert_eq!(p.submissions[1].deps, BTreeSet::from([1, 2]));
        assert_eq!(p.superseded, vec!["11_0".to_string(), "12".to_string()]);
    }

    /// Jobs that can never run (a failed dependency) and orphans' live jobs
    /// are superseded; ended jobs are not.
    #[test]
    fn doomed_and_orphaned_jobs_are_superseded() {
        let (g, s) = (graph(), specs());
        let q = queue(&[
            ("20", "PENDING", "DependencyNeverSatisfied"),
            ("30", "RUNNING", "None"),
            ("31", "COMPLETED", "None"),
        ]);
        let mut i = input(
            &g,
            &s,
            &q,
            [false, false, false, true],
            vec![None, None, None, last("20", "s3")],
        );
        i.orphans = vec!["30".into(), "31".into()];
        let p = plan(&i);
        assert_eq!(p.superseded, vec!["30".to_string(), "20".to_string()]);
        assert_eq!(p.parts[3], Part::Submit(0));
        assert!(p.submissions[0].deps.is_empty(), "the trains are fresh");
    }

    /// Forced and unforced instances of one kind are separate submissions.
    #[test]
    fn forced_instances_are_not_grouped_with_unforced_ones() {
        let (g, s, q) = (graph(), specs(), queue(&[]));
        let mut i = input(&g, &s, &q, [false, true, false, false], vec![None; 4]);
        i.forced = vec![false, false, true, false];
        let p = plan(&i);
        let members: Vec<Vec<usize>> = p.submissions.iter().map(|s| s.members.clone()).collect();
        assert_eq!(members, vec![vec![1], vec![2], vec![3]]);
        assert!(p.submissions[1].forced && !p.submissions[0].forced);
    }
}
