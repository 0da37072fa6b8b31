//! The worker process's side of its two boundaries: the sockets it inherits from the
//! daemon (adopted once, at start), and what the [`HostApi`] callbacks an app calls do
//! there ([`Backend`] for `Remote`: frames on the request's socket instead of the daemon's
//! channels; the `extern "C"` shims are `call::abi`'s, the same as in process).
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
//! daemon's threads and of its workers ([`set_time_slice`]); and the one a worker crosses
//! before it runs, between fork and exec: its user, group and groups ([`drop_privileges`]).
//!
//! And the signals a worker must not die of: the daemon's ([`shield_from_daemon_signals`]).
//!
//! This is an OS boundary module: `unsafe` is allowed here (and in `call::abi` and
//! `plugin::load`).
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use gatehouse_abi::{Environ, HostApi, Status};

use super::messages::{RequestIn, encode_head};
use super::proto::{FLUSH_AT, FrameIo, Kind, MAX_DATA, Put};
use crate::call::Head;
use crate::call::abi::{Backend, host_api, with_call};
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

/// Makes the child of `cmd` switch, before it execs, to exactly `groups` as its
/// supplementary groups, then to group `gid`, then to user `uid` (when given): that order,
/// as only root may set groups, and each call checked, so that a worker whose switch fails
/// does not start (spawning fails with the call's error). Used instead of `Command::uid`
/// and `gid`, which clear the supplementary groups only along with a uid, ignoring a
/// failure, and cannot set them (`Command::groups` is unstable).
pub(super) fn drop_privileges(
    cmd: &mut std::process::Command,
    uid: Option<u32>,
    gid: u32,
    groups: Vec<u32>,
) {
    use std::os::unix::process::CommandExt as _;
    let groups: Vec<libc::gid_t> = groups;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called: it makes the `setgroups`, `setgid` and
    // `setuid` system calls (async-signal-safe), reads only `groups` (allocated before the
    // fork, a valid array of `groups.len()` ids) and allocates nothing (an OS error is a
    // code, no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || uid.is_some_and(|uid| libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the child of `cmd` clear its ambient capability set before it execs, so that a
/// worker starts with no capability: a daemon given some as ambient capabilities (a unit's
/// `AmbientCapabilities=`, to start workers as other users) would otherwise pass them on
/// through `exec`, whatever user the worker switches to. Kernels older than 4.3 have no
/// ambient set (EINVAL): nothing to clear.
/// Sets the worker's file mode creation mask (`umask`) before it runs.
pub(super) fn set_umask(cmd: &mut std::process::Command, mask: u32) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called: `umask` is one system call that cannot
    // fail, with an integer argument, and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask as libc::mode_t);
            Ok(())
        });
    }
}

pub(super) fn clear_ambient_capabilities(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called: it makes one `prctl` system call with
    // integer arguments and allocates nothing (an OS error is a code, no allocation).
    unsafe {
        cmd.pre_exec(|| {
            // The variadic arguments as the kernel reads them: unsigned longs, unused ones 0.
            let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
            let zero: libc::c_ulong = 0;
            if libc::prctl(libc::PR_CAP_AMBIENT, clear, zero, zero, zero) != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
            Ok(())
        });
    }
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

/// A signal handler that does nothing.
extern "C" fn ignore_signal(_: libc::c_int) {}

/// Makes SIGHUP and SIGUSR1 harmless to a worker process: the daemon's reload and
/// reopen-logs signals, which an operator may send to every process of the service
/// (`systemctl kill -s HUP`, `killall -USR1 gatehouse` in a logrotate script: workers are
/// named `gatehouse` too) and whose default action would end a worker and its requests in
/// flight. A handler that does nothing rather than `SIG_IGN`: handlers are reset by `exec`,
/// so processes an app starts get the default actions, not an inherited "ignore".
pub fn shield_from_daemon_signals() -> std::io::Result<()> {
    for signal in [libc::SIGHUP, libc::SIGUSR1] {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler is an
        // `extern "C" fn(c_int)` that touches nothing, so it is async-signal-safe.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is a valid sigaction for the call; the old action is not wanted.
        if unsafe { libc::sigaction(signal, &raw const action, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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
/// inherit them, and closes any other descriptor this process inherited above them (what
/// the daemon's own parent left open reaches no app).
pub(crate) fn adopt_sockets(first: RawFd, n: usize) -> std::io::Result<Vec<UnixStream>> {
    let end = first.saturating_add(RawFd::try_from(n).map_err(std::io::Error::other)?);
    close_inherited(end)?;
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

/// Closes the descriptors from `from` up that this process inherited: those without
/// close-on-exec (every descriptor it opens itself has it).
fn close_inherited(from: RawFd) -> std::io::Result<()> {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= from)
        .collect();
    for fd in open {
        // SAFETY: F_GETFD reads a flag of descriptor `fd`, or fails on one that is not open
        // (the listing's own, closed since).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: `fd` was open when this program started (it is not close-on-exec) and
            // nothing owns it: the worker adopts only its sockets, below `from`, and is
            // still single-threaded, before its logger, host or apps exist.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Per-call state behind the `request` handle.
struct Remote<'a> {
    io: &'a mut FrameIo,
    /// The instance called (the owner of a WebSocket it accepts).
    plugin: &'a std::sync::Arc<Plugin>,
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

impl Backend for Remote<'_> {
    fn read_body(&mut self, cap: usize) -> Result<&[u8], Status> {
        while self.at >= self.pending.len() {
            if self.body_done {
                // After an error every read fails, as in-process: first with its code, then
                // as DISCONNECTED (there, the reader's channel has closed).
                let Some(code) = self.body_error else { return Ok(&[]) };
                self.body_error = Some(Status::DISCONNECTED.0);
                return Err(Status(code));
            }
            self.io.frame(Kind::ReadBody, |_| {});
            if self.send() != Status::OK {
                return Err(Status::DISCONNECTED);
            }
            // The daemon answers every ReadBody, also after a Gone.
            loop {
                match self.io.read() {
                    Ok(Kind::Body) if self.io.payload().is_empty() => {
                        self.body_done = true;
                        return Ok(&[]);
                    }
                    Ok(Kind::Body) => {
                        self.pending.clear();
                        self.pending.extend_from_slice(self.io.payload());
                        self.at = 0;
                        break;
                    }
                    Ok(Kind::BodyError) => {
                        let code = super::proto::Get::new(self.io.payload(), "BodyError")
                            .u32()
                            .unwrap_or(Status::ERROR.0);
                        self.body_done = true;
                        self.body_error = Some(Status::DISCONNECTED.0);
                        return Err(Status(code));
                    }
                    Ok(Kind::Gone) => self.gone = true,
                    Ok(_) | Err(_) => {
                        self.gone = true;
                        self.body_done = true;
                        self.body_error = Some(Status::DISCONNECTED.0);
                        return Err(Status::DISCONNECTED);
                    }
                }
            }
        }
        let start = self.at;
        let n = cap.min(self.pending.len() - start);
        self.at += n;
        Ok(&self.pending[start..start + n])
    }

    fn debug_log(&mut self, message: &[u8], must: bool) -> Status {
        if !self.develop_mode && !must {
            return Status::OK;
        }
        // Sent at once: a line written before a crash must reach the log.
        self.io.frame_bytes(Kind::Debug, message);
        match self.io.flush() {
            Ok(()) => Status::OK,
            Err(_) => Status::ERROR,
        }
    }

    fn log_error(&mut self, message: &[u8]) {
        self.io.frame_bytes(Kind::LogError, message);
        let _ = self.io.flush();
    }

    fn log_info(&mut self, message: &[u8]) {
        self.io.frame_bytes(Kind::LogInfo, message);
        let _ = self.io.flush();
    }

    fn start_response(&mut self, head: impl FnOnce() -> Result<Head, Status>) -> Status {
        if self.started {
            return if self.gone { Status::DISCONNECTED } else { Status::BAD_STATE };
        }
        let head = match head() {
            Ok(h) => h,
            Err(e) => return e,
        };
        self.io.frame(Kind::Head, |out| encode_head(&head, out));
        self.started = true;
        Status::OK
    }

    fn write(&mut self, data: &[u8]) -> Status {
        if !self.started {
            return Status::BAD_STATE;
        }
        if self.streaming && self.client_gone() || self.gone {
            return Status::DISCONNECTED;
        }
        if data.is_empty() {
            // An empty write still counts as one (the daemon holds the first).
            self.io.frame_bytes(Kind::Data, &[]);
        }
        for piece in data.chunks(MAX_DATA) {
            self.io.frame_bytes(Kind::Data, piece);
            if self.io.pending() >= FLUSH_AT {
                self.streaming = true;
                if self.send() != Status::OK {
                    return Status::DISCONNECTED;
                }
            }
        }
        Status::OK
    }

    fn flush(&mut self) -> Status {
        if !self.started {
            return Status::BAD_STATE;
        }
        if self.gone {
            return Status::DISCONNECTED;
        }
        self.io.frame(Kind::Flush, |_| {});
        self.streaming = true;
        self.send()
    }

    fn websocket_accept(&mut self, protocol: &[u8]) -> Result<u64, Status> {
        if self.started {
            return Err(if self.gone { Status::DISCONNECTED } else { Status::BAD_STATE });
        }
        if !self.plugin.takes_websockets() {
            return Err(Status::INVALID);
        }
        self.io.frame(Kind::WsAccept, |out| out.put_bytes(protocol));
        if self.send() != Status::OK {
            return Err(Status::DISCONNECTED);
        }
        // The daemon answers every WsAccept, also after a Gone.
        let (status, socket) = loop {
            match self.io.read() {
                Ok(Kind::WsAccepted) => {
                    let mut get = super::proto::Get::new(self.io.payload(), "WsAccepted");
                    match (get.u32(), get.u64()) {
                        (Ok(status), Ok(socket)) => break (Status(status), socket),
                        _ => break (Status::DISCONNECTED, 0),
                    }
                }
                Ok(Kind::Gone) => self.gone = true,
                Ok(_) | Err(_) => break (Status::DISCONNECTED, 0),
            }
        };
        match status {
            Status::OK => {
                super::websocket::held(self.plugin, socket);
                // The daemon answers 101: nothing else of a reply goes out.
                self.started = true;
                self.gone = true;
                Ok(socket)
            }
            Status::DISCONNECTED => {
                // The daemon answered (503), or the client left.
                self.started = true;
                self.gone = true;
                Err(status)
            }
            other => Err(other),
        }
    }
}

/// The callbacks of a call in a worker process.
static WORKER_API: HostApi = host_api::<Remote<'static>>();

/// Calls `plugin` for `req`; its reply goes out on `io` as frames, ending with `End`
/// (sent by the caller's next flush).
pub(crate) fn call(plugin: &std::sync::Arc<Plugin>, io: &mut FrameIo, req: &RequestIn<'_>) {
    let mut state = Remote {
        io,
        plugin,
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
    let status = with_call(&mut state, |request| {
        plugin.call(&Environ {
            struct_size: std::mem::size_of::<Environ>() as u32,
            vars: req.vars.as_ptr(),
            vars_len: req.vars.len(),
            params: req.params.as_ptr(),
            params_len: req.params.len(),
            uploads: req.uploads.as_ptr(),
            uploads_len: req.uploads.len(),
            request,
            host: &WORKER_API,
        })
    });
    state.io.frame(Kind::End, |out| out.put_u32(status.0));
}
