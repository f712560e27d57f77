//! A lease's pull loop, driven by hand: every decision the shell used to
//! make between awaits, checked without a network or a clock.

use cairn_ledger::{ACCEPTANCE_NAMESPACE, Acceptance, RECEIPT_NAMESPACE, Receipt};

use super::*;
use cairn_proto::{FileRef, StreamRef};

fn key() -> Keypair {
    Keypair::from_seed([3; 32])
}

/// `report`, sealed as the provider's executor seals it.
fn done(report: Report) -> Finished {
    Finished::seal(&key(), report)
}

fn requester() -> Keypair {
    Keypair::from_seed([4; 32])
}

fn terms() -> Lease {
    Lease {
        job: ContentId::of(b"job"),
        requester: requester().public(),
        provider: key().public(),
        price_ucairn_per_gfuel: 1_000,
        fuel_per_task_max: 1_000_000,
        expires_height: 100,
    }
}

fn lease() -> ContentId {
    terms().id()
}

fn work(slots: u32) -> LeaseWork {
    LeaseWork::new(&terms(), slots, key(), None, Stored::default(), 0)
}

fn reports(reports: Vec<Report>) -> Stored {
    Stored {
        reports,
        awaiting: Vec::new(),
    }
}

fn task(index: u32) -> Assignment {
    Assignment {
        task: index,
        args: vec![index.to_string()],
        outputs: Vec::new(),
        seed: [index as u8; 32],
        fuel: 1_000,
        inputs: Vec::new(),
    }
}

fn tasks(answer_tasks: Vec<Assignment>) -> Result<Response, String> {
    Ok(Response::Tasks {
        stored: 0,
        tasks: answer_tasks,
        finished: false,
        reveal: Vec::new(),
        accepted: None,
    })
}

fn result(index: u32) -> Report {
    let digest = ContentId::of(&index.to_be_bytes());
    Report::Revealed {
        receipt: Signed::sign(
            &key(),
            RECEIPT_NAMESPACE,
            Receipt {
                lease: lease(),
                task: u64::from(index),
                digest,
                fuel_used: 1,
                salt: [9; 32],
                run: [0; 32],
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

/// An answer handing out no tasks: `stored` reports kept, the job
/// `finished` or not, `reveal` asked for, `accepted` signed.
fn answer(
    stored: u32,
    finished: bool,
    reveal: Vec<u32>,
    accepted: Option<Signed<Acceptance>>,
) -> Result<Response, String> {
    Ok(Response::Tasks {
        stored,
        tasks: Vec::new(),
        finished,
        reveal,
        accepted,
    })
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
    match work.next(now, Others::default()) {
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
    assert!(matches!(work.next(2, Others::default()), Next::Wait(Some(at)) if at == HEARTBEAT_MS));
}

/// A `fuel_shaver` requester hands out a task with less fuel than the
/// terms the provider signed for said any task has (a tool task is paid
/// exactly its figure), or more than the lease allows: neither is taken.
#[test]
fn a_task_outside_the_terms_fuel_range_is_not_taken() {
    let mut work = work(3).with_fuel_min(500);
    let first = pull(&mut work, 0);
    let with_fuel = |index, fuel| Assignment {
        fuel,
        inputs: Vec::new(),
        ..task(index)
    };
    let handed = vec![
        with_fuel(0, 499),
        with_fuel(1, 1_000_001),
        with_fuel(2, 1_000_000),
    ];
    let taken = work.answered(1, first.want, tasks(handed), |_| true);
    assert_eq!(taken.iter().map(|t| t.task).collect::<Vec<_>>(), [2]);
}

/// A `work_deflater` requester declares a tool task at a sliver of the
/// work it takes (terms whose least task fuel reaches that low are signed
/// before anyone can tell), or many short tasks at one fuel each: once
/// they have run, the lease takes no more work. Honest tasks, however
/// uneven, do not stop it; nor does anything where the provider has no
/// rate to weigh by.
#[test]
fn a_lease_whose_tasks_declared_a_sliver_of_their_work_gets_no_more() {
    // A provider doing 12 Gfuel a second: the floor is 1.2 Mfuel a
    // CPU-second.
    let provider = || work(2).with_rate_floor(12_000);
    let mut work = provider();
    // A 720p task; a 240p one that decodes as much; a 16 x 16 tile of a
    // small frame, nearly all start-up; a heavy tile; a 144p rendition of
    // a 4K source at one frame a second; a crash in 5 ms.
    for (fuel, cpu_ms) in [
        (55_300_000_000, 1_200.0),
        (6_100_000_000, 400.0),
        (36_000_000, 900.0),
        (2_300_000_000, 40_000.0),
        (37_000_000, 4_500.0),
        (9_000_000_000, 5.0),
    ] {
        assert_eq!(work.worked(fuel, cpu_ms), None, "{fuel} for {cpu_ms} ms");
    }
    let first = pull(&mut work, 0);
    assert!(first.want > 0);
    work.answered(1, first.want, answer(0, false, Vec::new(), None), |_| true);
    // A full encode declared at a hundred-thousandth.
    let reason = work.worked(553_000, 1_200.0).expect("underpaid");
    assert!(
        reason.contains("a task declared") && reason.contains("underpays"),
        "{reason}"
    );
    assert_eq!(work.worked(1, 1_000.0), None, "said once");
    assert!(work.underpaid().is_some());
    // Reports still go out (what it ran is still paid), but no work is
    // asked for.
    assert_eq!(pull(&mut work, 1_000).want, 0);

    // Tasks too short to weigh one by one, at one fuel each: their totals.
    let mut short = provider();
    let reasons: Vec<String> = (0..12).filter_map(|_| short.worked(1, 90.0)).collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("together"), "{}", reasons[0]);

    // Without a rate, nothing is weighed.
    let mut unweighed = self::work(2);
    assert_eq!(unweighed.worked(1, 10_000.0), None);
}

/// A provider's slots are shared by its leases: tasks another lease
/// holds count against this one's prefetch, and while they fill the slots
/// this lease asks for no more than its share of them (its tasks would
/// wait behind theirs, and their requester would copy them elsewhere).
#[test]
fn tasks_held_by_the_providers_other_leases_count_against_this_ones() {
    let mut work = work(2);
    let one_lease_holding = |held| Others { leases: 1, held };
    // Both slots are the other lease's: this one still asks for its share,
    // one of two.
    let Next::Pull(pull) = work.next(0, one_lease_holding(2)) else {
        panic!("a lease asks for its share");
    };
    assert_eq!(pull.want, 1);
    assert_eq!(work.held(), 1, "what a pull in flight asks for is held");
    let taken = work.answered(1, pull.want, tasks((0..2).map(task).collect()), |_| true);
    assert_eq!(taken.len(), 1, "only what was asked for is taken");
    assert_eq!(work.held(), 1);
    // Its share held, it waits while the slots are full...
    assert!(matches!(
        work.next(2, one_lease_holding(1)),
        Next::Wait(Some(at)) if at == HEARTBEAT_MS
    ));
    // ...and takes the slot the other lease leaves.
    assert!(matches!(work.next(3, one_lease_holding(0)), Next::Pull(p) if p.want == 1));
}

/// A `tiny_task_hog` lease keeps a deep prefetch of tiny tasks full for as
/// long as its job has work; a lease of long tasks beside it still gets
/// its share of the slots.
#[test]
fn a_lease_beside_a_tiny_task_hog_still_gets_its_share_of_the_slots() {
    let mut work = work(4);
    let hog = Others {
        leases: 1,
        held: 4 * proto::PREFETCH_PER_SLOT_MAX,
    };
    let Next::Pull(pull) = work.next(0, hog) else {
        panic!("a lease beside a hog still asks");
    };
    assert_eq!(pull.want, 2, "half of four slots");
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
            done(Report::Failed {
                task: 0,
                reason: String::new(),
            }),
            0.1,
        );
    }
    // Tasks of about 0.1 ms: the whole prefetch of one slot.
    assert_eq!(pull(&mut work, 1).want, proto::PREFETCH_PER_SLOT_MAX);

    let mut slow = self::work(1);
    let p = pull(&mut slow, 0);
    slow.answered(0, p.want, tasks(vec![task(0)]), |_| true);
    slow.finished(
        done(Report::Failed {
            task: 0,
            reason: String::new(),
        }),
        10_000.0,
    );
    assert_eq!(pull(&mut slow, 1).want, 1, "a long task is not hoarded");
}

#[test]
fn a_result_is_sent_sealed_persisted_first_and_revealed_only_when_asked() {
    let mut work = work(1);
    let p = pull(&mut work, 0);
    work.answered(0, p.want, tasks(vec![task(7)]), |_| true);
    work.finished(done(result(7)), 5.0);

    let p = pull(&mut work, 1);
    // The result and its answer are written before the pull goes out.
    assert!(
        matches!(
            p.writes.as_slice(),
            [Write::Report(report), Write::Answer { receipt, .. }]
                if matches!(**report, Report::Revealed { .. })
                    && receipt.payload_unchecked().task == 7
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
    let Report::Revealed { receipt, .. } = result(7) else {
        unreachable!()
    };
    assert!(
        receipt
            .payload_unchecked()
            .opens(&key().public(), &c.commitment)
    );
    assert!(
        p.grants.is_empty(),
        "nothing is fetchable before the reveal"
    );

    // Stored, and the requester asks for the result.
    let reply = answer(1, false, vec![7], None);
    assert!(work.answered(2, p.want, reply, |_| true).is_empty());
    let p = pull(&mut work, 3);
    let [Report::Revealed { .. }] = p.reports.as_slice() else {
        panic!("expected the result, got {:?}", p.reports);
    };
    // What it names becomes fetchable by the requester.
    assert_eq!(p.grants.len(), 3);
    // Stored: forgotten, its persisted report deleted, and kept instead
    // as awaiting acceptance (here the job ends without one).
    let reply = answer(1, true, Vec::new(), None);
    work.answered(4, p.want, reply, |_| true);
    assert!(held(&work).is_empty());
    assert_eq!(
        work.writes,
        [Write::Forget(7), Write::Awaiting(awaiting(7))]
    );
    // The job is over: one last pull asks for the acceptance of what this
    // answer stored, and then the lease ends either way.
    assert!(matches!(
        work.next(5, Others::default()),
        Next::Wait(Some(_))
    ));
    let p = pull(&mut work, 100);
    assert_eq!(p.awaiting, [7]);
    let reply = answer(0, true, Vec::new(), None);
    work.answered(101, p.want, reply, |_| true);
    assert_eq!(work.awaiting(), 0, "given up");
    assert!(matches!(work.next(102, Others::default()), Next::Done));
}

/// What task `index`'s result (see [`result`]) waits to be accepted for.
fn awaiting(index: u32) -> Awaiting {
    Awaiting {
        task: u64::from(index),
        digest: ContentId::of(&index.to_be_bytes()),
        fuel_used: 1,
    }
}

/// `signer`'s acceptance of `results` under `lease`.
fn acceptance(signer: &Keypair, lease: Lease, results: &[Awaiting]) -> Signed<Acceptance> {
    Signed::sign(
        signer,
        ACCEPTANCE_NAMESPACE,
        Acceptance {
            lease,
            results: results
                .iter()
                .map(|a| cairn_ledger::Accepted {
                    task: a.task,
                    digest: a.digest,
                    fuel_used: a.fuel_used,
                })
                .collect(),
        },
    )
}

/// Runs task `index` through to a delivered result the requester stored.
fn deliver(work: &mut LeaseWork, index: u32, now: u64) {
    let p = pull(work, now);
    assert!(p.want > 0, "no work taken at {now}");
    work.answered(now, p.want, tasks(vec![task(index)]), |_| true);
    work.finished(done(result(index)), 1.0);
    let p = pull(work, now + 20);
    let reveal = answer(1, false, vec![index], None);
    work.answered(now + 20, p.want, reveal, |_| true);
    let p = pull(work, now + 40);
    let stored = answer(1, false, Vec::new(), None);
    work.answered(now + 40, p.want, stored, |_| true);
}

/// A `withholding` requester that takes results and never accepts them
/// gets no more than the lease's credit of them; acceptances that are not
/// the requester's, not this lease's, or name other fuel are ignored; the
/// requester's own is kept, and frees the credit.
#[test]
fn delivered_results_await_acceptance_and_a_requester_that_withholds_it_gets_no_more_than_the_credit()
 {
    let mut work = work(1).with_credit(2);
    deliver(&mut work, 7, 0);
    deliver(&mut work, 8, 1_000);
    assert_eq!(work.awaiting(), 2);
    let p = pull(&mut work, 2_000);
    assert_eq!(p.want, 0, "the credit is used up");
    assert_eq!(p.awaiting, [7, 8]);
    assert!(
        p.writes.iter().any(|w| *w == Write::Awaiting(awaiting(8))),
        "{:?}",
        p.writes
    );

    let inflated = Awaiting {
        fuel_used: 2,
        ..awaiting(7)
    };
    for (why, bad) in [
        (
            "signed by the provider",
            acceptance(&key(), terms(), &[awaiting(7)]),
        ),
        (
            "another lease",
            acceptance(
                &requester(),
                Lease {
                    job: ContentId::of(b"other"),
                    ..terms()
                },
                &[awaiting(7)],
            ),
        ),
        ("other fuel", acceptance(&requester(), terms(), &[inflated])),
        (
            "a result not delivered",
            acceptance(&requester(), terms(), &[awaiting(7), awaiting(9)]),
        ),
    ] {
        let reply = answer(0, false, Vec::new(), Some(bad));
        work.answered(2_001, 0, reply, |_| true);
        assert_eq!(work.awaiting(), 2, "{why}: taken as an acceptance");
        assert!(
            !work.writes.iter().any(|w| matches!(w, Write::Accepted(_))),
            "{why}: kept"
        );
    }

    // The requester's acceptance of task 7: kept, and one result of credit
    // is free again.
    let good = acceptance(&requester(), terms(), &[awaiting(7)]);
    let reply = answer(0, false, Vec::new(), Some(good.clone()));
    work.answered(2_002, 0, reply, |_| true);
    assert_eq!(work.awaiting(), 1);
    let p = pull(&mut work, 3_000);
    assert!(p.want > 0);
    assert_eq!(p.awaiting, [8]);
    assert!(p.writes.contains(&Write::Accepted(Box::new(good))));

    // A restart asks again for what still awaited.
    let stored = Stored {
        reports: Vec::new(),
        awaiting: vec![awaiting(8)],
    };
    let mut restarted = LeaseWork::new(&terms(), 1, key(), None, stored, 5_000);
    assert_eq!(pull(&mut restarted, 5_000).awaiting, [8]);
}

#[test]
fn a_staller_never_reveals() {
    let mut work = work(1).withholding_reveals();
    let p = pull(&mut work, 0);
    work.answered(0, p.want, tasks(vec![task(1)]), |_| true);
    work.finished(done(result(1)), 5.0);
    let p = pull(&mut work, 1);
    let reply = answer(1, false, vec![1], None);
    work.answered(2, p.want, reply, |_| true);
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
    work.finished(done(result(3)), 50.0);
    // 8 runs, 3's commitment waits to be acknowledged.
    let second = pull(&mut work, 2);
    assert_eq!(second.held, [3, 8]);
    // The answer is lost: nothing held is forgotten, and the retry says so.
    work.answered(3, second.want, Err("timed out".into()), |_| true);
    let retry = pull(&mut work, 3 + RETRY_MS);
    assert_eq!(retry.held, [3, 8]);
    // Acknowledged, 3 is no longer held; a task refused on arrival never is.
    let reply = Ok(Response::Tasks {
        stored: 1,
        tasks: vec![task(9), task(10)],
        finished: false,
        reveal: Vec::new(),
        accepted: None,
    });
    work.answered(4 + RETRY_MS, retry.want, reply, |t| t.task != 10);
    work.finished(done(result(8)), 50.0);
    assert_eq!(pull(&mut work, 1_000 + HEARTBEAT_MS).held, [8, 9]);
    // After a restart only what was stored is held: what ran is gone.
    let restarted = LeaseWork::new(&terms(), 2, key(), None, reports(vec![result(8)]), 5_000);
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
    let mut work = LeaseWork::new(&terms(), 1, key(), None, reports(stored), 0);
    let p = pull(&mut work, 0);
    assert!(matches!(
        p.reports.as_slice(),
        [Report::Committed(_), Report::Failed { task: 5, .. }]
    ));
    assert_eq!(held(&work), [4, 5]);
    // The result may have reached the requester before the crash, which
    // then ignores the commitment: its acceptance is asked for too, and
    // taken without a reveal.
    assert_eq!(p.awaiting, [4]);
    let reply = answer(
        2,
        false,
        Vec::new(),
        Some(acceptance(&requester(), terms(), &[awaiting(4)])),
    );
    work.answered(1, p.want, reply, |_| true);
    assert_eq!(work.awaiting(), 0);
    assert!(held(&work).is_empty(), "accepted: no reveal is waited for");
    assert!(work.writes.contains(&Write::Forget(4)));
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
    let mut work = LeaseWork::new(
        &terms(),
        2,
        key(),
        Some("no module".into()),
        Stored::default(),
        0,
    );
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
    let reply = answer(1, false, Vec::new(), None);
    work.answered(2, p.want, reply, |_| true);
    assert!(matches!(work.next(3, Others::default()), Next::Done));
}

#[test]
fn an_empty_answer_backs_off_doubling_up_to_the_idle_maximum() {
    let mut work = work(1);
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..9 {
        let p = pull(&mut work, now);
        work.answered(now, p.want, tasks(Vec::new()), |_| true);
        let Next::Wait(Some(at)) = work.next(now, Others::default()) else {
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
        done(Report::Failed {
            task: 0,
            reason: String::new(),
        }),
        1.0,
    );
    let p = pull(&mut work, now);
    let stored = answer(1, false, Vec::new(), None);
    work.answered(now, p.want, stored, |_| true);
    assert!(matches!(work.next(now, Others::default()), Next::Wait(Some(at)) if at == now + 5));
}

#[test]
fn a_silent_requester_is_retried_until_the_silence_limit_then_given_up() {
    let mut work = work(1);
    let mut now = 0;
    loop {
        let p = pull(&mut work, now);
        work.answered(now, p.want, Err("timed out".into()), |_| true);
        match work.next(now, Others::default()) {
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
        matches!(work.next(5_000, Others::default()), Next::Wait(None)),
        "waits for the task, not the clock"
    );
    work.finished(
        done(Report::Failed {
            task: 0,
            reason: String::new(),
        }),
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
    assert!(matches!(work.next(5_002, Others::default()), Next::Done));
}
