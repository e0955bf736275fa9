//! `tok list -o json` matches the documented schema, docs/schemas/token.v1.json.
//!
//! The validator below covers the JSON Schema keywords that file uses (type,
//! required, properties, additionalProperties, enum, items, minLength,
//! maxLength, minimum, maxItems, format date-time) and fails on any other, so
//! the schema cannot silently grow past what is checked.

use crate::common::*;
use serde_json::Value;

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "required",
    "properties",
    "additionalProperties",
    "enum",
    "items",
    "minLength",
    "maxLength",
    "minimum",
    "maxItems",
    "format",
];

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("schema uses unknown type {other}"),
    }
}

fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let s = schema.as_object().expect("schema is an object");
    for k in s.keys() {
        assert!(
            KNOWN.contains(&k.as_str()),
            "schema keyword {k} is not checked here"
        );
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("bad type keyword"),
        };
        if !ok {
            errors.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(v) {
            errors.push(format!("{path}: {v} not in {options:?}"));
        }
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{path}: shorter than minLength"));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{path}: longer than maxLength"));
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(text).is_err()
        {
            errors.push(format!("{path}: {text} is not an RFC 3339 date-time"));
        }
    }
    if let (Some(n), Some(min)) = (v.as_f64(), s.get("minimum").and_then(Value::as_f64)) {
        if n < min {
            errors.push(format!("{path}: {n} below minimum {min}"));
        }
    }
    if let Some(items) = v.as_array() {
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| items.len() as u64 > m)
        {
            errors.push(format!("{path}: more than maxItems"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{path}: missing required {r}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, val, &format!("{path}.{k}"), errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{path}: unexpected field {k}"))
                    }
                    Some(extra @ Value::Object(_)) => {
                        validate(extra, val, &format!("{path}.{k}"), errors)
                    }
                    _ => {}
                },
            }
        }
    }
}

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schemas/token.v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_valid(v: &Value) {
    let mut errors = Vec::new();
    validate(&schema(), v, "$", &mut errors);
    assert!(errors.is_empty(), "schema violations: {errors:#?}\nin {v}");
}

#[test]
fn list_json_matches_the_documented_schema() {
    let env = Env::new();
    env.create(&[
        "--ttl", "15m", "--name", "a", "--scope", "s1", "--label", "k=v", "--uses", "2",
    ]);
    env.create(&["--no-expiry", "--description", "no expiry"]);
    let (id, _) = env.create_json(&["--ttl", "1h"]);
    env.ok(&["revoke", &id, "--yes", "--reason", "test"]);
    let all = env.list_json(&["--state", "all"]);
    assert_eq!(all.len(), 3);
    for t in &all {
        assert_valid(t);
    }
    for line in env.ok(&["list", "--state", "all", "-o", "jsonl"]).lines() {
        assert_valid(&serde_json::from_str(line).unwrap());
    }
    assert_valid(&env.inspect_json(&id));
}

#[test]
fn create_json_is_a_token_plus_its_secret() {
    let env = Env::new();
    let v: Value = serde_json::from_str(&env.ok(&["create", "--ttl", "1m", "-o", "json"])).unwrap();
    assert_valid(&v);
    assert!(v["secret"].as_str().unwrap().starts_with("tok_"));
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let env = Env::new();
    let (id, _) = env.create_json(&["--ttl", "1m"]);
    let mut t = env.inspect_json(&id);
    t["state"] = "sleeping".into();
    t["surprise"] = 1.into();
    t.as_object_mut().unwrap().remove("uses");
    let mut errors = Vec::new();
    validate(&schema(), &t, "$", &mut errors);
    assert_eq!(errors.len(), 3, "{errors:#?}");
}
