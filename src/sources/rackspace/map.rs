//! Rackspace estimated charges → observations: period-to-date total per account and
//! currency, per line item amount, and per line item usage quantity.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::wire::EstimatedCharges;
use crate::model::series::{
    ITEM_SPEND_PTD, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD, USAGE_PTD,
};
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit};
use crate::sources::http::PollError;

/// Label value used when the API omits a code (e.g. discounts have no `offeringCode`).
const NONE: &str = "none";

/// The readable `item` label: `RCDN/BWOUT`, or `none/Commit Discount (DISCOUNT)` for a
/// non-charge category, so a charge and a discount of the same type stay apart.
fn item_name(offering: &str, charge_type: &str, category: &str) -> String {
    if category == "CHARGE" || category == NONE {
        format!("{offering}/{charge_type}")
    } else {
        format!("{offering}/{charge_type} ({category})")
    }
}

/// Offset-less times are UTC per the API's date-time rules; an explicit offset is honoured.
pub fn parse_api_time(text: &str) -> Result<Timestamp, PollError> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| PollError::malformed(format!("invalid date-time {text:?}")))
}

/// Maps all pages of one account's estimated charges, observed at `at`.
pub fn map_estimated_charges(
    source: &str,
    account: &str,
    pages: &[EstimatedCharges],
    at: Timestamp,
) -> Result<Vec<Observation>, PollError> {
    let first = pages
        .first()
        .ok_or_else(|| PollError::malformed("no estimated charges returned"))?;
    let currency =
        Currency::new(&first.currency).map_err(|e| PollError::malformed(e.to_string()))?;
    let period = Period {
        start: parse_api_time(&first.current_billing_period_start_date)?,
        end: parse_api_time(&first.current_billing_period_end_date)?,
    };
    if period.end <= period.start {
        return Err(PollError::malformed(format!(
            "billing period ends ({}) before it starts ({})",
            period.end, period.start
        )));
    }
    for page in &pages[1..] {
        if page.currency != first.currency
            || page.current_billing_period_start_date != first.current_billing_period_start_date
        {
            return Err(PollError::malformed(
                "pages of one estimated-charges listing disagree on currency or billing period",
            ));
        }
    }

    let items: Vec<_> = pages
        .iter()
        .flat_map(|p| p.estimated_charge.iter())
        .collect();
    let mut amounts: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    let mut usage: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for item in &items {
        let offering = item
            .offering_code
            .clone()
            .unwrap_or_else(|| NONE.to_string());
        let charge_type = item.charge_type.clone().unwrap_or_else(|| NONE.to_string());
        if let Some(amount) = item.amount() {
            let category = item.category.clone().unwrap_or_else(|| NONE.to_string());
            let slot = amounts
                .entry((offering.clone(), charge_type.clone(), category))
                .or_default();
            *slot = slot
                .checked_add(amount)
                .ok_or_else(|| PollError::malformed("line item amounts overflow"))?;
        }
        if let (Some(q), Some(uom)) = (item.quantity, &item.unit_of_measure) {
            let slot = usage
                .entry((offering, charge_type, uom.clone()))
                .or_default();
            *slot = slot
                .checked_add(q.0)
                .ok_or_else(|| PollError::malformed("line item quantities overflow"))?;
        }
    }

    // `total` is the documented estimate; older shapes only carry `chargeTotal`; without
    // either, the line items themselves are the estimate. Nothing at all is an error.
    let total = match (first.total, first.charge_total) {
        (Some(t), _) | (None, Some(t)) => t.0,
        (None, None) if !amounts.is_empty() => amounts
            .values()
            .try_fold(Decimal::ZERO, |sum, a| sum.checked_add(*a))
            .ok_or_else(|| PollError::malformed("line item amounts overflow"))?,
        (None, None) => {
            return Err(PollError::malformed(
                "estimatedCharges has no total, no chargeTotal and no line items",
            ));
        }
    };

    let money = Unit::Money(currency.clone());
    let observe = |key: SeriesKey, value: Decimal, kind: ObservationKind, unit: Unit| Observation {
        key,
        at,
        period: Some(period),
        value,
        kind,
        unit,
    };
    let mut out = Vec::with_capacity(1 + amounts.len() + usage.len());
    out.push(observe(
        SeriesKey::new(source, account, SPEND_PTD).with_label(LABEL_CURRENCY, currency.as_str()),
        total,
        ObservationKind::PeriodToDate,
        money.clone(),
    ));
    for ((offering, charge_type, category), amount) in amounts {
        out.push(observe(
            SeriesKey::new(source, account, ITEM_SPEND_PTD)
                .with_label(LABEL_CURRENCY, currency.as_str())
                .with_label(LABEL_ITEM, &item_name(&offering, &charge_type, &category))
                .with_label("offering", &offering)
                .with_label("charge_type", &charge_type)
                .with_label("category", &category),
            amount,
            ObservationKind::PeriodToDate,
            money.clone(),
        ));
    }
    for ((offering, charge_type, uom), quantity) in usage {
        out.push(observe(
            SeriesKey::new(source, account, USAGE_PTD)
                .with_label(LABEL_ITEM, &format!("{offering}/{charge_type}"))
                .with_label("offering", &offering)
                .with_label("charge_type", &charge_type)
                .with_label(LABEL_UNIT, &uom),
            quantity,
            ObservationKind::Usage,
            Unit::Quantity(uom),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::rackspace::wire::EstimatedChargesResponse;
    use std::str::FromStr;

    /// The "Cloud" example from the API reference, verbatim.
    const CLOUD_EXAMPLE: &str = r#"{
   "estimatedCharges": {
      "total": 30, "discountTotal": "-50.00", "chargeSubTotal": "100.00", "chargeHierarchyTotal": "0.00",
      "currency": "USD",
      "currentBillingPeriodStartDate":"2016-10-16T21:32:52",
      "currentBillingPeriodEndDate":"2016-11-16T21:32:52",
      "durationRemainingInCycle": "P15D",
      "estimatedCharge": [
        {"offeringCode": "DBAAS", "quantity": "10.00", "amount": "1000.00", "unitOfMeasure": "HRS", "rate": ".40", "category": "CHARGE", "chargeType": "UPTIME"},
        {"offeringCode": "MAAS", "amount": "3.09", "chargeType": "NUM_CHKS_HRS", "quantity": "3000.00", "category": "CHARGE", "rate": "2.00", "unitOfMeasure": "CHKS_HRS"},
        {"offeringCode": "CSITES", "rate": ".12", "quantity": "12.00", "category": "CHARGE", "amount": "3.14", "unitOfMeasure": "COUNT", "chargeType": "COMPUTE_CYCLE_OVERAGE"},
        {"offeringCode": "RCDN", "amount": "3.14", "chargeType": "BWOUT", "quantity": "12.00", "category": "CHARGE", "unitOfMeasure": "GB"},
        {"rate": "100.00", "quantity": "1.00", "category": "DISCOUNT", "amount": "-100.00", "unitOfMeasure": "COUNT", "endDate": "2016-05-30T09:30:10Z",
         "chargeType": "Commit Discount", "chargeDetails":"10% off spending over $1,000.00.", "chargeDescription": "10% off spending over $1,000.00."}],
      "link": [{"rel": "next", "href": "https://billing.api.rackspacecloud.com/v2/accounts/{ran}/estimated-charges?marker=0&limit=10"}]
   }
}"#;

    fn parse(text: &str) -> EstimatedCharges {
        serde_json::from_str::<EstimatedChargesResponse>(text)
            .unwrap()
            .estimated_charges
    }

    #[test]
    fn maps_the_documented_example() {
        let at: Timestamp = "2016-11-01T00:00:00Z".parse().unwrap();
        let obs = map_estimated_charges("rs", "020-1", &[parse(CLOUD_EXAMPLE)], at).unwrap();
        let total = &obs[0];
        assert_eq!(total.key.metric, SPEND_PTD);
        assert_eq!(total.value, Decimal::from(30));
        assert_eq!(total.kind, ObservationKind::PeriodToDate);
        assert_eq!(total.unit, Unit::Money(Currency::new("USD").unwrap()));
        let period = total.period.unwrap();
        assert_eq!(
            period.start,
            "2016-10-16T21:32:52Z".parse::<Timestamp>().unwrap()
        );

        let discount = obs
            .iter()
            .find(|o| o.key.metric == ITEM_SPEND_PTD && o.key.labels["category"] == "DISCOUNT")
            .unwrap();
        assert_eq!(discount.value, Decimal::from(-100));
        assert_eq!(discount.key.labels["offering"], "none");

        let bw = obs
            .iter()
            .find(|o| o.key.metric == USAGE_PTD && o.key.labels["charge_type"] == "BWOUT")
            .unwrap();
        assert_eq!(bw.value, Decimal::from_str("12.00").unwrap());
        assert_eq!(bw.unit, Unit::Quantity("GB".into()));
        assert_eq!(
            obs.iter()
                .filter(|o| o.key.metric == ITEM_SPEND_PTD)
                .count(),
            5
        );
        assert_eq!(obs.iter().filter(|o| o.key.metric == USAGE_PTD).count(), 5);
    }

    #[test]
    fn falls_back_to_charge_total_then_items() {
        let at = Timestamp::UNIX_EPOCH;
        let dedicated = r#"{"estimatedCharges":{"chargeTotal":"50.00","currency":"USD",
            "currentBillingPeriodStartDate":"2016-10-16T21:32:52","currentBillingPeriodEndDate":"2016-11-16T21:32:52"}}"#;
        let obs = map_estimated_charges("rs", "a", &[parse(dedicated)], at).unwrap();
        assert_eq!(obs[0].value, Decimal::from(50));

        let items_only = r#"{"estimatedCharges":{"currency":"USD",
            "currentBillingPeriodStartDate":"2016-10-16T21:32:52","currentBillingPeriodEndDate":"2016-11-16T21:32:52",
            "estimatedCharge":[{"offeringCode":"A","amount":"1.50"},{"offeringCode":"B","amount":2}]}}"#;
        let obs = map_estimated_charges("rs", "a", &[parse(items_only)], at).unwrap();
        assert_eq!(obs[0].value, Decimal::from_str("3.50").unwrap());

        let nothing = r#"{"estimatedCharges":{"currency":"USD",
            "currentBillingPeriodStartDate":"2016-10-16T21:32:52","currentBillingPeriodEndDate":"2016-11-16T21:32:52"}}"#;
        assert!(map_estimated_charges("rs", "a", &[parse(nothing)], at).is_err());
    }

    #[test]
    fn strict_about_shape() {
        for bad in [
            // no currency
            r#"{"estimatedCharges":{"total":1,"currentBillingPeriodStartDate":"2016-10-16T21:32:52","currentBillingPeriodEndDate":"2016-11-16T21:32:52"}}"#,
            // amount that is not a number
            r#"{"estimatedCharges":{"total":"lots","currency":"USD","currentBillingPeriodStartDate":"2016-10-16T21:32:52","currentBillingPeriodEndDate":"2016-11-16T21:32:52"}}"#,
            // the documentation's missing comma
            r#"{"estimatedCharges":{"total":1,"currency":"USD" "currentBillingPeriodStartDate":"x"}}"#,
        ] {
            assert!(
                serde_json::from_str::<EstimatedChargesResponse>(bad).is_err(),
                "{bad}"
            );
        }
        let bad_date = r#"{"estimatedCharges":{"total":1,"currency":"USD","currentBillingPeriodStartDate":"yesterday","currentBillingPeriodEndDate":"2016-11-16T21:32:52"}}"#;
        assert!(
            map_estimated_charges("rs", "a", &[parse(bad_date)], Timestamp::UNIX_EPOCH).is_err()
        );
        let bad_currency = r#"{"estimatedCharges":{"total":1,"currency":"dollars","currentBillingPeriodStartDate":"2016-10-16T21:32:52","currentBillingPeriodEndDate":"2016-11-16T21:32:52"}}"#;
        assert!(
            map_estimated_charges("rs", "a", &[parse(bad_currency)], Timestamp::UNIX_EPOCH)
                .is_err()
        );
    }

    /// Fuzz regression (`fuzz/run.sh`, target `rackspace`): with no `total` and no
    /// `chargeTotal`, line items near `Decimal::MAX` summed with `Iterator::sum`, which
    /// panicked ("Addition overflowed"). Now a malformed-body error.
    #[test]
    fn fuzz_line_item_sum_overflow_is_an_error() {
        let body: &[u8] = b"{\"estimatedCharges\":{\"currency\":\"USD\",\"currentBillingPeriodStartDate\":\"2026-05-01T00:00:00\",\"currentBillingPeriodEndDate\":\"2026-06-01T00:00:00\",\"estimatedCharge\":[{\"offeringCode\":\"A\",\"amount\":\"79228162514264337593543950335\"},{\"offeringCode\":\"B\",\"amount\":\"79228162514264337593543950335\"}]}}";
        let page = serde_json::from_slice::<EstimatedChargesResponse>(body)
            .unwrap()
            .estimated_charges;
        let err = map_estimated_charges("rs", "a", &[page], Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.kind, crate::sources::PollErrorKind::Malformed);
        assert!(err.message.contains("overflow"), "{err}");
    }
}
