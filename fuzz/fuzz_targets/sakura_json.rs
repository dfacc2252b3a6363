//! SAKURA Cloud JSON: auth-status → identity, a bill list, bill details and the CSV
//! statement envelope, each mapped as `SakuraClient` does, with the window taken from the
//! document's `ResponsedAt` like the poller (the fixed poll time otherwise).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendwatch::sources::sakura::map::{BillData, UsageMonth, Window, identity, map_bills};
use spendwatch::sources::sakura::wire::{
    ApiErrorBody, AuthStatus, Bill, BillDetailsResponse, BillsResponse, StatementCsvResponse,
    parse_statement_csv,
};

const MONTHS: u32 = 12;

fuzz_target!(|data: &[u8]| {
    if let Some(e) = ApiErrorBody::parse(data) {
        let _ = e.describe();
    }
    if let Ok(status) = serde_json::from_slice::<AuthStatus>(data) {
        let _ = identity(&status);
    }
    if let Ok(list) = serde_json::from_slice::<BillsResponse>(data) {
        let now = list
            .responsed_at
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(spendwatch_fuzz::now);
        let Ok(window) = Window::new(now, MONTHS) else {
            return;
        };
        let _ = window.bill_years();
        let bills: Vec<BillData> = list
            .bills
            .into_iter()
            .filter(|b| UsageMonth::of_bill_date(&b.date).is_ok_and(|m| window.contains(m)))
            .map(|bill| BillData {
                bill,
                details: Vec::new(),
                statement: None,
            })
            .collect();
        let _ = map_bills("sakura", "000000526782", &window, &bills);
    }
    if let Ok(details) = serde_json::from_slice::<BillDetailsResponse>(data) {
        let bill: Bill = serde_json::from_str(spendwatch_fuzz::SAKURA_BILL).expect("fixture");
        let now = details
            .responsed_at
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(spendwatch_fuzz::now);
        let Ok(window) = Window::new(now, MONTHS) else {
            return;
        };
        let data = [BillData {
            bill,
            details: details.bill_details,
            statement: None,
        }];
        let _ = map_bills("sakura", "000000526782", &window, &data);
    }
    if let Ok(csv) = serde_json::from_slice::<StatementCsvResponse>(data) {
        let _ = parse_statement_csv(&csv.body);
    }
});
