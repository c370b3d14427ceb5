//! Per-seller rate limit on `POST /uploads` (GCRA via `governor`), answered with
//! `429 rate-limited` and `Retry-After`.
//!
//! State is in memory, per process: with several replicas each enforces the quota on
//! its own share of the traffic, so the effective limit is at most replicas × quota.
//! A background task drops idle sellers so memory stays bounded.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use service_kit::auth::SellerId;

use crate::error::{AppError, AppResult};

pub struct UploadRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl UploadRateLimiter {
    /// `per_minute` sustained, with bursts of up to `burst` requests.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        UploadRateLimiter {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `seller`'s allowance, or says how long to wait.
    pub fn check(&self, seller: &SellerId) -> AppResult<()> {
        match self.limiter.check_key(&seller.as_str().to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                metrics::counter!("app_upload_rate_limited_total").increment(1);
                Err(AppError::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }

    /// Forgets sellers whose allowance is full again (bounded memory).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Runs [`Self::forget_idle`] every `period` until the task is dropped.
    pub async fn run_housekeeping(self: std::sync::Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            self.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_429_with_retry_after_per_seller() {
        let limiter =
            UploadRateLimiter::new(NonZeroU32::new(6).unwrap(), NonZeroU32::new(2).unwrap());
        let alice = SellerId::parse("alice").unwrap();
        let bob = SellerId::parse("bob").unwrap();
        limiter.check(&alice).unwrap();
        limiter.check(&alice).unwrap();
        match limiter.check(&alice) {
            Err(AppError::RateLimited { retry_after_secs }) => {
                assert!((1..=10).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Another seller has an allowance of their own.
        limiter.check(&bob).unwrap();
        limiter.forget_idle();
    }
}
