//! EWMA control limits: an exponentially weighted mean and variance of the level; a sample
//! is judged against them before it updates them, so drifts and level shifts stand out and
//! a new level is learned at the rate `alpha`.

use super::{Assessment, Detector, Sample, assess, short};

/// Spread floor as a share of |mean| (flat series).
const MIN_RELATIVE_SPREAD: f64 = 0.02;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    variance: f64,
    seen: usize,
    min_samples: usize,
    sensitivity: f64,
}

impl Ewma {
    pub fn new(alpha: f64, min_samples: usize, sensitivity: f64) -> Self {
        Ewma {
            alpha: if alpha.is_finite() {
                alpha.clamp(0.001, 1.0)
            } else {
                0.1
            },
            mean: 0.0,
            variance: 0.0,
            seen: 0,
            min_samples: min_samples.max(2),
            sensitivity,
        }
    }
}

impl Detector for Ewma {
    fn name(&self) -> &'static str {
        "ewma"
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        let x = sample.value;
        if !x.is_finite() {
            return None;
        }
        let judged = (self.seen >= self.min_samples).then(|| {
            let spread = self
                .variance
                .sqrt()
                .max(self.mean.abs() * MIN_RELATIVE_SPREAD);
            let mean = self.mean;
            assess(mean, spread, self.sensitivity, x, |d| {
                format!("{d:.1}σ from the weighted level {} (EWMA)", short(mean))
            })
        });
        if self.seen == 0 {
            self.mean = x;
        } else {
            // Halved inputs keep the update finite for values near f64::MAX.
            let diff = x / 2.0 - self.mean / 2.0;
            let step = self.alpha * diff;
            self.mean += 2.0 * step;
            let var = (1.0 - self.alpha) * (self.variance + 4.0 * diff * step);
            self.variance = if var.is_finite() {
                var.min(f64::MAX / 4.0)
            } else {
                f64::MAX / 4.0
            };
        }
        self.seen += 1;
        judged
    }
}
