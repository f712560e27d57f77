//! A lease's pull loop, driven by hand: every decision the shell used to
//! make between awaits, checked without a network or a clock.

use cairn_ledger::{OPENING_NAMESPACE, RECEIPT_NAMESPACE, Receipt};

use super::*;
use cairn_proto::{FileRef, StreamRef};

fn key() -> Keypair {
    Keypair::from_seed([3; 32])
}

fn lease() -> ContentId {
    ContentId::of(b"lease")
}

fn work(slots: u32) -> LeaseWork {
    LeaseWork::new(slots, 100, key(), None, Vec::new(), 0)
}

fn task(index: u32) -> Assignment {
    Assignment {
        task: index,
        args: vec![index.to_string()],
        outputs: Vec::new(),
        seed: [index as u8; 32],
    }
}

fn tasks(answer_tasks: Vec<Assignment>) -> Result<Response, String> {
    Ok(Response::Tasks {
        stored: 0,
        tasks: answer_tasks,
        finished: false,
        reveal: Vec::new(),
    })
}

fn result(index: u32) -> Report {
    let digest = ContentId::of(&index.to_be_bytes());
    Report::Revealed {
        opening: Signed::sign(
            &key(),
            OPENING_NAMESPACE,
            Opening {
                lease: lease(),
                task: u64::from(index),
                digest,
                salt: [9; 32],
            },
        ),
        receipt: Signed::sign(
            &key(),
            RECEIPT_NAMESPACE,
            Receipt {
                lease: lease(),
                task: u64::from(index),
                digest,
                fuel_used: 1,
            },
        ),
        code: 0,
        exit: 0,
        outcome: "exit 0".into(),
        outputs: vec![FileRef {
            name: "frame.png".into(),
            id: ContentId::of(b"frame"),
            size: 5,
        }],
        stdout: StreamRef::of(b"out"),
        stderr: StreamRef::of(b""),
    }
}

/// Every task a report is still held for.
fn held(work: &LeaseWork) -> Vec<u64> {
    let mut tasks: Vec<u64> = work.unsent.iter().map(Report::task).collect();
    tasks.extend(work.sealed.keys());
    tasks.sort();
    tasks.dedup();
    tasks
}

fn pull(work: &mut LeaseWork, now: u64) -> Pull {
    match work.next(now) {
        Next::Pull(pull) => pull,
        other => panic!("expected a pull at {now}, got {other:?}"),
    }
}

#[test]
fn an_idle_lease_pulls_at_once_and_runs_what_it_is_handed_within_its_prefetch() {
    let mut work = work(2);
    let first = pull(&mut work, 0);
    // One task per slot until tasks have been timed (50 ms each assumed).
    assert_eq!(first.want, 2);
    assert!(first.reports.is_empty() && first.writes.is_empty());
    // A requester handing out more than was asked gets only what was.
    let taken = work.answered(1, first.want, tasks((0..5).map(task).collect()), |_| true);
    assert_eq!(taken.iter().map(|t| t.task).collect::<Vec<_>>(), [0, 1]);
    // Both slots busy and the prefetch full: nothing is due until the
    // heartbeat.
    assert!(matches!(work.next(2), Next::Wait(Some(at)) if at == HEARTBEAT_MS));
}

#[test]
fn tiny_tasks_deepen_the_prefetch_and_long_ones_do_not() {
    let mut work = work(1);
    let p = pull(&mut work, 0);
    let taken = work.answered(0, p.want, tasks(vec![task(0)]), |_| true);
    assert_eq!(taken.len(), 1);
    // The measured duration is a moving average: a few quick tasks bring
    // it down.
    for _ in 0..20 {
        work.finished(
            Report::Failed {
                task: 0,
                reason: String::new(),
            },
            0.1,
        );
    }
    // Tasks of about 0.1 ms: the whole prefetch of one slot.
    assert_eq!(pull(&mut work, 1).want, proto::PREFETCH_PER_SLOT_MAX);

    let mut slow = self::work(1);
    let p = pull(&mut slow, 0);
    slow.answered(0, p.want, tasks(vec![task(0)]), |_| true);
    slow.finished(
        Report::Failed {
            task: 0,
            reason: String::new(),
        },
        10_000.0,
    );
    assert_eq!(pull(&mut slow, 1).want, 1, "a long task is not hoarded");
}

#[test]
fn a_result_is_sent_sealed_persisted_first_and_revealed_only_when_asked() {
    let mut work = work(1);
    let p = pull(&mut work, 0);
    work.answered(0, p.want, tasks(vec![task(7)]), |_| true);
    work.finished(result(7), 5.0);

    let p = pull(&mut work, 1);
    // The result and its answer are written before the pull goes out.
    assert!(
        matches!(
            p.writes.as_slice(),
            [Write::Report(report), Write::Answer { task: 7, .. }]
                if matches!(**report, Report::Revealed { .. })
        ),
        "{:?}",
        p.writes
    );
    // Only a commitment travels, and it opens with the result's salt.
    let [Report::Committed(commit)] = p.reports.as_slice() else {
        panic!("expected one commitment, got {:?}", p.reports);
    };
    let c = commit
        .verify(COMMIT_NAMESPACE)
        .expect("signed by the provider");
    let Report::Revealed { opening, .. } = result(7) else {
        unreachable!()
    };
    assert!(
        opening
            .payload_unchecked()
            .opens(&key().public(), &c.commitment)
    );
    assert!(
        p.grants.is_empty(),
        "nothing is fetchable before the reveal"
    );

    // Stored, and the requester asks for the result.
    let answer = Ok(Response::Tasks {
        stored: 1,
        tasks: Vec::new(),
        finished: false,
        reveal: vec![7],
    });
    assert!(work.answered(2, p.want, answer, |_| true).is_empty());
    let p = pull(&mut work, 3);
    let [Report::Revealed { .. }] = p.reports.as_slice() else {
        panic!("expected the result, got {:?}", p.reports);
    };
    // What it names becomes fetchable by the requester.
    assert_eq!(p.grants.len(), 3);
    // Stored: forgotten, and its persisted report deleted.
    let answer = Ok(Response::Tasks {
        stored: 1,
        tasks: Vec::new(),
        finished: true,
        reveal: Vec::new(),
    });
    work.answered(4, p.want, answer, |_| true);
    assert!(held(&work).is_empty());
    assert_eq!(work.writes, [Write::Forget(7)]);
    assert!(matches!(work.next(5), Next::Done));
}

#[test]
fn a_staller_never_reveals() {
    let mut work = work(1).withholding_reveals();
    let p = pull(&mut work, 0);
    work.answered(0, p.want, tasks(vec![task(1)]), |_| true);
    work.finished(result(1), 5.0);
    let p = pull(&mut work, 1);
    let answer = Ok(Response::Tasks {
        stored: 1,
        tasks: Vec::new(),
        finished: false,
        reveal: vec![1],
    });
    work.answered(2, p.want, answer, |_| true);
    let p = pull(&mut work, 1_000);
    assert!(p.reports.is_empty(), "{:?}", p.reports);
    assert_eq!(held(&work), [1]);
}

#[test]
fn a_pull_names_every_task_held_running_or_unacknowledged_and_no_other() {
    let mut work = work(2);
    let first = pull(&mut work, 0);
    assert!(first.held.is_empty());
    work.answered(1, first.want, tasks(vec![task(3), task(8)]), |_| true);
    work.finished(result(3), 50.0);
    // 8 runs, 3's commitment waits to be acknowledged.
    let second = pull(&mut work, 2);
    assert_eq!(second.held, [3, 8]);
    // The answer is lost: nothing held is forgotten, and the retry says so.
    work.answered(3, second.want, Err("timed out".into()), |_| true);
    let retry = pull(&mut work, 3 + RETRY_MS);
    assert_eq!(retry.held, [3, 8]);
    // Acknowledged, 3 is no longer held; a task refused on arrival never is.
    let answer = Ok(Response::Tasks {
        stored: 1,
        tasks: vec![task(9), task(10)],
        finished: false,
        reveal: Vec::new(),
    });
    work.answered(4 + RETRY_MS, retry.want, answer, |t| t.task != 10);
    work.finished(result(8), 50.0);
    assert_eq!(pull(&mut work, 1_000 + HEARTBEAT_MS).held, [8, 9]);
    // After a restart only what was stored is held: what ran is gone.
    let restarted = LeaseWork::new(2, 100, key(), None, vec![result(8)], 5_000);
    assert_eq!(pull(&mut { restarted }, 5_000).held, [8]);
}

#[test]
fn a_restarted_lease_commits_again_to_what_it_had_sealed() {
    let stored = vec![
        result(4),
        Report::Failed {
            task: 5,
            reason: "no input".into(),
        },
    ];
    let mut work = LeaseWork::new(1, 100, key(), None, stored, 0);
    let p = pull(&mut work, 0);
    assert!(matches!(
        p.reports.as_slice(),
        [Report::Committed(_), Report::Failed { task: 5, .. }]
    ));
    assert_eq!(held(&work), [4, 5]);
}

#[test]
fn a_changed_task_handed_out_again_is_not_run() {
    let mut work = work(2);
    let p = pull(&mut work, 0);
    let taken = work.answered(0, p.want, tasks(vec![task(0), task(1)]), |t| t.task != 1);
    assert_eq!(taken.iter().map(|t| t.task).collect::<Vec<_>>(), [0]);
    // Only what runs holds a slot: one is still free.
    assert_eq!(pull(&mut work, 1).want, 1);
}

#[test]
fn a_lease_that_could_not_prepare_hands_every_task_back_as_failed() {
    let mut work = LeaseWork::new(2, 100, key(), Some("no module".into()), Vec::new(), 0);
    let p = pull(&mut work, 0);
    assert_eq!(p.want, 0);
    assert!(
        work.answered(0, p.want, tasks(vec![task(3)]), |_| true)
            .is_empty()
    );
    let p = pull(&mut work, 1);
    assert!(
        matches!(p.reports.as_slice(), [Report::Failed { task: 3, reason }] if reason == "no module")
    );
    let answer = Ok(Response::Tasks {
        stored: 1,
        tasks: Vec::new(),
        finished: false,
        reveal: Vec::new(),
    });
    work.answered(2, p.want, answer, |_| true);
    assert!(matches!(work.next(3), Next::Done));
}

#[test]
fn an_empty_answer_backs_off_doubling_up_to_the_idle_maximum() {
    let mut work = work(1);
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..9 {
        let p = pull(&mut work, now);
        work.answered(now, p.want, tasks(Vec::new()), |_| true);
        let Next::Wait(Some(at)) = work.next(now) else {
            panic!("expected a wait")
        };
        waits.push(at - now);
        now = at;
    }
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 500, 500]);
    // A task handed out resets it.
    let p = pull(&mut work, now);
    work.answered(now, p.want, tasks(vec![task(0)]), |_| true);
    work.finished(
        Report::Failed {
            task: 0,
            reason: String::new(),
        },
        1.0,
    );
    let p = pull(&mut work, now);
    let stored = Ok(Response::Tasks {
        stored: 1,
        tasks: Vec::new(),
        finished: false,
        reveal: Vec::new(),
    });
    work.answered(now, p.want, stored, |_| true);
    assert!(matches!(work.next(now), Next::Wait(Some(at)) if at == now + 5));
}

#[test]
fn a_silent_requester_is_retried_until_the_silence_limit_then_given_up() {
    let mut work = work(1);
    let mut now = 0;
    loop {
        let p = pull(&mut work, now);
        work.answered(now, p.want, Err("timed out".into()), |_| true);
        match work.next(now) {
            Next::Wait(Some(at)) => {
                assert_eq!(at, now + RETRY_MS);
                now = at;
            }
            Next::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(now > REQUESTER_SILENCE_MS_MAX && now <= REQUESTER_SILENCE_MS_MAX + RETRY_MS);
}

#[test]
fn a_refused_pull_waits_for_running_tasks_and_then_ends() {
    let mut work = work(1);
    let p = pull(&mut work, 0);
    work.answered(0, p.want, tasks(vec![task(0)]), |_| true);
    let p = pull(&mut work, 1_000);
    work.answered(
        1_000,
        p.want,
        Ok(Response::Refused("job cancelled".into())),
        |_| true,
    );
    assert!(
        matches!(work.next(5_000), Next::Wait(None)),
        "waits for the task, not the clock"
    );
    work.finished(
        Report::Failed {
            task: 0,
            reason: String::new(),
        },
        1.0,
    );
    let p = pull(&mut work, 5_001);
    assert_eq!(p.reports.len(), 1, "what ran is still reported");
    work.answered(
        5_001,
        p.want,
        Ok(Response::Refused("job cancelled".into())),
        |_| true,
    );
    assert!(matches!(work.next(5_002), Next::Done));
}
