//! Free-form metadata: a JSON object the operator attaches, kept as text the core never reads.

/// The largest metadata accepted, in bytes of JSON text.
pub const METADATA_LEN_MAX: usize = 4096;

use std::borrow::Cow;

/// A JSON object as text. The edge checks that it is an object; the core only
/// carries it and bounds its size. The empty object costs no allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata(Cow<'static, str>);

impl Metadata {
    /// The empty object, `{}`.
    pub const fn empty() -> Metadata {
        Metadata(Cow::Borrowed("{}"))
    }

    /// Wraps JSON object text that the caller has already checked is an
    /// object, or `None` when it is longer than [`METADATA_LEN_MAX`].
    pub fn from_json_object(text: String) -> Option<Metadata> {
        if text.len() > METADATA_LEN_MAX {
            return None;
        }
        Some(if text == "{}" {
            Metadata::empty()
        } else {
            Metadata(Cow::Owned(text))
        })
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata::empty()
    }
}
