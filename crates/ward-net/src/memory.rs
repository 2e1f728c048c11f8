//! The budget of request memory, shared fairly: every request reserves the bytes it
//! allocates for its body as they arrive, and the room its decompression may take, before
//! allocating them, and holds them until its answer is built. The budget bounds the sum
//! over all requests; each holder (a principal, or before authentication a client
//! address) may hold at most its share of it, so one client with many connections cannot
//! hold the memory every other client needs.
//!
//! Nothing here knows a transport: a refusal is a [`NetError::MemorySpent`] or
//! [`NetError::MemoryShareSpent`] with the numbers, and the transport decides what to
//! answer (`ward-serve` answers 503 with `Retry-After`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::NetError;

#[derive(Default)]
struct Held {
    /// Bytes held by all reservations together.
    total: u64,
    /// Bytes held by each holder; a holder that holds nothing has no entry, so the map is
    /// never larger than the number of reservations alive.
    by_holder: HashMap<String, u64>,
}

struct Shared {
    budget: u64,
    share: u64,
    held: Mutex<Held>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // Every update below is completed before the lock is released (nothing in it can
        // panic), so a poisoned lock still holds consistent numbers.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server-wide budget and the share of it one holder may hold.
#[derive(Clone)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

/// What one request holds of the budget, on behalf of its holder; given back when dropped.
pub struct Reservation {
    shared: Arc<Shared>,
    holder: String,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `budget` bytes of which one holder may hold at most `share` bytes.
    pub fn new(budget: u64, share: u64) -> MemoryBudget {
        MemoryBudget {
            shared: Arc::new(Shared {
                budget,
                share: share.min(budget),
                held: Mutex::new(Held::default()),
            }),
        }
    }

    pub fn budget(&self) -> u64 {
        self.shared.budget
    }

    pub fn share(&self) -> u64 {
        self.shared.share
    }

    /// An empty reservation for `holder` (a principal's name, or a client address before
    /// authentication); it holds nothing until it grows.
    pub fn reservation(&self, holder: impl Into<String>) -> Reservation {
        Reservation {
            shared: self.shared.clone(),
            holder: holder.into(),
            bytes: 0,
        }
    }

    /// Bytes held by every reservation together.
    pub fn held(&self) -> u64 {
        self.shared.lock().total
    }

    /// Bytes held by `holder`'s reservations together.
    pub fn held_by(&self, holder: &str) -> u64 {
        self.shared
            .lock()
            .by_holder
            .get(holder)
            .copied()
            .unwrap_or(0)
    }

    /// Holders that hold anything now.
    pub fn holders(&self) -> usize {
        self.shared.lock().by_holder.len()
    }
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows this reservation to cover `total` bytes, or refuses without waiting (and
    /// then holds what it held before).
    pub fn grow_to(&mut self, total: u64) -> Result<(), NetError> {
        if total <= self.bytes {
            return Ok(());
        }
        let wanted = total - self.bytes;
        let shared = &*self.shared;
        let mut held = shared.lock();
        let mine = held.by_holder.get(&self.holder).copied().unwrap_or(0);
        // A share as large as the budget is no share: what is spent then is the budget.
        if shared.share < shared.budget && mine.saturating_add(wanted) > shared.share {
            return Err(NetError::MemoryShareSpent {
                wanted,
                held: mine,
                share: shared.share,
            });
        }
        if held.total.saturating_add(wanted) > shared.budget {
            return Err(NetError::MemorySpent {
                wanted,
                held: held.total,
                budget: shared.budget,
            });
        }
        held.total += wanted;
        *held.by_holder.entry(self.holder.clone()).or_insert(0) += wanted;
        self.bytes = total;
        Ok(())
    }

    /// Shrinks this reservation to `total` bytes, giving the rest back.
    pub fn shrink_to(&mut self, total: u64) {
        if total >= self.bytes {
            return;
        }
        let freed = self.bytes - total;
        give_back(&self.shared, &self.holder, freed);
        self.bytes = total;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            give_back(&self.shared, &self.holder, self.bytes);
        }
    }
}

fn give_back(shared: &Shared, holder: &str, bytes: u64) {
    let mut held = shared.lock();
    held.total = held.total.saturating_sub(bytes);
    if let Some(mine) = held.by_holder.get_mut(holder) {
        *mine = mine.saturating_sub(bytes);
        if *mine == 0 {
            held.by_holder.remove(holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_budget_and_are_given_back() {
        let budget = MemoryBudget::new(10_000, 10_000);
        let mut a = budget.reservation("a");
        a.grow_to(6_000).unwrap();
        // Growing to what it holds already takes nothing more.
        a.grow_to(6_000).unwrap();
        assert_eq!(budget.held(), 6_000);
        let mut b = budget.reservation("b");
        assert!(matches!(
            b.grow_to(5_000),
            Err(NetError::MemorySpent {
                wanted: 5_000,
                held: 6_000,
                budget: 10_000
            })
        ));
        // A refusal leaves the reservation as it was.
        assert_eq!(b.bytes(), 0);
        b.grow_to(4_000).unwrap();
        a.shrink_to(1_000);
        assert_eq!(budget.held(), 5_000);
        b.grow_to(9_000).unwrap();
        drop(a);
        b.grow_to(10_000).unwrap();
        assert!(matches!(
            b.grow_to(10_001),
            Err(NetError::MemorySpent { .. })
        ));
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn each_holder_holds_at_most_its_share() {
        let budget = MemoryBudget::new(10_000, 4_000);
        // Two requests of one holder count together against its share.
        let mut a1 = budget.reservation("alice");
        let mut a2 = budget.reservation("alice");
        a1.grow_to(3_000).unwrap();
        assert!(matches!(
            a2.grow_to(1_001),
            Err(NetError::MemoryShareSpent {
                wanted: 1_001,
                held: 3_000,
                share: 4_000
            })
        ));
        a2.grow_to(1_000).unwrap();
        assert_eq!(budget.held_by("alice"), 4_000);
        // Another holder has a share of its own, while the budget lasts.
        let mut b = budget.reservation("bob");
        b.grow_to(4_000).unwrap();
        let mut c = budget.reservation("carol");
        assert!(matches!(
            c.grow_to(2_001),
            Err(NetError::MemorySpent { .. })
        ));
        c.grow_to(2_000).unwrap();
        // What one of alice's requests gives back, she may take again.
        a1.shrink_to(0);
        assert_eq!(budget.held_by("alice"), 1_000);
        a2.grow_to(4_000).unwrap();
        assert!(matches!(
            a1.grow_to(1),
            Err(NetError::MemoryShareSpent { .. })
        ));
    }

    #[test]
    fn a_holder_that_holds_nothing_has_no_entry() {
        let budget = MemoryBudget::new(10_000, 5_000);
        let mut a = budget.reservation("alice");
        let mut b = budget.reservation("alice");
        // Reservations that hold nothing make no entry.
        assert_eq!(budget.holders(), 0);
        a.grow_to(100).unwrap();
        b.grow_to(100).unwrap();
        assert_eq!(budget.holders(), 1);
        a.shrink_to(0);
        assert_eq!(budget.holders(), 1);
        drop(b);
        assert_eq!(budget.holders(), 0);
        assert_eq!(budget.held_by("alice"), 0);
        // A refused first reservation makes no entry either.
        assert!(a.grow_to(5_001).is_err());
        assert_eq!(budget.holders(), 0);
        drop(a);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_share_as_large_as_the_budget_is_no_share() {
        let budget = MemoryBudget::new(1_000, 5_000);
        assert_eq!(budget.share(), 1_000);
        let mut a = budget.reservation("a");
        a.grow_to(1_000).unwrap();
        assert!(matches!(
            a.grow_to(1_001),
            Err(NetError::MemorySpent { .. })
        ));
    }
}
