//! Authentication end to end: RS256 and EdDSA tokens against a JWKS file or URL, the refusals
//! as a client sees them (401 problem+json), and the real binary's logs, which must never hold
//! a secret or a token.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use api::auth::Claims;
use common::{problem, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(user: &str) -> Claims {
    Claims::for_user(&domain::UserId::parse(user).unwrap(), now(), 600)
}

fn signed(algorithm: Algorithm, kid: Option<&str>, claims: &Claims, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(user: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    signed(Algorithm::RS256, Some("rsa-test-1"), &claims(user), &key)
}

fn eddsa(user: &str) -> String {
    let key = EncodingKey::from_ed_pem(&fixture("ed25519-private.pem")).unwrap();
    signed(Algorithm::EdDSA, Some("ed-test-1"), &claims(user), &key)
}

/// An HS256 token whose "secret" is the RSA public key, naming the RSA key's kid.
fn confused(user: &str) -> String {
    let key = EncodingKey::from_secret(&fixture("rsa-public.pem"));
    signed(Algorithm::HS256, Some("rsa-test-1"), &claims(user), &key)
}

fn unsigned(user: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
        engine.encode(serde_json::to_vec(&claims(user)).unwrap())
    )
}

async fn list(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/tasks"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_from_a_jwks_file_are_accepted_and_impostors_are_401() {
    let jwks = format!("{FIXTURES}/jwks.json");
    let app = TestApp::spawn_with(&[("TASKMASTER_JWKS", &jwks)]).await;
    let created = app
        .create(&rs256("rsa-user"), json!({"title": "signed"}))
        .await;
    assert_eq!(created.status(), 201);
    let created = app
        .create(&eddsa("ed-user"), json!({"title": "signed"}))
        .await;
    assert_eq!(created.status(), 201);
    // The secret was set explicitly too, so HS256 stays on.
    assert_eq!(list(&app, &app.token("hs-user")).await.status(), 200);

    let body = problem(list(&app, &confused("mallory")).await, 401).await;
    assert_eq!(body["detail"], "the token's signature is invalid");
    let body = problem(list(&app, &unsigned("mallory")).await, 401).await;
    assert_eq!(body["detail"], "the token's algorithm is not accepted");
    let other = EncodingKey::from_rsa_pem(&fixture("rsa-other-private.pem")).unwrap();
    let unknown = signed(Algorithm::RS256, Some("rsa-test-2"), &claims("m"), &other);
    let body = problem(list(&app, &unknown).await, 401).await;
    assert_eq!(body["detail"], "the token's key id (kid) is not known");
    let rs512 = signed(
        Algorithm::RS512,
        Some("rsa-test-1"),
        &claims("m"),
        &EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap(),
    );
    let body = problem(list(&app, &rs512).await, 401).await;
    assert_eq!(body["detail"], "the token's algorithm is not accepted");
    app.stop().await;
}

#[tokio::test]
async fn a_jwks_url_is_fetched_at_start_and_an_issuer_and_audience_are_enforced() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = fixture("jwks.json");
    let router = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let served = served.clone();
            async move { ([("content-type", "application/json")], served) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let url = format!("http://{address}/.well-known/jwks.json");
    let app = TestApp::spawn_with(&[
        ("TASKMASTER_JWKS", &url),
        ("TASKMASTER_JWT_ISSUER", "https://id.example"),
        ("TASKMASTER_JWT_AUDIENCE", "taskmaster"),
    ])
    .await;
    let key = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    let mut good = claims("url-user");
    good.iss = Some("https://id.example".into());
    good.aud = Some("taskmaster".into());
    let token = signed(Algorithm::RS256, Some("rsa-test-1"), &good, &key);
    assert_eq!(list(&app, &token).await.status(), 200);

    let mut wrong_issuer = good.clone();
    wrong_issuer.iss = Some("https://evil.example".into());
    let token = signed(Algorithm::RS256, Some("rsa-test-1"), &wrong_issuer, &key);
    let body = problem(list(&app, &token).await, 401).await;
    assert_eq!(body["detail"], "the token's issuer is not accepted");
    let mut wrong_audience = good.clone();
    wrong_audience.aud = Some("billing".into());
    let token = signed(Algorithm::RS256, Some("rsa-test-1"), &wrong_audience, &key);
    let body = problem(list(&app, &token).await, 401).await;
    assert_eq!(body["detail"], "the token's audience is not accepted");
    // The test helper's HS256 token names neither (which one is reported first varies).
    let body = problem(list(&app, &app.token("hs-user")).await, 401).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail == "the token lacks the required claim `iss`"
            || detail == "the token lacks the required claim `aud`",
        "{detail}"
    );
    app.stop().await;
    server.abort();
}

/// Waits until `path` holds the address the server logged, or panics with what it logged.
fn logged_address(path: &std::path::Path, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        for line in log.lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(address) = entry["address"].as_str() {
                return address.to_owned();
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited ({status}) before serving:\n{log}");
        }
        assert!(Instant::now() < deadline, "no address logged:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_binary_never_logs_the_secret_the_tokens_or_the_database_password() {
    const JWT_SECRET: &str = "jwt-canary-secret-0123456789abcdef0123456789";
    const DB_PASSWORD: &str = "s3cret-canary";
    let db = testkit::TestDatabase::planned();
    let scope = testkit::NatsScope::new();
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    assert!(
        !user.contains(':'),
        "the test database URL has no password yet"
    );
    let database_url = format!("{scheme}://{user}:{DB_PASSWORD}@{host}");
    let dir = std::env::temp_dir().join(format!("tm-auth-logs-{}", testkit::unique_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let stdout_path = dir.join("stdout");
    let stderr_path = dir.join("stderr");
    let mut child = common::cli(&database_url, &scope.prefix)
        .env("TASKMASTER_JWT_SECRET", JWT_SECRET)
        .env("TASKMASTER_JWKS", format!("{FIXTURES}/jwks.json"))
        .env("TASKMASTER_HTTP_ADDR", "127.0.0.1:0")
        .env("TASKMASTER_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("REDIS_URL", testkit::redis_url())
        .args(["serve", "--roles", "api,projector"])
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let address = logged_address(&stderr_path, &mut child);

    let user = domain::UserId::parse("canary").unwrap();
    let valid_hs = api::auth::mint_hs256(JWT_SECRET.as_bytes(), &user, now(), 600);
    let expired = api::auth::mint_hs256(JWT_SECRET.as_bytes(), &user, now() - 7200, 600);
    let forged = api::auth::mint_hs256(b"forged-canary-secret-0000000000000", &user, now(), 600);
    let tokens = [
        valid_hs.clone(),
        rs256("canary"),
        eddsa("canary"),
        expired,
        forged,
        confused("canary"),
        unsigned("canary"),
        "garbage-canary-token".to_owned(),
        // A client pasting the secret itself as its token.
        JWT_SECRET.to_owned(),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<u16> = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for token in &tokens {
            let answer = http
                .post(format!("http://{address}/v1/tasks"))
                .bearer_auth(token)
                .header("Idempotency-Key", format!("key-{}", statuses.len()))
                .json(&json!({ "title": "log canary" }))
                .send()
                .await
                .unwrap();
            statuses.push(answer.status().as_u16());
        }
        statuses
    });
    assert_eq!(statuses, [201, 201, 201, 401, 401, 401, 401, 401, 401]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());

    let mut logs = String::new();
    for path in [&stdout_path, &stderr_path] {
        std::fs::File::open(path)
            .unwrap()
            .read_to_string(&mut logs)
            .unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // The logs are there and at debug level: the refusals were logged, without the tokens.
    assert!(logs.contains("refused a bearer token"), "{logs}");
    assert!(logs.contains("the token has expired"), "{logs}");
    let private_key = String::from_utf8(fixture("rsa-private.pem")).unwrap();
    let private_key_line = private_key.lines().nth(1).unwrap();
    let mut needles: Vec<&str> = vec![JWT_SECRET, DB_PASSWORD, private_key_line];
    needles.extend(tokens.iter().map(String::as_str));
    // Each token's signature on its own too, in case a token were logged cut up.
    let signatures: Vec<&str> = tokens
        .iter()
        .filter_map(|t| t.rsplit('.').next())
        .filter(|s| s.len() > 16)
        .collect();
    needles.extend(signatures);
    for needle in needles {
        assert!(
            !logs.contains(needle),
            "the logs hold a secret or token: {needle}"
        );
    }
}
