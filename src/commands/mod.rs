//! One module per command; `main.rs` holds the command line and dispatch.

pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod compare;
pub(crate) mod gc;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod verify;

pub(crate) use audit::*;
pub(crate) use bench::*;
pub(crate) use compare::*;
pub(crate) use gc::*;
pub(crate) use report::*;
pub(crate) use run::*;
pub(crate) use status::*;
pub(crate) use verify::*;
