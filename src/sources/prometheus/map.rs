//! `query_range` matrix → traffic observations: one series per (query, account), each
//! value describing the step that ends at its timestamp.

use jiff::Timestamp;

use super::config::QuerySettings;
use super::wire::Envelope;
use crate::model::series::{LABEL_UNIT, TRAFFIC};
use crate::model::{Observation, ObservationKind, SeriesKey, Unit, parse_amount};
use crate::sources::http::PollError;

/// Maps a successful range response. Non-finite values (`NaN`, `±Inf`) are skipped with a
/// warning: they are not traffic. Two result series for one account are an error (the
/// query must aggregate by the account label).
pub fn map_range(
    source: &str,
    query: &QuerySettings,
    envelope: Envelope,
) -> Result<Vec<Observation>, PollError> {
    if envelope.status != "success" {
        return Err(PollError::malformed(format!(
            "query {:?}: status {:?}: {} {}",
            query.name,
            envelope.status,
            envelope.error_type.unwrap_or_default(),
            envelope.error.unwrap_or_default()
        )));
    }
    for w in &envelope.warnings {
        tracing::warn!(query = %query.name, warning = %w, "Prometheus returned a warning; data may be partial.");
    }
    let data = envelope.data.ok_or_else(|| {
        PollError::malformed(format!("query {:?}: success without data", query.name))
    })?;
    if data.result_type != "matrix" {
        return Err(PollError::malformed(format!(
            "query {:?}: expected a matrix, got {:?}; use a range query expression",
            query.name, data.result_type
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for series in data.result {
        let account = match (series.metric.get(&query.account_label), &query.account) {
            (Some(a), _) => a.clone(),
            (None, Some(fixed)) => fixed.clone(),
            (None, None) => {
                return Err(PollError::malformed(format!(
                    "query {:?}: result {:?} has no {:?} label and no fixed account is configured",
                    query.name, series.metric, query.account_label
                )));
            }
        };
        if !seen.insert(account.clone()) {
            return Err(PollError::malformed(format!(
                "query {:?}: several result series for account {account:?}; aggregate with `sum by ({})`",
                query.name, query.account_label
            )));
        }
        let key = SeriesKey::new(source, &account, TRAFFIC)
            .with_label("series", &query.name)
            .with_label(LABEL_UNIT, &query.unit);
        for pair in series.values {
            let ms = (pair.0 * 1000.0).round();
            if !ms.is_finite() {
                return Err(PollError::malformed(format!(
                    "query {:?}: bad timestamp {}",
                    query.name, pair.0
                )));
            }
            let at = Timestamp::from_millisecond(ms as i64).map_err(|e| {
                PollError::malformed(format!("query {:?}: timestamp {}: {e}", query.name, pair.0))
            })?;
            let value = match pair.1.as_str() {
                "NaN" | "+Inf" | "-Inf" | "Inf" => {
                    tracing::warn!(query = %query.name, %account, %at, value = %pair.1, "Skipping a non-finite sample.");
                    continue;
                }
                text => parse_amount(text).or_else(|_| {
                    // Prometheus may print large or tiny floats in exponent form.
                    text.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .and_then(rust_decimal::Decimal::from_f64_retain)
                        .ok_or_else(|| {
                            PollError::malformed(format!(
                                "query {:?}: value {text:?} is not a number",
                                query.name
                            ))
                        })
                })?,
            };
            out.push(Observation {
                key: key.clone(),
                at,
                period: None,
                value,
                kind: ObservationKind::Traffic,
                unit: Unit::Quantity(query.unit.clone()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn query() -> QuerySettings {
        QuerySettings {
            name: "requests".into(),
            query: "sum by (account) (increase(http_requests_total[1h]))".into(),
            unit: "requests".into(),
            account_label: "account".into(),
            account: None,
        }
    }

    fn parse(text: &str) -> Envelope {
        serde_json::from_str(text).unwrap()
    }

    /// The range-query example from the Prometheus HTTP API documentation.
    const DOC_EXAMPLE: &str = r#"{
   "status" : "success",
   "data" : {
      "resultType" : "matrix",
      "result" : [
         {
            "metric" : {"__name__" : "up", "job" : "prometheus", "instance" : "localhost:9090"},
            "values" : [[ 1435781430.781, "1" ], [ 1435781445.781, "1" ], [ 1435781460.781, "1" ]]
         },
         {
            "metric" : {"__name__" : "up", "job" : "node", "instance" : "localhost:9091"},
            "values" : [[ 1435781430.781, "0" ], [ 1435781445.781, "0" ], [ 1435781460.781, "1" ]]
         }
      ]
   }
}"#;

    #[test]
    fn maps_the_documented_example_by_a_chosen_label() {
        let mut q = query();
        q.account_label = "job".into();
        let obs = map_range("prom", &q, parse(DOC_EXAMPLE)).unwrap();
        assert_eq!(obs.len(), 6);
        assert_eq!(obs[0].key.account, "prometheus");
        assert_eq!(
            obs[0].at,
            Timestamp::from_millisecond(1_435_781_430_781).unwrap()
        );
        assert_eq!(obs[0].kind, ObservationKind::Traffic);
        assert_eq!(obs[0].key.labels["series"], "requests");
        assert_eq!(obs[3].key.account, "node");
        assert_eq!(obs[3].value, Decimal::ZERO);
    }

    #[test]
    fn a_missing_account_label_is_an_error_unless_fixed() {
        assert!(map_range("prom", &query(), parse(DOC_EXAMPLE)).is_err());
        let mut q = query();
        q.account = Some("all".into());
        q.account_label = "nope".into();
        // Two series, one fixed account: must aggregate first.
        let err = map_range("prom", &q, parse(DOC_EXAMPLE)).unwrap_err();
        assert!(err.message.contains("sum by"), "{}", err.message);
    }

    #[test]
    fn non_finite_values_are_skipped_and_exponents_parsed() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"account":"a"},"values":[[1700000000,"NaN"],[1700003600,"+Inf"],[1700007200,"1.5e3"],[1700010800,"42"]]}]}}"#;
        let obs = map_range("prom", &query(), parse(text)).unwrap();
        let values: Vec<Decimal> = obs.iter().map(|o| o.value).collect();
        assert_eq!(
            values,
            vec![Decimal::from(1500), Decimal::from_str("42").unwrap()]
        );
    }

    #[test]
    fn errors_and_wrong_shapes() {
        let err = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(
            map_range("prom", &query(), parse(err))
                .unwrap_err()
                .message
                .contains("bad_data")
        );
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(map_range("prom", &query(), parse(vector)).is_err());
        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            map_range("prom", &query(), parse(empty))
                .unwrap()
                .is_empty(),
            "absent series: no data, not zero"
        );
        for bad in [
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"account":"a"},"values":[[1,2]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"account":"a"},"values":[["x","2"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"account":"a"},"values":[[1]]}]}}"#,
        ] {
            assert!(serde_json::from_str::<Envelope>(bad).is_err(), "{bad}");
        }
        let garbage = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"account":"a"},"values":[[1,"twelve"]]}]}}"#;
        assert!(map_range("prom", &query(), parse(garbage)).is_err());
    }
}
