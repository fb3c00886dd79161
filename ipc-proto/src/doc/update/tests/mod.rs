//! Tests of [`Update`](super::Update), by operator and concern; the helpers they share.

use std::cmp::Ordering;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::super::path::PathError;
use super::apply::{civil_from_days, rfc3339_millis};
use super::order::{compare, equal};
use super::*;

mod arrays;
mod fields;
mod order;
mod parse;
mod positional;

/// 2026-11-22T04:42:00.123Z
const CTX: ApplyContext = ApplyContext {
    now_unix_ms: 1_795_322_520_123,
};

fn p(s: &str) -> Path {
    Path::parse(s).expect("test path is valid")
}

fn update(spec: Value) -> Update {
    Update::parse(&spec).expect("test spec is valid")
}

fn apply(spec: Value, mut doc: Value) -> Value {
    update(spec).apply(&mut doc, &CTX).expect("update applies");
    doc
}

/// Applies `spec` plus a `$set` of `_probe` (sorted, so applied, before
/// lowercase paths), expects an error and checks the document is unchanged.
fn apply_err(spec: Value, doc: Value) -> UpdateError {
    let mut spec = spec;
    let ops = spec.as_object_mut().expect("test spec is an object");
    let set = ops.entry("$set").or_insert_with(|| json!({}));
    set.as_object_mut()
        .expect("$set takes an object")
        .insert("_probe".into(), json!(true));
    let mut after = doc.clone();
    let err = update(spec)
        .apply(&mut after, &CTX)
        .expect_err("update fails");
    assert_eq!(
        after, doc,
        "all-or-nothing: document unchanged after `{err}`"
    );
    err
}

fn parse_err(spec: Value) -> UpdateError {
    Update::parse(&spec).expect_err("spec is invalid")
}

fn invalid_argument(err: &UpdateError) -> (Operator, String, String) {
    match err {
        UpdateError::InvalidArgument { op, path, reason } => {
            (*op, path.to_string(), reason.clone())
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..=3).prop_map(Value::from),
        prop::sample::select(vec![i64::MIN, i64::MAX, 1 << 53]).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        prop::sample::select(vec![
            -1.5,
            -0.0,
            0.0,
            0.5,
            1.0,
            2.0,
            1e300,
            9.007_199_254_740_992e15
        ])
        .prop_map(Value::from),
        prop::sample::select(vec!["", "a", "b"]).prop_map(Value::from),
    ]
}

/// Small JSON trees whose object keys come from `keys`.
fn arb_json_with(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(keys), inner, 0..4).prop_map(
                |fields| {
                    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}

const PLAIN_KEYS: &[&str] = &["a", "b", "c", "0", "1", "2"];
const ANY_KEYS: &[&str] = &[
    "a",
    "b",
    "0",
    "1",
    "$each",
    "$position",
    "$slice",
    "$sort",
    "$gt",
    "$in",
    "$type",
    "and",
];

fn arb_json() -> impl Strategy<Value = Value> {
    arb_json_with(PLAIN_KEYS)
}
