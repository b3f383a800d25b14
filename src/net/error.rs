//! `PeerError`: why a peer task ended or could not start — the dial, the TLS set-up, or the
//! session — reported to the network service in `PeerEvent::Closed` and `PeerEvent::DialFailed`.
//!
//! A value here describes what happened to the connection; it never decides what the protocol
//! does about it (scores and bans are the core's).

use super::tls::{self, TlsError};
use crate::types::NodeId;
use crate::wire::WireError;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A dial target given by name could not be looked up.
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        target: String,
        source: std::io::Error,
    },
    #[error("cannot resolve {target}: timed out")]
    ResolveTimeout { target: String },
    #[error("{target}: no address found")]
    NoAddress { target: String },
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {addr}: timed out")]
    ConnectTimeout { addr: SocketAddr },
    /// An inbound connection sent no usable TLS ClientHello.
    #[error("TLS ClientHello: {0}")]
    ClientHello(std::io::Error),
    #[error("TLS ClientHello: timed out")]
    ClientHelloTimeout,
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {addr}: timed out")]
    TlsTimeout { addr: SocketAddr },
    /// The node at a pinned address (`<nodeid>@host:port`, or an identity learned on first use)
    /// presented another key.
    #[error(
        "TLS with {addr}: the peer presented node id {presented}, but node id {expected} is pinned for it"
    )]
    IdentityMismatch {
        addr: SocketAddr,
        expected: NodeId,
        presented: NodeId,
    },
    /// The TLS session completed but its certificate chain is not the single certificate the
    /// node id is read from.
    #[error(transparent)]
    Certificate(TlsError),
    /// An inbound connection still in TLS set-up gave its place to a newer one.
    #[error("dropped for a newer pending connection")]
    Evicted,
    /// The service asked the task to stop (a disconnect decision, a full outbox, shutdown).
    #[error("stopped by the node")]
    Stopped,
    /// The service dropped its end of the outbox: it has forgotten this peer.
    #[error("outbox closed")]
    OutboxClosed,
    /// The service's event queue is closed: the node is shutting down.
    #[error("node shutting down")]
    ServiceGone,
    #[error("read error: {0}")]
    Read(std::io::Error),
    #[error("write error: {0}")]
    Write(WireError),
    #[error("write timed out")]
    WriteTimeout,
    /// The peer's byte stream broke the framing or payload rules; the service was told the
    /// `WireError` in `PeerEvent::Broken`.
    #[error("protocol error")]
    ProtocolBroken,
    #[error("closed by peer")]
    ClosedByPeer,
}

impl PeerError {
    /// A failed TLS handshake with `addr`: a pinned identity the peer did not present is told
    /// apart from every other TLS failure, since it means someone else answers at that address.
    pub fn tls_handshake(addr: SocketAddr, source: std::io::Error) -> PeerError {
        if let Some(TlsError::PinMismatch {
            expected,
            presented,
        }) = tls::verification_failure(&source)
        {
            return PeerError::IdentityMismatch {
                addr,
                expected: *expected,
                presented: *presented,
            };
        }
        PeerError::Tls { addr, source }
    }
}
