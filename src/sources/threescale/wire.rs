//! The 3scale Billing API's XML, as porta's `Finance::Builder::XmlMarkup` writes it
//! (see `api-docs/REFERENCE.md` §4.3–4.4). Unknown elements and attributes are ignored;
//! empty elements (`<paid_at/>`, `<paid_at></paid_at>`) are `None`; amounts are decimal
//! text decoded straight into `Decimal`. Whether a present-but-empty field is acceptable
//! is decided in `map.rs`.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

use crate::model::parse_amount;
use crate::sources::http::{PollError, snippet};

/// `<invoices>`: one page of a listing.
#[derive(Debug, Deserialize)]
pub struct InvoiceList {
    pub pagination: Option<Pagination>,
    #[serde(rename = "invoice", default)]
    pub invoices: Vec<Invoice>,
}

/// `<pagination total_pages=".." current_page=".." per_page=".." total_entries=".."/>`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Pagination {
    #[serde(rename = "@total_pages")]
    pub total_pages: Option<u64>,
    #[serde(rename = "@current_page")]
    pub current_page: Option<u64>,
    #[serde(rename = "@per_page")]
    pub per_page: Option<u64>,
    #[serde(rename = "@total_entries")]
    pub total_entries: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    #[serde(default, deserialize_with = "opt_text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub friendly_id: Option<String>,
    /// `manual` or `background`.
    #[serde(default, deserialize_with = "opt_text")]
    pub creation_type: Option<String>,
    /// `open, finalized, pending, unpaid, paid, failed, cancelled`.
    #[serde(default, deserialize_with = "opt_text")]
    pub state: Option<String>,
    /// A Ruby `Time#to_s`; its exact form is uncertain and it is not used.
    #[serde(default, deserialize_with = "opt_text")]
    pub paid_at: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub due_on: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub issued_on: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub currency: Option<String>,
    /// With VAT.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub cost: Option<Decimal>,
    /// Only written when the VAT rate is above 0.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub vat_rate: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub vat_amount: Option<Decimal>,
    /// The exact sum of the line items' costs.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub cost_without_vat: Option<Decimal>,
    pub period: Option<InvoicePeriod>,
    pub provider: Option<Party>,
    pub buyer: Option<Party>,
    #[serde(rename = "line-items")]
    pub line_items: Option<LineItems>,
    #[serde(default, deserialize_with = "opt_text")]
    pub payment_transactions_count: Option<String>,
}

/// `<period><from>2026-11-01</from><to>2026-11-30</to></period>`: Ruby `Date#to_s`, `to`
/// inclusive.
#[derive(Debug, Clone, Deserialize)]
pub struct InvoicePeriod {
    #[serde(default, deserialize_with = "opt_text")]
    pub from: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub to: Option<String>,
}

/// `<provider>` / `<buyer>`; a deleted buyer is `<id/>` plus `<status>deleted</status>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Party {
    #[serde(default, deserialize_with = "opt_text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub org_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub status: Option<String>,
}

/// `<line-items>` inside an invoice, or the root `<line_items>` of
/// `/api/invoices/{id}/line_items.xml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LineItems {
    #[serde(rename = "line-item", default)]
    pub items: Vec<LineItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LineItem {
    #[serde(default, deserialize_with = "opt_text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub quantity: Option<Decimal>,
    /// `LineItem::PlanCost`, `LineItem::VariableCost`, or empty for custom items.
    #[serde(rename = "type", default, deserialize_with = "opt_text")]
    pub kind: Option<String>,
    /// Variable costs only: the metric the cost is for.
    #[serde(default, deserialize_with = "opt_text")]
    pub metric_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub plan_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub contract_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub contract_type: Option<String>,
    /// Rounded to 4 decimals by porta.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub cost: Option<Decimal>,
}

pub const LINE_ITEM_PLAN_COST: &str = "LineItem::PlanCost";
pub const LINE_ITEM_VARIABLE_COST: &str = "LineItem::VariableCost";

/// Element text; an empty or blank element is `None`. Nested elements are an error.
fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.and_then(|t| {
        let trimmed = t.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    }))
}

/// Decimal element text (`20.0`, `0.0001`); empty is `None`; anything else is an error.
fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    opt_text(d)?
        .map(|t| parse_amount(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// The name of the document's root element (after the declaration, comments, doctype).
pub fn root_element(body: &[u8]) -> Result<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                return Ok(e.local_name().into_inner().to_string());
            }
            Ok(Event::Text(t)) if t.trim().is_empty() => {}
            Ok(Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_)) => {}
            Ok(Event::Eof) => return Err("empty document".into()),
            Ok(_) => return Err("content before the root element".into()),
            Err(e) => return Err(e.to_string()),
        }
        buf.clear();
    }
}

/// Parses a document after checking its root element: an `<error>` document (or any
/// other root) is never decoded into an empty listing.
fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected_root: &str,
    what: &str,
) -> Result<T, PollError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| PollError::malformed(format!("{what}: body is not UTF-8: {e}")))?;
    let root = root_element(body)
        .map_err(|e| PollError::malformed(format!("{what}: not an XML document: {e}")))?;
    if root != expected_root {
        return Err(PollError::malformed(format!(
            "{what}: expected <{expected_root}>, got <{root}> ({})",
            snippet(body)
        )));
    }
    quick_xml::de::from_str(text).map_err(|e| PollError::malformed(format!("{what}: {e}")))
}

/// `/api/invoices.xml`, `/api/accounts/{id}/invoices.xml`.
pub fn parse_invoice_list(body: &[u8]) -> Result<InvoiceList, PollError> {
    parse(body, "invoices", "invoice list")
}

/// `/api/invoices/{id}.xml`: the `<invoice>` element alone.
pub fn parse_invoice(body: &[u8]) -> Result<Invoice, PollError> {
    parse(body, "invoice", "invoice")
}

/// `/api/invoices/{id}/line_items.xml`: root `<line_items>` (underscore).
pub fn parse_line_items(body: &[u8]) -> Result<Vec<LineItem>, PollError> {
    parse::<LineItems>(body, "line_items", "line items").map(|l| l.items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::http::PollErrorKind;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn empty_elements_are_none_and_lists_may_be_empty() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<invoices version="1.0"><pagination total_pages="1" current_page="1" per_page="20" total_entries="1"/>
<invoice version="1.0"><id>7</id><state>open</state><paid_at/><due_on></due_on><issued_on>  </issued_on>
<currency>EUR</currency><cost>0.0</cost><cost_without_vat>0.0</cost_without_vat>
<period><from>2026-11-01</from><to>2026-11-30</to></period>
<buyer><id>5</id><status>deleted</status></buyer><line-items type="array"/></invoice></invoices>"#;
        let list = parse_invoice_list(xml).unwrap();
        let p = list.pagination.unwrap();
        assert_eq!(
            (p.total_pages, p.current_page, p.per_page, p.total_entries),
            (Some(1), Some(1), Some(20), Some(1))
        );
        let inv = &list.invoices[0];
        assert_eq!(inv.id.as_deref(), Some("7"));
        assert_eq!(
            (&inv.paid_at, &inv.due_on, &inv.issued_on),
            (&None, &None, &None)
        );
        assert_eq!(inv.cost, Some(Decimal::ZERO));
        assert_eq!(inv.vat_amount, None);
        assert!(inv.line_items.as_ref().unwrap().items.is_empty());
        let buyer = inv.buyer.as_ref().unwrap();
        assert_eq!(
            (buyer.id.as_deref(), buyer.status.as_deref()),
            (Some("5"), Some("deleted"))
        );
    }

    #[test]
    fn an_empty_listing_has_no_invoices() {
        let list = parse_invoice_list(
            br#"<invoices version="1.0"><pagination total_pages="0" current_page="1" per_page="20" total_entries="0"/></invoices>"#,
        )
        .unwrap();
        assert!(list.invoices.is_empty());
        assert!(
            parse_invoice_list(b"<invoices/>")
                .unwrap()
                .invoices
                .is_empty()
        );
    }

    #[test]
    fn character_references_and_utf8_names() {
        let xml = "<invoice><id>1</id><buyer><id>2</id><org_name>Caf&#233; M\u{fc}ller &amp; S\u{f6}hne \u{682a}\u{5f0f}\u{4f1a}\u{793e}</org_name></buyer>\
            <line-items><line-item><name>Fixed fee (&#8216;Pro&#8217;)</name><cost>1.5</cost></line-item></line-items></invoice>";
        let inv = parse_invoice(xml.as_bytes()).unwrap();
        assert_eq!(
            inv.buyer.unwrap().org_name.unwrap(),
            "Café Müller & Söhne 株式会社"
        );
        let items = inv.line_items.unwrap().items;
        assert_eq!(items[0].name.as_deref(), Some("Fixed fee (‘Pro’)"));
        assert_eq!(items[0].cost, Some(dec("1.5")));
    }

    #[test]
    fn standalone_line_items_use_an_underscore_root() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<line_items><line-item><id>1</id><name>Hits</name><description>API hits</description><quantity>1200</quantity>
<type>LineItem::VariableCost</type><metric_id>42</metric_id><plan_id>3</plan_id><contract_id>9</contract_id>
<contract_type>Cinstance</contract_type><cost>0.12</cost></line-item></line_items>"#;
        let items = parse_line_items(xml).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].kind.as_deref(), Some(LINE_ITEM_VARIABLE_COST));
        assert_eq!(items[0].metric_id.as_deref(), Some("42"));
        assert_eq!(items[0].quantity, Some(dec("1200")));
        // The embedded spelling is not the standalone root.
        assert!(
            parse_line_items(b"<line-items><line-item><cost>1</cost></line-item></line-items>")
                .is_err()
        );
        assert!(parse_line_items(b"<line_items/>").unwrap().is_empty());
    }

    #[test]
    fn odd_documents_are_errors_never_panics_or_empty_listings() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"<?xml version=\"1.0\"?>",
            b"<?xml version=\"1.0\"?><error>Access denied</error>",
            b"<html><body>Bad gateway</body></html>",
            b"Unsupported Finance API version 2.0",
            b"<invoices><invoice><cost>12.5</invoice></invoices>",
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<invoices><invoice><id>1</id><cost>1",
            b"<invoices><invoice><cost>twelve</cost></invoice></invoices>",
            b"<invoices><invoice><cost>1,000.00</cost></invoice></invoices>",
            b"<invoices><invoice><cost><amount>1</amount></cost></invoice></invoices>",
            b"<invoices><pagination total_pages=\"many\"/></invoices>",
            b"<invoices><pagination total_pages=\"-1\"/></invoices>",
            b"<invoices><invoice><id>1</id><id>2</id></invoice></invoices>",
            b"<invoices><invoice><line-items><line-item><quantity>1e3</quantity></line-item></line-items></invoice></invoices>",
            b"\xff\xfe<invoices/>",
            b"<invoices>&bogus;</invoices>",
        ];
        for body in cases {
            let err = parse_invoice_list(body).expect_err(&String::from_utf8_lossy(body));
            assert_eq!(
                err.kind,
                PollErrorKind::Malformed,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// A body cut anywhere (a dropped connection) is an error, never a shorter listing.
    #[test]
    fn every_truncation_of_a_listing_is_an_error() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<invoices version=\"1.0\">\
<pagination total_pages=\"1\" current_page=\"1\" per_page=\"20\" total_entries=\"2\"/>\
<invoice version=\"1.0\"><id>1</id><state>paid</state><paid_at/><currency>EUR</currency><cost>22.0</cost>\
<period><from>2026-10-01</from><to>2026-10-31</to></period><buyer><id>5</id><org_name>Müller &amp; Co</org_name></buyer>\
<line-items type=\"array\"><line-item><name>Hits</name><quantity>10</quantity><cost>20.0</cost></line-item></line-items></invoice>\
<invoice version=\"1.0\"><id>2</id><state>open</state><cost>1.0</cost><line-items/></invoice></invoices>";
        assert_eq!(
            parse_invoice_list(doc.as_bytes()).unwrap().invoices.len(),
            2
        );
        for end in 0..doc.len() {
            if !doc.is_char_boundary(end) {
                continue;
            }
            assert!(
                parse_invoice_list(&doc.as_bytes()[..end]).is_err(),
                "cut at {end}: {}",
                &doc[..end]
            );
        }
    }

    #[test]
    fn unknown_elements_and_attributes_are_ignored() {
        let xml = br#"<invoices version="1.0" xmlns:x="urn:x"><x:extra>1</x:extra>
<invoice version="1.0" lang="en"><id>9</id><future_field><deep>yes</deep></future_field><state>paid</state>
<cost>22.0</cost><vat_rate>10.0</vat_rate><vat_amount>2.0</vat_amount><cost_without_vat>20.0</cost_without_vat>
<line-items type="array"><line-item><cost>20.0</cost><new_thing/></line-item></line-items></invoice></invoices>"#;
        let list = parse_invoice_list(xml).unwrap();
        let inv = &list.invoices[0];
        assert_eq!(
            (inv.cost, inv.vat_rate, inv.vat_amount, inv.cost_without_vat),
            (
                Some(dec("22.0")),
                Some(dec("10.0")),
                Some(dec("2.0")),
                Some(dec("20.0"))
            )
        );
        assert!(list.pagination.is_none());
    }
}
