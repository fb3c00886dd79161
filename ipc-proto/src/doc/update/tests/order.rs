//! MongoDB's BSON comparison: exactness across number kinds, key order, a total order.

use super::*;

// ---- comparison ------------------------------------------------------------------

#[test]
fn compare_numbers_is_exact_across_kinds() {
    let cases = [
        (json!(1), json!(1.0), Ordering::Equal),
        (json!(0), json!(-0.0), Ordering::Equal),
        (json!(1), json!(1.5), Ordering::Less),
        (json!(-2), json!(-1.5), Ordering::Less),
        (
            json!(9_007_199_254_740_993_i64),
            json!(9_007_199_254_740_992.0),
            Ordering::Greater,
        ),
        (json!(i64::MAX), json!(2f64.powi(63)), Ordering::Less),
        (json!(u64::MAX), json!(i64::MAX), Ordering::Greater),
        (json!(u64::MAX), json!(1e300), Ordering::Less),
        (json!(i64::MIN), json!(-1e300), Ordering::Greater),
        (json!(i64::MIN), json!(-(2f64.powi(63))), Ordering::Equal),
    ];
    for (a, b, expected) in cases {
        assert_eq!(compare(&a, &b), expected, "{a} vs {b}");
        assert_eq!(compare(&b, &a), expected.reverse(), "{b} vs {a}");
    }
}

#[test]
fn compare_objects_ignores_key_order_and_compares_fields() {
    assert!(equal(
        &json!({"a": 1, "b": [2.0]}),
        &json!({"b": [2], "a": 1.0})
    ));
    assert_eq!(
        compare(&json!({"a": 1}), &json!({"a": 1, "b": 0})),
        Ordering::Less
    );
    assert_eq!(compare(&json!({"a": 2}), &json!({"b": 1})), Ordering::Less);
    // Field type class first, as BSON: a number field sorts before a string field.
    assert_eq!(
        compare(&json!({"b": 1}), &json!({"a": "x"})),
        Ordering::Less
    );
}

proptest! {
    #[test]
    fn compare_is_a_total_order(a in arb_json(), b in arb_json(), c in arb_json()) {
        prop_assert_eq!(compare(&a, &a), Ordering::Equal);
        prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        if compare(&a, &b).is_le() && compare(&b, &c).is_le() {
            prop_assert!(compare(&a, &c).is_le());
        }
        if a == b {
            prop_assert!(equal(&a, &b));
        }
    }
}
