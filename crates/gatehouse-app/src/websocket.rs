//! WebSockets: the [`Socket`] an app accepts, the [`Message`]s it gets, and the cloneable
//! [`Sockets`] handle that sends on any of its sockets from any thread.

use gatehouse_abi::{Status, WebSocketKind};

use crate::ffi::SocketApi;

/// A message on a WebSocket, or its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// The socket is closed (by the client, the app, a limit, or the daemon's stop): the
    /// last message of the socket. `code` is the close code (1005: the client's close frame
    /// had none; 1006: the connection ended without one).
    Close {
        /// The close code.
        code: u16,
        /// The close reason (the client's, or the daemon's).
        reason: &'a str,
    },
}

/// A send or close on a socket that is closed (or closing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the WebSocket is closed")
    }
}

impl std::error::Error for Closed {}

/// The host's socket calls for one app instance: [`Init::sockets`](crate::Init::sockets).
/// `Send + Sync + Copy`: keep it and use it from any thread.
#[derive(Debug, Clone, Copy)]
pub struct Sockets {
    api: SocketApi,
}

impl Sockets {
    pub(crate) fn new(api: SocketApi) -> Sockets {
        Sockets { api }
    }

    /// The socket with this id (see [`Socket::id`]).
    pub fn socket(&self, id: u64) -> Socket {
        Socket { id, api: self.api }
    }
}

/// One accepted WebSocket: its id and the calls to send on it and close it, from any
/// thread, at any time (`Send + Sync + Copy`). A send waits while the client is slower than
/// the app (a bounded queue); a client that reads nothing for the alias's `timeout` is
/// closed (1008).
#[derive(Debug, Clone, Copy)]
pub struct Socket {
    id: u64,
    api: SocketApi,
}

impl PartialEq for Socket {
    fn eq(&self, other: &Socket) -> bool {
        self.id == other.id
    }
}

impl Eq for Socket {}

impl std::hash::Hash for Socket {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Socket {
    pub(crate) fn new(id: u64, api: SocketApi) -> Socket {
        Socket { id, api }
    }

    /// Its id: unique for the daemon's life, never reused.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Closed> {
        status(self.api.send(self.id, WebSocketKind::TEXT, text.as_bytes()))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Closed> {
        status(self.api.send(self.id, WebSocketKind::BINARY, data))
    }

    /// Closes the socket with `code` (1000 for a normal close, or 3000..=4999 of the app's
    /// own) and `reason` (at most 123 bytes); messages sent before go out first. The app
    /// then gets [`Message::Close`].
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Closed> {
        status(self.api.close(self.id, code, reason))
    }
}

fn status(s: Status) -> Result<(), Closed> {
    if s == Status::OK { Ok(()) } else { Err(Closed) }
}
