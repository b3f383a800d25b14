//! The table of inbound connections still in TLS set-up (accepted, not yet a peer), and who
//! gives way when it is full.
//!
//! Owns admission of half-open inbound connections only: per-host refusal, per-range and
//! whole-table eviction. It never touches a socket; the network service cancels what it evicts.
//! A stranger holding half-open handshakes can only push out its own oldest ones or those of
//! the busiest range, never lock an honest newcomer out.

use crate::protocol::netgroup::{host_key, prefix_group, PrefixGroup};
use crate::protocol::PeerId;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Half-open inbound connections held at once; each costs a socket, a task and a TLS state.
pub const MAX_PENDING_INBOUND: usize = 256;
/// Half-open connections one IPv4 /16 or IPv6 /64 may hold: an eighth of the table, so filling
/// it takes addresses in at least eight ranges (or more, if the operator lets one host hold
/// more: a range may always hold what one of its hosts may).
pub const MAX_PENDING_PER_GROUP: usize = 32;

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its host (IPv4 address or IPv6 /64) already has `max_per_host` connections pending.
    TooManyFromHost,
}

/// The outcome of admitting a connection: it is in, and `evicted` (if any) must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub evicted: Option<PeerId>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    host: IpAddr,
    group: PrefixGroup,
}

/// Pending inbound connections by peer id. Peer ids grow with each accept, so the smallest id
/// is the oldest connection.
#[derive(Debug)]
pub struct PendingTable {
    entries: BTreeMap<PeerId, Entry>,
    max_per_host: usize,
    max_per_group: usize,
}

impl PendingTable {
    pub fn new(max_per_host: usize) -> PendingTable {
        PendingTable {
            entries: BTreeMap::new(),
            max_per_host,
            max_per_group: MAX_PENDING_PER_GROUP.max(max_per_host),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Connections pending from the host of `ip`.
    fn pending_from_host(&self, ip: IpAddr) -> usize {
        let host = host_key(ip);
        self.entries.values().filter(|e| e.host == host).count()
    }

    /// Admits `peer` from `ip`. A host over its cap is refused (that is its own limit); a full
    /// range or a full table makes room by evicting the oldest connection of the range, or of
    /// the range with the most pending connections.
    pub fn admit(&mut self, peer: PeerId, ip: IpAddr) -> Result<Admitted, Refusal> {
        let entry = Entry {
            host: host_key(ip),
            group: prefix_group(ip),
        };
        if self.pending_from_host(ip) >= self.max_per_host {
            return Err(Refusal::TooManyFromHost);
        }
        let in_group = self
            .entries
            .values()
            .filter(|e| e.group == entry.group)
            .count();
        let evicted = if in_group >= self.max_per_group {
            self.oldest_in(entry.group)
        } else if self.entries.len() >= MAX_PENDING_INBOUND {
            self.oldest_in(self.busiest_group())
        } else {
            None
        };
        if let Some(victim) = evicted {
            self.entries.remove(&victim);
        }
        self.entries.insert(peer, entry);
        Ok(Admitted { evicted })
    }

    /// The connection left TLS set-up (became a peer, failed, or was evicted); idempotent.
    pub fn settle(&mut self, peer: PeerId) -> bool {
        self.entries.remove(&peer).is_some()
    }

    fn oldest_in(&self, group: PrefixGroup) -> Option<PeerId> {
        self.entries
            .iter()
            .find(|(_, e)| e.group == group)
            .map(|(id, _)| *id)
    }

    /// The range with the most pending connections; among equals, the one holding the oldest.
    fn busiest_group(&self) -> PrefixGroup {
        let mut counts: BTreeMap<PrefixGroup, (usize, PeerId)> = BTreeMap::new();
        for (id, e) in &self.entries {
            let c = counts.entry(e.group).or_insert((0, *id));
            c.0 += 1;
        }
        counts
            .into_iter()
            .max_by(|(_, (n1, oldest1)), (_, (n2, oldest2))| n1.cmp(n2).then(oldest2.cmp(oldest1)))
            .map(|(g, _)| g)
            .expect("called on a full table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_host_over_its_cap_is_refused_and_keeps_what_it_has() {
        let mut t = PendingTable::new(2);
        assert_eq!(t.admit(1, ip("1.2.3.4")), Ok(Admitted { evicted: None }));
        assert_eq!(
            t.admit(2, ip("::ffff:1.2.3.4")),
            Ok(Admitted { evicted: None })
        );
        assert_eq!(t.admit(3, ip("1.2.3.4")), Err(Refusal::TooManyFromHost));
        assert_eq!(t.len(), 2);
        // Another address in the same /16 is another host.
        assert!(t.admit(4, ip("1.2.3.5")).is_ok());
        assert!(t.settle(1));
        assert!(!t.settle(1), "settling twice is harmless");
        assert!(t.admit(5, ip("1.2.3.4")).is_ok());
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64() {
        let mut t = PendingTable::new(2);
        assert!(t.admit(1, ip("2001:db8:1:2::1")).is_ok());
        assert!(t.admit(2, ip("2001:db8:1:2::2")).is_ok());
        assert_eq!(
            t.admit(3, ip("2001:db8:1:2:ffff::3")),
            Err(Refusal::TooManyFromHost)
        );
        assert!(t.admit(4, ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn a_full_range_gives_way_with_its_own_oldest() {
        let mut t = PendingTable::new(16);
        assert!(t.admit(1, ip("9.9.9.9")).is_ok());
        for i in 0..MAX_PENDING_PER_GROUP as u64 {
            let evicted = t.admit(10 + i, ip(&format!("5.5.0.{i}"))).unwrap().evicted;
            assert_eq!(evicted, None);
        }
        let next = t.admit(100, ip("5.5.7.7")).unwrap();
        assert_eq!(next.evicted, Some(10), "the range's oldest, not 9.9.9.9's");
        assert_eq!(t.len(), MAX_PENDING_PER_GROUP + 1);
    }

    #[test]
    fn a_full_table_evicts_from_the_busiest_range_never_refuses() {
        let mut t = PendingTable::new(16);
        let mut id = 0;
        // The honest-looking connection is the oldest of all.
        assert!(t.admit(id, ip("8.8.8.8")).is_ok());
        // Fill the table from nine ranges; the eighth (17.1/16) is at its range cap, busier
        // than the rest.
        let sizes = [31, 31, 31, 31, 31, 31, 31, MAX_PENDING_PER_GROUP, 6];
        assert_eq!(1 + sizes.iter().sum::<usize>(), MAX_PENDING_INBOUND);
        let mut first_of_busiest = 0;
        for (range, size) in sizes.iter().enumerate() {
            for i in 0..*size {
                id += 1;
                if range == 7 && i == 0 {
                    first_of_busiest = id;
                }
                let a = ip(&format!("{}.1.0.{i}", 10 + range));
                assert_eq!(t.admit(id, a).unwrap().evicted, None);
            }
        }
        id += 1;
        let admitted = t
            .admit(id, ip("127.0.0.1"))
            .expect("never refused for a full table");
        assert_eq!(admitted.evicted, Some(first_of_busiest));
        assert_eq!(t.len(), MAX_PENDING_INBOUND);
        assert!(t.settle(0), "the oldest single connection stays");
    }

    #[test]
    fn a_range_may_hold_what_one_of_its_hosts_may() {
        let mut t = PendingTable::new(100);
        for i in 0..100 {
            assert_eq!(t.admit(i, ip("127.0.0.1")).unwrap().evicted, None);
        }
        assert_eq!(t.admit(100, ip("127.0.0.1")), Err(Refusal::TooManyFromHost));
        assert_eq!(t.admit(101, ip("127.0.0.2")).unwrap().evicted, Some(0));
    }
}
