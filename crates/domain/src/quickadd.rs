//! Quick add: one line of text read into the fields of a task, Todoist-style.
//!
//! `Pay rent every month on the 1st #home !high ~10m` becomes a title, a due date, a
//! recurrence, tags, a priority and an estimate. The result is a preview the client shows and
//! the person confirms, so the grammar is hand-written and deterministic rather than clever:
//! the same text, `now` and zone always give the same answer, and what looked like syntax but
//! could not be read is reported in [`QuickAdd::unparsed`] instead of being guessed.
//!
//! Conventions, chosen for what a person means:
//! - a due date without a time is the end of that day (23:59:59 local); a start date without
//!   a time is the start of that day (00:00 local), since "starting monday" means the task is
//!   available all of Monday;
//! - a time without a date is the next such time (today if still ahead, else tomorrow);
//! - a bare weekday is the next one after today; `this friday` may be today; `next friday` is
//!   the Friday of next week (weeks start on Monday);
//! - a month and day already past this year is next year's;
//! - `at 5` alone is 17:00 (hours 1 to 7 after `at` are read as afternoon);
//! - morning 09:00, afternoon 15:00, evening 19:00, night and tonight 20:00;
//! - a repeating task without a date is first due at its first occurrence from today.

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveTime, Weekday};
use schemars::JsonSchema;
use serde::Serialize;

use crate::recurrence::{local_to_utc, Recurrence, RecurrenceMode};
use crate::values::{EffortMinutes, Priority, Tag, Timestamp};

/// What a line of quick-add text means, for the client to preview and confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct QuickAdd {
    /// The text without the recognised syntax, whitespace collapsed; the whole text when
    /// nothing else remains.
    pub title: String,
    /// When the task is due, in UTC.
    pub due_at: Option<Timestamp>,
    /// When work may begin (`starting monday`, `from dec 1`), in UTC.
    pub starts_at: Option<Timestamp>,
    /// The `#tags`, without the `#`, in the order given, duplicates dropped.
    pub tags: Vec<String>,
    /// `!high`, `p1`, …
    pub priority: Option<Priority>,
    /// `~30m`, `for 2 hours`, …
    pub estimate_minutes: Option<u32>,
    /// `every monday`, `daily`, `every! 3 days`, …
    pub recurrence: Option<Recurrence>,
    /// Words that looked like syntax (`#`, `!`, `~`, `every`) but could not be read; they stay
    /// in the title, and the client can point at them.
    pub unparsed: Vec<String>,
}

/// Reads `text` as of `now`, with dates and times local to `zone`.
pub fn parse(text: &str, now: Timestamp, zone: chrono_tz::Tz) -> QuickAdd {
    let mut reader = Reader::new(text, now, zone);
    reader.markers();
    reader.estimate_phrases();
    reader.recurrence();
    reader.start();
    reader.due();
    reader.finish(text)
}

const END_OF_DAY: (u32, u32, u32) = (23, 59, 59);

fn hms(h: u32, m: u32, s: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, s).expect("a valid time of day")
}

/// One word of the input: as typed (for the title) and folded for matching (lower case,
/// surrounding punctuation dropped, so `friday,` and `(after` match).
#[derive(Debug)]
struct Word<'a> {
    raw: &'a str,
    folded: String,
}

/// A date, or a date and time, or an exact instant (`in 2 hours`).
#[derive(Debug, Clone, Copy)]
enum When {
    Day(NaiveDate, Option<NaiveTime>),
    Instant(Timestamp),
}

/// A recurrence as read, before it becomes an RRULE.
#[derive(Debug, Default)]
struct Repeat {
    freq: &'static str,
    interval: u32,
    by_day: Vec<Weekday>,
    by_month_day: Option<i32>,
    time: Option<NaiveTime>,
}

#[derive(Debug)]
struct Reader<'a> {
    words: Vec<Word<'a>>,
    used: Vec<bool>,
    now: Timestamp,
    today: NaiveDate,
    zone: chrono_tz::Tz,
    tags: Vec<String>,
    priority: Option<Priority>,
    estimate: Option<u32>,
    repeat: Option<(Repeat, Recurrence)>,
    start: Option<When>,
    /// Word index and text, sorted by index at the end so the list reads like the input.
    unparsed: Vec<(usize, String)>,
    due: Option<Timestamp>,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, now: Timestamp, zone: chrono_tz::Tz) -> Self {
        let words: Vec<Word<'a>> = text
            .split_whitespace()
            .map(|raw| Word {
                raw,
                folded: raw
                    .trim_start_matches(['(', '"', '\''])
                    .trim_end_matches([',', ';', '.', '?', ')', '"', '\'', ':'])
                    .to_lowercase(),
            })
            .collect();
        Self {
            used: vec![false; words.len()],
            words,
            now,
            today: now.with_timezone(&zone).date_naive(),
            zone,
            tags: Vec::new(),
            priority: None,
            estimate: None,
            repeat: None,
            start: None,
            unparsed: Vec::new(),
            due: None,
        }
    }

    /// The folded word at `i`, if it exists and is not taken yet.
    fn w(&self, i: usize) -> Option<&str> {
        (i < self.words.len() && !self.used[i]).then(|| self.words[i].folded.as_str())
    }

    fn take(&mut self, from: usize, len: usize) {
        for used in &mut self.used[from..from + len] {
            *used = true;
        }
    }

    /// Single-word syntax: `#tag`, `!priority`, `p1`..`p4`, `~estimate`.
    fn markers(&mut self) {
        for i in 0..self.words.len() {
            let word = self.words[i].folded.clone();
            let raw = self.words[i].raw;
            if let Some(tag) = word.strip_prefix('#') {
                let tag_raw = raw
                    .trim_start_matches('(')
                    .trim_start_matches('#')
                    .trim_end_matches([',', ';', '.', '?', ')', ':', '!']);
                let shaped = tag.chars().next().is_some_and(char::is_alphanumeric)
                    && !tag.chars().all(|c| c.is_ascii_digit());
                if shaped && Tag::parse(tag_raw).is_ok() && self.tags.len() < Tag::MAX_PER_TASK {
                    if !self.tags.iter().any(|t| t == tag_raw) {
                        self.tags.push(tag_raw.to_owned());
                    }
                    self.used[i] = true;
                } else {
                    self.unparsed.push((i, raw.to_owned()));
                }
            } else if let Some(level) = word.strip_prefix('!') {
                let level = level.trim_end_matches('!');
                let priority = match level {
                    "urgent" => Some(Priority::Urgent),
                    "high" => Some(Priority::High),
                    "medium" | "med" => Some(Priority::Medium),
                    "low" => Some(Priority::Low),
                    _ => None,
                };
                match priority {
                    Some(p) if self.priority.is_none() => {
                        self.priority = Some(p);
                        self.used[i] = true;
                    }
                    _ => self.unparsed.push((i, raw.to_owned())),
                }
            } else if let Some(p) = match word.as_str() {
                "p1" => Some(Priority::Urgent),
                "p2" => Some(Priority::High),
                "p3" => Some(Priority::Medium),
                "p4" => Some(Priority::Low),
                _ => None,
            } {
                if self.priority.is_none() {
                    self.priority = Some(p);
                    self.used[i] = true;
                }
            } else if let Some(amount) = word.strip_prefix('~') {
                // "~10 min", "~2 hours": a bare amount takes the unit word after it.
                let unit = self
                    .words
                    .get(i + 1)
                    .filter(|_| !amount.is_empty() && number(amount).is_some())
                    .and_then(|next| unit_minutes(&next.folded));
                let minutes = match unit {
                    Some(per) => number(amount).map(|n| (n * f64::from(per)) as u32),
                    None => duration_minutes(amount),
                };
                match minutes {
                    Some(m) if self.estimate.is_none() && m >= 1 => {
                        self.estimate = Some(m);
                        self.used[i] = true;
                        if unit.is_some() {
                            self.used[i + 1] = true;
                        }
                    }
                    _ => self.unparsed.push((i, raw.to_owned())),
                }
            }
        }
    }

    /// `for 45 min`, `for 2 hours`, `for an hour`, `for half an hour`, `for 1h30`.
    fn estimate_phrases(&mut self) {
        for i in 0..self.words.len() {
            if self.estimate.is_some() {
                return;
            }
            if self.w(i) != Some("for") {
                continue;
            }
            let found = match (self.w(i + 1), self.w(i + 2), self.w(i + 3)) {
                (Some("half"), Some("an"), Some("hour")) => Some((30, 4)),
                (Some(n), Some(unit), _) if unit_minutes(unit).is_some() => {
                    number(n).map(|n| ((n * unit_minutes(unit).unwrap_or(1) as f64) as u32, 3))
                }
                (Some(glued), _, _) if glued.starts_with(|c: char| c.is_ascii_digit()) => {
                    // A bare number after "for" is a count ("for 2 people"), not minutes.
                    duration_minutes(glued)
                        .filter(|_| glued.chars().any(|c| c.is_alphabetic()))
                        .map(|m| (m, 2))
                }
                _ => None,
            };
            if let Some((minutes, len)) = found {
                if EffortMinutes::parse(i64::from(minutes), "estimate_minutes").is_ok() {
                    self.estimate = Some(minutes);
                    self.take(i, len);
                }
            }
        }
    }

    /// `every …`, `daily`, `weekly`, …, with `every!` or `after completion` for the
    /// after-completion mode.
    fn recurrence(&mut self) {
        let mut after_completion = false;
        for i in 0..self.words.len() {
            if self.w(i) == Some("after")
                && matches!(
                    self.w(i + 1),
                    Some("completion" | "completing" | "done" | "completed")
                )
            {
                after_completion = true;
                self.take(i, 2);
            }
        }
        for i in 0..self.words.len() {
            let Some(word) = self.w(i) else { continue };
            let (found, bang) = match word {
                "every" | "each" => (self.every(i + 1).map(|(r, n)| (r, n + 1)), false),
                "every!" => (self.every(i + 1).map(|(r, n)| (r, n + 1)), true),
                "daily" | "weekly" | "fortnightly" | "biweekly" | "monthly" | "yearly"
                | "annually"
                    if self.adverb_at(i + 1) =>
                {
                    let mut rep = match word {
                        "daily" => repeat("DAILY", 1),
                        "weekly" => repeat("WEEKLY", 1),
                        "monthly" => repeat("MONTHLY", 1),
                        "yearly" | "annually" => repeat("YEARLY", 1),
                        _ => repeat("WEEKLY", 2),
                    };
                    let end = self.extend_on(&mut rep, i + 1);
                    (Some((rep, end - i)), false)
                }
                _ => continue,
            };
            let is_every = word.starts_with("every");
            let Some((rep, len)) = found else {
                if is_every {
                    self.unparsed.push((i, self.words[i].raw.to_owned()));
                }
                continue;
            };
            let mode = if bang || after_completion {
                RecurrenceMode::AfterCompletion
            } else {
                RecurrenceMode::Fixed
            };
            // "every! monday": a weekday means nothing relative to a completion, so the rule
            // is weekly and the day is when the series starts.
            let rule = if mode == RecurrenceMode::AfterCompletion
                && rep.by_day.len() == 1
                && rep.by_month_day.is_none()
            {
                Repeat {
                    by_day: Vec::new(),
                    ..repeat(rep.freq, rep.interval)
                }
                .rule()
            } else {
                rep.rule()
            };
            match Recurrence::parse(&rule, mode) {
                Ok(recurrence) => {
                    self.take(i, len);
                    self.repeat = Some((rep, recurrence));
                    return;
                }
                Err(_) => {
                    let phrase: Vec<&str> = self.words[i..i + len].iter().map(|w| w.raw).collect();
                    self.unparsed.push((i, phrase.join(" ")));
                }
            }
        }
    }

    /// What follows `every`, and how many words it took.
    fn every(&self, j: usize) -> Option<(Repeat, usize)> {
        let first = self.w(j)?;
        let (interval, at) = match first {
            "other" => (2, j + 1),
            n => match number(n) {
                Some(n) if n >= 1.0 && n.fract() == 0.0 => (n as u32, j + 1),
                _ => (1, j),
            },
        };
        let unit = self.w(at)?;
        let mut rep = match unit.trim_end_matches('s') {
            "day" => repeat("DAILY", interval),
            "week" => repeat("WEEKLY", interval),
            "month" => repeat("MONTHLY", interval),
            "year" => repeat("YEARLY", interval),
            "weekday" | "workday" => Repeat {
                by_day: vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ],
                ..repeat("WEEKLY", interval)
            },
            "weekend" => Repeat {
                by_day: vec![Weekday::Sat, Weekday::Sun],
                ..repeat("WEEKLY", interval)
            },
            "morning" | "afternoon" | "evening" | "night" if interval == 1 => Repeat {
                time: part_of_day(unit),
                ..repeat("DAILY", 1)
            },
            _ => {
                if let Some((days, n)) = self.weekday_list(at) {
                    // "every saturday morning"
                    let time = self.w(at + n).and_then(part_of_day);
                    let rep = Repeat {
                        by_day: days,
                        time,
                        ..repeat("WEEKLY", interval)
                    };
                    return Some((rep, at + n + usize::from(time.is_some()) - j));
                }
                if let Some((day, n)) = self.month_day(at) {
                    let rep = Repeat {
                        by_month_day: Some(day),
                        ..repeat("MONTHLY", interval)
                    };
                    return Some((rep, at + n - j));
                }
                return None;
            }
        };
        let end = self.extend_on(&mut rep, at + 1);
        Some((rep, end - j))
    }

    /// `daily`, `weekly`, … are a recurrence when used as an adverb (`water plants daily`,
    /// `daily at 9am`), not as an adjective (`read the weekly digest`): the next word must be
    /// missing, syntax, or a connector.
    fn adverb_at(&self, j: usize) -> bool {
        match self.w(j) {
            None => true,
            Some(next) => {
                next.starts_with(['#', '!', '~'])
                    || matches!(
                        next,
                        "at" | "on"
                            | "by"
                            | "from"
                            | "starting"
                            | "in"
                            | "until"
                            | "for"
                            | "after"
                            | "p1"
                            | "p2"
                            | "p3"
                            | "p4"
                            | "and"
                            | "then"
                    )
                    || self.clock(j).is_some()
            }
        }
    }

    /// `… on the 1st` after a monthly rule, `… on friday` after a weekly one; returns where the
    /// phrase ends.
    fn extend_on(&self, rep: &mut Repeat, mut end: usize) -> usize {
        if self.w(end) == Some("on") {
            if rep.freq == "MONTHLY" && rep.by_month_day.is_none() {
                if let Some((day, n)) = self.month_day(end + 1) {
                    rep.by_month_day = Some(day);
                    end += 1 + n;
                }
            } else if rep.freq == "WEEKLY" && rep.by_day.is_empty() {
                if let Some((days, n)) = self.weekday_list(end + 1) {
                    rep.by_day = days;
                    end += 1 + n;
                }
            }
        }
        end
    }

    /// `monday and wednesday`, `mon, wed, fri`, `tuesdays`.
    fn weekday_list(&self, j: usize) -> Option<(Vec<Weekday>, usize)> {
        let mut days = Vec::new();
        let mut i = j;
        while let Some(d) = self.w(i).and_then(weekday_or_plural) {
            if !days.contains(&d) {
                days.push(d);
            }
            i += 1;
            if matches!(self.w(i), Some("and" | "&"))
                && self.w(i + 1).and_then(weekday_or_plural).is_some()
            {
                i += 1;
            }
        }
        days.sort_by_key(Weekday::num_days_from_monday);
        (!days.is_empty()).then(|| (days, i - j))
    }

    /// `1st`, `the 15th`, `the last day`, each optionally followed by `of the month`.
    fn month_day(&self, j: usize) -> Option<(i32, usize)> {
        let mut i = j;
        if self.w(i) == Some("the") {
            i += 1;
        }
        let day = match self.w(i)? {
            "last" if self.w(i + 1) == Some("day") => {
                i += 1;
                -1
            }
            w => ordinal(w)? as i32,
        };
        i += 1;
        if self.w(i) == Some("of") {
            let mut k = i + 1;
            if matches!(self.w(k), Some("the" | "every" | "each")) {
                k += 1;
            }
            if self.w(k) == Some("month") {
                i = k + 1;
            }
        }
        Some((day, i - j))
    }

    /// `starting monday`, `from dec 1 at 9am`.
    fn start(&mut self) {
        for i in 0..self.words.len() {
            if !matches!(
                self.w(i),
                Some("starting" | "starts" | "from" | "beginning" | "begins")
            ) {
                continue;
            }
            // "starting on monday", "begins on march 16"
            let at = if self.w(i + 1) == Some("on") {
                i + 2
            } else {
                i + 1
            };
            if let Some((when, len)) = self.date_at(at) {
                self.take(i, at - i + len);
                let when = self.with_time_after(when, at + len);
                self.start = Some(when);
                return;
            }
        }
    }

    /// Adds a time that directly follows a date (`friday 5pm`, `tomorrow at 9`).
    fn with_time_after(&mut self, when: When, j: usize) -> When {
        match when {
            When::Day(date, None) => match self.time_at(j) {
                Some((time, len)) => {
                    self.take(j, len);
                    When::Day(date, Some(time))
                }
                None => when,
            },
            other => other,
        }
    }

    /// The due date: the first date and the first time found anywhere, with the connector
    /// before them (`on`, `by`, `due`, `before`).
    fn due(&mut self) {
        let mut date: Option<When> = None;
        let mut time: Option<NaiveTime> = None;
        for i in 0..self.words.len() {
            if self.w(i).is_none() {
                continue;
            }
            if date.is_none() {
                if let Some((mut when, len)) = self.date_at(i) {
                    // "starting monday due friday": a bare weekday cannot fall before the start,
                    // so it is the first such day from the start on.
                    if let (When::Day(d, t), Some(When::Day(start, _))) = (when, self.start) {
                        if d < start && self.w(i).and_then(weekday).is_some() {
                            let weeks = (start - d).num_days().div_euclid(7)
                                + i64::from((start - d).num_days() % 7 != 0);
                            when = When::Day(d + Duration::days(7 * weeks), t);
                        }
                    }
                    self.take(i, len);
                    self.take_connectors(i);
                    // A time written before the date ("at 5pm on friday") is kept below.
                    date = Some(self.with_time_after(when, i + len));
                    continue;
                }
            }
            if time.is_none() {
                if let Some((t, len)) = self.time_at(i) {
                    self.take(i, len);
                    self.take_connectors(i);
                    time = Some(t);
                }
            }
        }
        let time = time.or_else(|| self.repeat.as_ref().and_then(|(r, _)| r.time));
        self.due = match (date, time) {
            (Some(When::Instant(at)), _) => Some(at),
            (Some(When::Day(d, Some(t))), _) | (Some(When::Day(d, None)), Some(t)) => self.at(d, t),
            (Some(When::Day(d, None)), None) => self.at(d, hms_end()),
            (None, t) => match &self.repeat {
                // An after-completion series keeps a weekday only as its first day.
                Some((rep, recurrence))
                    if recurrence.mode == RecurrenceMode::Fixed || !rep.by_day.is_empty() =>
                {
                    let from = match self.start {
                        Some(When::Day(d, _)) if d > self.today => d,
                        _ => self.today,
                    };
                    self.first_occurrence(rep, from, t.unwrap_or_else(hms_end))
                }
                Some(_) => self.next_time(t.unwrap_or_else(hms_end)),
                None => t.and_then(|t| self.next_time(t)),
            },
        };
    }

    /// Connectors right before a date or time: `on`, `by`, `due`, `before`, `for`, `until`,
    /// and pairs such as `due on`.
    fn take_connectors(&mut self, i: usize) {
        let mut k = i;
        while k > 0
            && matches!(
                self.w(k - 1),
                Some("on" | "by" | "due" | "before" | "for" | "until")
            )
        {
            self.used[k - 1] = true;
            k -= 1;
        }
    }

    fn at(&self, date: NaiveDate, time: NaiveTime) -> Option<Timestamp> {
        local_to_utc(date.and_time(time), self.zone)
    }

    /// Today at `time` if that is still ahead, else tomorrow.
    fn next_time(&self, time: NaiveTime) -> Option<Timestamp> {
        let today = self.at(self.today, time)?;
        if today > self.now {
            Some(today)
        } else {
            self.at(self.today.succ_opt()?, time)
        }
    }

    /// The first day from `from` that the rule allows, at `time`, still ahead of now.
    fn first_occurrence(
        &self,
        rep: &Repeat,
        from: NaiveDate,
        time: NaiveTime,
    ) -> Option<Timestamp> {
        let mut day = from;
        for _ in 0..400 {
            let fits_day = rep.by_day.is_empty() || rep.by_day.contains(&day.weekday());
            let fits_month_day = match rep.by_month_day {
                None => true,
                Some(-1) => day
                    .succ_opt()
                    .is_some_and(|next| next.month() != day.month()),
                Some(n) => day.day() as i32 == n,
            };
            if fits_day && fits_month_day {
                if let Some(at) = self.at(day, time).filter(|at| *at > self.now) {
                    return Some(at);
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// A date expression at `i`, and how many words it took.
    fn date_at(&self, i: usize) -> Option<(When, usize)> {
        let today = self.today;
        let w0 = self.w(i)?;
        let prev = if i > 0 { self.w(i - 1) } else { None };
        let day = |d: NaiveDate, n: usize| Some((When::Day(d, None), n));
        let with_part = |d: NaiveDate, n: usize| match self.w(i + n).and_then(part_of_day) {
            Some(t) => Some((When::Day(d, Some(t)), n + 1)),
            None => day(d, n),
        };
        match w0 {
            "today" | "tod" => return with_part(today, 1),
            "tonight" => return Some((When::Day(today, Some(hms(20, 0, 0))), 1)),
            "tomorrow" | "tmrw" | "tmr" | "tomorow" | "tommorow" | "tommorrow" => {
                return with_part(today + Duration::days(1), 1)
            }
            "day" if self.w(i + 1) == Some("after") && self.w(i + 2) == Some("tomorrow") => {
                return with_part(today + Duration::days(2), 3)
            }
            "this" => {
                let w1 = self.w(i + 1)?;
                if let Some(t) = part_of_day(w1) {
                    return Some((When::Day(today, Some(t)), 2));
                }
                if w1 == "weekend" {
                    return day(on_or_after(today, Weekday::Sat), 2);
                }
                let wd = weekday(w1)?;
                return with_part(on_or_after(today, wd), 2);
            }
            "next" | "coming" => {
                let w1 = self.w(i + 1)?;
                let monday =
                    today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
                if let Some(wd) = weekday(w1) {
                    let date = if w0 == "next" {
                        monday + Duration::days(i64::from(wd.num_days_from_monday()))
                    } else {
                        strictly_after(today, wd)
                    };
                    return with_part(date, 2);
                }
                if w0 == "coming" {
                    return None;
                }
                return match w1 {
                    "week" => day(monday, 2),
                    "weekend" => day(monday + Duration::days(5), 2),
                    "month" => day(today.with_day(1)?.checked_add_months(Months::new(1))?, 2),
                    "year" => day(NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)?, 2),
                    _ => None,
                };
            }
            "end" if self.w(i + 1) == Some("of") => {
                let mut n = 2;
                if self.w(i + n) == Some("the") {
                    n += 1;
                }
                return match self.w(i + n)? {
                    "month" => day(last_of_month(today)?, n + 1),
                    "week" => day(on_or_after(today, Weekday::Fri), n + 1),
                    _ => None,
                };
            }
            "eom" => return day(last_of_month(today)?, 1),
            "eow" => return day(on_or_after(today, Weekday::Fri), 1),
            "in" => return self.in_amount(i),
            "the" if matches!(self.w(i + 1), Some("day" | "end")) => {
                let (when, n) = self.date_at(i + 1)?;
                return Some((when, n + 1));
            }
            "the" => {
                // "the 15th", not "the 3 boxes"
                let w1 = self.w(i + 1)?;
                if w1.ends_with(|c: char| c.is_ascii_digit()) {
                    return None;
                }
                let d = ordinal(w1)?;
                if self.w(i + 2) == Some("of") {
                    if let Some(m) = self.w(i + 3).and_then(month) {
                        let (date, n) = self.with_year(i + 4, m, d)?;
                        return with_part(date, 4 + n);
                    }
                }
                // The next such day of a month, this month or a later one.
                let mut month_start = today.with_day(1)?;
                for _ in 0..3 {
                    if let Some(date) = month_start.with_day(d) {
                        if date >= today {
                            return with_part(date, 2);
                        }
                    }
                    month_start = month_start.checked_add_months(Months::new(1))?;
                }
                return None;
            }
            _ => {}
        }
        if let Some(wd) = weekday(w0) {
            let needs_connector = matches!(w0, "wed" | "sat" | "sun");
            let connected = matches!(
                prev,
                Some("on" | "by" | "due" | "before" | "until" | "starting" | "from")
            );
            if needs_connector && !connected {
                return None;
            }
            // "Sunday brunch mar 29": a bare weekday naming the kind of thing gives way to a
            // calendar date written later.
            if !connected && self.calendar_date_after(i) {
                return None;
            }
            return with_part(strictly_after(today, wd), 1);
        }
        if let Ok(date) = NaiveDate::parse_from_str(w0, "%Y-%m-%d") {
            return with_part(date, 1);
        }
        if let Some(date) = slash_date(w0, today) {
            return with_part(date, 1);
        }
        // "dec 24", "december 24th 2027"
        if let Some(m) = month(w0) {
            let d = self.w(i + 1).and_then(ordinal)?;
            let (date, n) = self.with_year(i + 2, m, d)?;
            return with_part(date, 2 + n);
        }
        // "24 dec", "24th of december 2027"
        if let Some(d) = ordinal(w0) {
            let (m, n) = match (self.w(i + 1), self.w(i + 2)) {
                (Some("of"), Some(m)) if month(m).is_some() => (month(m)?, 3),
                (Some(m), _) => (month(m)?, 2),
                _ => return None,
            };
            let (date, y) = self.with_year(i + n, m, d)?;
            return with_part(date, n + y);
        }
        None
    }

    /// Whether a calendar date (`mar 29`, `29 march`, `2026-03-29`, `29/03`) follows `i`.
    fn calendar_date_after(&self, i: usize) -> bool {
        (i + 1..self.words.len()).any(|j| {
            self.w(j).is_some_and(|w| {
                (month(w).is_some() || w.starts_with(|c: char| c.is_ascii_digit()))
                    && self.date_at(j).is_some()
            })
        })
    }

    /// The date of `month`/`day`, with a year at `j` if one is written (1 word taken), else
    /// this year's, or next year's if that is past.
    fn with_year(&self, j: usize, month: u32, day: u32) -> Option<(NaiveDate, usize)> {
        if let Some(year) = self
            .w(j)
            .filter(|w| w.len() == 4)
            .and_then(|w| w.parse::<i32>().ok())
            .filter(|y| (1970..=9999).contains(y))
        {
            return Some((NaiveDate::from_ymd_opt(year, month, day)?, 1));
        }
        let this_year = NaiveDate::from_ymd_opt(self.today.year(), month, day);
        match this_year {
            Some(date) if date >= self.today => Some((date, 0)),
            _ => Some((
                NaiveDate::from_ymd_opt(self.today.year() + 1, month, day)?,
                0,
            )),
        }
    }

    /// `in 3 days`, `in a week`, `in 2 hours`, `in half an hour`.
    fn in_amount(&self, i: usize) -> Option<(When, usize)> {
        if self.w(i + 1) == Some("half")
            && self.w(i + 2) == Some("an")
            && self.w(i + 3) == Some("hour")
        {
            return Some((When::Instant(self.now + Duration::minutes(30)), 4));
        }
        let n = number(self.w(i + 1)?)?;
        let unit = self.w(i + 2)?;
        let whole = (n.fract() == 0.0 && n >= 1.0).then_some(n as u32);
        let today = self.today;
        let when = match unit.trim_end_matches('s') {
            "day" => When::Day(today + Duration::days(i64::from(whole?)), None),
            "week" => When::Day(today + Duration::days(7 * i64::from(whole?)), None),
            "month" => When::Day(today.checked_add_months(Months::new(whole?))?, None),
            "year" => When::Day(today.checked_add_months(Months::new(12 * whole?))?, None),
            "hour" | "hr" | "h" => When::Instant(self.now + Duration::minutes((n * 60.0) as i64)),
            "minute" | "min" | "m" => When::Instant(self.now + Duration::minutes(whole? as i64)),
            _ => return None,
        };
        let taken = 3;
        match when {
            When::Day(d, None) => match self.w(i + taken).and_then(part_of_day) {
                Some(t) => Some((When::Day(d, Some(t)), taken + 1)),
                None => Some((when, taken)),
            },
            other => Some((other, taken)),
        }
    }

    /// A time of day at `i`: `5pm`, `5:30 pm`, `17:30`, `noon`, `at 9`, `in the morning`.
    fn time_at(&self, i: usize) -> Option<(NaiveTime, usize)> {
        let w0 = self.w(i)?;
        if w0 == "at" || w0 == "@" || w0 == "around" {
            let w1 = self.w(i + 1)?;
            if let Some((t, n)) = self.clock(i + 1) {
                return Some((t, n + 1));
            }
            // A bare hour after "at": 1 to 7 are afternoon, people rarely mean 5 in the morning.
            let h: u32 = w1.parse().ok()?;
            let h = match h {
                1..=7 => h + 12,
                8..=23 => h,
                _ => return None,
            };
            return Some((hms(h, 0, 0), 2));
        }
        if w0 == "in" && self.w(i + 1) == Some("the") {
            let t = part_of_day(self.w(i + 2)?)?;
            return Some((t, 3));
        }
        self.clock(i)
    }

    /// A written clock time: `5pm`, `5 pm`, `5:30pm`, `17:30`, `noon`, `midnight`.
    fn clock(&self, i: usize) -> Option<(NaiveTime, usize)> {
        let w0 = self.w(i)?;
        match w0 {
            "noon" | "midday" => return Some((hms(12, 0, 0), 1)),
            "midnight" => return Some((hms(END_OF_DAY.0, END_OF_DAY.1, END_OF_DAY.2), 1)),
            _ => {}
        }
        if let Some(t) = twelve_hour(w0) {
            return Some((t, 1));
        }
        if let Some(next) = self.w(i + 1) {
            if matches!(next, "am" | "pm" | "a.m" | "p.m") {
                if let Some(t) = twelve_hour(&format!("{w0}{}", next.replace('.', ""))) {
                    return Some((t, 2));
                }
            }
        }
        let (h, m) = w0.split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        Some((NaiveTime::from_hms_opt(h, m, 0)?, 1))
    }

    fn finish(mut self, text: &str) -> QuickAdd {
        self.unparsed.sort_by_key(|(i, _)| *i);
        let kept: Vec<&str> = self
            .words
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(w, _)| w.raw)
            .collect();
        let joined = kept.join(" ");
        let cleaned = joined
            .trim_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-' | '–'))
            .to_owned();
        let title = if cleaned.is_empty() {
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            cleaned
        };
        let starts_at = match self.start {
            Some(When::Instant(at)) => Some(at),
            Some(When::Day(d, t)) => {
                local_to_utc(d.and_time(t.unwrap_or(NaiveTime::MIN)), self.zone)
            }
            None => None,
        };
        QuickAdd {
            title,
            due_at: self.due,
            starts_at,
            tags: self.tags,
            priority: self.priority,
            estimate_minutes: self.estimate,
            recurrence: self.repeat.map(|(_, r)| r),
            unparsed: self.unparsed.into_iter().map(|(_, text)| text).collect(),
        }
    }
}

impl Repeat {
    fn rule(&self) -> String {
        let mut rule = format!("FREQ={}", self.freq);
        if self.interval > 1 {
            rule.push_str(&format!(";INTERVAL={}", self.interval));
        }
        if !self.by_day.is_empty() {
            let days: Vec<&str> = self.by_day.iter().map(|d| ical_day(*d)).collect();
            rule.push_str(&format!(";BYDAY={}", days.join(",")));
        }
        if let Some(day) = self.by_month_day {
            rule.push_str(&format!(";BYMONTHDAY={day}"));
        }
        rule
    }
}

fn repeat(freq: &'static str, interval: u32) -> Repeat {
    Repeat {
        freq,
        interval,
        ..Repeat::default()
    }
}

fn hms_end() -> NaiveTime {
    hms(END_OF_DAY.0, END_OF_DAY.1, END_OF_DAY.2)
}

fn ical_day(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

fn weekday(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" | "weds" => Weekday::Wed,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn weekday_or_plural(word: &str) -> Option<Weekday> {
    weekday(word).or_else(|| weekday(word.strip_suffix('s')?))
}

fn month(word: &str) -> Option<u32> {
    Some(match word {
        "jan" | "january" => 1,
        "feb" | "february" => 2,
        "mar" | "march" => 3,
        "apr" | "april" => 4,
        "may" => 5,
        "jun" | "june" => 6,
        "jul" | "july" => 7,
        "aug" | "august" => 8,
        "sep" | "sept" | "september" => 9,
        "oct" | "october" => 10,
        "nov" | "november" => 11,
        "dec" | "december" => 12,
        _ => return None,
    })
}

/// `24`, `24th`, `1st`: a day of the month.
fn ordinal(word: &str) -> Option<u32> {
    let digits = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|s| word.strip_suffix(s))
        .unwrap_or(word);
    if digits.is_empty() || digits.len() > 2 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

/// `24/12` or `24/12/2026`: day first, unless only the other way round makes a date.
fn slash_date(word: &str, today: NaiveDate) -> Option<NaiveDate> {
    let parts: Vec<&str> = word.split('/').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let a: u32 = parts[0].parse().ok()?;
    let b: u32 = parts[1].parse().ok()?;
    let year: Option<i32> = match parts.get(2) {
        Some(y) if y.len() == 4 => Some(y.parse().ok()?),
        Some(y) if y.len() == 2 => Some(2000 + y.parse::<i32>().ok()?),
        Some(_) => return None,
        None => None,
    };
    let (day, month) = if a <= 31 && b <= 12 { (a, b) } else { (b, a) };
    match year {
        Some(y) => NaiveDate::from_ymd_opt(y, month, day),
        None => {
            let date = NaiveDate::from_ymd_opt(today.year(), month, day)?;
            if date >= today {
                Some(date)
            } else {
                NaiveDate::from_ymd_opt(today.year() + 1, month, day)
            }
        }
    }
}

fn part_of_day(word: &str) -> Option<NaiveTime> {
    Some(match word {
        "morning" => hms(9, 0, 0),
        "afternoon" => hms(15, 0, 0),
        "evening" => hms(19, 0, 0),
        "night" => hms(20, 0, 0),
        _ => return None,
    })
}

/// `5pm`, `5:30pm`, `12am`.
fn twelve_hour(word: &str) -> Option<NaiveTime> {
    let (clock, pm) = if let Some(c) = word.strip_suffix("pm") {
        (c, true)
    } else if let Some(c) = word.strip_suffix("am") {
        (c, false)
    } else {
        return None;
    };
    let (h, m) = match clock.split_once([':', '.']) {
        Some((h, m)) if m.len() == 2 => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        Some(_) => return None,
        None => (clock.parse::<u32>().ok()?, 0),
    };
    if !(1..=12).contains(&h) {
        return None;
    }
    let h = match (h, pm) {
        (12, false) => 0,
        (12, true) => 12,
        (h, true) => h + 12,
        (h, false) => h,
    };
    NaiveTime::from_hms_opt(h, m, 0)
}

/// `3`, `1.5`, `a`, `an`, `one` … `twelve`.
fn number(word: &str) -> Option<f64> {
    let n = match word {
        "a" | "an" | "one" => 1.0,
        "two" => 2.0,
        "three" => 3.0,
        "four" => 4.0,
        "five" => 5.0,
        "six" => 6.0,
        "seven" => 7.0,
        "eight" => 8.0,
        "nine" => 9.0,
        "ten" => 10.0,
        "eleven" => 11.0,
        "twelve" => 12.0,
        _ => {
            if word.is_empty() || !word.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return None;
            }
            word.parse().ok()?
        }
    };
    Some(n)
}

/// Minutes in one unit word, for estimates.
fn unit_minutes(word: &str) -> Option<u32> {
    match word {
        "m" | "min" | "mins" | "minute" | "minutes" => Some(1),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(60),
        _ => None,
    }
}

/// `30m`, `2h`, `1h30m`, `1h30`, `1.5h`, `90min`, `45` (bare minutes).
fn duration_minutes(text: &str) -> Option<u32> {
    let mut total = 0.0;
    let mut rest = text;
    let mut last_unit = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let amount: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let per = if unit.is_empty() {
            // "1h30": minutes after hours; a bare number alone is minutes.
            if last_unit == 60 || last_unit == 0 {
                1
            } else {
                return None;
            }
        } else {
            unit_minutes(unit)?
        };
        total += amount * f64::from(per);
        last_unit = per;
    }
    let minutes = total.round();
    (minutes >= 1.0 && minutes <= f64::from(EffortMinutes::MAX)).then_some(minutes as u32)
}

fn on_or_after(today: NaiveDate, wd: Weekday) -> NaiveDate {
    let ahead = (7 + wd.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
    today + Duration::days(i64::from(ahead))
}

fn strictly_after(today: NaiveDate, wd: Weekday) -> NaiveDate {
    on_or_after(today + Duration::days(1), wd)
}

fn last_of_month(today: NaiveDate) -> Option<NaiveDate> {
    today
        .with_day(1)?
        .checked_add_months(Months::new(1))?
        .pred_opt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Paris;

    /// Monday 2 March 2026, 11:00 in Paris.
    fn now() -> Timestamp {
        "2026-03-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn given_syntax_that_cannot_be_read_when_parsed_then_it_is_reported_and_kept_in_the_title() {
        let q = parse("Fix it !asap ~soon every now #42", now(), Paris);
        assert_eq!(q.title, "Fix it !asap ~soon every now #42");
        assert_eq!(q.unparsed, ["!asap", "~soon", "every", "#42"]);
        assert_eq!(q.priority, None);
        assert_eq!(q.recurrence, None);
    }

    #[test]
    fn given_only_tokens_when_parsed_then_the_title_is_the_whole_text() {
        let q = parse("  tomorrow   #home ", now(), Paris);
        assert_eq!(q.title, "tomorrow #home");
        assert_eq!(q.tags, ["home"]);
        assert!(q.due_at.is_some());
    }

    #[test]
    fn given_a_repeating_after_completion_phrase_with_a_by_rule_then_it_is_unparsed() {
        let q = parse("Gym every! weekday", now(), Paris);
        assert_eq!(q.recurrence, None);
        assert_eq!(q.unparsed, ["every! weekday"]);
    }

    fn local(text: &str) -> Timestamp {
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
        local_to_utc(naive, Paris).unwrap()
    }

    #[test]
    fn given_every_bang_and_one_weekday_then_the_series_is_weekly_after_completion_from_that_day() {
        let q = parse("Plan the week every! friday", now(), Paris);
        assert_eq!(q.title, "Plan the week");
        let recurrence = q.recurrence.unwrap();
        assert_eq!(recurrence.rule, "FREQ=WEEKLY");
        assert_eq!(recurrence.mode, RecurrenceMode::AfterCompletion);
        assert_eq!(q.due_at, Some(local("2026-03-06 23:59:59")));
        assert!(q.unparsed.is_empty());

        let q = parse("Mow the lawn every! 2 saturdays morning", now(), Paris);
        assert_eq!(q.recurrence.unwrap().rule, "FREQ=WEEKLY;INTERVAL=2");
        assert_eq!(q.due_at, Some(local("2026-03-07 09:00:00")));
    }

    #[test]
    fn given_an_estimate_with_its_unit_as_a_word_then_both_words_are_the_estimate() {
        let q = parse("Stretch ~10 min", now(), Paris);
        assert_eq!(
            (q.title.as_str(), q.estimate_minutes),
            ("Stretch", Some(10))
        );
        let q = parse("Write ~2 hours then rest", now(), Paris);
        assert_eq!(q.title, "Write then rest");
        assert_eq!(q.estimate_minutes, Some(120));
        // A bare amount followed by anything else is minutes, as before.
        let q = parse("Call ~15 people", now(), Paris);
        assert_eq!(
            (q.title.as_str(), q.estimate_minutes),
            ("Call people", Some(15))
        );
    }

    #[test]
    fn given_a_start_keyword_followed_by_on_then_the_date_is_the_start() {
        let q = parse("Course begins on march 16", now(), Paris);
        assert_eq!(q.title, "Course");
        assert_eq!(q.starts_at, Some(local("2026-03-16 00:00:00")));
        assert_eq!(q.due_at, None);
    }

    #[test]
    fn given_by_the_end_of_the_month_then_the_whole_phrase_is_the_due_date() {
        let q = parse("Finish the draft by the end of the month", now(), Paris);
        assert_eq!(q.title, "Finish the draft");
        assert_eq!(q.due_at, Some(local("2026-03-31 23:59:59")));
    }

    #[test]
    fn given_a_start_then_a_bare_weekday_due_falls_on_or_after_the_start() {
        // Monday 2 March: "starting next monday" is the 9th, so "friday" is the 13th, not the 6th.
        let q = parse(
            "Grant proposal starting next monday due friday",
            now(),
            Paris,
        );
        assert_eq!(q.starts_at, Some(local("2026-03-09 00:00:00")));
        assert_eq!(q.due_at, Some(local("2026-03-13 23:59:59")));
        // A written date is taken as written.
        let q = parse(
            "Grant proposal starting next monday due mar 6",
            now(),
            Paris,
        );
        assert_eq!(q.due_at, Some(local("2026-03-06 23:59:59")));
    }

    #[test]
    fn given_a_full_phrase_when_serialised_then_the_preview_has_every_field() {
        let q = parse(
            "Pay rent every month on the 1st #home p2 ~10m",
            now(),
            Paris,
        );
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "title": "Pay rent",
                "due_at": "2026-04-01T21:59:59Z",
                "starts_at": null,
                "tags": ["home"],
                "priority": "high",
                "estimate_minutes": 10,
                "recurrence": {"rule": "FREQ=MONTHLY;BYMONTHDAY=1", "mode": "fixed"},
                "unparsed": [],
            })
        );
    }

    #[test]
    fn given_the_same_input_when_parsed_twice_then_the_answer_is_the_same() {
        let text = "Call Bob next friday at 5pm for 30 min #calls !high";
        assert_eq!(parse(text, now(), Paris), parse(text, now(), Paris));
    }

    #[test]
    fn given_a_utc_zone_when_a_time_is_read_then_it_is_that_zones_time() {
        let q = parse("Call at 5pm", now(), chrono_tz::UTC);
        assert_eq!(q.due_at, Some("2026-03-02T17:00:00Z".parse().unwrap()));
    }
}
