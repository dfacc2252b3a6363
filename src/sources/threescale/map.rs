//! 3scale invoices → observations, per buyer account, billing month and currency.
//!
//! - A month that is still running, or that still has an `open` invoice, is period-to-date:
//!   `SPEND_PTD` (and the item/usage `_PTD` series) at the poll time, clamped into the
//!   month, because an open invoice describes "now". A closed invoice of a month that has
//!   not ended yet (a manual invoice issued mid-month) is spend of that month so far and
//!   is added to it, rather than being stamped as a total at a future period end.
//! - A month that has ended and whose invoices are all `finalized`, `pending`, `unpaid`,
//!   `paid` or `failed` is a period total (`SPEND_TOTAL` …) at the period end.
//! - `cancelled` invoices are skipped.
//!
//! Several invoices of one buyer, month and currency (background plus manual invoices)
//! add up; currencies are never added together. `cost` includes VAT; the VAT amount,
//! when the invoice has one, is an item of its own (`item="VAT"`), so the items add up
//! to the total.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use rust_decimal::Decimal;

use super::wire::{Invoice, LINE_ITEM_PLAN_COST, LINE_ITEM_VARIABLE_COST, LineItem};
use crate::model::series::{
    ITEM_SPEND_PTD, ITEM_SPEND_TOTAL, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD,
    SPEND_TOTAL, USAGE_PTD, USAGE_TOTAL,
};
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit};
use crate::sources::http::PollError;

/// Label with the line item's type: `plan_cost`, `variable_cost`, `custom`, `vat`.
pub const LABEL_LINE_ITEM_TYPE: &str = "line_item_type";
pub const LABEL_METRIC_ID: &str = "metric_id";
/// The `item` label of an invoice's VAT amount.
pub const VAT_ITEM: &str = "VAT";

/// Invoice months are calendar dates without a zone; porta computes them in UTC
/// (`Time.now.utc`), so UTC it is (uncertain for providers in other time zones).
const PERIOD_ZONE: TimeZone = TimeZone::UTC;

/// What the mapping needs from the config.
#[derive(Debug, Clone)]
pub struct MapSettings {
    /// The source name (series `source`).
    pub source: String,
    /// Unit of variable-cost usage when the metric has none configured.
    pub usage_unit: String,
    pub metric_units: BTreeMap<String, String>,
}

/// How an invoice state counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClass {
    Open,
    Closed,
    Cancelled,
}

pub fn classify_state(state: &str) -> Option<StateClass> {
    match state {
        "open" => Some(StateClass::Open),
        "finalized" | "pending" | "unpaid" | "paid" | "failed" => Some(StateClass::Closed),
        "cancelled" => Some(StateClass::Cancelled),
        _ => None,
    }
}

/// `YYYY-MM-DD` (Ruby `Date#to_s`).
fn parse_date(text: &str, what: &str) -> Result<Date, PollError> {
    text.parse::<Date>().map_err(|_| {
        PollError::malformed(format!(
            "{what}: invalid date {text:?}, expected YYYY-MM-DD"
        ))
    })
}

fn midnight(date: Date) -> Result<Timestamp, PollError> {
    date.to_zoned(PERIOD_ZONE)
        .map(|z| z.timestamp())
        .map_err(|e| PollError::malformed(format!("date {date}: {e}")))
}

/// `<period><from/><to/></period>` → `[from, to + 1 day)`: `to` is the month's last day.
pub fn invoice_period(invoice: &Invoice, what: &str) -> Result<Period, PollError> {
    let period = invoice
        .period
        .as_ref()
        .ok_or_else(|| PollError::malformed(format!("{what}: no <period>")))?;
    let from = period
        .from
        .as_deref()
        .ok_or_else(|| PollError::malformed(format!("{what}: empty <period><from>")))?;
    let to = period
        .to
        .as_deref()
        .ok_or_else(|| PollError::malformed(format!("{what}: empty <period><to>")))?;
    let from = parse_date(from, what)?;
    let to = parse_date(to, what)?;
    let end_date = to
        .checked_add(1.day())
        .map_err(|e| PollError::malformed(format!("{what}: period end: {e}")))?;
    let period = Period {
        start: midnight(from)?,
        end: midnight(end_date)?,
    };
    if period.end <= period.start {
        return Err(PollError::malformed(format!(
            "{what}: period ends ({to}) before it starts ({from})"
        )));
    }
    Ok(period)
}

fn line_item_type(item: &LineItem) -> &str {
    match item.kind.as_deref() {
        None => "custom",
        Some(LINE_ITEM_PLAN_COST) => "plan_cost",
        Some(LINE_ITEM_VARIABLE_COST) => "variable_cost",
        // A subclass this code does not know: keep its name rather than guess.
        Some(other) => other.strip_prefix("LineItem::").unwrap_or(other),
    }
}

fn add(slot: &mut Decimal, value: Decimal) -> Result<(), PollError> {
    *slot = slot
        .checked_add(value)
        .ok_or_else(|| PollError::malformed("invoice amounts overflow"))?;
    Ok(())
}

/// One buyer's invoices of one month in one currency.
#[derive(Default)]
struct Group {
    cost: Decimal,
    any_open: bool,
    /// (item name, line item type, metric id) → spend
    items: BTreeMap<(String, String, Option<String>), Decimal>,
    /// (item name, metric id) → quantity
    usage: BTreeMap<(String, String), Decimal>,
    vat: Option<Decimal>,
    invoices: BTreeSet<String>,
}

/// Maps invoices (line items already resolved) observed at `now`.
pub fn map_invoices(
    settings: &MapSettings,
    invoices: &[Invoice],
    now: Timestamp,
) -> Result<Vec<Observation>, PollError> {
    // (buyer, period start, currency) → group; the period itself is kept alongside.
    let mut groups: BTreeMap<(String, Timestamp, Currency), (Period, Group)> = BTreeMap::new();
    for invoice in invoices {
        let id = invoice
            .id
            .as_deref()
            .ok_or_else(|| PollError::malformed("an invoice has no <id>"))?;
        let what = format!("invoice {id}");
        let state = invoice
            .state
            .as_deref()
            .ok_or_else(|| PollError::malformed(format!("{what}: no <state>")))?;
        let class = classify_state(state)
            .ok_or_else(|| PollError::malformed(format!("{what}: unknown state {state:?}")))?;
        if class == StateClass::Cancelled {
            tracing::debug!(invoice = id, "Skipping a cancelled invoice.");
            continue;
        }
        let buyer = invoice
            .buyer
            .as_ref()
            .and_then(|b| b.id.clone())
            .ok_or_else(|| PollError::malformed(format!("{what}: no <buyer><id>")))?;
        if invoice.buyer.as_ref().and_then(|b| b.status.as_deref()) == Some("deleted") {
            // Its invoices still count, under the id it had.
            tracing::debug!(invoice = id, buyer = %buyer, "Invoice of a deleted buyer account.");
        }
        let currency_text = invoice
            .currency
            .as_deref()
            .ok_or_else(|| PollError::malformed(format!("{what}: no <currency>")))?;
        let currency = Currency::new(currency_text)
            .map_err(|e| PollError::malformed(format!("{what}: {e}")))?;
        let cost = invoice
            .cost
            .ok_or_else(|| PollError::malformed(format!("{what}: no <cost>")))?;
        let period = invoice_period(invoice, &what)?;

        let (group_period, group) = groups
            .entry((buyer, period.start, currency))
            .or_insert_with(|| (period, Group::default()));
        if *group_period != period {
            return Err(PollError::malformed(format!(
                "{what}: period overlaps another invoice's period with a different end"
            )));
        }
        if !group.invoices.insert(id.to_string()) {
            return Err(PollError::malformed(format!("{what} listed twice")));
        }
        add(&mut group.cost, cost)?;
        group.any_open |= class == StateClass::Open;
        if let Some(vat) = invoice.vat_amount {
            add(group.vat.get_or_insert(Decimal::ZERO), vat)?;
        }

        let items = invoice
            .line_items
            .as_ref()
            .map(|l| l.items.as_slice())
            .unwrap_or_default();
        let mut items_sum = Decimal::ZERO;
        for item in items {
            let name = item.name.clone().ok_or_else(|| {
                PollError::malformed(format!("{what}: a line item has no <name>"))
            })?;
            let item_cost = item.cost.ok_or_else(|| {
                PollError::malformed(format!("{what}: line item {name:?} has no <cost>"))
            })?;
            add(&mut items_sum, item_cost)?;
            let kind = line_item_type(item).to_string();
            let variable = item.kind.as_deref() == Some(LINE_ITEM_VARIABLE_COST);
            let metric = item.metric_id.clone().filter(|_| variable);
            add(
                group
                    .items
                    .entry((name.clone(), kind, metric.clone()))
                    .or_default(),
                item_cost,
            )?;
            if let Some(metric) = metric {
                let quantity = item.quantity.ok_or_else(|| {
                    PollError::malformed(format!(
                        "{what}: variable cost {name:?} has no <quantity>"
                    ))
                })?;
                add(group.usage.entry((name, metric)).or_default(), quantity)?;
            }
        }
        if let Some(without_vat) = invoice.cost_without_vat
            && !items.is_empty()
            && items_sum != without_vat
        {
            // porta's cost_without_vat is the sum of the line items; a difference means the
            // items are incomplete. The invoice's own cost still stands as the total.
            tracing::warn!(invoice = id, items = %items_sum, cost_without_vat = %without_vat,
                "Line items do not add up to the invoice's cost without VAT.");
        }
    }

    let mut out = Vec::new();
    for ((buyer, _, currency), (period, group)) in groups {
        let ptd = group.any_open || period.end > now;
        let (at, spend, item_spend, usage, kind) = if ptd {
            let last = period.end - SignedDuration::from_millis(1);
            (
                now.clamp(period.start, last),
                SPEND_PTD,
                ITEM_SPEND_PTD,
                USAGE_PTD,
                ObservationKind::PeriodToDate,
            )
        } else {
            (
                period.end,
                SPEND_TOTAL,
                ITEM_SPEND_TOTAL,
                USAGE_TOTAL,
                ObservationKind::PeriodTotal,
            )
        };
        let money = Unit::Money(currency.clone());
        let observe =
            |key: SeriesKey, value: Decimal, kind: ObservationKind, unit: Unit| Observation {
                key,
                at,
                period: Some(period),
                value,
                kind,
                unit,
            };
        let base = |metric: &str| SeriesKey::new(&settings.source, &buyer, metric);
        out.push(observe(
            base(spend).with_label(LABEL_CURRENCY, currency.as_str()),
            group.cost,
            kind,
            money.clone(),
        ));
        for ((name, item_type, metric), amount) in &group.items {
            let mut key = base(item_spend)
                .with_label(LABEL_CURRENCY, currency.as_str())
                .with_label(LABEL_ITEM, name)
                .with_label(LABEL_LINE_ITEM_TYPE, item_type);
            if let Some(m) = metric {
                key = key.with_label(LABEL_METRIC_ID, m);
            }
            out.push(observe(key, *amount, kind, money.clone()));
        }
        if let Some(vat) = group.vat {
            out.push(observe(
                base(item_spend)
                    .with_label(LABEL_CURRENCY, currency.as_str())
                    .with_label(LABEL_ITEM, VAT_ITEM)
                    .with_label(LABEL_LINE_ITEM_TYPE, "vat"),
                vat,
                kind,
                money.clone(),
            ));
        }
        for ((name, metric), quantity) in &group.usage {
            let unit = settings
                .metric_units
                .get(metric)
                .unwrap_or(&settings.usage_unit);
            out.push(observe(
                base(usage)
                    .with_label(LABEL_ITEM, name)
                    .with_label(LABEL_METRIC_ID, metric)
                    .with_label(LABEL_UNIT, unit),
                *quantity,
                ObservationKind::Usage,
                Unit::Quantity(unit.clone()),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::threescale::wire::{parse_invoice, parse_invoice_list};
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn settings() -> MapSettings {
        MapSettings {
            source: "3s".into(),
            usage_unit: "hits".into(),
            metric_units: BTreeMap::new(),
        }
    }

    /// porta's invoice test ("return XML invoice specified by ID"): two plan-cost line items of
    /// 10.0, cost 20.0, no VAT elements at rate 0, in the element order of
    /// `Finance::Builder::XmlMarkup`.
    const DOCUMENTED_INVOICE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<invoice version="1.0">
  <id>2</id>
  <friendly_id>2026-00000002</friendly_id>
  <creation_type>background</creation_type>
  <state>pending</state>
  <paid_at></paid_at>
  <due_on>2026-11-03</due_on>
  <issued_on>2026-11-01</issued_on>
  <currency>EUR</currency>
  <cost>20.0</cost>
  <cost_without_vat>20.0</cost_without_vat>
  <period>
    <from>2026-10-01</from>
    <to>2026-10-31</to>
  </period>
  <provider>
    <id>1</id>
    <org_name>Provider Name</org_name>
    <address>Calle Provider 1</address>
    <city>Barcelona</city>
    <state></state>
    <country>Spain</country>
    <phone></phone>
    <zip>08001</zip>
  </provider>
  <buyer>
    <id>3</id>
    <org_name>Buyer Name</org_name>
    <address></address>
    <city></city>
    <state></state>
    <country></country>
    <phone></phone>
    <zip></zip>
  </buyer>
  <line-items type="array">
    <line-item>
      <id>10</id>
      <name>fake</name>
      <description></description>
      <quantity>1</quantity>
      <type>LineItem::PlanCost</type>
      <plan_id>7</plan_id>
      <contract_id>8</contract_id>
      <contract_type>Cinstance</contract_type>
      <cost>10.0</cost>
    </line-item>
    <line-item>
      <id>11</id>
      <name>fake</name>
      <description></description>
      <quantity>1</quantity>
      <type>LineItem::PlanCost</type>
      <plan_id>7</plan_id>
      <contract_id>8</contract_id>
      <contract_type>Cinstance</contract_type>
      <cost>10.0</cost>
    </line-item>
  </line-items>
  <payment_transactions_count>0</payment_transactions_count>
</invoice>"#;

    #[test]
    fn maps_the_documented_invoice_as_a_period_total() {
        let invoice = parse_invoice(DOCUMENTED_INVOICE.as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &[invoice], ts("2026-11-15T00:00:00Z")).unwrap();
        assert_eq!(obs.len(), 2, "{obs:#?}");
        let total = &obs[0];
        assert_eq!(total.key.source, "3s");
        assert_eq!(total.key.account, "3");
        assert_eq!(total.key.metric, SPEND_TOTAL);
        assert_eq!(total.key.labels.len(), 1);
        assert_eq!(total.key.labels[LABEL_CURRENCY], "EUR");
        assert_eq!(total.value, dec("20.0"));
        assert_eq!(total.kind, ObservationKind::PeriodTotal);
        assert_eq!(total.unit, Unit::Money(Currency::new("EUR").unwrap()));
        let period = total.period.unwrap();
        assert_eq!(period.start, ts("2026-10-01T00:00:00Z"));
        assert_eq!(period.end, ts("2026-11-01T00:00:00Z"), "`to` is inclusive");
        assert_eq!(total.at, period.end);

        let item = &obs[1];
        assert_eq!(item.key.metric, ITEM_SPEND_TOTAL);
        assert_eq!(item.key.labels[LABEL_ITEM], "fake");
        assert_eq!(item.key.labels[LABEL_LINE_ITEM_TYPE], "plan_cost");
        assert_eq!(item.key.labels[LABEL_CURRENCY], "EUR");
        assert!(!item.key.labels.contains_key(LABEL_METRIC_ID));
        assert_eq!(item.value, dec("20.0"), "two items of the same name add up");
        assert_eq!((item.at, item.period), (total.at, total.period));
    }

    /// The "have vat_rate if non negative" case: rate 10 → cost 22.0, VAT 2.0.
    #[test]
    fn vat_is_kept_as_its_own_item() {
        let xml = DOCUMENTED_INVOICE.replace(
            "<cost>20.0</cost>",
            "<cost>22.0</cost><vat_rate>10.0</vat_rate><vat_amount>2.0</vat_amount>",
        );
        let invoice = parse_invoice(xml.as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &[invoice], ts("2026-11-15T00:00:00Z")).unwrap();
        assert_eq!(obs[0].value, dec("22.0"), "spend includes VAT");
        let vat = obs
            .iter()
            .find(|o| o.key.labels.get(LABEL_ITEM).map(String::as_str) == Some(VAT_ITEM))
            .unwrap();
        assert_eq!(vat.value, dec("2.0"));
        assert_eq!(vat.key.labels[LABEL_LINE_ITEM_TYPE], "vat");
        let items: Decimal = obs
            .iter()
            .filter(|o| o.key.metric == ITEM_SPEND_TOTAL)
            .map(|o| o.value)
            .sum();
        assert_eq!(items, obs[0].value, "items add up to the total");
    }

    fn open_invoice(
        id: &str,
        buyer: &str,
        currency: &str,
        month: &str,
        extra_items: &str,
    ) -> String {
        format!(
            r#"<invoice><id>{id}</id><state>open</state><paid_at/><currency>{currency}</currency>
<cost>105.5</cost><cost_without_vat>105.5</cost_without_vat>
<period><from>{month}-01</from><to>{month}-30</to></period>
<buyer><id>{buyer}</id><org_name>Ωmega Ünïcode 株式会社</org_name></buyer>
<line-items>
<line-item><name>Fixed fee ('Pro')</name><quantity>1</quantity><type>LineItem::PlanCost</type><metric_id/><cost>100.0</cost></line-item>
<line-item><name>Hits</name><quantity>55000</quantity><type>LineItem::VariableCost</type><metric_id>2555418000</metric_id><cost>5.5</cost></line-item>
{extra_items}</line-items></invoice>"#
        )
    }

    #[test]
    fn open_invoices_are_period_to_date_with_usage() {
        let xml = format!(
            "<invoices>{}</invoices>",
            open_invoice("1", "7", "USD", "2026-11", "")
        );
        let list = parse_invoice_list(xml.as_bytes()).unwrap();
        let now = ts("2026-11-10T12:00:00Z");
        let obs = map_invoices(&settings(), &list.invoices, now).unwrap();
        let by = |metric: &str| {
            obs.iter()
                .filter(|o| o.key.metric == metric)
                .collect::<Vec<_>>()
        };
        let total = by(SPEND_PTD);
        assert_eq!(total.len(), 1);
        assert_eq!(total[0].value, dec("105.5"));
        assert_eq!(total[0].at, now, "an open invoice describes now");
        assert_eq!(total[0].kind, ObservationKind::PeriodToDate);
        assert_eq!(total[0].period.unwrap().end, ts("2026-12-01T00:00:00Z"));

        let items = by(ITEM_SPEND_PTD);
        assert_eq!(items.len(), 2);
        let hits = items
            .iter()
            .find(|o| o.key.labels[LABEL_ITEM] == "Hits")
            .unwrap();
        assert_eq!(hits.value, dec("5.5"));
        assert_eq!(hits.key.labels[LABEL_METRIC_ID], "2555418000");
        assert_eq!(hits.key.labels[LABEL_LINE_ITEM_TYPE], "variable_cost");
        let fee = items
            .iter()
            .find(|o| o.key.labels[LABEL_ITEM] == "Fixed fee ('Pro')")
            .unwrap();
        assert!(!fee.key.labels.contains_key(LABEL_METRIC_ID));

        let usage = by(USAGE_PTD);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].value, dec("55000"));
        assert_eq!(usage[0].kind, ObservationKind::Usage);
        assert_eq!(usage[0].unit, Unit::Quantity("hits".into()));
        assert_eq!(usage[0].key.labels[LABEL_UNIT], "hits");
        assert_eq!(usage[0].key.labels[LABEL_ITEM], "Hits");
        assert!(!usage[0].key.labels.contains_key(LABEL_CURRENCY));
        assert!(by(SPEND_TOTAL).is_empty());

        let mut s = settings();
        s.metric_units.insert("2555418000".into(), "MB".into());
        let obs = map_invoices(&s, &list.invoices, now).unwrap();
        let usage = obs.iter().find(|o| o.key.metric == USAGE_PTD).unwrap();
        assert_eq!(usage.unit, Unit::Quantity("MB".into()));
    }

    #[test]
    fn custom_items_are_spend_only_and_currencies_stay_apart() {
        let custom =
            "<line-item><name>Support</name><quantity/><type></type><cost>0.5</cost></line-item>";
        let xml = format!(
            "<invoices>{}{}{}</invoices>",
            open_invoice("1", "7", "USD", "2026-11", custom),
            open_invoice("2", "7", "EUR", "2026-11", ""),
            open_invoice("3", "7", "USD", "2026-11", "")
        );
        let list = parse_invoice_list(xml.as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &list.invoices, ts("2026-11-10T12:00:00Z")).unwrap();
        let totals: BTreeMap<&str, Decimal> = obs
            .iter()
            .filter(|o| o.key.metric == SPEND_PTD)
            .map(|o| (o.key.labels[LABEL_CURRENCY].as_str(), o.value))
            .collect();
        assert_eq!(
            totals["USD"],
            dec("211.0"),
            "two USD invoices of one month add up"
        );
        assert_eq!(totals["EUR"], dec("105.5"));
        let support = obs
            .iter()
            .find(|o| o.key.labels.get(LABEL_ITEM).map(String::as_str) == Some("Support"))
            .unwrap();
        assert_eq!(support.key.labels[LABEL_LINE_ITEM_TYPE], "custom");
        let usd_hits: Vec<_> = obs
            .iter()
            .filter(|o| o.key.metric == USAGE_PTD)
            .map(|o| o.value)
            .collect();
        // Usage carries no currency: the USD and EUR invoices' hits are separate groups.
        assert_eq!(usd_hits.len(), 2);
        assert!(usd_hits.contains(&dec("110000")));
    }

    #[test]
    fn cancelled_is_skipped_and_states_decide_the_kind() {
        let closed = |id: &str, state: &str, month: &str| {
            open_invoice(id, "7", "USD", month, "")
                .replace("<state>open</state>", &format!("<state>{state}</state>"))
        };
        let now = ts("2026-11-10T12:00:00Z");
        for state in ["finalized", "pending", "unpaid", "paid", "failed"] {
            let inv = parse_invoice(closed("1", state, "2026-09").as_bytes()).unwrap();
            let obs = map_invoices(&settings(), &[inv], now).unwrap();
            assert_eq!(obs[0].key.metric, SPEND_TOTAL, "{state}");
            assert_eq!(obs[0].at, ts("2026-10-01T00:00:00Z"));
            assert!(obs.iter().any(|o| o.key.metric == USAGE_TOTAL));
        }
        let inv = parse_invoice(closed("1", "cancelled", "2026-09").as_bytes()).unwrap();
        assert!(map_invoices(&settings(), &[inv], now).unwrap().is_empty());
        let inv = parse_invoice(closed("1", "archived", "2026-09").as_bytes()).unwrap();
        assert!(
            map_invoices(&settings(), &[inv], now).is_err(),
            "unknown state"
        );

        // A closed (manual) invoice of the running month is spend so far, not a future total.
        let manual = parse_invoice(closed("2", "paid", "2026-11").as_bytes()).unwrap();
        let open = parse_invoice(open_invoice("3", "7", "USD", "2026-11", "").as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &[manual, open], now).unwrap();
        let total: Vec<_> = obs
            .iter()
            .filter(|o| o.key.metric.starts_with("spend"))
            .collect();
        assert_eq!(total.len(), 1);
        assert_eq!(
            (total[0].key.metric.as_str(), total[0].value, total[0].at),
            (SPEND_PTD, dec("211.0"), now)
        );

        // Last month still open on the 1st (billing not run yet): to date, inside its month.
        let late = parse_invoice(open_invoice("4", "7", "USD", "2026-09", "").as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &[late], ts("2026-10-01T06:00:00Z")).unwrap();
        assert_eq!(obs[0].key.metric, SPEND_PTD);
        assert_eq!(obs[0].at, ts("2026-09-30T23:59:59.999Z"));
        assert!(obs[0].period.unwrap().contains(obs[0].at));
    }

    #[test]
    fn deleted_buyers_keep_their_id() {
        let xml = open_invoice("1", "7", "USD", "2026-09", "")
            .replace(
                "<buyer><id>7</id><org_name>Ωmega Ünïcode 株式会社</org_name></buyer>",
                "<buyer><id>99</id><status>deleted</status></buyer>",
            )
            .replace("<state>open</state>", "<state>paid</state>");
        let inv = parse_invoice(xml.as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &[inv], ts("2026-11-10T12:00:00Z")).unwrap();
        assert!(obs.iter().all(|o| o.key.account == "99"));
        assert_eq!(obs[0].value, dec("105.5"));
    }

    #[test]
    fn missing_required_fields_are_errors() {
        let good = open_invoice("1", "7", "USD", "2026-11", "");
        let now = ts("2026-11-10T12:00:00Z");
        for (from, to) in [
            ("<id>1</id>", "<id/>"),
            ("<state>open</state>", "<state></state>"),
            ("<currency>USD</currency>", "<currency/>"),
            ("<currency>USD</currency>", "<currency>usd</currency>"),
            ("<cost>105.5</cost>", ""),
            ("<buyer><id>7</id>", "<buyer><id></id>"),
            ("<from>2026-11-01</from>", "<from/>"),
            ("<to>2026-11-30</to>", "<to>30/11/2026</to>"),
            ("<to>2026-11-30</to>", "<to>2026-10-01</to>"),
            (
                "<period><from>2026-11-01</from><to>2026-11-30</to></period>",
                "",
            ),
            ("<cost>5.5</cost>", "<cost/>"),
            ("<name>Hits</name>", "<name/>"),
            ("<quantity>55000</quantity>", "<quantity></quantity>"),
        ] {
            assert!(good.contains(from), "{from}");
            let bad = good.replacen(from, to, 1);
            let inv = parse_invoice(bad.as_bytes()).unwrap();
            let err = map_invoices(&settings(), &[inv], now).expect_err(&bad);
            assert_eq!(err.kind, crate::sources::PollErrorKind::Malformed);
        }
        let inv = parse_invoice(good.as_bytes()).unwrap();
        assert!(
            map_invoices(&settings(), &[inv.clone(), inv], now).is_err(),
            "the same invoice twice"
        );
    }

    #[test]
    fn empty_line_items_still_give_the_total() {
        let xml = open_invoice("1", "7", "USD", "2026-11", "");
        let start = xml.find("<line-items>").unwrap();
        let end = xml.find("</line-items>").unwrap() + "</line-items>".len();
        let xml = format!("{}<line-items/>{}", &xml[..start], &xml[end..]);
        let inv = parse_invoice(xml.as_bytes()).unwrap();
        let obs = map_invoices(&settings(), &[inv], ts("2026-11-10T12:00:00Z")).unwrap();
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].value, dec("105.5"));
    }
}
