//! `spendwatch detect`: one detector over one series from a CSV, writing per point
//! `timestamp,value,expected,lower,upper,score,alert`.

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;

use crate::config::rules::Direction;
use crate::eval::detectors::{self, Detector, Sample};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{path}: line {line}: {message}")]
    Row {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

/// RFC 3339, Unix seconds, or `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn parse_time(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Some(ts);
    }
    if let Ok(secs) = t.parse::<f64>() {
        return (secs.is_finite())
            .then(|| Timestamp::from_millisecond((secs * 1000.0).round() as i64).ok())?;
    }
    jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", t)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Reads `timestamp,value` rows after a header line; every bad row is an error naming its line.
pub fn read_series(path: &Path) -> Result<Vec<Sample>, DetectError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| DetectError::Other(format!("{file}: {e}")))?;
    parse_series(&bytes, &file)
}

/// [`read_series`] on bytes already read; `file` names the input in errors.
pub fn parse_series(bytes: &[u8], file: &str) -> Result<Vec<Sample>, DetectError> {
    let file = file.to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DetectError::Row {
            path: file.clone(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |message: String| DetectError::Row {
            path: file.clone(),
            line,
            message,
        };
        if record.len() != 2 {
            return Err(bad(format!(
                "expected timestamp,value, got {} fields",
                record.len()
            )));
        }
        let at =
            parse_time(&record[0]).ok_or_else(|| bad(format!("bad timestamp {:?}", &record[0])))?;
        let value: f64 = record[1]
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad(format!("bad value {:?}", &record[1])))?;
        out.push(Sample { at, value });
    }
    out.sort_by_key(|s| s.at);
    Ok(out)
}

/// Runs `detector` over `samples` and writes the CSV; returns how many points alerted.
pub fn run(
    detector: &str,
    params: &[(String, String)],
    threshold: f64,
    direction: Direction,
    samples: &[Sample],
    out: &mut dyn Write,
) -> Result<usize, DetectError> {
    let mut d = detectors::build(detector, params).map_err(DetectError::Other)?;
    let io = |e: std::io::Error| DetectError::Other(e.to_string());
    writeln!(out, "timestamp,value,expected,lower,upper,score,alert").map_err(io)?;
    let mut alerts = 0;
    for s in samples {
        match d.observe(*s) {
            Some(a) => {
                let alert = a.score >= threshold && direction.allows(a.deviation > 0.0);
                alerts += usize::from(alert);
                writeln!(
                    out,
                    "{},{},{},{},{},{:.6},{}",
                    s.at,
                    s.value,
                    a.expected,
                    a.lower,
                    a.upper,
                    a.score,
                    u8::from(alert)
                )
                .map_err(io)?;
            }
            // Warming up: no judgement yet.
            None => writeln!(out, "{},{},,,,,0", s.at, s.value).map_err(io)?,
        }
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_time_forms() {
        let a = parse_time("2026-11-24T10:00:00Z").unwrap();
        assert_eq!(
            parse_time("1795600800").unwrap(),
            Timestamp::from_second(1_795_600_800).unwrap()
        );
        assert_eq!(parse_time("2026-11-24 10:00:00").unwrap(), a);
        assert!(parse_time("24/11/2026").is_none());
    }

    #[test]
    fn bad_rows_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(
            &path,
            "timestamp,value\n2026-11-24 10:00:00,1\n2026-11-24 11:00:00,x\n",
        )
        .unwrap();
        let e = read_series(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("bad value"), "{e}");
        std::fs::write(&path, "timestamp,value\nsoon,1\n").unwrap();
        assert!(
            read_series(&path)
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
    }

    #[test]
    fn writes_one_row_per_point_and_counts_alerts() {
        let samples: Vec<Sample> = (0..60)
            .map(|i| Sample {
                at: Timestamp::from_second(1_795_600_800 + i * 3600).unwrap(),
                value: if i == 50 {
                    500.0
                } else {
                    100.0 + (i % 3) as f64
                },
            })
            .collect();
        let mut out = Vec::new();
        let alerts = run("robust_z", &[], 0.999, Direction::Both, &samples, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 61);
        assert_eq!(alerts, 1);
        assert!(
            text.lines().nth(51).unwrap().ends_with(",1"),
            "{}",
            text.lines().nth(51).unwrap()
        );
    }
}
