//! `cairn market`: the market as a node sees it: the providers that bid
//! for its work and the prices its auctions cleared at.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_client::Client;

/// Arguments of `cairn market`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  cairn market --data-dir devnet/v0 --node http://127.0.0.1:8700"
)]
pub struct Args {
    /// The node's HTTP API.
    #[arg(long, env = "CAIRN_NODE", default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The node's data folder, where it keeps its API token (`api.token`;
    /// `CAIRN_API_TOKEN` overrides it).
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = ".cairn")]
    data_dir: PathBuf,
    /// How many of the latest cleared prices to list.
    #[arg(long, default_value_t = 10)]
    prices: usize,
    /// Print the node's answers as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn market(args: Args) -> anyhow::Result<ExitCode> {
    let node = Client::new(&args.node).with_token(crate::wallet::api_token(&args.data_dir)?);
    let stats = node.market()?;
    let providers = node.providers()?;
    let prices = node.prices()?;
    if args.json {
        let answer = serde_json::json!({
            "market": stats,
            "providers": providers,
            "prices": prices,
        });
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "node {} · {} peer{} · {} provider{} seen",
        stats.key,
        stats.peers,
        plural(stats.peers as usize),
        providers.len(),
        plural(providers.len())
    );
    if !providers.is_empty() {
        println!(
            "\n{:<14} {:>7} {:>5} {:>5} {:>9} {:<16} {:>14} {:>8} {:>7} {:>9} {:>11}",
            "PROVIDER",
            "PRICE",
            "SLOTS",
            "CORES",
            "MEMORY",
            "RUNS",
            "STAKE",
            "LATENCY",
            "WON",
            "CONFIRMED",
            "CONVICTIONS"
        );
    }
    for p in &providers {
        println!(
            "{:<14} {:>7} {:>5} {:>5} {:>9} {:<16} {:>14} {:>8} {:>7} {:>9} {:>11}",
            format!("{}…", &p.key.to_string()[..12]),
            p.price_ucairn_per_gfuel,
            p.slots,
            p.cores,
            format!("{} MiB", p.memory_mib),
            p.runtimes.join(","),
            crate::wallet::cairn(p.stake),
            format!("{} ms", p.latency_ms),
            format!("{}/{}", p.won, p.bids),
            p.confirmed,
            p.convictions
        );
    }
    let recent = &prices[prices.len().saturating_sub(args.prices)..];
    if recent.is_empty() {
        println!("\nno auction of this node has cleared yet");
    } else {
        let mut sorted: Vec<u64> = prices.iter().map(|p| p.price_ucairn_per_gfuel).collect();
        sorted.sort_unstable();
        let listed: Vec<String> = recent
            .iter()
            .map(|p| p.price_ucairn_per_gfuel.to_string())
            .collect();
        println!(
            "\nlatest cleared prices (µCAIRN per Gfuel, oldest first): {}\nmedian {} over {} lease{}",
            listed.join(" "),
            sorted[sorted.len() / 2],
            prices.len(),
            plural(prices.len())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
