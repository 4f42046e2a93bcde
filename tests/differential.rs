//! Differential suite: every scenario runs against Debian's QEMU 7.2 and
//! against xen-ioemu with the same argv, and the two observation logs must
//! be equal.
//!
//! Environment:
//! * `DIFF_ONLY=pattern[,pattern]` runs only the matching scenarios (`*`
//!   matches any run of characters, e.g. `error/*/stop`).
//! * `DIFF_QEMU_ONLY=1` runs QEMU alone and checks its values against the
//!   facts in docs/ide-behaviour.md (a development mode; the real suite
//!   always compares both and fails if xen-ioemu cannot start).
//! * `DIFF_SELF=1` compares QEMU with a second QEMU run: a check of the
//!   suite itself, which exposes timing-dependent observations.
//! * `DIFF_VERBOSE=1` prints every observation.
//! * `DIFF_JOBS=n` scenarios in parallel (default 2).
//! * `DIFF_QEMU=/path` QEMU binary (default qemu-system-x86_64);
//!   `DIFF_XEN_IOEMU=/path` another xen-ioemu build (default: this crate's).

#[path = "differential/image.rs"]
mod image;
#[path = "differential/launcher.rs"]
mod launcher;
#[path = "differential/qmp.rs"]
mod qmp;
#[path = "differential/qtest.rs"]
mod qtest;
#[path = "differential/scenarios.rs"]
mod scenarios;
#[path = "differential/session.rs"]
mod session;

use launcher::Backend;
use scenarios::{Deviation, Scenario};
use session::Session;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Outcome {
    name: String,
    line: String,
    difference: bool,
    detail: Vec<String>,
}

/// Part of an observation before ` = `, which deviations refer to.
fn label_of(observation: &str) -> &str {
    observation.split(" = ").next().unwrap_or(observation)
}

fn run_backend(
    backend: Backend,
    scenario: &Scenario,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut session = Session::start(backend, &scenario.machine, scenario.program_pci)?;
    let result = (scenario.run)(&mut session);
    if let Err(e) = result {
        let log = session.stderr_log();
        return Err(format!(
            "{}: {e}; stderr tail: {}",
            backend.name(),
            tail(&log)
        ));
    }
    Ok((session.obs, session.fact_failures))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

fn first_divergence(qemu: &[String], ours: &[String]) -> Option<String> {
    for i in 0..qemu.len().max(ours.len()) {
        let left = qemu.get(i).map(String::as_str).unwrap_or("<nothing>");
        let right = ours.get(i).map(String::as_str).unwrap_or("<nothing>");
        if left != right {
            return Some(format!(
                "observation #{i}:\n    qemu:      {left}\n    xen-ioemu: {right}"
            ));
        }
    }
    None
}

/// Compares the two logs; with a documented deviation, the listed labels are
/// left out of the comparison and xen-ioemu must show the stated values.
fn compare(
    qemu: &[String],
    ours: &[String],
    deviation: Option<&Deviation>,
) -> Result<&'static str, Vec<String>> {
    let Some(deviation) = deviation else {
        return match first_divergence(qemu, ours) {
            None => Ok("same"),
            Some(where_) => Err(vec![where_]),
        };
    };
    let keep = |obs: &[String]| -> Vec<String> {
        obs.iter()
            .filter(|o| !deviation.labels.contains(&label_of(o)))
            .cloned()
            .collect()
    };
    let mut problems = Vec::new();
    if let Some(where_) = first_divergence(&keep(qemu), &keep(ours)) {
        problems.push(where_);
    }
    for (label, want) in &deviation.ours {
        let value_of = |o: &String| {
            o.split(" = ")
                .nth(1)
                .and_then(|v| v.split(" | ").next())
                .map(str::to_string)
        };
        if !ours
            .iter()
            .any(|o| label_of(o) == *label && value_of(o).as_deref() == Some(*want))
        {
            problems.push(format!(
                "expected deviation not seen: xen-ioemu `{label} = {want}` ({})",
                deviation.reason
            ));
        }
    }
    if problems.is_empty() {
        Ok("expected-deviation")
    } else {
        Err(problems)
    }
}

fn run_scenario(scenario: &Scenario, qemu_only: bool, self_check: bool, verbose: bool) -> Outcome {
    let name = scenario.name.clone();
    let mut detail = Vec::new();
    let (qemu_obs, facts) = match run_backend(Backend::Qemu, scenario) {
        Ok(result) => result,
        Err(e) => {
            return Outcome {
                line: format!("diff {name}: DIFFERENT (QEMU run failed)"),
                name,
                difference: true,
                detail: vec![e],
            }
        }
    };
    if verbose {
        detail.extend(qemu_obs.iter().map(|o| format!("  qemu: {o}")));
    }
    let fact_problem = !facts.is_empty();
    detail.extend(facts.iter().map(|f| format!("  fact mismatch: {f}")));
    if qemu_only {
        let verdict = if fact_problem {
            "FACT-MISMATCH"
        } else {
            "qemu-only"
        };
        return Outcome {
            line: format!("diff {name}: {verdict} ({} observations)", qemu_obs.len()),
            name,
            difference: fact_problem,
            detail,
        };
    }
    let other = if self_check {
        Backend::Qemu
    } else {
        Backend::XenIoemu
    };
    let ours_obs = match run_backend(other, scenario) {
        Ok((obs, _)) => obs,
        Err(e) => {
            detail.push(e);
            return Outcome {
                line: format!("diff {name}: DIFFERENT (xen-ioemu run failed)"),
                name,
                difference: true,
                detail,
            };
        }
    };
    if verbose {
        detail.extend(ours_obs.iter().map(|o| format!("  ours: {o}")));
    }
    let (verdict, difference) = match compare(&qemu_obs, &ours_obs, scenario.deviation.as_ref()) {
        Ok(verdict) => (verdict, false),
        Err(problems) => {
            detail.extend(problems);
            ("DIFFERENT", true)
        }
    };
    let verdict = if fact_problem && !difference {
        "DIFFERENT (QEMU contradicts ide-behaviour.md)"
    } else {
        verdict
    };
    Outcome {
        line: format!("diff {name}: {verdict}"),
        name,
        difference: difference || fact_problem,
        detail,
    }
}

fn selected(name: &str, only: &Option<String>) -> bool {
    let Some(only) = only else { return true };
    only.split(',').any(|pattern| glob_match(pattern, name))
}

/// `*` matches any run of characters; everything else is literal.
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn differential() {
    let only = std::env::var("DIFF_ONLY").ok().filter(|s| !s.is_empty());
    let qemu_only = std::env::var("DIFF_QEMU_ONLY")
        .map(|v| v == "1")
        .unwrap_or(false);
    let self_check = std::env::var("DIFF_SELF")
        .map(|v| v == "1")
        .unwrap_or(false);
    let verbose = std::env::var("DIFF_VERBOSE")
        .map(|v| v == "1")
        .unwrap_or(false);
    let jobs: usize = std::env::var("DIFF_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);

    let all = scenarios::all();
    let mut names = std::collections::HashSet::new();
    for scenario in &all {
        assert!(
            names.insert(scenario.name.clone()),
            "duplicate scenario name {}",
            scenario.name
        );
    }
    let chosen: Vec<&Scenario> = all.iter().filter(|s| selected(&s.name, &only)).collect();
    assert!(!chosen.is_empty(), "DIFF_ONLY={only:?} matches no scenario");

    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    // Written straight to the process's stderr so it shows without --nocapture.
    let report = |text: &str| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(chosen.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(scenario) = chosen.get(i) else { break };
                let outcome = run_scenario(scenario, qemu_only, self_check, verbose);
                let mut text = outcome.line.clone();
                for line in &outcome.detail {
                    text.push_str("\n    ");
                    text.push_str(line);
                }
                report(&text);
                outcomes.lock().expect("outcomes lock").push(outcome);
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("outcomes lock");
    let differences: Vec<&Outcome> = outcomes.iter().filter(|o| o.difference).collect();
    let summary = if qemu_only {
        format!(
            "differential (QEMU only): {} scenarios run, {} fact mismatches or failures",
            outcomes.len(),
            differences.len()
        )
    } else {
        format!(
            "differential: {} scenarios compared, {} differences",
            outcomes.len(),
            differences.len()
        )
    };
    report(&summary);
    let names: Vec<&str> = differences.iter().map(|o| o.name.as_str()).collect();
    assert!(differences.is_empty(), "{summary}: {names:?}");
}

#[cfg(test)]
mod comparator_tests {
    use super::*;

    #[test]
    fn first_divergence_names_both_values_and_length_mismatches() {
        let a = vec!["x = 1 | irq14=0 irq15=0".to_string(), "y = 2".to_string()];
        let mut b = a.clone();
        assert_eq!(first_divergence(&a, &b), None);
        b[1] = "y = 3".into();
        let text = first_divergence(&a, &b).unwrap();
        assert!(
            text.contains("#1") && text.contains("y = 2") && text.contains("y = 3"),
            "{text}"
        );
        b.truncate(1);
        assert!(first_divergence(&a, &b).unwrap().contains("<nothing>"));
        assert_eq!(label_of("inb 0x1f7 = 0x58 | irq14=1 irq15=0"), "inb 0x1f7");
    }

    #[test]
    fn deviations_exclude_their_labels_and_require_our_value() {
        let qemu = vec![
            "a = 1 | irq14=0 irq15=0".to_string(),
            "b = 2 | irq14=0 irq15=0".to_string(),
        ];
        let ours = vec![
            "a = 1 | irq14=0 irq15=0".to_string(),
            "b = 9 | irq14=0 irq15=0".to_string(),
        ];
        assert_eq!(compare(&qemu, &qemu, None), Ok("same"));
        assert!(compare(&qemu, &ours, None).is_err());
        let deviation = Deviation {
            reason: "test",
            labels: vec!["b"],
            ours: vec![("b", "9")],
        };
        assert_eq!(
            compare(&qemu, &ours, Some(&deviation)),
            Ok("expected-deviation")
        );
        let wrong = Deviation {
            reason: "test",
            labels: vec!["b"],
            ours: vec![("b", "8")],
        };
        assert!(
            compare(&qemu, &ours, Some(&wrong)).is_err(),
            "our value must be the documented one"
        );
        let narrow = Deviation {
            reason: "test",
            labels: vec!["c"],
            ours: vec![],
        };
        assert!(
            compare(&qemu, &ours, Some(&narrow)).is_err(),
            "only listed labels may differ"
        );
    }

    /// The README's fault table is the one the matrix's definition makes,
    /// and every scenario it names exists.
    #[test]
    fn readme_carries_the_fault_matrix_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = scenarios::fault_matrix::matrix_table();
        assert!(readme.contains(&table), "README.md's fault matrix table is stale; the current one:\n{table}");
        let all: std::collections::HashSet<String> = scenarios::all().into_iter().map(|s| s.name).collect();
        let cells = scenarios::fault_matrix::matrix_scenario_names();
        assert_eq!(cells.len(), 185, "10 paths x 5 faults x 4 policies, less 15 disk reads under enospc");
        for name in cells {
            assert!(all.contains(&name), "the table names a missing scenario {name}");
        }
    }

    #[test]
    fn selection_accepts_names_lists_and_prefixes() {
        assert!(selected("a/b", &None));
        assert!(selected(
            "error/pio-read/stop",
            &Some("x,error/pio-*".into())
        ));
        assert!(!selected("error/flush/stop", &Some("error/pio-*".into())));
        assert!(selected(
            "error/flush/report-nospace",
            &Some("error/*/report-nospace".into())
        ));
        assert!(!selected(
            "error/flush/report",
            &Some("error/*/report-nospace".into())
        ));
        assert!(selected("identify", &Some("*".into())));
        assert!(!selected("identify/slave", &Some("identify".into())));
    }
}

/// Round-trip benchmark (tools/bench/qtest-roundtrips.sh runs it): qtest
/// round trips, 1-sector PIO READ SECTORS and 8-sector READ DMA per second,
/// for QEMU and xen-ioemu in the same run.
#[test]
#[ignore]
fn bench_roundtrips() {
    use launcher::{Drive, Machine};
    use std::time::{Duration, Instant};
    let round_trips: u32 = std::env::var("BENCH_ROUNDTRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let window = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    );
    let machine = Machine {
        drives: vec![Drive::disk(0)],
    };
    let mut report = Vec::new();
    for backend in [Backend::Qemu, Backend::XenIoemu] {
        let mut session = match Session::start(backend, &machine, true) {
            Ok(session) => session,
            Err(e) => {
                report.push(format!("bench {}: cannot start: {e}", backend.name()));
                continue;
            }
        };
        let result: Result<String, String> = (|| {
            let start = Instant::now();
            for _ in 0..round_trips {
                session.inb(0x1f7)?;
            }
            let per_second = f64::from(round_trips) / start.elapsed().as_secs_f64();
            let mut pio = 0u32;
            let start = Instant::now();
            while start.elapsed() < window {
                session.taskfile28(0, pio % 1024, 1)?;
                session.command(0x20)?;
                session.wait_not_busy()?;
                session.pio_read(512)?;
                session.status()?;
                pio += 1;
            }
            let pio_rate = f64::from(pio) / start.elapsed().as_secs_f64();
            let mut dma = 0u32;
            let start = Instant::now();
            while start.elapsed() < window {
                let bm = session.dma(
                    0xc8,
                    u64::from(dma % 1024) * 8,
                    8,
                    &[(session::BUFFER, 4096, true)],
                    true,
                )?;
                if bm != 0x04 {
                    return Err(format!("READ DMA ended with BM status 0x{bm:02x}"));
                }
                session.bm_command(0)?;
                session.status()?;
                dma += 1;
            }
            let dma_rate = f64::from(dma) / start.elapsed().as_secs_f64();
            Ok(format!(
                "bench {}: {per_second:.0} qtest round trips/s ({:.1} us each), {pio_rate:.0} PIO READ SECTORS (1 sector)/s, {dma_rate:.0} READ DMA (8 sectors)/s",
                backend.name(),
                1e6 / per_second
            ))
        })();
        report.push(result.unwrap_or_else(|e| format!("bench {}: failed: {e}", backend.name())));
    }
    let mut err = std::io::stderr().lock();
    for line in &report {
        let _ = writeln!(err, "{line}");
    }
    // Both numbers are the point of the benchmark: a backend that cannot
    // run it is a failure, not a silently shorter report.
    assert!(
        report
            .iter()
            .all(|line| !line.contains("failed") && !line.contains("cannot start")),
        "benchmark failed: {report:?}"
    );
}
