//! Protocol time: the monotonic `LocalTime` the protocol core runs its timers on, the wall
//! clock it is paired with in `Now`, and the `Clock`s that produce them (the system's, and a
//! manual one for tests and the simulator).
//!
//! Owns reading the clocks. Never sleeps and never schedules anything: the shells decide
//! when to wake, the core only compares times it is given.

use std::ops::{Add, Sub};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A point on a monotonic clock, in milliseconds since the clock's start. Never goes back,
/// whatever the system clock does, so timeouts measured on it cannot be switched off or
/// fired early by a clock change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(u64);

/// A span of monotonic time, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDuration(u64);

impl LocalTime {
    pub const fn from_millis(ms: u64) -> LocalTime {
        LocalTime(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The time since `earlier`; zero if `earlier` is later.
    pub fn since(self, earlier: LocalTime) -> LocalDuration {
        LocalDuration(self.0.saturating_sub(earlier.0))
    }
}

impl LocalDuration {
    pub const ZERO: LocalDuration = LocalDuration(0);

    pub const fn from_millis(ms: u64) -> LocalDuration {
        LocalDuration(ms)
    }

    pub const fn from_secs(secs: u64) -> LocalDuration {
        LocalDuration(secs * 1_000)
    }

    pub const fn from_mins(mins: u64) -> LocalDuration {
        LocalDuration(mins * 60_000)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1_000.0
    }

    pub fn saturating_mul(self, factor: u64) -> LocalDuration {
        LocalDuration(self.0.saturating_mul(factor))
    }
}

impl Add<LocalDuration> for LocalTime {
    type Output = LocalTime;
    fn add(self, d: LocalDuration) -> LocalTime {
        LocalTime(self.0.saturating_add(d.0))
    }
}

impl Sub<LocalDuration> for LocalTime {
    type Output = LocalTime;
    fn sub(self, d: LocalDuration) -> LocalTime {
        LocalTime(self.0.saturating_sub(d.0))
    }
}

impl Add for LocalDuration {
    type Output = LocalDuration;
    fn add(self, d: LocalDuration) -> LocalDuration {
        LocalDuration(self.0.saturating_add(d.0))
    }
}

impl std::fmt::Display for LocalDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// The moment an input reaches the core: monotonic time for its timers, and the wall clock
/// (Unix milliseconds) for what the protocol carries or stores across restarts: VERSION and
/// ADDR timestamps, address-book times, ban expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub local: LocalTime,
    pub unix_ms: u64,
}

/// A fixed wall-clock epoch (Unix ms, January 2027) for tests, benchmarks and the
/// simulator, so that what they record does not depend on when they run.
pub const FIXED_EPOCH_MS: u64 = 1_800_000_000_000;

/// `ms` milliseconds into a run on both clocks: monotonic `ms`, wall `FIXED_EPOCH_MS + ms`.
pub fn after_epoch(ms: u64) -> Now {
    Now {
        local: LocalTime::from_millis(ms),
        unix_ms: FIXED_EPOCH_MS + ms,
    }
}

impl Now {
    pub fn unix_secs(self) -> u64 {
        self.unix_ms / 1_000
    }

    /// The wall-clock time (Unix ms) of an earlier monotonic moment, as the wall clock reads
    /// now: for showing operators when something happened.
    pub fn unix_ms_at(self, t: LocalTime) -> u64 {
        if t >= self.local {
            self.unix_ms + t.since(self.local).as_millis()
        } else {
            self.unix_ms.saturating_sub(self.local.since(t).as_millis())
        }
    }
}

/// A source of `Now`.
pub trait Clock: Send + Sync {
    fn now(&self) -> Now;
}

/// The system clocks: `Instant` for monotonic time, `SystemTime` for the wall clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl SystemClock {
    /// The `Instant` a moment of this clock falls on: for sleeping until a core timer.
    pub fn instant_at(&self, t: LocalTime) -> Instant {
        self.start + std::time::Duration::from_millis(t.as_millis())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now {
            local: LocalTime(self.start.elapsed().as_millis() as u64),
            unix_ms: unix_millis(),
        }
    }
}

/// A clock moved by hand: `advance` moves both clocks as time passing does; `jump_wall`
/// moves only the wall clock, as an operator or NTP setting the system time does.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Now>,
}

impl ManualClock {
    pub fn new(start: Now) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: LocalDuration) {
        let mut now = self.now.lock().expect("clock lock");
        now.local = now.local + by;
        now.unix_ms += by.as_millis();
    }

    /// Sets the wall clock `by_ms` forward (positive) or back (negative).
    pub fn jump_wall(&self, by_ms: i64) {
        let mut now = self.now.lock().expect("clock lock");
        now.unix_ms = now.unix_ms.saturating_add_signed(by_ms);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        *self.now.lock().expect("clock lock")
    }
}

/// The wall clock in Unix milliseconds (0 if the system clock is before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall clock in Unix seconds.
pub fn unix_secs() -> u64 {
    unix_millis() / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_jump_leaves_monotonic_time_alone() {
        let clock = ManualClock::new(Now {
            local: LocalTime::from_millis(5_000),
            unix_ms: 1_800_000_000_000,
        });
        clock.jump_wall(-3_600_000);
        clock.advance(LocalDuration::from_secs(2));
        let now = clock.now();
        assert_eq!(now.local, LocalTime::from_millis(7_000));
        assert_eq!(now.unix_ms, 1_800_000_000_000 - 3_600_000 + 2_000);
    }

    #[test]
    fn earlier_moments_map_to_wall_time_as_it_reads_now() {
        let now = Now {
            local: LocalTime::from_millis(10_000),
            unix_ms: 1_000_000,
        };
        assert_eq!(now.unix_ms_at(LocalTime::from_millis(4_000)), 994_000);
        assert_eq!(now.unix_ms_at(LocalTime::from_millis(12_000)), 1_002_000);
    }

    #[test]
    fn the_system_clock_never_goes_back() {
        let clock = SystemClock::new();
        let a = clock.now().local;
        let b = clock.now().local;
        assert!(b >= a);
        assert!(LocalTime::from_millis(1).since(LocalTime::from_millis(5)) == LocalDuration::ZERO);
    }
}
