//! hashsearch: Searches a range of nonces for BLAKE3 digests that start with
//! a given number of zero bits (a proof-of-work style batch workload: pure
//! integer work, tiny inputs and outputs, many independent tasks).
//!
//! Usage: `hashsearch --prefix <text> --start <n> --count <n> --bits <n> [--out <path>]`
//!
//! Prints a summary line and, with `--out`, writes every hit as
//! `<nonce> <digest hex>` lines.
//!
//! The search runs in steps (`cairn_step`) of 1,024 nonces with the state
//! kept in memory between them, so the runtime can checkpoint it and a
//! dispute over a long search is settled by re-running one step.

use std::process::ExitCode;
use std::sync::Mutex;

struct Args {
    prefix: String,
    start: u64,
    count: u64,
    bits: u32,
    out: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        prefix: String::new(),
        start: 0,
        count: 0,
        bits: 16,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--prefix" => args.prefix = value()?,
            "--start" => args.start = number(&flag, &value()?)?,
            "--count" => args.count = number(&flag, &value()?)?,
            "--bits" => args.bits = number(&flag, &value()?)? as u32,
            "--out" => args.out = Some(value()?),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if args.bits > 256 {
        return Err(format!("--bits {} is more than a digest has", args.bits));
    }
    Ok(args)
}

fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{flag} expects a number, found '{text}'"))
}

fn leading_zero_bits(digest: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Nonces searched per step: a step is a few million fuel, so a referee
/// settling a dispute over a long search re-executes a tiny share of it.
const NONCES_PER_STEP: u64 = 1_024;

/// The search in progress. Between steps it lives here, in linear memory,
/// so the runtime can checkpoint it.
struct Search {
    args: Args,
    base: blake3::Hasher,
    next: u64,
    end: u64,
    hits: String,
    found: u64,
    best: (u32, u64),
}

static SEARCH: Mutex<Option<Search>> = Mutex::new(None);

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("hashsearch: {message}");
            return ExitCode::from(2);
        }
    };
    let mut base = blake3::Hasher::new();
    base.update(args.prefix.as_bytes());
    let end = args.start.saturating_add(args.count);
    *SEARCH.lock().unwrap() = Some(Search {
        next: args.start,
        end,
        args,
        base,
        hits: String::new(),
        found: 0,
        best: (0, 0),
    });
    // The runtime now calls `cairn_step` until it returns 0.
    ExitCode::SUCCESS
}

/// One step of the search; returns 0 once the search is done and written.
#[unsafe(no_mangle)]
pub extern "C" fn cairn_step() -> i32 {
    let mut guard = SEARCH.lock().unwrap();
    let search = guard.as_mut().expect("main ran first");
    let stop = search.end.min(search.next.saturating_add(NONCES_PER_STEP));
    for nonce in search.next..stop {
        let mut hasher = search.base.clone();
        hasher.update(&nonce.to_le_bytes());
        let digest = hasher.finalize();
        let zeros = leading_zero_bits(digest.as_bytes());
        if zeros > search.best.0 {
            search.best = (zeros, nonce);
        }
        if zeros >= search.args.bits {
            search.found += 1;
            search
                .hits
                .push_str(&format!("{nonce} {}\n", digest.to_hex()));
        }
    }
    search.next = stop;
    if stop < search.end {
        return 1;
    }
    if let Some(out) = &search.args.out
        && let Err(e) = std::fs::write(out, &search.hits)
    {
        eprintln!("hashsearch: cannot write {out}: {e}");
        std::process::exit(2);
    }
    println!(
        "searched {}..{}: {} hits with >= {} zero bits; best {} bits at nonce {}",
        search.args.start, search.end, search.found, search.args.bits, search.best.0, search.best.1
    );
    0
}
