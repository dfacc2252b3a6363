//! Seasonal baseline: the expected value per slot of a period (by default hour of week:
//! 168 slots), from the slot's last `per_slot` values with median and MAD; while a slot has
//! too little history the detector falls back to a rolling robust z-score over all values.

use std::collections::{HashMap, VecDeque};

use super::robust_z::RobustZ;
use super::{Assessment, Detector, Sample, assess, short};
use crate::eval::baseline::Baseline;

/// A slot needs this many past values before it is trusted.
const MIN_PER_SLOT: usize = 3;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Seasonal {
    /// Slots per period and the length of one slot.
    period_hours: usize,
    slot_seconds: i64,
    per_slot: usize,
    sensitivity: f64,
    slots: HashMap<usize, VecDeque<f64>>,
    fallback: RobustZ,
}

impl Seasonal {
    pub fn new(period_hours: usize, per_slot: usize, sensitivity: f64) -> Self {
        Seasonal {
            period_hours: period_hours.max(1),
            slot_seconds: 3600,
            per_slot: per_slot.max(MIN_PER_SLOT),
            sensitivity,
            slots: HashMap::new(),
            fallback: RobustZ::new(48, 12, sensitivity),
        }
    }

    /// `slots` slots of `slot_seconds` each (e.g. 288 five-minute slots of a day).
    pub fn with_slots(slots: usize, slot_seconds: i64, per_slot: usize, sensitivity: f64) -> Self {
        let mut s = Seasonal::new(slots, per_slot, sensitivity);
        s.slot_seconds = slot_seconds.max(1);
        s
    }

    fn slot(&self, sample: &Sample) -> usize {
        (sample
            .at
            .as_second()
            .div_euclid(self.slot_seconds)
            .rem_euclid(self.period_hours as i64)) as usize
    }

    fn slot_name(&self, sample: &Sample) -> String {
        let z = sample.at.to_zoned(jiff::tz::TimeZone::UTC);
        if self.slot_seconds != 3600 {
            format!("slot {} of {}", self.slot(sample), self.period_hours)
        } else if self.period_hours == 168 {
            format!("{:?} {:02}:00", z.weekday(), z.hour())
        } else if self.period_hours == 24 {
            format!("{:02}:00", z.hour())
        } else {
            format!("slot {} of {}", self.slot(sample), self.period_hours)
        }
    }
}

impl Detector for Seasonal {
    fn name(&self) -> &'static str {
        "seasonal"
    }

    fn observe(&mut self, sample: Sample) -> Option<Assessment> {
        if !sample.value.is_finite() {
            return None;
        }
        let slot = self.slot(&sample);
        let fallback = self.fallback.observe(sample);
        let history: Vec<f64> = self
            .slots
            .get(&slot)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let judged = if history.len() >= MIN_PER_SLOT {
            let name = self.slot_name(&sample);
            Baseline::learn(&history).map(|b| {
                assess(b.median, b.spread, self.sensitivity, sample.value, |d| {
                    format!("{d:.1} MAD from the {name} baseline of {}", short(b.median))
                })
            })
        } else {
            fallback.map(|mut a| {
                a.explanation = format!(
                    "{} (slot history too short; whole-series baseline)",
                    a.explanation
                );
                a
            })
        };
        let values = self.slots.entry(slot).or_default();
        if values.len() == self.per_slot {
            values.pop_front();
        }
        values.push_back(sample.value);
        judged
    }
}
