//! WebSockets, with a minimal RFC 6455 client written here (frames by hand, so that
//! fragments, bad frames and oversized messages reach the daemon exactly as written):
//! handshake refusals, the chat room's broadcast, ping/pong, fragmentation, close codes,
//! limits, and the close at stop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::{Daemon, Response};

/// Opcodes.
const CONT: u8 = 0;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// A client's WebSocket over a plain TCP connection.
struct Ws {
    s: TcpStream,
    /// The 101's head.
    head: String,
}

/// The handshake's request for `path`, with `extra` header lines.
fn handshake(addr: SocketAddr, path: &str, extra: &[&str]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if !extra.iter().any(|h| h.starts_with("Sec-WebSocket-Version")) {
        req.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

impl Ws {
    /// Connects to `path`; panics unless the daemon answers 101.
    fn connect(d: &Daemon, path: &str, extra: &[&str]) -> Ws {
        let mut s = TcpStream::connect(d.addr).unwrap();
        // Generous: a loaded machine may be slow, never this slow.
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&handshake(d.addr, path, extra)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "the connection ended in the head: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        Ws { s, head }
    }

    /// A header of the 101, by lower-case name.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Sends one frame, masked as a client must (`mask: false` breaks that rule).
    fn frame(&mut self, fin: bool, op: u8, data: &[u8], mask: bool) {
        let mut f = vec![if fin { 0x80 } else { 0 } | op];
        let m = if mask { 0x80 } else { 0 };
        match data.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x12, 0x34, 0x56, 0x78];
        if mask {
            f.extend_from_slice(&key);
            f.extend(data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(data);
        }
        // The daemon may close before it read all of a large frame: that is its right.
        let _ = self.s.write_all(&f);
    }

    fn text(&mut self, text: &str) {
        self.frame(true, TEXT, text.as_bytes(), true);
    }

    /// The next frame: its opcode and payload (None: the connection ended).
    fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).ok()?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        assert_eq!(h[1] & 0x80, 0, "a server's frame must not be masked");
        let mut data = vec![0u8; usize::try_from(len).unwrap()];
        self.s.read_exact(&mut data).ok()?;
        Some((h[0] & 0x0f, data))
    }

    /// The next text message (skipping nothing: panics on anything else).
    fn recv_text(&mut self) -> String {
        match self.recv() {
            Some((TEXT, data)) => String::from_utf8(data).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The close frame the server sends next: its code and reason.
    fn recv_close(&mut self) -> (u16, String) {
        match self.recv() {
            Some((CLOSE, data)) if data.len() >= 2 => (
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            ),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// After a close: the server ends the connection.
    fn expect_end(&mut self) {
        let mut rest = Vec::new();
        let _ = self.s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "bytes after the close: {rest:?}");
    }
}

fn refused(d: &Daemon, path: &str, extra: &[&str]) -> Response {
    d.request(&handshake(d.addr, path, extra))
}

const CHAT: &str =
    "aliases:\n  - url: /chat\n    path: {chat}\n  - url: /hello\n    path: {hello}\n";

#[test]
fn websocket_handshake_refusals() {
    let d = Daemon::start(CHAT);
    // A key that is not 16 bytes in base64.
    let raw = String::from_utf8(handshake(d.addr, "/chat/a", &[])).unwrap();
    for key in ["c2hvcnQ=", "not-base64", ""] {
        let r = d.request(raw.replace("dGhlIHNhbXBsZSBub25jZQ==", key).as_bytes());
        assert_eq!(r.status, 400, "key {key:?}: {}", r.text());
    }
    // Another version: 426 naming the one spoken.
    let r = refused(&d, "/chat/a", &["Sec-WebSocket-Version: 8"]);
    assert_eq!(r.status, 426, "{}", r.text());
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
    // Not a GET.
    let raw = String::from_utf8(handshake(d.addr, "/chat/a", &[])).unwrap();
    assert_eq!(d.request(raw.replacen("GET", "POST", 1).as_bytes()).status, 400);
    // An app that takes no WebSocket answers as it always does.
    let r = refused(&d, "/hello", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World!"));
    // The chat without an Upgrade: its page.
    let r = d.get("/chat/lobby");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("room /lobby"), "{}", r.text());
    // A subprotocol: the one the app chose among the client's.
    let ws = Ws::connect(&d, "/chat/a", &["Sec-WebSocket-Protocol: x-other, chat"]);
    assert_eq!(ws.header("sec-websocket-protocol"), Some("chat"));
    assert_eq!(ws.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let ws = Ws::connect(&d, "/chat/a", &[]);
    assert_eq!(ws.header("sec-websocket-protocol"), None);
    assert_eq!(ws.header("content-type"), None);
}

#[test]
fn websocket_chat_broadcasts_within_a_room() {
    let d = Daemon::start(CHAT);
    let mut a = Ws::connect(&d, "/chat/one", &[]);
    let mut b = Ws::connect(&d, "/chat/one", &[]);
    let mut c = Ws::connect(&d, "/chat/two", &[]);
    a.text("hello one");
    assert_eq!(a.recv_text(), "hello one");
    assert_eq!(b.recv_text(), "hello one");
    c.text("hello two");
    assert_eq!(c.recv_text(), "hello two", "room two got room one's message first");
    // A ping is answered with its payload, between messages.
    b.frame(true, PING, b"are you there", true);
    assert_eq!(b.recv(), Some((PONG, b"are you there".to_vec())));
    // A fragmented message, with a ping between its fragments, arrives whole.
    b.frame(false, TEXT, b"frag", true);
    b.frame(true, PING, b"p", true);
    b.frame(false, CONT, b"men", true);
    b.frame(true, CONT, b"ted", true);
    assert_eq!(b.recv(), Some((PONG, b"p".to_vec())));
    assert_eq!(b.recv_text(), "fragmented");
    assert_eq!(a.recv_text(), "fragmented");
    // A client's close is echoed with its code; the others go on.
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    a.frame(true, CLOSE, &close, true);
    assert_eq!(a.recv_close(), (1000, "bye".to_owned()));
    a.expect_end();
    b.text("still here");
    assert_eq!(b.recv_text(), "still here");
    // The app closes a binary sender with its own code (1003).
    c.frame(true, BINARY, &[1, 2, 3], true);
    assert_eq!(c.recv_close().0, 1003);
    c.frame(true, CLOSE, &1003u16.to_be_bytes(), true);
    c.expect_end();
    b.frame(true, CLOSE, &[], true);
    assert_eq!(b.recv(), Some((CLOSE, Vec::new())), "an empty close is echoed empty");
    b.expect_end();
    // A socket's access line is written when it ends.
    crate::harness::wait_until("the access log's 101 lines", || {
        crate::harness::read_lossy(&d.path("log/access.log")).matches("\" 101 ").count() >= 3
    });
}

#[test]
fn websocket_protocol_errors_close_with_their_codes() {
    let d = Daemon::start(
        "aliases:\n  - url: /chat\n    path: {chat}\n    websocket_max_message: 1KiB\n",
    );
    // One message past websocket_max_message: 1009, even before it all arrived.
    let mut ws = Ws::connect(&d, "/chat/a", &[]);
    ws.frame(true, TEXT, &vec![b'x'; 4096], true);
    assert_eq!(ws.recv_close().0, 1009);
    // Fragments that add up past it: 1009 too.
    let mut ws = Ws::connect(&d, "/chat/a", &[]);
    ws.frame(false, TEXT, &[b'x'; 600], true);
    ws.frame(true, CONT, &[b'x'; 600], true);
    assert_eq!(ws.recv_close().0, 1009);
    // Text that is not UTF-8: 1007.
    let mut ws = Ws::connect(&d, "/chat/a", &[]);
    ws.frame(true, TEXT, &[0xff, 0xfe], true);
    assert_eq!(ws.recv_close().0, 1007);
    // An unmasked frame, a continuation with nothing begun, reserved bits: 1002.
    for (first, op, mask) in [(0x80u8, TEXT, false), (0x80, CONT, true), (0xc0, TEXT, true)] {
        let mut ws = Ws::connect(&d, "/chat/a", &[]);
        if first == 0xc0 {
            ws.s.write_all(&[0xc1, 0x80, 0, 0, 0, 0]).unwrap();
        } else {
            ws.frame(true, op, b"x", mask);
        }
        assert_eq!(ws.recv_close().0, 1002, "opcode {op}, mask {mask}, first {first:#x}");
    }
    // A message just under the limit still goes through.
    let mut ws = Ws::connect(&d, "/chat/a", &[]);
    let text = "y".repeat(1024);
    ws.text(&text);
    assert_eq!(ws.recv_text(), text);
}

/// Whether a handshake on `path` gets 101 now (the status line's code otherwise).
fn opens(d: &Daemon, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(d.addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    s.write_all(&handshake(d.addr, path, &[])).map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.ends_with("101") { Ok(()) } else { Err(head) }
}

#[test]
fn websocket_max_websockets_answers_503() {
    let d = Daemon::start(
        "metrics: {listen: \"127.0.0.1:0\"}\naliases:\n  - url: /chat\n    path: {chat}\n    max_websockets: 2\n",
    );
    let line = d.stdout_line(Duration::from_secs(10)).expect("the metrics line");
    let metrics: SocketAddr =
        line.strip_prefix("gatehouse metrics on http://").unwrap().parse().unwrap();
    let mut a = Ws::connect(&d, "/chat/a", &[]);
    let _b = Ws::connect(&d, "/chat/b", &[]);
    let r = refused(&d, "/chat/c", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    let (_, text) = crate::harness::get_from(metrics, "/metrics");
    assert!(text.contains("gatehouse_websockets_open{alias=\"/chat\",app=\"chat\"} 2"), "{text}");
    // A plain request to the same app is still served.
    assert_eq!(d.get("/chat/c").status, 200);
    // A socket closed frees its place.
    a.frame(true, CLOSE, &1000u16.to_be_bytes(), true);
    assert_eq!(a.recv_close().0, 1000);
    crate::harness::wait_for("a free WebSocket place", Duration::from_secs(30), || {
        opens(&d, "/chat/c")
    });
}

#[test]
fn websocket_idle_timeout_closes_with_1001() {
    let d = Daemon::start(
        "aliases:\n  - url: /chat\n    path: {chat}\n    websocket_idle_timeout: 1s\n",
    );
    let mut a = Ws::connect(&d, "/chat/a", &[]);
    assert_eq!(a.recv_close(), (1001, "idle timeout".to_owned()));
}

#[test]
fn websocket_stop_closes_sockets_with_1001() {
    let mut d = Daemon::start(CHAT);
    let mut ws = Ws::connect(&d, "/chat/a", &[]);
    ws.text("before");
    assert_eq!(ws.recv_text(), "before");
    d.signal("TERM");
    assert_eq!(ws.recv_close().0, 1001);
    // The client answers the close; the daemon then ends, well within shutdown_timeout.
    ws.frame(true, CLOSE, &1001u16.to_be_bytes(), true);
    let status = d.terminate();
    assert!(status.success(), "{status:?}\n{}", d.log());
}

#[test]
fn websocket_in_a_worker_process_and_its_crash_closes_with_1011() {
    let d = Daemon::start(
        "aliases:\n  - url: /chat\n    path: {chat}\n    isolation: process\n    processes: 1\n",
    );
    let mut a = Ws::connect(&d, "/chat/r", &[]);
    let mut b = Ws::connect(&d, "/chat/r", &["Sec-WebSocket-Protocol: chat"]);
    assert_eq!(b.header("sec-websocket-protocol"), Some("chat"));
    // The worker's app gets the messages and sends to both sockets, from its own threads.
    a.text("from a worker");
    assert_eq!(a.recv_text(), "from a worker");
    assert_eq!(b.recv_text(), "from a worker");
    b.frame(false, TEXT, b"in ", true);
    b.frame(true, PING, b"p", true);
    b.frame(true, CONT, b"pieces", true);
    assert_eq!(b.recv(), Some((PONG, b"p".to_vec())));
    assert_eq!(b.recv_text(), "in pieces");
    assert_eq!(a.recv_text(), "in pieces");
    // The app's own close, from the worker.
    let mut c = Ws::connect(&d, "/chat/r", &[]);
    c.frame(true, BINARY, &[0], true);
    assert_eq!(c.recv_close().0, 1003);
    // The worker dies: its sockets close with 1011, and a new worker takes new ones.
    let pids = crate::harness::wait_for("the worker process", Duration::from_secs(30), || {
        let pids = crate::isolation::workers(&d, "/chat");
        if pids.is_empty() { Err("none yet".to_owned()) } else { Ok(pids) }
    });
    for pid in &pids {
        let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        assert!(killed.unwrap().success());
    }
    assert_eq!(a.recv_close(), (1011, "the app's worker process died".to_owned()));
    assert_eq!(b.recv_close().0, 1011);
    crate::harness::wait_for("a new worker's WebSocket", Duration::from_secs(60), || {
        opens(&d, "/chat/r")
    });
    let mut e = Ws::connect(&d, "/chat/r", &[]);
    e.text("again");
    assert_eq!(e.recv_text(), "again");
}

#[test]
fn websocket_slow_reader_is_closed_with_1008_and_the_others_go_on() {
    let d = Daemon::start("aliases:\n  - url: /chat\n    path: {chat}\n    timeout: 2s\n");
    // A reader with a small receive buffer that reads nothing for now.
    let mut slow = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect(&d.addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(&handshake(d.addr, "/chat/r", &[])).unwrap();
        Ws { s, head: String::new() }
    };
    let mut sender = Ws::connect(&d, "/chat/r", &[]);
    let mut echo = sender.s.try_clone().map(|s| Ws { s, head: String::new() }).unwrap();
    const N: usize = 300;
    let text = "z".repeat(32 * 1024);
    let reader = std::thread::spawn(move || {
        // (The sender reads its own echoes: it is no slow reader.)
        (0..N).map(|_| echo.recv_text().len()).sum::<usize>()
    });
    for _ in 0..N {
        sender.text(&text);
    }
    assert_eq!(reader.join().unwrap(), N * text.len(), "the sender's echoes");
    crate::harness::wait_until("the slow reader's close in the log", || {
        d.log().contains("closing it (1008)")
    });
    // The slow reader, reading at last: its 101, what was queued, then the close (1008).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        slow.s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let code = loop {
        match slow.recv() {
            Some((TEXT, _)) => {}
            Some((CLOSE, data)) => break u16::from_be_bytes([data[0], data[1]]),
            other => panic!("expected messages then a close, got {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    // The room goes on without it.
    sender.text("still on");
    assert_eq!(sender.recv_text(), "still on");
}

#[test]
fn websocket_stays_on_its_plugin_version_across_a_swap() {
    let d = Daemon::start_with(
        "aliases:\n  - url: /chat\n    path: {dir}/plugins/libchat.so\n",
        |root| {
            crate::harness::install(
                &crate::harness::artifacts().chat,
                &root.join("plugins/libchat.so"),
            )
        },
    );
    let mut old = Ws::connect(&d, "/chat/r", &[]);
    old.text("one");
    assert_eq!(old.recv_text(), "one");
    // Another build in its place (the daemon swaps builds, not copies of the same one): it
    // serves new requests, and the old socket stays on the chat's instance.
    crate::harness::install(&crate::harness::artifacts().hello, &d.path("plugins/libchat.so"));
    crate::harness::wait_until("the swap", || d.log_count("reloaded ") >= 1);
    let r = refused(&d, "/chat/r", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World!"));
    old.text("two");
    assert_eq!(old.recv_text(), "two");
    // The old instance shuts down once its last socket closed.
    assert!(!d.log().contains("ran shutdown of retired"), "{}", d.log());
    old.frame(true, CLOSE, &1000u16.to_be_bytes(), true);
    assert_eq!(old.recv_close().0, 1000);
    crate::harness::wait_until("the old instance's shutdown", || {
        d.log().contains("ran shutdown of retired chat")
    });
}

#[test]
fn websocket_python_chat_through_the_wsgi_bridge() {
    let d = Daemon::start_with(
        "handlers:\n  - suffix: .py\n    plugin: {wsgi}\naliases:\n  - url: /py/\n    path: {dir}/python/\n",
        |root| {
            // The demo's script, in a folder of the test's.
            std::fs::create_dir_all(root.join("python")).unwrap();
            let demo = crate::harness::workspace().join("demo/python/chat.py");
            std::fs::copy(&demo, root.join("python/chat.py")).unwrap();
        },
    );
    let r = d.get("/py/chat.py/lobby");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("(/lobby)"), "{}", r.text());
    let mut a = Ws::connect(&d, "/py/chat.py/lobby", &[]);
    let mut b = Ws::connect(&d, "/py/chat.py/lobby", &[]);
    let mut c = Ws::connect(&d, "/py/chat.py/other", &[]);
    a.text("hello from Python");
    assert_eq!(a.recv_text(), "hello from Python");
    assert_eq!(b.recv_text(), "hello from Python");
    c.text("elsewhere");
    assert_eq!(c.recv_text(), "elsewhere");
    b.frame(true, BINARY, b"\x00", true);
    assert_eq!(b.recv_close().0, 1003);
    a.text("after b");
    assert_eq!(a.recv_text(), "after b");
}

#[test]
fn websocket_handshakes_pass_the_access_and_authentication_hooks() {
    let d = Daemon::start(
        "aliases:\n  - url: /chat\n    path: {chat}\n    access_script: {probe}\n    auth_user_script: {probe}\n",
    );
    // Refused by the access hook, or without credentials: no socket.
    let r = refused(&d, "/chat/a?deny", &["Authorization: Basic YWxpY2U6c2VjcmV0"]);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = refused(&d, "/chat/a", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = refused(&d, "/chat/a", &["Authorization: Basic Ym9iOng="]);
    assert_eq!(r.status, 401, "{}", r.text());
    // alice:secret gets her socket.
    let mut ws = Ws::connect(&d, "/chat/a", &["Authorization: Basic YWxpY2U6c2VjcmV0"]);
    ws.text("let in");
    assert_eq!(ws.recv_text(), "let in");
}
