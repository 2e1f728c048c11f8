//! Which server holds which keys. Every member computes the same plan from the job's
//! keys (a name and a length each, in the model's order) and the number of servers, so
//! the plan is never sent.
//!
//! MXNet sends a small key whole to server `(key * 9973) % N` and splits a key of a
//! million values or more evenly across all servers; with two servers that puts every
//! weight on one and every bias on the other. Here keys are balanced by bytes: a key
//! larger than a quarter of one server's fair share is split evenly across all servers
//! (when the update is element-wise, so that a part can be updated alone), and the
//! remaining whole keys go, largest first, to the server holding the fewest values.

/// One key of the job: a trainable parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub name: String,
    pub len: usize,
}

/// One server's piece of a key: values `offset..offset + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpec {
    pub key: u32,
    pub part: u32,
    pub offset: usize,
    pub len: usize,
    pub server: u32,
}

/// The parts of every key, in key then part order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub keys: Vec<KeySpec>,
    pub parts: Vec<PartSpec>,
    pub servers: u32,
}

/// Keys smaller than this are never split: a part would cost more in messages than it
/// balances.
pub const MIN_SPLIT: usize = 16 * 1024;

impl Plan {
    /// The plan for `keys` on `servers` servers. `splittable`: whether the optimizer
    /// updates each value on its own (so a key may be split).
    pub fn new(keys: Vec<KeySpec>, servers: u32, splittable: bool) -> Plan {
        let servers = servers.max(1);
        let n = servers as usize;
        let total: usize = keys.iter().map(|k| k.len).sum();
        let bound = (total / (4 * n)).max(MIN_SPLIT);
        let mut load = vec![0usize; n];
        let mut parts = Vec::new();
        let mut whole = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            if splittable && n > 1 && key.len > bound {
                // MXNet's rounding: part i is round(len·(i+1)/n) − round(len·i/n).
                let edge =
                    |i: usize| ((key.len as u128 * i as u128 + n as u128 / 2) / n as u128) as usize;
                for i in 0..n {
                    let (start, end) = (edge(i), edge(i + 1));
                    parts.push(PartSpec {
                        key: k as u32,
                        part: i as u32,
                        offset: start,
                        len: end - start,
                        server: i as u32,
                    });
                    if let Some(l) = load.get_mut(i) {
                        *l += end - start;
                    }
                }
            } else {
                whole.push(k);
            }
        }
        // Largest first, ties in key order; each to the least-loaded server (lowest rank
        // on a tie).
        whole.sort_by_key(|&k| (std::cmp::Reverse(keys.get(k).map_or(0, |x| x.len)), k));
        for k in whole {
            let len = keys.get(k).map_or(0, |x| x.len);
            let (server, _) = load
                .iter()
                .enumerate()
                .min_by_key(|&(i, l)| (*l, i))
                .unwrap_or((0, &0));
            if let Some(l) = load.get_mut(server) {
                *l += len;
            }
            parts.push(PartSpec {
                key: k as u32,
                part: 0,
                offset: 0,
                len,
                server: server as u32,
            });
        }
        parts.sort_by_key(|p| (p.key, p.part));
        Plan {
            keys,
            parts,
            servers,
        }
    }

    /// The parts `server` holds, in key order.
    pub fn shard(&self, server: u32) -> impl Iterator<Item = &PartSpec> {
        self.parts.iter().filter(move |p| p.server == server)
    }

    /// Values `server` holds.
    pub fn shard_len(&self, server: u32) -> usize {
        self.shard(server).map(|p| p.len).sum()
    }

    /// The part `(key, part)`.
    pub fn part(&self, key: u32, part: u32) -> Option<&PartSpec> {
        self.parts
            .binary_search_by_key(&(key, part), |p| (p.key, p.part))
            .ok()
            .and_then(|i| self.parts.get(i))
    }

    /// The largest message a server's service receives or sends for its shard, in bytes:
    /// the values, 12 bytes of framing a part, and room for the job name and header.
    pub fn shard_message_bytes(&self, server: u32) -> usize {
        let parts = self.shard(server).count();
        self.shard_len(server) * 4 + parts * 12 + crate::wire::MAX_STRING + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lens: &[usize]) -> Vec<KeySpec> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| KeySpec {
                name: format!("k{i}"),
                len,
            })
            .collect()
    }

    #[test]
    fn every_value_is_held_by_exactly_one_server() {
        // The MLP of the benchmark: 784-512-256-10.
        let mlp = [401_408, 512, 131_072, 256, 2_560, 10];
        for servers in 1..=5 {
            for splittable in [true, false] {
                let plan = Plan::new(keys(&mlp), servers, splittable);
                for (k, &len) in mlp.iter().enumerate() {
                    let mut covered = 0;
                    for p in plan.parts.iter().filter(|p| p.key == k as u32) {
                        assert_eq!(p.offset, covered);
                        covered += p.len;
                        assert!(p.server < servers);
                    }
                    assert_eq!(covered, len, "key {k}, {servers} servers");
                }
            }
        }
    }

    #[test]
    fn shards_are_balanced_by_bytes_where_mxnet_splits_by_parity() {
        let mlp = [401_408, 512, 131_072, 256, 2_560, 10];
        let plan = Plan::new(keys(&mlp), 2, true);
        let (a, b) = (plan.shard_len(0), plan.shard_len(1));
        assert_eq!(a + b, mlp.iter().sum::<usize>());
        // MXNet: 404,490 against 131,328 values (75/25). Here within 1 %.
        assert!(a.abs_diff(b) * 100 <= a + b, "{a} / {b}");
        // Not splittable (LARS, LAMB): whole keys only.
        let plan = Plan::new(keys(&mlp), 2, false);
        assert!(plan.parts.iter().all(|p| p.part == 0));
    }
}
