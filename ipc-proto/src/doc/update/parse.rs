//! Parsing and validating each operator's argument into an [`Action`].

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::super::path::{self, Path};
use super::error::{Operator, UpdateError, ValueKind};
use super::order::{compare, contains, equal, sorted_set, type_rank};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) path: Path,
    pub(super) action: Action,
}

/// One operator applied to one path, with its validated argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Set(Value),
    Unset,
    /// An `i64` or a float.
    Inc(Number),
    /// An `i64` or a float.
    Mul(Number),
    Min(Value),
    Max(Value),
    Rename(Path),
    Push(Push),
    AddToSet(AddToSet),
    Pop(End),
    Pull(Matcher),
    /// Sorted and deduplicated by [`compare`].
    PullAll(Vec<Value>),
    /// Applied in order.
    Bit(Vec<(BitOp, i64)>),
    CurrentDate(DateKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Push {
    One(Value),
    Each {
        values: Vec<Value>,
        position: Option<i64>,
        slice: Option<i64>,
        sort: Option<Sort>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AddToSet {
    One(Value),
    Each(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sort {
    Whole(Direction),
    Fields(Vec<(Path, Direction)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BitOp {
    And,
    Or,
    Xor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateKind {
    Date,
    Timestamp,
}

/// A `$pull` condition on whole array elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Matcher {
    /// A non-object value, or an object of query operators.
    Element(Condition),
    /// An object of fields: matches object elements whose fields all match.
    Fields(Vec<(Path, Condition)>),
}

/// A condition on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    Equals(Value),
    /// Non-empty; all must hold.
    Query(Vec<Query>),
}

/// A query operator with its argument; `In` and `Nin` lists are sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Query {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
}

// ---------------------------------------------------------------------------
// Parsing arguments

impl Action {
    pub(super) fn parse(op: Operator, path: &Path, value: &Value) -> Result<Self, UpdateError> {
        let invalid = |reason: String| UpdateError::InvalidArgument {
            op,
            path: path.clone(),
            reason,
        };
        Ok(match op {
            Operator::Set => Self::Set(value.clone()),
            Operator::Unset => Self::Unset,
            Operator::Inc => Self::Inc(parse_operand(value).map_err(invalid)?),
            Operator::Mul => Self::Mul(parse_operand(value).map_err(invalid)?),
            Operator::Min => Self::Min(value.clone()),
            Operator::Max => Self::Max(value.clone()),
            Operator::Rename => {
                let Value::String(raw) = value else {
                    return Err(invalid(format!(
                        "target must be a string path, found {}",
                        ValueKind::of(value)
                    )));
                };
                let to = parse_path(op, raw)?;
                // MongoDB: "The source field for $rename may not be dynamic".
                if path.has_all_positional() {
                    return Err(invalid(
                        "the source field may not be dynamic (`$[]`)".into(),
                    ));
                }
                if to.has_all_positional() {
                    return Err(invalid(format!(
                        "the target field `{to}` may not be dynamic (`$[]`)"
                    )));
                }
                if &to == path {
                    return Err(invalid("source and target must differ".into()));
                }
                if to.overlaps(path) {
                    return Err(invalid(format!(
                        "source and target `{to}` must not be on the same path"
                    )));
                }
                Self::Rename(to)
            }
            Operator::Push => Self::Push(parse_push(value).map_err(invalid)?),
            Operator::AddToSet => Self::AddToSet(parse_add_to_set(value).map_err(invalid)?),
            Operator::Pop => match integer(value) {
                Some(1) => Self::Pop(End::Last),
                Some(-1) => Self::Pop(End::First),
                _ => return Err(invalid("expected 1 or -1".into())),
            },
            Operator::Pull => Self::Pull(parse_matcher(value).map_err(invalid)?),
            Operator::PullAll => match value {
                Value::Array(values) => Self::PullAll(sorted_set(values)),
                other => {
                    return Err(invalid(format!(
                        "expected an array, found {}",
                        ValueKind::of(other)
                    )));
                }
            },
            Operator::Bit => Self::Bit(parse_bit(value).map_err(invalid)?),
            Operator::CurrentDate => {
                Self::CurrentDate(parse_date_kind(value).ok_or_else(|| {
                    invalid(r#"expected true or {"$type": "date" | "timestamp"}"#.into())
                })?)
            }
        })
    }

    pub(super) fn operator(&self) -> Operator {
        match self {
            Self::Set(_) => Operator::Set,
            Self::Unset => Operator::Unset,
            Self::Inc(_) => Operator::Inc,
            Self::Mul(_) => Operator::Mul,
            Self::Min(_) => Operator::Min,
            Self::Max(_) => Operator::Max,
            Self::Rename(_) => Operator::Rename,
            Self::Push(_) => Operator::Push,
            Self::AddToSet(_) => Operator::AddToSet,
            Self::Pop(_) => Operator::Pop,
            Self::Pull(_) => Operator::Pull,
            Self::PullAll(_) => Operator::PullAll,
            Self::Bit(_) => Operator::Bit,
            Self::CurrentDate(_) => Operator::CurrentDate,
        }
    }

    /// About how many bytes of values one application may copy into the document: its
    /// values' JSON text, for `MAX_FAN_OUT`.
    pub(super) fn weight(&self) -> usize {
        match self {
            Self::Set(v)
            | Self::Min(v)
            | Self::Max(v)
            | Self::Push(Push::One(v))
            | Self::AddToSet(AddToSet::One(v)) => json_weight(v),
            Self::Push(Push::Each { values, .. }) | Self::AddToSet(AddToSet::Each(values)) => {
                values
                    .iter()
                    .fold(0, |sum, v| sum.saturating_add(json_weight(v)))
            }
            // An RFC 3339 string with its quotes.
            Self::CurrentDate(_) => 26,
            Self::Unset
            | Self::Inc(_)
            | Self::Mul(_)
            | Self::Rename(_)
            | Self::Pop(_)
            | Self::Pull(_)
            | Self::PullAll(_)
            | Self::Bit(_) => 0,
        }
    }

    /// The argument as written in the canonical spec.
    pub(super) fn to_value(&self) -> Value {
        match self {
            Self::Set(v) | Self::Min(v) | Self::Max(v) => v.clone(),
            Self::Unset => Value::String(String::new()),
            Self::Inc(n) | Self::Mul(n) => Value::Number(n.clone()),
            Self::Rename(to) => Value::String(to.to_string()),
            Self::Push(Push::One(v)) | Self::AddToSet(AddToSet::One(v)) => v.clone(),
            Self::Push(Push::Each {
                values,
                position,
                slice,
                sort,
            }) => {
                let mut spec = Map::new();
                spec.insert("$each".into(), Value::Array(values.clone()));
                if let Some(position) = position {
                    spec.insert("$position".into(), Value::from(*position));
                }
                if let Some(slice) = slice {
                    spec.insert("$slice".into(), Value::from(*slice));
                }
                if let Some(sort) = sort {
                    spec.insert("$sort".into(), sort.to_value());
                }
                Value::Object(spec)
            }
            Self::AddToSet(AddToSet::Each(values)) => {
                let mut spec = Map::new();
                spec.insert("$each".into(), Value::Array(values.clone()));
                Value::Object(spec)
            }
            Self::Pop(End::First) => Value::from(-1),
            Self::Pop(End::Last) => Value::from(1),
            Self::Pull(matcher) => matcher.to_value(),
            Self::PullAll(values) => Value::Array(values.clone()),
            Self::Bit(ops) => Value::Object(
                ops.iter()
                    .map(|(op, operand)| (op.name().to_owned(), Value::from(*operand)))
                    .collect(),
            ),
            Self::CurrentDate(DateKind::Date) => Value::Bool(true),
            Self::CurrentDate(DateKind::Timestamp) => {
                let mut spec = Map::new();
                spec.insert("$type".into(), Value::from("timestamp"));
                Value::Object(spec)
            }
        }
    }
}

/// About the length of `value`'s JSON text; without recursion.
fn json_weight(value: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        let own = match value {
            Value::Null | Value::Bool(_) => 5,
            // Up to 20 digits and a sign, or a float's shortest form.
            Value::Number(_) => 24,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                items.len() + 2
            }
            Value::Object(map) => {
                stack.extend(map.values());
                map.keys()
                    .fold(2usize, |sum, key| sum.saturating_add(key.len() + 4))
            }
        };
        total = total.saturating_add(own);
    }
    total
}

/// An `$inc` or `$mul` operand: an `i64` or a float.
fn parse_operand(value: &Value) -> Result<Number, String> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_f64() => Ok(n.clone()),
        Value::Number(_) => Err("integer does not fit in a signed 64-bit integer".into()),
        other => Err(format!("expected a number, found {}", ValueKind::of(other))),
    }
}

/// An integer given as an integer or an integral float (`2.0`), as MongoDB accepts.
pub(super) fn integer(value: &Value) -> Option<i64> {
    /// 2^63, the first float above `i64::MAX`.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    value.as_i64().or_else(|| {
        let f = value.as_f64()?;
        // In range and integral, so the cast is exact.
        (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
    })
}

const PUSH_MODIFIERS: [&str; 4] = ["$each", "$position", "$slice", "$sort"];

fn parse_push(value: &Value) -> Result<Push, String> {
    let Value::Object(spec) = value else {
        return Ok(Push::One(value.clone()));
    };
    let Some(each) = spec.get("$each") else {
        return match spec.keys().find(|k| k.starts_with('$')) {
            Some(key) if PUSH_MODIFIERS.contains(&key.as_str()) => {
                Err(format!("modifier `{key}` requires `$each`"))
            }
            Some(key) => Err(format!("unknown $push modifier `{key}`")),
            None => Ok(Push::One(value.clone())),
        };
    };
    if let Some(key) = spec.keys().find(|k| !PUSH_MODIFIERS.contains(&k.as_str())) {
        return Err(format!("unknown $push modifier `{key}`"));
    }
    let Value::Array(values) = each else {
        return Err(format!(
            "`$each` must be an array, found {}",
            ValueKind::of(each)
        ));
    };
    let int_modifier = |name: &str| {
        spec.get(name)
            .map(|v| integer(v).ok_or_else(|| format!("`{name}` must be an integer")))
            .transpose()
    };
    Ok(Push::Each {
        values: values.clone(),
        position: int_modifier("$position")?,
        slice: int_modifier("$slice")?,
        sort: spec.get("$sort").map(Sort::parse).transpose()?,
    })
}

fn parse_add_to_set(value: &Value) -> Result<AddToSet, String> {
    let Value::Object(spec) = value else {
        return Ok(AddToSet::One(value.clone()));
    };
    let Some(each) = spec.get("$each") else {
        return match spec.keys().find(|k| k.starts_with('$')) {
            Some(key) => Err(format!("unknown $addToSet modifier `{key}`")),
            None => Ok(AddToSet::One(value.clone())),
        };
    };
    if let Some(key) = spec.keys().find(|k| *k != "$each") {
        return Err(format!("unexpected field `{key}` next to `$each`"));
    }
    match each {
        Value::Array(values) => Ok(AddToSet::Each(values.clone())),
        other => Err(format!(
            "`$each` must be an array, found {}",
            ValueKind::of(other)
        )),
    }
}

impl Sort {
    fn parse(value: &Value) -> Result<Self, String> {
        const USAGE: &str = "`$sort` must be 1, -1 or an object of `field: 1 | -1`";
        match value {
            Value::Object(fields) if !fields.is_empty() => fields
                .iter()
                .map(|(field, direction)| {
                    let path = Path::parse_plain(field)
                        .map_err(|e| format!("`$sort` field `{field}`: {e}"))?;
                    Ok((path, Direction::parse(direction).ok_or(USAGE)?))
                })
                .collect::<Result<_, String>>()
                .map(Self::Fields),
            _ => Direction::parse(value)
                .map(Self::Whole)
                .ok_or_else(|| USAGE.into()),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Whole(direction) => direction.to_value(),
            Self::Fields(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(path, direction)| (path.to_string(), direction.to_value()))
                    .collect(),
            ),
        }
    }

    pub(super) fn compare(&self, a: &Value, b: &Value) -> Ordering {
        static NULL: Value = Value::Null;
        match self {
            Self::Whole(direction) => direction.apply(compare(a, b)),
            Self::Fields(fields) => fields
                .iter()
                .map(|(path, direction)| {
                    let a = path.get(a).unwrap_or(&NULL);
                    let b = path.get(b).unwrap_or(&NULL);
                    direction.apply(compare(a, b))
                })
                .find(|order| order.is_ne())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl Direction {
    fn parse(value: &Value) -> Option<Self> {
        match integer(value)? {
            1 => Some(Self::Ascending),
            -1 => Some(Self::Descending),
            _ => None,
        }
    }

    fn to_value(self) -> Value {
        Value::from(match self {
            Self::Ascending => 1,
            Self::Descending => -1,
        })
    }

    fn apply(self, order: Ordering) -> Ordering {
        match self {
            Self::Ascending => order,
            Self::Descending => order.reverse(),
        }
    }
}

impl BitOp {
    fn name(self) -> &'static str {
        match self {
            Self::And => "and",
            Self::Or => "or",
            Self::Xor => "xor",
        }
    }

    pub(super) fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            Self::And => a & b,
            Self::Or => a | b,
            Self::Xor => a ^ b,
        }
    }
}

fn parse_bit(value: &Value) -> Result<Vec<(BitOp, i64)>, String> {
    const USAGE: &str = "expected an object of `and | or | xor: integer`";
    let Value::Object(ops) = value else {
        return Err(USAGE.into());
    };
    if ops.is_empty() {
        return Err(USAGE.into());
    }
    ops.iter()
        .map(|(name, operand)| {
            let op = [BitOp::And, BitOp::Or, BitOp::Xor]
                .into_iter()
                .find(|op| op.name() == name)
                .ok_or_else(|| format!("unknown bitwise operation `{name}`"))?;
            let operand = operand
                .as_i64()
                .ok_or_else(|| format!("`{name}` needs a 64-bit integer"))?;
            Ok((op, operand))
        })
        .collect()
}

fn parse_date_kind(value: &Value) -> Option<DateKind> {
    match value {
        Value::Bool(_) => Some(DateKind::Date),
        Value::Object(spec) if spec.len() == 1 => match spec.get("$type")?.as_str()? {
            "date" => Some(DateKind::Date),
            "timestamp" => Some(DateKind::Timestamp),
            _ => None,
        },
        _ => None,
    }
}

fn parse_matcher(value: &Value) -> Result<Matcher, String> {
    let Value::Object(fields) = value else {
        return Ok(Matcher::Element(Condition::Equals(value.clone())));
    };
    if let Some(queries) = parse_queries(fields)? {
        return Ok(Matcher::Element(Condition::Query(queries)));
    }
    fields
        .iter()
        .map(|(field, condition)| {
            let path = Path::parse_plain(field).map_err(|e| format!("field `{field}`: {e}"))?;
            Ok((path, Condition::parse(condition)?))
        })
        .collect::<Result<_, String>>()
        .map(Matcher::Fields)
}

impl Condition {
    fn parse(value: &Value) -> Result<Self, String> {
        if let Value::Object(fields) = value
            && let Some(queries) = parse_queries(fields)?
        {
            return Ok(Self::Query(queries));
        }
        Ok(Self::Equals(value.clone()))
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Equals(value) => value.clone(),
            Self::Query(queries) => Value::Object(queries.iter().map(Query::to_entry).collect()),
        }
    }

    /// As a MongoDB query on the field at `segments` of `doc` (see [`any_candidate`]).
    fn matches_at(&self, doc: &Value, segments: &[String]) -> bool {
        match self {
            Self::Equals(expected) => any_candidate(doc, segments, &mut |v| equal(v, expected)),
            Self::Query(queries) => queries.iter().all(|query| query.matches_at(doc, segments)),
        }
    }
}

/// True if `test` holds for one of the values a MongoDB query on the field at `segments` of
/// `doc` looks at; a missing field is tested as `null`.
///
/// As MongoDB's path traversal: an object goes on to its field; an array goes on to its
/// element at a numeric segment and to every object element (not into nested arrays); at the
/// end of the path, an array is tested whole and element by element (one level). So
/// `{"tags": "x"}` matches `{"tags": ["x", "y"]}`, and `{"n.x": 1}` matches
/// `{"n": [{"x": 1}]}`. Recursion is bounded by twice the segments (at most
/// [`MAX_SEGMENTS`](crate::doc::MAX_SEGMENTS)): every second step consumes one.
fn any_candidate(doc: &Value, segments: &[String], test: &mut dyn FnMut(&Value) -> bool) -> bool {
    static NULL: Value = Value::Null;
    let Some((first, rest)) = segments.split_first() else {
        return test(doc) || matches!(doc, Value::Array(items) if items.iter().any(&mut *test));
    };
    match doc {
        Value::Object(map) => match map.get(first) {
            Some(child) => any_candidate(child, rest, test),
            None => test(&NULL),
        },
        Value::Array(items) => {
            let indexed = path::array_index(first).and_then(|i| items.get(i));
            let mut documents = items.iter().filter(|item| item.is_object()).peekable();
            if indexed.is_none() && documents.peek().is_none() {
                return test(&NULL);
            }
            indexed.is_some_and(|item| any_candidate(item, rest, test))
                || documents.any(|item| any_candidate(item, segments, test))
        }
        _ => test(&NULL),
    }
}

/// `Some` if every key is a query operator, `None` if none starts with `$` (or
/// there are no keys), an error for a mix or an unsupported operator.
fn parse_queries(fields: &Map<String, Value>) -> Result<Option<Vec<Query>>, String> {
    let operators = fields.keys().filter(|k| k.starts_with('$')).count();
    if operators == 0 {
        return Ok(None);
    }
    if operators != fields.len() {
        return Err("cannot mix query operators and fields in one condition".into());
    }
    fields
        .iter()
        .map(|(name, argument)| Query::parse(name, argument))
        .collect::<Result<_, _>>()
        .map(Some)
}

impl Query {
    fn parse(name: &str, argument: &Value) -> Result<Self, String> {
        let list = || match argument {
            Value::Array(values) => Ok(sorted_set(values)),
            other => Err(format!(
                "`{name}` needs an array, found {}",
                ValueKind::of(other)
            )),
        };
        let value = argument.clone();
        Ok(match name {
            "$eq" => Self::Eq(value),
            "$ne" => Self::Ne(value),
            "$gt" => Self::Gt(value),
            "$gte" => Self::Gte(value),
            "$lt" => Self::Lt(value),
            "$lte" => Self::Lte(value),
            "$in" => Self::In(list()?),
            "$nin" => Self::Nin(list()?),
            _ => return Err(format!("unsupported query operator `{name}`")),
        })
    }

    fn to_entry(&self) -> (String, Value) {
        let (name, value) = match self {
            Self::Eq(v) => ("$eq", v.clone()),
            Self::Ne(v) => ("$ne", v.clone()),
            Self::Gt(v) => ("$gt", v.clone()),
            Self::Gte(v) => ("$gte", v.clone()),
            Self::Lt(v) => ("$lt", v.clone()),
            Self::Lte(v) => ("$lte", v.clone()),
            Self::In(vs) => ("$in", Value::Array(vs.clone())),
            Self::Nin(vs) => ("$nin", Value::Array(vs.clone())),
        };
        (name.to_owned(), value)
    }

    /// As a MongoDB query on the field at `segments` of `doc`: a positive operator holds if
    /// it holds for one of the [`any_candidate`] values, `$ne` and `$nin` if `$eq` and `$in`
    /// hold for none.
    fn matches_at(&self, doc: &Value, segments: &[String]) -> bool {
        let found = any_candidate(doc, segments, &mut |value| self.holds(value));
        if matches!(self, Self::Ne(_) | Self::Nin(_)) {
            !found
        } else {
            found
        }
    }

    /// The operator on one value, with `$ne` and `$nin` as `$eq` and `$in`.
    fn holds(&self, value: &Value) -> bool {
        // Ordering operators only compare within one type class, as MongoDB.
        let ordered = |bound: &Value, accept: fn(Ordering) -> bool| {
            type_rank(value) == type_rank(bound) && accept(compare(value, bound))
        };
        match self {
            Self::Eq(v) | Self::Ne(v) => equal(value, v),
            Self::Gt(v) => ordered(v, Ordering::is_gt),
            Self::Gte(v) => ordered(v, Ordering::is_ge),
            Self::Lt(v) => ordered(v, Ordering::is_lt),
            Self::Lte(v) => ordered(v, Ordering::is_le),
            Self::In(vs) | Self::Nin(vs) => contains(vs, value),
        }
    }
}

impl Matcher {
    fn to_value(&self) -> Value {
        match self {
            Self::Element(condition) => condition.to_value(),
            Self::Fields(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(path, condition)| (path.to_string(), condition.to_value()))
                    .collect(),
            ),
        }
    }

    /// MongoDB's three `$pull` matchers (`pull_node.cpp`): a plain value must equal the
    /// element exactly; query operators query the element as a field (so an array element
    /// matches if it or one of its elements does); fields query an object element.
    pub(super) fn matches(&self, element: &Value) -> bool {
        match self {
            Self::Element(Condition::Equals(expected)) => equal(element, expected),
            Self::Element(condition) => condition.matches_at(element, &[]),
            Self::Fields(fields) => {
                element.is_object()
                    && fields
                        .iter()
                        .all(|(path, condition)| condition.matches_at(element, path.parts()))
            }
        }
    }
}

pub(super) fn parse_path(op: Operator, raw: &str) -> Result<Path, UpdateError> {
    Path::parse(raw).map_err(|reason| UpdateError::InvalidPath {
        op,
        path: raw.to_owned(),
        reason,
    })
}
