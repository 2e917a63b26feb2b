//! Small helpers shared by several modules.

/// The candidate closest to `name`, if it is close enough to be a
/// plausible typo: at most one edit per three characters (at least one),
/// counting a swap of two neighbouring letters as one edit (`strsim`'s
/// optimal string alignment distance). Ties go to the first candidate.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A "did you mean" suffix for an error message.
pub(crate) fn did_you_mean(s: Option<&str>) -> String {
    s.map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// `["a", "b"]` rendered for messages: `a, b`.
pub(crate) fn list<S: AsRef<str>>(items: &[S]) -> String {
    let mut s = String::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('`');
        s.push_str(it.as_ref());
        s.push('`');
    }
    s
}

/// A TOML value as JSON; datetimes become RFC 3339 strings.
pub(crate) fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// A counter that many threads increment without sharing a cache line:
/// each thread adds to its own stripe; reading sums the stripes.
#[derive(Default)]
pub(crate) struct Striped([Padded<std::sync::atomic::AtomicU64>; STRIPES]);

/// How many stripes.
pub(crate) const STRIPES: usize = 8;

/// A value on a cache line (pair) of its own, so that threads writing
/// neighbouring values do not share one.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

thread_local! {
    static STRIPE: usize = {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

/// This thread's stripe (of 8), for per-thread slots like [`Striped`]'s.
#[inline]
pub(crate) fn stripe() -> usize {
    STRIPE.with(|s| *s)
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let i = stripe();
        self.0[i]
            .0
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0
            .iter()
            .map(|p| p.0.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

/// A process-unique number (temporary file names).
pub(crate) fn next_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn closest_finds_a_one_letter_typo_and_ignores_unrelated_names() {
        let names = ["age", "income", "segment"];
        assert_eq!(
            super::closest("incme", names.iter().copied()),
            Some("income")
        );
        assert_eq!(super::closest("zzzzzz", names.iter().copied()), None);
    }

    #[test]
    fn closest_counts_two_swapped_letters_as_one_typo() {
        let keys = ["default_limit", "description", "name"];
        assert_eq!(
            super::closest("defualt_limit", keys.iter().copied()),
            Some("default_limit")
        );
        assert_eq!(super::closest("naem", keys.iter().copied()), Some("name"));
    }
}
