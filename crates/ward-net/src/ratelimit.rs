//! Per-principal rate limits (a token bucket) and daily query budgets.
//!
//! The rate limit counts requests; a service checks it right after authentication, before
//! it reads the request, so a flood costs it little per request. The budget counts
//! queries, whatever the service calls one (`ward serve`: the rows of a request's batch,
//! so an extraction attack that packs its queries into one request spends its budget as
//! fast as one that does not). [`RateLimiter::check`] refuses a spent budget too, before
//! the request is read; [`RateLimiter::charge`] refuses a request whose queries would
//! overrun it, whole.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::error::NetError;
use crate::tokens::Principal;

pub const DEFAULT_RATE_PER_SECOND: f64 = 100.0;
pub const DEFAULT_BURST: u32 = 200;
pub const DEFAULT_DAILY_BUDGET: u64 = 100_000;
/// Most principals tracked; the tokens file bounds it, this is a second guard.
const MAX_TRACKED: usize = 100_000;

/// The defaults for principals whose token entry does not set its own (`ward serve`'s
/// `[rate]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    pub rate_per_second: f64,
    pub burst: u32,
    pub daily_budget: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            burst: DEFAULT_BURST,
            daily_budget: DEFAULT_DAILY_BUDGET,
        }
    }
}

impl RateConfig {
    pub fn validate(&self) -> Result<(), NetError> {
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0) {
            return Err(NetError::RateConfig {
                key: "rate_per_second",
                must: "a positive number",
            });
        }
        if self.burst == 0 {
            return Err(NetError::RateConfig {
                key: "burst",
                must: "at least 1",
            });
        }
        Ok(())
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    day: u64,
    used_today: u64,
}

pub struct RateLimiter {
    defaults: RateConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

fn unix_day_and_seconds_left() -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (now / 86_400, 86_400 - now % 86_400)
}

impl RateLimiter {
    pub fn new(defaults: RateConfig) -> RateLimiter {
        RateLimiter {
            defaults,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one query from the principal's bucket and budget, or says when to retry.
    pub fn check(&self, principal: &Principal) -> Result<(), NetError> {
        self.check_at(principal, Instant::now(), unix_day_and_seconds_left())
    }

    fn check_at(
        &self,
        principal: &Principal,
        now: Instant,
        (day, seconds_left): (u64, u64),
    ) -> Result<(), NetError> {
        let rate = principal
            .rate_per_second
            .unwrap_or(self.defaults.rate_per_second);
        let burst = f64::from(principal.burst.unwrap_or(self.defaults.burst));
        let budget = principal.daily_budget.unwrap_or(self.defaults.daily_budget);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&principal.name) {
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
            buckets.insert(
                principal.name.clone(),
                Bucket {
                    tokens: burst,
                    refilled: now,
                    day,
                    used_today: 0,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(&principal.name) else {
            return Ok(());
        };
        if bucket.day != day {
            bucket.day = day;
            bucket.used_today = 0;
        }
        if bucket.used_today >= budget {
            return Err(NetError::BudgetSpent {
                budget,
                retry_after_seconds: seconds_left,
            });
        }
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            let wait = ((1.0 - bucket.tokens) / rate).ceil() as u64;
            return Err(NetError::RateLimited {
                rate_per_second: rate,
                retry_after_seconds: wait,
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Spends `queries` of the principal's daily budget, all or none.
    pub fn charge(&self, principal: &Principal, queries: u64) -> Result<(), NetError> {
        self.charge_at(principal, queries, unix_day_and_seconds_left())
    }

    fn charge_at(
        &self,
        principal: &Principal,
        queries: u64,
        (day, seconds_left): (u64, u64),
    ) -> Result<(), NetError> {
        let budget = principal.daily_budget.unwrap_or(self.defaults.daily_budget);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bucket) = buckets.get_mut(&principal.name) else {
            // `check` always runs first; a principal it has not seen has spent nothing.
            return Ok(());
        };
        if bucket.day != day {
            bucket.day = day;
            bucket.used_today = 0;
        }
        let left = budget.saturating_sub(bucket.used_today);
        if queries > left {
            return Err(NetError::BudgetShort {
                queries,
                left,
                budget,
                retry_after_seconds: seconds_left,
            });
        }
        bucket.used_today += queries;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{entry_for, entry_toml, Tokens};
    use std::time::Duration;

    fn principal(extra: &str) -> Principal {
        let text = entry_toml(&entry_for("t", "alice", vec!["infer".into()], None)) + extra;
        Tokens::parse(&text, &["infer"])
            .unwrap()
            .authenticate("t")
            .unwrap()
            .clone()
    }

    #[test]
    fn burst_then_refill_then_budget() {
        let limiter = RateLimiter::new(RateConfig {
            rate_per_second: 2.0,
            burst: 3,
            daily_budget: 5,
        });
        let p = principal("");
        let t0 = Instant::now();
        let day = (10, 500);
        for _ in 0..3 {
            limiter.check_at(&p, t0, day).unwrap();
            limiter.charge_at(&p, 1, day).unwrap();
        }
        let err = limiter.check_at(&p, t0, day).unwrap_err();
        assert!(
            matches!(
                err,
                NetError::RateLimited {
                    retry_after_seconds: 1,
                    ..
                }
            ),
            "{err}"
        );
        // Half a second refills one token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        limiter.check_at(&p, t1, day).unwrap();
        // A batch of 3 rows does not fit in the 2 queries left; it is refused whole.
        let err = limiter.charge_at(&p, 3, day).unwrap_err();
        assert!(matches!(err, NetError::BudgetShort { .. }), "{err}");
        assert!(
            err.to_string().contains("holds 3 queries, but only 2"),
            "{err}"
        );
        limiter.charge_at(&p, 2, day).unwrap();
        let t2 = t1 + Duration::from_secs(10);
        let err = limiter.check_at(&p, t2, day).unwrap_err();
        assert!(matches!(err, NetError::BudgetSpent { .. }), "{err}");
        assert_eq!(err.retry_after_seconds(), Some(500));
        // A new day resets the budget.
        limiter.check_at(&p, t2, (11, 86_400)).unwrap();
        limiter.charge_at(&p, 5, (11, 86_400)).unwrap();
    }

    #[test]
    fn a_token_entry_overrides_the_defaults() {
        let limiter = RateLimiter::new(RateConfig::default());
        let p = principal("daily_budget = 1\n");
        let now = Instant::now();
        limiter.check_at(&p, now, (1, 9)).unwrap();
        limiter.charge_at(&p, 1, (1, 9)).unwrap();
        assert!(matches!(
            limiter.check_at(&p, now, (1, 9)),
            Err(NetError::BudgetSpent { budget: 1, .. })
        ));
    }
}
