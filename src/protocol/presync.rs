//! Header pre-sync: a peer's chain whose headers carry too little work to matter is followed
//! in constant memory and stored only once it has shown enough work (Bitcoin Core's headers
//! pre-sync, simplified). So a peer feeding a long low-work chain costs a few hundred bytes,
//! not a header-tree entry per header.
//!
//! Two passes over the peer's chain. *Pre-sync*: each header is checked (the tree's rules, on
//! a `ChainTail`) and only the running work is kept, with one salted bit per
//! `COMMITMENT_PERIOD` headers. Once the work passes the threshold, *redownload*: the same
//! headers are asked for again from the fork point, checked against the bits, and handed to
//! the tree `REDOWNLOAD_BUFFER` headers behind the newest (so a chain that differs from the
//! pre-synced one is caught before much of it is stored), all at once when the work is
//! reached again.
//!
//! Owns one peer's pass. Never touches the tree (it reads the fork's tail when a pass starts)
//! and never sends: the sync manager turns each `Step` into messages.

use super::headers::{ChainTail, HeaderError, HeaderTree};
use crate::chain::work::{block_work, ChainWork};
use crate::types::{sha256d_parts, Hash256, Header};
use std::collections::VecDeque;

/// Blocks of work below the active tip a header chain may end and still be stored at once
/// (Bitcoin Core's figure: a day of blocks): forks near the tip are taken without a second
/// pass.
pub const ANTI_DOS_WORK_BLOCKS: u64 = 144;
/// One commitment bit per this many headers: 10 million headers cost 12.5 KB.
const COMMITMENT_PERIOD: u64 = 100;
/// Redownloaded headers held back from the tree: 24 commitment bits must match before any is
/// stored, so a different chain gets one stored in 2^24 tries (~200 KB per peer).
pub const REDOWNLOAD_BUFFER: usize = 2_400;
/// Commitment bits one pass keeps at most (128 KB): a longer chain is given up.
const MAX_COMMITMENTS: usize = 1 << 20;

/// The work a header chain must reach to be stored without a pre-sync: the active tip's
/// work less `ANTI_DOS_WORK_BLOCKS` blocks at the tip's target, and at least `minimum`.
pub fn anti_dos_threshold(tree: &HeaderTree, minimum: ChainWork) -> ChainWork {
    let tip_work = tree.active_work();
    let tip_bits = tree.header(&tree.active_tip()).map_or(0, |h| h.bits);
    let slack = block_work(tip_bits).unwrap_or_default() * ChainWork::from(ANTI_DOS_WORK_BLOCKS);
    tip_work.saturating_sub(slack).max(minimum)
}

/// The total work of the chain `headers` would make on their first header's parent, if that
/// parent is known (and every target is well-formed).
pub fn batch_work(tree: &HeaderTree, headers: &[Header]) -> Option<ChainWork> {
    let parent = tree.work_of(&headers.first()?.prev_hash)?;
    headers
        .iter()
        .try_fold(parent, |work, h| block_work(h.bits).ok().map(|w| work + w))
}

/// What the sync manager does next for this peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask for the headers after these (GETHEADERS with this locator).
    Ask(Vec<Hash256>),
    /// Hand these to the tree (redownloaded, past their commitment checks); `done` when the
    /// pass is over (the rest of the batch, if any, is for the tree too) and else ask on
    /// from `next`.
    Store {
        headers: Vec<Header>,
        done: bool,
        next: Hash256,
    },
    /// The pass is over with nothing stored: the chain ended with too little work.
    GiveUp,
    /// A header breaks a rule: the peer is to blame.
    Invalid(HeaderError),
    /// The redownloaded chain is not the pre-synced one.
    Changed,
}

#[derive(Debug)]
enum Phase {
    Presync {
        tail: ChainTail,
    },
    Redownload {
        last: Hash256,
        height: u64,
        work: ChainWork,
        /// Commitment bits checked so far.
        checked: usize,
        buffer: VecDeque<Header>,
    },
}

/// One peer's pass. See the module docs.
#[derive(Debug)]
pub struct Presync {
    fork: Hash256,
    fork_height: u64,
    fork_work: ChainWork,
    /// The work the chain must reach (the threshold when the pass began).
    target: ChainWork,
    /// Where pre-sync reached the target: commitments stop there.
    end_height: u64,
    salt: u64,
    bits: Vec<u64>,
    bit_count: usize,
    phase: Phase,
}

impl Presync {
    /// Starts a pass at `fork` (a header the tree has) toward `target` work.
    pub fn start(tree: &HeaderTree, fork: &Hash256, target: ChainWork, salt: u64) -> Option<Self> {
        let tail = tree.tail(fork)?;
        Some(Presync {
            fork: *fork,
            fork_height: tail.height,
            fork_work: tail.work,
            target,
            end_height: u64::MAX,
            salt,
            bits: Vec::new(),
            bit_count: 0,
            phase: Phase::Presync { tail },
        })
    }

    /// Headers held in memory for the tree (the redownload buffer).
    pub fn buffered(&self) -> usize {
        match &self.phase {
            Phase::Presync { .. } => 0,
            Phase::Redownload { buffer, .. } => buffer.len(),
        }
    }

    pub fn is_redownloading(&self) -> bool {
        matches!(self.phase, Phase::Redownload { .. })
    }

    /// Whether `header` continues this pass (else the peer has moved on to something else).
    pub fn continues(&self, header: &Header) -> bool {
        header.prev_hash
            == match &self.phase {
                Phase::Presync { tail } => tail.hash,
                Phase::Redownload { last, .. } => *last,
            }
    }

    /// The next batch of the peer's chain (`full`: it holds the most a HEADERS may, so the
    /// peer has more). Returns the next step and, for `Step::Store { done: true }`, the
    /// index in `headers` where the tree takes over.
    pub fn feed(&mut self, headers: &[Header], full: bool, now_secs: u64) -> (Step, usize) {
        match &mut self.phase {
            Phase::Presync { tail } => {
                for header in headers {
                    if let Err(e) = tail.extend(header, now_secs) {
                        return (Step::Invalid(e), 0);
                    }
                    if (tail.height - self.fork_height).is_multiple_of(COMMITMENT_PERIOD) {
                        if self.bit_count >= MAX_COMMITMENTS {
                            return (Step::GiveUp, 0);
                        }
                        let bit = commitment(self.salt, &tail.hash);
                        if self.bit_count.is_multiple_of(64) {
                            self.bits.push(0);
                        }
                        self.bits[self.bit_count / 64] |= u64::from(bit) << (self.bit_count % 64);
                        self.bit_count += 1;
                    }
                    if tail.work >= self.target {
                        // Enough work: the second pass, from the fork.
                        self.end_height = tail.height;
                        self.phase = Phase::Redownload {
                            last: self.fork,
                            height: self.fork_height,
                            work: self.fork_work,
                            checked: 0,
                            buffer: VecDeque::new(),
                        };
                        return (Step::Ask(vec![self.fork]), 0);
                    }
                }
                let last = tail.hash;
                if full {
                    (Step::Ask(vec![last]), 0)
                } else {
                    (Step::GiveUp, 0)
                }
            }
            Phase::Redownload {
                last,
                height,
                work,
                checked,
                buffer,
            } => {
                for (i, header) in headers.iter().enumerate() {
                    let hash = header.hash();
                    if header.prev_hash != *last {
                        return (Step::Changed, 0);
                    }
                    let Ok(w) = block_work(header.bits) else {
                        return (
                            Step::Invalid(HeaderError::Invalid {
                                hash,
                                reason: "malformed target".into(),
                            }),
                            0,
                        );
                    };
                    *last = hash;
                    *height += 1;
                    *work += w;
                    if *height <= self.end_height
                        && (*height - self.fork_height).is_multiple_of(COMMITMENT_PERIOD)
                    {
                        let expected = self.bits[*checked / 64] >> (*checked % 64) & 1 == 1;
                        *checked += 1;
                        if commitment(self.salt, &hash) != expected {
                            return (Step::Changed, 0);
                        }
                    }
                    buffer.push_back(*header);
                    if *work >= self.target {
                        let headers = buffer.drain(..).collect();
                        return (
                            Step::Store {
                                headers,
                                done: true,
                                next: hash,
                            },
                            i + 1,
                        );
                    }
                }
                let release = buffer.len().saturating_sub(REDOWNLOAD_BUFFER);
                let next = *last;
                if !full {
                    return (Step::Changed, 0);
                }
                (
                    Step::Store {
                        headers: buffer.drain(..release).collect(),
                        done: false,
                        next,
                    },
                    0,
                )
            }
        }
    }
}

/// The commitment bit of a header: salted, so a peer cannot choose a chain that matches.
fn commitment(salt: u64, hash: &Hash256) -> bool {
    sha256d_parts(&[&salt.to_le_bytes(), &hash.0]).0[0] & 1 == 1
}
