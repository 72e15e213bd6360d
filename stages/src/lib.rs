//! The science of eigentrace that needs no libtorch: datasets, the MLP's
//! parameter layout, every stage's parameters, Lanczos, and the displacement
//! and localization metrics (definitions in docs/science.md). The tensor work
//! (training, Hessian-vector products) is in `stages-torch`.
//!
//! The CLI links this crate but not libtorch, whose static initialization
//! alone would cost ~0.2 s on every call.
//!
//! Each stage is a plain function from parameters and input files to output
//! files in a directory. Nothing here knows about caching or keys.

pub mod arrow_io;
pub mod cpus;
pub mod dataset;
pub mod density;
pub mod error;
pub mod hessian;
pub mod lanczos;
pub mod metrics;
pub mod mlp;
pub mod optim;
pub mod runtime;
pub mod trace;
pub mod train;
pub mod worker;

pub use error::{StageError, StageResult};

/// The libtorch version tch 0.26 is built against (torch-sys checks it at build time).
pub const LIBTORCH_VERSION: &str = "2.13.0";

// The stages' code versions live in the stage table (experiment/src/stage.rs).

/// Progress callback: (done, total, message).
pub type Progress<'a> = &'a (dyn Fn(u64, u64, &str) + Sync);
