//! Load harness for the command path (not a test).
//!
//! Starts taskmaster in this process on the local services (its own database and NATS prefix,
//! removed afterwards), drives `POST /v1/tasks` from N concurrent HTTP clients for a while,
//! then measures raw JetStream appends with the same headers (expected sequence, msg id, the
//! `Tm-*` headers, `traceparent`) at the same concurrency, and prints both with their ratio.
//!
//!     cargo bench --bench load -- --clients 64 --seconds 10 [--with-projector]
//!     cargo bench --bench load -- --clients 64 --seconds 10 --lag-rate 5000 [--partitions N]
//!     cargo bench --bench load -- --clients 64 --seconds 10 --traced
//!
//! `--traced` installs the telemetry `main` installs (the OpenTelemetry layer, no exporter,
//! logs at warn), so every request records its spans as in production; without it the spans
//! cost nothing because no subscriber is listening.

#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use taskmaster::{Application, Roles, Settings};
use tokio::sync::oneshot;

/// mimalloc instead of glibc malloc: the request path allocates from every worker thread, and
/// glibc's arena locks showed up as contention under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    clients: usize,
    seconds: u64,
    with_projector: bool,
    /// When set: after the throughput phase, drive this many commands/s (with the projector
    /// running) and measure the lag from each answer until the read model shows its position.
    lag_rate: Option<u32>,
    /// `TASKMASTER_PROJECTION_PARTITIONS` of the run (default: the setting's default).
    partitions: Option<u16>,
    /// Record spans as the binary does (see the module docs).
    traced: bool,
}

fn options() -> Options {
    let mut options = Options {
        clients: 64,
        seconds: 10,
        with_projector: false,
        lag_rate: None,
        partitions: None,
        traced: false,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--clients" => {
                options.clients = args[i + 1].parse().expect("--clients N");
                i += 1;
            }
            "--seconds" => {
                options.seconds = args[i + 1].parse().expect("--seconds N");
                i += 1;
            }
            "--with-projector" => options.with_projector = true,
            "--traced" => options.traced = true,
            "--partitions" => {
                options.partitions = Some(args[i + 1].parse().expect("--partitions N"));
                i += 1;
            }
            "--lag-rate" => {
                options.lag_rate = Some(args[i + 1].parse().expect("--lag-rate N"));
                options.with_projector = true;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    options
}

struct Figures {
    operations: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index]
    }
}

async fn run_for<F, Fut>(clients: usize, seconds: u64, work: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let work = work.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if work(client, n).await {
                        latencies.push(t.elapsed());
                    }
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("client task"));
    }
    Figures {
        operations: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn main() {
    let options = options();
    let _telemetry = options.traced.then(|| {
        telemetry::init(&telemetry::TelemetryConfig {
            service_name: "taskmaster-load".into(),
            log_format: telemetry::LogFormat::Text,
            log_filter: "warn".into(),
            otlp_endpoint: None,
        })
        .expect("telemetry installs")
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(options));
}

async fn bench(options: Options) {
    let db = testkit::TestDatabase::planned();
    let nats = testkit::NatsScope::new();
    let secret = "bench-secret-0123456789abcdef0123456789";
    let partitions = options.partitions.map(|p| p.to_string());
    let vars = [
        (
            "TASKMASTER_PROJECTION_PARTITIONS",
            partitions.unwrap_or_default(),
        ),
        ("DATABASE_URL", db.url.clone()),
        ("TASKMASTER_NATS_PREFIX", nats.prefix.clone()),
        ("TASKMASTER_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TASKMASTER_JWT_SECRET", secret.to_owned()),
        ("TASKMASTER_NATS_URL", testkit::nats_url()),
        // 64 clients as one user from one address at ~20k req/s: any sensible limit would
        // refuse most of it, and a Redis round trip per request would change the figures the
        // README compares across releases. The limiter's cost is its own question.
        ("TASKMASTER_RATE_LIMIT_USER", "0".to_owned()),
        ("TASKMASTER_RATE_LIMIT_IP", "0".to_owned()),
    ];
    let settings = Settings::from_lookup(|name| {
        vars.iter()
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    })
    .expect("settings");
    // The insights and ml workers stay off: these figures are about the command path and the
    // projection, and the README compares them across releases.
    let roles = Roles {
        api: true,
        projector: options.with_projector,
        insights: false,
        ml: false,
        automation: false,
    };
    let app = Application::build(&settings, roles).await.expect("app");
    let address = app.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let user = domain::UserId::parse("bench").expect("user");
    let token = api::auth::mint_hs256(
        secret.as_bytes(),
        &user,
        chrono::Utc::now().timestamp(),
        3600,
    );
    let body = Bytes::from_static(
        br#"{"title":"Prepare the quarterly planning review","description":"Collect the numbers from every team and draft the slides.","priority":"high","estimate_minutes":90,"tags":["planning","q3"],"due_at":"2030-03-01T17:00:00Z"}"#,
    );
    // One keep-alive HTTP/1.1 connection per client: a lean client leaves the CPU to the server.
    let mut senders = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        senders.push(Arc::new(tokio::sync::Mutex::new(sender)));
    }
    let create = {
        let authorization = format!("Bearer {token}");
        let host = address.to_string();
        move |client: usize, _| {
            let sender = senders[client].clone();
            let request = hyper::Request::post("/v1/tasks")
                .header("host", host.as_str())
                .header("authorization", authorization.as_str())
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(body.clone()))
                .expect("request");
            async move {
                let mut sender = sender.lock().await;
                match sender.send_request(request).await {
                    Ok(response) if response.status() == 201 => {
                        let body = http_body_util::BodyExt::collect(response.into_body())
                            .await
                            .ok()?
                            .to_bytes();
                        serde_json::from_slice::<serde_json::Value>(&body).ok()?["position"]
                            .as_u64()
                    }
                    _ => None,
                }
            }
        }
    };
    let create = Arc::new(create);
    // Warm up connections and caches.
    let _ = run_for(options.clients, 1, {
        let create = create.clone();
        move |c, n| {
            let answer = create(c, n);
            async move { answer.await.is_some() }
        }
    })
    .await;
    let mut http_figures = run_for(options.clients, options.seconds, {
        let create = create.clone();
        move |c, n| {
            let answer = create(c, n);
            async move { answer.await.is_some() }
        }
    })
    .await;
    let lag = match options.lag_rate {
        Some(rate) => {
            let pool = projections::database::connect(&db.url, 2)
                .await
                .expect("pool");
            let positions = projections::PositionWatch::start(
                pool,
                projections::TASKS_PROJECTION,
                tokio_util::sync::CancellationToken::new(),
            )
            .await
            .expect("position watch");
            // Let the projector drain the throughput phase first (a backlog would only make
            // the lag look worse).
            tokio::time::sleep(Duration::from_secs(3)).await;
            let interval = Duration::from_secs_f64(options.clients as f64 / f64::from(rate));
            let stop_at = Instant::now() + Duration::from_secs(options.seconds);
            let handles: Vec<_> = (0..options.clients)
                .map(|client| {
                    let create = create.clone();
                    let positions = positions.clone();
                    tokio::spawn(async move {
                        let mut ticks = tokio::time::interval(interval);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        let mut lags = Vec::new();
                        while Instant::now() < stop_at {
                            ticks.tick().await;
                            if let Some(position) = create(client, 0).await {
                                let answered = Instant::now();
                                if positions
                                    .wait_for(position, Duration::from_secs(5))
                                    .await
                                    .is_ok()
                                {
                                    lags.push(answered.elapsed());
                                }
                            }
                        }
                        lags
                    })
                })
                .collect();
            let started = Instant::now();
            let mut lags = Vec::new();
            for handle in handles {
                lags.extend(handle.await.expect("lag client"));
            }
            Some((
                rate,
                Figures {
                    operations: lags.len(),
                    elapsed: started.elapsed(),
                    latencies: lags,
                },
            ))
        }
        None => None,
    };
    let _ = stop.send(());
    let _ = server.await;

    // Raw JetStream appends with the same headers, same concurrency.
    let client = nats.client().await;
    let jetstream = async_nats::jetstream::new(client);
    let naming = eventstore::Naming::new(&nats.prefix).expect("naming");
    let payload = Bytes::from_static(
        br#"{"task_id":"01890000-0000-7000-8000-000000000000","owner_id":"bench","title":"Prepare the quarterly planning review","description":"Collect the numbers from every team and draft the slides.","priority":"high","due_at":"2030-03-01T17:00:00Z","estimate_minutes":90,"tags":["planning","q3"],"occurred_at":"2026-11-23T10:00:00Z"}"#,
    );
    let mut raw = run_for(options.clients, options.seconds, {
        let jetstream = jetstream.clone();
        let naming = naming.clone();
        move |_, _| {
            let id = uuid::Uuid::now_v7();
            let subject = format!("{}.tasks.events.bench.{id}", naming.prefix());
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .header("Tm-Event-Type", "TaskCreated")
                .header("Tm-Event-Version", "1")
                .header("Tm-Command-Id", id.to_string().as_str())
                .header("Tm-Correlation-Id", id.to_string().as_str())
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .message_id(id.to_string())
                .expected_last_subject_sequence(0);
            let jetstream = jetstream.clone();
            async move {
                match jetstream.send_publish(subject, publish).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                }
            }
        }
    })
    .await;

    println!();
    println!(
        "taskmaster load harness: {} clients, {} s each{}",
        options.clients,
        options.seconds,
        if options.with_projector {
            ", projector running"
        } else {
            ""
        }
    );
    println!("{:<34} {:>12} {:>10} {:>10}", "", "ops/s", "p50", "p99");
    let (hp50, hp99) = (http_figures.percentile(0.50), http_figures.percentile(0.99));
    println!(
        "{:<34} {:>12.0} {:>8.2}ms {:>8.2}ms",
        "HTTP POST /v1/tasks (201)",
        http_figures.rate(),
        hp50.as_secs_f64() * 1e3,
        hp99.as_secs_f64() * 1e3
    );
    let (rp50, rp99) = (raw.percentile(0.50), raw.percentile(0.99));
    println!(
        "{:<34} {:>12.0} {:>8.2}ms {:>8.2}ms",
        "raw JetStream append (same hdrs)",
        raw.rate(),
        rp50.as_secs_f64() * 1e3,
        rp99.as_secs_f64() * 1e3
    );
    if let Some((rate, mut lag)) = lag {
        let (p50, p99) = (lag.percentile(0.50), lag.percentile(0.99));
        println!(
            "lag, answer -> visible in read model at {rate}/s target ({:.0}/s achieved): p50 {:.2}ms p99 {:.2}ms",
            lag.rate(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "HTTP / raw ratio: {:.2}",
        http_figures.rate() / raw.rate().max(1.0)
    );
}
