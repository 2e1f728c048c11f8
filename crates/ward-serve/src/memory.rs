//! The server-wide budget of request memory: every request reserves the bytes of its body
//! as they arrive, and the room its decompression may take, before they are allocated,
//! and holds them until its answer is built. A request that finds the budget spent gets
//! 503 with `Retry-After` at once.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Permits count KiB: a budget of many GiB stays within the semaphore's range.
const UNIT: u64 = 1024;

pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    bytes: u64,
}

/// What one request holds of the budget; given back when dropped.
#[derive(Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units)),
            bytes,
        }
    }

    /// Grows `held` to cover `total` bytes, or refuses without waiting.
    pub fn reserve(&self, held: &mut Reservation, total: u64) -> Result<(), ApiError> {
        let have = held.permit.as_ref().map_or(0, |p| p.num_permits());
        let want = usize::try_from(total.div_ceil(UNIT)).unwrap_or(usize::MAX);
        if want <= have {
            return Ok(());
        }
        let more = u32::try_from(want - have).map_err(|_| self.spent())?;
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| self.spent())?;
        match &mut held.permit {
            Some(p) => p.merge(permit),
            None => held.permit = Some(permit),
        }
        Ok(())
    }

    /// Shrinks `held` to `total` bytes, giving the rest back.
    pub fn release_to(&self, held: &mut Reservation, total: u64) {
        let keep = usize::try_from(total.div_ceil(UNIT)).unwrap_or(usize::MAX);
        if let Some(p) = &mut held.permit {
            if p.num_permits() > keep {
                drop(p.split(p.num_permits() - keep));
            }
        }
    }

    fn spent(&self) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request-memory",
            format!(
                "requests in progress hold the server's request memory ({} bytes); retry later",
                self.bytes
            ),
        )
        .retry_after(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_budget_and_are_given_back() {
        let budget = MemoryBudget::new(10 * UNIT);
        let mut a = Reservation::default();
        budget.reserve(&mut a, 6 * UNIT).unwrap();
        budget.reserve(&mut a, 6 * UNIT).unwrap();
        let mut b = Reservation::default();
        let refused = budget.reserve(&mut b, 5 * UNIT).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        budget.reserve(&mut b, 4 * UNIT).unwrap();
        budget.release_to(&mut a, UNIT + 1);
        budget.reserve(&mut b, 8 * UNIT).unwrap();
        drop(a);
        budget.reserve(&mut b, 10 * UNIT).unwrap();
        assert!(budget.reserve(&mut b, 10 * UNIT + 1).is_err());
    }
}
