//! Robust z-score: the rolling median and MAD of the last `window` values, with the MAD
//! floored (see `baseline`) so a flat series does not make every wobble infinite.

use std::collections::VecDeque;

use super::{Assessment, Detector, Sample, assess, short};
use crate::eval::baseline::Baseline;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RobustZ {
    window: VecDeque<f64>,
    capacity: usize,
    min_samples: usize,
    sensitivity: f64,
}

impl RobustZ {
    pub fn new(capacity: usize, min_samples: usize, sensitivity: f64) -> Self {
        let capacity = capacity.max(3);
        RobustZ {
            window: VecDeque::with_capacity(capacity),
            capacity,
            min_samples: min_samples.clamp(3, capacity),
            sensitivity,
        }
    }
}

impl Detector for RobustZ {
    fn name(&self) -> &'static str {
        "robust_z"
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        let judged = if self.window.len() >= self.min_samples {
            let history: Vec<f64> = self.window.iter().copied().collect();
            Baseline::learn(&history).map(|b| {
                let n = history.len();
                assess(b.median, b.spread, self.sensitivity, sample.value, |d| {
                    format!(
                        "{d:.1} MAD from the median {} of the last {n} values",
                        short(b.median)
                    )
                })
            })
        } else {
            None
        };
        if sample.value.is_finite() {
            if self.window.len() == self.capacity {
                self.window.pop_front();
            }
            self.window.push_back(sample.value);
        }
        judged
    }
}
