//! The client against a real node API on a loopback socket (its ledger in
//! memory, sealing its own blocks): every call it makes, the refusals it
//! reads back as typed errors, and a job followed from submission to its
//! cancellation.

use cairn_client::{ApiToken, Client, Error, Submission, SubmittedFile};
use cairn_node::api::Access;
use cairn_node::market::{LedgerLink, Market, MarketConfig};
use cairn_wire::{ContentId, Keypair};

/// A node serving its API on a free loopback port: its URL and token. The
/// runtime must outlive the calls.
fn node(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) -> (String, ApiToken, Keypair) {
    let key = Keypair::from_seed([3; 32]);
    let genesis = cairn_ledger::Genesis::with_balances("client-test", &[key.public()], 1 << 40);
    let node_key = key.clone();
    let data = dir.to_path_buf();
    runtime.block_on(async move {
        let link = LedgerLink::in_memory(genesis.state().unwrap(), 20);
        let LedgerLink::Local(ledger) = link.clone() else {
            unreachable!("an in-memory ledger is local")
        };
        let market = Market::start(node_key, MarketConfig::new(data.join("market")), link)
            .await
            .unwrap();
        let token = ApiToken::load_or_create(&data).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = listener.local_addr().unwrap();
        let app = cairn_node::api::app(
            Some(ledger),
            Some(market),
            Access::new(token.clone(), bound, &[]),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{bound}"), token, key)
    })
}

fn submission(module: SubmittedFile) -> Submission {
    Submission {
        name: "search".into(),
        runtime: "wasm".into(),
        module,
        inputs: Vec::new(),
        tasks: vec![cairn_client::api::SubmittedTask {
            args: vec!["--start".into(), "0".into()],
            outputs: vec!["hits.txt".into()],
            seed: "22".repeat(32),
            fuel: None,
            inputs: Vec::new(),
        }],
        limits: cairn_client::api::SubmittedLimits {
            fuel: 1_000_000,
            memory_bytes: 16 << 20,
            wall_time_ms: 2_000,
            output_bytes: 1 << 20,
            stdout_bytes: 1 << 10,
            gpus: 0,
            gpu_memory_mib: 0,
        },
        budget_ucairn: 1_000_000,
        price_max_ucairn_per_gfuel: 100,
        verify: cairn_job::VerifyPolicy::None.into(),
        approval_window_s: None,
        stream: None,
    }
}

#[test]
fn a_client_submits_follows_and_cancels_a_job_and_reads_refusals_as_typed_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, token, key) = node(&runtime, dir.path());

    // Without the token: a 401, typed, saying what is missing.
    let anonymous = Client::new(&url);
    let refused = anonymous.jobs().unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(refused.to_string().contains("API token"), "{refused}");
    // Public routes need none.
    assert_eq!(anonymous.market().unwrap().key, key.public());
    anonymous.status().unwrap();
    assert!(anonymous.account(&key.public()).unwrap().balance > 0);

    let node = anonymous.with_token(token);
    let module = node.upload("module.wasm", b"a module".to_vec()).unwrap();
    assert_eq!(module.id, ContentId::of(b"a module"));
    assert_eq!(node.blob(&module.id).unwrap(), b"a module");
    let missing = node.blob(&ContentId::of(b"never stored")).unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");

    // A bad submission is refused with why; a good one escrows its budget.
    let mut bad = submission(module.clone());
    bad.name = String::new();
    let refused = node.submit(&bad).unwrap_err();
    assert_eq!(refused.status(), Some(400));
    assert!(refused.to_string().contains("name"), "{refused}");
    let id = node.submit(&submission(module)).unwrap();
    assert_eq!(node.job(&id).unwrap().id, id);
    assert!(node.jobs().unwrap().iter().any(|j| j.id == id));
    assert!(node.escrow(&id).unwrap().is_some());
    assert_eq!(node.escrow(&ContentId::of(b"no job")).unwrap(), None);
    assert!(node.providers().unwrap().is_empty());
    assert!(node.prices().unwrap().is_empty());

    // Cancelled, the job is followed to its end; a second cancel is a 409.
    let cancelled = node.cancel(&id).unwrap();
    assert_eq!(cancelled.failed, 1);
    let mut seen = Vec::new();
    let last = node.follow(&id, |status| seen.push(status.state)).unwrap();
    assert_eq!(last.state, cairn_client::api::JobState::Cancelled);
    assert_eq!(seen.last(), Some(&cairn_client::api::JobState::Cancelled));
    let again = node.cancel(&id).unwrap_err();
    assert!(
        matches!(again, Error::Refused { status: 409, .. }),
        "{again}"
    );
    assert!(node.results(&id).unwrap().is_empty());

    // Nobody listening: unreachable, with the address.
    drop(runtime);
    let gone = node.jobs().unwrap_err();
    assert!(matches!(gone, Error::Unreachable { .. }), "{gone}");
    assert!(gone.to_string().contains(&url));
}
