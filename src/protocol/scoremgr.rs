//! The misbehaviour manager: each peer's score, what broken frames cost, and the ban list
//! (automatic bans at the threshold, operator bans, expiry, what the peer store must save).
//!
//! Owns the `BanList` and the per-peer scores. Never admits or dials anyone itself: other
//! managers ask `is_banned` through the coordinator, and disconnections go through the outbox.

use super::bans::{BanList, BanTarget, Misbehaviour, BAN_THRESHOLD};
use super::config::CoreConfig;
use super::io::{
    CommandError, ConnType, DisconnectReason, Event, Internal, Outbox, PeerId, Persist, Wake,
};
use super::netgroup::canonical_ip;
use super::peermap::PeerMap;
use crate::time::{LocalTime, Now};
use crate::types::NodeId;
use crate::wire::message::reject_code;
use crate::wire::WireError;
use std::net::IpAddr;

#[derive(Debug)]
struct Scored {
    ip: IpAddr,
    node_id: NodeId,
    conn_type: ConnType,
    score: u32,
}

#[derive(Debug)]
pub struct ScoreMgr {
    bans: BanList,
    peers: PeerMap<Scored>,
}

impl ScoreMgr {
    pub fn new(bans: BanList) -> ScoreMgr {
        ScoreMgr {
            bans,
            peers: PeerMap::new(),
        }
    }

    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    pub fn score(&self, peer: PeerId) -> u32 {
        self.peers.get(&peer).map_or(0, |p| p.score)
    }

    /// Whether a connection from or to `ip` (and, once known, `node_id`) is banned.
    pub fn is_banned(&self, ip: IpAddr, node_id: Option<NodeId>, now: Now) -> bool {
        self.bans.is_banned(&BanTarget::Ip(ip), now.unix_ms)
            || node_id.is_some_and(|id| self.bans.is_banned(&BanTarget::Node(id), now.unix_ms))
    }

    pub fn on_internal(&mut self, event: &Internal, cfg: &CoreConfig, now: Now, out: &mut Outbox) {
        match *event {
            Internal::PeerConnected {
                peer,
                addr,
                node_id,
                conn_type,
            } => {
                self.peers.insert(
                    peer,
                    Scored {
                        ip: addr.ip(),
                        node_id,
                        conn_type,
                        score: 0,
                    },
                );
            }
            Internal::PeerGone { peer, .. } => {
                self.peers.remove(&peer);
            }
            Internal::Misbehaved { peer, what } => self.misbehaving(peer, what, cfg, now, out),
            _ => {}
        }
    }

    /// Adds to a peer's score; at the threshold it is disconnected and (unless manual, or an
    /// inbound peer with the noban permission) banned by IP and node id.
    fn misbehaving(
        &mut self,
        peer: PeerId,
        what: Misbehaviour,
        cfg: &CoreConfig,
        now: Now,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.score = p.score.saturating_add(what.weight());
        if p.score < BAN_THRESHOLD {
            return;
        }
        let (ip, node_id) = (p.ip, p.node_id);
        let noban = p.conn_type == ConnType::Inbound && cfg.is_noban(ip);
        if !p.conn_type.is_manual() && !noban {
            for target in [BanTarget::Ip(ip), BanTarget::Node(node_id)] {
                self.ban_target(target, now, cfg.ban_duration_ms, what.name(), out);
            }
        }
        out.disconnect(peer, DisconnectReason::Misbehaviour(what));
    }

    fn ban_target(
        &mut self,
        target: BanTarget,
        now: Now,
        duration_ms: u64,
        reason: &str,
        out: &mut Outbox,
    ) {
        let target = target.canonical();
        self.bans.ban(target, now.unix_ms, duration_ms, reason);
        out.event(Event::Banned {
            target,
            until_unix_ms: now.unix_ms.saturating_add(duration_ms),
            reason: reason.to_string(),
        });
    }

    /// The peer's byte stream broke a framing rule: what it costs, and the disconnection.
    pub fn broken(&mut self, peer: PeerId, error: &WireError, out: &mut Outbox) {
        match error {
            WireError::WrongMagic { .. } => {
                out.reject(peer, "version", reject_code::INVALID, "wrong network magic");
                out.disconnect(peer, DisconnectReason::WrongNetwork);
            }
            WireError::PayloadTooLarge { .. } | WireError::TooManyItems { .. } => {
                out.misbehaved_and_disconnect(peer, Misbehaviour::Oversized);
            }
            WireError::Io(e) => out.disconnect(peer, DisconnectReason::Closed(e.to_string())),
            _ => out.misbehaved_and_disconnect(peer, Misbehaviour::MalformedFrame),
        }
    }

    /// `setban add`: bans and disconnects everything matching.
    pub fn ban(
        &mut self,
        target: BanTarget,
        duration_ms: u64,
        reason: &str,
        now: Now,
        out: &mut Outbox,
    ) {
        let target = target.canonical();
        self.ban_target(target, now, duration_ms, reason, out);
        for (peer, p) in &self.peers {
            let matches = match target {
                BanTarget::Ip(ip) => canonical_ip(p.ip) == ip,
                BanTarget::Node(id) => p.node_id == id,
            };
            if matches {
                out.disconnect(*peer, DisconnectReason::Banned);
            }
        }
    }

    /// `setban remove`.
    pub fn unban(&mut self, target: BanTarget) -> Result<(), CommandError> {
        if self.bans.unban(&target) {
            Ok(())
        } else {
            Err(CommandError::NotBanned(target))
        }
    }

    /// `clearbanned`.
    pub fn clear(&mut self) {
        self.bans.clear()
    }

    /// Every tick while a ban is in force: bans expire on wall-clock time, which the
    /// monotonic timers cannot foresee.
    pub fn next_wake(&self, now: LocalTime) -> Wake {
        let mut wake = Wake::NEVER;
        if !self.bans.is_empty() {
            wake.at(now);
        }
        wake
    }

    pub fn tick(&mut self, now: Now) {
        self.bans.expire(now.unix_ms);
    }

    /// Hands what changed in the ban list to the peer store: single keys, not the table.
    pub fn persist_changes(&mut self, out: &mut Outbox) {
        if let Some(changes) = self.bans.take_changes() {
            out.persist(Persist::Bans(changes));
        }
    }

    /// Changes the shell could not hand over: saved at a later turn.
    pub fn requeue(&mut self, changes: super::bans::BanChanges) {
        self.bans.requeue(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::LocalTime;
    use std::net::SocketAddr;

    const NOW: Now = Now {
        local: LocalTime::from_millis(1_000),
        unix_ms: 1_800_000_000_000,
    };

    fn connected(
        mgr: &mut ScoreMgr,
        cfg: &CoreConfig,
        peer: PeerId,
        addr: &str,
        conn_type: ConnType,
    ) {
        let addr: SocketAddr = addr.parse().unwrap();
        let event = Internal::PeerConnected {
            peer,
            addr,
            node_id: NodeId([peer as u8; 32]),
            conn_type,
        };
        mgr.on_internal(&event, cfg, NOW, &mut Outbox::default());
    }

    fn disconnects(out: &mut Outbox) -> Vec<(PeerId, DisconnectReason)> {
        let mut found = Vec::new();
        while let Some(e) = out.next_internal() {
            if let Internal::DisconnectRequested { peer, reason } = e {
                found.push((peer, reason));
            }
        }
        found
    }

    #[test]
    fn the_threshold_bans_ip_and_node_id_and_disconnects() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut mgr = ScoreMgr::new(BanList::default());
        connected(&mut mgr, &cfg, 1, "8.8.8.8:1", ConnType::Inbound);
        let mut out = Outbox::default();
        for _ in 0..9 {
            mgr.on_internal(
                &Internal::Misbehaved {
                    peer: 1,
                    what: Misbehaviour::ProtocolOrder,
                },
                &cfg,
                NOW,
                &mut out,
            );
        }
        assert_eq!(mgr.score(1), 90);
        assert!(disconnects(&mut out).is_empty());
        mgr.on_internal(
            &Internal::Misbehaved {
                peer: 1,
                what: Misbehaviour::ProtocolOrder,
            },
            &cfg,
            NOW,
            &mut out,
        );
        assert_eq!(
            disconnects(&mut out),
            vec![(
                1,
                DisconnectReason::Misbehaviour(Misbehaviour::ProtocolOrder)
            )]
        );
        assert!(mgr.is_banned("8.8.8.8".parse().unwrap(), None, NOW));
        assert!(mgr.is_banned("9.9.9.9".parse().unwrap(), Some(NodeId([1; 32])), NOW));
        let banned = out
            .take_outputs()
            .into_iter()
            .filter(|o| matches!(o, super::super::io::Output::Event(Event::Banned { .. })))
            .count();
        assert_eq!(banned, 2, "one event per ban target");
    }

    #[test]
    fn manual_and_noban_peers_are_disconnected_but_not_banned() {
        let mut cfg = CoreConfig::new(NodeId([0; 32]));
        cfg.noban = vec![super::super::netgroup::Subnet::parse("8.8.8.0/24").unwrap()];
        let mut mgr = ScoreMgr::new(BanList::default());
        connected(&mut mgr, &cfg, 1, "8.8.8.8:1", ConnType::Inbound);
        connected(&mut mgr, &cfg, 2, "7.7.7.7:1", ConnType::Manual);
        let mut out = Outbox::default();
        for peer in [1, 2] {
            mgr.on_internal(
                &Internal::Misbehaved {
                    peer,
                    what: Misbehaviour::InvalidBlock,
                },
                &cfg,
                NOW,
                &mut out,
            );
        }
        assert_eq!(disconnects(&mut out).len(), 2);
        assert!(mgr.bans().is_empty());
    }

    #[test]
    fn an_operator_ban_disconnects_every_matching_peer_and_is_persisted() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut mgr = ScoreMgr::new(BanList::default());
        connected(&mut mgr, &cfg, 1, "1.2.3.4:1", ConnType::Inbound);
        connected(&mut mgr, &cfg, 2, "1.2.3.4:2", ConnType::Outbound);
        connected(&mut mgr, &cfg, 3, "5.6.7.8:1", ConnType::Inbound);
        let mut out = Outbox::default();
        mgr.ban(
            BanTarget::Ip("::ffff:1.2.3.4".parse().unwrap()),
            60_000,
            "test",
            NOW,
            &mut out,
        );
        let gone: Vec<PeerId> = disconnects(&mut out).into_iter().map(|(p, _)| p).collect();
        assert_eq!(gone, vec![1, 2]);
        mgr.persist_changes(&mut out);
        let saved = out
            .take_outputs()
            .into_iter()
            .find_map(|o| match o {
                super::super::io::Output::Persist(Persist::Bans(c)) => Some(c),
                _ => None,
            })
            .expect("ban changes persisted");
        assert_eq!(saved.upserts.len(), 1);
        // Not saved: requeued and handed out again.
        mgr.requeue(saved);
        mgr.persist_changes(&mut out);
        assert_eq!(out.take_outputs().len(), 1);
        assert_eq!(mgr.unban(BanTarget::Ip("1.2.3.4".parse().unwrap())), Ok(()));
        assert!(mgr
            .unban(BanTarget::Ip("1.2.3.4".parse().unwrap()))
            .is_err());
    }
}
