//! MongoDB update operators over a JSON document: see [`Update`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Number, Value};

use super::path::{self, Path, PathError};

/// The most `null`s one [`Update::apply`] may add to pad arrays.
///
/// Writing `a.1000000` would otherwise let a single small patch from a peer
/// allocate a million elements.
pub const MAX_PADDING: usize = 65_536;

/// The most one [`Update::apply`] may write through `$[]`, in bytes of the values it copies
/// (about their JSON text) plus one per element it updates.
///
/// `{"$set": {"a.$[]": <60 KiB>}}` on an array of 100,000 elements would otherwise copy
/// six gigabytes before the document's own size limit could be checked.
///
/// Crate-private until `doc` re-exports it; its value is stated in the docs of
/// [`UpdateError::FanOutTooLarge`].
pub(crate) const MAX_FAN_OUT: usize = 4 << 20;

/// What [`Update::apply`] needs from the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyContext {
    /// The current time, in milliseconds since the Unix epoch (for `$currentDate`).
    pub now_unix_ms: u64,
}

/// An update operator, such as `$set`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Operator {
    /// `$set`: writes a value.
    Set,
    /// `$unset`: removes a field (or nulls an array element).
    Unset,
    /// `$inc`: adds to a number.
    Inc,
    /// `$mul`: multiplies a number.
    Mul,
    /// `$min`: lowers a value.
    Min,
    /// `$max`: raises a value.
    Max,
    /// `$rename`: moves a field.
    Rename,
    /// `$push`: appends or inserts into an array.
    Push,
    /// `$addToSet`: appends to an array unless already present.
    AddToSet,
    /// `$pop`: removes the first or last element of an array.
    Pop,
    /// `$pull`: removes the array elements matching a condition.
    Pull,
    /// `$pullAll`: removes the array elements equal to any listed value.
    PullAll,
    /// `$bit`: bitwise and/or/xor on an integer.
    Bit,
    /// `$currentDate`: writes the current time.
    CurrentDate,
}

impl Operator {
    const ALL: [Self; 14] = [
        Self::Set,
        Self::Unset,
        Self::Inc,
        Self::Mul,
        Self::Min,
        Self::Max,
        Self::Rename,
        Self::Push,
        Self::AddToSet,
        Self::Pop,
        Self::Pull,
        Self::PullAll,
        Self::Bit,
        Self::CurrentDate,
    ];

    /// The operator as written in a spec, e.g. `"$set"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Set => "$set",
            Self::Unset => "$unset",
            Self::Inc => "$inc",
            Self::Mul => "$mul",
            Self::Min => "$min",
            Self::Max => "$max",
            Self::Rename => "$rename",
            Self::Push => "$push",
            Self::AddToSet => "$addToSet",
            Self::Pop => "$pop",
            Self::Pull => "$pull",
            Self::PullAll => "$pullAll",
            Self::Bit => "$bit",
            Self::CurrentDate => "$currentDate",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// What the operator does to its target, for "cannot .. a string" messages.
    fn verb(self) -> &'static str {
        match self {
            Self::Set | Self::CurrentDate => "set",
            Self::Unset => "unset",
            Self::Inc => "increment",
            Self::Mul => "multiply",
            Self::Min | Self::Max => "compare",
            Self::Rename => "rename",
            Self::Push => "push to",
            Self::AddToSet => "add to",
            Self::Pop => "pop from",
            Self::Pull | Self::PullAll => "pull from",
            Self::Bit => "apply bitwise operations to",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The JSON type of a value, as named in error messages.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ValueKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number without a fraction or exponent.
    Integer,
    /// Any other number.
    Float,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl ValueKind {
    /// The kind of `value`.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Bool,
            Value::Number(n) if n.is_f64() => Self::Float,
            Value::Number(_) => Self::Integer,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Integer => "an integer",
            Self::Float => "a float",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        })
    }
}

/// Why an update spec is invalid, or could not be applied to a document.
///
/// Serializable: a host's rejection carries it to the patch's sender.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum UpdateError {
    /// The spec is not a JSON object.
    #[error("an update must be an object of operators, found {found}")]
    NotAnObject {
        /// What the spec was instead.
        found: ValueKind,
    },
    /// A top-level key does not start with `$`: a replacement document.
    #[error("`{key}` is not an update operator: replacement documents are not supported")]
    NotAnOperator {
        /// The key.
        key: String,
    },
    /// A top-level key starts with `$` but names no supported operator.
    #[error("unknown update operator `{op}`")]
    UnknownOperator {
        /// The key.
        op: String,
    },
    /// An operator's argument is not an object of `path: value`.
    #[error("{op}: argument must be an object of `path: value`, found {found}")]
    ArgumentNotObject {
        /// The operator.
        op: Operator,
        /// What the argument was instead.
        found: ValueKind,
    },
    /// A path (or `$rename` target) is not a valid [`Path`].
    #[error("{op}: invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The operator.
        op: Operator,
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: PathError,
    },
    /// The value given for a path is not valid for the operator.
    #[error("{op} at `{path}`: {reason}")]
    InvalidArgument {
        /// The operator.
        op: Operator,
        /// The path the value was given for.
        path: Path,
        /// What is wrong with the value.
        reason: String,
    },
    /// Two entries of one update write overlapping paths: one is a prefix of the other, or
    /// they part at a `$[]` and another segment (`a.$[].b` and `a.0.c`), as MongoDB refuses.
    #[error(
        "updating the path `{second}` ({second_op}) would create a conflict at `{first}` ({first_op})"
    )]
    ConflictingPaths {
        /// The operator writing `first`.
        first_op: Operator,
        /// The path that sorts first: the shorter one if one is a prefix of the other.
        first: Path,
        /// The operator writing `second`.
        second_op: Operator,
        /// The other path.
        second: Path,
    },
    /// A path leads through a value that cannot hold the next field.
    #[error("{op} at `{path}`: cannot create field `{field}` in {parent}")]
    CannotCreateField {
        /// The operator.
        op: Operator,
        /// The full path being written.
        path: Path,
        /// The segment that could not be created.
        field: String,
        /// What was found where a container was needed.
        parent: ValueKind,
    },
    /// The value at the path has the wrong type for the operator.
    #[error("{op} at `{path}`: cannot {} {found}", .op.verb())]
    WrongType {
        /// The operator.
        op: Operator,
        /// The path.
        path: Path,
        /// What was found there.
        found: ValueKind,
    },
    /// Integer arithmetic left the `i64` range, or an integer operand is outside it.
    #[error("{op} at `{path}`: integer overflow")]
    IntegerOverflow {
        /// The operator.
        op: Operator,
        /// The path.
        path: Path,
    },
    /// Float arithmetic produced an infinity, which JSON cannot hold.
    #[error("{op} at `{path}`: result is not a finite number")]
    NonFinite {
        /// The operator.
        op: Operator,
        /// The path.
        path: Path,
    },
    /// Writing the path would pad arrays with more than [`MAX_PADDING`] nulls.
    #[error(
        "{op} at `{path}`: padding the array with {needed} nulls would exceed the limit of {max} per update"
    )]
    PaddingTooLarge {
        /// The operator.
        op: Operator,
        /// The path.
        path: Path,
        /// How many nulls this write needs.
        needed: usize,
        /// The limit, [`MAX_PADDING`].
        max: usize,
    },
    /// A `$rename` source or target lies inside an array.
    #[error("$rename at `{path}`: cannot rename to or from an array element")]
    RenameThroughArray {
        /// The source or target path that goes through an array.
        path: Path,
    },
    /// A `$rename` source path runs through a value that has no fields: a scalar or null
    /// (MongoDB's `PathNotViable`).
    #[error("{op} at `{path}`: cannot use the part `{field}` to traverse {found}")]
    PathNotViable {
        /// The operator.
        op: Operator,
        /// The path.
        path: Path,
        /// The part that cannot be used.
        field: String,
        /// What it would have to traverse.
        found: ValueKind,
    },
    /// The spec has no operator at all: `{}` (MongoDB would take it as a replacement by an
    /// empty document).
    #[error("an update needs at least one operator")]
    NoOperators,
    /// The array before a `$[]` is missing (MongoDB: "The path 'a' must exist in the
    /// document in order to apply array updates").
    #[error(
        "{op} at `{path}`: the path `{array}` must exist in the document in order to apply array updates"
    )]
    ArrayPathMissing {
        /// The operator.
        op: Operator,
        /// The entry's path, as written.
        path: Path,
        /// The path before the `$[]`, with earlier `$[]` resolved to indexes.
        array: Path,
    },
    /// The value before a `$[]` is not an array (MongoDB: "Cannot apply array updates to
    /// non-array element").
    #[error("{op} at `{path}`: cannot apply array updates to {found} at `{array}`")]
    NotAnArray {
        /// The operator.
        op: Operator,
        /// The entry's path, as written.
        path: Path,
        /// The path before the `$[]`, with earlier `$[]` resolved to indexes.
        array: Path,
        /// What was found there.
        found: ValueKind,
    },
    /// Applying an entry through `$[]` would write more than 4 MiB in one
    /// [`Update::apply`]: counting the bytes of the values it copies (about their JSON text)
    /// plus one per element it updates.
    #[error("{op} at `{path}`: writing through `$[]` exceeds the limit of {max} bytes per update")]
    FanOutTooLarge {
        /// The operator.
        op: Operator,
        /// The entry's path, as written.
        path: Path,
        /// The limit, 4 MiB.
        max: usize,
    },
}

impl UpdateError {
    /// This error with the path of a failed operator replaced by `resolved`: the element an
    /// entry with `$[]` reached.
    fn at(mut self, resolved: Path) -> Self {
        match &mut self {
            Self::CannotCreateField { path, .. }
            | Self::WrongType { path, .. }
            | Self::IntegerOverflow { path, .. }
            | Self::NonFinite { path, .. }
            | Self::PaddingTooLarge { path, .. } => *path = resolved,
            _ => {}
        }
        self
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: Path,
    action: Action,
}

/// One operator applied to one path, with its validated argument.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
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
enum Push {
    One(Value),
    Each {
        values: Vec<Value>,
        position: Option<i64>,
        slice: Option<i64>,
        sort: Option<Sort>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddToSet {
    One(Value),
    Each(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sort {
    Whole(Direction),
    Fields(Vec<(Path, Direction)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateKind {
    Date,
    Timestamp,
}

/// A `$pull` condition on whole array elements.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// A non-object value, or an object of query operators.
    Element(Condition),
    /// An object of fields: matches object elements whose fields all match.
    Fields(Vec<(Path, Condition)>),
}

/// A condition on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Equals(Value),
    /// Non-empty; all must hold.
    Query(Vec<Query>),
}

/// A query operator with its argument; `In` and `Nin` lists are sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Query {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
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

fn parse_path(op: Operator, raw: &str) -> Result<Path, UpdateError> {
    Path::parse(raw).map_err(|reason| UpdateError::InvalidPath {
        op,
        path: raw.to_owned(),
        reason,
    })
}

// ---------------------------------------------------------------------------
// Parsing arguments

impl Action {
    fn parse(op: Operator, path: &Path, value: &Value) -> Result<Self, UpdateError> {
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

    fn operator(&self) -> Operator {
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
    fn weight(&self) -> usize {
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
    fn to_value(&self) -> Value {
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
fn integer(value: &Value) -> Option<i64> {
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

    fn compare(&self, a: &Value, b: &Value) -> Ordering {
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

    fn apply(self, a: i64, b: i64) -> i64 {
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
/// [`MAX_SEGMENTS`](super::MAX_SEGMENTS)): every second step consumes one.
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
    fn matches(&self, element: &Value) -> bool {
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

/// `values` sorted by [`compare`], without duplicates (keeping the first of equals).
fn sorted_set(values: &[Value]) -> Vec<Value> {
    let mut set = values.to_vec();
    set.sort_by(compare);
    set.dedup_by(|later, earlier| equal(later, earlier));
    set
}

/// True if the [`sorted_set`] `set` holds a value equal to `value`.
fn contains(set: &[Value], value: &Value) -> bool {
    set.binary_search_by(|probe| compare(probe, value)).is_ok()
}

// ---------------------------------------------------------------------------
// Applying

/// State of one [`Update::apply`] call.
struct Applier {
    now_unix_ms: u64,
    padding_left: usize,
    fan_out_left: usize,
}

impl Applier {
    fn apply(&mut self, root: &mut Value, entry: &Entry) -> Result<(), UpdateError> {
        if !entry.path.has_all_positional() {
            return self.apply_at(root, entry.path.parts(), entry);
        }
        let cost = entry.action.weight().saturating_add(1);
        self.expand(root, entry.path.parts(), entry, cost, &mut Vec::new())
    }

    /// Applies `entry` at `rest` below `base`, once for each element every `$[]` in `rest`
    /// stands for; `indexes` are those of the elements the earlier `$[]` stood for.
    ///
    /// Recurses once per `$[]`, so at most [`MAX_SEGMENTS`](super::MAX_SEGMENTS) deep.
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
fn unset(root: &mut Value, segments: &[String]) {
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

fn as_array<'v>(
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

/// A value ordered by [`compare`], for sets.
struct Ordered<'v>(&'v Value);

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
fn arithmetic(
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
// Comparison

/// MongoDB's order of type classes: null < numbers < strings < objects < arrays < booleans.
fn type_rank(value: &Value) -> u8 {
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
fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b).is_eq()
}

/// A total order on JSON values, after MongoDB's BSON comparison.
///
/// Type classes by [`type_rank`]; numbers by exact value; strings by bytes;
/// arrays element by element, then by length; objects field by field in key
/// order (each field by type class, then key, then value), then by size.
fn compare(a: &Value, b: &Value) -> Ordering {
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

// ---------------------------------------------------------------------------
// Dates

/// `unix_ms` as RFC 3339 UTC with milliseconds, e.g. `2026-11-22T04:42:00.123Z`.
fn rfc3339_millis(unix_ms: u64) -> String {
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
fn civil_from_days(days: u64) -> (u64, u64, u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
        let u =
            update(json!({"$set": {"a.$[].b": 1, "a.$[].c": 2, "b.0": 3}, "$inc": {"c.$[]": 1}}));
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
            prop::collection::vec(arb_json(), 0..3)
                .prop_map(|vs| ("$addToSet", json!({"$each": vs}))),
            prop::sample::select(vec![1, -1]).prop_map(|v| ("$pop", json!(v))),
            scalar.clone().prop_map(|v| ("$pull", v)),
            scalar.clone().prop_map(|v| ("$pull", json!({"$gte": v}))),
            prop::collection::vec(scalar.clone(), 0..3)
                .prop_map(|vs| ("$pull", json!({"$nin": vs}))),
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
}
