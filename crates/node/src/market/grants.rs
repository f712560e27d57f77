//! Who may fetch which blob from this node. A blob is private to the
//! parties of the work it belongs to: a job's module to the providers that
//! bid on it, its inputs to the providers leased to it, a task's outputs
//! and dispute snapshots to the lease's requester. Anyone else who asks is
//! refused, so a requester's inputs never reach a stranger.
//!
//! Grants live in scopes (a job, a lease) that end with the work, so the
//! table holds only what is still in use.

use std::collections::{HashMap, HashSet};

use cairn_wire::{ContentId, PublicKey};
use parking_lot::Mutex;

/// The most scopes (jobs and leases in progress) kept; grants beyond it
/// are refused, which fails the work that needs them loudly rather than
/// growing without bound.
const SCOPES_MAX: usize = 65_536;
/// The most parties one scope names: more bidders than any auction uses.
const PARTIES_MAX: usize = 4_096;
/// The most blobs one scope names: a job's module and inputs, or a lease's
/// outputs and snapshots.
const BLOBS_MAX: usize = 1 << 20;

#[derive(Default)]
struct Scope {
    blobs: HashSet<ContentId>,
    parties: HashSet<PublicKey>,
}

#[derive(Default)]
struct Table {
    scopes: HashMap<ContentId, Scope>,
    /// For each blob, the scopes naming it.
    index: HashMap<ContentId, HashSet<ContentId>>,
}

/// The grants of one node.
#[derive(Default)]
pub(crate) struct Grants(Mutex<Table>);

impl Grants {
    /// Lets `party` fetch `blobs` until `scope` ends. False (and nothing
    /// granted) when a bound is reached.
    pub fn grant(
        &self,
        scope: ContentId,
        blobs: impl IntoIterator<Item = ContentId>,
        party: PublicKey,
    ) -> bool {
        let mut table = self.0.lock();
        let table = &mut *table;
        if !table.scopes.contains_key(&scope) && table.scopes.len() >= SCOPES_MAX {
            return false;
        }
        let entry = table.scopes.entry(scope).or_default();
        if !entry.parties.contains(&party) && entry.parties.len() >= PARTIES_MAX {
            return false;
        }
        entry.parties.insert(party);
        for blob in blobs {
            if entry.blobs.len() >= BLOBS_MAX {
                return false;
            }
            if entry.blobs.insert(blob) {
                table.index.entry(blob).or_default().insert(scope);
            }
        }
        true
    }

    /// Lets every party of the open `scope` fetch `blobs` too (a stream's
    /// new segments, for the providers leased to it). False (and nothing
    /// more granted) when the scope is not open or is full.
    pub fn extend(&self, scope: &ContentId, blobs: impl IntoIterator<Item = ContentId>) -> bool {
        let mut table = self.0.lock();
        let table = &mut *table;
        let Some(entry) = table.scopes.get_mut(scope) else {
            return false;
        };
        for blob in blobs {
            if entry.blobs.len() >= BLOBS_MAX {
                return false;
            }
            if entry.blobs.insert(blob) {
                table.index.entry(blob).or_default().insert(*scope);
            }
        }
        true
    }

    /// Whether `party` may fetch `blob`.
    pub fn allows(&self, blob: &ContentId, party: &PublicKey) -> bool {
        let table = self.0.lock();
        table.index.get(blob).is_some_and(|scopes| {
            scopes.iter().any(|s| {
                table
                    .scopes
                    .get(s)
                    .is_some_and(|s| s.parties.contains(party))
            })
        })
    }

    /// Ends `scope`: its grants are gone.
    pub fn revoke(&self, scope: &ContentId) {
        let mut table = self.0.lock();
        let Some(ended) = table.scopes.remove(scope) else {
            return;
        };
        for blob in ended.blobs {
            if let Some(scopes) = table.index.get_mut(&blob) {
                scopes.remove(scope);
                if scopes.is_empty() {
                    table.index.remove(&blob);
                }
            }
        }
    }

    /// How many scopes are open.
    #[cfg(test)]
    pub fn scopes(&self) -> usize {
        self.0.lock().scopes.len()
    }
}

/// The scope of the providers that bid on `job`: its module only.
pub(crate) fn bidders_scope(job: &ContentId) -> ContentId {
    let mut bytes = job.as_bytes().to_vec();
    bytes.extend_from_slice(b"cairn bidders scope v1");
    ContentId::of(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        cairn_wire::Keypair::from_seed([seed; 32]).public()
    }

    /// A `blob_snooper` asks for blobs of work it is not part of: refused
    /// before, during and after that work; a party loses access when its
    /// scope ends, but not while another scope still names the blob.
    #[test]
    fn blob_snooper_is_refused_and_scopes_end() {
        let grants = Grants::default();
        let (job, other_job) = (ContentId::of(b"job"), ContentId::of(b"other"));
        let (module, input) = (ContentId::of(b"module"), ContentId::of(b"input"));
        let (provider, snooper) = (key(1), key(2));
        assert!(!grants.allows(&input, &provider));
        assert!(grants.grant(job, [module, input], provider));
        assert!(grants.grant(other_job, [module], provider));
        assert!(grants.allows(&input, &provider));
        assert!(!grants.allows(&input, &snooper));
        assert!(!grants.allows(&module, &snooper));
        grants.revoke(&job);
        assert!(!grants.allows(&input, &provider));
        assert!(
            grants.allows(&module, &provider),
            "still named by the other job"
        );
        // A stream's new segment goes to the parties of its open scope,
        // and no further; a scope not open takes nothing.
        let segment = ContentId::of(b"segment");
        assert!(grants.extend(&other_job, [segment]));
        assert!(grants.allows(&segment, &provider));
        assert!(!grants.allows(&segment, &snooper));
        assert!(!grants.extend(&job, [ContentId::of(b"late")]));
        assert!(!grants.allows(&ContentId::of(b"late"), &provider));
        grants.revoke(&other_job);
        assert!(!grants.allows(&module, &provider));
        assert!(!grants.allows(&segment, &provider));
        assert_eq!(grants.scopes(), 0);
        assert!(grants.0.lock().index.is_empty());
    }

    #[test]
    fn parties_per_scope_are_bounded() {
        let grants = Grants::default();
        let job = ContentId::of(b"job");
        for i in 0..PARTIES_MAX {
            let seed = *ContentId::of(&i.to_le_bytes()).as_bytes();
            let party = cairn_wire::Keypair::from_seed(seed);
            assert!(grants.grant(job, [], party.public()));
        }
        assert!(!grants.grant(job, [], key(9)));
    }
}
