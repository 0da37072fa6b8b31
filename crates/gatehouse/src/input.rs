//! Input: a request's parameters and body, read before the app is called.
//!
//! The query string and a form body (`application/x-www-form-urlencoded` or
//! `multipart/form-data`) become one ordered parameter list; uploaded files are spooled to
//! temporary files removed after the request; any other body is kept for the app's body
//! reader. A body past the alias's `max_body` is 413; a malformed form body is 400 with a
//! message saying what was wrong, and the app is never called with half-parsed data.

use actix_multipart::Multipart;
use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use std::io::Write;

use crate::environ::PairBuf;

/// A request refused while reading its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// The HTTP status to answer with (400, 413, 415).
    pub status: u16,
    /// What was wrong, for the client.
    pub message: String,
}

impl InputError {
    fn bad(message: impl Into<String>) -> Self {
        InputError { status: 400, message: message.into() }
    }
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
    /// The temporary file; removed when dropped.
    pub file: tempfile::NamedTempFile,
    /// Content size in bytes.
    pub size: u64,
}

/// A request's parsed input.
#[derive(Debug, Default)]
pub struct Input {
    /// Query parameters, then form fields.
    pub params: PairBuf,
    /// Uploaded files.
    pub uploads: Vec<Upload>,
    /// The body, when it was not a form.
    pub body: Bytes,
}

/// Parses a query string into `params`. Bytes that are not UTF-8 after decoding become
/// U+FFFD: the raw QUERY_STRING stays available to the app.
fn query_params(query: &str, params: &mut PairBuf) {
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
fn urlencoded_params(body: &[u8], params: &mut PairBuf) -> Result<(), InputError> {
    for (i, field) in body.split(|&b| b == b'&').filter(|f| !f.is_empty()).enumerate() {
        let (name, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], &field[eq + 1..]),
            None => (field, &b""[..]),
        };
        let bad_utf8 =
            || InputError::bad(format!("form field #{} is not valid UTF-8 after decoding", i + 1));
        let name = form_component(name).map_err(|_| bad_utf8())?;
        let value = form_component(value).map_err(|_| bad_utf8())?;
        params.push(name.as_bytes(), value.as_bytes());
    }
    Ok(())
}

/// Reads the whole body, refusing it past `max_body` bytes.
async fn read_body(mut payload: Payload, max_body: u64) -> Result<Bytes, InputError> {
    let too_large = || InputError {
        status: 413,
        message: format!(
            "the request body is larger than this alias's max_body of {max_body} bytes"
        ),
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| InputError::bad(format!("the request body could not be read: {e}")))?;
        if (body.len() + chunk.len()) as u64 > max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a multipart/form-data body: text fields into `params`, files spooled to disk.
async fn multipart(req: &HttpRequest, body: Bytes, input: &mut Input) -> Result<(), InputError> {
    let stream =
        futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(body) });
    let mut form = Multipart::new(req.headers(), stream);
    let malformed = |e: actix_multipart::MultipartError| {
        InputError::bad(format!("malformed multipart/form-data body: {e}"))
    };
    while let Some(field) = form.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or_default().to_owned();
        let filename =
            field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_owned);
        match filename {
            None => {
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    value.extend_from_slice(&chunk.map_err(malformed)?);
                }
                let value = String::from_utf8(value).map_err(|_| {
                    InputError::bad(format!("form field {name:?} is not valid UTF-8"))
                })?;
                input.params.push(name.as_bytes(), value.as_bytes());
            }
            Some(filename) => {
                let content_type = field.content_type().map(|m| m.to_string()).unwrap_or_default();
                let spool_error = |e: std::io::Error| InputError {
                    status: 500,
                    message: format!("the upload could not be stored: {e}"),
                };
                let mut file = tempfile::Builder::new()
                    .prefix("gatehouse-upload-")
                    .tempfile()
                    .map_err(spool_error)?;
                let mut size = 0u64;
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(malformed)?;
                    size += chunk.len() as u64;
                    file.write_all(&chunk).map_err(spool_error)?;
                }
                file.flush().map_err(spool_error)?;
                input.uploads.push(Upload { field: name, filename, content_type, file, size });
            }
        }
    }
    Ok(())
}

/// Reads a request's parameters and body.
pub async fn read(req: &HttpRequest, payload: Payload, max_body: u64) -> Result<Input, InputError> {
    let mut input = Input::default();
    query_params(req.query_string(), &mut input.params);
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| InputError::bad("the Content-Length header is not a number"))?;
        if len > max_body {
            return Err(InputError {
                status: 413,
                message: format!(
                    "the request body ({len} bytes) is larger than this alias's max_body of {max_body} bytes"
                ),
            });
        }
    }
    let body = read_body(payload, max_body).await?;
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/x-www-form-urlencoded") => urlencoded_params(&body, &mut input.params)?,
        Some("multipart/form-data") => multipart(req, body, &mut input).await?,
        _ => input.body = body,
    }
    Ok(input)
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
}
