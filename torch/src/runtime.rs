//! Where and in what precision the tensors live.

use stages::runtime::Dtype;
use tch::{Device, Kind};

pub fn kind(d: Dtype) -> Kind {
    match d {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
    }
}

/// "cpu" or "cuda" → a device, or why CUDA is not available.
pub fn device(name: &str) -> Result<Device, DeviceError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(DeviceError::NoCuda)
            }
        }
        other => Err(DeviceError::Unknown(other.to_string())),
    }
}

/// A device the worker cannot use.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device cuda: no CUDA device is visible to libtorch (use --device cpu or auto)")]
    NoCuda,
    #[error("unknown device {0}")]
    Unknown(String),
}
