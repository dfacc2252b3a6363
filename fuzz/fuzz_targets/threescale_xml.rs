//! 3scale Billing API XML: an invoice listing, one invoice, and a `<line_items>` document
//! (attached to a fixed invoice), each mapped with `map_invoices` as `ThreescaleClient` does.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use spendwatch::sources::threescale::map::{MapSettings, invoice_period, map_invoices};
use spendwatch::sources::threescale::wire::{
    LineItems, parse_invoice, parse_invoice_list, parse_line_items, root_element,
};

fuzz_target!(|data: &[u8]| {
    let settings = MapSettings {
        source: "threescale".to_string(),
        usage_unit: "hits".to_string(),
        metric_units: BTreeMap::from([("42".to_string(), "requests".to_string())]),
    };
    let now = spendwatch_fuzz::now();
    let _ = root_element(data);
    if let Ok(list) = parse_invoice_list(data) {
        for inv in &list.invoices {
            let _ = invoice_period(inv, "invoice");
        }
        let _ = map_invoices(&settings, &list.invoices, now);
    }
    if let Ok(invoice) = parse_invoice(data) {
        let _ = map_invoices(&settings, &[invoice], now);
    }
    if let Ok(items) = parse_line_items(data) {
        let mut invoice = parse_invoice(spendwatch_fuzz::THREESCALE_INVOICE).expect("fixture");
        invoice.line_items = Some(LineItems { items });
        let _ = map_invoices(&settings, &[invoice], now);
    }
});
