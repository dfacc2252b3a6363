//! SAKURA Cloud billing API (請求関連API) bodies as documented (`api-docs/REFERENCE.md` §2 and
//! the manual's examples). Unknown fields are ignored; the fields we use are typed. IDs arrive
//! as JSON numbers or strings depending on `X-Sakura-Bigint-As-Int` and on the field, so they
//! are decoded as either and kept as text (`"000000526782"` keeps its zeros).

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::model::parse_amount;
use crate::sources::amount::Amount;
use crate::sources::http::PollError;

/// An ID sent as a JSON number (`13481639`) or string (`"000000526782"`), kept as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IdString(pub String);

impl IdString {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = IdString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ID as a non-negative integer or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdString, E> {
                Ok(IdString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdString, E> {
                if v < 0 {
                    return Err(E::custom(format!("negative ID {v}")));
                }
                Ok(IdString(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdString, E> {
                let v = v.trim();
                if v.is_empty() {
                    return Err(E::custom("empty ID"));
                }
                Ok(IdString(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// A list that must be present but may be `null` (Go encodes an empty slice as `null`).
fn nullable_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `GET {root}/cloud/1.1/auth-status`: fields at the top level, no wrapper.
#[derive(Debug, Deserialize)]
pub struct AuthStatus {
    pub is_ok: Option<bool>,
    #[serde(rename = "Account")]
    pub account: AuthAccount,
    #[serde(rename = "Member")]
    pub member: AuthMember,
    /// `+`-separated permissions for other services, e.g. `bill` or `eventlog+bill`.
    #[serde(rename = "ExternalPermission")]
    pub external_permission: Option<String>,
    #[serde(rename = "Permission")]
    pub permission: Option<String>,
    #[serde(rename = "AuthMethod")]
    pub auth_method: Option<String>,
    #[serde(rename = "IsAPIKey")]
    pub is_api_key: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct AuthAccount {
    /// `:accountid` of `bill/by-contract`.
    #[serde(rename = "ID")]
    pub id: IdString,
    #[serde(rename = "Code")]
    pub code: Option<String>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Class")]
    pub class: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AuthMember {
    /// `:membercd` of `billdetail`.
    #[serde(rename = "Code")]
    pub code: String,
    #[serde(rename = "Class")]
    pub class: Option<String>,
}

/// `GET {billing}/bill/by-contract/{accountID}[/{year}[/{month}]]`.
#[derive(Debug, Deserialize)]
pub struct BillsResponse {
    pub is_ok: Option<bool>,
    #[serde(rename = "ResponsedAt")]
    pub responsed_at: Option<String>,
    #[serde(rename = "Count")]
    pub count: Option<u64>,
    /// iaas-api-go's envelope also has `Total` / `From`; the manual shows neither.
    #[serde(rename = "Total")]
    pub total: Option<u64>,
    #[serde(rename = "From")]
    pub from: Option<u64>,
    #[serde(rename = "Bills", deserialize_with = "nullable_list")]
    pub bills: Vec<Bill>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Bill {
    #[serde(rename = "BillID")]
    pub bill_id: IdString,
    /// Integer yen, tax included.
    #[serde(rename = "Amount")]
    pub amount: Amount,
    /// The billing date (ISO 8601, `+09:00`), not the usage month.
    #[serde(rename = "Date")]
    pub date: String,
    #[serde(rename = "MemberID")]
    pub member_id: Option<String>,
    #[serde(rename = "Paid")]
    pub paid: Option<bool>,
    #[serde(rename = "PayLimit")]
    pub pay_limit: Option<String>,
    #[serde(rename = "PaymentClassID")]
    pub payment_class_id: Option<IdString>,
}

/// `GET {billing}/billdetail/{memberCode}/{billID}`.
#[derive(Debug, Deserialize)]
pub struct BillDetailsResponse {
    pub is_ok: Option<bool>,
    #[serde(rename = "ResponsedAt")]
    pub responsed_at: Option<String>,
    #[serde(rename = "Count")]
    pub count: Option<u64>,
    #[serde(rename = "Total")]
    pub total: Option<u64>,
    #[serde(rename = "BillDetails", deserialize_with = "nullable_list")]
    pub bill_details: Vec<BillDetail>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BillDetail {
    /// The resource the line is for (the CSV's resource ID).
    #[serde(rename = "ContractID")]
    pub contract_id: IdString,
    /// Integer yen. The manual's example (108 for a 100 + 8 tax CSV line) shows tax included.
    #[serde(rename = "Amount")]
    pub amount: Amount,
    /// The product (the CSV's product ID).
    #[serde(rename = "ServiceClassID")]
    pub service_class_id: IdString,
    /// Seconds or a quantity; absent means "not reported", never zero.
    #[serde(rename = "Usage")]
    pub usage: Option<Amount>,
    #[serde(rename = "Index")]
    pub index: Option<i64>,
    #[serde(rename = "Description")]
    pub description: Option<String>,
    #[serde(rename = "ServiceClassPath")]
    pub service_class_path: Option<String>,
    /// Display form of `Usage` (e.g. `123時間`).
    #[serde(rename = "FormattedUsage")]
    pub formatted_usage: Option<String>,
    #[serde(rename = "ServiceUsagePath")]
    pub service_usage_path: Option<String>,
    #[serde(rename = "Zone")]
    pub zone: Option<String>,
    #[serde(rename = "ContractEndAt")]
    pub contract_end_at: Option<String>,
}

/// `GET {billing}/billdetail/{memberCode}/{billID}/csv`: JSON with the CSV text in `Body`.
#[derive(Debug, Deserialize)]
pub struct StatementCsvResponse {
    pub is_ok: Option<bool>,
    #[serde(rename = "ResponsedAt")]
    pub responsed_at: Option<String>,
    #[serde(rename = "Count")]
    pub count: Option<u64>,
    #[serde(rename = "Filename")]
    pub filename: Option<String>,
    #[serde(rename = "Body")]
    pub body: String,
}

/// iaas-api-go `APIErrorResponse`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ApiErrorBody {
    pub is_fatal: Option<bool>,
    pub serial: Option<String>,
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
}

impl ApiErrorBody {
    /// Parses an error document; `None` unless it carries an error code or message.
    pub fn parse(body: &[u8]) -> Option<ApiErrorBody> {
        let e: ApiErrorBody = serde_json::from_slice(body).ok()?;
        (e.error_code.is_some() || e.error_msg.is_some()).then_some(e)
    }

    /// One line: `unauthorized: error-unauthorized (status 401 Unauthorized, serial …)`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{}: {}",
            self.error_code.as_deref().unwrap_or("error"),
            self.error_msg.as_deref().unwrap_or("(no message)")
        );
        if let Some(status) = &self.status {
            text.push_str(&format!(" (status {status}"));
            if let Some(serial) = &self.serial {
                text.push_str(&format!(", serial {serial}"));
            }
            text.push(')');
        }
        text
    }
}

/// Columns of the CSV statement, in the manual's order.
pub const CSV_COLUMNS: usize = 16;

/// One line of the CSV statement (the manual's field list, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRow {
    pub seq: String,
    /// Billing statement No. (zero-padded text, e.g. `000000000`).
    pub bill_no: String,
    /// Month of use as written (`2015/09`).
    pub month_of_use: String,
    /// Unpaid / Paid / Pending, in Japanese (`入金済み`).
    pub payment_status: String,
    pub member_id: String,
    pub account_code: String,
    /// Equals the bill detail's `ContractID`.
    pub resource_id: String,
    /// Equals the bill detail's `ServiceClassID`.
    pub product_id: String,
    pub product_name: String,
    /// Blank for global resources.
    pub zone_id: String,
    pub zone_name: String,
    pub days: String,
    /// Remainder of the hours of use divided by 24.
    pub hours: String,
    /// Product price, tax excluded (integer yen).
    pub price: Decimal,
    /// Consumption tax (integer yen).
    pub tax: Decimal,
    pub resource_name: String,
}

/// Parses the statement CSV: a header row, then one record per line. Quoted fields and UTF-8
/// Japanese text are normal; a stray quote inside a field is tolerated (libsacloud reads with
/// `LazyQuotes`); a wrong column count or a price/tax that is not a number is an error.
pub fn parse_statement_csv(body: &str) -> Result<Vec<StatementRow>, PollError> {
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    if body.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| PollError::malformed(format!("statement CSV header: {e}")))?;
    if headers.len() != CSV_COLUMNS {
        return Err(PollError::malformed(format!(
            "statement CSV has {} columns, expected {CSV_COLUMNS}",
            headers.len()
        )));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers for messages: the header is line 1.
        let line = i + 2;
        let record =
            record.map_err(|e| PollError::malformed(format!("statement CSV line {line}: {e}")))?;
        let field = |n: usize| record.get(n).unwrap_or_default().trim().to_string();
        let number = |n: usize, what: &str| {
            parse_amount(&field(n)).map_err(|_| {
                PollError::malformed(format!(
                    "statement CSV line {line}: {what} {:?} is not a number",
                    field(n)
                ))
            })
        };
        rows.push(StatementRow {
            seq: field(0),
            bill_no: field(1),
            month_of_use: field(2),
            payment_status: field(3),
            member_id: field(4),
            account_code: field(5),
            resource_id: field(6),
            product_id: field(7),
            product_name: field(8),
            zone_id: field(9),
            zone_name: field(10),
            days: field(11),
            hours: field(12),
            price: number(13, "price")?,
            tax: number(14, "tax")?,
            resource_name: field(15),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "\"連番\",\"請求書番号\",\"利用年月\",\"支払状況\",\"会員ID\",\"アカウントコード\",\"リソースID\",\"商品ID\",\"商品名\",\"ゾーンID\",\"ゾーン名\",\"日数\",\"時間\",\"商品価格(税抜)\",\"消費税\",\"リソース名\"";
    /// The manual's CSV line, verbatim.
    const MANUAL_LINE: &str = r#""2","000000000","2015/09","入金済み","xxx000001","payTest","112700654736","50118","ISOイメージアップロード/5GB","is1b","石狩第2ゾーン","30","0","100","8","名称未設定 ISOイメージ 14ef10fedac""#;

    #[test]
    fn parses_the_manual_csv_line_field_by_field() {
        let rows = parse_statement_csv(&format!("{HEADER}\n{MANUAL_LINE}\n")).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.seq, "2");
        assert_eq!(r.bill_no, "000000000");
        assert_eq!(r.month_of_use, "2015/09");
        assert_eq!(r.payment_status, "入金済み");
        assert_eq!(r.member_id, "xxx000001");
        assert_eq!(r.account_code, "payTest");
        assert_eq!(r.resource_id, "112700654736");
        assert_eq!(r.product_id, "50118");
        assert_eq!(r.product_name, "ISOイメージアップロード/5GB");
        assert_eq!(r.zone_id, "is1b");
        assert_eq!(r.zone_name, "石狩第2ゾーン");
        assert_eq!(r.days, "30");
        assert_eq!(r.hours, "0");
        assert_eq!(r.price, Decimal::from(100));
        assert_eq!(r.tax, Decimal::from(8));
        assert_eq!(r.resource_name, "名称未設定 ISOイメージ 14ef10fedac");
    }

    #[test]
    fn csv_quoting_bom_crlf_and_lazy_quotes() {
        let body = format!(
            "\u{feff}{HEADER}\r\n{MANUAL_LINE}\r\n\"3\",\"1\",\"2015/09\",\"未入金\",\"m\",\"a\",\"1\",\"2\",\"サーバ\",\"\",\"\",\"1\",\"2\",\"1000\",\"100\",\"web \"\"front\"\", 1\"\r\n\"4\",\"1\",\"2015/09\",\"未入金\",\"m\",\"a\",\"1\",\"2\",\"ディスク\",\"\",\"\",\"1\",\"2\",\"5\",\"0\",name with \"stray\" quote\r\n"
        );
        let rows = parse_statement_csv(&body).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].seq, "2", "the BOM does not stick to the header");
        assert_eq!(rows[1].resource_name, "web \"front\", 1");
        assert_eq!(rows[1].zone_id, "", "global resources have no zone");
        assert_eq!(rows[2].resource_name, "name with \"stray\" quote");
        assert!(parse_statement_csv("").unwrap().is_empty());
        assert!(parse_statement_csv(HEADER).unwrap().is_empty());
    }

    #[test]
    fn csv_errors() {
        let short = r#""2","000000000","2015/09","入金済み","xxx000001","payTest","112700654736","50118","ISO","is1b","石狩第2ゾーン","30","0","100","8""#;
        let bad_price = MANUAL_LINE.replace("\"100\"", "\"１００\"");
        let empty_tax = MANUAL_LINE.replace("\"8\"", "\"\"");
        let cases = [
            format!("{HEADER}\n{short}"),
            format!("{HEADER}\n{bad_price}"),
            format!("{HEADER}\n{empty_tax}"),
            format!("{HEADER},\"extra\"\n{MANUAL_LINE},\"x\""),
            "\"a\",\"b\"\n\"1\",\"2\"".to_string(),
            format!("{HEADER}\n{MANUAL_LINE}\n\"unterminated"),
        ];
        for body in &cases {
            let err = parse_statement_csv(body);
            assert!(err.is_err(), "{body}: {err:?}");
        }
    }

    #[test]
    fn ids_are_numbers_or_strings_and_keep_zeros() {
        let ids: Vec<IdString> =
            serde_json::from_str(r#"[13481639, "000000526782", " 42 "]"#).unwrap();
        assert_eq!(ids[0].as_str(), "13481639");
        assert_eq!(ids[1].as_str(), "000000526782");
        assert_eq!(ids[2].as_str(), "42");
        for bad in ["-1", "1.5", "\"\"", "true", "null", "{}", "[]"] {
            assert!(serde_json::from_str::<IdString>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies() {
        let e = ApiErrorBody::parse(
            br#"{"is_fatal":true,"serial":"abc","status":"401 Unauthorized","error_code":"unauthorized","error_msg":"error-unauthorized"}"#,
        )
        .unwrap();
        assert_eq!(e.is_fatal, Some(true));
        assert_eq!(
            e.describe(),
            "unauthorized: error-unauthorized (status 401 Unauthorized, serial abc)"
        );
        assert!(ApiErrorBody::parse(br#"{"is_ok":true,"Bills":[]}"#).is_none());
        assert!(ApiErrorBody::parse(b"<html>").is_none());
    }
}
