//! An iCalendar (RFC 5545) writer for the one thing the feed needs: a VCALENDAR of VTODOs.
//!
//! Written by hand rather than with a crate because the subset is small and its rules are
//! the whole difficulty: content lines end in CRLF and are folded at 75 octets (never inside
//! a UTF-8 character), TEXT values escape `\`, `;`, `,` and line breaks, and instants are
//! written in UTC (`YYYYMMDDTHHMMSSZ`) or as floating local times ([`When`]), so no
//! VTIMEZONE is needed. Pure: the caller supplies every value, this only spells them.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The longest content line, in octets, before it is folded (RFC 5545 §3.1).
pub const MAX_LINE_OCTETS: usize = 75;

/// The calendar's `PRODID`.
pub const PRODUCT_ID: &str = "-//taskmaster//calendar feed 1.0//EN";

/// How often subscribers are asked to fetch the feed again (`REFRESH-INTERVAL` of RFC 7986,
/// and `X-PUBLISHED-TTL`, which Apple Calendar and Outlook read instead).
pub const REFRESH_INTERVAL: &str = "PT15M";

/// Where a to-do stands (`STATUS`, RFC 5545 §3.8.1.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TodoStatus {
    /// Not started.
    NeedsAction,
    /// Started (in progress, or paused after a start).
    InProcess,
}

impl TodoStatus {
    fn as_str(self) -> &'static str {
        match self {
            TodoStatus::NeedsAction => "NEEDS-ACTION",
            TodoStatus::InProcess => "IN-PROCESS",
        }
    }
}

/// A DATE-TIME value (RFC 5545 §3.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// An instant, written in UTC: `20300131T170000Z`.
    Utc(DateTime<Utc>),
    /// A wall-clock time with no zone ("floating"), which clients read in the zone they show
    /// the calendar in: `20300131T090000`.
    Floating(NaiveDateTime),
}

impl When {
    fn value(self) -> String {
        match self {
            When::Utc(instant) => utc(instant),
            When::Floating(local) => local.format("%Y%m%dT%H%M%S").to_string(),
        }
    }
}

/// One VTODO, its values as they will be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Todo {
    /// `UID`: stable across fetches, so a client updates its copy instead of adding another.
    pub uid: String,
    /// `DTSTAMP`. The feed carries no `METHOD`, so this is when the to-do was last revised
    /// (§3.8.7.2), which also keeps the feed byte-identical between two fetches when nothing
    /// changed.
    pub stamp: DateTime<Utc>,
    /// `CREATED`.
    pub created: DateTime<Utc>,
    /// `LAST-MODIFIED`.
    pub last_modified: DateTime<Utc>,
    /// `SUMMARY`.
    pub summary: String,
    /// `DESCRIPTION`, if any.
    pub description: Option<String>,
    /// `DTSTART`, if any.
    pub start: Option<When>,
    /// `DUE`, if any.
    pub due: Option<When>,
    /// `RRULE` value (`FREQ=WEEKLY;BYDAY=MO`), written as given, if any.
    pub rrule: Option<String>,
    /// `RELATED-TO;RELTYPE=PARENT`: the UID of the to-do this one is a part of.
    pub parent_uid: Option<String>,
    /// `STATUS`.
    pub status: TodoStatus,
    /// `PRIORITY`, 0 (undefined) or 1 (highest) to 9 (lowest).
    pub priority: u8,
    /// `PERCENT-COMPLETE`, 0 to 100.
    pub percent_complete: u8,
    /// `CATEGORIES`, omitted when empty.
    pub categories: Vec<String>,
}

/// Writes a VCALENDAR named `name` holding `todos`.
pub fn calendar(name: &str, todos: &[Todo]) -> String {
    // About 400 octets per to-do; one allocation for most feeds.
    let mut out = Lines(String::with_capacity(256 + 400 * todos.len()));
    out.raw("BEGIN", "VCALENDAR");
    out.raw("VERSION", "2.0");
    out.raw("PRODID", PRODUCT_ID);
    out.raw("CALSCALE", "GREGORIAN");
    out.text("NAME", name);
    out.text("X-WR-CALNAME", name);
    out.raw("REFRESH-INTERVAL;VALUE=DURATION", REFRESH_INTERVAL);
    out.raw("X-PUBLISHED-TTL", REFRESH_INTERVAL);
    for todo in todos {
        out.todo(todo);
    }
    out.raw("END", "VCALENDAR");
    out.0
}

/// An instant as a UTC DATE-TIME (§3.3.5, form 2).
pub fn utc(instant: DateTime<Utc>) -> String {
    instant.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A TEXT value (§3.3.11): backslash, semicolon and comma escaped, every line break (CRLF,
/// CR or LF) as `\n`, and control characters other than tab dropped, since TEXT cannot hold
/// them.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds one unfolded content line (without its CRLF) and appends it, CRLF included: a break
/// (CRLF and one space) before any character that would take the physical line past
/// [`MAX_LINE_OCTETS`], never inside a UTF-8 sequence.
pub fn fold_into(out: &mut String, line: &str) {
    let mut octets = 0;
    for c in line.chars() {
        let width = c.len_utf8();
        if octets + width > MAX_LINE_OCTETS {
            out.push_str("\r\n ");
            // The space that opens the continuation counts toward its 75.
            octets = 1;
        }
        out.push(c);
        octets += width;
    }
    out.push_str("\r\n");
}

/// The content lines being written.
struct Lines(String);

impl Lines {
    /// A property whose value needs no escaping (names, numbers, instants, fixed words).
    fn raw(&mut self, name: &str, value: &str) {
        let mut line = String::with_capacity(name.len() + 1 + value.len());
        line.push_str(name);
        line.push(':');
        line.push_str(value);
        fold_into(&mut self.0, &line);
    }

    /// A TEXT property.
    fn text(&mut self, name: &str, value: &str) {
        self.raw(name, &escape_text(value));
    }

    fn instant(&mut self, name: &str, value: DateTime<Utc>) {
        self.raw(name, &utc(value));
    }

    fn todo(&mut self, todo: &Todo) {
        self.raw("BEGIN", "VTODO");
        self.text("UID", &todo.uid);
        self.instant("DTSTAMP", todo.stamp);
        self.instant("CREATED", todo.created);
        self.instant("LAST-MODIFIED", todo.last_modified);
        self.text("SUMMARY", &todo.summary);
        if let Some(description) = &todo.description {
            self.text("DESCRIPTION", description);
        }
        if let Some(start) = todo.start {
            self.raw("DTSTART", &start.value());
        }
        if let Some(due) = todo.due {
            self.raw("DUE", &due.value());
        }
        if let Some(rule) = &todo.rrule {
            self.raw("RRULE", rule);
        }
        if let Some(parent) = &todo.parent_uid {
            self.text("RELATED-TO;RELTYPE=PARENT", parent);
        }
        self.raw("STATUS", todo.status.as_str());
        let mut number = String::with_capacity(3);
        let _ = write!(number, "{}", todo.priority.min(9));
        self.raw("PRIORITY", &number);
        number.clear();
        let _ = write!(number, "{}", todo.percent_complete.min(100));
        self.raw("PERCENT-COMPLETE", &number);
        if !todo.categories.is_empty() {
            let escaped: Vec<String> = todo.categories.iter().map(|c| escape_text(c)).collect();
            self.raw("CATEGORIES", &escaped.join(","));
        }
        self.raw("END", "VTODO");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn todo() -> Todo {
        Todo {
            uid: "0191e0c2-0000-7000-8000-000000000001".into(),
            stamp: at(2030, 1, 2, 3, 4, 5),
            created: at(2030, 1, 1, 0, 0, 0),
            last_modified: at(2030, 1, 2, 3, 4, 5),
            summary: "Pay rent".into(),
            description: None,
            start: None,
            due: None,
            rrule: None,
            parent_uid: None,
            status: TodoStatus::NeedsAction,
            priority: 0,
            percent_complete: 0,
            categories: Vec::new(),
        }
    }

    /// The content lines of `ics`, unfolded (RFC 5545 §3.1: a CRLF followed by one space or
    /// tab is removed).
    fn unfolded(ics: &str) -> Vec<String> {
        ics.replace("\r\n ", "")
            .replace("\r\n\t", "")
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn text_escapes_backslash_semicolon_comma_and_every_line_break() {
        assert_eq!(escape_text(r"a\b"), r"a\\b");
        assert_eq!(escape_text("a;b,c"), r"a\;b\,c");
        assert_eq!(
            escape_text("one\ntwo\r\nthree\rfour"),
            r"one\ntwo\nthree\nfour"
        );
        assert_eq!(escape_text("tab\tkept"), "tab\tkept");
        assert_eq!(escape_text("bell\u{7}gone\u{85}"), "bellgone");
        assert_eq!(escape_text(r"\n is not a newline"), r"\\n is not a newline");
        assert_eq!(escape_text("déjà vu: ok"), "déjà vu: ok");
    }

    #[test]
    fn lines_are_folded_at_75_octets_and_never_inside_a_character() {
        let mut out = String::new();
        fold_into(&mut out, &format!("SUMMARY:{}", "a".repeat(200)));
        let physical: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(physical.len() > 2);
        assert_eq!(physical[0].len(), 75);
        for continuation in &physical[1..] {
            assert!(continuation.starts_with(' '));
            assert!(continuation.len() <= 75);
        }
        assert_eq!(physical[1].len(), 75);
        assert_eq!(unfolded(&out), [format!("SUMMARY:{}", "a".repeat(200))]);

        // Three-octet and four-octet characters straddling the boundary stay whole.
        for filler in ["€", "🦀", "é"] {
            let value = format!("SUMMARY:{}", filler.repeat(100));
            let mut out = String::new();
            fold_into(&mut out, &value);
            for line in out.split("\r\n") {
                assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
            }
            assert_eq!(unfolded(&out), [value]);
        }

        // Exactly 75 octets: no fold.
        let mut out = String::new();
        fold_into(&mut out, &"x".repeat(75));
        assert_eq!(out, format!("{}\r\n", "x".repeat(75)));
        let mut out = String::new();
        fold_into(&mut out, &"x".repeat(76));
        assert_eq!(out, format!("{}\r\n x\r\n", "x".repeat(75)));
    }

    #[test]
    fn instants_are_written_in_utc_with_a_z() {
        assert_eq!(utc(at(2030, 12, 24, 17, 5, 9)), "20301224T170509Z");
        let paris = chrono::FixedOffset::east_opt(3600).unwrap();
        let local = paris.with_ymd_and_hms(2030, 1, 1, 0, 30, 0).unwrap();
        assert_eq!(utc(local.with_timezone(&Utc)), "20291231T233000Z");
    }

    #[test]
    fn a_calendar_is_crlf_lines_of_one_vcalendar_with_its_todos() {
        let ics = calendar("taskmaster", &[todo(), todo()]);
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(!ics.replace("\r\n", "").contains('\n'));
        assert!(!ics.replace("\r\n", "").contains('\r'));
        let lines = unfolded(&ics);
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VTODO").count(), 2);
        assert_eq!(lines.iter().filter(|l| *l == "END:VTODO").count(), 2);
        for required in [
            "PRODID:-//taskmaster//calendar feed 1.0//EN",
            "NAME:taskmaster",
            "REFRESH-INTERVAL;VALUE=DURATION:PT15M",
        ] {
            assert!(lines.iter().any(|l| l == required), "{required}");
        }
        let empty = calendar("taskmaster", &[]);
        assert!(!empty.contains("VTODO"));
    }

    #[test]
    fn every_field_of_a_todo_is_written_with_its_property() {
        let full = Todo {
            description: Some("Line one\nLine two; with, punctuation".into()),
            start: Some(When::Utc(at(2030, 1, 28, 8, 0, 0))),
            due: Some(When::Floating(
                chrono::NaiveDate::from_ymd_opt(2030, 1, 31)
                    .unwrap()
                    .and_hms_opt(17, 0, 0)
                    .unwrap(),
            )),
            rrule: Some("FREQ=MONTHLY;BYMONTHDAY=1".into()),
            parent_uid: Some("0191e0c2-0000-7000-8000-000000000000".into()),
            status: TodoStatus::InProcess,
            priority: 1,
            percent_complete: 66,
            categories: vec!["home".into(), "a,b".into()],
            ..todo()
        };
        let lines = unfolded(&calendar("taskmaster", &[full]));
        let expected = [
            "BEGIN:VTODO",
            "UID:0191e0c2-0000-7000-8000-000000000001",
            "DTSTAMP:20300102T030405Z",
            "CREATED:20300101T000000Z",
            "LAST-MODIFIED:20300102T030405Z",
            "SUMMARY:Pay rent",
            r"DESCRIPTION:Line one\nLine two\; with\, punctuation",
            "DTSTART:20300128T080000Z",
            "DUE:20300131T170000",
            "RRULE:FREQ=MONTHLY;BYMONTHDAY=1",
            "RELATED-TO;RELTYPE=PARENT:0191e0c2-0000-7000-8000-000000000000",
            "STATUS:IN-PROCESS",
            "PRIORITY:1",
            "PERCENT-COMPLETE:66",
            r"CATEGORIES:home,a\,b",
            "END:VTODO",
        ];
        let start = lines.iter().position(|l| l == "BEGIN:VTODO").unwrap();
        assert_eq!(&lines[start..start + expected.len()], expected);

        // The optional properties are left out when there is nothing to say.
        let bare = unfolded(&calendar("taskmaster", &[todo()]));
        for absent in [
            "DESCRIPTION",
            "DTSTART",
            "DUE",
            "RRULE",
            "RELATED-TO",
            "CATEGORIES",
        ] {
            assert!(
                !bare.iter().any(|l| l.starts_with(absent)),
                "{absent} in {bare:?}"
            );
        }
        assert!(bare.iter().any(|l| l == "STATUS:NEEDS-ACTION"));
        assert!(bare.iter().any(|l| l == "PRIORITY:0"));
    }
}
