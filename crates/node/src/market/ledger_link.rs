//! How market roles reach the ledger: in-process when the node is a
//! validator, over another node's HTTP API when it is not.

use cairn_chain::Ledger;
use cairn_ledger::{Tx, TxBody, TxKind};
use cairn_wire::{ContentId, Keypair, PublicKey};
use parking_lot::Mutex;

/// The most open challenges one answer lists: a provider answers them in
/// turns, and each answered one leaves the list.
pub const CHALLENGES_LISTED_MAX: usize = 1_000;

/// What the market needs to know of an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountView {
    /// Spendable balance.
    pub balance: u64,
    /// Next nonce.
    pub nonce: u64,
    /// Provider stake (0 if not a provider).
    pub stake: u64,
    /// Registered with at least the minimum stake.
    pub can_bid: bool,
}

/// A route to the ledger.
#[derive(Clone)]
pub enum LedgerLink {
    /// This node's own replica.
    Local(Ledger),
    /// Another node's HTTP API (`http://host:port`).
    Remote {
        /// Base URL.
        url: String,
        /// Shared client.
        http: reqwest::Client,
    },
}

impl LedgerLink {
    /// A private ledger in memory with no consensus: for benchmarks and
    /// tests of the market alone.
    pub fn in_memory(genesis: cairn_ledger::State) -> Self {
        Self::Local(Ledger::open(genesis, None).expect("a ledger without a store opens"))
    }

    /// A link to the node whose API is at `url`.
    pub fn remote(url: &str) -> Self {
        Self::Remote {
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let Self::Remote { url, http } = self else {
            unreachable!("only remote links speak HTTP")
        };
        let response = http
            .get(format!("{url}{path}"))
            .send()
            .await
            .map_err(|e| format!("ledger at {url}: {e}"))?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("ledger at {url}: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("ledger at {url}: {e}"))
    }

    /// The chain's id, which every transaction names.
    pub async fn chain(&self) -> Result<ContentId, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.chain()),
            Self::Remote { .. } => self.get("/v1/status").await?["chain"]
                .as_str()
                .ok_or("ledger status has no chain id")?
                .parse()
                .map_err(|e: cairn_wire::WireError| e.to_string()),
        }
    }

    /// The height of the last finalized block.
    pub async fn height(&self) -> Result<u64, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.height()),
            Self::Remote { .. } => self.get("/v1/status").await?["height"]
                .as_u64()
                .ok_or_else(|| "ledger status has no height".into()),
        }
    }

    /// An account as of the last finalized block.
    pub async fn account(&self, key: &PublicKey) -> Result<AccountView, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.view(|state| {
                let account = state.account(key);
                AccountView {
                    balance: account.balance,
                    nonce: account.nonce,
                    stake: state.provider(key).map_or(0, |p| p.stake),
                    can_bid: state.can_bid(key),
                }
            })),
            Self::Remote { .. } => {
                let v = self.get(&format!("/v1/accounts/{key}")).await?;
                let number = |field: &str| -> Result<u64, String> {
                    v[field]
                        .as_u64()
                        .or_else(|| v[field].as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| format!("ledger account has no {field}"))
                };
                Ok(AccountView {
                    balance: number("balance")?,
                    nonce: number("nonce")?,
                    stake: number("stake")?,
                    can_bid: v["can_bid"].as_bool().unwrap_or(false),
                })
            }
        }
    }

    /// The height and the open challenges against `provider`'s commits
    /// (lease, task, last height a reveal is accepted), at most
    /// [`CHALLENGES_LISTED_MAX`] of them.
    pub async fn open_challenges(
        &self,
        provider: &PublicKey,
    ) -> Result<(u64, Vec<(ContentId, u64, u64)>), String> {
        match self {
            Self::Local(ledger) => Ok(ledger.view(|state| {
                let mut open = state.open_challenges(provider);
                open.truncate(CHALLENGES_LISTED_MAX);
                (state.height(), open)
            })),
            Self::Remote { .. } => {
                let v = self.get(&format!("/v1/challenges/{provider}")).await?;
                let height = v["height"].as_u64().ok_or("challenges have no height")?;
                let list = v["challenges"].as_array().ok_or("no challenge list")?;
                let open = list
                    .iter()
                    .take(CHALLENGES_LISTED_MAX)
                    .map(|c| {
                        let lease = c["lease"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .ok_or("a challenge without a lease")?;
                        let task = c["task"].as_u64().ok_or("a challenge without a task")?;
                        let deadline = c["deadline"]
                            .as_u64()
                            .ok_or("a challenge without a deadline")?;
                        Ok((lease, task, deadline))
                    })
                    .collect::<Result<_, &str>>()?;
                Ok((height, open))
            }
        }
    }

    /// Queues a signed transaction.
    pub async fn submit(&self, tx: &Tx) -> Result<(), String> {
        self.try_submit(tx).await.map_err(|(_, e)| e)
    }

    /// [`LedgerLink::submit`], saying whether a refusal may pass if the
    /// same transaction is sent again later (the sender's window of
    /// pending nonces is full, or the whole mempool is).
    async fn try_submit(&self, tx: &Tx) -> Result<(), (bool, String)> {
        match self {
            Self::Local(ledger) => {
                // Admission checks every signature a transaction carries (a
                // settlement has dozens): off the async workers.
                let (ledger, bytes) = (ledger.clone(), tx.to_bytes());
                tokio::task::spawn_blocking(move || ledger.submit(bytes))
                    .await
                    .map_err(|e| (false, e.to_string()))?
                    .map_err(|e| {
                        let later = matches!(
                            e,
                            cairn_chain::SubmitError::NonceTooFar { .. }
                                | cairn_chain::SubmitError::Full
                        );
                        (later, e.to_string())
                    })
            }
            Self::Remote { url, http } => {
                let response = http
                    .post(format!("{url}/v1/txs"))
                    .header("content-type", "application/octet-stream")
                    .body(tx.to_bytes())
                    .send()
                    .await
                    .map_err(|e| (false, format!("ledger at {url}: {e}")))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let later = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::SERVICE_UNAVAILABLE;
                    let body = response.text().await.unwrap_or_default();
                    Err((
                        later,
                        format!("ledger at {url} refused a transaction: {body}"),
                    ))
                }
            }
        }
    }
}

/// How long a transaction the ledger asks to send later is sent again.
const RESEND_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Signs and sends one account's transactions, numbering them itself so a
/// burst of them (escrow, leases, settlements) need not wait for blocks.
pub struct TxSender {
    link: LedgerLink,
    key: Keypair,
    chain: ContentId,
    next_nonce: Mutex<Option<u64>>,
}

impl TxSender {
    /// A sender for `key`'s transactions on the chain behind `link`.
    pub async fn new(link: LedgerLink, key: Keypair) -> Result<Self, String> {
        let chain = link.chain().await?;
        Ok(Self {
            link,
            key,
            chain,
            next_nonce: Mutex::new(None),
        })
    }

    /// The link.
    pub fn link(&self) -> &LedgerLink {
        &self.link
    }

    /// Signs `kind` with the next nonce and queues it. On a refusal the
    /// nonce is re-read from the ledger so the next transaction is not
    /// stuck behind a gap.
    pub async fn send(&self, kind: TxKind) -> Result<u64, String> {
        let cached = *self.next_nonce.lock();
        let nonce = match cached {
            Some(nonce) => nonce,
            None => self.link.account(&self.key.public()).await?.nonce,
        };
        *self.next_nonce.lock() = Some(nonce + 1);
        let tx = TxBody {
            chain: self.chain,
            nonce,
            kind,
        }
        .sign(&self.key);
        // A burst (escrow, leases, settlements) may run past the ledger's
        // window of pending nonces per sender: the same transaction is
        // sent again as blocks take the earlier ones.
        let mut wait_ms = 50;
        let deadline = std::time::Instant::now() + RESEND_FOR;
        let result = loop {
            match self.link.try_submit(&tx).await {
                Err((true, e)) if std::time::Instant::now() < deadline => {
                    tracing::debug!("ledger busy, sending nonce {nonce} again: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                    wait_ms = (wait_ms * 2).min(1_000);
                }
                other => break other.map_err(|(_, e)| e),
            }
        };
        if result.is_err() {
            *self.next_nonce.lock() = None;
        }
        result.map(|()| nonce)
    }
}
