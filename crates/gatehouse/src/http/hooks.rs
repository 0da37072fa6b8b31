//! The access and authentication hooks of an alias (`access_script`, `auth_user_script`),
//! asked before its app as Apache asks mod_wsgi's `WSGIAccessScript` and
//! `WSGIAuthUserScript`: access first (403), then HTTP Basic credentials (401 with the
//! alias's realm). They run on the alias's pool, before any of the body is read; a request
//! that passes gets `REMOTE_USER` and `AUTH_TYPE`.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use gatehouse_abi::Verdict;
use tokio::sync::oneshot;

use crate::call::deadline::Deadline;
use crate::call::hook::Hook;
use crate::host::{HookKind, Host, Outcome};
use crate::logs::per_request;
use crate::request::answer::Answer;
use crate::request::environ::PairBuf;
use crate::request::input::{self, Input};

/// The 401 of an alias whose `auth_user_script` wants credentials the request lacks, for
/// the `Expect: 100-continue` hook: the client is not asked for a body that would be
/// refused. Not for an alias with an access hook too: that one is asked first (403 before
/// 401, as Apache's phases run), which takes the pool.
pub(super) fn refused_before_body(
    host: &Host,
    mount: usize,
    headers: &actix_web::http::header::HeaderMap,
) -> Option<Answer> {
    let m = &host.mounts[mount];
    let hooks = m.hooks.as_ref()?;
    if !hooks.has(HookKind::Password)
        || hooks.has(HookKind::Access)
        || basic_credentials(headers).is_some()
    {
        return None;
    }
    Some(challenge(&m.alias))
}

/// The 401 asking for `alias`'s credentials, with its realm.
fn challenge(alias: &gatehouse_config::Alias) -> Answer {
    Answer::unauthorized("authentication required", Arc::from(alias.hooks.auth_realm.as_str()))
}

/// What the hooks decided.
enum Decision {
    /// The request goes on, as this user when the password hook passed it.
    Pass(Option<Vec<u8>>),
    /// The daemon answers.
    Refuse(Answer),
}

/// Asks alias `mount`'s hooks about a request whose environ is `vars`; on a pass, adds
/// `REMOTE_USER` and `AUTH_TYPE` to it and returns the user. Without hooks, does nothing.
pub(super) async fn check(
    req: &HttpRequest,
    host: &Arc<Host>,
    mount: usize,
    vars: &mut PairBuf,
    request_id: u64,
) -> Result<Option<Box<[u8]>>, Answer> {
    let m = &host.mounts[mount];
    let Some(hooks) = &m.hooks else { return Ok(None) };
    // Asked for only after the access hook passed the request, as Apache's phases run.
    let credentials = hooks.has(HookKind::Password).then(|| basic_credentials(req.headers()));
    let mut query = Input::default();
    input::query_params(req.query_string(), &mut query.params);
    // The job takes the environ and gives it back with the decision.
    let (tx, rx) = oneshot::channel();
    let job_host = Arc::clone(host);
    let job_vars = std::mem::take(vars);
    let deadline = Deadline::start(m.alias.limits.timeout);
    let job_deadline = deadline.clone();
    let job = Box::new(move || {
        let pool = &*job_host.mounts[mount].pool;
        // Still queued when its client got 504, or left: the hooks' time goes to others.
        if job_deadline.expired() || tx.is_closed() {
            job_deadline.ended(pool);
            return;
        }
        let decision = decide(&job_host, mount, &job_vars, &query, request_id, credentials);
        job_deadline.ended(pool);
        let _ = tx.send((decision, job_vars));
    });
    if let Err(busy) = m.pool.submit(job) {
        per_request!(Warn, &m.alias.url, request_id; "{busy}; answered 503");
        return Err(Answer::busy());
    }
    let (decision, back) = deadline.wait(rx, &*m.pool, &m.alias.url, request_id).await?;
    *vars = back;
    match decision {
        Decision::Pass(user) => {
            if let Some(user) = &user {
                vars.set(b"REMOTE_USER", user);
                vars.set(b"AUTH_TYPE", b"Basic");
            }
            Ok(user.map(Vec::into_boxed_slice))
        }
        Decision::Refuse(answer) => Err(answer),
    }
}

/// Runs the hooks on a pool thread: access, then the password.
fn decide(
    host: &Host,
    mount: usize,
    vars: &PairBuf,
    query: &Input,
    request_id: u64,
    credentials: Option<Option<(Vec<u8>, Vec<u8>)>>,
) -> Decision {
    let alias = &host.mounts[mount].alias;
    let (url, realm) = (&alias.url, &alias.hooks.auth_realm);
    let failed = |kind: HookKind, what: String| {
        per_request!(Error, url, request_id; "500: its {} {what}", kind.key());
        Decision::Refuse(Answer::new(500, "the access check failed; the error log says why"))
    };
    let has = |kind| host.mounts[mount].hooks.as_ref().is_some_and(|h| h.has(kind));
    if has(HookKind::Access) {
        let addr = vars.get(b"REMOTE_ADDR").unwrap_or_default();
        let args = Hook::Access { host: addr };
        match host.run_hook(mount, HookKind::Access, vars, query, request_id, args) {
            Outcome::Verdict(Verdict::ALLOW | Verdict::UNKNOWN) => {}
            Outcome::Verdict(Verdict::DENY) => {
                per_request!(Info, url, request_id;
                    "403: access_script refused client {}", String::from_utf8_lossy(addr));
                return Decision::Refuse(Answer::new(403, "access denied"));
            }
            Outcome::Verdict(v) => return failed(HookKind::Access, failure(v)),
            Outcome::Unavailable => {
                return failed(HookKind::Access, "is unavailable (see its load line)".into());
            }
        }
    }
    let (user, password) = match credentials {
        None => return Decision::Pass(None),
        Some(Some(c)) => c,
        Some(None) => {
            per_request!(Info, url, request_id; "401: no Basic credentials (realm {realm})");
            return Decision::Refuse(challenge(alias));
        }
    };
    let args = Hook::Password { user: &user, password: &password };
    let shown = String::from_utf8_lossy(&user).into_owned();
    match host.run_hook(mount, HookKind::Password, vars, query, request_id, args) {
        Outcome::Verdict(Verdict::ALLOW) => Decision::Pass(Some(user)),
        Outcome::Verdict(v @ (Verdict::DENY | Verdict::UNKNOWN)) => {
            let why = if v == Verdict::DENY { "wrong password" } else { "no such user" };
            per_request!(Info, url, request_id; "401: user {shown:?}: {why} (realm {realm})");
            Decision::Refuse(challenge(alias))
        }
        Outcome::Verdict(v) => failed(HookKind::Password, failure(v)),
        Outcome::Unavailable => {
            failed(HookKind::Password, "is unavailable (see its load line)".into())
        }
    }
}

/// What a failed verdict says in the error log.
fn failure(v: Verdict) -> String {
    if v == Verdict::ERROR {
        "failed (its own lines above say why)".into()
    } else {
        format!("returned {}, which is no verdict (0 allow, 1 deny, 2 unknown)", v.0)
    }
}

/// The user and password of an `Authorization: Basic` header (RFC 7617), if it has one that
/// decodes; the user may not contain `:`.
fn basic_credentials(headers: &header::HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim_ascii())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding (RFC 4648 §4), as Basic credentials are sent; `None` for
/// anything else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, quad) in text.chunks(4).enumerate() {
        let last = i + 1 == text.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_table() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("YWxpY2U6c2VjcmV0", Some(b"alice:secret")),
            ("YTpi", Some(b"a:b")),
            ("YTo=", Some(b"a:")),
            ("YQ==", Some(b"a")),
            ("w6k6w6k=", Some("é:é".as_bytes())),
            ("YTpi=", None),
            ("YQ=", None),
            ("Y===", None),
            ("YQ==YTpi", None),
            ("YT!i", None),
            ("YTp", None),
        ];
        for (text, want) in cases {
            assert_eq!(base64_decode(text.as_bytes()).as_deref(), *want, "{text:?}");
        }
    }
}
