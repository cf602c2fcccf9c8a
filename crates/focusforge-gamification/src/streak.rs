//! Streaks in the user's days: a day runs from the profile's day start hour
//! to the next, in the user's time zone. Active days (a completed task or
//! focus session) extend the streak; rest days neither break nor extend it;
//! a missed working day consumes a freeze when there is one and ends the
//! streak when there is not.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Days a consumed freeze is remembered for display.
pub const FROZEN_DAYS_KEPT: usize = 30;

/// How the user's days are cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub tz: Tz,
    /// 0-23: the local hour a day starts at.
    pub day_start_hour: u32,
    /// ISO weekdays (1 Monday - 7 Sunday) without work.
    pub rest_days: Vec<u8>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            tz: chrono_tz::UTC,
            day_start_hour: 0,
            rest_days: Vec::new(),
        }
    }
}

impl Calendar {
    /// The user's day `at` falls in: the local date of `at` less the day
    /// start hour, so a day start of 4 puts 2 am on the day before. Local
    /// wall-clock time is used, so a daylight-saving change moves no hour
    /// to another day.
    pub fn day(&self, at: DateTime<Utc>) -> NaiveDate {
        let local = at.with_timezone(&self.tz).naive_local();
        (local - Duration::hours(i64::from(self.day_start_hour))).date()
    }

    pub fn is_rest(&self, day: NaiveDate) -> bool {
        let iso = day.weekday().number_from_monday() as u8;
        self.rest_days.contains(&iso)
    }
}

/// The stored streak.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    pub current: u32,
    pub longest: u32,
    pub last_active: Option<NaiveDate>,
    /// Missed days up to here have been dealt with (freeze or break).
    pub settled_through: Option<NaiveDate>,
    pub freezes: u32,
    /// Days a freeze was consumed for, oldest first.
    pub frozen: Vec<NaiveDate>,
}

/// What an active day did to the streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extended {
    /// The streak's new length, when the day extended it.
    pub to: Option<u32>,
}

impl Streak {
    /// Deals with every day after the last active one up to `through`: a
    /// rest day is skipped, a working day takes a freeze or ends the streak.
    /// Stops at the first break, so the work is bounded by the freezes held
    /// (a week has at least one working day).
    pub fn settle(&mut self, calendar: &Calendar, through: NaiveDate) {
        let Some(last) = self.last_active else {
            return;
        };
        let from = self.settled_through.map_or(last, |s| s.max(last));
        let mut day = from;
        while self.current > 0 {
            day = match day.succ_opt() {
                Some(d) if d <= through => d,
                _ => break,
            };
            if calendar.is_rest(day) {
                continue;
            }
            if self.freezes > 0 {
                self.freezes -= 1;
                self.frozen.push(day);
                if self.frozen.len() > FROZEN_DAYS_KEPT {
                    self.frozen.remove(0);
                }
            } else {
                self.current = 0;
            }
        }
        if self.settled_through.is_none_or(|s| s < through) {
            self.settled_through = Some(through);
        }
    }

    /// Records activity on `day`; the days before it are settled first.
    /// Activity on a day already counted, or before it, changes nothing.
    pub fn active(&mut self, calendar: &Calendar, day: NaiveDate) -> Extended {
        if self.last_active.is_some_and(|l| l >= day) {
            return Extended { to: None };
        }
        if let Some(yesterday) = day.pred_opt() {
            self.settle(calendar, yesterday);
        }
        self.current += 1;
        self.longest = self.longest.max(self.current);
        self.last_active = Some(day);
        Extended {
            to: Some(self.current),
        }
    }

    /// The streak as of `today` (missed days before today settled, today
    /// itself still open), without changing the stored one.
    pub fn as_of(&self, calendar: &Calendar, today: NaiveDate) -> Streak {
        let mut view = self.clone();
        if let Some(yesterday) = today.pred_opt() {
            view.settle(calendar, yesterday);
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn consecutive_days_extend_and_a_gap_breaks() {
        let cal = Calendar::default();
        let mut s = Streak::default();
        assert_eq!(s.active(&cal, d("2026-03-02")).to, Some(1));
        assert_eq!(s.active(&cal, d("2026-03-02")).to, None);
        assert_eq!(s.active(&cal, d("2026-03-03")).to, Some(2));
        assert_eq!(s.active(&cal, d("2026-03-05")).to, Some(1));
        assert_eq!(s.longest, 2);
    }

    #[test]
    fn rest_days_neither_break_nor_extend() {
        // 2026-03-07 and 08 are a Saturday and Sunday.
        let cal = Calendar {
            rest_days: vec![6, 7],
            ..Calendar::default()
        };
        let mut s = Streak::default();
        s.active(&cal, d("2026-03-06"));
        assert_eq!(s.active(&cal, d("2026-03-09")).to, Some(2));
    }

    #[test]
    fn a_freeze_covers_one_missed_day() {
        let cal = Calendar::default();
        let mut s = Streak {
            freezes: 1,
            ..Streak::default()
        };
        s.active(&cal, d("2026-03-02"));
        assert_eq!(s.as_of(&cal, d("2026-03-04")).current, 1);
        assert_eq!(s.as_of(&cal, d("2026-03-04")).freezes, 0);
        assert_eq!(s.active(&cal, d("2026-03-04")).to, Some(2));
        assert_eq!(s.frozen, vec![d("2026-03-03")]);
        // No freeze left: the next gap ends the streak.
        assert_eq!(s.active(&cal, d("2026-03-06")).to, Some(1));
    }

    #[test]
    fn the_day_start_hour_puts_late_nights_on_the_day_before() {
        let cal = Calendar {
            tz: chrono_tz::Europe::Berlin,
            day_start_hour: 4,
            rest_days: Vec::new(),
        };
        // 02:30 Berlin on the 3rd is 01:30 UTC.
        let at = "2026-03-03T01:30:00Z".parse().expect("time");
        assert_eq!(cal.day(at), d("2026-03-02"));
        let at = "2026-03-03T03:30:00Z".parse().expect("time");
        assert_eq!(cal.day(at), d("2026-03-03"));
    }
}
