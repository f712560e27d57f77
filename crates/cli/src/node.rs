//! `cairn node` and `cairn devnet`: run validators of the ledger chain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};

use anyhow::{Context, bail};
use cairn_ledger::Genesis;
use cairn_wire::{Keypair, PublicKey};

/// What a fresh single-node chain gives the node's own key: enough to try
/// everything.
const GENESIS_BALANCE: u64 = 1_000_000_000_000_000;

/// Arguments of `cairn node`.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// Folder for the node's key, genesis, consensus data and ledger state.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = ".cairn")]
    data_dir: PathBuf,
    /// Where the HTTP API listens.
    #[arg(long, env = "CAIRN_HTTP", default_value = "127.0.0.1:8640")]
    http: SocketAddr,
    /// Where validator p2p listens.
    #[arg(long, env = "CAIRN_P2P", default_value = "127.0.0.1:8641")]
    p2p: SocketAddr,
    /// Genesis file [default: <data-dir>/genesis.toml, created on first
    /// start crediting this node's key].
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Every validator as KEY@HOST:PORT, this node included [default: this
    /// node alone, the embedded single validator].
    #[arg(long = "validator", value_name = "KEY@ADDR")]
    validators: Vec<String>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let key = Keypair::load_or_create(&args.data_dir.join("node.key"))?;
    let genesis_path = args
        .genesis
        .clone()
        .unwrap_or_else(|| args.data_dir.join("genesis.toml"));
    if !genesis_path.exists() {
        if args.genesis.is_some() {
            bail!("genesis file {} does not exist", genesis_path.display());
        }
        write_genesis(&genesis_path, "cairn-local", &[key.public()])?;
    }
    let genesis = Genesis::load(&genesis_path)?;
    let validators = if args.validators.is_empty() {
        vec![(key.public(), args.p2p)]
    } else {
        args.validators
            .iter()
            .map(|v| parse_validator(v))
            .collect::<anyhow::Result<_>>()?
    };
    eprintln!(
        "cairn: node {} with {} validator(s); data in {}",
        key.public(),
        validators.len(),
        args.data_dir.display()
    );
    cairn_node::run(cairn_node::NodeConfig {
        data_dir: args.data_dir,
        key,
        genesis,
        http: args.http,
        p2p: args.p2p,
        validators,
        threads: args.threads,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_validator(text: &str) -> anyhow::Result<(PublicKey, SocketAddr)> {
    let (key, address) = text
        .split_once('@')
        .with_context(|| format!("validator '{text}' is not KEY@HOST:PORT"))?;
    let key = key.parse().with_context(|| format!("validator '{text}'"))?;
    let address = address
        .parse()
        .with_context(|| format!("validator '{text}': address '{address}'"))?;
    Ok((key, address))
}

/// Writes a genesis crediting `keys` (written once; a chain's genesis never
/// changes).
fn write_genesis(path: &Path, name: &str, keys: &[PublicKey]) -> anyhow::Result<()> {
    let mut text = format!("chain_name = \"{name}\"\n\n[balances]\n");
    for key in keys {
        text.push_str(&format!("\"{key}\" = {GENESIS_BALANCE}\n"));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Arguments of `cairn devnet`.
#[derive(clap::Args)]
pub struct DevnetArgs {
    /// How many validators.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    validators: u16,
    /// Folder for the devnet's nodes, keys and genesis.
    #[arg(long, default_value = "devnet")]
    dir: PathBuf,
    /// First port: validator i listens for HTTP on BASE+2i and p2p on BASE+2i+1.
    #[arg(long, default_value_t = 8700)]
    base_port: u16,
}

pub fn devnet(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    let n = usize::from(args.validators);
    std::fs::create_dir_all(&args.dir)?;
    let wallet = Keypair::load_or_create(&args.dir.join("wallet.key"))?;
    let mut keys = Vec::with_capacity(n);
    let mut validators = Vec::with_capacity(n);
    for i in 0..n {
        let key = Keypair::load_or_create(&args.dir.join(format!("v{i}/node.key")))?;
        let p2p = SocketAddr::from(([127, 0, 0, 1], args.base_port + 2 * i as u16 + 1));
        validators.push(format!("{}@{p2p}", key.public()));
        keys.push(key.public());
    }
    let genesis = args.dir.join("genesis.toml");
    if !genesis.exists() {
        let mut funded = vec![wallet.public()];
        funded.extend(&keys);
        write_genesis(&genesis, "cairn-devnet", &funded)?;
    }
    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let http = SocketAddr::from(([127, 0, 0, 1], args.base_port + 2 * i as u16));
        let p2p = SocketAddr::from(([127, 0, 0, 1], args.base_port + 2 * i as u16 + 1));
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .arg("--data-dir")
            .arg(args.dir.join(format!("v{i}")))
            .arg("--http")
            .arg(http.to_string())
            .arg("--p2p")
            .arg(p2p.to_string())
            .arg("--genesis")
            .arg(&genesis)
            .arg("--threads")
            .arg("1");
        for v in &validators {
            command.arg("--validator").arg(v);
        }
        children.push(command.spawn().context("starting a validator")?);
        println!("validator {i}: http://{http}  (p2p {p2p}, key {key})");
    }
    println!(
        "wallet key {} (funded): cairn wallet --key {} --node http://127.0.0.1:{} balance",
        wallet.public(),
        args.dir.join("wallet.key").display(),
        args.base_port
    );
    println!("press Ctrl-C to stop the devnet");
    let mut failed = false;
    for mut child in children {
        failed |= !child.wait()?.success();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
