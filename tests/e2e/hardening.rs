//! Hardening: what a worker process gets from the daemon (its own alias's settings only, a
//! minimal environment, no descriptor of the daemon's, the supplementary groups of its
//! user), and files the daemon writes as root that others could have swapped for links: an
//! upload handed to a worker's user, a log file.

use std::path::Path;

use crate::harness::{Daemon, read_lossy};
use crate::isolation::pid_of;

/// Whether the readable memory of process `pid` holds `needle`.
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let maps = read_lossy(Path::new(&format!("/proc/{pid}/maps")));
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0u8; 1 << 20];
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        // In pieces that overlap by the needle's length, so no match is cut in two.
        let mut at = start;
        while at < end {
            let len = usize::try_from((end - at).min(buf.len() as u64)).unwrap();
            if mem.seek(SeekFrom::Start(at)).is_err() || mem.read_exact(&mut buf[..len]).is_err() {
                break;
            }
            if buf[..len].windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            if at + len as u64 >= end {
                break;
            }
            at += (len - needle.len()) as u64;
        }
    }
    false
}

#[test]
fn a_worker_holds_no_other_aliases_settings() {
    const SECRET: &str = "e2e-secret-of-b-7f3a91";
    let yaml = format!(
        "\
aliases:
  - url: /crashy
    path: {{crashy}}
    isolation: process
    processes: 1
  - url: /b
    path: {{hello}}
    env: {{B_SECRET: {SECRET}}}
"
    );
    let d = Daemon::start(&yaml);
    let pid = pid_of(&d, "/crashy/ok");
    assert_eq!(d.get("/b").text(), "Hello World!");
    // (The scan finds it where it is: the daemon holds the whole file.)
    assert!(memory_holds(d.pid(), SECRET.as_bytes()), "the scan is broken");
    assert!(
        !memory_holds(pid, SECRET.as_bytes()),
        "the worker of /crashy ({pid}) holds /b's env value"
    );
}
