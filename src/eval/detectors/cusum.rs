//! Change point / level shift: a two-sided CUSUM of standardized residuals against a slow
//! running level. A new steady level is reported once, then adopted as the baseline,
//! instead of firing for as long as it lasts.

use super::{Assessment, Detector, Sample, score_from_deviation, short};

const MIN_RELATIVE_SPREAD: f64 = 0.02;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cusum {
    alpha: f64,
    k: f64,
    h: f64,
    min_samples: usize,
    seen: usize,
    level: f64,
    variance: f64,
    up: f64,
    down: f64,
}

impl Cusum {
    pub fn new(alpha: f64, k: f64, h: f64, min_samples: usize) -> Self {
        Cusum {
            alpha: if alpha.is_finite() {
                alpha.clamp(0.001, 1.0)
            } else {
                0.05
            },
            k: if k.is_finite() { k.max(0.0) } else { 0.5 },
            h: if h.is_finite() { h.max(0.1) } else { 5.0 },
            min_samples: min_samples.max(2),
            seen: 0,
            level: 0.0,
            variance: 0.0,
            up: 0.0,
            down: 0.0,
        }
    }

    fn learn(&mut self, x: f64) {
        if self.seen == 0 {
            self.level = x;
        } else {
            let diff = x / 2.0 - self.level / 2.0;
            let step = self.alpha * diff;
            self.level += 2.0 * step;
            let var = (1.0 - self.alpha) * (self.variance + 4.0 * diff * step);
            self.variance = if var.is_finite() {
                var.min(f64::MAX / 4.0)
            } else {
                f64::MAX / 4.0
            };
        }
        self.seen += 1;
    }
}

impl Detector for Cusum {
    fn name(&self) -> &'static str {
        "cusum"
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        let x = sample.value;
        if !x.is_finite() {
            return None;
        }
        if self.seen < self.min_samples {
            self.learn(x);
            return None;
        }
        let spread = self
            .variance
            .sqrt()
            .max(self.level.abs() * MIN_RELATIVE_SPREAD)
            .max(f64::MIN_POSITIVE);
        let level = self.level;
        let z = ((x - level) / spread).clamp(-1e12, 1e12);
        self.up = (self.up + z - self.k).max(0.0);
        self.down = (self.down - z - self.k).max(0.0);
        let (sum, sign) = if self.up >= self.down {
            (self.up, 1.0)
        } else {
            (self.down, -1.0)
        };
        // Scaled so that reaching `h` reads as a 3σ event.
        let deviation = (sign * sum * 3.0 / self.h).clamp(-1e12, 1e12);
        let shifted = sum > self.h;
        let half = (self.h * spread).min(f64::MAX / 4.0);
        let assessment = Assessment {
            expected: level,
            lower: level - half,
            upper: level + half,
            deviation,
            score: score_from_deviation(deviation),
            explanation: if shifted {
                format!(
                    "level shift {}: cumulative deviation {:.1}σ from the running level {}; the new level becomes the baseline",
                    if sign > 0.0 { "up" } else { "down" },
                    sum,
                    short(level)
                )
            } else {
                format!(
                    "cumulative deviation {:.1}σ from the running level {}",
                    sum,
                    short(level)
                )
            },
        };
        if shifted {
            // Report once, then adopt the new level.
            self.level = x;
            self.up = 0.0;
            self.down = 0.0;
        } else {
            self.learn(x);
        }
        Some(assessment)
    }
}
