//! `cairn devnet`: a network of `cairn node` processes on one machine, and
//! the handle benchmarks use to run one in the background. Every node runs
//! in the devnet's process group, so stopping the group stops them all.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use cairn_wire::{Keypair, PublicKey};

use crate::node::write_genesis;

/// Arguments of `cairn devnet`.
#[derive(clap::Args)]
pub struct DevnetArgs {
    /// How many validators (validator 0 is also the requester).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    validators: u16,
    /// How many providers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=64))]
    providers: u16,
    /// Cores each provider offers.
    #[arg(long, default_value_t = 1)]
    provider_cores: u32,
    /// Providers also offer the tools installed here (Blender, ffmpeg),
    /// run under bubblewrap, for jobs with `runtime = "tool"`.
    #[arg(long)]
    tools: bool,
    /// Folder for the devnet's nodes, keys and genesis.
    #[arg(long, default_value = "devnet")]
    dir: PathBuf,
    /// First port. Validator i: HTTP BASE+2i, consensus BASE+2i+1, market
    /// BASE+100+i. Provider j: HTTP BASE+200+2j, market BASE+201+2j. 0: free
    /// ports the system picks. Either way `<dir>/devnet.json` lists every
    /// node's addresses and process id.
    #[arg(long, default_value_t = 8700)]
    base_port: u16,
    /// Run this job through the devnet, fetch its outputs into `out/<name>`,
    /// then stop the devnet.
    #[arg(long)]
    job: Option<PathBuf>,
    /// Also send the job's module and inputs from this folder (by default
    /// only files in the job file's own folder are sent).
    #[arg(long, value_name = "DIR", requires = "job")]
    allow_inputs_from: Vec<PathBuf>,
}

/// How long a devnet's nodes may take to come up: generous, as a loaded
/// machine starts many nodes slowly.
const NODES_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Where the ports of a devnet come from: consecutive ports from a base,
/// or (base 0) the system.
struct Ports(u16);

impl Ports {
    /// The address at `offset` from the base; without a base, port 0: the
    /// node binds a free port and prints it.
    fn at(&self, offset: u16) -> anyhow::Result<SocketAddr> {
        let port = match self.0 {
            0 => 0,
            base => base
                .checked_add(offset)
                .context("--base-port leaves no room for the devnet's ports")?,
        };
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A port other nodes must know before this one starts (a validator's
    /// consensus address): without a base, one that is free now and that
    /// the system will not hand out meanwhile.
    fn known_at(&self, offset: u16) -> anyhow::Result<SocketAddr> {
        let at = self.at(offset)?;
        if at.port() != 0 {
            return Ok(at);
        }
        Ok(cairn_node::consensus_port()?)
    }
}

/// Starts a node with its output read here: the receiver gets the
/// addresses it prints once up (its HTTP API and its first market address),
/// and every line is passed on to this process's output.
fn spawn_node(
    mut command: Command,
) -> anyhow::Result<(Child, std::sync::mpsc::Receiver<(SocketAddr, String)>)> {
    use std::io::BufRead as _;
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().context("the node's output")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut http = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.strip_prefix("http listening on ") {
                http = at.parse::<SocketAddr>().ok();
            } else if let Some(at) = line.strip_prefix("market listening on ")
                && let Some(http) = http.take()
            {
                let _ = tx.send((http, at.to_string()));
            }
            // Whoever reads the devnet's output may stop; that must not
            // stop the node's output from being read.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    });
    Ok((child, rx))
}

/// `cairn node` on the data folder `dir`, sharing the devnet's compiled
/// modules in `module_cache`. Its log goes to `dir/node.log` (appended
/// to, so a restarted node's follows): five nodes' logs interleaved would
/// bury the devnet's own output.
fn node_command(exe: &Path, dir: &Path, module_cache: &Path) -> anyhow::Result<Command> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .with_context(|| format!("opening {}", dir.join("node.log").display()))?;
    let mut command = Command::new(exe);
    command
        .arg("node")
        .arg("--data-dir")
        .arg(dir)
        .arg("--module-cache")
        .arg(module_cache)
        .stderr(log);
    Ok(command)
}

/// The addresses a node started by [`spawn_node`] printed.
fn addresses_of(
    what: &str,
    printed: &std::sync::mpsc::Receiver<(SocketAddr, String)>,
) -> anyhow::Result<(SocketAddr, String)> {
    printed.recv_timeout(NODES_UP_WAIT).map_err(|_| {
        anyhow::anyhow!(
            "{what} exited or printed no addresses within {} s (the node.log in its folder says why)",
            NODES_UP_WAIT.as_secs()
        )
    })
}

/// One node of a devnet as `<dir>/devnet.json` lists it, for tools and
/// tests that watch, stop or restart it.
#[derive(serde::Serialize)]
struct DevnetNode {
    /// Its folder under the devnet's (`v0`, `p1`, …).
    name: String,
    http: SocketAddr,
    /// Consensus (validators only).
    #[serde(skip_serializing_if = "Option::is_none")]
    p2p: Option<SocketAddr>,
    /// The market's libp2p address, as the node printed it (ending in
    /// `/p2p/<peer id>`).
    market: String,
    pid: u32,
}

/// A devnet started in the background, on free ports (for benchmarks):
/// its whole process group is stopped when it is dropped.
pub(crate) struct Background {
    child: Child,
    dir: PathBuf,
}

impl Background {
    /// Starts `cairn devnet` with `providers` providers in `dir`, and
    /// more of its flags (`--tools`).
    /// Its output (and its nodes') goes to `<dir>/devnet.log`.
    pub(crate) fn start(dir: &Path, providers: u64, flags: &[&str]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("devnet.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .args(["devnet", "--providers", &providers.to_string()])
            .args(flags)
            .args(["--base-port", "0", "--dir"])
            .arg(dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
        })
    }

    /// The requester's (validator 0's) API address and process id, once
    /// the devnet has listed its nodes.
    pub(crate) fn requester(&mut self) -> anyhow::Result<(String, u32)> {
        let manifest = self.dir.join("devnet.json");
        let log = self.dir.join("devnet.log");
        let child = &mut self.child;
        crate::poll::until("the devnet lists its nodes", NODES_UP_WAIT, || {
            if let Some(exit) = child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "the devnet exited ({exit}) before listing its nodes; its log ends:\n{}",
                    tail.join("\n")
                );
            }
            let Ok(bytes) = std::fs::read(&manifest) else {
                return Ok(None);
            };
            let list: serde_json::Value = serde_json::from_slice(&bytes)?;
            let requester = &list["nodes"][0];
            let (Some(http), Some(pid)) = (requester["http"].as_str(), requester["pid"].as_u64())
            else {
                bail!("devnet.json names no requester");
            };
            Ok(Some((format!("http://{http}"), pid as u32)))
        })
    }
}

impl Background {
    /// Whether the devnet has stopped by itself.
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        stop_group(&self.child);
        let _ = self.child.wait();
    }
}

/// Kills every process in the group `leader` leads: a devnet started with
/// its own group and the nodes it started.
pub(crate) fn stop_group(leader: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(leader.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// The devnet's processes; killed when dropped so a failed run leaves
/// nothing behind.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn devnet(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    let n = usize::from(args.validators);
    let ports = Ports(args.base_port);
    std::fs::create_dir_all(&args.dir)?;
    // A list from an earlier run names processes that are gone.
    let _ = std::fs::remove_file(args.dir.join("devnet.json"));
    let wallet = Keypair::load_or_create(&args.dir.join("wallet.key"))?;
    let mut keys = Vec::with_capacity(n);
    let mut validators = Vec::with_capacity(n);
    let mut consensus = Vec::with_capacity(n);
    for i in 0..n as u16 {
        let key = Keypair::load_or_create(&args.dir.join(format!("v{i}/node.key")))?;
        let p2p = ports.known_at(2 * i + 1)?;
        validators.push(format!("{}@{p2p}", key.public()));
        keys.push(key.public());
        consensus.push(p2p);
    }
    let providers: Vec<PublicKey> = (0..usize::from(args.providers))
        .map(|j| {
            Keypair::load_or_create(&args.dir.join(format!("p{j}/node.key"))).map(|k| k.public())
        })
        .collect::<Result<_, _>>()?;
    let genesis = args.dir.join("genesis.toml");
    if !genesis.exists() {
        let mut funded = vec![wallet.public()];
        funded.extend(&keys);
        funded.extend(&providers);
        write_genesis(&genesis, "cairn-devnet", &funded, &keys)?;
    }
    let exe = std::env::current_exe()?;
    // One machine: its nodes share compiled modules, so a new module
    // compiles once, not once per provider.
    let module_cache = args.dir.join("modules");
    let mut children = Children(Vec::new());
    let mut listed = Vec::new();
    let market_at = |at: SocketAddr| format!("/ip4/127.0.0.1/tcp/{}", at.port());
    // Validator 0 first: the others and the providers dial its market.
    let mut bootstrap: Option<String> = None;
    for (i, key) in keys.iter().enumerate() {
        let i16 = i as u16;
        let mut command = node_command(&exe, &args.dir.join(format!("v{i}")), &module_cache)?;
        command
            .args(["--http", &ports.at(2 * i16)?.to_string()])
            .args(["--p2p", &consensus[i].to_string()])
            .args(["--genesis".as_ref(), genesis.as_os_str()])
            .args([
                "--threads",
                "1",
                "--listen",
                &market_at(ports.at(100 + i16)?),
            ]);
        if let Some(bootstrap) = &bootstrap {
            command.args(["--bootstrap", bootstrap]);
        }
        for v in &validators {
            command.arg("--validator").arg(v);
        }
        let (child, printed) = spawn_node(command).context("starting a validator")?;
        children.0.push(child);
        let (http, market) = addresses_of(&format!("validator {i}"), &printed)?;
        bootstrap.get_or_insert_with(|| market.clone());
        listed.push(DevnetNode {
            name: format!("v{i}"),
            http,
            p2p: Some(consensus[i]),
            market,
            pid: children.0[i].id(),
        });
        println!("validator {i}: http://{http}  (key {key})");
    }
    let bootstrap = bootstrap.context("a devnet has a validator")?;
    let ledger = format!("http://{}", listed[0].http);
    // Providers start together: each registers on the ledger before it
    // prints its addresses.
    let mut starting = Vec::with_capacity(providers.len());
    for j in 0..providers.len() {
        let j16 = j as u16;
        let mut command = node_command(&exe, &args.dir.join(format!("p{j}")), &module_cache)?;
        command
            .args([
                "--http",
                &ports.at(200 + 2 * j16)?.to_string(),
                "--threads",
                "1",
            ])
            .args(["--listen", &market_at(ports.at(201 + 2 * j16)?)])
            .args(["--bootstrap", &bootstrap, "--ledger", &ledger, "--provide"])
            .args(["--cores", &args.provider_cores.to_string()]);
        if args.tools {
            command.arg("--tools");
        }
        let (child, printed) = spawn_node(command).context("starting a provider")?;
        children.0.push(child);
        starting.push(printed);
    }
    for (j, (key, printed)) in providers.iter().zip(&starting).enumerate() {
        let (http, market) = addresses_of(&format!("provider {j}"), printed)?;
        listed.push(DevnetNode {
            name: format!("p{j}"),
            http,
            p2p: None,
            market,
            pid: children.0[n + j].id(),
        });
        println!("provider {j}: http://{http}  (key {key})");
    }
    // Written whole or not at all: a reader never sees half a list.
    let manifest = args.dir.join("devnet.json");
    let partial = args.dir.join("devnet.json.partial");
    std::fs::write(
        &partial,
        serde_json::to_vec_pretty(&serde_json::json!({ "nodes": listed }))?,
    )?;
    std::fs::rename(&partial, &manifest)?;
    println!(
        "wallet key {} (funded): cairn wallet --key {} --node {ledger} balance",
        wallet.public(),
        args.dir.join("wallet.key").display(),
    );
    println!(
        "jobs: cairn job --node {ledger} --data-dir {} submit <job.toml>",
        args.dir.join("v0").display()
    );
    println!(
        "web console: {ledger}/ (its token: cat {})",
        cairn_node::api::ApiToken::path(&args.dir.join("v0")).display()
    );
    if let Some(job) = &args.job {
        // Validator 0 wrote its token before its API answered.
        let token = cairn_node::api::ApiToken::load(&args.dir.join("v0"))?;
        let node = cairn_client::Client::new(&ledger).with_token(token);
        wait_for_peers(&node, providers.len())?;
        for key in &providers {
            wait_for_stake(&node, key)?;
        }
        let id = crate::job::submit(&node, job, &args.allow_inputs_from)?;
        println!("job {id} submitted to {ledger}");
        let code = crate::job::watch(&node, &id)?;
        println!("{}", crate::job::results(&node, &id, None)?);
        return Ok(code);
    }
    println!("press Ctrl-C to stop the devnet");
    let mut failed = false;
    for child in &mut children.0 {
        failed |= !child.wait()?.success();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits until a provider's registration is on the ledger, so the first
/// auction does not refuse it as unstaked.
fn wait_for_stake(node: &cairn_client::Client, key: &PublicKey) -> anyhow::Result<()> {
    crate::poll::until(
        &format!("provider {key} is registered on the ledger"),
        NODES_UP_WAIT,
        || {
            let account: cairn_api::Account = node.get(&format!("/v1/accounts/{key}"))?;
            Ok(account.can_bid.then_some(()))
        },
    )
}

/// Waits until the requester sees `peers` market peers.
fn wait_for_peers(node: &cairn_client::Client, peers: usize) -> anyhow::Result<()> {
    crate::poll::until(
        "the providers connect to the requester",
        NODES_UP_WAIT,
        || {
            let seen = node.get::<cairn_api::MarketStats>("/v1/market")?.peers;
            Ok((seen as usize >= peers).then_some(()))
        },
    )
}
