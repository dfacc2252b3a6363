//! Shared fixtures of the fuzz targets: a fixed poll time, and the few well-formed
//! documents a target pairs with the fuzzed one (a bill for fuzzed details, an invoice for
//! fuzzed line items).

use jiff::Timestamp;

/// The poll time of every target (the poller passes its clock; the fuzzer must not).
pub fn now() -> Timestamp {
    Timestamp::from_second(1_780_000_000).expect("a fixed, valid time") // 2026-05-28
}

/// One SAKURA bill, the manual's shape, dated so its usage month is the current month of [`now`] (May 2026), where the lines-add-up check runs.
pub const SAKURA_BILL: &str = r#"{"BillID": 1234567, "Amount": 1080, "Date": "2026-06-01T00:00:00+09:00", "MemberID": "xxx000001", "Paid": false}"#;

/// One 3scale invoice without line items, for fuzzed `<line_items>`.
pub const THREESCALE_INVOICE: &[u8] = br#"<invoice><id>1</id><state>open</state><currency>EUR</currency><cost>22.0</cost><cost_without_vat>20.0</cost_without_vat><vat_amount>2.0</vat_amount><period><from>2026-05-01</from><to>2026-05-31</to></period><buyer><id>5</id></buyer></invoice>"#;
