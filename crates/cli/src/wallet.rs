//! `cairn wallet`: balances, transfers and stake, through a node's API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api as api;
use cairn_ledger::{Capabilities, TxBody, TxKind};
use cairn_node::api::ApiToken;
use cairn_wire::{ContentId, Keypair, PublicKey};
use serde::de::DeserializeOwned;

/// How long a command waits for its transaction to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// Arguments of `cairn wallet`.
#[derive(clap::Args)]
pub struct WalletArgs {
    /// The node to talk to.
    #[arg(long, env = "CAIRN_NODE", default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The key that signs (created if missing).
    #[arg(long, env = "CAIRN_KEY", default_value = ".cairn/node.key")]
    key: PathBuf,
    /// Return as soon as the node has queued the transaction, without
    /// waiting for a block to apply it.
    #[arg(long)]
    no_wait: bool,
    /// Print what the node answered as JSON (amounts in µCAIRN) instead of
    /// a line for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(clap::Subcommand)]
enum WalletCommand {
    /// Print this wallet's public key (its address).
    Address,
    /// Show the balance, nonce and stake of an account [default: this wallet's].
    Balance {
        /// The account's public key.
        account: Option<PublicKey>,
    },
    /// Send µCAIRN to another account.
    Transfer {
        /// The recipient's public key.
        to: PublicKey,
        /// The amount in µCAIRN.
        amount: u64,
    },
    /// Stake µCAIRN as a provider (registers this wallet as one if needed).
    Stake {
        /// The amount in µCAIRN.
        amount: u64,
        /// Where requesters reach this provider.
        #[arg(long, default_value = "")]
        endpoint: String,
    },
    /// Start unbonding staked µCAIRN; it returns after the unbonding delay.
    Unstake {
        /// The amount in µCAIRN.
        amount: u64,
    },
    /// Show a job's escrow.
    Escrow {
        /// The job's id.
        job: ContentId,
    },
}

/// µCAIRN in one CAIRN.
const UCAIRN_PER_CAIRN: u64 = 1_000_000;

/// An amount of µCAIRN as people read it: CAIRN, thousands grouped, with
/// the decimals it needs and no more ("1,000,000,000 CAIRN",
/// "0.0006 CAIRN").
pub(crate) fn cairn(ucairn: u64) -> String {
    let whole = (ucairn / UCAIRN_PER_CAIRN).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let fraction = ucairn % UCAIRN_PER_CAIRN;
    if fraction == 0 {
        return format!("{grouped} CAIRN");
    }
    let decimals = format!("{fraction:06}");
    format!("{grouped}.{} CAIRN", decimals.trim_end_matches('0'))
}

/// A node's HTTP API.
pub(crate) struct Node {
    pub base: String,
    pub http: reqwest::blocking::Client,
    /// Shown on every request, for the routes that need it.
    pub token: Option<ApiToken>,
}

/// The API token of the node whose data folder is `data_dir`:
/// `CAIRN_API_TOKEN` if set, else the node's `api.token` file.
pub(crate) fn api_token(data_dir: &Path) -> anyhow::Result<ApiToken> {
    if let Ok(text) = std::env::var("CAIRN_API_TOKEN") {
        return ApiToken::from_hex(&text).context("CAIRN_API_TOKEN");
    }
    ApiToken::load(data_dir).with_context(|| {
        format!(
            "the node's API token is read from {}; point --data-dir at the node's data \
             folder, or set CAIRN_API_TOKEN to the token",
            ApiToken::path(data_dir).display()
        )
    })
}

impl Node {
    /// A client of the node at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(600))
                .build()
                .expect("an HTTP client"),
            token: None,
        }
    }

    /// The same client, showing `token`.
    pub fn with_token(self, token: ApiToken) -> Self {
        Self {
            token: Some(token),
            ..self
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, token.bearer()),
            None => request,
        }
    }

    /// POSTs raw bytes; the answer, read as `T`.
    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> anyhow::Result<T> {
        let response = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        answer(path, response)
    }

    /// POSTs JSON; the answer, read as `T`.
    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> anyhow::Result<T> {
        let response = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        answer(path, response)
    }

    /// GETs raw bytes.
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = response.status();
        let body = response.bytes()?;
        if !status.is_success() {
            bail!("the node refused {path}: {}", refusal(status, &body));
        }
        Ok(body.to_vec())
    }

    /// GETs `path`; the answer, read as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        answer(path, response)
    }

    fn submit(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.post_bytes::<api::Queued>("/v1/txs", bytes).map(|_| ())
    }

    /// GETs the server-sent events at `path`: each event's data read as
    /// `T`, as it arrives. The iterator ends when the stream does (after
    /// [`EVENTS_WAIT`] at the latest: open it again to go on).
    pub fn events<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<T>>> {
        let response = self
            .request(reqwest::Method::GET, path)
            .timeout(EVENTS_WAIT)
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes()?;
            bail!("the node refused {path}: {}", refusal(status, &body));
        }
        let mut events = Events {
            reader: std::io::BufReader::new(response),
            data: String::new(),
            over: false,
            skipping: false,
        };
        Ok(std::iter::from_fn(move || events.next_data())
            .map(|data| Ok(serde_json::from_str(&data?)?)))
    }
}

/// How long one event stream is kept open.
const EVENTS_WAIT: Duration = Duration::from_secs(3_600);
/// The longest event line read from a node, and the most data one event
/// may gather: a job's status is a few hundred bytes.
const EVENT_BYTES_MAX: u64 = 1 << 20;

/// A stream of server-sent events, read line by line within
/// [`EVENT_BYTES_MAX`].
struct Events<R> {
    reader: std::io::BufReader<R>,
    data: String,
    /// Broken off: nothing more is read.
    over: bool,
    /// In an event of another kind than `status`.
    skipping: bool,
}

impl<R: std::io::Read> Events<R> {
    /// Ends the stream with `why`: nothing is read after it.
    fn broken(&mut self, why: String) -> Option<anyhow::Result<String>> {
        self.over = true;
        Some(Err(anyhow::anyhow!(why)))
    }

    /// The next event's data; `None` at the end of the stream (or when it
    /// broke off).
    fn next_data(&mut self) -> Option<anyhow::Result<String>> {
        use std::io::{BufRead as _, Read as _};
        loop {
            if self.over {
                return None;
            }
            let mut line = Vec::new();
            let read = (&mut self.reader)
                .take(EVENT_BYTES_MAX)
                .read_until(b'\n', &mut line);
            match read {
                Ok(_) if line.last() == Some(&b'\n') => {}
                Ok(n) if n as u64 == EVENT_BYTES_MAX => {
                    return self.broken(format!(
                        "the node sent an event line over {EVENT_BYTES_MAX} bytes"
                    ));
                }
                // The end, or a last line cut off.
                Ok(_) | Err(_) => return None,
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                self.skipping = false;
                if !self.data.is_empty() {
                    return Some(Ok(std::mem::take(&mut self.data)));
                }
            } else if let Some(name) = line.strip_prefix("event:") {
                // Only `status` events are read (and unnamed ones, which
                // the spec calls `message`); others are skipped whole.
                self.skipping = name.trim() != "status";
            } else if let Some(data) = line.strip_prefix("data:") {
                if self.skipping {
                    continue;
                }
                if self.data.len() as u64 + data.len() as u64 > EVENT_BYTES_MAX {
                    return self.broken(format!(
                        "the node sent an event over {EVENT_BYTES_MAX} bytes"
                    ));
                }
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
            // Other fields (`event:`, `id:`) and comments (`:`, the
            // keep-alives) carry nothing this client uses.
        }
    }
}

/// A node's answer to `path`: the `T` it holds, or the node's refusal.
fn answer<T: DeserializeOwned>(
    path: &str,
    response: reqwest::blocking::Response,
) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.bytes()?;
    if !status.is_success() {
        bail!("the node refused {path}: {}", refusal(status, &body));
    }
    serde_json::from_slice(&body).with_context(|| {
        format!(
            "the node's answer to {path} is not a {} (a node of another version?)",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("known answer")
        )
    })
}

/// What a refusal says: the API's reason, or the status alone when the
/// body is not the API's error (a proxy's page is not shown).
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<api::ErrorBody>(body).map_or_else(|_| status.to_string(), |b| b.error)
}

pub fn wallet(args: WalletArgs) -> anyhow::Result<ExitCode> {
    let node = Node {
        base: args.node.trim_end_matches('/').to_string(),
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        // Balances and transactions are public or signed: no token.
        token: None,
    };
    let key = Keypair::load_or_create(&args.key)?;
    let kind = match args.command {
        WalletCommand::Address => {
            println!("{}", key.public());
            return Ok(ExitCode::SUCCESS);
        }
        WalletCommand::Balance { account } => {
            let account: api::Account =
                node.get(&format!("/v1/accounts/{}", account.unwrap_or(key.public())))?;
            if args.json {
                println!("{}", serde_json::to_string(&account)?);
            } else {
                println!(
                    "balance {}, stake {}, unbonding {}, nonce {} (height {})",
                    cairn(account.balance),
                    cairn(account.stake),
                    cairn(account.unbonding),
                    account.nonce,
                    account.height
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        WalletCommand::Escrow { job } => {
            let escrow: api::Escrow = node.get(&format!("/v1/escrows/{job}"))?;
            if args.json {
                println!("{}", serde_json::to_string(&escrow)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "escrow of job {job}: {}, owner {}, leases until height {}{}",
                cairn(escrow.balance),
                escrow.owner,
                escrow.leases_until,
                if escrow.closing { ", closing" } else { "" }
            );
            return Ok(ExitCode::SUCCESS);
        }
        WalletCommand::Transfer { to, amount } => TxKind::Transfer { to, amount },
        WalletCommand::Stake { amount, endpoint } => {
            let me: api::Account = node.get(&format!("/v1/accounts/{}", key.public()))?;
            if me.stake == 0 {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                TxKind::RegisterProvider {
                    capabilities: Capabilities {
                        cores,
                        ..Capabilities::default()
                    },
                    endpoint,
                    stake: amount,
                }
            } else {
                TxKind::Stake { amount }
            }
        }
        WalletCommand::Unstake { amount } => TxKind::Unstake { amount },
    };

    let chain = node.get::<api::Status>("/v1/status")?.chain;
    let nonce = node
        .get::<api::Account>(&format!("/v1/accounts/{}", key.public()))?
        .nonce;
    let tx = TxBody { chain, nonce, kind }.sign(&key);
    node.submit(tx.to_bytes())?;
    if args.no_wait {
        if args.json {
            println!("{}", serde_json::json!({ "queued": { "nonce": nonce } }));
        } else {
            println!("queued (nonce {nonce})");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    loop {
        match node.get(&format!("/v1/txs/{}/{nonce}", key.public()))? {
            status @ api::TxStatus::Applied { height, .. } => {
                let account: api::Account = node.get(&format!("/v1/accounts/{}", key.public()))?;
                if args.json {
                    println!("{}", serde_json::to_string(&status)?);
                    return Ok(ExitCode::SUCCESS);
                }
                // The block that applied it, when the node still knows.
                let height = height.unwrap_or(account.height);
                println!(
                    "applied at height {height}: balance {}, stake {}",
                    cairn(account.balance),
                    cairn(account.stake)
                );
                return Ok(ExitCode::SUCCESS);
            }
            api::TxStatus::Refused { height, reason, .. } => {
                bail!("refused at height {height}: {reason}")
            }
            api::TxStatus::Pending => {}
        }
        if started.elapsed() > APPLY_WAIT {
            bail!("the transaction was queued but not applied within {APPLY_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::{EVENT_BYTES_MAX, Events, cairn};

    fn events(bytes: &[u8]) -> Vec<Result<String, String>> {
        let mut events = Events {
            reader: std::io::BufReader::new(bytes),
            data: String::new(),
            over: false,
            skipping: false,
        };
        std::iter::from_fn(|| events.next_data())
            .map(|e| e.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn event_streams_yield_each_events_data_and_skip_the_rest() {
        let stream = b": keep-alive\n\nevent: status\ndata: {\"a\":1}\n\n\
                       event: block\ndata: 9\n\n\
                       data:two\r\ndata: lines\r\n\r\nid: 7\n\ndata: cut off";
        assert_eq!(
            events(stream),
            [Ok("{\"a\":1}".to_string()), Ok("two\nlines".to_string())],
            "comments, other fields and other events carry nothing; an unfinished event is dropped"
        );
    }

    #[test]
    fn an_endless_event_line_is_refused_within_the_bound() {
        let mut stream = b"data: ".to_vec();
        stream.resize(EVENT_BYTES_MAX as usize + 10, b'x');
        let read = events(&stream);
        assert_eq!(read.len(), 1);
        assert!(read[0].as_ref().unwrap_err().contains("over"), "{read:?}");
    }

    #[test]
    fn amounts_read_in_cairn_with_grouped_digits_and_only_the_decimals_needed() {
        assert_eq!(cairn(0), "0 CAIRN");
        assert_eq!(cairn(600), "0.0006 CAIRN");
        assert_eq!(cairn(1), "0.000001 CAIRN");
        assert_eq!(cairn(250_000), "0.25 CAIRN");
        assert_eq!(cairn(999_000_000), "999 CAIRN");
        assert_eq!(cairn(1_000_000_000), "1,000 CAIRN");
        assert_eq!(cairn(1_234_567_890_123), "1,234,567.890123 CAIRN");
        assert_eq!(cairn(u64::MAX), "18,446,744,073,709.551615 CAIRN");
    }
}
