//! The starting state of a chain, from a TOML file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cairn_wire::{ContentId, PublicKey};
use serde::Deserialize;

use crate::table::{Keys, Table};
use crate::{Account, Amount, Params, State};

/// A genesis file.
///
/// ```toml
/// chain_name = "cairn-devnet"
/// [params]
/// stake_min = 1000000000
/// unbonding_blocks = 1000
/// fee_bps = 100
/// slash_bps = 5000
/// slash_reward_bps = 5000
/// judge_reward_bps = 1000
/// reveal_window_ms = 21600000
/// challenge_bond = 100000
/// validators = ["<64 hex digits of a public key>"]
/// [balances]
/// "<64 hex digits of a public key>" = 1000000000000
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// A human name; part of the chain id, so two chains with equal balances differ.
    pub chain_name: String,
    /// Protocol parameters.
    #[serde(default)]
    pub params: GenesisParams,
    /// The validators (hex public keys): they run consensus and attest
    /// dispute verdicts. Without them no dispute can convict anyone.
    #[serde(default)]
    pub validators: Vec<String>,
    /// Starting balances by public key (hex).
    pub balances: BTreeMap<String, Amount>,
}

/// Parameters as written in a genesis file; missing ones take defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisParams {
    stake_min: Option<Amount>,
    unbonding_blocks: Option<u64>,
    fee_bps: Option<u16>,
    slash_bps: Option<u16>,
    slash_reward_bps: Option<u16>,
    judge_reward_bps: Option<u16>,
    reveal_window_ms: Option<u64>,
    challenge_bond: Option<Amount>,
}

/// The longest reveal window a genesis may set: 7 days.
pub const REVEAL_WINDOW_MS_MAX: u64 = 7 * 24 * 3_600 * 1_000;

/// Why a genesis file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The contents are wrong.
    #[error("genesis: {0}")]
    Invalid(String),
}

impl Genesis {
    /// Reads a genesis file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let file = |message: String| GenesisError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file(e.to_string()))
    }

    /// The state at height 0. The chain id is the digest of the canonical
    /// form of this genesis, so every node that starts from it agrees.
    pub fn state(&self) -> Result<State, GenesisError> {
        let defaults = Params::default();
        let p = &self.params;
        let params = Params {
            stake_min: p.stake_min.unwrap_or(defaults.stake_min),
            unbonding_blocks: p.unbonding_blocks.unwrap_or(defaults.unbonding_blocks),
            fee_bps: p.fee_bps.unwrap_or(defaults.fee_bps),
            slash_bps: p.slash_bps.unwrap_or(defaults.slash_bps),
            slash_reward_bps: p.slash_reward_bps.unwrap_or(defaults.slash_reward_bps),
            judge_reward_bps: p.judge_reward_bps.unwrap_or(defaults.judge_reward_bps),
            reveal_window_ms: p.reveal_window_ms.unwrap_or(defaults.reveal_window_ms),
            challenge_bond: p.challenge_bond.unwrap_or(defaults.challenge_bond),
        };
        for (name, value) in [
            ("fee_bps", params.fee_bps),
            ("slash_bps", params.slash_bps),
            ("slash_reward_bps", params.slash_reward_bps),
            ("judge_reward_bps", params.judge_reward_bps),
            (
                "slash_reward_bps + judge_reward_bps",
                params
                    .slash_reward_bps
                    .saturating_add(params.judge_reward_bps),
            ),
        ] {
            if value > 10_000 {
                return Err(GenesisError::Invalid(format!(
                    "params.{name} = {value} is more than 10000 basis points"
                )));
            }
        }
        // A challenge holds its lease and its provider's stake for twice
        // the window: a window of years would hold them for ever.
        if params.reveal_window_ms > REVEAL_WINDOW_MS_MAX {
            return Err(GenesisError::Invalid(format!(
                "params.reveal_window_ms = {} is more than {REVEAL_WINDOW_MS_MAX} (7 days)",
                params.reveal_window_ms
            )));
        }
        let mut accounts = BTreeMap::new();
        let mut supply: Amount = 0;
        for (key, balance) in &self.balances {
            let key: PublicKey = key
                .parse()
                .map_err(|e| GenesisError::Invalid(format!("balances: {e}")))?;
            supply = supply.checked_add(*balance).ok_or_else(|| {
                GenesisError::Invalid("balances add up to more than 2^64 µCAIRN".into())
            })?;
            accounts.insert(
                key,
                Account {
                    balance: *balance,
                    nonce: 0,
                },
            );
        }
        let mut id = format!(
            "cairn genesis v4\n{}\n{} {} {} {} {} {} {} {}\n",
            self.chain_name,
            params.stake_min,
            params.unbonding_blocks,
            params.fee_bps,
            params.slash_bps,
            params.slash_reward_bps,
            params.judge_reward_bps,
            params.reveal_window_ms,
            params.challenge_bond
        );
        for (key, account) in &accounts {
            id.push_str(&format!("{key} {}\n", account.balance));
        }
        let mut validators = BTreeSet::new();
        for key in &self.validators {
            let key: PublicKey = key
                .parse()
                .map_err(|e| GenesisError::Invalid(format!("validators: {e}")))?;
            if !validators.insert(key) {
                return Err(GenesisError::Invalid(format!(
                    "validators: {key} is listed twice"
                )));
            }
        }
        for key in &validators {
            id.push_str(&format!("validator {key}\n"));
        }
        let mut state = State::empty(ContentId::of(id.as_bytes()), params);
        state.accounts = Table::changed(accounts);
        state.validators = Keys::changed(validators);
        state.supply = supply;
        Ok(state)
    }

    /// A genesis giving each key `balance`, for tests and devnets.
    pub fn with_balances(chain_name: &str, keys: &[PublicKey], balance: Amount) -> Self {
        Self {
            chain_name: chain_name.to_string(),
            params: GenesisParams::default(),
            validators: Vec::new(),
            balances: keys.iter().map(|k| (k.to_string(), balance)).collect(),
        }
    }

    /// This genesis with `keys` as its validators.
    pub fn with_validators(mut self, keys: &[PublicKey]) -> Self {
        self.validators = keys.iter().map(PublicKey::to_string).collect();
        self
    }

    /// This genesis giving a challenged provider `ms` of block time to
    /// reveal (a local network's tests cannot wait hours).
    pub fn with_reveal_window_ms(mut self, ms: u64) -> Self {
        self.params.reveal_window_ms = Some(ms);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_params(params: &str) -> Result<State, GenesisError> {
        let text = format!("chain_name = \"t\"\n[params]\n{params}\n[balances]\n");
        toml::from_str::<Genesis>(&text).unwrap().state()
    }

    #[test]
    fn shares_of_a_slash_cannot_add_up_to_more_than_all_of_it_nor_a_window_last_for_ever() {
        let state = with_params("slash_reward_bps = 6000\njudge_reward_bps = 4000").unwrap();
        assert_eq!(state.params().judge_reward_bps, 4_000);
        let refused = with_params("slash_reward_bps = 6000\njudge_reward_bps = 4001");
        assert!(
            matches!(&refused, Err(GenesisError::Invalid(m)) if m.contains("slash_reward_bps + judge_reward_bps")),
            "{refused:?}"
        );
        assert!(with_params("fee_bps = 10001").is_err());
        assert!(with_params("reveal_window_ms = 604800000").is_ok());
        assert!(with_params("reveal_window_ms = 604800001").is_err());
    }

    #[test]
    fn every_parameter_names_the_chain() {
        let chain = |params: &str| with_params(params).unwrap().chain();
        let base = chain("");
        for changed in [
            "judge_reward_bps = 999",
            "reveal_window_ms = 20000",
            "challenge_bond = 1",
            "slash_reward_bps = 1",
        ] {
            assert_ne!(
                chain(changed),
                base,
                "{changed} left the chain id as it was"
            );
        }
    }
}
