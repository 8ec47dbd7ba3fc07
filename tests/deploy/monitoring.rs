//! Prometheus (the scrape config, the alerts and their unit tests, through promtool), the
//! metric names alerts and dashboard use, the Grafana dashboard model and the collector
//! config.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::binary::binary;
use crate::{
    array, assert_no_problems, assert_refused, read_repo_file, repo_path, text, yaml_file,
};

/// Metrics the alerts use that other programs expose: Prometheus's own `up` and
/// kube-state-metrics' pod readiness. Only `taskmaster_` names are checked against the
/// process; these are named here so that a typo in them is refused too.
const EXTERNAL_METRICS: &[&str] = &["up", "kube_pod_status_ready"];

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

/// Every `taskmaster_` metric of the expressions exists in the process's exposition; other
/// metrics are the known external ones.
fn check_metric_names<'a>(
    expressions: impl IntoIterator<Item = (String, &'a str)>,
    exposed: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (origin, expression) in expressions {
        for name in taskmaster_metrics_in(expression) {
            if !exposed.contains(&name) {
                problems.push(format!(
                    "{origin}: `{name}` is not a metric the process exposes"
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
pub(crate) fn check_collector(config: &Value) -> Vec<String> {
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

// ---- tests ------------------------------------------------------------------------------

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
