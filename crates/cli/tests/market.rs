//! The provider network over real loopback sockets: a devnet of `cairn node`
//! processes (a validator that is also the requester, and providers), jobs
//! submitted with `cairn job`, and providers killed, frozen or impersonated
//! along the way.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde_json::Value;

/// Every node here waits 20 s, not the default minute, for a reveal or a
/// dispute answer: the tests of providers that never send one would
/// otherwise spend most of their time waiting (the devnet's nodes inherit
/// the setting). At 20 s the frozen provider's test once saw an honest
/// provider convicted for a reveal whose outputs waited on the frozen
/// one's transfer; an arrived reveal now has its fetch's own time.
const PROTOCOL_TIMEOUT_S: &str = "20";

fn cairn() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .env("CAIRN_REVEAL_TIMEOUT_S", PROTOCOL_TIMEOUT_S)
        .env("CAIRN_DISPUTE_ROUND_TIMEOUT_S", PROTOCOL_TIMEOUT_S);
    command
}

fn run(args: &[&str]) -> Output {
    cairn().args(args).output().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a devnet that failed to start said, and the end of each node's log.
fn devnet_logs(tmp: &Path) -> String {
    let mut said = std::fs::read_to_string(tmp.join("devnet.err")).unwrap_or_default();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(tmp.join("devnet"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("node.log"))
        .filter(|log| log.exists())
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        said.push_str(&format!("\n--- {} ends:\n", log.display()));
        for line in tail.iter().rev() {
            said.push_str(line);
            said.push('\n');
        }
    }
    said
}

/// A devnet running in the background on free ports, in its own process
/// group: every process it or the test started is killed when dropped.
struct Devnet {
    child: Child,
    dir: PathBuf,
    /// `devnet.json`: each node's addresses and process id.
    nodes: Value,
    /// The validators the requester (validator 0) was started with, to
    /// start it again with them (`--validator` values).
    validators: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Devnet {
    fn start(providers: u16) -> Self {
        Self::start_with(1, providers)
    }

    /// A devnet of `validators` validators (validator 0 is the requester)
    /// and `providers` providers.
    fn start_with(validators: u16, providers: u16) -> Self {
        Self::launch(validators, providers, &[])
    }

    /// A devnet whose providers offer their installed tools.
    fn start_with_tools(providers: u16) -> Self {
        Self::launch(1, providers, &["--tools"])
    }

    fn launch(validators: u16, providers: u16, flags: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("devnet");
        let mut child = cairn()
            .args(["devnet", "--providers", &providers.to_string()])
            .args(["--validators", &validators.to_string()])
            .args(flags)
            .args(["--base-port", "0", "--dir"])
            .arg(&dir)
            // A provider restarted just before a job (a cheat swapped in)
            // must be able to bid: the default 50 ms window once closed
            // before its bid arrived, and the job ran without it.
            .env("CAIRN_BID_WINDOW_MS", "1000")
            // The same providers on a machine with GPUs as on CI's, which
            // has none.
            .env("CAIRN_NO_GPUS", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("devnet.err")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let nodes = loop {
            if let Ok(bytes) = std::fs::read(dir.join("devnet.json")) {
                break serde_json::from_slice::<Value>(&bytes).unwrap()["nodes"].clone();
            }
            if let Some(exit) = child.try_wait().unwrap() {
                panic!("the devnet exited ({exit}):\n{}", devnet_logs(tmp.path()));
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no devnet.json"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let v0 = nodes
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == "v0"))
            .and_then(|n| n["pid"].as_i64())
            .expect("validator 0's process id");
        let command = std::fs::read(format!("/proc/{v0}/cmdline")).unwrap();
        let args: Vec<String> = command
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let validators = args
            .windows(2)
            .filter(|w| w[0] == "--validator")
            .map(|w| w[1].clone())
            .collect();
        let devnet = Self {
            child,
            dir,
            nodes,
            validators,
            _tmp: tmp,
        };
        devnet.wait_until("every provider is staked and connected", |d| {
            let market = d.get("/v1/market")?;
            let staked = (0..providers).all(|j| {
                let key =
                    cairn_wire::Keypair::load_or_create(&d.dir.join(format!("p{j}/node.key")))
                        .ok()
                        .map(|k| k.public());
                key.and_then(|k| d.get(&format!("/v1/accounts/{k}")))
                    .is_some_and(|a| a["can_bid"] == true)
            });
            (market["peers"].as_u64()? >= u64::from(providers) && staked).then_some(())
        });
        devnet
    }

    /// The node in folder `name` (`v0`, `p1`, …) as the devnet started it.
    fn node(&self, name: &str) -> &Value {
        self.nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no node {name} in {}", self.nodes))
    }

    fn pid(&self, name: &str) -> Pid {
        let pid = self.node(name)["pid"].as_i64().unwrap();
        Pid::from_raw(pid as i32).unwrap()
    }

    fn url(&self) -> String {
        format!("http://{}", self.node("v0")["http"].as_str().unwrap())
    }

    /// GETs `path` from the requester, with its API token once it has one.
    fn get(&self, path: &str) -> Option<Value> {
        let mut curl = Command::new("curl");
        curl.args(["-sf", &format!("{}{path}", self.url())]);
        if let Ok(token) = std::fs::read_to_string(self.dir.join("v0/api.token")) {
            curl.args(["-H", &format!("Authorization: Bearer {}", token.trim())]);
        }
        serde_json::from_slice(&curl.output().ok()?.stdout).ok()
    }

    /// Runs `cairn job <args>` against the requester, which reads the
    /// requester's API token from its folder.
    fn job(&self, args: &[&str]) -> Output {
        cairn()
            .args(["job", "--node", &self.url(), "--data-dir"])
            .arg(self.dir.join("v0"))
            .args(args)
            .output()
            .unwrap()
    }

    fn wait_until<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "timed out waiting until {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn submit(&self, job: &Path) -> String {
        let output = self.job(&["submit", job.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    fn status(&self, id: &str) -> Value {
        self.get(&format!("/v1/jobs/{id}")).expect("job status")
    }

    fn wait_done(&self, id: &str) -> Value {
        self.wait_done_within(id, Duration::from_secs(180))
    }

    fn wait_done_within(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status(id);
            assert_ne!(status["state"], "failed", "{status}");
            if status["state"] == "done" {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "timed out waiting until the job is done: {status}\n{}",
                self.requester_warnings()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Each node's first and last warnings and queue events, for a
    /// failure's message: the
    /// devnet's folder goes with the test.
    fn requester_warnings(&self) -> String {
        let mut told = String::new();
        for node in self.nodes.as_array().into_iter().flatten() {
            let name = node["name"].as_str().unwrap_or("?");
            let log =
                std::fs::read_to_string(self.dir.join(name).join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("scheduler")
                })
                .collect();
            let (first, rest) = lines.split_at(lines.len().min(20));
            let last = &rest[rest.len().saturating_sub(20)..];
            told += &format!("--- {name}: {} warnings and queue events\n", lines.len());
            for line in first.iter().chain(last) {
                told += line;
                told += "\n";
            }
        }
        told
    }

    /// A job's results, every page of them.
    fn results(&self, id: &str) -> BTreeMap<u64, Value> {
        let mut all = BTreeMap::new();
        let mut from = 0;
        loop {
            let page = self
                .get(&format!("/v1/jobs/{id}/results?from={from}"))
                .unwrap();
            all.extend(by_task(&page));
            match page["next"].as_u64() {
                Some(next) if next > from => from = next,
                None => return all,
                Some(next) => panic!("a next page at {next}, not past {from}"),
            }
        }
    }

    /// Starts provider `j` again on its folder and ports, as `cairn devnet`
    /// first did.
    fn restart_provider(&self, j: u16) -> Child {
        self.start_provider(j, &[])
    }

    /// Starts provider `j` on its folder and ports with `extra` arguments.
    fn start_provider(&self, j: u16, extra: &[&str]) -> Child {
        let requester = self.get("/v1/market").unwrap()["listen"][0]
            .as_str()
            .unwrap()
            .to_string();
        cairn()
            .args(["node", "--data-dir"])
            .arg(self.dir.join(format!("p{j}")))
            .args(["--http", "127.0.0.1:0", "--threads", "1"])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--bootstrap", &requester, "--ledger", &self.url()])
            .args(["--provide", "--cores", "1"])
            .args(extra)
            .env("CAIRN_NO_GPUS", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(self.child.id() as i32)
            .spawn()
            .unwrap()
    }

    /// Starts the requester (validator 0) again on its folder and ports, as
    /// `cairn devnet` first did. A start that finds its store still locked
    /// by the killed process (it can linger on a loaded machine) exits at
    /// once; it is tried again.
    fn restart_requester(&self) -> Child {
        self.restart_requester_with(&[])
    }

    /// Starts the requester again on its folder and ports, and returns once
    /// it has finalized a block: its API answers, and its consensus, the
    /// last part to bind its port, runs. One that exits first (a port the
    /// killed process held is not free yet) is started again.
    fn restart_requester_with(&self, extra: &[&str]) -> Child {
        let started = Instant::now();
        loop {
            let mut child = self.start_requester_with(extra);
            let mut first_height = None;
            let exited = loop {
                if let Some(exit) = child.try_wait().unwrap() {
                    break exit;
                }
                if let Some(height) = self.get("/v1/status").and_then(|s| s["height"].as_u64()) {
                    if first_height.is_some_and(|first| height > first) {
                        return child;
                    }
                    first_height.get_or_insert(height);
                }
                assert!(
                    started.elapsed() < Duration::from_secs(180),
                    "the restarted requester finalized no block"
                );
                std::thread::sleep(Duration::from_millis(100));
            };
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the restarted requester keeps exiting ({exited})"
            );
            eprintln!("the restarted requester exited ({exited}); trying again");
        }
    }

    fn start_requester_with(&self, extra: &[&str]) -> Child {
        let v0 = self.node("v0");
        cairn()
            .args(["node", "--data-dir"])
            .arg(self.dir.join("v0"))
            .args(["--http", v0["http"].as_str().unwrap()])
            .args(["--p2p", v0["p2p"].as_str().unwrap()])
            .arg("--genesis")
            .arg(self.dir.join("genesis.toml"))
            .args(["--threads", "1", "--listen"])
            .arg(
                v0["market"]
                    .as_str()
                    .unwrap()
                    .split("/p2p/")
                    .next()
                    .unwrap(),
            )
            .env("CAIRN_BID_WINDOW_MS", "1000")
            .args(self.validators.iter().flat_map(|v| ["--validator", v]))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(self.child.id() as i32)
            .spawn()
            .unwrap()
    }

    /// Kills the node in folder `name` and waits until it is gone.
    fn kill(&self, name: &str) {
        self.signal(name, Signal::KILL);
        self.wait_gone(name);
    }

    /// Waits until the node in folder `name` has exited (a zombie holds no
    /// port and no lock), so it can start again on its ports (a killed
    /// process can take a while to exit on a loaded machine).
    fn wait_gone(&self, name: &str) {
        let stat = format!("/proc/{}/stat", self.pid(name).as_raw_nonzero());
        self.wait_until("the killed node is gone", |_| {
            let gone = std::fs::read_to_string(&stat).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            gone.then_some(())
        });
    }

    /// Sends `signal` to the node in folder `name`, as the devnet started it.
    fn signal(&self, name: &str, signal: Signal) {
        rustix::process::kill_process(self.pid(name), signal)
            .unwrap_or_else(|e| panic!("signalling {name}: {e}"));
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // The devnet, its nodes and those the test started share a group.
        if let Some(group) = Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, Signal::CONT);
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

/// `cairn run --local --json` of `job` into `out`: its summary.
fn run_local(job: &Path, out: &Path) -> Value {
    let local = run(&[
        "run",
        job.to_str().unwrap(),
        "--local",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    serde_json::from_slice(&local.stdout).unwrap()
}

/// Each result's digest by task, from a results file or `cairn run`'s
/// summary, whose task index is under `index`.
fn digests(summary: &Value, index: &str) -> BTreeMap<u64, String> {
    summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[index].as_u64().unwrap(),
                r["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A results answer (`{"results": [...]}`) by task index.
fn by_task(answer: &Value) -> BTreeMap<u64, Value> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["task"].as_u64().unwrap(), r.clone()))
        .collect()
}

/// Verification as most tests run it: two new providers that agree are
/// enough (at the default 0.999 it takes three).
const VERIFIED: &str = "policy = \"adaptive\"\nconfidence = 0.99";

/// A job of `tasks` BLAKE3 searches, each a fraction of a second, verified
/// as `verify` says (the body of a `[verify]` table).
fn search_job(dir: &Path, tasks: u32, price_max: u64, verify: &str) -> PathBuf {
    search_job_with_fuel(dir, tasks, price_max, verify, 20_000_000_000)
}

/// The same with `fuel` per task: a dispute's first round allows tracing
/// that much (at 50 Mfuel/s), so a side that never answers loses after
/// `fuel / 50M` seconds and a round ([`PROTOCOL_TIMEOUT_S`]).
fn search_job_with_fuel(
    dir: &Path,
    tasks: u32,
    price_max: u64,
    verify: &str,
    fuel: u64,
) -> PathBuf {
    let path = dir.join(format!(
        "search-{tasks}-{price_max}-{}-{fuel}.toml",
        verify.len()
    ));
    std::fs::write(
        &path,
        format!(
            r#"
[job]
name = "search"
module = "cairn:hashsearch"
args = ["--prefix", "cairn", "--start", "{{task}}000000", "--count", "40000", "--bits", "12", "--out", "/output/hits-{{task:03}}.txt"]

[tasks]
range = [0, {tasks}]

[outputs]
paths = ["hits-{{task:03}}.txt"]

[limits]
fuel = {fuel}
memory_mib = 16
wall_time_s = 2

[market]
price_max_ucairn_per_gfuel = {price_max}

[verify]
{verify}
"#
        ),
    )
    .unwrap();
    path
}

/// The render example cut to its first `frames` frames, in `dir`.
fn render_job(dir: &Path, frames: usize) -> PathBuf {
    let example = repo().join("examples/render");
    let text = std::fs::read_to_string(example.join("job.toml")).unwrap();
    let shorter = text.replacen("range = [0, 24]", &format!("range = [0, {frames}]"), 1);
    assert_ne!(shorter, text, "the example's task range moved");
    let job = dir.join("job.toml");
    std::fs::write(&job, shorter).unwrap();
    std::fs::copy(example.join("scene.json"), dir.join("scene.json")).unwrap();
    job
}

/// The Blender example, written into `dir` with its scene script, its text
/// changed by `edit` (which must change it).
fn blender_job(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let example = repo().join("examples/blender");
    let text = std::fs::read_to_string(example.join("job.toml")).unwrap();
    let edited = edit(&text);
    assert_ne!(
        edited, text,
        "the Blender example no longer reads as this test expects"
    );
    let job = dir.join("job.toml");
    std::fs::write(&job, edited).unwrap();
    std::fs::copy(example.join("scene.py"), dir.join("scene.py")).unwrap();
    job
}

/// The example's first three frames (all 24 are rendered by CI's first
/// command, the README's): a frame takes seconds, three times here.
#[test]
fn three_providers_render_the_example_and_digests_match_a_local_run() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = 3;
    let job = render_job(tmp.path(), frames);
    let output = cairn()
        .current_dir(tmp.path())
        .args([
            "devnet",
            "--providers",
            "3",
            "--base-port",
            "0",
            "--dir",
            "devnet",
        ])
        .arg("--job")
        .arg(&job)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let network: Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("out/orbit/cairn-results.json")).unwrap(),
    )
    .unwrap();
    let local = run_local(&job, &tmp.path().join("local"));
    // Frames take seconds each: providers busy rendering are not idle, so
    // the job is not put up for auction again while they render (it used
    // to be, every 3 s, and read `queued`, "the provider is busy": about
    // ten auctions for these six frames). On a loaded machine (the suite's
    // other devnets), gaps of 3 s between a frame ending and the next pull
    // were seen, once and then twice in one run, and are idleness: two
    // more auctions are allowed.
    let auctions = network["status"]["auctions"].as_u64().unwrap();
    assert!(auctions <= 3, "{}", network["status"]);
    let network_digests = digests(&network, "task");
    assert_eq!(network_digests.len(), frames, "every frame arrives");
    assert_eq!(network_digests, digests(&local, "index"));
    // Work was spread: every frame was rendered by two providers (the
    // verifier never gives a task's replicas to one provider), so at
    // least two executions a frame. Which provider's record is kept says
    // nothing: under load, one provider once ran the first replica of
    // all six frames of an earlier version of this test.
    let executions = network["status"]["executions"].as_u64().unwrap();
    assert!(executions >= 2 * frames as u64, "{}", network["status"]);
    for frame in 0..frames {
        let name = format!("frame-{frame:04}.png");
        assert_eq!(
            std::fs::read(tmp.path().join("out/orbit").join(&name)).unwrap(),
            std::fs::read(tmp.path().join("local").join(&name)).unwrap(),
            "{name}"
        );
    }
}

/// Debian's chromium and playwright-core (from npm, at the version
/// `tests/console/package-lock.json` pins; it never downloads a browser),
/// installed when missing as the tool tests install theirs. Returns the
/// folder of the browser check.
fn install_browser() -> PathBuf {
    // Its apt-get runs first and alone: two at once fight over dpkg's lock.
    cairn_exec::tool::install_test_tools();
    if !Path::new("/usr/bin/chromium").exists() {
        println!("installing chromium from Debian, for the console test");
        let root = rustix::process::geteuid().is_root();
        assert!(
            root,
            "the console test needs chromium: apt-get install chromium"
        );
        for args in [
            &["update", "-q"][..],
            &["install", "-y", "-q", "--no-install-recommends", "chromium"],
        ] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("running apt-get");
            assert!(status.success(), "apt-get {args:?} failed");
        }
    }
    let check = repo().join("crates/cli/tests/console");
    if !check.join("node_modules/playwright-core").exists() {
        println!("installing playwright-core from npm, for the console test");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&check)
            .status()
            .expect("running npm (the console test needs Node.js and npm)");
        assert!(status.success(), "npm ci in {} failed", check.display());
    }
    check
}

/// The web console, in Debian's chromium, against a devnet rendering the
/// example, a job that asks for approval: it refuses a wrong token, shows
/// the job reaching 100% with a thumbnail of each frame as it arrives; a
/// frame rejected in the viewer is rendered again, and approving them all
/// settles the job (one opens full size, at the
/// frame's own size), the providers that bid, the cleared prices and
/// blocks, and keeps its token across a reload. The screenshot is kept at
/// `target/tmp/console.png`.
#[test]
fn the_web_console_shows_a_rendering_job_live_with_its_frames_and_providers() {
    let check = install_browser();
    let tmp = tempfile::tempdir().unwrap();
    let frames = 4;
    let job = render_job(tmp.path(), frames);
    // Its requester judges the frames, in the console. Each frame runs
    // once: a rejected one runs again on a provider that did not run it,
    // and a frame verified by two of three providers would leave one.
    let text = std::fs::read_to_string(&job).unwrap();
    let (head, _) = text
        .split_once("[verify]")
        .expect("the example has [verify]");
    std::fs::write(
        &job,
        format!("{head}[verify]\npolicy = \"none\"\n\n[approval]\nwindow_s = 3600\n"),
    )
    .unwrap();
    let devnet = Devnet::start(3);
    let id = devnet.submit(&job);
    let token = std::fs::read_to_string(devnet.dir.join("v0/api.token")).unwrap();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("node")
        .arg(check.join("check.mjs"))
        .args([&format!("{}/", devnet.url()), token.trim()])
        .arg(&screenshot)
        .arg(frames.to_string())
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        shown["refused"].as_str().unwrap().contains("refused"),
        "{shown}"
    );
    assert_eq!(
        shown["progress"],
        format!("{frames}/{frames} tasks (100%) · done")
    );
    assert_eq!(shown["frames"], frames, "{shown}");
    // The example's frames are 320×240 (examples/render/job.toml).
    assert_eq!(shown["full"], serde_json::json!([320, 240]), "{shown}");
    assert!(shown["blocks"].as_u64().unwrap() > 0, "{shown}");
    assert_eq!(
        shown["cancellable"], false,
        "a job over cannot be cancelled"
    );
    assert_eq!(shown["approvable"], false, "nor judged");
    // A frame rejected in the viewer was rendered again, then every frame
    // approved from the page.
    let judged = shown["judged"].as_str().unwrap_or_default();
    assert!(
        judged.contains(&format!("{frames} approved, 1 rejected")),
        "{shown}"
    );
    let status = devnet.status(&id);
    assert_eq!(
        (status["approved"].as_u64(), status["rejected"].as_u64()),
        (Some(frames as u64), Some(1)),
        "{status}"
    );
    assert!(
        shown["balance"].as_str().unwrap().ends_with(" CAIRN"),
        "{shown}"
    );
    // The token left the address with its fragment.
    assert!(!shown["address"].as_str().unwrap().contains("token"));
    // Every provider shown is one of the devnet's, and the ones that ran
    // the job are among them.
    let keys: BTreeSet<String> = (0..3)
        .map(|j| provider_key(&devnet, j).to_string())
        .collect();
    let listed: BTreeSet<String> = shown["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert!(listed.is_subset(&keys), "{listed:?}");
    for record in devnet.results(&id).values() {
        assert!(listed.contains(record["provider"].as_str().unwrap()));
    }
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

/// Livepeer's workload through the whole market, with the real ffmpeg
/// installed on three providers and run under bubblewrap: the transcoding
/// example's job file on a generated 20-second clip, split into 2 s
/// segments, each encoded into the ladder. Both replicas of every task
/// agree by digest, with each other and with a local run; every
/// rendition's playlist reads end to end with ffprobe, every frame of the
/// clip in it; and every token is accounted for.
/// Three render cheats and one honest provider render the Blender
/// example's first frame, two replicas asked: a `lazy_renderer` (a quarter
/// of the samples), a `frame_swapper` (the next frame, delivered as this
/// one) and a `region_painter` (a corner painted over, under a digest of
/// its own). No two of the four frames agree, so the job waits for another
/// provider; a second honest one joins, agrees with the first, and that
/// frame is accepted: the local run's, from honest providers only. No
/// cheat is paid; both honest providers are.
#[test]
fn render_cheats_are_outvoted_and_none_is_paid() {
    cairn_exec::tool::install_test_tools();
    let devnet = Devnet::start_with_tools(5);
    // The second honest provider waits outside until the cheats rendered.
    devnet.kill("p4");
    let mut cheats = Vec::new();
    for (j, how) in [
        (1, "lazy-renderer"),
        (2, "frame-swapper"),
        (3, "region-painter"),
    ] {
        devnet.kill(&format!("p{j}"));
        cheats.push(devnet.start_provider(j, &["--tools", "--misbehave", how]));
    }
    let cheat_keys: Vec<_> = (1..=3).map(|j| provider_key(&devnet, j)).collect();
    devnet.wait_until("the cheats are back", |d| {
        (d.get("/v1/market")?["peers"].as_u64()? >= 4).then_some(())
    });
    let before = balances(&devnet, 5);
    let tmp = tempfile::tempdir().unwrap();
    let job = blender_job(tmp.path(), |text| {
        text.replace("frames = \"1-12\"", "frames = \"1\"")
    });
    let id = devnet.submit(&job);
    // All four ran it (a stalled job runs nothing, and waits for a
    // provider that has not).
    let status = devnet.wait_until("four frames disagree and the job waits", |d| {
        let status = d.status(&id);
        (status["state"] == "stalled" && status["executions"].as_u64()? >= 4).then_some(status)
    });
    assert_eq!(status["done"], 0, "{status}");
    let honest = devnet.start_provider(4, &["--tools"]);
    let status = devnet.wait_done(&id);
    assert_eq!(status["convicted"], Value::Array(Vec::new()), "{status}");
    results_are_local_and_none_from(&devnet, &id, &job, 1, &cheat_keys);
    devnet.wait_until("the frame is paid", |d| {
        (d.status(&id)["settled"].as_u64()? >= 1).then_some(())
    });
    let after = balances(&devnet, 5);
    for j in 1..=3 {
        assert_eq!(after.1[j], before.1[j], "cheat p{j} was paid");
    }
    for j in [0, 4] {
        assert!(after.1[j] > before.1[j], "honest p{j} was not paid");
    }
    for mut process in cheats.into_iter().chain([honest]) {
        let _ = process.kill();
        let _ = process.wait();
    }
}

/// A frame in four tiles, spot-checked (every tile drawn, so that the test
/// is deterministic; a job would check a share), rendered by a region
/// painter and an honest provider: each tile's check contradicts it, no
/// dispute starts (no referee can re-run Blender), and the job waits for a
/// third provider, whose renders outvote the painter's. The frame joins
/// into the local run's bits; the painter is never paid.
#[test]
fn spot_checked_tiles_outvote_a_region_painter_and_it_is_not_paid() {
    cairn_exec::tool::install_test_tools();
    let devnet = Devnet::start_with_tools(3);
    devnet.kill("p2");
    devnet.kill("p1");
    let painter = devnet.start_provider(1, &["--tools", "--misbehave", "region-painter"]);
    devnet.wait_until("the painter is back", |d| {
        (d.get("/v1/market")?["peers"].as_u64()? >= 2).then_some(())
    });
    let before = balances(&devnet, 3);
    let tmp = tempfile::tempdir().unwrap();
    let job = blender_job(tmp.path(), |text| {
        text.replace("frames = \"1-12\"", "frames = \"1\"")
            .replace("# tiles = \"2x2\"", "tiles = \"2x2\"")
            .replace(
                "policy = \"replicate\"\nreplicas = 2",
                "policy = \"spot\"\nprobability = 1.0",
            )
    });
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains("probability = 1.0") && text.contains("\ntiles = "));
    let id = devnet.submit(&job);
    let status = devnet.wait_until("every tile's check disagrees and the job waits", |d| {
        let status = d.status(&id);
        (status["state"] == "stalled" && status["executions"].as_u64()? >= 8).then_some(status)
    });
    assert_eq!(status["done"], 0, "{status}");
    assert_eq!(status["disputes"], 0, "{status}");
    let honest = devnet.start_provider(2, &["--tools"]);
    let status = devnet.wait_done(&id);
    assert_eq!(status["convicted"], Value::Array(Vec::new()), "{status}");
    results_are_local_and_none_from(&devnet, &id, &job, 4, &[provider_key(&devnet, 1)]);
    devnet.wait_until("the tiles are paid", |d| {
        (d.status(&id)["settled"].as_u64()? >= 4).then_some(())
    });
    let after = balances(&devnet, 3);
    assert_eq!(after.1[1], before.1[1], "the painter was paid");
    for j in [0, 2] {
        assert!(after.1[j] > before.1[j], "honest p{j} was not paid");
    }
    for mut process in [painter, honest] {
        let _ = process.kill();
        let _ = process.wait();
    }
}

/// A `work_deflater` requester declares one of eight identical encodes,
/// through the API, at a hundred-thousandth of the work its siblings declare:
/// terms that reach that low are signed before anyone can tell. Each
/// provider runs it once, weighs what it is paid against the CPU time it
/// took and its own rate, takes no more of the lease's tasks, and declines
/// the requester's next orders; the job does not get its remaining encodes
/// from them, and says why.
#[test]
fn a_requester_declaring_a_task_at_a_sliver_of_its_work_loses_its_providers() {
    cairn_exec::tool::install_test_tools();
    let devnet = Devnet::start_with_tools(2);
    let tmp = tempfile::tempdir().unwrap();
    let job_file = tmp.path().join("job.toml");
    std::fs::write(
        &job_file,
        r#"
[job]
name = "deflated"
runtime = "tool"
module = "ffmpeg@5"
args = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "3",
        "-c:v", "libx264", "-preset", "veryfast", "-threads", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
        "/output/clip-{task}.mp4"]
[tasks]
range = [0, 8]
[outputs]
paths = ["clip-{task}.mp4"]
[limits]
fuel = 10_000_000_000
memory_mib = 1024
[market]
budget_ucairn = 1_000_000_000
price_max_ucairn_per_gfuel = 200
"#,
    )
    .unwrap();
    let job = cairn_job::Job::load(&job_file, &[]).unwrap();
    let token = cairn_api::ApiToken::load(&devnet.dir.join("v0")).unwrap();
    let client = cairn_client::Client::new(&devnet.url()).with_token(token);
    let module = client.upload("tool", b"ffmpeg@5".to_vec()).unwrap();
    let mut submission = cairn_client::submission(&job, module, Vec::new());
    // A hundred-thousandth of its siblings' figure.
    submission.tasks[1].fuel = Some(100_000);
    let id = client.submit(&submission).unwrap().to_string();
    let log = |j: u16| {
        std::fs::read_to_string(devnet.dir.join(format!("p{j}/node.log"))).unwrap_or_default()
    };
    devnet.wait_until("both providers found that the lease underpays", |_| {
        (0..2)
            .all(|j| log(j).contains("its requester underpays"))
            .then_some(())
    });
    // Asked again, they decline, saying why; the encodes left are not done.
    let status = devnet.wait_until("the job's next order is declined", |d| {
        let status = d.status(&id);
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("requester declared a sliver of the work it took"))
            .then_some(status)
    });
    assert!(status["done"].as_u64().unwrap() < 8, "{status}");
    assert_ne!(status["state"], "done", "{status}");
}

#[test]
fn three_providers_transcode_a_clip_into_the_ladder_and_every_playlist_plays_end_to_end() {
    cairn_exec::tool::install_test_tools();
    let devnet = Devnet::start_with_tools(3);
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::copy(repo().join("examples/transcode/job.toml"), &job).unwrap();
    // A clip with a keyframe a second, and sound, as a camera gives.
    cairn_exec::tool::video::generate_clip(&tmp.path().join("clip.mp4"), 20, 640, 360).unwrap();
    let before = balances(&devnet, 3);
    let id = devnet.submit(&job);
    let status = devnet.wait_done(&id);
    // Ten segments in three renditions, each run twice, and no
    // disagreement.
    assert_eq!(status["total"], 30, "{status}");
    assert!(status["executions"].as_u64().unwrap() >= 60, "{status}");
    assert_eq!(status["disputes"], 0, "{status}");
    assert_eq!(status["convicted"], Value::Array(Vec::new()), "{status}");

    let out = tmp.path().join("out");
    let fetched = devnet.job(&["results", &id, "-o", out.to_str().unwrap()]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let network: Value =
        serde_json::from_slice(&std::fs::read(out.join("cairn-results.json")).unwrap()).unwrap();
    let local = run_local(&job, &tmp.path().join("local"));
    assert_eq!(digests(&network, "task").len(), 30);
    assert_eq!(digests(&network, "task"), digests(&local, "index"));
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    for (name, width, height) in [
        ("240p30", 426, 240),
        ("360p30", 640, 360),
        ("720p30", 1280, 720),
    ] {
        assert!(
            master.contains(&format!("RESOLUTION={width}x{height}"))
                && master.contains(&format!("{name}.m3u8")),
            "{master}"
        );
        assert_eq!(
            played(&out.join(format!("{name}.m3u8"))),
            format!("{width},{height},600"),
            "{name}: every frame of the 20 s clip, at its size"
        );
    }
    // Each task is paid for the pixels it encodes (Livepeer's check), not
    // its largest sibling's: what a rendition's results bill is what its
    // playlist plays, within the rounding of segment times to frames.
    for rendition in network["hls"]["renditions"].as_array().unwrap() {
        let name = rendition["rendition"].as_str().unwrap();
        let billed: u64 = network["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["outputs"][0]["name"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(name))
            })
            .map(|r| r["fuel_used"].as_u64().unwrap())
            .sum();
        let encoded = rendition["pixels"].as_u64().unwrap() * cairn_job::video::FUEL_PER_PIXEL;
        let ratio = billed as f64 / encoded as f64;
        assert!(
            (0.95..=1.05).contains(&ratio),
            "{name}: {billed} fuel billed for {encoded} encoded"
        );
    }

    assert_paid_and_balanced(&devnet, &id, 3, before);
}

/// What ffprobe reads of a playlist's first video stream, end to end:
/// `width,height,frames`.
fn played(playlist: &Path) -> String {
    let read = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(playlist)
        .output()
        .unwrap();
    let read = String::from_utf8_lossy(&read.stdout);
    read.lines().next().unwrap_or_default().to_string()
}

/// Livepeer's live case: a 12-second stream produced in real time (ffmpeg's
/// test source, a keyframe a second) is piped into `cairn job stream`; its
/// segments' renditions are added to the running job as they are cut,
/// transcoded by three providers, checked against each other, and listed
/// in live playlists while the stream runs. When it ends, the job ends:
/// every segment is in every playlist, which plays every frame of the
/// stream, and the tokens balance.
#[test]
fn a_live_stream_is_transcoded_as_it_is_produced_and_its_playlists_play_to_the_end() {
    cairn_exec::tool::install_test_tools();
    let devnet = Devnet::start_with_tools(3);
    let tmp = tempfile::tempdir().unwrap();
    let before = balances(&devnet, 3);
    let mut source = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "30",
        ])
        .args(["-c:a", "aac", "-f", "mpegts", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tmp.path().join("out");
    let streamed = cairn()
        .args(["job", "--node", &devnet.url(), "--data-dir"])
        .arg(devnet.dir.join("v0"))
        .args(["stream", "--json", "-o", out.to_str().unwrap()])
        .arg(repo().join("examples/transcode/live.toml"))
        .stdin(source.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(source.wait().unwrap().success());
    let said = String::from_utf8_lossy(&streamed.stderr);
    assert!(streamed.status.success(), "{said}");
    let stdout = String::from_utf8(streamed.stdout).unwrap();
    let mut lines = stdout.lines();
    let id = lines.next().unwrap().to_string();
    let summary: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    // Six segments of 2 s, each listed while the stream ran, in order.
    assert_eq!(summary["segments"], 6, "{summary}\n{said}");
    assert_eq!(summary["segments_listed_live"], 6, "{summary}");
    assert_eq!(summary["state"], "done", "{summary}");
    for s in 0..6 {
        assert!(said.contains(&format!("segment {s} listed")), "{said}");
    }
    let status = devnet.status(&id);
    assert_eq!(status["total"], 12, "{status}");
    assert_eq!(status["done"], 12, "{status}");
    assert!(status["executions"].as_u64().unwrap() >= 24, "{status}");
    assert_eq!(status["disputes"], 0, "{status}");

    // The playlists as they stood live list every segment, and the final
    // ones play every frame of the stream at each rendition's size.
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    for (name, width, height) in [("240p30", 426, 240), ("360p30", 640, 360)] {
        assert!(
            master.contains(&format!("RESOLUTION={width}x{height}")),
            "{master}"
        );
        let playlist = std::fs::read_to_string(out.join(format!("{name}.m3u8"))).unwrap();
        assert!(playlist.contains(&format!("{name}_0005.ts")), "{playlist}");
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
        assert_eq!(
            played(&out.join(format!("{name}.m3u8"))),
            format!("{width},{height},360"),
            "{name}: every frame of the 12 s stream, at its size"
        );
    }
    assert_paid_and_balanced(&devnet, &id, 3, before);
}

/// Issue 13's inference through the market: three providers embed the
/// example corpus with all-MiniLM-L6-v2 in Wasm, the model's 87 MB of
/// weights a content-addressed input each provider fetches. Replicas agree
/// by digest, with each other and with a local run, and every token is
/// accounted for.
#[test]
fn three_providers_embed_a_corpus_bit_for_bit_as_a_local_run_does() {
    cairn_embed::example_model().unwrap();
    let devnet = Devnet::start(3);
    let tmp = tempfile::tempdir().unwrap();
    let job = repo().join("examples/embed/job.toml");
    let before = balances(&devnet, 3);
    let id = devnet.submit(&job);
    let status = devnet.wait_done(&id);
    assert_eq!(status["total"], 5, "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    assert!(status["executions"].as_u64().unwrap() >= 10, "{status}");
    assert_eq!(status["disputes"], 0, "{status}");

    let out = tmp.path().join("out");
    let fetched = devnet.job(&["results", &id, "-o", out.to_str().unwrap()]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let network: Value =
        serde_json::from_slice(&std::fs::read(out.join("cairn-results.json")).unwrap()).unwrap();
    let local = run_local(&job, &tmp.path().join("local"));
    assert_eq!(digests(&network, "task").len(), 5);
    assert_eq!(digests(&network, "task"), digests(&local, "index"));
    for task in 0..5 {
        let name = format!("embeddings-{task:04}.jsonl");
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap(),
            std::fs::read(tmp.path().join("local").join(&name)).unwrap(),
            "{name}"
        );
    }

    assert_paid_and_balanced(&devnet, &id, 3, before);
}

#[test]
fn a_provider_killed_mid_job_loses_nothing_and_the_job_completes() {
    let devnet = Devnet::start(3);
    let tmp = tempfile::tempdir().unwrap();
    let id = devnet.submit(&search_job(tmp.path(), 60, 1_000, VERIFIED));
    devnet.wait_until("some tasks are done", |d| {
        (d.status(&id)["done"].as_u64()? >= 5).then_some(())
    });
    devnet.signal("p0", Signal::KILL);
    let status = devnet.wait_done(&id);
    assert_eq!(status["failed"], 0);
    let results = devnet.results(&id);
    assert_eq!(
        results.len(),
        60,
        "one result per task, none lost or doubled"
    );
    assert_eq!(
        results.keys().copied().collect::<Vec<_>>(),
        (0..60).collect::<Vec<_>>()
    );
    // Each task's stdout comes back with the results, verified, and is
    // linked from cairn-results.json.
    let out = tmp.path().join("fetched");
    let fetched = devnet.job(&["results", &id, "-o", out.to_str().unwrap()]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let listed: Value =
        serde_json::from_slice(&std::fs::read(out.join("cairn-results.json")).unwrap()).unwrap();
    for record in listed["results"].as_array().unwrap() {
        let task = record["task"].as_u64().unwrap();
        let path = format!("cairn-logs/task-{task}.stdout");
        assert_eq!(record["stdout"]["path"], path.as_str(), "{record}");
        let printed = std::fs::read_to_string(out.join(&path)).unwrap();
        assert!(
            printed.starts_with(&format!("searched {}..", task * 1_000_000)),
            "task {task} printed {printed:?}"
        );
        assert!(record["stderr"].is_null(), "{record}");
    }
}

#[test]
fn a_provider_that_takes_tasks_and_never_answers_loses_them_at_the_deadline() {
    let devnet = Devnet::start(3);
    let tmp = tempfile::tempdir().unwrap();
    let id = devnet.submit(&search_job(tmp.path(), 40, 1_000, VERIFIED));
    devnet.wait_until("tasks are running", |d| {
        (d.status(&id)["done"].as_u64()? >= 2).then_some(())
    });
    // Frozen: its connection stays open, it holds its tasks, it never
    // answers again.
    devnet.signal("p1", Signal::STOP);
    // Frozen between revealing a result and serving its outputs, it can
    // cost the requester a request timeout (30 s) per fetch and a wait on
    // the same blob (up to 60 s) before it counts as never revealed, on
    // top of the reveal and task deadlines: on a loaded machine the job
    // once took more than the usual 180 s after the freeze.
    let status = devnet.wait_done_within(&id, Duration::from_secs(300));
    assert_eq!(status["failed"], 0);
    // The frozen provider is convicted if it owed a reveal when it froze
    // (the job may also finish without it); an honest one never is.
    let frozen = serde_json::to_value(provider_key(&devnet, 1)).unwrap();
    let convicted = status["convicted"].as_array().unwrap();
    assert!(
        convicted.iter().all(|key| *key == frozen),
        "only the frozen provider may be convicted: {status}\n{}",
        devnet.requester_warnings()
    );
    // Done means stored: the freeze convicts the frozen provider, which
    // reopens the results it helped accept, and their forgetting and
    // accepting again were once written out of order (done, with a result
    // missing for good).
    let results = devnet.results(&id);
    let missing: Vec<u64> = (0..40).filter(|t| !results.contains_key(t)).collect();
    assert!(
        missing.is_empty(),
        "done, but tasks {missing:?} have no result"
    );
}

/// Balances that change when a job is paid: the requester's, each
/// provider's, and the fee pool.
/// Once job `id`'s escrow is closed: the requester paid something, and
/// what it paid is what the `providers` earned plus the fees, against the
/// `before` balances.
fn assert_paid_and_balanced(
    devnet: &Devnet,
    id: &str,
    providers: u16,
    before: (u64, Vec<u64>, u64),
) -> u64 {
    let (requester_before, providers_before, fees_before) = before;
    devnet.wait_until("the escrow is closed", |d| {
        d.get(&format!("/v1/escrows/{id}")).is_none().then_some(())
    });
    let (requester_after, providers_after, fees_after) = balances(devnet, providers);
    let spent = requester_before - requester_after;
    let earned: u64 = providers_after
        .iter()
        .zip(&providers_before)
        .map(|(after, before)| after - before)
        .sum();
    assert!(spent > 0, "the providers were paid");
    assert_eq!(spent, earned + (fees_after - fees_before));
    spent
}

fn balances(devnet: &Devnet, providers: u16) -> (u64, Vec<u64>, u64) {
    let balance = |key: cairn_wire::PublicKey| {
        devnet.get(&format!("/v1/accounts/{key}")).unwrap()["balance"]
            .as_u64()
            .unwrap()
    };
    let requester = cairn_wire::Keypair::load_or_create(&devnet.dir.join("v0/node.key"))
        .unwrap()
        .public();
    (
        balance(requester),
        (0..providers)
            .map(|j| balance(provider_key(devnet, j)))
            .collect(),
        devnet.get("/v1/status").unwrap()["fee_pool"]
            .as_u64()
            .unwrap(),
    )
}

#[test]
fn a_restarted_requester_resumes_without_rerunning_finished_tasks() {
    let devnet = Devnet::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let balances_before = balances(&devnet, 2);
    let requester_before = balances_before.0;
    let id = devnet.submit(&search_job(tmp.path(), 60, 1_000, VERIFIED));
    // The job is accepted only once a block has locked its escrow.
    let budget = devnet
        .get(&format!("/v1/escrows/{id}"))
        .expect("the escrow is open")["balance"]
        .as_u64()
        .unwrap();
    assert_eq!(balances(&devnet, 2).0, requester_before - budget);
    devnet.wait_until("some tasks are done", |d| {
        (d.status(&id)["done"].as_u64()? >= 10).then_some(())
    });
    devnet.kill("v0");
    let mut node = devnet.restart_requester();
    // What the restarted node holds at once is what was durable at the crash.
    let before = devnet.wait_until("the requester is back", |d| {
        d.get(&format!("/v1/jobs/{id}/results"))
    });
    let before = by_task(&before);
    assert!(
        before.len() >= 10,
        "results stored before the crash survive it"
    );
    let status = devnet.wait_done(&id);
    assert_eq!(status["failed"], 0);
    let after = devnet.results(&id);
    assert_eq!(after.len(), 60);
    for (task, record) in &before {
        assert_eq!(
            &after[task], record,
            "task {task} finished before the crash was run again"
        );
    }
    // Every token is accounted for, across the crash: the escrow closes,
    // the unspent budget returns, and what the requester spent is what the
    // providers earned plus the protocol fee.
    let spent = assert_paid_and_balanced(&devnet, &id, 2, balances_before);
    assert!(spent < budget, "spent {spent} of {budget}");
    let status = devnet.status(&id);
    assert!(
        status["settled"].as_u64().unwrap() >= 60,
        "each result was settled: {status}"
    );
    let _ = node.kill();
    let _ = node.wait();
}

/// Render's approval through the whole market: a job that asks for it is
/// not paid when its results are verified; the requester rejects one
/// (`cairn job reject`), which the other provider runs again, then
/// approves the rest (`cairn job approve`); only then does it settle,
/// paying the approved results and not the rejected one, and every token
/// is accounted for.
#[test]
fn a_job_that_asks_for_approval_pays_only_what_its_requester_approved() {
    let devnet = Devnet::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let (requester_before, providers_before, fees_before) = balances(&devnet, 2);
    let job = search_job(
        tmp.path(),
        4,
        1_000,
        "policy = \"none\"\n[approval]\nwindow_s = 3600",
    );
    let id = devnet.submit(&job);
    let judged = |status: &Value| status["state"] == "approval" && status["done"] == 4;
    devnet.wait_until("every result waits for approval", |d| {
        judged(&d.status(&id)).then_some(())
    });
    // Verified, and nothing paid yet; `job watch` stops here, for the
    // user to judge.
    let watched = devnet.job(&["watch", &id]);
    assert_eq!(watched.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&watched.stdout).contains("the rest are approved in"),
        "{}",
        String::from_utf8_lossy(&watched.stdout)
    );
    assert!(devnet.get(&format!("/v1/escrows/{id}")).is_some());
    assert_eq!(balances(&devnet, 2).1, providers_before);
    let rejected = devnet.results(&id)[&1]["provider"].clone();

    let output = devnet.job(&["reject", &id, "1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0 approved, 1 rejected"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let status = devnet.wait_until("the rejected task has a result again", |d| {
        let status = d.status(&id);
        judged(&status).then_some(status)
    });
    assert_eq!(status["rejected"], 1, "{status}");
    let again = devnet.results(&id)[&1]["provider"].clone();
    assert_ne!(again, rejected, "run again by the other provider");
    // A judgement that cannot be taken changes nothing.
    let refused = devnet.job(&["reject", &id, "0-9"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("task 4 has no result to judge"));
    assert_eq!(devnet.status(&id)["rejected"], 1);

    let output = devnet.job(&["approve", &id]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = devnet.wait_done(&id);
    assert_eq!(
        (status["approved"].as_u64(), status["rejected"].as_u64()),
        (Some(4), Some(1))
    );
    devnet.wait_until("the escrow is closed", |d| {
        d.get(&format!("/v1/escrows/{id}")).is_none().then_some(())
    });
    assert_eq!(
        devnet.status(&id)["settled"],
        4,
        "four receipts paid: not the rejected one"
    );
    let (requester_after, providers_after, fees_after) = balances(&devnet, 2);
    let spent = requester_before - requester_after;
    let earned: u64 = providers_after
        .iter()
        .zip(&providers_before)
        .map(|(after, before)| after - before)
        .sum();
    assert!(spent > 0);
    assert_eq!(spent, earned + (fees_after - fees_before));
}

/// `cairn job cancel` in the middle of a job: it is refused a second
/// time, no task runs after it, the results accepted before it are kept,
/// and every token is accounted for: the providers are paid for those
/// results and the rest of the escrow returns.
#[test]
fn a_cancelled_job_keeps_and_pays_what_it_accepted_and_returns_the_rest_of_its_escrow() {
    let devnet = Devnet::start(2);
    let tmp = tempfile::tempdir().unwrap();
    let (requester_before, providers_before, fees_before) = balances(&devnet, 2);
    let tasks = 1_000;
    let id = devnet.submit(&search_job(tmp.path(), tasks, 1_000, VERIFIED));
    let budget = devnet
        .get(&format!("/v1/escrows/{id}"))
        .expect("the escrow is open")["balance"]
        .as_u64()
        .unwrap();
    devnet.wait_until("some tasks are done", |d| {
        (d.status(&id)["done"].as_u64()? >= 5).then_some(())
    });
    let output = devnet.job(&["cancel", &id]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with(&format!("cancelled job {id}")),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let again = devnet.job(&["cancel", &id]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("cancelled already"), "{stderr}");
    let status = devnet.wait_until("the job reads cancelled", |d| {
        let status = d.status(&id);
        (status["state"] == "cancelled").then_some(status)
    });
    let done = status["done"].as_u64().unwrap();
    assert!(done >= 5 && done < u64::from(tasks), "{status}");
    assert_eq!(status["failed"].as_u64().unwrap(), u64::from(tasks) - done);
    assert_eq!(devnet.results(&id).len() as u64, done);
    // Nothing ran after the cancel.
    let executions = status["executions"].clone();
    assert_eq!(devnet.status(&id)["executions"], executions);
    devnet.wait_until("the escrow is closed", |d| {
        d.get(&format!("/v1/escrows/{id}")).is_none().then_some(())
    });
    let (requester_after, providers_after, fees_after) = balances(&devnet, 2);
    let spent = requester_before - requester_after;
    let earned: u64 = providers_after
        .iter()
        .zip(&providers_before)
        .map(|(after, before)| after - before)
        .sum();
    assert!(spent > 0 && spent < budget, "spent {spent} of {budget}");
    assert_eq!(spent, earned + (fees_after - fees_before));
    assert!(devnet.status(&id)["settled"].as_u64().unwrap() >= done);

    // The CLI's views of it: `job list` shows it cancelled, `job watch`
    // of a job over prints its last status and exits with the code for
    // tasks that did not succeed, and `cairn market` lists both providers
    // (staked, offering Wasm) and the price their leases cleared at.
    let list = devnet.job(&["list", "--json"]);
    assert!(list.status.success());
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        (listed["id"].as_str(), listed["state"].as_str()),
        (Some(id.as_str()), Some("cancelled"))
    );
    let watch = devnet.job(&["watch", &id]);
    assert_eq!(watch.status.code(), Some(1), "{watch:?}");
    assert!(
        String::from_utf8_lossy(&watch.stdout).contains("cancelled"),
        "{watch:?}"
    );
    let market = cairn()
        .args(["market", "--json", "--node", &devnet.url(), "--data-dir"])
        .arg(devnet.dir.join("v0"))
        .output()
        .unwrap();
    assert!(market.status.success(), "{market:?}");
    let market: Value = serde_json::from_slice(&market.stdout).unwrap();
    let providers = market["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2, "{market}");
    for provider in providers {
        assert!(provider["stake"].as_u64().unwrap() > 0, "{provider}");
        assert!(
            provider["runtimes"]
                .as_array()
                .unwrap()
                .contains(&Value::from("wasm")),
            "{provider}"
        );
    }
    assert!(!market["prices"].as_array().unwrap().is_empty(), "{market}");
}

/// The lease a result was produced under, from its signed receipt (version,
/// signer, signature, then the receipt, whose first field is the lease).
fn lease_of(result: &Value) -> String {
    result["receipt"].as_str().unwrap()[2 * (1 + 32 + 64)..][..64].to_string()
}

#[test]
fn a_restarted_provider_resumes_its_lease() {
    let devnet = Devnet::start(1);
    let tmp = tempfile::tempdir().unwrap();
    // One provider: nobody to compare with.
    let id = devnet.submit(&search_job(tmp.path(), 60, 1_000, "policy = \"none\""));
    devnet.wait_until("some tasks are done", |d| {
        (d.status(&id)["done"].as_u64()? >= 5).then_some(())
    });
    devnet.kill("p0");
    let before = devnet.results(&id);
    let lease = lease_of(before.values().next().unwrap());
    let mut provider = devnet.restart_provider(0);
    let status = devnet.wait_done(&id);
    let _ = provider.kill();
    let _ = provider.wait();
    assert_eq!(status["failed"], 0);
    let after = devnet.results(&id);
    assert_eq!(after.len(), 60);
    let under_first_lease = after.values().filter(|r| lease_of(r) == lease).count();
    assert!(
        under_first_lease > before.len(),
        "after its restart the provider worked under its first lease again \
         ({under_first_lease} results under it, {} before the crash)",
        before.len()
    );
}

#[test]
fn a_job_no_provider_can_run_stays_queued_and_says_why() {
    let devnet = Devnet::start(2);
    let tmp = tempfile::tempdir().unwrap();
    // Providers' floor is 10 µcairn/Gfuel; this job pays at most 1.
    let id = devnet.submit(&search_job(tmp.path(), 3, 1, VERIFIED));
    devnet.wait_until("the job is queued", |d| {
        (d.status(&id)["state"] == "queued").then_some(())
    });
    let output = devnet.job(&["status", &id]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("queued"), "{text}");
    assert!(text.contains("above max price"), "{text}");
    assert_eq!(devnet.status(&id)["done"], 0);
}

/// The Blender example on GPUs, on providers that lend none (as on CI's
/// machine): each declines its order for that reason, the job stays
/// queued saying it, and nothing runs on a CPU in the GPUs' place.
#[test]
fn a_gpu_job_on_providers_without_gpus_stays_queued_and_says_why() {
    cairn_exec::tool::install_test_tools();
    let devnet = Devnet::start_with_tools(1);
    let tmp = tempfile::tempdir().unwrap();
    for file in ["gpu.toml", "scene.py"] {
        std::fs::copy(
            repo().join("examples/blender").join(file),
            tmp.path().join(file),
        )
        .unwrap();
    }
    let id = devnet.submit(&tmp.path().join("gpu.toml"));
    let status = devnet.wait_until("the job says why no provider runs it", |d| {
        let status = d.status(&id);
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("a task needs 1 GPUs, the provider offers 0"))
            .then_some(status)
    });
    assert_eq!(status["state"], "queued", "{status}");
    assert_eq!(status["done"], 0, "{status}");
    assert_eq!(status["executions"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_forged_and_replayed_messages_are_dropped_and_counted() {
    let devnet = Devnet::start(1);
    let market = devnet.get("/v1/market").unwrap();
    let requester: cairn_net::Multiaddr = market["listen"][0].as_str().unwrap().parse().unwrap();
    let requester_peer = match requester.iter().last() {
        Some(cairn_net::Protocol::P2p(peer)) => peer,
        _ => panic!("no peer id in {requester}"),
    };
    let intruder_key = cairn_wire::Keypair::from_seed([66; 32]);
    let mut config = cairn_net::NetConfig::loopback(intruder_key.clone());
    config.bootstrap = vec![requester.clone()];
    config.topics = vec![cairn_node::market::ORDERS_TOPIC.into()];
    let (intruder, _events) = cairn_net::Network::start(config).await.unwrap();

    // Garbage: not a request at all.
    let answer = intruder
        .request(requester_peer, vec![0xff; 100])
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("malformed"));
    // Oversized: more than the node accepts in one request.
    assert!(
        intruder
            .request(requester_peer, vec![3; 5 << 20])
            .await
            .is_err()
    );
    // A pull on a lease that does not exist.
    let mut pull = vec![3u8];
    pull.extend_from_slice(&[7; 32]);
    pull.extend_from_slice(&1u32.to_be_bytes()); // want
    pull.extend_from_slice(&0u32.to_be_bytes()); // no reports
    pull.extend_from_slice(&0u32.to_be_bytes()); // no tasks held
    pull.extend_from_slice(&0u32.to_be_bytes()); // no results awaiting acceptance
    let answer = intruder.request(requester_peer, pull).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("unknown lease"));
    // A forged order (signed by someone else than its author) and a
    // replayed one, by gossip, to the provider.
    let victim = cairn_wire::Keypair::from_seed([67; 32]);
    let order = cairn_market::Order {
        job: cairn_wire::ContentId::of(b"forged"),
        runtime: "wasm".into(),
        module: cairn_wire::ContentId::of(b"m"),
        module_bytes: 1,
        tasks: 1,
        fuel_per_task_max: 1,
        memory_mib: 1,
        gpus: 0,
        price_max_ucairn_per_gfuel: 1,
        created_ms: 0,
        bid_window_ms: 1,
        gpu_memory_mib: 0,
        draw_ppm: cairn_market::DRAW_ALL,
    };
    let forged = cairn_wire::Signed::sign(&victim, cairn_market::ORDER_NAMESPACE, order.clone());
    let stale = cairn_wire::Signed::sign(&intruder_key, cairn_market::ORDER_NAMESPACE, order);
    let deadline = Instant::now() + Duration::from_secs(20);
    let provider_url = format!(
        "http://{}/v1/market",
        devnet.node("p0")["http"].as_str().unwrap()
    );
    loop {
        intruder.publish(cairn_node::market::ORDERS_TOPIC, forged.to_bytes());
        intruder.publish(cairn_node::market::ORDERS_TOPIC, stale.to_bytes());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let output = Command::new("curl")
            .args(["-sf", &provider_url])
            .output()
            .unwrap();
        let stats: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if stats["refused"].as_u64() >= Some(1) && stats["replayed"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the provider never counted them: {stats}"
        );
    }
    let stats = devnet.get("/v1/market").unwrap();
    assert!(stats["malformed"].as_u64() >= Some(1), "{stats}");
    assert!(stats["oversized"].as_u64() >= Some(1), "{stats}");
    assert!(stats["refused"].as_u64() >= Some(1), "{stats}");
    // Nobody crashed: a job still runs through.
    let tmp = tempfile::tempdir().unwrap();
    let id = devnet.submit(&search_job(tmp.path(), 2, 1_000, "policy = \"none\""));
    assert_eq!(devnet.wait_done(&id)["done"], 2);
    // A `blob_snooper`: the intruder asks the requester for the module the
    // job's providers fetched. It is no party to the job: refused.
    let module = cairn_wire::ContentId::of(cairn_workloads::HASHSEARCH.wasm);
    let mut blob = vec![4u8];
    blob.extend_from_slice(module.as_bytes());
    blob.extend_from_slice(&0u64.to_be_bytes());
    blob.extend_from_slice(&1_024u32.to_be_bytes());
    let answer = intruder.request(requester_peer, blob).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer).contains("not yours to fetch"),
        "a stranger was served a job's blob"
    );
}

/// The key of provider `j` of a devnet.
fn provider_key(devnet: &Devnet, j: u16) -> cairn_wire::PublicKey {
    cairn_wire::Keypair::load_or_create(&devnet.dir.join(format!("p{j}/node.key")))
        .unwrap()
        .public()
}

/// Checks that job `id` of `devnet` has all its `tasks` results, each
/// with the digest this machine computes for `job`, and none kept from a
/// provider in `cheats`.
fn results_are_local_and_none_from(
    devnet: &Devnet,
    id: &str,
    job: &Path,
    tasks: u32,
    cheats: &[cairn_wire::PublicKey],
) {
    let out = tempfile::tempdir().unwrap();
    let local = run_local(job, out.path());
    let results = devnet.results(id);
    assert_eq!(results.len() as u32, tasks);
    for r in local["results"].as_array().unwrap() {
        let task = r["index"].as_u64().unwrap();
        assert_eq!(results[&task]["digest"], r["digest"], "task {task}");
        let provider = results[&task]["provider"].as_str().unwrap();
        assert!(
            cheats.iter().all(|k| k.to_string() != provider),
            "task {task} kept a cheat's result"
        );
    }
}

/// Replaces provider 2 of a fresh three-provider devnet with one that
/// cheats as `how`, runs a verified job of `tasks` searches, and checks
/// that the cheat is convicted and slashed on the ledger, while every
/// result stays right and the job completes.
fn cheater_is_caught(validators: u16, how: &str, tasks: u32) {
    // A fuel limit (a task takes 177 Mfuel) that bounds a silent side's
    // first round to 10 s of tracing and a round.
    cheater_is_caught_on(validators, how, tasks, 1, false, |dir, tasks, _| {
        search_job_with_fuel(dir, tasks, 1_000, VERIFIED, 500_000_000)
    });
}

/// [`cheater_is_caught`] with the job `job` writes (in a folder, with
/// `tasks` tasks, for attempt `n`). A job the cheat took no task of (the
/// honest providers pulled them all first) convicts nobody; up to
/// `attempts` jobs are run until one does. With `restart_in_window`, the
/// requester is killed and restarted while its challenge of the cheat's
/// withheld reveal is open on the ledger.
fn cheater_is_caught_on(
    validators: u16,
    how: &str,
    tasks: u32,
    attempts: u32,
    restart_in_window: bool,
    job: impl Fn(&Path, u32, u32) -> PathBuf,
) {
    let devnet = Devnet::start_with(validators, 3);
    devnet.kill("p2");
    let mut cheat_process = devnet.start_provider(2, &["--misbehave", how]);
    let cheat = provider_key(&devnet, 2);
    let stake = devnet.wait_until("the cheat is back", |d| {
        let market = d.get("/v1/market")?;
        // Its three providers and its other validators.
        (market["peers"].as_u64()? >= 3 + u64::from(validators - 1)).then_some(())?;
        d.get(&format!("/v1/accounts/{cheat}"))?["stake"].as_u64()
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut restarted = None;
    let (job, id, status) = (1..=attempts)
        .map(|n| {
            let dir = tmp.path().join(n.to_string());
            std::fs::create_dir(&dir).unwrap();
            let job = job(&dir, tasks, n);
            let id = devnet.submit(&job);
            if restart_in_window && restarted.is_none() {
                // Back, the requester follows its challenge again and
                // claims it: the withholder does not escape by its crash.
                devnet.wait_until("the withheld reveal is challenged", |d| {
                    let open = d.get(&format!("/v1/challenges/{cheat}"))?["open"].as_u64()?;
                    (open > 0).then_some(())
                });
                devnet.kill("v0");
                restarted = Some(devnet.restart_requester());
            }
            // A withheld reveal is convicted after 20 s, a silent side
            // after 30 s; allow for a loaded machine.
            let status = devnet.wait_done_within(&id, Duration::from_secs(400));
            assert_eq!(status["failed"], 0, "{status}");
            (job, id, status)
        })
        .find(|(_, _, status)| {
            let convicted = status["convicted"]
                .as_array()
                .is_some_and(|c| !c.is_empty());
            if !convicted {
                println!("attempt convicted nobody (the cheat took no task): {status}");
            }
            convicted
        })
        .expect("the cheat took part in one of the jobs");
    // The cheat, and no honest provider: a reveal or dispute deadline
    // missed under load would convict one here (and a restarted requester
    // still names whom it convicted before).
    assert_eq!(
        status["convicted"],
        serde_json::json!([cheat.to_string()]),
        "{status}"
    );
    results_are_local_and_none_from(&devnet, &id, &job, tasks, &[cheat]);
    devnet.wait_until("the cheat is slashed on the ledger", |d| {
        let now = d.get(&format!("/v1/accounts/{cheat}"))?["stake"].as_u64()?;
        (now < stake).then_some(())
    });
    let _ = cheat_process.kill();
    let _ = cheat_process.wait();
    if let Some(mut requester) = restarted {
        let _ = requester.kill();
        let _ = requester.wait();
    }
}

/// A `case-crasher` requester exits once it has stored its case against a
/// liar, before it asks any validator. Restarted, it brings the case
/// again, the validators attest it, and the liar is slashed: a requester
/// that restarted while it brought a case used to lose that conviction
/// (the cheat went unpaid but kept its stake).
#[test]
fn a_case_stored_before_a_crash_is_brought_again_and_the_liar_is_slashed() {
    let devnet = Devnet::start_with(2, 3);
    devnet.kill("p2");
    let mut liar = devnet.start_provider(2, &["--misbehave", "liar"]);
    let cheat = provider_key(&devnet, 2);
    let stake = devnet.wait_until("the liar is back", |d| {
        let market = d.get("/v1/market")?;
        (market["peers"].as_u64()? >= 4).then_some(())?;
        d.get(&format!("/v1/accounts/{cheat}"))?["stake"].as_u64()
    });
    devnet.kill("v0");
    let mut case_crasher = devnet.restart_requester_with(&["--misbehave", "case-crasher"]);
    let tmp = tempfile::tempdir().unwrap();
    let job = search_job_with_fuel(tmp.path(), 12, 1_000, VERIFIED, 500_000_000);
    let id = devnet.submit(&job);
    let exited = devnet.wait_until("the requester stores a case and exits", |_| {
        case_crasher.try_wait().unwrap()
    });
    // `CASE_CRASHER_EXIT` in cairn-node: not a crash of another cause.
    assert_eq!(exited.code(), Some(75), "{exited}");
    let mut requester = devnet.restart_requester();
    devnet.wait_until("the liar is slashed on the ledger", |d| {
        let now = d.get(&format!("/v1/accounts/{cheat}"))?["stake"].as_u64()?;
        (now < stake).then_some(())
    });
    let status = devnet.wait_done_within(&id, Duration::from_secs(400));
    assert_eq!(
        status["convicted"],
        serde_json::json!([cheat.to_string()]),
        "{status}"
    );
    results_are_local_and_none_from(&devnet, &id, &job, 12, &[cheat]);
    for child in [&mut liar, &mut requester] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A liar that answers every dispute question "still preparing" loses
/// when the first round's deadline (which allows for tracing) passes: the
/// job completes right without it and it is not paid. It left no step to
/// judge, so the validator re-runs the whole task its receipt names,
/// reaches the honest side's result, and it is slashed (a liar used to
/// escape its slash by falling silent once disputed).
#[test]
fn a_stonewalling_liar_loses_its_disputes_by_the_deadline_and_is_slashed_on_its_whole_task() {
    cheater_is_caught(1, "stonewaller", 6);
}

#[test]
fn a_liar_loses_its_dispute_and_is_slashed_and_the_job_completes_right() {
    // Two validators, both of which must attest the verdict: the requester
    // (validator 0) and one that judges the case over the network.
    cheater_is_caught(2, "liar", 12);
}

/// The requester crashes while its challenge is open, and is restarted.
#[test]
fn a_staller_is_challenged_on_the_ledger_and_slashed_and_the_job_completes() {
    cheater_is_caught_on(1, "staller", 8, 1, true, |dir, tasks, _| {
        search_job_with_fuel(dir, tasks, 1_000, VERIFIED, 500_000_000)
    });
}

/// A verified job of `tasks` short training runs of `cairn:train` on the
/// founding document, one per seed: 24 AdamW steps each, checkpointed
/// every 6 (named for `attempt`, so each attempt is another job).
fn train_job(dir: &Path, tasks: u32, attempt: u32) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(
        workspace.join("examples/train/seed.txt"),
        dir.join("seed.txt"),
    )
    .unwrap();
    let path = dir.join("train.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[job]
name = "train-{attempt}"
module = "cairn:train"
args = ["--data", "/input/seed.txt", "--out", "/output/run-{{task:02}}", "--steps", "24",
        "--every", "6", "--seed", "{{task}}", "--batch", "8", "--context", "8",
        "--embed", "8", "--hidden", "64"]

[tasks]
range = [0, {tasks}]

[inputs]
files = ["seed.txt"]

[outputs]
paths = ["run-{{task:02}}/weights.safetensors", "run-{{task:02}}/loss.csv",
         "run-{{task:02}}/commitments.jsonl"]

[limits]
fuel = 2_000_000_000
memory_mib = 64
wall_time_s = 30

[verify]
{VERIFIED}
"#
        ),
    )
    .unwrap();
    path
}

/// Each training cheat (see `Misbehave` in `cairn-node`) departs from the
/// honest run at some step and defends its result with the trace of its
/// own tampered run: the dispute finds the first step where the states
/// differ, a referee re-executes that one step, and the cheat is
/// convicted and slashed while the job completes with honest weights.
/// Where each cheat departs, and that its trace ends in what it reported,
/// is tested without a network (`cairn-node`'s
/// `each_training_cheat_departs_at_its_step_and_its_trace_ends_in_its_result`:
/// the data swapper departs where the step skipper does, the early
/// stopper half way); here, real processes play the dispute out for a
/// cheat departing early and for one departing at the last step, the edge
/// of the bisection.
fn training_cheat_is_caught(how: &str) {
    cheater_is_caught_on(1, how, 8, 3, false, train_job);
}

#[test]
fn a_provider_that_skips_training_steps_is_convicted_and_slashed() {
    training_cheat_is_caught("step-skipper");
}

#[test]
fn a_provider_that_nudges_weights_before_the_last_step_is_convicted_and_slashed() {
    training_cheat_is_caught("weight-nudger");
}

/// A leased `index_overflower` adds, to every pull, a well-signed
/// commitment and a failure for a task past the job's end. The requester
/// refuses and counts them, keeps serving, and the job completes with the
/// right results; its other job is untouched.
#[test]
fn an_index_overflower_is_refused_and_every_job_completes() {
    let devnet = Devnet::start(1);
    devnet.kill("p0");
    let mut overflower = devnet.start_provider(0, &["--misbehave", "index-overflower"]);
    devnet.wait_until("the overflower is back", |d| {
        (d.get("/v1/market")?["peers"].as_u64()? >= 1).then_some(())
    });
    let tmp = tempfile::tempdir().unwrap();
    let first = devnet.submit(&search_job(tmp.path(), 3, 1_000, "policy = \"none\""));
    let other = tempfile::tempdir().unwrap();
    let second = devnet.submit(&search_job(other.path(), 2, 1_000, "policy = \"none\""));
    assert_eq!(devnet.wait_done(&first)["done"], 3);
    assert_eq!(devnet.wait_done(&second)["done"], 2);
    let stats = devnet.get("/v1/market").unwrap();
    assert!(stats["refused"].as_u64() >= Some(1), "{stats}");
    // When its leases end, the provider deletes what it stored for them:
    // its blob store does not grow with every job it ran.
    let outputs: Vec<String> = devnet
        .results(&first)
        .values()
        .flat_map(|r| r["outputs"].as_array().unwrap().clone())
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outputs.len(), 3);
    let blobs = devnet.dir.join("p0/market/blobs");
    devnet.wait_until("the provider removes the outputs of ended leases", |_| {
        outputs
            .iter()
            .all(|id| !blobs.join(id).exists())
            .then_some(())
    });
    // The requester keeps them: they are its results.
    let kept = devnet.dir.join("v0/market/blobs");
    assert!(outputs.iter().all(|id| kept.join(id).exists()));
    let _ = overflower.kill();
    let _ = overflower.wait();
}

/// A `framer` requester posts honest providers' commits on the ledger as
/// challenges without cause, each locking a bond, meaning to claim them as
/// withheld reveals once the window has passed. Each provider sees the
/// challenge and answers it with its reveal (the signed receipt it kept,
/// which opens the commit): every bond is burned, nothing is left to
/// claim, and no stake is touched. (That a `NoReveal` claim on an answered
/// challenge is refused is the ledger's scenario
/// `a_challenged_commit_must_be_opened_within_the_window`.)
#[test]
fn a_framer_requester_challenges_honest_commits_and_slashes_no_one() {
    let devnet = Devnet::start(2);
    devnet.kill("v0");
    let mut framer = devnet.restart_requester_with(&["--misbehave", "framer"]);
    devnet.wait_until("the framer answers", |d| d.get("/v1/market"));
    // The providers dial their bootstrap peer, the new requester, again by
    // themselves.
    let keys = [provider_key(&devnet, 0), provider_key(&devnet, 1)];
    let stakes = |d: &Devnet| -> Option<Vec<u64>> {
        keys.iter()
            .map(|key| d.get(&format!("/v1/accounts/{key}"))?["stake"].as_u64())
            .collect()
    };
    let burned = |d: &Devnet| d.get("/v1/status")?["burned"].as_u64();
    let (stakes_before, burned_before) = devnet.wait_until("the providers are back", |d| {
        (d.get("/v1/market")?["peers"].as_u64()? >= 2).then_some(())?;
        Some((stakes(d)?, burned(d)?))
    });
    let tmp = tempfile::tempdir().unwrap();
    let id = devnet.submit(&search_job(tmp.path(), 6, 1_000, "policy = \"none\""));
    assert_eq!(devnet.wait_done(&id)["done"], 6);
    let open = |d: &Devnet| -> Option<u64> {
        keys.iter()
            .map(|key| d.get(&format!("/v1/challenges/{key}"))?["open"].as_u64())
            .sum()
    };
    // Nothing else burns here: the burned total counts the bonds of
    // answered challenges (polling for an open challenge could miss one
    // answered between two looks).
    let framed = u64::from(cairn_node::market::FRAMED_COMMITS_MAX);
    let bonds = framed * cairn_ledger::Params::default().challenge_bond;
    devnet.wait_until("every framed commit is challenged and answered", |d| {
        (burned(d)? - burned_before == bonds && open(d)? == 0).then_some(())
    });
    assert_eq!(
        stakes(&devnet).unwrap(),
        stakes_before,
        "an honest provider lost stake"
    );
    let _ = framer.kill();
    let _ = framer.wait();
}

/// A `withholder` requester takes every result and never settles: it
/// closes the job's escrow for its budget back. Its providers are paid all
/// the same, by claiming on the ledger the acceptances their pulls were
/// answered with; what the requester spent is exactly what they earned
/// plus the fees.
#[test]
fn a_requester_that_never_settles_pays_its_providers_through_their_claims() {
    providers_are_paid_by_their_claims_under("withholder");
}

/// An `underpayer` requester never settles either, and for each acceptance
/// it hands a provider it signs a second one at no fuel and claims that on
/// the ledger first. The providers' claims of the true acceptances pay the
/// difference, so each is paid for its work all the same (before the
/// ledger paid differences, the first claim left them with nothing).
#[test]
fn an_underpaying_requester_pays_its_providers_in_full_through_their_claims() {
    providers_are_paid_by_their_claims_under("underpayer");
}

/// Runs a job from a requester that cheats as `cheat` and never settles,
/// and waits until every provider that worked has been paid, by its own
/// claims, what the requester spent less the fees.
fn providers_are_paid_by_their_claims_under(cheat: &str) {
    let devnet = Devnet::start(2);
    devnet.kill("v0");
    let mut withholder = devnet.restart_requester_with(&["--misbehave", cheat]);
    devnet.wait_until("the providers are back", |d| {
        (d.get("/v1/market")?["peers"].as_u64()? >= 2).then_some(())
    });
    let before = balances(&devnet, 2);
    let tmp = tempfile::tempdir().unwrap();
    let id = devnet.submit(&search_job(tmp.path(), 6, 1_000, "policy = \"none\""));
    let answer = devnet.wait_done(&id);
    assert_eq!(answer["done"], 6);
    let results = by_task(&devnet.get(&format!("/v1/jobs/{id}/results")).unwrap());
    let workers: BTreeSet<String> = results
        .values()
        .map(|r| r["provider"].as_str().unwrap().to_string())
        .collect();
    // Claims may land after the escrow closed (the requester's balance then
    // pays): wait until every provider that worked has been paid.
    let (requester_before, providers_before, fees_before) = before;
    let keys = [provider_key(&devnet, 0), provider_key(&devnet, 1)];
    let (spent, earned, fees) = devnet.wait_until("every provider that worked is paid", |d| {
        d.get(&format!("/v1/escrows/{id}"))
            .is_none()
            .then_some(())?;
        let (requester, providers, fees) = balances(d, 2);
        let paid = keys.iter().zip(providers.iter().zip(&providers_before));
        for (key, (after, before)) in paid {
            if workers.contains(&key.to_string()) && after <= before {
                return None;
            }
        }
        let earned: u64 = providers
            .iter()
            .zip(&providers_before)
            .map(|(a, b)| a - b)
            .sum();
        Some((requester_before - requester, earned, fees - fees_before))
    });
    assert!(earned > 0);
    assert_eq!(
        spent,
        earned + fees,
        "paid by the requester, to the providers"
    );
    let _ = withholder.kill();
    let _ = withholder.wait();
}

/// The figures a `cairn bench <suite> --json` printed, by metric; each
/// line must be one of `suite`'s.
fn figures(output: &Output, suite: &str) -> BTreeMap<String, f64> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["suite"], suite, "{line}");
            (
                v["metric"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// `cairn bench net` runs end to end at a small size and prints every
/// figure it promises: a change to the node (such as private blobs) that
/// breaks the benchmark fails here, not on the next measurement.
#[test]
fn the_network_benchmark_runs_and_prints_every_figure() {
    let output = run(&[
        "bench",
        "net",
        "--json",
        "--jobs",
        "2",
        "--tasks",
        "40",
        "--blob-mib",
        "1",
        "--api-rate",
        "100",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = figures(&output, "net");
    for metric in [
        "blob_transfer_verified",
        "blob_fetch_into_store_durable",
        "module_4mb_submit_to_first_task_cold",
        "one_task_job_end_to_end_p50",
        "tiny_tasks_four_providers",
        "tiny_tasks_four_providers_adaptive",
        "requester_resident_idle",
        "requester_resident_peak",
        "api_job_status_p50",
        "api_job_status_p99",
        "api_job_status_rate",
    ] {
        assert!(
            figures.get(metric).is_some_and(|v| *v > 0.0),
            "{metric}: {figures:?}"
        );
    }
    assert!(
        figures["requester_resident_peak"] >= figures["requester_resident_idle"],
        "{figures:?}"
    );
}

/// `cairn bench media` runs end to end at a small size (a 4 s clip, two
/// Blender frames, one devnet of two providers, a 6 s live stream) and
/// prints every figure it promises, its stdout nothing else; the devnet's
/// renditions must have been assembled, and its frames must be the local
/// run's, byte for byte, also when rendered in 2 × 2 tiles and joined
/// (locally and on the devnet).
#[test]
fn the_media_benchmark_runs_the_ladder_and_the_frames_three_ways_and_prints_every_figure() {
    cairn_exec::tool::install_test_tools();
    let output = run(&[
        "bench",
        "media",
        "--json",
        "--seconds",
        "4",
        "--frames",
        "2",
        "--providers",
        "2",
        "--live-seconds",
        "6",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = figures(&output, "media");
    // Three segments of the live stream, each listed while it ran, with
    // and without the provider killed half way.
    for prefix in ["live", "live_provider_lost"] {
        assert_eq!(figures[&format!("{prefix}_segments")], 3.0, "{figures:?}");
        for what in [
            "latency_p50",
            "latency_p99",
            "latency_max",
            "p99_over_segment",
        ] {
            assert!(figures[&format!("{prefix}_{what}")] > 0.0, "{figures:?}");
        }
    }
    for metric in [
        "one_ffmpeg_ladder",
        "segments_local",
        "segments_local_over_one_ffmpeg",
        "devnet_2_ladder",
        "devnet_2_speedup_over_one_ffmpeg",
        "devnet_2_over_local_executions",
        "blender_direct",
        "blender_local",
        "blender_local_over_direct",
        "blender_devnet_2",
        "blender_devnet_2_frames_per_minute",
        "blender_devnet_2_over_local_executions",
        "blender_tiled_local",
        "blender_tiled_local_over_whole",
        "blender_tiled_devnet_2",
        "blender_tiled_devnet_2_frames_per_minute",
    ] {
        assert!(
            figures.get(metric).is_some_and(|v| *v > 0.0),
            "{metric}: {figures:?}"
        );
    }
    assert_eq!(figures["tasks"], 6.0, "2 segments × 3 renditions");
    assert_eq!(figures["blender_frames"], 2.0);
    assert!(figures.contains_key("devnet_2_overhead_per_execution"));
    assert!(figures.contains_key("blender_devnet_2_overhead_per_execution"));
    // Every tile run twice; spot-checked, a quarter of them about, and
    // never more than replicating them (honest providers agree).
    assert!(
        (1.0..1.5).contains(&figures["blender_tiled_check_share"]),
        "{figures:?}"
    );
    assert!(
        (0.0..=1.0).contains(&figures["blender_tiled_spot_check_share"]),
        "{figures:?}"
    );
    assert!(figures["blender_tiled_spot_devnet_2"] > 0.0, "{figures:?}");
}

/// `cairn bench console` watches a running job to its end in Debian's
/// chromium and prints every figure it promises; the bench itself fails
/// if the page never showed the job's last task done.
#[test]
fn the_console_benchmark_watches_a_job_to_its_end_in_the_browser() {
    install_browser();
    let output = run(&["bench", "console", "--json", "--tasks", "1000"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = figures(&output, "console");
    for metric in [
        "job_page_first_render",
        "status_updates_applied",
        "frame_gap_p50",
        "frame_gap_p99",
        "frame_gap_max",
    ] {
        assert!(
            figures.get(metric).is_some_and(|v| *v > 0.0),
            "{metric}: {figures:?}"
        );
    }
    assert!(
        (0.0..=1.0).contains(&figures["main_thread_blocked"]),
        "{figures:?}"
    );
}

/// An `output_substituter` signs the honest digest but delivers another
/// file; a `fuel_inflater` signs it with a receipt claiming all the task's
/// fuel. The requester rebuilds each result's manifest from the report and
/// refuses both (nothing of theirs is kept or paid); the job completes with
/// the results this machine computes.
#[test]
fn substituted_outputs_are_refused_and_inflated_fuel_is_slashed_and_the_job_completes_right() {
    let devnet = Devnet::start(3);
    let mut cheats = Vec::new();
    for (j, how) in [(1, "output-substituter"), (2, "fuel-inflater")] {
        devnet.kill(&format!("p{j}"));
        cheats.push(devnet.start_provider(j, &["--misbehave", how]));
    }
    let cheat_keys = [provider_key(&devnet, 1), provider_key(&devnet, 2)];
    devnet.wait_until("the cheats are back", |d| {
        (d.get("/v1/market")?["peers"].as_u64()? >= 3).then_some(())
    });
    let inflater = cheat_keys[1];
    let stake = |d: &Devnet| d.get(&format!("/v1/accounts/{inflater}"))?["stake"].as_u64();
    let staked = stake(&devnet).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let job = search_job(tmp.path(), 12, 1_000, "policy = \"none\"");
    let id = devnet.submit(&job);
    let status = devnet.wait_done(&id);
    assert_eq!(status["failed"], 0, "{status}");
    let stats = devnet.get("/v1/market").unwrap();
    assert!(stats["refused"].as_u64() >= Some(1), "{stats}");
    results_are_local_and_none_from(&devnet, &id, &job, 12, &cheat_keys);
    // The fuel inflater signed a receipt whose own result states less fuel:
    // the result the task was accepted with convicts it on the ledger.
    devnet.wait_until("the fuel inflater is slashed", |d| {
        (stake(d)? < staked).then_some(())
    });
    for mut cheat in cheats {
        let _ = cheat.kill();
        let _ = cheat.wait();
    }
}
