//! Rate and concurrency limits: a token bucket, and the per-IP admission
//! control that guards the handshake.
//!
//! Each limit refuses with a typed reason that is shown to the client and
//! counted, so an operator can tell abuse from capacity problems.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely (an idle client).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many concurrent connections from this address")]
    TooManyConnections,
    #[error("connection rate limit exceeded for this address")]
    RateLimited,
}

#[derive(Debug)]
struct IpState {
    active: u32,
    bucket: TokenBucket,
}

/// Per-IP connection admission: concurrent sessions and new sessions a
/// second. Entries of idle addresses are swept so the table stays bounded
/// by the addresses actually connected or recently active.
#[derive(Debug, Clone)]
pub struct IpLimiter {
    inner: Arc<Mutex<HashMap<IpAddr, IpState>>>,
    admitted: Arc<std::sync::atomic::AtomicU64>,
    max_concurrent: u32,
    rate: f64,
    burst: f64,
}

/// Held for the life of a session; releases its address's slot on drop.
#[derive(Debug)]
pub struct IpSlot {
    /// The limiter's table only (not a whole limiter: this is kept by every
    /// session).
    table: Arc<Mutex<HashMap<IpAddr, IpState>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.table.lock();
        if let Some(state) = map.get_mut(&self.ip) {
            state.active = state.active.saturating_sub(1);
        }
    }
}

impl IpLimiter {
    pub fn new(max_concurrent: u32, rate_per_sec: f64, burst: u32) -> IpLimiter {
        IpLimiter {
            inner: Arc::new(Mutex::new(HashMap::new())),
            admitted: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            max_concurrent,
            rate: rate_per_sec,
            burst: burst.max(1) as f64,
        }
    }

    pub fn admit(&self, ip: IpAddr) -> Result<IpSlot, Refusal> {
        let now = Instant::now();
        // Amortised clean-up: the table never outgrows the addresses seen in
        // the last few thousand handshakes plus those still connected.
        if self
            .admitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY_ADMISSIONS)
        {
            self.sweep(now);
        }
        self.admit_at(ip, now)
    }

    pub fn admit_at(&self, ip: IpAddr, now: Instant) -> Result<IpSlot, Refusal> {
        let mut map = self.inner.lock();
        let state = map.entry(ip).or_insert_with(|| IpState {
            active: 0,
            bucket: TokenBucket::new(self.rate, self.burst, now),
        });
        if state.active >= self.max_concurrent {
            return Err(Refusal::TooManyConnections);
        }
        if !state.bucket.try_take(now) {
            return Err(Refusal::RateLimited);
        }
        state.active += 1;
        Ok(IpSlot {
            table: self.inner.clone(),
            ip,
        })
    }

    /// Forget addresses with no session and a full bucket.
    pub fn sweep(&self, now: Instant) {
        self.inner
            .lock()
            .retain(|_, s| s.active > 0 || !s.bucket.is_full(now));
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn tracked(&self) -> usize {
        self.inner.lock().len()
    }
}

/// The node-wide session cap (`server.max_connections`). Counted when a
/// handshake is admitted, not when its session actor registers, so
/// concurrent handshakes (on several workers) cannot overshoot it.
#[derive(Debug, Clone)]
pub struct Capacity {
    active: Arc<AtomicUsize>,
    max: usize,
}

/// A place under [`Capacity`], released on drop.
#[derive(Debug)]
pub struct CapacitySlot(Arc<AtomicUsize>);

impl Drop for CapacitySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Capacity {
    pub fn new(max: usize) -> Capacity {
        Capacity {
            active: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A place, if fewer than `max` are taken.
    pub fn try_acquire(&self) -> Option<CapacitySlot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| CapacitySlot(self.active.clone()))
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn in_use(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

/// What an admitted session holds for its life: its place under the node's
/// cap and its address's.
#[derive(Debug)]
pub struct SessionSlot {
    // Held for their `Drop`, which gives the places back.
    #[allow(dead_code)]
    pub capacity: CapacitySlot,
    #[allow(dead_code)]
    pub ip: Option<IpSlot>,
}

/// How often (in admissions) [`IpLimiter::admit`] sweeps idle addresses.
pub const SWEEP_EVERY_ADMISSIONS: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn ip_limiter_bounds_concurrency_and_releases_on_drop() {
        let l = IpLimiter::new(2, 1000.0, 1000);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = l.admit(ip).unwrap();
        let _b = l.admit(ip).unwrap();
        assert_eq!(l.admit(ip).unwrap_err(), Refusal::TooManyConnections);
        drop(a);
        assert!(l.admit(ip).is_ok());
    }

    #[test]
    fn ip_limiter_rate_limits_and_other_addresses_are_unaffected() {
        let l = IpLimiter::new(100, 1.0, 2);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let _s1 = l.admit_at(a, t0).unwrap();
        let _s2 = l.admit_at(a, t0).unwrap();
        assert_eq!(l.admit_at(a, t0).unwrap_err(), Refusal::RateLimited);
        assert!(l.admit_at(b, t0).is_ok());
        assert!(l.admit_at(a, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn sweep_forgets_idle_addresses_only() {
        let l = IpLimiter::new(10, 1.0, 1);
        let t0 = Instant::now();
        let held = l.admit_at("10.0.0.1".parse().unwrap(), t0).unwrap();
        drop(l.admit_at("10.0.0.2".parse().unwrap(), t0).unwrap());
        l.sweep(t0 + Duration::from_secs(5));
        assert_eq!(l.tracked(), 1);
        drop(held);
        l.sweep(t0 + Duration::from_secs(10));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn capacity_bounds_and_releases_on_drop() {
        let c = Capacity::new(2);
        let a = c.try_acquire().unwrap();
        let _b = c.try_acquire().unwrap();
        assert!(c.try_acquire().is_none());
        drop(a);
        assert_eq!(c.in_use(), 1);
        assert!(c.try_acquire().is_some());
    }
}
