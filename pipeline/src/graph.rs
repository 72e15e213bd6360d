//! Stage instances and the DAG they form.

use crate::error::{PipelineError, Result};
use serde_json::Value;
use std::collections::HashMap;

/// One node of the DAG: a stage kind plus its resolved parameters.
#[derive(Clone, Debug)]
pub struct StageInstance {
    /// Logical id, unique in the graph, readable: `train[adam-lr1e-3-s0]`.
    pub id: String,
    /// Stage kind: `dataset`, `train`, `hessian`, `metrics`, `report`, …
    pub kind: String,
    /// The stage's code version (see [`crate::key`]).
    pub code_version: u32,
    /// Fully resolved parameters.
    pub params: Value,
    /// The environment parts that change this stage's numbers.
    pub env: Value,
    /// (role, input instance id), e.g. `("dataset", "dataset")`.
    pub inputs: Vec<(String, String)>,
    /// The directory under `out/<experiment>/` where the outputs appear.
    pub view: String,
}

/// A validated DAG, its instances in a topological order.
#[derive(Clone, Debug)]
pub struct Graph {
    pub experiment: String,
    pub instances: Vec<StageInstance>,
    index: HashMap<String, usize>,
}

impl Graph {
    /// Check ids are unique and inputs exist, then order topologically
    /// (stable: a valid given order is kept).
    pub fn new(experiment: impl Into<String>, instances: Vec<StageInstance>) -> Result<Graph> {
        let mut pos = HashMap::new();
        for (i, inst) in instances.iter().enumerate() {
            if pos.insert(inst.id.clone(), i).is_some() {
                return Err(PipelineError::Graph(format!(
                    "duplicate stage id {}",
                    inst.id
                )));
            }
        }
        for inst in &instances {
            for (role, dep) in &inst.inputs {
                if !pos.contains_key(dep) {
                    return Err(PipelineError::Graph(format!(
                        "{}: input {role} refers to unknown stage {dep}",
                        inst.id
                    )));
                }
            }
        }
        // Kahn's algorithm, taking the lowest original position first.
        let n = instances.len();
        let mut indeg = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, inst) in instances.iter().enumerate() {
            for (_, dep) in &inst.inputs {
                indeg[i] += 1;
                users[pos[dep]].push(i);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != n {
            return Err(PipelineError::Graph("the stage graph has a cycle".into()));
        }
        let mut slots: Vec<Option<StageInstance>> = instances.into_iter().map(Some).collect();
        let instances: Vec<StageInstance> =
            order.iter().map(|&i| slots[i].take().unwrap()).collect();
        let index = instances
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Ok(Graph {
            experiment: experiment.into(),
            instances,
            index,
        })
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&StageInstance> {
        self.position(id).map(|i| &self.instances[i])
    }
}

/// A bare instance of kind "k" with the given inputs, for the crate's tests.
#[cfg(test)]
pub(crate) fn test_instance(id: &str, inputs: &[&str]) -> StageInstance {
    use serde_json::json;
    StageInstance {
        id: id.into(),
        kind: "k".into(),
        code_version: 1,
        params: json!({}),
        env: json!({}),
        inputs: inputs
            .iter()
            .map(|d| (d.to_string(), d.to_string()))
            .collect(),
        view: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, inputs: &[&str]) -> StageInstance {
        test_instance(id, inputs)
    }

    #[test]
    fn orders_topologically_and_rejects_bad_graphs() {
        let g = Graph::new("e", vec![inst("b", &["a"]), inst("a", &[])]).unwrap();
        let ids: Vec<_> = g.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(Graph::new("e", vec![inst("a", &[]), inst("a", &[])]).is_err());
        assert!(Graph::new("e", vec![inst("a", &["zz"])]).is_err());
        assert!(Graph::new("e", vec![inst("a", &["b"]), inst("b", &["a"])]).is_err());
    }
}
