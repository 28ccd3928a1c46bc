//! A socket's event budget: the per-socket rate limit on client events.

use std::time::Instant;

use crate::engineio::admission::TokenBucket;

/// A socket's event budget: events over the rate are refused; a socket that
/// keeps exceeding it is closed.
#[derive(Debug, Clone)]
pub struct EventBudget {
    bucket: TokenBucket,
    refused_in_row: u32,
    close_after: u32,
}

/// What to do with one incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventVerdict {
    Accept,
    Refuse,
    /// Sustained abuse: close the socket.
    Close,
}

impl EventBudget {
    pub fn new(rate: f64, burst: u32, close_after: u32, now: Instant) -> EventBudget {
        EventBudget {
            bucket: TokenBucket::new(rate, burst.max(1) as f64, now),
            refused_in_row: 0,
            close_after,
        }
    }

    pub fn check(&mut self, now: Instant) -> EventVerdict {
        if self.bucket.try_take(now) {
            self.refused_in_row = 0;
            EventVerdict::Accept
        } else {
            self.refused_in_row += 1;
            if self.refused_in_row >= self.close_after {
                EventVerdict::Close
            } else {
                EventVerdict::Refuse
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn event_budget_refuses_then_closes_on_sustained_abuse() {
        let t0 = Instant::now();
        let mut e = EventBudget::new(1.0, 2, 3, t0);
        assert_eq!(e.check(t0), EventVerdict::Accept);
        assert_eq!(e.check(t0), EventVerdict::Accept);
        assert_eq!(e.check(t0), EventVerdict::Refuse);
        assert_eq!(e.check(t0), EventVerdict::Refuse);
        assert_eq!(e.check(t0), EventVerdict::Close);
        let mut e = EventBudget::new(1.0, 1, 3, t0);
        assert_eq!(e.check(t0), EventVerdict::Accept);
        assert_eq!(e.check(t0), EventVerdict::Refuse);
        assert_eq!(e.check(t0 + Duration::from_secs(1)), EventVerdict::Accept);
        assert_eq!(e.check(t0 + Duration::from_secs(1)), EventVerdict::Refuse);
    }
}
