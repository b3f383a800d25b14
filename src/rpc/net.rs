//! Network RPC methods: peers, added nodes, bans, address book, traffic totals.
//!
//! Each call is one command to the network service with a bounded wait; nothing here holds
//! state of its own.

use super::error::RpcError;
use crate::config::PeerSpec;
use crate::net::service::{AddNodeOp, NetCommand, NetHandle, PeerInfo};
use crate::protocol::bans::BanTarget;
use crate::protocol::CommandError;
use crate::types::NodeId;
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::proc_macros::rpc;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

#[rpc(server)]
pub trait NetApi {
    #[method(name = "getpeerinfo")]
    async fn getpeerinfo(&self) -> RpcResult<Vec<Value>>;
    #[method(name = "getpeers")]
    async fn getpeers(&self) -> RpcResult<Vec<Value>>;
    #[method(name = "getconnectioncount")]
    fn getconnectioncount(&self) -> RpcResult<usize>;
    #[method(name = "addnode")]
    async fn addnode(&self, node: String, command: String) -> RpcResult<Value>;
    #[method(name = "getaddednodeinfo")]
    async fn getaddednodeinfo(&self, node: Option<String>) -> RpcResult<Vec<Value>>;
    #[method(name = "disconnectnode")]
    async fn disconnectnode(
        &self,
        address: Option<String>,
        nodeid: Option<u64>,
    ) -> RpcResult<Value>;
    #[method(name = "setban")]
    async fn setban(
        &self,
        subnet: String,
        command: String,
        bantime: Option<u64>,
    ) -> RpcResult<Value>;
    #[method(name = "listbanned")]
    async fn listbanned(&self) -> RpcResult<Value>;
    #[method(name = "clearbanned")]
    async fn clearbanned(&self) -> RpcResult<Value>;
    #[method(name = "getnodeaddresses")]
    async fn getnodeaddresses(&self, count: Option<usize>) -> RpcResult<Value>;
    #[method(name = "getnettotals")]
    async fn getnettotals(&self) -> RpcResult<Value>;
    #[method(name = "getnetworkinfo")]
    async fn getnetworkinfo(&self) -> RpcResult<Value>;
    #[method(name = "ping")]
    async fn ping(&self) -> RpcResult<Value>;
    #[method(name = "setnetworkactive")]
    async fn setnetworkactive(&self, state: bool) -> RpcResult<bool>;
}

/// Facts about this node that getnetworkinfo reports.
#[derive(Clone)]
pub struct NetFacts {
    pub node_id: NodeId,
    pub p2p_addr: Option<SocketAddr>,
    pub max_connections: u32,
    pub user_agent: String,
}

pub struct NetRpc {
    handle: NetHandle,
    facts: NetFacts,
}

impl NetRpc {
    pub fn new(handle: NetHandle, facts: NetFacts) -> NetRpc {
        NetRpc { handle, facts }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> NetCommand,
    ) -> Result<T, RpcError> {
        self.handle
            .call(make)
            .await
            .map_err(|e| RpcError::Misc(e.to_string()))
    }
}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

fn peer_json(p: &PeerInfo) -> Value {
    let s = &p.stats;
    json!({
        "id": p.protocol.id,
        "nodeid": p.protocol.nodeid,
        "addr": p.protocol.addr.to_string(),
        "inbound": p.protocol.inbound,
        "connection_type": p.protocol.connection_type,
        "version": p.protocol.version,
        "subver": p.protocol.subver,
        "services": format!("{:016x}", p.protocol.services),
        "startingheight": p.protocol.startingheight,
        "synced_headers": p.protocol.synced_headers.map_or(-1, |h| h as i64),
        "synced_blocks": p.protocol.synced_blocks.map_or(-1, |h| h as i64),
        "inflight": p.protocol.inflight,
        "tx_announced": p.protocol.relay.tx_announced,
        "tx_requested": p.protocol.relay.tx_requested,
        "tx_received": p.protocol.relay.tx_received,
        "cmpct_received": p.protocol.compact.cmpct_received,
        "cmpct_sent": p.protocol.compact.cmpct_sent,
        "cmpct_rebuilt": p.protocol.compact.cmpct_rebuilt,
        "blocktxn_requested": p.protocol.compact.blocktxn_requested,
        "handshake_complete": p.protocol.handshake_complete,
        "conntime": secs(p.protocol.conntime_ms),
        "lastsend": secs(s.last_send_ms),
        "lastrecv": secs(s.last_recv_ms),
        "bytessent": s.bytes_sent,
        "bytesrecv": s.bytes_recv,
        "bytessent_per_msg": s.sent_per_msg,
        "bytesrecv_per_msg": s.recv_per_msg,
        "msgssent_per_msg": s.msgs_sent_per_msg,
        "msgsrecv_per_msg": s.msgs_recv_per_msg,
        "pingtime": p.protocol.ping_ms.map(|ms| ms as f64 / 1000.0),
        "minping": p.protocol.minping_ms.map(|ms| ms as f64 / 1000.0),
        "banscore": p.protocol.banscore,
        "tls_version": p.tls_version,
        "tls_cipher": p.tls_cipher,
    })
}

fn command_error(e: CommandError) -> RpcError {
    RpcError::InvalidParameter(e.to_string())
}

fn parse_spec(node: &str) -> Result<PeerSpec, RpcError> {
    PeerSpec::parse(node).map_err(|e| RpcError::InvalidParameter(format!("'{node}': {e}")))
}

/// A ban target: an IP address (a `/32` or `/128` suffix is accepted) or a 64-hex node id.
fn parse_ban_target(text: &str) -> Result<BanTarget, RpcError> {
    let bare = text
        .strip_suffix("/32")
        .or_else(|| text.strip_suffix("/128"))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(BanTarget::Ip(ip));
    }
    if let Ok(id) = bare.parse::<NodeId>() {
        return Ok(BanTarget::Node(id));
    }
    Err(RpcError::InvalidParameter(format!(
        "'{text}' is neither an IP address nor a node id (subnets other than single addresses are not supported)"
    )))
}

#[async_trait]
impl NetApiServer for NetRpc {
    async fn getpeerinfo(&self) -> RpcResult<Vec<Value>> {
        let peers = self.call(NetCommand::PeerInfo).await?;
        Ok(peers.iter().map(peer_json).collect())
    }

    async fn getpeers(&self) -> RpcResult<Vec<Value>> {
        let peers = self.call(NetCommand::PeerInfo).await?;
        Ok(peers
            .iter()
            .map(|p| {
                json!({
                    "id": p.protocol.id,
                    "nodeid": p.protocol.nodeid,
                    "addr": p.protocol.addr.to_string(),
                    "inbound": p.protocol.inbound,
                    "connection_type": p.protocol.connection_type,
                    "handshake_complete": p.protocol.handshake_complete,
                    "subver": p.protocol.subver,
                    "pingtime": p.protocol.ping_ms.map(|ms| ms as f64 / 1000.0),
                    "tls_version": p.tls_version,
                })
            })
            .collect())
    }

    fn getconnectioncount(&self) -> RpcResult<usize> {
        let c = &self.handle.counts;
        Ok(c.inbound.load(Ordering::Relaxed) + c.outbound.load(Ordering::Relaxed))
    }

    async fn addnode(&self, node: String, command: String) -> RpcResult<Value> {
        let op = match command.as_str() {
            "add" => AddNodeOp::Add,
            "remove" => AddNodeOp::Remove,
            "onetry" => AddNodeOp::OneTry,
            other => {
                return Err(RpcError::InvalidParameter(format!(
                    "command '{other}' must be add, remove or onetry"
                ))
                .into())
            }
        };
        let spec = parse_spec(&node)?;
        self.call(|r| NetCommand::AddNode(spec, op, r))
            .await?
            .map_err(command_error)?;
        Ok(Value::Null)
    }

    async fn getaddednodeinfo(&self, node: Option<String>) -> RpcResult<Vec<Value>> {
        let added = self.call(NetCommand::AddedNodes).await?;
        let filtered: Vec<_> = added
            .into_iter()
            .filter(|a| {
                node.as_ref()
                    .is_none_or(|n| a.addednode.contains(n.as_str()))
            })
            .collect();
        if let (Some(n), true) = (&node, filtered.is_empty()) {
            return Err(RpcError::InvalidParameter(format!("node {n} has not been added")).into());
        }
        Ok(filtered
            .iter()
            .map(|a| {
                json!({
                    "addednode": a.addednode,
                    "connected": a.connected,
                    "peer_id": a.peer,
                    "nodeid": a.nodeid,
                    "last_attempt": secs(a.last_attempt_ms),
                    "next_attempt": secs(a.next_attempt_ms),
                })
            })
            .collect())
    }

    async fn disconnectnode(
        &self,
        address: Option<String>,
        nodeid: Option<u64>,
    ) -> RpcResult<Value> {
        let addr = match address.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                RpcError::InvalidParameter(format!("'{a}' is not an ip:port address"))
            })?),
            None => None,
        };
        if addr.is_none() && nodeid.is_none() {
            return Err(RpcError::InvalidParameter("give an address or a peer id".into()).into());
        }
        self.call(|r| NetCommand::Disconnect(nodeid, addr, r))
            .await?
            .map_err(command_error)?;
        Ok(Value::Null)
    }

    async fn setban(
        &self,
        subnet: String,
        command: String,
        bantime: Option<u64>,
    ) -> RpcResult<Value> {
        let target = parse_ban_target(&subnet)?;
        match command.as_str() {
            "add" => {
                self.call(|r| NetCommand::Ban(target, bantime.filter(|s| *s > 0), r))
                    .await?
            }
            "remove" => {
                if !self.call(|r| NetCommand::Unban(target, r)).await? {
                    return Err(
                        RpcError::InvalidParameter(format!("{subnet} is not banned")).into(),
                    );
                }
            }
            other => {
                return Err(RpcError::InvalidParameter(format!(
                    "command '{other}' must be add or remove"
                ))
                .into())
            }
        }
        Ok(Value::Null)
    }

    async fn listbanned(&self) -> RpcResult<Value> {
        Ok(
            serde_json::to_value(self.call(NetCommand::ListBanned).await?)
                .map_err(|e| RpcError::Internal(e.to_string()))?,
        )
    }

    async fn clearbanned(&self) -> RpcResult<Value> {
        self.call(NetCommand::ClearBanned).await?;
        Ok(Value::Null)
    }

    async fn getnodeaddresses(&self, count: Option<usize>) -> RpcResult<Value> {
        // As bitcoind: 0 lists every address (the book is bounded by its tables).
        let count = match count.unwrap_or(1) {
            0 => usize::MAX,
            n => n,
        };
        let list = self.call(|r| NetCommand::NodeAddresses(count, r)).await?;
        Ok(serde_json::to_value(list).map_err(|e| RpcError::Internal(e.to_string()))?)
    }

    async fn getnettotals(&self) -> RpcResult<Value> {
        let peers = self.call(NetCommand::PeerInfo).await?;
        let t = &self.handle.totals;
        let sent: u64 = peers.iter().map(|p| p.stats.bytes_sent).sum::<u64>()
            + t.closed_sent.load(Ordering::Relaxed);
        let recv: u64 = peers.iter().map(|p| p.stats.bytes_recv).sum::<u64>()
            + t.closed_recv.load(Ordering::Relaxed);
        Ok(json!({
            "totalbytesrecv": recv,
            "totalbytessent": sent,
            "timemillis": crate::time::unix_millis(),
        }))
    }

    async fn getnetworkinfo(&self) -> RpcResult<Value> {
        let c = &self.handle.counts;
        let (inbound, outbound) = (
            c.inbound.load(Ordering::Relaxed),
            c.outbound.load(Ordering::Relaxed),
        );
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "subversion": self.facts.user_agent,
            "protocolversion": crate::wire::PROTOCOL_VERSION,
            "nodeid": self.facts.node_id,
            "localservices": format!("{:016x}", crate::wire::SERVICE_NETWORK),
            "networkactive": !c.network_off.load(Ordering::Relaxed),
            "connections": inbound + outbound,
            "connections_in": inbound,
            "connections_out": outbound,
            "maxconnections": self.facts.max_connections,
            "listening": self.facts.p2p_addr.is_some(),
            "p2p_addr": self.facts.p2p_addr.map(|a| a.to_string()),
            "transport": "TLSv1.3",
        }))
    }

    async fn ping(&self) -> RpcResult<Value> {
        self.call(NetCommand::Ping).await?;
        Ok(Value::Null)
    }

    async fn setnetworkactive(&self, state: bool) -> RpcResult<bool> {
        Ok(self
            .call(|r| NetCommand::SetNetworkActive(state, r))
            .await?)
    }
}
