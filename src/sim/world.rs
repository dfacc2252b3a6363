//! The simulated billing world: accounts whose spend accrues through a billing period,
//! resets at the period start, and carries scheduled incidents and injected charges.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::model::Period;

#[derive(Debug, Clone)]
pub struct SimItem {
    pub offering: String,
    pub charge_type: String,
    pub unit_of_measure: String,
    pub daily_amount: Decimal,
    /// Price per unit; quantity = amount / rate.
    pub rate: Decimal,
}

/// Extra spend on one offering between two days of every billing period (a runaway instance).
#[derive(Debug, Clone)]
pub struct RecurringIncident {
    pub offering: String,
    pub from_day: f64,
    pub to_day: f64,
    pub extra_daily: Decimal,
}

/// A one-time charge (or credit, if negative) at an instant.
#[derive(Debug, Clone)]
pub struct Adjustment {
    pub at: Timestamp,
    pub offering: String,
    pub amount: Decimal,
}

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub ran: String,
    pub currency: String,
    /// Day of month the billing cycle starts (1–28).
    pub cycle_day: i8,
    pub items: Vec<SimItem>,
    pub incidents: Vec<RecurringIncident>,
    pub adjustments: Vec<Adjustment>,
}

/// A line item's state at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCharge {
    pub offering: String,
    pub charge_type: String,
    pub unit_of_measure: String,
    pub category: &'static str,
    pub amount: Decimal,
    pub quantity: Decimal,
    pub rate: Option<Decimal>,
}

fn month_start(year: i16, month: i8, day: i8) -> Option<Timestamp> {
    Date::new(year, month, day)
        .ok()?
        .to_zoned(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl SimAccount {
    /// The billing period containing `at`.
    pub fn period(&self, at: Timestamp) -> Option<Period> {
        let date = at.to_zoned(TimeZone::UTC).date();
        let this = month_start(date.year(), date.month(), self.cycle_day)?;
        let start = if at >= this {
            this
        } else {
            let prev = date.checked_sub(1.month()).ok()?;
            month_start(prev.year(), prev.month(), self.cycle_day)?
        };
        let start_date = start.to_zoned(TimeZone::UTC).date();
        let next = start_date.checked_add(1.month()).ok()?;
        let end = month_start(next.year(), next.month(), self.cycle_day)?;
        Some(Period { start, end })
    }

    /// Line items accrued from the period start to `at`.
    pub fn charges(&self, at: Timestamp) -> Option<(Period, Vec<SimCharge>)> {
        let period = self.period(at)?;
        let days = |d: SignedDuration| d.as_secs_f64() / 86_400.0;
        let elapsed = days(at.duration_since(period.start)).max(0.0);
        let mut out = Vec::new();
        for item in &self.items {
            let mut amount = item.daily_amount * Decimal::from_f64(elapsed)?;
            for inc in self
                .incidents
                .iter()
                .filter(|i| i.offering == item.offering)
            {
                let overlap = (elapsed.min(inc.to_day) - inc.from_day).max(0.0);
                amount += inc.extra_daily * Decimal::from_f64(overlap)?;
            }
            for adj in self
                .adjustments
                .iter()
                .filter(|a| a.offering == item.offering && period.contains(a.at) && a.at <= at)
            {
                amount += adj.amount;
            }
            let amount = amount.round_dp(2);
            let quantity = if item.rate.is_zero() {
                Decimal::ZERO
            } else {
                (amount / item.rate).round_dp(2)
            };
            out.push(SimCharge {
                offering: item.offering.clone(),
                charge_type: item.charge_type.clone(),
                unit_of_measure: item.unit_of_measure.clone(),
                category: "CHARGE",
                amount,
                quantity,
                rate: Some(item.rate),
            });
        }
        Some((period, out))
    }
}

fn item(offering: &str, charge_type: &str, uom: &str, daily: i64, rate: &str) -> SimItem {
    SimItem {
        offering: offering.into(),
        charge_type: charge_type.into(),
        unit_of_measure: uom.into(),
        daily_amount: Decimal::from(daily),
        rate: rate.parse().unwrap_or(Decimal::ONE),
    }
}

/// The world `demo` and the tests run against.
pub fn demo_world() -> Vec<SimAccount> {
    vec![
        SimAccount {
            ran: "020-1001".into(),
            currency: "USD".into(),
            cycle_day: 1,
            items: vec![
                item("CLOUD_SERVERS", "UPTIME", "HRS", 52, "0.12"),
                item("RCDN", "BWOUT", "GB", 18, "0.08"),
                item("CLOUD_FILES", "STORAGE", "GB", 10, "0.10"),
            ],
            // A runaway fleet on days 10–12 of every period: forecast crosses the budget, then recovers.
            incidents: vec![RecurringIncident {
                offering: "CLOUD_SERVERS".into(),
                from_day: 10.0,
                to_day: 12.0,
                extra_daily: Decimal::from(300),
            }],
            adjustments: Vec::new(),
        },
        SimAccount {
            ran: "020-2002".into(),
            currency: "GBP".into(),
            cycle_day: 1,
            items: vec![
                item("CLOUD_SERVERS", "UPTIME", "HRS", 20, "0.10"),
                item("DBAAS", "UPTIME", "HRS", 6, "0.40"),
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_accrues_and_resets_at_the_period_start() {
        let acct = &demo_world()[1];
        let late: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let early: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let (p1, c1) = acct.charges(late).unwrap();
        let (p2, c2) = acct.charges(early).unwrap();
        assert_eq!(p1.end, p2.start);
        assert_eq!(
            p2.start,
            "2026-12-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        let total = |c: &[SimCharge]| c.iter().map(|x| x.amount).sum::<Decimal>();
        assert_eq!(total(&c1), Decimal::from(26 * 29) + Decimal::from(13));
        assert_eq!(total(&c2), Decimal::from(13));
    }

    #[test]
    fn incidents_add_spend_within_their_days() {
        let acct = &demo_world()[0];
        let before = acct
            .charges("2026-11-10T00:00:00Z".parse().unwrap())
            .unwrap()
            .1;
        let after = acct
            .charges("2026-11-14T00:00:00Z".parse().unwrap())
            .unwrap()
            .1;
        let servers = |c: &[SimCharge]| {
            c.iter()
                .find(|x| x.offering == "CLOUD_SERVERS")
                .unwrap()
                .amount
        };
        assert_eq!(servers(&before), Decimal::from(52 * 9));
        assert_eq!(servers(&after), Decimal::from(52 * 13 + 600));
    }

    #[test]
    fn cycle_day_periods() {
        let mut acct = demo_world()[0].clone();
        acct.cycle_day = 16;
        let p = acct
            .period("2026-11-05T00:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(
            p.start,
            "2026-10-16T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(p.end, "2026-11-16T00:00:00Z".parse::<Timestamp>().unwrap());
    }
}
