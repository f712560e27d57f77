//! `cairn wallet`: balances, transfers and stake, through a node's API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api as api;
use cairn_client::{ApiToken, Client};
use cairn_ledger::{Capabilities, TxBody, TxKind};
use cairn_wire::{ContentId, Keypair, PublicKey};

/// How long a command waits for its transaction to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// Arguments of `cairn wallet`.
#[derive(clap::Args)]
pub struct WalletArgs {
    /// The node to talk to.
    #[arg(long, env = "CAIRN_NODE", default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The key that signs (created if missing).
    #[arg(long, env = "CAIRN_KEY", default_value = ".cairn/node.key")]
    key: PathBuf,
    /// Return as soon as the node has queued the transaction, without
    /// waiting for a block to apply it.
    #[arg(long)]
    no_wait: bool,
    /// Print what the node answered as JSON (amounts in µCAIRN) instead of
    /// a line for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(clap::Subcommand)]
enum WalletCommand {
    /// Print this wallet's public key (its address).
    Address,
    /// Show the balance, nonce and stake of an account [default: this wallet's].
    Balance {
        /// The account's public key.
        account: Option<PublicKey>,
    },
    /// Send µCAIRN to another account.
    Transfer {
        /// The recipient's public key.
        to: PublicKey,
        /// The amount in µCAIRN.
        amount: u64,
    },
    /// Stake µCAIRN as a provider (registers this wallet as one if needed).
    Stake {
        /// The amount in µCAIRN.
        amount: u64,
        /// Where requesters reach this provider.
        #[arg(long, default_value = "")]
        endpoint: String,
    },
    /// Start unbonding staked µCAIRN; it returns after the unbonding delay.
    Unstake {
        /// The amount in µCAIRN.
        amount: u64,
    },
    /// Show a job's escrow.
    Escrow {
        /// The job's id.
        job: ContentId,
    },
}

/// µCAIRN in one CAIRN.
const UCAIRN_PER_CAIRN: u64 = 1_000_000;

/// An amount of µCAIRN as people read it: CAIRN, thousands grouped, with
/// the decimals it needs and no more ("1,000,000,000 CAIRN",
/// "0.0006 CAIRN").
pub(crate) fn cairn(ucairn: u64) -> String {
    let whole = (ucairn / UCAIRN_PER_CAIRN).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let fraction = ucairn % UCAIRN_PER_CAIRN;
    if fraction == 0 {
        return format!("{grouped} CAIRN");
    }
    let decimals = format!("{fraction:06}");
    format!("{grouped}.{} CAIRN", decimals.trim_end_matches('0'))
}

/// The API token of the node whose data folder is `data_dir`:
/// `CAIRN_API_TOKEN` if set, else the node's `api.token` file.
pub(crate) fn api_token(data_dir: &Path) -> anyhow::Result<ApiToken> {
    if let Ok(text) = std::env::var("CAIRN_API_TOKEN") {
        return ApiToken::from_hex(&text).context("CAIRN_API_TOKEN");
    }
    ApiToken::load(data_dir).with_context(|| {
        format!(
            "the node's API token is read from {}; point --data-dir at the node's data \
             folder, or set CAIRN_API_TOKEN to the token",
            ApiToken::path(data_dir).display()
        )
    })
}

pub fn wallet(args: WalletArgs) -> anyhow::Result<ExitCode> {
    // Balances and transactions are public or signed: no token.
    let node = Client::new(&args.node).with_timeout(Duration::from_secs(10));
    let key = Keypair::load_or_create(&args.key)?;
    let kind = match args.command {
        WalletCommand::Address => {
            println!("{}", key.public());
            return Ok(ExitCode::SUCCESS);
        }
        WalletCommand::Balance { account } => {
            let account: api::Account =
                node.get(&format!("/v1/accounts/{}", account.unwrap_or(key.public())))?;
            if args.json {
                println!("{}", serde_json::to_string(&account)?);
            } else {
                println!(
                    "balance {}, stake {}, unbonding {}, nonce {} (height {})",
                    cairn(account.balance),
                    cairn(account.stake),
                    cairn(account.unbonding),
                    account.nonce,
                    account.height
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        WalletCommand::Escrow { job } => {
            let escrow: api::Escrow = node.get(&format!("/v1/escrows/{job}"))?;
            if args.json {
                println!("{}", serde_json::to_string(&escrow)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "escrow of job {job}: {}, owner {}, leases until height {}{}",
                cairn(escrow.balance),
                escrow.owner,
                escrow.leases_until,
                if escrow.closing { ", closing" } else { "" }
            );
            return Ok(ExitCode::SUCCESS);
        }
        WalletCommand::Transfer { to, amount } => TxKind::Transfer { to, amount },
        WalletCommand::Stake { amount, endpoint } => {
            let me: api::Account = node.get(&format!("/v1/accounts/{}", key.public()))?;
            if me.stake == 0 {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                TxKind::RegisterProvider {
                    capabilities: Capabilities {
                        cores,
                        ..Capabilities::default()
                    },
                    endpoint,
                    stake: amount,
                }
            } else {
                TxKind::Stake { amount }
            }
        }
        WalletCommand::Unstake { amount } => TxKind::Unstake { amount },
    };

    let chain = node.get::<api::Status>("/v1/status")?.chain;
    let nonce = node
        .get::<api::Account>(&format!("/v1/accounts/{}", key.public()))?
        .nonce;
    let tx = TxBody { chain, nonce, kind }.sign(&key);
    let bytes = tx.to_bytes();
    // How the ledger names it: another transaction of this key may take
    // the same nonce (signed elsewhere against a node that had not yet
    // seen this key's last one), and its fate is not this one's.
    let id = ContentId::of(&bytes);
    node.post_bytes::<api::Queued>("/v1/txs", bytes)?;
    if args.no_wait {
        if args.json {
            println!("{}", serde_json::json!({ "queued": { "nonce": nonce } }));
        } else {
            println!("queued (nonce {nonce})");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    loop {
        let status: api::TxStatus = node.get(&format!("/v1/txs/{}/{nonce}", key.public()))?;
        let taken = match &status {
            api::TxStatus::Applied { tx, .. } => tx.is_some_and(|tx| tx != id),
            api::TxStatus::Refused { tx, .. } => *tx != id,
            api::TxStatus::Pending => false,
        };
        if taken {
            bail!(
                "nonce {nonce} was taken by another transaction of this key; \
                 this one was not applied: send it again"
            );
        }
        match status {
            status @ api::TxStatus::Applied { height, .. } => {
                let account: api::Account = node.get(&format!("/v1/accounts/{}", key.public()))?;
                if args.json {
                    println!("{}", serde_json::to_string(&status)?);
                    return Ok(ExitCode::SUCCESS);
                }
                // The block that applied it, when the node still knows.
                let height = height.unwrap_or(account.height);
                println!(
                    "applied at height {height}: balance {}, stake {}",
                    cairn(account.balance),
                    cairn(account.stake)
                );
                return Ok(ExitCode::SUCCESS);
            }
            api::TxStatus::Refused { height, reason, .. } => {
                bail!("refused at height {height}: {reason}")
            }
            api::TxStatus::Pending => {}
        }
        if started.elapsed() > APPLY_WAIT {
            bail!("the transaction was queued but not applied within {APPLY_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::cairn;

    #[test]
    fn amounts_read_in_cairn_with_grouped_digits_and_only_the_decimals_needed() {
        assert_eq!(cairn(0), "0 CAIRN");
        assert_eq!(cairn(600), "0.0006 CAIRN");
        assert_eq!(cairn(1), "0.000001 CAIRN");
        assert_eq!(cairn(250_000), "0.25 CAIRN");
        assert_eq!(cairn(999_000_000), "999 CAIRN");
        assert_eq!(cairn(1_000_000_000), "1,000 CAIRN");
        assert_eq!(cairn(1_234_567_890_123), "1,234,567.890123 CAIRN");
        assert_eq!(cairn(u64::MAX), "18,446,744,073,709.551615 CAIRN");
    }
}
