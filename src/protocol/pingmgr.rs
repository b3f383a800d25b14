//! The liveness manager: PING every interval, PONG replies, round-trip times, and the ping and
//! inactivity timeouts of peers past their handshake.
//!
//! Owns each peer's liveness state, on monotonic time only (a wall-clock jump neither fires
//! nor switches off a timeout). Never handles the handshake (its timeout is the peer
//! manager's) and never disconnects except through the outbox.

use super::config::CoreConfig;
use super::io::{DisconnectReason, Internal, Outbox, PeerId, Wake};
use super::peermap::PeerMap;
use crate::time::{LocalDuration, LocalTime};
use rand::rngs::StdRng;
use rand::Rng;

/// When one peer's ping is due, the pings due within this long go out with it: the peers'
/// pings fall into a few groups that stay together, so a node wakes a few times an interval
/// for its pings instead of once a peer. A peer is pinged at most this much early.
const PING_ALIGN: LocalDuration = LocalDuration::from_secs(30);

#[derive(Debug)]
struct Liveness {
    negotiated: bool,
    disconnecting: bool,
    last_recv: LocalTime,
    /// The unanswered PING: nonce and when it was sent.
    ping: Option<(u64, LocalTime)>,
    last_ping: LocalTime,
    rtt: Option<LocalDuration>,
    min_rtt: Option<LocalDuration>,
}

impl Liveness {
    fn wake(&self, cfg: &CoreConfig) -> Wake {
        let mut wake = Wake::NEVER;
        if !self.negotiated || self.disconnecting {
            return wake;
        }
        wake.at(self.last_recv + LocalDuration::from_millis(cfg.inactivity_timeout_ms));
        match self.ping {
            Some((_, sent)) => wake.at(sent + LocalDuration::from_millis(cfg.ping_timeout_ms)),
            None => wake.at(self.last_ping + LocalDuration::from_millis(cfg.ping_interval_ms)),
        }
        wake
    }
}

/// What getpeerinfo shows of a peer's liveness.
#[derive(Clone, Copy, Debug, Default)]
pub struct PingStats {
    pub last_recv: LocalTime,
    pub rtt: Option<LocalDuration>,
    pub min_rtt: Option<LocalDuration>,
}

#[derive(Debug, Default)]
pub struct PingMgr {
    peers: PeerMap<Liveness>,
}

impl PingMgr {
    pub fn on_internal(&mut self, event: &Internal, now: LocalTime) {
        match *event {
            Internal::PeerConnected { peer, .. } => {
                self.peers.insert(
                    peer,
                    Liveness {
                        negotiated: false,
                        disconnecting: false,
                        last_recv: now,
                        ping: None,
                        last_ping: now,
                        rtt: None,
                        min_rtt: None,
                    },
                );
            }
            Internal::PeerNegotiated { peer, .. } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.negotiated = true;
                    p.last_ping = now;
                }
            }
            Internal::PeerDisconnecting { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.disconnecting = true;
                }
            }
            Internal::PeerGone { peer, .. } => {
                self.peers.remove(&peer);
            }
            _ => {}
        }
    }

    pub fn stats(&self, peer: PeerId) -> PingStats {
        self.peers
            .get(&peer)
            .map_or(PingStats::default(), |p| PingStats {
                last_recv: p.last_recv,
                rtt: p.rtt,
                min_rtt: p.min_rtt,
            })
    }

    /// Starts loading the liveness table's ids (a hint).
    pub fn prefetch(&self) {
        self.peers.prefetch();
    }

    /// Any message from the peer counts as a sign of life.
    pub fn heard_from(&mut self, peer: PeerId, now: LocalTime) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_recv = now;
        }
    }

    pub fn on_ping(&mut self, peer: PeerId, nonce: u64, out: &mut Outbox) {
        out.pong(peer, nonce);
    }

    pub fn on_pong(&mut self, peer: PeerId, nonce: u64, now: LocalTime) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some((expected, sent)) = p.ping {
            if expected == nonce {
                let rtt = now.since(sent);
                p.ping = None;
                p.rtt = Some(rtt);
                p.min_rtt = Some(p.min_rtt.map_or(rtt, |m| m.min(rtt)));
            }
        }
    }

    /// `ping`: pings every ready peer without a PING outstanding, now.
    pub fn ping_all(&mut self, now: LocalTime, rng: &mut StdRng, out: &mut Outbox) {
        for (peer, p) in &mut self.peers {
            if p.negotiated && !p.disconnecting && p.ping.is_none() {
                send_ping(*peer, p, now, rng, out);
            }
        }
    }

    /// When `tick` next has something to do: a ping due, a ping or inactivity timeout.
    pub fn next_wake(&self, cfg: &CoreConfig) -> Wake {
        let mut wake = Wake::NEVER;
        for p in self.peers.values() {
            wake.merge(p.wake(cfg));
        }
        wake
    }

    /// When `tick` next has something to do for `peer` alone: after a PONG, only its next
    /// ping moved (forward), so the coordinator merges this into the manager's wake instead
    /// of walking every peer.
    pub fn peer_wake(&self, peer: PeerId, cfg: &CoreConfig) -> Wake {
        self.peers.get(&peer).map_or(Wake::NEVER, |p| p.wake(cfg))
    }

    /// Ping and inactivity timeouts, and pings that are due.
    pub fn tick(&mut self, cfg: &CoreConfig, now: LocalTime, rng: &mut StdRng, out: &mut Outbox) {
        let ping_timeout = LocalDuration::from_millis(cfg.ping_timeout_ms);
        let inactivity = LocalDuration::from_millis(cfg.inactivity_timeout_ms);
        let ping_interval = LocalDuration::from_millis(cfg.ping_interval_ms);
        let align = PING_ALIGN.min(LocalDuration::from_millis(ping_interval.as_millis() / 4));
        let live = |p: &Liveness| p.negotiated && !p.disconnecting && p.ping.is_none();
        let ping_due = self
            .peers
            .values()
            .any(|p| live(p) && now.since(p.last_ping) >= ping_interval);
        for (peer, p) in &mut self.peers {
            if !p.negotiated || p.disconnecting {
                continue;
            }
            if let Some((_, sent)) = p.ping {
                if now.since(sent) >= ping_timeout {
                    out.disconnect(*peer, DisconnectReason::PingTimeout);
                    continue;
                }
            }
            if now.since(p.last_recv) >= inactivity {
                out.disconnect(*peer, DisconnectReason::Inactivity);
                continue;
            }
            if ping_due && p.ping.is_none() && now.since(p.last_ping) + align >= ping_interval {
                send_ping(*peer, p, now, rng, out);
            }
        }
    }
}

fn send_ping(peer: PeerId, p: &mut Liveness, now: LocalTime, rng: &mut StdRng, out: &mut Outbox) {
    let nonce: u64 = rng.gen();
    p.ping = Some((nonce, now));
    p.last_ping = now;
    out.ping(peer, nonce);
}

#[cfg(test)]
mod tests {
    use super::super::io::{ConnType, Output};
    use super::*;
    use crate::types::NodeId;
    use crate::wire::Message;
    use rand::SeedableRng;

    fn negotiated(mgr: &mut PingMgr, peer: PeerId, now: LocalTime) {
        let addr = "1.2.3.4:1".parse().unwrap();
        mgr.on_internal(
            &Internal::PeerConnected {
                peer,
                addr,
                node_id: NodeId([1; 32]),
                conn_type: ConnType::Inbound,
            },
            now,
        );
        mgr.on_internal(
            &Internal::PeerNegotiated {
                peer,
                addr,
                conn_type: ConnType::Inbound,
                seen_as: None,
                height: 0,
                relay: true,
            },
            now,
        );
    }

    fn pings(out: &mut Outbox) -> Vec<u64> {
        out.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(_, Message::Ping(n)) => Some(n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_ping_is_sent_each_interval_and_its_pong_measures_the_round_trip() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = PingMgr::default();
        let t0 = LocalTime::from_millis(1_000);
        negotiated(&mut mgr, 1, t0);
        let mut out = Outbox::default();
        mgr.tick(
            &cfg,
            t0 + LocalDuration::from_millis(cfg.ping_interval_ms - 1),
            &mut rng,
            &mut out,
        );
        assert!(pings(&mut out).is_empty());
        let sent_at = t0 + LocalDuration::from_millis(cfg.ping_interval_ms);
        mgr.tick(&cfg, sent_at, &mut rng, &mut out);
        let nonce = pings(&mut out)[0];
        mgr.on_pong(
            1,
            nonce.wrapping_add(1),
            sent_at + LocalDuration::from_millis(10),
        );
        assert_eq!(
            mgr.stats(1).rtt,
            None,
            "a PONG with another nonce is not ours"
        );
        mgr.on_pong(1, nonce, sent_at + LocalDuration::from_millis(40));
        assert_eq!(mgr.stats(1).rtt, Some(LocalDuration::from_millis(40)));
    }

    #[test]
    fn pings_due_within_the_alignment_go_out_with_a_due_one_and_no_sooner() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let interval = LocalDuration::from_millis(cfg.ping_interval_ms);
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = PingMgr::default();
        let t0 = LocalTime::from_millis(1_000);
        negotiated(&mut mgr, 1, t0);
        negotiated(&mut mgr, 2, t0 + PING_ALIGN - LocalDuration::from_millis(1));
        negotiated(&mut mgr, 3, t0 + PING_ALIGN + LocalDuration::from_millis(1));
        let mut out = Outbox::default();
        // Peer 2 is within the alignment of being due, but nobody is due yet: no ping.
        mgr.tick(
            &cfg,
            t0 + interval - LocalDuration::from_millis(1),
            &mut rng,
            &mut out,
        );
        assert!(pings(&mut out).is_empty());
        assert_eq!(mgr.next_wake(&cfg).time(), Some(t0 + interval));
        // Peer 1 is due: peer 2 goes with it, peer 3 (due later than the alignment) does not.
        mgr.tick(&cfg, t0 + interval, &mut rng, &mut out);
        let sent: Vec<PeerId> = out
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(peer, Message::Ping(_)) => Some(peer),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![1, 2]);
    }

    #[test]
    fn an_unanswered_ping_and_silence_disconnect() {
        let mut cfg = CoreConfig::new(NodeId([0; 32]));
        cfg.inactivity_timeout_ms = u64::MAX / 2; // isolate the ping rule
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = PingMgr::default();
        let t0 = LocalTime::from_millis(0);
        negotiated(&mut mgr, 1, t0);
        let mut out = Outbox::default();
        mgr.ping_all(t0, &mut rng, &mut out);
        assert_eq!(pings(&mut out).len(), 1);
        mgr.tick(
            &cfg,
            t0 + LocalDuration::from_millis(cfg.ping_timeout_ms),
            &mut rng,
            &mut out,
        );
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::PingTimeout]
        );

        let mut cfg = CoreConfig::new(NodeId([0; 32]));
        cfg.ping_interval_ms = u64::MAX / 2; // isolate the inactivity rule
        let mut mgr = PingMgr::default();
        negotiated(&mut mgr, 2, t0);
        mgr.heard_from(2, t0 + LocalDuration::from_secs(10));
        mgr.tick(
            &cfg,
            t0 + LocalDuration::from_millis(cfg.inactivity_timeout_ms),
            &mut rng,
            &mut out,
        );
        assert!(
            out.take_disconnect_reasons().is_empty(),
            "heard from 10 s later"
        );
        mgr.tick(
            &cfg,
            t0 + LocalDuration::from_secs(10)
                + LocalDuration::from_millis(cfg.inactivity_timeout_ms),
            &mut rng,
            &mut out,
        );
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::Inactivity]
        );
    }

    #[test]
    fn peers_before_their_handshake_or_on_their_way_out_are_left_alone() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = PingMgr::default();
        let t0 = LocalTime::from_millis(0);
        let addr = "1.2.3.4:1".parse().unwrap();
        mgr.on_internal(
            &Internal::PeerConnected {
                peer: 1,
                addr,
                node_id: NodeId([1; 32]),
                conn_type: ConnType::Inbound,
            },
            t0,
        );
        negotiated(&mut mgr, 2, t0);
        mgr.on_internal(&Internal::PeerDisconnecting { peer: 2 }, t0);
        let mut out = Outbox::default();
        mgr.tick(&cfg, t0 + LocalDuration::from_mins(60), &mut rng, &mut out);
        assert!(pings(&mut out).is_empty());
        assert!(out.take_disconnect_reasons().is_empty());
    }
}
