//! Prometheus `query_range` JSON, mapped with an account label and with a fixed account.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendwatch::sources::prometheus::config::QuerySettings;
use spendwatch::sources::prometheus::map::map_range;
use spendwatch::sources::prometheus::wire::Envelope;

fuzz_target!(|data: &[u8]| {
    for account in [None, Some("acme".to_string())] {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
            return;
        };
        let query = QuerySettings {
            name: "requests".to_string(),
            query: "sum by (account) (increase(requests_total[1h]))".to_string(),
            unit: "requests".to_string(),
            account_label: "account".to_string(),
            account,
        };
        let _ = map_range("prometheus", &query, envelope);
    }
});
