//! Validators that break the rules on purpose, for tests only.
//!
//! Compiled only with the `adversary` feature, which nothing but this
//! crate's own tests enables (through its dev-dependency on itself): a
//! production build has no way to make a validator tamper with its
//! proposals. A tampering validator is otherwise honest: it votes on other
//! leaders' blocks with the same checks as everyone, and applies what is
//! finalized.

use std::sync::Arc;

use commonware_cryptography::ed25519;
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_utils::ordered::Set;

use crate::app::App;
use crate::{Block, Channels, Ledger, Timeouts};

/// Rewrites a block this validator is about to propose, given its parent.
pub type Tamper = Arc<dyn Fn(&Block, &mut Block) + Send + Sync>;

/// [`crate::run_validator`], except that every block this validator proposes
/// is passed through `tamper` before it is digested and sent.
#[allow(clippy::too_many_arguments)]
pub async fn run_tampering_validator<E, S, R, P, B>(
    context: E,
    signer: ed25519::PrivateKey,
    participants: Set<ed25519::PublicKey>,
    prefix: String,
    peers: P,
    blocker: B,
    channels: Channels<S, R>,
    ledger: Ledger,
    timeouts: Timeouts,
    tamper: Tamper,
) where
    E: Spawner + Clock + Storage + Metrics + rand_core::CryptoRng,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    let mut app = App::new(ledger.clone(), timeouts.idle_block);
    app.tamper = Some(tamper);
    crate::node::run(
        context,
        signer,
        participants,
        prefix,
        peers,
        blocker,
        channels,
        ledger,
        timeouts,
        app,
    )
    .await
}
