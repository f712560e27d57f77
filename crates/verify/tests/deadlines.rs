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
