//! Records: one JSON file per executed key, the commit point of a stage.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Format version of the record file itself.
pub const RECORD_FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObjectRef {
    pub hash: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InputRef {
    /// The logical id of the input instance, e.g. `dataset`.
    pub id: String,
    /// Its stage key.
    pub key: String,
    /// Its content hash (what went into this record's key).
    pub content: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub key: String,
    /// Logical instance id, e.g. `train[adam-lr1e-3-s0]`.
    pub id: String,
    pub experiment: String,
    pub kind: String,
    pub code_version: u32,
    pub params: Value,
    pub env: Value,
    pub inputs: BTreeMap<String, InputRef>,
    /// Logical output name (a relative path such as `eigen/values.arrow`) → object.
    pub outputs: BTreeMap<String, ObjectRef>,
    /// blake3 over the canonical `name → hash` map of the outputs.
    pub content: String,
    /// Where the outputs appear under `out/<experiment>/`.
    pub view: String,
    /// Whatever the stage reported about itself (e.g. `{"diverged": true}`).
    pub meta: Value,
    pub seconds: f64,
    pub finished_unix: u64,
    pub eigentrace_version: String,
}
