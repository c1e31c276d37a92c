//! The SC's typed errors, and their one mapping to Fluvio's error codes.

use std::io;

use fluvio_protocol::link::ErrorCode;

/// The kinds of object the SC keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A topic.
    Topic,
    /// A partition of a topic.
    Partition,
    /// An SPU.
    Spu,
    /// A remote cluster registered on this home.
    Remote,
    /// The home cluster this remote mirrors with.
    Home,
}

impl ObjectKind {
    /// The kind's name, as operators read it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Topic => "topic",
            ObjectKind::Partition => "partition",
            ObjectKind::Spu => "spu",
            ObjectKind::Remote => "remote",
            ObjectKind::Home => "home",
        }
    }

    /// Whether the kind is a mirror object (a remote or a home).
    pub fn is_mirror(self) -> bool {
        matches!(self, ObjectKind::Remote | ObjectKind::Home)
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an operation on the SC's metadata was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An object of that name exists already.
    #[error("{kind} {name:?} already exists")]
    Exists {
        /// Kind.
        kind: ObjectKind,
        /// Name.
        name: String,
    },
    /// No object of that name.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind.
        kind: ObjectKind,
        /// Name.
        name: String,
    },
    /// A topic of that name is being deleted: its leaders have not yet
    /// confirmed that its records are gone.
    #[error("topic {0:?} is being deleted: its leader SPUs have not confirmed it yet")]
    BeingDeleted(String),
    /// A mirror topic names remotes that are not registered.
    #[error("remote not found: {0:?}")]
    UnknownRemotes(Vec<String>),
    /// A topic mirrored from the home is deleted at the home, never here.
    #[error("cannot delete mirrored topic from remote")]
    MirrorDeleteFromRemote,
    /// The request makes no sense.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Writing the metadata failed; nothing changed.
    #[error("storing metadata: {0}")]
    Io(#[from] io::Error),
}

/// The name this error had before it was typed per kind.
pub type AdminError = ApiError;

impl ApiError {
    /// The Fluvio error code and message a request on `target` (what the
    /// request was about: a topic, or a mirror object) is answered with.
    /// Every error the public API sends is mapped here, and only here.
    pub fn to_fluvio(&self, target: ObjectKind, name: &str) -> (ErrorCode, String) {
        match (self, target.is_mirror()) {
            (ApiError::Exists { .. }, false) => (
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{name}' already exists"),
            ),
            (ApiError::BeingDeleted(_), _) => (ErrorCode::TopicAlreadyExists, self.to_string()),
            (ApiError::Exists { .. }, true) => (
                ErrorCode::MirrorAlreadyExists,
                format!("remote cluster {name:?} already exists"),
            ),
            (
                ApiError::NotFound {
                    kind: ObjectKind::Topic,
                    ..
                },
                false,
            ) => (
                ErrorCode::TopicNotFound,
                format!("Topic '{name}' not found"),
            ),
            (ApiError::NotFound { kind, name }, false) => (
                ErrorCode::MirrorNotFound,
                format!("{kind} not found: {name}"),
            ),
            (ApiError::NotFound { .. }, true) => (
                ErrorCode::MirrorNotFound,
                format!("remote cluster {name:?} not found"),
            ),
            (ApiError::MirrorDeleteFromRemote, _) => {
                (ErrorCode::MirrorDeleteFromRemote, self.to_string())
            }
            (ApiError::UnknownRemotes(_), _) => (ErrorCode::MirrorNotFound, self.to_string()),
            (ApiError::Invalid(reason), false) => (ErrorCode::TopicError, reason.clone()),
            (ApiError::Io(err), false) => (ErrorCode::TopicNotProvisioned, err.to_string()),
            (other, _) => (ErrorCode::Other(other.to_string()), other.to_string()),
        }
    }
}
