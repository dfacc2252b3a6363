//! The labelled scenario suite as files (`tests/scenarios/`), judged through the real
//! `spendwatch detect` command the way a user would run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::run_cli;

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// `file → [(first, last)]` incident windows, as RFC 3339 strings (they sort as times).
fn labels() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(suite_dir().join("labels.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        out.entry(row[0].to_string())
            .or_default()
            .push((row[2].to_string(), row[3].to_string()));
    }
    out
}

#[test]
fn the_committed_suite_is_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(
        &[
            "detect",
            "--suite",
            "--export",
            dir.path().to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 11, "{names:?}");
    for name in names {
        let fresh = std::fs::read(dir.path().join(&name)).unwrap();
        let committed = std::fs::read(suite_dir().join(&name))
            .unwrap_or_else(|e| panic!("tests/scenarios/{name}: {e}"));
        assert!(
            fresh == committed,
            "tests/scenarios/{name} differs from `spendwatch detect --suite --export`; regenerate it"
        );
    }
}

/// `auto` with no parameters, through the CLI: window-level recall at least 0.9 and at most
/// one false alert onset per 1,000 points over the whole suite.
#[test]
fn auto_meets_the_bar_on_every_scenario_file() {
    let labels = labels();
    let out_dir = tempfile::tempdir().unwrap();
    let (mut incidents, mut detected, mut false_onsets, mut points) = (0, 0, 0, 0);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "labels.csv"))
        .collect();
    inputs.sort();
    assert_eq!(inputs.len(), 10);
    for input in inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let output = out_dir.path().join(&name);
        let out = run_cli(
            &[
                "detect",
                "--detector",
                "auto",
                "--direction",
                "up",
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ],
            &[],
            None,
        );
        assert!(out.status.success(), "{name}: {out:?}");
        let text = std::fs::read_to_string(&output).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "timestamp",
                "value",
                "expected",
                "lower",
                "upper",
                "score",
                "alert"
            ]
        );
        let rows: Vec<(String, bool)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), &r[6] == "1")
            })
            .collect();
        points += rows.len();
        let windows = labels.get(&name).cloned().unwrap_or_default();
        let inside = |at: &str| {
            windows
                .iter()
                .any(|(a, b)| at >= a.as_str() && at <= b.as_str())
        };
        for (i, (at, alert)) in rows.iter().enumerate() {
            let onset = *alert && (i == 0 || !rows[i - 1].1);
            if onset && !inside(at) {
                false_onsets += 1;
            }
        }
        for (a, b) in &windows {
            incidents += 1;
            if rows.iter().any(|(at, alert)| *alert && at >= a && at <= b) {
                detected += 1;
            }
        }
    }
    let recall = detected as f64 / incidents as f64;
    let per_1000 = false_onsets as f64 * 1000.0 / points as f64;
    eprintln!(
        "auto via the CLI: recall {recall:.2} ({detected}/{incidents}), {per_1000:.2} false alerts per 1,000 points"
    );
    assert!(recall >= 0.9, "recall {recall}");
    assert!(per_1000 <= 1.0, "{per_1000} false alerts per 1,000 points");
}
