//! embed: Embed a task's lines of a text corpus with a sentence-embedding model.
//!
//! The guest program of Cairn's inference workload, run under WASI preview 1
//! where only `/input` is readable and `/output` writable. Task `n` embeds
//! lines `n·per_task + 1 ..= (n+1)·per_task` of the corpus (blank lines left
//! out) and writes one JSON object per line to the output file: the line's
//! number and text, its token count, and its unit-length embedding. Errors go
//! to stderr as `embed: <message>` with exit code 2.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use cairn_embed::{Embedder, Record, read_text, task_lines};

const USAGE: &str = "usage: embed --model <dir> --corpus <path> --task <n> \
--per-task <lines> --out <path.jsonl>";

/// The corpus is read whole; refusing larger ones bounds the guest's memory.
const CORPUS_BYTES_MAX: u64 = 256 << 20;

#[derive(Debug)]
struct Args {
    model: String,
    corpus: String,
    task: usize,
    per_task: usize,
    out: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("embed: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<String, String> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        return Ok(USAGE.to_string());
    };
    let corpus = read_text(Path::new(&args.corpus), CORPUS_BYTES_MAX)?;
    let lines = task_lines(&corpus, args.task, args.per_task)?;
    let embedder = Embedder::from_dir(Path::new(&args.model))?;
    let file = std::fs::File::create(&args.out)
        .map_err(|e| format!("cannot write '{}': {e}", args.out))?;
    let mut out = std::io::BufWriter::new(file);
    let mut tokens = 0;
    for (line, text) in &lines {
        let embedding = embedder
            .embed(text)
            .map_err(|e| format!("line {line}: {e}"))?;
        tokens += embedding.tokens;
        let record = Record {
            line: *line,
            text: text.to_string(),
            tokens: embedding.tokens,
            truncated: embedding.truncated,
            embedding: embedding.vector,
        };
        let written = serde_json::to_writer(&mut out, &record)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out));
        written.map_err(|e| format!("cannot write '{}': {e}", args.out))?;
    }
    out.flush()
        .map_err(|e| format!("cannot write '{}': {e}", args.out))?;
    Ok(format!(
        "embedded {} lines ({tokens} tokens, {} dimensions) -> {}",
        lines.len(),
        embedder.dimensions(),
        args.out
    ))
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut model, mut corpus, mut task, mut per_task, mut out) = (None, None, None, None, None);
    while let Some(flag) = raw.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (flag.clone(), None),
        };
        let value = inline
            .or_else(|| raw.next())
            .ok_or_else(|| format!("option '{name:.80}' needs a value\n{USAGE}"))?;
        let slot = match name.as_str() {
            "--model" => &mut model,
            "--corpus" => &mut corpus,
            "--out" => &mut out,
            "--task" => &mut task,
            "--per-task" => &mut per_task,
            _ => return Err(format!("unknown argument '{flag:.80}'\n{USAGE}")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("option '{name}' given twice"));
        }
    }
    let missing = |what: &str| format!("missing required option '--{what}'\n{USAGE}");
    let number = |name: &str, value: Option<String>| -> Result<usize, String> {
        let value = value.ok_or_else(|| missing(name))?;
        value.parse().map_err(|_| {
            format!("option '--{name}' needs a non-negative integer, got '{value:.40}'")
        })
    };
    Ok(Some(Args {
        model: model.ok_or_else(|| missing("model"))?,
        corpus: corpus.ok_or_else(|| missing("corpus"))?,
        task: number("task", task)?,
        per_task: number("per-task", per_task)?,
        out: out.ok_or_else(|| missing("out"))?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_every_option_and_refuses_what_is_wrong() {
        let args = parse(&[
            "--model",
            "/input",
            "--corpus=/input/c.txt",
            "--task",
            "3",
            "--per-task",
            "32",
            "--out",
            "/output/e.jsonl",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((args.task, args.per_task), (3, 32));
        assert_eq!(
            (args.model.as_str(), args.corpus.as_str()),
            ("/input", "/input/c.txt")
        );
        assert!(parse(&["--task", "x"]).is_err());
        assert!(
            parse(&["--task", "1", "--task", "2"])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            parse(&["--model", "/input"])
                .unwrap_err()
                .contains("--corpus")
        );
        assert!(parse(&["--bogus", "1"]).unwrap_err().contains("unknown"));
        assert!(parse(&["-h"]).unwrap().is_none());
    }
}
