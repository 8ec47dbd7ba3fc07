//! The command line of `taskmaster` (clap), and what each subcommand does.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::UserId;
use futures::StreamExt;

use crate::app::{self, Application, Roles};
use crate::settings::{Environment, Settings};

/// taskmaster: an event-sourced task manager on NATS JetStream, PostgreSQL and Redis.
#[derive(Debug, Parser)]
#[command(name = "taskmaster", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on the local services (creates the database and streams).
    Dev,
    /// Run a set of roles: api, projector, insights, ml, automation.
    Serve {
        /// Comma-separated roles.
        #[arg(long, default_value = "api,projector,insights,ml,automation")]
        roles: String,
    },
    /// Create the database if missing and apply the migrations.
    Migrate,
    /// NATS administration.
    Nats {
        /// What to do with NATS.
        #[command(subcommand)]
        command: NatsCommand,
    },
    /// Erase a user: purge their events from the log and their rows from the read models.
    EraseUser {
        /// The user id.
        user: String,
    },
    /// Events as JSON lines: export, import, tail.
    Events {
        /// What to do.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Rebuild a read model from the event log beside the live one (which keeps serving), then
    /// swap it in with one transaction; or retrain the models from the log (`ml`).
    Replay {
        /// What to rebuild: tasks, ml, or all.
        projection: String,
    },
    /// The learning side.
    Ml {
        /// What to do.
        #[command(subcommand)]
        command: MlCommand,
    },
    /// Recompute every task from the event log and compare it with the read model; exit 1 on
    /// any difference.
    Verify,
    /// The automation runtime: the events it gave up on.
    Automation {
        /// What to do.
        #[command(subcommand)]
        command: AutomationCommand,
    },
    /// Events the projection could not apply: list, retry after a fix, or discard.
    DeadLetters {
        /// What to do with them.
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Mint a development token for a user.
    Token {
        /// The user id (1 to 64 characters of A-Z, a-z, 0-9, '_' or '-').
        #[arg(long)]
        user: String,
        /// Validity in hours.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
}

/// Event transfer subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write every event (or one owner's) as JSON lines.
    Export {
        /// Only this owner's events.
        #[arg(long)]
        owner: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Append exported JSON lines to the stream (which must be empty unless --force).
    Import {
        /// Read here instead of standard input.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// Import into a stream that already holds events.
        #[arg(long)]
        force: bool,
    },
    /// Follow events live as JSON lines until interrupted.
    Tail {
        /// Only this owner's events.
        #[arg(long)]
        owner: Option<String>,
        /// Start at this stream sequence instead of with new events.
        #[arg(long)]
        from: Option<u64>,
    },
}

/// Automation subcommands.
#[derive(Debug, Subcommand)]
pub enum AutomationCommand {
    /// Events an automation gave up on: list, retry after a fix, or discard.
    DeadLetters {
        /// What to do with them.
        #[command(subcommand)]
        command: AutomationDeadLetterCommand,
    },
}

/// Automation dead-letter subcommands.
#[derive(Debug, Subcommand)]
pub enum AutomationDeadLetterCommand {
    /// List them, oldest event first.
    List,
    /// Run their automations again with the code deployed now; those that go through are
    /// removed.
    Retry {
        /// Only the dead letters of the event at this stream position (default: all).
        #[arg(long)]
        position: Option<u64>,
    },
    /// Drop one for good.
    Discard {
        /// The automation (`recurrence`, `cascade`).
        #[arg(long)]
        automation: String,
        /// The stream position of its event.
        #[arg(long)]
        position: u64,
    },
}

/// Dead-letter subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List them, oldest first.
    List,
    /// Rebuild their tasks from the log with the code deployed now.
    Retry {
        /// Only the dead letter at this stream position (default: all).
        #[arg(long)]
        position: Option<u64>,
    },
    /// Drop one for good; its task's later events apply again.
    Discard {
        /// The stream position of the dead letter.
        #[arg(long)]
        position: u64,
    },
}

/// Learning subcommands.
#[derive(Debug, Subcommand)]
pub enum MlCommand {
    /// Score the effort estimator on a story-point CSV (issuekey,title,description,
    /// storypoint,split_mark): learn from train, tune on val, predict test; prints JSON.
    Eval {
        /// The CSV file.
        #[arg(long)]
        csv: std::path::PathBuf,
    },
}

/// NATS subcommands.
#[derive(Debug, Subcommand)]
pub enum NatsCommand {
    /// Create or update the streams from the definitions in nats/.
    Apply,
}

/// Whether a subcommand runs long and logs (and so installs the tracing subscriber).
pub fn is_server(command: &Command) -> bool {
    matches!(command, Command::Dev | Command::Serve { .. })
}

/// Runs a subcommand.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Dev => dev(settings).await,
        Command::Serve { roles } => {
            let roles = Roles::parse(&roles).map_err(anyhow::Error::msg)?;
            let app = Application::build(&settings, roles).await?;
            tracing::info!(address = %app.local_addr()?, ?roles, "serving");
            app.run_until_stopped(app::shutdown_signal()).await
        }
        Command::Migrate => {
            app::prepare_database(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Nats {
            command: NatsCommand::Apply,
        } => {
            let client = app::connect_nats(&settings).await?;
            let naming = app::apply_streams(&settings, &client).await?;
            println!("stream {} is up to date", naming.stream());
            Ok(())
        }
        Command::Verify => verify(settings).await,
        Command::Replay { projection } => match projection.as_str() {
            "tasks" => replay(settings).await,
            "ml" => replay_ml(settings).await,
            "all" => {
                replay(settings.clone()).await?;
                replay_ml(settings).await
            }
            other => anyhow::bail!("unknown projection {other:?} (expected tasks, ml or all)"),
        },
        Command::Ml {
            command: MlCommand::Eval { csv },
        } => {
            let rows = ml::eval::read_csv(&csv)?;
            let client = app::connect_nats(&settings).await?;
            let report = ml::eval::evaluate(client, &rows).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::EraseUser { user } => {
            let user = UserId::parse(&user).map_err(|e| anyhow::anyhow!("user: {}", e.message))?;
            let pool = app::prepare_database(&settings).await?;
            let store = open_store(&settings).await?;
            let report =
                projections::erasure::erase_user(&pool, &store, &user, Duration::from_secs(10))
                    .await?;
            // Their cached insights go too (and would expire with the TTL otherwise).
            let redis = redis::Client::open(settings.redis_url.expose())
                .context("REDIS_URL is not a valid Redis URL")?;
            if let Err(error) = app::insights_cache(&settings, &redis).forget(&user).await {
                eprintln!("note: could not drop the user's cached insights ({error}); they expire within TASKMASTER_INSIGHTS_TTL_SECS");
            }
            println!(
                "erased user {user}: {} event(s) purged from the log, {} task row(s), {} dead letter(s) and {} calendar feed token(s) deleted",
                report.events, report.task_rows, report.dead_letters, report.feed_tokens
            );
            if !report.projector_caught_up {
                eprintln!("note: no projector caught up within 10 s; none was running, or it is far behind (run erase-user again once it has caught up)");
            }
            Ok(())
        }
        Command::Events { command } => events(command, settings).await,
        Command::DeadLetters { command } => dead_letters(command, settings).await,
        Command::Automation {
            command: AutomationCommand::DeadLetters { command },
        } => automation_dead_letters(command, settings).await,
        Command::Token { user, hours } => {
            let user =
                UserId::parse(&user).map_err(|e| anyhow::anyhow!("--user: {}", e.message))?;
            if settings.environment == Environment::Production {
                anyhow::bail!("taskmaster token mints development tokens; it refuses to run with TASKMASTER_ENV=production");
            }
            let token = development_token(&settings, &user, hours.clamp(1, 24 * 365) * 3600)?;
            println!("{token}");
            Ok(())
        }
    }
}

/// An HS256 token for `user` that this process's settings accept: signed with the secret in
/// force and carrying the configured issuer and audience, so `taskmaster token` works with
/// `TASKMASTER_JWT_ISSUER`/`TASKMASTER_JWT_AUDIENCE` set.
fn development_token(
    settings: &Settings,
    user: &UserId,
    ttl_seconds: i64,
) -> anyhow::Result<String> {
    let secret = settings.jwt_secret.as_ref().context(
        "HS256 is off (TASKMASTER_JWKS is set without TASKMASTER_JWT_SECRET): get a token from the identity provider of the JWKS",
    )?;
    let mut claims = api::auth::Claims::for_user(user, chrono::Utc::now().timestamp(), ttl_seconds);
    claims.iss = settings.jwt_claims.issuer.clone();
    claims.aud = settings.jwt_claims.audience.clone();
    Ok(api::auth::mint_hs256_claims(
        secret.expose().as_bytes(),
        &claims,
    ))
}

async fn dev(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings, Roles::all())
        .await
        .context("starting taskmaster dev")?;
    let address = app.local_addr()?;
    let user = UserId::parse("dev-user").map_err(|e| anyhow::anyhow!(e.message))?;
    let token = development_token(
        &settings,
        &user,
        Duration::from_secs(24 * 3600).as_secs() as i64,
    )
    .ok();
    let url = format!("http://{address}");
    println!();
    println!(
        "  taskmaster is running at {url}   (api + projector + insights + ml, Ctrl-C to stop)"
    );
    println!();
    match &token {
        Some(token) => {
            println!("  token for user dev-user (24 h):");
            println!("    export TOKEN={token}");
        }
        None => {
            println!("  HS256 is off (TASKMASTER_JWKS without TASKMASTER_JWT_SECRET): use a token of your identity provider as TOKEN");
        }
    }
    println!();
    println!("  try:");
    println!(
        "    curl -s -X POST {url}/v1/tasks -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"title\":\"Try taskmaster\",\"priority\":\"high\",\"estimate_minutes\":15}}'"
    );
    println!("    curl -s {url}/v1/tasks -H \"Authorization: Bearer $TOKEN\"");
    println!("    curl -si {url}/v1/insights -H \"Authorization: Bearer $TOKEN\"");
    println!();
    println!(
        "  OpenAPI: {url}/openapi.json   metrics: {url}/metrics   readiness: {url}/health/ready"
    );
    println!();
    app.run_until_stopped(app::shutdown_signal()).await
}

async fn dead_letters(command: DeadLetterCommand, settings: Settings) -> anyhow::Result<()> {
    use projections::{dead_letters, TASKS_PROJECTION};
    let pool = app::prepare_database(&settings).await?;
    match command {
        DeadLetterCommand::List => {
            let letters = dead_letters::list(&pool, TASKS_PROJECTION).await?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for l in letters {
                println!(
                    "{:>10}  {}  {}  attempts={}  type={}  trace={}  error: {}",
                    l.position,
                    l.failed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    l.subject,
                    l.attempts,
                    l.event_type.as_deref().unwrap_or("-"),
                    l.trace_id.as_deref().unwrap_or("-"),
                    l.error
                );
            }
            Ok(())
        }
        DeadLetterCommand::Retry { position } => {
            let client = app::connect_nats(&settings).await?;
            let naming = eventstore::Naming::new(&settings.nats_prefix)?;
            let store = eventstore::EventStore::open(client, naming, Default::default()).await?;
            let report = dead_letters::retry(&pool, &store, TASKS_PROJECTION, position).await?;
            println!(
                "rebuilt {} task(s); {} dead letter(s) still failing",
                report.rebuilt_tasks.len(),
                report.still_failing.len()
            );
            if report.still_failing.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("still failing at positions {:?}", report.still_failing)
            }
        }
        DeadLetterCommand::Discard { position } => {
            if dead_letters::discard(&pool, TASKS_PROJECTION, position).await? {
                println!("discarded the dead letter at position {position}");
                Ok(())
            } else {
                anyhow::bail!("no dead letter at position {position}")
            }
        }
    }
}

async fn automation_dead_letters(
    command: AutomationDeadLetterCommand,
    settings: Settings,
) -> anyhow::Result<()> {
    use automation::dead_letters;
    let pool = app::prepare_database(&settings).await?;
    match command {
        AutomationDeadLetterCommand::List => {
            let letters = dead_letters::list(&pool).await?;
            if letters.is_empty() {
                println!("no automation dead letters");
            }
            for l in letters {
                println!(
                    "{:>10}  {}  {}  {}/{}  attempts={}  type={}  error: {}",
                    l.position,
                    l.failed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    l.automation,
                    l.owner_id,
                    l.task_id,
                    l.attempts,
                    l.event_type,
                    l.error
                );
            }
            Ok(())
        }
        AutomationDeadLetterCommand::Retry { position } => {
            let context = app::automation_context(&settings, &pool).await?;
            let report =
                dead_letters::retry(&context, &automation::automations(), position).await?;
            println!(
                "{} went through; {} still failing",
                report.succeeded.len(),
                report.still_failing.len()
            );
            for (automation, position, error) in &report.still_failing {
                println!("{position:>10}  {automation}  error: {error}");
            }
            if report.still_failing.is_empty() {
                Ok(())
            } else {
                anyhow::bail!(
                    "{} dead letter(s) still failing",
                    report.still_failing.len()
                )
            }
        }
        AutomationDeadLetterCommand::Discard {
            automation,
            position,
        } => {
            if dead_letters::remove(&pool, &automation, position).await? {
                println!("discarded the {automation} dead letter at position {position}");
                Ok(())
            } else {
                anyhow::bail!("no {automation} dead letter at position {position}")
            }
        }
    }
}

/// Retrains both models from the whole log and publishes the result when it beats the
/// serving version (or when there is none).
async fn replay_ml(settings: Settings) -> anyhow::Result<()> {
    let client = app::connect_nats(&settings).await?;
    let naming = app::apply_streams(&settings, &client).await?;
    let jetstream = async_nats::jetstream::new(client.clone());
    let registry = ml::ModelRegistry::open(&jetstream, &naming, settings.nats_replicas).await?;
    let store = eventstore::EventStore::open(client, naming, Default::default()).await?;
    let worker = ml::MlWorker::new(std::sync::Arc::new(store), registry, settings.ml);
    let report = worker
        .rebuild(|done, total| eprintln!("  ml: read {done} of {total}"))
        .await?;
    let m = report.candidate;
    println!(
        "retrained from {} event(s), {} completion(s): replay {:.1} s, training {:.1} s; holdout of {}: MAE {:.2} (median baseline {:.2}), MdAE {:.2}, SA {:.1}%",
        report.events,
        report.completions,
        report.replay.as_secs_f64(),
        report.training.as_secs_f64(),
        m.holdout,
        m.mae,
        m.median_baseline_mae,
        m.mdae,
        m.sa
    );
    match report.decision {
        ml::worker::Decision::Published(pointer) => {
            println!("published model version {}", pointer.version)
        }
        ml::worker::Decision::Kept(c) => println!(
            "kept the serving version: on {} completion(s) newer than it, candidate MAE {:.2} vs serving {:.2}",
            c.fresh, c.candidate_mae, c.current_mae
        ),
    }
    Ok(())
}

async fn replay(settings: Settings) -> anyhow::Result<()> {
    use projections::replay::{self, Progress, Stage};
    let pool = app::prepare_database(&settings).await?;
    let client = app::connect_nats(&settings).await?;
    let naming = app::apply_streams(&settings, &client).await?;
    let metrics = std::sync::Arc::new(telemetry::Metrics::new());
    let projector = app::projector(&settings, &pool, &client, &naming, &metrics);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            app::shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let (progress, watching) = tokio::sync::watch::channel(Progress {
        stage: Stage::Replaying,
        position: 0,
        head: 0,
    });
    let display = tokio::spawn(crate::progress::show(watching));
    let outcome = replay::rebuild(&projector, &shutdown, &progress).await;
    drop(progress);
    let _ = display.await;
    let report = outcome?;
    let seconds = (report.elapsed_ms as f64 / 1000.0).max(0.001);
    println!(
        "rebuilt tasks at position {} in {:.1} s ({:.0} events/s): {} task(s), {} dead letter(s); projection version {}, {} partition(s); swapped in",
        report.position,
        seconds,
        report.position as f64 / seconds,
        report.tasks,
        report.dead_letters,
        report.layout.version,
        report.layout.partitions
    );
    println!(
        "  replaying the log {:.1} s, building indexes {:.1} s, catching up and swapping {:.1} s",
        report.replay_ms as f64 / 1000.0,
        report.index_ms as f64 / 1000.0,
        report.swap_ms as f64 / 1000.0
    );
    Ok(())
}

async fn verify(settings: Settings) -> anyhow::Result<()> {
    use projections::verify::Difference;
    let pool = app::prepare_database(&settings).await?;
    let client = app::connect_nats(&settings).await?;
    let naming = eventstore::Naming::new(&settings.nats_prefix)?;
    let store = eventstore::EventStore::open(client, naming, Default::default()).await?;
    let report = projections::verify::verify(&pool, &store).await?;
    for difference in &report.differences {
        match difference {
            Difference::Missing { task_id } => {
                println!("task {task_id}: missing from the read model")
            }
            Difference::Unexpected { task_id } => {
                println!("task {task_id}: in the read model but not implied by the log")
            }
            Difference::Fields { task_id, fields } => {
                for f in fields {
                    println!(
                        "task {task_id}: {}: log says {}, read model has {}",
                        f.field, f.expected, f.actual
                    );
                }
            }
        }
    }
    for position in &report.undecodable {
        println!("event at position {position} cannot be decoded");
    }
    println!(
        "verified {} task(s) from {} event(s) at position {}: {}",
        report.tasks,
        report.events,
        report.position,
        if report.is_clean() {
            "clean"
        } else {
            "DIFFERENCES"
        }
    );
    if report.is_clean() {
        Ok(())
    } else {
        anyhow::bail!(
            "the read model differs from the log: {} task(s), {} undecodable event(s)",
            report.differences.len(),
            report.undecodable.len()
        )
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<eventstore::EventStore> {
    let client = app::connect_nats(settings).await?;
    let naming = app::apply_streams(settings, &client).await?;
    Ok(eventstore::EventStore::open(client, naming, Default::default()).await?)
}

fn owner_arg(owner: Option<String>) -> anyhow::Result<Option<UserId>> {
    owner
        .map(|o| UserId::parse(&o).map_err(|e| anyhow::anyhow!("--owner: {}", e.message)))
        .transpose()
}

async fn events(command: EventsCommand, settings: Settings) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let store = open_store(&settings).await?;
    match command {
        EventsCommand::Export { owner, output } => {
            let owner = owner_arg(owner)?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let written = store
                .export(owner.as_ref(), |event| {
                    serde_json::to_writer(&mut out, event)?;
                    out.write_all(b"\n")
                })
                .await?;
            out.flush()?;
            eprintln!("exported {written} event(s)");
            Ok(())
        }
        EventsCommand::Import { input, force } => {
            let reader: Box<dyn BufRead> = match &input {
                Some(path) => Box::new(std::io::BufReader::new(
                    std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?,
                )),
                None => Box::new(std::io::BufReader::new(std::io::stdin().lock())),
            };
            let mut parsed = Vec::new();
            for (number, line) in reader.lines().enumerate() {
                let line = line.context("reading the import")?;
                if line.trim().is_empty() {
                    continue;
                }
                let event: eventstore::transfer::ExportedEvent = serde_json::from_str(&line)
                    .map_err(|e| anyhow::anyhow!("line {}: {e}", number + 1))?;
                parsed.push(event);
            }
            let appended = store.import(parsed.into_iter().map(Ok), force).await?;
            println!("imported {appended} event(s)");
            Ok(())
        }
        EventsCommand::Tail { owner, from } => {
            let owner = owner_arg(owner)?;
            let start = match from {
                Some(from) => from,
                None => store.head_position().await? + 1,
            };
            let (_, messages) = store.raw_messages(owner.as_ref(), start).await?;
            futures::pin_mut!(messages);
            let stop = app::shutdown_signal();
            tokio::pin!(stop);
            let mut out = std::io::stdout().lock();
            loop {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    next = messages.next() => match next {
                        Some(item) => {
                            let (event, _) = item?;
                            serde_json::to_writer(&mut out, &event)?;
                            out.write_all(b"\n")?;
                            out.flush()?;
                        }
                        None => return Ok(()),
                    },
                }
            }
        }
    }
}
