//! Writes the committed seed corpora under `fuzz/corpus/`: a few valid
//! encodings of each message, so the fuzzers start inside the formats
//! instead of spending their time finding a valid header. Run it again when
//! an encoding changes:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//! ```

use std::path::{Path, PathBuf};

use cairn_exec::tiles::Bitmap;
use cairn_exec::{Outcome, Snapshot};
use cairn_job::VerifyPolicy;
use cairn_ledger::{
    ACCEPTANCE_NAMESPACE, Acceptance, Accepted, COMMIT_NAMESPACE, Capabilities, Commit, Evidence, Lease,
    RECEIPT_NAMESPACE, Receipt, TxBody, TxKind, VERDICT_NAMESPACE, Verdict,
};
use cairn_market::{BID_NAMESPACE, Bid, ORDER_NAMESPACE, Offer, Order, ToolBuild};
use cairn_proto::{
    Assignment, CLAIM_NAMESPACE, Case, DisputeAsk, FileRef, Party, Report, Request, Response,
    StreamRef, Submission, SubmittedFile, SubmittedStream, SubmittedLimits, SubmittedTask, TaskLimits, Terms,
    TraceClaim, run_digest,
};
use cairn_wire::codec::Encode;
use cairn_wire::{Attested, ContentId, Keypair, OutputFile, ResultManifest, Signed};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let key = Keypair::from_seed([1; 32]);
    let id = ContentId::of;
    let file = |name: &str| FileRef {
        name: name.into(),
        id: id(name.as_bytes()),
        size: 1_000,
    };

    let order = Order {
        job: id(b"job"),
        runtime: "wasm".into(),
        module: id(b"module"),
        module_bytes: 1 << 20,
        tasks: 24,
        fuel_per_task_max: 1 << 30,
        memory_mib: 64,
        gpus: 1,
        gpu_memory_mib: 4096,
        price_max_ucairn_per_gfuel: 200,
        created_ms: 1_700_000_000_000,
        bid_window_ms: 50,
        draw_ppm: 250_000,
    };
    let bid = Bid {
        order: id(b"order"),
        price_ucairn_per_gfuel: 100,
        slots: 2,
        ready_in_ms: 10,
        offer: Offer {
            runtimes: vec!["wasm".into(), "ffmpeg@5.1.9".into()],
            cores: 2,
            memory_mib: 512,
            gpus: 2,
            gpu_model: "NVIDIA H200".into(),
            gpu_memory_mib: 143_771,
            gpu_driver: "550.54.15".into(),
            score_mfuel_per_s: 300,
            tools: vec![ToolBuild {
                runtime: "ffmpeg@5.1.9".into(),
                binary: id(b"/usr/bin/ffmpeg"),
                isa: "x86-64-v3".into(),
                threads: 1,
                gpu: "CUDA".into(),
            }],
        },
    };
    let lease = Lease {
        job: id(b"job"),
        requester: Keypair::from_seed([2; 32]).public(),
        provider: key.public(),
        price_ucairn_per_gfuel: 100,
        fuel_per_task_max: 1 << 30,
        expires_height: 1_000,
    };
    let receipt = Signed::sign(
        &key,
        RECEIPT_NAMESPACE,
        Receipt {
            lease: id(b"lease"),
            task: 7,
            digest: id(b"result"),
            fuel_used: 1_234,
            salt: [4; 32],
        },
    );
    let acceptance = Signed::sign(
        &Keypair::from_seed([2; 32]),
        ACCEPTANCE_NAMESPACE,
        Acceptance {
            lease: lease.clone(),
            results: vec![Accepted {
                task: 7,
                digest: id(b"result"),
                fuel_used: 1_234,
            }],
        },
    );
    let commit = Signed::sign(
        &key,
        COMMIT_NAMESPACE,
        Commit {
            lease: id(b"lease"),
            task: 7,
            commitment: [3; 32],
        },
    );
    let verdict = Verdict {
        job: id(b"job"),
        task: 7,
        wrong: id(b"result"),
        accused: key.public(),
        lease: id(b"lease"),
        winner: Keypair::from_seed([4; 32]).public(),
        position: 12,
        agreed: [5; 32],
        reached: [6; 32],
        run: [7; 32],
    };
    let mut verdict = Attested::new(verdict);
    for seed in [3, 5] {
        let validator = Keypair::from_seed([seed; 32]);
        let signature =
            Attested::signature(&validator, VERDICT_NAMESPACE, verdict.payload_unchecked());
        verdict.add(VERDICT_NAMESPACE, validator.public(), signature);
    }
    let terms = Terms {
        module: file("module.wasm"),
        inputs: vec![file("scene.txt")],
        limits: TaskLimits {
            fuel: 1_000_000_000,
            fuel_min: 1_000_000,
            memory_bytes: 64 << 20,
            wall_time_ms: 60_000,
            output_bytes: 1 << 20,
            stdout_bytes: 1 << 16,
            gpus: 0,
            gpu_memory_mib: 0,
        },
    };
    let assignment = Assignment {
        task: 7,
        args: vec!["--frame".into(), "7".into()],
        outputs: vec!["frame-0007.png".into()],
        seed: [5; 32],
        fuel: 1 << 29,
        inputs: vec![file("segment-00007.ts")],
    };
    let claim = Signed::sign(
        &key,
        CLAIM_NAMESPACE,
        TraceClaim {
            lease: id(b"lease"),
            task: 7,
            run: run_digest(&terms, &assignment),
            positions: 100,
            digest: id(b"result"),
            points: vec![(12, [5; 32]), (13, [8; 32])],
        },
    );

    // The first byte picks the payload type (see the target).
    let envelopes = [
        (0u8, Signed::sign(&key, ORDER_NAMESPACE, order).to_bytes()),
        (1, Signed::sign(&key, BID_NAMESPACE, bid.clone()).to_bytes()),
        (2, receipt.to_bytes()),
        (3, commit.to_bytes()),
        (4, acceptance.to_bytes()),
        (5, verdict.encode().to_vec()),
        (6, claim.to_bytes()),
    ];
    write(
        &root.join("wire_envelope"),
        envelopes.map(|(kind, bytes)| prefixed(kind, bytes)),
    );

    let requests = [
        Request::Bid(Signed::sign(&key, BID_NAMESPACE, bid)),
        Request::Decline {
            order: id(b"order"),
            reason: "busy".into(),
        },
        Request::Lease {
            lease: lease.clone(),
            slots: 2,
            terms: Terms {
                module: file("module.wasm"),
                inputs: vec![file("scene.json")],
                limits: TaskLimits {
                    fuel: 1 << 30,
                    fuel_min: 1 << 20,
                    memory_bytes: 64 << 20,
                    wall_time_ms: 300_000,
                    output_bytes: 4 << 20,
                    stdout_bytes: 16 << 10,
                    gpus: 1,
                    gpu_memory_mib: 4096,
                },
            },
        },
        Request::Pull {
            lease: id(b"lease"),
            want: 4,
            reports: vec![
                Report::Committed(commit.clone()),
                Report::Revealed {
                    receipt: receipt.clone(),
                    code: 0,
                    exit: 0,
                    outcome: "exited successfully".into(),
                    outputs: vec![file("frame-0007.png")],
                    stdout: StreamRef::of(b"the answer is 42\n"),
                    stderr: StreamRef::of(b""),
                },
                Report::Failed {
                    task: 3,
                    reason: "no input".into(),
                },
            ],
            held: vec![3, 7, 9],
            awaiting: vec![2, 5],
        },
        Request::Blob {
            id: id(b"blob"),
            offset: 4 << 20,
            len: 4 << 20,
        },
        Request::Dispute {
            lease: id(b"lease"),
            task: 7,
            ask: DisputeAsk::Length,
        },
        Request::Dispute {
            lease: id(b"lease"),
            task: 7,
            ask: DisputeAsk::Hashes(vec![1, 50, 99]),
        },
        Request::Dispute {
            lease: id(b"lease"),
            task: 7,
            ask: DisputeAsk::Snapshot(17),
        },
        Request::Adjudicate(Box::new(Case {
            terms: terms.clone(),
            assignment: assignment.clone(),
            position: 12,
            accused: Party {
                receipt: receipt.clone(),
                claims: vec![claim.clone()],
            },
            state: Some(file("state")),
            winner: None,
        })),
    ];
    let responses = [
        Response::Ack,
        Response::Refused("no".into()),
        Response::LeaseSigned(key.sign(b"lease")),
        Response::Tasks {
            stored: 2,
            tasks: vec![Assignment {
                task: 9,
                args: vec!["--frame".into(), "9".into()],
                outputs: vec!["frame-0009.png".into()],
                seed: [5; 32],
                fuel: 1 << 29,
                inputs: vec![file("segment-00009.ts")],
            }],
            finished: false,
            reveal: vec![4, 8],
            accepted: Some(acceptance.clone()),
        },
        Response::Claim(claim.clone()),
        Response::Attestation(key.sign(b"verdict")),
        Response::Snapshot(file("snapshot")),
        Response::Preparing,
        Response::Blob {
            size: 99,
            encoded: bytes::Bytes::from_static(b"encoded range"),
        },
    ];
    // The first byte picks request (even) or answer (odd).
    let messages = requests
        .iter()
        .map(|r| prefixed(0, cairn_proto::to_bytes(r)))
        .chain(
            responses
                .iter()
                .map(|r| prefixed(1, cairn_proto::to_bytes(r))),
        );
    write(&root.join("market_message"), messages);

    let chain = id(b"genesis");
    let tx = |nonce, kind| TxBody { chain, nonce, kind }.sign(&key).to_bytes();
    let txs = [
        tx(
            0,
            TxKind::Transfer {
                to: Keypair::from_seed([2; 32]).public(),
                amount: 5,
            },
        ),
        tx(
            1,
            TxKind::RegisterProvider {
                capabilities: Capabilities {
                    cores: 2,
                    memory_mib: 512,
                    gpus: 0,
                    score: 300,
                },
                endpoint: "/ip4/127.0.0.1/tcp/4001".into(),
                stake: 1_000,
            },
        ),
        tx(
            2,
            TxKind::OpenEscrow {
                job: id(b"job"),
                amount: 50,
            },
        ),
        tx(
            3,
            TxKind::RecordLease {
                provider_signature: key.sign(b"lease"),
                lease,
            },
        ),
        tx(
            4,
            TxKind::TopUpEscrow {
                job: id(b"job"),
                amount: 25,
            },
        ),
        tx(
            5,
            TxKind::Slash {
                evidence: Box::new(Evidence::WrongResult {
                    receipt: receipt.clone(),
                    verdict,
                    clawback: vec![(id(b"lease"), 3)],
                    winner_receipt: Some(receipt.clone()),
                }),
            },
        ),
        tx(
            6,
            TxKind::Slash {
                evidence: Box::new(Evidence::BadReveal {
                    commit: commit.clone(),
                    receipt: receipt.clone(),
                }),
            },
        ),
        tx(7, TxKind::Challenge { commit }),
        tx(
            8,
            TxKind::Reveal {
                receipts: vec![receipt.clone()],
            },
        ),
        tx(9, TxKind::CloseEscrow { job: id(b"job") }),
        tx(
            11,
            TxKind::Claim {
                acceptances: vec![acceptance.clone()],
            },
        ),
        tx(
            10,
            TxKind::Slash {
                evidence: Box::new(Evidence::MisstatedFuel {
                    receipt: receipt.clone(),
                    manifest: ResultManifest {
                        code: 0,
                        exit: 0,
                        text: "exited with status 0".into(),
                        fuel_used: 1_000,
                        stdout: id(b"out"),
                        stderr: id(b""),
                        outputs: vec![OutputFile {
                            path: "frame-0007.png".into(),
                            size_bytes: 1_000,
                            id: id(b"frame"),
                        }],
                    },
                }),
            },
        ),
    ];
    write(&root.join("ledger_tx"), txs);

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let jobs = [
        examples.join("hashsearch.toml"),
        examples.join("render/job.toml"),
        examples.join("transcode/job.toml"),
        examples.join("transcode/live.toml"),
        examples.join("blender/job.toml"),
    ]
    .map(|path| std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    write(&root.join("job_file"), jobs);

    let submission = |verify: VerifyPolicy| Submission {
        name: "orbit".into(),
        runtime: "wasm".into(),
        module: SubmittedFile {
            name: "module.wasm".into(),
            id: id(b"module"),
            size: 1 << 20,
        },
        inputs: vec![SubmittedFile {
            name: "scene.json".into(),
            id: id(b"scene"),
            size: 1_000,
        }],
        tasks: (0..2)
            .map(|frame| SubmittedTask {
                args: vec!["--frame".into(), frame.to_string()],
                outputs: vec![format!("frame-{frame:04}.png")],
                seed: id(&[frame]).to_string(),
                fuel: (frame == 1).then_some(1 << 29),
                inputs: vec![SubmittedFile {
                    name: format!("segment-{frame:05}.ts"),
                    id: id(&[frame, 1]),
                    size: 2_000,
                }],
            })
            .collect(),
        limits: SubmittedLimits {
            fuel: 1 << 30,
            memory_bytes: 64 << 20,
            wall_time_ms: 300_000,
            output_bytes: 4 << 20,
            stdout_bytes: 16 << 10,
            gpus: 0,
            gpu_memory_mib: 0,
        },
        budget_ucairn: 50_000_000,
        price_max_ucairn_per_gfuel: 200,
        verify: verify.into(),
        approval_window_s: None,
        // The adaptive one is a live stream that takes more tasks later.
        stream: matches!(verify, VerifyPolicy::Adaptive { .. })
            .then_some(SubmittedStream { tasks_at_once: 8 }),
    };
    let submissions = [
        VerifyPolicy::None,
        VerifyPolicy::Replicate { replicas: 2 },
        VerifyPolicy::Spot { probability: 0.1 },
        VerifyPolicy::Adaptive { confidence: 0.99 },
    ]
    .map(|verify| serde_json::to_vec_pretty(&submission(verify)).expect("JSON"));
    write(&root.join("api_submission"), submissions);

    let snapshot = |halted| Snapshot {
        memory: vec![0, 1, 2, 3, 0, 0, 0, 0],
        globals: vec![(0, 65_536), (1, 7)],
        saved: vec![3, u128::MAX, 0],
        descriptors: vec![cairn_exec::Descriptor {
            fd: 5,
            path: "/input/scene.json".into(),
            dirflags: 1,
            oflags: 0,
            rights: 0x2_0000_0002,
            inheriting: 0,
            fdflags: 0,
            position: Some(4_096),
        }],
        freed_fd: Some(6),
        stdout: b"frame 7\n".to_vec(),
        stderr: Vec::new(),
        outputs: vec![("frame-0007.png".into(), vec![0x89, b'P', b'N', b'G'])],
        fuel_used: 1_234_567,
        clocks: [1_000, 2_000],
        random: [3, 4],
        budget: [4, 8, 0, 1],
        halted,
    };
    let snapshots = [
        None,
        Some(Outcome::Exited(0)),
        Some(Outcome::OutputLimit {
            stream: "stdout",
            limit: 16_384,
        }),
        Some(Outcome::Trap("unreachable".into())),
    ]
    .map(|halted| snapshot(halted).to_bytes());
    write(&root.join("snapshot"), snapshots);

    // Tiles as providers return them: a 24-bit and a 32-bit bitmap whose
    // rows need padding.
    let bitmaps = [(3, 5, 3), (4, 3, 2)].map(|(bytes_per_pixel, width, height)| {
        Bitmap {
            width,
            height,
            bytes_per_pixel,
            pixels: (0..width * height * u32::from(bytes_per_pixel))
                .map(|i| i as u8)
                .collect(),
        }
        .encode()
    });
    write(&root.join("bitmap"), bitmaps);
}

fn prefixed(kind: u8, bytes: Vec<u8>) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(bytes);
    out
}

/// Replaces `dir`'s seeds with `seeds`, each named by its content, so
/// rerunning changes nothing. The folders hold only what this writes: a
/// crash the fuzzers find becomes a unit test in the decoder's crate.
/// Replaces the generated seeds in `dir` (named by the first 16 hex digits
/// of their digest) with `seeds`. Seeds named otherwise are inputs a
/// fuzzer found, kept by hand as regressions: they stay.
fn write(dir: &PathBuf, seeds: impl IntoIterator<Item = Vec<u8>>) {
    std::fs::create_dir_all(dir).expect("the corpus folder");
    for entry in std::fs::read_dir(dir).expect("the corpus folder read") {
        let path = entry.expect("a corpus entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            std::fs::remove_file(&path).expect("an old seed removed");
        }
    }
    for seed in seeds {
        let name = ContentId::of(&seed).to_string();
        std::fs::write(dir.join(&name[..16]), seed).expect("a seed written");
    }
}
