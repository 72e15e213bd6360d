//! Why an instance is not fresh, as data (like cargo's `DirtyReason`), and
//! its state. Both render to text only at the edge: `Display` gives the
//! words `status` prints, and serde writes the same words into `--json`.

use serde::{Serialize, Serializer};
use std::fmt;

/// How many inputs a reason names before it counts the rest.
pub const SHOWN_INPUTS: usize = 3;

/// An instance's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Its record and objects are there and apply.
    Fresh,
    /// An earlier result exists but no longer applies.
    Stale,
    /// Never computed.
    Missing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Fresh => "fresh",
            State::Stale => "stale",
            State::Missing => "missing",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which part of an instance a field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOf {
    Param,
    Env,
}

/// How one field changed (values shown as in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldChange {
    Removed { was: String },
    Added { now: String },
    Changed { from: String, to: String },
}

/// Why an instance must run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// No record of this logical instance, ever.
    NeverComputed,
    /// A ref names a record the store no longer has.
    RecordMissing,
    /// The stored result fails a check (a corrupt or missing object, a
    /// record not under its own key…), in the store's words.
    Damaged(String),
    CodeChanged {
        kind: String,
        old: u32,
        new: u32,
    },
    Field {
        of: FieldOf,
        path: String,
        change: FieldChange,
    },
    /// "role (id)" of each input whose content changed.
    InputsChanged(Vec<String>),
    /// "role (id)" of each input the last record did not have.
    InputsNew(Vec<String>),
    InputRemoved(String),
    /// Inputs that are not fresh themselves (ids).
    InputsNotFresh(Vec<String>),
    /// Forced with `--force`.
    Forced,
}

/// "a, b, c" or "a, b, c and 32 more".
fn named(list: &[String]) -> String {
    if list.len() <= SHOWN_INPUTS {
        list.join(", ")
    } else {
        format!(
            "{} and {} more",
            list[..SHOWN_INPUTS].join(", "),
            list.len() - SHOWN_INPUTS
        )
    }
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        match self {
            StaleReason::NeverComputed => f.write_str("never computed"),
            StaleReason::RecordMissing => f.write_str("its record is missing from the store"),
            StaleReason::Damaged(why) => f.write_str(why),
            StaleReason::CodeChanged { kind, old, new } => {
                write!(f, "code changed: {kind} code version {old} → {new}")
            }
            StaleReason::Field { of, path, change } => {
                let of = match of {
                    FieldOf::Param => "param",
                    FieldOf::Env => "env",
                };
                match change {
                    FieldChange::Removed { was } => write!(f, "{of} {path} removed (was {was})"),
                    FieldChange::Added { now } => write!(f, "{of} {path} added: {now}"),
                    FieldChange::Changed { from, to } => write!(f, "{of} {path} {from} → {to}"),
                }
            }
            StaleReason::InputsChanged(l) if l.len() <= SHOWN_INPUTS => {
                write!(f, "input{} {} changed", s(l.len()), l.join(", "))
            }
            StaleReason::InputsChanged(l) => write!(f, "{} inputs changed: {}", l.len(), named(l)),
            StaleReason::InputsNew(l) if l.len() <= SHOWN_INPUTS => {
                write!(f, "new input{} {}", s(l.len()), l.join(", "))
            }
            StaleReason::InputsNew(l) => write!(f, "{} inputs new: {}", l.len(), named(l)),
            StaleReason::InputRemoved(role) => write!(f, "input {role} was removed"),
            StaleReason::InputsNotFresh(l) => match l.len() {
                1 => write!(f, "input {} is not fresh", l[0]),
                n if n <= SHOWN_INPUTS => write!(f, "inputs {} are not fresh", l.join(", ")),
                n => write!(f, "{n} inputs are not fresh ({}, …)", l[..2].join(", ")),
            },
            StaleReason::Forced => f.write_str("forced (--force)"),
        }
    }
}

impl Serialize for StaleReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The reasons joined for one line: "a; b".
pub fn join(reasons: &[StaleReason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are the ones `status` printed before the enum existed.
    #[test]
    fn reasons_render_as_before() {
        let inputs = |n: usize| (0..n).map(|i| format!("r{i} (m)")).collect::<Vec<_>>();
        let cases: Vec<(StaleReason, &str)> = vec![
            (StaleReason::NeverComputed, "never computed"),
            (
                StaleReason::CodeChanged {
                    kind: "report".into(),
                    old: 14,
                    new: 15,
                },
                "code changed: report code version 14 → 15",
            ),
            (
                StaleReason::Field {
                    of: FieldOf::Param,
                    path: "optimizer.lr".into(),
                    change: FieldChange::Changed {
                        from: "0.001".into(),
                        to: "0.003".into(),
                    },
                },
                "param optimizer.lr 0.001 → 0.003",
            ),
            (
                StaleReason::Field {
                    of: FieldOf::Env,
                    path: "threads".into(),
                    change: FieldChange::Removed { was: "2".into() },
                },
                "env threads removed (was 2)",
            ),
            (
                StaleReason::InputsChanged(inputs(1)),
                "input r0 (m) changed",
            ),
            (
                StaleReason::InputsChanged(inputs(3)),
                "inputs r0 (m), r1 (m), r2 (m) changed",
            ),
            (
                StaleReason::InputsChanged(inputs(30)),
                "30 inputs changed: r0 (m), r1 (m), r2 (m) and 27 more",
            ),
            (StaleReason::InputsNew(inputs(1)), "new input r0 (m)"),
            (
                StaleReason::InputsNotFresh(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
                "4 inputs are not fresh (a, b, …)",
            ),
            (
                StaleReason::InputRemoved("null".into()),
                "input null was removed",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(r.to_string(), want);
            assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!(want));
        }
        assert_eq!(format!("{:<8}|", State::Fresh), "fresh   |");
        assert_eq!(serde_json::to_value(State::Missing).unwrap(), "missing");
    }
}
