//! The safe view of one request: environ variables, headers, parameters, uploads, the body
//! and the debug log.

use std::io;
use std::path::Path;

use crate::ffi::{RawRequest, RawUpload};

/// One HTTP request, as the daemon describes it. Valid for the duration of the handler call.
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) raw: RawRequest<'a>,
    upgraded: std::cell::Cell<bool>,
}

impl<'a> Request<'a> {
    pub(crate) fn from_raw(raw: RawRequest<'a>) -> Self {
        Request { raw, upgraded: std::cell::Cell::new(false) }
    }

    /// Whether the client asks for a WebSocket (`Upgrade: websocket`; the daemon has
    /// checked the handshake).
    pub fn wants_websocket(&self) -> bool {
        self.header("Upgrade")
            .is_some_and(|u| u.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket")))
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in its order.
    pub fn websocket_protocols(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.header("Sec-WebSocket-Protocol")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// Accepts the client's WebSocket with `protocol` (one it offered, or `None`): the
    /// daemon answers 101 and owns the connection; the [`Response`](crate::Response) this
    /// `handle` returns is not sent. Messages then reach [`App::on_message`](crate::App::on_message),
    /// after this `handle` returns. `None` when the request is not a WebSocket handshake,
    /// the protocol was not offered, or the alias has `max_websockets` open (the client then
    /// gets 503, and the response `handle` returns is not sent): answer as usual.
    pub fn accept_websocket(&self, protocol: Option<&str>) -> Option<crate::Socket> {
        let sockets = self.raw.sockets?;
        match self.raw.websocket_accept(protocol.unwrap_or_default()) {
            Ok(id) => {
                self.upgraded.set(true);
                Some(crate::Socket::new(id, sockets))
            }
            Err(gatehouse_abi::Status::DISCONNECTED) => {
                // The daemon answered (503), or the client left.
                self.upgraded.set(true);
                None
            }
            Err(_) => None,
        }
    }

    /// Whether the daemon answered this request itself: its WebSocket was accepted (101),
    /// or refused past `max_websockets` (503).
    pub(crate) fn upgraded(&self) -> bool {
        self.upgraded.get()
    }

    /// An environ variable (`REQUEST_METHOD`, `PATH_INFO`, `HTTP_USER_AGENT`, an `env`
    /// setting, ...) as raw bytes.
    pub fn var_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.raw.vars.iter().find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v)
    }

    /// An environ variable as text, if present and valid UTF-8.
    pub fn var(&self, name: &str) -> Option<&'a str> {
        self.var_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every environ variable as (name, value) bytes, in the daemon's order.
    pub fn vars(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.raw.vars.iter()
    }

    /// Number of environ variables.
    pub fn vars_len(&self) -> usize {
        self.raw.vars.len()
    }

    fn var_or_empty(&self, name: &str) -> &'a str {
        self.var(name).unwrap_or_default()
    }

    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.var_or_empty("REQUEST_METHOD")
    }

    /// The part of the URL path that selected the app (the alias), e.g. `/myapp`.
    pub fn script_name(&self) -> &'a str {
        self.var_or_empty("SCRIPT_NAME")
    }

    /// The rest of the URL path after [`script_name`](Self::script_name), percent-decoded;
    /// empty or starting with `/`.
    pub fn path_info(&self) -> &'a str {
        self.var_or_empty("PATH_INFO")
    }

    /// The full decoded path: `SCRIPT_NAME` followed by `PATH_INFO`.
    pub fn path(&self) -> String {
        let mut p = String::from(self.script_name());
        p.push_str(self.path_info());
        p
    }

    /// The raw query string (without `?`), empty when there is none.
    pub fn query_string(&self) -> &'a str {
        self.var_or_empty("QUERY_STRING")
    }

    /// A request header by name (case-insensitive), as CGI exposes it: repeated headers are
    /// joined with `, `.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let key = header_var_name(name);
        self.var(&key)
    }

    /// Every request header as (lower-case name, value), recovered from the `HTTP_*`,
    /// `CONTENT_TYPE` and `CONTENT_LENGTH` variables.
    pub fn headers(&self) -> impl Iterator<Item = (String, &'a [u8])> + 'a {
        self.raw.vars.iter().filter_map(|(n, v)| {
            let name = std::str::from_utf8(n).ok()?;
            let h = match name {
                "CONTENT_TYPE" | "CONTENT_LENGTH" => name,
                _ => name.strip_prefix("HTTP_")?,
            };
            Some((h.to_ascii_lowercase().replace('_', "-"), v))
        })
    }

    /// Every parameter as (name, value): the query string's first, then the form body's
    /// (urlencoded or multipart text fields), in order, repeated names kept. GET and POST
    /// parameters are read the same way.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.raw
            .params
            .iter()
            .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
    }

    /// The first value of parameter `name`, from the query string or the form body.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every value of parameter `name`, in order.
    pub fn param_all(&self, name: &str) -> Vec<&'a str> {
        self.params().filter(|(n, _)| *n == name).map(|(_, v)| v).collect()
    }

    /// Files uploaded in a multipart form body.
    pub fn uploads(&self) -> impl Iterator<Item = UploadedFile<'a>> + 'a {
        self.raw.uploads().map(|raw| UploadedFile { raw })
    }

    /// A reader over the request body. Form bodies have already been parsed into
    /// [`params`](Self::params) and read as empty.
    pub fn body_reader(&self) -> BodyReader<'_, 'a> {
        BodyReader { req: self }
    }

    /// The whole request body.
    pub fn body(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut self.body_reader(), &mut out)?;
        Ok(out)
    }

    /// Writes a line to the app's debug log when develop mode is on for this alias, or always
    /// when `must` is true (the seed's `debugLog(msg, must)`). Returns whether the line was
    /// written (false when skipped by rule or when writing failed).
    pub fn debug_log(&self, message: impl AsRef<str>, must: bool) -> bool {
        self.raw.debug_log(message.as_ref(), must)
    }

    /// Reports an error to the daemon's error log, tagged with the app and request.
    pub fn log_error(&self, message: impl AsRef<str>) {
        self.raw.log_error(message.as_ref());
    }

    /// Writes an informational line (level INFO) to the daemon's error log, tagged with the
    /// app and request: what an app prints, as opposed to an error. On a daemon older than
    /// this call the line goes through [`Request::log_error`].
    pub fn log_info(&self, message: impl AsRef<str>) {
        self.raw.log_info(message.as_ref());
    }
}

/// The CGI variable name for a header: `User-Agent` becomes `HTTP_USER_AGENT`;
/// `Content-Type` and `Content-Length` become `CONTENT_TYPE` and `CONTENT_LENGTH`.
fn header_var_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    match upper.as_str() {
        "CONTENT_TYPE" | "CONTENT_LENGTH" => upper,
        _ => format!("HTTP_{upper}"),
    }
}

/// Reads the request body through the daemon, as `wsgi.input` does.
#[derive(Debug)]
pub struct BodyReader<'r, 'a> {
    req: &'r Request<'a>,
}

impl io::Read for BodyReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.req.raw.read_body(buf);
        usize::try_from(n).map_err(|_| body_error(n))
    }
}

/// The error for a failed body read (`-status`, see the ABI's `read_body`).
fn body_error(n: isize) -> io::Error {
    let status = u32::try_from(n.unsigned_abs())
        .map(gatehouse_abi::Status)
        .unwrap_or(gatehouse_abi::Status::ERROR);
    match status {
        gatehouse_abi::Status::TOO_LARGE => io::Error::new(
            io::ErrorKind::FileTooLarge,
            "the request body is larger than the alias's max_body",
        ),
        gatehouse_abi::Status::DISCONNECTED => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the client went away while sending the body",
        ),
        _ => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the request body was cut short or badly chunked",
        ),
    }
}

/// A file uploaded in a multipart form, spooled by the daemon to a temporary file that is
/// removed after the request.
#[derive(Debug, Clone, Copy)]
pub struct UploadedFile<'a> {
    raw: RawUpload<'a>,
}

impl<'a> UploadedFile<'a> {
    /// The form field name.
    pub fn field(&self) -> &'a str {
        std::str::from_utf8(self.raw.field()).unwrap_or_default()
    }

    /// The file name the client sent (may be empty).
    pub fn filename(&self) -> &'a str {
        std::str::from_utf8(self.raw.filename()).unwrap_or_default()
    }

    /// The part's Content-Type (may be empty).
    pub fn content_type(&self) -> &'a str {
        std::str::from_utf8(self.raw.content_type()).unwrap_or_default()
    }

    /// Where the content is on disk, for the duration of the request.
    pub fn path(&self) -> &'a Path {
        crate::bytes_path(self.raw.path())
    }

    /// Size of the content in bytes.
    pub fn size(&self) -> u64 {
        self.raw.size()
    }

    /// Reads the whole content.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        std::fs::read(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::{body_error, header_var_name};
    use std::io::ErrorKind;

    #[test]
    fn body_read_failures_keep_their_cause() {
        for (n, kind) in [
            (-5, ErrorKind::FileTooLarge),
            (-4, ErrorKind::ConnectionAborted),
            (-1, ErrorKind::UnexpectedEof),
            (-99, ErrorKind::UnexpectedEof),
        ] {
            assert_eq!(body_error(n).kind(), kind, "{n}");
        }
    }

    #[test]
    fn header_names_map_to_cgi_variables() {
        for (header, var) in [
            ("User-Agent", "HTTP_USER_AGENT"),
            ("content-type", "CONTENT_TYPE"),
            ("Content-Length", "CONTENT_LENGTH"),
            ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
            ("Host", "HTTP_HOST"),
        ] {
            assert_eq!(header_var_name(header), var, "{header}");
        }
    }
}
