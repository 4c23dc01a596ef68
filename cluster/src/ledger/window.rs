//! Budget windows: fixed UTC calendar windows (minute, hour, day, ISO week, month) and the
//! unbounded `total` window, computed from a Unix time in milliseconds.
//!
//! Pure arithmetic only: the time is always passed in (the ledger never reads a clock), so a
//! replayed log lands every charge in the same window.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). The ledger's only notion of time.
pub type UnixMillis = u64;

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// The period a budget's limit applies to. Calendar windows are fixed and aligned to UTC:
/// a `day` runs from 00:00 to 24:00 UTC, a `week` from Monday 00:00 UTC, a `month` from the
/// 1st at 00:00 UTC. `Total` never rolls over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// One UTC minute (rate limits: requests or tokens per minute).
    Minute,
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
    /// One ISO week, Monday 00:00 UTC to the next Monday.
    Week,
    /// One calendar month in UTC.
    Month,
    /// All time: the limit is never renewed.
    Total,
}

impl Window {
    /// The config name (`minute`, `hour`, `day`, `week`, `month`, `total`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    /// The window containing `now`, as `[start, end)` in Unix milliseconds. `Total` is
    /// `[0, u64::MAX)`; an end past the representable range saturates to `u64::MAX`.
    pub fn bounds(self, now: UnixMillis) -> (UnixMillis, UnixMillis) {
        let fixed = |len: u64| {
            let start = now - now % len;
            (start, start.saturating_add(len))
        };
        match self {
            Self::Minute => fixed(MINUTE),
            Self::Hour => fixed(HOUR),
            Self::Day => fixed(DAY),
            Self::Week => {
                // 1970-01-01 was a Thursday: Monday-aligned weeks start 3 days earlier.
                let shifted = now.saturating_add(3 * DAY);
                let aligned = shifted - shifted % WEEK;
                (
                    aligned.saturating_sub(3 * DAY),
                    aligned.saturating_add(WEEK).saturating_sub(3 * DAY),
                )
            }
            Self::Month => {
                let days = now / DAY;
                let (year, month, _) = civil_from_days(days);
                let start = days_from_civil(year, month, 1);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                let end = days_from_civil(next_year, next_month, 1);
                (start.saturating_mul(DAY), end.saturating_mul(DAY))
            }
            Self::Total => (0, u64::MAX),
        }
    }

    /// Start of the window containing `now`.
    pub fn start(self, now: UnixMillis) -> UnixMillis {
        self.bounds(now).0
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: u64) -> (i64, u32, u32) {
    // Far below i64::MAX for every u64 millisecond time (days < 2.2e14).
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (year, month as u32, day as u32)
}

/// (year, month 1..=12, day) → days since 1970-01-01 (H. Hinnant's `days_from_civil`),
/// clamped at 0 for dates before the epoch (never produced from a `u64` time).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2025-03-15T12:34:56.789Z, a Saturday.
    const T: u64 = 1_742_042_096_789;

    #[test]
    fn fixed_windows_align_to_utc() {
        assert_eq!(
            Window::Minute.bounds(T),
            (1_742_042_040_000, 1_742_042_100_000)
        );
        assert_eq!(
            Window::Hour.bounds(T),
            (1_742_040_000_000, 1_742_043_600_000)
        );
        // 2025-03-15T00:00Z .. 2025-03-16T00:00Z
        assert_eq!(
            Window::Day.bounds(T),
            (1_741_996_800_000, 1_742_083_200_000)
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        // Monday 2025-03-10T00:00Z .. Monday 2025-03-17T00:00Z
        assert_eq!(
            Window::Week.bounds(T),
            (1_741_564_800_000, 1_742_169_600_000)
        );
        // The epoch (a Thursday) belongs to the week starting Monday 1969-12-29, clamped.
        assert_eq!(Window::Week.bounds(0), (0, 4 * DAY));
    }

    #[test]
    fn months_follow_the_calendar() {
        // 2025-03-01T00:00Z .. 2025-04-01T00:00Z
        assert_eq!(
            Window::Month.bounds(T),
            (1_740_787_200_000, 1_743_465_600_000)
        );
        // February of a leap year: 2024-02-01 .. 2024-03-01 (29 days).
        let feb = days_from_civil(2024, 2, 10) * DAY;
        let (start, end) = Window::Month.bounds(feb);
        assert_eq!((end - start) / DAY, 29);
        // December rolls into January of the next year.
        let dec = days_from_civil(2025, 12, 31) * DAY + 5;
        assert_eq!(
            Window::Month.bounds(dec).1,
            days_from_civil(2026, 1, 1) * DAY
        );
    }

    #[test]
    fn total_never_rolls() {
        assert_eq!(Window::Total.bounds(T), (0, u64::MAX));
        assert_eq!(Window::Total.bounds(u64::MAX), (0, u64::MAX));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        for window in [
            Window::Minute,
            Window::Hour,
            Window::Day,
            Window::Week,
            Window::Month,
        ] {
            let (start, end) = window.bounds(u64::MAX);
            assert!(start <= end, "{window:?}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [0, 1, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    proptest::proptest! {
        #[test]
        fn every_time_lies_in_its_window(now in 0u64..=253_402_300_799_999) {
            for window in [Window::Minute, Window::Hour, Window::Day, Window::Week, Window::Month] {
                let (start, end) = window.bounds(now);
                proptest::prop_assert!(start <= now && now < end);
                proptest::prop_assert_eq!(window.bounds(start), (start, end));
                // Windows tile time: the next one starts where this one ends.
                proptest::prop_assert_eq!(window.bounds(end).0, end);
                proptest::prop_assert!(window.bounds(end - 1) == (start, end));
            }
            let (y, m, d) = civil_from_days(Window::Month.start(now) / DAY);
            proptest::prop_assert_eq!(d, 1);
            proptest::prop_assert!((1..=12).contains(&m) && y >= 1970);
        }
    }
}
