//! Networking shells: the node identity now; TLS, listener, dialer and peer tasks as they land.

pub mod identity;
