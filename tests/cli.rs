//! The `taskmaster` binary as a user runs it: one-line errors, which service is missing and
//! how to start it.

use std::process::Command;

fn taskmaster() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskmaster"));
    command.env_remove("TASKMASTER_ENV").env(
        "TASKMASTER_JWT_SECRET",
        "cli-test-secret-0123456789abcdef0123",
    );
    command
}

#[test]
fn token_prints_a_token_that_the_api_accepts() {
    let output = taskmaster()
        .args(["token", "--user", "alice"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    let verifier = api::auth::TokenVerifier::hs256(b"cli-test-secret-0123456789abcdef0123");
    assert_eq!(verifier.verify(token.trim()).unwrap().as_str(), "alice");
}

#[test]
fn token_mints_for_the_configured_issuer_and_audience() {
    let output = taskmaster()
        .env("TASKMASTER_JWT_ISSUER", "https://id.example")
        .env("TASKMASTER_JWT_AUDIENCE", "taskmaster")
        .args(["token", "--user", "alice"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    let rules = api::auth::ClaimRules {
        issuer: Some("https://id.example".into()),
        audience: Some("taskmaster".into()),
        ..api::auth::ClaimRules::default()
    };
    let verifier =
        api::auth::TokenVerifier::new(Some(b"cli-test-secret-0123456789abcdef0123"), rules);
    assert_eq!(verifier.verify(token.trim()).unwrap().as_str(), "alice");
    // Without those claims the plain verifier would refuse it as meant for an audience.
    let plain = api::auth::TokenVerifier::hs256(b"cli-test-secret-0123456789abcdef0123");
    assert!(plain.verify(token.trim()).is_err());
}

#[test]
fn token_refuses_when_a_jwks_turned_hs256_off() {
    let output = taskmaster()
        .env_remove("TASKMASTER_JWT_SECRET")
        .env("TASKMASTER_JWKS", "/nonexistent/jwks.json")
        .args(["token", "--user", "alice"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("HS256 is off"), "{stderr}");
}

#[test]
fn an_unreadable_jwks_stops_the_start_with_one_line_naming_it_even_in_production() {
    // Production with a JWKS and no secret passes the settings: the next thing to fail is the
    // missing file, named on one line, before any service is dialled.
    let output = taskmaster()
        .env("TASKMASTER_ENV", "production")
        .env_remove("TASKMASTER_JWT_SECRET")
        .env("TASKMASTER_JWKS", "/nonexistent/taskmaster-jwks.json")
        .env("TASKMASTER_NATS_URL", "nats://127.0.0.1:1")
        .args(["serve", "--roles", "api"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: TASKMASTER_JWKS: cannot read /nonexistent/taskmaster-jwks.json"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("TASKMASTER_JWT_SECRET"), "{stderr}");
}

#[test]
fn an_unreachable_jwks_url_stops_the_start_naming_the_url() {
    let output = taskmaster()
        .env(
            "TASKMASTER_JWKS",
            "http://127.0.0.1:1/jwks.json?access=hunter2",
        )
        .env("TASKMASTER_NATS_URL", "nats://127.0.0.1:1")
        .args(["serve", "--roles", "api"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: TASKMASTER_JWKS: cannot fetch http://127.0.0.1:1/jwks.json"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_bad_user_id_is_a_one_line_error() {
    let output = taskmaster()
        .args(["token", "--user", "a.b"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --user"), "{stderr}");
}

#[test]
fn production_refuses_to_start_with_the_development_secret() {
    let output = taskmaster()
        .env("TASKMASTER_ENV", "production")
        .env_remove("TASKMASTER_JWT_SECRET")
        .args(["serve", "--roles", "api"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("TASKMASTER_JWT_SECRET"), "{stderr}");
}

#[test]
fn an_unknown_role_is_refused_by_name() {
    let output = taskmaster()
        .args(["serve", "--roles", "api,web"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown role \"web\""), "{stderr}");
}

#[test]
fn dev_says_which_service_is_unreachable_and_how_to_start_it() {
    // Nothing listens on loopback port 1.
    let output = taskmaster()
        .env("TASKMASTER_NATS_URL", "nats://127.0.0.1:1")
        .env("TASKMASTER_HTTP_ADDR", "127.0.0.1:0")
        .arg("dev")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("NATS is not reachable at nats://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("start it with: start-stop-daemon"),
        "{stderr}"
    );

    let output = taskmaster()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/taskmaster")
        .env("TASKMASTER_HTTP_ADDR", "127.0.0.1:0")
        .env("TASKMASTER_NATS_PREFIX", testkit::unique_token())
        .arg("dev")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("PostgreSQL is not reachable"), "{stderr}");
    assert!(stderr.contains("pg_ctlcluster"), "{stderr}");
}

#[test]
fn migrate_creates_the_database_and_can_run_twice() {
    let db = testkit::TestDatabase::planned();
    for _ in 0..2 {
        let output = taskmaster()
            .env("DATABASE_URL", &db.url)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8(output.stdout).unwrap().trim(),
            "migrations applied"
        );
    }
}

#[test]
fn nats_apply_creates_the_stream_and_can_run_twice() {
    let scope = testkit::NatsScope::new();
    for _ in 0..2 {
        let output = taskmaster()
            .env("TASKMASTER_NATS_PREFIX", &scope.prefix)
            .args(["nats", "apply"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            stdout.contains(&format!("{}_TASKS", scope.prefix)),
            "{stdout}"
        );
    }
}

#[test]
fn sigterm_drains_requests_and_commits_the_projection_before_exiting() {
    use std::io::{BufRead, BufReader};

    let db = testkit::TestDatabase::planned();
    let scope = testkit::NatsScope::new();
    let mut child = taskmaster()
        .env("DATABASE_URL", &db.url)
        .env("TASKMASTER_NATS_PREFIX", &scope.prefix)
        .env("TASKMASTER_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .args(["serve", "--roles", "api,projector"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split("address=").nth(1).map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .expect("the server logs its address");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let last_position = runtime.block_on(async {
        let http = reqwest::Client::new();
        let user = domain::UserId::parse("sigterm").unwrap();
        let token = api::auth::mint_hs256(
            b"cli-test-secret-0123456789abcdef0123",
            &user,
            chrono::Utc::now().timestamp(),
            600,
        );
        let mut last = 0;
        for i in 0..50 {
            let answer: serde_json::Value = http
                .post(format!("http://{address}/v1/tasks"))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "title": format!("task {i}") }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            last = answer["position"].as_u64().unwrap();
        }
        last
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful exit, got {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("projector stopped")),
        "{rest:?}"
    );

    // Every acknowledged command is in the read model, checkpoint included.
    let checkpoint = runtime.block_on(async {
        let pool = projections::database::connect(&db.url, 1).await.unwrap();
        projections::checkpoint::load(&pool, projections::TASKS_PROJECTION)
            .await
            .unwrap()
    });
    assert!(checkpoint <= last_position);
    // The projector may legitimately stop before reaching the head; a restart resumes there.
    // What must hold is that nothing past the checkpoint was half-applied.
    let rows = runtime.block_on(async {
        let pool = projections::database::connect(&db.url, 1).await.unwrap();
        projections::task_rows::load_all(&pool).await.unwrap()
    });
    assert_eq!(
        rows.len() as u64,
        checkpoint,
        "one row per applied create, none beyond the checkpoint"
    );
}

#[test]
fn dead_letters_list_says_when_there_are_none_and_discard_refuses_unknown_positions() {
    let db = testkit::TestDatabase::planned();
    let output = taskmaster()
        .env("DATABASE_URL", &db.url)
        .args(["dead-letters", "list"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        "no dead letters"
    );

    let output = taskmaster()
        .env("DATABASE_URL", &db.url)
        .args(["dead-letters", "discard", "--position", "5"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8(output.stderr).unwrap().trim(),
        "error: no dead letter at position 5"
    );
}

/// Runs the binary on a database and NATS prefix of the test's own, with `extra` settings.
fn isolated<'a>(
    db: &'a testkit::TestDatabase,
    scope: &'a testkit::NatsScope,
    extra: &'a [(&'a str, &'a str)],
) -> impl Fn(&[&str]) -> std::process::Output + 'a {
    move |args| {
        taskmaster()
            .env("DATABASE_URL", &db.url)
            .env("TASKMASTER_NATS_PREFIX", &scope.prefix)
            .envs(extra.iter().copied())
            .args(args)
            .output()
            .unwrap()
    }
}

/// Tampers with the read model: a task no event ever created.
fn insert_a_row_the_log_does_not_imply(database_url: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = projections::database::connect(database_url, 1).await.unwrap();
        sqlx::query(
            "INSERT INTO tasks (id, owner_id, title, status, created_at, updated_at, version, position)
             VALUES ($1, 'ghost', 'not in the log', 'open', now(), now(), 1, 1)",
        )
        .bind(uuid::Uuid::now_v7())
        .execute(&pool)
        .await
        .unwrap();
    });
}

#[test]
fn verify_is_clean_on_an_empty_system_and_exits_1_on_a_tampered_read_model() {
    let db = testkit::TestDatabase::planned();
    let scope = testkit::NatsScope::new();
    let run = isolated(&db, &scope, &[]);
    assert!(run(&["nats", "apply"]).status.success());
    let clean = run(&["verify"]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(String::from_utf8(clean.stdout).unwrap().contains(": clean"));

    insert_a_row_the_log_does_not_imply(&db.url);
    let dirty = run(&["verify"]);
    assert_eq!(dirty.status.code(), Some(1));
    let stdout = String::from_utf8(dirty.stdout).unwrap();
    assert!(
        stdout.contains("in the read model but not implied by the log"),
        "{stdout}"
    );
    assert!(String::from_utf8(dirty.stderr)
        .unwrap()
        .starts_with("error: the read model differs"));
}

#[test]
fn replay_rebuilds_what_verify_found_wrong_with_progress_lines_off_a_terminal() {
    let db = testkit::TestDatabase::planned();
    let scope = testkit::NatsScope::new();
    let run = isolated(&db, &scope, &[("TASKMASTER_PROJECTION_PARTITIONS", "3")]);
    assert!(run(&["migrate"]).status.success());
    insert_a_row_the_log_does_not_imply(&db.url);
    assert_eq!(run(&["verify"]).status.code(), Some(1));

    let replayed = run(&["replay", "tasks"]);
    let stderr = String::from_utf8(replayed.stderr).unwrap();
    assert!(replayed.status.success(), "{stderr}");
    let stdout = String::from_utf8(replayed.stdout).unwrap();
    assert!(
        stdout.contains("rebuilt tasks at position 0") && stdout.contains("3 partition(s)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("replay tasks: "),
        "plain progress lines: {stderr}"
    );
    assert!(run(&["verify"]).status.success());

    let refused = run(&["replay", "bogus"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: unknown projection \"bogus\""),
        "{stderr}"
    );
}

#[test]
fn ml_eval_scores_the_story_point_sample_against_its_baselines() {
    let csv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/storypoints/jirasoftware.csv"
    );
    if !std::path::Path::new(csv).exists() {
        // The sample ships beside the repository; without it there is nothing to score.
        eprintln!("skipping: {csv} not found");
        return;
    }
    let output = taskmaster()
        .args(["ml", "eval", "--csv", csv])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rows"]["train"], 211);
    assert_eq!(report["rows"]["val"], 70);
    assert_eq!(report["rows"]["test"], 71);
    let test = &report["test"];
    // The published baselines of this file, recomputed: training Mean 2.37, Median 2.28,
    // random guessing 3.40.
    assert!((test["mean_baseline_mae"].as_f64().unwrap() - 2.37).abs() < 0.01);
    assert!((test["median_baseline_mae"].as_f64().unwrap() - 2.28).abs() < 0.01);
    assert!((report["random_guess_mae"].as_f64().unwrap() - 3.40).abs() < 0.01);
    // And the model beats both constant baselines by a clear margin.
    let mae = test["mae"].as_f64().unwrap();
    assert!(mae < 2.0, "test MAE {mae}");
    assert!(test["sa"].as_f64().unwrap() > 40.0);
}

#[test]
fn ml_eval_refuses_a_file_without_the_expected_columns_in_one_line() {
    let dir = std::env::temp_dir().join(testkit::unique_token());
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content, message) in [
        (
            "columns.csv",
            "key,title\nA-1,x\n",
            "no column \"issuekey\"",
        ),
        (
            "label.csv",
            "issuekey,title,description,storypoint,split_mark\nA-1,x,,many,train\n",
            "storypoint \"many\" is not a non-negative number",
        ),
        (
            "split.csv",
            "issuekey,title,description,storypoint,split_mark\nA-1,x,,3,later\n",
            "split_mark \"later\"",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let output = taskmaster()
            .args(["ml", "eval", "--csv", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let missing = taskmaster()
        .args(["ml", "eval", "--csv", "/nonexistent/file.csv"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8(missing.stderr).unwrap().lines().count(),
        1
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_ml_trains_from_the_log_publishes_once_then_keeps_the_version() {
    let db = testkit::TestDatabase::planned();
    let scope = testkit::NatsScope::new();
    let run = isolated(&db, &scope, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(write_completed_tasks(&scope.prefix, 40));

    let first = run(&["replay", "ml"]);
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("40 completion(s)"), "{stdout}");
    assert!(stdout.contains("published model version 1"), "{stdout}");

    // Nothing new since version 1: nothing to judge a candidate on, so version 1 stays.
    let second = run(&["replay", "ml"]);
    let stdout = String::from_utf8(second.stdout).unwrap();
    assert!(second.status.success());
    assert!(stdout.contains("kept the serving version"), "{stdout}");
}

/// Appends `count` created-and-completed tasks of one owner under `prefix`.
async fn write_completed_tasks(prefix: &str, count: u32) {
    use domain::{CompleteTask, CreateTask, EffortMinutes, TaskCommand, TaskId, TaskTitle};
    let client = async_nats::connect(testkit::nats_url()).await.unwrap();
    let naming = eventstore::Naming::new(prefix).unwrap();
    eventstore::apply_stream_definitions(
        &async_nats::jetstream::new(client.clone()),
        &naming,
        eventstore::StreamOptions { replicas: 1 },
    )
    .await
    .unwrap();
    let store = eventstore::EventStore::open(client, naming, Default::default())
        .await
        .unwrap();
    let owner = domain::UserId::parse("rae").unwrap();
    let meta = || eventstore::CommandMeta {
        command_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: "test".into(),
        traceparent: None,
        client_supplied_id: false,
    };
    for i in 0..count {
        let task = TaskId(uuid::Uuid::new_v4());
        let at = chrono::Utc::now();
        let create = TaskCommand::Create(CreateTask {
            task_id: task,
            owner: owner.clone(),
            title: TaskTitle::parse(if i % 2 == 0 {
                "Write report"
            } else {
                "Fix bug"
            })
            .unwrap(),
            description: None,
            priority: Some(domain::Priority::Medium),
            due_at: None,
            estimate_minutes: Some(EffortMinutes::parse(30, "estimate").unwrap()),
            tags: vec![],
            starts_at: None,
            time_zone: domain::TimeZoneName::utc(),
            at,
            placement: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
        });
        let complete = TaskCommand::Complete(CompleteTask {
            actual_minutes: Some(
                EffortMinutes::parse(if i % 2 == 0 { 60 } else { 30 }, "actual").unwrap(),
            ),
            at,
            open_children: Vec::new(),
            cascade: false,
        });
        store
            .execute(&owner, task, &create, None, &meta())
            .await
            .unwrap();
        store
            .execute(&owner, task, &complete, None, &meta())
            .await
            .unwrap();
    }
}
