//! `cairn bench console`: the web console in a real browser (Debian's
//! chromium, driven by playwright-core from npm) while a devnet runs a job
//! of many tasks: how soon the job's page shows, how many status updates
//! it applies per second, and how long the page ever goes without drawing
//! a frame.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use cairn_job::VerifyPolicy;
use serde::Deserialize;

use super::Figure;
use super::net::{submit, upload, with_devnet};

/// Arguments of `cairn bench console`.
#[derive(clap::Args)]
pub struct ConsoleArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub json: bool,
    /// Tasks of the job the console shows.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: u32,
    /// Providers of the devnet.
    #[arg(long, default_value_t = 3)]
    pub providers: u64,
}

/// The longest the browser watches the job.
const WATCH: Duration = Duration::from_secs(300);

/// What the browser measured (see `tests/console/bench.mjs`).
#[derive(Deserialize)]
struct Seen {
    first_render_ms: f64,
    updates_per_s: f64,
    tasks_shown_per_s: f64,
    last_done: u64,
    total: u64,
    over: bool,
    frame_gap_p50_ms: f64,
    frame_gap_p99_ms: f64,
    frame_gap_max_ms: f64,
    long_tasks_ms: f64,
    watched_ms: f64,
}

pub fn console(args: &ConsoleArgs) -> anyhow::Result<Vec<Figure>> {
    let script = browser_script()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("devnet");
    let seen = with_devnet(&dir, args.providers, |node, _| {
        // Each task counts down a million times (a few milliseconds), so
        // the job runs while the browser opens and watches it.
        let busy = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (local $i i32)
                   (local.set $i (i32.const 1000000))
                   (loop $l
                     (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                     (br_if $l (local.get $i)))))"#,
        )?;
        let module = upload(node, "busy.wasm", &busy)?;
        let token = std::fs::read_to_string(dir.join("v0/api.token"))?;
        let browser_log = scratch.path().join("browser.log");
        let mut browser = Command::new("node")
            .arg(&script)
            .arg(node.base())
            .arg(token.trim())
            .arg(WATCH.as_secs().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A file, not a pipe nobody reads while the job runs.
            .stderr(std::fs::File::create(&browser_log)?)
            .spawn()
            .context("running Node.js (the console benchmark needs it)")?;
        let mut lines = BufReader::new(browser.stdout.take().context("the browser's output")?)
            .lines()
            .map_while(Result::ok);
        // The job is submitted once the browser is up, and the page loaded
        // again, so the page sees it from its start: submitted before, a
        // job could end while a slow machine was still starting the
        // browser, and nothing was seen.
        let ready = lines.by_ref().any(|line| line == "ready");
        let job = if ready {
            // Unverified: what is measured is the page, and a job that
            // waits for a second provider to check a result (under a
            // loaded machine's deadlines) measures the market instead.
            let job = submit(node, &module, args.tasks, 10_000_000, VerifyPolicy::None)?;
            let mut stdin = browser.stdin.take().context("the browser's input")?;
            stdin.write_all(b"submitted\n")?;
            Some(job)
        } else {
            None
        };
        let stdout: Vec<String> = lines.collect();
        let status = browser.wait()?;
        let stderr = std::fs::read_to_string(&browser_log).unwrap_or_default();
        let (Some(job), true) = (job, status.success()) else {
            bail!(
                "the browser's measurement failed: {}{stderr}",
                stdout.join("\n")
            );
        };
        let last = stdout.last().map(String::as_str).unwrap_or_default();
        let seen = serde_json::from_str::<Seen>(last)
            .with_context(|| format!("the browser's measurement: {}", stdout.join("\n")))?;
        if !seen.over {
            // Why the job did not end, while the devnet is up to say.
            let status = node.job(&job)?;
            bail!(
                "the console showed {}/{} tasks after {:.0} s, not the job's end; the job is {:?}: {}",
                seen.last_done,
                seen.total,
                seen.watched_ms / 1000.0,
                status.state,
                status.reason.unwrap_or_default()
            );
        }
        Ok(seen)
    })?;
    if seen.last_done != seen.total || seen.total != u64::from(args.tasks) {
        bail!(
            "the console showed the job over at {}/{} tasks; it has {}",
            seen.last_done,
            seen.total,
            args.tasks
        );
    }
    let figure = |metric: &str, value: f64, unit: &'static str| Figure {
        suite: "console",
        metric: metric.into(),
        value,
        unit,
    };
    Ok(vec![
        figure("job_page_first_render", seen.first_render_ms, "ms"),
        figure("status_updates_applied", seen.updates_per_s, "per_s"),
        figure("tasks_shown", seen.tasks_shown_per_s, "tasks/s"),
        figure("frame_gap_p50", seen.frame_gap_p50_ms, "ms"),
        figure("frame_gap_p99", seen.frame_gap_p99_ms, "ms"),
        figure("frame_gap_max", seen.frame_gap_max_ms, "ms"),
        figure(
            "main_thread_blocked",
            seen.long_tasks_ms / seen.watched_ms.max(1.0),
            "share",
        ),
    ])
}

/// The browser side, from the checkout this binary was built from, with
/// playwright-core installed beside it (from npm, once).
fn browser_script() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    let script = dir.join("bench.mjs");
    if !script.exists() {
        bail!(
            "{} is missing: `cairn bench console` runs from the checkout it was built in",
            script.display()
        );
    }
    let chromium = std::env::var_os("CHROMIUM").map_or("/usr/bin/chromium".into(), PathBuf::from);
    if !chromium.exists() {
        bail!(
            "no browser at {}: install Debian's (`apt-get install chromium`) or name one in CHROMIUM",
            chromium.display()
        );
    }
    if !dir.join("node_modules/playwright-core").exists() {
        eprintln!(
            "cairn: installing playwright-core from npm into {}",
            dir.display()
        );
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .context("running npm (the console benchmark needs Node.js and npm)")?;
        if !status.success() {
            bail!("npm ci in {} failed", dir.display());
        }
    }
    Ok(script)
}
