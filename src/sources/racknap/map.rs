//! RackNap invoices → one period total per customer, period and currency.
//!
//! An invoice is a closed amount for a customer, so it maps to `SPEND_TOTAL`
//! (`PeriodTotal`). Invoices of one customer for the same period are added up (same currency
//! only). Changing fields such as `status` never go into the series key: a key is
//! `(source, customerId, spend_period_total, currency)` and the period is the observation's.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use rust_decimal::Decimal;

use super::wire::Invoice;
use crate::model::series::{LABEL_CURRENCY, SPEND_TOTAL};
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit};
use crate::sources::http::PollError;

/// Whether a date-only `periodEnd` names the last day billed (`2026-05-31`) rather than the
/// first day after the period (`2026-06-01`). Undocumented (REFERENCE.md §3): invoices
/// usually print the last day billed, so a date-only end is inclusive.
pub const PERIOD_END_IS_INCLUSIVE: bool = true;

/// One page of the listing, with the `requestId` RackNap gave it (for error messages).
#[derive(Debug, Clone)]
pub struct Page {
    pub invoices: Vec<Invoice>,
    pub request_id: Option<String>,
}

/// A date field: a calendar day (UTC) or an exact instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateValue {
    Day(Date),
    Instant(Timestamp),
}

fn parse_date(field: &str, text: &str) -> Result<DateValue, String> {
    if let Ok(d) = text.parse::<Date>()
        && text.len() == 10
    {
        return Ok(DateValue::Day(d));
    }
    text.parse::<Timestamp>()
        .map(DateValue::Instant)
        .map_err(|_| format!("{field} {text:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

fn midnight(d: Date) -> Result<Timestamp, String> {
    d.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| format!("date {d} out of range: {e}"))
}

fn next_day(d: Date) -> Result<Date, String> {
    d.checked_add(1.day())
        .map_err(|e| format!("date {d} out of range: {e}"))
}

/// The UTC calendar month containing `v`.
fn calendar_month(v: DateValue) -> Result<Period, String> {
    let day = match v {
        DateValue::Day(d) => d,
        DateValue::Instant(t) => t.to_zoned(TimeZone::UTC).date(),
    };
    let first = day.first_of_month();
    let next = first
        .checked_add(1.month())
        .map_err(|e| format!("date {day} out of range: {e}"))?;
    Ok(Period {
        start: midnight(first)?,
        end: midnight(next)?,
    })
}

/// The billing period of an invoice — the one place that decides it. The documented invoice
/// carries no date at all (REFERENCE.md §3, uncertain), so the optional fields are tried in
/// order of how precisely they name the period:
///
/// 1. `periodStart` + `periodEnd`: `[start, end)`; a date-only end is the last day billed
///    ([`PERIOD_END_IS_INCLUSIVE`]), an RFC 3339 end is taken as the exclusive instant.
///    Only one of the two is an error.
/// 2. `issueDate`: the UTC calendar month containing it.
/// 3. `dueDate` (the one date field the API documents, on `POST /v1/invoices`): the UTC
///    calendar month containing it.
///
/// No usable date is an error, never a guess: the invoice could belong to any period,
/// including one we report, so dropping it would understate a period total.
pub fn invoice_period(inv: &Invoice) -> Result<Period, String> {
    match (&inv.period_start, &inv.period_end) {
        (Some(start), Some(end)) => {
            let start = match parse_date("periodStart", start)? {
                DateValue::Day(d) => midnight(d)?,
                DateValue::Instant(t) => t,
            };
            let end = match parse_date("periodEnd", end)? {
                DateValue::Day(d) if PERIOD_END_IS_INCLUSIVE => midnight(next_day(d)?)?,
                DateValue::Day(d) => midnight(d)?,
                DateValue::Instant(t) => t,
            };
            if end <= start {
                return Err(format!("period ends ({end}) before it starts ({start})"));
            }
            Ok(Period { start, end })
        }
        (Some(_), None) => Err("periodStart without periodEnd".to_string()),
        (None, Some(_)) => Err("periodEnd without periodStart".to_string()),
        (None, None) => {
            if let Some(issued) = &inv.issue_date {
                calendar_month(parse_date("issueDate", issued)?)
            } else if let Some(due) = &inv.due_date {
                calendar_month(parse_date("dueDate", due)?)
            } else {
                Err(
                    "no periodStart/periodEnd, issueDate or dueDate: cannot tell which period it bills"
                        .to_string(),
                )
            }
        }
    }
}

fn request_id_text(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("RackNap requestId {id}"),
        None => "no RackNap requestId".to_string(),
    }
}

struct Total {
    currency: Currency,
    amount: Decimal,
    first_invoice: String,
}

/// Maps every page of one listing. `listed_for` is the customer the listing was filtered by
/// (`None` for the `all` target): an invoice of another customer in it is an error, since
/// its spend would be booked to the wrong account. `now` bounds `at` for a period not over yet.
pub fn map_invoices(
    source: &str,
    listed_for: Option<&str>,
    pages: &[Page],
    default_currency: &Currency,
    ignore_statuses: &[String],
    now: Timestamp,
) -> Result<Vec<Observation>, PollError> {
    let mut totals: BTreeMap<(String, Timestamp, Timestamp), Total> = BTreeMap::new();
    let mut ignored = 0usize;
    for page in pages {
        let rid = request_id_text(page.request_id.as_deref());
        for inv in &page.invoices {
            let what = || format!("invoice {:?} of customer {:?}", inv.id, inv.customer_id);
            if inv.customer_id.trim().is_empty() || inv.id.trim().is_empty() {
                return Err(PollError::malformed(format!(
                    "{} has an empty id or customerId ({rid})",
                    what()
                )));
            }
            if let Some(expected) = listed_for
                && inv.customer_id != expected
            {
                return Err(PollError::malformed(format!(
                    "{} in the listing filtered by customerId {expected:?} ({rid})",
                    what()
                )));
            }
            if let Some(status) = &inv.status
                && ignore_statuses.contains(&status.trim().to_ascii_uppercase())
            {
                ignored += 1;
                continue;
            }
            let currency = match &inv.currency {
                Some(code) => Currency::new(code)
                    .map_err(|e| PollError::malformed(format!("{}: {e} ({rid})", what())))?,
                None => default_currency.clone(),
            };
            let period = invoice_period(inv)
                .map_err(|e| PollError::malformed(format!("{}: {e} ({rid})", what())))?;
            let key = (inv.customer_id.clone(), period.start, period.end);
            match totals.get_mut(&key) {
                None => {
                    totals.insert(
                        key,
                        Total {
                            currency,
                            amount: inv.amount.0,
                            first_invoice: inv.id.clone(),
                        },
                    );
                }
                Some(t) if t.currency != currency => {
                    return Err(PollError::malformed(format!(
                        "{} is in {currency} but invoice {:?} of the same period is in {}; amounts in different currencies are never added ({rid})",
                        what(),
                        t.first_invoice,
                        t.currency
                    )));
                }
                Some(t) => {
                    t.amount = t.amount.checked_add(inv.amount.0).ok_or_else(|| {
                        PollError::malformed(format!("{}: amounts overflow ({rid})", what()))
                    })?;
                }
            }
        }
    }
    if ignored > 0 {
        tracing::debug!(
            ignored,
            "Skipped invoices whose status is in ignore_statuses."
        );
    }
    Ok(totals
        .into_iter()
        .map(|((customer, start, end), t)| Observation {
            key: SeriesKey::new(source, &customer, SPEND_TOTAL)
                .with_label(LABEL_CURRENCY, t.currency.as_str()),
            // A total describes its period up to the end; for a period not over yet
            // (billed in advance) it describes it as of now.
            at: end.min(now),
            period: Some(Period { start, end }),
            value: t.amount,
            kind: ObservationKind::PeriodTotal,
            unit: Unit::Money(t.currency),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::racknap::wire::InvoiceList;
    use std::str::FromStr;

    const QUICKSTART_LIST: &str = include_str!("fixtures/quickstart-list.json");

    fn usd() -> Currency {
        Currency::new("USD").unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn invoices(json: &str) -> Vec<Invoice> {
        serde_json::from_str(json).unwrap()
    }

    fn page(json: &str) -> Page {
        Page {
            invoices: invoices(json),
            request_id: Some("req_t".into()),
        }
    }

    fn map(json: &str) -> Result<Vec<Observation>, PollError> {
        map_invoices(
            "rn",
            None,
            &[page(json)],
            &usd(),
            &[],
            ts("2030-01-01T00:00:00Z"),
        )
    }

    #[test]
    fn the_documented_invoice_has_no_date_and_is_refused_with_its_request_id() {
        let list: InvoiceList = serde_json::from_str(QUICKSTART_LIST).unwrap();
        let pages = [Page {
            invoices: list.data,
            request_id: Some("req_xyz789".into()),
        }];
        let err = map_invoices("rn", None, &pages, &usd(), &[], Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.kind, crate::sources::PollErrorKind::Malformed);
        assert!(err.message.contains("inv_8392ae4c"), "{}", err.message);
        assert!(err.message.contains("req_xyz789"), "{}", err.message);
        assert!(
            err.message.contains("cannot tell which period"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_documented_invoice_with_a_due_date_maps_field_by_field() {
        // The quick-start invoice plus the `dueDate` the POST example documents.
        let mut list: InvoiceList = serde_json::from_str(QUICKSTART_LIST).unwrap();
        list.data[0].due_date = Some("2026-06-15".into());
        let pages = [Page {
            invoices: list.data,
            request_id: Some("req_xyz789".into()),
        }];
        let now = ts("2026-06-20T00:00:00Z");
        let obs = map_invoices("rn", Some("cust_3d8f4a2b"), &pages, &usd(), &[], now).unwrap();
        assert_eq!(obs.len(), 1);
        let o = &obs[0];
        assert_eq!(o.key.source, "rn");
        assert_eq!(o.key.account, "cust_3d8f4a2b");
        assert_eq!(o.key.metric, SPEND_TOTAL);
        assert_eq!(
            o.key.labels.len(),
            1,
            "only currency: status is not identity"
        );
        assert_eq!(o.key.labels[LABEL_CURRENCY], "USD");
        assert_eq!(o.value, Decimal::from_str("1250.00").unwrap());
        assert_eq!(o.kind, ObservationKind::PeriodTotal);
        assert_eq!(o.unit, Unit::Money(usd()));
        let p = o.period.unwrap();
        assert_eq!(p.start, ts("2026-06-01T00:00:00Z"));
        assert_eq!(p.end, ts("2026-07-01T00:00:00Z"));
        assert_eq!(o.at, now, "June is not over: the total is as of now");
    }

    #[test]
    fn period_rules() {
        let inv = |fields: &str| -> Invoice {
            serde_json::from_str(&format!(
                r#"{{"id":"inv_1","customerId":"cust_1","amount":1{fields}}}"#
            ))
            .unwrap()
        };
        let p = invoice_period(&inv(
            r#","periodStart":"2026-05-01","periodEnd":"2026-05-31""#,
        ))
        .unwrap();
        assert_eq!(
            (p.start, p.end),
            (ts("2026-05-01T00:00:00Z"), ts("2026-06-01T00:00:00Z"))
        );
        let p = invoice_period(&inv(
            r#","periodStart":"2026-05-16T00:00:00Z","periodEnd":"2026-06-16T00:00:00Z","issueDate":"2026-01-01""#,
        ))
        .unwrap();
        assert_eq!(
            (p.start, p.end),
            (ts("2026-05-16T00:00:00Z"), ts("2026-06-16T00:00:00Z")),
            "instants are exact, and the period fields win over issueDate"
        );
        let p =
            invoice_period(&inv(r#","issueDate":"2026-05-31","dueDate":"2026-06-15""#)).unwrap();
        assert_eq!(
            p.start,
            ts("2026-05-01T00:00:00Z"),
            "issueDate before dueDate"
        );
        let p = invoice_period(&inv(r#","dueDate":"2026-12-15""#)).unwrap();
        assert_eq!(
            (p.start, p.end),
            (ts("2026-12-01T00:00:00Z"), ts("2027-01-01T00:00:00Z"))
        );
        for bad in [
            "",
            r#","periodStart":"2026-05-01""#,
            r#","periodEnd":"2026-05-31""#,
            r#","periodStart":"2026-05-31","periodEnd":"2026-05-01""#,
            r#","periodStart":"2026-05-01","periodEnd":"31/05/2026""#,
            r#","issueDate":"yesterday""#,
            r#","dueDate":"2026-02-30""#,
            r#","dueDate":"20260615""#,
        ] {
            assert!(invoice_period(&inv(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn invoices_of_one_customer_and_period_are_summed() {
        let obs = map(
            r#"[
            {"id":"inv_a","customerId":"cust_1","amount":100.10,"status":"PAID","periodStart":"2026-05-01","periodEnd":"2026-05-31"},
            {"id":"inv_b","customerId":"cust_1","amount":0.2,"status":"UNPAID","periodStart":"2026-05-01","periodEnd":"2026-05-31","currency":"USD"},
            {"id":"inv_c","customerId":"cust_1","amount":7,"periodStart":"2026-04-01","periodEnd":"2026-04-30"},
            {"id":"inv_d","customerId":"cust_2","amount":-5.5,"currency":"EUR","dueDate":"2026-05-10"}
        ]"#,
        )
        .unwrap();
        let got: Vec<(&str, &str, Decimal, Timestamp)> = obs
            .iter()
            .map(|o| {
                (
                    o.key.account.as_str(),
                    o.key.labels[LABEL_CURRENCY].as_str(),
                    o.value,
                    o.period.unwrap().start,
                )
            })
            .collect();
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(
            got,
            vec![
                ("cust_1", "USD", d("7"), ts("2026-04-01T00:00:00Z")),
                ("cust_1", "USD", d("100.30"), ts("2026-05-01T00:00:00Z")),
                ("cust_2", "EUR", d("-5.5"), ts("2026-05-01T00:00:00Z")),
            ]
        );
        assert_eq!(
            obs[1].at,
            ts("2026-06-01T00:00:00Z"),
            "closed: at the period end"
        );
        assert_eq!(obs[2].unit, Unit::Money(Currency::new("EUR").unwrap()));
    }

    #[test]
    fn series_key_does_not_change_with_status() {
        let a = map(r#"[{"id":"inv_a","customerId":"c","amount":1,"status":"UNPAID","dueDate":"2026-05-10"}]"#).unwrap();
        let b = map(r#"[{"id":"inv_a","customerId":"c","amount":1,"status":"PAID","dueDate":"2026-05-10"}]"#).unwrap();
        assert_eq!(a[0].key, b[0].key);
        assert_eq!((a[0].at, a[0].period), (b[0].at, b[0].period));
    }

    #[test]
    fn currency_mismatch_in_one_period_is_an_error() {
        let err = map(r#"[
            {"id":"inv_a","customerId":"cust_1","amount":1,"dueDate":"2026-05-10"},
            {"id":"inv_b","customerId":"cust_1","amount":1,"currency":"EUR","dueDate":"2026-05-20"}
        ]"#)
        .unwrap_err();
        assert!(
            err.message.contains("inv_a") && err.message.contains("inv_b"),
            "{}",
            err.message
        );
        assert!(err.message.contains("req_t"), "{}", err.message);
    }

    #[test]
    fn default_currency_and_ignored_statuses() {
        let eur = Currency::new("EUR").unwrap();
        let json = r#"[
            {"id":"inv_a","customerId":"c","amount":10,"status":"PAID","dueDate":"2026-05-10"},
            {"id":"inv_b","customerId":"c","amount":99,"status":"void","dueDate":"2026-05-10"},
            {"id":"inv_c","customerId":"c","amount":5,"status":"Draft"}
        ]"#;
        let obs = map_invoices(
            "rn",
            None,
            &[page(json)],
            &eur,
            &["VOID".to_string(), "DRAFT".to_string()],
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].value, Decimal::from(10));
        assert_eq!(obs[0].key.labels[LABEL_CURRENCY], "EUR");
        assert_eq!(obs[0].at, Timestamp::UNIX_EPOCH, "at never later than now");
        // Without the list, the undated draft is an error rather than a dropped amount.
        assert!(map_invoices("rn", None, &[page(json)], &eur, &[], Timestamp::UNIX_EPOCH).is_err());
    }

    #[test]
    fn another_customer_in_a_filtered_listing_is_an_error() {
        let json = r#"[{"id":"inv_a","customerId":"cust_2","amount":1,"dueDate":"2026-05-10"}]"#;
        let err = map_invoices(
            "rn",
            Some("cust_1"),
            &[page(json)],
            &usd(),
            &[],
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(err.message.contains("cust_2"), "{}", err.message);
    }

    #[test]
    fn bad_currency_and_empty_ids_are_errors() {
        for bad in [
            r#"[{"id":"inv_a","customerId":"c","amount":1,"currency":"dollars","dueDate":"2026-05-10"}]"#,
            r#"[{"id":"inv_a","customerId":"","amount":1,"dueDate":"2026-05-10"}]"#,
            r#"[{"id":" ","customerId":"c","amount":1,"dueDate":"2026-05-10"}]"#,
        ] {
            assert!(map(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_invoices_is_no_observations() {
        assert!(map("[]").unwrap().is_empty());
    }
}
