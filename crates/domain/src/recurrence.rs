//! Repeating tasks: a validated RFC 5545 recurrence rule and the arithmetic of the next due date.
//!
//! A series is anchored on the due date of its first task (occurrence 1), which plays the part
//! of the rule's DTSTART; that is why a rule may not carry a DTSTART of its own. Everything here
//! is pure: the zone and every instant come in as parameters, so the decider, the projections
//! and a replay compute the same next due date.
//!
//! Two modes exist because people mean two different things by "every week":
//! - [`RecurrenceMode::Fixed`]: on the calendar (every Monday at 09:00, whenever it is done);
//! - [`RecurrenceMode::AfterCompletion`]: a week after it was last done (water the plants).

use chrono::{Duration, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rrule::{Frequency, RRule, Unvalidated};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::values::Timestamp;

/// The JSON field every refusal names.
const FIELD: &str = "recurrence.rule";

/// How the next occurrence of a series is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecurrenceMode {
    /// On the calendar the rule describes, counted from the first due date: a late completion
    /// does not shift the series.
    Fixed,
    /// One interval after the previous task was completed, at the time of day it was due: the
    /// series follows the person, not the calendar.
    AfterCompletion,
}

impl RecurrenceMode {
    /// The stable snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            RecurrenceMode::Fixed => "fixed",
            RecurrenceMode::AfterCompletion => "after_completion",
        }
    }
}

/// A validated recurrence: an RRULE value (`FREQ=WEEKLY;BYDAY=MO,WE`) and the mode that reads it.
///
/// `Deserialize` does not re-validate, like every value of this crate: a stored rule is a fact.
/// Input from users must go through [`Recurrence::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    /// The RRULE value, upper case, without the `RRULE:` prefix and without DTSTART.
    #[schemars(length(min = 1, max = 500))]
    pub rule: String,
    /// How the next due date is computed from the rule.
    pub mode: RecurrenceMode,
}

impl Recurrence {
    /// Longest accepted rule, in characters: far above any rule a person writes, low enough
    /// that parsing stays cheap.
    pub const MAX_CHARS: usize = 500;
    /// Most occurrences a rule may produce in a year: more than two a day is a reminder, not a
    /// task, and every occurrence becomes a task.
    pub const MAX_PER_YEAR: usize = 1000;

    /// Validates a rule such as `FREQ=WEEKLY;BYDAY=MO,WE` (an `RRULE:` prefix is accepted and
    /// dropped) for the given mode.
    ///
    /// Refused: more than 500 characters, a DTSTART (the task's due date is the anchor), any
    /// other iCalendar property, a frequency below daily, more than 1,000 occurrences a year, an
    /// UNTIL not in UTC, a rule that never occurs, and in `after_completion` mode anything but
    /// FREQ, INTERVAL, COUNT and UNTIL (a BYDAY means nothing relative to a completion time).
    pub fn parse(rule: &str, mode: RecurrenceMode) -> Result<Self, FieldError> {
        if rule.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(FIELD, "must be at most 500 characters"));
        }
        let upper = rule.trim().to_ascii_uppercase();
        let value = upper.strip_prefix("RRULE:").unwrap_or(&upper).trim();
        if value.contains("DTSTART") {
            return Err(FieldError::new(
                FIELD,
                "must not contain DTSTART: the task's due date is the first occurrence",
            ));
        }
        if value.contains([':', '\n', '\r']) {
            return Err(FieldError::new(
                FIELD,
                "must be a single RRULE value such as FREQ=WEEKLY;BYDAY=MO, without other properties",
            ));
        }
        let parts = split_parts(value)?;
        if mode == RecurrenceMode::AfterCompletion {
            if let Some((key, _)) = parts
                .iter()
                .find(|(key, _)| !matches!(*key, "FREQ" | "INTERVAL" | "COUNT" | "UNTIL"))
            {
                return Err(FieldError::new(
                    FIELD,
                    format!(
                        "{key} is not accepted in after_completion mode: only FREQ, INTERVAL, \
                         COUNT and UNTIL are, since the next date follows the completion time"
                    ),
                ));
            }
        }
        if let Some((_, until)) = parts.iter().find(|(key, _)| *key == "UNTIL") {
            if !until.ends_with('Z') {
                return Err(FieldError::new(
                    FIELD,
                    "UNTIL must be a UTC date-time ending in Z, such as 20261231T230000Z",
                ));
            }
        }
        let normalised = join_parts(&parts, &[]);
        let parsed: RRule<Unvalidated> = normalised
            .parse()
            .map_err(|e| FieldError::new(FIELD, format!("is not a valid RRULE: {e}")))?;
        if matches!(
            parsed.get_freq(),
            Frequency::Hourly | Frequency::Minutely | Frequency::Secondly
        ) {
            return Err(FieldError::new(
                FIELD,
                "must repeat at most daily: FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY",
            ));
        }
        let epoch = rrule::Tz::UTC
            .with_ymd_and_hms(1970, 1, 1, 0, 0, 0)
            .single()
            .expect("the epoch exists");
        parsed
            .validate(epoch)
            .map_err(|e| FieldError::new(FIELD, format!("is not a valid RRULE: {e}")))?;
        check_density(&parts)?;
        Ok(Self {
            rule: normalised,
            mode,
        })
    }

    /// The due date of occurrence `occurrence_number + 1`, or `None` when the series ends.
    ///
    /// `anchor` is the due date of occurrence 1 (the DTSTART), `previous_due` and `completed_at`
    /// those of the occurrence just completed, `zone` the owner's zone, in which the rule is
    /// expanded so that 09:00 stays 09:00 local across a change of daylight saving time.
    /// - `fixed`: the first rule occurrence strictly after `previous_due`; COUNT counts the
    ///   series from the anchor, so with COUNT=3 occurrence 3 has no next.
    /// - `after_completion`: the local date of `completed_at` plus one interval of the
    ///   frequency, at the local time of day of `previous_due`; COUNT limits the occurrence
    ///   number and UNTIL the date.
    ///
    /// A stored rule that no longer validates (it could only come from an older, looser
    /// version) ends the series rather than failing the completion.
    pub fn next_due(
        &self,
        anchor: Timestamp,
        previous_due: Timestamp,
        completed_at: Timestamp,
        occurrence_number: u32,
        zone: chrono_tz::Tz,
    ) -> Option<Timestamp> {
        let parts = split_parts(&self.rule).ok()?;
        if let Some(count) = part_u32(&parts, "COUNT") {
            if occurrence_number >= count {
                return None;
            }
        }
        match self.mode {
            RecurrenceMode::Fixed => expand(&parts, anchor, zone)?.find(|due| *due > previous_due),
            RecurrenceMode::AfterCompletion => {
                after_completion(&parts, previous_due, completed_at, zone)
            }
        }
    }

    /// The first occurrence of a `fixed` series anchored at `anchor` that falls strictly after
    /// `after`, or `None` if the series ends before. The anchor itself is occurrence 1, even
    /// when it does not match the rule, and COUNT counts from it. Used to place the first due
    /// date of a series, and to skip occurrences missed while a task stayed open.
    pub fn first_after(
        &self,
        anchor: Timestamp,
        after: Timestamp,
        zone: chrono_tz::Tz,
    ) -> Option<Timestamp> {
        let parts = split_parts(&self.rule).ok()?;
        let count = part_u32(&parts, "COUNT").map_or(usize::MAX, |c| c as usize);
        std::iter::once(anchor)
            .chain(expand(&parts, anchor, zone)?.filter(move |due| *due > anchor))
            .take(count)
            .find(|due| *due > after)
    }
}

impl Recurrence {
    /// The first due date of a new series given none: the first day from today (local to
    /// `zone`) that the rule allows, at the end of that day (23:59:59 local, the convention
    /// for a due date without a time). `None` when the rule has no occurrence from today on
    /// (an UNTIL already past).
    pub fn first_due(&self, now: Timestamp, zone: chrono_tz::Tz) -> Option<Timestamp> {
        let parts = split_parts(&self.rule).ok()?;
        let today = now.with_timezone(&zone).date_naive();
        let end_of_today = local_to_utc(today.and_hms_opt(23, 59, 59)?, zone)?;
        match self.mode {
            RecurrenceMode::Fixed => expand(&parts, end_of_today, zone)?.next(),
            RecurrenceMode::AfterCompletion => {
                let until = parts
                    .iter()
                    .find(|(k, _)| *k == "UNTIL")
                    .and_then(|(_, until)| {
                        NaiveDateTime::parse_from_str(until, "%Y%m%dT%H%M%SZ").ok()
                    });
                match until {
                    Some(until) if until.and_utc() < end_of_today => None,
                    _ => Some(end_of_today),
                }
            }
        }
    }
}

/// Splits `KEY=VALUE;…` into pairs, dropping empty parts (a trailing `;`) and refusing a part
/// without `=` or a key given twice, which the RFC forbids and which would be read ambiguously.
fn split_parts(value: &str) -> Result<Vec<(&str, &str)>, FieldError> {
    let mut parts: Vec<(&str, &str)> = Vec::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(FieldError::new(
                FIELD,
                format!("is not a valid RRULE: {part:?} is not KEY=VALUE"),
            ));
        };
        let (key, val) = (key.trim(), val.trim());
        if parts.iter().any(|(k, _)| *k == key) {
            return Err(FieldError::new(FIELD, format!("{key} is given twice")));
        }
        parts.push((key, val));
    }
    if parts.is_empty() {
        return Err(FieldError::new(FIELD, "must not be empty"));
    }
    Ok(parts)
}

/// Joins pairs back into a rule, leaving out the keys in `without`.
fn join_parts(parts: &[(&str, &str)], without: &[&str]) -> String {
    parts
        .iter()
        .filter(|(key, _)| !without.contains(key))
        .map(|(key, val)| format!("{key}={val}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn part_u32(parts: &[(&str, &str)], key: &str) -> Option<u32> {
    parts
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Refuses a rule that occurs more than [`Recurrence::MAX_PER_YEAR`] times in a year, or never.
/// COUNT and UNTIL are left out, since they would hide the rate; the year is a leap year from
/// its first midnight, the densest start.
fn check_density(parts: &[(&str, &str)]) -> Result<(), FieldError> {
    let rate_only: RRule<Unvalidated> = join_parts(parts, &["COUNT", "UNTIL"])
        .parse()
        .map_err(|e| FieldError::new(FIELD, format!("is not a valid RRULE: {e}")))?;
    let start = rrule::Tz::UTC
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("2000-01-01 exists");
    let set = rate_only
        .build(start)
        .map_err(|e| FieldError::new(FIELD, format!("is not a valid RRULE: {e}")))?
        .limit();
    let year_end = start + Duration::days(366);
    let mut occurrences = set.into_iter().peekable();
    if occurrences.peek().is_none() {
        return Err(FieldError::new(FIELD, "never produces an occurrence"));
    }
    let in_a_year = occurrences
        .take_while(|at| *at < year_end)
        .take(Recurrence::MAX_PER_YEAR + 1)
        .count();
    if in_a_year > Recurrence::MAX_PER_YEAR {
        return Err(FieldError::new(
            FIELD,
            "must produce at most 1000 occurrences a year",
        ));
    }
    Ok(())
}

/// The rule's occurrences from `anchor`, expanded in `zone`, without COUNT (the caller counts
/// the series itself, from the anchor).
fn expand(
    parts: &[(&str, &str)],
    anchor: Timestamp,
    zone: chrono_tz::Tz,
) -> Option<impl Iterator<Item = Timestamp>> {
    let rule: RRule<Unvalidated> = join_parts(parts, &["COUNT"]).parse().ok()?;
    let start = anchor.with_timezone(&rrule::Tz::Tz(zone));
    let set = rule.build(start).ok()?.limit();
    Some(set.into_iter().map(|at| at.with_timezone(&Utc)))
}

/// One interval after the local completion date, at the local time of day of the previous due
/// date; `None` past UNTIL.
fn after_completion(
    parts: &[(&str, &str)],
    previous_due: Timestamp,
    completed_at: Timestamp,
    zone: chrono_tz::Tz,
) -> Option<Timestamp> {
    let interval = part_u32(parts, "INTERVAL").unwrap_or(1).max(1);
    let freq = parts.iter().find(|(k, _)| *k == "FREQ")?.1;
    let completed_on: NaiveDate = completed_at.with_timezone(&zone).date_naive();
    let date = match freq {
        "DAILY" => completed_on.checked_add_days(chrono::Days::new(u64::from(interval)))?,
        "WEEKLY" => completed_on.checked_add_days(chrono::Days::new(7 * u64::from(interval)))?,
        "MONTHLY" => completed_on.checked_add_months(Months::new(interval))?,
        "YEARLY" => completed_on.checked_add_months(Months::new(12 * interval))?,
        _ => return None,
    };
    let time = previous_due.with_timezone(&zone).time();
    let next = local_to_utc(date.and_time(time), zone)?;
    if let Some((_, until)) = parts.iter().find(|(k, _)| *k == "UNTIL") {
        let until = NaiveDateTime::parse_from_str(until, "%Y%m%dT%H%M%SZ").ok()?;
        if next > until.and_utc() {
            return None;
        }
    }
    Some(next)
}

/// A local wall-clock time as an instant: the earlier one when the clock goes back (the first
/// 02:30 of the night), the first valid time after the gap when it goes forward (02:30 becomes
/// 03:30), so every local time has an answer.
pub(crate) fn local_to_utc(local: NaiveDateTime, zone: chrono_tz::Tz) -> Option<Timestamp> {
    for shift in 0..=3 {
        match zone.from_local_datetime(&(local + Duration::hours(shift))) {
            LocalResult::Single(at) => return Some(at.with_timezone(&Utc)),
            LocalResult::Ambiguous(earlier, _) => return Some(earlier.with_timezone(&Utc)),
            LocalResult::None => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use chrono_tz::Europe::Paris;

    fn utc(text: &str) -> Timestamp {
        text.parse().expect("an RFC 3339 instant")
    }

    fn fixed(rule: &str) -> Recurrence {
        Recurrence::parse(rule, RecurrenceMode::Fixed).expect("a valid rule")
    }

    fn after(rule: &str) -> Recurrence {
        Recurrence::parse(rule, RecurrenceMode::AfterCompletion).expect("a valid rule")
    }

    fn refusal(rule: &str, mode: RecurrenceMode) -> String {
        let error = Recurrence::parse(rule, mode).expect_err("a refused rule");
        assert_eq!(error.field, "recurrence.rule");
        error.message.into_owned()
    }

    #[test]
    fn given_a_prefixed_lower_case_rule_when_parsed_then_it_is_normalised() {
        let r = Recurrence::parse("RRULE:freq=weekly;byday=mo,we;", RecurrenceMode::Fixed).unwrap();
        assert_eq!(r.rule, "FREQ=WEEKLY;BYDAY=MO,WE");
        assert_eq!(r.mode, RecurrenceMode::Fixed);
    }

    #[test]
    fn given_the_modes_when_serialised_then_they_are_snake_case() {
        let json = serde_json::to_value(after("FREQ=DAILY")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"rule": "FREQ=DAILY", "mode": "after_completion"})
        );
        assert_eq!(
            serde_json::to_value(RecurrenceMode::Fixed).unwrap(),
            serde_json::json!("fixed")
        );
        let unknown = serde_json::from_value::<Recurrence>(
            serde_json::json!({"rule": "FREQ=DAILY", "mode": "fixed", "extra": 1}),
        );
        assert!(unknown.is_err(), "unknown fields are refused");
    }

    #[test]
    fn given_a_weekly_byday_rule_when_a_monday_is_completed_then_wednesday_is_next() {
        // Given a series every Monday and Wednesday at 09:00 Paris, from Monday 2 March 2026.
        let r = fixed("FREQ=WEEKLY;BYDAY=MO,WE");
        let anchor = utc("2026-03-02T08:00:00Z");
        // When the Monday is completed late, on Thursday.
        let next = r.next_due(anchor, anchor, utc("2026-03-05T12:00:00Z"), 1, Paris);
        // Then the next is still Wednesday 4 March 09:00 local: fixed ignores the completion.
        assert_eq!(next, Some(utc("2026-03-04T08:00:00Z")));
        let after_that = r.next_due(anchor, next.unwrap(), next.unwrap(), 2, Paris);
        assert_eq!(after_that, Some(utc("2026-03-09T08:00:00Z")));
    }

    #[test]
    fn given_a_daily_rule_at_nine_when_march_ends_then_nine_stays_nine_local() {
        // Given 09:00 Paris daily; the clocks go forward on Sunday 29 March 2026.
        let r = fixed("FREQ=DAILY");
        let anchor = utc("2026-03-27T08:00:00Z");
        let sat = r.next_due(anchor, anchor, anchor, 1, Paris).unwrap();
        assert_eq!(sat, utc("2026-03-28T08:00:00Z"));
        // When Saturday's is done, then Sunday's is at 09:00 summer time, 07:00 UTC.
        let sun = r.next_due(anchor, sat, sat, 2, Paris).unwrap();
        assert_eq!(sun, utc("2026-03-29T07:00:00Z"));
    }

    #[test]
    fn given_a_weekly_rule_at_nine_when_october_ends_then_nine_stays_nine_local() {
        // Given 09:00 Paris every Sunday; the clocks go back on Sunday 25 October 2026.
        let r = fixed("FREQ=WEEKLY;BYDAY=SU");
        let anchor = utc("2026-10-18T07:00:00Z");
        let next = r.next_due(anchor, anchor, anchor, 1, Paris);
        // Then the next is 09:00 winter time, 08:00 UTC.
        assert_eq!(next, Some(utc("2026-10-25T08:00:00Z")));
    }

    #[test]
    fn given_count_3_when_occurrences_are_completed_then_the_third_has_no_next() {
        let r = fixed("FREQ=DAILY;COUNT=3");
        let anchor = utc("2026-03-02T08:00:00Z");
        let second = r.next_due(anchor, anchor, anchor, 1, Paris).unwrap();
        let third = r.next_due(anchor, second, second, 2, Paris).unwrap();
        assert_eq!(third, utc("2026-03-04T08:00:00Z"));
        assert_eq!(r.next_due(anchor, third, third, 3, Paris), None);
    }

    #[test]
    fn given_until_when_the_next_would_pass_it_then_the_series_ends() {
        let r = fixed("FREQ=WEEKLY;UNTIL=20260310T000000Z");
        let anchor = utc("2026-03-02T08:00:00Z");
        let second = r.next_due(anchor, anchor, anchor, 1, Paris).unwrap();
        assert_eq!(second, utc("2026-03-09T08:00:00Z"));
        assert_eq!(r.next_due(anchor, second, second, 2, Paris), None);
    }

    #[test]
    fn given_a_task_open_for_weeks_when_completed_then_fixed_returns_the_next_after_its_due() {
        // Next is after the previous due date, not after the completion: missed ones are the
        // caller's to skip with first_after if it wants.
        let r = fixed("FREQ=WEEKLY");
        let anchor = utc("2026-03-02T08:00:00Z");
        let next = r.next_due(anchor, anchor, utc("2026-04-20T08:00:00Z"), 1, Paris);
        assert_eq!(next, Some(utc("2026-03-09T08:00:00Z")));
        let skipped = r.first_after(anchor, utc("2026-04-20T08:00:00Z"), Paris);
        assert_eq!(skipped, Some(utc("2026-04-27T07:00:00Z")));
    }

    #[test]
    fn given_first_after_when_count_is_reached_then_none_and_the_anchor_is_occurrence_one() {
        let r = fixed("FREQ=WEEKLY;BYDAY=FR;COUNT=2");
        // The anchor is a Monday, not on the rule, yet it counts as occurrence 1.
        let anchor = utc("2026-03-02T08:00:00Z");
        assert_eq!(
            r.first_after(anchor, utc("2026-01-01T00:00:00Z"), Paris),
            Some(anchor)
        );
        assert_eq!(
            r.first_after(anchor, anchor, Paris),
            Some(utc("2026-03-06T08:00:00Z"))
        );
        assert_eq!(
            r.first_after(anchor, utc("2026-03-06T08:00:00Z"), Paris),
            None
        );
    }

    #[test]
    fn given_daily_after_completion_when_done_tuesday_afternoon_then_due_wednesday_at_nine() {
        let r = after("FREQ=DAILY");
        let due = utc("2026-03-03T08:00:00Z"); // Tuesday 09:00 Paris
        let done = utc("2026-03-03T14:00:00Z"); // Tuesday 15:00 Paris
        let next = r.next_due(due, due, done, 1, Paris);
        assert_eq!(next, Some(utc("2026-03-04T08:00:00Z")));
    }

    #[test]
    fn given_weekly_after_completion_when_done_late_then_a_week_after_the_completion() {
        let r = after("FREQ=WEEKLY;INTERVAL=2");
        let due = utc("2026-03-02T17:00:00Z"); // Monday 18:00 Paris
        let done = utc("2026-03-05T09:00:00Z"); // Thursday
        let next = r.next_due(due, due, done, 1, Paris);
        // Two weeks after Thursday 5 March is 19 March, at 18:00 Paris.
        assert_eq!(next, Some(utc("2026-03-19T17:00:00Z")));
    }

    #[test]
    fn given_monthly_after_completion_when_done_across_the_dst_change_then_local_time_is_kept() {
        let r = after("FREQ=MONTHLY");
        let due = utc("2026-03-20T08:00:00Z"); // 09:00 winter time
        let done = utc("2026-03-21T10:00:00Z");
        let next = r.next_due(due, due, done, 1, Paris);
        // 21 April at 09:00 summer time.
        assert_eq!(next, Some(utc("2026-04-21T07:00:00Z")));
        // The end of a month is clamped: 31 January plus a month is 28 February.
        let jan = utc("2027-01-31T08:00:00Z");
        let next = r.next_due(jan, jan, jan, 1, Paris).unwrap();
        assert_eq!(next, utc("2027-02-28T08:00:00Z"));
        assert_eq!(next.year(), 2027);
    }

    #[test]
    fn given_yearly_after_completion_then_a_year_later() {
        let r = after("FREQ=YEARLY");
        let due = utc("2026-03-02T08:00:00Z");
        assert_eq!(
            r.next_due(due, due, due, 1, Paris),
            Some(utc("2027-03-02T08:00:00Z"))
        );
    }

    #[test]
    fn given_after_completion_with_count_or_until_when_reached_then_the_series_ends() {
        let due = utc("2026-03-02T08:00:00Z");
        let counted = after("FREQ=DAILY;COUNT=2");
        assert!(counted.next_due(due, due, due, 1, Paris).is_some());
        assert_eq!(counted.next_due(due, due, due, 2, Paris), None);
        let until = after("FREQ=WEEKLY;UNTIL=20260305T000000Z");
        assert_eq!(until.next_due(due, due, due, 1, Paris), None);
        let until = after("FREQ=DAILY;UNTIL=20260305T000000Z");
        assert_eq!(
            until.next_due(due, due, due, 1, Paris),
            Some(utc("2026-03-03T08:00:00Z"))
        );
    }

    #[test]
    fn given_a_due_time_in_the_spring_gap_when_after_completion_then_it_moves_past_the_gap() {
        let r = after("FREQ=DAILY");
        let due = utc("2026-03-28T01:30:00Z"); // Saturday 02:30 Paris
        let next = r.next_due(due, due, due, 1, Paris);
        // 02:30 does not exist on Sunday 29 March: 03:30 summer time.
        assert_eq!(next, Some(utc("2026-03-29T01:30:00Z")));
    }

    #[test]
    fn given_no_due_date_when_a_weekly_series_starts_on_a_friday_then_it_is_first_due_monday_end_of_day(
    ) {
        // Friday 2026-03-27, 10:00 in Paris.
        let now = utc("2026-03-27T09:00:00Z");
        let first = fixed("FREQ=WEEKLY;BYDAY=MO").first_due(now, Paris).unwrap();
        assert_eq!(first, utc("2026-03-30T21:59:59Z"));
        let daily = fixed("FREQ=DAILY").first_due(now, Paris).unwrap();
        assert_eq!(daily, utc("2026-03-27T22:59:59Z"));
        let after_done = after("FREQ=WEEKLY").first_due(now, Paris).unwrap();
        assert_eq!(after_done, utc("2026-03-27T22:59:59Z"));
    }

    #[test]
    fn given_an_until_already_past_when_a_series_starts_then_it_has_no_first_due() {
        let now = utc("2026-03-27T09:00:00Z");
        assert_eq!(
            fixed("FREQ=DAILY;UNTIL=20260101T000000Z").first_due(now, Paris),
            None
        );
        assert_eq!(
            after("FREQ=DAILY;UNTIL=20260101T000000Z").first_due(now, Paris),
            None
        );
    }

    #[test]
    fn given_too_long_a_rule_when_parsed_then_refused() {
        let long = format!("FREQ=DAILY;{}", "BYMONTH=1;".repeat(60));
        assert!(refusal(&long, RecurrenceMode::Fixed).contains("500"));
    }

    #[test]
    fn given_a_frequency_below_daily_when_parsed_then_refused() {
        for rule in [
            "FREQ=HOURLY;BYMINUTE=0",
            "FREQ=MINUTELY;BYSECOND=0",
            "FREQ=SECONDLY",
        ] {
            assert!(
                refusal(rule, RecurrenceMode::Fixed).contains("at most daily"),
                "{rule}"
            );
        }
    }

    #[test]
    fn given_a_dtstart_when_parsed_then_refused() {
        let message = refusal(
            "DTSTART:20260302T090000Z\nRRULE:FREQ=DAILY",
            RecurrenceMode::Fixed,
        );
        assert!(message.contains("DTSTART"));
        assert!(refusal("FREQ=DAILY;DTSTART=20260302", RecurrenceMode::Fixed).contains("DTSTART"));
    }

    #[test]
    fn given_another_property_when_parsed_then_refused() {
        let message = refusal("EXDATE:20260302T090000Z", RecurrenceMode::Fixed);
        assert!(message.contains("single RRULE value"));
    }

    #[test]
    fn given_by_rules_in_after_completion_mode_when_parsed_then_refused() {
        let message = refusal("FREQ=WEEKLY;BYDAY=MO", RecurrenceMode::AfterCompletion);
        assert!(message.contains("BYDAY"), "{message}");
        assert!(Recurrence::parse(
            "FREQ=WEEKLY;INTERVAL=2;COUNT=5;UNTIL=20270101T000000Z",
            RecurrenceMode::AfterCompletion
        )
        .is_ok());
    }

    #[test]
    fn given_an_until_without_z_when_parsed_then_refused() {
        for rule in [
            "FREQ=DAILY;UNTIL=20261231T230000",
            "FREQ=DAILY;UNTIL=20261231",
        ] {
            assert!(
                refusal(rule, RecurrenceMode::Fixed).contains("UTC"),
                "{rule}"
            );
        }
    }

    #[test]
    fn given_more_than_1000_a_year_when_parsed_then_refused() {
        let message = refusal("FREQ=DAILY;BYHOUR=8,12,18", RecurrenceMode::Fixed);
        assert!(message.contains("1000"), "{message}");
        // Twice a day is allowed: 732 in a leap year.
        assert!(Recurrence::parse("FREQ=DAILY;BYHOUR=8,18", RecurrenceMode::Fixed).is_ok());
        // COUNT does not hide the rate.
        assert!(
            Recurrence::parse("FREQ=DAILY;BYHOUR=1,2,3;COUNT=2", RecurrenceMode::Fixed).is_err()
        );
    }

    #[test]
    fn given_garbage_when_parsed_then_refused() {
        for rule in [
            "",
            "every day",
            "FREQ=FORTNIGHTLY",
            "FREQ=DAILY;INTERVAL=x",
            "BYDAY=MO",
            "FREQ=DAILY;FREQ=WEEKLY",
            "FREQ=WEEKLY;BYDAY=XX",
        ] {
            assert!(
                Recurrence::parse(rule, RecurrenceMode::Fixed).is_err(),
                "{rule:?} should be refused"
            );
        }
    }

    #[test]
    fn given_a_rule_that_never_occurs_when_parsed_then_refused() {
        let message = refusal("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", RecurrenceMode::Fixed);
        assert!(message.contains("never"), "{message}");
    }
}
