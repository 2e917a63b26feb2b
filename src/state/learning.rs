//! Learning state: outcome counts per (action, channel), the evidence the
//! adaptive propensities' posteriors are computed from; and, for a
//! fleet, the [`LearningStore`] the counts of every engine are summed in.
//!
//! Counts are commutative: an engine adds what it records to its own
//! counts at once and keeps the same amounts aside as *pending*; an
//! exchange with the shared store adds the pending amounts there (once,
//! whatever fails) and brings back the fleet's totals, which become the
//! engine's counts (plus what was recorded since). So no outcome is lost
//! or counted twice, and every engine converges on the same counts one
//! exchange after the last outcome.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::base::outcome::KINDS;
use crate::base::{Error, OutcomeKind};

/// The outcome counts of one action on one channel.
#[derive(Debug)]
pub(crate) struct Counts {
    pub action: Box<str>,
    pub channel: Box<str>,
    kinds: [AtomicU32; KINDS],
    /// Added here and not yet sent to the shared store.
    pending: [AtomicU32; KINDS],
}

impl Counts {
    fn new(action: &str, channel: &str) -> Counts {
        Counts {
            action: action.into(),
            channel: channel.into(),
            kinds: Default::default(),
            pending: Default::default(),
        }
    }

    pub(crate) fn add(&self, kind: OutcomeKind, n: u32) {
        let saturating = |c: u32| Some(c.saturating_add(n));
        let _ = self.pending[kind as usize].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            saturating,
        );
        let _ = self.kinds[kind as usize].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            saturating,
        );
    }

    pub(crate) fn get(&self) -> [u32; KINDS] {
        std::array::from_fn(|i| self.kinds[i].load(Ordering::Relaxed))
    }
}

/// The counts of one predictor of a contextual model for one action on one
/// channel: successes and failures per bin (see
/// [`Contextual`](crate::ruleset::learning::Contextual)).
#[derive(Debug)]
pub(crate) struct PredCounts {
    pub action: Box<str>,
    pub channel: Box<str>,
    pub predictor: Box<str>,
    pub spec: u64,
    s: Box<[AtomicU32]>,
    f: Box<[AtomicU32]>,
    /// Added here and not yet sent to the shared store.
    pending_s: Box<[AtomicU32]>,
    pending_f: Box<[AtomicU32]>,
}

fn zeros(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

fn bump(a: &AtomicU32, n: u32) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_add(n))
    });
}

impl PredCounts {
    fn new(action: &str, channel: &str, predictor: &str, spec: u64, bins: usize) -> PredCounts {
        PredCounts {
            action: action.into(),
            channel: channel.into(),
            predictor: predictor.into(),
            spec,
            s: zeros(bins),
            f: zeros(bins),
            pending_s: zeros(bins),
            pending_f: zeros(bins),
        }
    }

    /// Count one outcome of a decision whose predictor was in `bin`.
    pub(crate) fn add(&self, bin: usize, success: bool) {
        let Some((c, p)) = (match success {
            true => self.s.get(bin).zip(self.pending_s.get(bin)),
            false => self.f.get(bin).zip(self.pending_f.get(bin)),
        }) else {
            return;
        };
        bump(p, 1);
        bump(c, 1);
    }

    /// Successes and failures per bin, into `s` and `f` (this predictor's
    /// part of the model's bins).
    pub(crate) fn read(&self, s: &mut [u32], f: &mut [u32]) {
        for (o, c) in s.iter_mut().zip(self.s.iter()) {
            *o = c.load(Ordering::Relaxed);
        }
        for (o, c) in f.iter_mut().zip(self.f.iter()) {
            *o = c.load(Ordering::Relaxed);
        }
    }
}

/// A version's contextual model: the counts it learns into and the
/// snapshot decisions read (see
/// [`Contextual`](crate::ruleset::learning::Contextual)).
#[derive(Debug)]
pub(crate) struct Models {
    pub model: Arc<crate::ruleset::learning::Contextual>,
    /// Per (action, channel) row (`action * channels + channel`), the
    /// counts of each predictor: index `row * predictors + p`.
    pub counts: Box<[Option<Arc<PredCounts>>]>,
    /// What decisions read: replaced whole, every `snapshot_every`
    /// outcomes.
    pub snapshot: arc_swap::ArcSwap<Snapshot>,
    /// Outcomes counted since the snapshot was taken.
    pub since: std::sync::atomic::AtomicU32,
}

/// The contextual model as of one moment: each bin's log-likelihood ratio
/// and each row's positives, computed once for every decision until the
/// next snapshot.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// A hash of the counts it was taken from (logged with each
    /// decision): the same counts give the same snapshot in every engine
    /// of a fleet, after a restart and in a replay.
    pub version: u64,
    /// Each bin's likelihood ratio `exp(r_pb)`: index `row * bins + bin`.
    pub ratios: Box<[f32]>,
    /// Contextual successes per row.
    pub positives: Box<[u32]>,
}

impl Models {
    /// Take a new snapshot of the counts.
    pub(crate) fn snapshot(&self) {
        self.since.store(0, std::sync::atomic::Ordering::Relaxed);
        self.snapshot.store(Arc::new(take_snapshot(
            &self.counts,
            self.model.predictors.len(),
            &self.model,
        )));
    }
}

fn take_snapshot(
    counts: &[Option<Arc<PredCounts>>],
    predictors: usize,
    model: &crate::ruleset::learning::Contextual,
) -> Snapshot {
    let bins = model.bins as usize;
    let rows = counts.len() / predictors.max(1);
    let mut ratios = vec![0f32; rows * bins];
    let mut positives = vec![0u32; rows];
    let mut s = vec![0u32; bins];
    let mut f = vec![0u32; bins];
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    hash.update(&model.id.to_le_bytes());
    for row in 0..rows {
        let preds = &counts[row * predictors..(row + 1) * predictors];
        if preds.iter().any(Option::is_none) {
            continue;
        }
        s.fill(0);
        f.fill(0);
        for (p, c) in model.predictors.iter().zip(preds.iter().flatten()) {
            let r = p.offset as usize..(p.offset + p.len) as usize;
            c.read(&mut s[r.clone()], &mut f[r]);
        }
        let (pos, _) = model.ratios(&s, &f, &mut ratios[row * bins..(row + 1) * bins]);
        positives[row] = pos;
        hash.update(&(row as u64).to_le_bytes());
        for x in s.iter().chain(f.iter()) {
            hash.update(&x.to_le_bytes());
        }
    }
    Snapshot {
        version: hash.digest(),
        ratios: ratios.into(),
        positives: positives.into(),
    }
}

/// One contextual predictor's counts in a saved state file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub(crate) struct SavedBins {
    pub action: String,
    pub channel: String,
    pub predictor: String,
    /// The predictor's spec (its bins) as 16 hex digits.
    pub spec: String,
    pub successes: Vec<u32>,
    pub failures: Vec<u32>,
}

/// The engine's learning state: outcome counts per (action, channel),
/// keyed by names so that they carry over from one rule version to the
/// next. Each version resolves its (action, channel) pairs once, when it is
/// published, so a decision reads counts without a map lookup.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    map: DashMap<(u64, u64), Arc<Counts>, rustc_hash::FxBuildHasher>,
    /// Contextual models' counts by (action, channel, predictor spec).
    preds: DashMap<(u64, u64, u64), Arc<PredCounts>, rustc_hash::FxBuildHasher>,
    /// Every version's contextual models, to snapshot when the fleet's
    /// totals arrive (dropped versions' are skipped and pruned).
    models: parking_lot::Mutex<Vec<std::sync::Weak<Models>>>,
}

/// One (action, channel) in a saved state file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub(crate) struct SavedCounts {
    pub action: String,
    pub channel: String,
    /// Counts of impression, clicked, accepted, rejected, no_response.
    pub counts: [u32; KINDS],
}

impl Learned {
    /// The counts of `action` on `channel`, created empty if new.
    pub(crate) fn counts(&self, action: &str, channel: &str) -> Arc<Counts> {
        let k = (crate::base::key(action), crate::base::key(channel));
        if let Some(c) = self.map.get(&k) {
            return Arc::clone(&c);
        }
        Arc::clone(
            &self
                .map
                .entry(k)
                .or_insert_with(|| Arc::new(Counts::new(action, channel))),
        )
    }

    /// A version's contextual model over `counts` (per row, each
    /// predictor's), with its first snapshot.
    pub(crate) fn models(
        &self,
        model: Arc<crate::ruleset::learning::Contextual>,
        counts: Vec<Option<Arc<PredCounts>>>,
    ) -> Arc<Models> {
        let np = model.predictors.len();
        let snapshot = take_snapshot(&counts, np, &model);
        let m = Arc::new(Models {
            model,
            counts: counts.into(),
            snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
            since: Default::default(),
        });
        let mut all = self.models.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&m));
        m
    }

    /// A new snapshot of every live version's contextual models.
    pub(crate) fn snapshot_models(&self) {
        let all: Vec<Arc<Models>> = self
            .models
            .lock()
            .iter()
            .filter_map(|w| w.upgrade())
            .collect();
        for m in all {
            m.snapshot();
        }
    }

    /// The counts of one contextual predictor (`spec`, `bins` bins) of
    /// `action` on `channel`, created empty if new.
    pub(crate) fn pred_counts(
        &self,
        action: &str,
        channel: &str,
        predictor: &str,
        spec: u64,
        bins: usize,
    ) -> Arc<PredCounts> {
        let k = (crate::base::key(action), crate::base::key(channel), spec);
        if let Some(c) = self.preds.get(&k) {
            return Arc::clone(&c);
        }
        Arc::clone(
            &self.preds.entry(k).or_insert_with(|| {
                Arc::new(PredCounts::new(action, channel, predictor, spec, bins))
            }),
        )
    }

    /// Take every pending amount (leaving zero), as shared-store deltas
    /// (`action/channel/kind`, amount; `ctx/action/channel/predictor/spec/bin/s|f`
    /// for contextual counts).
    pub(crate) fn take_pending(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for e in self.preds.iter() {
            for (sf, pending) in [("s", &e.pending_s), ("f", &e.pending_f)] {
                for (bin, p) in pending.iter().enumerate() {
                    let n = p.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        out.push((pred_field(&e, bin, sf), u64::from(n)));
                    }
                }
            }
        }
        for e in self.map.iter() {
            for (kind, p) in OutcomeKind::ALL.iter().zip(&e.pending) {
                let n = p.swap(0, Ordering::Relaxed);
                if n > 0 {
                    out.push((field(&e.action, &e.channel, *kind), u64::from(n)));
                }
            }
        }
        out
    }

    /// Make the fleet's `totals` (as a [`LearningStore`] returns them) the
    /// engine's counts, plus what is pending here. Counts the totals do not
    /// name become what is pending. Fields that are not counts of this
    /// shape are skipped (other models may share the store).
    pub(crate) fn set_totals(&self, totals: &[(String, u64)]) {
        let mut seen = rustc_hash::FxHashSet::default();
        let mut seen_bins = rustc_hash::FxHashSet::default();
        for (f, total) in totals {
            let total32 = u32::try_from(*total).unwrap_or(u32::MAX);
            if let Some((action, channel, spec, bin, success)) = parse_pred_field(f) {
                // Only predictors this engine models: it learns of the
                // others' bins when a version declares them.
                let k = (crate::base::key(action), crate::base::key(channel), spec);
                if let Some(c) = self.preds.get(&k) {
                    let (counts, pending) = match success {
                        true => (&c.s, &c.pending_s),
                        false => (&c.f, &c.pending_f),
                    };
                    if let (Some(n), Some(p)) = (counts.get(bin), pending.get(bin)) {
                        n.store(
                            total32.saturating_add(p.load(Ordering::Relaxed)),
                            Ordering::Relaxed,
                        );
                        seen_bins.insert((k, bin, success));
                    }
                }
                continue;
            }
            let Some((action, channel, kind)) = parse_field(f) else {
                continue;
            };
            let c = self.counts(action, channel);
            let k = kind as usize;
            let total = u32::try_from(*total).unwrap_or(u32::MAX);
            c.kinds[k].store(
                total.saturating_add(c.pending[k].load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            seen.insert((crate::base::key(action), crate::base::key(channel), k));
        }
        for e in self.map.iter() {
            let (a, ch) = *e.key();
            for k in 0..KINDS {
                if !seen.contains(&(a, ch, k)) {
                    e.kinds[k].store(e.pending[k].load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
        }
        for e in self.preds.iter() {
            let k = *e.key();
            for (success, counts, pending) in
                [(true, &e.s, &e.pending_s), (false, &e.f, &e.pending_f)]
            {
                for (bin, (n, p)) in counts.iter().zip(pending.iter()).enumerate() {
                    if !seen_bins.contains(&(k, bin, success)) {
                        n.store(p.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                }
            }
        }
        // Decisions read the fleet's counts from the next snapshot on.
        self.snapshot_models();
    }

    /// The contextual counts, for a state file.
    pub(crate) fn save_bins(&self) -> Vec<SavedBins> {
        let read = |v: &[AtomicU32]| v.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let mut out: Vec<SavedBins> = self
            .preds
            .iter()
            .map(|e| SavedBins {
                action: e.action.to_string(),
                channel: e.channel.to_string(),
                predictor: e.predictor.to_string(),
                spec: format!("{:016x}", e.spec),
                successes: read(&e.s),
                failures: read(&e.f),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.action, &a.channel, &a.predictor, &a.spec).cmp(&(
                &b.action,
                &b.channel,
                &b.predictor,
                &b.spec,
            ))
        });
        out
    }

    /// Replace the contextual counts with saved ones (as [`Learned::load`]
    /// does the per-action counts). An entry [`check_bins`] refuses is an
    /// error, and changes nothing.
    pub(crate) fn load_bins(&self, saved: &[SavedBins]) -> Result<(), Error> {
        check_bins(saved).map_err(Error::State)?;
        let mut parsed = Vec::with_capacity(saved.len());
        for b in saved {
            let spec = u64::from_str_radix(&b.spec, 16)
                .ok()
                .filter(|_| b.spec.len() == 16)
                .ok_or_else(|| {
                    Error::State(format!(
                        "contextual counts of `{}` on `{}`: spec `{}` is not 16 hex digits",
                        b.action, b.channel, b.spec
                    ))
                })?;
            if b.successes.len() != b.failures.len() {
                return Err(Error::State(format!(
                    "contextual counts of `{}` on `{}`, predictor `{}`: {} successes but {} failures bins",
                    b.action,
                    b.channel,
                    b.predictor,
                    b.successes.len(),
                    b.failures.len()
                )));
            }
            parsed.push((b, spec));
        }
        for e in self.preds.iter() {
            for c in
                e.s.iter()
                    .chain(e.f.iter())
                    .chain(e.pending_s.iter())
                    .chain(e.pending_f.iter())
            {
                c.store(0, Ordering::Relaxed);
            }
        }
        for (b, spec) in parsed {
            let c = self.pred_counts(&b.action, &b.channel, &b.predictor, spec, b.successes.len());
            for (n, v) in c.s.iter().zip(&b.successes) {
                n.store(*v, Ordering::Relaxed);
            }
            for (n, v) in c.f.iter().zip(&b.failures) {
                n.store(*v, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    pub(crate) fn save(&self) -> Vec<SavedCounts> {
        let mut out: Vec<SavedCounts> = self
            .map
            .iter()
            .map(|e| SavedCounts {
                action: e.action.to_string(),
                channel: e.channel.to_string(),
                counts: e.get(),
            })
            .collect();
        out.sort_by(|a, b| (&a.action, &a.channel).cmp(&(&b.action, &b.channel)));
        out
    }

    /// Replace the live counts with saved ones: counts the file does not
    /// have become zero. The counts are set in place, so the versions
    /// that resolved them see the new values.
    pub(crate) fn load(&self, saved: &[SavedCounts]) {
        for e in self.map.iter() {
            for k in e.value().kinds.iter().chain(&e.value().pending) {
                k.store(0, Ordering::Relaxed);
            }
        }
        for s in saved {
            let c = self.counts(&s.action, &s.channel);
            for (k, n) in c.kinds.iter().zip(s.counts) {
                k.store(n, Ordering::Relaxed);
            }
        }
    }
}

/// The shared-store field of a count: `action/channel/kind` (action and
/// channel names cannot hold a `/`).
pub(crate) fn field(action: &str, channel: &str, kind: OutcomeKind) -> String {
    format!("{action}/{channel}/{}", kind.as_str())
}

/// Whether saved contextual counts are well formed: each spec 16 hex
/// digits, as many failure bins as success bins.
pub(crate) fn check_bins(saved: &[SavedBins]) -> Result<(), String> {
    for b in saved {
        if b.spec.len() != 16 || u64::from_str_radix(&b.spec, 16).is_err() {
            return Err(format!(
                "contextual counts of `{}` on `{}`: spec `{}` is not 16 hex digits",
                b.action, b.channel, b.spec
            ));
        }
        if b.successes.len() != b.failures.len() {
            return Err(format!(
                "contextual counts of `{}` on `{}`, predictor `{}`: {} success bins but {} failure bins",
                b.action,
                b.channel,
                b.predictor,
                b.successes.len(),
                b.failures.len()
            ));
        }
    }
    Ok(())
}

fn pred_field(c: &PredCounts, bin: usize, sf: &str) -> String {
    format!(
        "ctx/{}/{}/{}/{:016x}/{bin}/{sf}",
        c.action, c.channel, c.predictor, c.spec
    )
}

/// A contextual count's field: (action, channel, spec, bin, success).
fn parse_pred_field(f: &str) -> Option<(&str, &str, u64, usize, bool)> {
    let mut parts = f.split('/');
    if parts.next()? != "ctx" {
        return None;
    }
    let (a, c, _p, spec, bin, sf) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || spec.len() != 16 {
        return None;
    }
    let success = match sf {
        "s" => true,
        "f" => false,
        _ => return None,
    };
    Some((
        a,
        c,
        u64::from_str_radix(spec, 16).ok()?,
        bin.parse().ok()?,
        success,
    ))
}

fn parse_field(f: &str) -> Option<(&str, &str, OutcomeKind)> {
    let mut parts = f.split('/');
    let (a, c, k) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((a, c, OutcomeKind::parse(k)?))
}

/// Where the learning counts of a fleet of engines are summed (a shared
/// store such as Redis; see docs/FLEET.md).
///
/// Counts are named by field (`action/channel/kind` for the per-action
/// counts; other models may add fields of their own) and only ever added
/// to, so engines can add in any order and converge on the same totals.
pub trait LearningStore: Send + Sync + std::fmt::Debug {
    /// Add `deltas` (field, amount) to the shared counts, at most once per
    /// `batch` (an id unique to this engine's delivery: calling again with
    /// the same batch after a lost reply adds nothing twice), and return
    /// every shared count (field, total).
    fn exchange(&self, batch: u64, deltas: &[(String, u64)]) -> Result<Vec<(String, u64)>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_replace_counts_and_keep_what_is_pending() {
        let l = Learned::default();
        let c = l.counts("A", "web");
        c.add(OutcomeKind::Accepted, 2);
        let sent = l.take_pending();
        assert_eq!(sent, vec![("A/web/accepted".to_string(), 2)]);
        assert!(l.take_pending().is_empty());
        c.add(OutcomeKind::Accepted, 1);
        // The fleet has our 2 and 5 from elsewhere; our 1 is still pending.
        l.set_totals(&[
            ("A/web/accepted".into(), 7),
            ("B/web/impression".into(), 4),
            ("model/x/bin".into(), 9),
        ]);
        assert_eq!(c.get()[OutcomeKind::Accepted as usize], 8);
        assert_eq!(
            l.counts("B", "web").get()[OutcomeKind::Impression as usize],
            4
        );
        assert_eq!(l.take_pending(), vec![("A/web/accepted".to_string(), 1)]);
    }
}
