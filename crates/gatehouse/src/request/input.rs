//! Input: a request's parameters and body.
//!
//! The query string and a form body (`application/x-www-form-urlencoded` or
//! `multipart/form-data`) become one ordered parameter list before the app is called;
//! uploaded files stream to temporary files (in the configured `upload_dir`, removed after
//! the request). Any other body is not read here: [`pump`] streams it to the app while the app
//! reads it, chunked uploads included.
//!
//! Form bytes held at once across the daemon (spooled files and form text) count against
//! `upload_budget` ([`crate::spool`]) until the request ends: past it 503 with `Retry-After`.
//!
//! Limits: a body past the alias's `max_body` is 413, an uploaded file past `max_upload` is
//! 413, a text field past [`MAX_FIELD`] is 413, and so are more than [`MAX_FIELDS`]
//! parameters or [`MAX_FILES`] files. A malformed form body, form text that is not
//! UTF-8, or a body shorter than its Content-Length is 400, with a message saying what was
//! wrong; the app is never called with half-parsed data.

use std::io::Write;
use std::path::Path;

use actix_multipart::{Multipart, MultipartError};
use actix_web::HttpRequest;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;

use super::answer::Answer;
use super::pace::limited;
use crate::logs::per_request;
use crate::request::environ::PairBuf;

/// The largest text field of a multipart form, in bytes.
pub(crate) const MAX_FIELD: usize = 1024 * 1024;

/// The most parameters (query and form fields together) one request may have, like PHP's
/// `max_input_vars`: each costs memory many times its few bytes of body.
pub const MAX_FIELDS: usize = 10_000;

/// The most files one request may upload.
pub(crate) const MAX_FILES: usize = 1_000;

/// Why a streamed body stopped early, as the app's body reader reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Past the alias's `max_body`.
    TooLarge,
    /// Shorter than its Content-Length, or badly chunked.
    Malformed,
    /// The client went away.
    Disconnected,
    /// The client sent it too slowly (`body_timeout`, `body_min_rate`).
    TimedOut,
    /// The app took no chunk for its alias's `timeout`: it is stuck (504).
    AppStalled,
}

/// An uploaded file spooled to disk for the duration of the request.
#[derive(Debug)]
pub struct Upload {
    /// Form field name.
    pub field: String,
    /// The file name the client sent.
    pub filename: String,
    /// The part's Content-Type.
    pub content_type: String,
    /// The temporary file, closed (a request holds no descriptor per upload); removed when
    /// dropped.
    pub file: tempfile::TempPath,
    /// Content size in bytes.
    pub size: u64,
}

impl Upload {
    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.file
    }
}

/// A request's parsed parameters and uploads.
#[derive(Debug, Default)]
pub struct Input {
    /// Query parameters, then form fields.
    pub params: PairBuf,
    /// Uploaded files.
    pub uploads: Vec<Upload>,
    /// What the form holds of the daemon's `upload_budget`, until the request ends.
    pub held: crate::spool::Held,
}

/// What kind of body a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: no Content-Length (or 0) and no Transfer-Encoding.
    None,
    /// `application/x-www-form-urlencoded`.
    Urlencoded,
    /// `multipart/form-data`.
    Multipart,
    /// Anything else: streamed to the app.
    Other,
}

/// The limits of reading one request body: size and time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// The whole body.
    pub max_body: u64,
    /// The longest the client may send nothing, and the window its rate is measured over.
    pub timeout: Duration,
    /// The least bytes per second over every `timeout` window (0: `timeout` is a fixed
    /// deadline for the whole body).
    pub min_rate: u64,
    /// The longest the whole body may take, however fast it comes.
    pub max_time: Duration,
}

/// Limits for reading one request's input.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// The whole body.
    pub max_body: u64,
    /// One uploaded file.
    pub max_upload: u64,
    /// Where uploads are spooled.
    pub upload_dir: &'a Path,
    /// The user each spooled upload is given to (the workers' of an alias with `isolation:
    /// process` and its own `user`), through the file's open descriptor as it is created,
    /// before anything is written to it: never by path, which whoever may write
    /// `upload_dir` could have swapped for a link to another file by then.
    pub upload_owner: Option<u32>,
    /// The longest the client may send nothing, and the window its rate is measured over.
    pub body_timeout: Duration,
    /// The least bytes per second over every `body_timeout` window (0: a fixed deadline).
    pub min_rate: u64,
    /// The longest the whole body may take (`body_timeout_max`).
    pub body_timeout_max: Duration,
    /// The daemon's budget of form bytes held at once, and its limit (`upload_budget`).
    pub budget: &'static crate::spool::Budget,
    /// The budget's limit, in bytes.
    pub upload_budget: u64,
}

impl Limits<'_> {
    /// The body's size and time limits.
    pub(crate) fn body(&self) -> BodyLimits {
        BodyLimits {
            max_body: self.max_body,
            timeout: self.body_timeout,
            min_rate: self.min_rate,
            max_time: self.body_timeout_max,
        }
    }
}

/// Decides how to read a request's body from its headers; a Content-Length past
/// `max_body` is refused here, before anything is read.
pub fn body_kind(req: &HttpRequest, max_body: u64) -> Result<BodyKind, Answer> {
    let headers = req.headers();
    let length = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Answer::bad("the Content-Length header is not a number"))?,
        ),
        None => None,
    };
    if let Some(len) = length
        && len > max_body
    {
        return Err(declared_too_large(len, max_body));
    }
    // HTTP/1.1 says a body comes with a Content-Length or Transfer-Encoding; HTTP/2 frames
    // carry it without either (curl's `-T -`, a browser's streamed upload), so there a
    // request without a Content-Length is read to its end, which may come at once.
    let streamed = headers.contains_key(header::TRANSFER_ENCODING)
        || (length.is_none() && req.version() >= actix_web::http::Version::HTTP_2);
    if !streamed && length.unwrap_or(0) == 0 {
        return Ok(BodyKind::None);
    }
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    Ok(match essence.as_deref() {
        Some("application/x-www-form-urlencoded") => BodyKind::Urlencoded,
        Some("multipart/form-data") => BodyKind::Multipart,
        _ => BodyKind::Other,
    })
}

/// 413 for a body whose declared length `len` is past `max_body`.
pub(crate) fn declared_too_large(len: u64, max_body: u64) -> Answer {
    Answer::too_large(format!(
        "the request body ({len} bytes) is larger than this alias's max_body of {max_body} bytes"
    ))
}

/// Parses a query string into `params`. Bytes that are not UTF-8 after decoding become
/// U+FFFD: the raw QUERY_STRING stays available to the app.
pub fn query_params(query: &str, params: &mut PairBuf) {
    for (n, v) in form_urlencoded::parse(query.as_bytes()) {
        params.push(n.as_bytes(), v.as_bytes());
    }
}

/// Decodes one urlencoded component strictly: `+` is a space and the result must be UTF-8.
fn form_component(raw: &[u8]) -> Result<String, std::str::Utf8Error> {
    let plus_fixed: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus_fixed).decode_utf8().map(|c| c.into_owned())
}

/// Parses an urlencoded form body into `params`, refusing text that is not UTF-8.
pub fn urlencoded_params(body: &[u8], params: &mut PairBuf) -> Result<(), Answer> {
    for (i, field) in body.split(|&b| b == b'&').filter(|f| !f.is_empty()).enumerate() {
        let (name, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], &field[eq + 1..]),
            None => (field, &b""[..]),
        };
        let bad_utf8 =
            || Answer::bad(format!("form field #{} is not valid UTF-8 after decoding", i + 1));
        let name = form_component(name).map_err(|_| bad_utf8())?;
        let value = form_component(value).map_err(|_| bad_utf8())?;
        params.push(name.as_bytes(), value.as_bytes());
        if params.len() > MAX_FIELDS {
            return Err(too_many_fields());
        }
    }
    Ok(())
}

fn too_many_fields() -> Answer {
    Answer::too_large(format!(
        "the request has more than {MAX_FIELDS} parameters (query and form fields); send fewer"
    ))
}

pub(crate) fn payload_error(e: &PayloadError) -> BodyError {
    match e {
        PayloadError::Overflow => BodyError::TooLarge,
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => BodyError::TimedOut,
        PayloadError::Incomplete(Some(io)) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            BodyError::Disconnected
        }
        _ => BodyError::Malformed,
    }
}

/// Reads and parses a form body into `input`.
pub async fn read_form(
    req: &HttpRequest,
    payload: Payload,
    kind: BodyKind,
    limits: Limits<'_>,
    input: &mut Input,
) -> Result<(), Answer> {
    // A declared length is held at once: a client that would pass the budget hears it before
    // it sends anything.
    input.held = crate::spool::Held::of(limits.budget);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    hold(input, declared.unwrap_or(0), &limits)?;
    let body = limited(payload, limits.body());
    match kind {
        BodyKind::Urlencoded => {
            let mut buf = BytesMut::new();
            let mut body = std::pin::pin!(body);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Answer::body(payload_error(&e), limits.max_body))?;
                buf.extend_from_slice(&chunk);
                hold(input, buf.len() as u64, &limits)?;
            }
            urlencoded_params(&buf, &mut input.params)
        }
        BodyKind::Multipart => multipart(req, body, limits, input).await,
        BodyKind::None | BodyKind::Other => Ok(()),
    }
}

/// Holds at least `bytes` of the daemon's `upload_budget` for `input`, or answers 503.
fn hold(input: &mut Input, bytes: u64, limits: &Limits<'_>) -> Result<(), Answer> {
    input.held.at_least(bytes, limits.upload_budget).map_err(|full| {
        per_request!(Warn, "upload_budget", None;
            "form bodies would hold more than the upload_budget of {} bytes ({} held now); \
             answered 503", full.limit, limits.budget.used());
        Answer::uploads_full()
    })
}

/// The reply for a multipart parse failure.
fn multipart_error(e: MultipartError, max_body: u64) -> Answer {
    match e {
        MultipartError::Payload(p) => Answer::body(payload_error(&p), max_body),
        e => {
            let detail =
                std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default();
            Answer::bad(format!("malformed multipart/form-data body: {e}{detail}"))
        }
    }
}

/// Parses a multipart/form-data body as it arrives: text fields into `params`, files
/// streamed to temporary files.
async fn multipart(
    req: &HttpRequest,
    body: impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
    limits: Limits<'_>,
    input: &mut Input,
) -> Result<(), Answer> {
    let mut form = Multipart::new(req.headers(), body);
    let malformed = |e| multipart_error(e, limits.max_body);
    // The content bytes held (text in memory, files on disk), against `upload_budget`.
    let mut content = 0u64;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or_default().to_owned();
        let filename =
            field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_owned);
        let Some(filename) = filename else {
            let mut value = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(malformed)?;
                content += chunk.len() as u64;
                hold(input, content, &limits)?;
                value.extend_from_slice(&chunk);
                if value.len() > MAX_FIELD {
                    return Err(Answer::too_large(format!(
                        "form field {name:?} is larger than {MAX_FIELD} bytes; send large values as a file"
                    )));
                }
            }
            let value = String::from_utf8(value)
                .map_err(|_| Answer::bad(format!("form field {name:?} is not valid UTF-8")))?;
            input.params.push(name.as_bytes(), value.as_bytes());
            if input.params.len() > MAX_FIELDS {
                return Err(too_many_fields());
            }
            continue;
        };
        if input.uploads.len() >= MAX_FILES {
            return Err(Answer::too_large(format!(
                "the request uploads more than {MAX_FILES} files; send fewer at a time"
            )));
        }
        let content_type = field.content_type().map(|m| m.to_string()).unwrap_or_default();
        let spool_error = |e: std::io::Error| {
            let to = limits.upload_dir.display();
            per_request!(Error, format_args!("cannot spool an upload to {to}"), None; "{e}");
            Answer::new(500, "the upload could not be stored")
        };
        let mut file = tempfile::Builder::new()
            .prefix(&crate::spool::own_prefix())
            .tempfile_in(limits.upload_dir)
            .map_err(spool_error)?;
        if let Some(uid) = limits.upload_owner {
            std::os::unix::fs::fchown(file.as_file(), Some(uid), None).map_err(spool_error)?;
        }
        let mut size = 0u64;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(malformed)?;
            size += chunk.len() as u64;
            content += chunk.len() as u64;
            hold(input, content, &limits)?;
            if size > limits.max_upload {
                return Err(Answer::too_large(format!(
                    "uploaded file {filename:?} (field {name:?}) is larger than this alias's max_upload of {} bytes",
                    limits.max_upload
                )));
            }
            file.write_all(&chunk).map_err(spool_error)?;
        }
        file.flush().map_err(spool_error)?;
        let file = file.into_temp_path();
        input.uploads.push(Upload { field: name, filename, content_type, file, size });
    }
    Ok(())
}

/// Streams a non-form body to the app: each chunk into `tx` as it arrives, at most
/// `max_body` bytes, then an empty chunk that says the body is complete. Returns how it
/// ended at once; an error is also sent to the app, after the chunks before it (so the app
/// reads why its body stopped, not just that it did). An app that takes no chunk for
/// `stall` is stuck: the pump gives up with [`BodyError::AppStalled`]. Call it on an actix
/// (or tokio `LocalSet`) thread: an error may leave a local task behind to deliver it.
pub(crate) async fn pump<P>(
    payload: P,
    tx: mpsc::Sender<Result<Bytes, BodyError>>,
    limits: BodyLimits,
    stall: Duration,
) -> Result<(), BodyError>
where
    P: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut body = std::pin::pin!(limited(payload, limits));
    let send = |item| {
        let tx = tx.clone();
        async move {
            match actix_web::rt::time::timeout(stall, tx.send(item)).await {
                Ok(Ok(())) => Ok(true),
                // The app finished without reading the rest: stop reading.
                Ok(Err(_)) => Ok(false),
                Err(_) => Err(BodyError::AppStalled),
            }
        }
    };
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                if !send(Ok(chunk)).await? {
                    return Ok(());
                }
            }
            Err(e) => {
                // The cause goes behind the chunks the app has not taken yet. When they
                // fill the channel, a task waits for room (up to `stall`, as a chunk would),
                // so the HTTP side can answer the client now.
                let e = payload_error(&e);
                if let Err(mpsc::error::TrySendError::Full(item)) = tx.try_send(Err(e)) {
                    actix_web::rt::spawn(async move {
                        let _ = actix_web::rt::time::timeout(stall, tx.send(item)).await;
                    });
                }
                return Err(e);
            }
        }
    }
    send(Ok(Bytes::new())).await.map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(b: &PairBuf) -> Vec<(String, String)> {
        b.iter()
            .map(|(n, v)| {
                (String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
            })
            .collect()
    }

    /// A chunk's length, or the body's error, as the app reads it.
    type Read = Result<usize, BodyError>;

    /// What an app reads from [`pump`]'s channel (capacity `room`) when the client sends
    /// `chunks` chunks and then a body cut short, the app starting to read only after the
    /// pump has returned, `late` after it.
    fn read_after_cut(room: usize, chunks: usize, late: Duration) -> Vec<Read> {
        let client = futures_util::stream::iter(
            (0..chunks)
                .map(|_| Ok(Bytes::from_static(b"chunk")))
                .chain([Err(PayloadError::Incomplete(None))]),
        );
        let limits = BodyLimits {
            max_body: 100,
            timeout: Duration::from_secs(5),
            min_rate: 0,
            max_time: Duration::from_secs(60),
        };
        let stall = Duration::from_millis(200);
        actix_web::rt::System::new().block_on(async move {
            let (tx, mut rx) = mpsc::channel(room);
            let ended = pump(client, tx, limits, stall).await;
            assert_eq!(ended, Err(BodyError::Malformed), "the HTTP side learns it at once");
            actix_web::rt::time::sleep(late).await;
            let mut read = Vec::new();
            while let Some(item) = rx.recv().await {
                read.push(item.map(|chunk| chunk.len()));
            }
            read
        })
    }

    #[test]
    fn a_cut_body_reaches_the_app_after_the_chunks_before_it() {
        use BodyError::Malformed;
        // (channel room, chunks before the cut, the app's delay, what it reads: then the
        // channel closes, and the app's reader says Disconnected for a missing cause)
        let table: &[(usize, usize, u64, &[Read])] = &[
            // Room for the cause: it is queued at once.
            (4, 2, 0, &[Ok(5), Ok(5), Err(Malformed)]),
            (4, 0, 0, &[Err(Malformed)]),
            // The chunks fill the channel: the cause still comes, after them.
            (2, 2, 0, &[Ok(5), Ok(5), Err(Malformed)]),
            (2, 2, 50, &[Ok(5), Ok(5), Err(Malformed)]),
            // An app that reads nothing for longer than the stall limit gets no cause.
            (2, 2, 400, &[Ok(5), Ok(5)]),
        ];
        for &(room, chunks, late, want) in table {
            let got = read_after_cut(room, chunks, Duration::from_millis(late));
            assert_eq!(got, want, "room {room}, {chunks} chunks, app {late} ms late");
        }
    }

    /// Reads a form body of `content_type` through [`read_form`] against a budget of
    /// `limit` bytes of which `taken` are held by other requests.
    fn read_against_budget(
        content_type: &str,
        body: &'static [u8],
        taken: u64,
        limit: u64,
    ) -> Result<u64, u16> {
        let budget: &'static crate::spool::Budget =
            Box::leak(Box::new(crate::spool::Budget::new()));
        let mut other = crate::spool::Held::of(budget);
        other.at_least(taken, u64::MAX).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_body: 1 << 20,
            max_upload: 1 << 20,
            upload_dir: dir.path(),
            upload_owner: None,
            body_timeout: Duration::from_secs(5),
            min_rate: 0,
            body_timeout_max: Duration::from_secs(5),
            budget,
            upload_budget: limit,
        };
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header((header::CONTENT_TYPE, content_type))
            .set_payload(body)
            .to_http_parts();
        let payload = futures_util::FutureExt::now_or_never(
            <Payload as actix_web::FromRequest>::from_request(&req, &mut payload),
        )
        .unwrap()
        .unwrap();
        let kind = body_kind(&req, limits.max_body).unwrap();
        actix_web::rt::System::new().block_on(async {
            let mut input = Input::default();
            let read = read_form(&req, payload, kind, limits, &mut input).await;
            let held = budget.used() - taken;
            drop(input);
            assert_eq!(budget.used(), taken, "given back when the request ends");
            read.map(|()| held).map_err(|a| a.status)
        })
    }

    #[test]
    fn form_bodies_hold_the_upload_budget_until_the_request_ends() {
        let form = "application/x-www-form-urlencoded";
        assert_eq!(read_against_budget(form, b"a=1&b=22", 0, 100), Ok(8));
        assert_eq!(read_against_budget(form, b"a=1&b=22", 95, 100), Err(503));
        let multipart = "multipart/form-data; boundary=XyZ";
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\n0123456789\r\n--XyZ--\r\n";
        assert_eq!(read_against_budget(multipart, body, 0, 1000), Ok(body.len() as u64));
        assert_eq!(read_against_budget(multipart, body, 0, 50), Err(503));
    }

    #[test]
    fn urlencoded_table() {
        let ok: &[(&str, &[(&str, &str)])] = &[
            ("id=A002", &[("id", "A002")]),
            ("a=1&b=2&a=3", &[("a", "1"), ("b", "2"), ("a", "3")]),
            ("q=a+b%20c&empty=&flag", &[("q", "a b c"), ("empty", ""), ("flag", "")]),
            ("&&x=%C3%A9&", &[("x", "\u{e9}")]),
            ("", &[]),
        ];
        for (body, want) in ok {
            let mut b = PairBuf::default();
            urlencoded_params(body.as_bytes(), &mut b).unwrap();
            let want: Vec<_> =
                want.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
            assert_eq!(pairs(&b), want, "{body}");
        }
        let mut b = PairBuf::default();
        let err = urlencoded_params(b"ok=1&bad=%FF", &mut b).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("#2"), "{}", err.message);
    }

    #[test]
    fn query_strings_are_lenient() {
        let mut b = PairBuf::default();
        query_params("id=A001&x=%FF&y=a+b", &mut b);
        assert_eq!(
            pairs(&b),
            vec![
                ("id".to_owned(), "A001".to_owned()),
                ("x".to_owned(), "\u{fffd}".to_owned()),
                ("y".to_owned(), "a b".to_owned())
            ]
        );
    }

    #[test]
    fn payload_errors_map_to_body_errors() {
        assert_eq!(payload_error(&PayloadError::Overflow), BodyError::TooLarge);
        assert_eq!(payload_error(&PayloadError::Incomplete(None)), BodyError::Malformed);
    }
}
