//! The file source's CSV (`parse_csv`), with and without a default account.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spendwatch::sources::file::config::FileSettings;
use spendwatch::sources::file::map::parse_csv;

fuzz_target!(|data: &[u8]| {
    for account in [None, Some("acme".to_string())] {
        let settings = FileSettings {
            name: "file".to_string(),
            path: "traffic.csv".into(),
            unit: "requests".to_string(),
            series: "requests".to_string(),
            account,
            interval: Duration::from_secs(60),
            max_bytes: 1 << 20,
        };
        let _ = parse_csv(&settings, data);
    }
});
