//! `cairn node`, `cairn devnet` and `cairn wallet` over real sockets.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

/// A port nobody is listening on right now, that the system will not hand
/// out before the node binds it.
fn free_port() -> u16 {
    cairn_node::consensus_port().unwrap().port()
}

struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(data: &Path, http: u16, p2p: u16) -> Node {
    let mut child = cairn()
        .args(["node", "--data-dir"])
        .arg(data)
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--p2p",
            &format!("127.0.0.1:{p2p}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("http listening on"), "{line}");
    Node {
        child,
        url: format!("http://127.0.0.1:{http}"),
    }
}

fn wallet(node: &str, key: &Path, args: &[&str]) -> String {
    let output = cairn()
        .args(["wallet", "--node", node, "--key"])
        .arg(key)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wallet {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn balance_of(node: &str, key: &Path, account: &str) -> u64 {
    let json = wallet(node, key, &["--json", "balance", account]);
    let account: cairn_api::Account =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    account.balance
}

#[test]
fn kill_9_of_the_embedded_validator_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let key = data.join("node.key");
    let (http, p2p) = (free_port(), free_port());
    let recipient = "00000000000000000000000000000000000000000000000000000000000000aa";
    let mut node = start_node(&data, http, p2p);
    for amount in [100, 200, 300] {
        wallet(
            &node.url,
            &key,
            &["transfer", recipient, &amount.to_string()],
        );
    }
    assert_eq!(balance_of(&node.url, &key, recipient), 600);
    // People run nodes on spare machines: a validator's p2p mailboxes once
    // preallocated 1.15 GB before its first block.
    let peak = peak_resident_mib(node.child.id());
    assert!(peak < 256, "an idle node peaked at {peak} MiB resident");

    // kill -9: no chance to flush or shut down.
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    let node = start_node(&data, http, p2p);
    assert_eq!(
        balance_of(&node.url, &key, recipient),
        600,
        "a committed transfer was lost"
    );
    // The chain goes on from where it was: the next nonce is accepted.
    let line = wallet(&node.url, &key, &["transfer", recipient, "1"]);
    assert_eq!(balance_of(&node.url, &key, recipient), 601);
    // The block that applied it can be looked up.
    let height: u64 = line
        .strip_prefix("applied at height ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("unexpected wallet output: {line}"));
    let block = http_get(http, &format!("/v1/blocks/{height}"));
    assert!(block.contains("\"applied\":1"), "{block}");
    assert!(http_get(http, "/v1/blocks/99999999").contains("no recent block"));
}

/// The most memory process `pid` has held resident, MiB (Linux's VmHWM).
fn peak_resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib / 1024
}

/// A plain HTTP GET on loopback; returns the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_refused_transaction_takes_its_nonce_and_stake_moves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let key = data.join("node.key");
    let node = start_node(&data, free_port(), free_port());
    let output = cairn()
        .args(["wallet", "--node", &node.url, "--key"])
        .arg(&key)
        .args(["stake", "500"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("below the minimum 1000000000"));
    // A block carried the refused transaction: it took nonce 0, and the
    // next ones follow it.
    wallet(&node.url, &key, &["stake", "2000000000"]);
    wallet(&node.url, &key, &["unstake", "1000"]);
    let line = wallet(&node.url, &key, &["balance"]);
    assert!(
        line.contains("stake 1,999.999 CAIRN, unbonding 0.001 CAIRN, nonce 3"),
        "{line}"
    );
    let json = wallet(&node.url, &key, &["balance", "--json"]);
    let account: cairn_api::Account = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (account.stake, account.unbonding, account.nonce),
        (1_999_999_000, 1_000, 3)
    );
}

#[test]
fn wallet_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = start_node(&data, free_port(), free_port());
    let stranger = dir.path().join("stranger.key");
    let output = cairn()
        .args(["wallet", "--node", &node.url, "--key"])
        .arg(&stranger)
        .args([
            "transfer",
            "00000000000000000000000000000000000000000000000000000000000000aa",
            "5",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // An account with nothing is refused at the door: it may not hold
    // mempool space (see the ledger's mempool rules).
    assert!(stderr.contains("holds no funds"), "{stderr}");
}

#[test]
fn a_four_validator_devnet_finalizes_transfers_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = cairn()
        .args(["devnet", "--validators", "4", "--providers", "0", "--dir"])
        .arg(dir.path())
        .args(["--base-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _devnet = Devnet(devnet);
    let key = dir.path().join("wallet.key");
    // The devnet lists its nodes once it has started them (after writing
    // its funded wallet key and its genesis).
    let started = Instant::now();
    let nodes = loop {
        if let Ok(bytes) = std::fs::read(dir.path().join("devnet.json")) {
            break serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["nodes"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the devnet listed no nodes"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let url = |i: usize| format!("http://{}", nodes[i]["http"].as_str().unwrap());
    // Wait until every validator answers.
    while (0..4).any(|i| {
        cairn()
            .args(["wallet", "--node", &url(i), "--key"])
            .arg(&key)
            .arg("balance")
            .output()
            .map_or(true, |o| !o.status.success())
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the devnet did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let recipient = "00000000000000000000000000000000000000000000000000000000000000bb";
    wallet(&url(0), &key, &["transfer", recipient, "42"]);
    // The next transfer is signed with the nonce validator 2 reports: it
    // must have applied the first, or both would take one nonce (and the
    // wallet say the second was not applied).
    let started = Instant::now();
    while balance_of(&url(2), &key, recipient) != 42 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "validator 2 never applied the first transfer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wallet(&url(2), &key, &["transfer", recipient, "8"]);
    // Every validator applies the same blocks.
    let started = Instant::now();
    while (0..4).any(|i| balance_of(&url(i), &key, recipient) != 50) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "validators disagree"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running devnet in its own process group; dropping it stops the group
/// (the devnet and its validators), even when the test fails.
struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

/// `cairn job` finds the node's API token in the node's data folder; without
/// it, it says which file to read, and a wrong token is refused by the node.
#[test]
fn job_commands_find_the_api_token_or_say_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = start_node(&data, free_port(), free_port());
    let job = |data_dir: &Path, token: Option<&str>| {
        let mut command = cairn();
        command
            .args(["job", "--node", &node.url, "--data-dir"])
            .arg(data_dir)
            .args(["status", "--json"])
            .env_remove("CAIRN_API_TOKEN");
        if let Some(token) = token {
            command.env("CAIRN_API_TOKEN", token);
        }
        command.output().unwrap()
    };
    let output = job(&data, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let elsewhere = dir.path().join("elsewhere");
    let output = job(&elsewhere, None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = elsewhere.join("api.token").display().to_string();
    assert!(stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("CAIRN_API_TOKEN"), "{stderr}");
    let output = job(&elsewhere, Some(&"ab".repeat(32)));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong API token"), "{stderr}");
    let token = std::fs::read_to_string(data.join("api.token")).unwrap();
    assert!(job(&elsewhere, Some(token.trim())).status.success());
}

/// A log filter that does not parse stops the node before it touches
/// anything, saying which flag was wrong.
#[test]
fn a_bad_log_level_is_refused_before_the_node_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    // A misspelt level would read as a target and silence the node.
    for (level, says) in [
        ("cairn=[", "cairn: --log-level 'cairn=[' is neither a level"),
        ("inof", "cairn: --log-level 'inof' is not a level"),
    ] {
        let output = cairn()
            .args(["node", "--log-level", level])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with(says), "{stderr}");
    }
    assert!(!data.exists(), "nothing was created");
}
