//! The JSON Schemas in `events/` are generated from the Rust event types. This test fails when
//! the checked-in files drift from the code; run it with `TASKMASTER_BLESS=1` to rewrite them
//! after an intentional change (and then add a new event version if the change is breaking).

use std::path::PathBuf;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

#[test]
fn the_checked_in_event_schemas_match_the_rust_types() {
    let bless = std::env::var_os("TASKMASTER_BLESS").is_some();
    let mut drifted = Vec::new();
    for (event_type, version, schema) in domain::TaskEvent::schemas() {
        let path = events_dir().join(format!("{event_type}.v{version}.json"));
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if bless {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == generated => {}
            _ => drifted.push(path.display().to_string()),
        }
    }
    assert!(
        drifted.is_empty(),
        "event schemas differ from the Rust types (rerun with TASKMASTER_BLESS=1 if intended): {drifted:?}"
    );
}

#[test]
fn every_schema_file_in_events_belongs_to_a_published_event_version() {
    let published: Vec<String> = domain::TaskEvent::schemas()
        .into_iter()
        .map(|(t, v, _)| format!("{t}.v{v}.json"))
        .collect();
    for entry in std::fs::read_dir(events_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            assert!(
                published.contains(&name),
                "{name} has no Rust type; old versions must stay decodable"
            );
        }
    }
}
