//! A short `spendwatch soak`: three simulated days across the month's first incident with
//! faults on every billing API and receiver outages. Its own checks must pass, and the kept
//! store must agree with the report: every outbox row delivered, dead or muted.

use std::collections::BTreeMap;

use spendwatch::store::{RowState, SqliteStore, Store};

use crate::support::*;

/// The number before `word` in `line` (`"34 enqueued"` → 34).
fn count_before(line: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.trim_matches(',') == word)?;
    words
        .get(at.checked_sub(1)?)?
        .trim_matches(',')
        .parse()
        .ok()
}

fn line_with<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"))
}

#[test]
fn a_short_soak_with_faults_everywhere_loses_nothing_and_never_panics() {
    let _one_demo_at_a_time = demo_lock();
    let kept = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = run_cli(
        &[
            "soak",
            // Days 10–12: the runaway fleet fires the budget forecast and the 50 % level.
            "--start-day",
            "9",
            "--days",
            "3",
            "--warmup-days",
            "1",
            "--fault-rate",
            "0.1",
            "--seed",
            "3",
            "--keep",
            kept.path().to_str().unwrap(),
        ],
        &[],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("checks: rss pass, notifications pass, panics pass => passed"),
        "{stdout}"
    );
    assert_eq!(line_with(&stdout, "panics:"), "  panics: 0");
    assert!(!stderr.contains("panicked at"), "{stderr}");

    // Faults were served on the busy APIs (and RackNap's first answer is always garbled).
    let faults: BTreeMap<&str, u64> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("  faults served:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| {
            let (api, rest) = l.trim().split_once(": ")?;
            Some((api, rest.split_whitespace().next()?.parse().ok()?))
        })
        .collect();
    for api in ["rackspace", "prometheus", "sakura", "racknap"] {
        assert!(
            faults.get(api).is_some_and(|n| *n > 0),
            "{api} served no fault: {faults:?}\n{stdout}"
        );
    }
    let polls = line_with(&stdout, "polls:");
    assert!(
        count_before(polls, "failed;").is_some_and(|n| n > 0),
        "{polls}"
    );

    let notifications = line_with(&stdout, "notifications:");
    let enqueued = count_before(notifications, "enqueued").unwrap();
    assert!(
        enqueued > 0,
        "the incident enqueues notifications: {stdout}"
    );
    let lost = line_with(&stdout, "lost:");
    assert!(
        lost.starts_with("  lost: 0 ")
            && lost.contains("stuck: 0")
            && lost.contains("unexpected keys: 0"),
        "{lost}"
    );

    // The kept store says the same: every row accounted for, none pending.
    let store = SqliteStore::open(&kept.path().join("spendwatch.db")).unwrap();
    let rows = store.list_outbox(None, 100_000).unwrap();
    assert_eq!(rows.len() as u64, enqueued);
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *states.entry(row.state.as_str()).or_default() += 1;
        match row.state {
            RowState::Delivered => assert!(row.delivered_at.is_some(), "{row:?}"),
            RowState::Dead => assert!(row.last_error.is_some(), "{row:?}"),
            RowState::Skipped | RowState::Suppressed => {
                assert!(row.suppressed_by.is_some(), "{row:?}")
            }
            RowState::Pending => panic!("left pending: {row:?}"),
        }
    }
    assert!(
        states.get("delivered").is_some_and(|n| *n > 0),
        "{states:?}"
    );
    eprintln!("soak test: {:?} wall, outbox {states:?}", started.elapsed());
}
