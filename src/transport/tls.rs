//! TLS on every stream transport (rustls, ring provider).
//!
//! - Servers take a PEM certificate chain and key, or make a self-signed certificate at start
//!   (`--tls-self-signed`) and print its SHA-256 fingerprint for clients to pin. With
//!   `--tls-client-ca` they also require a client certificate signed by that CA.
//! - Clients verify the server against the system's roots, or the roots in `--tls-ca`, or pin
//!   the server's certificate by its SHA-256 fingerprint (`--tls-fingerprint`). A server that
//!   cannot be verified is an error, never a warning.
//! - A server's handshake runs in the connection's own task, bounded by
//!   [`HANDSHAKE_TIMEOUT`](crate::limits::HANDSHAKE_TIMEOUT), so a client that stalls in the
//!   handshake holds only its own connection, and only for that long.
//!
//! [`Conn`] is what every service reads and writes: plain or TLS, one type.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deadline::Deadline;
use super::{Peek, Readiness};
use crate::error::{Error, Result};
use crate::limits::{CERT_EXPIRY_WARNING, HANDSHAKE_TIMEOUT, PLAIN_REQUEST_HEAD, REFUSAL_LINGER};
use crate::server::RefusalStyle;

/// How a server offers TLS (`--tls-cert`/`--tls-key`, `--tls-self-signed`, `--tls-client-ca`).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Make a self-signed certificate at start.
    pub self_signed: bool,
    /// Require client certificates issued by a CA in this file (PEM).
    pub client_ca: Option<PathBuf>,
    /// How long a client may take over its handshake (`--tls-handshake-timeout`).
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            self_signed: false,
            client_ca: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

impl ServerOptions {
    /// Whether TLS is on at all.
    pub fn is_on(&self) -> bool {
        self.self_signed || self.cert.is_some()
    }
}

/// How a client checks the server (`--tls`, `--tls-ca`, `--tls-fingerprint`) and proves itself
/// (`--tls-client-cert`/`--tls-client-key`).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// TLS on, verified against the system's roots unless `ca` or `fingerprint` says otherwise.
    pub enabled: bool,
    /// Trust the CA certificates in this file (PEM) instead of the system's.
    pub ca: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (hex, colons optional).
    pub fingerprint: Option<String>,
    /// A client certificate chain to present (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

impl ClientOptions {
    /// Whether TLS is on: `--tls`, or any option that only makes sense with it.
    pub fn is_on(&self) -> bool {
        self.enabled || self.ca.is_some() || self.fingerprint.is_some()
    }
}

/// A server's TLS setup, ready to accept.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    certificate: Arc<Certificate>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// The certificate a server presents, replaceable while it runs: [`Acceptor::reload`] reads
/// the files again (on SIGHUP), and handshakes from then on use the new one.
#[derive(Debug)]
struct Certificate {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
    /// `--tls-cert` and `--tls-key`; none for a self-signed certificate.
    files: Option<(PathBuf, PathBuf)>,
}

impl Certificate {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl rustls::server::ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The chain and key in `cert` and `key`, checked to belong together.
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let (chain, private) = (read_certs(cert)?, read_key(key)?);
    CertifiedKey::from_der(chain, private, &provider()).map_err(|err| {
        tls_error(format!(
            "{} and {} do not go together (the key is not the certificate's): {}",
            cert.display(),
            key.display(),
            readable(&err)
        ))
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: impl std::fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

/// A rustls error in words: rustls words some of its errors for programs (`unexpected error:`
/// before our own text, enum names in parentheses), which are not for the person reading.
fn readable(err: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    match err {
        rustls::Error::General(text) => text.clone(),
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "the certificate is not signed by a CA trusted here (UnknownIssuer)".into()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForNameContext {
            expected,
            presented,
        }) => {
            // Names come as webpki words them: `DnsName("example.org")`, `IpAddress(127.0.0.1)`.
            let names: Vec<&str> = presented
                .iter()
                .map(|name| {
                    let inner = name
                        .strip_prefix("DnsName(")
                        .or_else(|| name.strip_prefix("IpAddress("))
                        .and_then(|rest| rest.strip_suffix(')'));
                    inner.map_or(name.as_str(), |inner| inner.trim_matches('"'))
                })
                .collect();
            let names = match names.as_slice() {
                [] => "no name".to_string(),
                names => names.join(", "),
            };
            format!(
                "the certificate is for {names}, not {} (NotValidForName)",
                expected.to_str()
            )
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName) => {
            "the certificate is not for this name (NotValidForName)".into()
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the certificate has expired".into()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the certificate is not valid yet (check the clocks)".into()
        }
        rustls::Error::InvalidCertificate(Cert::Other(other)) => {
            let text = format!("{other:?}");
            if text.contains("UnsupportedCertVersion") {
                "an X.509 v1 certificate: TLS here needs v3 (one with extensions)".into()
            } else {
                format!("invalid certificate: {}", other.0)
            }
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the server wants a client certificate: give --tls-client-cert and --tls-client-key"
                .into()
        }
        // A server refusing the client certificate it was given (OpenSSL and rustls say
        // `certificate_unknown` or `bad_certificate`, some `unknown_ca`).
        rustls::Error::AlertReceived(
            alert @ (rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::UnsupportedCertificate
            | rustls::AlertDescription::CertificateExpired),
        ) => format!(
            "the server refused our client certificate ({alert:?}): is it issued by a CA the \
             server trusts, and still valid?"
        ),
        other => other.to_string(),
    }
}

/// An I/O error from a TLS connection, with rustls's reason in words and a `tls:` prefix;
/// any other I/O error as it is. (With TLS 1.3 a server refuses a client certificate after
/// the handshake, so the reason comes with the first read.)
pub fn explain(err: std::io::Error) -> Error {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls_error(readable(tls)),
        None => Error::Io(err),
    }
}

impl Acceptor {
    /// Builds the server side from `options`; `None` when TLS is off.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file and what is wrong with it.
    pub fn new(options: &ServerOptions) -> Result<Option<Self>> {
        if !options.is_on() {
            return Ok(None);
        }
        let (pair, files) = match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => {
                let pair = load_pair(cert, key)?;
                warn_about_validity(cert, &pair.cert[0], std::time::SystemTime::now());
                (pair, Some((cert.clone(), key.clone())))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Usage("--tls-cert and --tls-key go together".into()));
            }
            (None, None) => {
                let (chain, key) = self_signed()?;
                (
                    CertifiedKey::from_der(chain, key, &provider()).map_err(tls_error)?,
                    None,
                )
            }
        };
        let certificate = Arc::new(Certificate {
            current: std::sync::RwLock::new(Arc::new(pair)),
            files,
        });
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = match &options.client_ca {
            Some(path) => {
                let roots = Arc::new(read_roots(path)?);
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .build()
                        .map_err(|err| tls_error(format!("{}: {err}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        // No ALPN: the line protocols have no name to offer, and a server that names one
        // refuses every client offering others (`no_application_protocol`). Browsers take
        // HTTP/1.1 when none is chosen.
        let config = builder.with_cert_resolver(certificate.clone());
        Ok(Some(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: options.handshake_timeout,
            certificate,
        }))
    }

    /// The SHA-256 fingerprint of the certificate presented now, `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificate.get().cert[0])
    }

    /// Reads `--tls-cert` and `--tls-key` again and presents them from the next handshake on
    /// (a renewed certificate, without a restart); returns the new fingerprint. A self-signed
    /// certificate has no files: `Ok(None)`.
    ///
    /// # Errors
    /// The files could not be read or do not go together; the current certificate stays.
    pub fn reload(&self) -> Result<Option<String>> {
        let Some((cert, key)) = &self.certificate.files else {
            return Ok(None);
        };
        let pair = Arc::new(load_pair(cert, key)?);
        warn_about_validity(cert, &pair.cert[0], std::time::SystemTime::now());
        *self
            .certificate
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = pair;
        Ok(Some(self.fingerprint()))
    }

    /// Whether the certificate comes from files that [`Acceptor::reload`] can read again.
    pub fn is_reloadable(&self) -> bool {
        self.certificate.files.is_some()
    }

    /// Runs the server handshake on `stream`, for at most `--tls-handshake-timeout`.
    ///
    /// First it looks at what the client sent, without taking it: a TLS client opens with a
    /// handshake record (0x16). A client that sends anything else, or nothing before the
    /// timeout (a plain client waiting for the server to speak first), is told in plain text
    /// that this port speaks TLS ([`plain_answer`]: an HTTP 400 naming the `https://` address
    /// when `style` is [`RefusalStyle::Http`] and it sent an HTTP request) and closed; it
    /// would otherwise get a TLS alert it shows as garbage, or nothing at all.
    ///
    /// # Errors
    /// The handshake failed or timed out, or the client spoke plain text.
    pub async fn accept<S>(&self, mut stream: S, style: RefusalStyle) -> io::Result<Conn<S>>
    where
        S: AsyncRead + AsyncWrite + Peek + Unpin,
    {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let mut first = [0u8; 8];
        let first = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before its TLS handshake",
                ));
            }
            Ok(Ok(n)) => &first[..n],
            Ok(Err(err)) => return Err(err),
            Err(_) => &[],
        };
        if first.first() != Some(&TLS_HANDSHAKE) {
            let is_silent = first.is_empty();
            let answer = plain_answer(&mut stream, first, style).await;
            let _ = tokio::time::timeout(
                REFUSAL_LINGER,
                crate::server::close_gently(&mut stream, &answer),
            )
            .await;
            let why = if is_silent {
                format!(
                    "sent nothing within {:?} (--tls-handshake-timeout); told it this port speaks TLS",
                    self.handshake_timeout
                )
            } else {
                "spoke plain text to a TLS port; told it to use TLS".to_string()
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        let handshake = self.acceptor.accept(stream);
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => Ok(Conn::Tls(Box::new(tls.into()), true, false)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "TLS handshake not done within {:?} (--tls-handshake-timeout)",
                    self.handshake_timeout
                ),
            )),
        }
    }
}

/// The first byte of every TLS connection a client opens: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain-text client on a TLS port is told, in one line.
pub const PLAIN_ON_TLS: &str = "refused: this port speaks TLS; connect with --tls (socktalk), \
                                ncat --ssl or openssl s_client";

/// The answer for a plain-text client on a TLS port that sent `first`: on a web listener
/// (`style` [`RefusalStyle::Http`]) an HTTP request gets `400 Bad Request` naming the `https://`
/// address (its `Host`, else the address it connected to), read from its request head (at most
/// [`PLAIN_REQUEST_HEAD`] bytes, for at most [`REFUSAL_LINGER`]); anything else gets
/// [`PLAIN_ON_TLS`].
async fn plain_answer<S>(stream: &mut S, first: &[u8], style: RefusalStyle) -> Vec<u8>
where
    S: AsyncRead + Peek + Unpin,
{
    if style != RefusalStyle::Http || !looks_like_http(first) {
        return format!("{PLAIN_ON_TLS}\n").into_bytes();
    }
    let head = read_head(stream).await;
    let host = host_header(&head)
        .or_else(|| stream.local_name())
        .unwrap_or_else(|| "this-host".into());
    let body = format!("this port speaks HTTPS: open https://{host}/ instead\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether `first` starts like an HTTP request: a method (capital letters) and a space, or as
/// much of that as has come.
fn looks_like_http(first: &[u8]) -> bool {
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method >= 3 && first.get(method).is_none_or(|b| *b == b' ')
}

/// A request head, read until its blank line, [`PLAIN_REQUEST_HEAD`] bytes or
/// [`REFUSAL_LINGER`], whichever comes first.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut chunk = [0u8; 1024];
        while head.len() < PLAIN_REQUEST_HEAD
            && memchr::memmem::find(&head, b"\r\n\r\n").is_none()
            && memchr::memmem::find(&head, b"\n\n").is_none()
        {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    head
}

/// The `Host` header of a request head, if it is a plain `host[:port]` (anything else is not
/// echoed back).
fn host_header(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let value = text.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim())
    })?;
    let is_plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    is_plain.then(|| value.to_string())
}

/// Logs a warning when the certificate in `file` is expired, not yet valid, or expires within
/// [`CERT_EXPIRY_WARNING`] of `now`: the server still starts (or reloads), but clients will
/// refuse it, or soon will.
fn warn_about_validity(file: &Path, cert: &CertificateDer<'_>, now: std::time::SystemTime) {
    if let Some(warning) = validity_warning(cert, now) {
        tracing::warn!("{}: {warning}", file.display());
    }
}

/// What is wrong with `cert`'s validity period at `now`, in words; `None` when nothing is (or
/// it cannot be read: rustls has accepted the certificate, and clients check it anyway).
fn validity_warning(cert: &CertificateDer<'_>, now: std::time::SystemTime) -> Option<String> {
    const DAY: i64 = 24 * 60 * 60;
    let (not_before, not_after) = validity(cert)?;
    let now = match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let days = |seconds: i64| match seconds / DAY {
        0 => "less than a day".to_string(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    };
    let soon = i64::try_from(CERT_EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    if now >= not_after.0 {
        Some(format!(
            "the TLS certificate expired on {} ({} ago): clients will refuse it; renew it \
             (kill -HUP reloads --tls-cert without a restart)",
            not_after.1,
            days(now - not_after.0)
        ))
    } else if now < not_before.0 {
        Some(format!(
            "the TLS certificate is not valid until {} (in {}): clients will refuse it until \
             then; is this machine's clock right?",
            not_before.1,
            days(not_before.0 - now)
        ))
    } else if not_after.0 - now <= soon {
        Some(format!(
            "the TLS certificate expires on {} (in {}): renew it soon (kill -HUP reloads \
             --tls-cert without a restart)",
            not_after.1,
            days(not_after.0 - now)
        ))
    } else {
        None
    }
}

/// An X.509 certificate's validity period: `notBefore` and `notAfter`, each in Unix seconds
/// and as a date (`2026-12-03`, UTC). Read with yasna, the DER reader rcgen already brings.
fn validity(cert: &CertificateDer<'_>) -> Option<((i64, String), (i64, String))> {
    fn time(reader: yasna::BERReader<'_, '_>) -> yasna::ASN1Result<(i64, String)> {
        let at = if reader.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
            *reader.read_utctime()?.datetime()
        } else {
            *reader.read_generalized_time()?.datetime()
        };
        Ok((at.unix_timestamp(), at.date().to_string()))
    }
    fn skip_rest(reader: &mut yasna::BERReaderSeq<'_, '_>) -> yasna::ASN1Result<()> {
        while reader.read_optional(|r| r.read_der())?.is_some() {}
        Ok(())
    }
    let read = yasna::parse_ber(cert.as_ref(), |reader| {
        reader.read_sequence(|certificate| {
            let validity = certificate.next().read_sequence(|tbs| {
                // version [0] EXPLICIT (absent in v1), serialNumber, signature, issuer.
                tbs.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_der()))?;
                for _ in 0..3 {
                    tbs.next().read_der()?;
                }
                let validity = tbs
                    .next()
                    .read_sequence(|v| Ok((time(v.next())?, time(v.next())?)))?;
                skip_rest(tbs)?;
                Ok(validity)
            })?;
            skip_rest(certificate)?;
            Ok(validity)
        })
    });
    read.ok()
}

/// A client's TLS setup, ready to connect.
#[derive(Clone)]
pub struct Connector {
    connector: tokio_rustls::TlsConnector,
    /// Whether it presents a client certificate (`--tls-client-cert`).
    has_client_cert: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    /// Builds the client side from `options`; `None` when TLS is off.
    ///
    /// # Errors
    /// [`Error::Tls`] for unreadable files, no usable roots or a malformed fingerprint.
    pub fn new(options: &ClientOptions) -> Result<Option<Self>> {
        Ok(client_config(options)?.map(|config| Self {
            connector: tokio_rustls::TlsConnector::from(config),
            has_client_cert: options.cert.is_some(),
        }))
    }

    /// Runs the client handshake on `stream`, checking the certificate against `host` (a DNS
    /// name or an IP address; unused when the certificate is pinned by fingerprint).
    ///
    /// The handshake may take [`HANDSHAKE_TIMEOUT`].
    ///
    /// # Errors
    /// As [`Connector::connect_within`].
    pub async fn connect<S>(&self, host: &str, stream: S) -> Result<Conn<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let deadline = Deadline::after(HANDSHAKE_TIMEOUT, "");
        self.connect_within(host, stream, deadline).await
    }

    /// Runs the client handshake on `stream`, as [`Connector::connect`] does, done by
    /// `deadline` (the client's `-w`, which the connect before it used part of).
    ///
    /// # Errors
    /// [`Error::Tls`] with rustls's reason (an unknown issuer, a name mismatch, a fingerprint
    /// that differs); [`Error::TimedOut`] when the deadline passes first.
    pub async fn connect_within<S>(
        &self,
        host: &str,
        stream: S,
        deadline: Deadline,
    ) -> Result<Conn<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = server_name(host)?;
        let handshake = self.connector.connect(name, stream);
        match deadline.within(handshake).await {
            Some(Ok(tls)) => Ok(Conn::Tls(Box::new(tls.into()), true, false)),
            Some(Err(err)) => {
                let tls = err
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>());
                let text = match tls {
                    // The first bytes back are no TLS record at all: most likely a plain-text
                    // server's words (a socktalk one says it is plain text), not a damaged
                    // record, as rustls's "corrupt message" would have it.
                    Some(rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::InvalidContentType,
                    )) => "the server answered in something other than TLS (InvalidContentType)"
                        .to_string(),
                    Some(tls) => readable(tls),
                    None => err.to_string(),
                };
                let hint = if text.contains("InvalidContentType") {
                    " (a plain-text port? connect without --tls)"
                } else if text.contains("UnknownIssuer") {
                    " (a self-signed server? pin it with --tls-fingerprint, or trust its CA with --tls-ca)"
                } else if text.contains("corrupt message") || text.contains("unexpected handshake")
                {
                    " (is the server speaking TLS?)"
                } else if text.contains("HandshakeFailure") && !self.has_client_cert {
                    // What a TLS 1.2 server answers a client without the certificate it
                    // asked for (TLS 1.3 has an alert of its own for that).
                    " (does the server want a client certificate? give --tls-client-cert and \
                     --tls-client-key; or it may speak no TLS version or cipher socktalk does: \
                     TLS 1.2 and 1.3)"
                } else {
                    ""
                };
                Err(tls_error(format!(
                    "TLS handshake with {host} failed: {text}{hint}"
                )))
            }
            None => Err(Error::TimedOut(format!(
                "tls: TLS handshake with {host} not done within {}",
                deadline.describe()
            ))),
        }
    }
}

/// The rustls client configuration [`Connector`] uses, for programs that drive rustls
/// themselves; `None` when TLS is off.
///
/// # Errors
/// As [`Connector::new`].
pub fn client_config(options: &ClientOptions) -> Result<Option<Arc<ClientConfig>>> {
    if !options.is_on() {
        return Ok(None);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = if let Some(hex) = &options.fingerprint {
        let pinned = Pinned {
            sha256: parse_fingerprint(hex)?,
            provider: provider(),
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(pinned))
    } else {
        let roots = match &options.ca {
            Some(path) => read_roots(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|err| {
                tls_error(format!(
                    "client certificate {}: {}",
                    cert.display(),
                    readable(&err)
                ))
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Usage(
                "--tls-client-cert and --tls-client-key go together".into(),
            ));
        }
    };
    Ok(Some(Arc::new(config)))
}

/// Trusts one certificate, named by its SHA-256 fingerprint: how a client talks to a server
/// with a self-signed certificate without trusting anything else. The handshake's signatures
/// are still checked, so only the holder of that certificate's key can pass.
#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} is not the pinned {}",
                hex_colons(digest.as_ref()),
                hex_colons(&self.sha256)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether `first` (the first bytes a server sent a plain client) starts like a TLS record: an
/// alert (0x15) or a handshake (0x16) of TLS 1.0–1.3 (0x03 0x01–0x04). A TLS server answers
/// plain text with an alert and closes, which a plain client would print as garbage.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// Whether `first` (what a plain listener's first read of a connection brought) starts like a
/// TLS ClientHello: a handshake record (0x16) of TLS 1.0–1.3 (0x03 0x00–0x04), or as much of
/// that as came. A line of text never starts with 0x16.
pub fn looks_like_client_hello(first: &[u8]) -> bool {
    matches!(first, [0x16] | [0x16, 0x03] | [0x16, 0x03, 0x00..=0x04, ..])
}

/// What a plain listener tells a client that opened with a TLS handshake, in one line.
pub const TLS_ON_PLAIN: &str = "refused: this port is plain text, not TLS; connect without --tls";

/// The warning for a plain client whose server answered with TLS.
pub const TLS_HINT: &str = "the server answered in TLS: connect with --tls (or --tls-ca, \
                            --tls-fingerprint) to talk to it";

/// The warning for a plain listener (`connect -l`) whose peer opened with a TLS handshake.
pub const TLS_CLIENT_HINT: &str = "the peer opened with a TLS handshake: listen with \
                                   --tls-self-signed (or --tls-cert) to talk to it";

/// A certificate's SHA-256 fingerprint as `AB:CD:…`, the form `openssl x509 -fingerprint
/// -sha256` prints.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex_colons(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref())
}

fn hex_colons(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Parses a SHA-256 fingerprint: 64 hex digits, with or without colons, any case, an optional
/// `sha256:` prefix; also the whole line `openssl x509 -noout -fingerprint -sha256` prints
/// (`sha256 Fingerprint=AB:CD:…`) or `sha256sum` does (`abcd…  cert.der`).
///
/// # Errors
/// [`Error::Usage`] naming what is wrong.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32]> {
    let after_equals = text.rsplit_once('=').map_or(text, |(_, hex)| hex);
    let trimmed = after_equals.split_whitespace().next().unwrap_or_default();
    let body = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let digits: String = body.chars().filter(|c| *c != ':').collect();
    let bad = || {
        Error::Usage(format!(
            "--tls-fingerprint {text}: expected a SHA-256 fingerprint, 64 hex digits (colons allowed)"
        ))
    };
    if digits.len() != 64 || !digits.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| {
        let err = crate::error::lowercase_io(&err);
        tls_error(format!("{}: {err}", path.display()))
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|err| tls_error(format!("{}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| {
        // PKCS#8 `ENCRYPTED PRIVATE KEY`, or OpenSSL's older `Proc-Type: 4,ENCRYPTED`.
        let is_encrypted = memchr::memmem::find(&pem, b"ENCRYPTED").is_some();
        if is_encrypted {
            tls_error(format!(
                "{}: the private key is encrypted (it has a passphrase); decrypt it first: \
                 openssl pkey -in {0} -out {0}.plain",
                path.display()
            ))
        } else {
            tls_error(format!(
                "{}: no usable PEM private key: {err}",
                path.display()
            ))
        }
    })
}

fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|err| tls_error(format!("{}: {err}", path.display())))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(tls_error(
            "no system CA certificates found (install ca-certificates, or use --tls-ca FILE or --tls-fingerprint HEX)",
        ));
    }
    Ok(roots)
}

/// A fresh self-signed certificate for `localhost`, 127.0.0.1 and ::1.
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let made = rcgen::generate_simple_self_signed(names).map_err(tls_error)?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(tls_error)?;
    Ok((vec![made.cert.der().clone()], key))
}

/// A stream connection, plain or TLS: what every service reads and writes.
pub enum Conn<S> {
    /// No TLS.
    Plain(S),
    /// TLS, client or server side; the first flag says decrypted bytes may be waiting in the
    /// TLS layer (so the socket's readiness alone does not tell). It starts set: the handshake
    /// may have read the peer's first application data along with its last handshake message,
    /// and waiting for the socket then would wait for bytes that have already arrived. The
    /// second says our side has shut down, its `close_notify` sent (see [`is_end`]).
    Tls(Box<tokio_rustls::TlsStream<S>>, bool, bool),
}

impl<S> Conn<S> {
    /// The socket under any TLS.
    pub fn get_ref(&self) -> &S {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(tls, ..) => tls.get_ref().0,
        }
    }

    /// Whether this connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(..))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(tls, _, is_shut) => Pin::new(&mut TlsRead(tls, *is_shut)).poll_read(cx, buf),
        }
    }
}

/// The reading side of a TLS stream, where the peer's end (see [`is_end`]) reads as the end
/// of the stream, after everything it sent.
struct TlsRead<'a, S>(&'a mut tokio_rustls::TlsStream<S>, bool);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsRead<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let TlsRead(tls, is_shut) = self.get_mut();
        match Pin::new(&mut **tls).poll_read(cx, buf) {
            // A reset can come in the same read from the socket as the peer's last records:
            // they are decrypted and kept, the error returned first. One more read hands them
            // over (the socket then says end of file); once they are taken, the end.
            Poll::Ready(Err(err)) if is_end(&err, *is_shut) => {
                if err.kind() == io::ErrorKind::ConnectionReset {
                    tracing::info!("the peer closed without reading our close_notify (a reset)");
                }
                match Pin::new(&mut **tls).poll_read(cx, buf) {
                    Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
                    read => read,
                }
            }
            read => read,
        }
    }
}

/// Whether `err` is the peer closing its TLS connection without a `close_notify` first. Many
/// peers do (`openssl s_client`, `ncat --ssl`, a Python `ssl` socket closed without
/// `unwrap()`), as they would close a plain socket: here it is the end of the stream, as
/// there, not an error. A message cut short shows as it would over plain TCP: a line without
/// its newline, a frame without its length.
///
/// Once we have shut down (`is_shut`), a reset is such an end too. A peer that closes without
/// reading our `close_notify`, sent when our input ended, has closed with bytes unread, and its
/// kernel answers with a reset instead of a FIN (a Python `ssl` server that sends its reply and
/// closes, say). What it sent came whole; a reset before our end of input is still an error.
fn is_end(err: &io::Error, is_shut: bool) -> bool {
    err.kind() == io::ErrorKind::UnexpectedEof
        || (is_shut && err.kind() == io::ErrorKind::ConnectionReset)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(tls, ..) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(tls, ..) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(tls, ..) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(tls, ..) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(tls, _, is_shut) => {
                *is_shut = true;
                Pin::new(tls.as_mut()).poll_shutdown(cx)
            }
        }
    }
}

impl<S> Readiness for Conn<S>
where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + Sync,
{
    async fn readable(&self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.readable().await,
            // Bytes already decrypted are ready now; otherwise wait for the socket.
            Conn::Tls(_, true, _) => Ok(()),
            Conn::Tls(tls, false, _) => tls.get_ref().0.readable().await,
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.try_write(buf),
            // Plaintext cannot go out under TLS; writes go through `AsyncWrite`.
            Conn::Tls(..) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.try_read_buf(buf),
            Conn::Tls(tls, maybe_more, is_shut) => {
                // One poll with a waker that does nothing: `readable` does the waiting.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut read = TlsRead(tls, *is_shut);
                match tokio_util::io::poll_read_buf(Pin::new(&mut read), &mut cx, buf) {
                    Poll::Ready(Ok(n)) => {
                        *maybe_more = n > 0;
                        Ok(n)
                    }
                    Poll::Ready(Err(err)) => {
                        *maybe_more = false;
                        Err(err)
                    }
                    Poll::Pending => {
                        *maybe_more = false;
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                }
            }
        }
    }
}

/// The name a server's certificate is checked against: `host` without the brackets of an IPv6
/// literal, or the zone of a link-local one (`fe80::1%eth0` is `fe80::1`).
fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host.trim_matches(['[', ']']);
    let bare = match bare.split_once('%') {
        Some((ip, _zone)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => ip,
        _ => bare,
    };
    ServerName::try_from(bare.to_owned())
        .map_err(|err| tls_error(format!("{host}: not a server name: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate valid from `not_before` to `not_after` (Unix seconds).
    fn cert_valid(not_before: u64, not_after: u64) -> CertificateDer<'static> {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = epoch + Duration::from_secs(not_before);
        params.not_after = epoch + Duration::from_secs(not_after);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn certificate_validity_is_warned_about() {
        const DAY: u64 = 24 * 60 * 60;
        let now = 20_000 * DAY; // 2024-10-04
        let at = |seconds| std::time::UNIX_EPOCH + Duration::from_secs(seconds);
        let (from, to) = validity(&cert_valid(now - DAY, now + 30 * DAY)).unwrap();
        assert_eq!(
            (from.0, to.0),
            ((now - DAY) as i64, (now + 30 * DAY) as i64)
        );
        assert_eq!(to.1, "2024-11-03");
        assert_eq!(
            validity_warning(&cert_valid(now - DAY, now + 30 * DAY), at(now)),
            None
        );
        let expired = validity_warning(&cert_valid(now - 9 * DAY, now - 3 * DAY), at(now));
        assert!(
            expired
                .as_deref()
                .unwrap()
                .starts_with("the TLS certificate expired on 2024-10-01 (3 days ago)"),
            "{expired:?}"
        );
        let early = validity_warning(&cert_valid(now + 2 * DAY, now + 90 * DAY), at(now));
        assert!(
            early
                .as_deref()
                .unwrap()
                .starts_with("the TLS certificate is not valid until 2024-10-06 (in 2 days)"),
            "{early:?}"
        );
        let soon = validity_warning(&cert_valid(now - DAY, now + 5 * DAY + 60), at(now));
        assert!(
            soon.as_deref()
                .unwrap()
                .starts_with("the TLS certificate expires on 2024-10-09 (in 5 days)"),
            "{soon:?}"
        );
        // A GeneralizedTime (from 2050 on) reads too.
        let far = 30_000 * DAY;
        let (_, to) = validity(&cert_valid(now, far)).unwrap();
        assert_eq!(to.0, far as i64);
        assert!(validity(&CertificateDer::from(vec![0x30, 0x00])).is_none());
    }

    #[test]
    fn client_hellos_are_told_from_text() {
        assert!(looks_like_client_hello(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(looks_like_client_hello(&[0x16, 0x03, 0x03]));
        assert!(looks_like_client_hello(&[0x16]));
        assert!(!looks_like_client_hello(b"hello\n"));
        assert!(!looks_like_client_hello(b""));
        assert!(!looks_like_client_hello(&[0x16, 0x03, 0x09]));
        assert!(!looks_like_client_hello(&[0x15, 0x03, 0x03]));
    }

    #[test]
    fn server_names_drop_brackets_and_zones() {
        let ip =
            |text: &str| ServerName::IpAddress(text.parse::<std::net::IpAddr>().unwrap().into());
        assert_eq!(server_name("[fe80::1%eth0]").unwrap(), ip("fe80::1"));
        assert_eq!(server_name("fe80::1%2").unwrap(), ip("fe80::1"));
        assert_eq!(server_name("[::1]").unwrap(), ip("::1"));
        assert_eq!(server_name("127.0.0.1").unwrap(), ip("127.0.0.1"));
        assert!(matches!(
            server_name("example.org").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("not a%name").is_err());
    }

    #[test]
    fn fingerprints_parse_in_every_common_form() {
        let colons = "AB:".repeat(31) + "AB";
        let plain = "ab".repeat(32);
        for text in [
            colons.clone(),
            plain.clone(),
            format!("sha256:{plain}"),
            format!("sha256 Fingerprint={colons}"),
            format!("SHA256 Fingerprint={colons}\n"),
            format!("{plain}  cert.der"),
        ] {
            assert_eq!(parse_fingerprint(&text).unwrap(), [0xAB; 32], "{text}");
        }
        for bad in ["", "AB:CD", &"zz".repeat(32), &"é".repeat(64)] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_self_signed_acceptor_reports_its_fingerprint() {
        let acceptor = Acceptor::new(&ServerOptions {
            self_signed: true,
            ..ServerOptions::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(acceptor.fingerprint().len(), 32 * 3 - 1);
        assert!(parse_fingerprint(&acceptor.fingerprint()).is_ok());
        assert!(!acceptor.is_reloadable());
        assert_eq!(acceptor.reload().unwrap(), None);
    }

    #[test]
    fn missing_files_are_named() {
        let err = Acceptor::new(&ServerOptions {
            cert: Some("/nonexistent/cert.pem".into()),
            key: Some("/nonexistent/key.pem".into()),
            ..ServerOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
