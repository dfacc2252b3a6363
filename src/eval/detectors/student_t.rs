//! Small-sample prediction interval: the mean and standard deviation of everything seen
//! (Welford, O(1) per sample) with a Student-t interval that is wide while `n` is small —
//! the right tool for a new account's first weeks.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{Assessment, Detector, Sample, short};

const MIN_RELATIVE_SPREAD: f64 = 0.02;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StudentT {
    confidence: f64,
    min_samples: usize,
    n: u64,
    mean: f64,
    m2: f64,
}

impl StudentT {
    pub fn new(confidence: f64, min_samples: usize) -> Self {
        StudentT {
            confidence: if confidence.is_finite() {
                confidence.clamp(0.5, 0.999_999)
            } else {
                0.99
            },
            min_samples: min_samples.max(3),
            n: 0,
            mean: 0.0,
            m2: 0.0,
        }
    }
}

impl Detector for StudentT {
    fn name(&self) -> &'static str {
        "student_t"
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        let x = sample.value;
        if !x.is_finite() {
            return None;
        }
        let judged = if self.n as usize >= self.min_samples {
            let n = self.n as f64;
            let sd = (self.m2 / (n - 1.0)).sqrt();
            let spread = (sd * (1.0 + 1.0 / n).sqrt())
                .max(self.mean.abs() * MIN_RELATIVE_SPREAD)
                .max(f64::MIN_POSITIVE);
            StudentsT::new(0.0, 1.0, n - 1.0).ok().map(|t| {
                let q = t.inverse_cdf(0.5 + self.confidence / 2.0);
                let deviation = ((x - self.mean) / spread).clamp(-1e12, 1e12);
                let score = (2.0 * t.cdf(deviation.abs()) - 1.0).clamp(0.0, 1.0);
                let half = (q * spread).min(f64::MAX / 4.0);
                Assessment {
                    expected: self.mean,
                    lower: self.mean - half,
                    upper: self.mean + half,
                    deviation,
                    score: if score.is_finite() { score } else { 1.0 },
                    explanation: format!(
                        "{} is outside the {:.0} % prediction interval {}–{} from {} samples",
                        short(x),
                        self.confidence * 100.0,
                        short(self.mean - half),
                        short(self.mean + half),
                        self.n
                    ),
                }
            })
        } else {
            None
        };
        // Welford on halved values keeps huge inputs finite; the moments scale back by 2 and 4.
        self.n += 1;
        let delta = x / 2.0 - self.mean / 2.0;
        self.mean += 2.0 * delta / self.n as f64;
        let delta2 = x / 2.0 - self.mean / 2.0;
        let m2 = self.m2 + 4.0 * delta * delta2;
        self.m2 = if m2.is_finite() {
            m2.min(f64::MAX / 4.0)
        } else {
            f64::MAX / 4.0
        };
        judged.filter(|a| a.expected.is_finite() && a.lower.is_finite() && a.upper.is_finite())
    }
}
