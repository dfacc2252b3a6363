//! SAKURA Cloud CSV statement (`parse_statement_csv`), then the rows attached to a bill and
//! mapped, so the CSV's month of use and prices go through `map_bills` as in a poll.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendwatch::sources::sakura::map::{BillData, Window, map_bills};
use spendwatch::sources::sakura::wire::{Bill, parse_statement_csv};

fuzz_target!(|data: &[u8]| {
    // The CSV arrives as a JSON string (`Body`), so it is always valid UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rows) = parse_statement_csv(text) else {
        return;
    };
    let bill: Bill = serde_json::from_str(spendwatch_fuzz::SAKURA_BILL).expect("fixture");
    let Ok(window) = Window::new(spendwatch_fuzz::now(), 12) else {
        return;
    };
    let data = [BillData {
        bill,
        details: Vec::new(),
        statement: Some(rows),
    }];
    let _ = data[0].usage_month();
    let _ = map_bills("sakura", "000000526782", &window, &data);
});
