//! The task queue's bounds, one behaviour per test.

use cairn_sched::{Blocked, Completion, Event, PullRefused, SchedParams, Scheduler, TaskState};
use cairn_wire::{ContentId, Keypair, PublicKey};

fn key(seed: u8) -> PublicKey {
    Keypair::from_seed([seed; 32]).public()
}

fn params() -> SchedParams {
    SchedParams {
        task_deadline_ms: 100,
        silence_ms_max: 1_000,
        strikes_max: 2,
        attempts_max: 4,
        copies_max: 2,
        batch_max: 3,
    }
}

#[test]
fn a_provider_never_gets_more_than_its_slots_or_a_batch() {
    let p = key(1);
    let mut sched = Scheduler::new(10, params());
    sched.add_provider(p, 2, 0);
    assert_eq!(sched.pull(&p, 10, 0).unwrap(), vec![0, 1]);
    assert!(sched.pull(&p, 10, 1).unwrap().is_empty());
    sched.complete(&p, 0, ContentId::of(b"0"), 2);
    assert_eq!(sched.pull(&p, 10, 3).unwrap(), vec![2]);
    sched.add_provider(p, 50, 3);
    assert_eq!(
        sched.pull(&p, 10, 3).unwrap().len(),
        3,
        "batch_max caps a pull"
    );
}

#[test]
fn unknown_and_dropped_providers_are_refused() {
    let mut sched = Scheduler::new(1, params());
    assert_eq!(sched.pull(&key(9), 1, 0), Err(PullRefused::UnknownProvider));
    sched.add_provider(key(1), 1, 0);
    sched.drop_provider(&key(1), "caught lying");
    assert_eq!(
        sched.pull(&key(1), 1, 0),
        Err(PullRefused::Dropped("caught lying".into()))
    );
}

#[test]
fn a_provider_that_never_answers_loses_its_task_after_the_deadline() {
    let (silent, honest) = (key(1), key(2));
    let mut sched = Scheduler::new(1, params());
    sched.add_provider(silent, 1, 0);
    sched.add_provider(honest, 1, 0);
    assert_eq!(sched.pull(&silent, 1, 0).unwrap(), vec![0]);
    assert!(sched.tick(99).is_empty());
    assert_eq!(
        sched.tick(100),
        vec![Event::Expired {
            task: 0,
            provider: silent
        }]
    );
    assert_eq!(sched.pull(&honest, 1, 101).unwrap(), vec![0]);
    assert_eq!(
        sched.complete(&honest, 0, ContentId::of(b"r"), 150),
        Completion::Accepted
    );
    assert_eq!(
        sched.complete(&silent, 0, ContentId::of(b"r"), 151),
        Completion::NotAssigned,
        "a result after the deadline is not accepted"
    );
    assert!(sched.is_finished());
}

#[test]
fn repeated_misses_and_silence_drop_a_provider_and_requeue_its_tasks() {
    let (misser, quiet) = (key(1), key(2));
    let mut sched = Scheduler::new(6, params());
    sched.add_provider(misser, 1, 0);
    sched.pull(&misser, 1, 0).unwrap();
    sched.tick(100);
    sched.pull(&misser, 1, 100).unwrap();
    let events = sched.tick(200);
    assert!(events.contains(&Event::Dropped {
        provider: misser,
        reason: "missed 2 task deadlines".into()
    }));
    sched.add_provider(quiet, 3, 200);
    sched.pull(&quiet, 3, 200).unwrap();
    // It neither pulls nor returns; its deadline is later than its silence
    // bound here, so silence is what drops it.
    let mut long = params();
    long.task_deadline_ms = 10_000;
    let mut sched2 = Scheduler::new(3, long);
    sched2.add_provider(quiet, 3, 0);
    sched2.pull(&quiet, 3, 0).unwrap();
    assert_eq!(sched2.next_deadline_ms(), Some(1_001));
    let events = sched2.tick(1_001);
    assert!(matches!(events[0], Event::Dropped { .. }), "{events:?}");
    assert_eq!(sched2.progress().pending, 3);
}

/// A provider dropped for lateness or silence may be readmitted (its
/// requester chose it again), with a clean record; one dropped for any
/// other reason, or still in the job, is not.
#[test]
fn only_a_provider_dropped_for_lateness_or_silence_is_readmitted() {
    let (misser, liar, present) = (key(1), key(2), key(3));
    let mut sched = Scheduler::new(6, params());
    for p in [misser, liar, present] {
        sched.add_provider(p, 1, 0);
    }
    sched.pull(&misser, 1, 0).unwrap();
    sched.tick(100);
    sched.pull(&misser, 1, 100).unwrap();
    sched.tick(200);
    sched.drop_provider(&liar, "caught lying");
    assert!(sched.may_rejoin(&misser) && !sched.may_rejoin(&liar));
    assert!(!sched.may_rejoin(&present) && !sched.may_rejoin(&key(9)));
    assert!(!sched.readmit(&liar, 300));
    assert!(!sched.readmit(&present, 300));
    assert!(!sched.readmit(&key(9), 300));
    assert_eq!(sched.progress().providers, 1, "only the present one");
    sched.add_provider(misser, 2, 300);
    assert_eq!(sched.progress().providers, 1, "added again, still out");
    assert!(sched.readmit(&misser, 300));
    assert!(sched.is_active(&misser) && !sched.may_rejoin(&misser));
    assert_eq!(sched.progress().providers, 2);
    let taken = sched.pull(&misser, 5, 300).unwrap();
    assert_eq!(taken.len(), 2, "its slots");
    // Its strikes were forgiven: one more miss does not drop it again.
    sched.complete(&misser, taken[0], ContentId::of(b"r"), 350);
    let events = sched.tick(400);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Dropped { .. })),
        "{events:?}"
    );
    assert_eq!(
        sched.pull(&liar, 1, 400),
        Err(PullRefused::Dropped("caught lying".into()))
    );
    // Late again, it stays out: once is all.
    sched.pull(&misser, 1, 400).unwrap();
    let events = sched.tick(500);
    assert!(
        events.iter().any(|e| matches!(e, Event::Dropped { .. })),
        "{events:?}"
    );
    sched.pull(&misser, 1, 500).unwrap_err();
    assert!(!sched.may_rejoin(&misser) && !sched.readmit(&misser, 600));
    assert_eq!(sched.progress().providers, 1);

    // Dropped for lateness, then caught cheating: it stays out.
    let cheat = key(4);
    let mut sched = Scheduler::new(6, params());
    sched.add_provider(cheat, 2, 0);
    sched.pull(&cheat, 2, 0).unwrap();
    sched.tick(100);
    assert!(sched.may_rejoin(&cheat));
    sched.drop_provider(&cheat, "convicted");
    assert!(!sched.may_rejoin(&cheat) && !sched.readmit(&cheat, 200));
}

#[test]
fn stragglers_get_a_speculative_copy_and_the_first_result_wins() {
    let (slow, fast) = (key(1), key(2));
    let mut sched = Scheduler::new(3, params());
    sched.add_provider(slow, 1, 0);
    sched.add_provider(fast, 2, 0);
    assert_eq!(sched.pull(&slow, 1, 0).unwrap(), vec![0]);
    assert_eq!(sched.pull(&fast, 1, 0).unwrap(), vec![1]);
    // Before any result, nothing is known to be slow: no copy.
    assert_eq!(sched.pull(&fast, 1, 1).unwrap(), vec![2]);
    assert_eq!(sched.pull(&fast, 1, 2).unwrap(), Vec::<u32>::new());
    // Results take 4 ms: task 0, out for 5, is not yet half as long again.
    let r1 = ContentId::of(b"r1");
    assert_eq!(sched.complete(&fast, 1, r1, 4), Completion::Accepted);
    assert_eq!(sched.pull(&fast, 1, 5).unwrap(), Vec::<u32>::new());
    assert_eq!(
        sched.pull(&fast, 1, 6).unwrap(),
        vec![0],
        "out for 6 ms, half as long again as a result takes: a straggler"
    );
    let digest = ContentId::of(b"r0");
    assert_eq!(sched.complete(&fast, 0, digest, 10), Completion::Accepted);
    assert_eq!(sched.complete(&slow, 0, digest, 20), Completion::Duplicate);
    assert_eq!(
        sched.complete(&slow, 0, ContentId::of(b"other"), 21),
        Completion::Mismatch {
            accepted: digest,
            accepted_from: fast
        }
    );
    assert_eq!(sched.progress().done, 2);
    // The slow provider's slot was freed when the copy was superseded.
    assert_eq!(
        sched.pull(&slow, 1, 22).unwrap(),
        vec![2],
        "its freed slot takes a copy of the other straggler"
    );
}

/// A job's tasks differ in size, and a copy of a long task takes as long
/// as the task: what straggles is a task out for longer than the long end
/// of the job's results, not one merely longer than most.
#[test]
fn a_task_merely_longer_than_most_gets_no_copy_but_one_past_the_long_end_does() {
    let (worker, idle) = (key(1), key(2));
    let params = SchedParams {
        task_deadline_ms: 10_000,
        batch_max: 64,
        ..params()
    };
    let mut sched = Scheduler::new(11, params);
    sched.add_provider(worker, 11, 0);
    sched.add_provider(idle, 1, 0);
    assert_eq!(sched.pull(&worker, 11, 0).unwrap().len(), 11);
    // Ten results take 10 to 100 ms: a mean of 55, nine in ten within 90.
    for task in 0..10u32 {
        let at = u64::from(task + 1) * 10;
        let digest = ContentId::of(&task.to_le_bytes());
        assert_eq!(
            sched.complete(&worker, task, digest, at),
            Completion::Accepted
        );
    }
    assert_eq!(
        sched.pull(&idle, 1, 120).unwrap(),
        Vec::<u32>::new(),
        "out for 120 ms: over half as long again as the mean, not as the long end"
    );
    assert_eq!(
        sched.pull(&idle, 1, 150).unwrap(),
        vec![10],
        "out for 150 ms: past half as long again as nine in ten results took"
    );
}

/// A provider alive enough never to be dropped as silent, that holds a
/// job's first tasks and returns nothing: with no result to time, a copy
/// goes out once a task has been out for half its deadline, not after
/// each of the provider's strikes.
#[test]
fn before_any_result_a_task_out_for_half_its_deadline_gets_a_copy() {
    let (holder, idle) = (key(1), key(2));
    let mut sched = Scheduler::new(1, params());
    sched.add_provider(holder, 1, 0);
    sched.add_provider(idle, 1, 0);
    assert_eq!(sched.pull(&holder, 1, 0).unwrap(), vec![0]);
    assert_eq!(sched.pull(&idle, 1, 49).unwrap(), Vec::<u32>::new());
    assert_eq!(
        sched.pull(&idle, 1, 50).unwrap(),
        vec![0],
        "out for half its 100 ms deadline"
    );
}

#[test]
fn a_task_that_keeps_failing_is_given_up_after_its_attempts() {
    let p = key(1);
    let mut sched = Scheduler::new(1, params());
    sched.add_provider(p, 1, 0);
    for attempt in 1..=4 {
        assert_eq!(sched.pull(&p, 1, attempt).unwrap(), vec![0]);
        let event = sched.release(&p, 0, attempt);
        assert_eq!(event.is_some(), attempt == 4, "attempt {attempt}");
    }
    assert!(matches!(sched.task(0), Some(TaskState::Failed(_))));
    assert!(sched.is_finished());
    assert_eq!(sched.progress().failed, 1);
}

#[test]
fn restored_results_are_not_handed_out_again() {
    let p = key(1);
    let mut sched = Scheduler::new(3, params());
    sched.restore(1, p, ContentId::of(b"r1"));
    sched.add_provider(p, 3, 0);
    assert_eq!(sched.pull(&p, 3, 0).unwrap(), vec![0, 2]);
    assert_eq!(sched.progress().done, 1);
}

#[test]
fn a_provider_whose_connection_drops_loses_its_tasks_but_not_its_place() {
    let (restarting, other) = (key(1), key(2));
    let mut sched = Scheduler::new(2, params());
    sched.add_provider(restarting, 2, 0);
    sched.add_provider(other, 2, 0);
    assert_eq!(sched.pull(&restarting, 2, 0).unwrap(), vec![0, 1]);
    assert!(sched.release_all(&restarting).is_empty());
    assert_eq!(sched.progress().pending, 2);
    assert!(sched.is_active(&restarting));
    assert_eq!(
        sched.complete(&restarting, 0, ContentId::of(b"r"), 5),
        Completion::NotAssigned,
        "a result for a task taken back is not accepted"
    );
    assert_eq!(sched.pull(&restarting, 1, 6).unwrap(), vec![0]);
    assert_eq!(sched.pull(&other, 1, 6).unwrap(), vec![1]);
}

#[test]
fn a_requeued_task_goes_only_to_a_provider_that_has_not_run_it() {
    let (a, b) = (key(1), key(2));
    let mut sched = Scheduler::new(2, SchedParams::default());
    sched.add_provider(a, 4, 0);
    sched.add_provider(b, 4, 0);
    assert_eq!(sched.pull(&a, 2, 0).unwrap(), vec![0, 1]);
    assert_eq!(
        sched.complete(&a, 0, ContentId::of(b"r"), 1),
        Completion::Accepted
    );
    assert!(!sched.is_finished());
    sched.requeue(0, [a]);
    assert_eq!(sched.progress().done, 0);
    // A ran task 0 already: it gets nothing; B gets the replica.
    assert!(sched.pull(&a, 4, 2).unwrap().is_empty());
    assert_eq!(sched.pull(&b, 1, 2).unwrap(), vec![0]);
    assert_eq!(
        sched.complete(&b, 0, ContentId::of(b"r"), 3),
        Completion::Accepted
    );
    assert_eq!(
        sched.complete(&a, 1, ContentId::of(b"s"), 3),
        Completion::Accepted
    );
    assert!(sched.is_finished());
    // Requeueing a task that is not finished only adds exclusions.
    sched.requeue(7, [b]);
    assert!(sched.is_finished());
}

/// A job whose every pending task each provider in it has run is blocked:
/// only another provider unblocks it, and one that arrives does.
#[test]
fn a_requeued_task_every_provider_ran_is_blocked_until_another_arrives() {
    let (a, b) = (key(1), key(2));
    let mut sched = Scheduler::new(4, SchedParams::default());
    assert_eq!(sched.blocked(8), None, "no provider: not blocked");
    sched.add_provider(a, 4, 0);
    assert_eq!(sched.pull(&a, 4, 0).unwrap(), vec![0, 1, 2, 3]);
    for task in 0..4 {
        sched.complete(&a, task, ContentId::of(b"r"), 1);
    }
    assert_eq!(sched.blocked(8), None, "nothing pending");
    for task in [0, 2, 3] {
        sched.requeue(task, [a]);
    }
    let blocked = |count, first: &[u32]| {
        Some(Blocked {
            count,
            first: first.to_vec(),
        })
    };
    assert_eq!(sched.blocked(2), blocked(3, &[0, 2]), "three, two shown");
    assert!(sched.pull(&a, 4, 2).unwrap().is_empty());
    // B may take task 0 but not 2 or 3: the job is not blocked.
    sched.requeue(2, [a, b]);
    sched.requeue(3, [a, b]);
    sched.add_provider(b, 4, 3);
    assert_eq!(sched.blocked(8), None);
    assert_eq!(sched.pull(&b, 4, 3).unwrap(), vec![0]);
    assert_eq!(
        sched.blocked(8),
        blocked(2, &[2, 3]),
        "a running task is not pending"
    );
    // B leaves: its task comes back, and only A, which ran them all, is left.
    sched.drop_provider(&b, "gone");
    assert_eq!(sched.blocked(8), blocked(3, &[0, 2, 3]));
}

/// An `index_overflower` names tasks past the job's end in every call a
/// provider's message reaches: nothing panics, nothing changes.
#[test]
fn index_overflower_changes_nothing() {
    let p = key(1);
    let mut sched = Scheduler::new(3, params());
    sched.add_provider(p, 2, 0);
    let before = sched.progress();
    for task in [3, 4, 1 << 20, u32::MAX] {
        assert_eq!(
            sched.complete(&p, task, ContentId::of(b"x"), 1),
            Completion::NotAssigned
        );
        assert_eq!(sched.release(&p, task, 1), None);
        sched.requeue(task, [p]);
        sched.restore(task, p, ContentId::of(b"x"));
        assert!(sched.task(task).is_none());
    }
    assert_eq!(sched.progress(), before);
    assert_eq!(sched.pull(&p, 10, 2).unwrap(), vec![0, 1]);
}

/// The next deadline is the earliest copy still running: a copy that
/// returned or was released no longer counts, so a driver sleeping until it
/// wakes only for work that is due.
#[test]
fn the_next_deadline_is_the_earliest_copy_still_running() {
    let mut long = params();
    long.task_deadline_ms = 5_000;
    long.silence_ms_max = 60_000;
    let (early, late) = (key(1), key(2));
    let mut sched = Scheduler::new(3, long);
    sched.add_provider(early, 1, 0);
    sched.add_provider(late, 2, 0);
    let first = sched.pull(&early, 1, 0).unwrap()[0];
    let later = sched.pull(&late, 2, 1_000).unwrap();
    assert_eq!(sched.next_deadline_ms(), Some(5_000));
    assert_eq!(
        sched.complete(&early, first, ContentId::of(b"r"), 2_000),
        Completion::Accepted
    );
    assert_eq!(
        sched.next_deadline_ms(),
        Some(6_000),
        "the returned copy left"
    );
    sched.release(&late, later[0], 2_500);
    assert_eq!(sched.next_deadline_ms(), Some(6_000));
    assert!(sched.tick(5_999).is_empty(), "nothing due before it");
    let events = sched.tick(6_000);
    assert_eq!(
        events,
        [Event::Expired {
            task: later[1],
            provider: late
        }]
    );
    assert_eq!(sched.next_deadline_ms(), None, "nothing left running");
}

/// Silence is watched only for providers holding work: a crowd of idle
/// leased providers sets no deadline and is never dropped, however long it
/// stays quiet, while the one provider sitting on a task is dropped the
/// moment its silence passes the limit, and not a millisecond before.
#[test]
fn only_a_provider_holding_work_is_dropped_for_silence() {
    let mut p = params();
    p.task_deadline_ms = 1_000_000;
    p.silence_ms_max = 10_000;
    let mut sched = Scheduler::new(1, p);
    for n in 10..200 {
        sched.add_provider(key(n), 1, 0);
    }
    assert_eq!(sched.next_deadline_ms(), None, "nobody holds work");
    let holder = key(1);
    sched.add_provider(holder, 1, 0);
    assert_eq!(sched.pull(&holder, 1, 500).unwrap(), [0]);
    assert_eq!(sched.next_deadline_ms(), Some(10_501));
    assert!(
        sched.tick(10_500).is_empty(),
        "exactly at the limit: not yet"
    );
    let events = sched.tick(10_501);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(&events[0], Event::Dropped { provider, .. } if *provider == holder));
    assert_eq!(sched.progress().pending, 1, "its task is back in the queue");
    assert_eq!(sched.next_deadline_ms(), None);
    assert!(
        sched.tick(1_000_000_000).is_empty(),
        "the idle are never dropped"
    );
    let idle = key(10);
    assert_eq!(sched.pull(&idle, 1, 1_000_000_001).unwrap(), [0]);
}

#[test]
fn a_cancelled_queue_gives_up_what_is_not_done_and_hands_out_nothing_more() {
    let (a, b) = (key(1), key(2));
    let mut sched = Scheduler::new(5, params());
    sched.add_provider(a, 2, 0);
    sched.add_provider(b, 1, 0);
    assert_eq!(sched.pull(&a, 10, 0).unwrap(), vec![0, 1]);
    assert_eq!(sched.pull(&b, 10, 0).unwrap(), vec![2]);
    assert_eq!(sched.pull(&a, 10, 1).unwrap(), Vec::<u32>::new());
    for task in [0, 1] {
        assert_eq!(
            sched.complete(&a, task, ContentId::of(b"0"), 5),
            Completion::Accepted
        );
    }
    // Task 1's result is not final (verification wanted another replica):
    // it is given up with the rest.
    assert_eq!(
        sched.cancel("cancelled", |task| task == 0),
        vec![1, 2, 3, 4]
    );
    assert!(sched.is_finished());
    let p = sched.progress();
    assert_eq!((p.done, p.failed, p.running, p.pending), (1, 4, 0, 0));
    assert!(matches!(sched.task(0), Some(TaskState::Done { .. })));
    assert_eq!(sched.task(1), Some(&TaskState::Failed("cancelled".into())));
    assert_eq!(sched.task(3), Some(&TaskState::Failed("cancelled".into())));
    // Nothing more is handed out, no deadline fires, and a copy that was
    // running when the job was cancelled is not taken.
    assert!(sched.pull(&b, 10, 10).unwrap().is_empty());
    assert_eq!(sched.next_deadline_ms(), None);
    assert!(sched.tick(10_000).is_empty());
    assert_eq!(
        sched.complete(&b, 2, ContentId::of(b"2"), 20),
        Completion::NotAssigned
    );
    assert_eq!(sched.progress().done, 1);
}
