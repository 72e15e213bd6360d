//! Stage keys: what makes a result reusable.
//!
//! A stage key is `blake3(canonical_bytes(K))`, with `K` the JSON object below
//! (see [`crate::canon`] for the encoding). Like cargo's fingerprints it is a
//! Merkle chain: a key includes the *content* hashes of its inputs, which
//! include theirs, down to the config.
//!
//! | part of `K`      | in? | why |
//! |------------------|-----|-----|
//! | `kind`           | yes | a train and a hessian stage with equal params are different work |
//! | `code_version`   | yes | bumped by hand in the stage code whenever its numbers can change; old results are then stale ("code changed") |
//! | `params`         | yes | the stage's fully resolved parameters, defaults filled in: sorted keys, floats by bit pattern, so `1e-3` = `0.001` |
//! | `inputs`         | yes | role → content hash of each input stage's outputs. Content, not key: an upstream rerun that reproduces the same bytes leaves downstream fresh |
//! | `env`            | yes | what changes numbers but is not a parameter: libtorch version, device kind (cpu/cuda), dtype |
//! | instance id      | no  | a name (`train[adam-lr1e-3-s0]`), not a value: renaming a run must not recompute it |
//! | experiment name  | no  | two experiments that share a dataset share its result |
//! | paths            | no  | no absolute path, store path or checkout path: a moved checkout stays fresh |
//! | mtimes, clocks   | no  | touching a file changes nothing |
//! | thread count, `--jobs`, progress settings | no | they change speed, not results (CPU kernels here are deterministic for a given build) |
//! | eigentrace version | no | too coarse: `code_version` per stage says precisely which change matters |
//!
//! The *content hash* of an executed stage is blake3 over the canonical map
//! `logical output name → object hash`: it changes iff some output's bytes (or
//! its name) change.

use crate::canon::{canonical_bytes, Hash};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The key of a stage instance from its parts (see the module doc).
pub fn stage_key(
    kind: &str,
    code_version: u32,
    params: &Value,
    env: &Value,
    input_contents: &BTreeMap<String, Hash>,
) -> Hash {
    let inputs: Map<String, Value> = input_contents
        .iter()
        .map(|(role, h)| (role.clone(), Value::String(h.to_hex())))
        .collect();
    let k = json!({
        "kind": kind,
        "code_version": code_version,
        "params": params,
        "env": env,
        "inputs": inputs,
    });
    Hash::of(&canonical_bytes(&k))
}

/// The content hash of a stage's outputs: logical name → object hash.
pub fn content_hash(outputs: &BTreeMap<String, Hash>) -> Hash {
    let m: Map<String, Value> = outputs
        .iter()
        .map(|(name, h)| (name.clone(), Value::String(h.to_hex())))
        .collect();
    Hash::of(&canonical_bytes(&Value::Object(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(h: &[u8]) -> BTreeMap<String, Hash> {
        BTreeMap::from([("dataset".to_string(), Hash::of(h))])
    }

    #[test]
    fn every_part_changes_the_key() {
        let p = json!({"lr": 1e-3, "optimizer": "adam"});
        let env = json!({"libtorch": "2.13.0", "device": "cpu", "dtype": "f64"});
        let base = stage_key("train", 1, &p, &env, &inputs(b"a"));
        assert_eq!(base, stage_key("train", 1, &p, &env, &inputs(b"a")));
        assert_ne!(base, stage_key("hessian", 1, &p, &env, &inputs(b"a")));
        assert_ne!(base, stage_key("train", 2, &p, &env, &inputs(b"a")));
        assert_ne!(
            base,
            stage_key(
                "train",
                1,
                &json!({"lr": 3e-3, "optimizer": "adam"}),
                &env,
                &inputs(b"a")
            )
        );
        assert_ne!(
            base,
            stage_key(
                "train",
                1,
                &p,
                &json!({"libtorch": "2.13.0", "device": "cuda", "dtype": "f64"}),
                &inputs(b"a")
            )
        );
        assert_ne!(base, stage_key("train", 1, &p, &env, &inputs(b"b")));
    }
}
