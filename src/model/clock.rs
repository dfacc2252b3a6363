//! The one place that reads the time. Eval and alerting take `at` as an argument;
//! only the runtime asks a `Clock`, which lets `demo` run a month in a minute.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// Simulated time: `origin + real elapsed × speed`.
    Simulated {
        real_origin: Instant,
        sim_origin: Timestamp,
        speed: f64,
    },
}

impl Clock {
    pub fn simulated(sim_origin: Timestamp, speed: f64) -> Clock {
        Clock::Simulated {
            real_origin: Instant::now(),
            sim_origin,
            speed: speed.max(f64::MIN_POSITIVE),
        }
    }

    pub fn now(&self) -> Timestamp {
        match *self {
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
        }
    }

    /// How long `clock_time` of this clock lasts in real time.
    pub fn real_duration(&self, clock_time: Duration) -> Duration {
        clock_time.div_f64(self.speed())
    }

    /// Sleeps for `clock_time` as this clock counts it.
    pub async fn sleep(&self, clock_time: Duration) {
        tokio::time::sleep(self.real_duration(clock_time)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
