//! CSV rows → traffic observations. The whole file is one batch: one bad row rejects it
//! (with the line number), so a half-written file never stores half its data.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;

use super::config::FileSettings;
use crate::model::series::{LABEL_UNIT, TRAFFIC};
use crate::model::{Observation, ObservationKind, SeriesKey, Unit, parse_amount};
use crate::sources::http::PollError;

fn parse_time(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    t.parse::<Timestamp>().ok().or_else(|| {
        t.parse::<i64>()
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
    })
}

/// `account=020-1001;region=eu` → labels. Names follow Prometheus's label rules.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("label {part:?} is not name=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let valid = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || matches!(k, "series" | "unit") {
            return Err(format!("invalid or reserved label name {k:?}"));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label {k:?} given twice"));
        }
    }
    Ok(out)
}

pub fn parse_csv(settings: &FileSettings, bytes: &[u8]) -> Result<Vec<Observation>, PollError> {
    let file = settings.path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| PollError::malformed(format!("{file}: header: {e}")))?
        .clone();
    let expected: Vec<&str> = headers.iter().collect();
    if !(expected == ["timestamp", "value"] || expected == ["timestamp", "value", "labels"]) {
        return Err(PollError::malformed(format!(
            "{file}: header must be `timestamp,value` or `timestamp,value,labels`, got {expected:?}"
        )));
    }
    // Hashed: an ordered set compared long, shared-prefix keys and took a third of the time.
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| PollError::malformed(format!("{file}: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |what: String| PollError::malformed(format!("{file}: line {line}: {what}"));
        // The labels column may be left off a row; anything else is a broken row.
        if record.len() < 2 || record.len() > headers.len() {
            return Err(bad(format!(
                "{} fields, expected 2 to {}",
                record.len(),
                headers.len()
            )));
        }
        let ts_text = record.get(0).unwrap_or_default();
        let at = parse_time(ts_text).ok_or_else(|| {
            bad(format!(
                "timestamp {ts_text:?} is neither RFC 3339 nor Unix seconds"
            ))
        })?;
        let value_text = record.get(1).unwrap_or_default();
        let value = parse_amount(value_text).map_err(|e| bad(e.to_string()))?;
        let mut labels = parse_labels(record.get(2).unwrap_or_default()).map_err(bad)?;
        let account = match (labels.remove("account"), &settings.account) {
            (Some(a), _) => a,
            (None, Some(a)) => a.clone(),
            (None, None) => {
                return Err(bad(
                    "no account label and no default `account` configured".into()
                ));
            }
        };
        let mut key = SeriesKey::new(&settings.name, &account, TRAFFIC)
            .with_label("series", &settings.series)
            .with_label(LABEL_UNIT, &settings.unit);
        key.labels.extend(labels);
        if !seen.insert((key.canonical(), at)) {
            return Err(bad(format!("a second value for {key} at {at}")));
        }
        out.push(Observation {
            key,
            at,
            period: None,
            value,
            kind: ObservationKind::Traffic,
            unit: Unit::Quantity(settings.unit.clone()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::time::Duration;

    fn settings(account: Option<&str>) -> FileSettings {
        FileSettings {
            name: "file".into(),
            path: "traffic.csv".into(),
            unit: "GB".into(),
            series: "egress".into(),
            account: account.map(String::from),
            interval: Duration::from_secs(60),
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn parses_rows_with_labels_and_both_time_forms() {
        let csv = "timestamp,value,labels\n\
                   2026-11-24T10:00:00Z,12.5,account=020-1001;region=eu\n\
                   1795600800,\"7\",\"account=000000526782\"\n";
        let obs = parse_csv(&settings(None), csv.as_bytes()).unwrap();
        assert_eq!(obs.len(), 2);
        assert_eq!(obs[0].key.account, "020-1001");
        assert_eq!(obs[0].key.labels["region"], "eu");
        assert_eq!(obs[0].key.labels["series"], "egress");
        assert_eq!(obs[0].value, Decimal::new(125, 1));
        assert_eq!(obs[1].at, Timestamp::from_second(1_795_600_800).unwrap());
        assert_eq!(obs[1].unit, Unit::Quantity("GB".into()));
    }

    #[test]
    fn default_account_and_two_column_files() {
        let obs = parse_csv(
            &settings(Some("all")),
            b"timestamp,value\n2026-11-24T10:00:00Z,3\n",
        )
        .unwrap();
        assert_eq!(obs[0].key.account, "all");
        assert!(
            parse_csv(
                &settings(None),
                b"timestamp,value\n2026-11-24T10:00:00Z,3\n"
            )
            .is_err()
        );
    }

    #[test]
    fn odd_inputs_are_errors_with_line_numbers_never_panics() {
        for (csv, needle) in [
            ("time,value\n", "header"),
            ("timestamp,value\nyesterday,3\n", "line 2"),
            ("timestamp,value\n2026-11-24T10:00:00Z,three\n", "line 2"),
            ("timestamp,value\n2026-11-24T10:00:00Z,1e400\n", "line 2"),
            (
                "timestamp,value,labels\n2026-11-24T10:00:00Z,1,account\n",
                "name=value",
            ),
            (
                "timestamp,value,labels\n2026-11-24T10:00:00Z,1,9x=1\n",
                "invalid",
            ),
            (
                "timestamp,value,labels\n2026-11-24T10:00:00Z,1,account=a;account=b\n",
                "twice",
            ),
            (
                "timestamp,value\n2026-11-24T10:00:00Z,1\n2026-11-24T10:00:00Z,2\n",
                "second value",
            ),
            ("timestamp,value\n2026-11-24T10:00:00Z\n", ""),
            ("timestamp,value\n\"2026-11-24T10:00:00Z,1\n", ""),
            ("", "header"),
        ] {
            let err = parse_csv(&settings(Some("a")), csv.as_bytes()).unwrap_err();
            assert!(err.message.contains(needle), "{csv:?}: {}", err.message);
        }
        // Non-ASCII label values are fine.
        let obs = parse_csv(
            &settings(None),
            "timestamp,value,labels\n2026-11-24T10:00:00Z,1,account=東京\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(obs[0].key.account, "東京");
    }
}
