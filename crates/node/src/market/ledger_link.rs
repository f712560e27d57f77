//! How market roles reach the ledger: in-process when the node is a
//! validator, over another node's HTTP API when it is not.

use cairn_chain::{Ledger, TxOutcome, TxRecord};
use cairn_ledger::Tx;
use cairn_wire::{ContentId, PublicKey};

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

/// Why the ledger did not take a transaction.
#[derive(Debug)]
pub enum Refusal {
    /// It may take the same transaction later (the sender's window of
    /// pending nonces, or the whole mempool, is full).
    Later(String),
    /// It will not, as things stand.
    Refused(String),
}

/// What a block did with the transaction that took a nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Included {
    /// Its digest, unless the ledger has forgotten it (long ago).
    pub tx: Option<ContentId>,
    /// Applied, or refused with the reason (a refusal still took the
    /// nonce).
    pub applied: Result<(), String>,
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
    /// A private ledger in memory with no consensus, sealing a block of
    /// what it holds every `block_ms`: for benchmarks and tests of the
    /// market alone. Must run inside a tokio runtime; the sealing stops
    /// when the last link to the ledger is dropped.
    pub fn in_memory(genesis: cairn_ledger::State, block_ms: u64) -> Self {
        let ledger = Ledger::open(genesis, None).expect("a ledger without a store opens");
        let weak = ledger.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(block_ms));
            loop {
                tick.tick().await;
                let Some(ledger) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = ledger.seal_alone(super::now_ms()) {
                    tracing::error!("sealing a block of the in-memory ledger: {e}");
                    return;
                }
            }
        });
        Self::Local(ledger)
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

    /// The validators, who attest dispute verdicts, and how many of them a
    /// verdict needs.
    pub async fn validators(&self) -> Result<(Vec<PublicKey>, usize), String> {
        match self {
            Self::Local(ledger) => Ok(ledger.view(|state| {
                (
                    state.validators().iter().copied().collect(),
                    state.verdict_quorum(),
                )
            })),
            Self::Remote { .. } => {
                let v = self.get("/v1/status").await?;
                let keys = v["validators"]
                    .as_array()
                    .ok_or("the ledger lists no validators")?
                    .iter()
                    .take(cairn_wire::ATTESTATIONS_MAX)
                    .map(|k| k.as_str().and_then(|k| k.parse().ok()))
                    .collect::<Option<Vec<PublicKey>>>()
                    .ok_or("a validator that is not a key")?;
                let quorum = v["verdict_quorum"]
                    .as_u64()
                    .ok_or("the ledger names no verdict quorum")?;
                Ok((keys, quorum as usize))
            }
        }
    }

    /// A job's escrow as of the last finalized block, if it is open.
    pub async fn escrow(&self, job: &ContentId) -> Result<Option<cairn_ledger::Escrow>, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.view(|state| state.escrow(job).copied())),
            Self::Remote { url, http } => {
                let response = http
                    .get(format!("{url}/v1/escrows/{job}"))
                    .send()
                    .await
                    .map_err(|e| format!("ledger at {url}: {e}"))?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("ledger at {url}: {e}"))?;
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("ledger at {url}: {e}"))?;
                let field = |name: &str| {
                    v[name]
                        .as_u64()
                        .ok_or_else(|| format!("ledger escrow has no {name}"))
                };
                Ok(Some(cairn_ledger::Escrow {
                    owner: v["owner"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or("ledger escrow has no owner")?,
                    balance: field("balance")?,
                    leases_until: field("leases_until")?,
                    closing: v["closing"]
                        .as_bool()
                        .ok_or("ledger escrow has no closing")?,
                }))
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
    pub async fn submit(&self, tx: &Tx) -> Result<(), Refusal> {
        match self {
            Self::Local(ledger) => {
                // Admission checks every signature a transaction carries (a
                // settlement has dozens): off the async workers.
                let (ledger, bytes) = (ledger.clone(), tx.to_bytes());
                tokio::task::spawn_blocking(move || ledger.submit(bytes))
                    .await
                    .map_err(|e| Refusal::Later(e.to_string()))?
                    .map_err(|e| match e {
                        cairn_chain::SubmitError::NonceTooFar { .. }
                        | cairn_chain::SubmitError::Full => Refusal::Later(e.to_string()),
                        e => Refusal::Refused(e.to_string()),
                    })
            }
            Self::Remote { url, http } => {
                let response = http
                    .post(format!("{url}/v1/txs"))
                    .header("content-type", "application/octet-stream")
                    .body(tx.to_bytes())
                    .send()
                    .await
                    .map_err(|e| Refusal::Later(format!("ledger at {url}: {e}")))?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let body = response.text().await.unwrap_or_default();
                let reason = format!("ledger at {url} refused a transaction: {body}");
                // Only a 4xx is the ledger's verdict on the transaction; a
                // 5xx (or a proxy's page) says nothing about it.
                if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Err(Refusal::Refused(reason))
                } else {
                    Err(Refusal::Later(reason))
                }
            }
        }
    }

    /// What a block did with `signer`'s transaction numbered `nonce`, if a
    /// block has carried one.
    pub async fn included(
        &self,
        signer: &PublicKey,
        nonce: u64,
    ) -> Result<Option<Included>, String> {
        match self {
            Self::Local(ledger) => Ok(match ledger.outcome(signer, nonce) {
                Some(TxRecord { tx, outcome }) => Some(Included {
                    tx: Some(tx),
                    applied: match outcome {
                        TxOutcome::Applied(_) => Ok(()),
                        TxOutcome::Refused(_, reason) => Err(reason),
                    },
                }),
                None if ledger.view(|state| state.account(signer).nonce) > nonce => {
                    Some(Included {
                        tx: None,
                        applied: Ok(()),
                    })
                }
                None => None,
            }),
            Self::Remote { .. } => {
                let v = self.get(&format!("/v1/txs/{signer}/{nonce}")).await?;
                let tx = match v["tx"].as_str() {
                    Some(tx) => Some(tx.parse().map_err(|e: cairn_wire::WireError| {
                        format!("ledger names a malformed transaction: {e}")
                    })?),
                    None => None,
                };
                match v["status"].as_str() {
                    Some("pending") => Ok(None),
                    Some("applied") => Ok(Some(Included {
                        tx,
                        applied: Ok(()),
                    })),
                    Some("refused") => Ok(Some(Included {
                        tx,
                        applied: Err(v["reason"].as_str().unwrap_or("refused").to_string()),
                    })),
                    _ => Err(format!("ledger answered with no transaction status: {v}")),
                }
            }
        }
    }
}
