//! The payloads of the frames that carry more than bytes: `Init`, `Request`, `Head`, `Log`
//! (see [`proto`](super::proto) for the framing). Each is encoded by one side and decoded
//! by the other; the decoders never trust a length or count they read.

use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use gatehouse_abi::{Pair, Str, Upload};

use super::proto::{Get, ProtoError, Put};
use crate::call::{Head, app_may_set};
use crate::request::environ::PairBuf;

/// What a worker is told first, on its control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Init {
    /// The configuration file (relative paths in it resolve against its folder).
    pub config_file: PathBuf,
    /// The configuration's text as the daemon validated it, cut down to the globals and
    /// the worker's alias ([`gatehouse_config::worker_text`]).
    pub text: String,
    /// The index of the alias to serve in `text`'s `aliases` (0: the only one).
    pub alias: u32,
    /// Where the worker keeps the private copies of the plugins it loads.
    pub cache_dir: PathBuf,
    /// The most verbose log level the daemon writes.
    pub level: u8,
}

impl Init {
    /// Appends the payload.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        use std::os::unix::ffi::OsStrExt;
        out.put_bytes(self.config_file.as_os_str().as_bytes());
        out.put_bytes(self.text.as_bytes());
        out.put_u32(self.alias);
        out.put_bytes(self.cache_dir.as_os_str().as_bytes());
        out.put_u8(self.level);
    }

    /// Reads a payload.
    pub(crate) fn decode(payload: &[u8]) -> Result<Init, ProtoError> {
        use std::os::unix::ffi::OsStrExt;
        let mut g = Get::new(payload, "Init");
        let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
        Ok(Init {
            config_file: path(g.bytes()?),
            text: String::from_utf8(g.bytes()?.to_vec()).map_err(|_| ProtoError::Short("Init"))?,
            alias: g.u32()?,
            cache_dir: path(g.bytes()?),
            level: g.u8()?,
        })
    }
}

/// One request, as the daemon sends it.
#[derive(Debug)]
pub(crate) struct RequestOut<'a> {
    /// The request id.
    pub id: u64,
    /// Whether develop mode is on for the alias.
    pub develop_mode: bool,
    /// The file to serve (the plugin, or a handler's script).
    pub file: &'a [u8],
    /// A directory group's plugin NAME.
    pub group_name: Option<&'a str>,
    /// The CGI/WSGI variables.
    pub vars: &'a PairBuf,
    /// The parameters.
    pub params: &'a PairBuf,
    /// The uploads: (field, filename, content type, path of the spooled file, size).
    pub uploads: &'a [crate::request::input::Upload],
    /// How many `Body`/`BodyError` frames follow the request unasked: the body the daemon
    /// already had, so an app reading a small body makes no round trip for it.
    pub preloaded: u32,
}

impl RequestOut<'_> {
    /// The length of the payload [`encode`](Self::encode) appends, without encoding it (to
    /// refuse a request whose frame would pass [`super::proto::MAX_FRAME`]).
    pub(crate) fn encoded_len(&self) -> usize {
        let mut count = super::proto::Count::default();
        self.encode(&mut count);
        count.0
    }

    /// Appends the payload.
    pub(crate) fn encode(&self, out: &mut impl Put) {
        use std::os::unix::ffi::OsStrExt;
        out.put_u64(self.id);
        out.put_u8(u8::from(self.develop_mode));
        out.put_bytes(self.file);
        out.put_u8(u8::from(self.group_name.is_some()));
        out.put_bytes(self.group_name.unwrap_or("").as_bytes());
        for pairs in [self.vars, self.params] {
            out.put_u32(u32::try_from(pairs.iter().count()).unwrap_or(u32::MAX));
            for (name, value) in pairs.iter() {
                out.put_bytes(name);
                out.put_bytes(value);
            }
        }
        out.put_u32(u32::try_from(self.uploads.len()).unwrap_or(u32::MAX));
        for u in self.uploads {
            out.put_bytes(u.field.as_bytes());
            out.put_bytes(u.filename.as_bytes());
            out.put_bytes(u.content_type.as_bytes());
            out.put_bytes(u.path().as_os_str().as_bytes());
            out.put_u64(u.size);
        }
        out.put_u32(self.preloaded);
    }
}

/// One request, as the worker reads it: the ABI's arrays pointing into the payload.
#[derive(Debug)]
pub(crate) struct RequestIn<'a> {
    /// The request id.
    pub id: u64,
    /// Whether develop mode is on for the alias.
    pub develop_mode: bool,
    /// The file to serve.
    pub file: &'a [u8],
    /// A directory group's plugin NAME.
    pub group_name: Option<&'a [u8]>,
    /// The CGI/WSGI variables.
    pub vars: Vec<Pair>,
    /// The parameters.
    pub params: Vec<Pair>,
    /// The uploads.
    pub uploads: Vec<Upload>,
    /// How many body frames follow the request unasked.
    pub preloaded: u32,
}

impl<'a> RequestIn<'a> {
    /// Reads a payload (the arrays borrow from it).
    pub(crate) fn decode(payload: &'a [u8]) -> Result<RequestIn<'a>, ProtoError> {
        let mut g = Get::new(payload, "Request");
        let id = g.u64()?;
        let develop_mode = g.u8()? != 0;
        let file = g.bytes()?;
        let has_group = g.u8()? != 0;
        let group = g.bytes()?;
        let pairs = |g: &mut Get<'a>| -> Result<Vec<Pair>, ProtoError> {
            let n = g.count(8)?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(Pair { name: Str::new(g.bytes()?), value: Str::new(g.bytes()?) });
            }
            Ok(out)
        };
        let vars = pairs(&mut g)?;
        let params = pairs(&mut g)?;
        let n = g.count(24)?;
        let mut uploads = Vec::with_capacity(n);
        for _ in 0..n {
            uploads.push(Upload {
                field: Str::new(g.bytes()?),
                filename: Str::new(g.bytes()?),
                content_type: Str::new(g.bytes()?),
                path: Str::new(g.bytes()?),
                size: g.u64()?,
            });
        }
        let preloaded = g.u32()?;
        Ok(RequestIn {
            id,
            develop_mode,
            file,
            group_name: has_group.then_some(group),
            vars,
            params,
            uploads,
            preloaded,
        })
    }
}

/// Appends a validated response head.
pub(crate) fn encode_head(head: &Head, out: &mut Vec<u8>) {
    out.put_u16(head.status.as_u16());
    out.put_u8(u8::from(head.declared_len.is_some()));
    out.put_u64(head.declared_len.unwrap_or(0));
    out.put_u32(u32::try_from(head.headers.len()).unwrap_or(u32::MAX));
    for (name, value) in &head.headers {
        out.put_bytes(name.as_str().as_bytes());
        out.put_bytes(value.as_bytes());
    }
}

/// Reads a response head, validating it again (a worker is not trusted with the daemon's
/// HTTP side).
pub(crate) fn decode_head(payload: &[u8]) -> Result<Head, ProtoError> {
    let bad = ProtoError::Short("Head");
    let mut g = Get::new(payload, "Head");
    let status = StatusCode::from_u16(g.u16()?)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| bad.clone())?;
    let has_len = g.u8()? != 0;
    let len = g.u64()?;
    let n = g.count(8)?;
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let name = HeaderName::from_bytes(g.bytes()?).map_err(|_| bad.clone())?;
        let value = HeaderValue::from_bytes(g.bytes()?).map_err(|_| bad.clone())?;
        // Filtered again as in process: a worker does not decide the connection or framing.
        if app_may_set(&name) {
            headers.push((name, value));
        }
    }
    Ok(Head { status, headers, declared_len: has_len.then_some(len) })
}

/// A worker's log record, as the daemon reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogIn<'a> {
    pub(crate) level: log::Level,
    pub(crate) target: &'a str,
    pub(crate) message: String,
    /// Where the worker logged it.
    pub(crate) file: Option<&'a str>,
    pub(crate) line: Option<u32>,
    /// A per-request line's mark: the owner of its budget (see `logs::per_request!`), so
    /// the daemon's error log limits it as one of its own.
    pub(crate) per_request: Option<&'a str>,
}

/// Appends a log record: level, target, message, then its file and line, and its
/// per-request mark (a flag, then the budget's owner).
pub(crate) fn encode_log(record: &log::Record<'_>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.put_u8(super::proto::level_byte(record.level()));
    out.put_bytes(record.target().as_bytes());
    let at = out.len();
    out.put_u32(0);
    let _ = write!(out, "{}", record.args());
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out.put_bytes(record.file().unwrap_or_default().as_bytes());
    out.put_u32(record.line().unwrap_or(0));
    match crate::logs::per_request_mark(record) {
        Some(owner) => {
            out.put_u8(1);
            out.put_bytes(owner.as_bytes());
        }
        None => out.put_u8(0),
    }
}

/// Reads a log record. (A record that ends after its message, as an older worker binary
/// sends it, has no place and no mark.)
pub(crate) fn decode_log(payload: &[u8]) -> Result<LogIn<'_>, ProtoError> {
    let mut g = Get::new(payload, "Log");
    let level = super::proto::byte_level(g.u8()?);
    let target = std::str::from_utf8(g.bytes()?).unwrap_or("gatehouse::worker");
    let message = String::from_utf8_lossy(g.bytes()?).into_owned();
    let mut record = LogIn { level, target, message, file: None, line: None, per_request: None };
    let Ok(file) = g.bytes() else { return Ok(record) };
    record.file = std::str::from_utf8(file).ok().filter(|f| !f.is_empty());
    record.line = Some(g.u32()?).filter(|&l| l != 0);
    if g.u8()? != 0 {
        record.per_request = Some(std::str::from_utf8(g.bytes()?).unwrap_or_default());
    }
    Ok(record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn init_round_trips() {
        let init = Init {
            config_file: "/etc/gatehouse/hosting.yaml".into(),
            text: "aliases: []\n".into(),
            alias: 3,
            cache_dir: "/var/cache/gatehouse".into(),
            level: 3,
        };
        let mut out = Vec::new();
        init.encode(&mut out);
        assert_eq!(Init::decode(&out).unwrap(), init);
        for cut in 0..out.len() {
            assert!(Init::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_worker_head_loses_framing_and_hop_by_hop_headers() {
        use actix_web::http::header;
        // What a worker that skipped its own filter could send.
        let sent = Head {
            status: StatusCode::OK,
            headers: vec![
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
                (header::TRANSFER_ENCODING, HeaderValue::from_static("chunked")),
                (header::CONNECTION, HeaderValue::from_static("close")),
                (header::CONTENT_LENGTH, HeaderValue::from_static("5")),
                (header::UPGRADE, HeaderValue::from_static("h2c")),
            ],
            declared_len: Some(3),
        };
        let mut out = Vec::new();
        encode_head(&sent, &mut out);
        let Ok(back) = decode_head(&out) else { panic!("decodes") };
        let names: Vec<&str> = back.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type"]);
        assert_eq!(back.declared_len, Some(3));
    }

    #[test]
    fn request_round_trips_and_refuses_truncation() {
        let mut vars = PairBuf::default();
        vars.push(b"REQUEST_METHOD", b"POST");
        vars.push(b"PATH_INFO", b"/a\xff");
        let mut params = PairBuf::default();
        params.push(b"q", b"");
        let out = RequestOut {
            id: 42,
            develop_mode: true,
            file: b"/srv/apps/libhello.so",
            group_name: Some("hello"),
            vars: &vars,
            params: &params,
            uploads: &[],
            preloaded: 3,
        };
        let mut buf = Vec::new();
        out.encode(&mut buf);
        assert_eq!(out.encoded_len(), buf.len());
        let upload = crate::request::input::Upload {
            field: "file".to_owned(),
            filename: "a.txt".to_owned(),
            content_type: "text/plain".to_owned(),
            file: tempfile::NamedTempFile::new().unwrap().into_temp_path(),
            size: 5,
        };
        let with_upload = RequestOut { uploads: std::slice::from_ref(&upload), ..out };
        let mut with = Vec::new();
        with_upload.encode(&mut with);
        assert_eq!(with_upload.encoded_len(), with.len());
        let r = RequestIn::decode(&buf).unwrap();
        assert_eq!((r.id, r.develop_mode, r.file), (42, true, &b"/srv/apps/libhello.so"[..]));
        assert_eq!(r.preloaded, 3);
        assert_eq!(r.group_name, Some(&b"hello"[..]));
        assert_eq!((r.vars.len(), r.params.len(), r.uploads.len()), (2, 1, 0));
        assert_eq!((r.vars[1].name.len, r.vars[1].value.len), (9, 3));
        assert_eq!((r.params[0].name.len, r.params[0].value.len), (1, 0));
        for cut in 0..buf.len() {
            assert!(RequestIn::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn heads_round_trip_and_bad_ones_are_refused() {
        let head = Head {
            status: StatusCode::CREATED,
            headers: vec![(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("text/plain"),
            )],
            declared_len: Some(5),
        };
        let mut buf = Vec::new();
        encode_head(&head, &mut buf);
        let back = decode_head(&buf).unwrap();
        assert_eq!((back.status, back.declared_len), (StatusCode::CREATED, Some(5)));
        assert_eq!(back.headers, head.headers);
        // Status 99, a header name with a space, a value with a newline: all refused.
        let table: &[(u16, &[u8], &[u8])] =
            &[(99, b"a", b"b"), (200, b"bad name", b"b"), (200, b"a", b"x\ny")];
        for &(status, name, value) in table {
            let mut buf = Vec::new();
            buf.put_u16(status);
            buf.put_u8(0);
            buf.put_u64(0);
            buf.put_u32(1);
            buf.put_bytes(name);
            buf.put_bytes(value);
            assert!(decode_head(&buf).is_err(), "{status} {name:?} {value:?}");
        }
    }

    #[test]
    fn log_records_carry_their_place_and_per_request_mark() {
        let mut buf = Vec::new();
        let marked = [(crate::logs::PER_REQUEST_KEY, "")];
        encode_log(
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("gatehouse::call::reply")
                .file(Some("crates/gatehouse/src/call/reply.rs"))
                .line(Some(315))
                .key_values(&marked)
                .args(format_args!("app a (request 3): short"))
                .build(),
            &mut buf,
        );
        let back = decode_log(&buf).unwrap();
        assert_eq!(
            back,
            LogIn {
                level: log::Level::Warn,
                target: "gatehouse::call::reply",
                message: "app a (request 3): short".to_owned(),
                file: Some("crates/gatehouse/src/call/reply.rs"),
                line: Some(315),
                per_request: Some(""),
            }
        );
        // A start-up line has no mark.
        let mut plain = Vec::new();
        encode_log(
            &log::Record::builder().target("gatehouse::host").args(format_args!("loaded")).build(),
            &mut plain,
        );
        let back = decode_log(&plain).unwrap();
        assert_eq!((back.message.as_str(), back.per_request), ("loaded", None));
        // An older worker's record: no place, no mark.
        let old = &buf[..1 + 4 + "gatehouse::call::reply".len() + 4 + back_len(&buf)];
        let back = decode_log(old).unwrap();
        assert_eq!((back.file, back.line, back.per_request), (None, None, None));
    }

    /// The length of the message of the encoded record `buf`.
    fn back_len(buf: &[u8]) -> usize {
        let at = 1 + 4 + u32::from_le_bytes(buf[1..5].try_into().unwrap()) as usize;
        u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize
    }
}
