//! The worker process's side of its two boundaries: the sockets it inherits from the
//! daemon (adopted once, at start), and the [`HostApi`] callbacks an app calls, which turn
//! into frames on the request's socket instead of the daemon's channels.
//!
//! Like `ffi` in the daemon, the head and the writes are gathered, not sent one by one:
//! a reply of one piece leaves as one `write` (Head, Data, End). A `flush`, reading the
//! body, or more than [`FLUSH_AT`] bytes sends what is gathered. Once a reply streams,
//! each write first looks (without waiting) whether the daemon said the client is gone.
//!
//! The daemon's ends of the same sockets cross one boundary here too: their registration
//! with an HTTP worker's event loop ([`register`]), whose descriptor contract tokio states
//! as `unsafe`.
//!
//! And one boundary the two sides share with the kernel's scheduler: the time slice of the
//! daemon's threads and of its workers ([`set_time_slice`]).
//!
//! This is an ABI boundary module: `unsafe` is allowed here (and in `ffi` and `plugins`).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use gatehouse_abi::{Environ, HostApi, Pair, Status, Str};

use super::messages::{RequestIn, encode_head};
use super::proto::{FLUSH_AT, FrameIo, Kind, MAX_DATA, Put};
use crate::call::{bytes, guard, pairs};
use crate::plugin::load::Plugin;

/// Registers `sock` with this thread's event loop for `interest` only.
pub(crate) fn register(
    sock: UnixStream,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<UnixStream>> {
    // SAFETY: the `AsyncFd` owns `sock`, which owns its descriptor: it stays open, and
    // `as_raw_fd` returns the same one, until the `AsyncFd` is dropped or `into_inner`
    // hands the socket back.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(sock, interest) }
        .map_err(|e| e.into_parts().1)
}

/// `struct sched_attr` of `linux/sched/types.h`, its first version (48 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Sets the calling thread's time slice, keeping its policy and nice: the `sched_runtime` of
/// a fair policy, which Linux 6.12 and later take as the thread's slice (its request size
/// to EEVDF: a longer one means a later deadline, so the thread, once woken, preempts a
/// running one less readily). `None` gives back the kernel's default. Threads started
/// afterwards inherit it, and so do processes they spawn. Older kernels ignore it; a thread
/// under a real-time or idle policy is left as it is.
pub fn set_time_slice(slice: Option<std::time::Duration>) -> std::io::Result<()> {
    const SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;
    const RESET_ON_FORK: u64 = 0x01;
    let mut attr = SchedAttr::default();
    // SAFETY: `attr` is a writable `SchedAttr` of the `SIZE` bytes passed, which the kernel
    // writes at most; pid 0 is the calling thread; flags must be 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &raw mut attr, SIZE, 0u32) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if !matches!(attr.policy as i32, libc::SCHED_OTHER | libc::SCHED_BATCH) {
        return Ok(());
    }
    attr.size = SIZE;
    attr.flags &= RESET_ON_FORK;
    attr.runtime = slice.map_or(0, |s| u64::try_from(s.as_nanos()).unwrap_or(u64::MAX));
    attr.deadline = 0;
    attr.period = 0;
    // SAFETY: `attr` is a valid `SchedAttr` whose `size` says its length, read only during
    // the call; pid 0 is the calling thread; flags must be 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0u32) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Takes the sockets the daemon mapped to descriptors `first..first + n` of this process
/// (see `worker::spawn`), marking them close-on-exec so an app's own children do not
/// inherit them.
pub(crate) fn adopt_sockets(first: RawFd, n: usize) -> std::io::Result<Vec<UnixStream>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let fd = first + RawFd::try_from(i).map_err(std::io::Error::other)?;
        // SAFETY: the daemon started this process with exactly these descriptors open (the
        // spawner maps them to `first..first + n`, and says `n` in the environment); they
        // are taken once, here, before any other code in this process could own them.
        // fcntl(F_GETFD) below fails on a descriptor that is not open.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
        let kind = rustix::fs::fstat(&owned)?.st_mode & rustix::fs::FileType::Socket.as_raw_mode();
        if kind == 0 {
            // Not ours: leave it open (forget it) and say so.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(owned);
            return Err(std::io::Error::other(format!("descriptor {fd} is not a socket")));
        }
        out.push(UnixStream::from(owned));
    }
    Ok(out)
}

/// Per-call state behind the `request` handle.
struct Remote<'a> {
    io: &'a mut FrameIo,
    develop_mode: bool,
    /// The body chunk being read, and how far.
    pending: Vec<u8>,
    at: usize,
    body_done: bool,
    /// How the body failed, when that came with the request (told at the end of `pending`).
    body_error: Option<u32>,
    started: bool,
    /// Something was sent before `handle` returned: the reply streams.
    streaming: bool,
    /// The daemon said the client left (or the socket failed): writes are dropped.
    gone: bool,
}

impl Remote<'_> {
    /// Sends what is gathered.
    fn send(&mut self) -> Status {
        match self.io.flush() {
            Ok(()) => Status::OK,
            Err(_) => {
                self.gone = true;
                Status::DISCONNECTED
            }
        }
    }

    /// Whether the daemon said the client left, looking without waiting.
    fn client_gone(&mut self) -> bool {
        if self.gone {
            return true;
        }
        let readable = self.io.readable(std::time::Duration::ZERO);
        if readable {
            // Only `Gone` can come now (a body chunk answers a ReadBody, and none is asked).
            match self.io.read() {
                Ok(Kind::Gone) | Err(_) => self.gone = true,
                Ok(_) => {}
            }
        }
        self.gone
    }
}

/// # Safety
/// `request` must be the `Remote` pointer [`call`] passed in the environ, during the app's
/// `handle` call, with no other reference to it alive.
unsafe fn state<'s>(request: *mut c_void) -> Option<&'s mut Remote<'s>> {
    // SAFETY: guaranteed by the caller; null is checked by `as_mut`.
    unsafe { request.cast::<Remote<'s>>().as_mut() }
}

fn negative(s: Status) -> isize {
    -(s.0 as isize)
}

unsafe extern "C" fn read_body(request: *mut c_void, buf: *mut u8, cap: usize) -> isize {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return negative(Status::INVALID) };
    if buf.is_null() && cap > 0 {
        return negative(Status::INVALID);
    }
    guard(negative(Status::ERROR), || {
        if cap == 0 {
            return 0;
        }
        while st.at >= st.pending.len() {
            if st.body_done {
                // After an error every read fails, as in-process: first with its code, then
                // as DISCONNECTED (there, the reader's channel has closed).
                let Some(code) = st.body_error else { return 0 };
                st.body_error = Some(Status::DISCONNECTED.0);
                return -(code as isize);
            }
            st.io.frame(Kind::ReadBody, |_| {});
            if st.send() != Status::OK {
                return negative(Status::DISCONNECTED);
            }
            // The daemon answers every ReadBody, also after a Gone.
            loop {
                match st.io.read() {
                    Ok(Kind::Body) if st.io.payload().is_empty() => {
                        st.body_done = true;
                        return 0;
                    }
                    Ok(Kind::Body) => {
                        st.pending.clear();
                        st.pending.extend_from_slice(st.io.payload());
                        st.at = 0;
                        break;
                    }
                    Ok(Kind::BodyError) => {
                        let code = super::proto::Get::new(st.io.payload(), "BodyError")
                            .u32()
                            .unwrap_or(Status::ERROR.0);
                        st.body_done = true;
                        st.body_error = Some(Status::DISCONNECTED.0);
                        return -(code as isize);
                    }
                    Ok(Kind::Gone) => st.gone = true,
                    Ok(_) | Err(_) => {
                        st.gone = true;
                        st.body_done = true;
                        st.body_error = Some(Status::DISCONNECTED.0);
                        return negative(Status::DISCONNECTED);
                    }
                }
            }
        }
        let n = cap.min(st.pending.len() - st.at).min(isize::MAX as usize);
        // SAFETY: the app guarantees `buf` has room for `cap >= n` bytes; the source is `n`
        // bytes of `pending` from `at`.
        unsafe { std::ptr::copy_nonoverlapping(st.pending[st.at..].as_ptr(), buf, n) };
        st.at += n;
        n as isize
    })
}

unsafe extern "C" fn debug_log(request: *mut c_void, message: Str, must: u32) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard(Status::ERROR, || {
        if !st.develop_mode && must == 0 {
            return Status::OK;
        }
        // Sent at once: a line written before a crash must reach the log.
        st.io.frame_bytes(Kind::Debug, message);
        match st.io.flush() {
            Ok(()) => Status::OK,
            Err(_) => Status::ERROR,
        }
    })
}

unsafe extern "C" fn log_error(request: *mut c_void, message: Str) {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard((), || {
        st.io.frame_bytes(Kind::LogError, message);
        let _ = st.io.flush();
    });
}

unsafe extern "C" fn start_response(
    request: *mut c_void,
    status: u32,
    headers: *const Pair,
    headers_len: usize,
) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    // SAFETY: the app passes `headers_len` valid pairs for the duration of this call.
    let Some(headers) = (unsafe { pairs(headers, headers_len) }) else { return Status::INVALID };
    guard(Status::ERROR, || {
        if st.started {
            return if st.gone { Status::DISCONNECTED } else { Status::BAD_STATE };
        }
        // SAFETY: the pairs' strings are valid for this call, which `head` runs in.
        let head = match unsafe { crate::call::head(status, headers) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        st.io.frame(Kind::Head, |out| encode_head(&head, out));
        st.started = true;
        Status::OK
    })
}

unsafe extern "C" fn write(request: *mut c_void, data: Str) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let data = unsafe { bytes(&data) };
    guard(Status::ERROR, || {
        if !st.started {
            return Status::BAD_STATE;
        }
        if st.streaming && st.client_gone() || st.gone {
            return Status::DISCONNECTED;
        }
        if data.is_empty() {
            // An empty write still counts as one (the daemon holds the first).
            st.io.frame_bytes(Kind::Data, &[]);
        }
        for piece in data.chunks(MAX_DATA) {
            st.io.frame_bytes(Kind::Data, piece);
            if st.io.pending() >= FLUSH_AT {
                st.streaming = true;
                if st.send() != Status::OK {
                    return Status::DISCONNECTED;
                }
            }
        }
        Status::OK
    })
}

unsafe extern "C" fn flush(request: *mut c_void) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    guard(Status::ERROR, || {
        if !st.started {
            return Status::BAD_STATE;
        }
        if st.gone {
            return Status::DISCONNECTED;
        }
        st.io.frame(Kind::Flush, |_| {});
        st.streaming = true;
        st.send()
    })
}

/// The callbacks of a call in a worker process.
static WORKER_API: HostApi = HostApi {
    struct_size: std::mem::size_of::<HostApi>() as u32,
    read_body: Some(read_body),
    debug_log: Some(debug_log),
    log_error: Some(log_error),
    start_response: Some(start_response),
    write: Some(write),
    flush: Some(flush),
};

/// Calls `plugin` for `req`; its reply goes out on `io` as frames, ending with `End`
/// (sent by the caller's next flush).
pub(crate) fn call(plugin: &Plugin, io: &mut FrameIo, req: &RequestIn<'_>) {
    let mut state = Remote {
        io,
        develop_mode: req.develop_mode,
        pending: Vec::new(),
        at: 0,
        body_done: false,
        body_error: None,
        started: false,
        streaming: false,
        gone: false,
    };
    // The body frames the daemon sent with the request, read before the app runs (so that
    // only `Gone` can arrive unasked while it runs).
    for _ in 0..req.preloaded {
        match state.io.read() {
            Ok(Kind::Body) if state.io.payload().is_empty() => state.body_done = true,
            Ok(Kind::Body) => state.pending.extend_from_slice(state.io.payload()),
            Ok(Kind::BodyError) => {
                let code = super::proto::Get::new(state.io.payload(), "BodyError").u32();
                state.body_error = Some(code.unwrap_or(Status::ERROR.0));
                state.body_done = true;
            }
            // The socket failed or the daemon broke the framing: the app sees no body and
            // its writes are dropped.
            Ok(_) | Err(_) => {
                state.gone = true;
                state.body_done = true;
                break;
            }
        }
    }
    let environ = Environ {
        struct_size: std::mem::size_of::<Environ>() as u32,
        vars: req.vars.as_ptr(),
        vars_len: req.vars.len(),
        params: req.params.as_ptr(),
        params_len: req.params.len(),
        uploads: req.uploads.as_ptr(),
        uploads_len: req.uploads.len(),
        request: std::ptr::from_mut(&mut state).cast(),
        host: &WORKER_API,
    };
    let status = plugin.call(&environ);
    state.io.frame(Kind::End, |out| out.put_u32(status.0));
}
