//! Canonical, unambiguous byte encoding of parameter trees, and blake3 hashes.
//!
//! The encoding is type-tagged and length-prefixed, so that no two different
//! trees encode to the same bytes: `{"a": "1"}` and `{"a": 1}` differ, and so
//! do `1` (integer) and `1.0` (float). Object keys are sorted (serde_json's map
//! is ordered). Floats are encoded by their exact IEEE-754 bit pattern, so
//! `1e-3` and `0.001` are the same value and no formatting noise reaches a key.

use serde_json::Value;
use std::fmt;

/// A blake3 hash, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
    pub fn from_hex(s: &str) -> Option<Hash> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

/// The canonical encoding of a JSON value (see the module doc).
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => {
            out.push(b'b');
            out.push(*b as u8);
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push(b'i');
                out.extend_from_slice(&i.to_le_bytes());
            } else if let Some(u) = n.as_u64() {
                out.push(b'u');
                out.extend_from_slice(&u.to_le_bytes());
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                out.push(b'f');
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(b's');
            encode_str(s, out);
        }
        Value::Array(items) => {
            out.push(b'a');
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Value::Object(map) => {
            out.push(b'o');
            out.extend_from_slice(&(map.len() as u64).to_le_bytes());
            // serde_json::Map is a BTreeMap (no preserve_order): keys are sorted.
            for (k, v) in map {
                encode_str(k, out);
                encode(v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [1.5, "x"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": [1.5, "x"], "b": 1}"#).unwrap();
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
    }

    #[test]
    fn types_and_float_bits_are_distinguished() {
        assert_ne!(
            canonical_bytes(&json!({"a": 1})),
            canonical_bytes(&json!({"a": 1.0}))
        );
        assert_ne!(
            canonical_bytes(&json!({"a": "1"})),
            canonical_bytes(&json!({"a": 1}))
        );
        assert_eq!(
            canonical_bytes(&json!(1e-3)),
            canonical_bytes(&json!(0.001))
        );
        assert_ne!(
            canonical_bytes(&json!(0.1 + 0.2)),
            canonical_bytes(&json!(0.3))
        );
        // No concatenation ambiguity.
        assert_ne!(
            canonical_bytes(&json!(["ab", "c"])),
            canonical_bytes(&json!(["a", "bc"]))
        );
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash::of(b"eigentrace");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(h.to_hex(), blake3::hash(b"eigentrace").to_hex().to_string());
        assert_eq!(Hash::from_hex("zz"), None);
    }
}
