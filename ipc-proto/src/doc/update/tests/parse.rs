//! Parse-time validation, written paths, round trips and never-panic properties.

use super::*;

// ---- parse-time validation ------------------------------------------

#[test]
fn parse_rejects_non_object_spec() {
    assert_eq!(
        parse_err(json!([1])),
        UpdateError::NotAnObject {
            found: ValueKind::Array
        }
    );
    assert_eq!(
        parse_err(json!(null)).to_string(),
        "an update must be an object of operators, found null"
    );
}

#[test]
fn parse_rejects_replacement_document() {
    assert_eq!(
        parse_err(json!({"a": 1})),
        UpdateError::NotAnOperator { key: "a".into() }
    );
}

#[test]
fn parse_rejects_unknown_operator() {
    let err = parse_err(json!({"$setOnInsert": {"a": 1}}));
    assert_eq!(
        err,
        UpdateError::UnknownOperator {
            op: "$setOnInsert".into()
        }
    );
    assert_eq!(err.to_string(), "unknown update operator `$setOnInsert`");
}

#[test]
fn parse_rejects_non_object_operator_argument() {
    assert_eq!(
        parse_err(json!({"$set": 5})),
        UpdateError::ArgumentNotObject {
            op: Operator::Set,
            found: ValueKind::Integer
        }
    );
    assert!(matches!(
        parse_err(json!({"$inc": [["a", 1]]})),
        UpdateError::ArgumentNotObject {
            op: Operator::Inc,
            ..
        }
    ));
}

#[test]
fn parse_rejects_invalid_paths() {
    assert_eq!(
        parse_err(json!({"$set": {"a..b": 1}})),
        UpdateError::InvalidPath {
            op: Operator::Set,
            path: "a..b".into(),
            reason: PathError::EmptySegment { index: 1 }
        }
    );
    assert!(matches!(
        parse_err(json!({"$unset": {"": 1}})),
        UpdateError::InvalidPath {
            reason: PathError::Empty,
            ..
        }
    ));
    let err = parse_err(json!({"$inc": {"a.$.b": 1}}));
    assert_eq!(
        err.to_string(),
        "$inc: invalid path `a.$.b`: path segment `$` starts with `$`"
    );
}

#[test]
fn parse_rejects_an_update_without_operators() {
    // MongoDB takes `{}` as a replacement by an empty document (and the shell's updateOne
    // refuses it: "Update document requires atomic operators"); we have no replacements.
    let err = parse_err(json!({}));
    assert_eq!(err, UpdateError::NoOperators);
    assert_eq!(err.to_string(), "an update needs at least one operator");
    let err = serde_json::from_str::<Update>("{}").expect_err("not an update");
    assert!(err.to_string().contains("at least one operator"), "{err}");
}

#[test]
fn parse_accepts_an_empty_operator_as_noop() {
    // MongoDB 5.0 and later accept an operator with no fields, such as `{"$set": {}}`.
    for spec in [json!({"$set": {}}), json!({"$set": {}, "$pull": {}})] {
        let u = update(spec);
        assert_eq!(u.paths().count(), 0);
        assert_eq!(u.to_value(), json!({"$set": {}}));
        assert_eq!(Update::parse(&u.to_value()), Ok(u.clone()));
        let mut doc = json!({"a": 1});
        u.apply(&mut doc, &CTX).expect("no-op applies");
        assert_eq!(doc, json!({"a": 1}));
    }
}

#[test]
fn parse_rejects_conflicting_paths_across_operators() {
    // MongoDB: "Updating the path 'a.b' would create a conflict at 'a'".
    let err = parse_err(json!({"$set": {"a.b": 1}, "$inc": {"a": 1}}));
    assert_eq!(
        err,
        UpdateError::ConflictingPaths {
            first_op: Operator::Inc,
            first: p("a"),
            second_op: Operator::Set,
            second: p("a.b"),
        }
    );
    assert_eq!(
        err.to_string(),
        "updating the path `a.b` ($set) would create a conflict at `a` ($inc)"
    );
}

#[test]
fn parse_rejects_conflicting_paths_within_one_operator() {
    assert!(matches!(
        parse_err(json!({"$set": {"a.b.c": 1, "a.b": 2}})),
        UpdateError::ConflictingPaths { .. }
    ));
}

#[test]
fn parse_rejects_same_path_in_two_operators() {
    assert!(matches!(
        parse_err(json!({"$set": {"a": 1}, "$unset": {"a": ""}})),
        UpdateError::ConflictingPaths { .. }
    ));
}

#[test]
fn parse_rejects_conflict_with_rename_target() {
    assert_eq!(
        parse_err(json!({"$rename": {"a": "b"}, "$set": {"b.c": 1}})),
        UpdateError::ConflictingPaths {
            first_op: Operator::Rename,
            first: p("b"),
            second_op: Operator::Set,
            second: p("b.c"),
        }
    );
}

#[test]
fn parse_allows_paths_sharing_a_text_prefix() {
    let u = update(json!({"$set": {"a.b": 1, "a.bc": 2, "a.1": 3, "a.10": 4}}));
    assert_eq!(u.paths().count(), 4);
}

#[test]
fn error_messages_are_lowercase() {
    let errors = [
        parse_err(json!(1)),
        parse_err(json!({"a": 1})),
        parse_err(json!({"$x": {}})),
        parse_err(json!({"$set": 1})),
        parse_err(json!({"$set": {"": 1}})),
        parse_err(json!({"$pop": {"a": 2}})),
        parse_err(json!({"$set": {"a": 1, "a.b": 1}})),
        apply_err(json!({"$inc": {"a": 1}}), json!({"a": "s"})),
        apply_err(json!({"$set": {"a.b": 1}}), json!({"a": 1})),
    ];
    for err in errors {
        let message = err.to_string();
        let first = message.chars().next().expect("message is not empty");
        assert!(!first.is_uppercase(), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

// ---- paths and touches ------------------------------------------------

#[test]
fn paths_lists_every_written_path_including_rename_targets() {
    let u = update(json!({"$inc": {"n": 1}, "$rename": {"a.b": "c"}, "$pop": {"d": 1}}));
    let paths: Vec<String> = u.paths().map(Path::to_string).collect();
    assert_eq!(paths, ["a.b", "c", "d", "n"]);
}

#[test]
fn touches_checks_overlap_with_any_written_path() {
    let u = update(json!({"$set": {"a.b": 1}, "$rename": {"x": "y.z"}}));
    assert!(u.touches(&p("a")));
    assert!(u.touches(&p("a.b.c")));
    assert!(u.touches(&p("x")));
    assert!(u.touches(&p("y")));
    assert!(!u.touches(&p("a.c")));
    assert!(!u.touches(&p("ab")));
}

// ---- round trip, serde ------------------------------------------------------------

#[test]
fn to_value_is_canonical() {
    let u = update(json!({
        "$unset": {"u": 1},
        "$currentDate": {"d": {"$type": "date"}},
        "$pullAll": {"p": [3, 1, 3, 1.0]},
        "$pull": {"q": {"$in": [2, 1]}},
        "$push": {"s": 1, "t": {"$each": [1], "$sort": {"x": -1}}},
    }));
    assert_eq!(
        u.to_value(),
        json!({
            "$unset": {"u": ""},
            "$currentDate": {"d": true},
            "$pullAll": {"p": [1, 3]},
            "$pull": {"q": {"$in": [1, 2]}},
            "$push": {"s": 1, "t": {"$each": [1], "$sort": {"x": -1}}},
        })
    );
    assert_eq!(Update::parse(&u.to_value()), Ok(u));
}

#[test]
fn serde_goes_through_the_canonical_spec() {
    let u = update(json!({"$inc": {"n": 1}, "$set": {"a.b": [1]}}));
    let text = serde_json::to_string(&u).expect("serializes");
    let back: Update = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(back, u);
    let err = serde_json::from_str::<Update>(r#"{"a": 1}"#).expect_err("not an update");
    assert!(
        err.to_string()
            .contains("replacement documents are not supported")
    );
}

/// One valid `(operator, argument)` for `path`; `$rename` targets `renamed{i}`.
fn arb_valid_entry(i: usize) -> impl Strategy<Value = (&'static str, Value)> {
    let number = prop_oneof![
        (-5i64..5).prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from)
    ];
    let int = -3i64..=3;
    let scalar = arb_leaf().boxed();
    prop_oneof![
        arb_json().prop_map(|v| ("$set", v)),
        Just(("$unset", json!(""))),
        number.clone().prop_map(|v| ("$inc", v)),
        number.prop_map(|v| ("$mul", v)),
        arb_json().prop_map(|v| ("$min", v)),
        arb_json().prop_map(|v| ("$max", v)),
        Just(("$rename", Value::from(format!("renamed{i}")))),
        arb_json().prop_map(|v| ("$push", v)),
        (
            prop::collection::vec(arb_json(), 0..3),
            prop::option::of(int.clone()),
            prop::option::of(int.clone()),
            prop::option::of(prop_oneof![
                Just(json!(1)),
                Just(json!(-1)),
                Just(json!({"a": 1, "b": -1}))
            ]),
        )
            .prop_map(|(each, position, slice, sort)| {
                let mut spec = json!({"$each": each});
                for (key, value) in [
                    ("$position", position.map(Value::from)),
                    ("$slice", slice.map(Value::from)),
                    ("$sort", sort),
                ] {
                    if let Some(value) = value {
                        spec[key] = value;
                    }
                }
                ("$push", spec)
            }),
        arb_json().prop_map(|v| ("$addToSet", v)),
        prop::collection::vec(arb_json(), 0..3).prop_map(|vs| ("$addToSet", json!({"$each": vs}))),
        prop::sample::select(vec![1, -1]).prop_map(|v| ("$pop", json!(v))),
        scalar.clone().prop_map(|v| ("$pull", v)),
        scalar.clone().prop_map(|v| ("$pull", json!({"$gte": v}))),
        prop::collection::vec(scalar.clone(), 0..3).prop_map(|vs| ("$pull", json!({"$nin": vs}))),
        (scalar.clone(), scalar).prop_map(|(a, b)| ("$pull", json!({"a": a, "b": {"$lt": b}}))),
        prop::collection::vec(arb_json(), 0..3).prop_map(|vs| ("$pullAll", Value::Array(vs))),
        (int.clone(), int).prop_map(|(a, b)| ("$bit", json!({"and": a, "xor": b}))),
        Just(("$currentDate", json!(true))),
        Just(("$currentDate", json!({"$type": "timestamp"}))),
    ]
}

/// Valid update specs: entries on distinct, non-overlapping paths.
fn arb_valid_spec() -> impl Strategy<Value = Value> {
    const PATHS: [&str; 8] = ["a", "b.c", "b.d", "c.0", "c.1.a", "2", "e.$[]", "f.$[].x"];
    prop::sample::subsequence(PATHS.to_vec(), 0..=PATHS.len())
        .prop_flat_map(|paths| {
            let entries: Vec<_> = paths
                .iter()
                .enumerate()
                .map(|(i, path)| {
                    let positional = path.contains("$[]");
                    arb_valid_entry(i).prop_filter("$rename refuses $[]", move |(op, _)| {
                        !positional || *op != "$rename"
                    })
                })
                .collect();
            (Just(paths), entries)
        })
        .prop_map(|(paths, entries)| {
            let mut spec = Map::new();
            spec.insert("$set".into(), json!({}));
            for (path, (op, arg)) in paths.into_iter().zip(entries) {
                spec.entry(op)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("operator arguments are objects")
                    .insert(path.to_owned(), arg);
            }
            Value::Object(spec)
        })
}

/// Arbitrary specs: valid and invalid operators, paths and arguments.
fn arb_any_spec() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec![
        "$set",
        "$unset",
        "$inc",
        "$mul",
        "$min",
        "$max",
        "$rename",
        "$push",
        "$addToSet",
        "$pop",
        "$pull",
        "$pullAll",
        "$bit",
        "$currentDate",
        "$nope",
        "plain",
    ]);
    let path = prop::sample::select(vec![
        "a",
        "b",
        "a.b",
        "a.0",
        "b.1.c",
        "0",
        "c.5",
        "a.70000",
        "",
        "a..b",
        "$x",
        "a.$[]",
        "b.$[]",
        "b.$[].a",
        "b.$[].$[]",
        "c.$[].0",
        "$[]",
        "a.$[i]",
        "b.$[].70000",
    ]);
    let arg = prop_oneof![
        4 => arb_json_with(ANY_KEYS),
        1 => prop::sample::select(vec!["a", "b.c", "a.0", "x", ""]).prop_map(Value::from),
        1 => prop::sample::select(vec!["date", "timestamp", "x"]).prop_map(|t| json!({"$type": t})),
        1 => (prop::sample::select(vec!["and", "or", "xor", "not"]), arb_leaf())
            .prop_map(|(k, v)| json!({k: v})),
    ];
    prop_oneof![
        1 => arb_json_with(ANY_KEYS),
        6 => prop::collection::btree_map(
            op,
            prop_oneof![
                1 => arb_leaf(),
                6 => prop::collection::btree_map(path, arg, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ],
            0..3,
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ]
}

/// Checks everything that must hold for any update on any document.
fn check_apply(u: &Update, doc: &Value, now_unix_ms: u64) -> Result<(), TestCaseError> {
    let mut after = doc.clone();
    match u.apply(&mut after, &ApplyContext { now_unix_ms }) {
        Err(_) => prop_assert_eq!(&after, doc, "all-or-nothing"),
        Ok(()) => {
            // Fields the update does not touch are left alone.
            if let (Value::Object(before), Value::Object(after)) = (doc, &after) {
                for (key, value) in before {
                    if Path::parse(key).is_ok_and(|key| !u.touches(&key)) {
                        prop_assert_eq!(after.get(key), Some(value));
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn valid_specs_parse_and_round_trip(spec in arb_valid_spec()) {
        let u = Update::parse(&spec);
        prop_assert!(u.is_ok(), "{spec}: {u:?}");
        let u = u.expect("checked above");
        prop_assert_eq!(Update::parse(&u.to_value()), Ok(u));
    }

    #[test]
    fn valid_updates_apply_all_or_nothing(
        spec in arb_valid_spec(),
        doc in arb_json(),
        now in any::<u64>(),
    ) {
        let u = Update::parse(&spec).expect("generated specs are valid");
        check_apply(&u, &doc, now)?;
        check_apply(
            &u,
            &json!({
                "a": doc.clone(), "b": {"c": doc.clone()}, "c": [doc.clone()],
                "e": [doc.clone(), 1], "f": [doc, {"x": 1}, {}],
            }),
            now,
        )?;
    }

    #[test]
    fn all_positional_is_every_index_in_turn(
        items in prop::collection::vec(arb_json(), 0..5),
        (op, arg) in arb_valid_entry(0).prop_filter("$rename refuses $[]", |(op, _)| *op != "$rename"),
        tail in prop::sample::select(vec!["", ".b", ".0"]),
    ) {
        let doc = json!({"a": items.clone()});
        let all = update(json!({op: {(format!("a.$[]{tail}")): arg.clone()}}));
        let each: Map<String, Value> = (0..items.len())
            .map(|i| (format!("a.{i}{tail}"), arg.clone()))
            .collect();
        let each = update(json!({op: each}));
        prop_assert_eq!(all.applied(&doc, &CTX), each.applied(&doc, &CTX));
    }

    #[test]
    fn arbitrary_specs_never_panic(spec in arb_any_spec(), doc in arb_json_with(ANY_KEYS)) {
        if let Ok(u) = Update::parse(&spec) {
            prop_assert_eq!(Update::parse(&u.to_value()), Ok(u.clone()));
            check_apply(&u, &doc, 0)?;
            check_apply(&u, &json!({"a": doc.clone(), "b": [doc], "c": []}), 0)?;
        }
    }
}
