//! Checks between a poll and the store that keep a glitch from looking like real data.
//!
//! A billing API that briefly answers "no charges" in the middle of a period (its billing
//! backend restarting, a cache cleared) makes a period-to-date total drop to exactly zero and
//! come back on the next poll. Stored as is, that zero resets the period's spend: budgets
//! re-fire their levels, forecasts jump, rates go negative. Credits are real but rarely
//! bring a period to *exactly* zero, so such a drop is held until it persists for
//! `confirm_polls` consecutive polls; a later non-zero answer discards it.

use std::collections::HashMap;
use std::sync::Mutex;

use rust_decimal::Decimal;

use crate::model::{Observation, ObservationKind};
use crate::store::Store;

/// What happened to one poll's observations.
#[derive(Debug, Default, PartialEq)]
pub struct Screened {
    /// To store: the poll's observations, minus those held, plus any held ones now confirmed.
    pub accepted: Vec<Observation>,
    /// Zeros held back by this poll.
    pub held: usize,
    /// Earlier held zeros dropped because the series came back to a non-zero value.
    pub discarded: usize,
    /// Held zeros accepted by this poll, because the zero persisted.
    pub confirmed: usize,
}

/// Holds period-to-date drops to exactly zero until they persist. State is per series,
/// exists only while a series is held, and is lost on restart (counting starts again).
#[derive(Debug)]
pub struct ZeroGuard {
    confirm_polls: usize,
    held: Mutex<HashMap<String, Vec<Observation>>>,
}

impl ZeroGuard {
    /// `confirm_polls` ≤ 1 accepts every zero at once.
    pub fn new(confirm_polls: usize) -> Self {
        ZeroGuard {
            confirm_polls,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Series currently held.
    pub fn held_series(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Screens one poll. A store error while checking lets the observation through: the
    /// write that follows reports the store's trouble, and data is never silently dropped.
    pub fn screen(&self, store: &dyn Store, observations: Vec<Observation>) -> Screened {
        let mut out = Screened::default();
        if self.confirm_polls <= 1 {
            out.accepted = observations;
            return out;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for o in observations {
            if o.kind != ObservationKind::PeriodToDate {
                out.accepted.push(o);
                continue;
            }
            // The usual case, a non-zero value with nothing held, needs no key.
            if !o.value.is_zero() && held.is_empty() {
                out.accepted.push(o);
                continue;
            }
            let canonical = o.key.canonical();
            if !o.value.is_zero() {
                if let Some(dropped) = held.remove(&canonical) {
                    out.discarded += dropped.len();
                    tracing::warn!(series = %canonical, polls = dropped.len(), value = %o.value,
                        "A period-to-date value dropped to 0 and came back; the zeros were not stored.");
                }
                out.accepted.push(o);
                continue;
            }
            let pending = held.get(&canonical).map_or(0, Vec::len);
            let suspect = if pending > 0 {
                // Still the same episode unless the period moved on.
                held.get(&canonical)
                    .and_then(|h| h.first())
                    .is_some_and(|first| first.period == o.period)
            } else {
                match store.latest_point(&o.key) {
                    Ok(Some(last)) => last.period == o.period && last.value != Decimal::ZERO,
                    Ok(None) | Err(_) => false,
                }
            };
            if !suspect {
                if let Some(dropped) = held.remove(&canonical) {
                    out.discarded += dropped.len();
                }
                out.accepted.push(o);
                continue;
            }
            let episode = held.entry(canonical.clone()).or_default();
            episode.push(o);
            if episode.len() >= self.confirm_polls {
                let confirmed = held.remove(&canonical).unwrap_or_default();
                tracing::warn!(series = %canonical, polls = confirmed.len(),
                    "A period-to-date value dropped to 0 within its period and stayed there; stored.");
                out.confirmed += confirmed.len();
                out.accepted.extend(confirmed);
            } else {
                out.held += 1;
                tracing::info!(series = %canonical, polls = episode.len(), confirm_after = self.confirm_polls,
                    "A period-to-date value dropped to 0 within its period; held until it persists.");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Period, SeriesKey, Unit};
    use crate::store::SqliteStore;
    use jiff::{Timestamp, ToSpan};

    fn t0() -> Timestamp {
        "2026-03-10T00:00:00Z".parse().unwrap()
    }

    fn march() -> Period {
        Period {
            start: "2026-03-01T00:00:00Z".parse().unwrap(),
            end: "2026-04-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn april() -> Period {
        Period {
            start: "2026-04-01T00:00:00Z".parse().unwrap(),
            end: "2026-05-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn key(metric: &str) -> SeriesKey {
        SeriesKey::new("rackspace", "acct-1", metric).with_label("currency", "USD")
    }

    fn ptd(hour: i64, period: Period, value: i64) -> Observation {
        Observation {
            key: key("spend_ptd"),
            at: t0() + hour.hours(),
            period: Some(period),
            value: Decimal::from(value),
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(crate::model::Currency::new("USD").unwrap()),
        }
    }

    fn usage(hour: i64, value: i64) -> Observation {
        Observation {
            key: key("usage"),
            kind: ObservationKind::Usage,
            unit: Unit::Quantity("GB".into()),
            ..ptd(hour, march(), value)
        }
    }

    /// Screens and stores one poll, as the runtime does.
    fn poll(guard: &ZeroGuard, store: &SqliteStore, obs: Vec<Observation>) -> Screened {
        let screened = guard.screen(store, obs);
        store.put_observations(&screened.accepted).unwrap();
        screened
    }

    fn stored_values(store: &SqliteStore) -> Vec<(Timestamp, Decimal)> {
        store
            .points(&key("spend_ptd"), t0() - 1.hours(), t0() + 1000.hours())
            .unwrap()
            .into_iter()
            .map(|p| (p.at, p.value))
            .collect()
    }

    #[test]
    fn a_transient_zero_within_the_period_is_never_stored() {
        let store = SqliteStore::open_in_memory().unwrap();
        let guard = ZeroGuard::new(3);
        assert_eq!(
            poll(&guard, &store, vec![ptd(0, march(), 120)])
                .accepted
                .len(),
            1
        );
        let s = poll(&guard, &store, vec![ptd(1, march(), 0), usage(1, 7)]);
        assert_eq!(
            (s.held, s.accepted.len()),
            (1, 1),
            "usage passes, the zero is held"
        );
        assert_eq!(guard.held_series(), 1);
        let s = poll(&guard, &store, vec![ptd(2, march(), 0)]);
        assert_eq!(s.held, 1);
        let s = poll(&guard, &store, vec![ptd(3, march(), 125)]);
        assert_eq!((s.discarded, s.accepted.len()), (2, 1));
        assert_eq!(guard.held_series(), 0);
        let values: Vec<Decimal> = stored_values(&store).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, vec![Decimal::from(120), Decimal::from(125)]);
    }

    #[test]
    fn a_zero_that_persists_is_stored_from_its_first_poll() {
        let store = SqliteStore::open_in_memory().unwrap();
        let guard = ZeroGuard::new(3);
        poll(&guard, &store, vec![ptd(0, march(), 120)]);
        poll(&guard, &store, vec![ptd(1, march(), 0)]);
        poll(&guard, &store, vec![ptd(2, march(), 0)]);
        let s = poll(&guard, &store, vec![ptd(3, march(), 0)]);
        assert_eq!((s.confirmed, s.held), (3, 0));
        assert_eq!(guard.held_series(), 0);
        let stored = stored_values(&store);
        assert_eq!(
            stored,
            vec![
                (t0(), Decimal::from(120)),
                (t0() + 1.hours(), Decimal::ZERO)
            ],
            "the zero dates from when it first appeared"
        );
        // Once stored, further zeros are ordinary re-polls.
        assert_eq!(poll(&guard, &store, vec![ptd(4, march(), 0)]).held, 0);
    }

    #[test]
    fn zeros_that_are_not_drops_pass_at_once() {
        let store = SqliteStore::open_in_memory().unwrap();
        let guard = ZeroGuard::new(3);
        // A new series starting at zero, and a zero at the start of a new period.
        assert_eq!(
            poll(&guard, &store, vec![ptd(0, march(), 0)])
                .accepted
                .len(),
            1
        );
        poll(&guard, &store, vec![ptd(1, march(), 50)]);
        let s = poll(&guard, &store, vec![ptd(2, april(), 0)]);
        assert_eq!((s.held, s.accepted.len()), (0, 1));
        // Traffic and usage zeros are never held.
        let s = poll(&guard, &store, vec![usage(3, 0)]);
        assert_eq!((s.held, s.accepted.len()), (0, 1));
    }

    #[test]
    fn a_held_episode_ends_when_the_period_moves_on() {
        let store = SqliteStore::open_in_memory().unwrap();
        let guard = ZeroGuard::new(3);
        poll(&guard, &store, vec![ptd(0, march(), 80)]);
        assert_eq!(poll(&guard, &store, vec![ptd(1, march(), 0)]).held, 1);
        let s = poll(&guard, &store, vec![ptd(2, april(), 0)]);
        assert_eq!((s.discarded, s.held, s.accepted.len()), (1, 0, 1));
        assert_eq!(guard.held_series(), 0);
    }

    #[test]
    fn one_poll_accepts_everything_when_confirmation_is_off() {
        let store = SqliteStore::open_in_memory().unwrap();
        let guard = ZeroGuard::new(1);
        poll(&guard, &store, vec![ptd(0, march(), 80)]);
        let s = poll(&guard, &store, vec![ptd(1, march(), 0)]);
        assert_eq!((s.held, s.accepted.len()), (0, 1));
    }
}
