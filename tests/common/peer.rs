//! A scriptable test peer: real TLS 1.3 with its own identity, the real codec, and messages
//! of the test's choosing (including wrong ones).
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use noded::encoding::BoundedString;
use noded::net::identity::Identity;
use noded::net::tls::{self, TlsIdentity};
use noded::types::{NetworkMagic, NodeId};
use noded::wire::{Message, MessageCodec, NetAddress, Version, WireError};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestPeer {
    pub framed: Framed<TlsStream<TcpStream>, MessageCodec>,
    pub node_id: NodeId,
    pub remote_id: NodeId,
    _dir: tempfile::TempDir,
}

impl TestPeer {
    /// Connects over TLS (no protocol messages yet).
    pub async fn connect(addr: SocketAddr, magic: NetworkMagic) -> std::io::Result<TestPeer> {
        let dir = tempfile::tempdir()?;
        let identity = Identity::load_or_create(dir.path()).expect("identity");
        let tls = TlsIdentity::new(&identity).expect("tls identity");
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await??;
        let stream = tokio::time::timeout(
            IO_TIMEOUT,
            tls.connector(None).connect(tls::server_name(), tcp),
        )
        .await??;
        let remote_id = tls::peer_node_id(stream.get_ref().1).expect("peer id");
        Ok(TestPeer {
            framed: Framed::new(stream, MessageCodec::new(magic)),
            node_id: identity.node_id(),
            remote_id,
            _dir: dir,
        })
    }

    pub fn version(&self) -> Message {
        let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Message::Version(Box::new(Version {
            protocol_version: noded::wire::PROTOCOL_VERSION,
            services: 1,
            timestamp: 0,
            receiver: NetAddress::new(any, 0),
            sender: NetAddress::new(any, 1),
            nonce: rand::random(),
            user_agent: BoundedString::truncating("/testpeer/"),
            best_height: 0,
            node_id: self.node_id,
            relay: true,
        }))
    }

    pub async fn send(&mut self, message: Message) -> Result<(), WireError> {
        tokio::time::timeout(IO_TIMEOUT, self.framed.send(message))
            .await
            .map_err(|_| WireError::Io(std::io::ErrorKind::TimedOut.into()))?
    }

    /// The next message, or `None` when the node closed the connection.
    pub async fn recv(&mut self) -> Option<Result<Message, WireError>> {
        tokio::time::timeout(IO_TIMEOUT, self.framed.next())
            .await
            .expect("the node neither answered nor closed in time")
    }

    /// Completes VERSION/VERACK as an inbound-dialling peer would.
    pub async fn handshake(&mut self) {
        if let Err(e) = self.try_handshake().await {
            panic!("handshake failed: {e}");
        }
    }

    /// Like `handshake`, but reports a closed or broken connection instead of panicking.
    pub async fn try_handshake(&mut self) -> Result<(), String> {
        let version = self.version();
        self.send(version).await.map_err(|e| e.to_string())?;
        let mut got_version = false;
        let mut got_verack = false;
        while !(got_version && got_verack) {
            match self.recv().await {
                Some(Ok(Message::Version(_))) => {
                    got_version = true;
                    self.send(Message::Verack)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Some(Ok(Message::Verack)) => {
                    got_verack = true;
                    self.framed.codec_mut().set_handshake_complete();
                }
                Some(Ok(_)) => {}
                other => return Err(format!("handshake ended with {other:?}")),
            }
        }
        Ok(())
    }

    /// Reads until the node closes the connection; returns what it sent before.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Some(Ok(m)) => seen.push(m),
                _ => return seen,
            }
        }
    }
}
