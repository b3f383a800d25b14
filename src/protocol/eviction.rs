//! Choosing which inbound peer to drop when inbound slots are full, after Bitcoin Core: first
//! protect the peers an attacker finds hardest to imitate (distinct network groups, lowest
//! latency, recently useful, longest connected), then evict the youngest peer of the network
//! group with the most connections.

use super::netgroup::NetGroup;
use crate::types::hash::sha256d_parts;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Candidate {
    pub peer: u64,
    pub group: NetGroup,
    /// `group_rank` of its group: computed once per connection, not at every eviction.
    pub group_rank: u64,
    pub connected_ms: u64,
    pub min_ping_ms: Option<u64>,
    /// Last time the peer sent us something new and useful (addresses, later blocks and txs).
    pub last_useful_ms: u64,
}

const PROTECT_BY_GROUP: usize = 4;
const PROTECT_BY_PING: usize = 8;
const PROTECT_BY_USEFUL: usize = 4;

/// A group's rank for protection: a hash keyed with a secret, so an attacker cannot choose
/// groups that rank high.
pub fn group_rank(key: &[u8; 32], group: &NetGroup) -> u64 {
    let h = sha256d_parts(&[key, &group.0]);
    u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
}

fn take_protected(cands: &mut Vec<Candidate>, n: usize, key: impl FnMut(&Candidate) -> u64) {
    // Sort so that the best (highest key) come last, then drop them.
    cands.sort_by_key(key);
    let keep = cands.len().saturating_sub(n);
    cands.truncate(keep);
}

/// The peer to evict, or `None` when every candidate is protected.
pub fn select_victim(mut cands: Vec<Candidate>) -> Option<u64> {
    // Distinct groups, ranked by a keyed hash an attacker cannot predict.
    take_protected(&mut cands, PROTECT_BY_GROUP, |c| c.group_rank);
    take_protected(&mut cands, PROTECT_BY_PING, |c| {
        u64::MAX - c.min_ping_ms.unwrap_or(u64::MAX - 1)
    });
    take_protected(&mut cands, PROTECT_BY_USEFUL, |c| c.last_useful_ms);
    let half = cands.len() / 2;
    take_protected(&mut cands, half, |c| u64::MAX - c.connected_ms);
    if cands.is_empty() {
        return None;
    }
    let mut by_group: BTreeMap<NetGroup, Vec<&Candidate>> = BTreeMap::new();
    for c in &cands {
        by_group.entry(c.group).or_default().push(c);
    }
    let (_, members) = by_group.into_iter().max_by_key(|(group, members)| {
        let youngest = members.iter().map(|c| c.connected_ms).max().unwrap_or(0);
        (members.len(), youngest, *group)
    })?;
    members
        .iter()
        .max_by_key(|c| (c.connected_ms, c.peer))
        .map(|c| c.peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(peer: u64, group: u8, connected_ms: u64, ping: Option<u64>, useful: u64) -> Candidate {
        let group = NetGroup([4, group, 0, 0, 0, 0, 0, 0]);
        Candidate {
            peer,
            group,
            group_rank: group_rank(&[9; 32], &group),
            connected_ms,
            min_ping_ms: ping,
            last_useful_ms: useful,
        }
    }

    #[test]
    fn too_few_candidates_are_all_protected() {
        let cands = (0..4).map(|i| cand(i, i as u8, i, None, 0)).collect();
        assert_eq!(select_victim(cands), None);
    }

    #[test]
    fn evicts_the_youngest_of_the_biggest_group_and_spares_the_fast_and_useful() {
        let mut cands = Vec::new();
        // 20 peers from one group, connected at times 100..120; one of them is very fast and
        // one very useful.
        for i in 0..20u64 {
            let ping = if i == 19 { Some(1) } else { Some(500 + i) };
            let useful = if i == 18 { 10_000 } else { 0 };
            cands.push(cand(i, 1, 100 + i, ping, useful));
        }
        // 10 long-lived peers spread over other groups.
        for i in 20..30u64 {
            cands.push(cand(i, i as u8, i, Some(400), 0));
        }
        let victim = select_victim(cands).unwrap();
        assert!(
            victim < 18,
            "fast (19) and useful (18) peers are protected, got {victim}"
        );
        assert_eq!(
            victim, 17,
            "the youngest unprotected member of the crowded group"
        );
    }
}
