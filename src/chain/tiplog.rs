//! The operator's view of the active chain: one INFO `new tip` line per connected block (like
//! bitcoind's UpdateTip) and one `chain reorganised` line per reorganisation.
//!
//! Owns only how often those lines are written, never what the chain does. A fast import
//! (initial sync, `generate 10000`, a crash recovery) connects thousands of blocks a second;
//! rather than guess whether this is initial sync, at most `TIP_LINES_PER_WINDOW` blocks of
//! each `TIP_LOG_WINDOW` get their own line and the rest of the window is summarised in one
//! `new tips` line when it ends. Time is passed in, so the limiter is tested without a clock.

use crate::types::Hash256;
use std::time::{Duration, Instant};

/// The span over which per-block lines are counted: a human reads the log at about this pace.
pub const TIP_LOG_WINDOW: Duration = Duration::from_secs(1);

/// Per-block lines in one window, at most: enough for a regtest `generate` of a few blocks or
/// a live network's pace to show every block; beyond it the log would scroll faster than read.
pub const TIP_LINES_PER_WINDOW: u32 = 5;

/// A block that became the tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewTip {
    pub height: u64,
    pub hash: Hash256,
    /// Transactions in the block, coinbase included.
    pub txs: usize,
    /// The writer's time to connect it (state reads, apply, commit; signatures when they
    /// were not checked ahead of time).
    pub connect: Duration,
}

/// Blocks of a window that had no line of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub blocks: u64,
    pub first_height: u64,
    pub last: NewTip,
    pub txs: u64,
    pub connect: Duration,
}

/// Decides which new tips get a line; `Chain` owns one and writes what it says.
#[derive(Debug, Default)]
pub struct TipLog {
    window_start: Option<Instant>,
    lines_in_window: u32,
    held: Option<Summary>,
}

/// What to write for one new tip: the summary of the window that just ended, if any, and the
/// tip's own line unless its window already had its share.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TipLines {
    pub summary: Option<Summary>,
    pub tip: Option<NewTip>,
}

impl TipLog {
    pub fn on_tip(&mut self, now: Instant, tip: NewTip) -> TipLines {
        let mut lines = TipLines::default();
        if self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= TIP_LOG_WINDOW)
        {
            lines.summary = self.held.take();
            self.window_start = Some(now);
            self.lines_in_window = 0;
        }
        if self.lines_in_window < TIP_LINES_PER_WINDOW {
            self.lines_in_window += 1;
            lines.tip = Some(tip);
        } else {
            let held = self.held.get_or_insert(Summary {
                blocks: 0,
                first_height: tip.height,
                last: tip,
                txs: 0,
                connect: Duration::ZERO,
            });
            held.blocks += 1;
            held.last = tip;
            held.txs += tip.txs as u64;
            held.connect += tip.connect;
        }
        lines
    }

    /// Whether blocks wait for a summary (the writer then wakes to write it when due).
    pub fn has_held(&self) -> bool {
        self.held.is_some()
    }

    /// The held summary, whether or not its window has ended (at shutdown).
    pub fn flush(&mut self) -> Option<Summary> {
        self.held.take()
    }

    /// The held summary once its window has ended with no block after it.
    pub fn due(&mut self, now: Instant) -> Option<Summary> {
        let start = self.window_start?;
        if now.saturating_duration_since(start) >= TIP_LOG_WINDOW {
            self.held.take()
        } else {
            None
        }
    }
}

pub fn log_tip(tip: &NewTip) {
    tracing::info!(
        height = tip.height,
        hash = %tip.hash,
        txs = tip.txs,
        connect_ms = %format_args!("{:.1}", tip.connect.as_secs_f64() * 1e3),
        "new tip"
    );
}

pub fn log_summary(summary: &Summary) {
    tracing::info!(
        blocks = summary.blocks,
        from = summary.first_height,
        height = summary.last.height,
        hash = %summary.last.hash,
        txs = summary.txs,
        connect_ms = %format_args!("{:.1}", summary.connect.as_secs_f64() * 1e3),
        "new tips (more than {TIP_LINES_PER_WINDOW} a second, summarised)"
    );
}

/// The active chain moved to another branch: `disconnected` blocks above `fork` left it and
/// `connected` joined it.
pub struct Reorg {
    pub fork_height: u64,
    pub fork: Hash256,
    pub disconnected: u64,
    pub connected: u64,
    pub old_tip: (u64, Hash256),
    pub new_tip: (u64, Hash256),
}

pub fn log_reorg(reorg: &Reorg) {
    tracing::info!(
        fork_height = reorg.fork_height,
        fork = %reorg.fork,
        disconnected = reorg.disconnected,
        connected = reorg.connected,
        old_height = reorg.old_tip.0,
        old_tip = %reorg.old_tip.1,
        new_height = reorg.new_tip.0,
        new_tip = %reorg.new_tip.1,
        "chain reorganised"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(height: u64) -> NewTip {
        NewTip {
            height,
            hash: Hash256::default(),
            txs: 2,
            connect: Duration::from_millis(1),
        }
    }

    #[test]
    fn a_slow_chain_gets_a_line_per_block() {
        let mut log = TipLog::default();
        let t0 = Instant::now();
        for h in 1..=20u64 {
            let lines = log.on_tip(t0 + TIP_LOG_WINDOW * h as u32, tip(h));
            assert_eq!(lines.tip, Some(tip(h)));
            assert_eq!(lines.summary, None);
        }
        assert!(!log.has_held());
    }

    #[test]
    fn a_burst_is_cut_to_the_window_share_and_summarised_once() {
        let mut log = TipLog::default();
        let t0 = Instant::now();
        let shown = (1..=1000u64)
            .filter(|h| {
                let lines = log.on_tip(t0 + Duration::from_micros(*h), tip(*h));
                assert_eq!(lines.summary, None);
                lines.tip.is_some()
            })
            .count();
        assert_eq!(shown, TIP_LINES_PER_WINDOW as usize);
        assert!(log.has_held());
        assert_eq!(
            log.due(t0 + Duration::from_millis(500)),
            None,
            "not yet due"
        );
        let summary = log
            .due(t0 + TIP_LOG_WINDOW * 2)
            .expect("due after the window");
        let rest = 1000 - TIP_LINES_PER_WINDOW as u64;
        assert_eq!(summary.blocks, rest);
        assert_eq!(summary.first_height, TIP_LINES_PER_WINDOW as u64 + 1);
        assert_eq!(summary.last.height, 1000);
        assert_eq!(summary.txs, 2 * rest);
        assert!(!log.has_held());
    }

    #[test]
    fn the_next_window_writes_the_held_summary_before_its_first_tip() {
        let mut log = TipLog::default();
        let t0 = Instant::now();
        for h in 1..=7 {
            log.on_tip(t0, tip(h));
        }
        let lines = log.on_tip(t0 + TIP_LOG_WINDOW, tip(8));
        assert_eq!(
            lines.summary.map(|s| (s.blocks, s.last.height)),
            Some((2, 7))
        );
        assert_eq!(lines.tip, Some(tip(8)));
    }
}
