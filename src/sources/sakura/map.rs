//! SAKURA bills → observations. Months are calendar months in JST; the current month is
//! period-to-date with data through the end of yesterday (JST), closed months are period
//! totals. Amounts are integer yen; the currency is always JPY.
//!
//! Series (labels besides `currency` on money series):
//! - `SPEND_PTD` / `SPEND_TOTAL`: Σ bill `Amount` of the month, tax included.
//! - `ITEM_SPEND_PTD` / `ITEM_SPEND_TOTAL` per contract, labels `item` (`<product> (<contract>)`),
//!   `contract`, `service_class`, `tax`:
//!   with the CSV statement: the CSV price, `tax="excluded"`, plus one `item="消費税"` line with
//!   the statement's tax, `tax="only"`; without it: the detail `Amount`, `tax="included"`.
//!   Either way the items add up to the bill (up to the API's own tax rounding).
//! - `USAGE_PTD` / `USAGE_TOTAL` per contract from the detail `Usage`, labels `item`,
//!   `contract`, `service_class`, `unit` (`seconds` or `count`, see [`usage_unit`]).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, ToSpan};
use rust_decimal::Decimal;

use super::wire::{AuthStatus, Bill, BillDetail, StatementRow};
use crate::model::series::{
    ITEM_SPEND_PTD, ITEM_SPEND_TOTAL, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD,
    SPEND_TOTAL, USAGE_PTD, USAGE_TOTAL,
};
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit};
use crate::sources::http::{PollError, PollErrorKind};

/// SAKURA bills in yen only.
pub const CURRENCY: &str = "JPY";

/// **Uncertain**: how a bill's `Date` maps to its month of use. The manual's list, fetched
/// on 2016-06-01, already holds an unpaid bill dated 2016-06-10 payable by 06-30, while the
/// confirmed amount of a month is created on the 1st of the next month: so a bill is dated in
/// the month *after* its usage. Used only when the CSV's month-of-use column is not available.
pub const USAGE_MONTHS_BEFORE_BILL_DATE: i32 = 1;

/// **Uncertain**: the unit of a detail's `Usage` ("time [sec] and amount of usage"). Without a
/// `FormattedUsage` (the manual's example has none; its values, e.g. 2592000 = 30 days, are
/// seconds) the usage is seconds; with one, it is seconds when that display form is a time
/// and a count otherwise (GB, pieces …).
pub const DEFAULT_USAGE_UNIT: &str = "seconds";
const COUNT_UNIT: &str = "count";
const TIME_WORDS: [&str; 8] = ["秒", "分", "時間", "日", "sec", "min", "hour", "day"];

/// The item label of the statement's consumption tax line.
pub const TAX_ITEM: &str = "消費税";

/// Asia/Tokyo from the tz database, or a fixed +09:00 (Japan has no DST).
pub fn tokyo() -> TimeZone {
    static TZ: LazyLock<TimeZone> = LazyLock::new(|| {
        TimeZone::get("Asia/Tokyo").unwrap_or_else(|_| TimeZone::fixed(Offset::constant(9)))
    });
    TZ.clone()
}

/// A calendar month in JST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageMonth {
    pub year: i16,
    pub month: i8,
}

impl std::fmt::Display for UsageMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn bad_time(what: impl std::fmt::Display) -> PollError {
    PollError::malformed(format!("date computation failed: {what}"))
}

impl UsageMonth {
    pub fn new(year: i16, month: i8) -> Result<Self, PollError> {
        Date::new(year, month, 1).map_err(bad_time)?;
        Ok(UsageMonth { year, month })
    }

    /// The JST month containing `at`.
    pub fn containing(at: Timestamp) -> Self {
        let date = at.to_zoned(tokyo()).date();
        UsageMonth {
            year: date.year(),
            month: date.month(),
        }
    }

    /// `n` months later (earlier when negative).
    pub fn plus(self, n: i32) -> Result<Self, PollError> {
        let d = Date::new(self.year, self.month, 1)
            .and_then(|d| d.checked_add(n.months()))
            .map_err(bad_time)?;
        Ok(UsageMonth {
            year: d.year(),
            month: d.month(),
        })
    }

    /// `[1st 00:00 JST, next 1st 00:00 JST)`.
    pub fn period(self) -> Result<Period, PollError> {
        let start = Date::new(self.year, self.month, 1).map_err(bad_time)?;
        let end = start.checked_add(1.month()).map_err(bad_time)?;
        let at = |d: Date| d.to_zoned(tokyo()).map(|z| z.timestamp()).map_err(bad_time);
        Ok(Period {
            start: at(start)?,
            end: at(end)?,
        })
    }

    /// The CSV's month of use: `2015/09` (also `2015/9`, `2015-09`).
    pub fn parse(text: &str) -> Result<Self, PollError> {
        let bad = || PollError::malformed(format!("invalid month of use {text:?}"));
        let (y, m) = text.trim().split_once(['/', '-']).ok_or_else(bad)?;
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(y, 4) || !digits(m, 2) {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        UsageMonth::new(year, month).map_err(|_| bad())
    }

    /// The usage month of a bill by its `Date` (see [`USAGE_MONTHS_BEFORE_BILL_DATE`]).
    pub fn of_bill_date(date: &str) -> Result<Self, PollError> {
        let at: Timestamp = date
            .trim()
            .parse()
            .map_err(|_| PollError::malformed(format!("invalid bill Date {date:?}")))?;
        UsageMonth::containing(at).plus(-USAGE_MONTHS_BEFORE_BILL_DATE)
    }

    /// The month a bill for this usage month is dated in.
    pub fn bill_date_month(self) -> Result<Self, PollError> {
        self.plus(USAGE_MONTHS_BEFORE_BILL_DATE)
    }
}

/// 00:00 JST of the day containing `at`: current-month data describes the days before it.
pub fn start_of_day(at: Timestamp) -> Result<Timestamp, PollError> {
    at.to_zoned(tokyo())
        .start_of_day()
        .map(|z| z.timestamp())
        .map_err(bad_time)
}

/// The months one poll reads: `months` closed months and the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub current: UsageMonth,
    pub oldest: UsageMonth,
    /// What current-month data describes: the start of today in JST.
    pub as_of: Timestamp,
}

impl Window {
    pub fn new(now: Timestamp, closed_months: u32) -> Result<Self, PollError> {
        let current = UsageMonth::containing(now);
        let back = i32::try_from(closed_months).map_err(bad_time)?;
        Ok(Window {
            current,
            oldest: current.plus(-back)?,
            as_of: start_of_day(now)?,
        })
    }

    pub fn contains(&self, m: UsageMonth) -> bool {
        self.oldest <= m && m <= self.current
    }

    /// The years the window's bills are dated in, newest first (one bill list per year).
    pub fn bill_years(&self) -> Result<Vec<i16>, PollError> {
        let first = self.oldest.bill_date_month()?.year;
        let last = self.current.bill_date_month()?.year;
        Ok((first..=last).rev().collect())
    }
}

/// The account and member a key belongs to, from auth-status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `Account.ID` as sent (leading zeros kept): the `account` of every series.
    pub account_id: String,
    /// `Member.Code`: the `:membercd` of bill details.
    pub member_code: String,
}

/// Checks auth-status: the key must carry the "Billing Information" permission (`bill` in
/// `ExternalPermission`), else every billing call would fail.
pub fn identity(status: &AuthStatus) -> Result<Identity, PollError> {
    if status.is_ok == Some(false) {
        return Err(PollError::malformed("auth-status answered is_ok: false"));
    }
    let permission = status.external_permission.as_deref().unwrap_or("");
    let has_bill = permission
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|p| p == "bill");
    if !has_bill {
        return Err(PollError::new(
            PollErrorKind::Auth,
            format!(
                "the API key lacks the \"Billing Information\" permission (ExternalPermission is {permission:?}, \
                 it must contain \"bill\"): enable it for the key in the control panel"
            ),
        ));
    }
    let member_code = status.member.code.trim();
    if member_code.is_empty() {
        return Err(PollError::malformed("auth-status has an empty Member.Code"));
    }
    Ok(Identity {
        account_id: status.account.id.as_str().to_string(),
        member_code: member_code.to_string(),
    })
}

/// One bill with what was fetched for it.
#[derive(Debug, Clone)]
pub struct BillData {
    pub bill: Bill,
    pub details: Vec<BillDetail>,
    /// The CSV statement's rows, when fetched.
    pub statement: Option<Vec<StatementRow>>,
}

impl BillData {
    /// The CSV's month of use when it has rows that agree; otherwise the `Date` rule.
    pub fn usage_month(&self) -> Result<UsageMonth, PollError> {
        let by_date = UsageMonth::of_bill_date(&self.bill.date)?;
        let Some(rows) = self.statement.as_deref().filter(|r| !r.is_empty()) else {
            return Ok(by_date);
        };
        let mut months = rows
            .iter()
            .map(|r| UsageMonth::parse(&r.month_of_use))
            .collect::<Result<Vec<_>, _>>()?;
        months.sort();
        months.dedup();
        match months.as_slice() {
            [one] => {
                if *one != by_date {
                    tracing::debug!(bill = %self.bill.bill_id, csv = %one, by_date = %by_date,
                        "The CSV's month of use differs from the bill-date rule; using the CSV.");
                }
                Ok(*one)
            }
            _ => {
                // A statement spanning months: the bill as a whole belongs to its date's month.
                tracing::warn!(bill = %self.bill.bill_id, months = ?months,
                    "CSV statement spans several months of use; using the bill-date rule.");
                Ok(by_date)
            }
        }
    }
}

/// The `unit` of a detail's `Usage` (see [`DEFAULT_USAGE_UNIT`]).
pub fn usage_unit(detail: &BillDetail) -> &'static str {
    match detail.formatted_usage.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_USAGE_UNIT,
        Some(f) if TIME_WORDS.iter().any(|w| f.contains(w)) => DEFAULT_USAGE_UNIT,
        Some(_) => COUNT_UNIT,
    }
}

fn add(slot: &mut Decimal, value: Decimal, what: &str) -> Result<(), PollError> {
    *slot = slot
        .checked_add(value)
        .ok_or_else(|| PollError::malformed(format!("{what} overflow")))?;
    Ok(())
}

/// Maps every bill fetched in one poll. Bills are grouped by usage month; months outside the
/// window are skipped. A month without a bill yields nothing (no data yet is not zero spend).
/// Whether a current month whose lines do not add up to its bill is re-read (see `map_month`).
pub const CURRENT_MONTH_LINES_MUST_MATCH: bool = true;

pub fn map_bills(
    source: &str,
    account: &str,
    window: &Window,
    bills: &[BillData],
) -> Result<Vec<Observation>, PollError> {
    let mut by_month: BTreeMap<UsageMonth, Vec<&BillData>> = BTreeMap::new();
    for b in bills {
        let month = b.usage_month()?;
        if window.contains(month) {
            by_month.entry(month).or_default().push(b);
        }
    }
    let mut out = Vec::new();
    for (month, bills) in by_month {
        let state = if month == window.current {
            MonthState::Current {
                as_of: window.as_of,
            }
        } else {
            MonthState::Closed
        };
        out.extend(map_month(source, account, month, state, &bills)?);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthState {
    /// Period-to-date, describing `as_of` (today 00:00 JST).
    Current { as_of: Timestamp },
    /// A closed month: totals at the period end.
    Closed,
}

/// One usage month's bills → observations.
pub fn map_month(
    source: &str,
    account: &str,
    month: UsageMonth,
    state: MonthState,
    bills: &[&BillData],
) -> Result<Vec<Observation>, PollError> {
    let period = month.period()?;
    let currency = Currency::new(CURRENCY).map_err(|e| PollError::malformed(e.to_string()))?;
    let (at, kind, spend, item_spend, usage_metric) = match state {
        MonthState::Current { as_of } => (
            as_of,
            ObservationKind::PeriodToDate,
            SPEND_PTD,
            ITEM_SPEND_PTD,
            USAGE_PTD,
        ),
        MonthState::Closed => (
            period.end,
            ObservationKind::PeriodTotal,
            SPEND_TOTAL,
            ITEM_SPEND_TOTAL,
            USAGE_TOTAL,
        ),
    };

    let mut total = Decimal::ZERO;
    for b in bills {
        add(&mut total, b.bill.amount.0, "bill amounts")?;
    }

    // Product names from the statements, by (resource, product) = (contract, service class).
    let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
    for row in bills.iter().flat_map(|b| b.statement.iter().flatten()) {
        if !row.product_name.is_empty() {
            names.insert(
                (row.resource_id.clone(), row.product_id.clone()),
                row.product_name.clone(),
            );
        }
    }
    let mut descriptions: BTreeMap<(String, String), String> = BTreeMap::new();
    for d in bills.iter().flat_map(|b| b.details.iter()) {
        if let Some(desc) = d
            .description
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            descriptions.insert(
                (d.contract_id.0.clone(), d.service_class_id.0.clone()),
                desc.to_string(),
            );
        }
    }
    let item_label = |contract: &str, class: &str| {
        let key = (contract.to_string(), class.to_string());
        let name = names
            .get(&key)
            .or_else(|| descriptions.get(&key))
            .cloned()
            .unwrap_or_else(|| format!("service class {class}"));
        format!("{name} ({contract})")
    };

    // Item spend: from the statements when every bill of the month has one with rows (price
    // and tax apart), else from the details (tax included).
    let from_statement = bills
        .iter()
        .all(|b| b.statement.as_ref().is_some_and(|r| !r.is_empty()));
    let mut items: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut tax = Decimal::ZERO;
    if from_statement {
        for row in bills.iter().flat_map(|b| b.statement.iter().flatten()) {
            let slot = items
                .entry((row.resource_id.clone(), row.product_id.clone()))
                .or_default();
            add(slot, row.price, "statement prices")?;
            add(&mut tax, row.tax, "statement taxes")?;
        }
    } else {
        for d in bills.iter().flat_map(|b| b.details.iter()) {
            let slot = items
                .entry((d.contract_id.0.clone(), d.service_class_id.0.clone()))
                .or_default();
            add(slot, d.amount.0, "detail amounts")?;
        }
    }

    // The current month's lines must add up to its bill (within a yen of tax rounding per
    // line): a mismatch means the data was updated between the bill list and the details of
    // one poll (it changes at midnight JST), so read it again rather than store a mix of days.
    // Closed months are not checked: the manual's own examples do not add up, and whether
    // the live API's always do is uncertain (hence one constant).
    if CURRENT_MONTH_LINES_MUST_MATCH
        && matches!(state, MonthState::Current { .. })
        && !items.is_empty()
    {
        let mut lines = tax;
        for amount in items.values() {
            add(&mut lines, *amount, "line items")?;
        }
        let tolerance = Decimal::from(items.len() + 1);
        // Amounts near Decimal's limit cannot differ by a representable amount: a mismatch.
        let off = lines.checked_sub(total).is_none_or(|d| d.abs() > tolerance);
        if off {
            return Err(PollError::new(
                PollErrorKind::Inconsistent,
                format!(
                    "{month:?}: line items add up to ¥{lines} but the bills say ¥{total}; the data changed while it was read"
                ),
            ));
        }
    }

    let mut usage: BTreeMap<(String, String, &'static str), Decimal> = BTreeMap::new();
    for d in bills.iter().flat_map(|b| b.details.iter()) {
        if let Some(u) = d.usage {
            let slot = usage
                .entry((
                    d.contract_id.0.clone(),
                    d.service_class_id.0.clone(),
                    usage_unit(d),
                ))
                .or_default();
            add(slot, u.0, "usage")?;
        }
    }

    let money = Unit::Money(currency.clone());
    let observe = |key: SeriesKey, value: Decimal, kind: ObservationKind, unit: Unit| Observation {
        key,
        at,
        period: Some(period),
        value,
        kind,
        unit,
    };
    let mut out = Vec::with_capacity(2 + items.len() + usage.len());
    out.push(observe(
        SeriesKey::new(source, account, spend).with_label(LABEL_CURRENCY, currency.as_str()),
        total,
        kind,
        money.clone(),
    ));
    let tax_label = if from_statement {
        "excluded"
    } else {
        "included"
    };
    for ((contract, class), amount) in items {
        out.push(observe(
            SeriesKey::new(source, account, item_spend)
                .with_label(LABEL_CURRENCY, currency.as_str())
                .with_label(LABEL_ITEM, &item_label(&contract, &class))
                .with_label("contract", &contract)
                .with_label("service_class", &class)
                .with_label("tax", tax_label),
            amount,
            kind,
            money.clone(),
        ));
    }
    if from_statement {
        out.push(observe(
            SeriesKey::new(source, account, item_spend)
                .with_label(LABEL_CURRENCY, currency.as_str())
                .with_label(LABEL_ITEM, TAX_ITEM)
                .with_label("tax", "only"),
            tax,
            kind,
            money.clone(),
        ));
    }
    for ((contract, class, unit), quantity) in usage {
        out.push(observe(
            SeriesKey::new(source, account, usage_metric)
                .with_label(LABEL_ITEM, &item_label(&contract, &class))
                .with_label("contract", &contract)
                .with_label("service_class", &class)
                .with_label(LABEL_UNIT, unit),
            quantity,
            ObservationKind::Usage,
            Unit::Quantity(unit.to_string()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::sakura::wire::{
        AuthStatus, BillDetailsResponse, BillsResponse, parse_statement_csv,
    };

    /// The manual's auth-status response, verbatim (braces restored).
    pub const MANUAL_AUTH_STATUS: &str = r#"{
     "is_ok": true,
     "Member": {
             "Errors": null,
             "Code": "xxx000001",
             "Class": "sakura"
     },
     "User": null,
     "AuthMethod": "apikey",
     "AuthClass": "account",
     "Permission": "create",
     "ExternalPermission": "bill",
     "RESTFilter": null,
     "IsAPIKey": true,
     "OperationPenalty": "none",
     "Account": {
             "Code": "billTest",
             "Name": "APIテスト用",
             "Class": "account",
             "ID": "000000526782"
     }
}"#;

    /// The manual's bill list, verbatim (braces restored; `Count` says 12, two are shown).
    pub const MANUAL_BILLS: &str = r#"{
     "is_ok": true,
     "ResponsedAt": "2016-06-01T13:33:13+09:00",
     "Count": 12,
     "Bills": [{
                     "PaymentClassID": 200,
                     "PayLimit": "2016-06-30T00:00:00+09:00",
                     "Paid": false,
                     "MemberID": "xxx000001",
                     "Date": "2016-06-10T00:00:00+09:00",
                     "BillID": 13481639,
                     "Amount": 4330
             }, {
                     "PaymentClassID": 200,
                     "PayLimit": "2016-05-31T00:00:00+09:00",
                     "Paid": true,
                     "MemberID": "xxx000001",
                     "Date": "2016-05-10T00:00:00+09:00",
                     "BillID": 13327977,
                     "Amount": 4330
     }]
}"#;

    /// The manual's bill details, verbatim (braces restored).
    pub const MANUAL_DETAILS: &str = r#"{
     "is_ok": true,
     "ResponsedAt": "2016-06-01T13:39:54+09:00",
     "Count": 3,
     "BillDetails": [{
             "Usage": 2592000,
             "ServiceClassID": 50000,
             "Index": 1,
             "ContractID": "112700526782",
             "Amount": 0
     }, {
             "Usage": 2592000,
             "ServiceClassID": 50118,
             "Index": 2,
             "ContractID": "112700654736",
             "Amount": 108
     }, {
             "Usage": 2474113,
             "ServiceClassID": 50295,
             "Index": 3,
             "ContractID": "112700675125",
             "Amount": 540
     }]
}"#;

    const CSV_HEADER: &str = "\"連番\",\"請求書番号\",\"利用年月\",\"支払状況\",\"会員ID\",\"アカウントコード\",\"リソースID\",\"商品ID\",\"商品名\",\"ゾーンID\",\"ゾーン名\",\"日数\",\"時間\",\"商品価格(税抜)\",\"消費税\",\"リソース名\"";
    /// The manual's CSV line, verbatim.
    const MANUAL_CSV_LINE: &str = r#""2","000000000","2015/09","入金済み","xxx000001","payTest","112700654736","50118","ISOイメージアップロード/5GB","is1b","石狩第2ゾーン","30","0","100","8","名称未設定 ISOイメージ 14ef10fedac""#;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn bills() -> Vec<Bill> {
        serde_json::from_str::<BillsResponse>(MANUAL_BILLS)
            .unwrap()
            .bills
    }

    fn details() -> Vec<BillDetail> {
        serde_json::from_str::<BillDetailsResponse>(MANUAL_DETAILS)
            .unwrap()
            .bill_details
    }

    fn find<'a>(obs: &'a [Observation], metric: &str, label: (&str, &str)) -> &'a Observation {
        obs.iter()
            .find(|o| {
                o.key.metric == metric
                    && o.key.labels.get(label.0).map(String::as_str) == Some(label.1)
            })
            .unwrap_or_else(|| panic!("no {metric} with {label:?} in {obs:#?}"))
    }

    #[test]
    fn manual_auth_status_field_by_field() {
        let status: AuthStatus = serde_json::from_str(MANUAL_AUTH_STATUS).unwrap();
        assert_eq!(status.is_ok, Some(true));
        assert_eq!(status.account.id.as_str(), "000000526782");
        assert_eq!(status.account.code.as_deref(), Some("billTest"));
        assert_eq!(status.account.name.as_deref(), Some("APIテスト用"));
        assert_eq!(status.account.class.as_deref(), Some("account"));
        assert_eq!(status.member.code, "xxx000001");
        assert_eq!(status.member.class.as_deref(), Some("sakura"));
        assert_eq!(status.external_permission.as_deref(), Some("bill"));
        assert_eq!(status.permission.as_deref(), Some("create"));
        assert_eq!(status.auth_method.as_deref(), Some("apikey"));
        assert_eq!(status.is_api_key, Some(true));
        assert_eq!(
            identity(&status).unwrap(),
            Identity {
                account_id: "000000526782".into(),
                member_code: "xxx000001".into()
            }
        );
    }

    #[test]
    fn permission_must_include_bill() {
        for (perm, ok) in [
            ("bill", true),
            ("eventlog+bill", true),
            ("bill+eventlog", true),
            ("eventlog", false),
            ("", false),
            ("billing", false),
        ] {
            let text = MANUAL_AUTH_STATUS.replace(
                "\"ExternalPermission\": \"bill\"",
                &format!("\"ExternalPermission\": \"{perm}\""),
            );
            let status: AuthStatus = serde_json::from_str(&text).unwrap();
            let result = identity(&status);
            assert_eq!(result.is_ok(), ok, "{perm:?}: {result:?}");
            if let Err(e) = result {
                assert_eq!(e.kind, PollErrorKind::Auth);
                assert!(e.message.contains("Billing Information"), "{e}");
            }
        }
        let missing = MANUAL_AUTH_STATUS.replace("\"ExternalPermission\": \"bill\",", "");
        let status: AuthStatus = serde_json::from_str(&missing).unwrap();
        assert_eq!(identity(&status).unwrap_err().kind, PollErrorKind::Auth);
    }

    #[test]
    fn manual_bills_field_by_field() {
        let response: BillsResponse = serde_json::from_str(MANUAL_BILLS).unwrap();
        assert_eq!(response.is_ok, Some(true));
        assert_eq!(
            response.responsed_at.as_deref(),
            Some("2016-06-01T13:33:13+09:00")
        );
        assert_eq!(response.count, Some(12));
        assert_eq!(response.total, None);
        let b = &response.bills[0];
        assert_eq!(b.payment_class_id.as_ref().unwrap().as_str(), "200");
        assert_eq!(b.pay_limit.as_deref(), Some("2016-06-30T00:00:00+09:00"));
        assert_eq!(b.paid, Some(false));
        assert_eq!(b.member_id.as_deref(), Some("xxx000001"));
        assert_eq!(b.date, "2016-06-10T00:00:00+09:00");
        assert_eq!(b.bill_id.as_str(), "13481639");
        assert_eq!(b.amount.0, Decimal::from(4330));
        assert_eq!(response.bills[1].bill_id.as_str(), "13327977");
        assert_eq!(response.bills[1].paid, Some(true));
    }

    #[test]
    fn manual_details_field_by_field() {
        let d = details();
        assert_eq!(d.len(), 3);
        let expect = [
            ("2592000", "50000", 1, "112700526782", 0),
            ("2592000", "50118", 2, "112700654736", 108),
            ("2474113", "50295", 3, "112700675125", 540),
        ];
        for (row, (usage, class, index, contract, amount)) in d.iter().zip(expect) {
            assert_eq!(row.usage.unwrap().0.to_string(), usage);
            assert_eq!(row.service_class_id.as_str(), class);
            assert_eq!(row.index, Some(index));
            assert_eq!(row.contract_id.as_str(), contract);
            assert_eq!(row.amount.0, Decimal::from(amount));
            assert_eq!(usage_unit(row), "seconds");
        }
    }

    #[test]
    fn manual_example_maps_to_closed_months() {
        // As of the manual's ResponsedAt: June 2016 has no bill yet, May and April are closed.
        let window = Window::new(ts("2016-06-01T13:33:13+09:00"), 3).unwrap();
        assert_eq!(
            window.current,
            UsageMonth {
                year: 2016,
                month: 6
            }
        );
        assert_eq!(window.as_of, ts("2016-06-01T00:00:00+09:00"));
        let data: Vec<BillData> = bills()
            .into_iter()
            .enumerate()
            .map(|(i, bill)| BillData {
                bill,
                details: if i == 0 { details() } else { Vec::new() },
                statement: None,
            })
            .collect();
        let obs = map_bills("sakura", "000000526782", &window, &data).unwrap();

        let totals: Vec<&Observation> =
            obs.iter().filter(|o| o.key.metric == SPEND_TOTAL).collect();
        assert_eq!(totals.len(), 2);
        assert!(
            obs.iter().all(|o| o.key.metric != SPEND_PTD),
            "no June bill yet: nothing, not zero"
        );
        // Bill dated 2016-05-10 → April; ordered by month.
        let april = totals[0];
        assert_eq!(april.value, Decimal::from(4330));
        assert_eq!(april.kind, ObservationKind::PeriodTotal);
        assert_eq!(april.unit, Unit::Money(Currency::new("JPY").unwrap()));
        assert_eq!(april.key.account, "000000526782");
        assert_eq!(april.key.source, "sakura");
        assert_eq!(april.key.labels["currency"], "JPY");
        assert_eq!(
            april.period,
            Some(Period {
                start: ts("2016-04-01T00:00:00+09:00"),
                end: ts("2016-05-01T00:00:00+09:00")
            })
        );
        assert_eq!(
            april.at,
            ts("2016-05-01T00:00:00+09:00"),
            "a closed month is dated at its end"
        );
        let may = totals[1];
        assert_eq!(may.at, ts("2016-06-01T00:00:00+09:00"));

        // May's details: tax-included item spend and usage in seconds, per contract.
        let items: Vec<&Observation> = obs
            .iter()
            .filter(|o| o.key.metric == ITEM_SPEND_TOTAL)
            .collect();
        assert_eq!(items.len(), 3);
        let iso = find(&obs, ITEM_SPEND_TOTAL, ("contract", "112700654736"));
        assert_eq!(iso.value, Decimal::from(108));
        assert_eq!(iso.key.labels["tax"], "included");
        assert_eq!(iso.key.labels["service_class"], "50118");
        assert_eq!(iso.key.labels["item"], "service class 50118 (112700654736)");
        assert_eq!(iso.period, may.period);
        assert_eq!(
            find(&obs, ITEM_SPEND_TOTAL, ("contract", "112700526782")).value,
            Decimal::ZERO
        );
        let server = find(&obs, USAGE_TOTAL, ("contract", "112700675125"));
        assert_eq!(server.value, Decimal::from(2_474_113));
        assert_eq!(server.kind, ObservationKind::Usage);
        assert_eq!(server.unit, Unit::Quantity("seconds".into()));
        assert_eq!(server.key.labels["unit"], "seconds");
        assert_eq!(server.key.labels["service_class"], "50295");
        assert!(!server.key.labels.contains_key("currency"));
        assert_eq!(
            obs.iter().filter(|o| o.key.metric == USAGE_TOTAL).count(),
            3
        );
    }

    #[test]
    fn manual_csv_sets_the_month_and_splits_tax() {
        let rows = parse_statement_csv(&format!("{CSV_HEADER}\n{MANUAL_CSV_LINE}")).unwrap();
        let bill = BillData {
            bill: bills().remove(0),
            details: details(),
            statement: Some(rows),
        };
        assert_eq!(
            bill.usage_month().unwrap(),
            UsageMonth {
                year: 2015,
                month: 9
            }
        );
        let window = Window::new(ts("2015-10-05T08:00:00+09:00"), 1).unwrap();
        let obs = map_bills("s", "a", &window, &[bill]).unwrap();
        let total = obs.iter().find(|o| o.key.metric == SPEND_TOTAL).unwrap();
        assert_eq!(total.value, Decimal::from(4330));
        assert_eq!(total.at, ts("2015-10-01T00:00:00+09:00"));
        let iso = find(&obs, ITEM_SPEND_TOTAL, ("contract", "112700654736"));
        assert_eq!(iso.value, Decimal::from(100), "price without tax");
        assert_eq!(iso.key.labels["tax"], "excluded");
        assert_eq!(
            iso.key.labels["item"],
            "ISOイメージアップロード/5GB (112700654736)"
        );
        let tax = find(&obs, ITEM_SPEND_TOTAL, ("item", TAX_ITEM));
        assert_eq!(tax.value, Decimal::from(8));
        assert_eq!(tax.key.labels["tax"], "only");
        // Only the statement's lines are item spend; usage still comes from all details,
        // named from the statement where it has the line.
        assert_eq!(
            obs.iter()
                .filter(|o| o.key.metric == ITEM_SPEND_TOTAL)
                .count(),
            2
        );
        let usage = find(&obs, USAGE_TOTAL, ("contract", "112700654736"));
        assert_eq!(
            usage.key.labels["item"],
            "ISOイメージアップロード/5GB (112700654736)"
        );
        assert_eq!(usage.value, Decimal::from(2_592_000));
    }

    #[test]
    fn current_month_is_period_to_date_as_of_today_jst() {
        // 2026-07-15 01:00 JST is still 07-14 in UTC: the JST day decides.
        let now = ts("2026-07-14T16:00:00Z");
        let window = Window::new(now, 2).unwrap();
        assert_eq!(
            window.current,
            UsageMonth {
                year: 2026,
                month: 7
            }
        );
        assert_eq!(
            window.oldest,
            UsageMonth {
                year: 2026,
                month: 5
            }
        );
        assert_eq!(window.as_of, ts("2026-07-15T00:00:00+09:00"));
        let bill: Bill = serde_json::from_str(
            r#"{"BillID":"1","Amount":"1200","Date":"2026-08-10T00:00:00+09:00"}"#,
        )
        .unwrap();
        let data = BillData {
            bill,
            details: Vec::new(),
            statement: None,
        };
        let obs = map_bills("s", "a", &window, &[data]).unwrap();
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].key.metric, SPEND_PTD);
        assert_eq!(obs[0].kind, ObservationKind::PeriodToDate);
        assert_eq!(obs[0].at, ts("2026-07-15T00:00:00+09:00"));
        assert_eq!(
            obs[0].period.unwrap(),
            Period {
                start: ts("2026-07-01T00:00:00+09:00"),
                end: ts("2026-08-01T00:00:00+09:00")
            }
        );
    }

    #[test]
    fn window_years_and_months() {
        let w = Window::new(ts("2026-01-20T00:00:00+09:00"), 3).unwrap();
        assert_eq!(
            w.oldest,
            UsageMonth {
                year: 2025,
                month: 10
            }
        );
        // Bills for Oct 2025 … Jan 2026 are dated Nov 2025 … Feb 2026.
        assert_eq!(w.bill_years().unwrap(), vec![2026, 2025]);
        let w = Window::new(ts("2026-12-20T00:00:00+09:00"), 0).unwrap();
        assert_eq!(
            w.bill_years().unwrap(),
            vec![2027],
            "December is billed in January"
        );
        let w = Window::new(ts("2026-06-20T00:00:00+09:00"), 14).unwrap();
        assert_eq!(w.bill_years().unwrap(), vec![2026, 2025]);
        assert_eq!(
            UsageMonth::parse("2015/9").unwrap(),
            UsageMonth {
                year: 2015,
                month: 9
            }
        );
        assert_eq!(
            UsageMonth::parse("2015-09").unwrap(),
            UsageMonth {
                year: 2015,
                month: 9
            }
        );
        for bad in [
            "",
            "2015",
            "2015/13",
            "2015/00",
            "15/09/01",
            "２０１５/09",
            "2015/+9",
        ] {
            assert!(UsageMonth::parse(bad).is_err(), "{bad}");
        }
        assert!(UsageMonth::of_bill_date("June").is_err());
        assert_eq!(
            UsageMonth::of_bill_date("2016-01-10T00:00:00+09:00").unwrap(),
            UsageMonth {
                year: 2015,
                month: 12
            }
        );
        // The JST date decides, not the UTC one.
        assert_eq!(
            UsageMonth::of_bill_date("2016-05-31T20:00:00Z").unwrap(),
            UsageMonth {
                year: 2016,
                month: 5
            }
        );
    }

    #[test]
    fn several_bills_of_one_month_add_up() {
        let window = Window::new(ts("2016-07-03T00:00:00+09:00"), 1).unwrap();
        let data: Vec<BillData> = bills()
            .into_iter()
            .map(|mut bill| {
                bill.date = "2016-07-10T00:00:00+09:00".into();
                BillData {
                    bill,
                    details: details(),
                    statement: None,
                }
            })
            .collect();
        let obs = map_bills("s", "a", &window, &data).unwrap();
        let june = obs.iter().find(|o| o.key.metric == SPEND_TOTAL).unwrap();
        assert_eq!(june.value, Decimal::from(8660));
        assert_eq!(
            find(&obs, ITEM_SPEND_TOTAL, ("contract", "112700675125")).value,
            Decimal::from(1080)
        );
    }

    #[test]
    fn usage_units() {
        let mut d = details().remove(0);
        for (formatted, unit) in [
            (None, "seconds"),
            (Some(""), "seconds"),
            (Some("720時間"), "seconds"),
            (Some("30日"), "seconds"),
            (Some("12GB"), "count"),
            (Some("3個"), "count"),
        ] {
            d.formatted_usage = formatted.map(str::to_string);
            assert_eq!(usage_unit(&d), unit, "{formatted:?}");
        }
    }

    /// Fuzz regressions (`fuzz/run.sh`, target `sakura_json`): the current month's
    /// lines-add-up check summed detail amounts with `Iterator::sum` and `+`, and subtracted
    /// the bill total with `-`, each of which panicked near `Decimal::MAX`. A sum that
    /// overflows is a malformed body; a difference that overflows is a mismatch.
    #[test]
    fn fuzz_current_month_check_overflows_are_errors() {
        let bill: crate::sources::sakura::wire::Bill = serde_json::from_slice(
            b"{\"BillID\": 1234567, \"Amount\": 1080, \"Date\": \"2026-06-01T00:00:00+09:00\"}",
        )
        .unwrap();
        let window = Window::new(ts("2026-05-28T00:00:00+09:00"), 12).unwrap();
        let cases: [(&[u8], PollErrorKind); 2] = [
            (
                b"{\"BillDetails\":[{\"ContractID\":1,\"ServiceClassID\":1,\"Amount\":\"79228162514264337593543950335\"},{\"ContractID\":2,\"ServiceClassID\":1,\"Amount\":\"79228162514264337593543950335\"}]}",
                PollErrorKind::Malformed,
            ),
            (
                b"{\"BillDetails\":[{\"ContractID\":1,\"ServiceClassID\":1,\"Amount\":\"-79228162514264337593543950335\"}]}",
                PollErrorKind::Inconsistent,
            ),
        ];
        for (body, kind) in cases {
            let details: BillDetailsResponse = serde_json::from_slice(body).unwrap();
            let data = [BillData {
                bill: bill.clone(),
                details: details.bill_details,
                statement: None,
            }];
            let err = map_bills("sakura", "1", &window, &data).unwrap_err();
            assert_eq!(err.kind, kind, "{err}");
        }
    }
}
