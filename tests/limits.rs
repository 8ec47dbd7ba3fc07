//! Every limit on input is in the OpenAPI document, and the server enforces exactly what the
//! document states: no unbounded string, list or number a client can send; each documented
//! limit refused one past it and accepted at it; each pattern accepting and refusing what the
//! server does (checked by validating samples against the served schemas).

mod common;

use common::{problem, TestApp};
use serde_json::{json, Value};

/// The schema `node` refers to (`$ref` into the components), or `node` itself.
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &spec["components"]["schemas"][name]
        }
        None => node,
    }
}

fn types(node: &Value) -> Vec<&str> {
    match &node["type"] {
        Value::String(single) => vec![single.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Collects, under `at`, every string without `maxLength`, array without `maxItems`, number
/// without `minimum` and `maximum`, and object that takes unknown properties.
fn unbounded(spec: &Value, node: &Value, at: &str, found: &mut Vec<String>) {
    let node = resolve(spec, node);
    let types = types(node);
    let bounded_string = node.get("maxLength").is_some()
        || node.get("enum").is_some()
        || node.get("const").is_some()
        || node["format"] == "uuid";
    if types.contains(&"string") && !bounded_string {
        found.push(format!("{at}: a string without maxLength"));
    }
    if types.contains(&"array") {
        if node.get("maxItems").is_none() {
            found.push(format!("{at}: an array without maxItems"));
        }
        unbounded(spec, &node["items"], &format!("{at}[]"), found);
    }
    if (types.contains(&"integer") || types.contains(&"number"))
        && (node.get("minimum").is_none() || node.get("maximum").is_none())
    {
        found.push(format!("{at}: a number without minimum and maximum"));
    }
    if types.contains(&"object") {
        if node["additionalProperties"] != false {
            found.push(format!("{at}: an object that takes unknown properties"));
        }
        for (name, property) in node["properties"].as_object().into_iter().flatten() {
            unbounded(spec, property, &format!("{at}.{name}"), found);
        }
    }
    for branch in ["oneOf", "anyOf", "allOf"] {
        for (i, alternative) in node[branch].as_array().into_iter().flatten().enumerate() {
            unbounded(spec, alternative, &format!("{at}<{branch} {i}>"), found);
        }
    }
}

#[tokio::test]
async fn every_string_list_and_number_a_client_sends_has_its_limits_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let spec = app.openapi().await;
    let mut found = Vec::new();
    let mut inputs = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = format!("{at} {} {}", parameter["in"], parameter["name"]);
                unbounded(&spec, &parameter["schema"], &name, &mut found);
                inputs += 1;
            }
            let content = &operation["requestBody"]["content"];
            for (media_type, body) in content.as_object().into_iter().flatten() {
                unbounded(
                    &spec,
                    &body["schema"],
                    &format!("{at} {media_type}"),
                    &mut found,
                );
                inputs += 1;
            }
        }
    }
    assert!(inputs > 30, "the walk saw only {inputs} inputs");
    assert!(found.is_empty(), "unbounded inputs:\n{}", found.join("\n"));
}

/// The schema of a body property of `POST /v1/tasks` (resolved), without its `null` branch.
fn create_field<'a>(spec: &'a Value, field: &str) -> &'a Value {
    let property = &spec["components"]["schemas"]["CreateTaskRequest"]["properties"][field];
    let alternatives = property["oneOf"].as_array();
    let schema = alternatives
        .and_then(|a| a.iter().find(|s| s["type"] != "null"))
        .unwrap_or(property);
    resolve(spec, schema)
}

/// The schema of a documented parameter.
fn parameter_schema<'a>(spec: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    let parameters = spec["paths"][path][method]["parameters"]
        .as_array()
        .unwrap();
    let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
    resolve(spec, &parameter["schema"])
}

/// Whether `value` is valid for `schema` by the document (formats included), with the
/// document's components in reach of its `$ref`s.
fn documented_valid(spec: &Value, schema: &Value, value: &Value) -> bool {
    let mut schema = schema.clone();
    schema["components"] = spec["components"].clone();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the document's schemas compile")
        .is_valid(value)
}

/// Records `label` when the document and the server's answer (`accepted` or a refusal) differ.
fn compare(found: &mut Vec<String>, label: String, documented: bool, status: u16, accepted: u16) {
    if documented != (status == accepted) {
        found.push(format!(
            "{label}: documented valid {documented}, answered {status}"
        ));
    }
}

#[tokio::test]
async fn the_server_accepts_exactly_what_the_documented_patterns_and_lengths_accept() {
    let app = TestApp::spawn_with(&[("TASKMASTER_RATE_LIMIT_USER", "0")]).await;
    let token = app.token("patterns");
    let spec = app.openapi().await;
    let mut disagreements = Vec::new();

    let lines = [
        "a",
        " a ",
        "   ",
        "",
        "a\n",
        "\ta",
        "a\u{85}",
        "\u{a0}",
        "\u{3000}x",
        "x\u{9f}",
        "\u{2028}",
        "\u{feff}",
        "é",
        "a\u{0}b",
        "🦀 crab",
    ];
    let long = |n: usize| "é".repeat(n);
    let mut bodies: Vec<(&str, Value, Value)> = Vec::new();
    for line in lines {
        bodies.push(("title", json!(line), json!({ "title": line })));
        bodies.push(("tags", json!(line), json!({"title": "t", "tags": [line] })));
        bodies.push((
            "description",
            json!(line),
            json!({"title": "t", "description": line }),
        ));
    }
    for (field, ok) in [("title", 200), ("tags", 32), ("description", 10_000)] {
        for n in [ok, ok + 1] {
            let value = json!(long(n));
            let body = match field {
                "tags" => json!({"title": "t", "tags": [value.clone()]}),
                "title" => json!({ "title": value.clone() }),
                _ => json!({"title": "t", field: value.clone()}),
            };
            bodies.push((field, value, body));
        }
    }
    for zone in [
        "UTC",
        "Europe/Paris",
        "America/Argentina/Buenos_Aires",
        "Etc/GMT+5",
        "utc",
        "Paris",
        "A/B/C/D",
        "Europe/",
        "europe/Paris",
        "Europe/Par is",
        &format!("A/{}", "b".repeat(62)),
        &format!("A/{}", "b".repeat(63)),
    ] {
        bodies.push((
            "time_zone",
            json!(zone),
            json!({"title": "t", "time_zone": zone}),
        ));
    }
    for due in [
        "2030-01-31T17:00:00Z",
        "2030-01-31T17:00:00.123456+05:30",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",
        "1970-01-01T00:30:00-01:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:00:00-05:00",
        "9999-12-31T23:00:00+05:00",
        "2030-01-31 17:00:00Z",
        "2030-01-31",
        "2030-01-31T17:00:00",
        "tomorrow",
    ] {
        bodies.push(("due_at", json!(due), json!({"title": "t", "due_at": due})));
    }
    let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    for n in [20, 21] {
        bodies.push((
            "tags",
            json!(tags(n)),
            json!({"title": "t", "tags": tags(n)}),
        ));
    }
    for minutes in [
        json!(1),
        json!(100_000),
        json!(0),
        json!(100_001),
        json!(90.0),
        json!(1.5),
    ] {
        bodies.push((
            "estimate_minutes",
            minutes.clone(),
            json!({"title": "t", "estimate_minutes": minutes}),
        ));
    }
    for (field, value, body) in bodies {
        let mut schema = create_field(&spec, field).clone();
        if field == "tags" && !value.is_array() {
            schema = resolve(&spec, &schema["items"]).clone();
        }
        let documented = match value.as_f64() {
            // JSON Schema 2020-12 counts 90.0 as an integer (so do schemathesis and the
            // server); the jsonschema crate does not, so numbers are checked here.
            Some(number) => {
                number.fract() == 0.0
                    && schema["minimum"].as_f64().is_some_and(|min| number >= min)
                    && schema["maximum"].as_f64().is_some_and(|max| number <= max)
            }
            None => documented_valid(&spec, &schema, &value),
        };
        let status = app.create(&token, body).await.status().as_u16();
        let label = format!("{field} = {value}");
        compare(&mut disagreements, label, documented, status, 201);
    }

    let mut queries: Vec<(&str, String)> = Vec::new();
    for q in [
        "report",
        "",
        "a\tb",
        "a\u{0}",
        &"q".repeat(200),
        &"q".repeat(201),
    ] {
        queries.push(("q", q.to_owned()));
    }
    for status in [
        "open",
        "open,paused",
        "",
        "open,",
        ",open",
        "open,,paused",
        "closed",
        "OPEN",
    ] {
        queries.push(("status", status.to_owned()));
    }
    for priority in ["low,urgent", "", "low,", "asap"] {
        queries.push(("priority", priority.to_owned()));
    }
    for sort in ["due_at", "-priority", "", "-", "--due_at", "title"] {
        queries.push(("sort", sort.to_owned()));
    }
    for limit in ["1", "200", "0", "201", "+5", "1.0", "-1"] {
        queries.push(("limit", limit.to_owned()));
    }
    for instant in [
        "2030-01-31T17:00:00Z",
        "0001-01-01T00:00:00Z",
        "2030-01-31 17:00:00Z",
    ] {
        queries.push(("due_after", instant.to_owned()));
    }
    for (name, value) in queries {
        let schema = parameter_schema(&spec, "/v1/tasks", "get", name);
        // An integer parameter is what a client would write for an integer: digits, a sign
        // only for a negative one.
        let typed = match schema["type"].as_str() {
            Some("integer") if !value.starts_with('+') => {
                value.parse::<i64>().map_or(json!(value), |n| json!(n))
            }
            _ => json!(value),
        };
        let documented = documented_valid(&spec, schema, &typed);
        let response = app
            .http
            .get(app.url("/v1/tasks"))
            .query(&[(name, &value)])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let label = format!("?{name}={value:?}");
        compare(&mut disagreements, label, documented, status, 200);
    }

    let (id, _, _) = app.create_ok(&token, "headers").await;
    let mut headers: Vec<(&str, String)> = Vec::new();
    for key in ["k", "a b", "a ", "\t", &"k".repeat(255), &"k".repeat(256)] {
        headers.push(("Idempotency-Key", key.to_owned()));
    }
    for correlation in ["c-1", &"c".repeat(128), &"c".repeat(129)] {
        headers.push(("Tm-Correlation-Id", correlation.to_owned()));
    }
    for if_match in [
        "*", "1", "\"1\"", "W/\"1\"", "\"1", "1\"", "W/1", "+1", "", "x",
    ] {
        headers.push(("If-Match", if_match.to_owned()));
    }
    for (name, value) in headers {
        let schema = parameter_schema(&spec, "/v1/tasks/{id}", "patch", name);
        // HTTP drops white space around a header value, so the schema sees what the server does.
        let documented = documented_valid(&spec, schema, &json!(value.trim()));
        let response = app
            .http
            .patch(app.url(&format!("/v1/tasks/{id}")))
            .header(name, &value)
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let label = format!("{name}: {value:?}");
        compare(&mut disagreements, label, documented, status, 200);
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[tokio::test]
async fn each_documented_limit_is_accepted_at_the_limit_and_refused_one_past_it() {
    let app = TestApp::spawn_with(&[("TASKMASTER_RATE_LIMIT_USER", "0")]).await;
    let token = app.token("limits");
    let field_of = |body: &Value| body["errors"][0]["field"].as_str().unwrap().to_owned();

    let get = |query: String, header: Option<(&'static str, String)>| {
        let mut request = app
            .http
            .get(app.url(&format!("/v1/tasks?{query}")))
            .bearer_auth(&token);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    let tags = |n: usize| {
        (0..n)
            .map(|i| format!("tag=t{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let at_the_limit = [
        format!("q={}", "q".repeat(200)),
        format!("limit={}", 200),
        tags(20),
        format!("tag={}", "t".repeat(32)),
        format!("status={}", ["open"; 13].join(",")),
    ];
    for query in at_the_limit {
        let response = get(query.clone(), None).await.unwrap();
        assert_eq!(response.status(), 200, "{query}");
    }
    let one_past = [
        ("q", format!("q={}", "q".repeat(201))),
        ("limit", "limit=201".to_owned()),
        ("tag", tags(21)),
        ("tag", format!("tag={}", "t".repeat(33))),
        // 65 characters of valid statuses.
        (
            "status",
            format!("status={},archived,in_progress", ["open"; 9].join(",")),
        ),
        ("cursor", format!("cursor={}", "c".repeat(513))),
        (
            "due_after",
            format!("due_after=2030-01-01T00:00:00.{}Z", "0".repeat(45)),
        ),
    ];
    for (field, query) in one_past {
        let body = problem(get(query.clone(), None).await.unwrap(), 422).await;
        assert_eq!(field_of(&body), field, "{query}");
    }

    let (id, _, position) = app.create_ok(&token, "limits").await;
    let past = format!("{}", i64::MAX as u64 + 1);
    let at_task = |query: &str| {
        app.http
            .get(app.url(&format!("/v1/tasks/{id}?{query}")))
            .bearer_auth(&token)
            .send()
    };
    problem(
        at_task(&format!("as_of_version={}", i64::MAX))
            .await
            .unwrap(),
        404,
    )
    .await;
    let body = problem(
        at_task(&format!("as_of_version={past}")).await.unwrap(),
        422,
    )
    .await;
    assert_eq!(field_of(&body), "as_of_version");
    problem(
        get(String::new(), Some(("Tm-Min-Position", past)))
            .await
            .unwrap(),
        400,
    )
    .await;
    let header = Some(("Tm-Min-Position", position.to_string()));
    assert_eq!(get(String::new(), header).await.unwrap().status(), 200);

    let patch = |name: &'static str, value: String| {
        app.http
            .patch(app.url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&token)
            .header(name, value)
            .json(&json!({}))
            .send()
    };
    for (name, limit) in [("Idempotency-Key", 255), ("Tm-Correlation-Id", 128)] {
        assert_eq!(patch(name, "k".repeat(limit)).await.unwrap().status(), 200);
        problem(patch(name, "k".repeat(limit + 1)).await.unwrap(), 400).await;
    }
    problem(patch("If-Match", "9".repeat(19)).await.unwrap(), 409).await;
    problem(patch("If-Match", "9".repeat(20)).await.unwrap(), 400).await;
}
