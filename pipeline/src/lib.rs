//! The content-addressed engine of eigentrace.
//!
//! It knows stage instances, keys, objects and records; it knows nothing about
//! Hessians, tensors or figures. The binary supplies a [`Graph`] of
//! [`StageInstance`]s and an [`Executor`] that runs one instance into a
//! directory; the engine decides what is fresh, runs what is stale (in
//! parallel where the graph allows), and commits the results to the [`Store`].
//!
//! - [`key`]: what goes into a stage key, and why (the design table).
//! - [`store`]: immutable objects, atomic records, the writer lock.
//! - [`engine`]: `run` and `status`.
//! - [`view`]: the readable `out/<experiment>/` tree, rebuilt from the store.

pub mod canon;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod graph;
pub mod key;
pub mod maintain;
pub mod reason;
pub mod record;
pub mod store;
pub mod view;

pub use canon::{canonical_bytes, Hash};
pub use engine::{
    run, status, Event, EventSink, Executor, InstanceReport, InstanceState, Outcome, RunOptions,
    StageInputs,
};
pub use error::{ExecError, InputError, PipelineError, Result, StageFailure};
pub use graph::{Graph, StageInstance};
pub use key::{content_hash, stage_key};
pub use reason::{StaleReason, State};
pub use record::{InputRef, ObjectRef, Record};
pub use store::{LockMode, Store, StoreLock};
