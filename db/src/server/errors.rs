//! Every error a client can see, and the one table ([`ServerError::reply`]) that turns each
//! into a RESP error reply `-CODE message`.
//!
//! Codes follow SierraDB where SierraDB has the error (`WRONGVER`, `INVALIDARG`, `NOTFOUND`,
//! `DBOPFAILED`, `TRYAGAIN`, `READERR`) and Redis where the error is about the connection
//! rather than events (`ERR unknown command`, `ERR wrong number of arguments`, `NOPROTO`,
//! `ERR Protocol error`), so Redis tooling reads them as it reads Redis's own. The one code of
//! our own is `UNKNOWNOUTCOME`: an append whose fsync failed may or may not be durable, which
//! is neither "retry, nothing happened" (`TRYAGAIN`) nor "it failed" (every other code).
//! `docs/protocol.md` lists every row with its SierraDB equivalent.
//!
//! The three classes of `STYLE.md` §6 stay apart here: the client's fault (parse errors,
//! `WRONGVER`, `NOTFOUND`, `DBOPFAILED`), an unknown outcome (`UNKNOWNOUTCOME`), and storage
//! faults (`TRYAGAIN` when nothing was written, `READERR` when stored bytes cannot be read).

use std::fmt;

use net::{DecodeError, Frame, FrameKind};

use crate::error::{AppendError, StoreError};
use crate::model::{ExpectedVersion, InvalidInput};

/// Longest piece of client input quoted back in an error message, in bytes. Quoting a 64 MiB
/// argument back would turn one bad request into a 64 MiB reply.
pub const QUOTE_MAX_BYTES: usize = 128;

/// Client input as it is quoted in messages: lossy UTF-8, at most [`QUOTE_MAX_BYTES`].
pub fn quote(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(QUOTE_MAX_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

/// An argument the grammar of a command refuses: always `-INVALIDARG {message}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("unexpected end of input: expected {expected}")]
    MissingArgument { expected: &'static str },
    #[error("unexpected argument '{found}': expected {expected}")]
    Unexpected {
        found: String,
        expected: &'static str,
    },
    /// SierraDB's wording ("event id already specified"). Every option may be given once.
    #[error("{option} already specified")]
    Duplicate { option: &'static str },
    #[error("invalid {what} '{found}': expected a UUID")]
    InvalidUuid { what: &'static str, found: String },
    #[error("invalid {what} '{found}': expected a non-negative integer")]
    InvalidNumber { what: &'static str, found: String },
    #[error("{what} must not be less than {min}, but got {found}")]
    TooSmall {
        what: &'static str,
        min: u64,
        found: u64,
    },
    #[error(
        "invalid expected version '{found}': expected a version number or 'any', 'exists', 'empty'"
    )]
    InvalidExpectedVersion { found: String },
    /// SierraDB's message for a timestamp that only makes sense in nanoseconds.
    #[error("invalid timestamp format: expected milliseconds, got nanoseconds")]
    TimestampTooLarge,
    #[error("start {what} cannot be '+'")]
    StartIsEnd { what: &'static str },
    #[error("end {what} cannot be '-'")]
    EndIsStart { what: &'static str },
    #[error("invalid partition '{found}': expected a partition id or a UUID partition key")]
    InvalidPartition { found: String },
    #[error("partition {partition} does not exist (there are {count})")]
    NoSuchPartition { partition: u64, count: u16 },
    #[error("stream {stream} is listed more than once")]
    DuplicateStream { stream: String },
    #[error("partition {partition} is listed more than once")]
    DuplicatePartition { partition: u16 },
    #[error("invalid FROM MAP entry '{found}': expected <{key}>=<{position}>")]
    InvalidMapEntry {
        found: String,
        key: &'static str,
        position: &'static str,
    },
    #[error("FROM MAP names {what} {found}, which is not in the subscription")]
    MapNotSubscribed { what: &'static str, found: String },
    #[error("DEFAULT is only valid after FROM MAP")]
    DefaultWithoutMap,
    #[error("EMAPPEND takes one partition key, before the first stream")]
    PartitionKeyInMultiAppend,
    /// Stream id, event name and text rules of the model.
    #[error(transparent)]
    Input(#[from] InvalidInput),
}

/// A request that is not a well-formed command frame: `-ERR Protocol error: ...`, then the
/// connection is closed, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("expected array, got {kind}")]
    NotArray { kind: FrameKind },
    #[error("expected a string argument, got {kind}")]
    BadArgument { kind: FrameKind },
}

/// Everything a command can answer instead of its reply.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("unknown command '{name}'")]
    UnknownCommand { name: String },
    #[error("wrong number of arguments for '{command}' command")]
    WrongArity { command: &'static str },
    #[error("unknown subcommand '{subcommand}' for '{command}'")]
    UnknownSubcommand {
        command: &'static str,
        subcommand: String,
    },
    #[error("Protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    InvalidArgument(#[from] ArgError),
    #[error("unsupported protocol version")]
    UnsupportedProtocol,
    #[error("Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    #[error("Syntax error in HELLO option '{option}'")]
    HelloSyntax { option: String },
    #[error("Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    #[error("strict versioning mode rejects EXPECTED_VERSION {expected}")]
    StrictVersioning { expected: ExpectedVersion },
    #[error("window {window} exceeds the maximum of {max}")]
    WindowTooLarge { window: u64, max: u32 },
    #[error("max number of subscriptions per connection reached ({max})")]
    TooManySubscriptions { max: usize },
    #[error("subscription not found")]
    SubscriptionNotFound,
    #[error("cannot acknowledge cursor {cursor}: {delivered} messages delivered so far")]
    AckBeyondDelivered { cursor: u64, delivered: u64 },
    #[error("max number of clients reached")]
    MaxClients,
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("read error: {0}")]
    Read(#[from] StoreError),
}

impl From<InvalidInput> for ServerError {
    fn from(err: InvalidInput) -> Self {
        ServerError::InvalidArgument(ArgError::Input(err))
    }
}

/// The code and message of an error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl ServerError {
    /// THE table: every error's RESP code and message. Keep `docs/protocol.md` in step.
    pub fn reply(&self) -> ErrorReply {
        use ServerError as E;
        let (code, message) = match self {
            E::UnknownCommand { .. }
            | E::WrongArity { .. }
            | E::UnknownSubcommand { .. }
            | E::Protocol(_)
            | E::ProtocolVersionNotInteger
            | E::HelloSyntax { .. }
            | E::InvalidClientName
            | E::TooManySubscriptions { .. }
            | E::MaxClients => ("ERR", self.to_string()),
            E::UnsupportedProtocol => ("NOPROTO", self.to_string()),
            E::InvalidArgument(_)
            | E::StrictVersioning { .. }
            | E::WindowTooLarge { .. }
            | E::AckBeyondDelivered { .. } => ("INVALIDARG", self.to_string()),
            E::SubscriptionNotFound => ("NOTFOUND", self.to_string()),
            E::Append(err) => match err {
                AppendError::Invalid(_) => ("INVALIDARG", err.to_string()),
                AppendError::WrongExpectedVersion { .. } => ("WRONGVER", err.to_string()),
                // SierraDB's exact wording for the same refusal.
                AppendError::PartitionKeyMismatch { stored, given, .. } => (
                    "DBOPFAILED",
                    format!(
                        "database operation failed: partition key must be the same for all events in a stream: expected {stored}, got {given}"
                    ),
                ),
                AppendError::EventIdConflict { .. } => {
                    ("DBOPFAILED", format!("database operation failed: {err}"))
                }
                AppendError::Unavailable(source) => (
                    "TRYAGAIN",
                    format!("append not written, retry later: {source}"),
                ),
                AppendError::Indeterminate(source) => (
                    "UNKNOWNOUTCOME",
                    format!(
                        "append outcome unknown, it may or may not be durable: {source}; retry with the same EVENT_ID to find out"
                    ),
                ),
            },
            E::Read(_) => ("READERR", self.to_string()),
        };
        ErrorReply { code, message }
    }

    /// The reply frame, `-CODE message`.
    pub fn to_frame(&self) -> Frame {
        let ErrorReply { code, message } = self.reply();
        Frame::error(code, message)
    }

    /// Whether the connection must be closed after this reply: after a protocol error the
    /// byte stream cannot be trusted to start a new frame.
    pub fn closes_connection(&self) -> bool {
        matches!(self, ServerError::Protocol(_))
    }
}

#[cfg(test)]
mod tests;
