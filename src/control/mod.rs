//! The control plane: command line parsing and QMP.
//!
//! Wiring (for the launcher):
//! * [`parse_args`] on argv without `argv[0]`; `Command::PrintAndExit` prints
//!   and exits 0, `Err(e)` prints `e` (one line) and exits non-zero before
//!   anything touches Xen. Log every `MachineConfig::warnings` entry.
//! * Traditional flavour: the disks come from [`drives_from_xenstore`]
//!   (implement [`XenstoreRead`] over the Xen front's xenstore handle).
//!   The platform device there follows xenstore `disable_pf`, not `-M`.
//! * [`QmpServer::start_all`] with `config.qmp`, an `Arc<dyn MachineOps>`
//!   and the machine's `EventSink`; keep the servers alive until exit
//!   (dropping one removes its socket). `MachineOps::chardevs` should list
//!   the serial ports and [`qmp::monitor_chardevs`]`(&config.qmp)`.
//! * `MachineOps::quit` is called after the reply went out; QEMU emits
//!   SHUTDOWN {guest: false, reason: "host-qmp-quit"} at that point.

pub mod cmdline;
pub mod opts;
pub mod qmp;

pub use cmdline::{
    drives_from_xenstore, parse_args, Command, ConfigError, DriveSpec, Flavour, Incoming, MachineConfig, QmpEndpoint,
    QtestEndpoint, SerialSpec, XenstoreRead,
};
pub use qmp::{CommandError, ErrorClass, MachineError, MachineOps, QmpError, QmpInfo, QmpServer};
