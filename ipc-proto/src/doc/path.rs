//! Dotted field paths into a JSON document: see [`Path`].

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// The most segments a [`Path`] may have.
pub const MAX_SEGMENTS: usize = 100;

/// The longest [`Path`], in bytes of its dotted form.
///
/// Paths come from peers (inside patches) and are kept in the host's conflict log and in
/// rejections: bounding them bounds those too.
pub const MAX_PATH_BYTES: usize = 1024;

/// The all-positional segment: every element of the array at the path before it.
pub(crate) const ALL_POSITIONAL: &str = "$[]";

/// A dotted field path such as `a.b.0.c`, parsed and validated.
///
/// A [`Path`] is a non-empty list of segments. When a segment meets an
/// array, a canonical decimal number (`0`, `7`, `12`, but not `07` or `+1`)
/// indexes it; when it meets an object, every segment, numeric or not, is a
/// key. Requiring canonical numbers keeps one spelling per array element, so
/// [`Path::overlaps`] can decide conflicts from the text alone.
///
/// A segment may be MongoDB's all-positional `$[]`, which stands for every element of the
/// array before it (`a.$[].b` is `b` in each element of `a`), though not first: the root is
/// a document. [`Update`](super::Update) applies such paths; [`Path::overlaps`] treats `$[]`
/// as any segment; [`Path::get`] stops before it. No other segment may start with `$`: the
/// positional `$` and the filtered `$[<id>]` need a query and its `arrayFilters`, which
/// shared documents do not have.
///
/// ```
/// use ipc_proto::doc::Path;
/// use serde_json::json;
///
/// let p: Path = "a.1.b".parse()?;
/// assert_eq!(p.get(&json!({"a": [0, {"b": true}]})), Some(&json!(true)));
/// assert!(p.overlaps(&"a.1".parse()?));
/// assert!(!p.overlaps(&"a.10".parse()?));
///
/// let all: Path = "a.$[].b".parse()?;
/// assert!(all.overlaps(&"a.3.b".parse()?));
/// assert!(!all.overlaps(&"a.3.c".parse()?));
/// # Ok::<(), ipc_proto::doc::PathError>(())
/// ```
///
/// Ordered segment by segment, so a path sorts right before the paths it is a
/// prefix of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path {
    /// Never empty, no segment is empty or starts with `$` except [`ALL_POSITIONAL`] (never
    /// first).
    segments: Vec<String>,
}

/// Why a string is not a valid [`Path`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PathError {
    /// The path is the empty string.
    #[error("path is empty")]
    Empty,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("path has an empty segment at position {index}")]
    EmptySegment {
        /// Zero-based position of the empty segment.
        index: usize,
    },
    /// A segment starts with `$` but is not `$[]` (the positional `$` and operator names are
    /// not supported).
    #[error("path segment `{segment}` starts with `$`")]
    DollarSegment {
        /// The offending segment.
        segment: String,
    },
    /// More than [`MAX_SEGMENTS`] segments.
    #[error("path has more than {max} segments")]
    TooManySegments {
        /// The limit, [`MAX_SEGMENTS`].
        max: usize,
    },
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The path's length.
        len: usize,
        /// The limit, [`MAX_PATH_BYTES`].
        max: usize,
    },
    /// The path starts with `$[]`: the root is a document, not an array.
    #[error("path cannot start with `$[]`")]
    AllPositionalFirst,
    /// A filtered positional segment `$[<id>]`: shared documents have no `arrayFilters`.
    #[error(
        "path segment `{segment}`: the filtered positional operator `$[<id>]` (arrayFilters) is not supported, only `$[]`"
    )]
    FilteredPositional {
        /// The offending segment.
        segment: String,
    },
}

impl Path {
    /// Parses and validates a dotted path.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong {
                len: s.len(),
                max: MAX_PATH_BYTES,
            });
        }
        let mut segments = Vec::new();
        for (index, segment) in s.split('.').enumerate() {
            if index == MAX_SEGMENTS {
                return Err(PathError::TooManySegments { max: MAX_SEGMENTS });
            }
            if segment.is_empty() {
                return Err(PathError::EmptySegment { index });
            }
            if segment == ALL_POSITIONAL {
                if index == 0 {
                    return Err(PathError::AllPositionalFirst);
                }
            } else if segment.len() > 3 && segment.starts_with("$[") && segment.ends_with(']') {
                return Err(PathError::FilteredPositional {
                    segment: segment.to_owned(),
                });
            } else if segment.starts_with('$') {
                return Err(PathError::DollarSegment {
                    segment: segment.to_owned(),
                });
            }
            segments.push(segment.to_owned());
        }
        Ok(Self { segments })
    }

    /// Like [`Path::parse`], but `$[]` is refused too ([`PathError::DollarSegment`]): for
    /// paths that name one value, such as a `$push` `$sort` field or a `$pull` condition's.
    pub(crate) fn parse_plain(s: &str) -> Result<Self, PathError> {
        let path = Self::parse(s)?;
        if path.has_all_positional() {
            return Err(PathError::DollarSegment {
                segment: ALL_POSITIONAL.to_owned(),
            });
        }
        Ok(path)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// The segments as a slice.
    pub(crate) fn parts(&self) -> &[String] {
        &self.segments
    }

    /// True if a segment is the all-positional `$[]`.
    pub fn has_all_positional(&self) -> bool {
        self.segments.iter().any(|s| s == ALL_POSITIONAL)
    }

    /// True if the paths may name a common value, or one value inside the other: segment by
    /// segment over the shorter path, each pair is equal or one of them is `$[]`.
    ///
    /// `a.b` overlaps `a`, `a.b` and `a.b.c`, but not `a.bc` or `a.c`. `a.$[].b` overlaps
    /// `a`, `a.3`, `a.3.b` and `a.$[]`, but not `a.3.c` or `c`.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.segments
            .iter()
            .zip(&other.segments)
            .all(|(a, b)| a == b || a == ALL_POSITIONAL || b == ALL_POSITIONAL)
    }

    /// True if every segment of `self` starts `other`, as written (a path is a prefix of
    /// itself; `a.$[]` is not a prefix of `a.0.b`).
    pub fn is_prefix_of(&self, other: &Self) -> bool {
        other.segments.starts_with(&self.segments)
    }

    /// The value at this path, if there is one.
    ///
    /// Canonical numeric segments index arrays; on objects every segment is a key. A path
    /// with `$[]` names several values: `get` returns the value holding them all, the one at
    /// the segments before the first `$[]` (so `a.$[].b` gives the array `a`). Comparing
    /// `get` before and after an update thus never misses a change the update made.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .take_while(|s| *s != ALL_POSITIONAL)
            .try_fold(root, |value, segment| child(value, segment))
    }

    /// Like [`get`](Self::get), but mutable, and `None` for a path with `$[]`.
    pub fn get_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Value> {
        if self.has_all_positional() {
            return None;
        }
        get_mut_in(root, &self.segments)
    }

    /// This path with its first `indexes.len()` `$[]` segments replaced by those indexes,
    /// cut to its first `len` segments; the path as written, cut, if that would be too long.
    ///
    /// Names the element an update reached through `$[]`, for error messages.
    pub(crate) fn resolved(&self, indexes: &[usize], len: usize) -> Self {
        let mut indexes = indexes.iter();
        let segments: Vec<String> = self
            .segments
            .iter()
            .take(len.max(1))
            .map(|s| {
                if s == ALL_POSITIONAL
                    && let Some(i) = indexes.next()
                {
                    i.to_string()
                } else {
                    s.clone()
                }
            })
            .collect();
        let bytes = segments.iter().map(|s| s.len() + 1).sum::<usize>() - 1;
        if bytes <= MAX_PATH_BYTES {
            Self { segments }
        } else {
            Self {
                segments: self.segments.iter().take(len.max(1)).cloned().collect(),
            }
        }
    }

    /// All segments but the last, and the last.
    pub(crate) fn split_last(&self) -> (&[String], &str) {
        let (last, parents) = self
            .segments
            .split_last()
            .expect("Path::parse never yields an empty path");
        (parents, last)
    }
}

/// The array index a segment denotes: canonical decimal (no sign, no leading zero).
pub(crate) fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        // Fails only on overflow: such an index cannot exist.
        segment.parse().ok()
    } else {
        None
    }
}

/// The child of `value` named by `segment`.
fn child<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(array_index(segment)?),
        _ => None,
    }
}

/// The value at `segments` below `root`, mutably; `$[]` is taken as a key.
pub(crate) fn get_mut_in<'v>(root: &'v mut Value, segments: &[String]) -> Option<&'v mut Value> {
    segments
        .iter()
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get_mut(segment.as_str()),
            Value::Array(items) => items.get_mut(array_index(segment)?),
            _ => None,
        })
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn p(s: &str) -> Path {
        Path::parse(s).expect("test path is valid")
    }

    #[test]
    fn parse_splits_on_dots() {
        assert_eq!(
            p("a.b.0.c").segments().collect::<Vec<_>>(),
            ["a", "b", "0", "c"]
        );
        assert_eq!(p("a").to_string(), "a");
        assert_eq!(p("a.b.0").to_string(), "a.b.0");
    }

    #[test]
    fn parse_rejects_empty_path() {
        assert_eq!(Path::parse(""), Err(PathError::Empty));
    }

    #[test]
    fn parse_rejects_empty_segments() {
        assert_eq!(
            Path::parse("a..b"),
            Err(PathError::EmptySegment { index: 1 })
        );
        assert_eq!(Path::parse(".a"), Err(PathError::EmptySegment { index: 0 }));
        assert_eq!(Path::parse("a."), Err(PathError::EmptySegment { index: 1 }));
        assert_eq!(Path::parse("."), Err(PathError::EmptySegment { index: 0 }));
    }

    #[test]
    fn parse_rejects_dollar_segments() {
        let err = Path::parse("a.$.b").unwrap_err();
        assert_eq!(
            err,
            PathError::DollarSegment {
                segment: "$".into()
            }
        );
        assert_eq!(err.to_string(), "path segment `$` starts with `$`");
        assert!(Path::parse("$set").is_err());
        assert!(Path::parse("a.b$").is_ok(), "only a leading `$` is special");
        for segment in ["$[", "$]", "$[]x", "$[ ]x"] {
            assert_eq!(
                Path::parse(&format!("a.{segment}")),
                Err(PathError::DollarSegment {
                    segment: segment.into()
                })
            );
        }
    }

    #[test]
    fn parse_accepts_the_all_positional_segment_but_not_first() {
        assert_eq!(
            p("a.$[].b.$[]").segments().collect::<Vec<_>>(),
            ["a", "$[]", "b", "$[]"]
        );
        assert!(p("a.$[]").has_all_positional());
        assert!(!p("a.0").has_all_positional());
        assert_eq!(Path::parse("$[]"), Err(PathError::AllPositionalFirst));
        assert_eq!(Path::parse("$[].a"), Err(PathError::AllPositionalFirst));
        assert_eq!(
            Path::parse("a.$[i].b"),
            Err(PathError::FilteredPositional {
                segment: "$[i]".into()
            })
        );
        assert_eq!(
            Path::parse_plain("a.$[]"),
            Err(PathError::DollarSegment {
                segment: "$[]".into()
            })
        );
        assert_eq!(Path::parse_plain("a.b"), Path::parse("a.b"));
        let back: Path = serde_json::from_value(json!("a.$[].b")).expect("deserializes");
        assert_eq!(back, p("a.$[].b"));
    }

    #[test]
    fn all_positional_overlaps_any_segment() {
        let all = p("a.$[].b");
        for other in ["a", "a.3", "a.3.b", "a.$[]", "a.$[].b.c", "a.x.b"] {
            assert!(all.overlaps(&p(other)), "{other}");
            assert!(p(other).overlaps(&all), "{other}");
        }
        for other in ["c", "a.3.c", "ab", "a.$[].c"] {
            assert!(!all.overlaps(&p(other)), "{other}");
        }
        assert!(
            !p("a.$[]").is_prefix_of(&p("a.0.b")),
            "is_prefix_of is literal"
        );
    }

    #[test]
    fn get_stops_before_the_all_positional_segment() {
        let doc = json!({"a": [{"b": 1}, {"b": 2}]});
        assert_eq!(p("a.$[].b").get(&doc), Some(&doc["a"]));
        assert_eq!(p("a.0.$[]").get(&doc), Some(&json!({"b": 1})));
        assert_eq!(p("x.$[]").get(&doc), None);
        let mut doc = doc;
        assert!(p("a.$[].b").get_mut(&mut doc).is_none());
    }

    #[test]
    fn resolved_replaces_all_positional_segments_with_indexes() {
        let path = p("a.$[].b.$[].c");
        assert_eq!(path.resolved(&[3, 0], 5), p("a.3.b.0.c"));
        assert_eq!(path.resolved(&[3], 3), p("a.3.b"));
        assert_eq!(path.resolved(&[3], 5), p("a.3.b.$[].c"));
        // Never longer than a path may be.
        let long = p(&format!("{}.$[]", "x".repeat(MAX_PATH_BYTES - 4)));
        let resolved = long.resolved(&[123_456], 2);
        assert_eq!(resolved, long);
        assert!(Path::parse(&resolved.to_string()).is_ok());
    }

    #[test]
    fn parse_bounds_segment_count() {
        let ok = vec!["x"; MAX_SEGMENTS].join(".");
        assert!(Path::parse(&ok).is_ok());
        let too_long = vec!["x"; MAX_SEGMENTS + 1].join(".");
        assert_eq!(
            Path::parse(&too_long),
            Err(PathError::TooManySegments { max: MAX_SEGMENTS })
        );
    }

    #[test]
    fn parse_bounds_length_in_bytes() {
        let ok = "x".repeat(MAX_PATH_BYTES);
        assert!(Path::parse(&ok).is_ok());
        let too_long = "x".repeat(MAX_PATH_BYTES + 1);
        assert_eq!(
            Path::parse(&too_long),
            Err(PathError::TooLong {
                len: MAX_PATH_BYTES + 1,
                max: MAX_PATH_BYTES
            })
        );
    }

    #[test]
    fn from_str_matches_parse() {
        assert_eq!("a.b".parse::<Path>(), Path::parse("a.b"));
        assert_eq!("".parse::<Path>(), Err(PathError::Empty));
    }

    #[test]
    fn overlaps_by_whole_segments() {
        assert!(p("a.b").overlaps(&p("a")));
        assert!(p("a.b").overlaps(&p("a.b")));
        assert!(p("a.b").overlaps(&p("a.b.c")));
        assert!(!p("a.b").overlaps(&p("a.bc")));
        assert!(!p("a.b").overlaps(&p("a.c")));
        assert!(!p("a.1").overlaps(&p("a.10")));
    }

    #[test]
    fn is_prefix_of_is_directional() {
        assert!(p("a").is_prefix_of(&p("a.b")));
        assert!(p("a.b").is_prefix_of(&p("a.b")));
        assert!(!p("a.b").is_prefix_of(&p("a")));
        assert!(!p("a").is_prefix_of(&p("ab")));
    }

    #[test]
    fn ord_puts_prefixes_first() {
        let mut paths = vec![p("b"), p("a.b"), p("a"), p("a.a.z")];
        paths.sort();
        assert_eq!(paths, [p("a"), p("a.a.z"), p("a.b"), p("b")]);
    }

    #[test]
    fn get_indexes_arrays_with_numeric_segments() {
        let doc = json!({"a": [{"b": 1}, {"b": 2}], "o": {"0": "key"}});
        assert_eq!(p("a.1.b").get(&doc), Some(&json!(2)));
        assert_eq!(p("a.2").get(&doc), None);
        assert_eq!(p("a.b").get(&doc), None, "non-numeric segment on an array");
        assert_eq!(
            p("o.0").get(&doc),
            Some(&json!("key")),
            "numeric key on an object"
        );
        assert_eq!(p("a.0.b.c").get(&doc), None, "through a scalar");
    }

    #[test]
    fn get_requires_canonical_indexes() {
        let doc = json!({"a": [10, 11]});
        assert_eq!(p("a.01").get(&doc), None);
        assert_eq!(p("a.+1").get(&doc), None);
        assert_eq!(p("a.99999999999999999999999").get(&doc), None);
        assert_eq!(p("a.0").get(&doc), Some(&json!(10)));
    }

    #[test]
    fn get_mut_finds_the_same_value() {
        let mut doc = json!({"a": [{"b": 1}]});
        *p("a.0.b").get_mut(&mut doc).expect("exists") = json!(5);
        assert_eq!(doc, json!({"a": [{"b": 5}]}));
        assert!(p("a.1").get_mut(&mut doc).is_none());
    }

    #[test]
    fn serde_uses_the_dotted_string() {
        let path = p("a.0.b");
        assert_eq!(
            serde_json::to_value(&path).expect("serializes"),
            json!("a.0.b")
        );
        let back: Path = serde_json::from_value(json!("a.0.b")).expect("deserializes");
        assert_eq!(back, path);
        assert!(serde_json::from_value::<Path>(json!("a..b")).is_err());
    }

    fn arb_path() -> impl Strategy<Value = Path> {
        (
            prop::sample::select(vec!["a", "b", "0"]),
            prop::collection::vec(
                prop::sample::select(vec!["a", "b", "ab", "0", "1", "$[]"]),
                0..3,
            ),
        )
            .prop_map(|(first, rest)| p(&[vec![first], rest].concat().join(".")))
    }

    proptest! {
        #[test]
        fn overlaps_is_reflexive_and_symmetric(a in arb_path(), b in arb_path()) {
            prop_assert!(a.overlaps(&a));
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        }

        #[test]
        fn display_round_trips(a in arb_path()) {
            prop_assert_eq!(Path::parse(&a.to_string()), Ok(a));
        }

        #[test]
        fn overlaps_agrees_with_prefixes_without_all_positional(a in arb_path(), b in arb_path()) {
            if !a.has_all_positional() && !b.has_all_positional() {
                prop_assert_eq!(a.overlaps(&b), a.is_prefix_of(&b) || b.is_prefix_of(&a));
            }
        }

        #[test]
        fn parse_never_panics(s in "[a$.0-9\\[\\]]{0,12}") {
            if let Ok(path) = Path::parse(&s) {
                prop_assert_eq!(path.to_string(), s);
            }
        }
    }
}
