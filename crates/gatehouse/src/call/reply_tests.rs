//! The reply state machine's own rows: streaming, stalls, the held head.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::call::body::BodySource;

#[test]
fn a_body_read_waits_without_limit_until_the_reply_streams_then_at_most_the_stall_limit() {
    let (tx, mut reply) = oneshot::channel();
    let mut sink = ReplySink::channel("t", 1, tx).stall_limit(Duration::from_millis(50));
    assert_eq!(sink.body_wait(), None, "not started");
    let head = Head { status: StatusCode::OK, headers: Vec::new(), declared_len: None };
    assert_eq!(sink.start(|| Ok(head)), Status::OK);
    assert_eq!(sink.write(b"first"), Status::OK);
    assert_eq!(sink.body_wait(), None, "the head is held back: the handler drives the pump");
    assert_eq!(sink.flush(), Status::OK);
    assert_eq!(sink.body_wait(), Some(Duration::from_millis(50)), "streaming");
    assert!(matches!(reply.try_recv(), Ok(Reply::Stream { .. })));
    // A body that nothing feeds: the bounded read gives up, the unbounded one would not.
    let (chunks, rx) = mpsc::channel(1);
    let mut body = BodySource::Stream(rx);
    let started = Instant::now();
    assert_eq!(body.next_chunk_within(Duration::from_millis(50)), None);
    assert!(started.elapsed() >= Duration::from_millis(50));
    chunks.try_send(Ok(Bytes::from_static(b"abc"))).unwrap();
    let got = body.next_chunk_within(Duration::from_millis(50));
    assert_eq!(got, Some(Ok(Some(Bytes::from_static(b"abc")))));
    chunks.try_send(Ok(Bytes::new())).unwrap();
    assert_eq!(body.next_chunk_within(Duration::from_millis(50)), Some(Ok(None)));
}

#[test]
fn a_write_is_queued_in_bounded_pieces() {
    for (len, want) in [
        (1, vec![1]),
        (PIECE, vec![PIECE]),
        (PIECE + 1, vec![PIECE, 1]),
        (3 * PIECE - 5, vec![PIECE, PIECE, PIECE - 5]),
    ] {
        let data = Bytes::from(vec![7u8; len]);
        let got: Vec<usize> = pieces(&data).map(|p| p.len()).collect();
        assert_eq!(got, want, "{len} bytes");
    }
    assert_eq!(pieces(&Bytes::new()).count(), 0);
}

#[test]
fn a_chunk_is_queued_refused_or_given_up_on() {
    let limit = Duration::from_millis(50);
    let (chunks, mut rest) = mpsc::channel::<Chunk>(1);
    assert_eq!(send_within(&chunks, Ok(Bytes::from_static(b"a")), limit), Sent::Yes);
    // Full, and nobody takes anything: given up on after the limit, not before.
    let started = Instant::now();
    assert_eq!(send_within(&chunks, Ok(Bytes::from_static(b"b")), limit), Sent::Stalled);
    assert!(started.elapsed() >= limit);
    // Full, and the other side takes one meanwhile: queued.
    let taker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let first = rest.blocking_recv();
        (first, rest)
    });
    let wait = Duration::from_secs(5);
    assert_eq!(send_within(&chunks, Ok(Bytes::from_static(b"c")), wait), Sent::Yes);
    let (first, rest) = taker.join().unwrap();
    assert_eq!(first.unwrap().unwrap(), Bytes::from_static(b"a"));
    // The other side gone: refused at once.
    drop(rest);
    let started = Instant::now();
    assert_eq!(send_within(&chunks, Ok(Bytes::new()), wait), Sent::Closed);
    assert!(started.elapsed() < wait);
}

#[test]
fn a_held_first_write_past_the_declared_length_is_cut_to_it() {
    for (declared, write, want) in
        [(5, &b"abcdefg"[..], &b"abcde"[..]), (5, b"abc", b"abc"), (0, b"x", b"")]
    {
        let (tx, mut rx) = oneshot::channel();
        let mut sink = ReplySink::channel("t", 1, tx);
        let head =
            Head { status: StatusCode::OK, headers: Vec::new(), declared_len: Some(declared) };
        assert_eq!(sink.start(|| Ok(head)), Status::OK);
        assert_eq!(sink.write(write), Status::OK);
        assert_eq!(sink.flush(), Status::OK);
        let Ok(Reply::Stream { first, .. }) = rx.try_recv() else { panic!("no stream") };
        assert_eq!(&first[..], want, "declared {declared}, wrote {write:?}");
    }
}

#[test]
fn a_reply_kept_whole_on_the_worker_is_cut_only_by_a_write_past_its_cut() {
    let now = std::time::Instant::now();
    let later = now + Duration::from_secs(3600);
    // (cut at, what each write gets, the reply's status)
    let table: [(Option<std::time::Instant>, Status, u16); 3] = [
        (None, Status::OK, 200),
        (Some(later), Status::OK, 200),
        (Some(now), Status::DISCONNECTED, 500),
    ];
    for (i, (cut_at, second, want)) in table.into_iter().enumerate() {
        let mut sink = ReplySink::direct("t", 1).cut_at(cut_at);
        let head = Head { status: StatusCode::OK, headers: Vec::new(), declared_len: None };
        assert_eq!(sink.start(|| Ok(head)), Status::OK, "row {i}");
        // The first write is checked like the second: a past cut refuses both.
        assert_eq!(sink.write(b"one"), second, "row {i}: the first write");
        assert_eq!(sink.write(b"two"), second, "row {i}: the second write");
        let status = match sink.finish(Status::OK) {
            Some(Reply::Complete { head, .. }) => head.status.as_u16(),
            Some(Reply::Refused(answer)) => answer.status,
            other => panic!("row {i}: {other:?}"),
        };
        assert_eq!(status, want, "row {i}");
    }
}
