//! Learning benchmark (not a test): generates a history through the event store (tasks of
//! four events: created with a varied title, estimate and tags, started, paused, completed
//! with an actual effort that depends on the owner and the kind of task), then measures
//! 1. a full retrain by replay, as `taskmaster replay ml` runs it: read and fold every event
//!    from the start, tune on the chronological holdout, refit, publish; and
//! 2. prediction latency of the published model through `Model::predict`, the call the API's
//!    handlers make (percentiles over many varied drafts, one at a time).
//!
//!     cargo bench --bench retrain -- --events 1000000

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use domain::*;
use eventstore::store::StoreOptions;
use eventstore::{apply_stream_definitions, CommandMeta, EventStore, Naming, StreamOptions};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERBS: [&str; 8] = [
    "Write", "Fix", "Review", "Plan", "Refactor", "Test", "Deploy", "Document",
];
const THINGS: [&str; 10] = [
    "the login page",
    "the quarterly report",
    "the billing service",
    "the onboarding flow",
    "the search index",
    "the release notes",
    "the database migration",
    "the design review",
    "the customer email",
    "the API client",
];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::now_v7().to_string(),
        correlation_id: uuid::Uuid::now_v7().to_string(),
        traceparent: None,
        client_supplied_id: false,
    }
}

/// A deterministic pseudo-random number from a counter (no rand dependency needed).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn draft(n: u64) -> (String, String, u32, Vec<&'static str>, u32) {
    let verb = (mix(n) % VERBS.len() as u64) as usize;
    let thing = (mix(n + 1) % THINGS.len() as u64) as usize;
    let estimate = [15u32, 30, 60, 90, 120, 240][(mix(n + 2) % 6) as usize];
    // Fixing and testing overrun, writing and planning run short; noise on top.
    let factor = match VERBS[verb] {
        "Fix" | "Test" => 1.8,
        "Write" | "Plan" => 0.7,
        _ => 1.0,
    } * (0.75 + (mix(n + 3) % 50) as f64 / 100.0);
    let actual = ((f64::from(estimate) * factor).round() as u32).max(1);
    let tags = if VERBS[verb] == "Fix" {
        vec!["bug"]
    } else {
        vec!["work"]
    };
    (
        format!("{} {}", VERBS[verb], THINGS[thing]),
        format!("Part {} of the {} work stream.", n % 17, THINGS[thing]),
        estimate,
        tags,
        actual,
    )
}

/// One writer: tasks of 4 events (create, start, pause, complete with an actual effort).
async fn write(store: Arc<EventStore>, writer: u64, events: u64) {
    let owner = UserId::parse(&format!("user{}", writer % 500)).expect("user");
    let mut written = 0;
    let mut n = writer * 1_000_000;
    while written < events {
        n += 1;
        let id = TaskId(uuid::Uuid::now_v7());
        let (title, description, estimate, tags, actual) = draft(n);
        let commands = [
            TaskCommand::Create(CreateTask {
                task_id: id,
                owner: owner.clone(),
                title: TaskTitle::parse(&title).expect("title"),
                description: Description::parse(&description).expect("description"),
                priority: Some([Priority::Low, Priority::Medium, Priority::High][(n % 3) as usize]),
                due_at: Some(Utc::now() + chrono::Duration::days((n % 10) as i64)),
                estimate_minutes: EffortMinutes::parse(i64::from(estimate), "estimate").ok(),
                tags: Tag::parse_list(&tags).expect("tags"),
                starts_at: None,
                time_zone: TimeZoneName::utc(),
                at: Utc::now(),
                placement: None,
                recurrence: None,
                series: None,
                reminders: Vec::new(),
            }),
            TaskCommand::Start(StartTask { at: Utc::now() }),
            TaskCommand::Pause(PauseTask { at: Utc::now() }),
            TaskCommand::Complete(CompleteTask {
                actual_minutes: EffortMinutes::parse(i64::from(actual), "actual").ok(),
                at: Utc::now(),
                open_children: Vec::new(),
                cascade: false,
            }),
        ];
        for command in &commands {
            if written >= events {
                break;
            }
            store
                .execute(&owner, id, command, None, &meta())
                .await
                .expect("append");
            written += 1;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let events = arg("--events", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let nats = testkit::NatsScope::new();
        let naming = Naming::new(&nats.prefix).expect("naming");
        let client = nats.client().await;
        let jetstream = async_nats::jetstream::new(client.clone());
        apply_stream_definitions(&jetstream, &naming, StreamOptions::default())
            .await
            .expect("stream");
        let store = Arc::new(
            EventStore::open(client, naming.clone(), StoreOptions::default())
                .await
                .expect("store"),
        );
        let writers = 64u64;
        let started = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| tokio::spawn(write(store.clone(), w, events / writers)))
            .collect();
        for handle in handles {
            handle.await.expect("writer");
        }
        let head = store.head_position().await.expect("head");
        println!();
        println!(
            "generated {head} events through the event store in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let registry = ml::ModelRegistry::open(&jetstream, &naming, 1)
            .await
            .expect("registry");
        let worker = ml::MlWorker::new(store, registry.clone(), ml::WorkerOptions::default());
        let started = Instant::now();
        let report = worker.rebuild(|_, _| {}).await.expect("retrain");
        let total = started.elapsed();
        let m = report.candidate;
        println!(
            "full retrain by replay of {} events ({} completions) in {:.1} s: replay {:.1} s ({:.0} events/s), tuning + refit {:.1} s, publishing {:.1} s",
            report.events,
            report.completions,
            total.as_secs_f64(),
            report.replay.as_secs_f64(),
            report.events as f64 / report.replay.as_secs_f64(),
            report.training.as_secs_f64(),
            (total - report.replay - report.training).as_secs_f64()
        );
        println!(
            "  holdout {} completions: MAE {:.1} min (median baseline {:.1}, mean baseline {:.1}), MdAE {:.1}, SA {:.1}%; decision {:?}",
            m.holdout, m.mae, m.median_baseline_mae, m.mean_baseline_mae, m.mdae, m.sa,
            match report.decision { ml::worker::Decision::Published(p) => format!("published v{}", p.version), ml::worker::Decision::Kept(_) => "kept".into() }
        );

        let model = registry.current().await.expect("load").expect("a model");
        let owners: Vec<UserId> = (0..500)
            .map(|u| UserId::parse(&format!("user{u}")).expect("user"))
            .collect();
        let drafts: Vec<ml::TaskInput> = (0..2_000u64)
            .map(|n| {
                let (title, description, estimate, tags, _) = draft(n + 7_777_777);
                ml::TaskInput {
                    title,
                    description: Some(description),
                    tags: tags.into_iter().map(String::from).collect(),
                    priority: Some(Priority::Medium),
                    estimate_minutes: Some(estimate),
                    due_at: Some(Utc::now() + chrono::Duration::days(2)),
                    created_at: Utc::now(),
                }
            })
            .collect();
        let rounds = 100_000usize;
        let mut latencies = Vec::with_capacity(rounds);
        let mut checksum = 0u64;
        for i in 0..rounds {
            let started = Instant::now();
            let prediction = model.predict(&owners[i % owners.len()], &drafts[i % drafts.len()]);
            latencies.push(started.elapsed().as_secs_f64() * 1e6);
            checksum += u64::from(prediction.effort_minutes);
        }
        latencies.sort_unstable_by(f64::total_cmp);
        println!(
            "Model::predict over {rounds} drafts ({} owners asking, {} of them with a history): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs (checksum {checksum})",
            owners.len(),
            model.owners.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            latencies[latencies.len() - 1]
        );
    });
}
