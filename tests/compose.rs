//! Static checks of the container setup: `docker-compose.yml`, `deploy/Dockerfile` and
//! `.dockerignore`. They only read the files, so they need no Docker engine.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_yaml::Value;

/// The services that `docker compose up` starts.
const SERVICES: [&str; 4] = ["nats", "postgres", "redis", "taskmaster"];

/// The services that taskmaster needs before it starts.
const DEPENDENCIES: [&str; 3] = ["nats", "postgres", "redis"];

/// What `cargo build` needs from the repository: the manifest and lock file, the member
/// crates, the binary, what the binary embeds (migrations, event schemas, NATS definitions),
/// and the bench and test targets that the manifest declares. Cargo refuses a manifest
/// whose declared targets are missing.
const BUILD_INPUTS: [&str; 9] = [
    "Cargo.toml",
    "Cargo.lock",
    "crates",
    "src",
    "migrations",
    "events",
    "nats",
    "benches",
    "tests",
];

const NATS_CONFIG_IN_REPO: &str = "nats/server.conf";
const NATS_CONFIG_IN_CONTAINER: &str = "/etc/nats/server.conf";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_repo_file(relative: &str) -> Result<String> {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// A path relative to the repository root, as Docker and compose spell it in several ways
/// (`./nats/`, `nats/`, `nats`), reduced to one spelling (`nats`, or `.` for the root).
fn normalize(path: &str) -> &str {
    let path = path.trim_start_matches("./").trim_end_matches('/');
    if path.is_empty() {
        "."
    } else {
        path
    }
}

/// Whether a user spec (`name`, `uid`, `uid:gid`) selects root. No user means root too.
fn runs_as_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default().trim();
    name.is_empty() || name == "root" || name.parse::<u32>().is_ok_and(|uid| uid == 0)
}

// ---- docker-compose.yml ------------------------------------------------------------------

fn compose_file() -> Result<Value> {
    serde_yaml::from_str(&read_repo_file("docker-compose.yml")?)
        .context("docker-compose.yml is not valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> Result<&'a Value> {
    compose
        .get("services")
        .and_then(|services| services.get(name))
        .ok_or_else(|| anyhow!("docker-compose.yml has no service `{name}`"))
}

/// A scalar as text: compose takes numbers where it means strings (`user: 0`, `- 8080`).
fn scalar(value: &Value) -> Result<String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(anyhow!("expected a scalar, found {other:?}")),
    }
}

/// A value that compose takes either as one string or as a list (`command`, `healthcheck.test`),
/// as a list of words.
fn words(value: &Value) -> Result<Vec<String>> {
    match value {
        Value::String(text) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        other => Err(anyhow!("expected a string or a list, found {other:?}")),
    }
}

/// The command of a service's healthcheck, refusing a missing, disabled or empty one.
fn healthcheck_test(service: &Value) -> Result<Vec<String>> {
    let healthcheck = service
        .get("healthcheck")
        .context("it has no healthcheck")?;
    ensure!(
        healthcheck.get("disable").and_then(Value::as_bool) != Some(true),
        "its healthcheck is disabled"
    );
    let test = words(
        healthcheck
            .get("test")
            .context("its healthcheck has no test")?,
    )?;
    let command = match test.first().map(String::as_str) {
        None => bail!("its healthcheck test is empty"),
        Some("NONE") => bail!("its healthcheck test is NONE, which disables it"),
        Some("CMD" | "CMD-SHELL") => &test[1..],
        Some(_) => &test[..],
    };
    ensure!(
        command.iter().any(|word| !word.trim().is_empty()),
        "its healthcheck test runs no command: {test:?}"
    );
    Ok(test)
}

#[derive(Debug, PartialEq, Eq)]
struct PortMapping {
    /// The port on the host; `None` when Docker picks one.
    published: Option<u16>,
    /// The port in the container.
    target: u16,
}

fn parse_port(text: &str) -> Result<u16> {
    text.trim()
        .parse()
        .with_context(|| format!("`{text}` is not a single port"))
}

/// One entry of `ports`, in the short (`[ip:]host:container[/protocol]`) or long syntax.
fn port_mapping(entry: &Value) -> Result<PortMapping> {
    if entry.is_mapping() {
        let target = parse_port(&scalar(
            entry.get("target").context("a port has no target")?,
        )?)?;
        let published = entry
            .get("published")
            .map(|published| scalar(published).and_then(|port| parse_port(&port)))
            .transpose()?;
        return Ok(PortMapping { published, target });
    }
    let spec = scalar(entry)?;
    let ports = spec
        .split_once('/')
        .map_or(spec.as_str(), |(ports, _protocol)| ports);
    // Right to left: the container port, then the host port, then the host address.
    let mut fields = ports.rsplitn(3, ':');
    let target = parse_port(fields.next().unwrap_or_default())?;
    let published = fields.next().map(parse_port).transpose()?;
    Ok(PortMapping { published, target })
}

fn port_mappings(service: &Value) -> Result<Vec<PortMapping>> {
    let Some(ports) = service.get("ports") else {
        return Ok(Vec::new());
    };
    ports
        .as_sequence()
        .context("`ports` is not a list")?
        .iter()
        .map(port_mapping)
        .collect()
}

#[derive(Debug)]
struct Mount {
    /// A host path or a named volume; empty for an anonymous volume.
    source: String,
    target: String,
    read_only: bool,
}

/// One entry of `volumes`, in the short (`source:target[:mode]`) or long syntax.
fn mount(entry: &Value) -> Result<Mount> {
    if entry.is_mapping() {
        let source = entry
            .get("source")
            .map(scalar)
            .transpose()?
            .unwrap_or_default();
        let target = scalar(entry.get("target").context("a volume has no target")?)?;
        let read_only = entry
            .get("read_only")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return Ok(Mount {
            source,
            target,
            read_only,
        });
    }
    let spec = scalar(entry)?;
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => bail!("cannot read the volume `{spec}`"),
    };
    Ok(Mount {
        source: source.to_owned(),
        target: target.to_owned(),
        read_only: mode.split(',').any(|option| option == "ro"),
    })
}

fn mounts(service: &Value) -> Result<Vec<Mount>> {
    let Some(volumes) = service.get("volumes") else {
        return Ok(Vec::new());
    };
    volumes
        .as_sequence()
        .context("`volumes` is not a list")?
        .iter()
        .map(mount)
        .collect()
}

#[test]
fn compose_file_declares_the_four_services_with_healthchecks() -> Result<()> {
    let compose = compose_file()?;
    for name in SERVICES {
        let service = service(&compose, name)?;
        healthcheck_test(service).with_context(|| format!("service `{name}`"))?;
    }
    Ok(())
}

#[test]
fn taskmaster_waits_for_nats_postgres_and_redis_to_be_healthy() -> Result<()> {
    let compose = compose_file()?;
    let depends_on = service(&compose, "taskmaster")?
        .get("depends_on")
        .context("service `taskmaster` has no depends_on")?;
    ensure!(
        depends_on.is_mapping(),
        "taskmaster's depends_on is a plain list, so it waits for no healthcheck: \
         give each dependency `condition: service_healthy`"
    );
    for dependency in DEPENDENCIES {
        let condition = depends_on
            .get(dependency)
            .with_context(|| format!("taskmaster does not depend on `{dependency}`"))?
            .get("condition")
            .and_then(Value::as_str);
        ensure!(
            condition == Some("service_healthy"),
            "taskmaster waits for `{dependency}` with condition {condition:?}, \
             not `service_healthy`"
        );
    }
    Ok(())
}

#[test]
fn compose_publishes_the_api_and_dependency_ports() -> Result<()> {
    let compose = compose_file()?;
    let expected = [
        ("taskmaster", 8080),
        ("nats", 4222),
        ("postgres", 5432),
        ("redis", 6379),
    ];
    for (name, port) in expected {
        let mappings =
            port_mappings(service(&compose, name)?).with_context(|| format!("service `{name}`"))?;
        let wanted = PortMapping {
            published: Some(port),
            target: port,
        };
        ensure!(
            mappings.contains(&wanted),
            "service `{name}` does not publish port {port}; its ports: {mappings:?}"
        );
    }
    Ok(())
}

#[test]
fn nats_runs_with_the_server_config_mounted_read_only() -> Result<()> {
    let compose = compose_file()?;
    let nats = service(&compose, "nats")?;

    let command = words(
        nats.get("command")
            .context("service `nats` has no command")?,
    )?;
    ensure!(
        command.windows(2).any(|pair| {
            matches!(pair[0].as_str(), "-c" | "--config") && pair[1] == NATS_CONFIG_IN_CONTAINER
        }),
        "the nats command {command:?} does not load {NATS_CONFIG_IN_CONTAINER}"
    );

    let mounts = mounts(nats).context("service `nats`")?;
    let config = mounts
        .iter()
        .find(|mount| mount.target == NATS_CONFIG_IN_CONTAINER)
        .with_context(|| format!("nothing is mounted at {NATS_CONFIG_IN_CONTAINER}: {mounts:?}"))?;
    ensure!(
        normalize(&config.source) == NATS_CONFIG_IN_REPO,
        "{NATS_CONFIG_IN_CONTAINER} is mounted from `{}`, not ./{NATS_CONFIG_IN_REPO}",
        config.source
    );
    ensure!(
        config.read_only,
        "{NATS_CONFIG_IN_CONTAINER} is not mounted read-only"
    );
    ensure!(
        repo_path(NATS_CONFIG_IN_REPO).is_file(),
        "the mounted {NATS_CONFIG_IN_REPO} does not exist"
    );
    Ok(())
}

#[test]
fn taskmaster_service_builds_the_dockerfile_and_runs_as_a_non_root_user() -> Result<()> {
    let compose = compose_file()?;
    let taskmaster = service(&compose, "taskmaster")?;

    let build = taskmaster
        .get("build")
        .context("service `taskmaster` has no build")?;
    let context = build.get("context").map(scalar).transpose()?;
    let dockerfile = build.get("dockerfile").map(scalar).transpose()?;
    ensure!(
        context.as_deref().map(normalize) == Some("."),
        "taskmaster builds from context {context:?}, not the repository root"
    );
    ensure!(
        dockerfile.as_deref().map(normalize) == Some("deploy/Dockerfile"),
        "taskmaster builds {dockerfile:?}, not deploy/Dockerfile"
    );

    let user = scalar(
        taskmaster
            .get("user")
            .context("service `taskmaster` sets no user")?,
    )?;
    ensure!(
        !runs_as_root(&user),
        "service `taskmaster` runs as root (`user: {user}`)"
    );
    Ok(())
}

// ---- deploy/Dockerfile -------------------------------------------------------------------

#[derive(Debug)]
struct Instruction {
    /// `FROM`, `COPY`, `RUN`, ... in upper case.
    keyword: String,
    arguments: String,
}

/// The instructions of a Dockerfile, with comments dropped and continued lines joined.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut logical_line = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            logical_line.push_str(continued);
            logical_line.push(' ');
            continue;
        }
        logical_line.push_str(line);
        let complete = std::mem::take(&mut logical_line);
        let (keyword, arguments) = complete
            .split_once(char::is_whitespace)
            .unwrap_or((complete.as_str(), ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            arguments: arguments.trim().to_owned(),
        });
    }
    instructions
}

fn dockerfile() -> Result<Vec<Instruction>> {
    Ok(parse_dockerfile(&read_repo_file("deploy/Dockerfile")?))
}

/// The build stages: each runs from one `FROM` up to the next.
fn stages(instructions: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, instruction)| instruction.keyword == "FROM")
        .map(|(index, _)| index)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(stage, &start)| {
            let end = starts.get(stage + 1).copied().unwrap_or(instructions.len());
            &instructions[start..end]
        })
        .collect()
}

/// The build-context paths that a `COPY` or `ADD` brings in: none when it copies from
/// another stage or image.
fn copied_paths(copy: &Instruction) -> Result<Vec<String>> {
    let mut rest = copy.arguments.as_str();
    let mut flags = Vec::new();
    while let Some(flag_and_rest) = rest.strip_prefix("--") {
        let (flag, tail) = flag_and_rest
            .split_once(char::is_whitespace)
            .unwrap_or((flag_and_rest, ""));
        flags.push(flag);
        rest = tail.trim_start();
    }
    if flags.iter().any(|flag| flag.starts_with("from=")) {
        return Ok(Vec::new());
    }
    let mut paths: Vec<String> = if rest.starts_with('[') {
        serde_yaml::from_str(rest)
            .with_context(|| format!("cannot read `{} {}`", copy.keyword, copy.arguments))?
    } else {
        rest.split_whitespace().map(str::to_owned).collect()
    };
    ensure!(
        paths.len() >= 2,
        "`{} {}` needs a source and a destination",
        copy.keyword,
        copy.arguments
    );
    paths.pop(); // the destination
    Ok(paths
        .iter()
        .map(|path| normalize(path).to_owned())
        .collect())
}

/// Whether copying `source` brings `input` along (`crates` brings `crates/domain`).
fn covers(source: &str, input: &str) -> bool {
    source == "." || source == input || input.starts_with(&format!("{source}/"))
}

#[test]
fn dockerfile_is_multi_stage_and_its_final_stage_drops_root() -> Result<()> {
    let instructions = dockerfile()?;
    let stages = stages(&instructions);
    ensure!(
        stages.len() >= 2,
        "deploy/Dockerfile has {} FROM line(s); it should build in one stage and run in another",
        stages.len()
    );
    let final_stage = stages.last().context("deploy/Dockerfile has no FROM")?;
    let user = final_stage
        .iter()
        .rev()
        .find(|instruction| instruction.keyword == "USER")
        .context("no USER follows the last FROM, so the container runs as root")?;
    ensure!(
        !runs_as_root(&user.arguments),
        "the final stage runs as root (`USER {}`)",
        user.arguments
    );
    Ok(())
}

#[test]
fn dockerfile_build_stage_copies_everything_the_workspace_needs() -> Result<()> {
    let instructions = dockerfile()?;
    let is_cargo_build = |instruction: &Instruction| {
        instruction.keyword == "RUN" && instruction.arguments.contains("cargo build")
    };
    let build_stage = stages(&instructions)
        .into_iter()
        .find(|stage| stage.iter().any(is_cargo_build))
        .context("no stage of deploy/Dockerfile runs `cargo build`")?;

    let mut copied = Vec::new();
    for copy in build_stage
        .iter()
        .filter(|instruction| matches!(instruction.keyword.as_str(), "COPY" | "ADD"))
    {
        copied.extend(copied_paths(copy)?);
    }
    let missing: Vec<&str> = BUILD_INPUTS
        .into_iter()
        .filter(|input| !copied.iter().any(|source| covers(source, input)))
        .collect();
    ensure!(
        missing.is_empty(),
        "the build stage does not copy {missing:?}; it copies {copied:?}"
    );

    let cargo_build = build_stage
        .iter()
        .find(|instruction| is_cargo_build(instruction))
        .context("no `cargo build` in the build stage")?;
    ensure!(
        cargo_build.arguments.contains("--locked"),
        "the image is built without --locked, so it may not use the versions in Cargo.lock"
    );
    Ok(())
}

#[test]
fn build_context_holds_every_build_input_and_leaves_out_target() -> Result<()> {
    let absent: Vec<&str> = BUILD_INPUTS
        .into_iter()
        .filter(|input| !repo_path(input).exists())
        .collect();
    ensure!(
        absent.is_empty(),
        "the Docker build copies {absent:?}, which the repository does not have \
         (an empty directory is not kept by git)"
    );

    let dockerignore = read_repo_file(".dockerignore")?;
    let patterns: Vec<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .map(|pattern| normalize(pattern.trim_start_matches('/')))
        .collect();
    for input in BUILD_INPUTS {
        if let Some(pattern) = patterns.iter().find(|pattern| covers(pattern, input)) {
            bail!(".dockerignore leaves the build input `{input}` out (pattern `{pattern}`)");
        }
    }
    ensure!(
        patterns.contains(&"target"),
        ".dockerignore does not leave out target/, so every build sends the whole build directory"
    );
    Ok(())
}
