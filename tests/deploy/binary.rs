//! What the deployment files must agree with, read from the code and the image build, and
//! each taskmaster container checked against it: the command line and roles, the
//! environment's names and values, the listening port, probes and scrape annotations.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use taskmaster::cli::{Cli, Command as Subcommand};
use taskmaster::{Roles, Settings};

use crate::compose::compose_file;
use crate::kustomize::rendered;
use crate::manifests::{main_container, named, problems_after};
use crate::{
    array, assert_refused, common, containers, id, of_kind, pod_labels, read_repo_file,
    resolve_port, scalar, split_image, string_map, text,
};

// ---- facts about the binary -------------------------------------------------------------

/// Environment variables of the OpenTelemetry specification (general SDK and OTLP exporter
/// settings) that the opentelemetry crates read themselves, so `Settings` never asks for them.
const OTEL_SDK_VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_PROPAGATORS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
];

/// What the deployment files must agree with, read from the code and the image build.
#[derive(Debug)]
pub(crate) struct Binary {
    /// Every environment variable `Settings::from_lookup` asks for.
    pub(crate) settings_names: BTreeSet<String>,
    /// The paths the HTTP router answers GET on, from its OpenAPI document.
    pub(crate) get_routes: BTreeSet<String>,
    /// Every sample name the process exposes on /metrics (counters with `_total`,
    /// histograms with `_bucket`, `_sum`, `_count`).
    pub(crate) metric_names: BTreeSet<String>,
    /// The image repository compose builds (`taskmaster` of `taskmaster:dev`).
    pub(crate) image: String,
    /// `ENTRYPOINT` of deploy/Dockerfile.
    pub(crate) entrypoint: Vec<String>,
    /// The uid of `USER` in deploy/Dockerfile.
    pub(crate) uid: u64,
}

impl Binary {
    /// Whether the binary (or the OpenTelemetry SDK inside it) reads this variable.
    pub(crate) fn reads(&self, name: &str) -> bool {
        self.settings_names.contains(name) || OTEL_SDK_VARIABLES.contains(&name)
    }
}

/// The names `Settings` asks for: a lookup that records every name and answers none, so
/// every default is taken and no validation stops the reading early.
fn settings_names() -> BTreeSet<String> {
    let names = RefCell::new(BTreeSet::new());
    Settings::from_lookup(|name| {
        names.borrow_mut().insert(name.to_owned());
        None
    })
    .expect("the defaults are valid settings");
    names.into_inner()
}

/// Sample names of an exposition, from its `# TYPE` lines (families are listed even before
/// they have a series).
fn exposed_metric_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_once(' '))
        .flat_map(|(family, kind)| sample_names(family, kind))
        .collect()
}

fn sample_names(family: &str, kind: &str) -> Vec<String> {
    match kind.trim() {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["bucket", "sum", "count"]
            .iter()
            .map(|suffix| format!("{family}_{suffix}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

/// GET paths of the OpenAPI document of a running application (all roles, real services),
/// the way clients and the kubelet see them.
fn openapi_get_routes() -> BTreeSet<String> {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let document: Value = runtime.block_on(async {
        let app = common::TestApp::spawn().await;
        let live = app.http.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(
            live.status(),
            200,
            "GET /health/live of a fresh application"
        );
        let document = app.openapi().await;
        app.stop().await;
        document
    });
    document["paths"]
        .as_object()
        .expect("the OpenAPI document has paths")
        .iter()
        .filter(|(_, item)| item.get("get").is_some())
        .map(|(path, _)| path.clone())
        .collect()
}

fn dockerfile_facts() -> Result<(Vec<String>, u64)> {
    let dockerfile = read_repo_file("deploy/Dockerfile")?;
    let mut entrypoint = None;
    let mut uid = None;
    for line in dockerfile.lines().map(str::trim) {
        if let Some(arguments) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = Some(
                serde_json::from_str::<Vec<String>>(arguments)
                    .context("ENTRYPOINT is not in exec form")?,
            );
        }
        if let Some(user) = line.strip_prefix("USER ") {
            uid = Some(
                user.split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .parse::<u64>()
                    .context("USER is not a numeric uid")?,
            );
        }
    }
    Ok((
        entrypoint.context("deploy/Dockerfile has no ENTRYPOINT")?,
        uid.context("deploy/Dockerfile has no USER")?,
    ))
}

/// The facts, gathered once: the OpenAPI document needs a running application.
pub(crate) fn binary() -> &'static Binary {
    static BINARY: OnceLock<Binary> = OnceLock::new();
    BINARY.get_or_init(|| {
        let compose = compose_file().expect("docker-compose.yml");
        let image = text(&compose, "/services/taskmaster/image")
            .expect("compose's taskmaster service names its image");
        let (entrypoint, uid) = dockerfile_facts().expect("deploy/Dockerfile");
        Binary {
            settings_names: settings_names(),
            get_routes: openapi_get_routes(),
            metric_names: exposed_metric_names(&telemetry::Metrics::new().encode()),
            image: split_image(image).0.to_owned(),
            entrypoint,
            uid,
        }
    })
}

// ---- a taskmaster container against the binary -----------------------------------------

/// Where a container's environment variable comes from.
#[derive(Debug, Clone)]
pub(crate) struct EnvValue {
    /// `None` when the value is not known here (a key of a Secret's base64 `data`).
    pub(crate) value: Option<String>,
    pub(crate) from_secret: bool,
}

/// A container's environment as Kubernetes builds it: `envFrom` in order, then `env`.
fn container_env(
    container: &Value,
    manifests: &[Value],
    problems: &mut Vec<String>,
    at: &str,
) -> BTreeMap<String, EnvValue> {
    let find = |kind: &str, name: &str| {
        manifests.iter().find(|resource| {
            text(resource, "/kind") == Some(kind) && text(resource, "/metadata/name") == Some(name)
        })
    };
    let keys_of = |resource: &Value| -> BTreeMap<String, EnvValue> {
        let from_secret = text(resource, "/kind") == Some("Secret");
        let mut keys: BTreeMap<String, EnvValue> = string_map(resource.get("data"))
            .into_iter()
            .map(|(key, value)| {
                let value = (!from_secret).then_some(value);
                (key, EnvValue { value, from_secret })
            })
            .collect();
        for (key, value) in string_map(resource.get("stringData")) {
            keys.insert(
                key,
                EnvValue {
                    value: Some(value),
                    from_secret,
                },
            );
        }
        keys
    };
    let mut env = BTreeMap::new();
    for source in array(container, "/envFrom") {
        for (reference, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let Some(name) = text(source, &format!("/{reference}/name")) else {
                continue;
            };
            match find(kind, name) {
                Some(resource) => env.extend(keys_of(resource)),
                None if source[reference]["optional"] == json!(true) => {}
                None => problems.push(format!(
                    "{at}: envFrom names the {kind} `{name}`, which is not deployed"
                )),
            }
        }
    }
    for variable in array(container, "/env") {
        let Some(name) = text(variable, "/name") else {
            problems.push(format!("{at}: an env entry has no name"));
            continue;
        };
        let value = if let Some(value) = variable.get("value") {
            EnvValue {
                value: scalar(value),
                from_secret: false,
            }
        } else {
            let mut resolved = None;
            for (reference, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")]
            {
                let Some(source) = variable.pointer(&format!("/valueFrom/{reference}")) else {
                    continue;
                };
                let (Some(from), Some(key)) = (text(source, "/name"), text(source, "/key")) else {
                    continue;
                };
                match find(kind, from).map(keys_of).and_then(|keys| keys.get(key).cloned()) {
                    Some(value) => resolved = Some(value),
                    None => problems.push(format!(
                        "{at}: {name} comes from key `{key}` of the {kind} `{from}`, which is not deployed"
                    )),
                }
            }
            match resolved {
                Some(value) => value,
                None => continue,
            }
        };
        env.insert(name.to_owned(), value);
    }
    env
}

/// The settings a container starts with. A Secret value still holding the template's
/// `REPLACE_ME` stands for what the operator fills in: a JWT secret long enough for
/// production, a password in a URL. (That production refuses the template's own JWT
/// placeholder is a test of its own.)
fn container_settings(env: &BTreeMap<String, EnvValue>) -> Result<Settings, String> {
    let lookup = |name: &str| {
        let variable = env.get(name)?;
        let value = variable.value.clone().unwrap_or_default();
        if variable.from_secret && value.contains("REPLACE_ME") {
            if name == "TASKMASTER_JWT_SECRET" {
                return Some("a-stand-in-for-the-operator's-32-byte-random-secret".to_owned());
            }
            return Some(value.replace("REPLACE_ME", "password"));
        }
        Some(value)
    };
    Settings::from_lookup(lookup).map_err(|error| error.to_string())
}

/// A long-running taskmaster workload, as the cross-checks need it.
#[derive(Debug)]
pub(crate) struct Workload {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) roles: Roles,
    /// `spec.replicas`, or the autoscaler's maximum when one scales it.
    pub(crate) most_replicas: u64,
    pub(crate) fewest_replicas: u64,
    pub(crate) settings: Settings,
    pub(crate) env: BTreeMap<String, EnvValue>,
}

/// The command line, environment, ports, probes and scrape annotations of one taskmaster
/// container; a long-running main container also yields its [`Workload`].
pub(crate) fn check_taskmaster_container(
    resource: &Value,
    container: &Value,
    manifests: &[Value],
    binary: &Binary,
    at: &str,
    long_running_main: bool,
    problems: &mut Vec<String>,
) -> Option<Workload> {
    if let Some(command) = container.get("command") {
        let command: Vec<String> = command
            .as_array()
            .map(|words| words.iter().filter_map(scalar).collect())
            .unwrap_or_default();
        if command != binary.entrypoint {
            problems.push(format!(
                "{at}: command {command:?} replaces the image's entrypoint {:?}",
                binary.entrypoint
            ));
        }
    }
    let args: Vec<String> = array(container, "/args")
        .iter()
        .filter_map(scalar)
        .collect();
    let mut roles = None;
    match Cli::try_parse_from(std::iter::once("taskmaster".to_owned()).chain(args.iter().cloned()))
    {
        Err(error) => problems.push(format!(
            "{at}: `taskmaster {}` is not a command line the binary takes: {}",
            args.join(" "),
            error.to_string().lines().next().unwrap_or_default()
        )),
        Ok(cli) => {
            if let Subcommand::Serve { roles: list } = cli.command {
                match Roles::parse(&list) {
                    Ok(parsed) => roles = Some(parsed),
                    Err(error) => problems.push(format!("{at}: --roles {list}: {error}")),
                }
            }
        }
    }
    if long_running_main && roles.is_none() {
        problems.push(format!(
            "{at}: a long-running container should run `serve --roles <roles>`, not {args:?}"
        ));
    }

    let env = container_env(container, manifests, problems, at);
    for name in env.keys() {
        if !binary.reads(name) {
            problems.push(format!(
                "{at}: sets {name}, which the binary does not read (Settings reads {:?})",
                binary.settings_names
            ));
        }
    }
    if let Some(protocol) = env
        .get("OTEL_EXPORTER_OTLP_PROTOCOL")
        .and_then(|variable| variable.value.as_deref())
    {
        if protocol != "http/protobuf" {
            problems.push(format!(
                "{at}: OTEL_EXPORTER_OTLP_PROTOCOL={protocol}, the binary exports http/protobuf only"
            ));
        }
    }
    let settings = match container_settings(&env) {
        Ok(settings) => settings,
        Err(error) => {
            problems.push(format!("{at}: the binary refuses its settings: {error}"));
            return None;
        }
    };

    let port = u64::from(settings.http_addr.port());
    let container_ports: Vec<u64> = array(container, "/ports")
        .iter()
        .filter_map(|port| port["containerPort"].as_u64())
        .collect();
    if long_running_main {
        if settings.http_addr.ip().is_loopback() {
            problems.push(format!(
                "{at}: TASKMASTER_HTTP_ADDR is {}, unreachable from the kubelet and Services",
                settings.http_addr
            ));
        }
        if container_ports != [port] {
            problems.push(format!(
                "{at}: containerPorts {container_ports:?}, but TASKMASTER_HTTP_ADDR listens on {port}"
            ));
        }
        for (probe, wanted) in [
            ("livenessProbe", "/health/live"),
            ("readinessProbe", "/health/ready"),
        ] {
            if text(container, &format!("/{probe}/httpGet/path")) != Some(wanted) {
                problems.push(format!("{at}: {probe} should GET {wanted}"));
            }
        }
        let annotations = pod_annotations(resource);
        if annotations.get("prometheus.io/scrape").map(String::as_str) == Some("true") {
            let scrape_port = annotations
                .get("prometheus.io/port")
                .cloned()
                .unwrap_or_default();
            if scrape_port != port.to_string() {
                problems.push(format!(
                    "{at}: prometheus.io/port is `{scrape_port}`, not {port}"
                ));
            }
            let path = annotations
                .get("prometheus.io/path")
                .cloned()
                .unwrap_or_else(|| "/metrics".into());
            if !binary.get_routes.contains(&path) {
                problems.push(format!("{at}: prometheus.io/path `{path}` is not a route"));
            }
        }
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let Some(get) = container.pointer(&format!("/{probe}/httpGet")) else {
            continue;
        };
        let path = text(get, "/path").unwrap_or("/");
        if !binary.get_routes.contains(path) {
            problems.push(format!(
                "{at}: {probe} GETs {path}, which is not a route ({:?})",
                binary.get_routes
            ));
        }
        match resolve_port(container, &get["port"]) {
            Some(probed) if probed == port => {}
            probed => problems.push(format!(
                "{at}: {probe} probes port {probed:?}, the server listens on {port}"
            )),
        }
    }

    let roles = roles.filter(|_| long_running_main)?;
    let replicas = resource["spec"]["replicas"].as_u64().unwrap_or(1);
    Some(Workload {
        name: text(resource, "/metadata/name")
            .unwrap_or_default()
            .to_owned(),
        labels: pod_labels(resource),
        roles,
        most_replicas: replicas,
        fewest_replicas: replicas,
        settings,
        env,
    })
}

fn pod_annotations(resource: &Value) -> BTreeMap<String, String> {
    string_map(resource.pointer("/spec/template/metadata/annotations"))
}

/// The binary's names wherever they are set: a ConfigMap or Secret key that looks like a
/// setting (`TASKMASTER_*`, `DATABASE_URL`, `REDIS_URL`, `OTEL_*`) is one the binary reads,
/// even when no container uses it yet; and every ConfigMap and Secret is used by some pod,
/// or it configures nothing.
pub(crate) fn check_settings_sources(
    manifests: &[Value],
    binary: &Binary,
    problems: &mut Vec<String>,
) {
    let looks_like_a_setting = |name: &str| {
        name.starts_with("TASKMASTER_")
            || name.starts_with("OTEL_")
            || name == "DATABASE_URL"
            || name == "REDIS_URL"
    };
    for source in manifests
        .iter()
        .filter(|resource| matches!(text(resource, "/kind"), Some("ConfigMap" | "Secret")))
    {
        for section in ["data", "stringData"] {
            for name in string_map(source.get(section)).keys() {
                if looks_like_a_setting(name) && !binary.reads(name) {
                    problems.push(format!(
                        "{}: {name} is not a variable the binary reads",
                        id(source)
                    ));
                }
            }
        }
        let kind = text(source, "/kind").unwrap_or_default();
        let name = text(source, "/metadata/name").unwrap_or_default();
        let reference = if kind == "Secret" {
            "secretRef"
        } else {
            "configMapRef"
        };
        let key_reference = if kind == "Secret" {
            "secretKeyRef"
        } else {
            "configMapKeyRef"
        };
        let used = manifests.iter().flat_map(containers).any(|container| {
            array(container, "/envFrom")
                .iter()
                .any(|from| text(from, &format!("/{reference}/name")) == Some(name))
                || array(container, "/env").iter().any(|variable| {
                    text(variable, &format!("/valueFrom/{key_reference}/name")) == Some(name)
                })
        });
        if !used {
            problems.push(format!("{}: no container uses it", id(source)));
        }
    }
}

/// Every role runs somewhere; the ml role once (a second trainer only repeats the work); the
/// projector on no more processes than partitions, beyond which they only idle.
pub(crate) fn check_roles(workloads: &[Workload], problems: &mut Vec<String>) {
    let runs = |role: fn(&Roles) -> bool| workloads.iter().filter(move |w| role(&w.roles));
    for (name, role) in [
        ("api", (|r: &Roles| r.api) as fn(&Roles) -> bool),
        ("projector", |r: &Roles| r.projector),
        ("insights", |r: &Roles| r.insights),
        ("ml", |r: &Roles| r.ml),
        ("automation", |r: &Roles| r.automation),
    ] {
        if runs(role).next().is_none() {
            problems.push(format!("no workload runs the {name} role"));
        }
    }
    for workload in runs(|r| r.ml) {
        if workload.most_replicas > 1 {
            problems.push(format!(
                "{}: {} replicas of the ml role would each retrain the same models",
                workload.name, workload.most_replicas
            ));
        }
    }
    for workload in runs(|r| r.projector) {
        let partitions = u64::from(workload.settings.projection_partitions);
        if workload.most_replicas > partitions {
            problems.push(format!(
                "{}: {} projector replicas for {partitions} partitions; the extra ones idle",
                workload.name, workload.most_replicas
            ));
        }
    }
}

// ---- tests ------------------------------------------------------------------------------

/// The template's JWT placeholder is refused in production, so a forgotten template stops
/// the pods instead of serving tokens anyone can mint.
#[test]
fn production_refuses_the_secret_templates_placeholder() -> Result<()> {
    let base = rendered("deploy/k8s/base");
    let secret = of_kind(&base, "Secret")
        .find(|secret| text(secret, "/metadata/name") == Some("taskmaster"))
        .context("no Secret taskmaster")?;
    let placeholder = text(secret, "/stringData/TASKMASTER_JWT_SECRET")
        .context("the Secret template has no TASKMASTER_JWT_SECRET")?
        .to_owned();
    assert!(
        placeholder.contains("REPLACE_ME"),
        "the template's secret is no placeholder"
    );
    let password = text(secret, "/stringData/DATABASE_URL").unwrap_or_default();
    assert!(
        password.contains("REPLACE_ME"),
        "DATABASE_URL's password is no placeholder"
    );
    let refused = Settings::from_lookup(|name| match name {
        "TASKMASTER_ENV" => Some("production".into()),
        "TASKMASTER_JWT_SECRET" => Some(placeholder.clone()),
        _ => None,
    })
    .expect_err("production accepts the template's JWT placeholder");
    assert_eq!(refused.variable, "TASKMASTER_JWT_SECRET");
    Ok(())
}

#[test]
fn the_metric_facts_come_from_the_exposition() {
    let names = exposed_metric_names(
        "# TYPE taskmaster_a counter\n# TYPE taskmaster_b histogram\n# TYPE taskmaster_c gauge\n# EOF\n",
    );
    let expected: BTreeSet<String> = [
        "taskmaster_a_total",
        "taskmaster_b_bucket",
        "taskmaster_b_sum",
        "taskmaster_b_count",
        "taskmaster_c",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
    let real = &binary().metric_names;
    assert!(real.contains("taskmaster_http_requests_total"), "{real:?}");
    assert!(
        real.contains("taskmaster_http_request_duration_seconds_bucket"),
        "{real:?}"
    );
    assert!(real.contains("taskmaster_model_version"), "{real:?}");
}

// ---- every check refuses what it should -------------------------------------------------

// Each changes the rendered base through `problems_after` (manifests.rs), where
// `the_unchanged_base_passes_so_each_refusal_below_is_the_change_alone` shows that the base
// alone passes.

#[test]
fn an_environment_variable_the_binary_does_not_read_is_refused() {
    let problems = problems_after(|manifests| {
        named(manifests, "ConfigMap", "taskmaster")["data"]["TASKMASTER_PARTITONS"] = json!("8");
    });
    assert_refused(
        &problems,
        "sets TASKMASTER_PARTITONS, which the binary does not read",
    );
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-ml")["env"][0]["name"] = json!("OTEL_TRACE_SAMPLER");
    });
    assert_refused(&problems, "sets OTEL_TRACE_SAMPLER");
    let problems = problems_after(|manifests| {
        manifests.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "leftover"},
            "data": {"TASKMASTER_LISTEN": "0.0.0.0:8080"},
        }));
    });
    assert_refused(
        &problems,
        "ConfigMap/leftover: TASKMASTER_LISTEN is not a variable the binary reads",
    );
    assert_refused(&problems, "ConfigMap/leftover: no container uses it");
}

#[test]
fn a_value_the_binary_refuses_is_refused() {
    let problems = problems_after(|manifests| {
        named(manifests, "ConfigMap", "taskmaster")["data"]["TASKMASTER_PROJECTION_PARTITIONS"] =
            json!("0");
    });
    assert_refused(&problems, "TASKMASTER_PROJECTION_PARTITIONS");
}

#[test]
fn a_container_port_other_than_the_listening_port_is_refused() {
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-api")["ports"][0]["containerPort"] = json!(9090);
    });
    assert_refused(
        &problems,
        "containerPorts [9090], but TASKMASTER_HTTP_ADDR listens on 8080",
    );
    let problems = problems_after(|manifests| {
        named(manifests, "ConfigMap", "taskmaster")["data"]["TASKMASTER_HTTP_ADDR"] =
            json!("127.0.0.1:8080");
    });
    assert_refused(&problems, "unreachable from the kubelet");
}

#[test]
fn a_probe_of_a_path_that_is_no_route_is_refused() {
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-projector")["livenessProbe"]["httpGet"]["path"] =
            json!("/healthz");
    });
    assert_refused(&problems, "GETs /healthz, which is not a route");
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-api")["readinessProbe"]["httpGet"]["port"] =
            json!(9000);
    });
    assert_refused(&problems, "probes port Some(9000)");
}

#[test]
fn an_unknown_role_or_command_is_refused() {
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-insights")["args"] =
            json!(["serve", "--roles", "insight"]);
    });
    assert_refused(&problems, "unknown role \"insight\"");
    let problems = problems_after(|manifests| {
        named(manifests, "Deployment", "taskmaster-api")["spec"]["template"]["spec"]
            ["initContainers"][0]["args"] = json!(["migrations"]);
    });
    assert_refused(
        &problems,
        "`taskmaster migrations` is not a command line the binary takes",
    );
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-ml")["args"] = json!(["serve", "--roles", "api"]);
    });
    assert_refused(&problems, "no workload runs the ml role");
}
