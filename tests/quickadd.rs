//! The quick-add corpus of `tests/fixtures/quickadd.json`: realistic phrases, each with a fixed
//! `now` and zone and the fields a person means by it (dates and times written local to the
//! zone, as a person checks them). Every case must be read exactly: title, due and start dates,
//! tags, priority, estimate, recurrence and the words reported as unparsed. The accuracy is
//! printed either way, and each miss with what was expected.
//!
//! The parser's own tests (`crates/domain/src/quickadd.rs` and its corpus in
//! `crates/domain/tests/`) pin the grammar rule by rule; this corpus is the view from outside.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use domain::quickadd;
use serde::Deserialize;

const CORPUS: &str = include_str!("fixtures/quickadd.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    text: String,
    now: DateTime<Utc>,
    zone: String,
    expect: Expected,
}

/// What the text means; a field left out means none (no tags, nothing unparsed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    title: String,
    /// Local to the case's zone.
    #[serde(default)]
    due: Option<NaiveDateTime>,
    /// Local to the case's zone.
    #[serde(default)]
    start: Option<NaiveDateTime>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    estimate_minutes: Option<u32>,
    #[serde(default)]
    recurrence: Option<serde_json::Value>,
    #[serde(default)]
    unparsed: Vec<String>,
}

/// The fields of a reading, comparable and printable.
#[derive(Debug, PartialEq)]
struct Reading {
    title: String,
    due: Option<DateTime<Utc>>,
    start: Option<DateTime<Utc>>,
    tags: Vec<String>,
    priority: Option<String>,
    estimate_minutes: Option<u32>,
    recurrence: Option<serde_json::Value>,
    unparsed: Vec<String>,
}

fn utc(zone: chrono_tz::Tz, local: NaiveDateTime) -> DateTime<Utc> {
    zone.from_local_datetime(&local)
        .single()
        .unwrap_or_else(|| panic!("{local} is not one instant in {zone}"))
        .with_timezone(&Utc)
}

#[test]
fn every_phrase_of_the_corpus_is_read_as_a_person_means_it() {
    let cases: Vec<Case> = serde_json::from_str(CORPUS).expect("the corpus is a list of cases");
    assert!(cases.len() >= 150, "the corpus holds {} phrases", cases.len());
    let mut misses = Vec::new();
    for case in &cases {
        let zone: chrono_tz::Tz = case.zone.parse().expect("an IANA zone");
        let expected = Reading {
            title: case.expect.title.clone(),
            due: case.expect.due.map(|d| utc(zone, d)),
            start: case.expect.start.map(|d| utc(zone, d)),
            tags: case.expect.tags.clone(),
            priority: case.expect.priority.clone(),
            estimate_minutes: case.expect.estimate_minutes,
            recurrence: case.expect.recurrence.clone(),
            unparsed: case.expect.unparsed.clone(),
        };
        let got = quickadd::parse(&case.text, case.now, zone);
        let got = Reading {
            title: got.title,
            due: got.due_at,
            start: got.starts_at,
            tags: got.tags,
            priority: got.priority.map(|p| p.as_str().to_owned()),
            estimate_minutes: got.estimate_minutes,
            recurrence: got
                .recurrence
                .map(|r| serde_json::to_value(r).expect("a recurrence serializes")),
            unparsed: got.unparsed,
        };
        if got != expected {
            misses.push(format!(
                "{:?} (now {}, {})\n  expected {expected:?}\n  got      {got:?}",
                case.text, case.now, case.zone
            ));
        }
    }
    let exact = cases.len() - misses.len();
    eprintln!(
        "quick-add corpus: {exact}/{} read exactly ({:.1}%)",
        cases.len(),
        100.0 * exact as f64 / cases.len() as f64
    );
    assert!(misses.is_empty(), "{} misses:\n{}", misses.len(), misses.join("\n"));
}
