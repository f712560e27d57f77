//! `cairn bench ledger`: the ledger state machine on one core.

use std::time::Instant;

use anyhow::bail;

use super::Figure;

/// Arguments of `cairn bench ledger`.
#[derive(clap::Args)]
pub struct LedgerArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub(super) json: bool,
    /// Transfers to apply.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1000..=10_000_000))]
    transfers: u32,
    /// Accounts they move between.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    accounts: u32,
}

pub(super) fn ledger(args: &LedgerArgs) -> anyhow::Result<Vec<Figure>> {
    use cairn_ledger::{Genesis, TxBody, TxKind, admit, admit_batch};
    use cairn_wire::Keypair;

    let keys: Vec<Keypair> = (0..args.accounts)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let publics: Vec<_> = keys.iter().map(Keypair::public).collect();
    let mut state = Genesis::with_balances("bench", &publics, 1_000_000_000_000).state()?;
    let mut nonces = vec![0u64; keys.len()];
    let txs: Vec<_> = (0..args.transfers as usize)
        .map(|i| {
            // A fixed pseudo-random walk over the accounts.
            let from = (i * 7919) % keys.len();
            let to = (i * 104_729 + 1) % keys.len();
            let body = TxBody {
                chain: state.chain(),
                nonce: nonces[from],
                kind: TxKind::Transfer {
                    to: publics[to],
                    amount: 1 + (i as u64 % 1000),
                },
            };
            nonces[from] += 1;
            body.sign(&keys[from])
        })
        .collect();

    let sample = &txs[..txs.len().min(20_000)];
    let started = Instant::now();
    for tx in sample {
        admit(tx.clone()).map_err(anyhow::Error::msg)?;
    }
    let admit_single = sample.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for chunk in sample.chunks(256) {
        for verdict in admit_batch(chunk.to_vec()) {
            verdict.map_err(anyhow::Error::msg)?;
        }
    }
    let admit_batched = sample.len() as f64 / started.elapsed().as_secs_f64();

    let verified: Vec<_> = admit_batch(txs)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    for tx in &verified {
        state.apply(tx).map_err(anyhow::Error::msg)?;
    }
    let apply = verified.len() as f64 / started.elapsed().as_secs_f64();
    if state.total_accounted() != u128::from(state.supply()) {
        bail!("supply was not conserved");
    }
    let started = Instant::now();
    let _ = state.root();
    let root_ms = started.elapsed().as_secs_f64() * 1e3;

    let figure = |metric: &str, value, unit| Figure {
        suite: "ledger",
        metric: metric.to_string(),
        value,
        unit,
    };
    Ok(vec![
        figure("apply_transfers", apply, "tx/s"),
        figure("admit_single", admit_single, "tx/s"),
        figure("admit_batched_256", admit_batched, "tx/s"),
        figure("admit_batch_speedup", admit_batched / admit_single, "x"),
        figure("state_root", root_ms, "ms"),
        figure("state_root_accounts", f64::from(args.accounts), "accounts"),
    ])
}
