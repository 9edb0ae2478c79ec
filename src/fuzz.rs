//! Property tests of everything that parses outside input — events and per-group overrides —
//! over generated inputs: arbitrary JSON, and the sample events with fields replaced, removed or
//! filled with hostile strings. No input panics; every rejection names a field in one short,
//! printable line.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::event::Incoming;

/// Keys that steer the parser somewhere, mixed with noise.
const KEYS: &[&str] = &[
    "source",
    "detail-type",
    "detail",
    "time",
    "resources",
    "Records",
    "EventSource",
    "eventSource",
    "Sns",
    "Message",
    "body",
    "EC2InstanceId",
    "AutoScalingGroupName",
    "LifecycleHookName",
    "LifecycleActionToken",
    "LifecycleTransition",
    "NotificationMetadata",
    "Destination",
    "Event",
    "event",
    "result",
    "snapshots",
    "snapshot_id",
    "include_boot_volume",
    "skip_tag",
    "max_attempts",
    "inline_wait_seconds",
    "warm_pool_action",
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[\\x00-\\x1f\"\\\\{}\\[\\]:,]{0,20}",
        Just("aws.autoscaling".to_owned()),
        Just("EC2 Instance-terminate Lifecycle Action".to_owned()),
        Just("autoscaling:EC2_INSTANCE_TERMINATING".to_owned()),
        Just("i-0123456789abcdef0\n{\"level\":\"INFO\"}".to_owned()),
        (0usize..5000).prop_map(|n| "x".repeat(n)),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (prop::sample::select(KEYS).prop_map(str::to_owned), inner),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn samples() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut samples: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    samples.sort_by_key(|v| v.to_string());
    samples
}

/// Every path to a value inside `value`.
fn paths(value: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let mut p = prefix.clone();
                p.push(k.clone());
                paths(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(i.to_string());
                paths(v, p, out);
            }
        }
        _ => {}
    }
}

/// Replaces (or removes, when `with` is None) the value at `path`.
fn mutate(value: &mut Value, path: &[String], with: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        if let Some(with) = with {
            *value = with;
        }
        return;
    };
    let mut target = value;
    for key in parents {
        target = match target {
            Value::Object(map) => map.get_mut(key).unwrap(),
            Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
            _ => return,
        };
    }
    match (target, with) {
        (Value::Object(map), Some(with)) => {
            map.insert(last.clone(), with);
        }
        (Value::Object(map), None) => {
            map.remove(last);
        }
        (Value::Array(items), Some(with)) => items[last.parse::<usize>().unwrap()] = with,
        (Value::Array(items), None) => {
            items.remove(last.parse::<usize>().unwrap());
        }
        _ => {}
    }
}

fn check_rejection(field: &str, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!field.is_empty(), "a rejection must name the field");
    prop_assert!(
        !text.chars().any(char::is_control),
        "a control character in {text:?}"
    );
    prop_assert!(
        text.chars().count() < 800,
        "an overlong error: {} chars",
        text.len()
    );
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

#[test]
fn fifty_thousand_arbitrary_documents_never_panic_the_event_parser() {
    runner(50_000)
        .run(&json(), |value| {
            match Incoming::parse(value) {
                Ok(_) => {}
                Err(err) => check_rejection(&err.field, &err.to_string())?,
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fifty_thousand_mutated_sample_events_are_parsed_or_rejected_by_field() {
    let samples = samples();
    let strategy = (
        0..samples.len(),
        any::<prop::sample::Index>(),
        prop::option::of(json()),
    );
    runner(50_000)
        .run(&strategy, |(which, at, with)| {
            let mut event = samples[which].clone();
            let mut all = Vec::new();
            paths(&event, Vec::new(), &mut all);
            let path = at.get(&all).clone();
            mutate(&mut event, &path, with);
            match Incoming::parse(event) {
                Ok(_) => {}
                Err(err) => check_rejection(&err.field, &err.to_string())?,
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_hundred_thousand_hostile_overrides_fall_back_to_the_safest_settings() {
    let config = Config::from_lookup(|name| {
        (name == "LIFEBOAT_INCLUDE_BOOT_VOLUME").then(|| "false".to_owned())
    })
    .unwrap();
    let strategy = prop_oneof![
        json().prop_map(|v| v.to_string()),
        hostile_string(),
        (1usize..20_000).prop_map(|depth| format!(
            "{}{}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        )),
        (1usize..20_000).prop_map(|n| format!("{{\"skip_tag\": \"{}\"}}", "y".repeat(n))),
    ];
    runner(100_000)
        .run(&strategy, |metadata| {
            let (settings, rejected) = config.settings_for(Some(&metadata));
            if let Some(err) = rejected {
                check_rejection(&err.key, &err.to_string())?;
                prop_assert!(
                    settings.include_boot_volume,
                    "a rejected override must rescue every volume"
                );
                prop_assert_eq!(settings.skip_tag, None);
            }
            Ok(())
        })
        .unwrap();
}
