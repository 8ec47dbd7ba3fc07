//! Offline checks of `deploy/`: the Kubernetes manifests (each overlay rendered the way
//! kustomize renders the fields used there), the Prometheus scrape config and alerts, the
//! Grafana dashboard, the collector config and compose's observability services. They are
//! checked against what the binary really does, taken from the code rather than copied by
//! hand: the environment variables `Settings` reads, the routes of the HTTP router (its
//! OpenAPI document), the port of `TASKMASTER_HTTP_ADDR`, the roles `serve --roles` parses,
//! the command line clap accepts, and the metric families the process registers.
//!
//! Two outside validators do what is not worth rewriting: `kubernetes-validate` (PyPI; the
//! Kubernetes JSON schemas) and `promtool` (Debian's `prometheus` package; PromQL, the
//! config, the rules and their unit tests). `.ci/run` installs both; when one is missing the
//! test fails and says how to install it, it never skips.
//!
//! # Layout
//! - facts about the binary: [`binary`]
//! - the kustomize subset: [`render`], [`strategic_merge`]
//! - the checks, each returning the problems it found: [`check_manifests`],
//!   [`check_schemas`], [`check_metric_names`], [`check_dashboard`], [`check_collector`]
//! - the tests, then tests that feed each check a broken input and expect a refusal.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use taskmaster::cli::{Cli, Command as Subcommand};
use taskmaster::{Roles, Settings};

/// The Kubernetes version the manifests are validated for (a version whose schemas
/// `kubernetes-validate` ships).
const KUBERNETES_VERSION: &str = "1.30.0";

/// The `kubernetes-validate` release `.ci/run` installs; named in the failure message.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// The overlays under deploy/k8s/overlays.
const OVERLAYS: [&str; 2] = ["dev", "prod"];

/// Names that other changes add to `Settings` in parallel with this one (added by the
/// read-replica change). A manifest may set them before `Settings` reads them; once it does,
/// they are simply in the set read from the code and the entry here is redundant.
const PENDING_SETTINGS: &[&str] = &[];

/// Metric families added by the observability change, in parallel with this one, as
/// (family, type). The dashboard and alerts may use them before `Metrics` registers them; a
/// name that is neither registered nor listed here is refused. Remove an entry once
/// `telemetry::Metrics` registers it.
const PENDING_METRICS: &[(&str, &str)] = &[];

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

/// Metrics the alerts use that other programs expose: Prometheus's own `up` and
/// kube-state-metrics' pod readiness. Only `taskmaster_` names are checked against the
/// process; these are named here so that a typo in them is refused too.
const EXTERNAL_METRICS: &[&str] = &["up", "kube_pod_status_ready"];

/// Kinds that `kubernetes-validate` has no schema for, checked structurally here instead.
const CUSTOM_KINDS: &[(&str, &str)] = &[("postgresql.cnpg.io/v1", "Cluster")];

/// Connections PostgreSQL keeps for superusers (`superuser_reserved_connections`, default 3).
const POSTGRES_RESERVED_CONNECTIONS: u64 = 3;

// ---- files ------------------------------------------------------------------------------

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_repo_file(relative: &str) -> Result<String> {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every document of a YAML stream, as JSON values (what the schema validator takes);
/// empty documents (only comments) are dropped.
fn yaml_documents(text: &str, origin: &str) -> Result<Vec<Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            Value::deserialize(document).with_context(|| format!("{origin} is not valid YAML"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn yaml_file(relative: &str) -> Result<Value> {
    let mut documents = yaml_documents(&read_repo_file(relative)?, relative)?;
    ensure!(
        documents.len() == 1,
        "{relative} should hold one YAML document, not {}",
        documents.len()
    );
    Ok(documents.remove(0))
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// A scalar as text: YAML gives numbers where Kubernetes and compose mean strings.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `Kind/name` of a manifest, for messages.
fn id(resource: &Value) -> String {
    format!(
        "{}/{}",
        text(resource, "/kind").unwrap_or("?"),
        text(resource, "/metadata/name").unwrap_or("?")
    )
}

// ---- facts about the binary -------------------------------------------------------------

/// What the deployment files must agree with, read from the code and the image build.
#[derive(Debug)]
struct Binary {
    /// Every environment variable `Settings::from_lookup` asks for.
    settings_names: BTreeSet<String>,
    /// The paths the HTTP router answers GET on, from its OpenAPI document.
    get_routes: BTreeSet<String>,
    /// Every sample name the process exposes on /metrics (counters with `_total`,
    /// histograms with `_bucket`, `_sum`, `_count`).
    metric_names: BTreeSet<String>,
    /// The image repository compose builds (`taskmaster` of `taskmaster:dev`).
    image: String,
    /// `ENTRYPOINT` of deploy/Dockerfile.
    entrypoint: Vec<String>,
    /// The uid of `USER` in deploy/Dockerfile.
    uid: u64,
}

impl Binary {
    /// Whether the binary (or the OpenTelemetry SDK inside it) reads this variable.
    fn reads(&self, name: &str) -> bool {
        self.settings_names.contains(name)
            || OTEL_SDK_VARIABLES.contains(&name)
            || PENDING_SETTINGS.contains(&name)
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
        let document = app
            .http
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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

fn compose_file() -> Result<Value> {
    yaml_file("docker-compose.yml")
}

/// The facts, gathered once: the OpenAPI document needs a running application.
fn binary() -> &'static Binary {
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

// ---- the kustomize subset ---------------------------------------------------------------

/// The kustomization fields [`render`] implements. Anything else is refused rather than
/// ignored, so the rendering here never silently differs from kustomize's.
const KUSTOMIZATION_FIELDS: [&str; 7] = [
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "images",
    "replicas",
    "namespace",
];

/// Renders a kustomization directory: its resources (files, or directories rendered
/// recursively), then its strategic-merge patches, replicas, images and namespace.
fn render(directory: &Path) -> Result<Vec<Value>> {
    let file = directory.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{} has no kustomization.yaml", directory.display()))?;
    let mut documents = yaml_documents(&text, &file.display().to_string())?;
    ensure!(
        documents.len() == 1,
        "{} is not one document",
        file.display()
    );
    render_kustomization(directory, &documents.remove(0))
}

fn render_kustomization(directory: &Path, kustomization: &Value) -> Result<Vec<Value>> {
    let here = directory.display();
    let fields = kustomization
        .as_object()
        .with_context(|| format!("{here}: the kustomization is not a mapping"))?;
    for key in fields.keys() {
        ensure!(
            KUSTOMIZATION_FIELDS.contains(&key.as_str()),
            "{here}: the kustomization field `{key}` is not rendered by tests/deploy.rs; \
             keep to {KUSTOMIZATION_FIELDS:?} or teach render() the field"
        );
    }
    ensure!(
        text(kustomization, "/apiVersion") == Some("kustomize.config.k8s.io/v1beta1")
            && text(kustomization, "/kind") == Some("Kustomization"),
        "{here}: not a kustomize.config.k8s.io/v1beta1 Kustomization"
    );

    let mut resources: Vec<Value> = Vec::new();
    for entry in array(kustomization, "/resources") {
        let entry = entry
            .as_str()
            .with_context(|| format!("{here}: a resource is not a path"))?;
        let path = directory.join(entry);
        if path.is_dir() {
            resources.extend(render(&path)?);
        } else if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            resources.extend(yaml_documents(&text, &path.display().to_string())?);
        } else {
            bail!("{here}: the resource `{entry}` does not exist");
        }
    }
    let mut seen = BTreeSet::new();
    for resource in &resources {
        let key = (
            text(resource, "/apiVersion").unwrap_or_default().to_owned(),
            id(resource),
        );
        ensure!(
            seen.insert(key),
            "{here}: {} is declared twice",
            id(resource)
        );
    }

    for patch in array(kustomization, "/patches") {
        let fields = patch
            .as_object()
            .with_context(|| format!("{here}: a patch is not a mapping"))?;
        ensure!(
            fields.keys().all(|key| key == "path"),
            "{here}: only `patches: - path: <file>` (a strategic-merge patch naming its \
             target by kind and name) is rendered, not {:?}",
            fields.keys().collect::<Vec<_>>()
        );
        let file = patch["path"]
            .as_str()
            .with_context(|| format!("{here}: a patch path is not a string"))?;
        let path = directory.join(file);
        let content = std::fs::read_to_string(&path)
            .with_context(|| format!("{here}: the patch `{file}` does not exist"))?;
        let documents = yaml_documents(&content, &path.display().to_string())?;
        // kustomize's `patches` takes one patch per path; a second document is an error there.
        ensure!(
            documents.len() == 1,
            "{here}: the patch `{file}` holds {} documents; kustomize takes one per path",
            documents.len()
        );
        for document in documents {
            let targets: Vec<&mut Value> = resources
                .iter_mut()
                .filter(|resource| {
                    resource["apiVersion"] == document["apiVersion"]
                        && resource["kind"] == document["kind"]
                        && resource.pointer("/metadata/name") == document.pointer("/metadata/name")
                })
                .collect();
            match targets.len() {
                0 => bail!(
                    "{here}: the patch `{file}` targets {}, which the resources do not have",
                    id(&document)
                ),
                1 => {
                    let target = targets.into_iter().next().expect("one target");
                    // kustomize knows the merge keys of built-in kinds only; it patches a
                    // custom resource as a JSON merge patch, where every list is replaced.
                    let custom = CUSTOM_KINDS.contains(&(
                        text(target, "/apiVersion").unwrap_or_default(),
                        text(target, "/kind").unwrap_or_default(),
                    ));
                    let field = if custom { JSON_MERGE } else { "" };
                    strategic_merge(target, &document, field)
                        .with_context(|| format!("{here}: the patch `{file}`"))?;
                }
                n => bail!("{here}: the patch `{file}` matches {n} resources"),
            }
        }
    }

    for replicas in array(kustomization, "/replicas") {
        let name = text(replicas, "/name").context("a replicas entry has no name")?;
        let count = replicas["count"]
            .as_u64()
            .with_context(|| format!("{here}: replicas of `{name}` has no count"))?;
        let mut matched = 0;
        for resource in resources.iter_mut().filter(|resource| {
            text(resource, "/metadata/name") == Some(name)
                && matches!(
                    text(resource, "/kind"),
                    Some("Deployment" | "StatefulSet" | "ReplicaSet")
                )
        }) {
            resource["spec"]["replicas"] = json!(count);
            matched += 1;
        }
        ensure!(
            matched > 0,
            "{here}: replicas names `{name}`, no workload has that name"
        );
    }

    for image in array(kustomization, "/images") {
        let fields = image
            .as_object()
            .with_context(|| format!("{here}: an image entry is not a mapping"))?;
        ensure!(
            fields
                .keys()
                .all(|key| matches!(key.as_str(), "name" | "newName" | "newTag")),
            "{here}: an image entry may set name, newName and newTag only"
        );
        let name = text(image, "/name").context("an image entry has no name")?;
        let mut matched = 0;
        for resource in resources.iter_mut() {
            for container in containers_mut(resource) {
                let Some(current) = container["image"].as_str() else {
                    continue;
                };
                let (repository, tag) = split_image(current);
                if repository != name {
                    continue;
                }
                let repository = text(image, "/newName").unwrap_or(repository);
                let tag = text(image, "/newTag").or(tag);
                container["image"] = json!(match tag {
                    Some(tag) => format!("{repository}:{tag}"),
                    None => repository.to_owned(),
                });
                matched += 1;
            }
        }
        ensure!(
            matched > 0,
            "{here}: the image `{name}` is used by no container"
        );
    }

    if let Some(namespace) = kustomization.get("namespace") {
        let namespace = namespace
            .as_str()
            .with_context(|| format!("{here}: namespace is not a string"))?;
        for resource in &mut resources {
            resource["metadata"]["namespace"] = json!(namespace);
        }
    }
    Ok(resources)
}

/// The field name [`strategic_merge`] starts from for a JSON merge patch: no list merges.
const JSON_MERGE: &str = "$json-merge";

/// The merge key of a list field in a strategic-merge patch: lists of named things merge
/// item by item (as Kubernetes declares for these fields); every other list is replaced.
fn merge_key(field: &str, item: &Value) -> Option<&'static str> {
    match field {
        JSON_MERGE => None,
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        // Container ports merge by containerPort, Service ports by port.
        "ports" if item.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// A strategic-merge patch of `patch` onto `target`: mappings merge recursively, a `null`
/// deletes the key, lists with a merge key merge by it, anything else is replaced.
/// `$patch` and the other directives are refused: nothing here needs them.
fn strategic_merge(target: &mut Value, patch: &Value, field: &str) -> Result<()> {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                ensure!(
                    !key.starts_with('$'),
                    "the directive `{key}` is not rendered by tests/deploy.rs"
                );
                if value.is_null() {
                    target.remove(key);
                } else if let Some(existing) = target.get_mut(key) {
                    let field = if field == JSON_MERGE { JSON_MERGE } else { key };
                    strategic_merge(existing, value, field)?;
                } else {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(target), Value::Array(patch))
            if patch
                .first()
                .and_then(|item| merge_key(field, item))
                .is_some() =>
        {
            for item in patch {
                let key = merge_key(field, item).context("a patch list item has no merge key")?;
                let wanted = item
                    .get(key)
                    .with_context(|| format!("an item of `{field}` has no `{key}`"))?;
                match target
                    .iter_mut()
                    .find(|existing| existing.get(key) == Some(wanted))
                {
                    Some(existing) => strategic_merge(existing, item, field)?,
                    None => target.push(item.clone()),
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
    Ok(())
}

/// `repository[:tag]`: the tag follows the last colon after the last slash (a registry
/// host may carry a port).
fn split_image(image: &str) -> (&str, Option<&str>) {
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => (
            &image[..name_start + colon],
            Some(&image[name_start + colon + 1..]),
        ),
        None => (image, None),
    }
}

/// The pod template's spec of a workload.
fn pod_spec(resource: &Value) -> Option<&Value> {
    match text(resource, "/kind")? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            resource.pointer("/spec/template/spec")
        }
        "CronJob" => resource.pointer("/spec/jobTemplate/spec/template/spec"),
        "Pod" => resource.get("spec"),
        _ => None,
    }
}

fn pod_labels(resource: &Value) -> BTreeMap<String, String> {
    let pointer = match text(resource, "/kind") {
        Some("CronJob") => "/spec/jobTemplate/spec/template/metadata/labels",
        Some("Pod") => "/metadata/labels",
        _ => "/spec/template/metadata/labels",
    };
    string_map(resource.pointer(pointer))
}

fn pod_annotations(resource: &Value) -> BTreeMap<String, String> {
    string_map(resource.pointer("/spec/template/metadata/annotations"))
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(key, value)| Some((key.clone(), scalar(value)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn containers(resource: &Value) -> Vec<&Value> {
    pod_spec(resource)
        .map(|spec| {
            array(spec, "/initContainers")
                .iter()
                .chain(array(spec, "/containers"))
                .collect()
        })
        .unwrap_or_default()
}

fn containers_mut(resource: &mut Value) -> Vec<&mut Value> {
    let pointer = match text(resource, "/kind") {
        Some("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job") => {
            "/spec/template/spec"
        }
        Some("CronJob") => "/spec/jobTemplate/spec/template/spec",
        Some("Pod") => "/spec",
        _ => return Vec::new(),
    };
    let Some(Value::Object(spec)) = resource.pointer_mut(pointer) else {
        return Vec::new();
    };
    spec.iter_mut()
        .filter(|(key, _)| *key == "containers" || *key == "initContainers")
        .filter_map(|(_, list)| list.as_array_mut())
        .flatten()
        .collect()
}

/// Whether a selector's labels all appear among a pod's.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

// ---- checks of the rendered manifests ---------------------------------------------------

/// What the rest of the platform provides, from the files that configure it.
#[derive(Debug, Clone)]
struct Platform {
    /// The NATS client Service the Helm release creates (`fullnameOverride`).
    nats_service: String,
    /// Servers of the NATS cluster, the most replicas a stream can have.
    nats_servers: u64,
}

fn platform() -> Result<Platform> {
    let values = yaml_file("deploy/k8s/nats-values.yaml")?;
    Ok(Platform {
        nats_service: text(&values, "/fullnameOverride")
            .context("nats-values.yaml sets no fullnameOverride, so the Service name depends on the release")?
            .to_owned(),
        nats_servers: values
            .pointer("/config/cluster/replicas")
            .and_then(Value::as_u64)
            .context("nats-values.yaml sets no config.cluster.replicas")?,
    })
}

/// Where a container's environment variable comes from.
#[derive(Debug, Clone)]
struct EnvValue {
    /// `None` when the value is not known here (a key of a Secret's base64 `data`).
    value: Option<String>,
    from_secret: bool,
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

/// `(host, port)` of a URL such as `postgres://user:password@host:5432/db`.
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((host_port.to_owned(), default_port)),
    }
}

/// The path of a URL without its query: the database name of a PostgreSQL URL.
fn url_path(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (_, path) = rest.split_once('/')?;
    Some(path.split('?').next()?.to_owned())
}

/// The user of a URL with credentials.
fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (credentials, _) = rest.split('/').next()?.rsplit_once('@')?;
    Some(credentials.split(':').next()?.to_owned())
}

/// A container port named or numbered by a probe, a Service or an annotation.
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    if let Some(number) = port.as_u64() {
        return Some(number);
    }
    let name = port.as_str()?;
    if let Ok(number) = name.parse() {
        return Some(number);
    }
    array(container, "/ports")
        .iter()
        .find(|candidate| text(candidate, "/name") == Some(name))
        .and_then(|candidate| candidate["containerPort"].as_u64())
}

/// A long-running taskmaster workload, as the cross-checks need it.
#[derive(Debug)]
struct Workload {
    name: String,
    labels: BTreeMap<String, String>,
    roles: Roles,
    /// `spec.replicas`, or the autoscaler's maximum when one scales it.
    most_replicas: u64,
    fewest_replicas: u64,
    settings: Settings,
    env: BTreeMap<String, EnvValue>,
}

/// Every check of one rendered set of manifests (base or an overlay) against the binary and
/// the platform; returns the problems, empty when all is well.
fn check_manifests(manifests: &[Value], binary: &Binary, platform: &Platform) -> Vec<String> {
    let mut problems = Vec::new();
    let mut workloads = Vec::new();

    for resource in manifests {
        let Some(spec) = pod_spec(resource) else {
            continue;
        };
        let at = id(resource);
        check_pod_security(resource, spec, binary, &at, &mut problems);
        let long_running = matches!(
            text(resource, "/kind"),
            Some("Deployment" | "StatefulSet" | "DaemonSet")
        );
        let main_containers: Vec<&Value> = array(spec, "/containers").iter().collect();
        for container in containers(resource) {
            let name = text(container, "/name").unwrap_or("?");
            let at = format!("{at} container {name}");
            let Some(image) = text(container, "/image") else {
                problems.push(format!("{at}: no image"));
                continue;
            };
            let (repository, tag) = split_image(image);
            let basename = repository.rsplit('/').next().unwrap_or(repository);
            if basename != binary.image {
                continue;
            }
            match tag {
                None | Some("latest") => problems.push(format!(
                    "{at}: the image `{image}` has no fixed tag, so a restart may run another version"
                )),
                Some(_) => {}
            }
            let is_main = main_containers
                .iter()
                .any(|main| std::ptr::eq(*main, container));
            if let Some(workload) = check_taskmaster_container(
                resource,
                container,
                manifests,
                binary,
                &at,
                long_running && is_main,
                &mut problems,
            ) {
                workloads.push(workload);
            }
        }
    }
    // A taskmaster image under another name is the one mistake the loop above cannot see.
    for resource in manifests {
        for container in containers(resource) {
            let image = text(container, "/image").unwrap_or_default();
            let (repository, _) = split_image(image);
            let basename = repository.rsplit('/').next().unwrap_or(repository);
            let args = array(container, "/args");
            let runs_taskmaster_commands =
                args.first().and_then(Value::as_str).is_some_and(|first| {
                    matches!(
                        first,
                        "serve" | "migrate" | "nats" | "replay" | "verify" | "dev"
                    )
                });
            if runs_taskmaster_commands && basename != binary.image {
                problems.push(format!(
                    "{}: runs `{}` in the image `{image}`; the image compose builds is `{}`",
                    id(resource),
                    args.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    binary.image
                ));
            }
        }
    }

    check_settings_sources(manifests, binary, &mut problems);
    apply_autoscalers(manifests, &mut workloads, &mut problems);
    check_roles(&workloads, &mut problems);
    check_services(manifests, &mut problems);
    check_ingresses(manifests, binary, &mut problems);
    check_autoscalers(manifests, binary, &mut problems);
    check_disruption_budgets(manifests, &workloads, &mut problems);
    check_network_policies(manifests, &workloads, &mut problems);
    check_dependencies(manifests, &workloads, platform, &mut problems);
    problems
}

/// Non-root as the image's uid for taskmaster, no privilege escalation, no capabilities,
/// a read-only root file system, the runtime's seccomp profile, and requests and limits.
fn check_pod_security(
    resource: &Value,
    spec: &Value,
    binary: &Binary,
    at: &str,
    problems: &mut Vec<String>,
) {
    let pod = spec.get("securityContext").cloned().unwrap_or(json!({}));
    if spec["automountServiceAccountToken"] != json!(false) {
        problems.push(format!(
            "{at}: mounts a service account token; nothing in it talks to the Kubernetes API"
        ));
    }
    for container in containers(resource) {
        let name = text(container, "/name").unwrap_or("?");
        let at = format!("{at} container {name}");
        let own = container
            .get("securityContext")
            .cloned()
            .unwrap_or(json!({}));
        let effective = |field: &str| {
            own.pointer(field)
                .filter(|value| !value.is_null())
                .or_else(|| pod.pointer(field))
                .cloned()
        };
        if effective("/runAsNonRoot") != Some(json!(true)) {
            problems.push(format!("{at}: runAsNonRoot is not true"));
        }
        let uid = effective("/runAsUser").and_then(|uid| uid.as_u64());
        let image = text(container, "/image").unwrap_or_default();
        let (repository, _) = split_image(image);
        let is_taskmaster = repository.rsplit('/').next() == Some(binary.image.as_str());
        match uid {
            Some(0) | None => problems.push(format!("{at}: runAsUser is unset or root")),
            Some(uid) if is_taskmaster && uid != binary.uid => problems.push(format!(
                "{at}: runs as uid {uid}, the image's user is {}",
                binary.uid
            )),
            Some(_) => {}
        }
        if own["allowPrivilegeEscalation"] != json!(false) {
            problems.push(format!("{at}: allowPrivilegeEscalation is not false"));
        }
        if own["readOnlyRootFilesystem"] != json!(true) {
            problems.push(format!("{at}: readOnlyRootFilesystem is not true"));
        }
        if !array(&own, "/capabilities/drop").contains(&json!("ALL")) {
            problems.push(format!("{at}: does not drop ALL capabilities"));
        }
        if effective("/seccompProfile/type") != Some(json!("RuntimeDefault")) {
            problems.push(format!("{at}: the seccomp profile is not RuntimeDefault"));
        }
        for section in ["requests", "limits"] {
            for name in container
                .pointer(&format!("/resources/{section}"))
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|quantities| quantities.keys())
            {
                // The API server takes the standard names and domain-prefixed extended ones.
                if !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    && !name.contains('/')
                {
                    problems.push(format!(
                        "{at}: resources.{section} names `{name}`, not a resource"
                    ));
                }
            }
            for quantity in ["cpu", "memory"] {
                if container
                    .pointer(&format!("/resources/{section}/{quantity}"))
                    .is_none()
                {
                    problems.push(format!("{at}: no {quantity} in resources.{section}"));
                }
            }
        }
    }
}

/// The command line, environment, ports, probes and scrape annotations of one taskmaster
/// container; a long-running main container also yields its [`Workload`].
fn check_taskmaster_container(
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

/// The binary's names wherever they are set: a ConfigMap or Secret key that looks like a
/// setting (`TASKMASTER_*`, `DATABASE_URL`, `REDIS_URL`, `OTEL_*`) is one the binary reads,
/// even when no container uses it yet; and every ConfigMap and Secret is used by some pod,
/// or it configures nothing.
fn check_settings_sources(manifests: &[Value], binary: &Binary, problems: &mut Vec<String>) {
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

/// An autoscaled workload's replica range is the autoscaler's.
fn apply_autoscalers(manifests: &[Value], workloads: &mut [Workload], problems: &mut Vec<String>) {
    for autoscaler in of_kind(manifests, "HorizontalPodAutoscaler") {
        let target = text(autoscaler, "/spec/scaleTargetRef/name").unwrap_or_default();
        let (Some(min), Some(max)) = (
            autoscaler
                .pointer("/spec/minReplicas")
                .and_then(Value::as_u64),
            autoscaler
                .pointer("/spec/maxReplicas")
                .and_then(Value::as_u64),
        ) else {
            problems.push(format!(
                "{}: set minReplicas and maxReplicas",
                id(autoscaler)
            ));
            continue;
        };
        if min > max {
            problems.push(format!(
                "{}: minReplicas {min} > maxReplicas {max}",
                id(autoscaler)
            ));
        }
        if let Some(workload) = workloads
            .iter_mut()
            .find(|workload| workload.name == target)
        {
            workload.fewest_replicas = min;
            workload.most_replicas = max;
        }
    }
}

fn of_kind<'a>(manifests: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    manifests
        .iter()
        .filter(move |resource| text(resource, "/kind") == Some(kind))
}

/// Every role runs somewhere; the ml role once (a second trainer only repeats the work); the
/// projector on no more processes than partitions, beyond which they only idle.
fn check_roles(workloads: &[Workload], problems: &mut Vec<String>) {
    let runs = |role: fn(&Roles) -> bool| workloads.iter().filter(move |w| role(&w.roles));
    for (name, role) in [
        ("api", (|r: &Roles| r.api) as fn(&Roles) -> bool),
        ("projector", |r: &Roles| r.projector),
        ("insights", |r: &Roles| r.insights),
        ("ml", |r: &Roles| r.ml),
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

/// Pods a selector picks among the manifests' workloads.
fn selected_pods<'a>(
    manifests: &'a [Value],
    selector: &BTreeMap<String, String>,
) -> Vec<&'a Value> {
    manifests
        .iter()
        .filter(|resource| pod_spec(resource).is_some())
        .filter(|resource| !selector.is_empty() && selects(selector, &pod_labels(resource)))
        .collect()
}

/// Each Service selects pods and its target ports are ports of theirs.
fn check_services(manifests: &[Value], problems: &mut Vec<String>) {
    for service in of_kind(manifests, "Service") {
        let selector = string_map(service.pointer("/spec/selector"));
        let pods = selected_pods(manifests, &selector);
        if pods.is_empty() {
            problems.push(format!(
                "{}: its selector {selector:?} picks no pods",
                id(service)
            ));
            continue;
        }
        for port in array(service, "/spec/ports") {
            let target = port.get("targetPort").unwrap_or(&port["port"]);
            let found = pods.iter().all(|pod| {
                array(pod_spec(pod).expect("a workload"), "/containers")
                    .iter()
                    .any(|container| {
                        let wanted = resolve_port(container, target);
                        array(container, "/ports").iter().any(|port| {
                            port["containerPort"].as_u64() == wanted && wanted.is_some()
                        })
                    })
            });
            if !found {
                problems.push(format!(
                    "{}: targetPort {target} is not a container port of the pods it selects",
                    id(service)
                ));
            }
        }
    }
}

/// Ingress backends are Services and ports that exist, and route to real paths.
fn check_ingresses(manifests: &[Value], binary: &Binary, problems: &mut Vec<String>) {
    for ingress in of_kind(manifests, "Ingress") {
        for rule in array(ingress, "/spec/rules") {
            for path in array(rule, "/http/paths") {
                let service = text(path, "/backend/service/name").unwrap_or_default();
                let Some(target) = of_kind(manifests, "Service")
                    .find(|candidate| text(candidate, "/metadata/name") == Some(service))
                else {
                    problems.push(format!(
                        "{}: routes to the missing Service `{service}`",
                        id(ingress)
                    ));
                    continue;
                };
                let port = path
                    .pointer("/backend/service/port")
                    .cloned()
                    .unwrap_or(json!({}));
                let exists = array(target, "/spec/ports").iter().any(|candidate| {
                    (port.get("name").is_some() && candidate.get("name") == port.get("name"))
                        || (port.get("number").is_some()
                            && candidate.get("port") == port.get("number"))
                });
                if !exists {
                    problems.push(format!(
                        "{}: Service `{service}` has no port {port}",
                        id(ingress)
                    ));
                }
                let prefix = text(path, "/path").unwrap_or("/");
                let exact = text(path, "/pathType") == Some("Exact");
                let routed = binary.get_routes.iter().any(|route| {
                    if exact {
                        route == prefix
                    } else {
                        route == prefix
                            || route.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
                    }
                });
                if !routed {
                    problems.push(format!(
                        "{}: the path `{prefix}` reaches no route",
                        id(ingress)
                    ));
                }
            }
        }
    }
}

/// Autoscalers target a workload that exists, scale on CPU and on a per-pod request rate
/// the process exposes as a counter.
fn check_autoscalers(manifests: &[Value], binary: &Binary, problems: &mut Vec<String>) {
    for autoscaler in of_kind(manifests, "HorizontalPodAutoscaler") {
        let at = id(autoscaler);
        let kind = text(autoscaler, "/spec/scaleTargetRef/kind").unwrap_or_default();
        let name = text(autoscaler, "/spec/scaleTargetRef/name").unwrap_or_default();
        if !of_kind(manifests, kind).any(|target| text(target, "/metadata/name") == Some(name)) {
            problems.push(format!("{at}: scales {kind}/{name}, which is not deployed"));
        }
        let metrics = array(autoscaler, "/spec/metrics");
        if !metrics.iter().any(|metric| {
            text(metric, "/type") == Some("Resource")
                && text(metric, "/resource/name") == Some("cpu")
        }) {
            problems.push(format!("{at}: does not scale on CPU"));
        }
        let pods: Vec<&str> = metrics
            .iter()
            .filter(|metric| text(metric, "/type") == Some("Pods"))
            .filter_map(|metric| text(metric, "/pods/metric/name"))
            .collect();
        if pods.is_empty() {
            problems.push(format!("{at}: has no Pods metric (requests per second)"));
        }
        for metric in pods {
            // The adapter rule in api.yaml names the rate of `<base>_total` `<base>_per_second`.
            let counter = metric
                .strip_suffix("_per_second")
                .map(|base| format!("{base}_total"));
            if !counter
                .as_ref()
                .is_some_and(|counter| binary.metric_names.contains(counter))
            {
                problems.push(format!(
                    "{at}: the Pods metric `{metric}` is not the rate of a counter the process exposes"
                ));
            }
        }
    }
}

/// Budgets select pods and leave room for a drain: fewer pods required than the fewest
/// replicas, or a node drain would wait forever.
fn check_disruption_budgets(
    manifests: &[Value],
    workloads: &[Workload],
    problems: &mut Vec<String>,
) {
    for budget in of_kind(manifests, "PodDisruptionBudget") {
        let selector = string_map(budget.pointer("/spec/selector/matchLabels"));
        let selected: Vec<&Workload> = workloads
            .iter()
            .filter(|workload| selects(&selector, &workload.labels))
            .collect();
        if selected.is_empty() {
            problems.push(format!("{}: selects no taskmaster workload", id(budget)));
        }
        if let Some(required) = budget.pointer("/spec/minAvailable").and_then(Value::as_u64) {
            for workload in selected {
                if required >= workload.fewest_replicas {
                    problems.push(format!(
                        "{}: minAvailable {required} with as few as {} replicas of {} blocks every drain",
                        id(budget),
                        workload.fewest_replicas,
                        workload.name
                    ));
                }
            }
        }
    }
}

/// An allowed port of a NetworkPolicy rule: (number, protocol).
fn rule_ports(rule: &Value) -> Vec<(u64, String)> {
    array(rule, "/ports")
        .iter()
        .filter_map(|port| {
            Some((
                port["port"].as_u64()?,
                text(port, "/protocol").unwrap_or("TCP").to_owned(),
            ))
        })
        .collect()
}

/// Policies that apply to pods with these labels, for a direction (`Ingress`, `Egress`).
fn policies_for<'a>(
    manifests: &'a [Value],
    labels: &'a BTreeMap<String, String>,
    direction: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    of_kind(manifests, "NetworkPolicy").filter(move |policy| {
        array(policy, "/spec/policyTypes").contains(&json!(direction))
            && selects(
                &string_map(policy.pointer("/spec/podSelector/matchLabels")),
                labels,
            )
    })
}

/// Default deny, and for every taskmaster workload: egress to each dependency its settings
/// name (by the port in the URL) and to DNS; ingress to its HTTP port (the api from the
/// ingress controller, every role from the scraper). Redis, deployed here, must accept the
/// taskmaster pods on its port.
fn check_network_policies(manifests: &[Value], workloads: &[Workload], problems: &mut Vec<String>) {
    let default_deny = of_kind(manifests, "NetworkPolicy").any(|policy| {
        policy.pointer("/spec/podSelector") == Some(&json!({}))
            && array(policy, "/spec/policyTypes").contains(&json!("Ingress"))
            && array(policy, "/spec/policyTypes").contains(&json!("Egress"))
            && array(policy, "/spec/ingress").is_empty()
            && array(policy, "/spec/egress").is_empty()
    });
    if !default_deny {
        problems.push(
            "no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)"
                .into(),
        );
    }
    for workload in workloads {
        let egress: BTreeSet<(u64, String)> = policies_for(manifests, &workload.labels, "Egress")
            .flat_map(|policy| array(policy, "/spec/egress"))
            .flat_map(rule_ports)
            .collect();
        let settings = &workload.settings;
        let mut needed = vec![
            ("NATS", host_port(&settings.nats_url, 4222)),
            (
                "PostgreSQL",
                host_port(settings.database_url.expose(), 5432),
            ),
            ("Redis", host_port(settings.redis_url.expose(), 6379)),
        ];
        if let Some(endpoint) = &settings.otlp_endpoint {
            needed.push(("the OTLP collector", host_port(endpoint, 4318)));
        }
        for (dependency, address) in needed {
            match address {
                Some((_, port)) if egress.contains(&(u64::from(port), "TCP".into())) => {}
                Some((host, port)) => problems.push(format!(
                    "{}: no NetworkPolicy lets it reach {dependency} at {host}:{port}",
                    workload.name
                )),
                None => problems.push(format!(
                    "{}: cannot read the {dependency} URL",
                    workload.name
                )),
            }
        }
        if !egress.contains(&(53, "UDP".into())) {
            problems.push(format!(
                "{}: no NetworkPolicy lets it reach DNS (53/UDP)",
                workload.name
            ));
        }
        let port = u64::from(settings.http_addr.port());
        let ingress: Vec<&Value> = policies_for(manifests, &workload.labels, "Ingress")
            .flat_map(|policy| array(policy, "/spec/ingress"))
            .filter(|rule| rule_ports(rule).contains(&(port, "TCP".into())))
            .collect();
        if ingress.is_empty() {
            problems.push(format!(
                "{}: no NetworkPolicy lets anything reach its port {port} (metrics, api)",
                workload.name
            ));
        }
        if workload.roles.api
            && !ingress.iter().any(|rule| {
                array(rule, "/from").iter().any(|peer| {
                    text(
                        peer,
                        "/namespaceSelector/matchLabels/kubernetes.io~1metadata.name",
                    )
                    .is_some_and(|namespace| namespace.contains("ingress"))
                })
            })
        {
            problems.push(format!(
                "{}: no NetworkPolicy lets the ingress controller reach port {port}",
                workload.name
            ));
        }
    }
    // Redis is deployed here, so its side of the connection can be checked too.
    for workload in workloads {
        let Some((host, port)) = host_port(workload.settings.redis_url.expose(), 6379) else {
            continue;
        };
        let Some(service) = of_kind(manifests, "Service")
            .find(|service| text(service, "/metadata/name") == Some(host.as_str()))
        else {
            continue;
        };
        let selector = string_map(service.pointer("/spec/selector"));
        let admitted = selected_pods(manifests, &selector).iter().all(|pod| {
            let labels = pod_labels(pod);
            let admits = policies_for(manifests, &labels, "Ingress")
                .flat_map(|policy| array(policy, "/spec/ingress"))
                .any(|rule| {
                    rule_ports(rule).contains(&(u64::from(port), "TCP".into()))
                        && array(rule, "/from").iter().any(|peer| {
                            selects(
                                &string_map(peer.pointer("/podSelector/matchLabels")),
                                &workload.labels,
                            ) && peer.get("podSelector").is_some()
                        })
                });
            admits
        });
        if !admitted {
            problems.push(format!(
                "{}: Redis ({host}) admits no traffic from it on {port}",
                workload.name
            ));
        }
    }
}

/// The URLs in the settings name what is deployed: NATS as the Helm release's Service,
/// PostgreSQL as the CloudNativePG cluster's read-write Service (its database and owner),
/// Redis as a Service here; the streams' replicas fit the NATS cluster; the pools fit
/// PostgreSQL's max_connections.
fn check_dependencies(
    manifests: &[Value],
    workloads: &[Workload],
    platform: &Platform,
    problems: &mut Vec<String>,
) {
    let clusters: Vec<&Value> = of_kind(manifests, "Cluster").collect();
    for problem in clusters
        .iter()
        .flat_map(|cluster| check_cnpg_cluster(cluster))
    {
        problems.push(problem);
    }
    let mut connections = 0;
    for workload in workloads {
        let at = &workload.name;
        let settings = &workload.settings;
        match host_port(&settings.nats_url, 4222) {
            Some((host, _)) if host == platform.nats_service => {}
            other => problems.push(format!(
                "{at}: TASKMASTER_NATS_URL points at {other:?}, the NATS release's Service is `{}`",
                platform.nats_service
            )),
        }
        let replicas = settings.nats_replicas as u64;
        if replicas != platform.nats_servers {
            problems.push(format!(
                "{at}: TASKMASTER_NATS_REPLICAS is {replicas}, the NATS cluster has {} servers",
                platform.nats_servers
            ));
        }
        let database = settings.database_url.expose();
        let host = host_port(database, 5432)
            .map(|(host, _)| host)
            .unwrap_or_default();
        let cluster = clusters.iter().find(|cluster| {
            text(cluster, "/metadata/name").is_some_and(|name| host == format!("{name}-rw"))
        });
        match cluster {
            None => problems.push(format!(
                "{at}: DATABASE_URL points at `{host}`, not the -rw Service of a deployed Cluster"
            )),
            Some(cluster) => {
                let database_name = text(cluster, "/spec/bootstrap/initdb/database");
                if url_path(database).as_deref() != database_name {
                    problems.push(format!(
                        "{at}: DATABASE_URL names the database {:?}, the Cluster creates {database_name:?}",
                        url_path(database)
                    ));
                }
                let owner = text(cluster, "/spec/bootstrap/initdb/owner");
                if url_user(database).as_deref() != owner {
                    problems.push(format!(
                        "{at}: DATABASE_URL connects as {:?}, the database's owner is {owner:?}",
                        url_user(database)
                    ));
                }
                if let Some(replica) = workload
                    .env
                    .get("TASKMASTER_DATABASE_REPLICA_URL")
                    .and_then(|variable| variable.value.as_deref())
                {
                    let name = text(cluster, "/metadata/name").unwrap_or_default();
                    let replica_host = host_port(replica, 5432).map(|(host, _)| host);
                    if replica_host.as_deref() != Some(format!("{name}-ro").as_str()) {
                        problems.push(format!(
                            "{at}: TASKMASTER_DATABASE_REPLICA_URL points at {replica_host:?}, not `{name}-ro`"
                        ));
                    }
                }
            }
        }
        match host_port(settings.redis_url.expose(), 6379) {
            Some((host, port))
                if of_kind(manifests, "Service").any(|service| {
                    text(service, "/metadata/name") == Some(host.as_str())
                        && array(service, "/spec/ports")
                            .iter()
                            .any(|candidate| candidate["port"].as_u64() == Some(u64::from(port)))
                }) => {}
            other => problems.push(format!(
                "{at}: REDIS_URL points at {other:?}, which no Service serves"
            )),
        }
        connections += workload.most_replicas * u64::from(settings.database_max_connections);
    }
    for cluster in clusters {
        let allowed = cluster
            .pointer("/spec/postgresql/parameters/max_connections")
            .and_then(scalar)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(100);
        if connections + POSTGRES_RESERVED_CONNECTIONS > allowed {
            problems.push(format!(
                "{}: at full scale the pools open {connections} connections, max_connections is {allowed}",
                id(cluster)
            ));
        }
    }
}

/// A CloudNativePG `Cluster`, which the schema validator does not know: the fields the
/// operator requires and the ones taskmaster depends on.
fn check_cnpg_cluster(cluster: &Value) -> Vec<String> {
    let at = id(cluster);
    let mut problems = Vec::new();
    if text(cluster, "/apiVersion") != Some("postgresql.cnpg.io/v1") {
        problems.push(format!("{at}: apiVersion is not postgresql.cnpg.io/v1"));
    }
    if text(cluster, "/metadata/name").is_none_or(str::is_empty) {
        problems.push(format!("{at}: no metadata.name"));
    }
    match cluster.pointer("/spec/instances").and_then(Value::as_u64) {
        Some(1..) => {}
        _ => problems.push(format!("{at}: spec.instances must be a positive integer")),
    }
    match text(cluster, "/spec/storage/size") {
        Some(size) if quantity(size) => {}
        other => problems.push(format!(
            "{at}: spec.storage.size {other:?} is not a quantity"
        )),
    }
    for field in ["database", "owner"] {
        if text(cluster, &format!("/spec/bootstrap/initdb/{field}")).is_none() {
            problems.push(format!("{at}: spec.bootstrap.initdb.{field} is not set"));
        }
    }
    let known = [
        "instances",
        "imageName",
        "primaryUpdateStrategy",
        "bootstrap",
        "postgresql",
        "storage",
        "resources",
        "affinity",
        "monitoring",
        "backup",
        "description",
    ];
    for key in cluster["spec"]
        .as_object()
        .into_iter()
        .flat_map(|spec| spec.keys())
    {
        if !known.contains(&key.as_str()) {
            problems.push(format!(
                "{at}: spec.{key} is not a field this test knows of the Cluster"
            ));
        }
    }
    for (key, value) in cluster
        .pointer("/spec/postgresql/parameters")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !value.is_string() {
            problems.push(format!(
                "{at}: postgresql.parameters.{key} must be a string (the CRD takes strings only)"
            ));
        }
    }
    problems
}

/// A Kubernetes quantity such as `10Gi` or `500m`.
fn quantity(text: &str) -> bool {
    let digits = text.trim_end_matches(char::is_alphabetic);
    let suffix = &text[digits.len()..];
    !digits.is_empty()
        && digits.parse::<f64>().is_ok()
        && ["", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T", "m"].contains(&suffix)
}

// ---- schemas ----------------------------------------------------------------------------

/// The validator run: one verdict per manifest, as JSON lines in the order given.
const VALIDATE_SCRIPT: &str = r#"
import json, sys
try:
    import kubernetes_validate
except ImportError:
    sys.exit(3)
verdicts = []
for manifest in json.load(sys.stdin):
    try:
        kubernetes_validate.validate(manifest, sys.argv[1], strict=True)
        verdicts.append({"ok": True})
    except kubernetes_validate.SchemaNotFoundError as error:
        verdicts.append({"unknown": error.message})
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(part) for part in error.path)
        verdicts.append({"error": f"{where}: {error.message}"})
print(json.dumps(verdicts))
"#;

/// Validates manifests against the Kubernetes schemas (strict: unknown fields are errors).
/// Kinds the validator has no schema for must be the custom kinds checked here instead.
fn check_schemas(manifests: &[Value]) -> Result<Vec<String>> {
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE_SCRIPT, KUBERNETES_VERSION])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run python3, which runs kubernetes-validate")?;
    child
        .stdin
        .take()
        .context("python3's stdin")?
        .write_all(serde_json::to_string(manifests)?.as_bytes())?;
    let output = child.wait_with_output()?;
    if output.status.code() == Some(3) {
        bail!("kubernetes-validate is not installed: python3 -m pip install {KUBERNETES_VALIDATE}");
    }
    ensure!(
        output.status.success(),
        "kubernetes-validate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&output.stdout)?;
    ensure!(
        verdicts.len() == manifests.len(),
        "one verdict per manifest"
    );
    let mut problems = Vec::new();
    for (manifest, verdict) in manifests.iter().zip(&verdicts) {
        if let Some(error) = text(verdict, "/error") {
            problems.push(format!("{}: {error}", id(manifest)));
        }
        if let Some(unknown) = text(verdict, "/unknown") {
            let kind = (
                text(manifest, "/apiVersion").unwrap_or_default(),
                text(manifest, "/kind").unwrap_or_default(),
            );
            if !CUSTOM_KINDS.contains(&kind) {
                problems.push(format!("{}: {unknown}", id(manifest)));
            }
        }
    }
    Ok(problems)
}

// ---- Prometheus, Grafana and the collector ----------------------------------------------

/// Runs promtool, or fails saying how to install it.
fn promtool(args: &[&str]) -> Result<std::process::Output> {
    match Command::new("promtool").args(args).output() {
        Ok(output) => Ok(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("promtool is not installed: apt-get install --no-install-recommends prometheus")
        }
        Err(error) => Err(error).context("cannot run promtool"),
    }
}

fn promtool_ok(args: &[&str]) -> Result<()> {
    let output = promtool(args)?;
    ensure!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The `taskmaster_` metric names a PromQL expression uses.
fn taskmaster_metrics_in(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expression.as_bytes();
    let word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':';
    let mut start = 0;
    while let Some(offset) = expression[start..].find("taskmaster_") {
        let begin = start + offset;
        let mut end = begin;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if begin == 0 || !word(bytes[begin - 1]) {
            names.insert(expression[begin..end].to_owned());
        }
        start = end.max(begin + 1);
    }
    names
}

/// Every `taskmaster_` metric of the expressions exists in the process's exposition or is
/// pending from the observability change; other metrics are the known external ones.
fn check_metric_names<'a>(
    expressions: impl IntoIterator<Item = (String, &'a str)>,
    exposed: &BTreeSet<String>,
) -> Vec<String> {
    let pending: BTreeSet<String> = PENDING_METRICS
        .iter()
        .flat_map(|(family, kind)| sample_names(family, kind))
        .collect();
    let mut problems = Vec::new();
    for (origin, expression) in expressions {
        for name in taskmaster_metrics_in(expression) {
            if !exposed.contains(&name) && !pending.contains(&name) {
                problems.push(format!(
                    "{origin}: `{name}` is not a metric the process exposes (or a pending one)"
                ));
            }
        }
        for external in external_metrics_in(expression) {
            if !EXTERNAL_METRICS.contains(&external.as_str()) {
                problems.push(format!(
                    "{origin}: `{external}` is not a metric this deployment has"
                ));
            }
        }
    }
    problems
}

/// Names that look like metrics of other exporters (`up`, `kube_…`, `node_…`,
/// `container_…`) in an expression: selectors, not functions or label names.
fn external_metrics_in(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expression;
    while let Some(begin) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let after = &rest[begin..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let preceded_by_word = begin > 0
            && rest[..begin]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"' || c == '$');
        let followed_by = after[end..].trim_start().chars().next();
        let is_selector = matches!(followed_by, Some('{') | Some('['))
            || followed_by.is_none()
            || matches!(
                followed_by,
                Some(')') | Some(' ') | Some('=') | Some('>') | Some('<')
            );
        if !preceded_by_word
            && is_selector
            && (name == "up"
                || ["kube_", "node_", "container_"]
                    .iter()
                    .any(|p| name.starts_with(p)))
        {
            names.insert(name.to_owned());
        }
        rest = &after[end..];
    }
    names
}

/// Every alert expression, with its alert name.
fn alert_expressions(rules: &Value) -> Vec<(String, String)> {
    array(rules, "/groups")
        .iter()
        .flat_map(|group| array(group, "/rules"))
        .filter_map(|rule| {
            Some((
                format!(
                    "alert {}",
                    text(rule, "/alert").or_else(|| text(rule, "/record"))?
                ),
                text(rule, "/expr")?.to_owned(),
            ))
        })
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    array(dashboard, "/panels")
        .iter()
        .flat_map(|panel| std::iter::once(panel).chain(array(panel, "/panels")))
        .collect()
}

/// The query expressions of a dashboard, with the panel they belong to.
fn dashboard_expressions(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = text(panel, "/title").unwrap_or("?").to_owned();
            array(panel, "/targets").iter().filter_map(move |target| {
                Some((
                    format!("panel `{title}`"),
                    text(target, "/expr")?.to_owned(),
                ))
            })
        })
        .collect()
}

/// What Grafana puts in for its built-in variables, so promtool can parse the expression.
fn grafana_expanded(expression: &str) -> String {
    expression
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// The dashboard model: a data source variable of type prometheus that every panel and
/// query uses, unique panel ids, panels inside the 24-column grid, a query per panel.
fn check_dashboard(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for field in ["uid", "title"] {
        if text(dashboard, &format!("/{field}")).is_none_or(str::is_empty) {
            problems.push(format!("the dashboard has no {field}"));
        }
    }
    if !dashboard["schemaVersion"].is_u64() {
        problems.push("the dashboard has no numeric schemaVersion".into());
    }
    let variables = array(dashboard, "/templating/list");
    let datasource = variables.iter().find(|variable| {
        text(variable, "/type") == Some("datasource")
            && text(variable, "/query") == Some("prometheus")
    });
    let Some(datasource) = datasource.and_then(|variable| text(variable, "/name")) else {
        problems.push("the dashboard has no data source variable of type prometheus".into());
        return problems;
    };
    let reference = format!("${{{datasource}}}");
    let mut ids = BTreeSet::new();
    for panel in panels(dashboard) {
        let title = text(panel, "/title").unwrap_or("?");
        match panel["id"].as_u64() {
            Some(panel_id) if ids.insert(panel_id) => {}
            other => problems.push(format!(
                "panel `{title}`: id {other:?} is missing or repeated"
            )),
        }
        let grid = &panel["gridPos"];
        match (
            grid["x"].as_u64(),
            grid["y"].as_u64(),
            grid["w"].as_u64(),
            grid["h"].as_u64(),
        ) {
            (Some(x), Some(_), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {}
            _ => problems.push(format!(
                "panel `{title}`: gridPos is outside the 24-column grid"
            )),
        }
        if text(panel, "/type") == Some("row") {
            continue;
        }
        if text(panel, "/datasource/uid") != Some(reference.as_str()) {
            problems.push(format!(
                "panel `{title}`: does not use the data source variable {reference}"
            ));
        }
        let targets = array(panel, "/targets");
        if targets.is_empty() {
            problems.push(format!("panel `{title}`: no query"));
        }
        let mut references = BTreeSet::new();
        for target in targets {
            if text(target, "/expr").is_none_or(str::is_empty) {
                problems.push(format!("panel `{title}`: a query has no expr"));
            }
            if text(target, "/datasource/uid") != Some(reference.as_str()) {
                problems.push(format!("panel `{title}`: a query does not use {reference}"));
            }
            if !text(target, "/refId")
                .is_some_and(|reference| references.insert(reference.to_owned()))
            {
                problems.push(format!("panel `{title}`: a refId is missing or repeated"));
            }
            if let Some(expression) = text(target, "/expr") {
                if grafana_expanded(expression).contains('$') {
                    problems.push(format!(
                        "panel `{title}`: `{expression}` uses an undefined variable"
                    ));
                }
            }
        }
    }
    problems
}

/// The collector config: OTLP over gRPC and HTTP in, batched, out to the debug exporter and
/// an OTLP exporter; every component a pipeline names is defined.
fn check_collector(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for protocol in ["grpc", "http"] {
        if config
            .pointer(&format!("/receivers/otlp/protocols/{protocol}"))
            .is_none()
        {
            problems.push(format!("the otlp receiver does not take {protocol}"));
        }
    }
    let traces = config.pointer("/service/pipelines/traces");
    if traces.is_none() {
        problems.push("there is no traces pipeline".into());
    }
    for (pipeline, components) in config
        .pointer("/service/pipelines")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for section in ["receivers", "processors", "exporters"] {
            for component in array(components, &format!("/{section}")) {
                let name = component.as_str().unwrap_or_default();
                if config
                    .pointer(&format!("/{section}/{}", name.replace('/', "~1")))
                    .is_none()
                {
                    problems.push(format!(
                        "pipeline {pipeline}: {section} `{name}` is not defined"
                    ));
                }
            }
        }
    }
    for extension in array(config, "/service/extensions") {
        let name = extension.as_str().unwrap_or_default();
        if config
            .pointer(&format!("/extensions/{}", name.replace('/', "~1")))
            .is_none()
        {
            problems.push(format!("the extension `{name}` is not defined"));
        }
    }
    if let Some(traces) = traces {
        let uses = |section: &str, wanted: &dyn Fn(&str) -> bool| {
            array(traces, &format!("/{section}"))
                .iter()
                .filter_map(Value::as_str)
                .any(wanted)
        };
        if !uses("receivers", &|name| {
            name == "otlp" || name.starts_with("otlp/")
        }) {
            problems.push("the traces pipeline does not receive OTLP".into());
        }
        if !uses("processors", &|name| {
            name == "batch" || name.starts_with("batch/")
        }) {
            problems.push("the traces pipeline does not batch".into());
        }
        if !uses("exporters", &|name| {
            name == "debug" || name.starts_with("debug/")
        }) {
            problems.push("the traces pipeline has no debug exporter".into());
        }
        if !uses("exporters", &|name| name.starts_with("otlp")) {
            problems.push("the traces pipeline exports to no tracing backend over OTLP".into());
        }
    }
    problems
}

/// `${NAME:-default}` and `${NAME-default}` as compose interpolates them with NAME unset.
fn compose_interpolated(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + end];
        if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
            out.push_str(default);
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn compose_environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Value::Array(entries)) => entries
            .iter()
            .filter_map(Value::as_str)
            .map(|entry| match entry.split_once('=') {
                Some((name, value)) => (name.to_owned(), compose_interpolated(value)),
                None => (entry.to_owned(), String::new()),
            })
            .collect(),
        other => string_map(other)
            .into_iter()
            .map(|(name, value)| (name, compose_interpolated(&value)))
            .collect(),
    }
}

/// `(source, target)` of a service's short-syntax volumes.
fn compose_mounts(service: &Value) -> Vec<(String, String)> {
    array(service, "/volumes")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|spec| {
            let mut parts = spec.split(':');
            Some((
                parts.next()?.trim_start_matches("./").to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// The container port a compose service publishes first.
fn compose_target_port(service: &Value) -> Option<u16> {
    let first = array(service, "/ports").first()?;
    scalar(first)?
        .rsplit(':')
        .next()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

// ---- tests ------------------------------------------------------------------------------

fn rendered(directory: &str) -> Vec<Value> {
    render(&repo_path(directory)).unwrap_or_else(|error| panic!("{directory}: {error:#}"))
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// The files a kustomization lists as resources or patches.
fn listed_files(directory: &str) -> BTreeSet<String> {
    let kustomization =
        yaml_file(&format!("{directory}/kustomization.yaml")).expect("a kustomization");
    array(&kustomization, "/resources")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .chain(
            array(&kustomization, "/patches")
                .iter()
                .filter_map(|patch| text(patch, "/path").map(str::to_owned)),
        )
        .collect()
}

#[test]
fn every_manifest_file_is_part_of_a_kustomization() {
    for directory in [
        "deploy/k8s/base",
        "deploy/k8s/overlays/dev",
        "deploy/k8s/overlays/prod",
    ] {
        let listed = listed_files(directory);
        for entry in std::fs::read_dir(repo_path(directory)).expect("the directory") {
            let name = entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                assert!(
                    listed.contains(&name),
                    "{directory}/{name} is in no kustomization, so nothing applies or checks it"
                );
            }
        }
    }
}

#[test]
fn every_overlay_renders_and_every_patch_targets_a_resource_of_the_base() {
    let base = rendered("deploy/k8s/base");
    assert!(
        base.len() >= 10,
        "the base renders {} resources",
        base.len()
    );
    for overlay in OVERLAYS {
        let manifests = rendered(&format!("deploy/k8s/overlays/{overlay}"));
        assert_eq!(
            manifests.len(),
            base.len(),
            "overlay {overlay} adds or drops resources; it should only patch the base"
        );
        for resource in &manifests {
            assert!(
                text(resource, "/metadata/namespace").is_some(),
                "overlay {overlay} leaves {} without a namespace",
                id(resource)
            );
        }
    }
    for resource in &base {
        assert!(
            text(resource, "/metadata/namespace").is_none(),
            "the base names a namespace for {}: it should be namespace-agnostic",
            id(resource)
        );
    }
}

#[test]
fn every_manifest_is_valid_for_kubernetes_and_custom_resources_are_well_formed() -> Result<()> {
    let mut all = Vec::new();
    for directory in [
        "deploy/k8s/base",
        "deploy/k8s/overlays/dev",
        "deploy/k8s/overlays/prod",
    ] {
        all.extend(rendered(directory));
    }
    assert_no_problems("schema validation", &check_schemas(&all)?);
    let clusters: Vec<&Value> = of_kind(&all, "Cluster").collect();
    assert!(!clusters.is_empty(), "no CloudNativePG Cluster is deployed");
    for cluster in clusters {
        assert_no_problems("CloudNativePG Cluster", &check_cnpg_cluster(cluster));
    }
    Ok(())
}

#[test]
fn manifests_agree_with_the_binary_in_every_overlay() -> Result<()> {
    let binary = binary();
    let platform = platform()?;
    for directory in [
        "deploy/k8s/base",
        "deploy/k8s/overlays/dev",
        "deploy/k8s/overlays/prod",
    ] {
        assert_no_problems(
            directory,
            &check_manifests(&rendered(directory), binary, &platform),
        );
    }
    Ok(())
}

/// The numbers the brief fixes: a primary and a replica, R3 streams on three servers, and
/// production actually in production mode with more replicas than development.
#[test]
fn production_runs_in_production_mode_with_a_replica_and_more_pods() -> Result<()> {
    let replicas = |manifests: &[Value], name: &str| {
        manifests
            .iter()
            .find(|resource| {
                text(resource, "/metadata/name") == Some(name)
                    && text(resource, "/kind") == Some("Deployment")
            })
            .and_then(|resource| resource["spec"]["replicas"].as_u64())
            .unwrap_or_else(|| panic!("no Deployment {name}"))
    };
    let config = |manifests: &[Value], key: &str| {
        of_kind(manifests, "ConfigMap")
            .find_map(|config| text(config, &format!("/data/{key}")).map(str::to_owned))
    };
    let cluster_instances = |manifests: &[Value]| {
        of_kind(manifests, "Cluster")
            .find_map(|cluster| cluster.pointer("/spec/instances").and_then(Value::as_u64))
    };
    let base = rendered("deploy/k8s/base");
    let dev = rendered("deploy/k8s/overlays/dev");
    let prod = rendered("deploy/k8s/overlays/prod");
    assert_eq!(
        cluster_instances(&base),
        Some(2),
        "base: a primary and one replica"
    );
    assert_eq!(
        cluster_instances(&prod),
        Some(2),
        "prod: a primary and one replica"
    );
    assert_eq!(
        platform()?.nats_servers,
        3,
        "nats-values.yaml: a 3-server cluster"
    );
    assert_eq!(
        config(&base, "TASKMASTER_NATS_REPLICAS").as_deref(),
        Some("3")
    );
    assert_eq!(
        config(&prod, "TASKMASTER_ENV").as_deref(),
        Some("production")
    );
    assert_ne!(
        config(&dev, "TASKMASTER_ENV").as_deref(),
        Some("production")
    );
    for name in [
        "taskmaster-api",
        "taskmaster-projector",
        "taskmaster-insights",
    ] {
        assert!(
            replicas(&prod, name) > replicas(&dev, name),
            "prod runs no more {name} than dev"
        );
    }
    let values = yaml_file("deploy/k8s/nats-values.yaml")?;
    assert_eq!(
        values.pointer("/config/cluster/enabled"),
        Some(&json!(true))
    );
    assert!(
        text(&values, "/config/jetstream/fileStore/pvc/size").is_some_and(quantity),
        "nats-values.yaml: JetStream's volume has no size"
    );
    assert_eq!(
        values.pointer("/config/jetstream/enabled"),
        Some(&json!(true))
    );
    assert_eq!(
        values.pointer("/config/jetstream/fileStore/enabled"),
        Some(&json!(true))
    );
    Ok(())
}

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

/// Compose runs the collector always and Prometheus and Grafana under a profile, wired to
/// the binary: taskmaster's environment holds names the binary reads and values it accepts,
/// traces go to the collector service on its HTTP receiver's port, Prometheus loads the
/// mounted config and scrapes the real port and path, Grafana gets the provisioning, the
/// data source is the prometheus service and the dashboard lies where the provider looks.
fn check_compose(compose: &Value, binary: &Binary) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut check = |holds: bool, problem: String| {
        if !holds {
            problems.push(problem);
        }
    };
    let services = compose["services"]
        .as_object()
        .context("compose has no services")?;
    let service = |name: &str| {
        services
            .get(name)
            .with_context(|| format!("compose has no service `{name}`"))
    };
    let taskmaster = service("taskmaster")?;

    let environment = compose_environment(taskmaster);
    for name in environment.keys() {
        check(
            binary.reads(name),
            format!("compose sets {name}, which the binary does not read"),
        );
    }
    let settings = Settings::from_lookup(|name| environment.get(name).cloned())
        .map_err(|error| anyhow!("the binary refuses compose's settings: {error}"))?;
    let port = settings.http_addr.port();
    check(
        !settings.http_addr.ip().is_loopback(),
        format!("compose's taskmaster listens on {}", settings.http_addr),
    );
    check(
        compose_target_port(taskmaster) == Some(port),
        format!(
            "compose publishes {:?}, taskmaster listens on {port}",
            compose_target_port(taskmaster)
        ),
    );

    let endpoint = settings.otlp_endpoint.clone().unwrap_or_default();
    let (host, otlp_port) = host_port(&endpoint, 4318).unwrap_or_default();
    let config = yaml_file("deploy/otel-collector.yaml")?;
    problems.extend(check_collector(&config));
    match services.get(&host) {
        None => problems.push(format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT `{endpoint}` names no compose service"
        )),
        Some(collector) => {
            let mounted = compose_mounts(collector)
                .into_iter()
                .find(|(source, _)| source == "deploy/otel-collector.yaml");
            let command: Vec<String> = array(collector, "/command")
                .iter()
                .filter_map(scalar)
                .collect();
            match mounted {
                Some((_, target)) if command.contains(&format!("--config={target}")) => {}
                _ => problems.push(format!(
                    "service `{host}` does not run deploy/otel-collector.yaml (command {command:?})"
                )),
            }
            let receiver =
                text(&config, "/receivers/otlp/protocols/http/endpoint").unwrap_or("0.0.0.0:4318");
            if !receiver.ends_with(&format!(":{otlp_port}")) {
                problems.push(format!(
                    "the collector takes OTLP/HTTP on {receiver}, taskmaster sends to port {otlp_port}"
                ));
            }
        }
    }

    for (name, service) in services {
        let profiles = array(service, "/profiles");
        let optional = matches!(name.as_str(), "prometheus" | "grafana");
        if profiles.is_empty() == optional {
            problems.push(format!(
                "service `{name}` has profiles {profiles:?}; only prometheus and grafana should"
            ));
        }
    }

    let prometheus = service("prometheus")?;
    let directory = compose_mounts(prometheus)
        .into_iter()
        .find(|(source, _)| source.trim_end_matches('/') == "deploy/prometheus")
        .map(|(_, target)| target);
    let command: Vec<String> = array(prometheus, "/command")
        .iter()
        .filter_map(scalar)
        .collect();
    match directory {
        Some(directory) if command.contains(&format!("--config.file={directory}/prometheus.yml")) => {}
        _ => problems.push(format!(
            "prometheus does not load the mounted deploy/prometheus/prometheus.yml (command {command:?})"
        )),
    }
    let scrape = yaml_file("deploy/prometheus/prometheus.yml")?;
    match array(&scrape, "/scrape_configs")
        .iter()
        .find(|job| text(job, "/job_name") == Some("taskmaster"))
    {
        None => problems.push("prometheus.yml has no job `taskmaster` (the alerts name it)".into()),
        Some(job) => {
            let path = text(job, "/metrics_path").unwrap_or("/metrics");
            if !binary.get_routes.contains(path) {
                problems.push(format!("prometheus scrapes {path}, not a route"));
            }
            for target in array(job, "/static_configs")
                .iter()
                .flat_map(|config| array(config, "/targets"))
            {
                let target = target.as_str().unwrap_or_default();
                if target != format!("taskmaster:{port}") {
                    problems.push(format!(
                        "prometheus scrapes {target}, not taskmaster:{port}"
                    ));
                }
            }
        }
    }

    let grafana = service("grafana")?;
    let mounts = compose_mounts(grafana);
    if !mounts.contains(&(
        "deploy/grafana/provisioning".into(),
        "/etc/grafana/provisioning".into(),
    )) {
        problems.push(format!(
            "grafana does not mount deploy/grafana/provisioning at /etc/grafana/provisioning: {mounts:?}"
        ));
    }
    let datasources = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yaml")?;
    let datasource = array(&datasources, "/datasources")
        .first()
        .cloned()
        .unwrap_or(json!({}));
    let url = text(&datasource, "/url").unwrap_or_default();
    let points_at_prometheus = text(&datasource, "/type") == Some("prometheus")
        && host_port(url, 9090).is_some_and(|(host, port)| {
            host == "prometheus" && compose_target_port(prometheus) == Some(port)
        });
    if !points_at_prometheus {
        problems.push(format!(
            "the Grafana data source `{url}` is not the prometheus service"
        ));
    }
    let providers = yaml_file("deploy/grafana/provisioning/dashboards/taskmaster.yaml")?;
    let folder = text(&providers, "/providers/0/options/path").unwrap_or_default();
    let dashboard = (
        "deploy/grafana/taskmaster-dashboard.json".to_owned(),
        format!("{folder}/taskmaster-dashboard.json"),
    );
    if !mounts.contains(&dashboard) {
        problems.push(format!(
            "the dashboard is not mounted into `{folder}`: {mounts:?}"
        ));
    }
    Ok(problems)
}

#[test]
fn compose_runs_the_collector_and_monitoring_profiles_wired_to_the_binary() -> Result<()> {
    assert_no_problems(
        "docker-compose.yml",
        &check_compose(&compose_file()?, binary())?,
    );
    Ok(())
}

#[test]
fn a_miswired_compose_file_is_refused() -> Result<()> {
    let mut compose = compose_file()?;
    let services = &mut compose["services"];
    services["taskmaster"]["environment"]["TASKMASTER_PARTITONS"] = json!("8");
    services["taskmaster"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] =
        json!("http://jaeger:4318");
    services["taskmaster"]["ports"] = json!(["8081:8081"]);
    services["prometheus"]
        .as_object_mut()
        .unwrap()
        .remove("profiles");
    services["grafana"]["volumes"] = json!([]);
    let problems = check_compose(&compose, binary())?;
    assert_refused(&problems, "compose sets TASKMASTER_PARTITONS");
    assert_refused(&problems, "`http://jaeger:4318` names no compose service");
    assert_refused(
        &problems,
        "compose publishes Some(8081), taskmaster listens on 8080",
    );
    assert_refused(&problems, "service `prometheus` has profiles []");
    assert_refused(
        &problems,
        "grafana does not mount deploy/grafana/provisioning",
    );
    assert_refused(&problems, "the dashboard is not mounted");
    Ok(())
}

#[test]
fn promtool_refuses_a_broken_rule_file() -> Result<()> {
    let scratch = std::env::temp_dir().join(format!(
        "taskmaster-broken-{}.rules.yml",
        std::process::id()
    ));
    std::fs::write(
        &scratch,
        "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: rate(taskmaster_commands_total[5m]\n",
    )?;
    let checked = promtool_ok(&["check", "rules", &scratch.display().to_string()]);
    let _ = std::fs::remove_file(&scratch);
    let error = checked.expect_err("promtool accepted an unclosed parenthesis");
    assert!(
        error.to_string().contains("promtool check rules"),
        "{error:#}"
    );
    Ok(())
}

#[test]
fn prometheus_config_alerts_and_their_unit_tests_pass_promtool() -> Result<()> {
    promtool_ok(&[
        "check",
        "config",
        &repo_path("deploy/prometheus/prometheus.yml")
            .display()
            .to_string(),
    ])?;
    promtool_ok(&[
        "check",
        "rules",
        &repo_path("deploy/prometheus/alerts.yml")
            .display()
            .to_string(),
    ])?;
    promtool_ok(&[
        "test",
        "rules",
        &repo_path("deploy/prometheus/alerts.test.yml")
            .display()
            .to_string(),
    ])?;
    Ok(())
}

#[test]
fn alerts_cover_lag_dead_letters_errors_readiness_and_training_with_real_metrics() -> Result<()> {
    let rules = yaml_file("deploy/prometheus/alerts.yml")?;
    let expressions = alert_expressions(&rules);
    let exposed = &binary().metric_names;
    assert_no_problems(
        "alert metrics",
        &check_metric_names(
            expressions.iter().map(|(at, e)| (at.clone(), e.as_str())),
            exposed,
        ),
    );
    for needle in [
        "taskmaster_projection_lag_events",
        "taskmaster_consumer_lag_events",
        "taskmaster_dead_letters_pending",
        "taskmaster_projection_dead_letters_total",
        r#"status=~"5.."#,
        r#"up{job="taskmaster"}"#,
        "kube_pod_status_ready",
        r#"taskmaster_model_trainings_total{outcome="failed"}"#,
    ] {
        assert!(
            expressions
                .iter()
                .any(|(_, expression)| expression.contains(needle)),
            "no alert uses {needle}"
        );
    }
    for rule in array(&rules, "/groups")
        .iter()
        .flat_map(|group| array(group, "/rules"))
    {
        let name = text(rule, "/alert").unwrap_or("?");
        assert!(
            text(rule, "/labels/severity").is_some(),
            "alert {name} has no severity"
        );
        assert!(
            text(rule, "/annotations/summary").is_some(),
            "alert {name} has no summary"
        );
    }
    Ok(())
}

#[test]
fn the_dashboard_is_a_valid_model_whose_queries_parse_and_use_real_metrics() -> Result<()> {
    let dashboard: Value =
        serde_json::from_str(&read_repo_file("deploy/grafana/taskmaster-dashboard.json")?)
            .context("the dashboard is not JSON")?;
    assert_no_problems("dashboard model", &check_dashboard(&dashboard));
    let expressions = dashboard_expressions(&dashboard);
    assert_no_problems(
        "dashboard metrics",
        &check_metric_names(
            expressions.iter().map(|(at, e)| (at.clone(), e.as_str())),
            &binary().metric_names,
        ),
    );
    for needle in [
        "taskmaster_http_requests_total",
        "histogram_quantile(0.5, sum by (le) (rate(taskmaster_http_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(taskmaster_http_request_duration_seconds_bucket",
        r#"status=~"5.."#,
        "taskmaster_commands_total",
        "max by (projection) (taskmaster_projection_lag_events)",
        "partition",
        "taskmaster_consumer_lag_events",
        "taskmaster_dead_letters_pending",
        r#"taskmaster_insights_cache_requests_total{outcome="hit"}"#,
        "taskmaster_model_version",
        "taskmaster_model_holdout",
        "taskmaster_eventstore_append_duration_seconds_bucket",
    ] {
        assert!(
            expressions.iter().any(|(_, expression)| expression.contains(needle)),
            "no dashboard query uses {needle}"
        );
    }

    // promtool parses every query, as recording rules of a scratch rule file.
    let rules = json!({
        "groups": [{
            "name": "dashboard",
            "rules": expressions.iter().enumerate().map(|(index, (_, expression))| json!({
                "record": format!("dashboard:query_{index}"),
                "expr": grafana_expanded(expression),
            })).collect::<Vec<_>>(),
        }]
    });
    let scratch = std::env::temp_dir().join(format!(
        "taskmaster-dashboard-{}.rules.yml",
        std::process::id()
    ));
    std::fs::write(&scratch, serde_yaml::to_string(&rules)?)?;
    let checked = promtool_ok(&["check", "rules", &scratch.display().to_string()]);
    let _ = std::fs::remove_file(&scratch);
    checked
}

// ---- every check refuses what it should -------------------------------------------------

/// The base, rendered, with one change; and the problems the manifest check finds in it.
fn problems_after(change: impl FnOnce(&mut Vec<Value>)) -> Vec<String> {
    let mut manifests = rendered("deploy/k8s/base");
    change(&mut manifests);
    check_manifests(&manifests, binary(), &platform().expect("nats-values.yaml"))
}

fn named<'a>(manifests: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    manifests
        .iter_mut()
        .find(|resource| {
            text(resource, "/kind") == Some(kind) && text(resource, "/metadata/name") == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind}/{name} in the base"))
}

fn main_container<'a>(manifests: &'a mut [Value], deployment: &str) -> &'a mut Value {
    &mut named(manifests, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
}

fn assert_refused(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|problem| problem.contains(needle)),
        "expected a problem mentioning `{needle}`, got:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_unchanged_base_passes_so_each_refusal_below_is_the_change_alone() {
    assert_no_problems("base", &problems_after(|_| {}));
}

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

#[test]
fn another_image_or_an_unpinned_one_is_refused() {
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-api")["image"] =
            json!("registry.example.com/task-master:1");
    });
    assert_refused(
        &problems,
        "in the image `registry.example.com/task-master:1`",
    );
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-api")["image"] = json!("taskmaster:latest");
    });
    assert_refused(&problems, "has no fixed tag");
}

#[test]
fn a_weakened_security_context_is_refused() {
    let problems = problems_after(|manifests| {
        let container = main_container(manifests, "taskmaster-api");
        container["securityContext"]["readOnlyRootFilesystem"] = json!(false);
        container["securityContext"]["capabilities"]["drop"] = json!([]);
    });
    assert_refused(&problems, "readOnlyRootFilesystem is not true");
    assert_refused(&problems, "does not drop ALL capabilities");
    let problems = problems_after(|manifests| {
        named(manifests, "Deployment", "taskmaster-ml")["spec"]["template"]["spec"]
            ["securityContext"]["runAsUser"] = json!(1000);
    });
    assert_refused(&problems, "runs as uid 1000, the image's user is 10001");
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-projector")["resources"]
            .as_object_mut()
            .unwrap()
            .remove("limits");
    });
    assert_refused(&problems, "no memory in resources.limits");
    let problems = problems_after(|manifests| {
        main_container(manifests, "taskmaster-projector")["resources"]["requests"]["memroy"] =
            json!("1Gi");
    });
    assert_refused(
        &problems,
        "resources.requests names `memroy`, not a resource",
    );
}

#[test]
fn a_missing_network_allowance_is_refused() {
    let problems = problems_after(|manifests| {
        let egress = named(manifests, "NetworkPolicy", "taskmaster-egress")["spec"]["egress"]
            .as_array_mut()
            .unwrap();
        egress.retain(|rule| !rule_ports(rule).contains(&(5432, "TCP".into())));
    });
    assert_refused(
        &problems,
        "no NetworkPolicy lets it reach PostgreSQL at taskmaster-db-rw:5432",
    );
    let problems = problems_after(|manifests| {
        manifests.retain(|resource| text(resource, "/metadata/name") != Some("default-deny"));
    });
    assert_refused(&problems, "no default-deny NetworkPolicy");
    let problems = problems_after(|manifests| {
        manifests.retain(|resource| {
            text(resource, "/metadata/name") != Some("redis")
                || text(resource, "/kind") != Some("NetworkPolicy")
        });
    });
    assert_refused(&problems, "Redis (redis) admits no traffic from it on 6379");
}

#[test]
fn wiring_to_missing_dependencies_or_capacity_is_refused() {
    let problems = problems_after(|manifests| {
        named(manifests, "ConfigMap", "taskmaster")["data"]["TASKMASTER_NATS_URL"] =
            json!("nats://nats-cluster:4222");
    });
    assert_refused(&problems, "the NATS release's Service is `nats`");
    let problems = problems_after(|manifests| {
        named(manifests, "ConfigMap", "taskmaster")["data"]["TASKMASTER_NATS_REPLICAS"] =
            json!("5");
    });
    assert_refused(
        &problems,
        "TASKMASTER_NATS_REPLICAS is 5, the NATS cluster has 3 servers",
    );
    let problems = problems_after(|manifests| {
        named(manifests, "Secret", "taskmaster")["stringData"]["DATABASE_URL"] =
            json!("postgres://taskmaster:REPLACE_ME@postgres:5432/taskmaster");
    });
    assert_refused(&problems, "DATABASE_URL points at `postgres`");
    let problems = problems_after(|manifests| {
        named(manifests, "Cluster", "taskmaster-db")["spec"]["postgresql"]["parameters"]
            ["max_connections"] = json!("100");
    });
    assert_refused(&problems, "max_connections is 100");
    let problems = problems_after(|manifests| {
        named(manifests, "Deployment", "taskmaster-projector")["spec"]["replicas"] = json!(9);
    });
    assert_refused(&problems, "9 projector replicas for 8 partitions");
    let problems = problems_after(|manifests| {
        named(manifests, "PodDisruptionBudget", "taskmaster-api")["spec"]["minAvailable"] =
            json!(2);
    });
    assert_refused(&problems, "blocks every drain");
    let problems = problems_after(|manifests| {
        named(manifests, "Service", "taskmaster-api")["spec"]["ports"][0]["targetPort"] =
            json!("metrics");
    });
    assert_refused(&problems, "targetPort \"metrics\" is not a container port");
    let problems = problems_after(|manifests| {
        named(manifests, "HorizontalPodAutoscaler", "taskmaster-api")["spec"]["metrics"][1]
            ["pods"]["metric"]["name"] = json!("http_requests_per_second");
    });
    assert_refused(
        &problems,
        "is not the rate of a counter the process exposes",
    );
}

#[test]
fn a_malformed_cloudnativepg_cluster_is_refused() {
    let mut cluster = rendered("deploy/k8s/base")
        .into_iter()
        .find(|resource| text(resource, "/kind") == Some("Cluster"))
        .expect("a Cluster");
    cluster["spec"]["instances"] = json!("two");
    cluster["spec"]["storage"]["size"] = json!("lots");
    cluster["spec"]["replicas"] = json!(2);
    let problems = check_cnpg_cluster(&cluster);
    assert_refused(&problems, "spec.instances must be a positive integer");
    assert_refused(
        &problems,
        "spec.storage.size Some(\"lots\") is not a quantity",
    );
    assert_refused(&problems, "spec.replicas is not a field");
}

#[test]
fn the_schema_validator_refuses_an_unknown_field_and_an_unknown_kind() -> Result<()> {
    let mut deployment = rendered("deploy/k8s/base")
        .into_iter()
        .find(|resource| text(resource, "/kind") == Some("Deployment"))
        .expect("a Deployment");
    deployment["spec"]["replica"] = json!(2);
    let unknown =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let problems = check_schemas(&[deployment, unknown])?;
    assert_refused(&problems, "replica");
    assert_refused(&problems, "Widget");
    Ok(())
}

#[test]
fn the_renderer_refuses_what_kustomize_would_do_differently_or_not_at_all() {
    let base = repo_path("deploy/k8s/base");
    let overlay = |kustomization: Value| {
        render_kustomization(&base, &kustomization)
            .unwrap_err()
            .to_string()
    };
    let header = |mut fields: Value| {
        fields["apiVersion"] = json!("kustomize.config.k8s.io/v1beta1");
        fields["kind"] = json!("Kustomization");
        fields
    };
    assert!(overlay(header(json!({"resources": ["missing.yaml"]})))
        .contains("`missing.yaml` does not exist"));
    assert!(overlay(header(json!({"commonLabels": {"a": "b"}})))
        .contains("`commonLabels` is not rendered"));
    assert!(overlay(header(
        json!({"resources": ["api.yaml"], "patches": [{"path": "ml.yaml"}]})
    ))
    .contains("targets Deployment/taskmaster-ml, which the resources do not have"));
    assert!(overlay(header(
        json!({"resources": ["redis.yaml"], "patches": [{"path": "redis.yaml"}]})
    ))
    .contains("holds 2 documents; kustomize takes one per path"));
    assert!(overlay(header(
        json!({"resources": ["api.yaml"], "patches": [{"path": "api.yaml", "target": {"kind": "Deployment"}}]})
    ))
    .contains("only `patches: - path: <file>`"));
    assert!(overlay(header(
        json!({"resources": ["api.yaml"], "replicas": [{"name": "taskmaster-web", "count": 2}]})
    ))
    .contains("no workload has that name"));
    assert!(overlay(header(
        json!({"resources": ["api.yaml"], "images": [{"name": "taskmaster-web", "newTag": "1"}]})
    ))
    .contains("used by no container"));
    assert!(
        overlay(header(json!({"resources": ["api.yaml", "api.yaml"]}))).contains("declared twice")
    );
}

#[test]
fn strategic_merge_merges_named_lists_deletes_nulls_and_replaces_the_rest() -> Result<()> {
    let mut target = json!({"spec": {
        "containers": [{"name": "a", "image": "x", "args": ["1", "2"], "env": [{"name": "K", "value": "1"}]}],
        "minAvailable": 1,
    }});
    let patch = json!({"spec": {
        "containers": [{"name": "a", "args": ["3"], "env": [{"name": "L", "value": "2"}]}, {"name": "b", "image": "y"}],
        "minAvailable": null,
        "maxUnavailable": 1,
    }});
    strategic_merge(&mut target, &patch, "")?;
    assert_eq!(
        target,
        json!({"spec": {
            "containers": [
                {"name": "a", "image": "x", "args": ["3"], "env": [{"name": "K", "value": "1"}, {"name": "L", "value": "2"}]},
                {"name": "b", "image": "y"},
            ],
            "maxUnavailable": 1,
        }})
    );
    assert!(strategic_merge(&mut target, &json!({"$patch": "delete"}), "").is_err());

    // A custom resource's patch is a JSON merge patch: its lists are replaced whole.
    let mut custom = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
    let patch = json!({"spec": {"containers": [{"name": "b"}]}});
    strategic_merge(&mut custom, &patch, JSON_MERGE)?;
    assert_eq!(custom, json!({"spec": {"containers": [{"name": "b"}]}}));
    Ok(())
}

#[test]
fn an_overlay_image_keeps_the_name_the_checks_recognise() {
    let prod = rendered("deploy/k8s/overlays/prod");
    let images: BTreeSet<String> = prod
        .iter()
        .flat_map(containers)
        .filter_map(|container| text(container, "/image").map(str::to_owned))
        .collect();
    assert!(
        images.contains("registry.example.com/taskmaster:0.1.0"),
        "{images:?}"
    );
    assert_eq!(
        split_image("registry.example.com:5000/taskmaster:0.1.0"),
        ("registry.example.com:5000/taskmaster", Some("0.1.0"))
    );
    assert_eq!(split_image("taskmaster"), ("taskmaster", None));
}

#[test]
fn an_unknown_metric_or_a_broken_dashboard_or_collector_is_refused() -> Result<()> {
    let exposed = &binary().metric_names;
    let problems = check_metric_names(
        [
            ("a".to_owned(), "rate(taskmaster_http_request_total[5m])"),
            ("b".to_owned(), "kube_pod_ready == 0"),
        ],
        exposed,
    );
    assert_refused(&problems, "`taskmaster_http_request_total` is not a metric");
    assert_refused(&problems, "`kube_pod_ready` is not a metric");
    assert!(check_metric_names(
        [("c".to_owned(), "sum(rate(taskmaster_commands_total[5m]))")],
        exposed
    )
    .is_empty());

    let mut dashboard: Value =
        serde_json::from_str(&read_repo_file("deploy/grafana/taskmaster-dashboard.json")?)?;
    dashboard["panels"][1]["datasource"] = json!({"type": "prometheus", "uid": "prometheus"});
    dashboard["panels"][2]["id"] = dashboard["panels"][3]["id"].clone();
    dashboard["panels"][3]["targets"][0]["expr"] =
        json!("rate(taskmaster_commands_total[$window])");
    let problems = check_dashboard(&dashboard);
    assert_refused(
        &problems,
        "does not use the data source variable ${datasource}",
    );
    assert_refused(&problems, "is missing or repeated");
    assert_refused(&problems, "uses an undefined variable");
    dashboard["templating"]["list"] = json!([]);
    assert_refused(&check_dashboard(&dashboard), "no data source variable");

    let mut collector = yaml_file("deploy/otel-collector.yaml")?;
    collector["service"]["pipelines"]["traces"]["exporters"] = json!(["debug", "jaeger"]);
    collector["receivers"]["otlp"]["protocols"]
        .as_object_mut()
        .unwrap()
        .remove("http");
    let problems = check_collector(&collector);
    assert_refused(&problems, "exporters `jaeger` is not defined");
    assert_refused(&problems, "does not take http");
    assert_refused(&problems, "exports to no tracing backend");
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
