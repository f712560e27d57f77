//! `cairn node` and `cairn devnet`: run validators of the ledger chain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cairn_ledger::Genesis;
use cairn_wire::{Keypair, PublicKey};
use clap::builder::BoolishValueParser;

/// What a fresh single-node chain gives the node's own key: enough to try
/// everything.
const GENESIS_BALANCE: u64 = 1_000_000_000_000_000;
/// How long a challenged provider has to reveal on a chain this command
/// creates: one machine's network, whose tests and demos cannot wait the
/// hours a real chain gives.
const LOCAL_REVEAL_WINDOW_MS: u64 = 20_000;

/// Arguments of `cairn node`.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// Folder for the node's key, genesis, consensus data and ledger state.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = ".cairn")]
    data_dir: PathBuf,
    /// Where the HTTP API listens.
    #[arg(long, env = "CAIRN_HTTP", default_value = "127.0.0.1:8640")]
    http: SocketAddr,
    /// A name the HTTP API answers to besides its address and localhost
    /// (NAME or NAME:PORT; a request naming any other host is refused).
    #[arg(long = "api-host", env = "CAIRN_API_HOST", value_delimiter = ',')]
    api_hosts: Vec<String>,
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
    #[arg(long, env = "CAIRN_THREADS", default_value_t = 2)]
    threads: usize,
    /// What the node logs, to stderr: a level for Cairn's own messages
    /// (off, error, warn, info, debug, trace; other crates log only their
    /// warnings and errors), or tracing directives such as
    /// "warn,cairn_roles=debug".
    #[arg(long, env = "CAIRN_LOG", default_value = "info")]
    log_level: String,
    /// How log lines are written: for people, or one JSON object a line.
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(flatten)]
    market: MarketArgs,
}

/// How `cairn node` writes its log.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Sends the node's log to stderr, filtered by `level` (see
/// [`NodeArgs::log_level`]); colours only on a terminal, and never with
/// `NO_COLOR` set.
fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let directives = match level.to_ascii_lowercase().as_str() {
        "off" => "off".to_string(),
        "error" => "error".to_string(),
        level @ ("warn" | "info" | "debug" | "trace") => format!("warn,cairn={level}"),
        // One word that is not a level would be read as a target to log
        // everything of: a typo would silence the node.
        word if !word.contains(['=', ',']) => {
            bail!("--log-level '{level}' is not a level: off, error, warn, info, debug or trace")
        }
        _ => level.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&directives)
        .with_context(|| {
            format!(
                "--log-level '{level}' is neither a level (off, error, warn, info, debug, \
                 trace) nor tracing directives"
            )
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("starting the log: {e}"))
}

/// The market side of `cairn node`.
#[derive(clap::Args, Clone)]
pub struct MarketArgs {
    /// Where the market's libp2p transport listens (TCP and/or QUIC
    /// multiaddresses) [default: a free loopback port, printed at start].
    #[arg(
        long = "listen",
        env = "CAIRN_LISTEN",
        value_delimiter = ',',
        default_value = "/ip4/127.0.0.1/tcp/0"
    )]
    listen: Vec<String>,
    /// Market peers to contact first: multiaddresses ending in /p2p/<peer id>.
    #[arg(long = "bootstrap", env = "CAIRN_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Discover market peers on the LAN with mDNS.
    #[arg(long, env = "CAIRN_MDNS", value_parser = BoolishValueParser::new())]
    mdns: bool,
    /// Behind NAT: run AutoNAT, a relay client and hole punching.
    #[arg(long, env = "CAIRN_NAT", value_parser = BoolishValueParser::new())]
    nat: bool,
    /// Offer this machine's CPUs to the market (the provider role).
    #[arg(long, env = "CAIRN_PROVIDE", value_parser = BoolishValueParser::new())]
    provide: bool,
    /// Also offer the tools installed here (Blender, ffmpeg), each task
    /// run under bubblewrap (no network, read-only system, bounded).
    #[arg(long, env = "CAIRN_TOOLS", requires = "provide", value_parser = BoolishValueParser::new())]
    tools: bool,
    /// With --tools, keep this machine's NVIDIA GPUs to itself (by
    /// default they are lent to the tool tasks that ask for them).
    #[arg(long, env = "CAIRN_NO_GPUS", value_parser = BoolishValueParser::new())]
    no_gpus: bool,
    /// Cores offered [default: all].
    #[arg(long, env = "CAIRN_CORES")]
    cores: Option<u32>,
    /// Memory offered, MiB: no task may use more.
    #[arg(long, env = "CAIRN_MEMORY_MIB", default_value_t = 4096)]
    memory_mib: u32,
    /// The longest wall-clock time one task may run, seconds [default: a
    /// day, the most a job file may ask].
    #[arg(long, env = "CAIRN_TASK_WALL_TIME_S_MAX")]
    task_wall_time_s_max: Option<u64>,
    /// The most output one task may write, MiB [default: 4096, the most a
    /// job file may ask].
    #[arg(long, env = "CAIRN_TASK_OUTPUT_MIB_MAX")]
    task_output_mib_max: Option<u64>,
    /// Base price asked per 10^9 fuel, µcairn.
    #[arg(long, env = "CAIRN_PRICE", default_value_t = 40)]
    price: u64,
    /// Never bid below this, µcairn per 10^9 fuel.
    #[arg(long, env = "CAIRN_PRICE_FLOOR", default_value_t = 10)]
    price_floor: u64,
    /// Follow the ledger through this node's API instead of running a
    /// validator (providers of a devnet do).
    #[arg(long, env = "CAIRN_LEDGER")]
    ledger: Option<String>,
    /// How long this node's auctions collect bids, ms.
    #[arg(long, env = "CAIRN_BID_WINDOW_MS", default_value_t = 50)]
    bid_window_ms: u32,
    /// Seconds a provider has to return a task [default: the job's wall-time
    /// limit plus 5 s].
    #[arg(long, env = "CAIRN_TASK_DEADLINE_S", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    task_deadline_s: u64,
    /// Seconds a provider that committed to a result has to reveal it once
    /// asked (its outputs are fetched within them); a provider that does
    /// not is convicted, challenged on the ledger, and its task runs
    /// elsewhere. At least 10: an honest provider checks in every second
    /// and must send its outputs.
    #[arg(long, env = "CAIRN_REVEAL_TIMEOUT_S", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(10..=3_600))]
    reveal_timeout_s: u64,
    /// Seconds each side of a dispute has to answer one round (the first
    /// round adds time to trace the task); a side that does not loses.
    #[arg(long, env = "CAIRN_DISPUTE_ROUND_TIMEOUT_S", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(10..=3_600))]
    dispute_round_timeout_s: u64,
    /// Where compiled modules are kept; nodes on one machine can share the
    /// folder, so each module compiles once per machine [default:
    /// <data-dir>/market/modules].
    #[arg(long, env = "CAIRN_MODULE_CACHE", value_name = "DIR")]
    module_cache: Option<PathBuf>,
    /// The most compiled code kept there, MiB (least recently used goes).
    #[arg(long, env = "CAIRN_MODULE_CACHE_MIB", default_value_t = 2048)]
    module_cache_mib: u64,
    /// Cheat on purpose, to test verification on a devnet: `liar` returns a
    /// wrong result for every task, `stonewaller` lies and answers every
    /// dispute question that it is still preparing, `staller` commits and
    /// never reveals,
    /// `index-overflower` reports on tasks past the job's end,
    /// `output-substituter` delivers another file than it committed to,
    /// `fuel-inflater` claims all of a task's fuel; on training tasks,
    /// `step-skipper` drops updates, `data-swapper` trains on other text,
    /// `early-stopper` stops half-way and makes the rest up,
    /// `weight-nudger` nudges weights before the last step; on Blender
    /// frames, `lazy-renderer` renders with a quarter of the samples,
    /// `frame-swapper` delivers the next frame, `region-painter` paints
    /// over a corner (providers);
    /// `framer` challenges honest commits on the ledger, `withholder`
    /// never settles and closes its escrow instead, `underpayer` claims a
    /// zero-fuel acceptance of every result first and never settles,
    /// `case-crasher` exits
    /// once it has stored a case against a cheat, before it asks any
    /// validator (requesters).
    /// Only a build with the adversaries (the tests') plays them; any
    /// other refuses to start with one.
    #[arg(long, hide = true, value_parser = clap::builder::PossibleValuesParser::new(
        cairn_node::market::adversary::NAMES,
    ))]
    misbehave: Option<String>,
}

impl MarketArgs {
    fn config(&self, data_dir: &Path) -> anyhow::Result<cairn_node::market::MarketConfig> {
        let parse = |list: &[String], what: &str| -> anyhow::Result<Vec<cairn_net::Multiaddr>> {
            list.iter()
                .map(|a| a.parse().with_context(|| format!("{what} address '{a}'")))
                .collect()
        };
        let mut config = cairn_node::market::MarketConfig::new(data_dir.join("market"));
        config.listen = parse(&self.listen, "listen")?;
        config.bootstrap = parse(&self.bootstrap, "bootstrap")?;
        config.mdns = self.mdns;
        config.nat = self.nat;
        config.bid_window_ms = self.bid_window_ms;
        config.sched.task_deadline_ms = self.task_deadline_s * 1000;
        config.verify.reveal_timeout_ms = self.reveal_timeout_s * 1000;
        config.verify.dispute_round_timeout_ms = self.dispute_round_timeout_s * 1000;
        if let Some(dir) = &self.module_cache {
            config.module_cache_dir = dir.clone();
        }
        config.module_cache_bytes_max = self.module_cache_mib.saturating_mul(1 << 20);
        if self.provide {
            let cores = self.cores.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
            });
            let score = crate::bench::score_mfuel_per_s();
            config.provider = Some(cairn_node::market::ProviderConfig {
                offer: cairn_market::Offer {
                    runtimes: vec!["wasm".into()],
                    cores,
                    memory_mib: self.memory_mib,
                    // Found with the tools (`--tools`), which alone use them.
                    gpus: 0,
                    gpu_model: String::new(),
                    gpu_memory_mib: 0,
                    score_mfuel_per_s: score,
                    tools: Vec::new(),
                    gpu_driver: String::new(),
                },
                pricing: cairn_market::ScalePricing {
                    base_ucairn_per_gfuel: self.price,
                    floor_ucairn_per_gfuel: self.price_floor,
                    ..cairn_market::ScalePricing::default()
                },
                stake_ucairn: cairn_ledger::Params::default().stake_min,
                task_caps: {
                    let mut caps = cairn_node::market::TaskCaps::default();
                    if let Some(s) = self.task_wall_time_s_max {
                        caps.wall_time_ms = s.saturating_mul(1_000);
                    }
                    if let Some(mib) = self.task_output_mib_max {
                        caps.output_bytes = mib.saturating_mul(1 << 20);
                    }
                    caps
                },
                tools: self.tools,
                gpus: !self.no_gpus,
                misbehave: None,
            });
        }
        if let Some(name) = &self.misbehave {
            cairn_node::market::adversary::configure(&mut config, name)
                .map_err(anyhow::Error::msg)?;
        }
        Ok(config)
    }
}

pub fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log_level, args.log_format)?;
    let key = Keypair::load_or_create(&args.data_dir.join("node.key"))?;
    let genesis_path = args
        .genesis
        .clone()
        .unwrap_or_else(|| args.data_dir.join("genesis.toml"));
    if !genesis_path.exists() {
        if args.genesis.is_some() {
            bail!("genesis file {} does not exist", genesis_path.display());
        }
        write_genesis(
            &genesis_path,
            "cairn-local",
            &[key.public()],
            &[key.public()],
        )?;
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
    check_validators(&genesis, &validators)?;
    eprintln!(
        "cairn: node {} with {} validator(s); data in {}, API token in {}",
        key.public(),
        validators.len(),
        args.data_dir.display(),
        cairn_node::api::ApiToken::path(&args.data_dir).display()
    );
    let market = args.market.config(&args.data_dir)?;
    cairn_node::run(cairn_node::NodeConfig {
        market: Some(market),
        ledger_url: args.market.ledger.clone(),
        data_dir: args.data_dir,
        key,
        genesis,
        http: args.http,
        api_hosts: args.api_hosts,
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

/// The validators that run consensus must be the genesis's validators, who
/// attest dispute verdicts: a chain whose verdicts count under another set
/// than its consensus could be judged by anyone.
fn check_validators(genesis: &Genesis, running: &[(PublicKey, SocketAddr)]) -> anyhow::Result<()> {
    let named: std::collections::BTreeSet<PublicKey> =
        running.iter().map(|(key, _)| *key).collect();
    let listed = genesis
        .validators
        .iter()
        .map(|k| k.parse::<PublicKey>())
        .collect::<Result<std::collections::BTreeSet<_>, _>>()
        .context("the genesis's validators")?;
    let show = |keys: &std::collections::BTreeSet<PublicKey>| {
        keys.iter()
            .map(PublicKey::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if listed.is_empty() {
        eprintln!("cairn: the genesis lists no validators, so no dispute can convict anyone");
    } else if named != listed {
        bail!(
            "the validators ({}) are not the genesis's validators ({})",
            show(&named),
            show(&listed)
        );
    }
    Ok(())
}

/// Writes a genesis crediting `funded` with `validators` (written once; a
/// chain's genesis never changes).
pub(crate) fn write_genesis(
    path: &Path,
    name: &str,
    funded: &[PublicKey],
    validators: &[PublicKey],
) -> anyhow::Result<()> {
    let listed: Vec<String> = validators.iter().map(|k| format!("\"{k}\"")).collect();
    let mut text = format!(
        "chain_name = \"{name}\"\nvalidators = [{}]\n\n\
         [params]\n\
         # A local chain: a challenged provider has {LOCAL_REVEAL_WINDOW_MS} ms to reveal\n\
         # (the default, for a chain of machines that go away, is hours).\n\
         reveal_window_ms = {LOCAL_REVEAL_WINDOW_MS}\n\n[balances]\n",
        listed.join(", ")
    );
    let keys = funded;
    for key in keys {
        text.push_str(&format!("\"{key}\" = {GENESIS_BALANCE}\n"));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
