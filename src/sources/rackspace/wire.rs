//! Rackspace Identity v2.0 and Billing v2 `estimated_charges`, as documented
//! (see `api-docs/REFERENCE.md` §1). Unknown fields are ignored; the fields we use are typed.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::sources::amount::Amount;

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access: Access,
}

#[derive(Debug, Deserialize)]
pub struct Access {
    pub token: Token,
}

#[derive(Debug, Deserialize)]
pub struct Token {
    pub id: String,
    /// ISO-8601 UTC with fractional seconds, e.g. `2026-05-06T20:00:00.000Z`.
    pub expires: String,
}

#[derive(Debug, Deserialize)]
pub struct EstimatedChargesResponse {
    #[serde(rename = "estimatedCharges")]
    pub estimated_charges: EstimatedCharges,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedCharges {
    pub total: Option<Amount>,
    pub discount_total: Option<Amount>,
    pub charge_sub_total: Option<Amount>,
    pub charge_total: Option<Amount>,
    pub charge_hierarchy_total: Option<Amount>,
    pub currency: String,
    /// No offset in the documented examples (`2016-10-16T21:32:52`): UTC.
    pub current_billing_period_start_date: String,
    pub current_billing_period_end_date: String,
    pub duration_remaining_in_cycle: Option<String>,
    #[serde(default)]
    pub estimated_charge: Vec<EstimatedCharge>,
    #[serde(default)]
    pub link: Vec<Link>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedCharge {
    pub offering_code: Option<String>,
    pub charge_type: Option<String>,
    /// `CHARGE` or `DISCOUNT`.
    pub category: Option<String>,
    pub quantity: Option<Amount>,
    pub amount: Option<Amount>,
    pub rate: Option<Amount>,
    pub unit_of_measure: Option<String>,
    pub end_date: Option<String>,
    pub charge_details: Option<String>,
    pub charge_description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Link {
    pub rel: String,
    pub href: String,
}

impl EstimatedCharges {
    pub fn next_href(&self) -> Option<&str> {
        self.link
            .iter()
            .find(|l| l.rel.eq_ignore_ascii_case("next"))
            .map(|l| l.href.as_str())
    }
}

impl EstimatedCharge {
    pub fn amount(&self) -> Option<Decimal> {
        self.amount.map(|a| a.0)
    }
}
