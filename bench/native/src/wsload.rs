//! `wsload`: a WebSocket load client for the benchmarks (`bench/websocket`). Plain threads and
//! blocking sockets, a minimal RFC 6455 client: the upgrade request, masked text frames out,
//! unmasked frames in.
//!
//! - `wsload echo --url ws://ADDR/chat --connections 64 --seconds 5`: each connection joins a
//!   room of its own (`/chat/bench-N`), sends a text message and waits for it to come back (a
//!   room of one broadcasts to its only member), again and again. Prints one JSON line:
//!   messages a second (round trips), p50 and p99 in µs, and errors.
//! - `wsload hold --url ws://ADDR/chat --connections 10000`: opens that many sockets (rooms
//!   `/chat/idle-N`), prints `held N` once all are open, and keeps them until stdin closes.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "A WebSocket load client for the benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Round trips of one text message per connection, in rooms of one.
    Echo {
        /// `ws://HOST:PORT/PATH`: the rooms are PATH/bench-N.
        #[arg(long)]
        url: String,
        /// Connections, each on a thread of its own.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Bytes in each message.
        #[arg(long, default_value_t = 32)]
        size: usize,
    },
    /// Opens sockets and holds them until stdin closes.
    Hold {
        /// `ws://HOST:PORT/PATH`: the rooms are PATH/idle-N.
        #[arg(long)]
        url: String,
        /// Sockets to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
}

/// The address and path of a `ws://` URL.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| format!("{url}: not a ws:// URL"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = authority.parse().map_err(|e| format!("{authority}: {e} (use IP:PORT)"))?;
    Ok((addr, if path.is_empty() { "/".to_owned() } else { path.to_owned() }))
}

/// Connects and upgrades; the socket, ready for frames.
fn connect(addr: SocketAddr, path: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut reader = std::io::BufReader::new(s.try_clone()?);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!("{path}: {}", status.trim())));
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    if !reader.buffer().is_empty() {
        return Err(std::io::Error::other("bytes after the 101 before any message"));
    }
    Ok(s)
}

/// A masked text frame holding `payload`.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one frame; its opcode and payload.
fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    s.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}

fn echo(url: &str, connections: usize, seconds: u64, size: usize) -> Result<(), String> {
    let (addr, path) = parse_url(url)?;
    let base = path.trim_end_matches('/').to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(connections + 1));
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
            let room = format!("{base}/bench-{i}");
            std::thread::spawn(move || -> Result<Vec<u32>, String> {
                let mut s = connect(addr, &room).map_err(|e| e.to_string());
                start.wait();
                let s = s.as_mut().map_err(|e| e.clone())?;
                let payload = vec![b'x'; size];
                let frame = text_frame(&payload);
                let mut rtt = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    s.write_all(&frame).map_err(|e| e.to_string())?;
                    let (op, got) = read_frame(s).map_err(|e| e.to_string())?;
                    if op != 1 || got != payload {
                        return Err(format!("{room}: got opcode {op}, {} bytes", got.len()));
                    }
                    rtt.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                Ok(rtt)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(rtt)) => all.extend(rtt),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a client thread panicked".to_owned()),
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)));
    println!(
        "{{\"messages_per_s\": {:.0}, \"p50_us\": {}, \"p99_us\": {}, \"messages\": {}, \
         \"errors\": {}, \"first_error\": {:?}}}",
        all.len() as f64 / elapsed,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
        all.len(),
        errors.len(),
        errors.first().cloned().unwrap_or_default()
    );
    Ok(())
}

fn hold(url: &str, connections: usize) -> Result<(), String> {
    let (addr, path) = parse_url(url)?;
    let base = path.trim_end_matches('/').to_owned();
    let mut held = Vec::with_capacity(connections);
    for i in 0..connections {
        held.push(connect(addr, &format!("{base}/idle-{i}")).map_err(|e| format!("#{i}: {e}"))?);
    }
    println!("held {}", held.len());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut sink = String::new();
    let _ = std::io::stdin().read_to_string(&mut sink);
    Ok(())
}

fn main() {
    let result = match Cli::parse().command {
        Command::Echo { url, connections, seconds, size } => echo(&url, connections, seconds, size),
        Command::Hold { url, connections } => hold(&url, connections),
    };
    if let Err(e) = result {
        eprintln!("wsload: {e}");
        std::process::exit(1);
    }
}
