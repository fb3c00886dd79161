//! The update operators' names, the JSON types errors mention, and [`UpdateError`].

use std::fmt;

use serde_json::Value;

use super::super::path::{Path, PathError};

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

    pub(super) fn from_name(name: &str) -> Option<Self> {
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
    /// Writing the path would pad arrays with more than [`MAX_PADDING`](super::MAX_PADDING)
    /// nulls.
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
        /// The limit, [`MAX_PADDING`](super::MAX_PADDING).
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
    /// [`Update::apply`](super::Update::apply): counting the bytes of the values it copies
    /// (about their JSON text) plus one per element it updates.
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
    pub(super) fn at(mut self, resolved: Path) -> Self {
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
