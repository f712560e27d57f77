//! How market roles reach the ledger: in-process when the node is a
//! validator, over another node's HTTP API when it is not.

use cairn_api as api;
use cairn_chain::{Ledger, TxOutcome, TxRecord};
use cairn_ledger::Tx;
use cairn_wire::{ContentId, PublicKey};
use serde::de::DeserializeOwned;

/// The most open challenges one answer lists: a provider answers them in
/// turns, and each answered one leaves the list.
pub const CHALLENGES_LISTED_MAX: usize = 1_000;

/// The open challenges against `provider`'s commits in `state`, the first
/// [`CHALLENGES_LISTED_MAX`] to close: what a provider must answer first.
pub fn challenges_against(state: &cairn_ledger::State, provider: PublicKey) -> api::Challenges {
    let open = state.open_challenges(&provider);
    let challenges = open
        .iter()
        .take(CHALLENGES_LISTED_MAX)
        .map(|&(lease, task, c)| api::Challenge {
            lease,
            task,
            deadline: c.deadline,
            deadline_ms: c.deadline_ms,
        })
        .collect();
    api::Challenges {
        provider,
        height: state.height(),
        time_ms: state.time_ms(),
        open: open.len() as u64,
        challenges,
    }
}

/// The most bytes read of a remote ledger's answer: the longest, a list of
/// [`CHALLENGES_LISTED_MAX`] challenges, is about 150 KB. A node that
/// answers more is refused, not read into memory.
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// The longest a remote ledger's answer may take, sending included.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
            // A ledger node that stalls or trickles its answer holds up no
            // role for longer than this.
            http: reqwest::Client::builder()
                .timeout(ANSWER_WAIT)
                .build()
                .expect("an HTTP client with a timeout"),
        }
    }

    /// The remote ledger's answer to `GET path`, read as `T`; `None` on a
    /// `404`. Any other refusal is an error with the ledger's reason.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, String> {
        let Self::Remote { url, http } = self else {
            unreachable!("only remote links speak HTTP")
        };
        let fail = |e: &dyn std::fmt::Display| format!("ledger at {url}{path}: {e}");
        let response = http
            .get(format!("{url}{path}"))
            .send()
            .await
            .map_err(|e| fail(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = answer(response).await.map_err(|e| fail(&e))?;
        if !status.is_success() {
            return Err(fail(&refusal(status, &body)));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| fail(&e))
    }

    /// The same, where a `404` is an error too.
    async fn get_found<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.get(path)
            .await?
            .ok_or_else(|| format!("the ledger has no {path}"))
    }

    /// The chain's id, which every transaction names.
    pub async fn chain(&self) -> Result<ContentId, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.chain()),
            Self::Remote { .. } => Ok(self.get_found::<api::Status>("/v1/status").await?.chain),
        }
    }

    /// The height of the last finalized block.
    pub async fn height(&self) -> Result<u64, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.height()),
            Self::Remote { .. } => Ok(self.get_found::<api::Status>("/v1/status").await?.height),
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
                let account: api::Account = self.get_found(&format!("/v1/accounts/{key}")).await?;
                if account.key != *key {
                    return Err(format!("the ledger answered for {} on {key}", account.key));
                }
                Ok(AccountView {
                    balance: account.balance,
                    nonce: account.nonce,
                    stake: account.stake,
                    can_bid: account.can_bid,
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
                let mut status: api::Status = self.get_found("/v1/status").await?;
                status.validators.truncate(cairn_wire::ATTESTATIONS_MAX);
                Ok((status.validators, status.verdict_quorum as usize))
            }
        }
    }

    /// A job's escrow as of the last finalized block, if it is open.
    pub async fn escrow(&self, job: &ContentId) -> Result<Option<cairn_ledger::Escrow>, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.view(|state| state.escrow(job).copied())),
            Self::Remote { .. } => {
                let Some(escrow) = self
                    .get::<api::Escrow>(&format!("/v1/escrows/{job}"))
                    .await?
                else {
                    return Ok(None);
                };
                if escrow.job != *job {
                    return Err(format!(
                        "the ledger answered for job {} on {job}",
                        escrow.job
                    ));
                }
                Ok(Some(cairn_ledger::Escrow {
                    owner: escrow.owner,
                    balance: escrow.balance,
                    leases_until: escrow.leases_until,
                    closing: escrow.closing,
                }))
            }
        }
    }

    /// The open challenges against `provider`'s commits, the first
    /// [`CHALLENGES_LISTED_MAX`] to close.
    pub async fn open_challenges(&self, provider: &PublicKey) -> Result<api::Challenges, String> {
        match self {
            Self::Local(ledger) => Ok(ledger.view(|state| challenges_against(state, *provider))),
            Self::Remote { .. } => {
                let mut answer: api::Challenges = self
                    .get_found(&format!("/v1/challenges/{provider}"))
                    .await?;
                if answer.provider != *provider {
                    return Err(format!(
                        "the ledger answered for {} on {provider}",
                        answer.provider
                    ));
                }
                answer.challenges.truncate(CHALLENGES_LISTED_MAX);
                Ok(answer)
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
                let body = answer(response).await.unwrap_or_else(|e| e.into_bytes());
                let reason = format!(
                    "ledger at {url} refused a transaction: {}",
                    refusal(status, &body)
                );
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
                let status: api::TxStatus =
                    self.get_found(&format!("/v1/txs/{signer}/{nonce}")).await?;
                Ok(match status {
                    api::TxStatus::Pending => None,
                    api::TxStatus::Applied { tx, .. } => Some(Included {
                        tx,
                        applied: Ok(()),
                    }),
                    api::TxStatus::Refused { tx, reason, .. } => Some(Included {
                        tx: Some(tx),
                        applied: Err(reason),
                    }),
                })
            }
        }
    }
}

/// A remote ledger's answer, read up to [`ANSWER_BYTES_MAX`].
async fn answer(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > ANSWER_BYTES_MAX {
            return Err(format!("answered over {ANSWER_BYTES_MAX} bytes; not read"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a refusal says: its status and the API's reason when the body is
/// the API's error, else the status alone (a proxy's page is not shown).
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<api::ErrorBody>(body)
        .map_or_else(|_| status.to_string(), |b| format!("{status}: {}", b.error))
}

#[cfg(test)]
mod tests {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::routing::get;
    use cairn_wire::Keypair;

    use super::*;

    /// A ledger node that answers for another account, answers without
    /// end, refuses, or lacks a route: each is an error that says which,
    /// and nothing of it is taken as the ledger's state.
    #[tokio::test]
    async fn a_remote_ledger_that_answers_wrong_too_much_or_not_at_all_is_refused() {
        let asked = Keypair::from_seed([1; 32]).public();
        let other = Keypair::from_seed([2; 32]).public();
        let app = axum::Router::new()
            .route(
                "/v1/status",
                get(|| async { vec![b' '; ANSWER_BYTES_MAX + 1] }),
            )
            .route(
                "/v1/accounts/{key}",
                get(move || async move {
                    Json(api::Account {
                        key: other,
                        height: 7,
                        balance: 1 << 40,
                        nonce: 0,
                        stake: 1 << 40,
                        unbonding: 0,
                        can_bid: true,
                    })
                }),
            )
            .route(
                "/v1/escrows/{job}",
                get(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(api::ErrorBody {
                            error: "the store is full".into(),
                        }),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let link = LedgerLink::remote(&url);

        let endless = link.height().await.unwrap_err();
        assert!(endless.contains("not read"), "{endless}");
        let impostor = link.account(&asked).await.unwrap_err();
        assert!(impostor.contains("answered for"), "{impostor}");
        let refused = link.escrow(&ContentId::of(b"job")).await.unwrap_err();
        assert!(refused.contains("the store is full"), "{refused}");
        let missing = link.open_challenges(&asked).await.unwrap_err();
        assert!(missing.contains("has no /v1/challenges"), "{missing}");
    }
}
