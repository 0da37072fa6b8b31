//! HTTPS listeners (a real rustls handshake against certificates made here with
//! rcgen, TLS 1.3 and 1.2, ALPN), HTTP/2, the HTTPS environ, a certificate renewed by a
//! reload (new connections get it, open ones keep being served) and a bad one refused, and
//! trusted proxies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

use crate::harness::{Daemon, Response, parse_reply, wait_until};

/// A test certificate authority.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, in PEM, and the certificate's DER.
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Gatehouse e2e CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// A certificate for `localhost` with common name `cn` and serial `serial`.
    pub(crate) fn leaf(&self, cn: &str, serial: u64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client trusting this CA only, offering `alpn`, with these TLS versions.
    pub(crate) fn client(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Writes `leaf` as `DIR/tls/cert.pem` and `DIR/tls/key.pem`, each renamed into place.
pub(crate) fn install_leaf(dir: &Path, leaf: &Leaf) {
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    for (name, text) in [("key.pem", &leaf.key_pem), ("cert.pem", &leaf.cert_pem)] {
        let tmp = dir.join("tls").join(format!(".{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join("tls").join(name)).unwrap();
    }
}

/// A TLS connection to the daemon, named `localhost`.
pub(crate) struct Tls {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl Tls {
    pub(crate) fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(config, name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        // Completes the handshake.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).expect("the TLS handshake");
        }
        Tls { stream }
    }

    /// The certificate the server presented.
    pub(crate) fn server_cert(&self) -> CertificateDer<'static> {
        self.stream.conn.peer_certificates().expect("a server certificate")[0].clone()
    }

    pub(crate) fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    pub(crate) fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.conn.protocol_version()
    }

    /// `GET target` on this connection, kept alive; reads one reply by its Content-Length.
    pub(crate) fn get(&mut self, target: &str) -> Response {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream.write_all(raw.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if reply.len() >= end + 4 + length {
                    break;
                }
            }
            let n = self.stream.read(&mut buf).expect("read a reply");
            assert!(
                n > 0,
                "the connection closed mid-reply: {:?}",
                String::from_utf8_lossy(&reply)
            );
            reply.extend_from_slice(&buf[..n]);
        }
        parse_reply(&reply, false).unwrap()
    }
}

const ENV_ALIAS: &str = "aliases:\n  - url: /env\n    path: {environ}\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tls_yaml(port: u16, extra: &str) -> String {
    format!(
        "listen:\n  - address: \"127.0.0.1:{port}\"\n    tls: {{cert: tls/cert.pem, key: tls/key.pem}}\n{extra}{ENV_ALIAS}"
    )
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[test]
fn https_handshakes_and_the_environ_says_https() {
    let ca = Ca::new();
    let leaf = ca.leaf("gen1", 1);
    let d = Daemon::start_opts(&tls_yaml(free_port(), ""), |dir| install_leaf(dir, &leaf), false);
    // TLS 1.3, ALPN http/1.1
    let mut c = Tls::connect(d.addr, ca.client(&[b"http/1.1"], TLS13));
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(c.server_cert(), leaf.der);
    let j: Value = c.get("/env/x").expect_status(200).json();
    for (name, want) in [
        ("wsgi.url_scheme", "https"),
        ("REQUEST_SCHEME", "https"),
        ("HTTPS", "on"),
        ("SERVER_PORT", "443"),
        ("SERVER_NAME", "localhost"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ] {
        assert_eq!(j[name].as_str(), Some(want), "{name} in {j:#}");
    }
    // TLS 1.2 too; h2 is offered by ALPN
    let c = Tls::connect(d.addr, ca.client(&[b"h2", b"http/1.1"], TLS12));
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(c.alpn().as_deref(), Some(&b"h2"[..]));
    // A plain-HTTP request to the HTTPS port is not served.
    let mut plain = TcpStream::connect(d.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /env/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
}

/// A daemon serving the environ app at `/env` over TLS on `port`, and its CA in `ca.pem`;
/// `None` (the test is skipped) without curl to speak HTTP/2.
fn curl_daemon() -> Option<(Daemon, u16)> {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: no curl to speak HTTP/2");
        return None;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("gen1", 1);
    let port = free_port();
    let d = Daemon::start_opts(&tls_yaml(port, ""), |dir| install_leaf(dir, &leaf), false);
    std::fs::write(d.path("ca.pem"), ca.pem()).unwrap();
    Some((d, port))
}

/// curl over HTTP/2 to `target` on the daemon of [`curl_daemon`], trusting its CA; `args`
/// go before the URL.
fn curl_h2(d: &Daemon, port: u16, args: &[&str], target: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--http2", "--cacert"])
        .arg(d.path("ca.pem"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://localhost:{port}{target}"));
    cmd
}

#[test]
fn http2_over_tls_with_curl() {
    let Some((d, port)) = curl_daemon() else { return };
    let out = curl_h2(&d, port, &["--write-out", "\n%{http_version} %{http_code}"], "/env/h2")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let (body, last) = text.rsplit_once('\n').unwrap();
    assert_eq!(last, "2 200", "{text}");
    let j: Value = serde_json::from_str(body).unwrap();
    assert_eq!(j["SERVER_PROTOCOL"].as_str(), Some("HTTP/2.0"), "{j:#}");
    assert_eq!(j["wsgi.url_scheme"].as_str(), Some("https"), "{j:#}");
    assert_eq!(j["PATH_INFO"].as_str(), Some("/h2"), "{j:#}");
}

#[test]
fn an_http2_body_without_a_content_length_reaches_the_app() {
    // HTTP/2 frames a body without Content-Length or Transfer-Encoding: curl's `-T -` sends
    // stdin so. The app must read it all, not an empty body.
    let Some((d, port)) = curl_daemon() else { return };
    let body = "streamed over HTTP/2, ".repeat(3000);
    let post = ["-X", "POST", "-T", "-", "--write-out", "\n%{http_version} %{http_code}"];
    let mut curl = curl_h2(&d, port, &post, "/env/up")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut curl.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = curl.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let (reply, last) = text.rsplit_once('\n').unwrap();
    assert_eq!(last, "2 200", "{text}");
    let j: Value = serde_json::from_str(reply).unwrap();
    assert_eq!(j["CONTENT_LENGTH"], Value::Null, "curl sent a length: {j:#}");
    assert_eq!(j["gatehouse.input"]["length"].as_u64(), Some(body.len() as u64), "{j:#}");
    assert!(body.starts_with(j["gatehouse.input"]["text"].as_str().unwrap()), "{j:#}");
    // A GET has no body, and reads as none.
    let get = curl_h2(&d, port, &[], "/env/get").output().unwrap();
    let j: Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(j["gatehouse.input"]["length"].as_u64(), Some(0), "{j:#}");
}

#[test]
fn a_renewed_certificate_is_served_after_a_reload_and_a_bad_one_is_refused() {
    let ca = Ca::new();
    let gen1 = ca.leaf("gen1", 1);
    let d = Daemon::start_opts(
        &tls_yaml(free_port(), "keep_alive: 60s\n"),
        |dir| install_leaf(dir, &gen1),
        false,
    );
    // A fresh client configuration per connection: one shared would resume the first
    // session, and a resumed session reports the certificate of the original handshake.
    let client = || ca.client(&[b"http/1.1"], TLS13);
    let mut old = Tls::connect(d.addr, client());
    assert_eq!(old.server_cert(), gen1.der);
    old.get("/env/").expect_status(200);

    // Renewed: new connections get gen2, the open one is still served.
    let gen2 = ca.leaf("gen2", 2);
    install_leaf(&d.path(""), &gen2);
    d.signal("HUP");
    wait_until("the reload", || d.log_count("configuration reloaded (SIGHUP)") == 1);
    let fresh = Tls::connect(d.addr, client());
    assert_eq!(fresh.server_cert(), gen2.der, "a new connection after the reload");
    old.get("/env/again").expect_status(200);
    assert_eq!(old.server_cert(), gen1.der);

    // Garbage: refused, gen2 stays.
    std::fs::write(
        d.path("tls/cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    d.signal("HUP");
    wait_until("the refusal", || d.log_count("a TLS certificate cannot be used") == 1);
    let cert = d.path("tls/cert.pem").display().to_string();
    assert!(d.log().contains(&format!("{cert}: not a usable certificate")), "{}", d.log());
    assert_eq!(Tls::connect(d.addr, client()).server_cert(), gen2.der);

    // A key that does not match the certificate: refused, gen2 stays.
    let gen3 = ca.leaf("gen3", 3);
    std::fs::write(d.path("tls/cert.pem"), &gen3.cert_pem).unwrap();
    d.signal("HUP");
    wait_until("the second refusal", || d.log_count("a TLS certificate cannot be used") == 2);
    assert!(d.log().contains("the key cannot be used with"), "{}", d.log());
    let mut c = Tls::connect(d.addr, client());
    assert_eq!(c.server_cert(), gen2.der);
    c.get("/env/").expect_status(200);
    // The refusals did not touch the old connection either.
    old.get("/env/third").expect_status(200);
}

#[test]
fn a_bad_certificate_at_start_stops_the_daemon_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/cert.pem"), "not pem").unwrap();
    std::fs::write(dir.path().join("tls/key.pem"), "not pem").unwrap();
    let yaml = tls_yaml(free_port(), "").replace("{environ}", "/nonexistent/libenviron.so");
    std::fs::write(dir.path().join("hosting.yaml"), yaml).unwrap();
    let out = Command::new(&crate::harness::artifacts().gatehouse)
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("hosting.yaml"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tls/cert.pem: no certificate in it"), "{stderr}");
}

fn env_json(d: &Daemon, headers: &[&str]) -> Value {
    d.send("GET", "/env/p", headers, b"").expect_status(200).json()
}

#[test]
fn trusted_proxies_set_the_client_and_the_scheme_and_others_are_ignored() {
    let trusted = Daemon::start(&format!("trusted_proxies: [\"127.0.0.0/8\"]\n{ENV_ALIAS}"));
    let untrusted = Daemon::start(&format!("trusted_proxies: [\"10.0.0.0/8\"]\n{ENV_ALIAS}"));
    let xff = ["X-Forwarded-For: 6.6.6.6, 203.0.113.7", "X-Forwarded-Proto: https"];
    let j = env_json(&trusted, &xff);
    assert_eq!(j["REMOTE_ADDR"].as_str(), Some("203.0.113.7"), "{j:#}");
    assert_eq!(j["wsgi.url_scheme"].as_str(), Some("https"), "{j:#}");
    assert_eq!(j["HTTPS"].as_str(), Some("on"), "{j:#}");
    let j = env_json(&trusted, &["Forwarded: for=\"[2001:db8::7]:4711\";proto=http", xff[0]]);
    assert_eq!(j["REMOTE_ADDR"].as_str(), Some("2001:db8::7"), "{j:#}");
    assert_eq!(j["wsgi.url_scheme"].as_str(), Some("http"), "{j:#}");
    assert!(j.get("HTTPS").is_none(), "{j:#}");
    // From a peer that is not a trusted proxy: ignored (the headers stay visible as HTTP_*).
    let j = env_json(&untrusted, &xff);
    assert_eq!(j["REMOTE_ADDR"].as_str(), Some("127.0.0.1"), "{j:#}");
    assert_eq!(j["wsgi.url_scheme"].as_str(), Some("http"), "{j:#}");
    assert_eq!(j["SERVER_PORT"].as_str(), Some(untrusted.addr.port().to_string().as_str()));
    assert!(j.get("HTTPS").is_none(), "{j:#}");
    assert_eq!(j["HTTP_X_FORWARDED_PROTO"].as_str(), Some("https"), "{j:#}");
    // The access log names the same client as REMOTE_ADDR (fail2ban must see clients, not
    // the proxy): the forwarded one from a trusted proxy, the peer otherwise.
    let access = |d: &Daemon| std::fs::read_to_string(d.path("log/access.log")).unwrap_or_default();
    wait_until("the trusted daemon's access lines", || access(&trusted).lines().count() == 2);
    let firsts: Vec<String> = access(&trusted)
        .lines()
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(firsts, ["203.0.113.7", "2001:db8::7"], "{}", access(&trusted));
    wait_until("the untrusted daemon's access line", || !access(&untrusted).is_empty());
    assert!(access(&untrusted).starts_with("127.0.0.1 - - ["), "{}", access(&untrusted));
}

/// An HTTP/2 connection over TLS (ALPN `h2`) to the daemon of [`tls_yaml`] on `port`, on a
/// current-thread runtime: `f` gets the request sender and the stream limit the server
/// advertised in its SETTINGS.
fn with_h2<T>(
    port: u16,
    ca: &Ca,
    f: impl AsyncFnOnce(h2::client::SendRequest<bytes::Bytes>, usize) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client(&[b"h2"], TLS13));
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.expect("the TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, mut conn) = h2::client::handshake(tls).await.expect("an HTTP/2 handshake");
        // Until the server's SETTINGS arrive, the client assumes its own initial limit.
        let initial = conn.max_concurrent_send_streams();
        let mut limit = initial;
        for _ in 0..250 {
            let _ = tokio::time::timeout(Duration::from_millis(20), &mut conn).await;
            limit = conn.max_concurrent_send_streams();
            if limit != initial {
                break;
            }
        }
        tokio::spawn(async move {
            let _ = conn.await;
        });
        f(send, limit).await
    })
}

#[test]
fn http2_connections_get_stream_and_header_list_limits() {
    let ca = Ca::new();
    let leaf = ca.leaf("gen1", 1);
    let port = free_port();
    let d = Daemon::start_opts(&tls_yaml(port, ""), |dir| install_leaf(dir, &leaf), false);
    with_h2(port, &ca, async |mut send, limit| {
        // As nginx: 128 streams at once on a connection, not h2's unlimited default.
        assert_eq!(limit, 128);
        let get = |headers: usize| {
            let mut req = http::Request::get(format!("https://localhost:{port}/env/h2"));
            for i in 0..headers {
                req = req.header(format!("x-filler-{i}"), "v".repeat(1000));
            }
            req.body(()).unwrap()
        };
        send = send.ready().await.unwrap();
        let (reply, _) = send.send_request(get(0), true).unwrap();
        assert_eq!(reply.await.unwrap().status(), 200);
        // A header list past 128 KiB is refused, not read into memory and handed on.
        send = send.ready().await.unwrap();
        let (reply, _) = send.send_request(get(200), true).unwrap();
        match reply.await {
            Ok(r) => assert_eq!(r.status(), 431),
            Err(e) => assert!(e.is_reset() || e.is_go_away(), "{e}"),
        }
    });
    // The daemon serves on.
    let mut c = Tls::connect(d.addr, ca.client(&[b"http/1.1"], TLS13));
    c.get("/env/after").expect_status(200);
}
