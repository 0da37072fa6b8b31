//! The framing spoken between the daemon and a worker process over a Unix stream socket.
//!
//! A frame is a 5-byte head, the payload's length (u32, little-endian) and its kind (one
//! byte), then the payload. Numbers are little-endian; a byte string is its length (u32)
//! then its bytes. Frames are written into a buffer and sent with one `write` when the
//! writer flushes, so a whole reply (head, body, end) is usually one system call each way.
//!
//! A worker has one control socket and one socket per app thread. On a request socket
//! exactly one request is in flight at a time:
//!
//! ```text
//! daemon → worker   Request   (id, develop mode, file, group NAME, vars, params, uploads)
//! worker → daemon   Head? Data* Flush* ReadBody* Debug* LogError* LogInfo* WsAccept?
//!                   then End | Refused
//! daemon → worker   Body (a chunk; empty: the end) | BodyError, each answering a ReadBody
//!                   WsAccepted, answering a WsAccept
//!                   Gone (the client left; later writes are dropped), at most once
//! ```
//!
//! On the control socket the daemon sends `Init` (the configuration's text and the alias),
//! `Refresh` (look for replaced plugin files) and `Stop` (no request is in flight: run the
//! apps' shutdown and exit); the worker sends `Ready` and its own `Log` records. For the
//! WebSockets its apps accepted, the daemon sends `WsEvent`s (each answered by a
//! `WsEventDone`), and the worker its apps' `WsSend`s and `WsClose`s.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// The environment variable that tells a worker how many request sockets (app threads)
/// it has.
pub(crate) const CONNS_ENV: &str = "GATEHOUSE_WORKER_CONNS";
/// The descriptor of the control socket; request sockets follow it.
pub(crate) const CONTROL_FD: i32 = 3;

/// The largest payload accepted: a larger length means a broken or hostile peer.
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The largest `Data` frame a worker writes (a bigger write is split).
pub(crate) const MAX_DATA: usize = 1024 * 1024;

/// Buffered output past which a writer flushes on its own.
pub(crate) const FLUSH_AT: usize = 256 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Control, daemon → worker: the configuration and the alias to serve.
    Init = 1,
    /// Control, worker → daemon: the worker serves.
    Ready = 2,
    /// Control, worker → daemon: a log record (level, target, message).
    Log = 3,
    /// Control, daemon → worker: look for replaced plugin files.
    Refresh = 4,
    /// Control, daemon → worker: nothing is in flight; shut the apps down and exit.
    Stop = 5,
    /// Control, worker → daemon: the plugins it has loaded, as the status page shows them
    /// (a JSON array), sent when that changes.
    Plugins = 6,
    /// Control, daemon → worker: an event of a WebSocket the worker's app accepted
    /// (socket u64, kind u32, close code u32, data).
    WsEvent = 7,
    /// Control, worker → daemon: the app returned from that event (socket u64, status u32).
    WsEventDone = 8,
    /// Control, worker → daemon: an app's send (socket u64, kind u32, data).
    WsSend = 9,
    /// Control, worker → daemon: an app's close (socket u64, code u32, reason).
    WsClose = 15,
    /// A request.
    Request = 10,
    /// A chunk of the request body; empty: the body ended.
    Body = 11,
    /// The request body failed (an ABI status code).
    BodyError = 12,
    /// The client left.
    Gone = 13,
    /// The response head.
    Head = 20,
    /// Response bytes.
    Data = 21,
    /// Send what was written now (the response streams).
    Flush = 22,
    /// The app wants the next body chunk.
    ReadBody = 23,
    /// A debug-log line.
    Debug = 24,
    /// An error-log line from the app.
    LogError = 25,
    /// `handle` returned this ABI status; the request is over.
    End = 26,
    /// The worker answers without the app: 0 the file is missing, 1 it does not load.
    Refused = 27,
    /// An informational error-log line from the app.
    LogInfo = 28,
    /// The app accepts the request's WebSocket (the protocol).
    WsAccept = 29,
    /// The answer to `WsAccept`: the status, and the socket's id.
    WsAccepted = 14,
}

impl TryFrom<u8> for Kind {
    type Error = ProtoError;
    fn try_from(b: u8) -> Result<Kind, ProtoError> {
        use Kind::*;
        Ok(match b {
            1 => Init,
            2 => Ready,
            3 => Log,
            4 => Refresh,
            5 => Stop,
            6 => Plugins,
            7 => WsEvent,
            8 => WsEventDone,
            9 => WsSend,
            15 => WsClose,
            10 => Request,
            11 => Body,
            12 => BodyError,
            13 => Gone,
            14 => WsAccepted,
            20 => Head,
            21 => Data,
            22 => Flush,
            23 => ReadBody,
            24 => Debug,
            25 => LogError,
            26 => End,
            27 => Refused,
            28 => LogInfo,
            29 => WsAccept,
            other => return Err(ProtoError::Kind(other)),
        })
    }
}

/// A frame that does not follow the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// An unknown kind byte.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A length past [`MAX_FRAME`].
    #[error("a frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
    /// The payload ends inside a field.
    #[error("a {0} frame ends early")]
    Short(&'static str),
    /// A frame that has no business here.
    #[error("unexpected {0:?} frame")]
    Unexpected(Kind),
}

impl From<ProtoError> for io::Error {
    fn from(e: ProtoError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Appends fields to a frame's payload.
pub(crate) trait Put {
    /// One byte.
    fn put_u8(&mut self, v: u8);
    /// A u16.
    fn put_u16(&mut self, v: u16);
    /// A u32.
    fn put_u32(&mut self, v: u32);
    /// A u64.
    fn put_u64(&mut self, v: u64);
    /// A byte string: its length, then its bytes.
    fn put_bytes(&mut self, v: &[u8]);
}

/// Counts the bytes a payload would take, without writing them.
#[derive(Debug, Default)]
pub(crate) struct Count(pub usize);

impl Put for Count {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn put_u64(&mut self, _: u64) {
        self.0 += 8;
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.0 += 4 + v.len();
    }
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, v: &[u8]) {
        // Frames are at most MAX_FRAME long, so every field fits a u32.
        self.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.extend_from_slice(v);
    }
}

/// Reads fields from a payload, in order.
#[derive(Debug)]
pub(crate) struct Get<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Get<'a> {
    /// Reads `buf`, the payload of a `what` frame (named in errors).
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Get { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(ProtoError::Short(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.array::<1>()?[0])
    }
    /// A u16.
    pub(crate) fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// A u32.
    pub(crate) fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A u64.
    pub(crate) fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A byte string.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items that each take at least `min` bytes: refused when the payload
    /// cannot hold them (so a hostile count cannot make the reader reserve memory).
    pub(crate) fn count(&mut self, min: usize) -> Result<usize, ProtoError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min.max(1)) > self.buf.len() {
            return Err(ProtoError::Short(self.what));
        }
        Ok(n)
    }
}

/// Appends a frame of `kind` whose payload `fill` writes to `out`.
pub(crate) fn push_frame(out: &mut Vec<u8>, kind: Kind, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind as u8]);
    fill(out);
    let len = u32::try_from(out.len() - at - 5).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Looks for a whole frame at the start of `buf`: its kind, and where its payload is, and
/// how many bytes it takes; `Ok(None)` when more bytes are needed.
pub(crate) fn parse_frame(
    buf: &[u8],
) -> Result<Option<(Kind, std::ops::Range<usize>)>, ProtoError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let kind = Kind::try_from(buf[4])?;
    if len > MAX_FRAME {
        return Err(ProtoError::TooLarge(len));
    }
    Ok((buf.len() >= 5 + len).then_some((kind, 5..5 + len)))
}

/// One end of a framed socket: buffered reads, and frames gathered until [`FrameIo::flush`].
#[derive(Debug)]
pub(crate) struct FrameIo {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    out: Vec<u8>,
    payload: Vec<u8>,
}

impl FrameIo {
    /// Frames over `stream`.
    pub(crate) fn new(stream: UnixStream) -> io::Result<FrameIo> {
        let writer = stream.try_clone()?;
        Ok(FrameIo {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            out: Vec::with_capacity(16 * 1024),
            payload: Vec::new(),
        })
    }

    /// Ends the socket (its peer closed it, or broke the framing): the peer sees its end.
    pub(crate) fn close(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }

    /// Waits until a frame can be read, or the socket ended: a `poll` for input only. A
    /// blocking read would also be woken whenever the peer reads what this side wrote (the
    /// kernel wakes a socket's sleepers when its send buffer drains); measured, that cost
    /// about 0.2 more context switches per request.
    pub(crate) fn wait_readable(&self) {
        if self.reader.buffer().is_empty() {
            while self.poll_in(None) == Err(rustix::io::Errno::INTR) {}
        }
    }

    /// Whether a frame can be read without waiting longer than `wait` for its first byte.
    pub(crate) fn readable(&self, wait: std::time::Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let wait = rustix::event::Timespec {
            tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        matches!(self.poll_in(Some(&wait)), Ok(n) if n > 0)
    }

    /// `poll`s the socket for input (without a timeout: until it has some, or ended).
    fn poll_in(&self, wait: Option<&rustix::event::Timespec>) -> rustix::io::Result<usize> {
        let mut fds = [rustix::event::PollFd::new(&self.writer, rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut fds, wait)
    }

    /// Adds a frame of `kind` whose payload `fill` writes.
    pub(crate) fn frame(&mut self, kind: Kind, fill: impl FnOnce(&mut Vec<u8>)) {
        push_frame(&mut self.out, kind, fill);
    }

    /// Adds a frame whose payload is `bytes`.
    pub(crate) fn frame_bytes(&mut self, kind: Kind, bytes: &[u8]) {
        self.frame(kind, |b| b.extend_from_slice(bytes));
    }

    /// Bytes gathered and not sent yet.
    pub(crate) fn pending(&self) -> usize {
        self.out.len()
    }

    /// Sends every gathered frame.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let r = self.writer.write_all(&self.out);
            self.out.clear();
            r?;
        }
        Ok(())
    }

    /// Reads the next frame: its kind; the payload is [`FrameIo::payload`] until the next read.
    pub(crate) fn read(&mut self) -> io::Result<Kind> {
        let mut head = [0u8; 5];
        self.reader.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = Kind::try_from(head[4])?;
        if len > MAX_FRAME {
            return Err(ProtoError::TooLarge(len).into());
        }
        self.payload.clear();
        self.payload.resize(len, 0);
        self.reader.read_exact(&mut self.payload)?;
        Ok(kind)
    }

    /// The payload of the frame last read.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload of the frame last read (to keep it while reading others).
    pub(crate) fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    /// Gives a taken payload's buffer back for reuse.
    pub(crate) fn give_back(&mut self, buf: Vec<u8>) {
        if buf.capacity() > self.payload.capacity() {
            self.payload = buf;
        }
    }
}

/// A log level as one byte.
pub(crate) fn level_byte(level: log::Level) -> u8 {
    level as u8
}

/// A byte as a log level (unknown values are errors).
pub(crate) fn byte_level(b: u8) -> log::Level {
    match b {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        5 => log::Level::Trace,
        _ => log::Level::Error,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (FrameIo::new(a).unwrap(), FrameIo::new(b).unwrap());
        a.frame(Kind::Head, |p| {
            p.put_u16(200);
            p.put_u8(1);
            p.put_u64(u64::MAX);
            p.put_bytes(b"content-type");
            p.put_u32(7);
        });
        a.frame_bytes(Kind::Data, b"");
        a.frame_bytes(Kind::Data, &[0xff; 70_000]);
        a.frame(Kind::End, |p| p.put_u32(0));
        a.flush().unwrap();
        assert_eq!(b.read().unwrap(), Kind::Head);
        let mut g = Get::new(b.payload(), "head");
        assert_eq!((g.u16().unwrap(), g.u8().unwrap()), (200, 1));
        assert_eq!(g.u64().unwrap(), u64::MAX);
        assert_eq!(g.bytes().unwrap(), b"content-type");
        assert_eq!(g.u32().unwrap(), 7);
        assert_eq!(g.u8(), Err(ProtoError::Short("head")));
        assert_eq!(b.read().unwrap(), Kind::Data);
        assert!(b.payload().is_empty());
        assert_eq!(b.read().unwrap(), Kind::Data);
        assert_eq!(b.payload().len(), 70_000);
        assert_eq!(b.read().unwrap(), Kind::End);
        drop(a);
        assert_eq!(b.read().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn bad_frames_are_refused() {
        let table: &[(&[u8], &str)] = &[
            (&[0, 0, 0, 0, 99], "unknown frame kind 99"),
            (&[0, 0, 0, 0, 0], "unknown frame kind 0"),
            (&[0xff, 0xff, 0xff, 0x7f, 21], "larger than the limit"),
            (&[1, 0, 0, 1, 21], "larger than the limit"),
            (&[9, 0, 0, 0, 21, 1, 2], "failed to fill whole buffer"),
        ];
        for (bytes, expected) in table {
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(bytes).unwrap();
            drop(a);
            let err = FrameIo::new(b).unwrap().read().unwrap_err();
            assert!(err.to_string().contains(expected), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn fields_refuse_short_payloads_and_huge_counts() {
        let table: &[(&[u8], usize)] = &[(&[], 0), (&[5, 0, 0, 0, b'a'], 1), (&[1, 0], 2)];
        for (bytes, _) in table {
            assert_eq!(Get::new(bytes, "x").bytes(), Err(ProtoError::Short("x")), "{bytes:?}");
        }
        // A count of 2^32-1 items in a 4-byte payload is refused before anything is reserved.
        assert_eq!(Get::new(&[0xff; 4], "x").count(8), Err(ProtoError::Short("x")));
        assert_eq!(Get::new(&[2, 0, 0, 0, 1, 2], "x").count(1), Ok(2));
    }

    #[test]
    fn levels_round_trip() {
        for level in [log::Level::Error, log::Level::Warn, log::Level::Info, log::Level::Debug] {
            assert_eq!(byte_level(level_byte(level)), level);
        }
    }
}
