//! docker-compose.yml's taskmaster, collector and monitoring services, wired to the binary.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use taskmaster::Settings;

use crate::binary::{binary, Binary};
use crate::monitoring::check_collector;
use crate::{
    array, assert_no_problems, assert_refused, host_port, scalar, string_map, text, yaml_file,
};

pub(crate) fn compose_file() -> Result<Value> {
    yaml_file("docker-compose.yml")
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

// ---- tests ------------------------------------------------------------------------------

#[test]
fn compose_runs_the_collector_and_monitoring_profiles_wired_to_the_binary() -> Result<()> {
    assert_no_problems(
        "docker-compose.yml",
        &check_compose(&compose_file()?, binary())?,
    );
    Ok(())
}

// ---- every check refuses what it should -------------------------------------------------

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
