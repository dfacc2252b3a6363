//! The bench world as OpenMetrics text, for `promtool tsdb create-blocks-from openmetrics`,
//! and the unit-cost rule of `config_text` written in PromQL, so the same series and the
//! same rule can be timed in Prometheus (`benches/prometheus-side-by-side.sh`).
//!
//! Series are named and labelled as spendwatch exports them on `/metrics`
//! (`spendwatch_spend_period_to_date{source,account,currency}`, …), one gauge family per
//! stored metric, series sorted within a family, each series' samples in time order.

use std::collections::BTreeMap;
use std::io::Write;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::{BenchOptions, hour_batch};
use crate::model::Observation;
use crate::model::series::{SPEND_PTD, TRAFFIC};

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub series: usize,
    pub samples: usize,
}

/// The exported metric name of a stored series.
fn metric_name(metric: &str) -> String {
    format!("spendwatch_{metric}")
}

/// `{source="sim",account="acct-00000",…}`: source and account first, then the series'
/// own labels in name order.
fn label_text(o: &Observation) -> String {
    let escape = |v: &str| {
        v.replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('\n', r"\n")
    };
    let mut text = format!(
        "{{source=\"{}\",account=\"{}\"",
        escape(&o.key.source),
        escape(&o.key.account)
    );
    for (name, value) in &o.key.labels {
        text.push_str(&format!(",{name}=\"{}\"", escape(value)));
    }
    text.push('}');
    text
}

/// Writes the world of `o` whose last hour is `end` (the same world `run` stores for that
/// end) as OpenMetrics text. Holds every value in memory (16 bytes a sample) because the
/// format wants each series whole while the world is generated an hour at a time.
pub fn write_world(
    o: &BenchOptions,
    end: Timestamp,
    out: &mut dyn Write,
) -> std::io::Result<Exported> {
    let hours = o.days as usize * 24;
    let start = end - SignedDuration::from_hours(hours as i64);
    let mut cumulative = vec![vec![0.0; o.items]; o.accounts];
    // (metric name, labels) → values by hour; every hour's batch holds every series once.
    let mut families: BTreeMap<String, BTreeMap<String, Vec<Decimal>>> = BTreeMap::new();
    let mut slots: Vec<(String, String)> = Vec::new();
    for h in 1..=hours {
        let at = start + SignedDuration::from_hours(h as i64);
        let batch = hour_batch(o, h, at, &mut cumulative);
        if slots.is_empty() {
            slots = batch
                .iter()
                .map(|ob| (metric_name(&ob.key.metric), label_text(ob)))
                .collect();
        }
        for ((name, labels), ob) in slots.iter().zip(&batch) {
            families
                .entry(name.clone())
                .or_default()
                .entry(labels.clone())
                .or_insert_with(|| Vec::with_capacity(hours))
                .push(ob.value);
        }
    }
    let mut exported = Exported {
        series: 0,
        samples: 0,
    };
    for (name, series) in &families {
        writeln!(out, "# TYPE {name} gauge")?;
        for (labels, values) in series {
            exported.series += 1;
            for (h, value) in values.iter().enumerate() {
                let at = start + SignedDuration::from_hours(h as i64 + 1);
                writeln!(out, "{name}{labels} {value} {}", at.as_second())?;
                exported.samples += 1;
            }
        }
    }
    writeln!(out, "# EOF")?;
    Ok(exported)
}

/// Name of the recorded unit cost (spend per 1,000 requests over the last day).
pub const UNIT_COST_RECORD: &str = "account:spendwatch_unit_cost_per_1k:1d";

/// The unit cost per account over the day ending at the evaluation time, as `config_text`'s
/// `unit-cost` rule computes it for a whole-day window: the spend the period-to-date series
/// grew by (`increase` counts a monthly reset as one) per 1,000 requests of traffic.
///
/// Each traffic sample counts the hour ending at its timestamp, so the day ending at `t` is
/// `(t − 1d, t]`; Prometheus 2.x ranges include their start, hence one second short of a
/// day. Evaluated at a whole day, both sides equal spendwatch's window exactly; at other
/// times it is the rolling day.
pub fn unit_cost_promql() -> String {
    format!(
        "1000 * sum by (source, account, currency) (increase({spend}{{source=\"sim\"}}[1d]))\
         \n  / on (source, account) group_left\
         \n  sum by (source, account) (sum_over_time({traffic}{{source=\"sim\",series=\"requests\"}}[86399s]))",
        spend = metric_name(SPEND_PTD),
        traffic = metric_name(TRAFFIC),
    )
}

/// A Prometheus rule file with `config_text`'s unit-cost rule: the recording rule, and an
/// alert when today's unit cost is above its 7-day baseline (mean + 4 σ of the previous
/// seven daily values, from at least 3 of them). spendwatch's baseline is the median ± 4
/// scaled MADs; PromQL has no MAD, so mean and standard deviation stand in (same cost to
/// compute: one pass over the same windows). The baseline is a subquery over the raw series
/// (the recorded series has no history in a backfilled TSDB), as spendwatch recomputes its
/// windows from stored data.
pub fn rule_file(interval: &str) -> String {
    let expr = unit_cost_promql();
    let indent = |text: &str, by: &str| {
        text.lines()
            .map(|l| format!("{by}{l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let sub = format!("(\n{}\n)[7d:1d] offset 1d", indent(&expr, "  "));
    let alert = format!(
        "(\n{expr}\n)\n> on (source, account, currency)\n(avg_over_time({sub}) + 4 * stddev_over_time({sub}))\nand on (source, account, currency)\ncount_over_time({sub}) >= 3",
        expr = indent(&expr, "  "),
    );
    format!(
        "groups:\n  - name: spendwatch-unit-cost\n    interval: {interval}\n    rules:\n      - record: {UNIT_COST_RECORD}\n        expr: |\n{}\n      - alert: UnitCostAboveBaseline\n        expr: |\n{}\n",
        indent(&expr, "          "),
        indent(&alert, "          "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(accounts: usize, items: usize) -> (String, Exported) {
        let o = BenchOptions {
            accounts,
            items,
            days: 2,
            dir: None,
            reuse: false,
            threads: None,
            end: None,
        };
        let end: Timestamp = "2026-01-20T00:00:00Z".parse().unwrap();
        let mut out = Vec::new();
        let exported = write_world(&o, end, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), exported)
    }

    #[test]
    fn every_series_is_whole_sorted_and_in_time_order() {
        let (text, exported) = export(3, 2);
        assert_eq!(exported.series, 3 * 4);
        assert_eq!(exported.samples, 3 * 4 * 48);
        assert!(text.ends_with("# EOF\n"), "{}", &text[text.len() - 40..]);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(
            types,
            [
                "# TYPE spendwatch_line_item_spend_period_to_date gauge",
                "# TYPE spendwatch_spend_period_to_date gauge",
                "# TYPE spendwatch_traffic gauge",
            ]
        );
        // Series contiguous and sorted; timestamps increasing within each.
        let mut seen: Vec<String> = Vec::new();
        let mut last: Option<(String, i64)> = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, rest) = line.rsplit_once('}').unwrap();
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let at: i64 = parts[1].parse().unwrap();
            parts[0].parse::<f64>().unwrap();
            match &last {
                Some((s, t)) if s == series => assert!(at == t + 3600, "{line}"),
                _ => {
                    assert!(!seen.iter().any(|s| s == series), "{series} split");
                    if let Some(prev) = seen.last()
                        && prev.split('{').next() == series.split('{').next()
                    {
                        assert!(prev.as_str() < series, "{prev} before {series}");
                    }
                    seen.push(series.to_string());
                }
            }
            last = Some((series.to_string(), at));
        }
        assert_eq!(seen.len(), 12);
        assert!(text.contains(
            "spendwatch_traffic{source=\"sim\",account=\"acct-00001\",series=\"requests\",unit=\"requests\"} "
        ));
    }

    #[test]
    fn values_are_those_the_store_gets() {
        let (text, _) = export(2, 1);
        let o = BenchOptions {
            accounts: 2,
            items: 1,
            days: 2,
            dir: None,
            reuse: false,
            threads: None,
            end: None,
        };
        let end: Timestamp = "2026-01-20T00:00:00Z".parse().unwrap();
        let mut cumulative = vec![vec![0.0; 1]; 2];
        let start = end - SignedDuration::from_hours(48);
        let mut last = Vec::new();
        for h in 1..=48 {
            last = hour_batch(
                &o,
                h,
                start + SignedDuration::from_hours(h as i64),
                &mut cumulative,
            );
        }
        let spend = last
            .iter()
            .find(|ob| ob.key.metric == SPEND_PTD && ob.key.account == "acct-00001")
            .unwrap();
        let line = format!(
            "spendwatch_spend_period_to_date{{source=\"sim\",account=\"acct-00001\",currency=\"USD\"}} {} {}",
            spend.value,
            end.as_second()
        );
        assert!(text.contains(&line), "{line} not in the export");
    }

    #[test]
    fn the_rule_file_holds_the_expression_three_times_as_a_subquery() {
        let yaml = rule_file("15s");
        assert!(yaml.contains(&format!("- record: {UNIT_COST_RECORD}")));
        assert!(yaml.contains("interval: 15s"));
        assert_eq!(yaml.matches("[7d:1d] offset 1d").count(), 3, "{yaml}");
        assert_eq!(yaml.matches("increase(").count(), 5, "{yaml}");
    }
}
