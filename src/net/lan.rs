//! LAN discovery over mDNS (`--discover-lan`, off by default): announces this node as
//! `_noded._tcp.local.` with its node id and network, and reports nodes of the same network
//! found on the local link to the network service as dialable addresses.
//!
//! Discovered addresses go into the address book like any other; they get no trust from
//! having been found on the LAN, and the TLS identity check applies as usual.

use crate::params::Network;
use crate::types::NodeId;
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const SERVICE_TYPE: &str = "_noded._tcp.local.";

#[derive(Debug, thiserror::Error)]
#[error("LAN discovery (mDNS): {0}")]
pub struct LanError(#[from] mdns_sd::Error);

/// Running LAN discovery; stops when dropped.
pub struct LanDiscovery {
    daemon: ServiceDaemon,
    stop: Arc<AtomicBool>,
}

impl LanDiscovery {
    /// Announces `port` and starts browsing; found addresses are sent on `found`.
    pub fn start(
        network: Network,
        node_id: NodeId,
        port: u16,
        found: mpsc::Sender<(&'static str, Vec<SocketAddr>)>,
    ) -> Result<LanDiscovery, LanError> {
        let daemon = ServiceDaemon::new()?;
        let id = node_id.to_string();
        let instance = format!("noded-{}", &id[..16]);
        let properties = [("nodeid", id.as_str()), ("network", network.name())];
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &format!("{instance}.local."),
            "",
            port,
            &properties[..],
        )?
        .enable_addr_auto();
        daemon.register(info)?;
        let events = daemon.browse(SERVICE_TYPE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("noded-mdns".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(event) = events.recv_timeout(Duration::from_millis(500)) else {
                        continue;
                    };
                    let ServiceEvent::ServiceResolved(info) = event else {
                        continue;
                    };
                    let same_network = info.get_property_val_str("network") == Some(network.name());
                    let itself = info.get_property_val_str("nodeid") == Some(id.as_str());
                    if !same_network || itself {
                        continue;
                    }
                    let addrs: Vec<SocketAddr> = info
                        .get_addresses()
                        .iter()
                        .take(16)
                        .map(|ip| SocketAddr::new(*ip, info.get_port()))
                        .collect();
                    if !addrs.is_empty() && found.blocking_send(("LAN", addrs)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| LanError(mdns_sd::Error::Msg(e.to_string())))?;
        Ok(LanDiscovery { daemon, stop })
    }
}

impl Drop for LanDiscovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.daemon.shutdown();
    }
}
