//! `cairn init`: a node's data folder, ready to start: its key, its API
//! token and a commented config file, readable by their owner only.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use cairn_client::ApiToken;
use cairn_wire::Keypair;

/// The config file `cairn init` writes in the data folder.
pub const CONFIG_FILE: &str = "cairn.toml";

/// Arguments of `cairn init`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// The folder to set up.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = ".cairn")]
    data_dir: PathBuf,
    /// Set the node up as a provider too: its config turns `provide` on.
    #[arg(long)]
    provide: bool,
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir;
    cairn_wire::private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        bail!(
            "{} exists already; nothing was changed (remove it to write a new one)",
            config.display()
        );
    }
    let key_path = dir.join("node.key");
    let had_key = key_path.exists();
    let key = Keypair::load_or_create(&key_path)?;
    ApiToken::load_or_create(dir)?;
    let text = config_text(dir, args.provide);
    // Created, never truncated: a file made meanwhile is not overwritten.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&config)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", config.display()))?;
    let dir_text = dir.display();
    println!(
        "{} {}",
        if had_key {
            "kept the key of"
        } else {
            "created the key of"
        },
        key.public()
    );
    println!(
        "wrote {} and the API token in {dir_text}/api.token",
        config.display()
    );
    println!("start the node:   cairn node --config {}", config.display());
    println!("its web console:  http://127.0.0.1:8640/ (the token: cat {dir_text}/api.token)");
    if args.provide {
        println!(
            "as a provider it stakes {} on start; fund its key first: cairn wallet transfer {} <µCAIRN>",
            crate::wallet::cairn(cairn_ledger::Params::default().stake_min),
            key.public()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The config file: every setting a new user may want, commented with what
/// it does; the defaults are commented out so that the flags' own defaults
/// stay in force until one is chosen.
fn config_text(dir: &std::path::Path, provide: bool) -> String {
    let dir = dir
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let provide = if provide { "" } else { "# " };
    format!(
        r#"# Cairn node settings. Each key is a flag of `cairn node` (see `cairn node
# --help`); a flag given on the command line, or its CAIRN_* variable,
# overrides it. Start the node with:
#
#   cairn node --config {dir}/{CONFIG_FILE}

# Where the key, the API token, the ledger and the market's state are kept.
data_dir = "{dir}"

# Where the HTTP API and the web console listen. Keep it on loopback: the
# token guards spending, and the API refuses web pages, but nothing else
# should reach it.
# http = "127.0.0.1:8640"

# Where the market's libp2p transport listens, and the peers to dial first
# (multiaddresses ending in /p2p/<peer id>).
# listen = ["/ip4/0.0.0.0/tcp/8642"]
# bootstrap = []

# Offer this machine's CPUs to the market: bid on orders, run tasks in the
# sandbox, get paid on the ledger. A provider stakes on start.
{provide}provide = true
# cores = 4                 # CPU cores lent [default: all]
# price = 40                # µCAIRN per billion fuel asked
# tools = true              # also offer installed ffmpeg and Blender

# Log: off, error, warn, info, debug, trace; human or json.
# log_level = "info"
# log_format = "human"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_toml_and_turns_provide_on_only_when_asked() {
        for provide in [false, true] {
            let text = config_text(std::path::Path::new("a \"quoted\" dir"), provide);
            let table: toml::Table = text.parse().unwrap();
            assert_eq!(table["data_dir"].as_str(), Some("a \"quoted\" dir"));
            assert_eq!(
                table.get("provide").and_then(toml::Value::as_bool),
                provide.then_some(true)
            );
        }
    }
}
