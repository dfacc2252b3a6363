//! RackNap `GET /v1/invoices`: `read_list` on a 200 JSON response (envelope head, then the
//! list), then `map_invoices` for the `all` target and for one customer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use spendwatch::model::Currency;
use spendwatch::sources::http::Fetched;
use spendwatch::sources::racknap::client::read_list;
use spendwatch::sources::racknap::map::{Page, invoice_period, map_invoices};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for status in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let fetched = Fetched {
            status,
            headers: headers.clone(),
            body: data.to_vec(),
        };
        let Ok(listed) = read_list(&fetched) else {
            continue;
        };
        for inv in &listed.list.data {
            let _ = invoice_period(inv);
        }
        let customer = listed.list.data.first().map(|i| i.customer_id.clone());
        let pages = [Page {
            invoices: listed.list.data,
            request_id: listed.request_id,
        }];
        let usd = Currency::new("USD").expect("USD");
        let ignore = ["VOID".to_string()];
        let now = spendwatch_fuzz::now();
        let _ = map_invoices("racknap", None, &pages, &usd, &ignore, now);
        let _ = map_invoices("racknap", customer.as_deref(), &pages, &usd, &ignore, now);
    }
});
