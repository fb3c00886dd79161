//! A node's application counters: named figures the application sets on its node, which the
//! node reports with its data-link counters ([`DataStats::app`](super::DataStats::app)) so that
//! `status` shows them.
//!
//! They come from a peer in a `Stats` reply, so they are bounded like every other field: at most
//! [`MAX_APP_COUNTERS`] entries (refused while decoding the list, before more are allocated),
//! each named by 1 to [`MAX_COUNTER_NAME`] bytes of printable ASCII (space to `~`), no name
//! twice (so that they read as a map: `status --json` prints an object). The same
//! check refuses a set the application gives its node.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::DecodeError;

/// Most application counters a node reports.
pub const MAX_APP_COUNTERS: usize = 32;

/// Most bytes of an application counter's name.
pub const MAX_COUNTER_NAME: usize = 64;

/// One application counter: a name and its value.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AppCounter {
    /// Its name: 1 to [`MAX_COUNTER_NAME`] bytes of printable ASCII.
    pub name: String,
    /// Its value.
    pub value: u64,
}

impl AppCounter {
    /// A counter `name` of `value` (unchecked: see [`check_app_counters`]).
    pub fn new(name: &str, value: u64) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}

/// Checks a set of application counters against the bounds: at most [`MAX_APP_COUNTERS`]
/// entries ([`DecodeError::FieldTooLong`] `"application counters"`), names of 1 to
/// [`MAX_COUNTER_NAME`] bytes ([`DecodeError::FieldTooLong`] `"counter name"`) of printable
/// ASCII, each name once ([`DecodeError::Invalid`]).
pub fn check_app_counters(counters: &[AppCounter]) -> Result<(), DecodeError> {
    if counters.len() > MAX_APP_COUNTERS {
        return Err(DecodeError::FieldTooLong {
            what: "application counters",
            len: counters.len(),
            max: MAX_APP_COUNTERS,
        });
    }
    for (i, c) in counters.iter().enumerate() {
        if c.name.is_empty() || c.name.len() > MAX_COUNTER_NAME {
            return Err(DecodeError::FieldTooLong {
                what: "counter name",
                len: c.name.len(),
                max: MAX_COUNTER_NAME,
            });
        }
        if let Some(b) = c.name.bytes().find(|b| !(b' '..=b'~').contains(b)) {
            return Err(DecodeError::Invalid(format!(
                "counter name {:?} holds byte {b:#04x}, not printable ASCII",
                c.name
            )));
        }
        if counters[..i].iter().any(|o| o.name == c.name) {
            return Err(DecodeError::Invalid(format!(
                "counter name {:?} given twice",
                c.name
            )));
        }
    }
    Ok(())
}

/// Decodes the list of application counters, refusing it as soon as its announced length is
/// above [`MAX_APP_COUNTERS`], before allocating anything for it (`serde(deserialize_with)` on
/// [`DataStats::app`](super::DataStats::app)).
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AppCounter>, D::Error> {
    struct Bounded;

    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<AppCounter>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_APP_COUNTERS} application counters")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let too_many = || {
                serde::de::Error::custom(format!(
                    "more than {MAX_APP_COUNTERS} application counters"
                ))
            };
            if seq.size_hint().is_some_and(|n| n > MAX_APP_COUNTERS) {
                return Err(too_many());
            }
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(c) = seq.next_element::<AppCounter>()? {
                if out.len() == MAX_APP_COUNTERS {
                    return Err(too_many());
                }
                out.push(c);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(Bounded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DataFrame, DataStats, decode_data, encode_data};

    fn stats(app: Vec<AppCounter>) -> Vec<u8> {
        encode_data(
            &DataFrame::Stats(DataStats {
                app,
                ..DataStats::default()
            }),
            &[],
        )
    }

    fn decode(app: Vec<AppCounter>) -> Result<DataFrame, DecodeError> {
        decode_data(&stats(app), 255, 16).map(|(f, _)| f)
    }

    #[test]
    fn counters_within_the_bounds_round_trip() {
        let app: Vec<AppCounter> = (0..MAX_APP_COUNTERS)
            .map(|i| AppCounter::new(&format!("{i:0>64}"), u64::MAX - i as u64))
            .collect();
        let got = decode(app.clone()).expect("within the bounds");
        assert_eq!(
            got,
            DataFrame::Stats(DataStats {
                app,
                ..DataStats::default()
            })
        );
        let spaced = vec![AppCounter::new(" a ~z ", 0)];
        assert!(decode(spaced).is_ok());
    }

    #[test]
    fn an_oversized_name_is_refused() {
        let app = vec![AppCounter::new(&"x".repeat(MAX_COUNTER_NAME + 1), 1)];
        assert_eq!(
            decode(app.clone()),
            Err(DecodeError::FieldTooLong {
                what: "counter name",
                len: MAX_COUNTER_NAME + 1,
                max: MAX_COUNTER_NAME
            })
        );
        assert_eq!(check_app_counters(&app), decode(app).map(|_| ()));
        let empty = vec![AppCounter::new("", 1)];
        assert!(matches!(
            decode(empty),
            Err(DecodeError::FieldTooLong { len: 0, .. })
        ));
    }

    #[test]
    fn too_many_entries_are_refused_while_decoding() {
        let app = vec![AppCounter::new("n", 1); MAX_APP_COUNTERS + 1];
        assert!(matches!(
            check_app_counters(&app),
            Err(DecodeError::FieldTooLong {
                what: "application counters",
                len: 33,
                max: 32
            })
        ));
        assert!(matches!(decode(app), Err(DecodeError::Invalid(m)) if m.contains("more than 32")));
    }

    /// A `Stats` record whose list of counters claims `len` entries (a bincode varint) and
    /// holds none.
    fn claiming(len: &[u8]) -> Vec<u8> {
        // The list's length is the record's last byte for an empty list.
        let mut bytes = stats(vec![]);
        assert_eq!(bytes.pop(), Some(0));
        bytes.extend_from_slice(len);
        let n = u32::try_from(bytes.len() - 4).expect("small");
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes
    }

    #[test]
    fn a_list_claiming_more_entries_than_allowed_is_refused_before_allocating() {
        // 1000 entries (0xFB, then a u16): refused by its length, before any entry is read.
        assert!(matches!(
            decode_data(&claiming(&[0xFB, 0xE8, 0x03]), 255, 16),
            Err(DecodeError::Invalid(m)) if m.contains("more than 32")
        ));
        // 33: the same.
        assert!(matches!(
            decode_data(&claiming(&[33]), 255, 16),
            Err(DecodeError::Invalid(m)) if m.contains("more than 32")
        ));
        // u64::MAX entries (0xFD, then a u64): refused by the codec's cap already.
        let mut huge = vec![0xFD];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_data(&claiming(&huge), 255, 16).is_err());
        // 1 entry claimed, none there: ends early.
        assert_eq!(
            decode_data(&claiming(&[1]), 255, 16),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let app = vec![
            AppCounter::new("a", 1),
            AppCounter::new("b", 2),
            AppCounter::new("a", 3),
        ];
        assert!(matches!(decode(app.clone()), Err(DecodeError::Invalid(m)) if m.contains("twice")));
        assert!(check_app_counters(&app).is_err());
    }

    #[test]
    fn non_printable_names_are_refused() {
        for name in ["a\nb", "tab\t", "\u{7f}", "é", "\u{202e}rtl"] {
            let app = vec![AppCounter::new(name, 1)];
            assert!(
                matches!(decode(app.clone()), Err(DecodeError::Invalid(_))),
                "{name:?}"
            );
            assert!(check_app_counters(&app).is_err(), "{name:?}");
        }
    }
}
