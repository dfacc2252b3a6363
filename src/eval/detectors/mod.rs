//! Streaming anomaly detectors: each sees one sample at a time with bounded work and state,
//! and answers with an expected value, a band, a score in [0, 1] and a plain explanation —
//! or nothing while it is still learning.

pub mod auto;
pub mod cusum;
pub mod ewma;
pub mod robust_z;
pub mod seasonal;
pub mod student_t;
pub mod suite;

/// Every detector `build` knows.
pub const NAMES: &[&str] = &["auto", "robust_z", "ewma", "seasonal", "student_t", "cusum"];

use jiff::Timestamp;
use statrs::distribution::{ContinuousCDF, Normal};

/// One value of a series at the time it describes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub at: Timestamp,
    pub value: f64,
}

/// A detector's judgement of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// Signed deviation in the detector's own spread units (a z-like number).
    pub deviation: f64,
    /// How unusual the sample is, in [0, 1].
    pub score: f64,
    pub explanation: String,
}

pub trait Detector: Send {
    fn name(&self) -> &'static str;
    /// Judges `sample` against what came before, then learns from it. `None` while warming up.
    fn observe(&mut self, sample: Sample) -> Option<Assessment>;
}

/// Two-sided normal tail mapped to [0, 1]: 0 at the expected value, → 1 far away.
pub fn score_from_deviation(deviation: f64) -> f64 {
    if !deviation.is_finite() {
        return if deviation.is_nan() { 0.0 } else { 1.0 };
    }
    match Normal::new(0.0, 1.0) {
        Ok(n) => (2.0 * n.cdf(deviation.abs()) - 1.0).clamp(0.0, 1.0),
        Err(_) => 0.0,
    }
}

/// Builds an assessment, keeping the band around the expected value and every number finite.
pub fn assess(
    expected: f64,
    spread: f64,
    sensitivity: f64,
    value: f64,
    explanation: impl FnOnce(f64) -> String,
) -> Assessment {
    let spread = if spread.is_finite() && spread > 0.0 {
        spread
    } else {
        f64::MIN_POSITIVE
    };
    let expected = if expected.is_finite() { expected } else { 0.0 };
    let deviation = ((value - expected) / spread).clamp(-1e12, 1e12);
    let half = (sensitivity * spread).min(f64::MAX / 4.0);
    Assessment {
        expected,
        lower: expected - half,
        upper: expected + half,
        deviation,
        score: score_from_deviation(deviation),
        explanation: explanation(deviation),
    }
}

/// Short number for explanations: `12.4`, `1.2e6`.
pub fn short(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.2e}")
    } else {
        format!("{v:.2}")
    }
}

/// Any built-in detector, as one serialisable value: what the store keeps between
/// evaluations so a restart continues where it stopped instead of relearning.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "detector", content = "state", rename_all = "snake_case")]
pub enum AnyDetector {
    Auto(auto::Auto),
    RobustZ(robust_z::RobustZ),
    Ewma(ewma::Ewma),
    Seasonal(seasonal::Seasonal),
    StudentT(student_t::StudentT),
    Cusum(cusum::Cusum),
}

impl AnyDetector {
    fn inner(&mut self) -> &mut dyn Detector {
        match self {
            AnyDetector::Auto(d) => d,
            AnyDetector::RobustZ(d) => d,
            AnyDetector::Ewma(d) => d,
            AnyDetector::Seasonal(d) => d,
            AnyDetector::StudentT(d) => d,
            AnyDetector::Cusum(d) => d,
        }
    }

    /// The learned state as JSON. Fails only on non-finite numbers, which JSON cannot hold;
    /// the caller then simply relearns from stored history next time.
    pub fn save(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| e.to_string())
    }

    pub fn restore(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}

impl Detector for AnyDetector {
    fn name(&self) -> &'static str {
        match self {
            AnyDetector::Auto(d) => d.name(),
            AnyDetector::RobustZ(d) => d.name(),
            AnyDetector::Ewma(d) => d.name(),
            AnyDetector::Seasonal(d) => d.name(),
            AnyDetector::StudentT(d) => d.name(),
            AnyDetector::Cusum(d) => d.name(),
        }
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        self.inner().observe(sample)
    }
}

/// Builds a detector by name with `key=value` parameters.
pub fn build(name: &str, params: &[(String, String)]) -> Result<AnyDetector, String> {
    let get = |key: &str| -> Result<Option<f64>, String> {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| {
                v.parse::<f64>()
                    .map_err(|_| format!("parameter {key}: {v:?} is not a number"))
            })
            .transpose()
    };
    for (k, _) in params {
        let known: &[&str] = match name {
            "robust_z" => &["window", "min_samples", "sensitivity"],
            "ewma" => &["alpha", "min_samples", "sensitivity"],
            "seasonal" => &["period_hours", "per_slot", "sensitivity"],
            "student_t" => &["confidence", "min_samples"],
            "cusum" => &["alpha", "k", "h", "min_samples"],
            "auto" => &["sensitivity"],
            _ => &[],
        };
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "detector {name} has no parameter {k:?} (it takes {})",
                known.join(", ")
            ));
        }
    }
    let usize_of = |v: f64| v.max(1.0) as usize;
    Ok(match name {
        "robust_z" => AnyDetector::RobustZ(robust_z::RobustZ::new(
            get("window")?.map_or(48, usize_of),
            get("min_samples")?.map_or(12, usize_of),
            get("sensitivity")?.unwrap_or(4.0),
        )),
        "ewma" => AnyDetector::Ewma(ewma::Ewma::new(
            get("alpha")?.unwrap_or(0.1),
            get("min_samples")?.map_or(12, usize_of),
            get("sensitivity")?.unwrap_or(4.0),
        )),
        "seasonal" => AnyDetector::Seasonal(seasonal::Seasonal::new(
            get("period_hours")?.map_or(168, usize_of),
            get("per_slot")?.map_or(6, usize_of),
            get("sensitivity")?.unwrap_or(4.0),
        )),
        "student_t" => AnyDetector::StudentT(student_t::StudentT::new(
            get("confidence")?.unwrap_or(0.99),
            get("min_samples")?.map_or(3, usize_of),
        )),
        "cusum" => AnyDetector::Cusum(cusum::Cusum::new(
            get("alpha")?.unwrap_or(0.05),
            get("k")?.unwrap_or(0.5),
            get("h")?.unwrap_or(5.0),
            get("min_samples")?.map_or(12, usize_of),
        )),
        "auto" => AnyDetector::Auto(auto::Auto::new(get("sensitivity")?.unwrap_or(4.0))),
        other => return Err(format!("unknown detector {other:?}: {}", NAMES.join(", "))),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jiff::SignedDuration;

    pub fn hourly(values: &[f64]) -> Vec<Sample> {
        let start: Timestamp = "2026-11-02T00:00:00Z".parse().unwrap();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                at: start + SignedDuration::from_hours(i as i64),
                value: *v,
            })
            .collect()
    }

    /// Property: on constant, zero, huge, tiny and negative inputs every detector stays
    /// finite, keeps its band around the expected value, and scores within [0, 1].
    #[test]
    fn every_detector_stays_finite_and_bounded() {
        let inputs: Vec<Vec<f64>> = vec![
            vec![0.0; 400],
            vec![42.0; 400],
            vec![-7.5; 400],
            vec![1e300; 400],
            (0..400)
                .map(|i| if i % 2 == 0 { 1e-300 } else { -1e300 })
                .collect(),
            (0..400).map(|i| (i as f64 * 0.7).sin() * 1e6).collect(),
            (0..400).map(|i| if i == 200 { 1e9 } else { 5.0 }).collect(),
        ];
        for name in NAMES {
            for values in &inputs {
                let mut d = build(name, &[]).unwrap();
                for s in hourly(values) {
                    if let Some(a) = d.observe(s) {
                        for v in [a.expected, a.lower, a.upper, a.deviation, a.score] {
                            assert!(v.is_finite(), "{name}: {a:?}");
                        }
                        assert!(
                            a.lower <= a.expected && a.expected <= a.upper,
                            "{name}: {a:?}"
                        );
                        assert!((0.0..=1.0).contains(&a.score), "{name}: {a:?}");
                    }
                }
            }
        }
    }

    /// Each detector flags a step up in an otherwise steady, noisy series.
    #[test]
    fn every_detector_flags_a_step() {
        let mut seed = 7u64;
        let mut noise = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let values: Vec<f64> = (0..300)
            .map(|i| 100.0 + 4.0 * noise() + if i >= 250 { 60.0 } else { 0.0 })
            .collect();
        for name in NAMES {
            let mut d = build(name, &[]).unwrap();
            let scores: Vec<f64> = hourly(&values)
                .into_iter()
                .map(|s| d.observe(s).map_or(0.0, |a| a.score))
                .collect();
            assert!(
                scores[250] > 0.99,
                "{name} misses the step: {}",
                scores[250]
            );
            let quiet = scores[200..249].iter().filter(|s| **s > 0.999).count();
            assert!(quiet <= 2, "{name} is noisy before the step: {quiet}");
        }
    }

    /// Property, over 300 random series (seeded): scales from 1e-9 to 1e12, either sign, spikes,
    /// constant runs and irregular gaps — every answer is finite, the band holds the expected
    /// value, and scores stay in [0, 1].
    #[test]
    fn random_series_never_break_the_invariants() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for case in 0..300 {
            let scale = 10f64.powi(rng.random_range(-9..=12));
            let sign = if rng.random_bool(0.2) { -1.0 } else { 1.0 };
            let mut at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
            let mut series = Vec::new();
            for _ in 0..rng.random_range(1..400) {
                at += SignedDuration::from_secs(rng.random_range(60..200_000));
                let value = match rng.random_range(0..10) {
                    0 => 0.0,
                    1 => scale * 1e6 * sign,
                    2 => scale,
                    _ => sign * scale * rng.random_range(0.0..2.0),
                };
                series.push(Sample { at, value });
            }
            for name in NAMES {
                let mut d = build(name, &[]).unwrap();
                for s in &series {
                    if let Some(a) = d.observe(*s) {
                        for v in [a.expected, a.lower, a.upper, a.deviation, a.score] {
                            assert!(v.is_finite(), "case {case} {name}: {a:?}");
                        }
                        assert!(
                            a.lower <= a.expected && a.expected <= a.upper,
                            "case {case} {name}: {a:?}"
                        );
                        assert!((0.0..=1.0).contains(&a.score), "case {case} {name}: {a:?}");
                    }
                }
            }
        }
    }

    /// What the store keeps is the whole detector: after a save and restore mid-stream, the
    /// restored detector judges the rest of the series exactly as the original does.
    #[test]
    fn saved_state_resumes_exactly() {
        let values: Vec<f64> = (0..500)
            .map(|i| {
                100.0
                    + 30.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin()
                    + (i % 7) as f64
            })
            .collect();
        let samples = hourly(&values);
        for name in NAMES {
            let mut original = build(name, &[]).unwrap();
            for s in &samples[..350] {
                original.observe(*s);
            }
            let json = original.save().unwrap();
            let mut restored = AnyDetector::restore(&json).unwrap();
            assert_eq!(restored.name(), *name);
            for s in &samples[350..] {
                assert_eq!(
                    original.observe(*s),
                    restored.observe(*s),
                    "{name} at {}",
                    s.at
                );
            }
        }
        assert!(AnyDetector::restore("{\"detector\":\"magic\",\"state\":{}}").is_err());
    }

    #[test]
    fn unknown_detectors_and_parameters_are_refused() {
        assert!(build("magic", &[]).is_err());
        assert!(build("ewma", &[("window".into(), "3".into())]).is_err());
        assert!(build("ewma", &[("alpha".into(), "x".into())]).is_err());
        assert!(build("ewma", &[("alpha".into(), "0.2".into())]).is_ok());
    }
}
