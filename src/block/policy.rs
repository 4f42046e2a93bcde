//! QEMU's werror=/rerror= policies.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    Report,
    Ignore,
    Stop,
    /// Stop on ENOSPC, report anything else (QEMU's werror default).
    Enospc,
}

/// What to do with one failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    Report,
    Ignore,
    Stop,
}

impl ErrorAction {
    pub fn as_qmp(self) -> &'static str {
        match self {
            ErrorAction::Report => "report",
            ErrorAction::Ignore => "ignore",
            ErrorAction::Stop => "stop",
        }
    }
}

impl ErrorPolicy {
    pub fn action_for(self, errno: i32) -> ErrorAction {
        match self {
            ErrorPolicy::Report => ErrorAction::Report,
            ErrorPolicy::Ignore => ErrorAction::Ignore,
            ErrorPolicy::Stop => ErrorAction::Stop,
            ErrorPolicy::Enospc if errno == libc::ENOSPC => ErrorAction::Stop,
            ErrorPolicy::Enospc => ErrorAction::Report,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorPolicy::Report => "report",
            ErrorPolicy::Ignore => "ignore",
            ErrorPolicy::Stop => "stop",
            ErrorPolicy::Enospc => "enospc",
        }
    }
}

/// A `werror=`/`rerror=` value that is not one of QEMU's four policies.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("'{0}' is not one of report, ignore, stop, enospc")]
pub struct UnknownPolicy(pub String);

impl FromStr for ErrorPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, UnknownPolicy> {
        match s {
            "report" => Ok(ErrorPolicy::Report),
            "ignore" => Ok(ErrorPolicy::Ignore),
            "stop" => Ok(ErrorPolicy::Stop),
            "enospc" => Ok(ErrorPolicy::Enospc),
            other => Err(UnknownPolicy(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_stops_only_on_enospc() {
        assert_eq!(ErrorPolicy::Enospc.action_for(libc::ENOSPC), ErrorAction::Stop);
        assert_eq!(ErrorPolicy::Enospc.action_for(libc::EIO), ErrorAction::Report);
        assert_eq!("stop".parse::<ErrorPolicy>(), Ok(ErrorPolicy::Stop));
        assert!("halt".parse::<ErrorPolicy>().is_err());
    }
}
