//! Window alignment: turns any stored series into "how much in `[start, end)`", by the time
//! the data describes. Period-to-date series become spans by differences within a period
//! (see `ptd`); traffic samples each describe the step that ends at their timestamp. A window
//! is complete only when spans cover (almost) all of it: a gap is unknown, never zero.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use super::ptd::{Increment, increments};
use crate::model::{ObservationKind, Point};

/// Share of a window that spans must cover for it to count as complete. The rest is
/// extrapolated at the covered rate (billing data rarely lands exactly on a boundary).
pub const MIN_COVERAGE: f64 = 0.95;

/// An aligned window and what was spent or used in it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowAmount {
    pub start: Timestamp,
    pub end: Timestamp,
    pub amount: Decimal,
    /// Share of the window covered by data, in [0, 1].
    pub coverage: f64,
}

/// Spans for period-to-date points: each period's first point counts from the period start.
pub fn spans_from_period_to_date(points: &[Point]) -> Vec<Increment> {
    let mut out = Vec::with_capacity(points.len());
    if let Some(first) = points.first()
        && let Some(period) = first.period
        && period.start < first.at
    {
        out.push(Increment {
            from: period.start,
            to: first.at,
            amount: first.value,
        });
    }
    out.extend(increments(points));
    out
}

/// Spans for samples that each describe the step ending at their timestamp. The step is the
/// smallest gap between samples (a missing sample leaves a hole, not a longer step).
pub fn spans_from_samples(points: &[Point]) -> Vec<Increment> {
    let step = points
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .filter(|d| d.is_positive())
        .min();
    let Some(step) = step else {
        return Vec::new();
    };
    points
        .iter()
        .map(|p| Increment {
            from: p.at - step,
            to: p.at,
            amount: p.value,
        })
        .collect()
}

/// The spans of a series of the given kind. Period totals are one span per period.
pub fn spans(kind: ObservationKind, points: &[Point]) -> Vec<Increment> {
    let mut spans = match kind {
        ObservationKind::PeriodToDate | ObservationKind::Usage => spans_from_period_to_date(points),
        ObservationKind::Traffic => spans_from_samples(points),
        ObservationKind::PeriodTotal => points
            .iter()
            .filter_map(|p| {
                p.period.map(|period| Increment {
                    from: period.start,
                    to: period.end,
                    amount: p.value,
                })
            })
            .collect(),
    };
    // A rule holds every series' spans at once (millions at 10,000 accounts): no slack.
    spans.shrink_to_fit();
    spans
}

/// The amount in `[start, end)`, pro-rating spans that straddle the edges. `None` when the
/// data covers less than `MIN_COVERAGE` of the window (not yet complete, or a gap).
pub fn window_amount(
    spans: &[Increment],
    start: Timestamp,
    end: Timestamp,
) -> Option<WindowAmount> {
    // Whole milliseconds (what the store keeps): integer overlaps, one conversion each.
    let (start_ms, end_ms) = (start.as_millisecond(), end.as_millisecond());
    let length = (end_ms - start_ms) as f64;
    if length <= 0.0 {
        return None;
    }
    let mut amount = 0.0;
    let mut covered = 0.0;
    for s in spans {
        let (span_from, span_to) = (s.from.as_millisecond(), s.to.as_millisecond());
        let overlap = span_to.min(end_ms) - span_from.max(start_ms);
        let span = span_to - span_from;
        if overlap <= 0 || span <= 0 {
            continue;
        }
        amount += to_f64(s.amount)? * overlap as f64 / span as f64;
        covered += overlap as f64;
    }
    let coverage = (covered / length).min(1.0);
    if coverage < MIN_COVERAGE {
        return None;
    }
    Some(WindowAmount {
        start,
        end,
        amount: from_f64_6dp(amount / coverage)?,
        coverage,
    })
}

/// `Decimal::to_f64` without its 128-bit division: a mantissa below 2^53 over a power of
/// ten up to 10^22 are both exact in f64, so one division gives the correctly rounded value
/// (money and usage amounts always take this path).
pub(crate) fn to_f64(d: Decimal) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    const EXACT: i128 = 1 << 53;
    let mantissa = d.mantissa();
    match POW10.get(d.scale() as usize) {
        Some(power) if (-EXACT..=EXACT).contains(&mantissa) => Some(mantissa as f64 / power),
        _ => d.to_f64(),
    }
}

/// `Decimal::from_f64(x)?.round_dp(6)` without the exact binary-to-decimal expansion:
/// below 10⁸ (x·10⁶ within 14 digits, well inside what f64 holds exactly) the rounded millionths
/// are the integer nearest x·10⁶.
pub(crate) fn from_f64_6dp(x: f64) -> Option<Decimal> {
    if x.is_finite() && x.abs() < 1e8 {
        let millionths = (x * 1e6).round() as i64;
        Some(Decimal::new(millionths, 6).normalize())
    } else {
        Some(Decimal::from_f64(x)?.round_dp(6))
    }
}

/// The last `count` whole windows of `size` ending at or before `now`, aligned to
/// multiples of `size` shifted by `offset` (e.g. +9 h for days in JST), oldest first.
pub fn aligned_windows(
    now: Timestamp,
    size: SignedDuration,
    offset: SignedDuration,
    count: usize,
) -> Vec<(Timestamp, Timestamp)> {
    let size_s = size.as_secs().max(1);
    let shifted = now.as_second() + offset.as_secs();
    let last_end = shifted.div_euclid(size_s) * size_s - offset.as_secs();
    (0..count as i64)
        .rev()
        .filter_map(|i| {
            let end = Timestamp::from_second(last_end - i * size_s).ok()?;
            Some((end - size, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast conversion agrees with rust_decimal's on amounts as they are stored, and
    /// falls back to it beyond the exact range.
    #[test]
    fn decimal_to_f64_matches_rust_decimal() {
        use std::str::FromStr;
        let mut seed: u64 = 0x5EED;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let scale = (seed % 9) as u32;
            let mantissa =
                (seed >> 8) as i64 % 10_000_000_000_000 * if seed % 2 == 0 { 1 } else { -1 };
            let d = Decimal::new(mantissa, scale);
            let (fast, slow) = (to_f64(d).unwrap(), d.to_f64().unwrap());
            assert!(
                (fast - slow).abs() <= slow.abs() * 1e-15,
                "{d}: {fast} vs {slow}"
            );
        }
        for text in [
            "0.1",
            "123.4567",
            "-0.0001",
            "79228162514264337593543950335",
            "1e-28",
        ] {
            let d = Decimal::from_str(text)
                .or_else(|_| Decimal::from_scientific(text))
                .unwrap();
            let (fast, slow) = (to_f64(d).unwrap(), d.to_f64().unwrap());
            assert!(
                (fast - slow).abs() <= slow.abs() * 1e-15,
                "{d}: {fast} vs {slow}"
            );
        }
        assert_eq!(to_f64(Decimal::new(1, 1)), Some(0.1));
    }

    /// Rounding to millionths gives the millionth nearest the value, and differs from
    /// rust_decimal's conversion then rounding (which rounds twice: to 16 digits, then to
    /// millionths) by at most one millionth, only where the value is within a hair of a tie.
    #[test]
    fn f64_to_millionths_is_the_nearest_millionth() {
        let mut seed: u64 = 0xF00D;
        let mut differ = 0;
        for i in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let magnitude = 10f64.powi((seed % 14) as i32 - 4);
            let x = ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * magnitude;
            let fast = from_f64_6dp(x).unwrap();
            let error = (fast.to_f64().unwrap() - x).abs();
            assert!(error <= 0.5e-6 + x.abs() * 1e-15, "case {i}: {x} → {fast}");
            let slow = Decimal::from_f64(x).unwrap().round_dp(6);
            if fast != slow {
                differ += 1;
                assert!((fast - slow).abs() <= Decimal::new(1, 6), "case {i}: {x}");
            }
        }
        assert!(
            differ < 100,
            "{differ} of 50,000 differ from rust_decimal's"
        );
        assert_eq!(from_f64_6dp(24.0).unwrap().to_string(), "24");
        assert_eq!(from_f64_6dp(1e12), Decimal::from_f64(1e12));
        assert_eq!(from_f64_6dp(f64::NAN), None);
    }
    use crate::model::Period;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ptd(at: &str, value: i64, period: Period) -> Point {
        Point {
            at: ts(at),
            last_seen: ts(at),
            period: Some(period),
            value: Decimal::from(value),
        }
    }

    fn sample(at: &str, value: i64) -> Point {
        Point {
            at: ts(at),
            last_seen: ts(at),
            period: None,
            value: Decimal::from(value),
        }
    }

    fn nov() -> Period {
        Period {
            start: ts("2026-11-01T00:00:00Z"),
            end: ts("2026-12-01T00:00:00Z"),
        }
    }

    #[test]
    fn daily_windows_from_period_to_date_points_at_odd_times() {
        // 24/day accrued, polled at 06:00 every day.
        let points: Vec<Point> = (1..=5)
            .map(|d| {
                ptd(
                    &format!("2026-11-{:02}T06:00:00Z", d),
                    24 * (d - 1) + 6,
                    nov(),
                )
            })
            .collect();
        let spans = spans(ObservationKind::PeriodToDate, &points);
        let w = window_amount(
            &spans,
            ts("2026-11-02T00:00:00Z"),
            ts("2026-11-03T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.amount, Decimal::from(24));
        assert_eq!(w.coverage, 1.0);
        // The last day is only covered up to 06:00: not complete.
        assert!(
            window_amount(
                &spans,
                ts("2026-11-05T00:00:00Z"),
                ts("2026-11-06T00:00:00Z")
            )
            .is_none()
        );
    }

    #[test]
    fn a_gap_makes_a_window_incomplete_not_zero() {
        let points = [
            ptd("2026-11-02T00:00:00Z", 48, nov()),
            ptd("2026-11-04T00:00:00Z", 96, nov()),
        ];
        let spans = spans(ObservationKind::PeriodToDate, &points);
        // One span over two days: each day gets its pro-rated half.
        let w = window_amount(
            &spans,
            ts("2026-11-02T00:00:00Z"),
            ts("2026-11-03T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.amount, Decimal::from(24));
        let traffic = [
            sample("2026-11-02T01:00:00Z", 10),
            sample("2026-11-02T02:00:00Z", 10),
            sample("2026-11-02T04:00:00Z", 10),
        ];
        let spans = spans_from_samples(&traffic);
        assert!(
            window_amount(
                &spans,
                ts("2026-11-02T00:00:00Z"),
                ts("2026-11-02T04:00:00Z")
            )
            .is_none(),
            "the missing 02:00–03:00 sample leaves a quarter uncovered"
        );
    }

    #[test]
    fn traffic_samples_describe_the_step_before_them() {
        let traffic: Vec<Point> = (1..=24)
            .map(|h| sample(&format!("2026-11-02T{:02}:00:00Z", h % 24), 100))
            .collect();
        // The sample at 00:00 of the 2nd sorts first; the rest fill the day.
        let mut sorted = traffic.clone();
        sorted.sort_by_key(|p| p.at);
        let spans = spans_from_samples(&sorted);
        let w = window_amount(
            &spans,
            ts("2026-11-02T00:00:00Z"),
            ts("2026-11-02T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.amount, Decimal::from(1200));
    }

    #[test]
    fn windows_align_to_their_size_and_offset() {
        let now = ts("2026-11-25T10:37:00Z");
        let hours = aligned_windows(now, SignedDuration::from_hours(1), SignedDuration::ZERO, 2);
        assert_eq!(
            hours,
            vec![
                (ts("2026-11-25T08:00:00Z"), ts("2026-11-25T09:00:00Z")),
                (ts("2026-11-25T09:00:00Z"), ts("2026-11-25T10:00:00Z")),
            ]
        );
        let jst_days = aligned_windows(
            now,
            SignedDuration::from_hours(24),
            SignedDuration::from_hours(9),
            1,
        );
        assert_eq!(
            jst_days,
            vec![(ts("2026-11-23T15:00:00Z"), ts("2026-11-24T15:00:00Z"))]
        );
    }

    /// Property: for any instant, size and offset, windows are contiguous, of the given size,
    /// aligned (end − offset is a multiple of the size), complete (end ≤ now) and the last
    /// one is the newest such window.
    #[test]
    fn windows_are_contiguous_aligned_and_complete() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let now =
                Timestamp::from_second(1_700_000_000 + (next() % 100_000_000) as i64).unwrap();
            let size =
                SignedDuration::from_mins([15, 60, 360, 1440, 10_080][(next() % 5) as usize]);
            let offset = SignedDuration::from_mins((next() % 1440) as i64 - 720);
            let count = 1 + (next() % 10) as usize;
            let ws = aligned_windows(now, size, offset, count);
            assert_eq!(ws.len(), count);
            for (i, (s, e)) in ws.iter().enumerate() {
                assert_eq!(e.duration_since(*s), size);
                assert_eq!(
                    (e.as_second() + offset.as_secs()).rem_euclid(size.as_secs()),
                    0
                );
                assert!(*e <= now);
                if i > 0 {
                    assert_eq!(ws[i - 1].1, *s, "contiguous");
                }
            }
            let last_end = ws[count - 1].1;
            assert!(
                now.duration_since(last_end) < size,
                "no newer complete window exists"
            );
        }
    }

    /// Property: windows that tile a period sum to what the period-to-date series says,
    /// however the points fall.
    #[test]
    fn windows_tile_period_to_date_spend() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100 {
            let mut t = ts("2026-11-01T00:00:00Z");
            let mut value = 0i64;
            let mut points = Vec::new();
            while t < ts("2026-11-20T00:00:00Z") {
                t += SignedDuration::from_mins(30 + (next() % 600) as i64);
                value += (next() % 50) as i64;
                points.push(ptd(&t.to_string(), value, nov()));
            }
            let spans = spans(ObservationKind::PeriodToDate, &points);
            let days = aligned_windows(
                ts("2026-11-19T00:00:00Z"),
                SignedDuration::from_hours(24),
                SignedDuration::ZERO,
                18,
            );
            let total: Decimal = days
                .iter()
                .map(|(s, e)| window_amount(&spans, *s, *e).unwrap().amount)
                .sum();
            let expected = crate::eval::window::window_amount(
                &spans,
                ts("2026-11-01T00:00:00Z"),
                ts("2026-11-19T00:00:00Z"),
            )
            .unwrap()
            .amount;
            assert!(
                (total - expected).abs() < Decimal::new(1, 3),
                "{total} vs {expected}"
            );
        }
    }

    #[test]
    fn a_period_reset_inside_a_window_is_not_negative() {
        let dec = Period {
            start: ts("2026-12-01T00:00:00Z"),
            end: ts("2027-01-01T00:00:00Z"),
        };
        let points = [
            ptd("2026-11-30T12:00:00Z", 700, nov()),
            ptd("2026-12-01T00:00:00Z", 712, nov()),
            ptd("2026-12-01T12:00:00Z", 12, dec),
        ];
        let spans = spans(ObservationKind::PeriodToDate, &points);
        let w = window_amount(
            &spans,
            ts("2026-11-30T12:00:00Z"),
            ts("2026-12-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.amount, Decimal::from(24));
    }
}
