//! `cairn bench ledger`: the ledger state machine on one core, and blocks
//! of it saved to a store, at a given number of accounts (a block's cost
//! should not grow with them).

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
    /// Transfers per block, for the block figures.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    block_transfers: u32,
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

    // Two samples of transactions never checked (a signature found valid
    // once is remembered by the process), then the first again: a
    // validator's check of a block whose transactions its mempool took.
    let n = (txs.len() / 3).min(20_000);
    let (sample, other) = (&txs[..n], &txs[n..2 * n]);
    let started = Instant::now();
    for tx in sample {
        admit(tx.clone()).map_err(anyhow::Error::msg)?;
    }
    let admit_single = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for chunk in other.chunks(256) {
        for verdict in admit_batch(chunk.to_vec()) {
            verdict.map_err(anyhow::Error::msg)?;
        }
    }
    let admit_batched = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for chunk in sample.chunks(256) {
        for verdict in admit_batch(chunk.to_vec()) {
            verdict.map_err(anyhow::Error::msg)?;
        }
    }
    let admit_again = n as f64 / started.elapsed().as_secs_f64();

    let verified: Vec<_> = admit_batch(txs)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    // The whole state hashed at once, as every block did before the root
    // was kept up to date (and as a node does when it loads its store).
    let started = Instant::now();
    let _ = state.root();
    let root_ms = started.elapsed().as_secs_f64() * 1e3;
    let rows = state.rows().len();

    let (first, blocks) = verified.split_at(verified.len() / 2);
    let started = Instant::now();
    for tx in first {
        state.apply(tx).map_err(anyhow::Error::msg)?;
    }
    let apply = first.len() as f64 / started.elapsed().as_secs_f64();
    let _ = state.root();

    // Blocks as a validator applies them: the transactions, the rows they
    // changed written to a real store, and the root brought up to date.
    let dir = tempfile::tempdir()?;
    let store = cairn_chain::StateStore::open(&dir.path().join("ledger.redb"))?;
    store.save(
        &state
            .rows()
            .into_iter()
            .map(|(key, value)| cairn_ledger::Change {
                key,
                value: Some(value),
            })
            .collect::<Vec<_>>(),
    )?;
    let (mut applying, mut saving, mut rooting) = (Vec::new(), Vec::new(), Vec::new());
    for (height, block) in (state.height() + 1..).zip(blocks.chunks(args.block_transfers as usize))
    {
        let started = Instant::now();
        state.begin_block(height, 0);
        for tx in block {
            let _ = state.apply_in_block(tx);
        }
        applying.push(started.elapsed());
        let started = Instant::now();
        store.save(&state.take_changes())?;
        saving.push(started.elapsed());
        let started = Instant::now();
        let _ = state.root();
        rooting.push(started.elapsed());
    }
    if state.total_accounted() != u128::from(state.supply()) {
        bail!("supply was not conserved");
    }
    let p50 = |samples: &mut Vec<std::time::Duration>| super::ms(super::percentile(samples, 0.5));

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
        figure("admit_checked_before", admit_again, "tx/s"),
        figure("state_root", root_ms, "ms"),
        figure("state_root_accounts", f64::from(args.accounts), "accounts"),
        figure("state_rows", rows as f64, "rows"),
        figure("block_transfers", f64::from(args.block_transfers), "tx"),
        figure("block_apply_p50", p50(&mut applying), "ms"),
        figure("block_store_p50", p50(&mut saving), "ms"),
        figure("block_root_p50", p50(&mut rooting), "ms"),
    ])
}
