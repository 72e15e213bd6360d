//! The request the CLI sends to `eigentrace-worker` for one libtorch stage.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One input stage: its parameters and its files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputSpec {
    pub params: Value,
    pub files: BTreeMap<String, PathBuf>,
}

/// What a worker is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub kind: String,
    pub params: Value,
    pub inputs: BTreeMap<String, InputSpec>,
    /// "cpu" or "cuda".
    pub device: String,
    /// libtorch intra-op threads.
    pub threads: usize,
}
