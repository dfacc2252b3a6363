//! Period-to-date series → spend per interval, spend rate and the forecast to period end.
//!
//! A period-to-date value is cumulative within its billing period. Spend between two
//! points of the same period is their difference; the first point of a new period is the
//! spend since that period started (a reset is not negative spend); a gap in the data
//! widens an interval, it never becomes zero spend.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use crate::model::{Period, Point};

/// Spend observed between two instants of data time.
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub from: Timestamp,
    pub to: Timestamp,
    pub amount: Decimal,
}

/// Spend per interval from period-to-date points (oldest first).
pub fn increments(points: &[Point]) -> Vec<Increment> {
    let mut out = Vec::with_capacity(points.len());
    for pair in points.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let same_period = prev.period.map(|p| p.start) == next.period.map(|p| p.start);
        if same_period {
            // The value held from `at` to `last_seen` (re-polls of an unchanged value): no
            // spend there; the change happened after it was last seen.
            if prev.last_seen > prev.at {
                out.push(Increment {
                    from: prev.at,
                    to: prev.last_seen,
                    amount: Decimal::ZERO,
                });
            }
            out.push(Increment {
                from: prev.last_seen.min(next.at),
                to: next.at,
                amount: next.value - prev.value,
            });
        } else if let Some(period) = next.period
            && period.start < next.at
        {
            out.push(Increment {
                from: period.start.max(prev.last_seen),
                to: next.at,
                amount: next.value,
            });
        }
    }
    out
}

/// Average spend per second over `[end - window, end]`, pro-rating increments that straddle
/// the window start. `None` when the data covers less than `min_coverage` of that window.
pub fn rate_per_second(
    increments: &[Increment],
    end: Timestamp,
    window: SignedDuration,
    min_coverage: SignedDuration,
) -> Option<f64> {
    let start = end - window;
    let mut amount = 0.0;
    let mut covered = 0.0;
    for inc in increments {
        let from = inc.from.max(start);
        let to = inc.to.min(end);
        if to <= from {
            continue;
        }
        let span = inc.to.duration_since(inc.from).as_secs_f64();
        let overlap = to.duration_since(from).as_secs_f64();
        if span <= 0.0 {
            continue;
        }
        amount += inc.amount.to_f64()? * overlap / span;
        covered += overlap;
    }
    (covered > 0.0 && covered >= min_coverage.as_secs_f64()).then(|| amount / covered)
}

/// How a forecast was made, for the alert text.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub value: Decimal,
    pub rate_per_day: Decimal,
    /// The trailing window the rate was taken over (may be shorter than asked early in a period).
    pub window: SignedDuration,
    /// How it was made, for the alert text: "linear: $115.82/day over the last 72h", …
    pub method: String,
}

/// Linear forecast to the end of `period`: the latest value plus the recent spend rate
/// (over the trailing `window` of data in this period) times the time left.
/// `None` early in a period, when less than a day (or the whole window, if shorter) of data exists.
pub fn forecast_period_end(
    points: &[Point],
    period: Period,
    window: SignedDuration,
) -> Option<Forecast> {
    let in_period: Vec<Point> = points
        .iter()
        .filter(|p| p.period.map(|pp| pp.start) == Some(period.start))
        .cloned()
        .collect();
    let latest = in_period.last()?;
    // Spend from the period start to the first point counts as an interval too.
    let mut with_start = Vec::with_capacity(in_period.len() + 1);
    with_start.push(Point {
        at: period.start,
        last_seen: period.start,
        period: Some(period),
        value: Decimal::ZERO,
    });
    with_start.extend(in_period.iter().cloned());
    let incs = increments(&with_start);
    let elapsed = latest.at.duration_since(period.start);
    let effective = window.min(elapsed);
    let min_coverage = SignedDuration::from_hours(24).min(window);
    let rate = rate_per_second(&incs, latest.at, effective, min_coverage)?;
    let remaining = period.end.duration_since(latest.at).as_secs_f64().max(0.0);
    let rate_dec = Decimal::from_f64(rate)?;
    let value = latest.value + Decimal::from_f64(rate * remaining)?;
    let rate_per_day = (rate_dec * Decimal::from(86_400)).round_dp(2);
    Some(Forecast {
        value: value.round_dp(2),
        rate_per_day,
        window: effective,
        method: format!("linear over the last {}h", effective.as_secs() / 3600),
    })
}

/// Cumulative value of a period-to-date run at `t`, interpolated between points (from 0 at
/// the period start).
fn value_at(points: &[&Point], period: Period, t: Timestamp) -> Option<f64> {
    let mut prev = (period.start, 0.0);
    for p in points {
        let v = p.value.to_f64()?;
        if p.at >= t {
            let span = p.at.duration_since(prev.0).as_secs_f64();
            let done = t.duration_since(prev.0).as_secs_f64();
            return Some(if span <= 0.0 {
                v
            } else {
                prev.1 + (v - prev.1) * done / span
            });
        }
        prev = (p.last_seen.max(p.at), v);
    }
    None
}

/// Forecast from the daily profile of past periods: the share of a period's spend that past
/// periods had reached at the same point of the period (their median), applied to this
/// period's spend so far. `None` without a complete past period or very early in a period.
pub fn forecast_by_profile(points: &[Point], period: Period, latest: &Point) -> Option<Forecast> {
    let length = period.length_seconds();
    let fraction = latest.at.duration_since(period.start).as_secs_f64() / length;
    if !(0.03..1.0).contains(&fraction) {
        return None;
    }
    let mut past: std::collections::BTreeMap<Timestamp, (Period, Vec<&Point>)> =
        std::collections::BTreeMap::new();
    for p in points {
        if let Some(pp) = p.period
            && pp.end <= period.start
        {
            past.entry(pp.start)
                .or_insert_with(|| (pp, Vec::new()))
                .1
                .push(p);
        }
    }
    let mut shares = Vec::new();
    for (pp, pts) in past.values() {
        let last = pts.last()?;
        // Only periods seen to (nearly) their end say what the whole period came to.
        let complete = pp
            .end
            .duration_since(last.last_seen.max(last.at))
            .as_secs_f64()
            < pp.length_seconds() * 0.05;
        let total = last.value.to_f64()?;
        if !complete || total <= 0.0 {
            continue;
        }
        let t = pp.start + SignedDuration::from_secs_f64(fraction * pp.length_seconds());
        if let Some(v) = value_at(pts, *pp, t) {
            shares.push(v / total);
        }
    }
    if shares.is_empty() {
        return None;
    }
    let share = statrs::statistics::Median::median(&statrs::statistics::Data::new(shares.clone()));
    if share < 0.01 {
        return None;
    }
    let value = Decimal::from_f64(latest.value.to_f64()? / share)?.round_dp(2);
    let days_left = period.end.duration_since(latest.at).as_secs_f64() / 86_400.0;
    let rate_per_day = if days_left > 0.0 {
        Decimal::from_f64((value - latest.value).to_f64()? / days_left)?.round_dp(2)
    } else {
        Decimal::ZERO
    };
    Some(Forecast {
        value,
        rate_per_day,
        window: SignedDuration::ZERO,
        method: format!(
            "daily profile of {} past period{}: {:.0} % of a period's spend by this point",
            shares.len(),
            if shares.len() == 1 { "" } else { "s" },
            share * 100.0
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn period(start: &str, end: &str) -> Period {
        Period {
            start: ts(start),
            end: ts(end),
        }
    }

    fn pt(at: &str, value: &str, p: Period) -> Point {
        Point {
            at: ts(at),
            last_seen: ts(at),
            period: Some(p),
            value: Decimal::from_str(value).unwrap(),
        }
    }

    #[test]
    fn a_period_reset_is_not_negative_spend() {
        let nov = period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let dec = period("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let points = [
            pt("2026-11-30T12:00:00Z", "2950", nov),
            pt("2026-11-30T18:00:00Z", "2970", nov),
            pt("2026-12-01T06:00:00Z", "15", dec),
        ];
        let incs = increments(&points);
        assert_eq!(incs.len(), 2);
        assert_eq!(incs[0].amount, Decimal::from(20));
        assert_eq!(
            incs[1].amount,
            Decimal::from(15),
            "spend since the new period began"
        );
        assert_eq!(incs[1].from, ts("2026-12-01T00:00:00Z"));
        assert!(incs.iter().all(|i| i.amount >= Decimal::ZERO));
    }

    #[test]
    fn an_unchanged_value_is_zero_spend_until_last_seen() {
        let nov = period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let held = Point {
            at: ts("2026-11-02T00:00:00Z"),
            last_seen: ts("2026-11-04T00:00:00Z"),
            period: Some(nov),
            value: Decimal::from(100),
        };
        let incs = increments(&[held, pt("2026-11-04T06:00:00Z", "130", nov)]);
        assert_eq!(incs.len(), 2);
        assert_eq!(
            (incs[0].from, incs[0].to, incs[0].amount),
            (
                ts("2026-11-02T00:00:00Z"),
                ts("2026-11-04T00:00:00Z"),
                Decimal::ZERO
            )
        );
        assert_eq!(
            (incs[1].from, incs[1].amount),
            (ts("2026-11-04T00:00:00Z"), Decimal::from(30))
        );
    }

    #[test]
    fn a_gap_widens_the_interval_instead_of_being_zero() {
        let nov = period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let points = [
            pt("2026-11-02T00:00:00Z", "100", nov),
            pt("2026-11-05T00:00:00Z", "400", nov),
        ];
        let incs = increments(&points);
        let rate = rate_per_second(
            &incs,
            ts("2026-11-05T00:00:00Z"),
            SignedDuration::from_hours(24),
            SignedDuration::ZERO,
        )
        .unwrap();
        assert!(
            (rate * 86_400.0 - 100.0).abs() < 1e-9,
            "100/day across the gap, got {}",
            rate * 86_400.0
        );
    }

    #[test]
    fn linear_forecast_uses_the_recent_rate() {
        let nov = period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        // 80/day for 10 days, then 380/day for two days.
        let mut points = Vec::new();
        for day in 1..=10 {
            points.push(pt(
                &format!("2026-11-{:02}T00:00:00Z", day + 1),
                &(80 * day).to_string(),
                nov,
            ));
        }
        points.push(pt("2026-11-12T00:00:00Z", "1180", nov));
        points.push(pt("2026-11-13T00:00:00Z", "1560", nov));
        let f = forecast_period_end(&points, nov, SignedDuration::from_hours(48)).unwrap();
        assert_eq!(f.rate_per_day, Decimal::from(380));
        // 1560 + 380/day × 18 days left
        assert_eq!(f.value, Decimal::from(1560 + 380 * 18));

        let steady =
            forecast_period_end(&points[..10], nov, SignedDuration::from_hours(72)).unwrap();
        assert_eq!(steady.value, Decimal::from(800 + 80 * 20));
    }

    #[test]
    fn profile_forecast_learns_front_loaded_periods() {
        // October: half the month's 3,000 spent in its first 3 days, then flat 50/day.
        let oct = period("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z");
        let nov = period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let mut points = vec![pt("2026-10-04T00:00:00Z", "1500", oct)];
        for d in 5..=31 {
            points.push(pt(
                &format!("2026-10-{d:02}T00:00:00Z"),
                &(1500 + 50 * (d - 4)).to_string(),
                oct,
            ));
        }
        points.push(pt("2026-11-01T00:00:00Z", "3000", oct));
        // November so far looks the same: 1,500 after three days.
        points.push(pt("2026-11-04T00:00:00Z", "1500", nov));
        let latest = points.last().unwrap().clone();
        let profile = forecast_by_profile(&points, nov, &latest).unwrap();
        assert!(
            (profile.value - Decimal::from(3000)).abs() < Decimal::from(120),
            "{}",
            profile.value
        );
        assert!(
            profile.method.contains("1 past period"),
            "{}",
            profile.method
        );
        // Linear extrapolation of the first three days would say 15,000.
        let linear = forecast_period_end(&points, nov, SignedDuration::from_hours(72)).unwrap();
        assert!(linear.value > Decimal::from(14_000), "{}", linear.value);
        // Without a past period there is no profile.
        assert!(forecast_by_profile(&points[points.len() - 1..], nov, &latest).is_none());
    }

    #[test]
    fn no_forecast_in_the_first_hours_of_a_period() {
        let nov = period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let points = [pt("2026-11-01T06:00:00Z", "20", nov)];
        assert!(forecast_period_end(&points, nov, SignedDuration::from_hours(72)).is_none());
        let points = [pt("2026-11-02T06:00:00Z", "100", nov)];
        let f = forecast_period_end(&points, nov, SignedDuration::from_hours(72)).unwrap();
        assert_eq!(f.window, SignedDuration::from_hours(30));
    }
}
