//! A small blocking WebSocket client (RFC 6455) for tests: the upgrade with Basic
//! credentials, masked text frames out, text frames in. Enough to subscribe, to read
//! notifications, and to be a subscriber that stops reading.
#![allow(dead_code)]

use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

pub struct WsClient {
    stream: TcpStream,
    next_id: u64,
}

/// A connected socket whose receive buffer is `recv_buffer` bytes, set before the connect so
/// the advertised window stays that small (a subscriber that cannot keep up).
fn connect_with_recv_buffer(addr: SocketAddr, recv_buffer: Option<usize>) -> TcpStream {
    let Some(size) = recv_buffer else {
        return TcpStream::connect(addr).expect("connect");
    };
    let SocketAddr::V4(v4) = addr else {
        panic!("tests use 127.0.0.1")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed to
    // TcpStream; every return value is checked.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let size = size as libc::c_int;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "SO_RCVBUF");
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            &sin as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect");
        TcpStream::from_raw_fd(fd)
    }
}

impl WsClient {
    /// Upgrades a connection to `addr` with Basic `credentials` (`user:password`).
    pub fn connect(addr: SocketAddr, credentials: &str) -> WsClient {
        WsClient::connect_with(addr, credentials, None)
    }

    /// `connect`, with the socket's receive buffer set to `recv_buffer` bytes.
    pub fn connect_with(
        addr: SocketAddr,
        credentials: &str,
        recv_buffer: Option<usize>,
    ) -> WsClient {
        let mut stream = connect_with_recv_buffer(addr, recv_buffer);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Basic {auth}\r\n\r\n"
        )
        .unwrap();
        // Read the response head byte by byte so no frame byte after it is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).expect("upgrade response");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        WsClient { stream, next_id: 1 }
    }

    /// Sends a JSON-RPC call; returns its id.
    pub fn send_call(&mut self, method: &str, params: serde_json::Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_text(&body.to_string());
        id
    }

    /// Calls `method` and waits for its answer (notifications before it are discarded).
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.send_call(method, params);
        loop {
            let message = self
                .next_json()
                .expect("an answer before the connection closed");
            if message["id"] == id {
                return message;
            }
        }
    }

    /// Subscribes with `method`; returns the subscription id.
    pub fn subscribe(&mut self, method: &str) -> serde_json::Value {
        let answer = self.call(method, serde_json::json!([]));
        assert!(answer.get("error").is_none(), "{method} refused: {answer}");
        answer["result"].clone()
    }

    fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8]; // FIN + text
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next text message as JSON; `None` when the server closed the connection.
    pub fn next_json(&mut self) -> Option<serde_json::Value> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            if self.stream.read_exact(&mut head).is_err() {
                return None;
            }
            let opcode = head[0] & 0x0f;
            let fin = head[0] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b).ok()?;
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b).ok()?;
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            assert!(head[1] & 0x80 == 0, "server frames are not masked");
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).ok()?;
            match opcode {
                0x8 => return None,
                0x9 => self.send_control(0xA, &payload),
                0xA => {}
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Some(serde_json::from_slice(&message).expect("JSON message"));
                    }
                }
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    fn send_control(&mut self, opcode: u8, payload: &[u8]) {
        let mask: [u8; 4] = rand::random();
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.stream.write_all(&frame);
    }
}
