//! Submits the render example to a node, prints its progress as it
//! happens, and saves its frames, each checked against its content id:
//!
//! ```sh
//! cargo run -- devnet                     # in another terminal; or any `cairn node`
//! cargo run -p cairn-client --example render -- http://127.0.0.1:8700 devnet/v0
//! ```
//!
//! The arguments are the node's API and its data folder (where its
//! `api.token` is); a third names another job file than
//! `examples/render/job.toml`.

use std::path::{Path, PathBuf};

use cairn_client::{ApiToken, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(data_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: render <node url> <node data dir> [job.toml]");
        std::process::exit(2);
    };
    let job_file = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/render/job.toml"),
        PathBuf::from,
    );
    let node = Client::new(&url).with_token(ApiToken::load(Path::new(&data_dir))?);
    let job = cairn_client::load_job(&job_file)?;
    let id = node.submit_job(&job)?;
    println!("submitted {} as {id}", job.name);
    let last = node.follow(&id, |status| {
        println!(
            "{:<8} {:>3}/{} frames, {} running, {} providers",
            status.state, status.done, status.total, status.running, status.providers
        );
    })?;
    cairn_job::check_job_name(&last.name)?;
    let out = Path::new("out").join(&last.name);
    std::fs::create_dir_all(&out)?;
    let mut saved = 0;
    for record in node.results(&id)? {
        for output in &record.outputs {
            // The node passes on what a provider named: the job file's
            // output rule before the name touches the disk.
            let path = cairn_job::output_path(&out, &output.name)?;
            std::fs::write(path, node.blob(&output.id)?)?;
            saved += 1;
        }
    }
    println!("{}: {saved} frames in {}", last.state, out.display());
    Ok(())
}
