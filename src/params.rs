//! Network parameters: magic, ports, genesis block, proof-of-work limit, difficulty
//! retargeting, and the subsidy schedule for main, test and regtest.
//!
//! Consensus constants live here and nowhere else; the genesis blocks are built in code and
//! their hashes pinned by tests.

use crate::encoding::BoundedVec;
use crate::types::pow::{target_from_compact, Target};
use crate::types::{Address, Amount, Block, Coinbase, Hash256, Header, NetworkMagic, Transaction};
use std::fmt;
use std::str::FromStr;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Main,
    Test,
    Regtest,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Network::Main => "main",
            Network::Test => "test",
            Network::Regtest => "regtest",
        }
    }

    /// The network whose frames start with `magic`.
    pub fn from_magic(magic: &[u8; 4]) -> Option<Network> {
        [Network::Main, Network::Test, Network::Regtest]
            .into_iter()
            .find(|n| n.params().magic.0 == *magic)
    }

    pub fn params(self) -> &'static NetworkParams {
        match self {
            Network::Main => &MAIN,
            Network::Test => &TEST,
            Network::Regtest => &REGTEST,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "main" => Ok(Network::Main),
            "test" => Ok(Network::Test),
            "regtest" => Ok(Network::Regtest),
            other => Err(format!(
                "unknown network '{other}' (expected main, test or regtest)"
            )),
        }
    }
}

/// Everything that differs between networks.
#[derive(Debug)]
pub struct NetworkParams {
    pub network: Network,
    pub magic: NetworkMagic,
    pub default_p2p_port: u16,
    pub default_rpc_port: u16,
    /// The easiest allowed target, compact form; also the genesis block's target.
    pub pow_limit_bits: u32,
    /// Whether difficulty retargets; regtest keeps the limit forever.
    pub retarget: bool,
    /// Intended seconds between blocks.
    pub target_spacing_secs: u64,
    /// Blocks between difficulty adjustments.
    pub retarget_interval: u64,
    /// The measured timespan is clamped to [expected / factor, expected * factor].
    pub max_retarget_factor: u64,
    pub initial_subsidy: Amount,
    /// Blocks between subsidy halvings.
    pub halving_interval: u64,
    pub genesis_time: u64,
    pub genesis_nonce: u64,
}

/// Version of the block header rules in force.
pub const BLOCK_VERSION: u32 = 1;

/// Blocks considered when computing the median time past.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// How far ahead of the local clock a header's time may be, in seconds.
pub const MAX_FUTURE_BLOCK_TIME_SECS: u64 = 2 * 60 * 60;

pub static MAIN: NetworkParams = NetworkParams {
    network: Network::Main,
    magic: NetworkMagic([0x6e, 0x64, 0xd1, 0x01]),
    default_p2p_port: 8333,
    default_rpc_port: 8332,
    pow_limit_bits: 0x1e0f_ffff,
    retarget: true,
    target_spacing_secs: 60,
    retarget_interval: 720,
    max_retarget_factor: 4,
    initial_subsidy: Amount::from_coins(50),
    halving_interval: 210_000,
    genesis_time: 1_767_225_600,
    genesis_nonce: GENESIS_NONCE_MAIN,
};

pub static TEST: NetworkParams = NetworkParams {
    network: Network::Test,
    magic: NetworkMagic([0x6e, 0x64, 0x7e, 0x57]),
    default_p2p_port: 18333,
    default_rpc_port: 18332,
    pow_limit_bits: 0x1e0f_ffff,
    retarget: true,
    target_spacing_secs: 60,
    retarget_interval: 720,
    max_retarget_factor: 4,
    initial_subsidy: Amount::from_coins(50),
    halving_interval: 210_000,
    genesis_time: 1_767_225_601,
    genesis_nonce: GENESIS_NONCE_TEST,
};

pub static REGTEST: NetworkParams = NetworkParams {
    network: Network::Regtest,
    magic: NetworkMagic([0x6e, 0x64, 0x0e, 0x9e]),
    default_p2p_port: 18444,
    default_rpc_port: 18443,
    pow_limit_bits: 0x207f_ffff,
    retarget: false,
    target_spacing_secs: 60,
    retarget_interval: 720,
    max_retarget_factor: 4,
    initial_subsidy: Amount::from_coins(50),
    halving_interval: 150,
    genesis_time: 1_767_225_602,
    genesis_nonce: GENESIS_NONCE_REGTEST,
};

const GENESIS_NONCE_MAIN: u64 = 354_935;
const GENESIS_NONCE_TEST: u64 = 32_511;
const GENESIS_NONCE_REGTEST: u64 = 0;

impl NetworkParams {
    pub fn pow_limit(&self) -> Target {
        target_from_compact(self.pow_limit_bits).expect("network pow limits are valid")
    }

    /// The block subsidy at `height`: halves every `halving_interval` blocks, zero after 64
    /// halvings.
    pub fn subsidy(&self, height: u64) -> Amount {
        let halvings = height / self.halving_interval;
        if halvings >= 64 {
            Amount::ZERO
        } else {
            Amount(self.initial_subsidy.0 >> halvings)
        }
    }

    /// The genesis block, built from these parameters. Its coinbase pays nothing to the
    /// all-zero address, so genesis creates no spendable coin.
    pub fn genesis_block(&self) -> Block {
        let coinbase = Transaction::Coinbase(Coinbase {
            height: 0,
            to: Address([0; 20]),
            amount: Amount::ZERO,
        });
        let merkle_root = crate::types::merkle_root(&[coinbase.txid()]);
        Block {
            header: Header {
                version: BLOCK_VERSION,
                prev_hash: Hash256::ZERO,
                merkle_root,
                time: self.genesis_time,
                bits: self.pow_limit_bits,
                nonce: self.genesis_nonce,
            },
            transactions: BoundedVec::new(vec![coinbase]).expect("one transaction fits"),
        }
    }

    pub fn genesis_hash(&self) -> Hash256 {
        self.genesis_block().hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::pow::hash_meets_target;

    const ALL: [Network; 3] = [Network::Main, Network::Test, Network::Regtest];

    #[test]
    fn a_wrong_magic_names_both_networks() {
        for network in [Network::Main, Network::Test, Network::Regtest] {
            assert_eq!(
                Network::from_magic(&network.params().magic.0),
                Some(network)
            );
        }
        let err = crate::wire::WireError::WrongMagic {
            expected: REGTEST.magic.0,
            got: TEST.magic.0,
        };
        let text = err.to_string();
        assert!(
            text.starts_with("wrong network: the peer is on test (magic ")
                && text.contains(", this node on regtest (magic "),
            "{text}"
        );
        let unknown = crate::wire::WireError::WrongMagic {
            expected: MAIN.magic.0,
            got: *b"GET ",
        };
        assert!(unknown
            .to_string()
            .contains("the peer is on no known network"));
    }

    #[test]
    fn genesis_blocks_meet_their_proof_of_work_and_commit_to_their_coinbase() {
        for network in ALL {
            let p = network.params();
            let genesis = p.genesis_block();
            assert!(
                hash_meets_target(&genesis.hash(), &p.pow_limit()),
                "{network} genesis {} misses its target",
                genesis.hash()
            );
            assert_eq!(genesis.compute_merkle_root(), genesis.header.merkle_root);
        }
    }

    #[test]
    fn genesis_hashes_are_pinned() {
        let pinned = [
            (Network::Main, GENESIS_HASH_MAIN),
            (Network::Test, GENESIS_HASH_TEST),
            (Network::Regtest, GENESIS_HASH_REGTEST),
        ];
        for (network, hash) in pinned {
            assert_eq!(
                network.params().genesis_hash().to_string(),
                hash,
                "{network}"
            );
        }
    }

    const GENESIS_HASH_MAIN: &str =
        "000009ac24b0f6f7f30372dcb08ca40fa4751782db733b07179851816951933a";
    const GENESIS_HASH_TEST: &str =
        "0000031fd058cdec9dab663b8e75a0da4d294b0195118f4c2887a05a3e90fc81";
    const GENESIS_HASH_REGTEST: &str =
        "0e6051c6f404b3b49e3061abfff225dc557b5b4d697e209a566d2444a35bb363";

    #[test]
    fn networks_are_distinct() {
        let magics: std::collections::HashSet<_> = ALL.iter().map(|n| n.params().magic).collect();
        assert_eq!(magics.len(), 3);
        let genesis: std::collections::HashSet<_> =
            ALL.iter().map(|n| n.params().genesis_hash()).collect();
        assert_eq!(genesis.len(), 3);
        assert_eq!(MAIN.default_p2p_port, 8333);
        assert_eq!(MAIN.default_rpc_port, 8332);
    }

    #[test]
    fn subsidy_halves_and_ends() {
        assert_eq!(MAIN.subsidy(0), Amount::from_coins(50));
        assert_eq!(MAIN.subsidy(209_999), Amount::from_coins(50));
        assert_eq!(MAIN.subsidy(210_000), Amount::from_coins(25));
        assert_eq!(REGTEST.subsidy(150), Amount::from_coins(25));
        assert_eq!(MAIN.subsidy(210_000 * 64), Amount::ZERO);
    }

    #[test]
    fn network_names_parse() {
        for n in ALL {
            assert_eq!(n.name().parse::<Network>().unwrap(), n);
        }
        assert!("mainnet".parse::<Network>().is_err());
    }

    /// Mines the genesis nonces; run with `cargo test -- --ignored mine_genesis --nocapture`
    /// when a genesis parameter changes.
    #[test]
    #[ignore]
    fn mine_genesis() {
        for network in ALL {
            let p = network.params();
            let mut block = p.genesis_block();
            let target = p.pow_limit();
            block.header.nonce = 0;
            while !hash_meets_target(&block.header.hash(), &target) {
                block.header.nonce += 1;
            }
            println!(
                "{network}: nonce {} hash {}",
                block.header.nonce,
                block.hash()
            );
        }
    }
}
