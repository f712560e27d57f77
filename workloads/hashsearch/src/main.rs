//! hashsearch: Searches a range of nonces for BLAKE3 digests that start with
//! a given number of zero bits (a proof-of-work style batch workload: pure
//! integer work, tiny inputs and outputs, many independent tasks).
//!
//! Usage: `hashsearch --prefix <text> --start <n> --count <n> --bits <n> [--out <path>]`
//!
//! Prints a summary line and, with `--out`, writes every hit as
//! `<nonce> <digest hex>` lines.

use std::process::ExitCode;

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
    let mut hits = String::new();
    let mut found = 0u64;
    let mut best = (0u32, 0u64);
    let end = args.start.saturating_add(args.count);
    for nonce in args.start..end {
        let mut hasher = base.clone();
        hasher.update(&nonce.to_le_bytes());
        let digest = hasher.finalize();
        let zeros = leading_zero_bits(digest.as_bytes());
        if zeros > best.0 {
            best = (zeros, nonce);
        }
        if zeros >= args.bits {
            found += 1;
            hits.push_str(&format!("{nonce} {}\n", digest.to_hex()));
        }
    }
    if let Some(out) = &args.out
        && let Err(e) = std::fs::write(out, &hits)
    {
        eprintln!("hashsearch: cannot write {out}: {e}");
        return ExitCode::from(2);
    }
    println!(
        "searched {}..{end}: {found} hits with >= {} zero bits; best {} bits at nonce {}",
        args.start, args.bits, best.0, best.1
    );
    ExitCode::SUCCESS
}
