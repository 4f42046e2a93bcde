//! The control plane: command line parsing and QMP.

pub mod cmdline;
pub mod opts;

pub use cmdline::{
    drives_from_xenstore, parse_args, Command, ConfigError, DriveSpec, Flavour, MachineConfig, QmpEndpoint,
    QtestEndpoint, SerialSpec, XenstoreRead,
};
pub mod qmp;

pub use qmp::{MachineOps, QmpError, QmpInfo, QmpServer};
