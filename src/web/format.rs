//! How the pages write money, numbers and times: amounts stay `Decimal` until they become
//! text here; times are UTC with a relative hint, measured against the pipeline's clock.

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::model::{Currency, Money, format_decimal};

/// `$1,234.50`, `¥4,330` (no minor units), `€12.00`, `1,234.50 CHF`. A code that is not
/// ISO-shaped (it came from a billing API) is still shown, after two-decimal digits.
pub fn money(amount: Decimal, currency: &str) -> String {
    match Currency::new(currency) {
        Ok(c) => Money::new(amount, c).to_string(),
        Err(_) => format!("{} {currency}", format_decimal(amount, 2)),
    }
}

/// Amount of a unit that is not money: `1,234.5 requests`. Trailing zeros dropped.
pub fn quantity(amount: Decimal, unit: &str) -> String {
    let digits = if amount.abs() >= Decimal::from(100) {
        0
    } else {
        2
    };
    let text = format_decimal(amount, digits);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if unit.is_empty() {
        text
    } else {
        format!("{text} {unit}")
    }
}

/// `2026-11-18 17:54 UTC`.
pub fn utc(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// `3 h ago`, `12 min ago`, `2 d ago`, `in 5 min`, `just now`: the largest whole unit.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(at).as_secs();
    let (ahead, s) = (seconds < 0, seconds.unsigned_abs());
    if s < 60 {
        return "just now".into();
    }
    let span = short_duration(s);
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `45 s`, `12 min`, `3 h`, `2 d`: the largest whole unit of a span in seconds.
pub fn short_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

/// `2026-11-18 17:54 UTC (3 h ago)`.
pub fn when(at: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", utc(at), relative(at, now))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn money_per_currency() {
        assert_eq!(money(d("4330"), "JPY"), "¥4,330");
        assert_eq!(
            money(d("4329.6"), "JPY"),
            "¥4,330",
            "yen has no minor units"
        );
        assert_eq!(money(d("1234.5"), "USD"), "$1,234.50");
        assert_eq!(money(d("0.5"), "EUR"), "€0.50");
        assert_eq!(money(d("-12"), "GBP"), "-£12.00");
        assert_eq!(money(d("1234.5"), "XYZ"), "1,234.50 XYZ");
        assert_eq!(
            money(d("1234.5"), "<b>"),
            "1,234.50 <b>",
            "escaped by the template"
        );
        assert_eq!(money(d("1234567.891"), "CHF"), "1,234,567.89 CHF");
    }

    #[test]
    fn quantities_drop_needless_zeros() {
        assert_eq!(quantity(d("1234.00"), "requests"), "1,234 requests");
        assert_eq!(quantity(d("12.50"), "GB"), "12.5 GB");
        assert_eq!(quantity(d("0.25"), ""), "0.25");
    }

    #[test]
    fn times_are_utc_with_a_relative_hint() {
        let at: Timestamp = "2026-11-18T17:54:09Z".parse().unwrap();
        assert_eq!(utc(at), "2026-11-18 17:54 UTC");
        let now: Timestamp = "2026-11-18T20:59:00Z".parse().unwrap();
        assert_eq!(relative(at, now), "3 h ago");
        assert_eq!(when(at, now), "2026-11-18 17:54 UTC (3 h ago)");
        assert_eq!(relative(at, at), "just now");
        assert_eq!(
            relative(at, "2026-11-18T18:06:10Z".parse().unwrap()),
            "12 min ago"
        );
        assert_eq!(
            relative(at, "2026-11-21T18:00:00Z".parse().unwrap()),
            "3 d ago"
        );
        assert_eq!(
            relative("2026-11-18T18:00:00Z".parse().unwrap(), at),
            "in 5 min"
        );
        assert_eq!(short_duration(45), "45 s");
    }
}
