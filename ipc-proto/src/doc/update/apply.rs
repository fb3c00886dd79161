//! Applying parsed entries to a document: the [`Applier`], arithmetic and dates.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Number, Value};

use super::super::path::{self, Path};
use super::error::{Operator, UpdateError, ValueKind};
use super::order::{Ordered, compare, contains};
use super::parse::{Action, AddToSet, DateKind, End, Entry, Push};

/// The most `null`s one [`Update::apply`](super::Update::apply) may add to pad arrays.
///
/// Writing `a.1000000` would otherwise let a single small patch from a peer
/// allocate a million elements.
pub const MAX_PADDING: usize = 65_536;

/// The most one [`Update::apply`](super::Update::apply) may write through `$[]`, in bytes of
/// the values it copies (about their JSON text) plus one per element it updates.
///
/// `{"$set": {"a.$[]": <60 KiB>}}` on an array of 100,000 elements would otherwise copy
/// six gigabytes before the document's own size limit could be checked.
///
/// Crate-private until `doc` re-exports it; its value is stated in the docs of
/// [`UpdateError::FanOutTooLarge`].
pub(crate) const MAX_FAN_OUT: usize = 4 << 20;

/// What [`Update::apply`](super::Update::apply) needs from the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyContext {
    /// The current time, in milliseconds since the Unix epoch (for `$currentDate`).
    pub now_unix_ms: u64,
}

// ---------------------------------------------------------------------------
// Applying

/// State of one [`Update::apply`](super::Update::apply) call.
pub(super) struct Applier {
    pub(super) now_unix_ms: u64,
    pub(super) padding_left: usize,
    pub(super) fan_out_left: usize,
}

impl Applier {
    pub(super) fn apply(&mut self, root: &mut Value, entry: &Entry) -> Result<(), UpdateError> {
        if !entry.path.has_all_positional() {
            return self.apply_at(root, entry.path.parts(), entry);
        }
        let cost = entry.action.weight().saturating_add(1);
        self.expand(root, entry.path.parts(), entry, cost, &mut Vec::new())
    }

    /// Applies `entry` at `rest` below `base`, once for each element every `$[]` in `rest`
    /// stands for; `indexes` are those of the elements the earlier `$[]` stood for.
    ///
    /// Recurses once per `$[]`, so at most [`MAX_SEGMENTS`](crate::doc::MAX_SEGMENTS) deep.
    fn expand(
        &mut self,
        base: &mut Value,
        rest: &[String],
        entry: &Entry,
        cost: usize,
        indexes: &mut Vec<usize>,
    ) -> Result<(), UpdateError> {
        let op = entry.action.operator();
        let Some(at) = rest.iter().position(|s| s == path::ALL_POSITIONAL) else {
            if cost > self.fan_out_left {
                return Err(UpdateError::FanOutTooLarge {
                    op,
                    path: entry.path.clone(),
                    max: MAX_FAN_OUT,
                });
            }
            self.fan_out_left -= cost;
            return self
                .apply_at(base, rest, entry)
                .map_err(|e| e.at(entry.path.resolved(indexes, entry.path.parts().len())));
        };
        let array = |indexes: &[usize]| {
            let done = entry.path.parts().len() - rest.len();
            entry.path.resolved(indexes, done + at)
        };
        // As MongoDB, the array must exist: `$[]` creates nothing.
        match path::get_mut_in(base, &rest[..at]) {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    indexes.push(i);
                    self.expand(item, &rest[at + 1..], entry, cost, indexes)?;
                    indexes.pop();
                }
                Ok(())
            }
            Some(other) => Err(UpdateError::NotAnArray {
                op,
                path: entry.path.clone(),
                array: array(indexes),
                found: ValueKind::of(other),
            }),
            None => Err(UpdateError::ArrayPathMissing {
                op,
                path: entry.path.clone(),
                array: array(indexes),
            }),
        }
    }

    /// Applies `entry`'s action to the value at `segments` below `root` (`$[]`-free); `root`
    /// is an array element when `entry` has `$[]`, and is itself the target if `segments`
    /// is empty.
    fn apply_at(
        &mut self,
        root: &mut Value,
        segments: &[String],
        entry: &Entry,
    ) -> Result<(), UpdateError> {
        let Entry { path, action } = entry;
        let op = action.operator();
        match action {
            Action::Set(value) => *self.slot(root, op, path, segments)?.0 = value.clone(),
            Action::Unset => unset(root, segments),
            Action::Inc(operand) => {
                let (target, existed) = self.slot(root, op, path, segments)?;
                *target = if existed {
                    arithmetic(op, path, target, operand, i64::checked_add, |a, b| a + b)?
                } else {
                    Value::Number(operand.clone())
                };
            }
            Action::Mul(operand) => {
                let (target, existed) = self.slot(root, op, path, segments)?;
                *target = if existed {
                    arithmetic(op, path, target, operand, i64::checked_mul, |a, b| a * b)?
                } else if operand.is_f64() {
                    Value::from(0.0)
                } else {
                    Value::from(0)
                };
            }
            Action::Min(value) | Action::Max(value) => {
                let wanted = if op == Operator::Min {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                let (target, existed) = self.slot(root, op, path, segments)?;
                if !existed || compare(value, target) == wanted {
                    *target = value.clone();
                }
            }
            Action::Rename(to) => self.rename(root, path, to)?,
            Action::Push(push) => push.apply(self.array_slot(root, op, path, segments)?),
            Action::AddToSet(add) => {
                let items = self.array_slot(root, op, path, segments)?;
                match add {
                    AddToSet::One(value) => add_to_set(items, std::slice::from_ref(value)),
                    AddToSet::Each(values) => add_to_set(items, values),
                }
            }
            Action::Pop(end) => {
                if let Some(items) = existing_array(root, op, path, segments)? {
                    match end {
                        End::First if !items.is_empty() => {
                            items.remove(0);
                        }
                        End::First => {}
                        End::Last => {
                            items.pop();
                        }
                    }
                }
            }
            Action::Pull(matcher) => {
                if let Some(items) = existing_array(root, op, path, segments)? {
                    items.retain(|item| !matcher.matches(item));
                }
            }
            Action::PullAll(values) => {
                if let Some(items) = existing_array(root, op, path, segments)? {
                    items.retain(|item| !contains(values, item));
                }
            }
            Action::Bit(ops) => {
                let (target, existed) = self.slot(root, op, path, segments)?;
                let start = match (existed, target.as_i64()) {
                    (false, _) => 0,
                    (true, Some(current)) => current,
                    (true, None) if target.is_u64() => {
                        return Err(UpdateError::IntegerOverflow {
                            op,
                            path: path.clone(),
                        });
                    }
                    (true, None) => {
                        return Err(UpdateError::WrongType {
                            op,
                            path: path.clone(),
                            found: ValueKind::of(target),
                        });
                    }
                };
                let result = ops
                    .iter()
                    .fold(start, |acc, (bit, operand)| bit.apply(acc, *operand));
                *target = Value::from(result);
            }
            Action::CurrentDate(kind) => {
                *self.slot(root, op, path, segments)?.0 = match kind {
                    DateKind::Date => Value::String(rfc3339_millis(self.now_unix_ms)),
                    DateKind::Timestamp => Value::from(self.now_unix_ms),
                };
            }
        }
        Ok(())
    }

    /// The value at `segments` below `root`, created (as `null`, with missing intermediate
    /// objects and array padding) if missing; and whether it existed. `root` itself if
    /// `segments` is empty. Errors name `path`.
    fn slot<'v>(
        &mut self,
        root: &'v mut Value,
        op: Operator,
        path: &Path,
        segments: &[String],
    ) -> Result<(&'v mut Value, bool), UpdateError> {
        let Some((last, parents)) = segments.split_last() else {
            return Ok((root, true));
        };
        let mut current = root;
        for segment in parents {
            current = self
                .child(current, op, path, segment, Value::Object(Map::new()))?
                .0;
        }
        self.child(current, op, path, last, Value::Null)
    }

    /// The child `segment` of `parent`, created as `fill` if missing.
    fn child<'v>(
        &mut self,
        parent: &'v mut Value,
        op: Operator,
        path: &Path,
        segment: &str,
        fill: Value,
    ) -> Result<(&'v mut Value, bool), UpdateError> {
        let cannot_create = |parent: ValueKind| UpdateError::CannotCreateField {
            op,
            path: path.clone(),
            field: segment.to_owned(),
            parent,
        };
        match parent {
            Value::Object(map) => {
                let existed = map.contains_key(segment);
                Ok((map.entry(segment).or_insert(fill), existed))
            }
            Value::Array(items) => {
                let Some(index) = path::array_index(segment) else {
                    return Err(cannot_create(ValueKind::Array));
                };
                let existed = index < items.len();
                if !existed {
                    let needed = index - items.len();
                    if needed > self.padding_left {
                        return Err(UpdateError::PaddingTooLarge {
                            op,
                            path: path.clone(),
                            needed,
                            max: MAX_PADDING,
                        });
                    }
                    self.padding_left -= needed;
                    items.resize(index, Value::Null);
                    items.push(fill);
                }
                // In bounds: checked, or padded up to and pushed at `index`.
                Ok((&mut items[index], existed))
            }
            other => Err(cannot_create(ValueKind::of(other))),
        }
    }

    /// The array at `segments`, created empty if missing; an error if not an array.
    fn array_slot<'v>(
        &mut self,
        root: &'v mut Value,
        op: Operator,
        path: &Path,
        segments: &[String],
    ) -> Result<&'v mut Vec<Value>, UpdateError> {
        let (target, existed) = self.slot(root, op, path, segments)?;
        if !existed {
            *target = Value::Array(Vec::new());
        }
        as_array(op, path, target)
    }

    fn rename(&mut self, root: &mut Value, from: &Path, to: &Path) -> Result<(), UpdateError> {
        // MongoDB's order: a source path that cannot be walked is an error, a missing source
        // changes nothing, an existing one inside an array is an error.
        match locate(root, from) {
            Err((field, found)) => {
                return Err(UpdateError::PathNotViable {
                    op: Operator::Rename,
                    path: from.clone(),
                    field,
                    found,
                });
            }
            Ok(None) => return Ok(()),
            Ok(Some(true)) => return Err(UpdateError::RenameThroughArray { path: from.clone() }),
            Ok(Some(false)) => {}
        }
        let (parents, last) = from.split_last();
        // Not through an array, so the parent is an object or there is no source.
        let Some(Value::Object(parent)) = path::get_mut_in(root, parents) else {
            return Ok(());
        };
        let Some(value) = parent.remove(last) else {
            return Ok(());
        };
        if through_array(root, to) {
            return Err(UpdateError::RenameThroughArray { path: to.clone() });
        }
        *self.slot(root, Operator::Rename, to, to.parts())?.0 = value;
        Ok(())
    }
}

/// Removes the field at `segments`, or nulls it if it is an array element (`root` itself if
/// `segments` is empty: an element reached through `$[]`); no-op if missing.
pub(super) fn unset(root: &mut Value, segments: &[String]) {
    let Some((last, parents)) = segments.split_last() else {
        *root = Value::Null;
        return;
    };
    match path::get_mut_in(root, parents) {
        Some(Value::Object(map)) => {
            map.remove(last);
        }
        Some(Value::Array(items)) => {
            if let Some(item) = path::array_index(last).and_then(|i| items.get_mut(i)) {
                *item = Value::Null;
            }
        }
        _ => {}
    }
}

/// True if an array lies on the way to `path` (its parent included, the value itself not).
/// Walks `path` as MongoDB's `$rename` does: `Ok(None)` when nothing is there,
/// `Ok(Some(through_an_array))` when something is or an array is indexed by a name (MongoDB:
/// "the source field cannot be an array element"), and the part and what it met when a part
/// cannot traverse the value before it (a scalar, null).
fn locate(root: &Value, path: &Path) -> Result<Option<bool>, (String, ValueKind)> {
    let mut current = root;
    let mut through_array = false;
    for segment in path.segments() {
        let next = match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => {
                through_array = true;
                let Some(i) = path::array_index(segment) else {
                    return Ok(Some(true));
                };
                items.get(i)
            }
            other => return Err((segment.to_owned(), ValueKind::of(other))),
        };
        match next {
            Some(child) => current = child,
            None => return Ok(None),
        }
    }
    Ok(Some(through_array))
}

fn through_array(root: &Value, path: &Path) -> bool {
    let mut current = root;
    for segment in path.segments() {
        match current {
            Value::Array(_) => return true,
            Value::Object(map) => match map.get(segment) {
                Some(child) => current = child,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

/// The array at `segments` if there is a value there; an error (naming `path`) if it is not
/// an array.
fn existing_array<'v>(
    root: &'v mut Value,
    op: Operator,
    path: &Path,
    segments: &[String],
) -> Result<Option<&'v mut Vec<Value>>, UpdateError> {
    path::get_mut_in(root, segments)
        .map(|value| as_array(op, path, value))
        .transpose()
}

pub(super) fn as_array<'v>(
    op: Operator,
    path: &Path,
    value: &'v mut Value,
) -> Result<&'v mut Vec<Value>, UpdateError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(UpdateError::WrongType {
            op,
            path: path.clone(),
            found: ValueKind::of(other),
        }),
    }
}

impl Push {
    /// Inserts at `$position` (or appends), then sorts, then slices, as MongoDB.
    fn apply(&self, items: &mut Vec<Value>) {
        match self {
            Self::One(value) => items.push(value.clone()),
            Self::Each {
                values,
                position,
                slice,
                sort,
            } => {
                let at = position.map_or(items.len(), |p| position_index(p, items.len()));
                items.splice(at..at, values.iter().cloned());
                if let Some(sort) = sort {
                    items.sort_by(|a, b| sort.compare(a, b));
                }
                if let Some(n) = *slice {
                    let keep = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
                    if n >= 0 {
                        items.truncate(keep);
                    } else {
                        items.drain(..items.len().saturating_sub(keep));
                    }
                }
            }
        }
    }
}

/// Where `$position` inserts: from the start, or from the end when negative; clamped.
fn position_index(position: i64, len: usize) -> usize {
    let distance = usize::try_from(position.unsigned_abs()).unwrap_or(usize::MAX);
    if position >= 0 {
        distance.min(len)
    } else {
        len.saturating_sub(distance)
    }
}

/// Appends each value not yet equal to an element (or to an earlier value).
fn add_to_set(items: &mut Vec<Value>, values: &[Value]) {
    let mut seen: BTreeSet<Ordered<'_>> = items.iter().map(Ordered).collect();
    let added: Vec<Value> = values
        .iter()
        .filter(|value| seen.insert(Ordered(value)))
        .cloned()
        .collect();
    drop(seen);
    items.extend(added);
}

// ---------------------------------------------------------------------------
// Numbers

/// A JSON number for arithmetic.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    /// `None` for an integer outside `i64`.
    fn of(n: &Number) -> Option<Self> {
        if let Some(i) = n.as_i64() {
            Some(Self::Int(i))
        } else if n.is_f64() {
            n.as_f64().map(Self::Float)
        } else {
            None
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
}

/// `target op operand`: integer if both are integers (overflow is an error), else float.
pub(super) fn arithmetic(
    op: Operator,
    path: &Path,
    target: &Value,
    operand: &Number,
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, UpdateError> {
    let Value::Number(current) = target else {
        return Err(UpdateError::WrongType {
            op,
            path: path.clone(),
            found: ValueKind::of(target),
        });
    };
    let overflow = || UpdateError::IntegerOverflow {
        op,
        path: path.clone(),
    };
    match (
        Num::of(current).ok_or_else(overflow)?,
        Num::of(operand).ok_or_else(overflow)?,
    ) {
        (Num::Int(a), Num::Int(b)) => int(a, b).map(Value::from).ok_or_else(overflow),
        (a, b) => Number::from_f64(float(a.as_f64(), b.as_f64()))
            .map(Value::Number)
            .ok_or_else(|| UpdateError::NonFinite {
                op,
                path: path.clone(),
            }),
    }
}

// ---------------------------------------------------------------------------
// Dates

/// `unix_ms` as RFC 3339 UTC with milliseconds, e.g. `2026-11-22T04:42:00.123Z`.
pub(super) fn rfc3339_millis(unix_ms: u64) -> String {
    const DAY_MS: u64 = 86_400_000;
    let (year, month, day) = civil_from_days(unix_ms / DAY_MS);
    let ms = unix_ms % DAY_MS;
    let (hour, minute, second, milli) = (
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// (year, month, day) of a day count since 1970-01-01, in the proleptic Gregorian calendar.
///
/// Howard Hinnant's `civil_from_days`, with unsigned arithmetic as days are never negative.
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097; // 400-year eras
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}
