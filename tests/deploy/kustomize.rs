//! The kustomize subset: each kustomization rendered the way kustomize renders the fields
//! used in deploy/k8s, anything else refused.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    array, containers, id, pod_spec_pointer, repo_path, split_image, text, yaml_documents,
    yaml_file, CUSTOM_KINDS,
};

/// The overlays under deploy/k8s/overlays.
const OVERLAYS: [&str; 2] = ["dev", "prod"];

/// The base and every overlay: the directories of deploy/k8s that render on their own.
pub(crate) const KUSTOMIZATIONS: [&str; 3] = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/dev",
    "deploy/k8s/overlays/prod",
];

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
            "{here}: the kustomization field `{key}` is not rendered by tests/deploy/kustomize.rs; \
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
                    "the directive `{key}` is not rendered by tests/deploy/kustomize.rs"
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

fn containers_mut(resource: &mut Value) -> Vec<&mut Value> {
    let Some(pointer) = pod_spec_pointer(resource) else {
        return Vec::new();
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

// ---- tests ------------------------------------------------------------------------------

pub(crate) fn rendered(directory: &str) -> Vec<Value> {
    render(&repo_path(directory)).unwrap_or_else(|error| panic!("{directory}: {error:#}"))
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
    for directory in KUSTOMIZATIONS {
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

// ---- every check refuses what it should -------------------------------------------------

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
