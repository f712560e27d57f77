//! Trust in providers and credibility of results (Sarmenta's model, as iExec
//! uses it, with BOINC's consecutive-valid rule for earning trust).
//!
//! An unproven provider's result is wrong with probability at most `f`
//! ([`Params::bad_fraction`]). Each result of a provider that another provider
//! independently confirmed adds one to its *streak*; one wrong result resets
//! the streak and bans the provider. A provider with streak `k` has
//! credibility `1 - f / (1 + k)`: the probability that a result it returns
//! alone is right. A set of agreeing results is believed in proportion to the
//! chance that exactly they are right and everyone else is wrong.

use std::collections::{BTreeSet, HashMap};

use cairn_wire::PublicKey;

/// Tunable numbers of verification; see `docs/verification.md` for why these.
#[derive(Clone, Debug)]
pub struct Params {
    /// Sarmenta's `f`: the assumed probability that an unproven provider's
    /// result is wrong.
    pub bad_fraction: f64,
    /// The spot-check probability of a provider at the moment its results
    /// first stand alone; it falls as `1 / streak` from there.
    pub spot_at_trust: f64,
    /// The spot-check probability never falls below this.
    pub spot_min: f64,
    /// Most providers that run one task.
    pub replicas_max: u32,
    /// How long an assigned provider has to commit to its result.
    pub commit_timeout_ms: u64,
    /// How long a committed provider has to reveal once asked.
    pub reveal_timeout_ms: u64,
    /// How long the requester may take to fetch a reveal's outputs once
    /// the reveal arrived in time, before the provider is held not to
    /// have revealed. The transfer is the provider's to serve, but its
    /// time also holds waits that are not (another replica's identical
    /// outputs still coming from a stalled peer), so an arrived reveal's
    /// time runs anew.
    pub reveal_fetch_timeout_ms: u64,
    /// How long a side of a dispute has to answer one round.
    pub dispute_round_timeout_ms: u64,
    /// The slowest a side is assumed to trace a task (re-run it with
    /// checkpoints), in fuel per millisecond: the first round of a dispute
    /// allows a task's declared fuel at this speed on top of the round's
    /// time, so an honest side tracing a long task does not lose to a liar
    /// that answers at once.
    pub dispute_trace_fuel_per_ms: u64,
    /// Points each dispute round asks for: the interval shrinks this much
    /// per round.
    pub dispute_arity: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            bad_fraction: 0.05,
            spot_at_trust: 0.5,
            spot_min: 0.05,
            replicas_max: 8,
            commit_timeout_ms: 600_000,
            reveal_timeout_ms: 60_000,
            // The shell waits up to a minute for another fetch of the same
            // blob, then a transfer of its own.
            reveal_fetch_timeout_ms: 180_000,
            dispute_round_timeout_ms: 60_000,
            // 50 Mfuel/s traced: several times slower than tracing runs
            // here (2.2x a plain run), for slow or loaded providers.
            dispute_trace_fuel_per_ms: 50_000,
            dispute_arity: 16,
        }
    }
}

impl Params {
    /// Checks each relationship between the settings; panics on a bad one
    /// (configuration is code here, not peer input).
    pub fn assert(&self) {
        assert!(
            self.bad_fraction > 0.0 && self.bad_fraction < 1.0,
            "bad_fraction in (0, 1)"
        );
        assert!(
            self.spot_min > 0.0 && self.spot_min <= self.spot_at_trust && self.spot_at_trust <= 1.0,
            "0 < spot_min <= spot_at_trust <= 1"
        );
        assert!(self.replicas_max >= 2, "disputes need two replicas");
        assert!(self.dispute_arity >= 2, "a dispute round must narrow");
        assert!(self.dispute_trace_fuel_per_ms > 0, "tracing takes time");
        // A provider hears a request at its next check-in (every second)
        // and then sends what was asked: no honest side meets a deadline
        // shorter than that.
        assert!(
            self.reveal_timeout_ms >= 5_000
                && self.reveal_fetch_timeout_ms >= 5_000
                && self.dispute_round_timeout_ms >= 5_000,
            "reveals, their fetches and dispute answers get at least 5 s"
        );
    }

    /// The credibility of a provider with streak `streak`.
    pub fn credibility(&self, streak: u64) -> f64 {
        1.0 - self.bad_fraction / (1.0 + streak as f64)
    }

    /// The smallest streak whose results stand alone at `confidence`.
    pub fn trusted_streak(&self, confidence: f64) -> u64 {
        if confidence <= 1.0 - self.bad_fraction {
            return 0;
        }
        // 1 - f / (1 + k) >= c  <=>  k >= f / (1 - c) - 1
        let k = (self.bad_fraction / (1.0 - confidence) - 1.0)
            .ceil()
            .max(0.0) as u64;
        // Guard against rounding at the boundary.
        (k.saturating_sub(1)..=k + 1)
            .find(|&k| self.credibility(k) >= confidence)
            .expect("k + 1 always suffices")
    }

    /// The probability that a result from a provider with `streak`, credible
    /// enough to stand alone at `confidence`, is checked anyway.
    pub fn spot_probability(&self, streak: u64, confidence: f64) -> f64 {
        let trusted = self.trusted_streak(confidence);
        if streak < trusted {
            return 1.0;
        }
        (self.spot_at_trust * (trusted + 1) as f64 / (streak + 1) as f64).max(self.spot_min)
    }
}

/// What one requester knows about one provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Consecutive results confirmed by another provider (BOINC's
    /// `consecutive_valid`).
    pub streak: u64,
    /// Results confirmed by another provider, ever.
    pub confirmed: u64,
    /// Results accepted on this provider's word alone.
    pub alone: u64,
    /// Proven offences: wrong results, bad or missing reveals.
    pub convictions: u64,
}

impl Record {
    /// A convicted provider gets no more work from this requester.
    pub fn banned(&self) -> bool {
        self.convictions > 0
    }

    /// The record as stored: four big-endian counters.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0; 32];
        for (at, n) in [self.streak, self.confirmed, self.alone, self.convictions]
            .into_iter()
            .enumerate()
        {
            bytes[at * 8..at * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        bytes
    }

    /// A record stored by [`to_bytes`](Self::to_bytes); `None` for any
    /// other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 32] = bytes.try_into().ok()?;
        let n = |at: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[at * 8..at * 8 + 8]);
            u64::from_be_bytes(word)
        };
        Some(Self {
            streak: n(0),
            confirmed: n(1),
            alone: n(2),
            convictions: n(3),
        })
    }
}

/// Every provider's [`Record`], kept across jobs.
#[derive(Clone, Debug, Default)]
pub struct TrustBook {
    /// Looked up, never walked (a walk would have to sort first: its
    /// order is the hasher's).
    records: HashMap<PublicKey, Record>,
    /// Providers whose record changed since [`take_changed`](Self::take_changed).
    changed: BTreeSet<PublicKey>,
}

impl TrustBook {
    /// The record of `provider` (zero for a stranger).
    pub fn record(&self, provider: &PublicKey) -> Record {
        self.records.get(provider).copied().unwrap_or_default()
    }

    /// A provider's result was confirmed by another provider's.
    pub fn confirmed(&mut self, provider: &PublicKey) {
        let record = self.records.entry(*provider).or_default();
        record.streak += 1;
        record.confirmed += 1;
        self.changed.insert(*provider);
    }

    /// A provider's result was accepted on its word alone.
    pub fn alone(&mut self, provider: &PublicKey) {
        self.records.entry(*provider).or_default().alone += 1;
        self.changed.insert(*provider);
    }

    /// A provider's result lost a vote (see
    /// [`Verifier::decide_by_vote`](crate::Verifier::decide_by_vote)):
    /// nothing proves it cheated, but its streak starts again, so its word
    /// counts for less until others confirm it again.
    pub fn outvoted(&mut self, provider: &PublicKey) {
        self.records.entry(*provider).or_default().streak = 0;
        self.changed.insert(*provider);
    }

    /// A provider was proven to cheat: its streak resets and it is banned.
    pub fn convicted(&mut self, provider: &PublicKey) {
        let record = self.records.entry(*provider).or_default();
        record.streak = 0;
        record.convictions += 1;
        self.changed.insert(*provider);
    }

    /// Sets a provider's record, e.g. when restoring from disk or starting
    /// a simulation with established providers. Not a change to persist.
    pub fn set(&mut self, provider: PublicKey, record: Record) {
        self.records.insert(provider, record);
    }

    /// The records changed since the last call, to persist: a restarted
    /// requester keeps what it learned of each provider instead of
    /// replicating everything again.
    pub fn take_changed(&mut self) -> Vec<(PublicKey, Record)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|provider| (provider, self.record(&provider)))
            .collect()
    }
}

/// The credibility of each group of agreeing results: the probability that
/// this group is right given every provider's credibility, among the
/// hypotheses "exactly this group is right" and "every result is wrong".
/// `groups[i]` lists the credibilities of the providers that returned the
/// i-th digest.
pub fn group_credibility(groups: &[Vec<f64>]) -> Vec<f64> {
    let all_wrong: f64 = groups.iter().flatten().map(|c| 1.0 - c).product();
    let right: Vec<f64> = groups
        .iter()
        .map(|group| {
            let inside: f64 = group.iter().product();
            let inside_wrong: f64 = group.iter().map(|c| 1.0 - c).product();
            // Everyone outside this group is wrong: all_wrong / inside_wrong.
            inside * all_wrong / inside_wrong
        })
        .collect();
    let total: f64 = right.iter().sum::<f64>() + all_wrong;
    right.iter().map(|p| p / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_are_those_the_incentives_document_states() {
        let params = Params::default();
        params.assert();
        // A stranger is 95% credible; two strangers agreeing are not enough
        // at 0.999, three are.
        assert!((params.credibility(0) - 0.95).abs() < 1e-12);
        let two = group_credibility(&[vec![0.95, 0.95]])[0];
        let three = group_credibility(&[vec![0.95, 0.95, 0.95]])[0];
        assert!(two < 0.999 && three >= 0.999, "{two} {three}");
        // 49 consecutive confirmed results let a provider stand alone.
        assert_eq!(params.trusted_streak(0.999), 49);
        assert!(params.credibility(49) >= 0.999 && params.credibility(48) < 0.999);
        assert_eq!(params.spot_probability(48, 0.999), 1.0);
        assert_eq!(params.spot_probability(49, 0.999), 0.5);
        assert_eq!(params.spot_probability(99, 0.999), 0.25);
        assert_eq!(params.spot_probability(10_000, 0.999), 0.05);
        assert_eq!(params.trusted_streak(0.9), 0);
    }

    #[test]
    fn disagreement_lowers_credibility_and_one_result_keeps_its_own() {
        assert!((group_credibility(&[vec![0.9]])[0] - 0.9).abs() < 1e-12);
        let split = group_credibility(&[vec![0.99], vec![0.95]]);
        assert!(split[0] > split[1]);
        assert!(split[0] < 0.99, "a dissent lowers belief: {split:?}");
        assert!(split.iter().sum::<f64>() < 1.0);
    }

    #[test]
    fn changed_records_are_reported_once_and_round_trip_through_bytes() {
        let (a, b) = (
            cairn_wire::Keypair::from_seed([1; 32]).public(),
            cairn_wire::Keypair::from_seed([2; 32]).public(),
        );
        let mut book = TrustBook::default();
        book.set(
            b,
            Record {
                streak: 9,
                ..Record::default()
            },
        );
        assert!(
            book.take_changed().is_empty(),
            "a restored record is no change"
        );
        book.confirmed(&a);
        book.confirmed(&a);
        book.alone(&b);
        let changed = book.take_changed();
        assert_eq!(changed.len(), 2);
        assert!(book.take_changed().is_empty());
        for (provider, record) in changed {
            assert_eq!(record, book.record(&provider));
            assert_eq!(Record::from_bytes(&record.to_bytes()), Some(record));
        }
        book.convicted(&a);
        let [(who, record)] = book.take_changed()[..] else {
            panic!("one change");
        };
        assert_eq!((who, record.streak, record.convictions), (a, 0, 1));
        assert_eq!(Record::from_bytes(&[0; 31]), None);
    }
}
