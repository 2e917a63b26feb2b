//! Contact policies, channel limits and volume constraints as a rule set
//! declares them (compiled). What they mean against a customer's history
//! and the engine's counters is in [`crate::state`].

use std::sync::Arc;

/// A compiled contact policy.
#[derive(Debug)]
pub(crate) struct ContactPolicy {
    pub name: Arc<str>,
    /// Outcome kinds counted (bits of [`kind_bit`]).
    pub kinds: u8,
    pub count: u32,
    pub within: i64,
    pub suppress_for: Option<i64>,
    /// Counted per group (suppresses the whole group) rather than per
    /// action.
    pub per_group: bool,
    /// Only events on this channel (its key); any channel when `None`.
    pub channel: Option<u32>,
    /// Only events of, and actions in, this group (its key).
    pub group: Option<u64>,
}

/// A channel's contact limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContactLimit {
    pub max: u32,
    pub within: i64,
}

/// Static reset windows of volume constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Hour,
    Day,
    Week,
}

impl Period {
    pub(crate) fn parse(s: &str) -> Option<Period> {
        match s {
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            _ => None,
        }
    }

    /// The period's name in rule files: `hour`, `day` or `week`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
        }
    }

    /// The window `t` (seconds) falls in.
    pub(crate) fn window(self, t: i64) -> u32 {
        let w = match self {
            Period::Hour => t.div_euclid(3600),
            Period::Day => t.div_euclid(86_400),
            // 1970-01-05 was a Monday.
            Period::Week => (t - 4 * 86_400).div_euclid(7 * 86_400),
        };
        w as u32
    }

    /// The period's length, seconds.
    pub(crate) fn seconds(self) -> i64 {
        match self {
            Period::Hour => 3600,
            Period::Day => 86_400,
            Period::Week => 7 * 86_400,
        }
    }

    /// When window `w` (as [`Period::window`] numbers it) ends, seconds.
    pub(crate) fn end(self, w: u32) -> i64 {
        let offset = match self {
            Period::Week => 4 * 86_400,
            Period::Hour | Period::Day => 0,
        };
        (i64::from(w) + 1) * self.seconds() + offset
    }
}

/// What a volume constraint counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VolumeTarget {
    Action(u32),
    Group(u32),
    Channel(u32),
}

/// A compiled volume constraint.
#[derive(Debug)]
pub(crate) struct VolumeConstraint {
    pub name: Arc<str>,
    pub target: VolumeTarget,
    pub max: u32,
    pub period: Period,
}

/// Parse a duration: a whole number and a unit, `s`, `m`, `h`, `d` or `w`
/// (`90m`, `14d`, `2w`). At least one second, at most ten years.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "`{s}` is not a duration: write a whole number and a unit (s, m, h, d, w), like `14d`"
        )
    };
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    let total = n.checked_mul(secs).ok_or_else(bad)?;
    if !(1..=10 * 366 * 86_400).contains(&total) {
        return Err(format!(
            "duration `{s}` must be between 1 second and 10 years"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("14d"), Ok(14 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert!(parse_duration("14").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("99999999999w").is_err());
        assert!(parse_duration("é").is_err());
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-11-23 is a Monday; 2026-11-22T23:59:59Z is the Sunday before.
        let monday = 1_795_392_000;
        assert_eq!(
            Period::Week.window(monday),
            Period::Week.window(monday + 6 * 86_400 + 86_399)
        );
        assert_eq!(
            Period::Week.window(monday - 1) + 1,
            Period::Week.window(monday)
        );
    }

    #[test]
    fn a_period_ends_where_the_next_one_starts() {
        let monday = 1_795_392_000;
        for p in [Period::Hour, Period::Day, Period::Week] {
            for t in [
                monday,
                monday + 3599,
                monday + 86_399,
                monday - 1,
                10 * 86_400,
            ] {
                let w = p.window(t);
                let end = p.end(w);
                assert!(end > t && end - t <= p.seconds(), "{p:?} {t}");
                assert_eq!(p.window(end - 1), w, "{p:?} {t}");
                assert_eq!(p.window(end), w + 1, "{p:?} {t}");
            }
        }
        assert_eq!(
            Period::Week.end(Period::Week.window(monday)),
            monday + 7 * 86_400
        );
    }
}
