//! A test app that misbehaves on request, to show what `isolation: process` contains.
//! By PATH_INFO: `/segv` dereferences a null pointer (SIGSEGV), `/abort` aborts (SIGABRT),
//! `/exit` calls `exit(3)`, `/hang` never returns, `/leak` leaks 10 MiB per call (touched,
//! so it counts as resident memory), `/garble` writes a frame of no known kind to the
//! request sockets of its worker process (what a memory-corrupting app could do to its
//! host's descriptors; it does nothing outside a worker process), `/garble-control` the same
//! to its control socket; anything else answers
//! 200 `ok`. Every reply carries `X-Pid`, the process that served it.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse_app::{Request, Response};

/// MiB leaked so far by this process.
static LEAKED_MIB: AtomicUsize = AtomicUsize::new(0);

fn crashy(req: &Request<'_>) -> Response {
    let pid = std::process::id().to_string();
    let text = |status: u16, body: String| {
        Response::new(status)
            .header("Content-Type", "text/plain")
            .header("X-Pid", pid.clone())
            .body(body.into_bytes())
    };
    match req.path_info() {
        "/segv" => {
            req.debug_log("segv: dereferencing a null pointer", true);
            let null = std::ptr::null_mut::<u8>();
            // SAFETY: none; this is the crash the route exists for. `write_volatile` keeps
            // the compiler from proving it away.
            unsafe { null.write_volatile(1) };
            text(500, "still alive?".into())
        }
        "/abort" => std::process::abort(),
        "/exit" => std::process::exit(3),
        "/hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        },
        "/leak" => {
            let block = vec![1u8; 10 << 20];
            std::mem::forget(block);
            let total = LEAKED_MIB.fetch_add(10, Ordering::Relaxed) + 10;
            text(200, format!("leaked 10 MiB, {total} MiB in all\n"))
        }
        "/garble" => text(200, format!("garbled {} sockets\n", garble())),
        "/garble-control" => text(200, format!("garbled {} sockets\n", garble_control())),
        _ => text(200, "ok".into()),
    }
}

/// In a worker process (`gatehouse worker`, which has `GATEHOUSE_WORKER_CONNS` in its
/// environment), writes a bogus frame to every socket past descriptor 3 that is not the
/// worker's control socket (descriptor 3, and its copies); returns how many.
fn garble() -> usize {
    use std::io::Write as _;
    if std::env::var_os("GATEHOUSE_WORKER_CONNS").is_none() {
        return 0;
    }
    use std::os::unix::fs::MetadataExt as _;
    let inode = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).map(|m| m.ino());
    let Ok(control) = inode(3) else { return 0 };
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let mut n = 0;
    for fd in fds.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        if fd <= 3
            || !link.to_string_lossy().starts_with("socket:")
            || inode(fd).ok() == Some(control)
        {
            continue;
        }
        // SAFETY: `fd` was listed open in /proc/self/fd just now, and nothing in this
        // request closes descriptors; it is only borrowed to make a copy, which is closed
        // when the `File` drops.
        let copy = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
        if let Ok(copy) = copy
            && std::fs::File::from(copy).write_all(&[1, 0, 0, 0, 0xEE, 0]).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// In a worker process, writes a bogus frame to its control socket (descriptor 3);
/// returns how many sockets it wrote to (0 or 1).
fn garble_control() -> usize {
    use std::io::Write as _;
    if std::env::var_os("GATEHOUSE_WORKER_CONNS").is_none() {
        return 0;
    }
    // SAFETY: in a worker process descriptor 3 is its control socket, open for the
    // process's whole life; it is only borrowed to make a copy, closed when the `File` drops.
    let copy = unsafe { std::os::fd::BorrowedFd::borrow_raw(3) }.try_clone_to_owned();
    match copy {
        Ok(copy) => {
            usize::from(std::fs::File::from(copy).write_all(&[1, 0, 0, 0, 0xEE, 0]).is_ok())
        }
        Err(_) => 0,
    }
}

gatehouse_app::export!(crashy);
