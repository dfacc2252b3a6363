//! `spendwatch detect --input`: the series CSV (`parse_series`, what `read_series` reads),
//! then every detector over the first samples, as the command does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendwatch::config::rules::Direction;
use spendwatch::detect::{parse_series, run};

/// Enough points to warm every detector up; more only slows the fuzzer down.
const MAX_SAMPLES: usize = 400;

fuzz_target!(|data: &[u8]| {
    let Ok(samples) = parse_series(data, "fuzz.csv") else {
        return;
    };
    let samples = &samples[..samples.len().min(MAX_SAMPLES)];
    for detector in ["robust_z", "ewma", "seasonal", "student_t", "cusum", "auto"] {
        let mut out = Vec::new();
        let _ = run(detector, &[], 0.99, Direction::Both, samples, &mut out);
    }
});
