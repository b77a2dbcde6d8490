//! `--web.config.file`: Prometheus exporter-toolkit's web configuration (TLS, client
//! certificates, basic auth, response headers, rate limit) parsed and validated into a
//! [`WebConfig`], and what the server enforces with it: [`WebGuard`] checks the rate
//! limit and basic auth (bcrypt, with a bounded cache of successful checks) before any
//! routing, and [`TlsReloader`] hands out the rustls acceptor, rebuilt when the
//! certificate files change so rotated certificates are used without a restart.
//!
//! The format is exporter-toolkit's (docs/web-configuration.md there), so one file can
//! serve node_exporter and predmon alike. Every key of that format is recognised; the few
//! predmon cannot honour are rejected with a reason instead of being silently ignored.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use rustls::crypto::{ring as ring_provider, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// Why a web configuration cannot be used. Messages name the file, the key and what is
/// allowed; they never quote a password hash or an inline private key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("--web.config.file {}: cannot read it ({source}); check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--web.config.file {}: not valid YAML for a web configuration: {message}; see config/web-config.yml for every key", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("--web.config.file {}:\n  {}", path.display(), problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

// ---------------------------------------------------------------------------------------
// The file as written. Every struct denies unknown keys: a misspelt `basic_auth_user`
// must fail loudly, not leave the endpoint open.

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_ca_file: Option<String>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    interval: Option<String>,
    burst: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// The validated configuration.

/// Where a PEM comes from: a file (re-read on reload) or the YAML itself.
#[derive(Clone, PartialEq)]
enum Pem {
    File(PathBuf),
    Inline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A certificate is optional, but one that is sent must chain to the client CA.
    VerifyIfGiven,
    /// A certificate chaining to the client CA is required.
    RequireAndVerify,
}

/// TLS settings, kept so the rustls configuration can be rebuilt when files change.
#[derive(Clone)]
struct TlsSettings {
    cert: (Pem, String),
    key: (Pem, String),
    client_ca: Option<(Pem, String)>,
    client_auth: ClientAuth,
    versions: Vec<&'static SupportedProtocolVersion>,
    cipher_suites: Vec<SupportedCipherSuite>,
    kx_groups: Vec<&'static dyn SupportedKxGroup>,
    prefer_server_order: bool,
}

/// The token bucket of `rate_limit`: one request per `interval`, bursts of `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// A validated `--web.config.file`. The default is plain HTTP with no authentication,
/// what predmon serves without the flag.
#[derive(Clone, Default)]
pub struct WebConfig {
    tls: Option<TlsSettings>,
    /// The rustls configuration built while validating, so a broken certificate fails
    /// at startup rather than at the first scrape.
    server_config: Option<Arc<ServerConfig>>,
    /// Username -> bcrypt hash.
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<RateLimit>,
}

impl fmt::Debug for WebConfig {
    // By hand: the derived form would print password hashes and inline keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.as_ref().map(|t| t.client_auth))
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// The response headers exporter-toolkit lets a web config set, with the values it allows
/// (empty: any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

const CLIENT_AUTH_TYPES: &str =
    "NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert";

impl WebConfig {
    /// Reads and validates the file; relative file names in it are taken relative to the
    /// file's own directory, as exporter-toolkit does.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir).map_err(|e| match e {
            ParseError::Yaml(message) => WebConfigError::Yaml {
                path: path.to_path_buf(),
                message,
            },
            ParseError::Invalid(problems) => WebConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            },
        })
    }

    /// Parses and validates the YAML text; `dir` anchors relative file names.
    fn parse(text: &str, dir: &Path) -> Result<WebConfig, ParseError> {
        // An empty file (or one with only comments) is a valid, empty configuration.
        let raw: Option<RawWebConfig> =
            serde_yaml_ng::from_str(text).map_err(|e| ParseError::Yaml(e.to_string()))?;
        let raw = raw.unwrap_or_default();
        let mut problems = Vec::new();
        let tls = raw
            .tls_server_config
            .as_ref()
            .and_then(|t| tls_settings(t, dir, &mut problems));
        let users = users(raw.basic_auth_users.unwrap_or_default(), &mut problems);
        let mut headers = Vec::new();
        if let Some(http) = &raw.http_server_config {
            // http2: predmon speaks HTTP/1.1 only (a scrape is one small request), so the
            // key is accepted for compatibility and has no effect.
            let _ = http.http2;
            headers = response_headers(http.headers.as_ref(), &mut problems);
        }
        let rate_limit = raw
            .rate_limit
            .as_ref()
            .and_then(|r| rate_limit(r, &mut problems));
        let server_config = match &tls {
            Some(t) if problems.is_empty() => match build_server_config(t) {
                Ok(c) => Some(c),
                Err(mut p) => {
                    problems.append(&mut p);
                    None
                }
            },
            _ => None,
        };
        if !problems.is_empty() {
            return Err(ParseError::Invalid(problems));
        }
        Ok(WebConfig {
            tls,
            server_config,
            users,
            headers,
            rate_limit,
        })
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.tls
            .as_ref()
            .map_or(ClientAuth::None, |t| t.client_auth)
    }

    pub fn basic_auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }
}

enum ParseError {
    Yaml(String),
    Invalid(Vec<String>),
}

/// A string key counts as unset when empty, as in exporter-toolkit.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

fn tls_settings(t: &RawTls, dir: &Path, problems: &mut Vec<String>) -> Option<TlsSettings> {
    const AT: &str = "tls_server_config";
    let enabled = [
        &t.cert,
        &t.key,
        &t.client_ca,
        &t.cert_file,
        &t.key_file,
        &t.client_ca_file,
        &t.client_auth_type,
    ]
    .iter()
    .any(|v| set(v).is_some());
    if !enabled {
        // exporter-toolkit serves plain HTTP then; options that only make sense with TLS
        // would be ignored, which hides a half-written config: say so instead.
        if t.min_version.is_some()
            || t.max_version.is_some()
            || t.cipher_suites.is_some()
            || t.curve_preferences.is_some()
            || t.client_allowed_sans.is_some()
        {
            problems.push(format!(
                "{AT}: TLS options are set but no certificate: add cert_file and key_file (PEM files), or remove {AT}"
            ));
        }
        return None;
    }
    let start = problems.len();
    let mut pem = |inline: &Option<String>, file: &Option<String>, name: &str, required: bool| {
        match (set(inline), set(file)) {
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "{AT}: set only one of {name} (inline PEM) and {name}_file"
                ));
                None
            }
            // Inline PEMs are kept as text; files are read each time the config is built.
            (Some(text), None) => Some((Pem::Inline, text.to_string())),
            (None, Some(f)) => Some((Pem::File(dir.join(f)), String::new())),
            (None, None) => {
                if required {
                    problems.push(format!(
                        "{AT}: {name}_file is missing: name the server's {} PEM file (or give it inline as {name})",
                        if name == "key" { "private key" } else { "certificate" }
                    ));
                }
                None
            }
        }
    };
    let cert = pem(&t.cert, &t.cert_file, "cert", true);
    let key = pem(&t.key, &t.key_file, "key", true);
    let client_ca = pem(&t.client_ca, &t.client_ca_file, "client_ca", false);

    let client_auth = match set(&t.client_auth_type).unwrap_or("NoClientCert") {
        "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        other @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            problems.push(format!(
                "{AT}.client_auth_type: `{other}` accepts client certificates without verifying them, which predmon does not do; \
                 use RequireAndVerifyClientCert with client_ca_file"
            ));
            ClientAuth::None
        }
        other => {
            problems.push(format!(
                "{AT}.client_auth_type: `{other}` is not allowed; use {CLIENT_AUTH_TYPES}"
            ));
            ClientAuth::None
        }
    };
    match (client_auth, &client_ca) {
        (ClientAuth::None, Some(_)) if set(&t.client_auth_type).is_none_or(|a| a == "NoClientCert") => {
            problems.push(format!(
                "{AT}: client_ca_file is set but client_auth_type is NoClientCert, so client certificates would not be checked; \
                 set client_auth_type: RequireAndVerifyClientCert"
            ));
        }
        (ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify, None) => problems.push(format!(
            "{AT}: client_auth_type {} needs client_ca_file: the PEM file of the CA that signs client certificates",
            set(&t.client_auth_type).unwrap_or_default()
        )),
        _ => {}
    }
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        problems.push(format!(
            "{AT}.client_allowed_sans: not supported by predmon; remove it and restrict clients with a client_ca_file \
             whose CA signs only the allowed clients"
        ));
    }

    let mut version = |key: &str, v: &Option<String>, default: u8| -> u8 {
        match set(v).unwrap_or(if default == 12 { "TLS12" } else { "TLS13" }) {
            "TLS12" => 12,
            "TLS13" => 13,
            old @ ("TLS10" | "TLS11") => {
                problems.push(format!(
                    "{AT}.{key}: `{old}` is not offered (obsolete, and rustls implements TLS12 and TLS13 only); use TLS12 or TLS13"
                ));
                default
            }
            other => {
                problems.push(format!(
                    "{AT}.{key}: `{other}` is not a TLS version; use TLS12 or TLS13"
                ));
                default
            }
        }
    };
    let min = version("min_version", &t.min_version, 12);
    let max = version("max_version", &t.max_version, 13);
    if min > max {
        problems.push(format!(
            "{AT}: min_version TLS{min} is above max_version TLS{max}; no connection could be made"
        ));
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let all_suites = ring_provider::ALL_CIPHER_SUITES;
    let mut cipher_suites: Vec<SupportedCipherSuite> = all_suites.to_vec();
    if let Some(names) = t.cipher_suites.as_ref().filter(|n| !n.is_empty()) {
        // As in Go, the list orders and restricts the TLS 1.2 suites; TLS 1.3's are always on.
        let tls12: Vec<SupportedCipherSuite> = all_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .copied()
            .collect();
        let tls13_names: Vec<String> = all_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .map(|s| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1))
            .collect();
        let mut chosen = Vec::new();
        for name in names {
            if let Some(s) = tls12.iter().find(|s| format!("{:?}", s.suite()) == *name) {
                chosen.push(*s);
            } else if !tls13_names.contains(name) {
                let known: Vec<String> = tls12.iter().map(|s| format!("{:?}", s.suite())).collect();
                problems.push(format!(
                    "{AT}.cipher_suites: `{name}` is not available; use any of {}",
                    known.join(", ")
                ));
            }
        }
        if chosen.is_empty() && versions.contains(&&rustls::version::TLS12) {
            problems.push(format!(
                "{AT}.cipher_suites: no TLS 1.2 suite is left; list at least one or set min_version: TLS13"
            ));
        }
        cipher_suites = all_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .chain(chosen)
            .collect();
    }

    let mut kx_groups: Vec<&'static dyn SupportedKxGroup> = ring_provider::ALL_KX_GROUPS.to_vec();
    if let Some(names) = t.curve_preferences.as_ref().filter(|n| !n.is_empty()) {
        kx_groups.clear();
        for name in names {
            match name.as_str() {
                "X25519" => kx_groups.push(ring_provider::kx_group::X25519),
                "CurveP256" => kx_groups.push(ring_provider::kx_group::SECP256R1),
                "CurveP384" => kx_groups.push(ring_provider::kx_group::SECP384R1),
                other => problems.push(format!(
                    "{AT}.curve_preferences: `{other}` is not available; use X25519, CurveP256 or CurveP384"
                )),
            }
        }
    }

    if problems.len() > start {
        return None;
    }
    Some(TlsSettings {
        cert: cert?,
        key: key?,
        client_ca,
        client_auth,
        versions,
        cipher_suites,
        kx_groups,
        // Go's default is true: the server's order decides.
        prefer_server_order: t.prefer_server_cipher_suites.unwrap_or(true),
    })
}

fn users(raw: BTreeMap<String, String>, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    for (user, hash) in &raw {
        if user.is_empty() || user.contains(':') {
            problems.push(format!(
                "basic_auth_users: `{user}` cannot be a username: it must be non-empty and without `:` (basic auth splits on it)"
            ));
        }
        // The hash is not quoted: it is a secret (exporter-toolkit's type for it).
        if let Err(e) = hash.parse::<bcrypt::HashParts>() {
            problems.push(format!(
                "basic_auth_users.{user}: the value is not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
            ));
        }
    }
    raw
}

fn response_headers(
    raw: Option<&BTreeMap<String, String>>,
    problems: &mut Vec<String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in raw.into_iter().flatten() {
        let Some((canonical, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            problems.push(format!(
                "http_server_config.headers: `{name}` cannot be set; allowed: {}",
                names.join(", ")
            ));
            continue;
        };
        if value.is_empty() {
            continue; // unset, as exporter-toolkit documents
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            problems.push(format!(
                "http_server_config.headers.{name}: `{value}` is not allowed; use {}",
                allowed.join(" or ")
            ));
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(v) => out.push((HeaderName::from_static(static_lower(canonical)), v)),
            Err(_) => problems.push(format!(
                "http_server_config.headers.{name}: `{value}` is not a valid header value (visible ASCII only)"
            )),
        }
    }
    out
}

/// `HeaderName::from_static` wants lowercase; the table holds the documented spelling.
fn static_lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn rate_limit(r: &RawRateLimit, problems: &mut Vec<String>) -> Option<RateLimit> {
    let interval = match set(&r.interval) {
        None => return None,
        Some(text) => match crate::config::parse_duration("rate_limit.interval", text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(e);
                return None;
            }
        },
    };
    if interval.is_zero() {
        return None; // 0 disables the limiter, as documented
    }
    match r.burst {
        Some(b) if (1..=1_000_000).contains(&b) => Some(RateLimit {
            interval,
            burst: b as u32,
        }),
        other => {
            problems.push(format!(
                "rate_limit.burst: {} is not allowed; set a number of requests from 1 to 1000000",
                other.map_or("a missing value".to_string(), |b| format!("`{b}`"))
            ));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// TLS material.

fn read_pem(what: &str, source: &(Pem, String)) -> Result<(String, Vec<u8>), String> {
    match &source.0 {
        Pem::Inline => Ok((
            format!("tls_server_config.{what}"),
            source.1.as_bytes().to_vec(),
        )),
        Pem::File(path) => {
            let at = format!("tls_server_config.{what}_file {}", path.display());
            std::fs::read(path)
                .map(|bytes| (at.clone(), bytes))
                .map_err(|e| format!("{at}: cannot read it ({e})"))
        }
    }
}

fn read_certs(what: &str, source: &(Pem, String)) -> Result<Vec<CertificateDer<'static>>, String> {
    let (at, bytes) = read_pem(what, source)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{at}: not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err(format!(
            "{at}: holds no `-----BEGIN CERTIFICATE-----` block; give the PEM certificate{}",
            if what == "cert" {
                " (leaf first, then intermediates)"
            } else {
                "s of the CA"
            }
        ));
    }
    Ok(certs)
}

fn read_key(source: &(Pem, String)) -> Result<PrivateKeyDer<'static>, String> {
    let (at, bytes) = read_pem("key", source)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        format!("{at}: no usable private key ({e}); give an unencrypted PEM key (PKCS#8, PKCS#1 RSA or SEC1 EC)")
    })
}

/// Builds the rustls configuration, reading the certificate files.
fn build_server_config(t: &TlsSettings) -> Result<Arc<ServerConfig>, Vec<String>> {
    let mut problems = Vec::new();
    let certs = read_certs("cert", &t.cert)
        .map_err(|e| problems.push(e))
        .ok();
    let key = read_key(&t.key).map_err(|e| problems.push(e)).ok();
    let client_ca = match &t.client_ca {
        Some(ca) => read_certs("client_ca", ca)
            .map_err(|e| problems.push(e))
            .ok(),
        None => None,
    };
    let (Some(certs), Some(key), true) = (certs, key, problems.is_empty()) else {
        return Err(problems);
    };
    let provider = Arc::new(CryptoProvider {
        cipher_suites: t.cipher_suites.clone(),
        kx_groups: t.kx_groups.clone(),
        ..ring_provider::default_provider()
    });
    let fail = |e: String| vec![format!("tls_server_config: {e}")];
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&t.versions)
        .map_err(|e| {
            fail(format!(
                "the versions, cipher suites and curves leave nothing to negotiate ({e})"
            ))
        })?;
    let builder = match (t.client_auth, client_ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(cas)) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca).map_err(|e| {
                    fail(format!(
                        "client_ca_file: a certificate in it is not a usable CA ({e})"
                    ))
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == ClientAuth::VerifyIfGiven {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| {
                fail(format!(
                    "client_ca_file: cannot verify clients with it ({e})"
                ))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        fail(format!(
            "the private key (key_file) does not fit the certificate (cert_file), or is of an unsupported kind ({e})"
        ))
    })?;
    // HTTP/1.1 only: hyper serves http1 here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = t.prefer_server_order;
    Ok(Arc::new(config))
}

/// How often, at most, the certificate files are checked for changes; checks happen on
/// new connections, so an idle server does no work.
const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

type Stamp = Vec<Option<(SystemTime, u64)>>;

/// Hands out the TLS acceptor for each new connection. Certificate files are stat'ed at
/// most once a second and the rustls configuration is rebuilt when one changed (as
/// cert-manager or certbot rotate them). A broken new file is logged once and the last
/// good configuration stays in use.
pub struct TlsReloader {
    settings: TlsSettings,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    acceptor: TlsAcceptor,
    stamp: Stamp,
    failed: Option<Stamp>,
    checked: Instant,
}

impl TlsReloader {
    fn new(settings: TlsSettings, config: Arc<ServerConfig>) -> TlsReloader {
        let stamp = stamp(&settings);
        TlsReloader {
            settings,
            state: Mutex::new(ReloadState {
                acceptor: TlsAcceptor::from(config),
                stamp,
                failed: None,
                checked: Instant::now(),
            }),
        }
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        let mut s = self.state.lock().expect("tls reload lock");
        if s.checked.elapsed() >= RELOAD_CHECK_EVERY {
            s.checked = Instant::now();
            let now = stamp(&self.settings);
            if now != s.stamp && s.failed.as_ref() != Some(&now) {
                match build_server_config(&self.settings) {
                    Ok(config) => {
                        tracing::info!("TLS certificate files changed: reloaded them");
                        s.acceptor = TlsAcceptor::from(config);
                        s.stamp = now;
                        s.failed = None;
                    }
                    Err(problems) => {
                        tracing::warn!(problems = %problems.join("; "), "TLS certificate files changed but cannot be used; still serving the previous ones");
                        s.failed = Some(now);
                    }
                }
            }
        }
        s.acceptor.clone()
    }
}

fn stamp(t: &TlsSettings) -> Stamp {
    [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|(pem, _)| match pem {
            Pem::File(p) => std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
            Pem::Inline => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Enforcement.

/// What [`WebGuard::check`] decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 401 with `WWW-Authenticate`.
    Unauthorized,
    /// 429: over `rate_limit`.
    TooManyRequests,
}

/// At most this many successful checks are remembered. Only successes are cached and a
/// hash matches one password, so in practice there is one entry per user; the bound
/// keeps memory fixed whatever happens.
const AUTH_CACHE_ENTRIES: usize = 1024;

/// The realm sent with 401 responses.
pub const REALM_HEADER: &str = "Basic realm=\"predmon\"";

/// The web configuration in force on a running server.
pub struct WebGuard {
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: Option<TlsReloader>,
    /// HMAC-SHA256 of (user, password, hash) under a key made at startup: the cache of
    /// successful checks holds no password, and its entries are useless outside this process.
    cache_key: ring::hmac::Key,
    cache: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt is slow on purpose (tens of ms at cost 10): one check at a time, so wrong
    /// passwords sent in a flood cost at most one core, as in exporter-toolkit.
    bcrypt_lock: Mutex<()>,
    /// Checked against for unknown users so they take as long as known ones (no user
    /// enumeration by timing); made on first use with the highest configured cost.
    decoy_hash: OnceLock<String>,
    limiter: Option<Mutex<Bucket>>,
    bcrypt_runs: std::sync::atomic::AtomicU64,
}

struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl WebGuard {
    pub fn new(config: WebConfig) -> WebGuard {
        let rng = ring::rand::SystemRandom::new();
        WebGuard {
            tls: match (config.tls, config.server_config) {
                (Some(t), Some(c)) => Some(TlsReloader::new(t, c)),
                _ => None,
            },
            users: config.users,
            headers: config.headers,
            cache_key: ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
                .expect("the system random generator works"),
            cache: Mutex::new(HashSet::new()),
            bcrypt_lock: Mutex::new(()),
            decoy_hash: OnceLock::new(),
            limiter: config.rate_limit.map(|limit| {
                Mutex::new(Bucket {
                    limit,
                    tokens: f64::from(limit.burst),
                    last: Instant::now(),
                })
            }),
            bcrypt_runs: Default::default(),
        }
    }

    /// The acceptor for a new connection, or `None` for plain HTTP.
    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.as_ref().map(TlsReloader::acceptor)
    }

    /// The headers `http_server_config.headers` adds to every response.
    pub fn response_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// How many bcrypt checks ran (cache misses), for tests.
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Rate limit, then basic auth. Runs before routing, so nothing is served (not even
    /// `/healthz`, as in exporter-toolkit) without credentials when users are configured.
    pub async fn check(self: &Arc<Self>, headers: &HeaderMap) -> Verdict {
        if let Some(limiter) = &self.limiter {
            if !limiter.lock().expect("rate limit lock").take() {
                return Verdict::TooManyRequests;
            }
        }
        if self.users.is_empty() {
            return Verdict::Allow;
        }
        let Some((user, password)) = basic_credentials(headers) else {
            return Verdict::Unauthorized;
        };
        let known = self.users.get(&user);
        let hash = known.cloned().unwrap_or_default();
        let tag = self.cache_tag(&user, &password, &hash);
        if known.is_some() && self.cache.lock().expect("auth cache lock").contains(&tag) {
            return Verdict::Allow;
        }
        let guard = self.clone();
        let ok = tokio::task::spawn_blocking(move || {
            guard.verify(known_or_decoy(&guard, &hash), &password)
        })
        .await
        .unwrap_or(false);
        if ok && known.is_some() {
            let mut cache = self.cache.lock().expect("auth cache lock");
            if cache.len() >= AUTH_CACHE_ENTRIES {
                // Any entry will do: evicting one only costs that user one more bcrypt.
                if let Some(victim) = cache.iter().next().copied() {
                    cache.remove(&victim);
                }
            }
            cache.insert(tag);
            Verdict::Allow
        } else {
            Verdict::Unauthorized
        }
    }

    fn verify(&self, hash: String, password: &str) -> bool {
        let _one_at_a_time = self.bcrypt_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.bcrypt_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // bcrypt reads 72 bytes of password: a longer one must not pass on its prefix.
        password.len() <= 72 && bcrypt::verify(password, &hash).unwrap_or(false)
    }

    fn decoy(&self) -> String {
        self.decoy_hash
            .get_or_init(|| {
                let cost = self
                    .users
                    .values()
                    .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
                    .map(|p| p.get_cost())
                    .max()
                    .unwrap_or(bcrypt::DEFAULT_COST);
                bcrypt::hash("predmon decoy password", cost).unwrap_or_default()
            })
            .clone()
    }

    fn cache_tag(&self, user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.cache_key);
        // Length prefixes: ("ab", "c") and ("a", "bc") must not collide.
        for part in [user, password, hash] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// The hash to check against: the user's, or the decoy for an unknown user (empty hash).
fn known_or_decoy(guard: &WebGuard, hash: &str) -> String {
    if hash.is_empty() {
        guard.decoy()
    } else {
        hash.to_string()
    }
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill =
            now.duration_since(self.last).as_secs_f64() / self.limit.interval.as_secs_f64();
        self.tokens = (self.tokens + refill).min(f64::from(self.limit.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `Authorization: Basic base64(user:password)`, the scheme matched case-insensitively.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cost 4, bcrypt's minimum: these tests check logic, not bcrypt's slowness.
    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    fn parse(text: &str) -> Result<WebConfig, Vec<String>> {
        WebConfig::parse(text, Path::new("/nonexistent")).map_err(|e| match e {
            ParseError::Yaml(m) => vec![m],
            ParseError::Invalid(p) => p,
        })
    }

    fn problems(text: &str) -> String {
        parse(text).expect_err("should be rejected").join("\n")
    }

    fn auth(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(AUTHORIZATION, format!("Basic {token}").parse().unwrap());
        h
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        for text in ["", "# only a comment\n", "{}"] {
            let c = parse(text).unwrap();
            assert!(!c.tls_enabled() && !c.basic_auth_enabled(), "{text:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let p = problems("basic_auth_user:\n  alice: x\n");
        assert!(p.contains("unknown field `basic_auth_user`"), "{p}");
        let p = problems("tls_server_config:\n  cert_fil: a.pem\n");
        assert!(p.contains("unknown field `cert_fil`"), "{p}");

        let p = problems("basic_auth_users:\n  alice: notahash\n  'a:b': $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n");
        assert!(
            p.contains("basic_auth_users.alice: the value is not a bcrypt hash"),
            "{p}"
        );
        assert!(
            !p.contains("notahash"),
            "hashes are secrets and never quoted: {p}"
        );
        assert!(p.contains("`a:b` cannot be a username"), "{p}");

        let p = problems(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: RequireAnyClientCert\n  min_version: TLS11\n",
        );
        assert!(p.contains("client_auth_type: `RequireAnyClientCert` accepts client certificates without verifying"), "{p}");
        assert!(p.contains("min_version: `TLS11` is not offered"), "{p}");

        let p = problems("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: Maybe\n");
        assert!(p.contains("`Maybe` is not allowed; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"), "{p}");

        let p = problems("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: RequireAndVerifyClientCert\n");
        assert!(p.contains("needs client_ca_file"), "{p}");

        let p = problems(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n",
        );
        assert!(
            p.contains("client_ca_file is set but client_auth_type is NoClientCert"),
            "{p}"
        );

        let p = problems("tls_server_config:\n  cert_file: c.pem\n");
        assert!(p.contains("key_file is missing"), "{p}");

        let p = problems("tls_server_config:\n  min_version: TLS13\n");
        assert!(p.contains("TLS options are set but no certificate"), "{p}");

        let p = problems("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n  max_version: TLS12\n  cipher_suites: [TLS_NOPE]\n  curve_preferences: [CurveP521]\n");
        assert!(
            p.contains("min_version TLS13 is above max_version TLS12"),
            "{p}"
        );
        assert!(
            p.contains("cipher_suites: `TLS_NOPE` is not available; use any of TLS_ECDHE_"),
            "{p}"
        );
        assert!(
            p.contains("curve_preferences: `CurveP521` is not available"),
            "{p}"
        );

        let p = problems(
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n    Server: me\n",
        );
        assert!(
            p.contains("X-Frame-Options: `allow` is not allowed; use deny or sameorigin"),
            "{p}"
        );
        assert!(p.contains("`Server` cannot be set"), "{p}");

        let p = problems("rate_limit:\n  interval: 1s\n  burst: 0\n");
        assert!(p.contains("rate_limit.burst: `0` is not allowed"), "{p}");
    }

    #[test]
    fn missing_files_are_reported_with_their_resolved_path() {
        let p = problems("tls_server_config:\n  cert_file: c.pem\n  key_file: /abs/k.pem\n");
        assert!(
            p.contains("cert_file /nonexistent/c.pem: cannot read it"),
            "{p}"
        );
        assert!(p.contains("key_file /abs/k.pem: cannot read it"), "{p}");
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("c.pem"), a.cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), b.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("bad.pem"), "not pem").unwrap();
        let text = "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n";
        let p = match WebConfig::parse(text, dir.path()) {
            Err(ParseError::Invalid(p)) => p.join("\n"),
            _ => panic!("accepted a mismatched key"),
        };
        assert!(p.contains("does not fit the certificate"), "{p}");
        let text = "tls_server_config:\n  cert_file: bad.pem\n  key_file: bad.pem\n";
        let p = match WebConfig::parse(text, dir.path()) {
            Err(ParseError::Invalid(p)) => p.join("\n"),
            _ => panic!("accepted garbage"),
        };
        assert!(
            p.contains("holds no `-----BEGIN CERTIFICATE-----` block"),
            "{p}"
        );
        assert!(p.contains("no usable private key"), "{p}");
        std::fs::write(dir.path().join("k.pem"), a.signing_key.serialize_pem()).unwrap();
        let ok = WebConfig::parse(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n",
            dir.path(),
        );
        assert!(ok.is_ok_and(|c| c.tls_enabled()));
    }

    #[test]
    fn basic_auth_caches_successes_only_and_hides_unknown_users() {
        let config = parse(&format!(
            "basic_auth_users:\n  alice: '{}'\n",
            hash("secret")
        ))
        .unwrap();
        let guard = Arc::new(WebGuard::new(config));
        block_on(async {
            assert_eq!(guard.check(&HeaderMap::new()).await, Verdict::Unauthorized);
            assert_eq!(guard.bcrypt_runs(), 0, "no credentials, no bcrypt");
            assert_eq!(guard.check(&auth("alice", "secret")).await, Verdict::Allow);
            assert_eq!(guard.check(&auth("alice", "secret")).await, Verdict::Allow);
            assert_eq!(
                guard.bcrypt_runs(),
                1,
                "the second check came from the cache"
            );
            assert_eq!(
                guard.check(&auth("alice", "wrong")).await,
                Verdict::Unauthorized
            );
            assert_eq!(
                guard.check(&auth("alice", "wrong")).await,
                Verdict::Unauthorized
            );
            assert_eq!(guard.bcrypt_runs(), 3, "failures are not cached");
            // An unknown user runs bcrypt too (against the decoy), so it takes as long.
            assert_eq!(
                guard.check(&auth("mallory", "secret")).await,
                Verdict::Unauthorized
            );
            assert_eq!(guard.bcrypt_runs(), 4);
            // bcrypt reads 72 bytes: the longest password works, a longer one must not
            // pass on its prefix.
            let long = "x".repeat(72);
            let g2 = Arc::new(WebGuard::new(
                parse(&format!("basic_auth_users:\n  bob: '{}'\n", hash(&long))).unwrap(),
            ));
            assert_eq!(g2.check(&auth("bob", &long)).await, Verdict::Allow);
            assert_eq!(
                g2.check(&auth("bob", &format!("{long}y"))).await,
                Verdict::Unauthorized
            );
        });
        assert_eq!(guard.cache.lock().unwrap().len(), 1);
    }

    #[test]
    fn credentials_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "basic YWxpY2U6czpz".parse().unwrap());
        assert_eq!(basic_credentials(&h), Some(("alice".into(), "s:s".into())));
        h.insert(AUTHORIZATION, "Bearer YWxpY2U6cw==".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(AUTHORIZATION, "Basic bm9jb2xvbg==".parse().unwrap()); // "nocolon"
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn rate_limit_is_a_token_bucket() {
        let config = parse("rate_limit:\n  interval: 1h\n  burst: 2\n").unwrap();
        let guard = Arc::new(WebGuard::new(config));
        block_on(async {
            assert_eq!(guard.check(&HeaderMap::new()).await, Verdict::Allow);
            assert_eq!(guard.check(&HeaderMap::new()).await, Verdict::Allow);
            assert_eq!(
                guard.check(&HeaderMap::new()).await,
                Verdict::TooManyRequests
            );
        });
        assert!(
            parse("rate_limit:\n  interval: 0s\n  burst: 0\n").is_ok(),
            "0 disables"
        );
    }

    #[test]
    fn headers_are_set_with_their_documented_values() {
        let c = parse("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n").unwrap();
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
    }

    #[test]
    fn debug_output_shows_no_secrets() {
        let h = hash("pw");
        let c = parse(&format!("basic_auth_users:\n  alice: '{h}'\n")).unwrap();
        let text = format!("{c:?}");
        assert!(text.contains("alice") && !text.contains(&h), "{text}");
    }
}
