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
//! Each check returns the problems it found. Each module holds its checks, then the tests
//! that run them on the real files, then tests that feed them a broken input and expect a
//! refusal.
//! - here: what every module reads files and Kubernetes objects with ([`yaml_file`],
//!   [`text`], [`array`], [`containers`], [`split_image`], …) and asserts with
//!   ([`assert_no_problems`], [`assert_refused`]).
//! - [`binary`]: the facts about the binary ([`binary::binary`]: settings names, GET
//!   routes, metric names, image, entrypoint, uid), and each taskmaster container checked
//!   against them ([`binary::check_taskmaster_container`]: command line and roles,
//!   environment names and values, port, probes, scrape annotations), the settings in
//!   ConfigMaps and Secrets, and the roles across the workloads.
//! - [`kustomize`]: the kustomize subset ([`kustomize::render`],
//!   [`kustomize::strategic_merge`]): every file is rendered, every overlay renders, and
//!   what kustomize would do differently is refused.
//! - [`manifests`]: the checks of a rendered set of manifests
//!   ([`manifests::check_manifests`], which runs the container checks of [`binary`] too):
//!   images, pod security, Services, Ingresses, autoscalers, disruption budgets,
//!   NetworkPolicies and the wiring to NATS, PostgreSQL and Redis; the CloudNativePG
//!   Cluster; the schemas ([`manifests::check_schemas`]). Its
//!   [`manifests::problems_after`] changes the rendered base for the refusals here and in
//!   [`binary`].
//! - [`compose`]: docker-compose.yml's taskmaster, collector and monitoring services wired
//!   to the binary ([`compose::check_compose`]).
//! - [`monitoring`]: promtool on the Prometheus config, the alerts and their unit tests;
//!   the metric names of alerts and dashboard ([`monitoring::check_metric_names`]); the
//!   dashboard model ([`monitoring::check_dashboard`]); the collector config
//!   ([`monitoring::check_collector`]).
//!
//! The container setup itself (compose's services, the Dockerfile, the build context) is the
//! separate target `tests/compose.rs`, which needs no running services.

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod compose;
mod kustomize;
mod manifests;
mod monitoring;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// Kinds that `kubernetes-validate` has no schema for, checked structurally here instead.
pub(crate) const CUSTOM_KINDS: &[(&str, &str)] = &[("postgresql.cnpg.io/v1", "Cluster")];

// ---- files ------------------------------------------------------------------------------

pub(crate) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub(crate) fn read_repo_file(relative: &str) -> Result<String> {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every document of a YAML stream, as JSON values (what the schema validator takes);
/// empty documents (only comments) are dropped.
pub(crate) fn yaml_documents(text: &str, origin: &str) -> Result<Vec<Value>> {
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

pub(crate) fn yaml_file(relative: &str) -> Result<Value> {
    let mut documents = yaml_documents(&read_repo_file(relative)?, relative)?;
    ensure!(
        documents.len() == 1,
        "{relative} should hold one YAML document, not {}",
        documents.len()
    );
    Ok(documents.remove(0))
}

pub(crate) fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// A scalar as text: YAML gives numbers where Kubernetes and compose mean strings.
pub(crate) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

pub(crate) fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(crate) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(key, value)| Some((key.clone(), scalar(value)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// `Kind/name` of a manifest, for messages.
pub(crate) fn id(resource: &Value) -> String {
    format!(
        "{}/{}",
        text(resource, "/kind").unwrap_or("?"),
        text(resource, "/metadata/name").unwrap_or("?")
    )
}

// ---- URLs -------------------------------------------------------------------------------

/// `(host, port)` of a URL such as `postgres://user:password@host:5432/db`.
pub(crate) fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
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

// ---- Kubernetes objects -----------------------------------------------------------------

pub(crate) fn of_kind<'a>(
    manifests: &'a [Value],
    kind: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    manifests
        .iter()
        .filter(move |resource| text(resource, "/kind") == Some(kind))
}

/// `repository[:tag]`: the tag follows the last colon after the last slash (a registry
/// host may carry a port).
pub(crate) fn split_image(image: &str) -> (&str, Option<&str>) {
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => (
            &image[..name_start + colon],
            Some(&image[name_start + colon + 1..]),
        ),
        None => (image, None),
    }
}

/// Where a workload of this kind keeps its pod template's spec.
pub(crate) fn pod_spec_pointer(resource: &Value) -> Option<&'static str> {
    match text(resource, "/kind")? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        "Pod" => Some("/spec"),
        _ => None,
    }
}

/// The pod template's spec of a workload.
pub(crate) fn pod_spec(resource: &Value) -> Option<&Value> {
    resource.pointer(pod_spec_pointer(resource)?)
}

pub(crate) fn pod_labels(resource: &Value) -> BTreeMap<String, String> {
    let pointer = match text(resource, "/kind") {
        Some("CronJob") => "/spec/jobTemplate/spec/template/metadata/labels",
        Some("Pod") => "/metadata/labels",
        _ => "/spec/template/metadata/labels",
    };
    string_map(resource.pointer(pointer))
}

pub(crate) fn containers(resource: &Value) -> Vec<&Value> {
    pod_spec(resource)
        .map(|spec| {
            array(spec, "/initContainers")
                .iter()
                .chain(array(spec, "/containers"))
                .collect()
        })
        .unwrap_or_default()
}

/// A container port named or numbered by a probe, a Service or an annotation.
pub(crate) fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
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

// ---- assertions -----------------------------------------------------------------------

pub(crate) fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

pub(crate) fn assert_refused(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|problem| problem.contains(needle)),
        "expected a problem mentioning `{needle}`, got:\n  {}",
        problems.join("\n  ")
    );
}
