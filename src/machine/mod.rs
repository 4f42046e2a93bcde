//! The board: the PC that both fronts drive (`pc`). It imports the devices
//! it assembles; the traits it shares with them live one layer down in
//! [`crate::vm`] and are re-exported here for the fronts.

#[forbid(unsafe_code)]
pub mod hold;
pub mod pc;
#[forbid(unsafe_code)]
pub mod savestate;

pub use crate::vm::*;
// The QMP view of a drive comes from the IDE controller.
pub use crate::devices::ide::{BlockStats, DriveInfo, InsertedMedium};
