//! node: Run a Cairn node: a ledger validator with its HTTP API.
//!
//! [`run`] starts one validator of the ledger chain (`cairn-chain`) on the
//! tokio runtime, with authenticated, encrypted p2p among the validators on
//! real sockets, and serves the ledger over HTTP ([`api`]). A single
//! validator is the embedded default; a devnet runs several, each in its own
//! process.
#![deny(missing_docs)]

pub mod api;
pub mod market;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_chain::{Channels, Ledger, StateStore, Timeouts, max_message_size, run_validator};
use cairn_ledger::Genesis;
use cairn_wire::{Keypair, PublicKey};
use commonware_codec::DecodeExt as _;
use commonware_cryptography::{ChaCha20Poly1305, Signer as _, ed25519};
use commonware_p2p::authenticated::{lookup, peer_set_limit};
use commonware_p2p::{Address, AddressableManager as _};
use commonware_runtime::{Quota, Runner as _, Spawner as _, Supervisor as _, tokio as runtime};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::ordered::{Map, Set};
use commonware_utils::{NZU32, NZUsize, TryCollect as _};

/// Separates the validators' p2p handshakes from other uses of their keys.
/// Its suffix is the version of the transactions' encoding and of the rule
/// their signatures are checked by, so validators that could decode or
/// judge each other's blocks differently never connect (2: a receipt
/// carries its commitment's salt, and opens it; 3: signatures follow
/// ZIP-215, alone or in a batch).
const P2P_NAMESPACE: &[u8] = b"cairn-ledger-p2p/3";

/// Everything a node needs to start.
pub struct NodeConfig {
    /// Where consensus data and the ledger state are kept.
    pub data_dir: PathBuf,
    /// The node's identity, which is also its validator key.
    pub key: Keypair,
    /// The chain's starting state.
    pub genesis: Genesis,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Names the HTTP API answers besides its address and loopback names
    /// (see [`api::Access::new`]).
    pub api_hosts: Vec<String>,
    /// Where validator p2p listens.
    pub p2p: SocketAddr,
    /// Every validator (this one included): key and p2p address.
    pub validators: Vec<(PublicKey, SocketAddr)>,
    /// Worker threads of the runtime.
    pub threads: usize,
    /// The market roles, if this node takes part in the market.
    pub market: Option<market::MarketConfig>,
    /// Follow the ledger through another node's API (`http://host:port`)
    /// instead of running a validator.
    pub ledger_url: Option<String>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is inconsistent.
    #[error("{0}")]
    Config(String),
    /// The genesis is invalid.
    #[error(transparent)]
    Genesis(#[from] cairn_ledger::GenesisError),
    /// The ledger store failed.
    #[error(transparent)]
    Store(#[from] cairn_chain::StoreError),
    /// A socket could not be opened.
    #[error("{0}")]
    Io(String),
}

fn consensus_key(key: &PublicKey) -> Result<ed25519::PublicKey, NodeError> {
    ed25519::PublicKey::decode(commonware_codec::Copying(key.as_bytes()))
        .map_err(|e| NodeError::Config(format!("validator key {key}: {e}")))
}

/// Runs the node until the process ends. Prints `http listening on ADDR`
/// once the API is up.
pub fn run(config: NodeConfig) -> Result<(), NodeError> {
    if let Some(url) = config.ledger_url.clone() {
        return run_without_validator(config, &url);
    }
    let me = config.key.public();
    if !config.validators.iter().any(|(key, _)| *key == me) {
        return Err(NodeError::Config(format!(
            "this node's key {me} is not among the validators"
        )));
    }
    let participants: Set<ed25519::PublicKey> = config
        .validators
        .iter()
        .map(|(key, _)| consensus_key(key))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .try_collect()
        .map_err(|_| NodeError::Config("a validator is listed twice".into()))?;
    let peers: Map<ed25519::PublicKey, Address> = config
        .validators
        .iter()
        .map(|(key, address)| Ok((consensus_key(key)?, Address::from(*address))))
        .collect::<Result<Vec<_>, NodeError>>()?
        .into_iter()
        .try_collect()
        .map_err(|_| NodeError::Config("a validator is listed twice".into()))?;
    let signer = ed25519::PrivateKey::decode(commonware_codec::Copying(&config.key.secret_seed()))
        .map_err(|e| NodeError::Config(format!("node key: {e}")))?;

    cairn_wire::private_dir(&config.data_dir)
        .map_err(|e| NodeError::Io(format!("creating {}: {e}", config.data_dir.display())))?;
    let store = StateStore::open(&config.data_dir.join("ledger.redb"))?;
    let ledger = Ledger::open(config.genesis.state()?, Some(store))?;
    let (http, access) = bind_http(&config)?;

    let runtime_config = runtime::Config::new()
        .with_storage_directory(config.data_dir.join("consensus"))
        .with_worker_threads(config.threads.max(1));
    let p2p_address = config.p2p;
    let market_config = config.market.clone();
    let key = config.key.clone();
    runtime::Runner::new(runtime_config).start(|context| async move {
        let mut market = None;
        if let Some(market_config) = market_config {
            match start_market(
                key,
                market_config,
                market::LedgerLink::Local(ledger.clone()),
            )
            .await
            {
                Ok(started) => market = Some(started),
                Err(e) => {
                    eprintln!("cairn: {e}");
                    std::process::exit(1);
                }
            }
        }
        let router = api::app(Some(ledger.clone()), market, access);
        context.child("http").spawn(move |_| async move {
            let listener = tokio::net::TcpListener::from_std(http).expect("a listening socket");
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("http server stopped: {e}");
            }
        });
        validator(
            context.child("validator"),
            signer,
            participants,
            peers,
            p2p_address,
            "cairn".to_string(),
            ledger,
        )
        .await;
    });
    Ok(())
}

/// Loads (or on first start creates) the API token in the data folder,
/// binds the HTTP API's socket, and prints `http listening on ADDR`: once
/// that line is out, the token is there for clients to read.
fn bind_http(config: &NodeConfig) -> Result<(std::net::TcpListener, api::Access), NodeError> {
    let token = api::ApiToken::load_or_create(&config.data_dir)
        .map_err(|e| NodeError::Config(format!("API token: {e}")))?;
    let address = config.http;
    let http = std::net::TcpListener::bind(address)
        .map_err(|e| NodeError::Io(format!("http {address}: {e}")))?;
    http.set_nonblocking(true)
        .map_err(|e| NodeError::Io(e.to_string()))?;
    let bound = http
        .local_addr()
        .map_err(|e| NodeError::Io(e.to_string()))?;
    println!("http listening on {bound}");
    if config.market.is_some() {
        // Whoever started the node may have stopped reading its output
        // after the first line; that must not kill the node.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "web console at http://{bound}/ (it asks for the token in {})",
            api::ApiToken::path(&config.data_dir).display()
        );
    }
    Ok((http, api::Access::new(token, bound, &config.api_hosts)))
}

/// Starts the market roles and prints the addresses peers can dial.
async fn start_market(
    key: Keypair,
    config: market::MarketConfig,
    ledger: market::LedgerLink,
) -> Result<market::Market, NodeError> {
    let market = market::Market::start(key, config, ledger).await?;
    for address in market.addresses() {
        // Whoever started the node may have stopped reading its output
        // after the first line; that must not kill the node.
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "market listening on {address}");
    }
    Ok(market)
}

/// A market node that follows the ledger through another node's API.
fn run_without_validator(config: NodeConfig, url: &str) -> Result<(), NodeError> {
    let Some(market_config) = config.market.clone() else {
        return Err(NodeError::Config(
            "a node without a validator must take part in the market".into(),
        ));
    };
    cairn_wire::private_dir(&config.data_dir)
        .map_err(|e| NodeError::Io(format!("creating {}: {e}", config.data_dir.display())))?;
    let (http, access) = bind_http(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| NodeError::Io(e.to_string()))?;
    runtime.block_on(async move {
        let market =
            start_market(config.key, market_config, market::LedgerLink::remote(url)).await?;
        let listener =
            tokio::net::TcpListener::from_std(http).map_err(|e| NodeError::Io(e.to_string()))?;
        axum::serve(listener, api::app(None, Some(market), access))
            .await
            .map_err(|e| NodeError::Io(format!("http server stopped: {e}")))
    })
}

/// Runs one validator: encrypted, authenticated p2p with `peers` (all the
/// validators, this one included) listening on `listen`, and consensus over
/// `ledger`. Storage partitions are named after `prefix`.
async fn validator(
    context: runtime::Context,
    signer: ed25519::PrivateKey,
    participants: Set<ed25519::PublicKey>,
    peers: Map<ed25519::PublicKey, Address>,
    listen: SocketAddr,
    prefix: String,
    ledger: Ledger,
) {
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: signer.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let p2p = lookup::Config::local(
        handshake,
        P2P_NAMESPACE,
        listen,
        peer_set_limit(&participants, &signer.public_key()),
        max_message_size(participants.len() as u32),
        NZUsize!(1024),
    );
    let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
    let _ = oracle.track(0, peers);
    // Each channel's mailbox holds (peers × burst) messages, so the burst,
    // not the rate, is what an idle node pays for in memory: a burst of
    // 100,000 held 1.15 GB before a single block. Validators send a few
    // votes and certificates per view and one block each, so a burst of 256
    // per peer and channel leaves ample headroom.
    let quota = Quota::per_second(NZU32!(10_000)).allow_burst(NZU32!(256));
    let channels = Channels {
        vote: network.register(0, quota),
        certificate: network.register(1, quota),
        resolver: network.register(2, quota),
        backfill: network.register(3, quota),
        broadcast: network.register(4, quota),
    };
    network.start();
    run_validator(
        context.child("validator"),
        signer,
        participants,
        prefix,
        oracle.clone(),
        oracle,
        channels,
        ledger,
        Timeouts::default(),
    )
    .await;
}

/// A loopback address for a validator's consensus listener, free now: the
/// other validators must be told it before the listener binds it, so the
/// system's pick for port 0 will not do (bound and let go, it can be handed
/// out again meanwhile, to another process's port-0 listener or outgoing
/// connection, and the validator then fails to bind). A port outside the
/// system's ephemeral range goes only to whoever asks for it by number.
pub fn consensus_port() -> std::io::Result<SocketAddr> {
    use std::hash::BuildHasher as _;
    use std::net::{Ipv4Addr, TcpListener};
    // Linux's default ephemeral range, if its setting cannot be read.
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32_768, 60_999));
    // Unprivileged ports below the range, else above it.
    let (first, last) = if low > 2_048 {
        (1_024, low - 1)
    } else {
        (high.saturating_add(1), u16::MAX)
    };
    let span = u64::from(last.saturating_sub(first)) + 1;
    // Random, so that two devnets starting together seldom try one port.
    let start = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    for step in 0..span.min(4_096) {
        let port = first + ((start + step) % span) as u16;
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return listener.local_addr();
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// Runs `validators` validators in this process, on one runtime, each with
/// its own p2p listener on loopback and its own ledger store under `dir`,
/// and calls `work` (on its own thread) with their ledgers. Returns `work`'s
/// result once it returns; the validators stop then. For benchmarks and
/// tests of a whole network on one machine.
pub fn with_local_cluster<T: Send + 'static>(
    validators: usize,
    dir: &std::path::Path,
    genesis: Genesis,
    work: impl FnOnce(Vec<Ledger>) -> T + Send + 'static,
) -> Result<T, NodeError> {
    use std::sync::{Arc, Mutex};
    let keys: Vec<Keypair> = (0..validators)
        .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
        .collect();
    let addresses: Vec<SocketAddr> = (0..validators)
        .map(|_| consensus_port())
        .collect::<Result<_, _>>()
        .map_err(|e| NodeError::Io(e.to_string()))?;
    let participants: Set<ed25519::PublicKey> = keys
        .iter()
        .map(|k| consensus_key(&k.public()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .try_collect()
        .expect("distinct keys");
    let mut ledgers = Vec::with_capacity(validators);
    for i in 0..validators {
        let store = StateStore::open(&dir.join(format!("v{i}/ledger.redb")))?;
        ledgers.push(Ledger::open(genesis.state()?, Some(store))?);
    }
    let result = Arc::new(Mutex::new(None));
    let runtime_config = runtime::Config::new()
        .with_storage_directory(dir.join("consensus"))
        .with_worker_threads(2);
    let out = result.clone();
    runtime::Runner::new(runtime_config).start(|context| async move {
        for (i, key) in keys.iter().enumerate() {
            let signer = ed25519::PrivateKey::decode(commonware_codec::Copying(&key.secret_seed()))
                .expect("a valid seed");
            let peers: Map<ed25519::PublicKey, Address> = keys
                .iter()
                .zip(&addresses)
                .map(|(k, a)| {
                    (
                        consensus_key(&k.public()).expect("valid"),
                        Address::from(*a),
                    )
                })
                .try_collect()
                .expect("distinct keys");
            let ledger = ledgers[i].clone();
            let participants = participants.clone();
            let listen = addresses[i];
            context
                .child("node")
                .with_attribute("index", i)
                .spawn(move |context| {
                    validator(
                        context,
                        signer,
                        participants,
                        peers,
                        listen,
                        format!("v{i}"),
                        ledger,
                    )
                });
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, out) = (done.clone(), out.clone());
        std::thread::spawn(move || {
            *out.lock().unwrap() = Some(work(ledgers));
            flag.store(true, std::sync::atomic::Ordering::Release);
        });
        use commonware_runtime::Clock as _;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            context.sleep(Duration::from_millis(20)).await;
        }
    });
    let value = result.lock().unwrap().take().expect("work finished");
    Ok(value)
}
