//! Holds docs/PROTOCOL.md to the code: every ```vector block in the document must be exactly
//! the encoding of a value this file builds, must decode back to that value (or be rejected by
//! the frame decoder at the stated byte with the stated error), and every vector this file
//! knows must appear in the document. The limits and network tables are checked the same way.
//!
//! After a deliberate format change, `every_vector_block_is_laid_out_as_rendered` fails with
//! the blocks to paste into the document.

use bytes::BytesMut;
use ed25519_dalek::SigningKey;
use noded::encoding::{self, BoundedString, BoundedVec};
use noded::params::{Network, BLOCK_VERSION};
use noded::types::block::HEADER_SIZE;
use noded::types::hash::sha256d_parts;
use noded::types::pow::target_from_compact;
use noded::types::transaction::transfer_signing_message;
use noded::types::{merkle_root, Address, Amount, Hash256, Header, NodeId, Transaction, Transfer};
use noded::wire::compact::{
    BlockTxn, CompactBlock, GetBlockTxn, SendCmpct, ShortIdKey, COMPACT_VERSION,
};
use noded::wire::frame::frame_bytes;
use noded::wire::limits::{self, list_count, max_payload, FRAME_HEADER_SIZE};
use noded::wire::message::reject_code;
use noded::wire::{
    Command, FrameDecoder, InvItem, InvKind, LocatorRequest, Message, NetAddress, Reject,
    TimestampedAddress, Version, PROTOCOL_VERSION, SERVICE_NETWORK,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

const DOC: &str = include_str!("../docs/PROTOCOL.md");

const NETWORKS: [Network; 3] = [Network::Main, Network::Test, Network::Regtest];

/// What a named vector stands for.
enum Value {
    /// A complete, valid frame of `message` on `network`.
    Frame { network: Network, message: Message },
    /// Bytes a decoder for `network` must reject with `error` as soon as byte `fires_at`
    /// (1-based) arrives, having produced no message before.
    Invalid {
        network: Network,
        handshake_complete: bool,
        bytes: Vec<u8>,
        error: &'static str,
        fires_at: usize,
    },
    /// A 32-byte hash, in byte order.
    Hash(Hash256),
    /// An encoded header (88 bytes).
    EncodedHeader(Header),
    /// An encoded transaction.
    EncodedTx(Transaction),
    /// Other raw bytes (a public key, an address, a signing message, a target).
    Raw(Vec<u8>),
}

struct Vector {
    name: String,
    value: Value,
}

impl Vector {
    fn new(name: &str, value: Value) -> Vector {
        Vector {
            name: name.to_string(),
            value,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match &self.value {
            Value::Frame { network, message } => {
                frame_bytes(network.params().magic, message).expect("vector fits its limit")
            }
            Value::Invalid { bytes, .. } | Value::Raw(bytes) => bytes.clone(),
            Value::Hash(hash) => hash.0.to_vec(),
            Value::EncodedHeader(header) => encoding::encode(header),
            Value::EncodedTx(tx) => encoding::encode(tx),
        }
    }

    /// The attributes the vector's info string must carry besides its name.
    fn attributes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &self.value {
            Value::Frame { network, message } => {
                out.insert("network".into(), network.name().into());
                out.insert("command".into(), message.command().name().into());
            }
            Value::Invalid {
                network,
                handshake_complete,
                error,
                fires_at,
                ..
            } => {
                out.insert("network".into(), network.name().into());
                out.insert(
                    "handshake".into(),
                    if *handshake_complete {
                        "done"
                    } else {
                        "pending"
                    }
                    .into(),
                );
                out.insert("error".into(), (*error).into());
                out.insert("fires-at".into(), fires_at.to_string());
            }
            Value::Hash(_) | Value::EncodedHeader(_) | Value::EncodedTx(_) | Value::Raw(_) => {}
        }
        out
    }

    /// Checks that `bytes` decode back to the value (or are rejected as stated).
    fn check_decode(&self, bytes: &[u8]) {
        let name = &self.name;
        match &self.value {
            Value::Frame { network, message } => {
                let handshake = bytes.len() - FRAME_HEADER_SIZE > limits::MAX_HANDSHAKE_PAYLOAD;
                // All at once.
                let mut decoder = decoder_for(*network, handshake);
                let mut buf = BytesMut::from(bytes);
                let got = decoder
                    .decode(&mut buf)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.as_ref(), Some(message), "{name}");
                assert!(buf.is_empty(), "{name}: bytes left over");
                // One byte at a time: nothing until the last byte.
                let mut decoder = decoder_for(*network, handshake);
                let mut buf = BytesMut::new();
                for (i, byte) in bytes.iter().enumerate() {
                    buf.extend_from_slice(&[*byte]);
                    let got = decoder
                        .decode(&mut buf)
                        .unwrap_or_else(|e| panic!("{name}: byte {}: {e}", i + 1));
                    if i + 1 < bytes.len() {
                        assert!(got.is_none(), "{name}: message before the last byte");
                    } else {
                        assert_eq!(got.as_ref(), Some(message), "{name}");
                    }
                }
                // And the payload alone, through the payload decoder.
                let payload = &bytes[FRAME_HEADER_SIZE..];
                assert_eq!(
                    &noded::wire::decode_payload(message.command(), payload).unwrap(),
                    message,
                    "{name}"
                );
            }
            Value::Invalid {
                network,
                handshake_complete,
                error,
                fires_at,
                ..
            } => {
                let mut decoder = decoder_for(*network, *handshake_complete);
                let mut buf = BytesMut::new();
                let mut fired = None;
                for (i, byte) in bytes.iter().enumerate() {
                    buf.extend_from_slice(&[*byte]);
                    match decoder.decode(&mut buf) {
                        Ok(None) => {}
                        Ok(Some(m)) => panic!("{name}: decoded {m:?}"),
                        Err(e) => {
                            fired = Some((i + 1, error_name(&e)));
                            break;
                        }
                    }
                }
                assert_eq!(
                    fired,
                    Some((*fires_at, error.to_string())),
                    "{name}: (byte, error) at which the decoder rejects"
                );
                assert_eq!(*fires_at, bytes.len(), "{name}: vector ends where it fails");
            }
            Value::Hash(hash) => {
                assert_eq!(hex::encode(bytes).parse::<Hash256>().unwrap(), *hash);
            }
            Value::EncodedHeader(header) => {
                assert_eq!(bytes.len(), HEADER_SIZE, "{name}");
                assert_eq!(bytes, header.to_bytes(), "{name}");
                assert_eq!(encoding::decode_exact::<Header>(bytes).unwrap(), *header);
            }
            Value::EncodedTx(tx) => {
                assert_eq!(encoding::decode_exact::<Transaction>(bytes).unwrap(), *tx);
            }
            Value::Raw(_) => {}
        }
    }
}

fn decoder_for(network: Network, handshake_complete: bool) -> FrameDecoder {
    let mut decoder = FrameDecoder::new(network.params().magic);
    if handshake_complete {
        decoder.set_handshake_complete();
    }
    decoder
}

/// The variant name of a wire error, e.g. `BadChecksum`.
fn error_name(error: &noded::wire::WireError) -> String {
    format!("{error:?}")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn address_of(seed: u8) -> Address {
    Address::from_public_key(&key(seed).verifying_key().to_bytes())
}

fn sock(text: &str) -> SocketAddr {
    text.parse().expect("socket address literal")
}

/// The transfer of the tx vector: 5 coins from seed-0x01's account to seed-0x02's, fee 10,000,
/// nonce 0, signed for regtest.
fn transfer() -> Transfer {
    Transfer::sign(
        &key(1),
        Network::Regtest.params().magic,
        address_of(2),
        Amount::from_coins(5),
        Amount(10_000),
        0,
    )
}

fn version() -> Version {
    Version {
        protocol_version: PROTOCOL_VERSION,
        services: SERVICE_NETWORK,
        timestamp: 1_767_225_600,
        receiver: NetAddress::new(sock("203.0.113.7:8333"), SERVICE_NETWORK),
        sender: NetAddress::new(sock("[2001:db8::1]:8333"), SERVICE_NETWORK),
        nonce: 0x0123_4567_89ab_cdef,
        user_agent: BoundedString::new("/noded:0.1.0/".to_string()).unwrap(),
        best_height: 42,
        node_id: NodeId(key(1).verifying_key().to_bytes()),
        relay: true,
    }
}

fn list<T, const MAX: usize>(items: Vec<T>) -> BoundedVec<T, MAX> {
    BoundedVec::new(items).unwrap_or_else(|_| panic!("list over its cap"))
}

/// Rewrites the checksum of a frame after its payload was edited.
fn fix_checksum(frame: &mut [u8]) {
    let sum = noded::wire::frame::checksum(&frame[FRAME_HEADER_SIZE..]);
    frame[20..24].copy_from_slice(&sum);
}

/// A frame with an arbitrary command field and payload, for the invalid vectors.
fn raw_frame(network: Network, command: &[u8; 12], payload: &[u8]) -> Vec<u8> {
    let mut out = network.params().magic.0.to_vec();
    out.extend_from_slice(command);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&noded::wire::frame::checksum(payload));
    out.extend_from_slice(payload);
    out
}

/// The three txids of the merkle vectors.
fn merkle_txids() -> [Hash256; 3] {
    [
        Hash256([0x11; 32]),
        Hash256([0x22; 32]),
        Hash256([0x33; 32]),
    ]
}

/// The point of order 8 the signature edge vectors add as a torsion component.
fn order8_point() -> curve25519_dalek::edwards::EdwardsPoint {
    curve25519_dalek::constants::EIGHT_TORSION[1]
}

/// The signature edge vectors of PROTOCOL.md §9.6: regtest transfers of 1 coin, fee 10,000, to
/// `seed02-address`, whose `A`, `R` and `S` are built from the scalars a = [5; 32] mod ℓ and
/// r = [9; 32] mod ℓ, the identity, the order-8 point `T` and non-canonical encodings.
fn signature_edges() -> Vec<(&'static str, Transfer)> {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let magic = Network::Regtest.params().magic;
    let a = Scalar::from_bytes_mod_order([5; 32]);
    let r = Scalar::from_bytes_mod_order([9; 32]);
    let t = order8_point();
    let big_a = (a * B).compress().to_bytes();
    let big_r = (r * B).compress().to_bytes();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // y = p + 1: a non-canonical encoding of y = 1, the identity.
    let mut p_plus_1 = [0xffu8; 32];
    p_plus_1[0] = 0xee;
    p_plus_1[31] = 0x7f;
    // ℓ, little-endian.
    let mut order = [0u8; 32];
    order[..16].copy_from_slice(&[
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14,
    ]);
    order[31] = 0x10;
    // A transfer from `from` with nonce `nonce`, signature R = `r_bytes` and S = `s(k)`.
    let build = |from: [u8; 32], r_bytes: [u8; 32], nonce: u64, s: &dyn Fn(Scalar) -> [u8; 32]| {
        let mut tx = Transfer {
            from,
            to: address_of(2),
            amount: Amount::from_coins(1),
            fee: Amount(10_000),
            nonce,
            signature: [0; 64],
        };
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(from);
        h.update(tx.signing_message(magic));
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        tx.signature[..32].copy_from_slice(&r_bytes);
        tx.signature[32..].copy_from_slice(&s(k));
        tx
    };
    let honest_s = |k: Scalar| (r + k * a).to_bytes();
    let s_plus_order = |k: Scalar| {
        let s = (r + k * a).to_bytes();
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = s[i] as u16 + order[i] as u16 + carry;
            sum[i] = v as u8;
            carry = v >> 8;
        }
        sum
    };
    // A = aB + T: the first nonce for which the torsion does not vanish from [k]A.
    let a_torsion = (0..)
        .map(|nonce| build((a * B + t).compress().to_bytes(), big_r, nonce, &honest_s))
        .find(|tx| tx.verify_signature(magic).is_err())
        .expect("k is a multiple of 8 for one nonce in 8 only");
    vec![
        ("sig-honest", build(big_a, big_r, 0, &honest_s)),
        (
            "sig-a-identity",
            build(identity, big_r, 0, &|_| r.to_bytes()),
        ),
        ("sig-a-torsion", a_torsion),
        (
            "sig-r-identity",
            build(big_a, identity, 0, &|k| (k * a).to_bytes()),
        ),
        (
            "sig-r-non-canonical",
            build(big_a, p_plus_1, 0, &|k| (k * a).to_bytes()),
        ),
        (
            "sig-r-torsion",
            build(big_a, (r * B + t).compress().to_bytes(), 0, &honest_s),
        ),
        ("sig-s-plus-order", build(big_a, big_r, 0, &s_plus_order)),
    ]
}

/// The key nonce of the compact-block vectors.
const COMPACT_NONCE: u64 = 0x0102_0304_0506_0708;

fn vectors() -> Vec<Vector> {
    let regtest = Network::Regtest.params();
    let genesis = regtest.genesis_block();
    let tx = transfer();
    let txid = Transaction::Transfer(tx.clone()).txid();
    let frame = |network: Network, message: Message| Value::Frame { network, message };
    // The compact-block vectors: a block of the genesis coinbase and the sample transfer on
    // top of genesis (its proof of work is not the point; its bytes are).
    let compact_header = noded::types::Header {
        prev_hash: genesis.hash(),
        time: genesis.header.time + 600,
        ..genesis.header
    };
    let mut v = vec![
        // Frames, one per command.
        Vector::new(
            "version-main",
            frame(Network::Main, Message::Version(Box::new(version()))),
        ),
        Vector::new("verack-regtest", frame(Network::Regtest, Message::Verack)),
        Vector::new(
            "ping-main",
            frame(Network::Main, Message::Ping(0x0102_0304_0506_0708)),
        ),
        Vector::new(
            "pong-main",
            frame(Network::Main, Message::Pong(0x0102_0304_0506_0708)),
        ),
        Vector::new(
            "addr-main",
            frame(
                Network::Main,
                Message::Addr(list(vec![
                    TimestampedAddress {
                        time: 1_767_225_600,
                        addr: NetAddress::new(sock("203.0.113.7:8333"), SERVICE_NETWORK),
                    },
                    TimestampedAddress {
                        time: 1_767_225_660,
                        addr: NetAddress::new(sock("[2001:db8::2]:18333"), 0),
                    },
                ])),
            ),
        ),
        Vector::new("getaddr-regtest", frame(Network::Regtest, Message::GetAddr)),
        Vector::new(
            "inv-regtest",
            frame(
                Network::Regtest,
                Message::Inv(list(vec![
                    InvItem {
                        kind: InvKind::Tx,
                        hash: txid,
                    },
                    InvItem {
                        kind: InvKind::Block,
                        hash: genesis.hash(),
                    },
                ])),
            ),
        ),
        Vector::new(
            "getdata-regtest",
            frame(
                Network::Regtest,
                Message::GetData(list(vec![InvItem {
                    kind: InvKind::Block,
                    hash: genesis.hash(),
                }])),
            ),
        ),
        Vector::new(
            "notfound-regtest",
            frame(
                Network::Regtest,
                Message::NotFound(list(vec![InvItem {
                    kind: InvKind::Tx,
                    hash: txid,
                }])),
            ),
        ),
        Vector::new(
            "block-regtest-genesis",
            frame(Network::Regtest, Message::Block(Box::new(genesis.clone()))),
        ),
        Vector::new(
            "tx-regtest",
            frame(
                Network::Regtest,
                Message::Tx(Box::new(Transaction::Transfer(tx.clone()))),
            ),
        ),
        Vector::new(
            "getheaders-regtest",
            frame(
                Network::Regtest,
                Message::GetHeaders(LocatorRequest {
                    protocol_version: PROTOCOL_VERSION,
                    locator: list(vec![Hash256([0x11; 32]), genesis.hash()]),
                    stop: Hash256::ZERO,
                }),
            ),
        ),
        Vector::new(
            "getblocks-regtest",
            frame(
                Network::Regtest,
                Message::GetBlocks(LocatorRequest {
                    protocol_version: PROTOCOL_VERSION,
                    locator: list(vec![genesis.hash()]),
                    stop: Hash256([0x33; 32]),
                }),
            ),
        ),
        Vector::new(
            "headers-regtest-genesis",
            frame(
                Network::Regtest,
                Message::Headers(list(vec![genesis.header])),
            ),
        ),
        Vector::new(
            "reject-regtest",
            frame(
                Network::Regtest,
                Message::Reject(Box::new(Reject {
                    message: BoundedString::new("tx".to_string()).unwrap(),
                    code: reject_code::INVALID,
                    reason: BoundedString::new("bad signature".to_string()).unwrap(),
                    hash: Some(txid),
                })),
            ),
        ),
        Vector::new(
            "reject-nohash-main",
            frame(
                Network::Main,
                Message::Reject(Box::new(Reject {
                    message: BoundedString::new("version".to_string()).unwrap(),
                    code: reject_code::OBSOLETE,
                    reason: BoundedString::new(
                        "protocol version 0 is below the minimum 1".to_string(),
                    )
                    .unwrap(),
                    hash: None,
                })),
            ),
        ),
        Vector::new(
            "sendheaders-regtest",
            frame(Network::Regtest, Message::SendHeaders),
        ),
        Vector::new(
            "sendcmpct-regtest",
            frame(
                Network::Regtest,
                Message::SendCmpct(SendCmpct {
                    high_bandwidth: true,
                    version: COMPACT_VERSION,
                }),
            ),
        ),
        Vector::new(
            "cmpctblock-regtest",
            frame(
                Network::Regtest,
                Message::CmpctBlock(Box::new(CompactBlock::new(
                    compact_header,
                    COMPACT_NONCE,
                    genesis.transactions[0].clone(),
                    &[genesis.transactions[0].txid(), txid],
                ))),
            ),
        ),
        Vector::new(
            "getblocktxn-regtest",
            frame(
                Network::Regtest,
                Message::GetBlockTxn(GetBlockTxn {
                    block_hash: compact_header.hash(),
                    indexes: list(vec![1]),
                }),
            ),
        ),
        Vector::new(
            "blocktxn-regtest",
            frame(
                Network::Regtest,
                Message::BlockTxn(BlockTxn {
                    block_hash: compact_header.hash(),
                    txs: list(vec![Transaction::Transfer(tx.clone())]),
                }),
            ),
        ),
    ];
    let short_id_key = ShortIdKey::new(&compact_header, COMPACT_NONCE);
    v.push(Vector::new(
        "short-id-key",
        Value::Raw([short_id_key.k0.to_le_bytes(), short_id_key.k1.to_le_bytes()].concat()),
    ));
    v.push(Vector::new(
        "short-id-transfer",
        Value::Raw(short_id_key.short_id(&txid).0.to_vec()),
    ));

    // Consensus values.
    for network in NETWORKS {
        v.push(Vector::new(
            &format!("genesis-hash-{network}"),
            Value::Hash(network.params().genesis_hash()),
        ));
    }
    for network in NETWORKS {
        v.push(Vector::new(
            &format!("pow-limit-target-{network}"),
            Value::Raw(network.params().pow_limit().to_vec()),
        ));
    }
    let coinbase = genesis.transactions[0].clone();
    v.push(Vector::new(
        "genesis-header-regtest",
        Value::EncodedHeader(genesis.header),
    ));
    v.push(Vector::new(
        "genesis-coinbase",
        Value::EncodedTx(coinbase.clone()),
    ));
    v.push(Vector::new(
        "genesis-coinbase-txid",
        Value::Hash(coinbase.txid()),
    ));
    v.push(Vector::new(
        "genesis-merkle-root",
        Value::Hash(genesis.header.merkle_root),
    ));
    v.push(Vector::new(
        "seed01-public-key",
        Value::Raw(key(1).verifying_key().to_bytes().to_vec()),
    ));
    v.push(Vector::new(
        "seed01-address",
        Value::Raw(address_of(1).0.to_vec()),
    ));
    v.push(Vector::new(
        "seed02-address",
        Value::Raw(address_of(2).0.to_vec()),
    ));
    v.push(Vector::new(
        "transfer-signing-message-regtest",
        Value::Raw(transfer_signing_message(
            regtest.magic,
            &tx.from,
            &tx.to,
            tx.amount,
            tx.fee,
            tx.nonce,
        )),
    ));
    v.push(Vector::new(
        "transfer-regtest",
        Value::EncodedTx(Transaction::Transfer(tx.clone())),
    ));
    v.push(Vector::new("transfer-txid-regtest", Value::Hash(txid)));
    v.push(Vector::new(
        "order8-point",
        Value::Raw(order8_point().compress().to_bytes().to_vec()),
    ));
    for (name, edge) in signature_edges() {
        v.push(Vector::new(
            name,
            Value::EncodedTx(Transaction::Transfer(edge)),
        ));
    }

    let ids = merkle_txids();
    let leaves: Vec<Hash256> = ids
        .iter()
        .map(|id| sha256d_parts(&[&[0x00], &id.0]))
        .collect();
    let inner01 = sha256d_parts(&[&[0x01], &leaves[0].0, &leaves[1].0]);
    let root = sha256d_parts(&[&[0x01], &inner01.0, &leaves[2].0]);
    assert_eq!(root, merkle_root(&ids), "the documented construction");
    for (i, leaf) in leaves.iter().enumerate() {
        v.push(Vector::new(
            &format!("merkle3-leaf-{i}"),
            Value::Hash(*leaf),
        ));
    }
    v.push(Vector::new("merkle3-inner-01", Value::Hash(inner01)));
    v.push(Vector::new("merkle3-root", Value::Hash(root)));

    // Frames the decoder must reject, and where.
    let ping_main = frame_bytes(
        Network::Main.params().magic,
        &Message::Ping(0x0102_0304_0506_0708),
    )
    .unwrap();
    v.push(Vector::new(
        "invalid-wrong-magic",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: false,
            bytes: ping_main[..3].to_vec(),
            error: "WrongMagic",
            fires_at: 3,
        },
    ));
    v.push(Vector::new(
        "invalid-command-padding",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: false,
            bytes: raw_frame(Network::Regtest, b"verack\0x\0\0\0\0", &[]),
            error: "MalformedCommand",
            fires_at: 24,
        },
    ));
    v.push(Vector::new(
        "invalid-unknown-command",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: false,
            bytes: raw_frame(Network::Regtest, b"mempool\0\0\0\0\0", &[]),
            error: "UnknownCommand",
            fires_at: 24,
        },
    ));
    let mut oversize = raw_frame(Network::Regtest, &Command::Inv.to_bytes(), &[]);
    oversize[16..20].copy_from_slice(&1025u32.to_le_bytes());
    v.push(Vector::new(
        "invalid-length-before-handshake",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: false,
            bytes: oversize,
            error: "PayloadTooLarge",
            fires_at: 24,
        },
    ));
    let verack_with_body = raw_frame(Network::Regtest, &Command::Verack.to_bytes(), &[0]);
    v.push(Vector::new(
        "invalid-verack-with-payload",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: verack_with_body[..FRAME_HEADER_SIZE].to_vec(),
            error: "PayloadTooLarge",
            fires_at: 24,
        },
    ));
    let mut bad_checksum = frame_bytes(regtest.magic, &Message::Ping(0)).unwrap();
    bad_checksum[20..24].copy_from_slice(&[0; 4]);
    v.push(Vector::new(
        "invalid-checksum",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: bad_checksum,
            error: "BadChecksum",
            fires_at: 32,
        },
    ));
    let too_many = (limits::MAX_INV_ITEMS as u64 + 1).to_le_bytes();
    v.push(Vector::new(
        "invalid-inv-count",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: raw_frame(Network::Regtest, &Command::Inv.to_bytes(), &too_many),
            error: "TooManyItems",
            fires_at: 32,
        },
    ));
    // An INV of one (zero) item whose count says 50,001: the count is checked only once the
    // whole payload is in, and after the checksum.
    let mut count_then_item = too_many.to_vec();
    count_then_item.extend_from_slice(&[0; 36]);
    let late_count = raw_frame(Network::Regtest, &Command::Inv.to_bytes(), &count_then_item);
    v.push(Vector::new(
        "invalid-inv-count-whole-payload",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: late_count.clone(),
            error: "TooManyItems",
            fires_at: FRAME_HEADER_SIZE + 44,
        },
    ));
    let mut late_count_bad_sum = late_count;
    late_count_bad_sum[20..24].copy_from_slice(&[0; 4]);
    v.push(Vector::new(
        "invalid-inv-count-bad-checksum",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: late_count_bad_sum,
            error: "BadChecksum",
            fires_at: FRAME_HEADER_SIZE + 44,
        },
    ));
    let mut bad_bool = frame_bytes(
        Network::Main.params().magic,
        &Message::Version(Box::new(version())),
    )
    .unwrap();
    *bad_bool.last_mut().unwrap() = 2;
    fix_checksum(&mut bad_bool);
    let bad_bool_len = bad_bool.len();
    v.push(Vector::new(
        "invalid-version-relay-2",
        Value::Invalid {
            network: Network::Main,
            handshake_complete: false,
            bytes: bad_bool,
            error: "MalformedPayload",
            fires_at: bad_bool_len,
        },
    ));
    let mut trailing = encoding::encode(&coinbase);
    trailing.push(0);
    let trailing = raw_frame(Network::Regtest, &Command::Tx.to_bytes(), &trailing);
    let trailing_len = trailing.len();
    v.push(Vector::new(
        "invalid-tx-trailing-byte",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: trailing,
            error: "MalformedPayload",
            fires_at: trailing_len,
        },
    ));
    let mut bad_variant = encoding::encode(&coinbase);
    bad_variant[0] = 2;
    let bad_variant = raw_frame(Network::Regtest, &Command::Tx.to_bytes(), &bad_variant);
    let bad_variant_len = bad_variant.len();
    v.push(Vector::new(
        "invalid-tx-variant",
        Value::Invalid {
            network: Network::Regtest,
            handshake_complete: true,
            bytes: bad_variant,
            error: "MalformedPayload",
            fires_at: bad_variant_len,
        },
    ));
    v
}

/// A ```vector block of the document.
struct DocVector {
    line: usize,
    attributes: BTreeMap<String, String>,
    bytes: Vec<u8>,
}

/// Every ```vector block of the document, by name. Hex may be split by any whitespace.
fn doc_vectors() -> BTreeMap<String, DocVector> {
    let mut out = BTreeMap::new();
    let mut lines = DOC.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```vector") else {
            continue;
        };
        let mut attributes = BTreeMap::new();
        for word in info.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .unwrap_or_else(|| panic!("line {}: `{word}` is not key=value", n + 1));
            let old = attributes.insert(k.to_string(), v.to_string());
            assert!(old.is_none(), "line {}: `{k}` given twice", n + 1);
        }
        let mut hex_text = String::new();
        loop {
            let (_, body) = lines
                .next()
                .unwrap_or_else(|| panic!("line {}: vector block never closed", n + 1));
            if body.trim_start().starts_with("```") {
                break;
            }
            hex_text.extend(body.chars().filter(|c| !c.is_whitespace()));
        }
        let bytes = hex::decode(&hex_text)
            .unwrap_or_else(|e| panic!("line {}: vector is not hex: {e}", n + 1));
        let name = attributes
            .remove("name")
            .unwrap_or_else(|| panic!("line {}: vector without a name", n + 1));
        let old = out.insert(
            name.clone(),
            DocVector {
                line: n + 1,
                attributes,
                bytes,
            },
        );
        assert!(old.is_none(), "vector {name} appears twice");
    }
    out
}

#[test]
fn every_vector_in_the_document_matches_the_code() {
    let doc = doc_vectors();
    let known = vectors();
    let known_names: BTreeSet<&str> = known.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        known_names.len(),
        known.len(),
        "duplicate names in the test"
    );
    let doc_names: BTreeSet<&str> = doc.keys().map(String::as_str).collect();
    let missing: Vec<_> = known_names.difference(&doc_names).collect();
    let unknown: Vec<_> = doc_names.difference(&known_names).collect();
    assert!(
        missing.is_empty(),
        "vectors missing from the document: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "vectors the test does not know: {unknown:?}"
    );

    for vector in &known {
        let in_doc = &doc[&vector.name];
        let name = &vector.name;
        assert_eq!(
            hex::encode(&in_doc.bytes),
            hex::encode(vector.bytes()),
            "vector {name} (PROTOCOL.md line {}) differs from the code",
            in_doc.line
        );
        assert_eq!(
            in_doc.attributes,
            vector.attributes(),
            "attributes of vector {name} (PROTOCOL.md line {})",
            in_doc.line
        );
        vector.check_decode(&in_doc.bytes);
    }
}

#[test]
fn the_transfer_vector_verifies_on_regtest_only() {
    let tx = transfer();
    assert_eq!(tx.verify_signature(Network::Regtest.params().magic), Ok(()));
    assert!(tx.verify_signature(Network::Main.params().magic).is_err());
    use noded::chain::signatures::verify_transfer_signature;
    assert!(verify_transfer_signature(
        &tx,
        Network::Regtest.params().magic
    ));
    assert!(!verify_transfer_signature(
        &tx,
        Network::Main.params().magic
    ));
    assert_eq!(tx.sender(), address_of(1));
}

/// The table of §9.6 gives, for each signature edge vector, the verdict of the strict check and
/// of the block rule; both are recomputed here, and the batch path must agree with the block
/// rule in any company.
#[test]
fn the_signature_edge_table_matches_both_checks() {
    use noded::chain::signatures::{verify_chunk, verify_transfer_signature};
    let magic = Network::Regtest.params().magic;
    let doc = doc_vectors();
    let honest = transfer();
    let verdict = |ok: bool| if ok { "accepted" } else { "refused" };
    let mut seen = BTreeSet::new();
    for row in table("signature-edges") {
        // | vector | A | R | S | strict | block rule |
        let name = row[0].clone();
        let bytes = &doc
            .get(&name)
            .unwrap_or_else(|| panic!("no vector {name}"))
            .bytes;
        let Transaction::Transfer(tx) = encoding::decode_exact::<Transaction>(bytes).unwrap()
        else {
            panic!("{name} is not a transfer");
        };
        let strict = tx.verify_signature(magic).is_ok();
        let block = verify_transfer_signature(&tx, magic);
        assert_eq!(row[4], verdict(strict), "{name}: strict");
        assert_eq!(row[5], verdict(block), "{name}: block rule");
        for at in 0..3 {
            let mut batch = vec![&honest, &honest];
            batch.insert(at, &tx);
            let expected = if block { Ok(()) } else { Err(at) };
            assert_eq!(verify_chunk(&batch, magic), expected, "{name}: batch");
        }
        assert!(seen.insert(name.clone()), "{name} listed twice");
    }
    for (name, _) in signature_edges() {
        assert!(seen.contains(name), "{name} has no row in the table");
    }
}

/// The REJECTs noded sends (sections 8.15, 10.2 and 10.7) are the documented ones: the
/// `reject-nohash-main` vector is what the protocol core answers to a VERSION of protocol
/// version 0, and a wrong magic, before any VERSION, gets the REJECT section 10.7 quotes.
#[test]
fn the_rejects_noded_sends_are_the_documented_ones() {
    use noded::protocol::addrman::AddrMan;
    use noded::protocol::bans::BanList;
    use noded::protocol::{Core, CoreConfig, Input, Output};
    use noded::time::{LocalTime, Now};
    let now = Now {
        local: LocalTime::from_millis(0),
        unix_ms: 1_800_000_000_000,
    };
    let peer_key = key(1).verifying_key().to_bytes();
    let rejects = |feed: &dyn Fn(&mut Core)| -> Vec<Reject> {
        let mut core = Core::new(
            CoreConfig::new(NodeId([9; 32])),
            AddrMan::new([9; 32]),
            BanList::default(),
        );
        let connected = Input::Connected {
            peer: 7,
            addr: sock("203.0.113.7:40000"),
            dial: None,
            node_id: NodeId(peer_key),
        };
        core.handle(now, connected).unwrap();
        feed(&mut core);
        core.drain_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(7, Message::Reject(r)) => Some(*r),
                _ => None,
            })
            .collect()
    };

    let mut old = version();
    old.protocol_version = 0;
    let sent = rejects(&|core| {
        let message = Message::Version(Box::new(old.clone()));
        core.handle(now, Input::Received { peer: 7, message })
            .unwrap()
    });
    let Some(Value::Frame {
        message: Message::Reject(documented),
        ..
    }) = vectors()
        .into_iter()
        .find(|v| v.name == "reject-nohash-main")
        .map(|v| v.value)
    else {
        panic!("reject-nohash-main is a REJECT frame");
    };
    assert_eq!(sent, vec![*documented.clone()]);
    assert!(DOC.contains(&format!(
        "reason `{}`",
        documented.reason.as_str().replace('0', "V")
    )));

    let wrong_magic = || noded::wire::WireError::WrongMagic {
        expected: Network::Regtest.params().magic.0,
        got: Network::Main.params().magic.0,
    };
    let sent = rejects(&|core| {
        let error = wrong_magic();
        core.handle(now, Input::Broken { peer: 7, error }).unwrap()
    });
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = &sent[0];
    assert_eq!(r.code, reject_code::INVALID);
    assert!(r.hash.is_none());
    let quoted = format!(
        "(message `{}`, code 0x{:02x} INVALID, reason `{}`",
        r.message.as_str(),
        r.code,
        r.reason.as_str()
    );
    assert!(DOC.contains(&quoted), "PROTOCOL.md quotes {quoted}");
}

#[test]
fn genesis_headers_are_as_documented() {
    for network in NETWORKS {
        let p = network.params();
        let genesis = p.genesis_block();
        assert_eq!(genesis.header.version, BLOCK_VERSION);
        assert_eq!(genesis.header.prev_hash, Hash256::ZERO);
        assert_eq!(genesis.header.bits, p.pow_limit_bits);
        assert_eq!(genesis.header.time, p.genesis_time);
        assert_eq!(genesis.header.nonce, p.genesis_nonce);
        assert_eq!(
            target_from_compact(p.pow_limit_bits).unwrap(),
            p.pow_limit()
        );
    }
}

/// The rows of the table between `<!-- {tag}:begin -->` and `<!-- {tag}:end -->`, as cells,
/// without the heading and separator rows.
fn table(tag: &str) -> Vec<Vec<String>> {
    let begin = format!("<!-- {tag}:begin -->");
    let end = format!("<!-- {tag}:end -->");
    let start = DOC
        .find(&begin)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no {begin}"));
    let stop = DOC[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no {end}"));
    DOC[start + begin.len()..start + stop]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

fn number(cell: &str) -> u64 {
    let digits: String = cell.chars().filter(|c| *c != ',' && *c != '_').collect();
    match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    }
    .unwrap_or_else(|e| panic!("`{cell}` is not a number: {e}"))
}

#[test]
fn the_limits_table_matches_the_code() {
    let rows = table("limits");
    let mut seen = BTreeSet::new();
    for row in &rows {
        // | command | max payload | count offset | count cap | ... |
        let command =
            Command::from_name(&row[0]).unwrap_or_else(|| panic!("unknown command {}", row[0]));
        assert!(seen.insert(row[0].clone()), "{} listed twice", row[0]);
        assert_eq!(number(&row[1]) as usize, max_payload(command), "{command}");
        let count = match (row[2].as_str(), row[3].as_str()) {
            ("-", "-") => None,
            (offset, cap) => Some((number(offset) as usize, number(cap) as usize)),
        };
        assert_eq!(count, list_count(command), "{command}");
    }
    assert_eq!(seen.len(), Command::ALL.len(), "every command has a row");
}

#[test]
fn the_constants_table_matches_the_code() {
    use noded::types::amount::{COIN, MAX_MONEY};
    use noded::types::block::{MAX_BLOCK_SIZE, MAX_BLOCK_TXS};
    use noded::types::transaction::{MAX_TX_SIZE, MIN_TX_SIZE};
    let expected: BTreeMap<&str, u64> = [
        ("FRAME_HEADER_SIZE", FRAME_HEADER_SIZE as u64),
        ("MAX_MESSAGE_SIZE", limits::MAX_MESSAGE_SIZE as u64),
        (
            "MAX_HANDSHAKE_PAYLOAD",
            limits::MAX_HANDSHAKE_PAYLOAD as u64,
        ),
        ("MAX_DECODE_BYTES", encoding::MAX_DECODE_BYTES as u64),
        ("MAX_INV_ITEMS", limits::MAX_INV_ITEMS as u64),
        ("MAX_HEADERS_ITEMS", limits::MAX_HEADERS_ITEMS as u64),
        ("MAX_ADDR_ITEMS", limits::MAX_ADDR_ITEMS as u64),
        ("MAX_LOCATOR_HASHES", limits::MAX_LOCATOR_HASHES as u64),
        ("MAX_USER_AGENT", limits::MAX_USER_AGENT as u64),
        ("MAX_REJECT_REASON", limits::MAX_REJECT_REASON as u64),
        ("MAX_BLOCK_SIZE", MAX_BLOCK_SIZE as u64),
        ("MAX_BLOCK_TXS", MAX_BLOCK_TXS as u64),
        ("MAX_TX_SIZE", MAX_TX_SIZE as u64),
        ("MIN_TX_SIZE", MIN_TX_SIZE as u64),
        ("HEADER_SIZE", HEADER_SIZE as u64),
        ("COIN", COIN),
        ("MAX_MONEY", MAX_MONEY),
        ("PROTOCOL_VERSION", PROTOCOL_VERSION as u64),
        (
            "MIN_PROTOCOL_VERSION",
            noded::wire::MIN_PROTOCOL_VERSION as u64,
        ),
        ("SERVICE_NETWORK", SERVICE_NETWORK),
        ("BLOCK_VERSION", BLOCK_VERSION as u64),
        ("MEDIAN_TIME_SPAN", noded::params::MEDIAN_TIME_SPAN as u64),
        (
            "MAX_FUTURE_BLOCK_TIME_SECS",
            noded::params::MAX_FUTURE_BLOCK_TIME_SECS,
        ),
    ]
    .into_iter()
    .collect();
    let rows = table("constants");
    let got: BTreeMap<&str, u64> = rows
        .iter()
        .map(|row| (row[0].as_str(), number(&row[1])))
        .collect();
    assert_eq!(got.len(), rows.len(), "a constant listed twice");
    assert_eq!(got, expected);
}

#[test]
fn the_networks_table_matches_the_code() {
    let rows = table("networks");
    assert_eq!(rows.len(), NETWORKS.len());
    for row in &rows {
        // | network | magic | p2p port | rpc port | pow limit bits | retarget | spacing |
        //   interval | factor | initial subsidy | halving | genesis time | genesis nonce |
        let p = row[0].parse::<Network>().unwrap().params();
        let name = p.network.name();
        assert_eq!(row[1], hex::encode(p.magic.0), "{name} magic");
        assert_eq!(
            number(&row[2]),
            p.default_p2p_port as u64,
            "{name} p2p port"
        );
        assert_eq!(
            number(&row[3]),
            p.default_rpc_port as u64,
            "{name} rpc port"
        );
        assert_eq!(number(&row[4]), p.pow_limit_bits as u64, "{name} pow limit");
        assert_eq!(
            row[5],
            if p.retarget { "yes" } else { "no" },
            "{name} retarget"
        );
        assert_eq!(number(&row[6]), p.target_spacing_secs, "{name} spacing");
        assert_eq!(number(&row[7]), p.retarget_interval, "{name} interval");
        assert_eq!(number(&row[8]), p.max_retarget_factor, "{name} factor");
        assert_eq!(number(&row[9]), p.initial_subsidy.0, "{name} subsidy");
        assert_eq!(number(&row[10]), p.halving_interval, "{name} halving");
        assert_eq!(number(&row[11]), p.genesis_time, "{name} genesis time");
        assert_eq!(number(&row[12]), p.genesis_nonce, "{name} genesis nonce");
    }
}

#[test]
fn the_reject_codes_table_matches_the_code() {
    let expected: BTreeMap<&str, u64> = [
        ("MALFORMED", reject_code::MALFORMED),
        ("INVALID", reject_code::INVALID),
        ("OBSOLETE", reject_code::OBSOLETE),
        ("DUPLICATE", reject_code::DUPLICATE),
        ("NONSTANDARD", reject_code::NONSTANDARD),
        ("INSUFFICIENT_FEE", reject_code::INSUFFICIENT_FEE),
    ]
    .into_iter()
    .map(|(k, v)| (k, v as u64))
    .collect();
    let rows = table("reject-codes");
    let got: BTreeMap<&str, u64> = rows
        .iter()
        .map(|row| (row[1].as_str(), number(&row[0])))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn the_compact_table_matches_the_code() {
    use noded::types::pow::{compact_from_target, CompactError};
    let rows = table("compact");
    assert!(rows.len() >= 5);
    for row in &rows {
        let bits = number(&row[0]) as u32;
        match target_from_compact(bits) {
            Ok(target) => {
                assert_eq!(row[1], hex::encode(target), "{bits:#010x}");
                assert_eq!(
                    number(&row[2]) as u32,
                    compact_from_target(&target),
                    "{bits:#010x}"
                );
            }
            Err(e) => {
                let what = match e {
                    CompactError::Negative(_) => "negative",
                    CompactError::Overflow(_) => "overflow",
                    CompactError::Zero(_) => "zero",
                };
                assert_eq!(row[1], format!("invalid ({what})"), "{bits:#010x}");
                assert_eq!(row[2], "-", "{bits:#010x}");
            }
        }
    }
}

#[test]
fn checksums_quoted_in_prose_are_right() {
    use noded::wire::frame::checksum;
    for (payload, quoted) in [(&[][..], "`5df6e0e2`"), (&[0u8; 8][..], "`7ef0ca62`")] {
        assert_eq!(format!("`{}`", hex::encode(checksum(payload))), quoted);
        assert!(DOC.contains(quoted), "PROTOCOL.md quotes {quoted}");
    }
    assert!(DOC.contains(&noded::types::sha256d(b"hello").to_string()));
}

#[test]
fn the_misbehaviour_table_matches_the_code() {
    use noded::protocol::bans::{Misbehaviour, BAN_THRESHOLD, MAX_BANS};
    let expected: BTreeMap<&str, u64> = [
        Misbehaviour::MalformedFrame,
        Misbehaviour::Oversized,
        Misbehaviour::ProtocolOrder,
        Misbehaviour::Unrequested,
        Misbehaviour::InvalidBlock,
        Misbehaviour::InvalidHeader,
        Misbehaviour::UnconnectedHeaders,
        Misbehaviour::InvalidTx,
        Misbehaviour::InvalidCompactBlock,
        Misbehaviour::RelayedInvalidBlock,
        Misbehaviour::OrphanFlood,
    ]
    .into_iter()
    .map(|m| (m.name(), m.weight() as u64))
    .collect();
    let rows = table("misbehaviour");
    let got: BTreeMap<&str, u64> = rows
        .iter()
        .map(|row| (row[0].as_str(), number(&row[1])))
        .collect();
    assert_eq!(got, expected);
    assert!(DOC.contains(&format!("`BAN_THRESHOLD` = {BAN_THRESHOLD} ")));
    assert!(DOC.contains("at most 10,000 entries") && MAX_BANS == 10_000);
}

/// The peer-behaviour numbers section 10 quotes, against the code's defaults.
#[test]
fn peer_behaviour_defaults_match_the_document() {
    use noded::config::{
        DEFAULT_BAN_TIME_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INBOUND_PER_IP,
    };
    use noded::net::peer::{CONNECT_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
    let cfg = noded::protocol::CoreConfig::new(NodeId([0; 32]));
    let quoted: [(u64, u64, &str); 10] = [
        (cfg.handshake_timeout_ms, 60_000, "not ready 60 s after"),
        (cfg.ping_interval_ms, 120_000, "120 s after the handshake"),
        (
            cfg.ping_timeout_ms,
            20 * 60_000,
            "unanswered for 20 minutes",
        ),
        (
            cfg.inactivity_timeout_ms,
            20 * 60_000,
            "20 minutes without any message",
        ),
        (DEFAULT_BAN_TIME_SECS, 24 * 3600, "default 24 hours"),
        (cfg.max_outbound as u64, 8, "8 of them outbound"),
        (
            DEFAULT_MAX_CONNECTIONS as u64,
            125,
            "125 connections in all",
        ),
        (DEFAULT_MAX_INBOUND_PER_IP as u64, 16, "at most 16 inbound"),
        (CONNECT_TIMEOUT.as_secs(), 10, "10 s for the TCP connect"),
        (
            TLS_HANDSHAKE_TIMEOUT.as_secs(),
            10,
            "10 s for the TLS handshake",
        ),
    ];
    for (code, documented, phrase) in quoted {
        assert_eq!(code, documented, "{phrase}");
        assert!(DOC.contains(phrase), "PROTOCOL.md says `{phrase}`");
    }
}

/// `vector` as PROTOCOL.md writes it: the info string (name, then the attributes in key
/// order), a frame's 24-byte header split into its four fields on one line, then the rest
/// 32 bytes a line.
fn render_block(vector: &Vector) -> String {
    let mut out = format!("```vector name={}", vector.name);
    for (k, v) in vector.attributes() {
        out.push_str(&format!(" {k}={v}"));
    }
    out.push('\n');
    let bytes = vector.bytes();
    let body = match vector.value {
        Value::Frame { .. } | Value::Invalid { .. } if bytes.len() >= FRAME_HEADER_SIZE => {
            out.push_str(&format!(
                "{} {} {} {}\n",
                hex::encode(&bytes[0..4]),
                hex::encode(&bytes[4..16]),
                hex::encode(&bytes[16..20]),
                hex::encode(&bytes[20..24])
            ));
            &bytes[FRAME_HEADER_SIZE..]
        }
        _ => &bytes[..],
    };
    for chunk in body.chunks(32) {
        out.push_str(&hex::encode(chunk));
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

/// Every block in the document is laid out exactly as [`render_block`] writes it (contents
/// are checked by `every_vector_in_the_document_matches_the_code`; this checks the layout): a
/// frame's header fields on the first line and 32 bytes a line after it, as section 8 of the
/// document tells its reader. After a deliberate format change, the failure message holds the
/// blocks to paste into the document.
#[test]
fn every_vector_block_is_laid_out_as_rendered() {
    let rendered: Vec<String> = vectors().iter().map(render_block).collect();
    assert!(!rendered.is_empty());
    let differing: Vec<&String> = rendered
        .iter()
        .filter(|b| !DOC.contains(b.as_str()))
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} vector blocks are not in PROTOCOL.md as rendered; the rendering:\n\n{}",
        differing.len(),
        rendered.len(),
        differing
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
