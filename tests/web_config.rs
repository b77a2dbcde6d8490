//! `--web.config.file` end to end: the real `predmon run` with TLS, client certificates and
//! basic auth, probed by real clients (curl with OpenSSL, and rustls for a client that
//! stalls mid-request), with certificates made by rcgen at test time. Also: secrets in
//! `[sources.properties]` never reach `predmon check-config`'s output.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{Daemon, BIN};

// ---------------------------------------------------------------------------------------
// Certificates

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: two CAs with one name would confuse issuer matching.
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate and its key, as PEM.
fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Files in a temporary directory: `ca.pem`, `server.pem`/`server.key` (127.0.0.1 and
/// localhost), `client.pem`/`client.key` signed by the CA, `rogue.pem`/`rogue.key` signed
/// by another CA (`other-ca.pem`), and that CA's own server pair `other-server.*`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let main = ca("predmon test CA");
        let other = ca("some other CA");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &main.pem);
        write("other-ca.pem", &other.pem);
        for (name, ca, names, usage) in [
            (
                "server",
                &main,
                &["localhost", "127.0.0.1"][..],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            (
                "other-server",
                &other,
                &["localhost", "127.0.0.1"][..],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            (
                "client",
                &main,
                &["prometheus.predmon.test"][..],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            (
                "rogue",
                &other,
                &["rogue.predmon.test"][..],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        ] {
            let (cert, key) = leaf(ca, names, usage);
            write(&format!("{name}.pem"), &cert);
            write(&format!("{name}.key"), &key);
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

/// `predmon run` with a slow `generate` source (a source that needs nothing outside the
/// process) on 127.0.0.1:0 and `web_yaml` as its `--web.config.file`, written beside the
/// certificates so relative file names work as in exporter-toolkit.
fn start(pki: &Pki, web_yaml: &str) -> Daemon {
    let dir = pki.dir.path();
    std::fs::write(
        dir.join("predmon.toml"),
        "[server]\nlisten_address = \"127.0.0.1:0\"\n\n[[sources]]\ntype = \"generate\"\nrate = 5.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("web.yml"), web_yaml).unwrap();
    let web = dir.join("web.yml");
    Daemon::start(
        &dir.join("predmon.toml"),
        &["--web.config.file", web.to_str().unwrap()],
    )
}

fn https(d: &Daemon, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", d.addr.port())
}

// ---------------------------------------------------------------------------------------
// curl

struct Reply {
    /// curl's exit status was 0: a complete HTTP exchange.
    ok: bool,
    /// 0 when there was no HTTP response.
    status: u16,
    /// Response headers and body as curl printed them (`-i`).
    text: String,
    stderr: String,
}

/// Whether curl is there; under CI it must be (scripts/test.sh installs it).
fn have_curl() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    assert!(
        found || std::env::var("CI").as_deref() != Ok("true"),
        "curl is required under CI=true"
    );
    if !found {
        eprintln!("curl not installed: skipped (scripts/test.sh installs it)");
    }
    found
}

fn curl(args: &[&str]) -> Reply {
    let out: Output = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        ok: out.status.success(),
        status,
        text,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={} status={}\n{}\ncurl stderr: {}",
            self.ok, self.status, self.text, self.stderr
        )
    }
}

/// Whether a reply carries anything of the daemon's data.
fn leaks(r: &Reply) -> bool {
    r.text.contains("predmon_") || r.text.contains("\"windows\"")
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 10).unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn basic_auth_over_tls() {
    if !have_curl() {
        return;
    }
    let pki = Pki::new();
    let web = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  alice: '{}'\n  bob: '{}'\n",
        bcrypt_hash("correct horse"),
        bcrypt_hash("battery staple"),
    );
    let d = start(&pki, &web);
    let ca = pki.path("ca.pem");
    let metrics = https(&d, "/metrics");

    let good = curl(&["--cacert", &ca, "-u", "alice:correct horse", &metrics]);
    assert_eq!(good.status, 200, "{good:?}");
    assert!(good.text.contains("predmon_build_info"), "{good:?}");
    assert!(
        good.text
            .to_ascii_lowercase()
            .contains("x-frame-options: deny"),
        "{good:?}"
    );
    // Again, now from the cache of successful checks; and the other user.
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "alice:correct horse", &metrics]).status,
        200
    );
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "bob:battery staple", &metrics]).status,
        200
    );

    for (what, args) in [
        ("wrong password", vec!["-u", "alice:battery staple"]),
        ("unknown user", vec!["-u", "mallory:correct horse"]),
        ("no credentials", vec![]),
    ] {
        for path in ["/metrics", "/healthz", "/api/v1/models", "/"] {
            let mut a = vec!["--cacert", ca.as_str()];
            a.extend(&args);
            let url = https(&d, path);
            a.push(&url);
            let r = curl(&a);
            assert_eq!(r.status, 401, "{what} {path}: {r:?}");
            assert!(
                r.text.contains("WWW-Authenticate: Basic realm=\"predmon\"")
                    || r.text.contains("www-authenticate: Basic realm=\"predmon\""),
                "{what} {path}: {r:?}"
            );
            assert!(!leaks(&r), "{what} {path}: {r:?}");
        }
    }

    // Authenticated but not a GET/HEAD, or with a body.
    let post = curl(&[
        "--cacert",
        &ca,
        "-u",
        "alice:correct horse",
        "-X",
        "POST",
        &metrics,
    ]);
    assert_eq!(post.status, 405, "{post:?}");
    let with_body = curl(&[
        "--cacert",
        &ca,
        "-u",
        "alice:correct horse",
        "-X",
        "GET",
        "--data",
        "x=1",
        &metrics,
    ]);
    assert_eq!(with_body.status, 413, "{with_body:?}");
    assert!(!leaks(&with_body), "{with_body:?}");

    // Headers over 16 KiB are refused before anything else.
    let big = format!("X-Padding: {}", "a".repeat(20 * 1024));
    let r = curl(&[
        "--cacert",
        &ca,
        "-u",
        "alice:correct horse",
        "-H",
        &big,
        &metrics,
    ]);
    assert!(r.status == 431 || !r.ok, "{r:?}");
    assert!(!leaks(&r), "{r:?}");

    // Plain HTTP to the TLS port: a 400 that says why, and nothing else.
    let plain = curl(&[
        "-u",
        "alice:correct horse",
        &format!("http://127.0.0.1:{}/metrics", d.addr.port()),
    ]);
    assert!(!leaks(&plain), "{plain:?}");
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(plain.text.contains("this port serves HTTPS"), "{plain:?}");

    // A client that does not trust the server's CA refuses it.
    let untrusted = curl(&[
        "--cacert",
        &pki.path("other-ca.pem"),
        "-u",
        "alice:correct horse",
        &metrics,
    ]);
    assert!(!untrusted.ok && !leaks(&untrusted), "{untrusted:?}");

    let log = d.log();
    assert!(
        !log.contains("correct horse") && !log.contains("$2"),
        "the log shows a password or hash:\n{log}"
    );
}

#[test]
fn client_certificates_are_required_and_verified() {
    if !have_curl() {
        return;
    }
    let pki = Pki::new();
    let d = start(
        &pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let ca = pki.path("ca.pem");
    let metrics = https(&d, "/metrics");

    let good = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &pki.path("client.pem"),
        "--key",
        &pki.path("client.key"),
        &metrics,
    ]);
    assert_eq!(good.status, 200, "{good:?}");
    assert!(good.text.contains("predmon_build_info"), "{good:?}");

    let rogue = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &pki.path("rogue.pem"),
        "--key",
        &pki.path("rogue.key"),
        &metrics,
    ]);
    assert!(
        !rogue.ok && rogue.status == 0 && !leaks(&rogue),
        "{rogue:?}"
    );

    let none = curl(&["--cacert", &ca, &metrics]);
    assert!(!none.ok && none.status == 0 && !leaks(&none), "{none:?}");

    // A server certificate cannot stand in for a client certificate of the right CA.
    let wrong_usage = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &pki.path("server.pem"),
        "--key",
        &pki.path("server.key"),
        &metrics,
    ]);
    assert!(
        !wrong_usage.ok && !leaks(&wrong_usage),
        "a serverAuth-only certificate was accepted as a client: {wrong_usage:?}"
    );
}

#[test]
fn min_version_tls13_refuses_tls12_clients() {
    if !have_curl() {
        return;
    }
    let pki = Pki::new();
    let d = start(
        &pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let ca = pki.path("ca.pem");
    let metrics = https(&d, "/metrics");
    let old = curl(&["--cacert", &ca, "--tlsv1.2", "--tls-max", "1.2", &metrics]);
    assert!(!old.ok && old.status == 0 && !leaks(&old), "{old:?}");
    let new = curl(&["--cacert", &ca, "--tlsv1.3", &metrics]);
    assert_eq!(new.status, 200, "{new:?}");
}

#[test]
fn tls12_is_offered_by_default() {
    if !have_curl() {
        return;
    }
    let pki = Pki::new();
    let d = start(
        &pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    );
    let r = curl(&[
        "--cacert",
        &pki.path("ca.pem"),
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        &https(&d, "/healthz"),
    ]);
    assert_eq!(r.status, 200, "{r:?}");
}

/// Each kind of slow client is cut off after the 10 s timeouts: one that sends nothing,
/// one that stops inside the TLS handshake, and one that completes the handshake but
/// never finishes its request headers. They run side by side, so this takes ~10 s.
#[test]
fn slow_clients_are_disconnected() {
    let pki = Pki::new();
    let d = start(
        &pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    );
    let addr = d.addr;
    let silent = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        time_until_closed(&mut s)
    });
    let half_hello = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // The first bytes of a TLS record header, then nothing.
        s.write_all(&[0x16, 0x03, 0x01]).unwrap();
        time_until_closed(&mut s)
    });
    let ca = std::fs::read(pki.path("ca.pem")).unwrap();
    let half_headers = std::thread::spawn(move || {
        let mut tls = tls_client(addr, &ca);
        tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .unwrap();
        tls.flush().unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got);
        (
            started.elapsed(),
            String::from_utf8_lossy(&got).into_owned(),
        )
    });
    for (what, took) in [
        ("silent", silent.join().unwrap()),
        ("half a ClientHello", half_hello.join().unwrap()),
    ] {
        assert!(
            took < Duration::from_secs(13),
            "{what} client held on for {took:?}"
        );
    }
    let (took, got) = half_headers.join().unwrap();
    assert!(
        took < Duration::from_secs(13),
        "a client with unfinished headers held on for {took:?}"
    );
    assert!(!got.contains("predmon_"), "{got}");
}

/// Reads until the server closes; how long that took (a 15 s cap fails the test).
fn time_until_closed(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Duration::from_secs(999)
            }
            Err(_) => return started.elapsed(), // reset: closed too
        }
    }
}

/// A rustls client that has completed its handshake with the daemon.
fn tls_client(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Certificates replaced on disk (as cert-manager does) are used for new connections
/// without a restart.
#[test]
fn rotated_certificates_are_picked_up() {
    if !have_curl() {
        return;
    }
    let pki = Pki::new();
    let d = start(
        &pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    );
    let url = https(&d, "/healthz");
    assert_eq!(curl(&["--cacert", &pki.path("ca.pem"), &url]).status, 200);
    // Key first, then certificate: between the two writes the pair does not match, which
    // must leave the old pair in use rather than break the server.
    std::fs::copy(pki.path("other-server.key"), pki.path("server.key")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        curl(&["--cacert", &pki.path("ca.pem"), &url]).status,
        200,
        "a half-rotated pair must not replace a good one"
    );
    std::fs::copy(pki.path("other-server.pem"), pki.path("server.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = curl(&["--cacert", &pki.path("other-ca.pem"), &url]);
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reloaded: {r:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!curl(&["--cacert", &pki.path("ca.pem"), &url]).ok);
    assert!(d.log().contains("reloaded"), "{}", d.log());
}

/// config/web-config.yml, with certificates where it expects them, starts a server that
/// takes the password its comment gives.
#[test]
fn the_example_web_config_works() {
    if !have_curl() {
        return;
    }
    let pki = Pki::new();
    std::fs::copy(pki.path("server.pem"), pki.path("server.crt")).unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/web-config.yml"
    ))
    .unwrap();
    let d = start(&pki, &example);
    let url = https(&d, "/metrics");
    let ca = pki.path("ca.pem");
    let r = curl(&["--cacert", &ca, "-u", "prometheus:change me", &url]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text.contains("x-content-type-options: nosniff"), "{r:?}");
    assert_eq!(curl(&["--cacert", &ca, &url]).status, 401);
}

#[test]
fn a_broken_web_config_stops_startup_with_a_clear_error() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    std::fs::write(
        dir.join("predmon.toml"),
        "[server]\nlisten_address = \"127.0.0.1:0\"\n\n[[sources]]\ntype = \"generate\"\n",
    )
    .unwrap();
    let secret_hash = bcrypt_hash("pw");
    for (yaml, expected) in [
        (
            "basic_auth_user:\n  alice: x\n".to_string(),
            "unknown field `basic_auth_user`",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n".to_string(),
            "missing.pem: cannot read it",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n"
                .to_string(),
            "needs client_ca_file",
        ),
        (
            format!("basic_auth_users:\n  alice: '{}'\n", &secret_hash[..20]),
            "basic_auth_users.alice: the value is not a bcrypt hash",
        ),
    ] {
        std::fs::write(dir.join("web.yml"), &yaml).unwrap();
        let out = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.join("predmon.toml"))
            .arg("--web.config.file")
            .arg(dir.join("web.yml"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml} was accepted");
        assert!(
            stderr.contains("--web.config.file") && stderr.contains(expected),
            "for\n{yaml}\nexpected `{expected}` in:\n{stderr}"
        );
        assert!(!stderr.contains(&secret_hash[..20]), "{stderr}");
    }
}

/// librdkafka secrets written in `[sources.properties]` are passed to librdkafka as they
/// are, and shown nowhere: not by `check-config`, not in its errors.
#[test]
fn check_config_redacts_kafka_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("sasl.password", "hunter2-sasl"),
        ("ssl.key.password", "hunter2-keypass"),
        (
            "ssl.key.pem",
            "-----BEGIN PRIVATE KEY-----\\nMIIsecretkeymaterial\\n-----END PRIVATE KEY-----",
        ),
        (
            "sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required password=\\\"hunter2-jaas\\\";",
        ),
        ("sasl.oauthbearer.client.secret", "hunter2-oauth"),
    ];
    let mut props =
        String::from("\"security.protocol\" = \"SASL_SSL\"\n\"sasl.username\" = \"predmon\"\n");
    for (k, v) in secrets {
        props.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    let config = |mode: &str| {
        format!(
            "[[sources]]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"predictions\"]\nmode = \"{mode}\"\n\n[sources.properties]\n{props}"
        )
    };
    let needles = [
        "hunter2",
        "MIIsecretkeymaterial",
        "PlainLoginModule required password",
    ];

    let path: PathBuf = dir.path().join("kafka.toml");
    std::fs::write(&path, config("group")).unwrap();
    let out = check_config(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for n in needles {
        assert!(
            !stdout.contains(n) && !stderr.contains(n),
            "`{n}` shown:\n{stdout}\n{stderr}"
        );
    }
    for (k, _) in secrets {
        assert!(
            stdout.contains(&format!("\"{k}\" = \"<redacted>\"")),
            "{k} not redacted:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("\"sasl.username\" = \"predmon\""),
        "non-secret properties stay visible:\n{stdout}"
    );

    // An invalid configuration holding secrets: the error must not quote them either.
    std::fs::write(&path, config("bogus")).unwrap();
    let out = check_config(&path);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() && all.contains("mode"), "{all}");
    for n in needles {
        assert!(!all.contains(n), "`{n}` shown:\n{all}");
    }
}

fn check_config(path: &Path) -> Output {
    Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}
