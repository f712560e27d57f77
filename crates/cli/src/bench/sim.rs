//! `cairn bench sim`: the whole market in one seeded simulation — the real
//! requester and provider cores and the real ledger, on simulated time and
//! a simulated network with loss, latency, provider and requester crashes
//! and liars — at a scale no devnet reaches.
//!
//! Figures: simulated events per second and wall time (the simulator's
//! speed, of the verified run), peak resident memory, makespan ÷ ideal
//! (total work ÷ slots) with adaptive verification and 5% liars, and for
//! the same work unverified with no liars (what scheduling alone costs),
//! the share of executions that were not the one accepted result (replicas
//! and speculative copies), bids per task (orders draw a share of the
//! network in proportion to their work), wrong results accepted (must be
//! 0), honest providers slashed or convicted (must be 0), and whether the
//! ledger's tokens add up with every escrow closed (must be 1).

use std::time::Instant;

use anyhow::ensure;
use cairn_job::VerifyPolicy;
use cairn_sim::{Config, run};

use super::{Figure, resident_mib};

/// Arguments of `cairn bench sim`.
#[derive(clap::Args)]
pub struct SimArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub json: bool,
    /// The seed (`CAIRN_SIM_SEED` overrides it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Providers, each with `--slots` slots: few enough beside the work
    /// (20 tasks per slot by default) that the ideal is the work's, not one
    /// task's length.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    providers: u32,
    /// Concurrent tasks per provider.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    slots: u32,
    /// Jobs, submitted 100 ms apart by 4 requesters (one of which never settles: its providers claim).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    jobs: u32,
    /// Tasks per job, each 20 to 2,000 simulated ms.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    tasks: u32,
    /// Lying providers per thousand.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=500))]
    liars_per_mille: u32,
    /// Provider crashes per provider per simulated hour (each down 5 s);
    /// requesters crash as often.
    #[arg(long, default_value_t = 6.0)]
    crashes_per_hour: f64,
    /// Skip the second, unverified run (its figures are left out): at the
    /// largest scales it doubles the wall time.
    #[arg(long)]
    verified_only: bool,
}

fn figure(metric: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        suite: "sim",
        metric: metric.to_string(),
        value,
        unit,
    }
}

pub fn sim(args: &SimArgs) -> anyhow::Result<Vec<Figure>> {
    ensure!(
        args.crashes_per_hour.is_finite() && (0.0..=3_600.0).contains(&args.crashes_per_hour),
        "--crashes-per-hour must be between 0 and 3600"
    );
    let mut config = Config {
        seed: cairn_sim::seed(args.seed),
        requesters: 4,
        providers: args.providers,
        slots: args.slots,
        liars_per_mille: args.liars_per_mille,
        overflowers_per_mille: 0,
        jobs: args.jobs,
        tasks_per_job: args.tasks,
        task_ms: (20, 2_000),
        submit_every_ms: 100,
        policy: VerifyPolicy::Adaptive { confidence: 0.999 },
        latency_ms: (1, 50),
        loss_per_mille: 5,
        crashes_per_hour: args.crashes_per_hour,
        down_ms: 5_000,
        horizon_ms: 24 * 3_600_000,
        // One requester in four never settles: its providers are paid by
        // their claims.
        withholders: 1,
        framers: 0,
        underpayers: 0,
        // Requesters crash as often as providers do.
        requester_crashes_per_hour: args.crashes_per_hour,
        requester_crashes_at: Vec::new(),
        // Four validators (one may be down), crashing as often too.
        validators: 4,
        validator_crashes_per_hour: args.crashes_per_hour,
        partition_at_settlement: None,
    };
    let started = Instant::now();
    let outcome = run(&config);
    let wall = started.elapsed().as_secs_f64();
    // Read now: the unverified run's peak is not this one's.
    let peak = resident_mib(std::process::id(), "VmHWM")?;
    let executions = outcome.executions.max(1) as f64;
    let mut figures = vec![
        figure("providers", f64::from(config.providers), "providers"),
        figure("tasks", outcome.tasks as f64, "tasks"),
        figure("events", outcome.events as f64, "events"),
        figure(
            "events_per_second",
            outcome.events as f64 / wall,
            "events/s",
        ),
        figure("wall_time", wall, "s"),
        figure("peak_resident", peak, "MiB"),
        figure("jobs_done", f64::from(outcome.jobs_done), "jobs"),
        figure(
            "makespan_over_ideal",
            outcome.makespan_ms as f64 / outcome.ideal_ms.max(1) as f64,
            "ratio",
        ),
        figure("makespan", outcome.makespan_ms as f64 / 1e3, "s"),
        figure(
            "executions_per_task",
            executions / outcome.tasks.max(1) as f64,
            "ratio",
        ),
        figure(
            "work_wasted",
            (executions - outcome.tasks as f64).max(0.0) / executions,
            "share",
        ),
        figure(
            "bids_per_task",
            outcome.bids as f64 / outcome.tasks.max(1) as f64,
            "ratio",
        ),
        figure("wrong_accepted", outcome.wrong_accepted as f64, "tasks"),
        figure("disputes", outcome.disputes as f64, "disputes"),
        figure(
            "liars_convicted",
            f64::from(outcome.liars_convicted),
            "providers",
        ),
        figure("crashes", f64::from(outcome.crashes), "crashes"),
        figure(
            "requester_crashes",
            f64::from(outcome.requester_crashes),
            "crashes",
        ),
        figure("paid_to_liars", outcome.paid_to_liars as f64, "ucairn"),
        figure("claims_paid", outcome.claims_paid as f64, "results"),
        figure("unpaid_accepted", outcome.unpaid_accepted as f64, "results"),
        figure(
            "honest_slashed",
            f64::from(outcome.honest_slashed),
            "providers",
        ),
        figure(
            "honest_convicted",
            f64::from(outcome.honest_convicted),
            "providers",
        ),
        figure(
            "tokens_conserved",
            if outcome.tokens_conserved && outcome.escrow_left == 0 {
                1.0
            } else {
                0.0
            },
            "bool",
        ),
    ];
    if !args.verified_only {
        // The same network and work unverified: what scheduling alone
        // costs, beside what verification adds.
        config.policy = VerifyPolicy::None;
        config.liars_per_mille = 0;
        let unverified = run(&config);
        figures.extend([
            figure(
                "makespan_over_ideal_unverified",
                unverified.makespan_ms as f64 / unverified.ideal_ms.max(1) as f64,
                "ratio",
            ),
            figure(
                "executions_per_task_unverified",
                unverified.executions as f64 / unverified.tasks.max(1) as f64,
                "ratio",
            ),
        ]);
    }
    Ok(figures)
}
