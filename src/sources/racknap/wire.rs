//! RackNap `GET /v1/invoices`, as the quick-start guide documents it (see
//! `api-docs/REFERENCE.md` §3). Unknown fields are ignored; the fields we use are typed.
//!
//! The envelope is read in two steps: [`Head`] (`success`, `code`, `error`, `meta`) from any
//! JSON body, error or not, so every failure can name its `requestId`; then [`InvoiceList`]
//! once the head says the call succeeded.

use serde::Deserialize;

use crate::sources::amount::Amount;

/// The parts of the envelope every response has, success or error.
#[derive(Debug, Deserialize)]
pub struct Head {
    pub success: bool,
    /// The HTTP status repeated in the body; may disagree with the real one (checked).
    pub code: Option<i64>,
    pub error: Option<ApiError>,
    pub meta: Option<Meta>,
}

impl Head {
    pub fn request_id(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.request_id.as_deref())
    }
}

/// `error{message, type}`; the possible `type` values are undocumented.
#[derive(Debug, Deserialize)]
pub struct ApiError {
    pub message: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// RFC 3339 UTC.
    pub timestamp: Option<String>,
    /// What RackNap support asks for: goes into every error message about this response.
    pub request_id: Option<String>,
}

/// A successful list response.
#[derive(Debug, Deserialize)]
pub struct InvoiceList {
    pub data: Vec<Invoice>,
    /// Required on list endpoints: without it we cannot tell whether more pages follow.
    pub pagination: Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub has_more: bool,
}

/// One invoice. Only `id`, `customerId`, `amount` and `status` are documented; the rest are
/// optional fields a real response may carry (REFERENCE.md §3: currency and period unknown).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub id: String,
    pub customer_id: String,
    /// A JSON number (`1250.00`); decoded into a decimal, never kept as f64.
    pub amount: Amount,
    /// `PAID` is the only documented value; any string is accepted.
    pub status: Option<String>,
    /// ISO 4217; when absent the configured currency applies.
    pub currency: Option<String>,
    /// `YYYY-MM-DD` (or an RFC 3339 instant); see `map::invoice_period` for how they are used.
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub issue_date: Option<String>,
    /// Documented as a `POST /v1/invoices` field (`YYYY-MM-DD`).
    pub due_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    /// The quick-start guide's response example, verbatim.
    const QUICKSTART_LIST: &str = include_str!("fixtures/quickstart-list.json");

    #[test]
    fn decodes_the_documented_list_response() {
        let head: Head = serde_json::from_str(QUICKSTART_LIST).unwrap();
        assert!(head.success);
        assert_eq!(head.code, Some(200));
        assert!(head.error.is_none());
        assert_eq!(head.request_id(), Some("req_xyz789"));
        let meta = head.meta.unwrap();
        assert_eq!(meta.timestamp.as_deref(), Some("2026-06-02T14:32:10Z"));

        let list: InvoiceList = serde_json::from_str(QUICKSTART_LIST).unwrap();
        assert_eq!(list.data.len(), 1);
        let inv = &list.data[0];
        assert_eq!(inv.id, "inv_8392ae4c");
        assert_eq!(inv.customer_id, "cust_3d8f4a2b");
        assert_eq!(inv.amount.0, Decimal::new(125000, 2));
        assert_eq!(inv.status.as_deref(), Some("PAID"));
        assert!(inv.currency.is_none() && inv.period_start.is_none() && inv.due_date.is_none());
        let p = &list.pagination;
        assert_eq!((p.total, p.offset, p.limit, p.has_more), (250, 0, 10, true));
    }

    #[test]
    fn decodes_the_documented_error_envelope() {
        // The error-handling example reads `success`, `error.message`, `error.type` and
        // `meta.requestId`; this is that shape.
        let body = include_str!("fixtures/error.json");
        let head: Head = serde_json::from_str(body).unwrap();
        assert!(!head.success);
        let error = head.error.as_ref().unwrap();
        assert_eq!(error.message.as_deref(), Some("Invoice not found"));
        assert_eq!(error.kind.as_deref(), Some("not_found"));
        assert_eq!(head.request_id(), Some("req_abc123"));
        assert!(serde_json::from_str::<InvoiceList>(body).is_err());
    }
}
