//! The per-address connection cap: at most so many open connections from one client
//! address, so that one client (an idle HTTP/2 or gRPC connection costs it nothing)
//! cannot hold every connection a server allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open connections per client address. It holds an entry only for an address with an open
/// connection, so it is never larger than the number of connections open.
pub struct AddressSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
}

/// One connection's place in [`AddressSlots`], given back when dropped: hold it for as
/// long as the connection is open.
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    address: IpAddr,
}

impl AddressSlots {
    /// Slots for at most `max_per_address` connections from each address.
    pub fn new(max_per_address: usize) -> Arc<AddressSlots> {
        Arc::new(AddressSlots {
            open: Mutex::new(HashMap::new()),
            max_per_address,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Every update completes before the lock is released, so a poisoned lock still
        // holds consistent counts.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more connection from `address`, or `None` when it has
    /// `max_per_address` open already.
    pub fn take(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let mut open = self.lock();
        let count = open.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            if *count == 0 {
                // A cap of 0 leaves no entry behind either.
                open.remove(&address);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            address,
        })
    }

    /// Connections open from `address`.
    pub fn open(&self, address: IpAddr) -> usize {
        self.lock().get(&address).copied().unwrap_or(0)
    }

    /// Addresses with a connection open.
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_slots_and_gives_them_back() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        // Another address has slots of its own.
        let b1 = slots.take(b).unwrap();
        assert_eq!((slots.open(a), slots.open(b)), (2, 1));
        drop(a1);
        let a3 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        drop((a2, a3, b1));
        // An address with nothing open has no entry.
        assert_eq!(slots.addresses(), 0);
        assert_eq!(slots.open(a), 0);
    }

    #[test]
    fn a_cap_of_zero_refuses_every_connection_and_keeps_nothing() {
        let slots = AddressSlots::new(0);
        assert!(slots.take("127.0.0.2".parse().unwrap()).is_none());
        assert_eq!(slots.addresses(), 0);
    }
}
