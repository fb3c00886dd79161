//! Operators on one field: `$set`, `$unset`, `$inc`, `$mul`, `$min`/`$max`, `$rename`, `$bit`,
//! `$currentDate`.

use super::*;

// ---- $set --------------------------------------------------------------

#[test]
fn set_writes_and_overwrites_fields() {
    assert_eq!(
        apply(json!({"$set": {"a": 1, "b": [true]}}), json!({"a": "old"})),
        json!({"a": 1, "b": [true]})
    );
}

#[test]
fn set_creates_missing_intermediate_objects() {
    assert_eq!(
        apply(json!({"$set": {"a.b.c": 1}}), json!({})),
        json!({"a": {"b": {"c": 1}}})
    );
    assert_eq!(
        apply(json!({"$set": {"a.x.y": 1}}), json!({"a": {"b": 2}})),
        json!({"a": {"b": 2, "x": {"y": 1}}})
    );
}

#[test]
fn set_through_a_scalar_cannot_create_field() {
    // MongoDB: "Cannot create field 'c' in element {b: 5}".
    let err = apply_err(json!({"$set": {"a.b.c": 1}}), json!({"a": {"b": 5}}));
    assert_eq!(
        err,
        UpdateError::CannotCreateField {
            op: Operator::Set,
            path: p("a.b.c"),
            field: "c".into(),
            parent: ValueKind::Integer,
        }
    );
    assert_eq!(
        err.to_string(),
        "$set at `a.b.c`: cannot create field `c` in an integer"
    );
}

#[test]
fn set_through_null_cannot_create_field() {
    assert!(matches!(
        apply_err(json!({"$set": {"a.b": 1}}), json!({"a": null})),
        UpdateError::CannotCreateField {
            parent: ValueKind::Null,
            ..
        }
    ));
}

#[test]
fn set_numeric_segment_indexes_an_array() {
    assert_eq!(
        apply(
            json!({"$set": {"a.1": "x", "b.0.c": 2}}),
            json!({"a": [1, 2, 3], "b": [{"c": 1}]})
        ),
        json!({"a": [1, "x", 3], "b": [{"c": 2}]})
    );
}

#[test]
fn set_numeric_segment_is_a_key_on_objects_and_missing_fields() {
    assert_eq!(
        apply(json!({"$set": {"a.0": 1, "b.1.c": 2}}), json!({"a": {}})),
        json!({"a": {"0": 1}, "b": {"1": {"c": 2}}})
    );
}

#[test]
fn set_non_numeric_segment_on_an_array_cannot_create_field() {
    let err = apply_err(json!({"$set": {"a.b": 1}}), json!({"a": [1]}));
    assert_eq!(
        err,
        UpdateError::CannotCreateField {
            op: Operator::Set,
            path: p("a.b"),
            field: "b".into(),
            parent: ValueKind::Array,
        }
    );
    // Non-canonical numbers are not indexes.
    assert!(matches!(
        apply_err(json!({"$set": {"a.01": 1}}), json!({"a": [1, 2]})),
        UpdateError::CannotCreateField { .. }
    ));
}

#[test]
fn set_past_the_end_of_an_array_pads_with_null() {
    assert_eq!(
        apply(json!({"$set": {"a.4": 5}}), json!({"a": [1]})),
        json!({"a": [1, null, null, null, 5]})
    );
    assert_eq!(
        apply(json!({"$set": {"a.2.x": 1}}), json!({"a": [1]})),
        json!({"a": [1, null, {"x": 1}]})
    );
}

#[test]
fn set_padding_is_bounded_per_update() {
    let err = apply_err(json!({"$set": {"a.1000000": 1}}), json!({"a": []}));
    assert_eq!(
        err,
        UpdateError::PaddingTooLarge {
            op: Operator::Set,
            path: p("a.1000000"),
            needed: 1_000_000,
            max: MAX_PADDING,
        }
    );
    let limit = MAX_PADDING;
    let doc = apply(
        json!({"$set": {(format!("a.{limit}")): 1}}),
        json!({"a": []}),
    );
    assert_eq!(doc["a"].as_array().map(Vec::len), Some(limit + 1));
    // The limit is for the whole update, not per entry.
    let half = MAX_PADDING / 2 + 1;
    let err = apply_err(
        json!({"$set": {(format!("a.{half}")): 1, (format!("b.{half}")): 1}}),
        json!({"a": [], "b": []}),
    );
    assert!(matches!(err, UpdateError::PaddingTooLarge { .. }));
    // A huge index is an error, not an allocation or an overflow.
    assert!(matches!(
        apply_err(
            json!({"$set": {"a.18446744073709551615": 1}}),
            json!({"a": []})
        ),
        UpdateError::PaddingTooLarge { .. }
    ));
}

#[test]
fn set_on_a_scalar_root_cannot_create_field() {
    let mut doc = json!(5);
    let err = update(json!({"$set": {"a": 1}}))
        .apply(&mut doc, &CTX)
        .expect_err("root is not a container");
    assert!(matches!(err, UpdateError::CannotCreateField { .. }));
    assert_eq!(doc, json!(5));
}

#[test]
fn applied_returns_the_result_and_leaves_the_input_alone() {
    let doc = json!({"n": 1});
    let u = update(json!({"$inc": {"n": 1}, "$set": {"a.b": true}}));
    assert_eq!(u.applied(&doc, &CTX), Ok(json!({"n": 2, "a": {"b": true}})));
    assert_eq!(doc, json!({"n": 1}));
    assert!(
        update(json!({"$push": {"n": 1}}))
            .applied(&doc, &CTX)
            .is_err()
    );
}

#[test]
fn apply_is_all_or_nothing_across_operators() {
    let doc = json!({"a": 1, "s": "text"});
    let err = apply_err(
        json!({"$set": {"a": 2}, "$inc": {"s": 1}, "$push": {"new": 1}}),
        doc,
    );
    assert!(matches!(
        err,
        UpdateError::WrongType {
            op: Operator::Inc,
            ..
        }
    ));
}

// ---- $unset ------------------------------------------------------------

#[test]
fn unset_removes_the_field() {
    assert_eq!(
        apply(
            json!({"$unset": {"a.b": ""}}),
            json!({"a": {"b": 1, "c": 2}})
        ),
        json!({"a": {"c": 2}})
    );
}

#[test]
fn unset_missing_path_is_a_noop() {
    let doc = json!({"a": 5, "b": [1]});
    assert_eq!(
        apply(
            json!({"$unset": {"x": 1, "a.b": 1, "b.7": 1, "b.x": 1}}),
            doc.clone()
        ),
        doc
    );
}

#[test]
fn unset_on_an_array_element_sets_it_to_null() {
    // MongoDB keeps array positions: $unset nulls the element.
    assert_eq!(
        apply(json!({"$unset": {"a.1": ""}}), json!({"a": [1, 2, 3]})),
        json!({"a": [1, null, 3]})
    );
}

// ---- $inc ----------------------------------------------------------------

#[test]
fn inc_adds_integers_as_integers() {
    let doc = apply(json!({"$inc": {"n": 2, "m": -5}}), json!({"n": 1, "m": 1}));
    assert_eq!(doc, json!({"n": 3, "m": -4}));
    assert!(doc["n"].is_i64());
}

#[test]
fn inc_on_missing_field_sets_the_increment() {
    assert_eq!(
        apply(json!({"$inc": {"a.b": 2.5}}), json!({})),
        json!({"a": {"b": 2.5}})
    );
}

#[test]
fn inc_with_a_float_involved_gives_a_float() {
    let doc = apply(
        json!({"$inc": {"a": 0.5, "b": 1}}),
        json!({"a": 1, "b": 1.5}),
    );
    assert_eq!(doc, json!({"a": 1.5, "b": 2.5}));
    let doc = apply(json!({"$inc": {"a": 1.0}}), json!({"a": 1}));
    assert!(doc["a"].is_f64());
}

#[test]
fn inc_integer_overflow_is_an_error() {
    let err = apply_err(json!({"$inc": {"n": 1}}), json!({"n": i64::MAX}));
    assert_eq!(
        err,
        UpdateError::IntegerOverflow {
            op: Operator::Inc,
            path: p("n")
        }
    );
    assert_eq!(err.to_string(), "$inc at `n`: integer overflow");
    // A JSON integer beyond i64 is not silently turned into a float.
    assert!(matches!(
        apply_err(json!({"$inc": {"n": 1}}), json!({"n": u64::MAX})),
        UpdateError::IntegerOverflow { .. }
    ));
}

#[test]
fn inc_non_finite_result_is_an_error() {
    let err = apply_err(json!({"$inc": {"x": 1e308}}), json!({"x": 1e308}));
    assert_eq!(
        err,
        UpdateError::NonFinite {
            op: Operator::Inc,
            path: p("x")
        }
    );
}

#[test]
fn inc_on_a_non_number_is_a_type_error() {
    let err = apply_err(json!({"$inc": {"a.b": 1}}), json!({"a": {"b": "x"}}));
    assert_eq!(err.to_string(), "$inc at `a.b`: cannot increment a string");
    assert!(matches!(
        apply_err(json!({"$inc": {"a": 1}}), json!({"a": null})),
        UpdateError::WrongType {
            found: ValueKind::Null,
            ..
        }
    ));
}

#[test]
fn inc_argument_must_be_an_i64_or_float() {
    let (op, path, reason) = invalid_argument(&parse_err(json!({"$inc": {"a": "1"}})));
    assert_eq!((op, path.as_str()), (Operator::Inc, "a"));
    assert_eq!(reason, "expected a number, found a string");
    let err = parse_err(json!({"$inc": {"a": u64::MAX}}));
    assert_eq!(
        err.to_string(),
        "$inc at `a`: integer does not fit in a signed 64-bit integer"
    );
}

// ---- $mul ----------------------------------------------------------------

#[test]
fn mul_multiplies_integers_as_integers() {
    let doc = apply(json!({"$mul": {"n": 3}}), json!({"n": -4}));
    assert_eq!(doc, json!({"n": -12}));
    assert!(doc["n"].is_i64());
}

#[test]
fn mul_with_a_float_involved_gives_a_float() {
    assert_eq!(
        apply(json!({"$mul": {"n": 1.5}}), json!({"n": 2})),
        json!({"n": 3.0})
    );
}

#[test]
fn mul_on_missing_field_sets_zero_of_the_operand_kind() {
    let doc = apply(json!({"$mul": {"i": 5, "f": 2.5}}), json!({}));
    assert_eq!(doc, json!({"i": 0, "f": 0.0}));
    assert!(doc["i"].is_i64());
    assert!(doc["f"].is_f64());
}

#[test]
fn mul_integer_overflow_is_an_error() {
    assert!(matches!(
        apply_err(json!({"$mul": {"n": 2}}), json!({"n": i64::MIN})),
        UpdateError::IntegerOverflow {
            op: Operator::Mul,
            ..
        }
    ));
}

#[test]
fn mul_non_finite_result_is_an_error() {
    assert!(matches!(
        apply_err(json!({"$mul": {"n": 1e300}}), json!({"n": 1e300})),
        UpdateError::NonFinite {
            op: Operator::Mul,
            ..
        }
    ));
}

#[test]
fn mul_on_a_non_number_is_a_type_error() {
    let err = apply_err(json!({"$mul": {"n": 2}}), json!({"n": [2]}));
    assert_eq!(err.to_string(), "$mul at `n`: cannot multiply an array");
    assert!(matches!(
        parse_err(json!({"$mul": {"n": true}})),
        UpdateError::InvalidArgument {
            op: Operator::Mul,
            ..
        }
    ));
}

// ---- $min / $max -----------------------------------------------------------

#[test]
fn min_and_max_replace_only_when_lower_or_higher() {
    let doc = json!({"lo": 5, "hi": 5});
    assert_eq!(
        apply(json!({"$min": {"lo": 3}, "$max": {"hi": 3}}), doc.clone()),
        json!({"lo": 3, "hi": 5})
    );
    assert_eq!(
        apply(json!({"$min": {"lo": 7}, "$max": {"hi": 7}}), doc),
        json!({"lo": 5, "hi": 7})
    );
}

#[test]
fn min_and_max_on_missing_field_set_it() {
    assert_eq!(
        apply(json!({"$min": {"a.b": 1}, "$max": {"c": "z"}}), json!({})),
        json!({"a": {"b": 1}, "c": "z"})
    );
}

#[test]
fn min_and_max_compare_numbers_by_value_across_int_and_float() {
    let doc = apply(
        json!({"$min": {"a": 1.0}, "$max": {"b": 2.5}}),
        json!({"a": 1, "b": 2}),
    );
    assert_eq!(doc, json!({"a": 1, "b": 2.5}));
    assert!(doc["a"].is_i64(), "equal values leave the field alone");
}

#[test]
fn min_and_max_follow_bson_type_order() {
    // Null < Numbers < String < Object < Array < Bool.
    let order = [
        json!(null),
        json!(5),
        json!("x"),
        json!({"k": 1}),
        json!([1]),
        json!(false),
    ];
    for (i, lower) in order.iter().enumerate() {
        for higher in &order[i + 1..] {
            assert_eq!(
                apply(json!({"$max": {"v": higher}}), json!({"v": lower})),
                json!({"v": higher})
            );
            assert_eq!(
                apply(json!({"$min": {"v": lower}}), json!({"v": higher})),
                json!({"v": lower})
            );
            assert_eq!(
                apply(json!({"$min": {"v": higher}}), json!({"v": lower})),
                json!({"v": lower})
            );
        }
    }
}

#[test]
fn min_through_a_scalar_cannot_create_field() {
    assert!(matches!(
        apply_err(json!({"$min": {"a.b": 1}}), json!({"a": true})),
        UpdateError::CannotCreateField {
            op: Operator::Min,
            ..
        }
    ));
}

// ---- $rename -------------------------------------------------------------

#[test]
fn rename_moves_the_value() {
    assert_eq!(
        apply(
            json!({"$rename": {"a.b": "c.d"}}),
            json!({"a": {"b": 1, "x": 2}})
        ),
        json!({"a": {"x": 2}, "c": {"d": 1}})
    );
}

#[test]
fn rename_overwrites_an_existing_target() {
    assert_eq!(
        apply(json!({"$rename": {"a": "b"}}), json!({"a": [1], "b": 2})),
        json!({"b": [1]})
    );
}

#[test]
fn rename_missing_source_is_a_noop() {
    let doc = json!({"b": [1], "s": {"x": 5}});
    assert_eq!(
        apply(json!({"$rename": {"a": "b.0", "s.t": "u"}}), doc.clone()),
        doc
    );
    // Missing under an array: MongoDB looks for the source first and changes nothing.
    let doc = json!({"c": [1]});
    assert_eq!(apply(json!({"$rename": {"c.5": "a"}}), doc.clone()), doc);
    assert_eq!(apply(json!({"$rename": {"c.5.z": "a"}}), doc.clone()), doc);
}

#[test]
fn rename_through_a_scalar_is_not_viable() {
    for (doc, from, field, found) in [
        (json!({"c": null}), "c.z", "z", ValueKind::Null),
        (json!({"s": 5}), "s.t", "t", ValueKind::Integer),
        (
            json!({"c": {"d": "str"}}),
            "c.d.e.f",
            "e",
            ValueKind::String,
        ),
    ] {
        let err = apply_err(json!({"$rename": {from: "a"}}), doc.clone());
        assert_eq!(
            err,
            UpdateError::PathNotViable {
                op: Operator::Rename,
                path: from.parse().expect("path"),
                field: field.into(),
                found,
            },
            "{doc} {from}"
        );
    }
    assert_eq!(
        apply_err(json!({"$rename": {"c.z": "a"}}), json!({"c": null})).to_string(),
        "$rename at `c.z`: cannot use the part `z` to traverse null"
    );
}

#[test]
fn rename_refuses_the_all_positional_operator() {
    // MongoDB: "The source field for $rename may not be dynamic: a.$[].b", and the same
    // for the destination.
    let (op, path, reason) = invalid_argument(&parse_err(json!({"$rename": {"a.$[].b": "c"}})));
    assert_eq!((op, path.as_str()), (Operator::Rename, "a.$[].b"));
    assert_eq!(reason, "the source field may not be dynamic (`$[]`)");
    let (_, _, reason) = invalid_argument(&parse_err(json!({"$rename": {"c": "a.$[]"}})));
    assert_eq!(
        reason,
        "the target field `a.$[]` may not be dynamic (`$[]`)"
    );
}

#[test]
fn rename_of_an_existing_array_element_is_refused() {
    for from in ["c.0.x", "c.x"] {
        let err = apply_err(json!({"$rename": {from: "a"}}), json!({"c": [{"x": 1}]}));
        assert!(
            matches!(err, UpdateError::RenameThroughArray { .. }),
            "{from}: {err:?}"
        );
    }
}

#[test]
fn rename_target_must_be_a_string_path() {
    let (op, _, reason) = invalid_argument(&parse_err(json!({"$rename": {"a": 1}})));
    assert_eq!(op, Operator::Rename);
    assert_eq!(reason, "target must be a string path, found an integer");
    assert!(matches!(
        parse_err(json!({"$rename": {"a": "b..c"}})),
        UpdateError::InvalidPath {
            op: Operator::Rename,
            ..
        }
    ));
}

#[test]
fn rename_to_the_same_or_an_overlapping_path_is_an_error() {
    let (_, _, reason) = invalid_argument(&parse_err(json!({"$rename": {"a": "a"}})));
    assert_eq!(reason, "source and target must differ");
    let err = parse_err(json!({"$rename": {"a": "a.b"}}));
    assert_eq!(
        err.to_string(),
        "$rename at `a`: source and target `a.b` must not be on the same path"
    );
    assert!(matches!(
        parse_err(json!({"$rename": {"a.b": "a"}})),
        UpdateError::InvalidArgument { .. }
    ));
}

#[test]
fn rename_from_an_array_element_is_an_error() {
    let err = apply_err(json!({"$rename": {"a.0.b": "x"}}), json!({"a": [{"b": 1}]}));
    assert_eq!(err, UpdateError::RenameThroughArray { path: p("a.0.b") });
    assert_eq!(
        err.to_string(),
        "$rename at `a.0.b`: cannot rename to or from an array element"
    );
    assert!(matches!(
        apply_err(json!({"$rename": {"a.b": "x"}}), json!({"a": [{"b": 1}]})),
        UpdateError::RenameThroughArray { .. }
    ));
}

#[test]
fn rename_into_an_array_element_is_an_error() {
    assert_eq!(
        apply_err(json!({"$rename": {"a": "b.0"}}), json!({"a": 1, "b": [5]})),
        UpdateError::RenameThroughArray { path: p("b.0") }
    );
}

#[test]
fn rename_target_through_a_scalar_cannot_create_field() {
    assert!(matches!(
        apply_err(json!({"$rename": {"a": "b.c"}}), json!({"a": 1, "b": 2})),
        UpdateError::CannotCreateField {
            op: Operator::Rename,
            ..
        }
    ));
}

// ---- $bit ----------------------------------------------------------------------

#[test]
fn bit_applies_and_or_xor() {
    assert_eq!(
        apply(
            json!({"$bit": {"a": {"and": 0b1010}, "o": {"or": 0b0101}, "x": {"xor": 0b0110}}}),
            json!({"a": 0b1100, "o": 0b1000, "x": 0b0101})
        ),
        json!({"a": 0b1000, "o": 0b1101, "x": 0b0011})
    );
}

#[test]
fn bit_applies_several_operations_in_key_order() {
    // Keys iterate as and, or, xor: ((0b1100 & 0b0110) | 0b0001) ^ 0b0011.
    assert_eq!(
        apply(
            json!({"$bit": {"a": {"xor": 0b0011, "and": 0b0110, "or": 0b0001}}}),
            json!({"a": 0b1100})
        ),
        json!({"a": 0b0110})
    );
}

#[test]
fn bit_on_missing_field_starts_from_zero() {
    assert_eq!(
        apply(json!({"$bit": {"a.b": {"or": 5}}}), json!({})),
        json!({"a": {"b": 5}})
    );
}

#[test]
fn bit_target_must_be_an_integer() {
    let err = apply_err(json!({"$bit": {"a": {"or": 1}}}), json!({"a": 1.0}));
    assert_eq!(
        err.to_string(),
        "$bit at `a`: cannot apply bitwise operations to a float"
    );
    assert!(matches!(
        apply_err(json!({"$bit": {"a": {"or": 1}}}), json!({"a": "1"})),
        UpdateError::WrongType { .. }
    ));
    assert!(matches!(
        apply_err(json!({"$bit": {"a": {"or": 1}}}), json!({"a": u64::MAX})),
        UpdateError::IntegerOverflow { .. }
    ));
}

#[test]
fn bit_argument_must_be_integer_operations() {
    let reasons = [
        json!(5),
        json!({}),
        json!({"nand": 1}),
        json!({"and": 1.0}),
        json!({"or": u64::MAX}),
    ]
    .map(|arg| invalid_argument(&parse_err(json!({"$bit": {"a": arg}}))).2);
    assert_eq!(
        reasons,
        [
            "expected an object of `and | or | xor: integer`",
            "expected an object of `and | or | xor: integer`",
            "unknown bitwise operation `nand`",
            "`and` needs a 64-bit integer",
            "`or` needs a 64-bit integer",
        ]
    );
}

// ---- $currentDate ----------------------------------------------------------------

#[test]
fn current_date_writes_an_rfc3339_string_or_milliseconds() {
    assert_eq!(
        apply(
            json!({"$currentDate": {"d": true, "e.f": {"$type": "date"}, "t": {"$type": "timestamp"}}}),
            json!({"d": 1})
        ),
        json!({
            "d": "2026-11-22T04:42:00.123Z",
            "e": {"f": "2026-11-22T04:42:00.123Z"},
            "t": 1_795_322_520_123_u64,
        })
    );
}

#[test]
fn current_date_false_also_means_date() {
    // As MongoDB: any boolean selects the date type.
    assert_eq!(
        update(json!({"$currentDate": {"d": false}})),
        update(json!({"$currentDate": {"d": true}}))
    );
}

#[test]
fn current_date_argument_must_name_a_type() {
    for arg in [
        json!(1),
        json!({"$type": "clock"}),
        json!({"$type": "date", "x": 1}),
        json!({}),
    ] {
        let (op, _, reason) = invalid_argument(&parse_err(json!({"$currentDate": {"d": arg}})));
        assert_eq!(op, Operator::CurrentDate);
        assert_eq!(
            reason,
            r#"expected true or {"$type": "date" | "timestamp"}"#
        );
    }
}

#[test]
fn rfc3339_formats_known_instants() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (94_694_399_000, "1972-12-31T23:59:59.000Z"),
        (951_868_799_999, "2000-02-29T23:59:59.999Z"),
        (1_677_628_800_000, "2023-03-01T00:00:00.000Z"),
        (1_709_208_000_000, "2024-02-29T12:00:00.000Z"),
        (1_795_322_520_123, "2026-11-22T04:42:00.123Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        (13_574_563_200_000, "2400-02-29T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ];
    for (ms, expected) in cases {
        assert_eq!(rfc3339_millis(ms), expected, "{ms}");
    }
    // No panic or overflow at the end of the range.
    assert!(rfc3339_millis(u64::MAX).ends_with(".615Z"));
}

/// Howard Hinnant's `days_from_civil`, the inverse of [`civil_from_days`].
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year % 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

proptest! {
    #[test]
    fn civil_from_days_is_a_valid_date_and_inverts(days in 0u64..5_000_000) {
        let (year, month, day) = civil_from_days(days);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_len = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        prop_assert!((1..=12).contains(&month));
        prop_assert!((1..=month_len).contains(&day));
        prop_assert_eq!(days_from_civil(year, month, day), days);
    }
}
