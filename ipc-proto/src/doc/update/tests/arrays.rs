//! Array operators: `$push`, `$addToSet`, `$pop`, `$pull`, `$pullAll`.

use super::*;

// ---- $push -----------------------------------------------------------------

#[test]
fn push_appends_a_value() {
    assert_eq!(
        apply(
            json!({"$push": {"a": [9], "b": {"k": 1}}}),
            json!({"a": [1], "b": []})
        ),
        json!({"a": [1, [9]], "b": [{"k": 1}]})
    );
}

#[test]
fn push_on_missing_field_creates_the_array() {
    assert_eq!(
        apply(json!({"$push": {"a.b": 1}}), json!({})),
        json!({"a": {"b": [1]}})
    );
}

#[test]
fn push_on_a_non_array_is_a_type_error() {
    let err = apply_err(json!({"$push": {"a": 1}}), json!({"a": {"b": 1}}));
    assert_eq!(err.to_string(), "$push at `a`: cannot push to an object");
    assert!(matches!(
        apply_err(json!({"$push": {"a": 1}}), json!({"a": null})),
        UpdateError::WrongType {
            found: ValueKind::Null,
            ..
        }
    ));
}

#[test]
fn push_each_appends_every_value() {
    assert_eq!(
        apply(
            json!({"$push": {"a": {"$each": [2, 3]}}}),
            json!({"a": [1]})
        ),
        json!({"a": [1, 2, 3]})
    );
}

#[test]
fn push_position_inserts_from_the_start_or_the_end() {
    let run = |position: i64| {
        apply(
            json!({"$push": {"a": {"$each": ["x", "y"], "$position": position}}}),
            json!({"a": [1, 2, 3]}),
        )["a"]
            .clone()
    };
    assert_eq!(run(0), json!(["x", "y", 1, 2, 3]));
    assert_eq!(run(1), json!([1, "x", "y", 2, 3]));
    assert_eq!(run(99), json!([1, 2, 3, "x", "y"]));
    assert_eq!(
        run(-1),
        json!([1, 2, "x", "y", 3]),
        "negative counts from the end"
    );
    assert_eq!(run(-99), json!(["x", "y", 1, 2, 3]));
    assert_eq!(run(i64::MIN), json!(["x", "y", 1, 2, 3]));
}

#[test]
fn push_slice_keeps_first_or_last_n() {
    let run = |slice: i64| {
        apply(
            json!({"$push": {"a": {"$each": [4, 5], "$slice": slice}}}),
            json!({"a": [1, 2, 3]}),
        )["a"]
            .clone()
    };
    assert_eq!(run(0), json!([]));
    assert_eq!(run(2), json!([1, 2]));
    assert_eq!(run(-2), json!([4, 5]));
    assert_eq!(run(10), json!([1, 2, 3, 4, 5]));
    assert_eq!(run(i64::MIN), json!([1, 2, 3, 4, 5]));
}

#[test]
fn push_sort_orders_scalars_ascending_or_descending() {
    assert_eq!(
        apply(
            json!({"$push": {"a": {"$each": [2, "s", null], "$sort": 1}}}),
            json!({"a": [3, 1.5]})
        ),
        json!({"a": [null, 1.5, 2, 3, "s"]})
    );
    assert_eq!(
        apply(
            json!({"$push": {"a": {"$each": [], "$sort": -1}}}),
            json!({"a": [1, 3, 2]})
        ),
        json!({"a": [3, 2, 1]})
    );
}

#[test]
fn push_sort_orders_documents_by_fields() {
    let doc = json!({"a": [{"n": 2, "m": 1}, {"n": 1, "m": 1}, {"m": 0}, {"n": 1, "m": 2}]});
    assert_eq!(
        apply(
            json!({"$push": {"a": {"$each": [], "$sort": {"m": 1, "n": -1}}}}),
            doc
        ),
        json!({"a": [{"m": 0}, {"n": 2, "m": 1}, {"n": 1, "m": 1}, {"n": 1, "m": 2}]})
    );
}

#[test]
fn push_applies_position_then_sort_then_slice() {
    assert_eq!(
        apply(
            json!({"$push": {"a": {"$each": [5, 0], "$position": 0, "$sort": 1, "$slice": -3}}}),
            json!({"a": [3, 1, 4]})
        ),
        json!({"a": [3, 4, 5]})
    );
}

#[test]
fn push_modifiers_without_each_are_an_error() {
    let (op, _, reason) = invalid_argument(&parse_err(json!({"$push": {"a": {"$slice": 1}}})));
    assert_eq!(op, Operator::Push);
    assert_eq!(reason, "modifier `$slice` requires `$each`");
    let (_, _, reason) = invalid_argument(&parse_err(json!({"$push": {"a": {"$x": 1}}})));
    assert_eq!(reason, "unknown $push modifier `$x`");
}

#[test]
fn push_invalid_modifiers_are_errors() {
    let reasons = [
        json!({"$each": 1}),
        json!({"$each": [], "$position": 1.5}),
        json!({"$each": [], "$slice": "1"}),
        json!({"$each": [], "$sort": 0}),
        json!({"$each": [], "$sort": {}}),
        json!({"$each": [], "$sort": {"a": 2}}),
        json!({"$each": [], "$sort": {"a..b": 1}}),
        json!({"$each": [], "other": 1}),
    ]
    .map(|arg| invalid_argument(&parse_err(json!({"$push": {"a": arg}}))).2);
    assert_eq!(
        reasons,
        [
            "`$each` must be an array, found an integer",
            "`$position` must be an integer",
            "`$slice` must be an integer",
            "`$sort` must be 1, -1 or an object of `field: 1 | -1`",
            "`$sort` must be 1, -1 or an object of `field: 1 | -1`",
            "`$sort` must be 1, -1 or an object of `field: 1 | -1`",
            "`$sort` field `a..b`: path has an empty segment at position 1",
            "unknown $push modifier `other`",
        ]
    );
}

#[test]
fn push_modifiers_accept_integral_floats() {
    assert_eq!(
        apply(
            json!({"$push": {"a": {"$each": [9], "$position": 0.0, "$slice": 2.0}}}),
            json!({"a": [1, 2]})
        ),
        json!({"a": [9, 1]})
    );
}

// ---- $addToSet -------------------------------------------------------------

#[test]
fn add_to_set_adds_only_absent_values() {
    assert_eq!(
        apply(
            json!({"$addToSet": {"a": 3, "b": 2}}),
            json!({"a": [1, 2], "b": [1, 2]})
        ),
        json!({"a": [1, 2, 3], "b": [1, 2]})
    );
}

#[test]
fn add_to_set_compares_deeply_with_numbers_by_value() {
    let doc = json!({"a": [1, {"x": [1, 2], "y": null}]});
    assert_eq!(
        apply(
            json!({"$addToSet": {"a": {"$each": [1.0, {"y": null, "x": [1.0, 2]}]}}}),
            doc.clone()
        ),
        doc
    );
}

#[test]
fn add_to_set_each_skips_duplicates_within_itself() {
    assert_eq!(
        apply(
            json!({"$addToSet": {"a": {"$each": [2, 2, 3, 2.0]}}}),
            json!({"a": [1]})
        ),
        json!({"a": [1, 2, 3]})
    );
}

#[test]
fn add_to_set_on_missing_field_creates_the_array() {
    assert_eq!(
        apply(json!({"$addToSet": {"a.b": {"$each": [1, 1]}}}), json!({})),
        json!({"a": {"b": [1]}})
    );
}

#[test]
fn add_to_set_on_a_non_array_is_a_type_error() {
    let err = apply_err(json!({"$addToSet": {"a": 1}}), json!({"a": 1}));
    assert_eq!(
        err.to_string(),
        "$addToSet at `a`: cannot add to an integer"
    );
}

#[test]
fn add_to_set_invalid_modifiers_are_errors() {
    let reasons = [
        json!({"$each": 1}),
        json!({"$each": [], "$slice": 1}),
        json!({"$slice": 1}),
    ]
    .map(|arg| invalid_argument(&parse_err(json!({"$addToSet": {"a": arg}}))).2);
    assert_eq!(
        reasons,
        [
            "`$each` must be an array, found an integer",
            "unexpected field `$slice` next to `$each`",
            "unknown $addToSet modifier `$slice`",
        ]
    );
}

// ---- $pop --------------------------------------------------------------------

#[test]
fn pop_removes_the_last_or_first_element() {
    assert_eq!(
        apply(
            json!({"$pop": {"a": 1, "b": -1}}),
            json!({"a": [1, 2], "b": [1, 2]})
        ),
        json!({"a": [1], "b": [2]})
    );
}

#[test]
fn pop_on_missing_or_empty_array_is_a_noop() {
    let doc = json!({"e": [], "s": 1});
    assert_eq!(
        apply(json!({"$pop": {"e": -1, "m": 1, "s.t": 1}}), doc.clone()),
        doc
    );
}

#[test]
fn pop_on_a_non_array_is_a_type_error() {
    let err = apply_err(json!({"$pop": {"a": 1}}), json!({"a": "x"}));
    assert_eq!(err.to_string(), "$pop at `a`: cannot pop from a string");
}

#[test]
fn pop_argument_must_be_one_or_minus_one() {
    for arg in [json!(0), json!(2), json!("1"), json!(1.5), json!(null)] {
        let (op, _, reason) = invalid_argument(&parse_err(json!({"$pop": {"a": arg}})));
        assert_eq!((op, reason.as_str()), (Operator::Pop, "expected 1 or -1"));
    }
    assert_eq!(
        update(json!({"$pop": {"a": -1.0}})),
        update(json!({"$pop": {"a": -1}}))
    );
}

// ---- $pull -------------------------------------------------------------------

#[test]
fn pull_removes_every_equal_element() {
    assert_eq!(
        apply(
            json!({"$pull": {"a": 1, "b": [1, 2]}}),
            json!({"a": [1, 2, 1.0, "1", [1]], "b": [[1, 2], [2, 1], 1]})
        ),
        json!({"a": [2, "1", [1]], "b": [[2, 1], 1]})
    );
}

#[test]
fn pull_query_operators_apply_to_each_element() {
    let doc = json!({"a": [1, 5, 6, 9]});
    let run = |cond: Value| apply(json!({"$pull": {"a": cond}}), doc.clone())["a"].clone();
    assert_eq!(run(json!({"$gte": 6})), json!([1, 5]));
    assert_eq!(run(json!({"$gt": 5, "$lt": 9})), json!([1, 5, 9]));
    assert_eq!(run(json!({"$lte": 5})), json!([6, 9]));
    assert_eq!(run(json!({"$eq": 5.0})), json!([1, 6, 9]));
    assert_eq!(run(json!({"$ne": 5})), json!([5]));
    assert_eq!(run(json!({"$in": [9, 1, 1]})), json!([5, 6]));
    assert_eq!(run(json!({"$nin": [9, 1]})), json!([1, 9]));
}

#[test]
fn pull_comparisons_stay_within_one_type_class() {
    assert_eq!(
        apply(
            json!({"$pull": {"a": {"$gt": 1}, "b": {"$lt": "m"}}}),
            json!({"a": [0, 2, "z", true, [5]], "b": ["a", "z", 1, null]})
        ),
        json!({"a": [0, "z", true], "b": ["z", 1, null]}),
        "[5] goes: an operator condition queries an array element element by element"
    );
}

#[test]
fn pull_document_condition_is_a_partial_match() {
    // MongoDB docs: removes elements that contain score 8 and item "B".
    let doc = json!({"results": [
        {"item": "A", "score": 5},
        {"item": "B", "score": 8, "comment": "extra fields are fine"},
        {"item": "B", "score": 4},
        8,
    ]});
    assert_eq!(
        apply(
            json!({"$pull": {"results": {"score": 8, "item": "B"}}}),
            doc
        ),
        json!({"results": [{"item": "A", "score": 5}, {"item": "B", "score": 4}, 8]})
    );
}

#[test]
fn pull_field_condition_may_use_query_operators() {
    let doc = json!({"r": [{"score": 9, "n": {"x": 1}}, {"score": 7}, {"score": "9"}]});
    assert_eq!(
        apply(
            json!({"$pull": {"r": {"score": {"$gte": 8}, "n.x": 1}}}),
            doc
        ),
        json!({"r": [{"score": 7}, {"score": "9"}]})
    );
}

#[test]
fn pull_missing_field_matches_as_null() {
    assert_eq!(
        apply(
            json!({"$pull": {"a": {"x": null}}}),
            json!({"a": [{"x": 1}, {"y": 1}, {"x": null}]})
        ),
        json!({"a": [{"x": 1}]})
    );
}

#[test]
fn pull_empty_condition_removes_every_document_element() {
    assert_eq!(
        apply(
            json!({"$pull": {"a": {}}}),
            json!({"a": [{"x": 1}, {}, 1, [2]]})
        ),
        json!({"a": [1, [2]]})
    );
}

#[test]
fn pull_on_missing_field_is_a_noop_and_on_non_array_a_type_error() {
    let doc = json!({"s": 1});
    assert_eq!(
        apply(json!({"$pull": {"a": 1, "s.t": 1}}), doc.clone()),
        doc
    );
    let err = apply_err(json!({"$pull": {"s": 1}}), doc);
    assert_eq!(err.to_string(), "$pull at `s`: cannot pull from an integer");
}

#[test]
fn pull_invalid_conditions_are_errors() {
    let reasons = [
        json!({"$regex": "x"}),
        json!({"$gt": 1, "x": 1}),
        json!({"$in": 1}),
        json!({"x": {"$elemMatch": {}}}),
        json!({"x": {"$gt": 1, "y": 1}}),
        json!({"x..y": 1}),
    ]
    .map(|arg| invalid_argument(&parse_err(json!({"$pull": {"a": arg}}))).2);
    assert_eq!(
        reasons,
        [
            "unsupported query operator `$regex`",
            "cannot mix query operators and fields in one condition",
            "`$in` needs an array, found an integer",
            "unsupported query operator `$elemMatch`",
            "cannot mix query operators and fields in one condition",
            "field `x..y`: path has an empty segment at position 1",
        ]
    );
}

#[test]
fn pull_field_condition_matches_an_array_field_containing_the_value() {
    // MongoDB's query language: `{tags: "x"}` matches a `tags` array containing "x".
    let doc = json!({"items": [
        {"tags": ["x", "y"]},
        {"tags": "x"},
        {"tags": ["y"]},
        {"tags": [["x"]]},
        {"other": 1},
    ]});
    assert_eq!(
        apply(json!({"$pull": {"items": {"tags": "x"}}}), doc),
        json!({"items": [{"tags": ["y"]}, {"tags": [["x"]]}, {"other": 1}]}),
        "nested arrays are not searched"
    );
}

#[test]
fn pull_field_condition_with_an_array_matches_it_whole_or_as_an_element() {
    let doc = json!({"items": [
        {"tags": ["x", "y"]},
        {"tags": ["y", "x"]},
        {"tags": [["x", "y"], "z"]},
        {"tags": ["x", "y", "z"]},
    ]});
    assert_eq!(
        apply(json!({"$pull": {"items": {"tags": ["x", "y"]}}}), doc),
        json!({"items": [{"tags": ["y", "x"]}, {"tags": ["x", "y", "z"]}]})
    );
}

#[test]
fn pull_field_operators_match_if_any_array_element_does() {
    let doc = json!({"r": [
        {"s": [1, 9]},
        {"s": [1, 2]},
        {"s": 9},
        {"s": ["a", "x"]},
        {"s": []},
    ]});
    let run = |cond: Value| {
        apply(json!({"$pull": {"r": {"s": cond}}}), doc.clone())["r"]
            .as_array()
            .expect("still an array")
            .len()
    };
    assert_eq!(run(json!({"$gt": 8})), 3, "[1, 9] and 9 go");
    assert_eq!(
        run(json!({"$in": ["x", 2]})),
        3,
        "[1, 2] and [\"a\", \"x\"] go"
    );
    assert_eq!(run(json!({"$eq": 1})), 3);
    // Each operator may be met by another element, as in MongoDB: 9 > 5 and 1 < 2.
    assert_eq!(run(json!({"$gt": 5, "$lt": 2})), 4, "[1, 9] goes");
    // `$ne` and `$nin` hold when no element is equal or in the list; an empty array has
    // none, so it goes too.
    assert_eq!(
        apply(json!({"$pull": {"r": {"s": {"$ne": 1}}}}), doc.clone()),
        json!({"r": [{"s": [1, 9]}, {"s": [1, 2]}]})
    );
    assert_eq!(
        apply(json!({"$pull": {"r": {"s": {"$nin": [9, "x"]}}}}), doc),
        json!({"r": [{"s": [1, 9]}, {"s": 9}, {"s": ["a", "x"]}]})
    );
}

#[test]
fn pull_field_paths_traverse_arrays_of_documents_and_indexes() {
    let doc = json!({"r": [
        {"n": [{"x": 2}, {"x": 1}]},
        {"n": [{"x": 2}]},
        {"n": [5, 6]},
        {"n": [[{"x": 1}]]},
    ]});
    assert_eq!(
        apply(json!({"$pull": {"r": {"n.x": 1}}}), doc.clone()),
        json!({"r": [{"n": [{"x": 2}]}, {"n": [5, 6]}, {"n": [[{"x": 1}]]}]}),
        "not into nested arrays"
    );
    assert_eq!(
        apply(json!({"$pull": {"r": {"n.0": 5}}}), doc.clone())["r"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // A missing field is null: `{n.x: null}` matches elements without `x`, or without
    // documents to look into.
    assert_eq!(
        apply(json!({"$pull": {"r": {"n.x": null}}}), doc),
        json!({"r": [{"n": [{"x": 2}, {"x": 1}]}, {"n": [{"x": 2}]}]})
    );
}

#[test]
fn pull_operator_condition_queries_array_elements_too() {
    // MongoDB wraps the element as a field (`pull_node.cpp`, WrappedObjectMatcher), so
    // an array element matches if one of its elements does; a plain value must be equal.
    let doc = json!({"a": [[1, 7], [1, 2], 8, 3]});
    assert_eq!(
        apply(json!({"$pull": {"a": {"$gte": 6}}}), doc.clone()),
        json!({"a": [[1, 2], 3]})
    );
    assert_eq!(
        apply(json!({"$pull": {"a": {"$eq": 1}}}), doc.clone()),
        json!({"a": [8, 3]})
    );
    assert_eq!(apply(json!({"$pull": {"a": 1}}), doc.clone()), doc);
    assert_eq!(
        apply(json!({"$pull": {"a": [1, 2]}}), doc),
        json!({"a": [[1, 7], 8, 3]})
    );
}

// ---- $pullAll ----------------------------------------------------------------

#[test]
fn pull_all_removes_every_listed_value() {
    assert_eq!(
        apply(
            json!({"$pullAll": {"a": [0, 5.0, {"k": 1}]}}),
            json!({"a": [0, 5, 6, 0, {"k": 1}, {"k": 2}]})
        ),
        json!({"a": [6, {"k": 2}]})
    );
}

#[test]
fn pull_all_argument_must_be_an_array() {
    let (op, _, reason) = invalid_argument(&parse_err(json!({"$pullAll": {"a": 1}})));
    assert_eq!(op, Operator::PullAll);
    assert_eq!(reason, "expected an array, found an integer");
}

#[test]
fn pull_all_on_missing_field_is_a_noop_and_on_non_array_a_type_error() {
    assert_eq!(apply(json!({"$pullAll": {"a": [1]}}), json!({})), json!({}));
    assert!(matches!(
        apply_err(json!({"$pullAll": {"a": [1]}}), json!({"a": {}})),
        UpdateError::WrongType {
            op: Operator::PullAll,
            ..
        }
    ));
}
