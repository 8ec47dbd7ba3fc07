//! Export, import, replay, verify: the log round-trips through JSON lines into a fresh prefix
//! and rebuilds the same read model.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{json, Value};

async fn rows(database_url: &str) -> Vec<projections::task_rows::TaskRecord> {
    let pool = projections::database::connect(database_url, 1)
        .await
        .unwrap();
    let mut rows: Vec<_> = projections::task_rows::load_all(&pool)
        .await
        .unwrap()
        .into_values()
        .collect();
    rows.sort_by_key(|r| r.task.id);
    rows
}

#[tokio::test]
async fn an_export_imported_into_a_fresh_prefix_replays_to_the_same_read_model() {
    let source = TestApp::spawn().await;
    let mut last = 0;
    for user in ["amy", "ben"] {
        let token = source.token(user);
        for i in 0..3 {
            let (id, _, _) = source.create_ok(&token, &format!("{user} task {i}")).await;
            for action in ["start", "pause", "complete"].iter().take(i + 1) {
                let answer: Value = source
                    .http
                    .post(source.url(&format!("/v1/tasks/{id}/{action}")))
                    .bearer_auth(&token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                last = answer["position"].as_u64().unwrap();
            }
        }
    }
    // The source's read model has caught up.
    let token = source.token("amy");
    let (id, _, _) = source.create_ok(&token, "last one").await;
    assert_eq!(source.get_task(&token, &id, last + 1).await.status(), 200);

    let dir = std::env::temp_dir().join(testkit::unique_token());
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let export = source
        .cli()
        .args(["events", "export", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count() as u64, last + 1);
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["headers"]["Tm-Event-Type"], "TaskCreated");
    assert!(first["payload"]["title"].is_string());

    // One owner only.
    let amy = source
        .cli()
        .args(["events", "export", "--owner", "amy"])
        .output()
        .unwrap();
    let amy = String::from_utf8(amy.stdout).unwrap();
    assert!(amy.lines().count() > 0);
    assert!(amy.lines().all(|l| l.contains(".amy.")));

    // Tail follows from a position, one owner only, as JSON lines.
    let mut tail = source
        .cli()
        .args(["events", "tail", "--owner", "ben", "--from", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_tailed = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(tail.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line
    };
    tail.kill().unwrap();
    let _ = tail.wait();
    let first_tailed: Value = serde_json::from_str(&first_tailed).unwrap();
    assert!(first_tailed["subject"]
        .as_str()
        .unwrap()
        .contains(".tasks.events.ben."));
    assert_eq!(first_tailed["headers"]["Tm-Event-Type"], "TaskCreated");

    // Into a fresh prefix and database, then replay and verify.
    let target_db = testkit::TestDatabase::planned();
    let target_nats = testkit::NatsScope::new();

    // A malformed line refuses the whole import, naming the line; nothing is appended.
    let broken = dir.join("broken.jsonl");
    std::fs::write(
        &broken,
        format!("{}\n{{\"subject\": 5}}\n", lines.lines().next().unwrap()),
    )
    .unwrap();
    let refused = common::cli(&target_db.url, &target_nats.prefix)
        .args(["events", "import", "--input"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.starts_with("error: line 2:"), "{stderr}");

    let import = common::cli(&target_db.url, &target_nats.prefix)
        .args(["events", "import", "--input"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert_eq!(
        String::from_utf8(import.stdout).unwrap().trim(),
        format!("imported {} event(s)", last + 1)
    );
    let again = common::cli(&target_db.url, &target_nats.prefix)
        .args(["events", "import", "--input"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert!(stderr.contains("already holds events"), "{stderr}");

    let mut projector = std::process::Command::new(env!("CARGO_BIN_EXE_taskmaster"))
        .env("DATABASE_URL", &target_db.url)
        .env("TASKMASTER_NATS_PREFIX", &target_nats.prefix)
        .env("TASKMASTER_HTTP_ADDR", "127.0.0.1:0")
        .args(["serve", "--roles", "projector"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pool = loop {
        if let Ok(pool) = projections::database::connect(&target_db.url, 1).await {
            break pool;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for _ in 0..200 {
        let at = projections::checkpoint::load(&pool, projections::TASKS_PROJECTION)
            .await
            .unwrap_or(0);
        if at > last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &projector.id().to_string()])
        .status()
        .unwrap();
    assert!(projector.wait().unwrap().success());

    let verify = common::cli(&target_db.url, &target_nats.prefix)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        rows(&target_db.url).await,
        rows(source.database_url()).await
    );
    std::fs::remove_dir_all(dir).unwrap();
}
