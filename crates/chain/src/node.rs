//! One validator: consensus (simplex), block ordering and backfill
//! (marshal), block dissemination (buffered broadcast), and the ledger.

use std::sync::Arc;
use std::time::Duration;

use commonware_broadcast::buffered;
use commonware_consensus::marshal::core::Actor as Marshal;
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::{Inline, Standard};
use commonware_consensus::marshal::{self, Start};
use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::types::Finalization;
use commonware_consensus::simplex::{self, ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::types::{Epoch, FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::{ConstantProvider, Verifier as _};
use commonware_cryptography::{Digested, Digestible, Sha256, Signer as _, ed25519};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::{CacheRef, page_size};
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_storage::archive::immutable;
use commonware_utils::channel::mpsc;
use commonware_utils::ordered::Set;
use commonware_utils::{NZDuration, NZU64, NZUsize};

use crate::app::{App, Finalized, execute};
use crate::block::{Block, Digest};
use crate::{EPOCH_LENGTH, Ledger, NAMESPACE, Scheme};

/// The network channels a validator needs, one per purpose.
pub struct Channels<S, R> {
    /// Votes.
    pub vote: (S, R),
    /// Certificates.
    pub certificate: (S, R),
    /// Consensus catch-up.
    pub resolver: (S, R),
    /// Block backfill.
    pub backfill: (S, R),
    /// Block dissemination.
    pub broadcast: (S, R),
}

/// Timing of consensus. Defaults suit a LAN or loopback network.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// How long to wait for a leader's proposal.
    pub leader: Duration,
    /// How long to wait for a notarized block to be certified.
    pub certification: Duration,
    /// How long a leader with an empty mempool waits for a transaction
    /// before proposing an empty block. Keeps an idle chain from spinning
    /// while it still moves (and finalizes) a few times a second.
    pub idle_block: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            leader: Duration::from_secs(1),
            certification: Duration::from_secs(2),
            idle_block: Duration::from_millis(200),
        }
    }
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-table"),
        freezer_table_initial_size: 1 << 12,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1 << 10,
        freezer_key_partition: format!("{prefix}-{name}-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-value"),
        freezer_value_target_size: 1 << 26,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(4_096),
        freezer_key_write_buffer: NZUsize!(1 << 16),
        freezer_value_write_buffer: NZUsize!(1 << 16),
        ordinal_write_buffer: NZUsize!(1 << 16),
        replay_buffer: NZUsize!(1 << 16),
        codec_config,
    }
}

/// Runs one validator until its consensus engine stops. Run it as one task:
/// aborting that task stops every part of the validator.
#[allow(clippy::too_many_arguments)]
pub async fn run_validator<E, S, R, P, B>(
    context: E,
    signer: ed25519::PrivateKey,
    participants: Set<ed25519::PublicKey>,
    prefix: String,
    peers: P,
    blocker: B,
    channels: Channels<S, R>,
    ledger: Ledger,
    timeouts: Timeouts,
) where
    E: Spawner + Clock + Storage + Metrics + rand_core::CryptoRng,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    let app = App::new(ledger.clone(), timeouts.idle_block);
    run(
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

/// [`run_validator`] with the consensus application given.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<E, S, R, P, B>(
    context: E,
    signer: ed25519::PrivateKey,
    participants: Set<ed25519::PublicKey>,
    prefix: String,
    peers: P,
    blocker: B,
    channels: Channels<S, R>,
    ledger: Ledger,
    timeouts: Timeouts,
    app: App,
) where
    E: Spawner + Clock + Storage + Metrics + rand_core::CryptoRng,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    let me = signer.public_key();
    assert!(
        timeouts.idle_block < timeouts.leader,
        "an idle leader must propose before the others time out"
    );
    let scheme =
        Scheme::signer(NAMESPACE, participants, signer).expect("the signer is a validator");
    let page_cache = CacheRef::new(page_size(4096), NZUsize!(256));

    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: peers.clone(),
            blocker: blocker.clone(),
            mailbox_size: NZUsize!(1024),
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );
    let (broadcast, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: me,
            mailbox_size: NZUsize!(1024),
            deque_size: 10,
            priority: false,
            codec_config: (),
            peer_provider: peers,
            strategy: Sequential,
        },
    );
    broadcast.start(channels.broadcast);

    let finalizations: immutable::Archive<E, Digest, Finalization<Scheme, Digest>> =
        immutable::Archive::init(
            context.child("finalizations"),
            archive_config(
                &prefix,
                "finalizations",
                &page_cache,
                Scheme::certificate_codec_config_unbounded(),
            ),
        )
        .await
        .expect("opening the finalizations archive");
    let blocks: immutable::Archive<E, Digest, Arc<Block>> = immutable::Archive::init(
        context.child("blocks"),
        archive_config(&prefix, "blocks", &page_cache, ()),
    )
    .await
    .expect("opening the blocks archive");

    let genesis = Block::genesis(&ledger.chain());
    let genesis_digest = genesis.digest();
    let (marshal, marshal_mailbox, _floor) = Marshal::<_, Standard<Block>, _, _, _, _, _>::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::<Scheme, Epoch>::new(scheme.clone()),
            epocher: FixedEpocher::new(EPOCH_LENGTH),
            start: Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size: NZUsize!(1024),
            view_retention: ViewDelta::new(10),
            prunable_items_per_section: NZU64!(4_096),
            page_cache: page_cache.clone(),
            replay_buffer: NZUsize!(1 << 16),
            key_write_buffer: NZUsize!(1 << 16),
            value_write_buffer: NZUsize!(1 << 16),
            block_codec_config: (),
            max_repair: NZUsize!(16),
            max_pending_acks: NZUsize!(16),
            strategy: Sequential,
        },
    )
    .await;

    let (finalized_tx, finalized_rx) = mpsc::unbounded_channel();
    context
        .child("executor")
        .spawn(move |_| execute(ledger, finalized_rx));
    marshal.start(Finalized(finalized_tx), buffer, resolver);

    let inline = Inline::new(
        context.child("inline"),
        app,
        marshal_mailbox,
        FixedEpocher::new(EPOCH_LENGTH),
    );
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: inline,
            track_historical_votes: false,
            strategy: Sequential,
            partition: format!("{prefix}-simplex-0"),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: simplex::Floor::Genesis(genesis_digest),
            replay_buffer: NZUsize!(1 << 16),
            write_buffer: NZUsize!(1 << 16),
            page_cache,
            leader_timeout: timeouts.leader,
            certification_timeout: timeouts.certification,
            timeout_retry: Duration::from_millis(500),
            view_retention: ViewDelta::new(10),
            skip: SkipPolicy::Enabled {
                timeout: timeouts.certification * 2 + Duration::from_secs(1),
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
        },
    );
    let _ = engine
        .start(channels.vote, channels.certificate, channels.resolver)
        .await;
}
