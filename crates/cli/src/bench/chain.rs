//! `cairn bench chain`: the replicated ledger, one embedded validator and
//! four on loopback.

use std::time::Instant;

use anyhow::bail;

use super::{Figure, ms, percentile};

/// Arguments of `cairn bench chain`.
#[derive(clap::Args)]
pub struct ChainArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub(super) json: bool,
    /// Seconds of load per configuration.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(super) seconds: u64,
    /// Offered load for one validator, transactions per second.
    #[arg(long, default_value_t = 12_000)]
    pub(super) rate_single: u32,
    /// Offered load for four validators, transactions per second.
    #[arg(long, default_value_t = 4_000)]
    pub(super) rate_four: u32,
}

/// Offers `rate` transfers per second for `seconds` to a cluster of
/// `validators` (each transaction to one validator, in turn) and measures
/// how many are finalized per second and how long each takes.
pub(super) fn chain(
    validators: usize,
    rate: u32,
    seconds: u64,
    label: &'static str,
) -> anyhow::Result<Vec<Figure>> {
    use cairn_ledger::{Genesis, TxBody, TxKind};
    use cairn_wire::Keypair;
    use std::time::Duration;

    const ACCOUNTS: usize = 2_000;
    const WAVE: Duration = Duration::from_millis(10);
    let keys: Vec<Keypair> = (0..ACCOUNTS as u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let publics: Vec<_> = keys.iter().map(Keypair::public).collect();
    let genesis = Genesis::with_balances("bench-chain", &publics, 1_000_000_000_000);
    let chain_id = genesis.state()?.chain();
    let total = rate as usize * seconds as usize;
    // Sign everything first: signing is the client's cost, not the chain's.
    let txs: Vec<(usize, u64, Vec<u8>)> = (0..total)
        .map(|i| {
            let from = i % ACCOUNTS;
            let nonce = (i / ACCOUNTS) as u64;
            let body = TxBody {
                chain: chain_id,
                nonce,
                kind: TxKind::Transfer {
                    to: publics[(i * 7 + 1) % ACCOUNTS],
                    amount: 1,
                },
            };
            (from, nonce, body.sign(&keys[from]).to_bytes())
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let per_wave = (rate as usize * WAVE.as_millis() as usize / 1000).max(1);
    let (latencies, elapsed) =
        cairn_node::with_local_cluster(validators, dir.path(), genesis, move |ledgers| {
            while ledgers.iter().any(|l| l.height() < 2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let started = Instant::now();
            let mut submitted: Vec<Option<Instant>> = vec![None; txs.len()];
            let mut latencies = Vec::with_capacity(txs.len());
            let mut next = 0;
            let mut oldest = 0;
            let deadline = started + Duration::from_secs(seconds * 4 + 30);
            while oldest < txs.len() && Instant::now() < deadline {
                let due =
                    ((started.elapsed().as_millis() / WAVE.as_millis()) as usize + 1) * per_wave;
                while next < due.min(txs.len()) {
                    let (_, _, bytes) = &txs[next];
                    if ledgers[next % ledgers.len()].submit(bytes.clone()).is_ok() {
                        submitted[next] = Some(Instant::now());
                        next += 1;
                    } else {
                        break;
                    }
                }
                // Finality as validator 0 sees it.
                while oldest < next {
                    let (from, nonce, _) = &txs[oldest];
                    if ledgers[0].outcome(&publics[*from], *nonce).is_some() {
                        latencies.push(submitted[oldest].unwrap().elapsed());
                        oldest += 1;
                    } else {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (latencies, started.elapsed())
        })?;
    if latencies.is_empty() {
        bail!("nothing was finalized");
    }
    let finalized = latencies.len();
    let mut latencies = latencies;
    let (p50, p99) = (
        ms(percentile(&mut latencies, 0.5)),
        ms(percentile(&mut latencies, 0.99)),
    );
    let figure = |name: &str, value, unit| Figure {
        suite: "chain",
        metric: format!("{label}_{name}"),
        value,
        unit,
    };
    Ok(vec![
        figure("validators", validators as f64, "validators"),
        figure("offered", f64::from(rate), "tx/s"),
        figure(
            "finalized",
            finalized as f64 / elapsed.as_secs_f64(),
            "tx/s",
        ),
        figure("finality_p50", p50, "ms"),
        figure("finality_p99", p99, "ms"),
    ])
}
