//! Where an app call's request body comes from ([`BodySource`]): nothing, or the chunks the
//! HTTP side pumps in as they arrive; read by the app's thread with a limit, or by the
//! relay's task.

use std::time::Duration;

use actix_web::web::Bytes;
use gatehouse_abi::Status;
use tokio::sync::mpsc;

use super::reply::block_on_within;
use crate::request::input::BodyError;

/// Where the request body comes from.
#[derive(Debug)]
pub enum BodySource {
    /// No body (or a form body, already parsed into parameters).
    Empty,
    /// Chunks pumped from the client by the HTTP side, ending with an empty chunk (the whole
    /// body arrived) or an error. A channel closed without either means the HTTP side gave
    /// up on the request: the app reads an error, never a silently short body.
    Stream(mpsc::Receiver<Result<Bytes, BodyError>>),
}

impl BodySource {
    /// The next chunk of the body if the HTTP side has it now (as [`Self::next_chunk`]
    /// says); `None` when it has not arrived yet.
    pub(crate) fn try_next_chunk(&mut self) -> Option<Result<Option<Bytes>, BodyError>> {
        let BodySource::Stream(rx) = self else { return Some(Ok(None)) };
        match rx.try_recv() {
            Ok(got) => Some(self.took(Some(got))),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(self.took(None)),
        }
    }

    /// The next chunk of the body, waiting for it; `None` once the whole body was read.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        let BodySource::Stream(rx) = self else { return Ok(None) };
        let got = rx.blocking_recv();
        self.took(got)
    }

    /// [`BodySource::next_chunk`] waiting at most `limit`: `None` past it.
    pub(crate) fn next_chunk_within(
        &mut self,
        limit: Duration,
    ) -> Option<Result<Option<Bytes>, BodyError>> {
        let BodySource::Stream(rx) = self else { return Some(Ok(None)) };
        let got = block_on_within(rx.recv(), limit)?;
        Some(self.took(got))
    }

    /// [`BodySource::next_chunk`] for a caller on the async side, waiting at most `limit`
    /// when there is one: `None` past it.
    pub(crate) async fn next_chunk_async(
        &mut self,
        limit: Option<Duration>,
    ) -> Option<Result<Option<Bytes>, BodyError>> {
        let BodySource::Stream(rx) = self else { return Some(Ok(None)) };
        let got = match limit {
            None => rx.recv().await,
            Some(limit) => tokio::time::timeout(limit, rx.recv()).await.ok()?,
        };
        Some(self.took(got))
    }

    /// What the channel gave: an empty chunk ends the body, a closed channel without it
    /// means the HTTP side gave up.
    fn took(&mut self, got: Option<Result<Bytes, BodyError>>) -> Result<Option<Bytes>, BodyError> {
        match got {
            Some(Ok(chunk)) if chunk.is_empty() => {
                *self = BodySource::Empty;
                Ok(None)
            }
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => Err(e),
            None => Err(BodyError::Disconnected),
        }
    }
}

/// The ABI status a body reader returns (negated) for a body that failed.
pub fn body_error_code(e: BodyError) -> Status {
    match e {
        BodyError::TooLarge => Status::TOO_LARGE,
        BodyError::Disconnected | BodyError::TimedOut | BodyError::AppStalled => {
            Status::DISCONNECTED
        }
        BodyError::Malformed => Status::ERROR,
    }
}
