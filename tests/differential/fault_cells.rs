//! The cells of the full fault matrix (issue 11, item 4): which scenario
//! runs each (path, fault, policy), the new `fault/...` scenarios, and the
//! README table of what the guest sees.

use super::{error_scenario, ErrorOp, Policy};
use crate::scenarios::{Deviation, Scenario};

// ---- the full fault matrix (issue 11, item 4) ------------------------------------------

/// The injected errnos, in the README table's order.
pub const FAULTS: [(&str, i32); 5] =
    [("enospc", 28), ("eio", 5), ("erofs", 30), ("edquot", 122), ("efbig", 27)];
const MATRIX_POLICIES: [&str; 4] = ["report", "ignore", "stop", "enospc"];
const MATRIX_PATHS: [ErrorOp; 10] = [
    ErrorOp::PioRead,
    ErrorOp::PioWrite,
    ErrorOp::ReadMultiple,
    ErrorOp::WriteMultiple,
    ErrorOp::DmaRead,
    ErrorOp::DmaWrite,
    ErrorOp::Flush,
    ErrorOp::Trim,
    ErrorOp::CdPio,
    ErrorOp::CdDma,
];

fn matrix_policy(option: &'static str, errno: i32) -> Policy {
    let stops = option == "stop" || (option == "enospc" && errno == 28);
    Policy {
        name: option,
        option,
        errno,
        stops,
        reports: option == "report" || (option == "enospc" && errno != 28),
    }
}

/// The scenario that runs a cell of the matrix: one of the original
/// `error/...` scenarios where it covers the cell, else `fault/...`; None
/// for a combination that cannot exist.
fn cell_scenario(op: ErrorOp, fault: &str, option: &str) -> Option<String> {
    let disk_read = op.reads() && !matches!(op, ErrorOp::CdPio | ErrorOp::CdDma);
    if disk_read && option == "enospc" {
        return None;
    }
    let cd = matches!(op, ErrorOp::CdPio | ErrorOp::CdDma);
    let old = match (fault, option) {
        _ if cd => None,
        ("eio", "enospc") => Some("enospc-eio"),
        ("eio", policy) => Some(policy),
        ("enospc", "enospc") => Some("enospc-nospace"),
        ("enospc", "report") if matches!(op, ErrorOp::PioWrite | ErrorOp::DmaWrite | ErrorOp::Flush) => {
            Some("report-nospace")
        }
        _ => None,
    };
    let old = old.filter(|_| !matches!(op, ErrorOp::Trim));
    Some(match old {
        Some(policy) => format!("error/{}/{policy}", op.name()),
        None => format!("fault/{}/{fault}/{option}", op.name()),
    })
}

/// [2] in the README table.
fn cd_dma_ignore() -> Deviation {
    Deviation {
    reason: "an ignored ATAPI DMA read: QEMU 7.2 copies its bounce buffer (io_buffer, holding whatever an \
             earlier request left there) into guest memory as if it were the CD's data; we leave guest memory \
             untouched. Registers, IRQ, BM status, events and sense are the same",
    labels: vec!["mem[0x20000..+4096]"],
    ours: vec![("mem[0x20000..+4096]", "0-1:fillcc")],
    }
}

pub fn fault_scenarios(out: &mut Vec<Scenario>) {
    for op in MATRIX_PATHS {
        for (fault, errno) in FAULTS {
            for option in MATRIX_POLICIES {
                let Some(name) = cell_scenario(op, fault, option) else { continue };
                if name.starts_with("fault/") {
                    let mut built = error_scenario(op, matrix_policy(option, errno));
                    built.name = name;
                    if matches!(op, ErrorOp::CdDma) && option == "ignore" {
                        built.deviation = Some(cd_dma_ignore());
                    }
                    out.push(built);
                }
            }
        }
    }
}

/// What the guest sees in one cell, as the scenarios check it.
fn cell_text(op: ErrorOp, errno: i32, option: &'static str) -> String {
    if op.reads() && option == "enospc" && !matches!(op, ErrorOp::CdPio | ErrorOp::CdDma) {
        return "n/a (rerror)".into();
    }
    if matches!(op, ErrorOp::CdPio) {
        return "0x41, sense 5/21 (no policy)".into();
    }
    if matches!(op, ErrorOp::CdDma) {
        return match option {
            "ignore" => "ignored (0x50) [2]".into(),
            "stop" => "held, io-error; cont completes".into(),
            // rerror applies; werror=enospc leaves it at report.
            _ => "0x41, sense 5/21, BM INTR".into(),
        };
    }
    let policy = matrix_policy(option, errno);
    let dma = matches!(op, ErrorOp::DmaRead | ErrorOp::DmaWrite | ErrorOp::Trim | ErrorOp::CdDma);
    let pio = matches!(op, ErrorOp::PioRead | ErrorOp::PioWrite | ErrorOp::ReadMultiple | ErrorOp::WriteMultiple);
    if policy.stops {
        let mark = if pio { " [1]" } else { "" };
        format!("held, io-error; cont completes{mark}")
    } else if policy.reports {
        if dma { "0x41/ABRT+IRQ, BM INTR".into() } else { "0x41/ABRT+IRQ".into() }
    } else {
        "ignored (0x50)".into()
    }
}

/// The README's fault table: rows path x fault, columns policy.
pub fn matrix_table() -> String {
    let mut text = String::from("| path | fault | report | ignore | stop | enospc |\n| --- | --- | --- | --- | --- | --- |\n");
    for op in MATRIX_PATHS {
        for (fault, errno) in FAULTS {
            let cells: Vec<String> = MATRIX_POLICIES.into_iter().map(|p| cell_text(op, errno, p)).collect();
            text.push_str(&format!("| {} | {} | {} |\n", op.name(), fault.to_uppercase(), cells.join(" | ")));
        }
    }
    text
}

/// Scenario names behind the matrix (old and new), for the count.
pub fn matrix_scenario_names() -> Vec<String> {
    let mut names = Vec::new();
    for op in MATRIX_PATHS {
        for (fault, _) in FAULTS {
            for option in MATRIX_POLICIES {
                names.extend(cell_scenario(op, fault, option));
            }
        }
    }
    names
}
