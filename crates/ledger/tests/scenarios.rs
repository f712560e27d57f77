//! The life of a job on the ledger, and every refusal with its reason.

use cairn_ledger::{
    ACCEPTANCE_NAMESPACE, Acceptance, Accepted, CLOSE_NOTICE_BLOCKS, COMMIT_NAMESPACE,
    Capabilities, Commit, EVIDENCE_WINDOW_BLOCKS, Evidence, Genesis, LEASE_BLOCKS_MAX, Lease,
    Params, RECEIPT_NAMESPACE, REVEAL_WINDOW_BLOCKS, Receipt, SettleOutcome, State, TxBody,
    TxError, TxKind, VERDICT_NAMESPACE, Verdict, WHOLE_TASK, admit, admit_batch, decode,
};
use cairn_wire::{Attested, ContentId, Keypair, ResultManifest, Signed};

#[derive(Clone)]
struct Net {
    state: State,
    requester: Keypair,
    provider: Keypair,
    other: Keypair,
    validators: Vec<Keypair>,
}

const JOB: &[u8] = b"job-1";

impl Net {
    fn new() -> Self {
        Self::with_validator_seeds(&[10, 11, 12, 13])
    }

    /// A net whose validators' keys have these seeds (the requester's is
    /// 1, the provider's 2, the other key's 3).
    fn with_validator_seeds(seeds: &[u8]) -> Self {
        let requester = Keypair::from_seed([1; 32]);
        let provider = Keypair::from_seed([2; 32]);
        let other = Keypair::from_seed([3; 32]);
        let validators: Vec<Keypair> = seeds.iter().map(|&i| Keypair::from_seed([i; 32])).collect();
        let genesis = Genesis::with_balances(
            "scenario",
            &[requester.public(), provider.public(), other.public()],
            10_000_000_000,
        )
        .with_validators(&validators.iter().map(Keypair::public).collect::<Vec<_>>());
        Self {
            state: genesis.state().unwrap(),
            requester,
            provider,
            other,
            validators,
        }
    }

    fn send(&mut self, key: &Keypair, kind: TxKind) -> Result<Vec<SettleOutcome>, TxError> {
        let body = TxBody {
            chain: self.state.chain(),
            nonce: self.state.account(&key.public()).nonce,
            kind,
        };
        let verified = admit(body.sign(key))?;
        let before = self.state.clone();
        let result = self.state.apply(&verified);
        if result.is_err() {
            assert_eq!(
                self.state, before,
                "a refused transaction changed the state"
            );
        }
        assert_eq!(
            self.state.total_accounted(),
            u128::from(self.state.supply())
        );
        result
    }

    fn register(&mut self) {
        let provider = self.provider.public();
        let stake = self.state.params().stake_min;
        self.send(
            &self.provider.clone(),
            TxKind::RegisterProvider {
                capabilities: Capabilities {
                    cores: 2,
                    memory_mib: 4096,
                    gpus: 0,
                    score: 10,
                },
                endpoint: "/ip4/127.0.0.1/tcp/7000".into(),
                stake,
            },
        )
        .unwrap();
        assert!(self.state.can_bid(&provider));
    }

    /// Locks `amount` for the job as its requester.
    fn open_escrow(&mut self, amount: u64) {
        let job = ContentId::of(JOB);
        self.send(&self.requester.clone(), TxKind::OpenEscrow { job, amount })
            .unwrap();
    }

    fn lease(&mut self, expires_height: u64) -> Lease {
        let lease = Lease {
            job: ContentId::of(JOB),
            requester: self.requester.public(),
            provider: self.provider.public(),
            price_ucairn_per_gfuel: 1_000,
            fuel_per_task_max: 50_000_000_000,
            expires_height,
        };
        let provider_signature = lease.sign(&self.provider);
        self.send(
            &self.requester.clone(),
            TxKind::RecordLease {
                lease: lease.clone(),
                provider_signature,
            },
        )
        .unwrap();
        lease
    }

    fn receipt(&self, lease: &Lease, task: u64, fuel: u64, digest: &[u8]) -> Signed<Receipt> {
        Signed::sign(
            &self.provider,
            RECEIPT_NAMESPACE,
            Receipt {
                lease: lease.id(),
                task,
                digest: ContentId::of(digest),
                fuel_used: fuel,
                salt: [0; 32],
                run: [0; 32],
            },
        )
    }
}

#[test]
fn a_job_locks_pays_and_refunds() {
    let mut net = Net::new();
    let requester = Keypair::from_seed([1; 32]);
    let job = ContentId::of(JOB);
    net.register();
    net.open_escrow(1_000_000);
    assert_eq!(
        net.state.account(&requester.public()).balance,
        10_000_000_000 - 1_000_000
    );
    let lease = net.lease(10);
    let provider_before = net.state.account(&net.provider.public()).balance;

    let settlement = acceptance(
        &requester,
        &lease,
        &[
            (0, b"a", 20_000_000_000), // 20 Gfuel at 1000/Gfuel = 20000
            (1, b"b", 10_000_000_000),
            (0, b"a", 20_000_000_000), // duplicate in the batch
            (2, b"c", 60_000_000_000), // above the per-task maximum
        ],
    );
    let outcomes = net
        .send(
            &requester,
            TxKind::Claim {
                acceptances: vec![settlement],
            },
        )
        .unwrap();
    assert_eq!(
        outcomes[0],
        SettleOutcome::Paid {
            paid: 19_800,
            fee: 200
        }
    );
    assert_eq!(
        outcomes[1],
        SettleOutcome::Paid {
            paid: 9_900,
            fee: 100
        }
    );
    assert_eq!(outcomes[2], SettleOutcome::Refused("already settled"));
    assert_eq!(
        outcomes[3],
        SettleOutcome::Refused("fuel above the lease's per-task maximum")
    );
    assert_eq!(
        net.state.account(&net.provider.public()).balance,
        provider_before + 29_700
    );
    assert_eq!(net.state.fee_pool(), 300);
    assert_eq!(net.state.escrow(&job).unwrap().balance, 1_000_000 - 30_000);
    let reputation = net
        .state
        .provider(&net.provider.public())
        .unwrap()
        .reputation;
    assert_eq!(
        (reputation.tasks_settled, reputation.fuel_settled),
        (2, 30_000_000_000)
    );

    // Settling the same result in a later transaction pays nothing.
    let again = acceptance(&requester, &lease, &[(1, b"b", 10_000_000_000)]);
    let outcomes = net
        .send(
            &requester,
            TxKind::Claim {
                acceptances: vec![again],
            },
        )
        .unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused("already settled")]);

    // While the lease is live, closing gives its provider notice: the
    // escrow takes no new lease, and returns the rest only after the lease
    // ends (here before the notice would).
    net.send(&requester, TxKind::CloseEscrow { job }).unwrap();
    assert!(net.state.escrow(&job).unwrap().closing);
    let err = net
        .send(&requester, TxKind::CloseEscrow { job })
        .unwrap_err();
    assert_eq!(err, TxError::LeasesOutstanding { until: 10 });
    let mut another = lease.clone();
    another.expires_height = 9;
    let provider_signature = another.sign(&net.provider);
    let err = net
        .send(
            &requester,
            TxKind::RecordLease {
                lease: another,
                provider_signature,
            },
        )
        .unwrap_err();
    assert_eq!(err, TxError::EscrowClosing(job));
    net.state.begin_block(11, 0);
    let balance = net.state.account(&requester.public()).balance;
    net.send(&requester, TxKind::CloseEscrow { job }).unwrap();
    assert_eq!(
        net.state.account(&requester.public()).balance,
        balance + 970_000
    );
    assert!(net.state.escrow(&job).is_none());
}

/// `signer`'s acceptance of `results` (task, digest, fuel) under `lease`.
fn acceptance(
    signer: &Keypair,
    lease: &Lease,
    results: &[(u64, &[u8], u64)],
) -> Signed<Acceptance> {
    Signed::sign(
        signer,
        ACCEPTANCE_NAMESPACE,
        Acceptance {
            lease: lease.clone(),
            results: results
                .iter()
                .map(|&(task, digest, fuel_used)| Accepted {
                    task,
                    digest: ContentId::of(digest),
                    fuel_used,
                })
                .collect(),
        },
    )
}

/// An `underpayer` requester signs a second, smaller acceptance of a
/// result it accepted, and claims it before its provider claims the true
/// one: the provider's claim pays the difference, so it ends with what one
/// claim of the true acceptance pays, to the micro-unit, and no more.
#[test]
fn an_underpayer_claiming_a_smaller_acceptance_first_does_not_shortchange_its_provider() {
    let mut net = Net::new();
    let (underpayer, provider) = (net.requester.clone(), net.provider.clone());
    let job = ContentId::of(JOB);
    net.register();
    net.open_escrow(1_000_000);
    let lease = net.lease(10);
    let before = net.state.account(&provider.public()).balance;
    let fees_before = net.state.fee_pool();
    let honest = acceptance(&underpayer, &lease, &[(0, b"a", 20_000_000_000)]);
    let smaller = acceptance(&underpayer, &lease, &[(0, b"a", 1_000_000_000)]);
    let claim = |acceptances: Vec<Signed<Acceptance>>| TxKind::Claim { acceptances };
    assert_eq!(
        net.send(&underpayer, claim(vec![smaller.clone()])).unwrap(),
        [SettleOutcome::Paid { paid: 990, fee: 10 }]
    );
    assert_eq!(
        net.send(&provider, claim(vec![honest.clone()])).unwrap(),
        [SettleOutcome::Paid {
            paid: 18_810,
            fee: 190
        }]
    );
    assert_eq!(
        net.state.account(&provider.public()).balance,
        before + 19_800
    );
    assert_eq!(net.state.escrow(&job).unwrap().balance, 1_000_000 - 20_000);
    assert_eq!(net.state.fee_pool(), fees_before + 200);
    assert_eq!(net.state.paid(&lease.id(), 0), Some(19_800));
    // Paid in full: neither acceptance again moves anything more.
    for kind in [claim(vec![honest]), claim(vec![smaller])] {
        assert_eq!(
            net.send(&underpayer, kind).unwrap(),
            [SettleOutcome::Refused("already settled")]
        );
    }
}

#[test]
fn a_provider_claims_what_its_requester_accepted_and_never_settled() {
    let mut net = Net::new();
    let (requester, provider, other) = (
        net.requester.clone(),
        net.provider.clone(),
        net.other.clone(),
    );
    let job = ContentId::of(JOB);
    net.register();
    net.open_escrow(1_000_000);
    let lease = net.lease(10);
    let before = net.state.account(&provider.public()).balance;

    // The requester accepted two results and settles neither: the provider
    // posts the acceptance itself, and is paid as a settlement would pay.
    let accepted = acceptance(
        &requester,
        &lease,
        &[(0, b"a", 20_000_000_000), (1, b"b", 10_000_000_000)],
    );
    let claim = |acceptances: Vec<Signed<Acceptance>>| TxKind::Claim { acceptances };
    let outcomes = net.send(&provider, claim(vec![accepted.clone()])).unwrap();
    assert_eq!(
        outcomes,
        [
            SettleOutcome::Paid {
                paid: 19_800,
                fee: 200
            },
            SettleOutcome::Paid {
                paid: 9_900,
                fee: 100
            },
        ]
    );
    assert_eq!(
        net.state.account(&provider.public()).balance,
        before + 29_700
    );
    assert_eq!(net.state.escrow(&job).unwrap().balance, 1_000_000 - 30_000);

    // Paid once: claimed again, by anyone, or settled by the requester
    // afterwards, nothing more moves.
    let outcomes = net.send(&other, claim(vec![accepted])).unwrap();
    assert_eq!(outcomes, vec![SettleOutcome::Refused("already settled"); 2]);
    let settled = acceptance(&requester, &lease, &[(1, b"b", 10_000_000_000)]);
    let outcomes = net.send(&requester, claim(vec![settled])).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused("already settled")]);

    // An acceptance not signed by the lease's requester (here by the
    // provider itself) pays nothing; nor fuel above the lease's maximum.
    let forged = acceptance(&provider, &lease, &[(2, b"c", 1_000_000_000)]);
    let greedy = acceptance(&requester, &lease, &[(3, b"d", 60_000_000_000)]);
    let outcomes = net.send(&provider, claim(vec![forged, greedy])).unwrap();
    assert_eq!(
        outcomes,
        [
            SettleOutcome::Refused("not signed by the lease's requester"),
            SettleOutcome::Refused("fuel above the lease's per-task maximum"),
        ]
    );
    assert_eq!(
        net.state.account(&provider.public()).balance,
        before + 29_700
    );

    // Closing the escrow gives notice while the lease lives; claims still
    // draw on it meanwhile, so a requester cannot close its way out of
    // paying what it accepted.
    net.send(&requester, TxKind::CloseEscrow { job }).unwrap();
    let late = acceptance(&requester, &lease, &[(4, b"e", 1_000_000_000)]);
    let outcomes = net.send(&provider, claim(vec![late.clone()])).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Paid { paid: 990, fee: 10 }]);
    net.state.begin_block(11, 0);
    net.send(&requester, TxKind::CloseEscrow { job }).unwrap();
    let outcomes = net.send(&provider, claim(vec![late])).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused("already settled")]);
    // After the close, what it accepted is still owed: its balance pays,
    // as the escrow would have.
    let after_close = acceptance(&requester, &lease, &[(5, b"f", 1_000_000_000)]);
    let (requester_before, provider_before) = (
        net.state.account(&requester.public()).balance,
        net.state.account(&provider.public()).balance,
    );
    let outcomes = net.send(&provider, claim(vec![after_close])).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Paid { paid: 990, fee: 10 }]);
    assert_eq!(
        net.state.account(&requester.public()).balance,
        requester_before - 1_000
    );
    assert_eq!(
        net.state.account(&provider.public()).balance,
        provider_before + 990
    );

    // The encoding round-trips, and a claim over the per-transaction bound
    // does not decode.
    let body = TxBody {
        chain: net.state.chain(),
        nonce: 0,
        kind: claim(vec![acceptance(&requester, &lease, &[(6, b"g", 1)])]),
    };
    let tx = body.sign(&provider);
    assert_eq!(decode(&tx.to_bytes()).unwrap(), tx);
    let many: Vec<(u64, &[u8], u64)> = (0..2_049).map(|t| (t, &b"h"[..], 1)).collect();
    let body = TxBody {
        chain: net.state.chain(),
        nonce: 0,
        kind: claim(vec![
            acceptance(&requester, &lease, &many),
            acceptance(&requester, &lease, &many),
        ]),
    };
    assert!(decode(&body.sign(&provider).to_bytes()).is_err());
}

/// A lease's record and a claim under it reach blocks through different
/// validators' mempools, so the claim may come first (the simulation
/// found it: the claim was refused as under an unknown lease, and the
/// provider never paid); and a requester may never record its leases at
/// all. An acceptance names its lease's terms, so the claim pays either
/// way, once, and only for a lease a `RecordLease` could have recorded,
/// while it could be on the ledger: a replay after the lease would have
/// been forgotten pays nothing. The lease taken holds its provider's stake
/// as a recorded one does (an attacker's review found a provider could
/// otherwise claim first, then unstake and escape any slash).
#[test]
fn a_claim_under_a_lease_never_recorded_pays_once_while_the_lease_could_live() {
    let mut net = Net::new();
    let (requester, provider) = (net.requester.clone(), net.provider.clone());
    let job = ContentId::of(JOB);
    net.register();
    net.open_escrow(1_000_000);
    let lease = Lease {
        job,
        requester: requester.public(),
        provider: provider.public(),
        price_ucairn_per_gfuel: 1_000,
        fuel_per_task_max: 50_000_000_000,
        expires_height: 10,
    };
    let before = net.state.account(&provider.public()).balance;
    let claim = |acceptance: Signed<Acceptance>| TxKind::Claim {
        acceptances: vec![acceptance],
    };
    let accepted = acceptance(&requester, &lease, &[(0, b"a", 20_000_000_000)]);

    // Not the requester's signature, a provider with no stake, another
    // requester's job, or nothing to pay: no lease is taken.
    let forged = acceptance(&provider, &lease, &[(0, b"a", 20_000_000_000)]);
    let unstaked = Lease {
        provider: net.other.public(),
        ..lease.clone()
    };
    let unstaked = acceptance(&requester, &unstaked, &[(0, b"a", 1)]);
    let strangers = Lease {
        requester: net.other.public(),
        ..lease.clone()
    };
    let strangers = acceptance(&net.other, &strangers, &[(0, b"a", 1)]);
    let greedy = acceptance(&requester, &lease, &[(0, b"a", 60_000_000_000)]);
    let outcomes = net
        .send(
            &provider,
            TxKind::Claim {
                acceptances: vec![forged, unstaked, strangers, greedy],
            },
        )
        .unwrap();
    assert_eq!(
        outcomes,
        [
            SettleOutcome::Refused("not signed by the lease's requester"),
            SettleOutcome::Refused("unknown lease, whose provider is not staked"),
            SettleOutcome::Refused("unknown lease, for another requester's job"),
            SettleOutcome::Refused("fuel above the lease's per-task maximum"),
        ]
    );
    assert!(net.state.lease(&lease.id()).is_none());

    let outcomes = net.send(&provider, claim(accepted.clone())).unwrap();
    assert_eq!(
        outcomes,
        [SettleOutcome::Paid {
            paid: 19_800,
            fee: 200
        }]
    );
    assert_eq!(
        net.state.account(&provider.public()).balance,
        before + 19_800
    );
    assert_eq!(
        net.state.lease(&lease.id()),
        Some(&lease),
        "kept as recorded"
    );
    assert_eq!(
        net.state.provider(&provider.public()).unwrap().liable_until,
        lease.expires_height + EVIDENCE_WINDOW_BLOCKS,
        "its provider's stake answers for it"
    );
    // The requester's record, arriving late, finds it there.
    let provider_signature = lease.sign(&provider);
    let record = TxKind::RecordLease {
        lease: lease.clone(),
        provider_signature,
    };
    let err = net.send(&requester, record).unwrap_err();
    assert_eq!(err, TxError::LeaseExists(lease.id()));
    let outcomes = net.send(&provider, claim(accepted.clone())).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused("already settled")]);

    // Once the lease would have been forgotten (and what it paid with it),
    // neither its replay nor another lease as old is taken.
    net.state
        .begin_block(lease.expires_height + EVIDENCE_WINDOW_BLOCKS, 0);
    assert!(net.state.lease(&lease.id()).is_none(), "forgotten");
    let too_late = "unknown lease, too late (or too far ahead) to take from its acceptance";
    let outcomes = net.send(&provider, claim(accepted)).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused(too_late)]);
    // Nor one that lives longer than a recorded lease may.
    let height = net.state.height();
    let far = Lease {
        expires_height: height + LEASE_BLOCKS_MAX + 1,
        ..lease.clone()
    };
    let outcomes = net
        .send(
            &provider,
            claim(acceptance(&requester, &far, &[(1, b"b", 1)])),
        )
        .unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused(too_late)]);
    assert_eq!(
        net.state.account(&provider.public()).balance,
        before + 19_800,
        "paid once"
    );
}

#[test]
fn a_provider_slashed_under_a_requester_cannot_claim_what_it_accepted_before() {
    let mut net = Net::new();
    let (requester, provider) = (net.requester.clone(), net.provider.clone());
    net.register();
    net.open_escrow(1_000_000);
    let lease = net.lease(10);
    let accepted = acceptance(&requester, &lease, &[(0, b"a", 1_000_000_000)]);
    let evidence = Evidence::Equivocation {
        first: net.receipt(&lease, 1, 1_000_000_000, b"one"),
        second: net.receipt(&lease, 1, 1_000_000_000, b"two"),
    };
    net.send(
        &requester,
        TxKind::Slash {
            evidence: Box::new(evidence),
        },
    )
    .unwrap();
    let before = net.state.account(&provider.public()).balance;
    let outcomes = net
        .send(
            &provider,
            TxKind::Claim {
                acceptances: vec![accepted],
            },
        )
        .unwrap();
    assert_eq!(
        outcomes,
        [SettleOutcome::Refused(
            "its provider was slashed on a lease of this requester"
        )]
    );
    assert_eq!(net.state.account(&provider.public()).balance, before);
}

/// A `self_dealer` posts one claim in which one account is paid as a
/// provider under one lease and pays as a requester under another (its own
/// escrow closed): both happen, and no token is made (the ledger's supply
/// check runs after every transaction in `Net::send`). And a requester that
/// reopens a tiny escrow under the same job id, or drains it, does not stop
/// its accepted results from being paid: its balance pays.
#[test]
fn an_account_paying_and_paid_in_one_claim_ends_with_both_and_a_drained_escrow_does_not_block_claims()
 {
    let mut net = Net::new();
    let (requester, provider, other) = (
        net.requester.clone(),
        net.provider.clone(),
        net.other.clone(),
    );
    net.register();
    // `other` registers as a provider too, and leases from `provider` on a
    // job of its own.
    let stake_min = net.state.params().stake_min;
    net.send(
        &other,
        TxKind::RegisterProvider {
            capabilities: Capabilities::default(),
            endpoint: "/ip4/127.0.0.1/tcp/7001".into(),
            stake: stake_min,
        },
    )
    .unwrap();
    net.open_escrow(1_000_000);
    let lease = net.lease(10); // requester → provider, on JOB
    let job2 = ContentId::of(b"job-2");
    net.send(
        &provider,
        TxKind::OpenEscrow {
            job: job2,
            amount: 10,
        },
    )
    .unwrap();
    let lease2 = Lease {
        job: job2,
        requester: provider.public(),
        provider: other.public(),
        price_ucairn_per_gfuel: 1_000,
        fuel_per_task_max: 50_000_000_000,
        expires_height: 10,
    };
    let provider_signature = lease2.sign(&other);
    net.send(
        &provider,
        TxKind::RecordLease {
            lease: lease2.clone(),
            provider_signature,
        },
    )
    .unwrap();
    // The provider's escrow cannot pay 1,000 µCAIRN: its balance does.
    let paid_to_it = acceptance(&requester, &lease, &[(0, b"a", 1_000_000_000)]);
    let owed_by_it = acceptance(&provider, &lease2, &[(0, b"b", 1_000_000_000)]);
    let (p_before, o_before) = (
        net.state.account(&provider.public()).balance,
        net.state.account(&other.public()).balance,
    );
    let outcomes = net
        .send(
            &other,
            TxKind::Claim {
                acceptances: vec![paid_to_it, owed_by_it],
            },
        )
        .unwrap();
    assert_eq!(
        outcomes,
        vec![SettleOutcome::Paid { paid: 990, fee: 10 }; 2]
    );
    assert_eq!(
        net.state.account(&provider.public()).balance,
        p_before + 990 - 1_000,
        "paid and paying in one transaction"
    );
    assert_eq!(net.state.account(&other.public()).balance, o_before + 990);
    assert_eq!(
        net.state.escrow(&job2).unwrap().balance,
        10,
        "too small to pay"
    );
}

#[test]
fn acceptances_forged_or_tampered_pay_nothing() {
    let mut net = Net::new();
    let requester = Keypair::from_seed([1; 32]);
    let job = ContentId::of(JOB);
    net.register();
    net.send(&requester, TxKind::OpenEscrow { job, amount: 100 })
        .unwrap();
    let lease = net.lease(10);
    // Signed by someone other than the lease's requester.
    let impostor = acceptance(&net.other, &lease, &[(0, b"x", 1_000)]);
    let outcomes = net
        .send(
            &net.other.clone(),
            TxKind::Claim {
                acceptances: vec![impostor],
            },
        )
        .unwrap();
    assert_eq!(
        outcomes,
        [SettleOutcome::Refused(
            "not signed by the lease's requester"
        )]
    );
    assert_eq!(net.state.escrow(&job).unwrap().balance, 100);

    // An acceptance whose signature does not verify keeps the whole
    // transaction out.
    let mut tampered = acceptance(&requester, &lease, &[(0, b"a", 1_000)]).to_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = Signed::<Acceptance>::from_bytes(&tampered, &()).unwrap();
    let body = TxBody {
        chain: net.state.chain(),
        nonce: net.state.account(&net.provider.public()).nonce,
        kind: TxKind::Claim {
            acceptances: vec![tampered],
        },
    };
    assert!(matches!(
        admit(body.sign(&net.provider)),
        Err(TxError::BadSignature(_))
    ));
}

#[test]
fn equivocation_is_slashed_once_and_burned_with_no_reward_to_the_reporter() {
    let mut net = Net::new();
    let requester = Keypair::from_seed([1; 32]);
    let job = ContentId::of(JOB);
    net.register();
    net.send(&requester, TxKind::OpenEscrow { job, amount: 1_000 })
        .unwrap();
    let lease = net.lease(10);
    let stake = net.state.provider(&net.provider.public()).unwrap().stake;
    let first = net.receipt(&lease, 3, 100, b"honest");
    let second = net.receipt(&lease, 3, 100, b"lie");
    let reporter = net.other.clone();
    let reporter_before = net.state.account(&reporter.public()).balance;
    let evidence = Evidence::Equivocation {
        first: first.clone(),
        second: second.clone(),
    };
    net.send(
        &reporter,
        TxKind::Slash {
            evidence: Box::new(evidence.clone()),
        },
    )
    .unwrap();
    let penalty = stake / 2;
    assert_eq!(
        net.state.provider(&net.provider.public()).unwrap().stake,
        stake - penalty
    );
    // Nobody profits from a conviction: a requester that could not frame a
    // provider could still profit from provoking one (by challenging while
    // it is offline, say).
    assert_eq!(
        net.state.account(&reporter.public()).balance,
        reporter_before
    );
    assert_eq!(net.state.burned(), penalty);
    assert_eq!(
        net.state
            .provider(&net.provider.public())
            .unwrap()
            .reputation
            .slashes,
        1
    );
    // Below the minimum stake now: it can no longer bid.
    assert!(!net.state.can_bid(&net.provider.public()));
    let err = net
        .send(
            &reporter,
            TxKind::Slash {
                evidence: Box::new(evidence),
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        TxError::BadEvidence("this offence was already punished")
    );
    // Agreeing receipts prove nothing, nor do receipts for one result that
    // differ only in their salt: a salt opens a commitment, it is no result.
    let resalted = Signed::sign(
        &net.provider,
        RECEIPT_NAMESPACE,
        Receipt {
            salt: [9; 32],
            ..first.payload_unchecked().clone()
        },
    );
    for second in [first.clone(), resalted] {
        let agree = Evidence::Equivocation {
            first: first.clone(),
            second,
        };
        let err = net
            .send(
                &reporter,
                TxKind::Slash {
                    evidence: Box::new(agree),
                },
            )
            .unwrap_err();
        assert_eq!(err, TxError::BadEvidence("the receipts agree"));
    }
}

#[test]
fn unbonding_stake_returns_after_the_delay_and_stays_slashable() {
    let mut net = Net::new();
    net.register();
    let provider = Keypair::from_seed([2; 32]);
    let stake = net.state.provider(&provider.public()).unwrap().stake;
    let balance = net.state.account(&provider.public()).balance;
    net.send(&provider, TxKind::Unstake { amount: stake })
        .unwrap();
    assert_eq!(net.state.unbonding_of(&provider.public()), stake);
    let delay = net.state.params().unbonding_blocks;
    net.state.begin_block(delay - 1, 0);
    assert_eq!(net.state.account(&provider.public()).balance, balance);
    net.state.begin_block(delay, 0);
    assert_eq!(
        net.state.account(&provider.public()).balance,
        balance + stake
    );
    assert_eq!(net.state.unbonding_of(&provider.public()), 0);
}

/// A `cheat_and_run` provider unstakes everything right after signing a
/// result it knows is wrong, hoping its stake is back before the evidence
/// arrives. Stake unbonded while one of its leases can still be proven
/// against returns only when the last such lease's evidence window closes.
#[test]
fn stake_unbonded_with_a_lease_open_stays_slashable_until_its_evidence_window_closes() {
    let mut net = Net::new();
    net.register();
    net.open_escrow(1_000);
    let lease = net.lease(10);
    let requester = net.requester.clone();
    let cheat_and_run = net.provider.clone();
    let stake = net.state.provider(&cheat_and_run.public()).unwrap().stake;
    let balance = net.state.account(&cheat_and_run.public()).balance;
    // A requester cannot hold it liable for ever with a lease that never
    // ends: the ledger bounds a lease's life.
    let mut endless = lease.clone();
    endless.expires_height = u64::MAX;
    let provider_signature = endless.sign(&cheat_and_run);
    let refused = net.send(
        &requester,
        TxKind::RecordLease {
            lease: endless,
            provider_signature,
        },
    );
    assert!(
        matches!(
            refused,
            Err(TxError::Invalid {
                field: "lease.expires_height",
                ..
            })
        ),
        "{refused:?}"
    );
    net.send(&cheat_and_run, TxKind::Unstake { amount: stake })
        .unwrap();
    let liable_until = 10 + cairn_ledger::EVIDENCE_WINDOW_BLOCKS;
    assert_eq!(
        net.state
            .provider(&cheat_and_run.public())
            .unwrap()
            .liable_until,
        liable_until
    );
    // Long past the unbonding delay, the stake is still held...
    net.state
        .begin_block(net.state.params().unbonding_blocks * 10, 0);
    assert_eq!(net.state.unbonding_of(&cheat_and_run.public()), stake);
    assert_eq!(net.state.account(&cheat_and_run.public()).balance, balance);
    // ...so the evidence, when it comes, takes half of it.
    let evidence = Evidence::Equivocation {
        first: net.receipt(&lease, 3, 100, b"honest"),
        second: net.receipt(&lease, 3, 100, b"lie"),
    };
    net.send(
        &net.other.clone(),
        TxKind::Slash {
            evidence: Box::new(evidence),
        },
    )
    .unwrap();
    let left = stake - stake / 2;
    assert_eq!(net.state.unbonding_of(&cheat_and_run.public()), left);
    // The window closed, what is left returns.
    net.state.begin_block(liable_until - 1, 0);
    assert_eq!(net.state.unbonding_of(&cheat_and_run.public()), left);
    net.state.begin_block(liable_until, 0);
    assert_eq!(net.state.unbonding_of(&cheat_and_run.public()), 0);
    assert_eq!(
        net.state.account(&cheat_and_run.public()).balance,
        balance + left
    );
}

#[test]
fn refusals_name_their_reason() {
    let mut net = Net::new();
    let requester = Keypair::from_seed([1; 32]);
    let to = net.other.public();
    let err = net
        .send(
            &requester,
            TxKind::Transfer {
                to,
                amount: u64::MAX,
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "insufficient balance: needs {} µCAIRN, has 10000000000",
            u64::MAX
        )
    );
    let err = net
        .send(&requester, TxKind::Transfer { to, amount: 0 })
        .unwrap_err();
    assert_eq!(err, TxError::ZeroAmount);
    let err = net
        .send(&requester, TxKind::Stake { amount: 5 })
        .unwrap_err();
    assert!(
        err.to_string().contains("is not a registered provider"),
        "{err}"
    );
    let err = net
        .send(
            &requester,
            TxKind::RegisterProvider {
                capabilities: Capabilities::default(),
                endpoint: String::new(),
                stake: 1,
            },
        )
        .unwrap_err();
    assert!(matches!(err, TxError::BelowMinimumStake { .. }));
    // Overflow: the recipient already holds nearly everything.
    let job = ContentId::of(JOB);
    net.send(&requester, TxKind::OpenEscrow { job, amount: 1 })
        .unwrap();
    let err = net
        .send(&requester, TxKind::OpenEscrow { job, amount: 1 })
        .unwrap_err();
    assert_eq!(err, TxError::EscrowExists(job));

    let body = TxBody {
        chain: net.state.chain(),
        nonce: 7,
        kind: TxKind::Transfer { to, amount: 1 },
    };
    let err = net
        .state
        .apply(&admit(body.sign(&requester)).unwrap())
        .unwrap_err();
    assert_eq!(err.to_string(), "nonce 7 is not the account's next nonce 1");
}

#[test]
fn malformed_bytes_are_refused_without_panicking() {
    let net = Net::new();
    let requester = Keypair::from_seed([1; 32]);
    let body = TxBody {
        chain: net.state.chain(),
        nonce: 0,
        kind: TxKind::Transfer {
            to: net.other.public(),
            amount: 5,
        },
    };
    let bytes = body.sign(&requester).to_bytes();
    assert!(decode(&bytes).is_ok());
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let mut unknown_kind = bytes.clone();
    unknown_kind[1 + 32 + 64 + 32 + 8] = 200;
    assert!(decode(&unknown_kind).is_err());
    assert!(decode(&vec![1u8; 2 << 20]).is_err());
}

#[test]
fn batch_admission_refuses_only_the_forged() {
    // The forged one among good ones in one batch, every time: with the
    // process's cache of valid signatures, the good ones would only be
    // looked up after the first batch (other tests lose only speed).
    cairn_wire::remember_signatures(false);
    let net = Net::new();
    let requester = Keypair::from_seed([1; 32]);
    let txs: Vec<_> = (0..8u64)
        .map(|nonce| {
            TxBody {
                chain: net.state.chain(),
                nonce,
                kind: TxKind::Transfer {
                    to: net.other.public(),
                    amount: 1,
                },
            }
            .sign(&requester)
        })
        .collect();
    assert!(admit_batch(txs.clone()).iter().all(Result::is_ok));
    let mut forged = txs;
    let mut bytes = forged[3].to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    forged[3] = cairn_ledger::Tx::from_bytes(&bytes, &()).unwrap();
    let verdicts = admit_batch(forged);
    assert_eq!(verdicts.iter().filter(|v| v.is_err()).count(), 1);
    assert!(verdicts[3].is_err());
}

fn commit(net: &Net, lease: &Lease, task: u64, digest: &[u8], salt: [u8; 32]) -> Signed<Commit> {
    let reveal = cairn_verify::Reveal {
        digest: ContentId::of(digest),
        salt,
    };
    let commitment = cairn_verify::Commitment::new(&net.provider.public(), &reveal).0;
    Signed::sign(
        &net.provider,
        COMMIT_NAMESPACE,
        Commit {
            lease: lease.id(),
            task,
            commitment,
        },
    )
}

/// The provider's receipt for `digest`, revealing `salt`.
fn revealing(
    net: &Net,
    lease: &Lease,
    task: u64,
    digest: &[u8],
    salt: [u8; 32],
) -> Signed<Receipt> {
    Signed::sign(
        &net.provider,
        RECEIPT_NAMESPACE,
        Receipt {
            lease: lease.id(),
            task,
            digest: ContentId::of(digest),
            fuel_used: 1_000,
            salt,
            run: [0; 32],
        },
    )
}

/// `verdict` signed by each of `signers`.
fn attest(signers: &[&Keypair], verdict: Verdict) -> Attested<Verdict> {
    let mut attested = Attested::new(verdict.clone());
    for signer in signers {
        let signature = Attested::signature(signer, VERDICT_NAMESPACE, &verdict);
        assert!(attested.add(VERDICT_NAMESPACE, signer.public(), signature));
    }
    attested
}

#[test]
fn a_wrong_result_is_slashed_the_winner_and_the_judges_rewarded_and_paid_receipts_clawed_back() {
    let mut net = Net::new();
    let requester = net.requester.clone();
    let job = ContentId::of(JOB);
    net.register();
    net.open_escrow(1_000_000);
    let lease = net.lease(1_000);
    let accepted: Vec<(u64, &[u8], u64)> = (0..3)
        .map(|t| (t, &b"accepted"[..], 2_000_000_000))
        .collect();
    net.send(
        &requester,
        TxKind::Claim {
            acceptances: vec![acceptance(&requester, &lease, &accepted)],
        },
    )
    .unwrap();
    // The honest side: another provider, leased on the same job.
    let other = net.other.clone();
    let stake_min = net.state.params().stake_min;
    net.send(
        &other,
        TxKind::RegisterProvider {
            capabilities: Capabilities::default(),
            endpoint: "/ip4/127.0.0.1/tcp/7001".into(),
            stake: stake_min,
        },
    )
    .unwrap();
    let honest_lease = Lease {
        provider: other.public(),
        ..lease.clone()
    };
    let provider_signature = honest_lease.sign(&other);
    net.send(
        &requester,
        TxKind::RecordLease {
            lease: honest_lease.clone(),
            provider_signature,
        },
    )
    .unwrap();
    let honest_receipt = |digest: &[u8]| {
        Signed::sign(
            &other,
            RECEIPT_NAMESPACE,
            Receipt {
                lease: honest_lease.id(),
                task: 5,
                digest: ContentId::of(digest),
                fuel_used: 2_000_000_000,
                salt: [0; 32],
                run: [0; 32],
            },
        )
    };
    let stake = net.state.provider(&net.provider.public()).unwrap().stake;
    let winner = other.public();
    let burned_before = net.state.burned();

    let wrong = net.receipt(&lease, 5, 2_000_000_000, b"lie");
    let accused = net.provider.public();
    let verdict = |signers: &[&Keypair], digest: &[u8]| {
        let verdict = Verdict {
            job,
            task: 5,
            wrong: ContentId::of(digest),
            accused,
            lease: lease.id(),
            winner,
            position: 17,
            agreed: [1; 32],
            reached: [2; 32],
            run: [0; 32],
        };
        attest(signers, verdict)
    };
    let validators = net.validators.clone();
    let quorum: Vec<&Keypair> = validators[..3].iter().collect();
    let slash_with = |verdict, clawback: Vec<(ContentId, u64)>, winner_receipt| TxKind::Slash {
        evidence: Box::new(Evidence::WrongResult {
            receipt: wrong.clone(),
            verdict,
            clawback,
            winner_receipt,
        }),
    };
    let slash = |verdict, clawback| slash_with(verdict, clawback, Some(honest_receipt(b"truth")));
    // No party judges its own case: a verdict signed by the requester, by
    // too few validators, or by a quorum padded with a party's signature
    // convicts no one. Four validators tolerate one fault: three must sign.
    let not_attested =
        TxError::BadEvidence("the verdict is not attested by a quorum of the validators");
    let requester_forged = slash(verdict(&[&requester], b"lie"), Vec::new());
    assert_eq!(
        net.send(&requester, requester_forged).unwrap_err(),
        not_attested
    );
    let too_few = slash(verdict(&quorum[..2], b"lie"), Vec::new());
    assert_eq!(net.send(&requester, too_few).unwrap_err(), not_attested);
    let padded = slash(verdict(&[quorum[0], quorum[1], &other], b"lie"), Vec::new());
    assert_eq!(net.send(&requester, padded).unwrap_err(), not_attested);
    // A verdict convicts only its accused: not another provider that
    // returned the same digest (a requester's own provider signing an
    // impossible step, say).
    let elsewhere_accused = attest(
        &quorum,
        Verdict {
            accused: other.public(),
            ..verdict(&quorum, b"lie").payload_unchecked().clone()
        },
    );
    assert_eq!(
        net.send(&requester, slash(elsewhere_accused, Vec::new()))
            .unwrap_err(),
        TxError::BadEvidence("the verdict convicts another provider")
    );
    // A verdict about another digest does not convict this receipt.
    let elsewhere = slash(verdict(&quorum, b"other"), Vec::new());
    assert_eq!(
        net.send(&requester, elsewhere).unwrap_err(),
        TxError::BadEvidence("the verdict is about another task or digest")
    );
    // Nor does a verdict on another run than the one the receipt signed
    // (validators handed other arguments than the provider ran).
    let other_run = attest(
        &quorum,
        Verdict {
            run: [3; 32],
            ..verdict(&quorum, b"lie").payload_unchecked().clone()
        },
    );
    assert_eq!(
        net.send(&requester, slash(other_run, Vec::new()))
            .unwrap_err(),
        TxError::BadEvidence("the verdict is about another run than the receipt")
    );
    // A whole task re-run (a side that fell silent) rewards a winner only
    // for the result the validators reached.
    let whole_elsewhere = attest(
        &quorum,
        Verdict {
            position: WHOLE_TASK,
            reached: *ContentId::of(b"other truth").as_bytes(),
            ..verdict(&quorum, b"lie").payload_unchecked().clone()
        },
    );
    assert_eq!(
        net.send(&requester, slash(whole_elsewhere, Vec::new()))
            .unwrap_err(),
        TxError::BadEvidence("the winner did not return the result the validators reached")
    );
    // An unpaid receipt cannot be clawed back.
    let unpaid = slash(verdict(&quorum, b"lie"), vec![(lease.id(), 9)]);
    assert!(net.send(&requester, unpaid).is_err());
    // The reward goes only to a winner that returned another result for
    // the task.
    let same = slash_with(
        verdict(&quorum, b"lie"),
        Vec::new(),
        Some(honest_receipt(b"lie")),
    );
    assert_eq!(
        net.send(&requester, same).unwrap_err(),
        TxError::BadEvidence("the winner returned the same result")
    );

    let judges_before: Vec<_> = validators
        .iter()
        .map(|v| net.state.account(&v.public()).balance)
        .collect();
    // The requester closes the job's escrow (its leases given notice, then
    // ended), and someone else opens one under the same job id: what is
    // clawed back returns to the requester, never into that escrow.
    net.send(&requester, TxKind::CloseEscrow { job }).unwrap();
    net.state
        .begin_block(net.state.height() + CLOSE_NOTICE_BLOCKS + 1, 0);
    net.send(&requester, TxKind::CloseEscrow { job }).unwrap();
    assert!(net.state.escrow(&job).is_none());
    net.send(&other, TxKind::OpenEscrow { job, amount: 5_000 })
        .unwrap();
    let requester_before = net.state.account(&requester.public()).balance;
    let winner_before = net.state.account(&winner).balance;

    let clawback = (0..3).map(|t| (lease.id(), t)).collect();
    net.send(&requester, slash(verdict(&quorum, b"lie"), clawback))
        .unwrap();
    // Each receipt paid 2 Gfuel x 1,000 = 2,000 less the 1% fee.
    let refunds = 3 * (2_000 - 20);
    let penalty = stake / 2;
    assert_eq!(
        net.state.provider(&net.provider.public()).unwrap().stake,
        stake - penalty - refunds
    );
    assert_eq!(
        net.state.escrow(&job).unwrap().balance,
        5_000,
        "nothing into an escrow another opened under the job's id"
    );
    assert_eq!(
        net.state.account(&requester.public()).balance,
        requester_before + refunds
    );
    assert_eq!(
        net.state.account(&winner).balance,
        winner_before + penalty / 2
    );
    // The three validators that attested the verdict share a tenth of the
    // penalty, for judging; the fourth gets nothing.
    let judged = penalty / 10 / 3;
    for (i, v) in validators.iter().enumerate() {
        let share = if i < 3 { judged } else { 0 };
        assert_eq!(
            net.state.account(&v.public()).balance,
            judges_before[i] + share
        );
    }
    // The requester, which refereed, gets nothing; the rest is burned.
    assert_eq!(
        net.state.burned(),
        burned_before + penalty - penalty / 2 - 3 * judged
    );
    // Neither the offence nor the clawed-back receipts can be used again,
    // nor is a result whose payment was taken back paid more for a larger
    // acceptance of it (once the slashed lease is forgotten, the clawback's
    // own mark refuses it: `a_result_whose_payment_was_taken_back_is_not_paid_again`).
    assert_eq!(
        net.send(&requester, slash(verdict(&quorum, b"lie"), Vec::new()))
            .unwrap_err(),
        TxError::BadEvidence("this offence was already punished")
    );
    let larger = acceptance(&requester, &lease, &[(0, b"accepted", 3_000_000_000)]);
    assert_eq!(
        net.send(
            &requester,
            TxKind::Claim {
                acceptances: vec![larger]
            }
        )
        .unwrap(),
        [SettleOutcome::Refused(
            "its provider was slashed on a lease of this requester"
        )]
    );
}

/// A requester that is also a validator signs the verdict of its own
/// job's dispute: it counts towards the quorum (a party cannot convict
/// alone), but its part of the judges' share is burned, so it gains
/// nothing from the conviction.
#[test]
fn a_validator_that_is_a_party_is_not_paid_for_judging() {
    let mut net = Net::with_validator_seeds(&[1, 11, 12, 13]);
    let requester = net.requester.clone();
    net.register();
    net.open_escrow(1_000_000);
    let lease = net.lease(1_000);
    let wrong = net.receipt(&lease, 5, 2_000_000_000, b"lie");
    let verdict = Verdict {
        job: ContentId::of(JOB),
        task: 5,
        wrong: ContentId::of(b"lie"),
        accused: net.provider.public(),
        lease: lease.id(),
        winner: net.other.public(),
        position: 0,
        agreed: [1; 32],
        reached: [2; 32],
        run: [0; 32],
    };
    let validators = net.validators.clone();
    let signers = [&validators[0], &validators[1], &validators[2]];
    assert_eq!(validators[0].public(), requester.public());
    let before: Vec<_> = validators
        .iter()
        .map(|v| net.state.account(&v.public()).balance)
        .collect();
    let stake = net.state.provider(&net.provider.public()).unwrap().stake;
    let burned = net.state.burned();
    net.send(
        &requester,
        TxKind::Slash {
            evidence: Box::new(Evidence::WrongResult {
                receipt: wrong,
                verdict: attest(&signers, verdict),
                clawback: Vec::new(),
                winner_receipt: None,
            }),
        },
    )
    .unwrap();
    let penalty = stake / 2;
    let judged = penalty / 10 / 3;
    // The requester's nonce moved its balance by nothing else.
    assert_eq!(net.state.account(&requester.public()).balance, before[0]);
    for i in 1..3 {
        let key = validators[i].public();
        assert_eq!(net.state.account(&key).balance, before[i] + judged);
    }
    assert_eq!(
        net.state.account(&validators[3].public()).balance,
        before[3]
    );
    assert_eq!(net.state.burned(), burned + penalty - 2 * judged);
}

#[test]
fn a_receipt_that_does_not_open_its_commit_is_slashed() {
    let mut net = Net::new();
    let requester = net.requester.clone();
    net.register();
    net.send(
        &requester,
        TxKind::OpenEscrow {
            job: ContentId::of(JOB),
            amount: 1_000,
        },
    )
    .unwrap();
    let lease = net.lease(1_000);
    let committed = commit(&net, &lease, 1, b"junk", [4; 32]);
    // The honest receipt proves nothing.
    let honest = revealing(&net, &lease, 1, b"junk", [4; 32]);
    let evidence = Evidence::BadReveal {
        commit: committed.clone(),
        receipt: honest,
    };
    assert_eq!(
        net.send(
            &requester,
            TxKind::Slash {
                evidence: Box::new(evidence)
            }
        )
        .unwrap_err(),
        TxError::BadEvidence("the receipt opens the commit")
    );
    // A copier reveals someone else's digest under its own commit.
    let copied = revealing(&net, &lease, 1, b"someone else's", [4; 32]);
    let evidence = Evidence::BadReveal {
        commit: committed,
        receipt: copied,
    };
    let stake = net.state.provider(&net.provider.public()).unwrap().stake;
    net.send(
        &requester,
        TxKind::Slash {
            evidence: Box::new(evidence),
        },
    )
    .unwrap();
    assert_eq!(
        net.state.provider(&net.provider.public()).unwrap().stake,
        stake - stake / 2
    );
}

/// A challenge locks the requester's bond and gives the provider a window
/// of both blocks and time: a chain that runs fast cannot close it early
/// on a provider that is away. Receipts answer many challenges at once;
/// answered, the bond is burned (the challenge had no cause); left
/// unanswered past the window, the provider is slashed and the bond
/// returns.
#[test]
fn a_challenged_commit_must_be_opened_within_the_window() {
    let mut net = Net::new();
    let requester = net.requester.clone();
    net.register();
    net.open_escrow(1_000);
    let lease = net.lease(10_000);
    let stalled = commit(&net, &lease, 1, b"result", [5; 32]);
    let answered = commit(&net, &lease, 2, b"result", [6; 32]);
    let also_answered = commit(&net, &lease, 3, b"result", [7; 32]);
    // Only the requester may challenge.
    assert!(
        net.send(
            &net.other.clone(),
            TxKind::Challenge {
                commit: stalled.clone()
            }
        )
        .is_err()
    );
    let Params {
        challenge_bond: bond,
        reveal_window_ms: window_ms,
        ..
    } = *net.state.params();
    let balance = net.state.account(&requester.public()).balance;
    let start = net.state.height();
    let start_ms = net.state.time_ms();
    for commit in [&stalled, &answered, &also_answered] {
        net.send(
            &requester,
            TxKind::Challenge {
                commit: commit.clone(),
            },
        )
        .unwrap();
    }
    assert_eq!(
        net.state.account(&requester.public()).balance,
        balance - 3 * bond,
        "each challenge locks a bond"
    );
    let open: Vec<_> = net
        .state
        .open_challenges(&net.provider.public())
        .into_iter()
        .map(|(l, task, c)| (l, task, c.deadline, c.deadline_ms))
        .collect();
    let deadlines = (start + REVEAL_WINDOW_BLOCKS, start_ms + window_ms);
    assert_eq!(
        open,
        (1..=3)
            .map(|task| (lease.id(), task, deadlines.0, deadlines.1))
            .collect::<Vec<_>>()
    );
    assert!(net.state.open_challenges(&net.other.public()).is_empty());
    let no_reveal = |task| TxKind::Slash {
        evidence: Box::new(Evidence::NoReveal {
            lease: lease.id(),
            task,
        }),
    };
    assert_eq!(
        net.send(&requester, no_reveal(1)).unwrap_err(),
        TxError::BadEvidence("the reveal window is still open")
    );
    // A wrong receipt answers nothing; alone, it is refused...
    let wrong = revealing(&net, &lease, 2, b"other", [6; 32]);
    let right = revealing(&net, &lease, 2, b"result", [6; 32]);
    let also_right = revealing(&net, &lease, 3, b"result", [7; 32]);
    assert_eq!(
        net.send(
            &requester,
            TxKind::Reveal {
                receipts: vec![wrong.clone()]
            }
        )
        .unwrap_err(),
        TxError::BadEvidence("the receipt does not open the commit")
    );
    // ...and beside right ones it does not hold them up. Right ones answer,
    // from anyone, several in one transaction (and a receipt repeated is
    // passed over).
    let burned = net.state.burned();
    net.send(
        &net.other.clone(),
        TxKind::Reveal {
            receipts: vec![wrong, also_right],
        },
    )
    .unwrap();
    net.send(
        &net.other.clone(),
        TxKind::Reveal {
            receipts: vec![right.clone(), right.clone()],
        },
    )
    .unwrap();
    assert_eq!(
        net.state.burned(),
        burned + 2 * bond,
        "bonds of challenges without cause burn"
    );
    assert_eq!(
        net.send(
            &net.other.clone(),
            TxKind::Reveal {
                receipts: vec![right]
            }
        )
        .unwrap_err(),
        TxError::BadEvidence("no challenge open to these receipts")
    );

    // A hundred blocks are not enough while the window's time lasts: a
    // fast chain does not shorten it.
    net.state.begin_block(deadlines.0 + 1, deadlines.1);
    assert_eq!(
        net.send(&requester, no_reveal(1)).unwrap_err(),
        TxError::BadEvidence("the reveal window is still open")
    );
    net.state.begin_block(deadlines.0 + 2, deadlines.1 + 1);
    // Once the window is over, a late reveal cannot race the claim.
    let late = revealing(&net, &lease, 1, b"result", [5; 32]);
    assert_eq!(
        net.send(
            &net.other.clone(),
            TxKind::Reveal {
                receipts: vec![late]
            }
        )
        .unwrap_err(),
        TxError::BadEvidence("no challenge open to these receipts")
    );
    let stake = net.state.provider(&net.provider.public()).unwrap().stake;
    assert_eq!(
        net.send(&requester, no_reveal(2)).unwrap_err(),
        TxError::BadEvidence("no open challenge for this task")
    );
    assert_eq!(
        net.state.open_challenges(&net.provider.public()).len(),
        1,
        "the answered challenges are closed"
    );
    let balance = net.state.account(&requester.public()).balance;
    net.send(&requester, no_reveal(1)).unwrap();
    assert_eq!(
        net.state.provider(&net.provider.public()).unwrap().stake,
        stake - stake / 2
    );
    assert_eq!(
        net.state.account(&requester.public()).balance,
        balance + bond,
        "a challenge with cause gets its bond back"
    );
    // Past its lease a commit can no longer be challenged: its provider
    // need not keep the receipt forever.
    net.state
        .begin_block(lease.expires_height + 1, deadlines.1 + 2);
    let late = commit(&net, &lease, 4, b"result", [8; 32]);
    assert_eq!(
        net.send(&requester, TxKind::Challenge { commit: late })
            .unwrap_err(),
        TxError::BadEvidence("the lease has expired")
    );
    // The snapshot keeps challenges and clawbacks.
    let mut restored = State::from_snapshot(&net.state.to_snapshot()).unwrap();
    assert_eq!(restored, net.state);
    assert_eq!(restored.root(), net.state.root());
}

/// A requester without the bond cannot challenge; and a lease is not
/// forgotten while a challenge on it may still be answered or claimed
/// (its window is time, the evidence window blocks). Once it is
/// forgotten, an unclaimed challenge's bond returns to the requester.
#[test]
fn a_challenge_holds_its_lease_and_its_providers_stake_until_it_can_no_longer_be_claimed() {
    let mut net = Net::new();
    let requester = net.requester.clone();
    net.register();
    net.open_escrow(1_000);
    let lease = net.lease(10_000);
    let challenged = commit(&net, &lease, 1, b"result", [5; 32]);
    // The requester gives away all but a little less than a bond.
    let bond = net.state.params().challenge_bond;
    let balance = net.state.account(&requester.public()).balance;
    net.send(
        &requester,
        TxKind::Transfer {
            to: net.other.public(),
            amount: balance - bond + 1,
        },
    )
    .unwrap();
    assert!(matches!(
        net.send(
            &requester,
            TxKind::Challenge {
                commit: challenged.clone()
            }
        ),
        Err(TxError::Insufficient { .. })
    ));
    net.send(
        &net.other.clone(),
        TxKind::Transfer {
            to: requester.public(),
            amount: 1,
        },
    )
    .unwrap();
    net.send(
        &requester,
        TxKind::Challenge {
            commit: challenged.clone(),
        },
    )
    .unwrap();
    assert_eq!(net.state.account(&requester.public()).balance, 0);
    // The provider unstakes everything at once.
    let provider = net.provider.clone();
    let stake = net.state.provider(&provider.public()).unwrap().stake;
    net.send(&provider, TxKind::Unstake { amount: stake })
        .unwrap();
    let deadline_ms = net.state.open_challenges(&provider.public())[0]
        .2
        .deadline_ms;
    let window_ms = net.state.params().reveal_window_ms;
    // The evidence window (the stake's release too) passes in blocks, not
    // in time: the lease stays, and the stake stays bonded.
    let forgotten_at = lease.expires_height + EVIDENCE_WINDOW_BLOCKS;
    assert_eq!(
        net.state.provider(&provider.public()).unwrap().liable_until,
        forgotten_at
    );
    net.state.begin_block(forgotten_at, deadline_ms);
    assert!(net.state.lease(&lease.id()).is_some());
    assert_eq!(net.state.open_challenges(&provider.public()).len(), 1);
    assert_eq!(net.state.unbonding_of(&provider.public()), stake);
    // A node restarted now looks at the lease when the others do: the
    // schedule is not saved but derived, and must come out the same.
    let restored = State::from_snapshot(&net.state.to_snapshot()).unwrap();
    assert_eq!(restored, net.state);
    // The reveal window has closed; the claim period has not.
    net.state
        .begin_block(forgotten_at + REVEAL_WINDOW_BLOCKS, deadline_ms + window_ms);
    assert!(net.state.lease(&lease.id()).is_some());
    assert_eq!(net.state.unbonding_of(&provider.public()), stake);
    // Claimed now, the withheld reveal takes half the stake...
    let mut claimed = net.clone();
    claimed
        .send(
            &requester,
            TxKind::Slash {
                evidence: Box::new(Evidence::NoReveal {
                    lease: lease.id(),
                    task: 1,
                }),
            },
        )
        .unwrap();
    assert_eq!(
        claimed.state.unbonding_of(&provider.public()),
        stake - stake / 2
    );
    assert_eq!(claimed.state.account(&requester.public()).balance, bond);
    // ...and unclaimed, once the claim period is over too, the lease goes
    // at the next look, the bond goes back and the stake is released.
    let provider_balance = net.state.account(&provider.public()).balance;
    net.state.begin_block(
        forgotten_at + 2 * REVEAL_WINDOW_BLOCKS,
        deadline_ms + window_ms + 1,
    );
    assert!(net.state.lease(&lease.id()).is_none());
    assert!(net.state.open_challenges(&provider.public()).is_empty());
    assert_eq!(net.state.account(&requester.public()).balance, bond);
    assert_eq!(net.state.unbonding_of(&provider.public()), 0);
    assert_eq!(
        net.state.account(&provider.public()).balance,
        provider_balance + stake
    );
    assert_eq!(net.state.total_accounted(), u128::from(net.state.supply()));
}

/// A `fuel_inflater` signs a receipt for a result whose own manifest says
/// it used less fuel: the manifest (from any replica with the same digest)
/// convicts it, and the whole slash is burned. An honest receipt, or a
/// manifest of another result, convicts no one.
#[test]
fn a_receipt_misstating_its_results_fuel_is_slashed_and_burned() {
    let mut net = Net::new();
    let requester = net.requester.clone();
    net.register();
    net.send(
        &requester,
        TxKind::OpenEscrow {
            job: ContentId::of(JOB),
            amount: 1_000,
        },
    )
    .unwrap();
    let lease = net.lease(1_000);
    let manifest = ResultManifest {
        code: 0,
        exit: 0,
        text: "exited with status 0".into(),
        fuel_used: 1_000_000,
        stdout: ContentId::of(b"42\n"),
        stderr: ContentId::of(b""),
        outputs: Vec::new(),
    };
    let provider = net.provider.clone();
    let receipt = |fuel_used: u64, digest: ContentId| {
        Signed::sign(
            &provider,
            RECEIPT_NAMESPACE,
            Receipt {
                lease: lease.id(),
                task: 2,
                digest,
                fuel_used,
                salt: [0; 32],
                run: [0; 32],
            },
        )
    };
    let misstated = |receipt, manifest| TxKind::Slash {
        evidence: Box::new(Evidence::MisstatedFuel { receipt, manifest }),
    };
    let honest = receipt(1_000_000, manifest.digest());
    assert_eq!(
        net.send(&requester, misstated(honest, manifest.clone()))
            .unwrap_err(),
        TxError::BadEvidence("the receipt states the manifest's fuel")
    );
    let inflated = receipt(50_000_000_000, manifest.digest());
    let mut other = manifest.clone();
    other.fuel_used = 7;
    assert_eq!(
        net.send(&requester, misstated(inflated.clone(), other))
            .unwrap_err(),
        TxError::BadEvidence("the manifest is not the receipt's result")
    );
    let stake = net.state.provider(&net.provider.public()).unwrap().stake;
    let burned = net.state.burned();
    net.send(&requester, misstated(inflated, manifest)).unwrap();
    let now = net.state.provider(&net.provider.public()).unwrap().stake;
    assert_eq!(now, stake - stake / 2);
    assert_eq!(net.state.burned(), burned + stake / 2);
}

/// A lease is kept, with what was paid and punished under it, for an
/// evidence window after it expires, and then forgotten: the state holds a
/// bounded past, not all of it. Forgotten, nothing about it is paid or
/// proven any more, and a restored snapshot forgets it at the same height.
#[test]
fn a_lease_and_its_records_are_forgotten_once_its_evidence_window_has_passed() {
    let mut net = Net::new();
    let requester = net.requester.clone();
    let reporter = net.other.clone();
    net.register();
    net.open_escrow(1_000_000);
    let lease = net.lease(10);
    let paid = net.receipt(&lease, 0, 1_000_000_000, b"a");
    let settle = |task: u64, digest: &[u8]| TxKind::Claim {
        acceptances: vec![acceptance(
            &requester,
            &lease,
            &[(task, digest, 1_000_000_000)],
        )],
    };
    let outcomes = net.send(&requester, settle(0, b"a")).unwrap();
    assert!(matches!(outcomes[..], [SettleOutcome::Paid { .. }]));

    let forgotten_at = 10 + EVIDENCE_WINDOW_BLOCKS;
    net.state.begin_block(forgotten_at - 1, 0);
    assert!(
        net.state.lease(&lease.id()).is_some(),
        "kept through its window"
    );
    let outcomes = net.send(&requester, settle(0, b"a")).unwrap();
    assert_eq!(outcomes, [SettleOutcome::Refused("already settled")]);
    let restored = State::from_snapshot(&net.state.to_snapshot()).unwrap();
    assert_eq!(
        restored, net.state,
        "the schedule is rebuilt from the leases"
    );

    let root_before = net.state.root();
    net.state.begin_block(forgotten_at, 0);
    assert!(net.state.lease(&lease.id()).is_none());
    assert_ne!(net.state.root(), root_before, "its records left the state");
    let mut restored = restored;
    restored.begin_block(forgotten_at, 0);
    assert_eq!(restored, net.state);
    // Forgotten: an acceptance under it pays nothing (too late to take the
    // lease from it), and no evidence about it is taken.
    let outcomes = net.send(&requester, settle(1, b"b")).unwrap();
    assert_eq!(
        outcomes,
        [SettleOutcome::Refused(
            "unknown lease, too late (or too far ahead) to take from its acceptance"
        )]
    );
    let evidence = Evidence::Equivocation {
        first: paid,
        second: net.receipt(&lease, 0, 1_000_000_000, b"other"),
    };
    let err = net
        .send(
            &reporter,
            TxKind::Slash {
                evidence: Box::new(evidence),
            },
        )
        .unwrap_err();
    assert_eq!(err, TxError::BadEvidence("unknown lease"));
}
