//! MongoDB update operators over a JSON document: see [`Update`].
//!
//! [`Update`] (this file) parses a spec and applies it; the parts live beside it:
//! `error` (operators, value kinds, errors), `parse` (validated arguments), `apply` (writing
//! them into a document), `order` (MongoDB's BSON comparison of JSON values).

mod apply;
mod error;
mod order;
mod parse;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::path::{self, Path};

pub(crate) use apply::MAX_FAN_OUT;
pub use apply::{ApplyContext, MAX_PADDING};
pub use error::{Operator, UpdateError, ValueKind};

use apply::Applier;
use parse::{Action, Entry, parse_path};

/// A parsed, validated update document, e.g. `{"$inc": {"n": 1}, "$set": {"a.b": true}}`.
///
/// An [`Update`] is parsed once from a spec such as
/// `{"$inc": {"n": 1}, "$set": {"a.b": true}}`, which validates its structure,
/// and then applied to documents with [`Update::apply`]. Application is
/// all-or-nothing: on `Err` the document is unchanged. It is pure: the only
/// input besides the document is the [`ApplyContext`], which carries the time.
///
/// ```
/// use ipc_proto::doc::{ApplyContext, Update};
/// use serde_json::json;
///
/// let update = Update::parse(&json!({
///     "$inc": {"visits": 1},
///     "$set": {"owner.name": "ada"},
///     "$push": {"log": {"$each": ["a", "b"], "$slice": -3}},
/// }))?;
/// let mut doc = json!({"visits": 41, "log": ["x", "y"]});
/// update.apply(&mut doc, &ApplyContext { now_unix_ms: 0 })?;
/// assert_eq!(doc, json!({"visits": 42, "owner": {"name": "ada"}, "log": ["y", "a", "b"]}));
///
/// // What the update writes, for conflict checks and observers.
/// assert!(update.touches(&"owner.name.first".parse()?));
/// assert!(!update.touches(&"other".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Semantics
///
/// The operators follow MongoDB's documented behaviour, with paths as in
/// [`Path`]. Missing intermediate objects are created; creating a field inside
/// a scalar, `null`, or an array (with a non-index segment) is
/// [`UpdateError::CannotCreateField`]. Writing past the end of an array pads it
/// with `null`, at most [`MAX_PADDING`] elements per [`Update::apply`].
///
/// | Operator | Argument | `$[]` in its path |
/// |---|---|---|
/// | `$set`, `$unset`, `$inc`, `$mul`, `$min`, `$max` | a value (a number for `$inc` and `$mul`) | yes |
/// | `$push` | a value, or `$each` with `$position`, `$slice`, `$sort` | yes |
/// | `$addToSet` | a value, or `$each` | yes |
/// | `$pop` | `1` or `-1` | yes |
/// | `$pull` | a value, or a condition (below) | yes |
/// | `$pullAll` | an array | yes |
/// | `$bit` | `{and \| or \| xor: integer}` | yes |
/// | `$currentDate` | `true` or `{"$type": "date" \| "timestamp"}` | yes |
/// | `$rename` | a target path | no, as MongoDB ("may not be dynamic") |
///
/// Not supported: `$setOnInsert` (no upserts), the positional `$` and the
/// filtered `$[<id>]` (no query, no `arrayFilters`), replacement documents and
/// pipelines. An update must have at least one operator: `{}` is
/// [`UpdateError::NoOperators`]; an empty operator such as `{"$set": {}}` is a
/// no-op, as in MongoDB 5.0 and later.
///
/// ## The all-positional `$[]`
///
/// A path segment `$[]` stands for every element of the array before it, as in
/// MongoDB: `{"$inc": {"a.$[]": 1}}` turns `{"a": [1, 2]}` into `{"a": [2, 3]}`,
/// `{"$set": {"a.$[].b": 0}}` sets `b` in every element (creating it where
/// missing), and `a.$[].b.$[]` reaches into nested arrays. The array must exist:
/// `$[]` on a missing path is [`UpdateError::ArrayPathMissing`] ("the path `a`
/// must exist in the document in order to apply array updates"), on anything
/// else [`UpdateError::NotAnArray`], for every operator, `$unset` included; `$[]`
/// never creates an array, and an empty array is left alone. An error inside an
/// element names it (`a.1.b`). `$[]` cannot start a path. What one update
/// writes through `$[]` is bounded ([`UpdateError::FanOutTooLarge`]).
///
/// # Conflicts
///
/// The entries are kept sorted by path and applied in that order. As in
/// MongoDB, no two entries of an update may write paths of which one is a
/// prefix of the other, nor paths that part at a `$[]` and another segment
/// (`a.$[].b` with `a.0.c` or `a.x`: MongoDB's update tree cannot hold both an
/// array and an object node at `a`), else [`UpdateError::ConflictingPaths`]; so
/// the order only decides which error is reported first. [`Update::touches`]
/// (and the host's conflict log) takes `$[]` as any segment: `a.$[].b` touches
/// `a`, `a.3` and `a.3.b`, not `a.3.c`.
///
/// # `$pull` conditions
///
/// As MongoDB's three matchers (`pull_node.cpp`): a non-object value removes
/// the elements equal to it (an array only an equal array); an object of query
/// operators (`$eq $ne $gt $gte $lt $lte $in $nin`) queries each element as a
/// field; an object of fields removes the object elements whose fields match.
/// Field queries have MongoDB's query semantics: an array field matches if it
/// or one of its elements does (`{"tags": "x"}` removes `{"tags": ["x", "y"]}`;
/// `{"tags": ["x", "y"]}` removes it too, and `{"tags": [["x", "y"], "z"]}`,
/// but not `{"tags": ["y", "x"]}`), each operator
/// may be met by another element, `$ne` and `$nin` hold when no element is
/// equal or listed, dotted paths go on into every object element of an array
/// and to indexed elements, and a missing field is `null`. So an operator
/// condition on an element that is an array (`{"$gte": 6}` on `[1, 7]`)
/// matches when one of its elements does.
///
/// # Comparison
///
/// Values are compared in MongoDB's BSON order: null < numbers < strings <
/// objects < arrays < booleans. Numbers compare by value across integers and
/// floats (`1 == 1.0`); objects compare their fields sorted by key, so key
/// order never matters. Integers are `i64`: arithmetic that leaves that range
/// fails with [`UpdateError::IntegerOverflow`] instead of wrapping.
///
/// # JSON mapping and deviations from MongoDB
///
/// - JSON has no date type. `$currentDate` writes `true` and
///   `{"$type": "date"}` as an RFC 3339 UTC string with milliseconds
///   (`"2026-11-22T04:42:00.123Z"`), and `{"$type": "timestamp"}` as integer
///   milliseconds since the Unix epoch. Like MongoDB, `false` also means "date".
/// - `{}` is refused (MongoDB would replace the document by an empty one). An
///   update without entries serializes as `{"$set": {}}` so that every
///   [`Update`] round-trips through [`Update::to_value`].
/// - `$rename` follows MongoDB's order: a source path through a scalar or
///   `null` is [`UpdateError::PathNotViable`]; a missing source, even under an
///   array, changes nothing; an existing source or a target inside an array is
///   [`UpdateError::RenameThroughArray`].
/// - `$pull` supports only the query operators listed above (no `$elemMatch`,
///   `$regex`, `$exists`, `$not`, `$and`..), and no collation. Dotted `$pull`
///   fields and `$push` `$sort` fields cannot hold `$[]`.
/// - `$push`'s `$sort` with several fields compares them in the map's
///   iteration order (sorted by key with serde_json's default features).
/// - An object with `$`-prefixed keys but no `$each` is rejected by `$push` and
///   `$addToSet` (MongoDB would try to store it and then reject the key).
/// - Array indexes must be canonical (`1`, not `01`), see [`Path`].
/// - Values are stored as given: keys inside them may start with `$` or
///   contain dots (MongoDB's storage validation would refuse some of them).
/// - Integers outside `i64` (possible in JSON) are rejected by `$inc`, `$mul`
///   and `$bit`, as arguments and as targets.
/// - The bound on writes through `$[]` is ours; MongoDB has only its 16 MiB
///   document limit.
///
/// All-or-nothing is implemented by applying to a clone of the document and
/// swapping it in on success ([`Update::applied`] returns the clone): shared
/// documents are small.
///
/// # Bounds
///
/// An update comes from a peer: paths have at most [`MAX_SEGMENTS`](super::MAX_SEGMENTS)
/// segments and [`MAX_PATH_BYTES`](super::MAX_PATH_BYTES) bytes, array padding is
/// bounded per apply, integer arithmetic is checked, and no operator allocates more
/// than its arguments and the document, except through `$[]`, which copies an
/// argument once per element, at most 4 MiB in all per apply
/// ([`UpdateError::FanOutTooLarge`]). Recursion follows path segments, so it is at
/// most about twice [`MAX_SEGMENTS`](super::MAX_SEGMENTS) deep. The document's own
/// size and depth are bounded by its host ([`DocLimits`](super::DocLimits),
/// [`MAX_DEPTH`](super::MAX_DEPTH)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Sorted by path; no two entries (or rename targets) overlap.
    entries: Vec<Entry>,
}

impl Update {
    /// Parses and validates an update spec; checks structure only, not any document.
    ///
    /// Rejects non-objects, `{}`, replacement documents, unknown operators, invalid
    /// paths and arguments, and two entries writing overlapping paths.
    pub fn parse(spec: &Value) -> Result<Self, UpdateError> {
        let Value::Object(operators) = spec else {
            return Err(UpdateError::NotAnObject {
                found: ValueKind::of(spec),
            });
        };
        if operators.is_empty() {
            return Err(UpdateError::NoOperators);
        }
        let mut entries = Vec::new();
        for (name, argument) in operators {
            let Some(op) = Operator::from_name(name) else {
                return Err(if name.starts_with('$') {
                    UpdateError::UnknownOperator { op: name.clone() }
                } else {
                    UpdateError::NotAnOperator { key: name.clone() }
                });
            };
            let Value::Object(fields) = argument else {
                return Err(UpdateError::ArgumentNotObject {
                    op,
                    found: ValueKind::of(argument),
                });
            };
            for (raw, value) in fields {
                let path = parse_path(op, raw)?;
                let action = Action::parse(op, &path, value)?;
                entries.push(Entry { path, action });
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let update = Self { entries };
        update.check_conflicts()?;
        Ok(update)
    }

    /// Every path the update writes; for `$rename` both source and target.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.written().map(|(path, _)| path)
    }

    /// True if any path the update writes overlaps `other`.
    pub fn touches(&self, other: &Path) -> bool {
        self.paths().any(|path| path.overlaps(other))
    }

    /// Applies every entry to `doc`, or, on `Err`, leaves `doc` unchanged.
    ///
    /// Works on a clone of `doc` that replaces it on success.
    pub fn apply(&self, doc: &mut Value, ctx: &ApplyContext) -> Result<(), UpdateError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        *doc = self.applied(doc, ctx)?;
        Ok(())
    }

    /// The document `doc` would become: [`apply`](Self::apply) without touching `doc`, so
    /// that a caller can check the result (its size, say) before keeping it.
    pub fn applied(&self, doc: &Value, ctx: &ApplyContext) -> Result<Value, UpdateError> {
        let mut scratch = doc.clone();
        let mut applier = Applier {
            now_unix_ms: ctx.now_unix_ms,
            padding_left: MAX_PADDING,
            fan_out_left: MAX_FAN_OUT,
        };
        for entry in &self.entries {
            applier.apply(&mut scratch, entry)?;
        }
        Ok(scratch)
    }

    /// The canonical spec: `Update::parse(&u.to_value()) == Ok(u)`.
    ///
    /// `$unset` values become `""`, `$currentDate` dates `true`, and
    /// `$pullAll`, `$in` and `$nin` lists are sorted and deduplicated. An update
    /// without entries is `{"$set": {}}`.
    pub fn to_value(&self) -> Value {
        if self.entries.is_empty() {
            let mut spec = Map::new();
            spec.insert(Operator::Set.name().to_owned(), Value::Object(Map::new()));
            return Value::Object(spec);
        }
        let mut groups: BTreeMap<&'static str, Map<String, Value>> = BTreeMap::new();
        for entry in &self.entries {
            groups
                .entry(entry.action.operator().name())
                .or_default()
                .insert(entry.path.to_string(), entry.action.to_value());
        }
        Value::Object(
            groups
                .into_iter()
                .map(|(name, fields)| (name.to_owned(), Value::Object(fields)))
                .collect(),
        )
    }

    /// Every written path with its operator, in entry order.
    fn written(&self) -> impl Iterator<Item = (&Path, Operator)> {
        self.entries.iter().flat_map(|entry| {
            let op = entry.action.operator();
            let target = match &entry.action {
                Action::Rename(to) => Some((to, op)),
                _ => None,
            };
            std::iter::once((&entry.path, op)).chain(target)
        })
    }

    /// MongoDB's rule: no written path is a prefix of another, and no two written paths part
    /// at a `$[]` and another segment (MongoDB's update tree holds, at each path, either an
    /// array node, whose children are `$[]`, or an object node, whose children are fields).
    fn check_conflicts(&self) -> Result<(), UpdateError> {
        let conflict = |a: (&Path, Operator), b: (&Path, Operator)| {
            let ((first, first_op), (second, second_op)) = if a.0 <= b.0 { (a, b) } else { (b, a) };
            UpdateError::ConflictingPaths {
                first_op,
                first: first.clone(),
                second_op,
                second: second.clone(),
            }
        };
        let mut written: Vec<_> = self.written().collect();
        // Sorted, a path comes right before the paths it is a prefix of, so
        // any prefix shows up between neighbours.
        written.sort_by(|a, b| a.0.cmp(b.0));
        for pair in written.windows(2) {
            if let [first, second] = pair
                && first.0.is_prefix_of(second.0)
            {
                return Err(conflict(*first, *second));
            }
        }
        // The paths sharing the segments before a `$[]` form a run of the sorted list, in the
        // order of their next segment: if any of them has another segment there, the first or
        // the last of the run does. (No path of the run ends there: it would be a prefix.)
        for &(path, op) in &written {
            let parts = path.parts();
            for (at, _) in parts
                .iter()
                .enumerate()
                .filter(|(_, s)| *s == path::ALL_POSITIONAL)
            {
                let prefix = &parts[..at];
                let start = written.partition_point(|(p, _)| head(p, at) < prefix);
                let end = written.partition_point(|(p, _)| head(p, at) <= prefix);
                for &(other, other_op) in [
                    written.get(start),
                    end.checked_sub(1).and_then(|i| written.get(i)),
                ]
                .into_iter()
                .flatten()
                {
                    if other
                        .parts()
                        .get(at)
                        .is_some_and(|s| s != path::ALL_POSITIONAL)
                    {
                        return Err(conflict((path, op), (other, other_op)));
                    }
                }
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Update {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Update {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = Value::deserialize(deserializer)?;
        Self::parse(&spec).map_err(serde::de::Error::custom)
    }
}

/// The first `len` segments of `path`, or all of them.
fn head(path: &Path, len: usize) -> &[String] {
    &path.parts()[..path.parts().len().min(len)]
}
