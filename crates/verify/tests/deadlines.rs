//! Commit deadlines, kept in a queue: each replica is judged by its own
//! latest deadline, and a tick acts on those due and no other.

use cairn_job::VerifyPolicy;
use cairn_verify::{Params, Verifier};
use cairn_wire::{ContentId, Keypair};

#[test]
fn a_replica_assigned_again_after_a_drop_is_judged_by_its_new_deadline() {
    let params = Params::default();
    let commit_ms = params.commit_timeout_ms;
    let mut verifier = Verifier::new(params, 1);
    let job = ContentId::of(b"job");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, 1_000_000);
    let task = (job, 0);
    let (a, b) = (
        Keypair::from_seed([1; 32]).public(),
        Keypair::from_seed([2; 32]).public(),
    );
    verifier.assign(&task, a, 0).unwrap();
    verifier.assign(&task, b, 0).unwrap();
    // A's copy ends early (it expired elsewhere); A takes the task again.
    let again = commit_ms / 2;
    verifier.withdraw(&task, &a, again);
    verifier.assign(&task, a, again).unwrap();

    // A driver sleeps until the first deadline, not on a period.
    assert_eq!(verifier.next_deadline_ms(), Some(commit_ms));
    verifier.tick(commit_ms - 1);
    assert_eq!(
        verifier.providers_of(&task),
        vec![b, a],
        "nothing is due yet"
    );
    // B's deadline: B never committed and is dropped; A's first deadline
    // is stale and changes nothing.
    verifier.tick(commit_ms);
    assert_eq!(verifier.providers_of(&task), vec![a]);
    assert_eq!(verifier.next_deadline_ms(), Some(again + commit_ms));
    verifier.tick(again + commit_ms - 1);
    assert_eq!(verifier.providers_of(&task), vec![a]);
    verifier.tick(again + commit_ms);
    assert!(verifier.providers_of(&task).is_empty(), "A's own deadline");
    assert_eq!(verifier.next_deadline_ms(), None, "nothing left to time");
}

/// Who `actions` convict.
fn convicted(actions: &[cairn_verify::Action]) -> Vec<cairn_wire::PublicKey> {
    actions
        .iter()
        .filter_map(|a| match a {
            cairn_verify::Action::Convicted { provider, .. } => Some(*provider),
            _ => None,
        })
        .collect()
}

/// A reveal that arrived in time is not convicted while the requester
/// fetches its outputs, even past the reveal deadline (the fetch may wait
/// on another replica's identical outputs from a stalled peer): it has the
/// fetch's own time, once. The replica that never revealed is convicted at
/// the reveal deadline, and a reveal that arrives but never comes through
/// is convicted when its fetch time is over.
#[test]
fn an_arrived_reveal_is_judged_by_its_fetch_time_not_the_reveal_deadline() {
    use cairn_verify::{Commitment, Reveal};

    let params = Params::default();
    let (reveal_ms, fetch_ms) = (params.reveal_timeout_ms, params.reveal_fetch_timeout_ms);
    let mut verifier = Verifier::new(params, 1);
    let job = ContentId::of(b"job");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 3 }, 1, 1_000_000);
    let task = (job, 0);
    let digest = ContentId::of(b"result");
    let [fetched, silent, never_served] =
        [1u8, 2, 3].map(|seed| Keypair::from_seed([seed; 32]).public());
    let replicas = [fetched, silent, never_served];
    for provider in replicas {
        verifier.assign(&task, provider, 0).unwrap();
    }
    let reveals = replicas.map(|provider| Reveal {
        digest,
        salt: *provider.as_bytes(),
    });
    for (provider, reveal) in replicas.iter().zip(&reveals) {
        verifier
            .commit(&task, provider, Commitment::new(provider, reveal), 1)
            .unwrap();
    }
    // Asked at 1; two reveals arrive just in time, their outputs to fetch.
    let arrived = reveal_ms;
    assert!(verifier.reveal_arrived(&task, &fetched, arrived));
    assert!(verifier.reveal_arrived(&task, &never_served, arrived));
    let stranger = Keypair::from_seed([9; 32]).public();
    assert!(
        !verifier.reveal_arrived(&task, &stranger, arrived),
        "a stranger's reveal was not waited for"
    );

    let at_deadline = verifier.tick(1 + reveal_ms);
    assert_eq!(
        convicted(&at_deadline),
        vec![silent],
        "only the silent one, at its deadline"
    );

    // Arriving again gives no more time.
    let late = arrived + fetch_ms - 1;
    assert!(verifier.reveal_arrived(&task, &never_served, late));
    assert!(convicted(&verifier.tick(late)).is_empty());
    verifier.reveal(&task, &fetched, &reveals[0], late).unwrap();
    assert_eq!(
        convicted(&verifier.tick(arrived + fetch_ms)),
        vec![never_served],
        "its fetch time is over"
    );
}

/// A reveal whose outputs could not be fetched is held to the deadline it
/// was asked under: before it, the provider may send it again (and gets a
/// fetch's time again); past it, it is convicted at once. So a provider
/// that reveals and never serves gains no time beyond one failed fetch.
#[test]
fn a_reveal_whose_outputs_never_come_is_held_to_its_reveal_deadline() {
    use cairn_verify::{Commitment, Reveal};

    let reveal_ms = Params::default().reveal_timeout_ms;
    let job = ContentId::of(b"job");
    let task = (job, 0);
    let [provider, other] = [1u8, 2].map(|seed| Keypair::from_seed([seed; 32]).public());
    // Both replicas committed at 1 and asked to reveal then.
    let asked = || {
        let mut verifier = Verifier::new(Params::default(), 1);
        verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, 1_000_000);
        for p in [provider, other] {
            verifier.assign(&task, p, 0).unwrap();
            let reveal = Reveal {
                digest: ContentId::of(b"result"),
                salt: *p.as_bytes(),
            };
            verifier
                .commit(&task, &p, Commitment::new(&p, &reveal), 1)
                .unwrap();
        }
        verifier
    };

    // The fetch fails early: no conviction yet, and the reveal deadline
    // holds again (it used to be the fetch's, three times longer).
    let mut verifier = asked();
    assert!(verifier.reveal_arrived(&task, &provider, 10));
    assert!(convicted(&verifier.reveal_not_fetched(&task, &provider, 20)).is_empty());
    assert!(verifier.reveal_arrived(&task, &other, 30));
    let at_deadline = convicted(&verifier.tick(1 + reveal_ms));
    assert_eq!(
        at_deadline,
        vec![provider],
        "its own deadline, not the fetch's"
    );

    // The fetch fails past the deadline: convicted at once.
    let mut verifier = asked();
    assert!(verifier.reveal_arrived(&task, &provider, reveal_ms - 10));
    assert_eq!(
        convicted(&verifier.reveal_not_fetched(&task, &provider, reveal_ms + 20)),
        vec![provider]
    );
}

/// A job being paid keeps its results: a provider convicted later, on
/// another job, loses what it is owed there, but the results it helped
/// accept in the sealed job are not reopened (nothing would run them
/// again, and the user already has them). An open job's are.
#[test]
fn a_conviction_after_a_job_settles_does_not_reopen_its_results() {
    use cairn_verify::{Action, Commitment, Reveal};
    use cairn_wire::PublicKey;

    let params = Params::default();
    let reveal_ms = params.reveal_timeout_ms;
    let mut verifier = Verifier::new(params, 1);
    let [a, b] = [1u8, 2].map(|seed| Keypair::from_seed([seed; 32]).public());
    let jobs = [b"settled".as_slice(), b"open", b"third"].map(ContentId::of);
    let digest = ContentId::of(b"result");
    for job in jobs {
        verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, 1_000_000);
        let task = (job, 0);
        let reveal = |provider: PublicKey| Reveal {
            digest,
            salt: *provider.as_bytes(),
        };
        for provider in [a, b] {
            verifier.assign(&task, provider, 0).unwrap();
        }
        for provider in [a, b] {
            verifier
                .commit(
                    &task,
                    &provider,
                    Commitment::new(&provider, &reveal(provider)),
                    1,
                )
                .unwrap();
        }
        for provider in [a, b] {
            // The third job's task: A never reveals.
            if job != jobs[2] || provider != a {
                verifier
                    .reveal(&task, &provider, &reveal(provider), 2)
                    .unwrap();
            }
        }
    }
    assert!(verifier.job_done(&jobs[0]) && verifier.job_done(&jobs[1]));
    verifier.seal(&jobs[0]);

    let actions = verifier.tick(1 + reveal_ms);
    assert_eq!(convicted(&actions), vec![a]);
    let reopened: Vec<_> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Reopen { task } => Some(task.0),
            _ => None,
        })
        .collect();
    assert_eq!(reopened, vec![jobs[1]], "only the open job's result");
    assert_eq!(verifier.accepted_count(&jobs[0]), 1);
    assert_eq!(verifier.accepted_count(&jobs[1]), 0);
}

/// A cancelled job keeps its accepted results and gives up the rest: no
/// deadline of it is kept, so the replica that committed and was never
/// asked to reveal is not convicted, and nothing it sends later is
/// accepted.
#[test]
fn a_cancelled_job_keeps_its_accepted_results_and_times_nothing_more() {
    use cairn_verify::{Action, Commitment, Reveal};
    use cairn_wire::PublicKey;

    let params = Params::default();
    let reveal_ms = params.reveal_timeout_ms;
    let mut verifier = Verifier::new(params, 1);
    let [a, b] = [1u8, 2].map(|seed| Keypair::from_seed([seed; 32]).public());
    let job = ContentId::of(b"cancelled");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 3, 1_000_000);
    let reveal = |provider: PublicKey| Reveal {
        digest: ContentId::of(b"result"),
        salt: *provider.as_bytes(),
    };
    // Task 0 is accepted; task 1 is committed to by both, not revealed;
    // task 2 is only assigned.
    for task in [(job, 0), (job, 1)] {
        for provider in [a, b] {
            verifier.assign(&task, provider, 0).unwrap();
            verifier
                .commit(
                    &task,
                    &provider,
                    Commitment::new(&provider, &reveal(provider)),
                    1,
                )
                .unwrap();
        }
    }
    for provider in [a, b] {
        verifier
            .reveal(&(job, 0), &provider, &reveal(provider), 2)
            .unwrap();
    }
    verifier.assign(&(job, 2), a, 3).unwrap();
    assert_eq!(verifier.accepted_count(&job), 1);
    assert!(!verifier.job_done(&job));

    let cancelled = verifier.cancel(&job);
    assert_eq!(cancelled.given_up, [1, 2].into());
    assert!(cancelled.withdrawn.is_empty() && cancelled.disputes.is_empty());
    assert!(verifier.job_done(&job), "every task is decided");
    assert_eq!(verifier.accepted_count(&job), 1);
    assert_eq!(verifier.next_deadline_ms(), None);
    let actions = verifier.tick(10 * reveal_ms);
    assert!(convicted(&actions).is_empty(), "{actions:?}");
    let late = verifier.reveal(&(job, 1), &a, &reveal(a), 3);
    let accepted = late
        .iter()
        .flatten()
        .any(|action| matches!(action, Action::Accept { .. }));
    assert!(!accepted, "{late:?}");
    assert_eq!(verifier.accepted_count(&job), 1);
}

/// A conviction reaches every replica its provider holds in the open jobs,
/// a speculative copy as much as a replica verification asked for: the
/// liar's copy of a task in another job is dropped at once, long before
/// its own deadline would have dropped it.
#[test]
fn a_conviction_drops_the_liars_speculative_copy_in_another_job() {
    use cairn_verify::{Commitment, Reveal};
    use cairn_wire::PublicKey;

    let mut verifier = Verifier::new(Params::default(), 1);
    let [honest, liar] = [1u8, 2].map(|seed| Keypair::from_seed([seed; 32]).public());
    let reveal = |provider: PublicKey| Reveal {
        digest: ContentId::of(b"result"),
        salt: *provider.as_bytes(),
    };
    // The job it holds a copy in, beyond the one replica asked for.
    let copied = (ContentId::of(b"copied"), 0);
    verifier.open_job(
        copied.0,
        VerifyPolicy::Replicate { replicas: 1 },
        1,
        1_000_000,
    );
    verifier.assign(&copied, honest, 0).unwrap();
    verifier.assign_copy(&copied, liar, 0);
    assert_eq!(verifier.providers_of(&copied), vec![honest, liar]);
    // The job it is convicted in: it opens its commitment to another result.
    let judged = (ContentId::of(b"judged"), 0);
    verifier.open_job(
        judged.0,
        VerifyPolicy::Replicate { replicas: 2 },
        1,
        1_000_000,
    );
    for provider in [honest, liar] {
        verifier.assign(&judged, provider, 0).unwrap();
    }
    for provider in [honest, liar] {
        verifier
            .commit(
                &judged,
                &provider,
                Commitment::new(&provider, &reveal(provider)),
                1,
            )
            .unwrap();
    }
    let other = Reveal {
        digest: ContentId::of(b"another result"),
        ..reveal(liar)
    };
    let actions = verifier.reveal(&judged, &liar, &other, 2).unwrap();

    assert_eq!(convicted(&actions), vec![liar]);
    assert_eq!(
        verifier.providers_of(&copied),
        vec![honest],
        "the copy goes with the conviction"
    );
    // The jobs a conviction of it reaches, until each is closed.
    assert_eq!(verifier.jobs_given(&liar), [copied.0, judged.0].into());
    verifier.close_job(&copied.0);
    assert_eq!(verifier.jobs_given(&liar), [judged.0].into());
    assert_eq!(verifier.jobs_given(&honest), [judged.0].into());
}
