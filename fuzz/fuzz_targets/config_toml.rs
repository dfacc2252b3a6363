//! Config TOML: `parse_raw`, then `validate` (what `spendwatch check` and `run` do), with a
//! base directory that does not exist so relative secret files resolve to nothing.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spendwatch::config::{parse_raw, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = parse_raw(text) else {
        return;
    };
    let _ = validate(raw, Path::new("/nonexistent/spendwatch-fuzz"));
});
