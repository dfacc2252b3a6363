//! Rackspace: Identity token and `estimated_charges` JSON, then the mapping to observations,
//! as `RackspaceClient` does (a page alone, and twice as a two-page listing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendwatch::sources::rackspace::map::{map_estimated_charges, parse_api_time};
use spendwatch::sources::rackspace::wire::{EstimatedChargesResponse, TokenResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = serde_json::from_slice::<TokenResponse>(data) {
        let _ = parse_api_time(&token.access.token.expires);
    }
    let Ok(page) = serde_json::from_slice::<EstimatedChargesResponse>(data) else {
        return;
    };
    let _ = page.estimated_charges.next_href();
    let now = spendwatch_fuzz::now();
    let _ = map_estimated_charges(
        "rackspace",
        "123456",
        std::slice::from_ref(&page.estimated_charges),
        now,
    );
    if let Ok(again) = serde_json::from_slice::<EstimatedChargesResponse>(data) {
        let pages = [page.estimated_charges, again.estimated_charges];
        let _ = map_estimated_charges("rackspace", "123456", &pages, now);
    }
});
