//! The pace of one request body: how long its client may take, measured on the client's own
//! clock ([`Pace`]), and the payload stream that enforces it ([`limited`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};

use super::input::BodyLimits;

/// How many slices of the rate window [`Pace`] keeps: bytes are counted as if they
/// arrived at the end of their slice, so the window is at most a slice lenient.
const PACE_SLICES: u32 = 16;

/// The clock of one request body as the client sees it, and the rate it keeps, like
/// mod_reqtimeout's `body=20-60,MinRate=500` but measured over a sliding window rather than
/// earned as credit: a client that sent a burst early cannot stall on it later.
///
/// Times are the client's: the time spent waiting for its next bytes, not the time the reader
/// took before asking for more (an app that reads slowly holds the client back, and the
/// client must not get 408 for it).
#[derive(Debug)]
struct Pace {
    limits: BodyLimits,
    /// The client's time so far.
    spent: Duration,
    /// Bytes received per slice of the last `limits.timeout`: (the client's time of the
    /// slice's last bytes, bytes), oldest first.
    window: VecDeque<(Duration, u64)>,
}

impl Pace {
    fn new(limits: BodyLimits) -> Pace {
        Pace { limits, spent: Duration::ZERO, window: VecDeque::new() }
    }

    /// The client took `waited` and sent `bytes` (0: nothing yet).
    fn record(&mut self, waited: Duration, bytes: u64) {
        self.spent += waited;
        let now = self.spent;
        let slice = self.limits.timeout / PACE_SLICES;
        while self.window.front().is_some_and(|&(at, _)| at + self.limits.timeout <= now) {
            self.window.pop_front();
        }
        if bytes == 0 {
            return;
        }
        match self.window.back_mut() {
            Some((at, n)) if now.saturating_sub(*at) < slice => {
                *at = now;
                *n += bytes;
            }
            _ => self.window.push_back((now, bytes)),
        }
    }

    /// How long the client may now take for its next bytes: until the body's time is up,
    /// or until the window, with nothing new in it, falls below `min_rate`.
    fn left(&self) -> Duration {
        let BodyLimits { timeout, min_rate, max_time, .. } = self.limits;
        let end = if min_rate == 0 {
            timeout
        } else {
            // The bytes the window needs; the body's first window is free (nothing to measure
            // yet), then the window holds less each time its oldest slice leaves it.
            let need = (min_rate as f64 * timeout.as_secs_f64()).ceil() as u64;
            let mut held: u64 = self.window.iter().map(|&(_, n)| n).sum();
            let mut short_at = self.spent;
            for &(at, n) in &self.window {
                if held < need {
                    break;
                }
                held -= n;
                short_at = at + timeout;
            }
            if held >= need { Duration::MAX } else { short_at.max(timeout) }
        };
        end.min(max_time).saturating_sub(self.spent)
    }
}

/// The payload, failing with [`PayloadError::Overflow`] once past `max_body` bytes, and
/// with a `TimedOut` I/O error when the client is too slow ([`Pace`]): silent for
/// `timeout`, below `min_rate` over a `timeout` window, or past `max_time` in all, so a
/// client trickling bytes cannot hold a connection and an app thread for long.
pub(crate) fn limited<P>(
    payload: P,
    limits: BodyLimits,
) -> impl Stream<Item = Result<Bytes, PayloadError>>
where
    P: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    struct State<P> {
        payload: P,
        seen: u64,
        pace: Pace,
        done: bool,
    }
    let max_body = limits.max_body;
    let start = State { payload, seen: 0, pace: Pace::new(limits), done: false };
    // (`unfold` makes each step's future when the next chunk is asked for.)
    futures_util::stream::unfold(start, move |mut st| async move {
        if st.done {
            return None;
        }
        let asked = Instant::now();
        let left = st.pace.left();
        let item = match actix_web::rt::time::timeout(left, st.payload.next()).await {
            Err(_) => Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body was not received in time",
            ))),
            Ok(None) => return None,
            Ok(Some(Err(e))) => Err(e),
            Ok(Some(Ok(chunk))) => {
                st.seen += chunk.len() as u64;
                st.pace.record(asked.elapsed(), chunk.len() as u64);
                if st.seen > max_body { Err(PayloadError::Overflow) } else { Ok(chunk) }
            }
        };
        st.done = item.is_err();
        Some((item, st))
    })
    // Multipart polls again after the end: a fused stream keeps answering None.
    .fuse()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::request::input::{BodyError, payload_error};

    #[test]
    fn the_readers_own_time_does_not_count_against_the_client() {
        // The client sends a chunk, and the next 300 ms after it is asked for. The reader
        // takes 1.5 s over the first: with a 1 s body deadline, the second still comes.
        let client = futures_util::stream::unfold(0, |i| async move {
            match i {
                0 => Some((Ok(Bytes::from_static(b"first")), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((Ok(Bytes::from_static(b"second")), 2))
                }
                _ => None,
            }
        });
        let limits = BodyLimits {
            max_body: 100,
            timeout: Duration::from_secs(1),
            min_rate: 0,
            max_time: Duration::from_secs(60),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let mut body = std::pin::pin!(limited(Box::pin(client), limits));
            assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"first"));
            tokio::time::sleep(Duration::from_millis(1500)).await; // the reader, busy
            assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"second"));
            assert!(body.next().await.is_none());
        });
        // A client that is itself slow still times out: 1.3 s of its own against 1 s.
        let slow = futures_util::stream::unfold(0, |i| async move {
            tokio::time::sleep(Duration::from_millis(1300)).await;
            (i == 0).then_some((Ok(Bytes::from_static(b"late")), 1))
        });
        rt.block_on(async {
            let mut body = std::pin::pin!(limited(Box::pin(slow), limits));
            let e = body.next().await.unwrap().unwrap_err();
            assert_eq!(payload_error(&e), BodyError::TimedOut);
        });
    }

    /// A client that sends `chunk` bytes every `every`, `n` times (then ends the body).
    fn steady(
        chunk: usize,
        every: Duration,
        n: usize,
    ) -> impl Stream<Item = Result<Bytes, PayloadError>> {
        futures_util::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            Some((Ok(Bytes::from(vec![b'x'; chunk])), i + 1))
        })
    }

    /// How long `limited` reads `client` before it ends, and whether it ended on time.
    fn read_all(
        client: impl Stream<Item = Result<Bytes, PayloadError>>,
        limits: BodyLimits,
    ) -> (Duration, Result<u64, BodyError>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let mut body = std::pin::pin!(limited(Box::pin(client), limits));
            let mut got = 0;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(c) => got += c.len() as u64,
                    Err(e) => return (started.elapsed(), Err(payload_error(&e))),
                }
            }
            (started.elapsed(), Ok(got))
        })
    }

    #[test]
    fn a_body_that_keeps_the_rate_still_ends_at_body_timeout_max() {
        // 40 bytes per 100 ms is 400 B/s, well above 100 B/s: before `body_timeout_max`
        // every byte bought more time, so this client could hold the thread for ever.
        let limits = BodyLimits {
            max_body: u64::MAX,
            timeout: Duration::from_millis(300),
            min_rate: 100,
            max_time: Duration::from_millis(1200),
        };
        let (took, ended) = read_all(steady(40, Duration::from_millis(100), 40), limits);
        assert_eq!(ended, Err(BodyError::TimedOut));
        assert!(
            took >= Duration::from_millis(1150) && took < Duration::from_millis(1800),
            "{took:?}"
        );
        // The same client with a body that ends in time is read whole.
        let (_, ended) = read_all(steady(40, Duration::from_millis(100), 5), limits);
        assert_eq!(ended, Ok(200));
    }

    #[test]
    fn the_rate_is_measured_over_a_window_not_earned_as_credit() {
        // A burst of 10 000 bytes, then nothing: at 100 B/s that earned 100 s of credit; over
        // a window of 400 ms, the client is too slow once the burst has left the window.
        let limits = BodyLimits {
            max_body: u64::MAX,
            timeout: Duration::from_millis(400),
            min_rate: 100,
            max_time: Duration::from_secs(60),
        };
        let burst_then_silence = futures_util::stream::unfold(0, |i| async move {
            if i == 0 {
                return Some((Ok(Bytes::from(vec![b'x'; 10_000])), 1));
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            None
        });
        let (took, ended) = read_all(burst_then_silence, limits);
        assert_eq!(ended, Err(BodyError::TimedOut));
        assert!(
            took >= Duration::from_millis(380) && took < Duration::from_millis(1000),
            "{took:?}"
        );
        // Below the rate (20 bytes per 300 ms is about 67 B/s) fails once the first window
        // is over; above it (50 per 300 ms, about 167 B/s) goes on to the end.
        let (took, ended) = read_all(steady(20, Duration::from_millis(300), 20), limits);
        assert_eq!(ended, Err(BodyError::TimedOut));
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let (_, ended) = read_all(steady(50, Duration::from_millis(300), 6), limits);
        assert_eq!(ended, Ok(300));
    }
}
