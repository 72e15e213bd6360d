//! The libtorch side of eigentrace's stages: the MLP's forward and backward
//! passes, the optimizers, the training loop, Hessian-vector products and
//! the hessian stage. Only `eigentrace-worker` links it.

mod adam_pass;
pub mod backprop;
pub mod exec;
pub mod hessian;
pub mod metrics;
pub mod mlp;
mod omp;
pub mod optim;
pub mod rop;
pub mod runtime;
mod sgd_pass;
pub mod train;
