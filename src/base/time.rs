//! Time: the [`Timestamp`] every decision, outcome and event carries.

use std::fmt;

/// A point in time, whole seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current system time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_secs() as i64)
    }

    /// Parse an RFC 3339 timestamp such as `2026-11-23T10:00:00Z`.
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp ({e})"))?;
        Ok(Timestamp(t.unix_timestamp()))
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0
    }

    /// The RFC 3339 text `Display` gives (`YYYY-MM-DDTHH:MM:SSZ`), without
    /// the formatting machinery, for years 0 to 9999; `None` for the rest
    /// (which `Display` prints as seconds).
    pub(crate) fn rfc3339(self) -> Option<[u8; 20]> {
        let t = time::OffsetDateTime::from_unix_timestamp(self.0).ok()?;
        let year = u32::try_from(t.year()).ok().filter(|&y| y <= 9999)?;
        let (h, m, s) = t.to_hms();
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u8::from(t.month()).into());
        put(8, 2, t.day().into());
        put(11, 2, h.into());
        put(14, 2, m.into());
        put(17, 2, s.into());
        Some(out)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }) {
            Some(s) => f.write_str(&s),
            None => write!(f, "{}", self.0),
        }
    }
}
