//! The simulated world every API simulator renders: accounts with line items whose usage
//! accrues through a billing period (fixed quantities per day, or quantities that follow the
//! account's traffic), reset at the period start, with scheduled incidents and injected
//! charges. Traffic has a daily cycle, so spend that follows traffic does too.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::model::Period;

/// Which API serves an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Rackspace,
    Sakura,
    Racknap,
    Threescale,
}

#[derive(Debug, Clone)]
pub struct SimItem {
    /// The API's code for the item (Rackspace offeringCode, SAKURA service class, 3scale metric …).
    pub code: String,
    /// Readable name (3scale line-item name, SAKURA product name …).
    pub name: String,
    /// Rackspace chargeType, 3scale `LineItem::PlanCost` / `LineItem::VariableCost`, …
    pub charge_type: String,
    pub unit: String,
    /// Quantity accrued per day regardless of traffic (instance hours, storage GB-days).
    pub fixed_per_day: Decimal,
    /// Quantity per unit of the account's traffic (GB per request, API hits per request).
    pub per_traffic: f64,
    pub unit_price: Decimal,
}

/// Extra quantity of one item between two days of every period (a runaway fleet).
#[derive(Debug, Clone)]
pub struct RecurringIncident {
    pub item: String,
    pub from_day: f64,
    pub to_day: f64,
    pub extra_per_day: Decimal,
}

/// A one-time charge (or credit, if negative) on an item at an instant.
#[derive(Debug, Clone)]
pub struct Adjustment {
    pub at: Timestamp,
    pub item: String,
    pub amount: Decimal,
}

/// Traffic in `unit` per hour: `base × (1 + diurnal × sin(…))`, peaking at 12:00 UTC,
/// times `factor` inside any traffic incident's days of the period.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub unit: String,
    pub base_per_hour: f64,
    pub diurnal: f64,
    pub incidents: Vec<TrafficIncident>,
}

#[derive(Debug, Clone)]
pub struct TrafficIncident {
    pub from_day: f64,
    pub to_day: f64,
    pub factor: f64,
}

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub api: Api,
    /// The API's account id (Rackspace RAN, SAKURA account ID, RackNap customer, 3scale buyer).
    pub id: String,
    pub name: String,
    pub currency: String,
    /// Day of month the billing cycle starts (1–28).
    pub cycle_day: i8,
    pub items: Vec<SimItem>,
    pub incidents: Vec<RecurringIncident>,
    pub adjustments: Vec<Adjustment>,
    pub traffic: Traffic,
    /// API-specific attributes (SAKURA member code, …).
    pub extra: BTreeMap<String, String>,
}

/// A line item's state at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCharge {
    pub code: String,
    pub name: String,
    pub charge_type: String,
    pub unit: String,
    pub amount: Decimal,
    pub quantity: Decimal,
    pub unit_price: Decimal,
}

/// Integration step for traffic; fine enough that hourly polls see smooth growth.
const STEP_SECONDS: f64 = 900.0;

fn cycle_start(year: i16, month: i8, day: i8) -> Option<Timestamp> {
    Date::new(year, month, day)
        .ok()?
        .to_zoned(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

fn days(d: SignedDuration) -> f64 {
    d.as_secs_f64() / 86_400.0
}

impl Traffic {
    fn factor(&self, day_of_period: f64) -> f64 {
        self.incidents
            .iter()
            .filter(|i| i.from_day <= day_of_period && day_of_period < i.to_day)
            .map(|i| i.factor)
            .product()
    }

    /// Units per hour at `at`, `day_of_period` days into its billing period.
    pub fn rate_per_hour(&self, at: Timestamp, day_of_period: f64) -> f64 {
        let hour = (at.as_second().rem_euclid(86_400)) as f64 / 3600.0;
        let cycle = (std::f64::consts::TAU * (hour - 6.0) / 24.0).sin();
        (self.base_per_hour * (1.0 + self.diurnal * cycle) * self.factor(day_of_period)).max(0.0)
    }
}

impl SimAccount {
    /// The billing period containing `at`.
    pub fn period(&self, at: Timestamp) -> Option<Period> {
        let date = at.to_zoned(TimeZone::UTC).date();
        let this = cycle_start(date.year(), date.month(), self.cycle_day)?;
        let start = if at >= this {
            this
        } else {
            let prev = date.checked_sub(1.month()).ok()?;
            cycle_start(prev.year(), prev.month(), self.cycle_day)?
        };
        let start_date = start.to_zoned(TimeZone::UTC).date();
        let next = start_date.checked_add(1.month()).ok()?;
        let end = cycle_start(next.year(), next.month(), self.cycle_day)?;
        Some(Period { start, end })
    }

    /// The period before `period`.
    pub fn previous_period(&self, period: Period) -> Option<Period> {
        self.period(period.start - SignedDuration::from_secs(1))
    }

    /// Traffic units in `[from, to)` of `period`.
    pub fn traffic_between(&self, period: Period, from: Timestamp, to: Timestamp) -> f64 {
        let mut total = 0.0;
        let mut t = from;
        while t < to {
            let step_end = (t + SignedDuration::from_secs_f64(STEP_SECONDS)).min(to);
            let hours = days(step_end.duration_since(t)) * 24.0;
            total += self
                .traffic
                .rate_per_hour(t, days(t.duration_since(period.start)))
                * hours;
            t = step_end;
        }
        total
    }

    /// Line items accrued from the start of the period containing `at` up to `at`
    /// (for a closed period, pass its last instant to get the period total).
    pub fn charges(&self, at: Timestamp) -> Option<(Period, Vec<SimCharge>)> {
        let period = self.period(at)?;
        let elapsed = days(at.duration_since(period.start)).max(0.0);
        let traffic = self.traffic_between(period, period.start, at);
        let mut out = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let mut quantity = item.fixed_per_day * Decimal::from_f64(elapsed)?
                + Decimal::from_f64(item.per_traffic * traffic)?;
            for inc in self.incidents.iter().filter(|i| i.item == item.code) {
                let overlap = (elapsed.min(inc.to_day) - inc.from_day).max(0.0);
                quantity += inc.extra_per_day * Decimal::from_f64(overlap)?;
            }
            let quantity = quantity.round_dp(2);
            let mut amount = quantity * item.unit_price;
            for adj in self
                .adjustments
                .iter()
                .filter(|a| a.item == item.code && period.contains(a.at) && a.at <= at)
            {
                amount += adj.amount;
            }
            out.push(SimCharge {
                code: item.code.clone(),
                name: item.name.clone(),
                charge_type: item.charge_type.clone(),
                unit: item.unit.clone(),
                amount: amount.round_dp(2),
                quantity,
                unit_price: item.unit_price,
            });
        }
        Some((period, out))
    }

    /// The closed period before the one containing `at`, with its final charges.
    pub fn last_closed(&self, at: Timestamp) -> Option<(Period, Vec<SimCharge>)> {
        let current = self.period(at)?;
        let previous = self.previous_period(current)?;
        let (_, charges) = self.charges(previous.end - SignedDuration::from_millis(1))?;
        Some((previous, charges))
    }
}

fn item(
    code: &str,
    charge_type: &str,
    unit: &str,
    fixed_per_day: i64,
    per_traffic: f64,
    price: &str,
) -> SimItem {
    SimItem {
        code: code.into(),
        name: code.into(),
        charge_type: charge_type.into(),
        unit: unit.into(),
        fixed_per_day: Decimal::from(fixed_per_day),
        per_traffic,
        unit_price: price.parse().unwrap_or(Decimal::ONE),
    }
}

fn steady_traffic(unit: &str, base_per_hour: f64) -> Traffic {
    Traffic {
        unit: unit.into(),
        base_per_hour,
        diurnal: 0.5,
        incidents: Vec::new(),
    }
}

/// The world `demo` and the tests run against.
pub fn demo_world() -> Vec<SimAccount> {
    vec![
        // ~$80/day against a $3,200 budget; a runaway fleet on days 10–12 (+$300/day).
        SimAccount {
            api: Api::Rackspace,
            id: "020-1001".into(),
            name: "Example Retail".into(),
            currency: "USD".into(),
            cycle_day: 1,
            items: vec![
                // 433.33 instance-hours a day at $0.12 ≈ $52/day
                item("CLOUD_SERVERS", "UPTIME", "HRS", 0, 0.0, "0.12").with_fixed("433.3333"),
                // 225 GB a day on average, following requests (9.375 GB per 1k requests/h × 24 h)
                item("RCDN", "BWOUT", "GB", 0, 0.0009375, "0.08"),
                item("CLOUD_FILES", "STORAGE", "GB", 100, 0.0, "0.10"),
            ],
            incidents: vec![RecurringIncident {
                item: "CLOUD_SERVERS".into(),
                from_day: 10.0,
                to_day: 12.0,
                extra_per_day: Decimal::from(2500),
            }],
            adjustments: Vec::new(),
            traffic: steady_traffic("requests", 10_000.0),
            extra: BTreeMap::new(),
        },
        // ~£26/day against £1,000: never alerts.
        SimAccount {
            api: Api::Rackspace,
            id: "020-2002".into(),
            name: "Example Media".into(),
            currency: "GBP".into(),
            cycle_day: 1,
            items: vec![
                item("CLOUD_SERVERS", "UPTIME", "HRS", 200, 0.0, "0.10"),
                item("DBAAS", "UPTIME", "HRS", 15, 0.0, "0.40"),
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: steady_traffic("requests", 2_000.0),
            extra: BTreeMap::new(),
        },
        // 3scale buyer (USD, no VAT): $10/day plan fee plus $0.0001 per API hit (~$48/day);
        // its apps' traffic spikes ×6 on days 12–14 of every month, and its hits bill with it.
        SimAccount {
            api: Api::Threescale,
            id: "2445580101".into(),
            name: "Example Apps, Inc.".into(),
            currency: "USD".into(),
            cycle_day: 1,
            items: vec![
                SimItem {
                    name: "Fixed fee ('Pro')".into(),
                    ..item("2357355901", "LineItem::PlanCost", "days", 1, 0.0, "10.00")
                },
                SimItem {
                    name: "Hits".into(),
                    ..item(
                        "2555418001",
                        "LineItem::VariableCost",
                        "hits",
                        0,
                        1.0,
                        "0.0001",
                    )
                },
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: Traffic {
                incidents: vec![TrafficIncident {
                    from_day: 12.0,
                    to_day: 14.0,
                    factor: 6.0,
                }],
                ..steady_traffic("hits", 20_000.0)
            },
            extra: BTreeMap::new(),
        },
        // 3scale buyer (EUR, 21 % VAT): €16/day plan fee plus €0.00005 per hit (~€6/day).
        SimAccount {
            api: Api::Threescale,
            id: "2445580102".into(),
            name: "Café Müller GmbH".into(),
            currency: "EUR".into(),
            cycle_day: 1,
            items: vec![
                SimItem {
                    name: "Fixed fee ('Enterprise')".into(),
                    ..item("2357355902", "LineItem::PlanCost", "days", 1, 0.0, "16.00")
                },
                SimItem {
                    name: "Hits".into(),
                    ..item(
                        "2555418002",
                        "LineItem::VariableCost",
                        "hits",
                        0,
                        1.0,
                        "0.00005",
                    )
                },
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: steady_traffic("hits", 5_000.0),
            extra: BTreeMap::from([("vat_rate".to_string(), "21.0".to_string())]),
        },
        // SAKURA Cloud (JPY, calendar months in JST): ~¥1,500/day, of which ~¥1,200 is
        // egress that follows traffic; on days 18–20 of every month an extra server contract
        // runs (+¥864/day) while traffic stays the same.
        SimAccount {
            api: Api::Sakura,
            id: "000000526782".into(),
            name: "APIテスト用".into(),
            currency: "JPY".into(),
            cycle_day: 1,
            items: vec![
                // Codes are service class IDs; usage of servers and disks is in seconds.
                SimItem {
                    name: "サーバ/プラン/2Core-4GB".into(),
                    ..item("50295", "server", "seconds", 172_800, 0.0, "0.0015")
                },
                SimItem {
                    name: "ディスク/SSDプラン/100GB".into(),
                    ..item("50122", "disk", "seconds", 86_400, 0.0, "0.0005")
                },
                // 240 GB a day at ¥5/GB: 1 GB per 1,000 requests.
                SimItem {
                    name: "ウェブアクセラレータ/転送量".into(),
                    ..item("50900", "egress", "GB", 0, 0.001, "5")
                },
                SimItem {
                    name: "サーバ/プラン/4Core-8GB".into(),
                    ..item("50296", "server", "seconds", 0, 0.0, "0.005")
                },
            ],
            incidents: vec![RecurringIncident {
                item: "50296".into(),
                from_day: 17.0,
                to_day: 20.0,
                extra_per_day: Decimal::from(172_800),
            }],
            adjustments: Vec::new(),
            traffic: steady_traffic("requests", 10_000.0),
            extra: [
                ("member_code", "xxx000001"),
                ("account_code", "billTest"),
                ("access_token", crate::sim::sakura::DEMO_ACCESS_TOKEN),
                (
                    "access_token_secret",
                    crate::sim::sakura::DEMO_ACCESS_TOKEN_SECRET,
                ),
                ("external_permission", "bill"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        },
        // RackNap reseller customers, invoiced per calendar month.
        // ~$905/month of licences: flat from month to month.
        SimAccount {
            api: Api::Racknap,
            id: "cust_3d8f4a2b".into(),
            name: "Northwind Traders".into(),
            currency: "USD".into(),
            cycle_day: 1,
            items: vec![
                // 40 seats at $0.72 a seat-day ≈ $22/seat-month
                item(
                    "M365_BUSINESS_PREMIUM",
                    "SUBSCRIPTION",
                    "SEAT_DAYS",
                    40,
                    0.0,
                    "0.72",
                ),
                item("AZURE_BACKUP", "USAGE", "GB_DAYS", 500, 0.0, "0.002"),
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: steady_traffic("requests", 500.0),
            extra: BTreeMap::new(),
        },
        // Spend follows traffic: ~$7/day of VMs plus ~$21/day of egress (0.5 MB a request),
        // and a traffic surge (×3) on the 20th and 21st of every month.
        SimAccount {
            api: Api::Racknap,
            id: "cust_7a1c9e05".into(),
            name: "Contoso Web Shop".into(),
            currency: "USD".into(),
            cycle_day: 1,
            items: vec![
                item("AZURE_VM", "USAGE", "HRS", 72, 0.0, "0.096"),
                item("AZURE_BANDWIDTH", "USAGE", "GB", 0, 0.0005, "0.087"),
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: Traffic {
                unit: "requests".into(),
                base_per_hour: 20_000.0,
                diurnal: 0.6,
                incidents: vec![TrafficIncident {
                    from_day: 19.0,
                    to_day: 21.0,
                    factor: 3.0,
                }],
            },
            extra: BTreeMap::new(),
        },
        // ~€400/month, in euros.
        SimAccount {
            api: Api::Racknap,
            id: "cust_5e2b7d19".into(),
            name: "Fabrikam GmbH".into(),
            currency: "EUR".into(),
            cycle_day: 1,
            items: vec![
                item(
                    "M365_BUSINESS_STANDARD",
                    "SUBSCRIPTION",
                    "SEAT_DAYS",
                    25,
                    0.0,
                    "0.40",
                ),
                item(
                    "DYNAMICS_365_SALES",
                    "SUBSCRIPTION",
                    "SEAT_DAYS",
                    1,
                    0.0,
                    "3.20",
                ),
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: steady_traffic("requests", 300.0),
            extra: BTreeMap::new(),
        },
    ]
}

impl SimItem {
    fn with_fixed(mut self, per_day: &str) -> Self {
        self.fixed_per_day = per_day.parse().unwrap_or(Decimal::ZERO);
        self
    }
}

/// Id of the `index`-th account of [`rackspace_fleet`].
pub fn fleet_account_id(index: usize) -> String {
    format!("030-{index:05}")
}

/// `n` Rackspace accounts (USD, `030-00000`, `030-00001`, ...) for tests and benchmarks at
/// scale: about $1,000 a day each, so every poll a second apart sees a new period-to-date
/// value (to the cent), and no incidents: alerts come from injected adjustments only.
pub fn rackspace_fleet(n: usize) -> Vec<SimAccount> {
    (0..n)
        .map(|i| SimAccount {
            api: Api::Rackspace,
            id: fleet_account_id(i),
            name: format!("Fleet account {i}"),
            currency: "USD".into(),
            cycle_day: 1,
            items: vec![
                // 7,000 instance-hours a day at $0.12 = $840/day.
                item("CLOUD_SERVERS", "UPTIME", "HRS", 7_000, 0.0, "0.12"),
                item("CLOUD_FILES", "STORAGE", "GB", 1_600, 0.0, "0.10"),
            ],
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: steady_traffic("requests", 1_000.0),
            extra: BTreeMap::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(c: &[SimCharge]) -> Decimal {
        c.iter().map(|x| x.amount).sum()
    }

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
        assert_eq!(total(&c1), Decimal::from(26 * 29) + Decimal::from(13));
        assert_eq!(total(&c2), Decimal::from(13));
        let (closed, final_charges) = acct.last_closed(early).unwrap();
        assert_eq!(closed, p1);
        assert_eq!(total(&final_charges), Decimal::from(26 * 30));
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
        let servers =
            |c: &[SimCharge]| c.iter().find(|x| x.code == "CLOUD_SERVERS").unwrap().amount;
        assert_eq!(servers(&before), Decimal::from(52 * 9));
        assert_eq!(servers(&after), Decimal::from(52 * 13 + 600));
    }

    #[test]
    fn usage_follows_traffic_with_a_daily_cycle() {
        let acct = &demo_world()[0];
        let period = acct
            .period("2026-11-05T00:00:00Z".parse().unwrap())
            .unwrap();
        let day = |d: &str| {
            let from: Timestamp = format!("2026-11-{d}T00:00:00Z").parse().unwrap();
            acct.traffic_between(period, from, from + SignedDuration::from_hours(24))
        };
        // A whole day of a sine cycle averages to the base rate.
        assert!((day("05") - 240_000.0).abs() < 1.0, "{}", day("05"));
        let noon: Timestamp = "2026-11-05T12:00:00Z".parse().unwrap();
        let night: Timestamp = "2026-11-05T00:00:00Z".parse().unwrap();
        assert!(
            acct.traffic.rate_per_hour(noon, 4.5) > 1.4 * acct.traffic.rate_per_hour(night, 4.0)
        );
        let bw = |at: &str| {
            let (_, c) = acct.charges(at.parse().unwrap()).unwrap();
            c.iter().find(|x| x.code == "RCDN").unwrap().amount
        };
        let daily = bw("2026-11-06T00:00:00Z") - bw("2026-11-05T00:00:00Z");
        assert!(
            (daily - Decimal::from(18)).abs() < Decimal::new(5, 2),
            "$18/day of egress: {daily}"
        );
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
