//! The daemon's side of an isolated alias: its worker processes, started, watched and
//! replaced, and the pool of request sockets they serve on.
//!
//! One *slot* thread per process keeps one worker running: it spawns it (the daemon's own
//! binary, `gatehouse worker URL`), relays its log records, checks its memory each
//! [`TICK`], and when the worker exits, reaps it, reports how it ended (signal, exit code,
//! the requests that were in flight) and starts the next one: at once after a recycle or a
//! timeout kill, after a growing pause ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]) after
//! crashes that follow each other.
//!
//! Requests take an idle socket ([`Group::acquire`]) and give it back
//! ([`Group::release`]); a worker being recycled (`maximum_requests`, `memory_limit`, a
//! reload that replaced the group) gets no new request and is told to stop once its last
//! one is done, so recycling loses nothing.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt as _, FdMapping};

use super::messages::{LogIn, decode_log};
use super::proto::{CONNS_ENV, CONTROL_FD, FrameIo, Kind};
use super::sockets::{Conn, NoConn, Outcome, Sock, Worker, WorkerStatus};
use super::spec::{Spec, describe_exit, pick, spec};
use crate::call::deadline::{Deadline, Runner};
use crate::logs::capture;

mod recycle;

/// How often a slot thread looks at its worker's memory.
pub(crate) const TICK: Duration = Duration::from_millis(250);
/// The first pause before restarting a worker that crashed soon after the previous one.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest pause between restarts.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A worker that lived this long resets the backoff when it dies.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// How long a dead worker's end waits for its output to be logged (a child it left behind
/// may keep the pipe open).
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// Decrements the count of waiting requests when dropped.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
struct State {
    stopping: bool,
    idle: VecDeque<Conn>,
    /// Workers started and not dead yet (ready or starting).
    workers: Vec<Arc<Worker>>,
    /// Slots waiting out a pause after a crash or a failed start.
    down: usize,
    /// Why the last start or worker failed.
    last_failure: Option<String>,
    /// The last worker to end failed before it was ready (or could not be spawned).
    failing_start: bool,
}

#[derive(Debug)]
struct Inner {
    /// The alias's URL, for messages.
    label: String,
    spec: Result<Spec, String>,
    /// The slot threads were started (read without the lock by every request).
    started: AtomicBool,
    state: Mutex<State>,
    /// Wakes `stop_and_wait` when a worker is gone.
    cv: Condvar,
    /// Wakes requests waiting for a socket (any thread's event loop).
    notify: tokio::sync::Notify,
    /// Requests waiting for a socket now.
    waiting: std::sync::atomic::AtomicUsize,
    /// The daemon is stopping: a worker that ends is not replaced (its successor would
    /// start only to be stopped, or killed before its apps' `shutdown` if it is still
    /// starting when `shutdown_timeout` runs out).
    no_successors: AtomicBool,
    /// The fingerprint of the scripts the workers serve, as last seen (0: not yet).
    scripts: AtomicU64,
}

/// The worker processes of one isolated alias. Dropping it (the last host that used it is
/// gone) recycles every worker gracefully.
#[derive(Debug)]
pub struct Group {
    inner: Arc<Inner>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

impl Group {
    /// The group of alias number `index` of `config` (not started: see [`Group::start`]).
    pub(crate) fn new(config: &gatehouse_config::Config, index: usize) -> Group {
        let alias = &config.aliases[index];
        let spec = match &alias.isolation {
            gatehouse_config::Isolation::Process(settings) => {
                spec(config, index, alias.threads, settings)
            }
            gatehouse_config::Isolation::InProcess => Err("not an isolated alias".to_owned()),
        };
        Group {
            inner: Arc::new(Inner {
                label: alias.url.clone(),
                spec,
                started: AtomicBool::new(false),
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
                notify: tokio::sync::Notify::new(),
                waiting: std::sync::atomic::AtomicUsize::new(0),
                no_successors: AtomicBool::new(false),
                scripts: AtomicU64::new(0),
            }),
        }
    }

    /// Starts the slot threads (once).
    pub(crate) fn start(&self) {
        Inner::start(&self.inner);
    }

    /// An idle socket, waiting (asynchronously) for one until `deadline`.
    pub(crate) async fn acquire(&self, deadline: Instant) -> Result<Conn, NoConn> {
        if !self.inner.started.load(Ordering::Acquire) {
            Inner::start(&self.inner);
        }
        if let Some(conn) = self.try_acquire()? {
            return Ok(conn);
        }
        let queue = self.inner.spec.as_ref().map_or(0, |s| s.queue);
        let waiting = self.inner.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let _waiting = Waiting(&self.inner.waiting);
        if waiting > queue {
            return Err(NoConn::Busy { waiting: waiting - 1 });
        }
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(conn) = self.try_acquire()? {
                return Ok(conn);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NoConn::Timeout);
            }
            let _ = actix_web::rt::time::timeout(deadline - now, notified).await;
        }
    }

    /// An idle socket if there is one now.
    fn try_acquire(&self) -> Result<Option<Conn>, NoConn> {
        let inner = &self.inner;
        let mut state = inner.lock();
        if state.stopping {
            return Err(NoConn::Stopping);
        }
        // The least busy worker (two Python interpreters are two GILs: requests in flight
        // spread over the workers), and of its sockets the one given back last: with few
        // requests in flight, the same worker thread serves them with its caches warm (at
        // one connection, alternating between two workers measured up to 25% slower).
        //
        // But never over more workers than there are CPUs to run them: with more workers
        // than CPUs, spreading buys no parallelism, only process switches and cold caches.
        // Requests then go to the first `spread` workers (in start order) that have a free
        // socket; the others take what those cannot (every thread busy). On one CPU, the
        // seed's multipart POST through two Python workers at 64 connections measured
        // 9.45k req/s spread against 10.25k packed (docs/benchmarks.md, "Two Python workers on one core").
        let spread = inner.spec.as_ref().map_or(usize::MAX, |s| s.spread);
        let spread = (spread < state.workers.len()).then_some(spread);
        let rank = |c: &Conn| match spread {
            Some(_) => {
                state.workers.iter().position(|w| Arc::ptr_eq(w, &c.worker)).unwrap_or(usize::MAX)
            }
            None => 0,
        };
        let idle = state.idle.iter().map(|c| (rank(c), c.worker.busy.load(Ordering::Acquire)));
        if let Some(conn) = pick(idle, spread).and_then(|i| state.idle.remove(i)) {
            conn.worker.busy.fetch_add(1, Ordering::AcqRel);
            conn.worker.served.fetch_add(1, Ordering::AcqRel);
            return Ok(Some(conn));
        }
        let processes = inner.spec.as_ref().map_or(0, |s| s.settings.processes);
        // Every slot waits out a pause after workers that failed to start: the app is
        // broken, not busy (after crashes of running workers, requests wait instead).
        if state.workers.is_empty() && state.down >= processes && state.failing_start {
            let why = state.last_failure.clone().unwrap_or_else(|| "not started".to_owned());
            return Err(NoConn::Down(why));
        }
        Ok(None)
    }

    /// Gives a socket back after a request that ended with `outcome` (a broken socket is
    /// dropped, and its worker recycled).
    pub(crate) fn release(&self, conn: Conn, outcome: Outcome) {
        let inner = &self.inner;
        let worker = Arc::clone(&conn.worker);
        let max = inner.spec.as_ref().ok().and_then(|s| s.settings.maximum_requests);
        let mut state = inner.lock();
        worker.busy.fetch_sub(1, Ordering::AcqRel);
        if outcome == Outcome::Died && !worker.dead.load(Ordering::Acquire) {
            // Its socket ended and its slot has not seen it die (yet: it may be dying now).
            // Either way it gets no new request; if it lives on, it is stopped when idle.
            worker.retiring.store(true, Ordering::Release);
        }
        if outcome == Outcome::Abandoned && !worker.dead.load(Ordering::Acquire) {
            worker.retiring.store(true, Ordering::Release);
            worker.kill(
                "a request it was serving was abandoned midway (its HTTP worker stopped)".into(),
            );
        }
        if outcome == Outcome::Broken && !worker.dead.load(Ordering::Acquire) {
            log::error!("{}: worker {} broke the framing; recycling it", inner.label, worker.pid);
            worker.retiring.store(true, Ordering::Release);
        }
        if let Some(max) = max
            && worker.served.load(Ordering::Acquire) >= max
            && !worker.retiring.swap(true, Ordering::AcqRel)
        {
            log::info!(
                "{}: worker {} served its maximum_requests ({max}); recycling it",
                inner.label,
                worker.pid
            );
        }
        let retiring = worker.retiring.load(Ordering::Acquire);
        if retiring || outcome != Outcome::Done || worker.dead.load(Ordering::Acquire) {
            drop(conn);
            state.idle.retain(|c| !Arc::ptr_eq(&c.worker, &worker));
            if retiring && worker.busy.load(Ordering::Acquire) == 0 {
                worker.send_control(Kind::Stop);
            }
        } else {
            state.idle.push_back(conn);
            drop(state);
            inner.notify.notify_one();
        }
    }

    /// The daemon is stopping: workers that end from now on are not replaced; the running
    /// ones serve on until [`Group::stop_and_wait`].
    pub(crate) fn no_successors(&self) {
        self.inner.no_successors.store(true, Ordering::Release);
    }

    /// Kills the worker with pid `pid` (serving request `request_id`, past its timeout);
    /// its slot starts a new one at once.
    pub(crate) fn kill_overdue(&self, pid: u32, request_id: u64, timeout: Duration) {
        let state = self.inner.lock();
        if let Some(w) = state.workers.iter().find(|w| w.pid == pid) {
            w.kill(format!("request {request_id} ran past its timeout of {timeout:?}"));
        }
    }

    /// Asks every worker to look for replaced plugin files (a reload's refresh).
    pub(crate) fn refresh(&self) {
        let state = self.inner.lock();
        for w in &state.workers {
            w.send_control(Kind::Refresh);
        }
    }

    /// Stops every worker (each after its requests in flight) and waits until they are
    /// gone or `timeout` passed; the ones left are killed.
    pub(crate) fn stop_and_wait(&self, timeout: Duration) {
        self.inner.stop();
        let deadline = Instant::now() + timeout;
        let mut state = self.inner.lock();
        while !state.workers.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                for w in &state.workers {
                    w.kill(format!("it did not stop within {timeout:?}"));
                }
                break;
            }
            state = self
                .inner
                .cv
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// How many workers are ready (their apps loaded) and not being replaced.
    pub(crate) fn ready_workers(&self) -> usize {
        let state = self.inner.lock();
        state.workers.iter().filter(|w| state.serving(w)).count()
    }

    /// The user the workers run as, when it is not the daemon's.
    pub(crate) fn uid(&self) -> Option<u32> {
        self.inner.spec.as_ref().ok().and_then(|s| s.ids.uid)
    }

    /// The running workers: pid, the requests each was given and its plugins (status page).
    pub(crate) fn workers(&self) -> Vec<WorkerStatus> {
        let state = self.inner.lock();
        state
            .workers
            .iter()
            .map(|w| WorkerStatus {
                pid: w.pid,
                requests: w.served.load(Ordering::Relaxed),
                plugins: w.plugins.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            })
            .collect()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Something changed for every waiter: sockets added, a worker gone, stopping.
    fn wake_all(&self) {
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    fn start(this: &Arc<Inner>) {
        let mut state = this.lock();
        if state.stopping || this.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let processes = match &this.spec {
            Ok(spec) => {
                if spec.spread < spec.settings.processes {
                    log::info!(
                        "{}: {} worker processes and {} CPU(s) to run them: requests go to \
                         the first {} until all their threads are busy, then to the others",
                        this.label,
                        spec.settings.processes,
                        spec.spread,
                        spec.spread
                    );
                }
                spec.settings.processes
            }
            Err(why) => {
                log::error!("{}: cannot start worker processes: {why}", this.label);
                state.down = usize::MAX;
                state.failing_start = true;
                state.last_failure = Some(why.clone());
                return;
            }
        };
        for slot in 0..processes {
            let inner = Arc::clone(this);
            let spawned = std::thread::Builder::new()
                .name(format!("workers {}#{slot}", this.label))
                .spawn(move || inner.run_slot());
            if let Err(e) = spawned {
                log::error!("{}: cannot start a worker slot thread: {e}", this.label);
                state.down += 1;
            }
        }
    }

    /// Recycles every worker; the slot threads end when their workers have.
    fn stop(&self) {
        let mut state = self.lock();
        state.stopping = true;
        state.idle.clear();
        for w in &state.workers {
            w.retiring.store(true, Ordering::Release);
            if w.busy.load(Ordering::Acquire) == 0 {
                w.send_control(Kind::Stop);
            }
        }
        drop(state);
        self.wake_all();
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Keeps one worker running until the group stops.
    fn run_slot(&self) {
        let Ok(spec) = &self.spec else { return };
        let mut backoff = Duration::ZERO;
        loop {
            if !backoff.is_zero() {
                self.lock().down += 1;
                let until = Instant::now() + backoff;
                while Instant::now() < until && !self.stopping() {
                    std::thread::sleep(TICK.min(until - Instant::now()));
                }
                self.lock().down -= 1;
                self.wake_all();
            }
            if self.stopping() {
                return;
            }
            let (child, worker, control, conns, output) = match self.spawn(spec) {
                Ok(started) => started,
                Err(why) => {
                    log::error!("{}: cannot start a worker process: {why}", self.label);
                    let mut state = self.lock();
                    state.last_failure = Some(why);
                    state.failing_start = true;
                    drop(state);
                    backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    continue;
                }
            };
            let ready = self.supervise(spec, &worker, control, conns);
            let status = self.reap(child, &worker, output);
            super::websocket::worker_ended(&worker, !status.success());
            let lived = worker.started.elapsed();
            let graceful = worker.retiring.load(Ordering::Acquire) && status.success();
            let killed = worker.killed.lock().unwrap_or_else(PoisonError::into_inner).take();
            let in_flight = std::mem::take(
                &mut *worker.in_flight.lock().unwrap_or_else(PoisonError::into_inner),
            );
            let stopping = self.stopping() || self.no_successors.load(Ordering::Acquire);
            backoff = if graceful || killed.is_some() || lived >= HEALTHY_AFTER {
                Duration::ZERO
            } else {
                (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
            };
            self.report(&worker, status, killed, &in_flight, ready, graceful, stopping, backoff);
            self.forget(&worker);
            if stopping {
                return;
            }
        }
    }

    /// Starts one worker and sends it `Init`.
    #[allow(clippy::type_complexity)]
    fn spawn(
        &self,
        spec: &Spec,
    ) -> Result<(Child, Arc<Worker>, FrameIo, Vec<Conn>, Option<JoinHandle<()>>), String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        let (control, control_child) = UnixStream::pair().map_err(|e| io("socketpair", e))?;
        // One request socket per app thread: the thread waits on its own socket (a request
        // costs it no epoll calls), and a crash fails only the requests actually running.
        let conns = spec.threads;
        let mut mine = Vec::with_capacity(conns);
        let mut mappings =
            vec![FdMapping { parent_fd: control_child.into(), child_fd: CONTROL_FD }];
        for i in 0..conns {
            let (a, b) = UnixStream::pair().map_err(|e| io("socketpair", e))?;
            mine.push(a);
            let child_fd = CONTROL_FD + 1 + i32::try_from(i).unwrap_or(i32::MAX - CONTROL_FD - 1);
            mappings.push(FdMapping { parent_fd: b.into(), child_fd });
        }
        // Its stdout and stderr: a pipe this daemon reads and logs (`logs::capture`).
        let (output, output_child) = capture::worker_pipe().map_err(|e| io("pipe", e))?;
        let stdout = output_child.try_clone().map_err(|e| io("dup", e))?;
        // The binary by descriptor, mapped after the sockets (the worker closes it at start,
        // with anything else it inherited above them); by path when it could not be opened.
        let exe_child_fd =
            CONTROL_FD + 1 + i32::try_from(conns).unwrap_or(i32::MAX - CONTROL_FD - 1);
        let by_fd = match super::spec::exe_fd().map(std::os::fd::OwnedFd::try_clone) {
            Some(Ok(fd)) => {
                mappings.push(FdMapping { parent_fd: fd, child_fd: exe_child_fd });
                true
            }
            Some(Err(e)) => return Err(io("dup", e)),
            None => false,
        };
        let settings = &spec.settings;
        let mut cmd = if by_fd {
            let mut cmd = Command::new(format!("/proc/self/fd/{exe_child_fd}"));
            std::os::unix::process::CommandExt::arg0(&mut cmd, &spec.exe);
            cmd
        } else {
            Command::new(&spec.exe)
        };
        // What `ps` shows (`display_name`): the first word of the command line.
        if let Some(name) = &settings.display_name {
            std::os::unix::process::CommandExt::arg0(&mut cmd, name);
        }
        // Not the daemon's environment: `spec::worker_env`'s few variables.
        cmd.arg("worker")
            .arg(&self.label)
            .env_clear()
            .envs(spec.env.iter().map(|(name, value)| (name, value)))
            .env(CONNS_ENV, conns.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(output_child));
        if let Some(home) = &settings.home {
            cmd.current_dir(home);
        }
        if let Some(lang) = &settings.lang {
            cmd.env("LANG", lang);
        }
        if let Some(locale) = &settings.locale {
            cmd.env("LC_ALL", locale);
        }
        if let Some(mask) = settings.umask {
            super::boundary::set_umask(&mut cmd, mask);
        }
        // Its own process group: a Ctrl-C in the daemon's terminal (SIGINT to the foreground
        // group) reaches the daemon only, which then stops its workers gracefully.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // No capability of the daemon's reaches a worker, whatever its user.
        super::boundary::clear_ambient_capabilities(&mut cmd);
        if let Some(groups) = &spec.groups {
            let gid = spec.ids.gid.unwrap_or_else(|| rustix::process::getegid().as_raw());
            super::boundary::drop_privileges(&mut cmd, spec.ids.uid, gid, groups.clone());
        }
        cmd.fd_mappings(mappings).map_err(|e| e.to_string())?;
        let child = cmd.spawn().map_err(|e| io(&format!("{}", spec.exe.display()), e))?;
        // The child's ends are closed here with the command: a worker's death is then
        // seen as the end of its sockets.
        drop(cmd);
        let pid = child.id();
        let output = match capture::read_worker(output, &self.label, pid) {
            Ok(reader) => Some(reader),
            Err(e) => {
                // The read end is closed with the failed thread: what the worker writes to
                // stdout or stderr fails (EPIPE) and is lost, but never blocks it.
                log::error!(
                    "{}: worker {pid}: cannot read its output (it is lost): {e}",
                    self.label
                );
                None
            }
        };
        let streams = mine
            .iter()
            .map(UnixStream::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io("dup", e))?;
        let worker = Arc::new(Worker {
            pid,
            started: Instant::now(),
            control: Mutex::new(control.try_clone().map_err(|e| io("dup", e))?),
            streams,
            served: AtomicU64::new(0),
            in_flight: Mutex::new(Vec::new()),
            retiring: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            killed: Mutex::new(None),
            unmeasured: AtomicBool::new(false),
            plugins: Mutex::new(Vec::new()),
            busy: std::sync::atomic::AtomicUsize::new(0),
            ws: Default::default(),
        });
        let mut reader = FrameIo::new(control).map_err(|e| io("socket", e))?;
        reader.frame(Kind::Init, |out| spec.init.encode(out));
        let mut conns = Vec::with_capacity(mine.len());
        for stream in mine {
            stream.set_nonblocking(true).map_err(|e| io("socket", e))?;
            conns.push(Conn {
                worker: Arc::clone(&worker),
                stream: Some(Sock::Plain(stream)),
                rbuf: Vec::new(),
                out: Vec::new(),
            });
        }
        self.lock().workers.push(Arc::clone(&worker));
        if let Err(e) = reader.flush() {
            // It died at once: `supervise` sees the end and `reap` reports it.
            log::debug!("{}: worker {pid}: Init not sent: {e}", self.label);
        }
        // The sockets are lent once the worker says it is ready.
        Ok((child, worker, reader, conns, output))
    }

    /// Relays the worker's control frames until it exits; returns whether it became ready.
    fn supervise(
        &self,
        spec: &Spec,
        worker: &Arc<Worker>,
        mut control: FrameIo,
        conns: Vec<Conn>,
    ) -> bool {
        let mut ready = false;
        let mut conns = Some(conns);
        // Its last sign of work, for `inactivity_timeout`: (requests given, when seen).
        let mut activity = (0, Instant::now());
        loop {
            // A worker whose apps never load (a hung `init`) would hold its slot forever,
            // and every request would wait out its deadline: killed, and started again.
            if !ready && worker.started.elapsed() > spec.settings.startup_timeout {
                worker.kill(format!(
                    "it was not ready (its apps loaded) within its startup_timeout of {:?}",
                    spec.settings.startup_timeout
                ));
            }
            let readable = control.readable(TICK);
            if readable {
                match control.read() {
                    Ok(Kind::Ready) => {
                        ready = true;
                        let mut state = self.lock();
                        if !worker.retiring.load(Ordering::Acquire) && !state.stopping {
                            state.idle.extend(conns.take().into_iter().flatten());
                            state.last_failure = None;
                            state.failing_start = false;
                            drop(state);
                            self.wake_all();
                        } else if worker.busy.load(Ordering::Acquire) == 0 {
                            worker.send_control(Kind::Stop);
                        }
                    }
                    Ok(Kind::Log) => match decode_log(control.payload()) {
                        Ok(record) => self.relog(worker.pid, &record),
                        Err(e) => log::warn!("{}: worker {}: {e}", self.label, worker.pid),
                    },
                    Ok(Kind::Plugins) => {
                        match serde_json::from_slice::<Vec<serde_json::Value>>(control.payload()) {
                            Ok(list) => {
                                *worker.plugins.lock().unwrap_or_else(PoisonError::into_inner) =
                                    list;
                            }
                            Err(e) => log::warn!(
                                "{}: worker {}: an unreadable plugin report: {e}",
                                self.label,
                                worker.pid
                            ),
                        }
                    }
                    Ok(kind @ (Kind::WsEventDone | Kind::WsSend | Kind::WsClose)) => {
                        if let Err(e) =
                            super::websocket::from_worker(worker, kind, control.payload())
                        {
                            worker.kill(format!("it broke its control socket's framing ({e})"));
                        }
                    }
                    Ok(other) => {
                        log::warn!("{}: worker {}: unexpected {other:?}", self.label, worker.pid);
                    }
                    Err(e) => {
                        // The end of the socket (or its reset) is the worker's end. A frame
                        // past the limit, or of no known kind, leaves a live worker that
                        // would never see its control socket close: it is killed.
                        if e.kind() == std::io::ErrorKind::InvalidData {
                            worker.kill(format!("it broke its control socket's framing ({e})"));
                        }
                        return ready;
                    }
                }
            } else {
                self.check_memory(spec, worker);
                if ready {
                    self.check_age(spec, worker, &mut activity);
                }
            }
        }
    }

    /// Logs a worker's record as if the daemon had: its target and level (filtered by
    /// `logs.level` as the daemon's own), its file and line, and its per-request mark (so
    /// the error log limits it with the same call site's lines in the daemon and in every
    /// worker).
    fn relog(&self, pid: u32, record: &LogIn<'_>) {
        if record.level > log::max_level() {
            return;
        }
        // One budget for all of this alias's worker records (see `relay_worker_record`).
        crate::logs::relay_worker_record(
            log::logger(),
            &self.label,
            record.level,
            record.target,
            format_args!("{} (worker {pid}): {}", self.label, record.message),
        );
    }

    /// Marks the worker dead (its pid is never signalled again), wakes the requests it was
    /// serving, reaps it, and waits (briefly) for its output to be logged.
    fn reap(
        &self,
        mut child: Child,
        worker: &Arc<Worker>,
        output: Option<JoinHandle<()>>,
    ) -> ExitStatus {
        {
            let mut state = self.lock();
            worker.dead.store(true, Ordering::Release);
            state.idle.retain(|c| !Arc::ptr_eq(&c.worker, worker));
        }
        for s in &worker.streams {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let status = loop {
            match child.wait() {
                Ok(status) => break status,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("{}: cannot reap worker {}: {e}", self.label, worker.pid);
                    break std::os::unix::process::ExitStatusExt::from_raw(0);
                }
            }
        };
        // What it wrote last (a crash's own message) is logged before its end is.
        if let Some(output) = output {
            let until = Instant::now() + OUTPUT_DRAIN;
            while !output.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        status
    }

    /// Removes a reaped worker from the running ones, once its end is reported: then
    /// `stop_and_wait` sees it gone (and the daemon may exit right after).
    fn forget(&self, worker: &Arc<Worker>) {
        let mut state = self.lock();
        state.workers.retain(|w| !Arc::ptr_eq(w, worker));
        drop(state);
        self.wake_all();
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        worker: &Worker,
        status: ExitStatus,
        killed: Option<String>,
        in_flight: &[u64],
        ready: bool,
        graceful: bool,
        stopping: bool,
        backoff: Duration,
    ) {
        let pid = worker.pid;
        if graceful {
            log::info!(
                "{}: worker {pid} stopped after {} requests",
                self.label,
                worker.served.load(Ordering::Relaxed)
            );
            return;
        }
        let how = describe_exit(status);
        let requests = if in_flight.is_empty() {
            "no request was in flight".to_owned()
        } else {
            // The ids the error log's `(request N)` lines carry.
            let ids: Vec<String> = in_flight.iter().map(u64::to_string).collect();
            let which = if ids.len() == 1 { "request" } else { "requests" };
            format!("{which} {} in flight failed (502, or a cut stream)", ids.join(", "))
        };
        let next = if stopping {
            String::new()
        } else if backoff.is_zero() {
            "; starting a new one".to_owned()
        } else {
            format!("; starting a new one in {:.1} s", backoff.as_secs_f64())
        };
        let why = match killed {
            Some(why) => format!("was killed ({why})"),
            None if !ready => format!("{how} before it was ready"),
            None => how,
        };
        let message = format!("{}: worker {pid} {why}; {requests}{next}", self.label);
        if !ready {
            let mut state = self.lock();
            state.last_failure = Some(message.clone());
            state.failing_start = true;
        }
        log::error!("{message}");
    }
}

impl Runner for Group {
    /// Kills the worker serving the overdue request, if one took it.
    fn overdue(&self, deadline: &Deadline, request_id: u64) -> String {
        match deadline.worker() {
            Some(pid) => {
                self.kill_overdue(pid, request_id, deadline.timeout());
                format!(" and killed its worker process {pid} (a new one starts)")
            }
            None => " (no worker process had taken it)".to_owned(),
        }
    }

    /// Nothing to count: a worker's threads are the worker's business.
    fn overdue_done(&self) {}
}
