//! A validator's checks of a case, before anything runs: the accused is
//! held to its own signatures, and nothing the asker says stands in for
//! them.

use cairn_ledger::{
    Capabilities, Genesis, Lease, RECEIPT_NAMESPACE, Receipt, TxBody, TxKind, WHOLE_TASK, admit,
};
use cairn_wire::Keypair;

use super::*;
use crate::market::proto::{FileRef, TaskLimits};

struct World {
    state: State,
    validator: Keypair,
    requester: Keypair,
    provider: Keypair,
    other: Keypair,
    leases: [Lease; 2],
}

fn send(state: &mut State, key: &Keypair, kind: TxKind) {
    let body = TxBody {
        chain: state.chain(),
        nonce: state.account(&key.public()).nonce,
        kind,
    };
    state.apply(&admit(body.sign(key)).unwrap()).unwrap();
}

/// A chain with one validator, a job, and two providers leased on it.
fn world() -> World {
    let [validator, requester, provider, other] =
        [1u8, 2, 3, 4].map(|i| Keypair::from_seed([i; 32]));
    let publics: Vec<PublicKey> = [&validator, &requester, &provider, &other]
        .iter()
        .map(|k| k.public())
        .collect();
    let mut state = Genesis::with_balances("adjudicator", &publics, 1 << 40)
        .with_validators(&publics[..1])
        .state()
        .unwrap();
    let job = ContentId::of(b"job");
    send(
        &mut state,
        &requester,
        TxKind::OpenEscrow {
            job,
            amount: 1 << 30,
        },
    );
    let leases = [&provider, &other].map(|p| {
        let stake = state.params().stake_min;
        send(
            &mut state,
            p,
            TxKind::RegisterProvider {
                capabilities: Capabilities::default(),
                endpoint: "/ip4/127.0.0.1/tcp/1".into(),
                stake,
            },
        );
        let lease = Lease {
            job,
            requester: requester.public(),
            provider: p.public(),
            price_ucairn_per_gfuel: 10,
            fuel_per_task_max: 1_000_000,
            expires_height: 1_000,
        };
        let provider_signature = lease.sign(p);
        send(
            &mut state,
            &requester,
            TxKind::RecordLease {
                lease: lease.clone(),
                provider_signature,
            },
        );
        lease
    });
    World {
        state,
        validator,
        requester,
        provider,
        other,
        leases,
    }
}

fn terms() -> Terms {
    Terms {
        module: FileRef {
            name: "module.wasm".into(),
            id: ContentId::of(b"module"),
            size: 6,
        },
        inputs: Vec::new(),
        limits: TaskLimits {
            fuel: 1_000_000,
            fuel_min: 1_000_000,
            memory_bytes: 1 << 20,
            wall_time_ms: 1_000,
            output_bytes: 1 << 20,
            stdout_bytes: 1 << 10,
            gpus: 0,
            gpu_memory_mib: 0,
        },
    }
}

fn assignment() -> Assignment {
    Assignment {
        task: 3,
        args: vec!["--frame".into(), "3".into()],
        outputs: Vec::new(),
        seed: [7; 32],
        fuel: 1_000_000,
        inputs: Vec::new(),
    }
}

/// `key`'s receipt and one claim under `lease`: states 10 → [1; 32] and
/// 11 → `next`, of a 100-position trace ending in `digest`.
fn party(key: &Keypair, lease: &Lease, digest: &[u8], next: [u8; 32]) -> Party {
    let receipt = Receipt {
        lease: lease.id(),
        task: 3,
        digest: ContentId::of(digest),
        fuel_used: 10,
        salt: [0; 32],
        run: proto::run_digest(&terms(), &assignment()),
    };
    let claim = TraceClaim {
        lease: lease.id(),
        task: 3,
        run: proto::run_digest(&terms(), &assignment()),
        positions: 100,
        digest: receipt.digest,
        points: vec![(10, [1; 32]), (11, next)],
    };
    Party {
        receipt: Signed::sign(key, RECEIPT_NAMESPACE, receipt),
        claims: vec![Signed::sign(key, CLAIM_NAMESPACE, claim)],
    }
}

fn case_state() -> Option<FileRef> {
    Some(FileRef {
        name: "state".into(),
        id: ContentId::of(b"state"),
        size: 5,
    })
}

fn case(w: &World) -> Case {
    Case {
        terms: terms(),
        assignment: assignment(),
        position: 10,
        accused: party(&w.provider, &w.leases[0], b"lie", [2; 32]),
        state: case_state(),
        winner: Some(party(&w.other, &w.leases[1], b"truth", [3; 32])),
    }
}

fn examine_as(w: &World, asker: &Keypair, case: &Case) -> Result<Examined, String> {
    examine(&w.state, &w.validator.public(), &asker.public(), case)
}

#[test]
fn a_case_is_read_from_the_accused_own_claims() {
    let w = world();
    let case = case(&w);
    let examined = examine_as(&w, &w.requester, &case).unwrap();
    assert_eq!(
        examined,
        Examined {
            job: ContentId::of(b"job"),
            from: Some([1; 32]),
            to: [2; 32],
        }
    );
    // The other side signed the state the step reached: it wins.
    assert_eq!(
        winner(&w.state, &case, &examined.job, &[3; 32]),
        Ok(w.other.public())
    );
    // It did not sign this one: no one is named, the slash is burned.
    assert!(winner(&w.state, &case, &examined.job, &[4; 32]).is_err());
    let mut alone = case.clone();
    alone.winner = None;
    assert_eq!(
        winner(&w.state, &alone, &examined.job, &[4; 32]),
        Ok(w.provider.public())
    );
}

/// A requester framing an honest provider cannot sign for it: claims
/// under its own key, claims about another task than the one it handed
/// out, or a case brought by someone else are all refused.
#[test]
fn claim_forger_cases_are_refused() {
    let w = world();
    let honest = case(&w);

    let mut forged = honest.clone();
    let mut claim = forged.accused.claims[0].payload_unchecked().clone();
    claim.points[1].1 = [9; 32];
    forged.accused.claims = vec![Signed::sign(&w.requester, CLAIM_NAMESPACE, claim)];
    let refused = examine_as(&w, &w.requester, &forged).unwrap_err();
    assert!(refused.contains("another key"), "{refused}");

    let mut other_task = honest.clone();
    other_task.assignment.args = vec!["--frame".into(), "4".into()];
    let refused = examine_as(&w, &w.requester, &other_task).unwrap_err();
    assert!(refused.contains("another program"), "{refused}");

    let refused = examine_as(&w, &w.other, &honest).unwrap_err();
    assert!(refused.contains("requester"), "{refused}");

    let mut tampered = honest.clone();
    let mut receipt = tampered.accused.receipt.payload_unchecked().clone();
    receipt.digest = ContentId::of(b"other");
    tampered.accused.receipt = Signed::sign(&w.requester, RECEIPT_NAMESPACE, receipt);
    assert!(examine_as(&w, &w.requester, &tampered).is_err());

    // Not a validator: nothing is judged at all.
    let refused = examine(&w.state, &w.other.public(), &w.requester.public(), &honest).unwrap_err();
    assert!(refused.contains("not a validator"), "{refused}");
}

/// Positions the accused never signed, or past the end of its trace,
/// cannot be judged.
#[test]
fn a_step_the_accused_did_not_claim_is_refused() {
    let w = world();
    let mut unclaimed = case(&w);
    unclaimed.position = 40;
    assert!(examine_as(&w, &w.requester, &unclaimed).is_err());
    let mut ended = case(&w);
    ended.position = 99;
    let refused = examine_as(&w, &w.requester, &ended).unwrap_err();
    assert!(refused.contains("ended"), "{refused}");
    let mut stateless = case(&w);
    stateless.state = None;
    assert!(examine_as(&w, &w.requester, &stateless).is_err());
}

/// A case carries the fewest claims that state both ends of the step.
#[test]
fn covering_picks_the_claims_that_state_the_step() {
    let w = world();
    let p = party(&w.provider, &w.leases[0], b"lie", [2; 32]);
    let length_only = {
        let mut c = p.claims[0].payload_unchecked().clone();
        c.points.clear();
        Signed::sign(&w.provider, CLAIM_NAMESPACE, c)
    };
    let all = vec![length_only.clone(), p.claims[0].clone()];
    assert_eq!(covering(&all, 10), vec![p.claims[0].clone()]);
    // Past the trace's end the length claim states the digest.
    assert_eq!(covering(&all, 98), vec![length_only]);
    assert!(covering(&all, 40).is_empty());
}

/// The case against a side that fell silent: its receipt, no claims, and
/// the whole task to re-run, whose result must be the winner's.
fn whole_case(w: &World) -> Case {
    let mut case = case(w);
    case.position = WHOLE_TASK;
    case.state = None;
    case.accused.claims.clear();
    if let Some(winner) = &mut case.winner {
        winner.claims.clear();
    }
    case
}

/// A side that lost by silence signed nothing but its receipt: it is held
/// to the result that receipt states for the run it names, and the other
/// side wins on its own receipt's result.
#[test]
fn a_silent_side_is_held_to_its_receipt_for_the_whole_task() {
    let w = world();
    let case = whole_case(&w);
    let examined = examine_as(&w, &w.requester, &case).unwrap();
    assert_eq!(
        examined,
        Examined {
            job: ContentId::of(b"job"),
            from: None,
            to: *ContentId::of(b"lie").as_bytes(),
        }
    );
    let truth = *ContentId::of(b"truth").as_bytes();
    assert_eq!(
        winner(&w.state, &case, &examined.job, &truth),
        Ok(w.other.public())
    );
    // A re-run that reaches neither result names no winner.
    assert!(winner(&w.state, &case, &examined.job, &[4; 32]).is_err());
    // The verdict names the run the receipt signed, which the ledger
    // checks against the receipt.
    let verdict = verdict(examined.job, &case, None, truth, w.other.public());
    assert_eq!(verdict.position, WHOLE_TASK);
    assert_eq!(verdict.run, proto::run_digest(&terms(), &assignment()));
    // A whole task starts from nothing: a state brought with it is refused.
    let mut stated = whole_case(&w);
    stated.state = case_state();
    let refused = examine_as(&w, &w.requester, &stated).unwrap_err();
    assert!(refused.contains("no state"), "{refused}");
}

/// A requester framing an honest provider that was merely offline cannot
/// have another run judged than the one its receipt names: another
/// program, inputs or arguments are refused before anything runs.
#[test]
fn run_swapper_cases_against_a_silent_side_are_refused() {
    let w = world();
    let mut other_args = whole_case(&w);
    other_args.assignment.args = vec!["--frame".into(), "4".into()];
    let refused = examine_as(&w, &w.requester, &other_args).unwrap_err();
    assert!(refused.contains("another program"), "{refused}");
    let mut other_module = whole_case(&w);
    other_module.terms.module.id = ContentId::of(b"another module");
    let refused = examine_as(&w, &w.requester, &other_module).unwrap_err();
    assert!(refused.contains("another program"), "{refused}");
    // Nor is a winner whose receipt names another run.
    let mut swapped = whole_case(&w);
    let side = swapped.winner.as_mut().unwrap();
    let mut receipt = side.receipt.payload_unchecked().clone();
    receipt.run = [9; 32];
    side.receipt = Signed::sign(&w.other, RECEIPT_NAMESPACE, receipt);
    let truth = *ContentId::of(b"truth").as_bytes();
    let refused = winner(&w.state, &swapped, &ContentId::of(b"job"), &truth).unwrap_err();
    assert!(refused.contains("another program"), "{refused}");
}
