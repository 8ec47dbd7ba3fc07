//! Hostile input, end to end: schemathesis generates requests from `/openapi.json` against a
//! real instance (valid ones, invalid ones, and sequences that follow the links between
//! operations) with every check on: no 5xx; every status, content type, header and body as
//! documented; every invalid input refused and every valid one accepted; missing auth refused.
//!
//! Schemathesis is the pinned release below, installed by `.ci/run` (README: "Hostile
//! input"). The test fails, never skips, when it is missing. `TASKMASTER_SCHEMATHESIS_EXAMPLES`
//! and `TASKMASTER_SCHEMATHESIS_SEED` widen or vary a run by hand.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::json;

/// The release `.ci/run` installs; another one generates other cases, so it is refused.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Cases per operation and phase: under a minute of requests on the 2-core reference machine.
const DEFAULT_EXAMPLES: &str = "200";

/// A fixed seed, so a run that passed passes again; vary it by hand to explore.
const DEFAULT_SEED: &str = "20261202";

/// `schemathesis`, from where `.ci/run` installed it (`pip install --target`, named by
/// `TASKMASTER_TEST_SCHEMATHESIS_DIR`) or else from `PATH`, with the hooks of
/// `tests/schemathesis/hooks.py` on its Python path.
fn schemathesis() -> tokio::process::Command {
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let mut python_path: Vec<PathBuf> = vec![hooks];
    let mut command = match std::env::var_os("TASKMASTER_TEST_SCHEMATHESIS_DIR") {
        Some(dir) => {
            python_path.insert(0, dir.into());
            let mut command = tokio::process::Command::new("python3");
            command.args(["-m", "schemathesis.cli"]);
            command
        }
        None => tokio::process::Command::new("schemathesis"),
    };
    let python_path: OsString = std::env::join_paths(python_path).expect("paths without ':'");
    command
        .env("PYTHONPATH", python_path)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .kill_on_drop(true);
    command
}

/// Fails with how to install it when schemathesis is missing or another release.
async fn require_pinned_schemathesis() {
    let install = format!(
        "install it with `python3 -m pip install schemathesis=={SCHEMATHESIS_VERSION}` (or run \
         .ci/run, which puts it beside the build cache and sets TASKMASTER_TEST_SCHEMATHESIS_DIR)"
    );
    let output = schemathesis()
        .arg("--version")
        .output()
        .await
        .unwrap_or_else(|error| panic!("schemathesis cannot be run ({error}): {install}"));
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && version.trim().ends_with(SCHEMATHESIS_VERSION),
        "schemathesis {SCHEMATHESIS_VERSION} is needed, found {:?} {}: {install}",
        version.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
    );
}

/// Completes enough tasks for the ml role to publish a model, so `POST /v1/predictions`
/// answers 200 (before a first model it is a documented 503, which schemathesis counts as a
/// server error).
async fn train_a_first_model(app: &TestApp, token: &str) {
    for round in 0..10 {
        let draft = json!({"title": format!("Write report {round}"), "estimate_minutes": 30});
        app.create_and_complete(token, draft, 45).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let prediction = app
            .http
            .post(app.url("/v1/predictions"))
            .bearer_auth(token)
            .json(&json!({"title": "Write a report"}))
            .send()
            .await
            .unwrap();
        if prediction.status() == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "no model within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A live calendar feed token of a user with a few tasks, for the hooks to read the feed with
/// (a generated token is always refused). Another user than schemathesis's own, so that no
/// generated request can revoke it.
async fn a_calendar_feed_token(app: &TestApp) -> String {
    let owner = app.token("schemathesis_feed");
    app.create(
        &owner,
        json!({"title": "Feed, with; escapes", "priority": "high",
               "due_at": "2030-01-31T17:00:00Z", "tags": ["feed"]}),
    )
    .await;
    app.create_ok(&owner, "Another task").await;
    let minted = app
        .http
        .post(app.url("/v1/calendar/tokens"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 201);
    let minted: serde_json::Value = minted.json().await.unwrap();
    minted["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_with_every_check_finds_nothing_wrong_with_the_documented_api() {
    require_pinned_schemathesis().await;
    // Every role but automation: the endpoints schemathesis registers are never called (the
    // hooks point valid ones at loopback's discard port anyway), and no generated reminder or
    // recurrence acts behind its back.
    let roles = taskmaster::Roles {
        automation: false,
        ..taskmaster::Roles::all()
    };
    let app = TestApp::spawn_roles(
        testkit::TestDatabase::planned(),
        roles,
        &[
            // Thousands of requests in a minute from one user and one address.
            ("TASKMASTER_RATE_LIMIT_USER", "0"),
            ("TASKMASTER_RATE_LIMIT_IP", "0"),
            ("TASKMASTER_ML_RETRAIN_AFTER", "10"),
            // Generated positions the log has reached but the read model not yet: keep waits short.
            ("TASKMASTER_READ_WAIT_MS", "1000"),
        ],
    )
    .await;
    let token = app.token("schemathesis");
    train_a_first_model(&app, &token).await;
    let feed_token = a_calendar_feed_token(&app).await;

    let examples = std::env::var("TASKMASTER_SCHEMATHESIS_EXAMPLES")
        .unwrap_or_else(|_| DEFAULT_EXAMPLES.into());
    let seed =
        std::env::var("TASKMASTER_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    // Its working directory, so nothing it writes lands in the checkout.
    let scratch = std::env::temp_dir().join(format!("tm-schemathesis-{}", testkit::unique_token()));
    std::fs::create_dir_all(&scratch).unwrap();
    let started = Instant::now();
    let run = schemathesis()
        .current_dir(&scratch)
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", &examples, "--seed", &seed])
        // The live feed never ends its answer (server-sent events): each case would wait out
        // the request timeout. tests/live.rs covers it.
        .args(["--exclude-path", "/v1/events"])
        .args(["--request-timeout", "10", "--generation-database", "none"])
        .arg("--no-color")
        .env("TASKMASTER_SCHEMATHESIS_FEED_TOKEN", feed_token)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&scratch);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {}):\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Vec<&str> = report.lines().rev().take(4).collect();
    eprintln!(
        "schemathesis: {examples} examples per operation, seed {seed}, {:.0?}\n{}",
        started.elapsed(),
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
