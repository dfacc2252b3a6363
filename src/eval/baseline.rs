//! Robust baseline: median and MAD (scaled to σ for normal data), with a floor on the MAD
//! so a flat history does not make every wobble look infinite.

use statrs::statistics::{Data, Median};

/// MAD → σ for normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Smallest spread, as a share of |median|, that a band is built on.
pub const MIN_RELATIVE_SPREAD: f64 = 0.02;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub median: f64,
    /// Scaled MAD (≈ σ), after the floor.
    pub spread: f64,
    pub samples: usize,
}

impl Baseline {
    /// `None` for an empty history or one holding non-finite values.
    pub fn learn(history: &[f64]) -> Option<Baseline> {
        if history.is_empty() || history.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let median = Data::new(history.to_vec()).median();
        let deviations: Vec<f64> = history.iter().map(|v| (v - median).abs()).collect();
        let mad = Data::new(deviations).median() * MAD_TO_SIGMA;
        let floor = (median.abs() * MIN_RELATIVE_SPREAD).max(f64::EPSILON);
        Some(Baseline {
            median,
            spread: mad.max(floor),
            samples: history.len(),
        })
    }

    /// `[median − k·spread, median + k·spread]`.
    pub fn band(&self, sensitivity: f64) -> (f64, f64) {
        (
            self.median - sensitivity * self.spread,
            self.median + sensitivity * self.spread,
        )
    }

    /// Deviation in spreads (a robust z-score).
    pub fn score(&self, value: f64) -> f64 {
        (value - self.median) / self.spread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_one_outlier() {
        let b = Baseline::learn(&[10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 500.0]).unwrap();
        assert_eq!(b.median, 10.0);
        assert!((b.spread - 0.5 * MAD_TO_SIGMA).abs() < 1e-9, "{}", b.spread);
        let (lo, hi) = b.band(4.0);
        assert!(
            lo > 6.0 && hi < 13.0,
            "the 500 did not widen the band: {lo}..{hi}"
        );
        assert!(b.score(20.0) > 10.0);
    }

    #[test]
    fn flat_history_gets_a_floor() {
        let b = Baseline::learn(&[0.12; 14]).unwrap();
        assert!((b.spread - 0.12 * MIN_RELATIVE_SPREAD).abs() < 1e-12);
        assert!(
            b.score(0.125) < 3.0,
            "a 4 % wobble on a flat series is not an anomaly"
        );
        assert!(Baseline::learn(&[]).is_none());
        assert!(Baseline::learn(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn band_is_symmetric_around_the_median() {
        // Property: for any history, the median lies inside its own band and the band
        // width grows with the sensitivity.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let n = 3 + (seed % 20) as usize;
            let history: Vec<f64> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 10_000) as f64 / 100.0
                })
                .collect();
            let b = Baseline::learn(&history).unwrap();
            let (lo, hi) = b.band(3.0);
            let (lo4, hi4) = b.band(4.0);
            assert!(lo <= b.median && b.median <= hi);
            assert!(lo4 < lo && hi4 > hi);
            assert!(((hi - b.median) - (b.median - lo)).abs() < 1e-9);
        }
    }
}
