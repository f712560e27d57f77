//! hostile: A guest that misbehaves on request, to test Cairn's sandbox.
//!
//! Each mode is one thing an untrusted program might try:
//!
//! - `loop`: spin forever.
//! - `membomb`: allocate until something gives.
//! - `escape <path>…`: try to read each path; prints `denied <path>: <error>`
//!   or `READ <path>` per path.
//! - `write <bytes>`: write a file of that size to `/output/big.bin`.
//! - `stdout <bytes>`: print that many bytes.
//! - `files <count>`: create that many empty files in `/output`.
//! - `nan`: print the bit patterns of float operations that produce NaN.
//! - `entropy`: print what it can learn of time, randomness and environment.
//! - `sleep`: sleep for an hour.
//! - `recurse`: recurse until the stack runs out.
//! - `exit <code>`: exit with that status.
//! - `panic`: panic.

// Misbehaving is the point of this program.
#![allow(unconditional_recursion, clippy::eq_op)]

use std::hint::black_box;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> u64 { args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0) };
    match args.first().map(String::as_str) {
        Some("loop") => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        Some("membomb") => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        Some("escape") => {
            for path in &args[1..] {
                match std::fs::read(path) {
                    Ok(_) => println!("READ {path}"),
                    Err(e) => println!("denied {path}: {e}"),
                }
            }
        }
        Some("write") => {
            let mut file = std::fs::File::create("/output/big.bin").expect("create");
            let chunk = vec![7u8; 64 << 10];
            let mut left = number(1);
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n]).expect("write");
                left -= n as u64;
            }
        }
        Some("stdout") => {
            let mut out = std::io::stdout().lock();
            for _ in 0..number(1) {
                out.write_all(b"x").expect("stdout");
            }
        }
        Some("files") => {
            for i in 0..number(1) {
                std::fs::write(format!("/output/f{i}"), b"").expect("create");
            }
        }
        Some("nan") => {
            let zero = black_box(0.0f64);
            let neg = black_box(-1.0f64);
            let payload = black_box(f64::from_bits(0x7ff0_0000_0000_0abc));
            let values = [
                zero / zero,
                neg.sqrt(),
                payload + 1.0,
                f64::INFINITY - black_box(f64::INFINITY),
                (black_box(0.0f32) / black_box(0.0f32)) as f64,
            ];
            for v in values {
                println!("{:016x}", v.to_bits());
            }
            let f = black_box(0.0f32) / black_box(0.0f32);
            println!("{:08x}", f.to_bits());
        }
        Some("entropy") => {
            use std::collections::hash_map::RandomState;
            use std::hash::BuildHasher;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let t0 = std::time::Instant::now();
            let elapsed = t0.elapsed().as_nanos();
            let hash = RandomState::new().hash_one(42u64);
            let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            println!("time {now} elapsed {elapsed} hash {hash:x} env {env:?}");
        }
        Some("sleep") => std::thread::sleep(std::time::Duration::from_secs(3600)),
        Some("recurse") => {
            fn deep(n: u64) -> u64 {
                black_box([n; 64]);
                deep(black_box(n + 1)) + 1
            }
            println!("{}", deep(0));
        }
        Some("exit") => std::process::exit(number(1) as i32),
        Some("panic") => panic!("asked to panic"),
        other => {
            eprintln!("hostile: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
