//! The API against callers it must refuse, each named for what it does,
//! on a real market and ledger (in memory, no consensus: a queued escrow
//! stays pending, where the tests can see it).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cairn_chain::Ledger;
use cairn_wire::{ContentId, Keypair};
use serde_json::Value;
use tower::ServiceExt as _;

use super::{Access, ApiToken, SUBMISSION_BYTES_MAX, TX_BYTES_MAX};
use crate::market::{
    LedgerLink, Market, MarketConfig, Submission, SubmittedFile, SubmittedLimits, SubmittedTask,
};

/// The address the API is taken to be bound to. Nothing listens on it:
/// requests go straight into the router.
const BOUND: &str = "127.0.0.1:8640";
const HOST: &str = "127.0.0.1:8640";

struct Node {
    app: Router,
    ledger: Ledger,
    market: Market,
    token: ApiToken,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::from_seed([5; 32]);
    let genesis = cairn_ledger::Genesis::with_balances("api-test", &[key.public()], 1 << 40);
    // A ledger that seals its own blocks, so an escrow is applied and a
    // submission answered.
    let link = LedgerLink::in_memory(genesis.state().unwrap(), 20);
    let LedgerLink::Local(ledger) = link.clone() else {
        unreachable!("an in-memory ledger is local")
    };
    let market = Market::start(key, MarketConfig::new(dir.path().join("market")), link)
        .await
        .unwrap();
    let token = ApiToken::load_or_create(dir.path()).unwrap();
    let bound: SocketAddr = BOUND.parse().unwrap();
    let access = Access::new(token.clone(), bound, &["node.example".into()]);
    Node {
        app: super::app(Some(ledger.clone()), Some(market.clone()), access),
        ledger,
        market,
        token,
        _dir: dir,
    }
}

/// A request to `path` naming this API in `Host`, with `headers`.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body)).unwrap()
}

impl Node {
    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn bearer(&self) -> String {
        self.token.bearer()
    }

    /// A blob uploaded with the token, as `cairn job submit` does.
    async fn upload(&self, name: &str, bytes: &[u8]) -> SubmittedFile {
        let bearer = self.bearer();
        let (status, answer) = self
            .call(request(
                "POST",
                "/v1/blobs",
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/octet-stream"),
                ],
                bytes.to_vec(),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        SubmittedFile {
            name: name.into(),
            id: ContentId::of(bytes),
            size: bytes.len() as u64,
        }
    }

    async fn submit(&self, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Value) {
        self.call(request("POST", "/v1/jobs", headers, body)).await
    }

    /// A valid one-task job submitted with the token, as `cairn job
    /// submit` does: its id.
    async fn submit_one(&self) -> String {
        let module = self.upload("module.wasm", b"a module").await;
        let bearer = self.bearer();
        let (status, answer) = self
            .submit(
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                serde_json::to_vec(&submission(module)).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["job"].as_str().unwrap().to_string()
    }

    /// Nothing was submitted: no job, no escrow queued or applied (a
    /// submission answers once its escrow is applied).
    fn assert_nothing_submitted(&self) {
        assert!(self.market.jobs().is_empty(), "a job was recorded");
        assert_eq!(self.ledger.pending(), 0, "an escrow was queued");
        assert_eq!(self.escrow_transactions(), 0, "an escrow was applied");
    }

    /// Transactions the node's key has had applied.
    fn escrow_transactions(&self) -> u64 {
        let me = Keypair::from_seed([5; 32]).public();
        self.ledger.view(|state| state.account(&me).nonce)
    }
}

/// A change that turns a good submission into a bad one.
type Breakage = fn(&mut Submission);

fn submission(module: SubmittedFile) -> Submission {
    Submission {
        name: "search".into(),
        runtime: "wasm".into(),
        module,
        inputs: Vec::new(),
        tasks: vec![SubmittedTask {
            args: vec!["--start".into(), "0".into()],
            outputs: vec!["hits.txt".into()],
            seed: "22".repeat(32),
            fuel: None,
            inputs: Vec::new(),
        }],
        limits: SubmittedLimits {
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

/// A `csrf_page` in the user's browser posts `text/plain` bodies (the
/// kind a page may send across origins without asking) to store a blob
/// and open a job: refused, and nothing is stored or escrowed. The same
/// posts from the node's own tools go through, so the refusal is the
/// checks', not a broken route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_page_stores_nothing_and_escrows_nothing() {
    let node = node().await;
    let blob = b"a page's payload".to_vec();
    let job = serde_json::to_vec(&submission(SubmittedFile {
        name: "module.wasm".into(),
        id: ContentId::of(&blob),
        size: blob.len() as u64,
    }))
    .unwrap();
    let page = [
        ("origin", "https://evil.example"),
        ("content-type", "text/plain"),
    ];
    let (status, answer) = node
        .call(request("POST", "/v1/blobs", &page, blob.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("evil.example"));
    let (status, _) = node.submit(&page, job.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A page whose browser sends no Origin still has no token.
    let (status, _) = node
        .call(request(
            "POST",
            "/v1/blobs",
            &[("content-type", "text/plain")],
            blob.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = node
        .submit(&[("content-type", "text/plain")], job.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(node.market.blobs().size(&ContentId::of(&blob)), None);
    node.assert_nothing_submitted();

    // The node's own tools: token, content types, no Origin.
    let module = node.upload("module.wasm", &blob).await;
    let bearer = node.bearer();
    let (status, answer) = node
        .submit(
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(&submission(module)).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(node.escrow_transactions(), 1, "the escrow is applied");
}

/// A `dns_rebinder` points its domain at 127.0.0.1, so the browser sends
/// its requests to the node with `Host: evil.example`: refused on every
/// route, public or private, token or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinder_is_refused_by_host() {
    let node = node().await;
    let bearer = node.bearer();
    for path in ["/v1/status", "/v1/market", "/v1/jobs"] {
        for host in [
            "evil.example",
            "evil.example:8640",
            "127.0.0.1:9999",
            "localhost",
        ] {
            let req = Request::builder()
                .uri(path)
                .header(header::HOST, host)
                .header("authorization", &bearer)
                .body(Body::empty())
                .unwrap();
            let (status, answer) = node.call(req).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path} {host}");
            assert!(answer["error"].as_str().unwrap().contains(host), "{answer}");
        }
    }
    // No Host at all.
    let req = Request::builder()
        .uri("/v1/status")
        .body(Body::empty())
        .unwrap();
    assert_eq!(node.call(req).await.0, StatusCode::BAD_REQUEST);
    // The names it does answer to.
    for host in [
        "127.0.0.1:8640",
        "localhost:8640",
        "LOCALHOST:8640",
        "[::1]:8640",
        "node.example",
        "node.example:8640",
    ] {
        let req = Request::builder()
            .uri("/v1/status")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(node.call(req).await.0, StatusCode::OK, "{host}");
    }
    // Its own origin is no cross-origin request.
    let req = request(
        "GET",
        "/v1/status",
        &[("origin", "http://127.0.0.1:8640")],
        Vec::new(),
    );
    assert_eq!(node.call(req).await.0, StatusCode::OK);
    for origin in [
        "null",
        "http://127.0.0.1:9999",
        "http://localhost.evil.example",
    ] {
        let req = request("GET", "/v1/status", &[("origin", origin)], Vec::new());
        assert_eq!(node.call(req).await.0, StatusCode::FORBIDDEN, "{origin}");
    }
}

/// A `body_bomber` sends a 3 MB job and an oversized transaction: 413
/// before any of it is parsed; a blob of the same size is within the blob
/// limit and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_bomber_is_refused_by_size() {
    let node = node().await;
    let bearer = node.bearer();
    let module = node.upload("module.wasm", b"module").await;
    let mut bomb = submission(module);
    let task = bomb.tasks[0].clone();
    bomb.tasks = vec![task; 3_000_000 / 100];
    let bomb = serde_json::to_vec(&bomb).unwrap();
    assert!(bomb.len() > 3_000_000 && bomb.len() > SUBMISSION_BYTES_MAX);
    let (status, answer) = node
        .submit(
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            bomb,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer["error"].as_str().unwrap().contains("2097152 bytes"),
        "{answer}"
    );
    node.assert_nothing_submitted();

    let (status, answer) = node
        .call(request(
            "POST",
            "/v1/txs",
            &[("content-type", "application/octet-stream")],
            vec![0; TX_BYTES_MAX + 1],
        ))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer["error"].as_str().is_some(), "{answer}");
    assert_eq!(node.ledger.pending(), 0);

    let big = vec![7u8; 3_000_000];
    node.upload("big", &big).await;
    assert_eq!(
        node.market.blobs().size(&ContentId::of(&big)),
        Some(3_000_000)
    );
}

/// A `token_guesser` tries no token, other schemes, a token one digit off
/// and tokens of other lengths on every private route: 401 each time
/// (compared in constant time, see `ApiToken::accepts`). Public routes
/// answer without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guesser_is_refused_on_every_private_route() {
    let node = node().await;
    let right = node.bearer();
    let hex = right.strip_prefix("Bearer ").unwrap();
    let last = if hex.ends_with('0') { "1" } else { "0" };
    let one_off = format!("Bearer {}{last}", &hex[..63]);
    let short = format!("Bearer {}", &hex[..62]);
    let long = format!("Bearer {hex}00");
    let basic = format!("Basic {hex}");
    let guesses: [Option<&str>; 7] = [
        None,
        Some(""),
        Some("Bearer"),
        Some(&one_off),
        Some(&short),
        Some(&long),
        Some(&basic),
    ];
    let id = ContentId::of(b"x");
    let routes = [
        ("GET", "/v1/jobs".to_string(), ""),
        ("GET", format!("/v1/jobs/{id}"), ""),
        ("GET", format!("/v1/jobs/{id}/results"), ""),
        ("GET", format!("/v1/blobs/{id}"), ""),
        ("POST", "/v1/blobs".to_string(), "application/octet-stream"),
        ("POST", "/v1/jobs".to_string(), "application/json"),
        ("GET", "/metrics".to_string(), ""),
        ("GET", format!("/v1/jobs/{id}/events"), ""),
        ("GET", "/v1/providers".to_string(), ""),
        ("GET", "/v1/prices".to_string(), ""),
    ];
    for (method, path, content_type) in &routes {
        for guess in guesses {
            let mut headers = vec![("content-type", *content_type)];
            if let Some(guess) = guess {
                headers.push(("authorization", guess));
            }
            let response = node
                .app
                .clone()
                .oneshot(request(method, path, &headers, b"{}".to_vec()))
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {guess:?}"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
    }
    assert_eq!(node.market.blobs().size(&ContentId::of(b"{}")), None);
    node.assert_nothing_submitted();
    // The right token, its scheme in any case, opens them.
    let lower = right.replacen("Bearer", "bearer", 1);
    for bearer in [&right, &lower] {
        let (status, _) = node
            .call(request(
                "GET",
                "/v1/jobs",
                &[("authorization", bearer)],
                Vec::new(),
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = node
        .call(request(
            "GET",
            &format!("/v1/jobs/{id}"),
            &[("authorization", &right)],
            Vec::new(),
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for path in ["/v1/status", "/v1/market"] {
        let (status, _) = node.call(request("GET", path, &[], Vec::new())).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

/// Bodies of the wrong content type are refused with the one expected
/// named, even with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_types_are_refused_with_the_right_one_named() {
    let node = node().await;
    let bearer = node.bearer();
    for (path, sent, expected) in [
        ("/v1/jobs", Some("text/plain"), "application/json"),
        ("/v1/jobs", None, "application/json"),
        (
            "/v1/jobs",
            Some("application/x-www-form-urlencoded"),
            "application/json",
        ),
        ("/v1/blobs", Some("text/plain"), "application/octet-stream"),
        (
            "/v1/blobs",
            Some("multipart/form-data"),
            "application/octet-stream",
        ),
        ("/v1/txs", Some("text/plain"), "application/octet-stream"),
    ] {
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(sent) = sent {
            headers.push(("content-type", sent));
        }
        let (status, answer) = node
            .call(request("POST", path, &headers, b"{}".to_vec()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path} {sent:?}"
        );
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
    assert_eq!(node.market.blobs().size(&ContentId::of(b"{}")), None);
    node.assert_nothing_submitted();
    // A charset parameter is still JSON.
    let (status, answer) = node
        .submit(
            &[
                ("authorization", &bearer),
                ("content-type", "application/json; charset=utf-8"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

/// An `overflowing_submitter` holds the token and sends what no job file
/// may say: a wall time of u64::MAX ms (which the requester's deadline
/// arithmetic would wrap), outputs that climb out of the results folder,
/// no tasks, a billion tasks. Each is refused with what was wrong, and
/// nothing is recorded or escrowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_submitter_is_refused_and_nothing_is_submitted() {
    let node = node().await;
    let bearer = node.bearer();
    let module = node.upload("module.wasm", b"module").await;
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let cases: [(Breakage, &str); 6] = [
        (|s| s.limits.wall_time_ms = u64::MAX, "limits.wall_time_s"),
        (|s| s.limits.memory_bytes = u64::MAX, "limits.memory_mib"),
        (
            |s| s.tasks[0].outputs = vec!["../../.bashrc".into()],
            "leaves the output folder",
        ),
        (
            |s| s.tasks[0].outputs = vec!["/etc/passwd".into()],
            "is absolute",
        ),
        (|s| s.tasks.clear(), "the task set is empty"),
        (|s| s.name = "../../x".into(), "name"),
    ];
    for (change, expected) in cases {
        let mut bad = submission(module.clone());
        change(&mut bad);
        let (status, answer) = node
            .submit(&headers, serde_json::to_vec(&bad).unwrap())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "expected '{expected}' in: {error}"
        );
    }
    // A billion tasks do not fit in a body; a billion-task claim in a
    // field that does not exist is no job.
    let (status, _) = node
        .submit(&headers, br#"{"tasks": 1000000000}"#.to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    node.assert_nothing_submitted();
}

/// A submission whose blob id is not a content id (a path, short hex) is
/// refused as its body is read, with the reason, and nothing is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_blob_id_submitter_is_refused_and_nothing_is_submitted() {
    let node = node().await;
    let bearer = node.bearer();
    let module = node.upload("module.wasm", b"module").await;
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let good = serde_json::to_value(submission(module.clone())).unwrap();
    for forged in ["../../etc/passwd", "abcd", &"g".repeat(64)] {
        let mut bad = good.clone();
        bad["module"]["id"] = Value::from(forged);
        let (status, answer) = node
            .submit(&headers, serde_json::to_vec(&bad).unwrap())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("content id"), "{error}");
    }
    node.assert_nothing_submitted();
}

/// The token file is created owner-only, read back the same, and refused
/// with the fix named once others may read it.
#[cfg(unix)]
#[test]
fn the_token_file_is_private_and_an_exposed_one_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let created = ApiToken::load_or_create(dir.path()).unwrap();
    let path = ApiToken::path(dir.path());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        ApiToken::load(dir.path()).unwrap().bearer(),
        created.bearer()
    );
    assert_eq!(
        ApiToken::load_or_create(dir.path()).unwrap().bearer(),
        created.bearer()
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    for err in [
        ApiToken::load_or_create(dir.path()).unwrap_err(),
        ApiToken::load(dir.path()).unwrap_err(),
    ] {
        let err = err.to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(err.contains("api.token"), "{err}");
    }
    // A client never makes a token up.
    let empty = tempfile::tempdir().unwrap();
    assert!(ApiToken::load(empty.path()).is_err());
    assert!(!ApiToken::path(empty.path()).exists());
    assert!(
        format!("{created:?}")
            .find(&created.bearer()[7..])
            .is_none()
    );
}

/// `/metrics` counts what the node holds: a submitted job and its task
/// show up by state, with the ledger's height, in the format Prometheus
/// reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_jobs_and_tasks_the_node_holds() {
    let node = node().await;
    let scrape = || async {
        let bearer = node.bearer();
        let response = node
            .app
            .clone()
            .oneshot(request(
                "GET",
                "/metrics",
                &[("authorization", &bearer)],
                Vec::new(),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let before = scrape().await;
    assert!(before.ends_with("# EOF\n"), "{before}");
    for line in [
        "cairn_jobs{state=\"bidding\"} 0",
        "cairn_tasks{state=\"pending\"} 0",
        "cairn_messages_dropped_total{reason=\"malformed\"} 0",
        "cairn_provider_tasks_run_total 0",
    ] {
        assert!(
            before.lines().any(|l| l == line),
            "no '{line}' in:\n{before}"
        );
    }

    node.submit_one().await;
    let after = scrape().await;
    // The job is bidding, or queued if its window closed already.
    let jobs: u64 = after
        .lines()
        .filter(|l| l.starts_with("cairn_jobs{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(jobs, 1, "{after}");
    let line = "cairn_tasks{state=\"pending\"} 1";
    assert!(after.lines().any(|l| l == line), "no '{line}' in:\n{after}");
    // The ledger seals blocks on its own: the height scraped is at least
    // the escrow's block and at most the one after the scrape.
    let height: u64 = after
        .lines()
        .find_map(|l| l.strip_prefix("cairn_ledger_height "))
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no ledger height in:\n{after}"));
    assert!((1..=node.ledger.head().0).contains(&height), "{height}");
}

/// A job's results come in pages of at most `RESULTS_PAGE_MAX`, by task,
/// each saying where the next starts; a page out of bounds is a 400 that
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_in_bounded_pages_that_a_client_walks_to_the_end() {
    let node = node().await;
    let job = node.submit_one().await;
    let id: ContentId = job.parse().unwrap();
    let provider = Keypair::from_seed([6; 32]).public();
    // Every other task of 2,101, so a page's end is not a task's index.
    let records: Vec<cairn_api::TaskRecord> = (0..2_101u32)
        .filter(|t| t % 2 == 0)
        .map(|task| cairn_api::TaskRecord {
            task,
            provider,
            digest: ContentId::of(&task.to_be_bytes()),
            fuel_used: 1,
            success: true,
            outcome: "exited 0".into(),
            outputs: Vec::new(),
            stdout: None,
            stderr: None,
            receipt: String::new(),
        })
        .collect();
    node.market.store_results(&id, &records);
    let bearer = node.bearer();
    let get = |query: &str| {
        node.call(request(
            "GET",
            &format!("/v1/jobs/{job}/results{query}"),
            &[("authorization", &bearer)],
            Vec::new(),
        ))
    };
    let (status, first) = get("").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first: cairn_api::JobResults = serde_json::from_value(first).unwrap();
    assert_eq!(first.results.len(), cairn_api::RESULTS_PAGE_MAX as usize);
    assert_eq!(first.results.last().unwrap().task, 1_998);
    assert_eq!(first.next, Some(2_000));
    let (_, last) = get("?from=2000").await;
    let last: cairn_api::JobResults = serde_json::from_value(last).unwrap();
    assert_eq!(
        last.results.iter().map(|r| r.task).collect::<Vec<_>>(),
        (2_000..=2_100).step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(last.next, None);
    let (_, small) = get("?from=3&limit=2").await;
    let small: cairn_api::JobResults = serde_json::from_value(small).unwrap();
    assert_eq!(
        (
            small.results.iter().map(|r| r.task).collect::<Vec<_>>(),
            small.next
        ),
        (vec![4, 6], Some(8))
    );
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?from=-1",
        "?from=x",
        "?limit=99999999999",
    ] {
        let (status, answer) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {answer}"
        );
    }
}

/// A job's event stream opens with its status at once; a
/// `stream_hoarder` that keeps every stream the node allows open gets a
/// clear refusal for one more, and a stream closed makes room again; one
/// that hoards block streams (open to anyone) leaves job streams be. An
/// unknown job has no stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_hoarder_is_refused_past_the_bound_and_a_stream_opens_with_the_status() {
    use futures::StreamExt as _;
    let node = node().await;
    let job = node.submit_one().await;
    let bearer = node.bearer();
    let open = |path: String| {
        let app = node.app.clone();
        let bearer = bearer.clone();
        async move {
            app.oneshot(request(
                "GET",
                &path,
                &[("authorization", &bearer)],
                Vec::new(),
            ))
            .await
            .unwrap()
        }
    };
    let events = format!("/v1/jobs/{job}/events");

    let first = open(events.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = first.into_body().into_data_stream();
    let frame = body.next().await.unwrap().unwrap();
    let frame = String::from_utf8(frame.to_vec()).unwrap();
    let data = frame
        .strip_prefix("event: status\ndata: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one status event: {frame:?}"));
    let status: cairn_api::JobStatus = serde_json::from_str(data).unwrap();
    assert_eq!(status.id.to_string(), job);

    let mut held = vec![body];
    for _ in 1..super::events::STREAMS_MAX {
        let response = open(events.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response.into_body().into_data_stream());
    }
    let refused = open(events.clone()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(held.pop());
    assert_eq!(open(events.clone()).await.status(), StatusCode::OK);
    // Each kind has its own bound: block streams, open to anyone, cannot
    // take the places of job streams, nor these theirs.
    let mut blocks_held = Vec::new();
    for _ in 0..super::events::STREAMS_MAX {
        let response = open("/v1/blocks/events".into()).await;
        assert_eq!(response.status(), StatusCode::OK);
        blocks_held.push(response.into_body().into_data_stream());
    }
    let refused = open("/v1/blocks/events".into()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(held.pop());
    assert_eq!(open(events.clone()).await.status(), StatusCode::OK);
    drop(blocks_held);
    // A block stream opens with the last block (the escrow's), as
    // `GET /v1/blocks/{height}` shows it.
    let blocks = open("/v1/blocks/events".into()).await;
    assert_eq!(blocks.status(), StatusCode::OK);
    let mut body = blocks.into_body().into_data_stream();
    let mut last: Option<cairn_api::Block> = None;
    while last
        .as_ref()
        .is_none_or(|b| b.height < node.ledger.height())
    {
        let frame = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
        let data = frame
            .strip_prefix("event: block\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not one block event: {frame:?}"));
        let block: cairn_api::Block = serde_json::from_str(data).unwrap();
        assert!(last.as_ref().is_none_or(|b| block.height == b.height + 1));
        last = Some(block);
    }
    let last = last.unwrap();
    let (status, shown) = node
        .call(request(
            "GET",
            &format!("/v1/blocks/{}", last.height),
            &[],
            Vec::new(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_value::<cairn_api::Block>(shown).unwrap(),
        last
    );

    let unknown = ContentId::of(b"no such job");
    let response = open(format!("/v1/jobs/{unknown}/events")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// The console's page and files need no token (they hold no data), carry
/// a policy that lets them load and call this node only, and are refused
/// to a DNS-rebinding page like every route.
#[tokio::test]
async fn console_is_served_without_data_under_a_policy_that_reaches_only_this_node() {
    let node = node().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/console.js", "text/javascript"),
        ("/console.css", "text/css"),
    ] {
        let response = node
            .app
            .clone()
            .oneshot(request("GET", path, &[], Vec::new()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(rule), "{path}: {policy}");
        }
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let rebound = node
            .app
            .clone()
            .oneshot(
                Request::builder()
                    .uri(path)
                    .header(header::HOST, "attacker.example:8640")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    // The page runs no inline script: all of it is in console.js, which
    // the policy allows.
    let page = super::console::PAGE;
    assert!(page.contains(r#"<script src="/console.js" defer></script>"#));
    assert_eq!(page.matches("<script").count(), 1);
    let handler = page
        .split_whitespace()
        .find(|word| word.starts_with("on") && word.contains('='));
    assert_eq!(handler, None, "an inline event handler");
}

/// What the providers and prices routes show is what the core saw: none
/// before any bid, and the market's own key in its stats.
#[tokio::test]
async fn providers_and_prices_start_empty_and_the_market_names_its_key() {
    let node = node().await;
    let bearer = node.bearer();
    for (path, field) in [("/v1/providers", "providers"), ("/v1/prices", "prices")] {
        let (status, answer) = node
            .call(request(
                "GET",
                path,
                &[("authorization", &bearer)],
                Vec::new(),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(answer[field], Value::Array(Vec::new()), "{path}");
    }
    let (_, market) = node
        .call(request("GET", "/v1/market", &[], Vec::new()))
        .await;
    assert_eq!(
        market["key"],
        Keypair::from_seed([5; 32]).public().to_string()
    );
}

/// The OpenAPI document names every route the node serves, each with the
/// refusals it can give, and only routes the node serves: each documented
/// operation, called with the token and well-formed ids, is answered by
/// its route (never a 404 for the path itself, a 405 or a 5xx).
#[tokio::test]
async fn the_openapi_document_describes_every_route_and_only_those() {
    let node = node().await;
    let (status, doc) = node
        .call(request("GET", "/v1/openapi.json", &[], Vec::new()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let served = [
        ("get", "/v1/status"),
        ("get", "/v1/accounts/{key}"),
        ("get", "/v1/escrows/{job}"),
        ("get", "/v1/challenges/{provider}"),
        ("get", "/v1/blocks/{height}"),
        ("get", "/v1/blocks/events"),
        ("post", "/v1/txs"),
        ("get", "/v1/txs/{signer}/{nonce}"),
        ("get", "/v1/market"),
        ("post", "/v1/blobs"),
        ("get", "/v1/blobs/{id}"),
        ("post", "/v1/jobs"),
        ("get", "/v1/jobs"),
        ("get", "/v1/jobs/{id}"),
        ("get", "/v1/jobs/{id}/events"),
        ("get", "/v1/jobs/{id}/results"),
        ("post", "/v1/jobs/{id}/cancel"),
        ("post", "/v1/jobs/{id}/tasks"),
        ("post", "/v1/jobs/{id}/end"),
        ("post", "/v1/jobs/{id}/approval"),
        ("get", "/v1/providers"),
        ("get", "/v1/prices"),
        ("get", "/metrics"),
    ];
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            for refusal in ["403", "421", "500"] {
                assert!(
                    responses.contains_key(refusal),
                    "{method} {path}: no {refusal}"
                );
            }
            let secured = operation.get("security").is_some();
            assert_eq!(responses.contains_key("401"), secured, "{method} {path}");
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    let id = ContentId::of(b"x").to_string();
    let key = Keypair::from_seed([5; 32]).public().to_string();
    // Numbers in paths are refused as the document bounds them (int64),
    // in JSON like every refusal.
    for path in [
        "/v1/blocks/-1".to_string(),
        "/v1/blocks/x".to_string(),
        format!("/v1/txs/{key}/9223372036854775808"),
    ] {
        let (status, body) = node.call(request("GET", &path, &[], Vec::new())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("whole number"),
            "{body}"
        );
    }
    // A method a route does not serve is a 405 (with the token: without
    // it, a 401 comes first), whatever layers guard the methods it does.
    let bearer = node.bearer();
    let (status, _) = node
        .call(request(
            "DELETE",
            "/v1/jobs",
            &[("authorization", &bearer)],
            Vec::new(),
        ))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    for (method, path) in served {
        let path = path
            .replace("{key}", &key)
            .replace("{provider}", &key)
            .replace("{signer}", &key)
            .replace("{job}", &id)
            .replace("{id}", &id)
            .replace("{height}", "1")
            .replace("{nonce}", "0");
        let content_type = match path.as_str() {
            "/v1/jobs" => "application/json",
            _ => "application/octet-stream",
        };
        let response = node
            .app
            .clone()
            .oneshot(request(
                &method.to_uppercase(),
                &path,
                &[("authorization", &bearer), ("content-type", content_type)],
                b"{}".to_vec(),
            ))
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !status.is_server_error(),
            "{method} {path}: {status}"
        );
        if status == StatusCode::NOT_FOUND {
            // An unknown id, said so in the body: not an unknown route.
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert!(
                body["error"].as_str().unwrap().starts_with("no "),
                "{path}: {body}"
            );
        }
    }
}
