//! The generated world every bench measures: N accounts × M line items with traffic, hourly.
//! Deterministic, so the same world can be written into spendwatch's store and exported for
//! another system (Prometheus) to compare against.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use super::BenchOptions;
use crate::model::series::{
    ITEM_SPEND_PTD, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD, TRAFFIC,
};
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit};

/// The rules every bench evaluates: a budget, a unit-cost ratio with a learned baseline and an
/// hourly anomaly rule, over every account.
pub fn config_text(store: &Path) -> String {
    format!(
        r#"[store.sqlite]
path = "{store}"

[[sources]]
[sources.file]
name = "sim"
path = "traffic.csv"
unit = "requests"
series = "requests"
account = "unused"
interval = "1h"

[[rules]]
[rules.budget]
name = "budget"
source = "sim"
amount = "100000"
currency = "USD"
levels = [{{ percent = 80 }}, {{ percent = 100, basis = "forecast" }}]

[[rules]]
[rules.ratio]
name = "unit-cost"
numerator = {{ source = "sim" }}
denominator = {{ source = "sim", match = {{ series = "requests" }} }}
window = "1d"
per = 1000
baseline = {{ history = "7d", min_windows = 3, sensitivity = 4 }}

[[rules]]
[rules.anomaly]
name = "spend-anomaly"
series = {{ source = "sim" }}
window = "1h"
history = "7d"
"#,
        store = store.display()
    )
}

/// A cheap deterministic wobble in [-0.5, 0.5).
fn wobble(a: usize, h: usize, i: usize) -> f64 {
    let mut x = (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (h as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (i as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

fn money(v: f64) -> Decimal {
    Decimal::from_f64(v).unwrap_or_default().round_dp(4)
}

fn month(at: Timestamp) -> Period {
    let utc = jiff::tz::TimeZone::UTC;
    let first = at.to_zoned(utc.clone()).date().first_of_month();
    let start = first.to_zoned(utc.clone()).map_or(at, |z| z.timestamp());
    let end = first
        .checked_add(jiff::Span::new().months(1))
        .ok()
        .and_then(|d| d.to_zoned(utc).ok())
        .map_or(at, |z| z.timestamp());
    Period { start, end }
}

/// One hour of the world: traffic, per-item and account period-to-date spend per account.
pub fn hour_batch(
    o: &BenchOptions,
    h: usize,
    at: Timestamp,
    cumulative: &mut [Vec<f64>],
) -> Vec<Observation> {
    let usd = Currency::new("USD").unwrap_or_else(|_| unreachable!("USD is a currency"));
    let period = month(at);
    let fresh_period = at - SignedDuration::from_hours(1) < period.start;
    let daily = 1.0 + 0.5 * (std::f64::consts::TAU * ((h % 24) as f64 - 8.0) / 24.0).sin();
    let mut batch = Vec::with_capacity(o.accounts * (o.items + 2));
    for (a, items) in cumulative.iter_mut().enumerate() {
        let account = format!("acct-{a:05}");
        if fresh_period {
            items.iter_mut().for_each(|c| *c = 0.0);
        }
        let traffic = (1_000.0 + (a % 50) as f64 * 100.0) * daily * (1.0 + 0.1 * wobble(a, h, 0));
        batch.push(Observation {
            key: SeriesKey::new("sim", &account, TRAFFIC)
                .with_label("series", "requests")
                .with_label(LABEL_UNIT, "requests"),
            at,
            period: None,
            value: money(traffic),
            kind: ObservationKind::Traffic,
            unit: Unit::Quantity("requests".into()),
        });
        for (i, total) in items.iter_mut().enumerate() {
            *total +=
                0.01 * (i + 1) as f64 + 0.000_02 * traffic * (1.0 + 0.05 * wobble(a, h, i + 1));
            batch.push(Observation {
                key: SeriesKey::new("sim", &account, ITEM_SPEND_PTD)
                    .with_label(LABEL_CURRENCY, "USD")
                    .with_label(LABEL_ITEM, &format!("ITEM-{i:02}")),
                at,
                period: Some(period),
                value: money(*total),
                kind: ObservationKind::PeriodToDate,
                unit: Unit::Money(usd.clone()),
            });
        }
        batch.push(Observation {
            key: SeriesKey::new("sim", &account, SPEND_PTD).with_label(LABEL_CURRENCY, "USD"),
            at,
            period: Some(period),
            value: money(items.iter().sum()),
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(usd.clone()),
        });
    }
    batch
}
