//! A test app that misbehaves on request, to show what `isolation: process` contains.
//! By PATH_INFO: `/segv` dereferences a null pointer (SIGSEGV), `/abort` aborts (SIGABRT),
//! `/exit` calls `exit(3)`, `/hang` never returns, `/leak` leaks 10 MiB per call (touched,
//! so it counts as resident memory); anything else answers 200 `ok`. Every reply carries
//! `X-Pid`, the process that served it.
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
        _ => text(200, "ok".into()),
    }
}

gatehouse_app::export!(crashy);
