//! The all-positional `$[]`.

use super::*;

// ---- the all-positional $[] --------------------------------------------------------

#[test]
fn all_positional_updates_every_element() {
    // MongoDB docs, positional-all: `{$inc: {"grades.$[]": 10}}`.
    assert_eq!(
        apply(json!({"$inc": {"a.$[]": 1}}), json!({"a": [1, 2]})),
        json!({"a": [2, 3]})
    );
    assert_eq!(
        apply(
            json!({"$set": {"a.$[].b": 0}}),
            json!({"a": [{"b": 1}, {"c": 2}, {}]})
        ),
        json!({"a": [{"b": 0}, {"c": 2, "b": 0}, {"b": 0}]}),
        "a missing field in an element is created"
    );
    assert_eq!(
        apply(json!({"$inc": {"a.$[]": 1}}), json!({"a": []})),
        json!({"a": []}),
        "an empty array is left alone"
    );
}

#[test]
fn all_positional_nests() {
    assert_eq!(
        apply(
            json!({"$inc": {"a.$[].b.$[]": 10}}),
            json!({"a": [{"b": [1, 2]}, {"b": []}]})
        ),
        json!({"a": [{"b": [11, 12]}, {"b": []}]})
    );
    assert_eq!(
        apply(
            json!({"$mul": {"a.$[].$[]": 2}}),
            json!({"a": [[1], [2, 3]]})
        ),
        json!({"a": [[2], [4, 6]]})
    );
    assert_eq!(
        apply(
            json!({"$set": {"a.1.$[].x": true}}),
            json!({"a": [[{}], [{}, {"x": 0}]]})
        ),
        json!({"a": [[{}], [{"x": true}, {"x": true}]]})
    );
}

#[test]
fn all_positional_works_with_every_operator_but_rename() {
    let doc = json!({
        "set": [1, 2], "unset": [{"x": 1, "y": 1}], "unset_el": [1, 2],
        "mul": [2, 3], "min": [1, 5], "max": [1, 5],
        "push": [[1], []], "add": [[1], [2]], "pop": [[1, 2], [3]],
        "pull": [[1, 2], [2]], "pull_all": [[1, 2, 3]], "bit": [1, 2],
        "date": [{}, {}],
    });
    let spec = json!({
        "$set": {"set.$[]": "s"},
        "$unset": {"unset.$[].x": "", "unset_el.$[]": ""},
        "$mul": {"mul.$[]": 10},
        "$min": {"min.$[]": 3},
        "$max": {"max.$[]": 3},
        "$push": {"push.$[]": {"$each": [9], "$position": 0}},
        "$addToSet": {"add.$[]": 1},
        "$pop": {"pop.$[]": -1},
        "$pull": {"pull.$[]": 2},
        "$pullAll": {"pull_all.$[]": [1, 3]},
        "$bit": {"bit.$[]": {"or": 4}},
        "$currentDate": {"date.$[].at": {"$type": "timestamp"}},
    });
    assert_eq!(
        apply(spec, doc),
        json!({
            "set": ["s", "s"], "unset": [{"y": 1}], "unset_el": [null, null],
            "mul": [20, 30], "min": [1, 3], "max": [3, 5],
            "push": [[9, 1], [9]], "add": [[1], [2, 1]], "pop": [[2], []],
            "pull": [[1], []], "pull_all": [[2]], "bit": [5, 6],
            "date": [{"at": 1_795_322_520_123_u64}, {"at": 1_795_322_520_123_u64}],
        })
    );
}

#[test]
fn all_positional_needs_an_existing_array() {
    // MongoDB: "The path 'a' must exist in the document in order to apply array
    // updates." Even for $unset, and nothing is created (no upsert-ish creation).
    for op in ["$set", "$unset", "$inc", "$push", "$pull", "$pop"] {
        let err = apply_err(json!({op: {"a.$[]": 1}}), json!({"b": [1]}));
        assert!(
            matches!(&err, UpdateError::ArrayPathMissing { array, .. } if array == &p("a")),
            "{op}: {err:?}"
        );
    }
    let err = apply_err(json!({"$set": {"a.$[].b": 1}}), json!({}));
    assert_eq!(
        err,
        UpdateError::ArrayPathMissing {
            op: Operator::Set,
            path: p("a.$[].b"),
            array: p("a"),
        }
    );
    assert_eq!(
        err.to_string(),
        "$set at `a.$[].b`: the path `a` must exist in the document in order to apply array updates"
    );
    // Through a scalar, or a name on an array: missing too (MongoDB's pathToCreate).
    for doc in [json!({"a": 5}), json!({"a": [{"b": [1]}]})] {
        assert!(matches!(
            apply_err(json!({"$set": {"a.b.$[]": 1}}), doc),
            UpdateError::ArrayPathMissing { .. }
        ));
    }
    // A nested array missing in one element names that element.
    assert_eq!(
        apply_err(
            json!({"$inc": {"a.$[].b.$[]": 1}}),
            json!({"a": [{"b": [1]}, {"c": 1}]})
        ),
        UpdateError::ArrayPathMissing {
            op: Operator::Inc,
            path: p("a.$[].b.$[]"),
            array: p("a.1.b"),
        }
    );
}

#[test]
fn all_positional_on_a_non_array_is_an_error() {
    // MongoDB: "Cannot apply array updates to non-array element a: 5".
    let err = apply_err(json!({"$set": {"a.$[]": 1}}), json!({"a": 5}));
    assert_eq!(
        err,
        UpdateError::NotAnArray {
            op: Operator::Set,
            path: p("a.$[]"),
            array: p("a"),
            found: ValueKind::Integer,
        }
    );
    assert_eq!(
        err.to_string(),
        "$set at `a.$[]`: cannot apply array updates to an integer at `a`"
    );
    for doc in [
        json!({"a": {"0": 1}}),
        json!({"a": null}),
        json!({"a": "s"}),
    ] {
        assert!(matches!(
            apply_err(json!({"$unset": {"a.$[]": ""}}), doc),
            UpdateError::NotAnArray { .. }
        ));
    }
}

#[test]
fn all_positional_errors_name_the_element() {
    // MongoDB names the element too, e.g. "Cannot create field 'b' in element {1: null}".
    assert_eq!(
        apply_err(json!({"$set": {"a.$[].b": 1}}), json!({"a": [{}, null]})),
        UpdateError::CannotCreateField {
            op: Operator::Set,
            path: p("a.1.b"),
            field: "b".into(),
            parent: ValueKind::Null,
        }
    );
    assert_eq!(
        apply_err(json!({"$inc": {"a.$[]": 1}}), json!({"a": [1, "x"]})),
        UpdateError::WrongType {
            op: Operator::Inc,
            path: p("a.1"),
            found: ValueKind::String,
        }
    );
    assert!(matches!(
        apply_err(json!({"$push": {"a.$[]": 1}}), json!({"a": [[], 2]})),
        UpdateError::WrongType { path, .. } if path == p("a.1")
    ));
}

#[test]
fn all_positional_shares_the_padding_limit() {
    let half = MAX_PADDING / 2 + 1;
    let err = apply_err(
        json!({"$set": {(format!("a.$[].{half}")): 1}}),
        json!({"a": [[], []]}),
    );
    assert_eq!(
        err,
        UpdateError::PaddingTooLarge {
            op: Operator::Set,
            path: p(&format!("a.1.{half}")),
            needed: half,
            max: MAX_PADDING,
        }
    );
}

#[test]
fn all_positional_writes_are_bounded_per_update() {
    let doc = json!({"a": vec![0; 1000]});
    let big = "x".repeat(MAX_FAN_OUT / 1000);
    let err = apply_err(json!({"$set": {"a.$[]": big}}), doc.clone());
    assert_eq!(
        err,
        UpdateError::FanOutTooLarge {
            op: Operator::Set,
            path: p("a.$[]"),
            max: MAX_FAN_OUT,
        }
    );
    let small = "x".repeat(MAX_FAN_OUT / 2000);
    let after = apply(json!({"$set": {"a.$[]": small}}), doc);
    assert_eq!(
        after["a"][999].as_str().map(str::len),
        Some(MAX_FAN_OUT / 2000)
    );
}

#[test]
fn all_positional_paths_are_validated() {
    // MongoDB: "Cannot have array filter identifier (i.e. '$[<id>]') element in the first
    // position in path".
    assert_eq!(
        parse_err(json!({"$set": {"$[].a": 1}})),
        UpdateError::InvalidPath {
            op: Operator::Set,
            path: "$[].a".into(),
            reason: PathError::AllPositionalFirst,
        }
    );
    let err = parse_err(json!({"$set": {"a.$[i].b": 1}}));
    assert_eq!(
        err,
        UpdateError::InvalidPath {
            op: Operator::Set,
            path: "a.$[i].b".into(),
            reason: PathError::FilteredPositional {
                segment: "$[i]".into()
            },
        }
    );
    assert!(err.to_string().contains("arrayFilters"), "{err}");
    assert!(matches!(
        parse_err(json!({"$inc": {"a.$.b": 1}})),
        UpdateError::InvalidPath {
            reason: PathError::DollarSegment { .. },
            ..
        }
    ));
    // Paths naming one value refuse it.
    let (_, _, reason) = invalid_argument(&parse_err(
        json!({"$push": {"a": {"$each": [], "$sort": {"b.$[]": 1}}}}),
    ));
    assert_eq!(
        reason,
        "`$sort` field `b.$[]`: path segment `$[]` starts with `$`"
    );
    let (_, _, reason) = invalid_argument(&parse_err(json!({"$pull": {"a": {"b.$[]": 1}}})));
    assert_eq!(reason, "field `b.$[]`: path segment `$[]` starts with `$`");
}

#[test]
fn all_positional_conflicts_as_in_mongodb() {
    // MongoDB's update tree: at `a`, an array node (`$[]`) or an object node, not both.
    for (x, y) in [
        ("a.$[]", "a.0"),
        ("a.$[]", "a"),
        ("a.$[].b", "a.0.c"),
        ("a.$[].b", "a.x"),
        ("a.$[].b", "a.$[].b.c"),
        ("a.$[].b.$[]", "a.$[].b.1"),
        ("a.$[]", "a.$[]"),
    ] {
        let spec = if x == y {
            json!({"$set": {x: 1}, "$inc": {y: 1}})
        } else {
            json!({"$set": {x: 1, y: 1}})
        };
        assert!(
            matches!(parse_err(spec), UpdateError::ConflictingPaths { .. }),
            "{x} {y}"
        );
    }
    assert_eq!(
        parse_err(json!({"$set": {"a.$[].b": 1}, "$inc": {"a.0.c": 1}})),
        UpdateError::ConflictingPaths {
            first_op: Operator::Set,
            first: p("a.$[].b"),
            second_op: Operator::Inc,
            second: p("a.0.c"),
        }
    );
    // Many paths between the two still conflict.
    let mut fields = Map::new();
    for i in 0..20 {
        fields.insert(format!("a.$[].f{i}"), json!(1));
    }
    fields.insert("a.7".into(), json!(1));
    assert!(matches!(
        parse_err(json!({"$set": fields})),
        UpdateError::ConflictingPaths { .. }
    ));
    // Different fields of every element, or other arrays, are fine.
    let u = update(json!({"$set": {"a.$[].b": 1, "a.$[].c": 2, "b.0": 3}, "$inc": {"c.$[]": 1}}));
    assert_eq!(u.paths().count(), 4);
}

#[test]
fn all_positional_touches_every_element() {
    let u = update(json!({"$set": {"a.$[].b": 1}}));
    for other in ["a.3.b", "a", "a.3", "a.$[]", "a.3.b.c", "a.$[].b"] {
        assert!(u.touches(&p(other)), "{other}");
    }
    for other in ["c", "a.3.c", "ab"] {
        assert!(!u.touches(&p(other)), "{other}");
    }
}

#[test]
fn all_positional_round_trips() {
    let u = update(json!({"$inc": {"a.$[].n": 1}, "$pull": {"b.$[]": {"$gt": 1}}}));
    assert_eq!(
        u.to_value(),
        json!({"$inc": {"a.$[].n": 1}, "$pull": {"b.$[]": {"$gt": 1}}})
    );
    assert_eq!(Update::parse(&u.to_value()), Ok(u));
}
