//! MongoDB's BSON order over JSON values: comparison, equality, sorted sets.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// `values` sorted by [`compare`], without duplicates (keeping the first of equals).
pub(super) fn sorted_set(values: &[Value]) -> Vec<Value> {
    let mut set = values.to_vec();
    set.sort_by(compare);
    set.dedup_by(|later, earlier| equal(later, earlier));
    set
}

/// True if the [`sorted_set`] `set` holds a value equal to `value`.
pub(super) fn contains(set: &[Value], value: &Value) -> bool {
    set.binary_search_by(|probe| compare(probe, value)).is_ok()
}

/// A value ordered by [`compare`], for sets.
pub(super) struct Ordered<'v>(pub(super) &'v Value);

impl PartialEq for Ordered<'_> {
    fn eq(&self, other: &Self) -> bool {
        equal(self.0, other.0)
    }
}

impl Eq for Ordered<'_> {}

impl PartialOrd for Ordered<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.0, other.0)
    }
}

// ---------------------------------------------------------------------------
// Comparison

/// MongoDB's order of type classes: null < numbers < strings < objects < arrays < booleans.
pub(super) fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Object(_) => 3,
        Value::Array(_) => 4,
        Value::Bool(_) => 5,
    }
}

/// Deep equality with numbers by value (`1 == 1.0`) and objects regardless of key order.
pub(super) fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b).is_eq()
}

/// A total order on JSON values, after MongoDB's BSON comparison.
///
/// Type classes by [`type_rank`]; numbers by exact value; strings by bytes;
/// arrays element by element, then by length; objects field by field in key
/// order (each field by type class, then key, then value), then by size.
pub(super) fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| compare(x, y))
            .find(|order| order.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            let (x, y) = (sorted_fields(x), sorted_fields(y));
            x.iter()
                .zip(&y)
                .map(|((xk, xv), (yk, yv))| {
                    type_rank(xv)
                        .cmp(&type_rank(yv))
                        .then_with(|| xk.cmp(yk))
                        .then_with(|| compare(xv, yv))
                })
                .find(|order| order.is_ne())
                .unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// The fields of `map` sorted by key (they already are, unless serde_json's
/// `preserve_order` feature is on).
fn sorted_fields(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut fields: Vec<_> = map.iter().collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    fields
}

/// Exact comparison across `i64`, `u64` and `f64`.
fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    enum Exact {
        Int(i128),
        Float(f64),
    }
    fn exact(n: &Number) -> Exact {
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Exact::Int(i.into()),
            (None, Some(u)) => Exact::Int(u.into()),
            // serde_json floats are finite (None only with arbitrary_precision,
            // for out-of-range numbers). Adding 0.0 turns -0.0 into 0.0, so
            // total_cmp agrees with ==.
            (None, None) => Exact::Float(n.as_f64().unwrap_or_default() + 0.0),
        }
    }
    match (exact(a), exact(b)) {
        (Exact::Int(x), Exact::Int(y)) => x.cmp(&y),
        (Exact::Float(x), Exact::Float(y)) => x.total_cmp(&y),
        (Exact::Int(x), Exact::Float(y)) => compare_int_float(x, y),
        (Exact::Float(x), Exact::Int(y)) => compare_int_float(y, x).reverse(),
    }
}

/// Compares an integer (within `i64` or `u64`) with a finite float, exactly.
fn compare_int_float(int: i128, float: f64) -> Ordering {
    /// 2^64: above every integer we compare.
    const ABOVE: f64 = 18_446_744_073_709_551_616.0;
    /// -2^63: at or below every integer we compare.
    const BELOW: f64 = -9_223_372_036_854_775_808.0;
    if float >= ABOVE {
        return Ordering::Less;
    }
    if float < BELOW {
        return Ordering::Greater;
    }
    // In range, so the floor converts exactly.
    let floor = float.floor();
    match int.cmp(&(floor as i128)) {
        Ordering::Equal if float > floor => Ordering::Less,
        order => order,
    }
}
