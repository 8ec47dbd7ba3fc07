//! The quick-add corpus: realistic phrases with the fields a person means by them, written by
//! hand in `fixtures/quickadd.jsonl`. Every mismatch is printed, so a change to the grammar
//! shows what it fixed and what it broke; the test fails below 95% exact matches.

use domain::quickadd::{self, QuickAdd};
use domain::{Priority, Recurrence, Timestamp};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    text: String,
    now: Timestamp,
    zone: String,
    expect: Expected,
}

/// A field left out means "none" (or no tags): an exact match is exact on every field.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    title: String,
    #[serde(default)]
    due_at: Option<Timestamp>,
    #[serde(default)]
    starts_at: Option<Timestamp>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    estimate_minutes: Option<u32>,
    #[serde(default)]
    recurrence: Option<Recurrence>,
}

impl From<QuickAdd> for Expected {
    fn from(q: QuickAdd) -> Self {
        Self {
            title: q.title,
            due_at: q.due_at,
            starts_at: q.starts_at,
            tags: q.tags,
            priority: q.priority,
            estimate_minutes: q.estimate_minutes,
            recurrence: q.recurrence,
        }
    }
}

#[test]
fn the_corpus_is_read_as_a_person_means_it_at_least_95_percent_of_the_time() {
    let corpus = include_str!("fixtures/quickadd.jsonl");
    let mut total = 0;
    let mut exact = 0;
    for (n, line) in corpus
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: Case = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {}: not a corpus case: {e}", n + 1));
        let zone: chrono_tz::Tz = case.zone.parse().expect("an IANA zone");
        let got = Expected::from(quickadd::parse(&case.text, case.now, zone));
        total += 1;
        if got == case.expect {
            exact += 1;
        } else {
            eprintln!(
                "line {}: {:?}\n  expected {:?}\n  got      {:?}",
                n + 1,
                case.text,
                case.expect,
                got
            );
        }
    }
    let rate = exact as f64 / total as f64;
    eprintln!(
        "quick-add corpus: {exact}/{total} exact ({:.1}%)",
        rate * 100.0
    );
    assert!(total >= 200, "the corpus must hold at least 200 phrases");
    assert!(
        rate >= 0.95,
        "exact-match rate {:.1}% is below 95%",
        rate * 100.0
    );
}
