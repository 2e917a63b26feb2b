//! Identifiers: decision ids, experiment arms, and the keys that history and
//! learning state file names under.

/// A decision's unique id: 128 bits, printed as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecisionId(pub u128);

impl DecisionId {
    /// Parse the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<DecisionId> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(DecisionId)
    }

    /// The 32 lowercase hex digits `Display` gives, without the formatting
    /// machinery.
    pub(crate) fn hex(self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, d) in out.iter_mut().enumerate() {
            *d = DIGITS[((self.0 >> (4 * (31 - i))) & 0xf) as usize];
        }
        out
    }
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Which experiment arm decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Arm {
    /// The live version.
    Champion,
    /// The challenger version of an experiment.
    Challenger,
    /// The control group.
    Control,
}

impl Arm {
    /// `"champion"`, `"challenger"` or `"control"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Champion => "champion",
            Arm::Challenger => "challenger",
            Arm::Control => "control",
        }
    }
}

/// The key of an action, group or channel name in history and learning
/// state: xxh3-64 of the name's UTF-8 bytes.
pub fn key(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// The low 32 bits of a channel's [`key`], as events store it.
pub fn channel_key(name: &str) -> u32 {
    key(name) as u32
}
