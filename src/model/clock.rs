//! The one place that reads the time. Eval and alerting take `at` as an argument;
//! only the runtime asks a `Clock`, which lets `demo` run a month in a minute.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// Simulated time: `origin + real elapsed × speed`.
    Simulated {
        real_origin: Instant,
        sim_origin: Timestamp,
        speed: f64,
    },
    /// Simulated time that moves only when every participating task is asleep, to the earliest
    /// wake-up, and never faster than `speed` × real time. A busy machine slows the demo down
    /// instead of making it skip polls and evaluations, so what it shows does not depend on load.
    Lockstep(Arc<Lockstep>),
}

impl Clock {
    pub fn simulated(sim_origin: Timestamp, speed: f64) -> Clock {
        Clock::Simulated {
            real_origin: Instant::now(),
            sim_origin,
            speed: speed.max(f64::MIN_POSITIVE),
        }
    }

    /// A lockstep clock starting at `sim_origin`; its driver runs on the current tokio runtime.
    pub fn lockstep(sim_origin: Timestamp, speed: f64) -> Clock {
        let (now, _) = watch::channel(sim_origin);
        let clock = Arc::new(Lockstep {
            real_origin: Instant::now(),
            sim_origin,
            speed: speed.max(f64::MIN_POSITIVE),
            now,
            state: Mutex::new(StepState::default()),
            changed: Notify::new(),
        });
        tokio::spawn(drive(Arc::downgrade(&clock)));
        Clock::Lockstep(clock)
    }

    /// Marks the calling task as one the lockstep clock waits for before it moves; held for
    /// the task's life. A no-op for the other clocks.
    pub fn participate(&self) -> Participant {
        if let Clock::Lockstep(c) = self {
            c.lock().participants += 1;
            c.changed.notify_one();
        }
        Participant {
            clock: match self {
                Clock::Lockstep(c) => Some(c.clone()),
                _ => None,
            },
        }
    }

    /// How many tasks a lockstep clock waits for now (0 for the other clocks).
    pub fn participants(&self) -> usize {
        match self {
            Clock::Lockstep(c) => c.lock().participants,
            _ => 0,
        }
    }

    /// Waits until this clock reads `at` or later, without holding the clock back.
    pub async fn wait_until(&self, at: Timestamp) {
        match self {
            Clock::Lockstep(c) => {
                let mut rx = c.now.subscribe();
                let _ = rx.wait_for(|now| *now >= at).await;
            }
            _ => {
                let left = at.duration_since(self.now());
                if left.is_positive() {
                    self.sleep(left.unsigned_abs()).await;
                }
            }
        }
    }

    pub fn now(&self) -> Timestamp {
        match *self {
            Clock::Lockstep(ref c) => *c.now.borrow(),
            Clock::System => Timestamp::now(),
            Clock::Simulated {
                real_origin,
                sim_origin,
                speed,
            } => {
                let elapsed = real_origin.elapsed().as_secs_f64() * speed;
                let offset =
                    SignedDuration::try_from_secs_f64(elapsed).unwrap_or(SignedDuration::MAX);
                sim_origin.saturating_add(offset).unwrap_or(sim_origin)
            }
        }
    }

    pub fn speed(&self) -> f64 {
        match *self {
            Clock::System => 1.0,
            Clock::Simulated { speed, .. } => speed,
            Clock::Lockstep(ref c) => c.speed,
        }
    }

    /// How long `clock_time` of this clock lasts in real time.
    pub fn real_duration(&self, clock_time: Duration) -> Duration {
        clock_time.div_f64(self.speed())
    }

    /// Sleeps for `clock_time` as this clock counts it.
    pub async fn sleep(&self, clock_time: Duration) {
        match self {
            Clock::Lockstep(c) => {
                let target = self
                    .now()
                    .saturating_add(
                        SignedDuration::try_from(clock_time).unwrap_or(SignedDuration::MAX),
                    )
                    .unwrap_or(Timestamp::MAX);
                let mut rx = c.now.subscribe();
                let _sleeping = c.sleep_at(target);
                let _ = rx.wait_for(|now| *now >= target).await;
            }
            _ => tokio::time::sleep(self.real_duration(clock_time)).await,
        }
    }
}

/// See [`Clock::Lockstep`].
#[derive(Debug)]
pub struct Lockstep {
    real_origin: Instant,
    sim_origin: Timestamp,
    speed: f64,
    now: watch::Sender<Timestamp>,
    state: Mutex<StepState>,
    /// Wakes the driver when a task goes to sleep or stops participating.
    changed: Notify,
}

#[derive(Debug, Default)]
struct StepState {
    participants: usize,
    /// Sleeping tasks by id, with the time they wake at.
    sleepers: BTreeMap<u64, Timestamp>,
    next_id: u64,
}

impl Lockstep {
    fn lock(&self) -> std::sync::MutexGuard<'_, StepState> {
        // The state is a counter and a map; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_at(self: &Arc<Self>, target: Timestamp) -> Sleeping {
        let id = {
            let mut s = self.lock();
            s.next_id += 1;
            let id = s.next_id;
            s.sleepers.insert(id, target);
            id
        };
        self.changed.notify_one();
        Sleeping {
            clock: self.clone(),
            id,
        }
    }

    /// Where real time allows the clock to be by now.
    fn paced_limit(&self) -> Timestamp {
        let ahead = self.real_origin.elapsed().as_secs_f64() * self.speed;
        self.sim_origin
            .saturating_add(SignedDuration::try_from_secs_f64(ahead).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    }
}

/// A sleeping task's registration; dropped when it wakes or stops waiting.
struct Sleeping {
    clock: Arc<Lockstep>,
    id: u64,
}

impl Drop for Sleeping {
    fn drop(&mut self) {
        self.clock.lock().sleepers.remove(&self.id);
    }
}

/// A task the lockstep clock waits for.
#[derive(Debug)]
pub struct Participant {
    clock: Option<Arc<Lockstep>>,
}

impl Drop for Participant {
    fn drop(&mut self) {
        if let Some(c) = &self.clock {
            let mut s = c.lock();
            s.participants = s.participants.saturating_sub(1);
            drop(s);
            c.changed.notify_one();
        }
    }
}

/// Moves a lockstep clock: once every participant sleeps, to the earliest wake-up (paced by
/// real time); wakes those sleepers before the next step so none is skipped.
async fn drive(clock: Weak<Lockstep>) {
    const TICK: Duration = Duration::from_millis(10);
    loop {
        let Some(c) = clock.upgrade() else { return };
        let changed = c.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let next = {
            let s = c.lock();
            let all_asleep = s.sleepers.len() >= s.participants;
            let earliest = s.sleepers.values().min().copied();
            (all_asleep || s.participants == 0).then_some(earliest)
        };
        let Some(earliest) = next else {
            // Bounded, so the driver notices when the clock itself is gone.
            let _ = tokio::time::timeout(Duration::from_millis(250), changed).await;
            continue;
        };
        let limit = c.paced_limit();
        let target = earliest.map_or(limit, |e| e.min(limit).max(*c.now.borrow()));
        if target > *c.now.borrow() {
            // Woken sleepers are taken off the list now, so the next step waits for them.
            c.lock().sleepers.retain(|_, wake| *wake > target);
            c.now.send_replace(target);
        }
        if earliest.is_none_or(|e| e > limit) {
            tokio::time::sleep(TICK).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two participants sleeping different intervals: the clock visits every wake-up in order,
    /// and does not move while one of them is busy, however long that takes in real time.
    #[tokio::test]
    async fn lockstep_waits_for_every_participant() {
        let origin: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        // Joined at once: with no participants the clock runs at its paced speed.
        let clock = Clock::lockstep(origin, 1e9);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, every) in [("a", 3600u64), ("b", 5400)] {
            let clock = clock.clone();
            let seen = seen.clone();
            // Joined before the task starts, so the clock cannot run ahead of it.
            let participant = clock.participate();
            tasks.push(tokio::spawn(async move {
                let _p = participant;
                for _ in 0..4 {
                    seen.lock().unwrap().push((name, clock.now()));
                    // Real work between sleeps: the clock must not move meanwhile.
                    let before = clock.now();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    assert_eq!(clock.now(), before, "{name}: the clock moved while busy");
                    clock.sleep(Duration::from_secs(every)).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        let at = |name: &str| -> Vec<i64> {
            seen.iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, t)| t.duration_since(origin).as_secs())
                .collect()
        };
        assert_eq!(at("a"), [0, 3600, 7200, 10800]);
        assert_eq!(at("b"), [0, 5400, 10800, 16200]);
    }

    #[tokio::test]
    async fn lockstep_is_paced_by_real_time() {
        let origin: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let clock = Clock::lockstep(origin, 3600.0);
        let _p = clock.participate();
        let started = Instant::now();
        clock.sleep(Duration::from_secs(360)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "six simulated minutes at 3,600× take 100 ms of real time: {:?}",
            started.elapsed()
        );
        assert!(clock.now().duration_since(origin) >= SignedDuration::from_secs(360));
    }

    #[test]
    fn simulated_clock_runs_faster() {
        let origin: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let clock = Clock::simulated(origin, 86_400.0);
        assert!(clock.now() >= origin);
        assert_eq!(
            clock.real_duration(Duration::from_secs(86_400)),
            Duration::from_secs(1)
        );
    }
}
