//! `auto`: the default ensemble for series it has never seen. It infers the sampling
//! interval from the first samples, then asks two robust detectors that fail differently —
//! a long whole-series band (wide, ignores the daily cycle) and a per-time-of-day baseline
//! (narrow, knows the cycle) — and alerts only when both agree. Either alone is noisier.

use jiff::SignedDuration;

use super::robust_z::RobustZ;
use super::seasonal::Seasonal;
use super::{Assessment, Detector, Sample, score_from_deviation};

/// How far (in spreads) the whole-series band must lean the same way to confirm.
const AGREEMENT: f64 = 0.5;

/// The daily baseline's deviation is divided by this before scoring.
const DAILY_STRICTNESS: f64 = 2.0;

/// Samples collected before the interval is inferred.
const PROBE: usize = 8;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Auto {
    sensitivity: f64,
    probe: Vec<Sample>,
    parts: Option<(RobustZ, Seasonal)>,
}

impl Auto {
    pub fn new(sensitivity: f64) -> Self {
        Auto {
            sensitivity,
            probe: Vec::with_capacity(PROBE),
            parts: None,
        }
    }

    /// Median gap between the probe's samples, at least a minute.
    fn interval(probe: &[Sample]) -> SignedDuration {
        let mut gaps: Vec<i64> = probe
            .windows(2)
            .map(|w| w[1].at.duration_since(w[0].at).as_secs())
            .filter(|g| *g > 0)
            .collect();
        gaps.sort_unstable();
        SignedDuration::from_secs(gaps.get(gaps.len() / 2).copied().unwrap_or(3600).max(60))
    }

    fn start(&mut self) {
        let step = Self::interval(&self.probe).as_secs() as f64;
        let per_day = (86_400.0 / step).round().max(1.0) as usize;
        // Two weeks of values for the whole-series band, one value per time of day per day
        // for the last two weeks for the daily baseline.
        let global = RobustZ::new(per_day * 14, per_day * 2, self.sensitivity + 1.0);
        // Time-of-day slots are at least an hour long: sub-hourly samples share their hour's
        // slot, so a slot holds enough values for a stable median and MAD.
        let slot_seconds = (step as i64).max(3600);
        let slots = (86_400 / slot_seconds).max(1) as usize;
        let per_slot = 14 * (slot_seconds as f64 / step).round().max(1.0) as usize;
        let daily = Seasonal::with_slots(slots, slot_seconds, per_slot, self.sensitivity);
        let mut parts = (global, daily);
        for s in self.probe.drain(..) {
            parts.0.observe(s);
            parts.1.observe(s);
        }
        self.parts = Some(parts);
    }
}

impl Detector for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        if self.parts.is_none() {
            self.probe.push(sample);
            if self.probe.len() >= PROBE {
                self.start();
            }
            return None;
        }
        let (global, daily) = self.parts.as_mut()?;
        let g = global.observe(sample);
        let d = daily.observe(sample)?;
        let g = g?;
        // The time-of-day baseline judges; the whole-series band must at least lean the same
        // way by one spread, which filters the daily baseline's noisy slots.
        let agrees = g.deviation.signum() == d.deviation.signum() && g.deviation.abs() >= AGREEMENT;
        // The daily baseline's slots hold few values: demand more of it than of one detector.
        let daily_score = score_from_deviation(d.deviation / DAILY_STRICTNESS);
        let score = if agrees {
            daily_score
        } else {
            daily_score.min(g.score)
        };
        Some(Assessment {
            score,
            explanation: format!("{}; {}", d.explanation, g.explanation),
            ..d
        })
    }
}
