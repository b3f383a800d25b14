//! Framing: the 24-byte frame header, frame encoding, and the pure incremental decoder.
//!
//! The decoder never buffers a body it will reject: magic, command and length are checked
//! from the header alone, and the checksum before the payload is parsed. It holds no I/O.

use super::error::WireError;
use super::limits::{list_count, max_payload, FRAME_HEADER_SIZE, MAX_HANDSHAKE_PAYLOAD};
use super::message::{Command, Message};
use crate::encoding;
use crate::types::{sha256d, NetworkMagic};
use bytes::{Buf, BufMut, BytesMut};

/// Most bytes reserved for a body on the strength of its header alone.
const MAX_UPFRONT_RESERVE: usize = 64 * 1024;

/// A parsed, already validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub command: Command,
    pub length: usize,
    pub checksum: [u8; 4],
}

/// First four bytes of SHA-256d of the payload.
pub fn checksum(payload: &[u8]) -> [u8; 4] {
    let digest = sha256d(payload);
    [digest.0[0], digest.0[1], digest.0[2], digest.0[3]]
}

/// Encodes the payload of `message`.
pub fn encode_payload(message: &Message, out: &mut Vec<u8>) {
    match message {
        Message::Version(v) => encoding::encode_into(v.as_ref(), out),
        Message::Verack | Message::GetAddr | Message::SendHeaders => {}
        Message::Ping(nonce) | Message::Pong(nonce) => encoding::encode_into(nonce, out),
        Message::Addr(list) => encoding::encode_into(list, out),
        Message::Inv(list) | Message::GetData(list) | Message::NotFound(list) => {
            encoding::encode_into(list, out)
        }
        Message::Block(block) => encoding::encode_into(block.as_ref(), out),
        Message::Tx(tx) => encoding::encode_into(tx.as_ref(), out),
        Message::GetHeaders(req) | Message::GetBlocks(req) => encoding::encode_into(req, out),
        Message::Headers(list) => encoding::encode_into(list, out),
        Message::Reject(reject) => encoding::encode_into(reject.as_ref(), out),
        Message::SendCmpct(send) => encoding::encode_into(send, out),
        Message::CmpctBlock(block) => encoding::encode_into(block.as_ref(), out),
        Message::GetBlockTxn(request) => encoding::encode_into(request, out),
        Message::BlockTxn(answer) => encoding::encode_into(answer, out),
    }
}

/// Encodes a whole frame for the network with `magic`, appending it to `out`. A message
/// whose payload would exceed its command's limit is refused, so this node never sends what a
/// peer must reject.
pub fn encode_frame(
    magic: NetworkMagic,
    message: &Message,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let command = message.command();
    let mut payload = Vec::new();
    encode_payload(message, &mut payload);
    let max = max_payload(command);
    if payload.len() > max {
        return Err(WireError::PayloadTooLarge {
            command,
            len: payload.len(),
            max,
        });
    }
    out.reserve(FRAME_HEADER_SIZE + payload.len());
    out.put_slice(&magic.0);
    out.put_slice(&command.to_bytes());
    out.put_u32_le(payload.len() as u32);
    out.put_slice(&checksum(&payload));
    out.put_slice(&payload);
    Ok(())
}

/// Convenience: the frame bytes of `message`.
pub fn frame_bytes(magic: NetworkMagic, message: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = BytesMut::new();
    encode_frame(magic, message, &mut out)?;
    Ok(out.to_vec())
}

fn parse_command(raw: [u8; 12]) -> Result<Command, WireError> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(12);
    let (name, padding) = raw.split_at(end);
    if name.is_empty()
        || !name.iter().all(|b| b.is_ascii_graphic())
        || padding.iter().any(|b| *b != 0)
    {
        return Err(WireError::MalformedCommand(raw));
    }
    let name = std::str::from_utf8(name).expect("ASCII checked above");
    Command::from_name(name).ok_or_else(|| WireError::UnknownCommand(name.to_string()))
}

/// Parses the payload of `command`, which must be exactly `payload`.
pub fn decode_payload(command: Command, payload: &[u8]) -> Result<Message, WireError> {
    if let Some((offset, max)) = list_count(command) {
        if let Some(bytes) = payload.get(offset..offset + 8) {
            let count = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            if count > max as u64 {
                return Err(WireError::TooManyItems {
                    command,
                    count,
                    max,
                });
            }
        }
    }
    let malformed = |e: bincode::error::DecodeError| WireError::MalformedPayload {
        command,
        reason: e.to_string(),
    };
    let empty = || {
        if payload.is_empty() {
            Ok(())
        } else {
            Err(WireError::MalformedPayload {
                command,
                reason: format!("{} bytes where none are allowed", payload.len()),
            })
        }
    };
    let message = match command {
        Command::Version => Message::Version(Box::new(
            encoding::decode_exact(payload).map_err(malformed)?,
        )),
        Command::Verack => empty().map(|_| Message::Verack)?,
        Command::GetAddr => empty().map(|_| Message::GetAddr)?,
        Command::SendHeaders => empty().map(|_| Message::SendHeaders)?,
        Command::Ping => Message::Ping(encoding::decode_exact(payload).map_err(malformed)?),
        Command::Pong => Message::Pong(encoding::decode_exact(payload).map_err(malformed)?),
        Command::Addr => Message::Addr(encoding::decode_exact(payload).map_err(malformed)?),
        Command::Inv => Message::Inv(encoding::decode_exact(payload).map_err(malformed)?),
        Command::GetData => Message::GetData(encoding::decode_exact(payload).map_err(malformed)?),
        Command::NotFound => Message::NotFound(encoding::decode_exact(payload).map_err(malformed)?),
        Command::Block => Message::Block(Box::new(
            encoding::decode_exact(payload).map_err(malformed)?,
        )),
        Command::Tx => Message::Tx(encoding::decode_exact(payload).map_err(malformed)?),
        Command::GetHeaders => {
            Message::GetHeaders(encoding::decode_exact(payload).map_err(malformed)?)
        }
        Command::GetBlocks => {
            Message::GetBlocks(encoding::decode_exact(payload).map_err(malformed)?)
        }
        Command::Headers => Message::Headers(encoding::decode_exact(payload).map_err(malformed)?),
        Command::Reject => Message::Reject(encoding::decode_exact(payload).map_err(malformed)?),
        Command::SendCmpct => {
            Message::SendCmpct(encoding::decode_exact(payload).map_err(malformed)?)
        }
        Command::CmpctBlock => Message::CmpctBlock(Box::new(
            encoding::decode_exact(payload).map_err(malformed)?,
        )),
        Command::GetBlockTxn => {
            Message::GetBlockTxn(encoding::decode_exact(payload).map_err(malformed)?)
        }
        Command::BlockTxn => Message::BlockTxn(encoding::decode_exact(payload).map_err(malformed)?),
    };
    Ok(message)
}

#[derive(Debug)]
enum State {
    /// Waiting for a full frame header.
    Head,
    /// Header accepted; waiting for `length` payload bytes.
    Body(FrameHeader),
}

/// Incremental frame decoder: feed it a buffer, take out whole messages.
#[derive(Debug)]
pub struct FrameDecoder {
    magic: NetworkMagic,
    handshake_complete: bool,
    state: State,
}

impl FrameDecoder {
    pub fn new(magic: NetworkMagic) -> Self {
        FrameDecoder {
            magic,
            handshake_complete: false,
            state: State::Head,
        }
    }

    /// Lifts the small pre-handshake payload limit; call once VERSION and VERACK are done.
    pub fn set_handshake_complete(&mut self) {
        self.handshake_complete = true;
    }

    /// The payload limit in force for `command` now.
    pub fn payload_limit(&self, command: Command) -> usize {
        let limit = max_payload(command);
        if self.handshake_complete {
            limit
        } else {
            limit.min(MAX_HANDSHAKE_PAYLOAD)
        }
    }

    /// Checks a complete 24-byte header.
    fn parse_header(&self, head: &[u8]) -> Result<FrameHeader, WireError> {
        let magic: [u8; 4] = head[0..4].try_into().expect("4 bytes");
        if magic != self.magic.0 {
            return Err(WireError::WrongMagic {
                expected: self.magic.0,
                got: magic,
            });
        }
        let command = parse_command(head[4..16].try_into().expect("12 bytes"))?;
        let length = u32::from_le_bytes(head[16..20].try_into().expect("4 bytes")) as usize;
        let max = self.payload_limit(command);
        if length > max {
            return Err(WireError::PayloadTooLarge {
                command,
                len: length,
                max,
            });
        }
        Ok(FrameHeader {
            command,
            length,
            checksum: head[20..24].try_into().expect("4 bytes"),
        })
    }

    /// Takes the next whole message out of `buf`, or `None` when more bytes are needed.
    /// After an error the stream is unusable: the connection must be dropped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        loop {
            match self.state {
                State::Head => {
                    // Reject a wrong magic as soon as its four bytes are here.
                    let seen = buf.len().min(4);
                    if buf[..seen] != self.magic.0[..seen] {
                        let mut got = [0u8; 4];
                        got[..seen].copy_from_slice(&buf[..seen]);
                        return Err(WireError::WrongMagic {
                            expected: self.magic.0,
                            got,
                        });
                    }
                    if buf.len() < FRAME_HEADER_SIZE {
                        return Ok(None);
                    }
                    let header = self.parse_header(&buf[..FRAME_HEADER_SIZE])?;
                    buf.advance(FRAME_HEADER_SIZE);
                    // Reserve at most a modest amount up front: a bare header must not make
                    // every peer's buffer grow to its command's limit before bytes arrive.
                    // Only the part of the body not yet buffered is reserved.
                    let missing = header.length.saturating_sub(buf.len());
                    buf.reserve(missing.min(MAX_UPFRONT_RESERVE));
                    self.state = State::Body(header);
                }
                State::Body(header) => {
                    if buf.len() < header.length {
                        return Ok(None);
                    }
                    let payload = buf.split_to(header.length);
                    self.state = State::Head;
                    let expected = checksum(&payload);
                    if expected != header.checksum {
                        return Err(WireError::BadChecksum {
                            command: header.command,
                            expected,
                            got: header.checksum,
                        });
                    }
                    return decode_payload(header.command, &payload).map(Some);
                }
            }
        }
    }
}

/// tokio-util adapter: `Framed<TlsStream, MessageCodec>` reads and writes `Message`s.
#[derive(Debug)]
pub struct MessageCodec {
    decoder: FrameDecoder,
}

impl MessageCodec {
    pub fn new(magic: NetworkMagic) -> Self {
        MessageCodec {
            decoder: FrameDecoder::new(magic),
        }
    }

    pub fn set_handshake_complete(&mut self) {
        self.decoder.set_handshake_complete();
    }
}

impl tokio_util::codec::Decoder for MessageCodec {
    type Item = Message;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        self.decoder.decode(src)
    }
}

impl tokio_util::codec::Encoder<Message> for MessageCodec {
    type Error = WireError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), WireError> {
        encode_frame(self.decoder.magic, &item, dst)
    }
}
