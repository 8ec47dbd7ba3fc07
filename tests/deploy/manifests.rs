//! The checks of a rendered set of Kubernetes manifests: images, pod security, Services,
//! Ingresses, autoscalers, disruption budgets, NetworkPolicies, the wiring to NATS,
//! PostgreSQL and Redis, the CloudNativePG Cluster, and the Kubernetes schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::binary::{
    binary, check_roles, check_settings_sources, check_taskmaster_container, Binary, Workload,
};
use crate::kustomize::{rendered, KUSTOMIZATIONS};
use crate::{
    array, assert_no_problems, assert_refused, containers, host_port, id, of_kind, pod_labels,
    pod_spec, resolve_port, scalar, split_image, string_map, text, yaml_file, CUSTOM_KINDS,
};

/// The Kubernetes version the manifests are validated for (a version whose schemas
/// `kubernetes-validate` ships).
const KUBERNETES_VERSION: &str = "1.30.0";

/// The `kubernetes-validate` release `.ci/run` installs; named in the failure message.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// Connections PostgreSQL keeps for superusers (`superuser_reserved_connections`, default 3).
const POSTGRES_RESERVED_CONNECTIONS: u64 = 3;

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

/// Whether a selector's labels all appear among a pod's.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
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

// ---- tests ------------------------------------------------------------------------------

#[test]
fn every_manifest_is_valid_for_kubernetes_and_custom_resources_are_well_formed() -> Result<()> {
    let mut all = Vec::new();
    for directory in KUSTOMIZATIONS {
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
    for directory in KUSTOMIZATIONS {
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

// ---- every check refuses what it should -------------------------------------------------

/// The base, rendered, with one change; and the problems the manifest check finds in it.
pub(crate) fn problems_after(change: impl FnOnce(&mut Vec<Value>)) -> Vec<String> {
    let mut manifests = rendered("deploy/k8s/base");
    change(&mut manifests);
    check_manifests(&manifests, binary(), &platform().expect("nats-values.yaml"))
}

pub(crate) fn named<'a>(manifests: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    manifests
        .iter_mut()
        .find(|resource| {
            text(resource, "/kind") == Some(kind) && text(resource, "/metadata/name") == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind}/{name} in the base"))
}

pub(crate) fn main_container<'a>(manifests: &'a mut [Value], deployment: &str) -> &'a mut Value {
    &mut named(manifests, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
}

/// The refusals below, and those in binary.rs, each change this base alone.
#[test]
fn the_unchanged_base_passes_so_each_refusal_below_is_the_change_alone() {
    assert_no_problems("base", &problems_after(|_| {}));
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
