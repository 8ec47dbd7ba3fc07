//! Quick-add benchmark (not a test): parses every phrase of the corpus
//! (`tests/fixtures/quickadd.json`) many times, one parse at a time, and reports the latency
//! percentiles of `domain::quickadd::parse`, the call behind `POST /v1/tasks/parse` and a create
//! with `text`. The target is p99 under 200 µs.
//!
//!     cargo bench --bench quickadd -- --rounds 200

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CORPUS: &str = include_str!("../tests/fixtures/quickadd.json");

/// The p99 the parser is held to.
const TARGET_P99: Duration = Duration::from_micros(200);

#[derive(Deserialize)]
struct Case {
    text: String,
    now: DateTime<Utc>,
    zone: String,
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let rounds = arg("--rounds", 200);
    let cases: Vec<(String, DateTime<Utc>, chrono_tz::Tz)> =
        serde_json::from_str::<Vec<Case>>(CORPUS)
            .expect("the corpus parses")
            .into_iter()
            .map(|c| (c.text, c.now, c.zone.parse().expect("an IANA zone")))
            .collect();
    // Warm up: caches, the allocator, the zone database.
    for (text, now, zone) in &cases {
        std::hint::black_box(domain::quickadd::parse(text, *now, *zone));
    }
    let mut samples = Vec::with_capacity(cases.len() * rounds as usize);
    let started = Instant::now();
    for _ in 0..rounds {
        for (text, now, zone) in &cases {
            let at = Instant::now();
            std::hint::black_box(domain::quickadd::parse(
                std::hint::black_box(text),
                *now,
                *zone,
            ));
            samples.push(at.elapsed());
        }
    }
    let total = started.elapsed();
    samples.sort_unstable();
    let p50 = percentile(&samples, 0.50);
    let p99 = percentile(&samples, 0.99);
    let max = samples[samples.len() - 1];
    println!(
        "quick-add parse: {} phrases x {rounds} rounds = {} parses in {total:.2?}",
        cases.len(),
        samples.len()
    );
    println!(
        "  p50 {p50:.2?}  p90 {:.2?}  p99 {p99:.2?}  max {max:.2?}",
        percentile(&samples, 0.90)
    );
    println!(
        "  target p99 < {TARGET_P99:?}: {}",
        if p99 < TARGET_P99 { "met" } else { "MISSED" }
    );
}
