//! Red Hat 3scale Billing API (XML), in porta's shapes: `/api/invoices.xml` and
//! `/api/accounts/{id}/invoices.xml` (filters `state`, `month`; `page`, `per_page` with
//! porta's fallbacks), `/api/invoices/{id}.xml`, `/api/invoices/{id}/line_items.xml`
//! (root `<line_items>`). The token is accepted from HTTP Basic (first non-empty of user
//! and password) or the `access_token` query parameter; a wrong one gets 403
//! `<error>Access denied</error>`, an unknown account or invoice a 404 with an empty body.
//!
//! Every 3scale buyer of the world has the current month's `open` invoice (period to date)
//! and two closed months (`pending`, then `paid`), with a plan-cost line item and a
//! variable-cost line item for API hits that follow the buyer's traffic.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use rust_decimal::Decimal;

use super::Sim;
use super::faults::{self, BodyFormat, FaultKind};
use super::world::{Api, SimAccount, SimCharge};
use crate::model::Period;

/// The provider's access token the simulator accepts.
pub const ACCESS_TOKEN: &str = "demo-3scale-token";
pub const PROVIDER_ID: &str = "2445580000";
/// `SimAccount::extra` key: when `"true"`, listings of this buyer leave its line items out
/// (`<line-items/>`), so a client has to read `/api/invoices/{id}/line_items.xml`.
pub const EXTRA_LIST_WITHOUT_LINE_ITEMS: &str = "list_without_line_items";
/// `SimAccount::extra` key: VAT rate in percent (`"21.0"`); no VAT elements without it.
pub const EXTRA_VAT_RATE: &str = "vat_rate";

const XML_CONTENT_TYPE: &str = "application/xml; charset=utf-8";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn xml_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, XML_CONTENT_TYPE)], body).into_response()
}

/// porta's `render_error` for XML.
fn error_body(message: &str) -> String {
    format!("{XML_DECL}<error>{}</error>", escape(message))
}

/// `head :not_found`: no body at all.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, XML_CONTENT_TYPE)],
    )
        .into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Ruby's `BigDecimal#to_s` as Rails prints it: `20.0`, `0.0001`, `12.5`.
pub fn ruby_decimal(d: Decimal) -> String {
    let n = d.normalize();
    if n.scale() == 0 {
        format!("{n}.0")
    } else {
        n.to_string()
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

/// porta's `ApiAuthentication::HttpAuthentication`: the first non-empty of user and password.
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    [user, password]
        .into_iter()
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ApiQuery {
    access_token: Option<String>,
    state: Option<String>,
    month: Option<String>,
    /// Strings, as porta falls back to defaults for anything it cannot use.
    page: Option<String>,
    per_page: Option<String>,
}

/// Counts the request, checks the token, then serves a queued fault if there is one.
/// `Ok(true)`: the fault is `EmptyPeriod`, which the handler renders itself.
async fn guard(sim: &Sim, headers: &HeaderMap, query: &ApiQuery) -> Result<bool, Response> {
    {
        let mut inner = sim.lock();
        inner.stats.billing_requests += 1;
        let token = basic_token(headers).or_else(|| query.access_token.clone());
        if token.as_deref() != Some(ACCESS_TOKEN) {
            inner.stats.unauthorized += 1;
            return Err(xml_response(
                StatusCode::FORBIDDEN,
                error_body("Access denied"),
            ));
        }
    }
    let Some(fault) = sim.take_fault("threescale") else {
        return Ok(false);
    };
    if let Some(response) = faults::serve(&fault, BodyFormat::Xml, |status| {
        error_body(status.canonical_reason().unwrap_or("Error"))
    })
    .await
    {
        return Err(response);
    }
    Ok(fault.fault == FaultKind::EmptyPeriod)
}

/// One simulated invoice.
struct SimInvoice {
    id: String,
    friendly_id: String,
    state: &'static str,
    period: Period,
    buyer: SimAccount,
    charges: Vec<SimCharge>,
    issued_on: Option<Date>,
}

fn date_of(t: Timestamp) -> Date {
    t.to_zoned(TimeZone::UTC).date()
}

/// The world's invoices as of `now`, newest first (porta orders by `created_at DESC`).
/// `without_current` leaves out the running month's open invoice ("not created yet").
fn invoices(sim: &Sim, now: Timestamp, without_current: bool) -> Vec<SimInvoice> {
    let mut out = Vec::new();
    for (n, buyer) in sim.accounts(Api::Threescale).into_iter().enumerate() {
        let Some(current) = buyer.period(now) else {
            continue;
        };
        let Some(previous) = buyer.previous_period(current) else {
            continue;
        };
        let Some(before) = buyer.previous_period(previous) else {
            continue;
        };
        for (age, state, period) in [
            (0, "open", current),
            (1, "pending", previous),
            (2, "paid", before),
        ] {
            if age == 0 && without_current {
                continue;
            }
            let as_of = if age == 0 {
                now
            } else {
                period.end - SignedDuration::from_millis(1)
            };
            let Some((_, charges)) = buyer.charges(as_of) else {
                continue;
            };
            let start = date_of(period.start);
            out.push(SimInvoice {
                id: format!("{}{:04}{:02}", buyer.id, start.year(), start.month()),
                friendly_id: format!("{:04}-{:02}-{:08}", start.year(), start.month(), n + 1),
                state,
                period,
                issued_on: (age > 0).then(|| date_of(period.end)),
                buyer: buyer.clone(),
                charges,
            });
        }
    }
    out.sort_by(|a, b| {
        b.period
            .start
            .cmp(&a.period.start)
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

fn line_item_xml(invoice: &SimInvoice, index: usize, charge: &SimCharge) -> String {
    let variable = charge.charge_type == "LineItem::VariableCost";
    let from = date_of(invoice.period.start);
    let to = date_of(invoice.period.end - SignedDuration::from_secs(1));
    let (quantity, description, metric_id, plan_id) = if variable {
        (
            ruby_decimal(charge.quantity),
            format!("{} from {from} to {to}", charge.name),
            escape(&charge.code),
            String::new(),
        )
    } else {
        (
            "1".to_string(),
            format!("{from} ({to})"),
            String::new(),
            escape(&charge.code),
        )
    };
    let tag = |name: &str, value: &str| {
        if value.is_empty() {
            format!("<{name}/>")
        } else {
            format!("<{name}>{value}</{name}>")
        }
    };
    format!(
        "<line-item>{}{}{}{}{}{}{}{}{}{}</line-item>",
        tag("id", &format!("{}{index:02}", invoice.id)),
        tag("name", &escape(&charge.name)),
        tag("description", &escape(&description)),
        tag("quantity", &quantity),
        tag("type", &escape(&charge.charge_type)),
        tag("metric_id", &metric_id),
        tag("plan_id", &plan_id),
        tag("contract_id", &format!("{}01", invoice.buyer.id)),
        tag("contract_type", "Cinstance"),
        tag("cost", &ruby_decimal(charge.amount.round_dp(4))),
    )
}

fn line_items_xml(invoice: &SimInvoice) -> String {
    invoice
        .charges
        .iter()
        .enumerate()
        .map(|(i, c)| line_item_xml(invoice, i, c))
        .collect()
}

/// `Finance::Builder::XmlMarkup#invoice!`, element for element.
fn invoice_xml(invoice: &SimInvoice, with_line_items: bool) -> String {
    let without_vat: Decimal = invoice.charges.iter().map(|c| c.amount.round_dp(4)).sum();
    let vat_rate = invoice
        .buyer
        .extra
        .get(EXTRA_VAT_RATE)
        .and_then(|r| r.parse::<Decimal>().ok())
        .filter(|r| *r > Decimal::ZERO);
    let vat_amount = vat_rate.map(|r| without_vat * r / Decimal::from(100));
    let cost = without_vat.round_dp(2) + vat_amount.map_or(Decimal::ZERO, |v| v.round_dp(2));
    let vat = match (vat_rate, vat_amount) {
        (Some(rate), Some(amount)) => format!(
            "<vat_rate>{}</vat_rate><vat_amount>{}</vat_amount>",
            ruby_decimal(rate),
            ruby_decimal(amount)
        ),
        _ => String::new(),
    };
    let optional_date = |name: &str, d: Option<Date>| match d {
        Some(d) => format!("<{name}>{d}</{name}>"),
        None => format!("<{name}/>"),
    };
    let due_on = invoice.issued_on.and_then(|d| d.checked_add(2.days()).ok());
    let paid_at = match (invoice.state, due_on) {
        ("paid", Some(d)) => format!("<paid_at>{d} 08:00:00 UTC</paid_at>"),
        _ => "<paid_at/>".to_string(),
    };
    let from = date_of(invoice.period.start);
    let to = date_of(invoice.period.end - SignedDuration::from_secs(1));
    let buyer = &invoice.buyer;
    format!(
        "<invoice version=\"1.0\"><id>{id}</id><friendly_id>{friendly}</friendly_id>\
<creation_type>background</creation_type><state>{state}</state>{paid_at}{due_on}{issued_on}\
<currency>{currency}</currency><cost>{cost}</cost>{vat}<cost_without_vat>{without_vat}</cost_without_vat>\
<period><from>{from}</from><to>{to}</to></period>\
<provider><id>{PROVIDER_ID}</id><org_name>Example API Provider</org_name><address>1 Gateway Street</address>\
<city>Barcelona</city><state/><country>Spain</country><phone/><zip>08001</zip></provider>\
<buyer><id>{buyer_id}</id><org_name>{buyer_name}</org_name><address/><city/><state/><country/><phone/><zip/></buyer>\
{line_items}<payment_transactions_count>{payments}</payment_transactions_count></invoice>",
        id = invoice.id,
        friendly = invoice.friendly_id,
        state = invoice.state,
        due_on = optional_date("due_on", due_on),
        issued_on = optional_date("issued_on", invoice.issued_on),
        currency = escape(&buyer.currency),
        cost = ruby_decimal(cost),
        without_vat = ruby_decimal(without_vat),
        buyer_id = escape(&buyer.id),
        buyer_name = escape(&buyer.name),
        line_items = if with_line_items && !invoice.charges.is_empty() {
            format!(
                "<line-items type=\"array\">{}</line-items>",
                line_items_xml(invoice)
            )
        } else {
            "<line-items type=\"array\"/>".to_string()
        },
        payments = u8::from(invoice.state == "paid"),
    )
}

/// porta's pagination filter: `per_page` 1..=500 else 20, `page` below 1 is 1.
fn page_params(q: &ApiQuery) -> (usize, usize) {
    let per_page = q
        .per_page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| (1..=500).contains(p))
        .unwrap_or(20);
    let page = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    (page, per_page)
}

fn listing(sim: &Sim, query: &ApiQuery, buyer: Option<&str>, empty_period: bool) -> Response {
    let now = sim.clock.now();
    let all = invoices(sim, now, empty_period);
    let selected: Vec<&SimInvoice> = all
        .iter()
        .filter(|i| buyer.is_none_or(|b| i.buyer.id == b))
        .filter(|i| query.state.as_deref().is_none_or(|s| i.state == s))
        .filter(|i| {
            query.month.as_deref().is_none_or(|m| {
                let start = date_of(i.period.start);
                format!("{:04}-{:02}", start.year(), start.month()) == m
            })
        })
        .collect();
    let (page, per_page) = page_params(query);
    let total = selected.len();
    let total_pages = total.div_ceil(per_page);
    let body: String = selected
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|i| {
            let embedded = i
                .buyer
                .extra
                .get(EXTRA_LIST_WITHOUT_LINE_ITEMS)
                .map(String::as_str)
                != Some("true");
            invoice_xml(i, embedded)
        })
        .collect();
    xml_response(
        StatusCode::OK,
        format!(
            "{XML_DECL}<invoices version=\"1.0\"><pagination total_pages=\"{total_pages}\" current_page=\"{page}\" per_page=\"{per_page}\" total_entries=\"{total}\"/>{body}</invoices>"
        ),
    )
}

/// `GET /api/invoices.xml`
pub async fn list_invoices(
    State(sim): State<Sim>,
    Query(query): Query<ApiQuery>,
    headers: HeaderMap,
) -> Response {
    match guard(&sim, &headers, &query).await {
        Ok(empty_period) => listing(&sim, &query, None, empty_period),
        Err(response) => response,
    }
}

/// `GET /api/accounts/{id}/invoices.xml`
pub async fn list_account_invoices(
    State(sim): State<Sim>,
    Path(account): Path<String>,
    Query(query): Query<ApiQuery>,
    headers: HeaderMap,
) -> Response {
    let empty_period = match guard(&sim, &headers, &query).await {
        Ok(e) => e,
        Err(response) => return response,
    };
    if !sim
        .accounts(Api::Threescale)
        .iter()
        .any(|a| a.id == account)
    {
        return not_found();
    }
    listing(&sim, &query, Some(&account), empty_period)
}

fn find_invoice(sim: &Sim, id: &str, empty_period: bool) -> Option<SimInvoice> {
    invoices(sim, sim.clock.now(), empty_period)
        .into_iter()
        .find(|i| i.id == id)
}

/// `GET /api/invoices/{id}.xml` (the route captures `{id}.xml` whole).
pub async fn get_invoice(
    State(sim): State<Sim>,
    Path(file): Path<String>,
    Query(query): Query<ApiQuery>,
    headers: HeaderMap,
) -> Response {
    let empty_period = match guard(&sim, &headers, &query).await {
        Ok(e) => e,
        Err(response) => return response,
    };
    let Some(id) = file.strip_suffix(".xml") else {
        return not_found();
    };
    match find_invoice(&sim, id, empty_period) {
        Some(invoice) => xml_response(
            StatusCode::OK,
            format!("{XML_DECL}{}", invoice_xml(&invoice, true)),
        ),
        None => not_found(),
    }
}

/// `GET /api/invoices/{id}/line_items.xml`: root `<line_items>`, underscore.
pub async fn get_line_items(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Query(query): Query<ApiQuery>,
    headers: HeaderMap,
) -> Response {
    let empty_period = match guard(&sim, &headers, &query).await {
        Ok(e) => e,
        Err(response) => return response,
    };
    match find_invoice(&sim, &id, empty_period) {
        Some(invoice) if invoice.charges.is_empty() => {
            xml_response(StatusCode::OK, format!("{XML_DECL}<line_items/>"))
        }
        Some(invoice) => xml_response(
            StatusCode::OK,
            format!(
                "{XML_DECL}<line_items>{}</line_items>",
                line_items_xml(&invoice)
            ),
        ),
        None => not_found(),
    }
}

/// Invoice ids per buyer, for tests.
pub fn invoice_ids(sim: &Sim) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for i in invoices(sim, sim.clock.now(), false) {
        out.entry(i.buyer.id.clone()).or_default().push(i.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_like_ruby() {
        assert_eq!(ruby_decimal(Decimal::from(20)), "20.0");
        assert_eq!(ruby_decimal(Decimal::new(1, 4)), "0.0001");
        assert_eq!(ruby_decimal(Decimal::new(1250, 2)), "12.5");
    }

    #[test]
    fn basic_credentials_decode() {
        let mut h = HeaderMap::new();
        // base64(":demo-3scale-token") and base64("demo-3scale-token:")
        h.insert(
            header::AUTHORIZATION,
            "Basic OmRlbW8tM3NjYWxlLXRva2Vu".parse().unwrap(),
        );
        assert_eq!(basic_token(&h).as_deref(), Some(ACCESS_TOKEN));
        h.insert(
            header::AUTHORIZATION,
            "Basic ZGVtby0zc2NhbGUtdG9rZW46".parse().unwrap(),
        );
        assert_eq!(basic_token(&h).as_deref(), Some(ACCESS_TOKEN));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_token(&h), None);
    }
}
