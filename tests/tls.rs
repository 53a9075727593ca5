//! TLS on every stream command: `echo`, `serve` (line protocol, web page and WebSocket) and
//! `talk --listen` serve it; `connect`, `chat`, `talk` and `bench` speak it, verifying the
//! server against a CA file or a pinned fingerprint. Bad certificates, unverifiable servers,
//! plaintext clients and stalled handshakes are covered too, and a `kill -9` mid-traffic over
//! TLS still loses no message anyone saw.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{IO_TIMEOUT, Proc, assert_all_stored, fails_with, is_closed, python, socktalk, tcp};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A private CA and files signed by it, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA (`ca.pem`), a server certificate for localhost and 127.0.0.1 (`server.pem`,
    /// `server.key`) and a client certificate (`client.pem`, `client.key`); also an unrelated
    /// CA (`other-ca.pem`).
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("socktalk test CA");
        write(dir.path(), "ca.pem", &ca.pem());
        let other = ca_pem("someone else's CA");
        write(dir.path(), "other-ca.pem", &other);
        for (name, sans) in [
            (
                "server",
                vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ),
            ("client", vec!["client.socktalk.test".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            write(dir.path(), &format!("{name}.pem"), &cert.pem());
            write(dir.path(), &format!("{name}.key"), &key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// `socktalk echo 127.0.0.1:0 EXTRA… --tls-cert server.pem --tls-key server.key`.
    fn echo_server(&self, extra: &[&str]) -> Proc {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        let mut args = vec!["echo", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--tls-cert", &cert, "--tls-key", &key]);
        tls_server(&args).0
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn ca_pem(name: &str) -> String {
    ca(name).pem()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts a TLS server and returns it with its certificate's fingerprint (the line after
/// "listening on").
fn tls_server(args: &[&str]) -> (Proc, String) {
    let mut server = Proc::server(args);
    let line = server.next_line();
    let fingerprint = line
        .strip_prefix("tls certificate sha256 ")
        .unwrap_or_else(|| panic!("expected the fingerprint line, got {line:?}"))
        .to_string();
    (server, fingerprint)
}

fn host_port(addr: &str) -> &str {
    addr.split_once("://").map_or(addr, |(_, rest)| rest)
}

/// `socktalk connect ADDR FLAGS…` with `input` on stdin: its exit code, stdout and stderr.
fn connect(addr: &str, flags: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut args = vec!["connect", addr];
    args.extend_from_slice(flags);
    let out = socktalk()
        .args(&args)
        .write_stdin(input.to_string())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_self_signed_echo_server_talks_to_a_client_that_pins_it() {
    let (server, fingerprint) = tls_server(&["echo", "127.0.0.1:0", "--tls-self-signed"]);
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    let addr = host_port(&server.addr);
    let (code, out, err) = connect(addr, &["--tls-fingerprint", &fingerprint], "hello\n");
    assert_eq!((code, out.as_str()), (Some(0), "hello\n"), "{err}");
    // Also in the form `sha256sum` prints: lower case, no colons.
    let bare = fingerprint.replace(':', "").to_lowercase();
    let (code, out, err) = connect(addr, &["--tls-fingerprint", &bare], "again\n");
    assert_eq!((code, out.as_str()), (Some(0), "again\n"), "{err}");
}

/// What a socktalk TLS server tells a client that speaks plain text to it.
const PLAIN_ON_TLS: &str = "refused: this port speaks TLS; connect with --tls (socktalk), \
                            ncat --ssl or openssl s_client\n";

/// A plain client on a socktalk TLS port is told, in plain text, to speak TLS.
#[test]
fn a_plain_client_on_a_tls_port_is_told_to_speak_tls() {
    let (server, _) = tls_server(&["echo", "127.0.0.1:0", "--tls-self-signed"]);
    let (_, out, err) = connect(host_port(&server.addr), &[], "hello\n");
    assert_eq!(out, PLAIN_ON_TLS, "{err}");
}

/// On a Unix socket too (peeking there takes `recv(MSG_PEEK)`, not TCP's own peek).
#[test]
fn a_plain_client_on_a_tls_unix_socket_is_told_to_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls.sock");
    let addr = format!("unix:{}", path.display());
    let (_server, _) = tls_server(&["echo", &addr, "--tls-self-signed"]);
    let mut plain = common::unix(&path);
    plain.write_all(b"hello\n").unwrap();
    let got = common::read_to_end(&mut plain);
    assert_eq!(String::from_utf8_lossy(&got), PLAIN_ON_TLS);
}

/// A plain client that waits for the server to speak first (nc on a chat port) is told too,
/// once the handshake timeout shows it is not starting a handshake.
#[test]
fn a_silent_plain_client_on_a_tls_port_is_told_at_the_handshake_timeout() {
    let (server, _) = tls_server(&[
        "echo",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--tls-handshake-timeout",
        "0.3",
    ]);
    let mut silent = tcp(server.socket_addr());
    let got = common::read_to_end(&mut silent);
    assert_eq!(String::from_utf8_lossy(&got), PLAIN_ON_TLS);
}

/// Plain HTTP to an HTTPS web listener gets a 400 naming the https:// address, from the
/// request's Host or else the address it reached; other plain text there gets the line.
#[test]
fn plain_http_to_an_https_web_listener_is_sent_to_https() {
    let server = common::WebServer::start(&["--tls-self-signed"]);
    let mut http = tcp(server.http);
    http.write_all(b"GET / HTTP/1.1\r\nHost: chat.example:8443\r\n\r\n")
        .unwrap();
    let reply = String::from_utf8_lossy(&common::read_to_end(&mut http)).into_owned();
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(reply.contains("https://chat.example:8443/"), "{reply}");

    // HTTP/1.0 with no Host: the address the client connected to.
    let mut http = tcp(server.http);
    http.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let reply = String::from_utf8_lossy(&common::read_to_end(&mut http)).into_owned();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains(&format!("https://{}/", server.http)),
        "{reply}"
    );

    // A Host that is not a plain host:port is not echoed back.
    let mut http = tcp(server.http);
    http.write_all(b"GET / HTTP/1.1\r\nHost: <script>\r\n\r\n")
        .unwrap();
    let reply = String::from_utf8_lossy(&common::read_to_end(&mut http)).into_owned();
    assert!(!reply.contains("<script>"), "{reply}");

    let mut line = tcp(server.http);
    line.write_all(b"hello\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&common::read_to_end(&mut line)),
        PLAIN_ON_TLS
    );
    // The chat's own TLS port answers plain text the same way.
    let mut nc = tcp(server.tcp);
    nc.write_all(b"/nick plain\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&common::read_to_end(&mut nc)),
        PLAIN_ON_TLS
    );
}

#[test]
fn an_unverifiable_server_is_an_error_not_a_warning() {
    let (server, fingerprint) = tls_server(&["echo", "127.0.0.1:0", "--tls-self-signed"]);
    let addr = host_port(&server.addr);
    // Against the system's roots, a self-signed certificate is unknown. The system's roots are
    // pinned to one CA file with SSL_CERT_FILE (as OpenSSL honours it), so the test does not
    // depend on what the machine has installed.
    let pki = Pki::new();
    let out = socktalk()
        .args(["connect", addr, "--tls"])
        .env("SSL_CERT_FILE", pki.path("other-ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = common::one_line_error(&out.stderr);
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(line.contains("--tls-fingerprint"), "the hint: {line}");
    // No roots at all is an error too, naming the way out.
    let out = socktalk()
        .args(["connect", addr, "--tls"])
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = common::one_line_error(&out.stderr);
    assert!(line.contains("no system CA certificates"), "{line}");
    // A fingerprint that differs by one byte.
    let wrong = another_fingerprint(&fingerprint);
    let line = fails_with(&["connect", addr, "--tls-fingerprint", &wrong], 1);
    assert!(line.contains("is not the pinned"), "{line}");
    // A malformed fingerprint is a usage error.
    let line = fails_with(&["connect", addr, "--tls-fingerprint", "AB:CD"], 2);
    assert!(line.contains("64 hex digits"), "{line}");
}

/// `fingerprint` with its first byte changed: `00` becomes `FF`, anything else `00`. (Always
/// `00` was the same fingerprint for one certificate in 256, and the test then failed.)
fn another_fingerprint(fingerprint: &str) -> String {
    let first = if fingerprint.starts_with("00") {
        "FF"
    } else {
        "00"
    };
    format!("{first}{}", &fingerprint[2..])
}

#[test]
fn another_fingerprint_always_differs() {
    for fingerprint in ["00:11:22", "AB:11:22", "FF:00:00"] {
        let other = another_fingerprint(fingerprint);
        assert_ne!(other, fingerprint);
        assert_eq!(other[2..], fingerprint[2..]);
    }
}

#[test]
fn certificates_from_files_are_verified_against_a_ca() {
    let pki = Pki::new();
    let server = pki.echo_server(&["--upper"]);
    let addr = host_port(&server.addr);
    let ca = pki.path("ca.pem");
    let (code, out, err) = connect(addr, &["--tls-ca", &ca], "hello\n");
    assert_eq!((code, out.as_str()), (Some(0), "HELLO\n"), "{err}");
    // By name too: the certificate names localhost.
    let port = addr.rsplit_once(':').unwrap().1;
    let by_name = format!("localhost:{port}");
    let (code, out, err) = connect(&by_name, &["-4", "--tls-ca", &ca], "name\n");
    assert_eq!((code, out.as_str()), (Some(0), "NAME\n"), "{err}");
    // Another CA vouches for nothing here.
    let line = fails_with(&["connect", addr, "--tls-ca", &pki.path("other-ca.pem")], 1);
    assert!(line.contains("certificate"), "{line}");
}

/// The classic lessons' clients use Python's `ssl` module: they must talk to socktalk as is.
#[test]
fn python_ssl_clients_talk_to_a_tls_upper_server() {
    let pki = Pki::new();
    let server = pki.echo_server(&["--upper"]);
    let port = server.socket_addr().port().to_string();
    let program = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
        with socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=10) as raw:\n\
        \x20   with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n\
        \x20       s.sendall('hello, 世界\\n'.encode())\n\
        \x20       data = b''\n\
        \x20       while not data.endswith(b'\\n'):\n\
        \x20           data += s.recv(1024)\n\
        \x20       print(s.version(), data.decode().strip())\n";
    let out = python(program, &[&pki.path("ca.pem"), &port]);
    assert!(out.trim().ends_with("HELLO, 世界"), "{out}");
    assert!(out.starts_with("TLSv1."), "{out}");
}

/// A client may offer ALPN protocols of its own (`openssl s_client -alpn`, `ncat --ssl-alpn`,
/// Python's `set_alpn_protocols`); the server picks none and the session goes on, instead of
/// refusing the handshake for want of a protocol in common.
#[test]
fn clients_offering_alpn_protocols_are_served() {
    let pki = Pki::new();
    let server = pki.echo_server(&[]);
    let port = server.socket_addr().port().to_string();
    let program = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
        ctx.set_alpn_protocols(['h2', 'echo'])\n\
        with socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=10) as raw:\n\
        \x20   with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n\
        \x20       s.sendall(b'alpn\\n')\n\
        \x20       data = b''\n\
        \x20       while not data.endswith(b'\\n'):\n\
        \x20           data += s.recv(1024)\n\
        \x20       print(s.selected_alpn_protocol(), data.decode().strip())\n";
    let out = python(program, &[&pki.path("ca.pem"), &port]);
    assert_eq!(out.trim(), "None alpn", "{out}");
}

#[test]
fn client_certificates_are_required_with_tls_client_ca() {
    let pki = Pki::new();
    let server = pki.echo_server(&["--tls-client-ca", &pki.path("ca.pem")]);
    let addr = host_port(&server.addr);
    let ca = pki.path("ca.pem");
    let (code, out, err) = connect(
        addr,
        &[
            "--tls-ca",
            &ca,
            "--tls-client-cert",
            &pki.path("client.pem"),
            "--tls-client-key",
            &pki.path("client.key"),
        ],
        "with a certificate\n",
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "with a certificate\n"),
        "{err}"
    );
    // Without one, nothing is echoed and the client fails, saying what it lacks.
    let (code, out, err) = connect(addr, &["--tls-ca", &ca], "without\n");
    assert_eq!(out, "", "{err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("tls: the server wants a client certificate: give --tls-client-cert"),
        "{err}"
    );
}

/// Why a handshake failed, in words that say what to fix: the names a certificate is for,
/// and a client certificate the server would not take.
#[test]
fn handshake_failures_say_what_is_wrong() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    // A certificate from the right CA, for another name.
    let (elsewhere, _) = tls_server(&[
        "echo",
        "127.0.0.1:0",
        "--tls-cert",
        &pki.path("client.pem"),
        "--tls-key",
        &pki.path("client.key"),
    ]);
    let line = fails_with(&["connect", host_port(&elsewhere.addr), "--tls-ca", &ca], 1);
    assert!(
        line.contains("the certificate is for client.socktalk.test, not 127.0.0.1"),
        "{line}"
    );
    // A client certificate the server's CA did not issue.
    let server = pki.echo_server(&["--tls-client-ca", &ca]);
    let stranger = rcgen::generate_simple_self_signed(vec!["stranger.test".to_string()]).unwrap();
    let cert = write(pki.dir.path(), "stranger.pem", &stranger.cert.pem());
    let key = write(
        pki.dir.path(),
        "stranger.key",
        &stranger.signing_key.serialize_pem(),
    );
    let (code, out, err) = connect(
        host_port(&server.addr),
        &[
            "--tls-ca",
            &ca,
            "--tls-client-cert",
            cert.to_str().unwrap(),
            "--tls-client-key",
            key.to_str().unwrap(),
        ],
        "hello\n",
    );
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.contains("the server refused our client certificate"),
        "{err}"
    );
}

/// A TLS 1.2 server that wants a client certificate answers a client without one with a
/// bare `handshake_failure` alert (OpenSSL does: `openssl s_server -Verify`, Python's `ssl`);
/// the error says what is likely missing.
#[test]
fn a_tls_1_2_server_wanting_a_client_certificate_is_explained() {
    let pki = Pki::new();
    let program = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=sys.argv[3])\n\
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2\n\
        ctx.verify_mode = ssl.CERT_REQUIRED\n\
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        srv = socket.create_server(('127.0.0.1', 0))\n\
        print(srv.getsockname()[1], flush=True)\n\
        try:\n\
        \x20   ctx.wrap_socket(srv.accept()[0], server_side=True)\n\
        except ssl.SSLError:\n\
        \x20   pass\n";
    let mut command = std::process::Command::new("python3");
    command.args([
        "-c",
        program,
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    ]);
    let mut server = Proc::spawn(command);
    let port = server.next_line();
    let line = fails_with(
        &[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--tls-ca",
            &pki.path("ca.pem"),
        ],
        1,
    );
    assert!(
        line.contains("HandshakeFailure") && line.contains("--tls-client-cert"),
        "{line}"
    );
}

#[test]
fn bad_certificate_files_fail_at_start_naming_the_file() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(dir.path(), "garbage.pem", "not a certificate\n");
    let garbage = garbage.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let server_key = pki.path("server.key");
    let client_key = pki.path("client.key");
    let server_pem = pki.path("server.pem");
    // A key with a passphrase (`openssl pkcs8 -topk8`): its PEM label says so.
    let encrypted = write(
        dir.path(),
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAg=\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let encrypted = encrypted.to_str().unwrap();
    for (cert, key, wanted) in [
        (missing, server_key.as_str(), "missing.pem"),
        (garbage, server_key.as_str(), "no PEM certificate"),
        (server_pem.as_str(), garbage, "garbage.pem"),
        (
            server_pem.as_str(),
            encrypted,
            "encrypted.key: the private key is encrypted",
        ),
        (
            server_pem.as_str(),
            client_key.as_str(),
            "do not go together",
        ),
    ] {
        let line = fails_with(
            &["echo", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key],
            1,
        );
        assert!(line.contains(wanted), "{wanted}: {line}");
    }
    // Half a pair, or TLS on UDP, is a usage error.
    fails_with(&["echo", "127.0.0.1:0", "--tls-cert", &server_pem], 2);
    let line = fails_with(&["echo", "-u", "127.0.0.1:0", "--tls-self-signed"], 2);
    assert!(line.contains("UDP"), "{line}");
    // A handshake cannot be done in no time at all.
    let line = fails_with(
        &[
            "echo",
            "127.0.0.1:0",
            "--tls-self-signed",
            "--tls-handshake-timeout",
            "0",
        ],
        2,
    );
    assert!(line.contains("--tls-handshake-timeout 0"), "{line}");
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_closed_and_others_carry_on() {
    let (server, fingerprint) = tls_server(&["echo", "127.0.0.1:0", "--tls-self-signed"]);
    let mut plain = tcp(server.socket_addr());
    plain.write_all(b"GET / HTTP/1.0\r\n\r\nhello\n").unwrap();
    // A line saying to speak TLS, never the echo, and then the close.
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert_eq!(String::from_utf8_lossy(&got), PLAIN_ON_TLS);
    let addr = host_port(&server.addr);
    let (code, out, err) = connect(addr, &["--tls-fingerprint", &fingerprint], "still here\n");
    assert_eq!((code, out.as_str()), (Some(0), "still here\n"), "{err}");
}

/// A slowloris on TLS: connections that never finish the handshake are closed at
/// `--tls-handshake-timeout`, while a real client is served meanwhile.
#[test]
fn stalled_handshakes_are_closed_at_the_timeout() {
    let (server, fingerprint) = tls_server(&[
        "echo",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--tls-handshake-timeout",
        "0.5",
    ]);
    let stalled: Vec<_> = (0..50)
        .map(|_| {
            let mut s = tcp(server.socket_addr());
            // Half a ClientHello record header, then nothing.
            s.write_all(&[0x16, 0x03]).unwrap();
            s
        })
        .collect();
    let addr = host_port(&server.addr);
    let (code, out, err) = connect(addr, &["--tls-fingerprint", &fingerprint], "served\n");
    assert_eq!((code, out.as_str()), (Some(0), "served\n"), "{err}");
    for mut s in stalled {
        assert!(is_closed(&mut s), "a stalled handshake was not closed");
    }
}

#[test]
fn the_chat_client_and_nc_style_clients_meet_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let (server, fingerprint) = tls_server(&[
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--tls-self-signed",
    ]);
    let addr = host_port(&server.addr).to_string();
    let mut ann = Proc::start(&[
        "chat",
        &addr,
        "--nick",
        "ann",
        "--color",
        "never",
        "--tls-fingerprint",
        &fingerprint,
    ]);
    wait_for(&mut ann, |l| l == "* you are ann, talking in #lobby");
    let mut bob = Proc::start(&["connect", &addr, "--tls-fingerprint", &fingerprint]);
    bob.type_line("/nick bob");
    wait_for(&mut bob, |l| l.ends_with(" is now known as bob"));
    bob.type_line("hello over tls");
    wait_for(&mut ann, |l| l.contains("<bob> hello over tls"));
    ann.type_line("hi bob");
    wait_for(&mut bob, |l| l.contains("<ann> hi bob"));
}

/// Reads `proc`'s output until a line satisfies `wanted` (at most 50 lines).
fn wait_for(proc: &mut Proc, wanted: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    for _ in 0..50 {
        let line = proc.next_line();
        if wanted(&line) {
            return line;
        }
        assert!(
            !(line.is_empty() && proc.child.try_wait().unwrap().is_some()),
            "exited; printed {seen:#?}"
        );
        seen.push(line);
    }
    panic!("the expected line never came; got {seen:#?}");
}

#[test]
fn talk_works_over_tls() {
    let mut listener = Proc::server(&["talk", "--listen", "127.0.0.1:0", "--tls-self-signed"]);
    let fingerprint = listener.next_line();
    let fingerprint = fingerprint
        .strip_prefix("tls certificate sha256 ")
        .unwrap()
        .to_string();
    let addr = host_port(&listener.addr).to_string();
    let mut caller = Proc::start(&["talk", &addr, "--tls-fingerprint", &fingerprint]);
    caller.type_line("ni hao");
    wait_for(&mut listener, |l| l.ends_with("> ni hao"));
    listener.type_line("bye");
    wait_for(&mut caller, |l| l.ends_with("> bye"));
    assert!(caller.wait_exit(IO_TIMEOUT).success());
}

/// A server that closes without a TLS close_notify (a Python `ssl` server's `conn.close()`,
/// `ncat --ssl`) has ended the stream, as a plain server closing would: `connect` prints what
/// came and exits 0, instead of failing with rustls's "peer closed connection without sending
/// TLS close_notify". The client's own close_notify (its stdin is empty) reaches the server
/// before it replies, and the server never reads it: its kernel then ends the connection with
/// a reset instead of a FIN, right after the reply, which is still the end, not an error.
/// (The server sets `TCP_NODELAY`: without it, Nagle's algorithm may hold the reply back
/// behind its unacknowledged session ticket, and the reset then discards it in the server's
/// own kernel, before it was ever sent: no client can read what never came.)
#[test]
fn a_server_closing_without_close_notify_ends_the_stream() {
    let pki = Pki::new();
    let program = "import select, socket, ssl, sys\n\
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n\
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        srv = socket.create_server(('127.0.0.1', 0))\n\
        print(srv.getsockname()[1], flush=True)\n\
        sock = srv.accept()[0]\n\
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
        conn = ctx.wrap_socket(sock, server_side=True)\n\
        select.select([conn], [], [], 10)\n\
        conn.sendall(b'hello from python\\n')\n\
        conn.close()\n";
    let mut command = std::process::Command::new("python3");
    command.args([
        "-c",
        program,
        &pki.path("server.pem"),
        &pki.path("server.key"),
    ]);
    let mut server = Proc::spawn(command);
    let port = server.next_line();
    let (code, out, err) = connect(
        &format!("127.0.0.1:{port}"),
        &["--tls-ca", &pki.path("ca.pem")],
        "",
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "hello from python\n"),
        "{err}"
    );
}

/// `talk --listen` over TLS is not held up by a caller that stalls in its handshake: the
/// next caller is talked with at once, not after `--tls-handshake-timeout`.
#[test]
fn a_stalled_handshake_does_not_hold_up_talk() {
    let mut listener = Proc::server(&[
        "talk",
        "--listen",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--tls-handshake-timeout",
        "60",
    ]);
    let fingerprint = listener.next_line();
    let fingerprint = fingerprint.strip_prefix("tls certificate sha256 ").unwrap();
    let mut stalled = tcp(listener.socket_addr());
    stalled.write_all(&[0x16, 0x03]).unwrap();
    let addr = host_port(&listener.addr).to_string();
    let mut caller = Proc::start(&["talk", &addr, "--tls-fingerprint", fingerprint]);
    caller.type_line("not kept waiting");
    // Within IO_TIMEOUT, well before the stalled handshake times out.
    wait_for(&mut listener, |l| l.ends_with("> not kept waiting"));
    listener.type_line("bye");
    assert!(caller.wait_exit(IO_TIMEOUT).success());
}

/// A caller whose handshake finishes after another caller's has won hears that the line is
/// busy, as one calling during the conversation does, instead of a close without a word.
#[test]
fn a_caller_whose_handshake_finishes_second_hears_the_line_is_busy() {
    let mut listener =
        Proc::server(&["talk", "--listen", "127.0.0.1:0", "--tls-self-signed", "-v"]);
    let fingerprint = listener.next_line();
    let fingerprint = fingerprint.strip_prefix("tls certificate sha256 ").unwrap();
    let port = listener.socket_addr().port().to_string();
    // Connects at once, and shakes hands only when told to.
    let program = "import socket, ssl, sys\n\
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
        ctx.check_hostname = False\n\
        ctx.verify_mode = ssl.CERT_NONE\n\
        raw = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
        print('connected', flush=True)\n\
        sys.stdin.readline()\n\
        conn = ctx.wrap_socket(raw)\n\
        print(conn.recv(1024).decode().strip(), flush=True)\n";
    let mut late = Proc::spawn({
        let mut command = std::process::Command::new("python3");
        command.args(["-c", program, &port]);
        command
    });
    assert_eq!(late.next_line(), "connected");
    // Accepted: its handshake waits on it.
    while !listener
        .next_stderr_line()
        .contains("TLS handshake started")
    {}
    let addr = host_port(&listener.addr).to_string();
    let mut caller = Proc::start(&["talk", &addr, "--tls-fingerprint", fingerprint]);
    caller.type_line("first through");
    wait_for(&mut listener, |l| l.ends_with("> first through"));
    late.type_line("go");
    assert_eq!(
        late.next_line(),
        "* busy: in a conversation already; try later"
    );
}

/// However a talk over TLS ends, the peer reads a clean end (a close_notify, which Python's
/// `ssl` insists on with `suppress_ragged_eofs=False`), and a peer that closes without one
/// (`openssl s_client`, a Python `ssl` socket closed without `unwrap()`) has left, not failed.
#[test]
fn a_talk_over_tls_ends_cleanly_both_ways() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let listener = Proc::server(&[
        "talk",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let port = listener.socket_addr().port().to_string();
    let program = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
        raw = socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=10)\n\
        s = ctx.wrap_socket(raw, server_hostname='localhost', suppress_ragged_eofs=False)\n\
        s.sendall(b'bye\\n')\n\
        while s.recv(1024):\n\
        \x20   pass\n\
        print('clean end')\n";
    assert_eq!(
        python(program, &[&pki.path("ca.pem"), &port]).trim(),
        "clean end"
    );

    let server = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n\
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        srv = socket.create_server(('127.0.0.1', 0))\n\
        print(srv.getsockname()[1], flush=True)\n\
        conn = ctx.wrap_socket(srv.accept()[0], server_side=True)\n\
        conn.sendall(b'hello\\n')\n\
        conn.recv(1024)\n\
        conn.close()\n";
    let mut command = std::process::Command::new("python3");
    command.args(["-c", server, &cert, &key]);
    let mut python_server = Proc::spawn(command);
    let port = python_server.next_line();
    let mut caller = Proc::start(&[
        "talk",
        &format!("localhost:{port}"),
        "--tls-ca",
        &pki.path("ca.pem"),
    ]);
    wait_for(&mut caller, |l| l.ends_with("> hello"));
    caller.type_line("hi");
    assert!(caller.wait_exit(IO_TIMEOUT).success());
    let said = caller.stderr_text();
    assert!(
        said.contains(" left") && !said.contains("is gone"),
        "{said}"
    );
}

/// The web page over HTTPS and its WebSocket over WSS, with socktalk's own TLS client
/// pinning the self-signed certificate.
#[tokio::test]
async fn the_web_chat_is_served_over_https_and_wss() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = tokio::task::spawn_blocking(|| common::WebServer::start(&["--tls-self-signed"]))
        .await
        .unwrap();
    let addr = server.http.to_string();
    let fingerprint = server.fingerprint.clone().expect("a fingerprint");
    let connector =
        socktalk::transport::tls::Connector::new(&socktalk::transport::tls::ClientOptions {
            fingerprint: Some(fingerprint),
            ..Default::default()
        })
        .unwrap()
        .unwrap();

    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut https = connector.connect("127.0.0.1", stream).await.unwrap();
    https
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    https.flush().await.unwrap();
    let mut page = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, https.read_to_end(&mut page))
        .await
        .expect("the page in time")
        .unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<!doctype html>") || page.contains("<!DOCTYPE html>"));

    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let wss = connector.connect("127.0.0.1", stream).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/ws"), wss)
        .await
        .expect("the WebSocket upgrade over TLS");
    ws.send(Message::text(r#"{"type":"nick","nick":"webby"}"#))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the nick change in time")
            .expect("an open socket")
            .unwrap();
        if let Message::Text(text) = frame
            && text.contains("webby")
        {
            break;
        }
    }
}

/// SIGKILL mid-traffic over TLS: every message any client saw is in the database.
#[test]
fn kill_9_over_tls_loses_no_message_anyone_saw() {
    const SENDERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let db_arg = db.to_str().unwrap().to_string();
    let (mut server, fingerprint) = tls_server(&[
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--db",
        &db_arg,
        "--max-rate",
        "0",
        "--tls-self-signed",
    ]);
    let addr = host_port(&server.addr).to_string();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    // Everyone has a nick before anyone floods the room.
    let members: Vec<Proc> = (0..SENDERS)
        .map(|i| {
            let mut member = Proc::start(&["connect", &addr, "--tls-fingerprint", &fingerprint]);
            member.type_line(&format!("/nick s{i}"));
            wait_for(&mut member, |l| {
                l.ends_with(&format!(" is now known as s{i}"))
            });
            member
        })
        .collect();
    for (i, mut member) in members.into_iter().enumerate() {
        let mut stdin = member.stdin.take().unwrap();
        writers.push(std::thread::spawn(move || {
            let mut sent = 0;
            while sent < 50_000 {
                let batch: String = (sent..sent + 10).map(|n| format!("s{i}:{n}\n")).collect();
                if stdin.write_all(batch.as_bytes()).is_err() {
                    break;
                }
                sent += 10;
            }
        }));
        let received = received.clone();
        readers.push(std::thread::spawn(move || {
            let mut seen = Vec::new();
            // The client exits when the server dies; its stdout then ends.
            for line in (&mut member.stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("[#lobby] <s") {
                    let (_, text) = rest.split_once("> ").expect("a message line");
                    seen.push(text.to_string());
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            drop(member);
            seen
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while received.load(std::sync::atomic::Ordering::Relaxed) < 3000 {
        assert!(
            std::time::Instant::now() < deadline,
            "traffic never got going"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.signal("KILL");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed by a signal: {status}");
    let seen: HashSet<String> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    for w in writers {
        let _ = w.join();
    }
    assert!(!seen.is_empty());
    assert_all_stored(&seen, &db);
}

/// A client may send its first line in the same packet as its last handshake message; the
/// server's handshake then reads that line along with it, and the session must not wait on
/// the socket for bytes that already arrived.
#[test]
fn a_first_line_sent_with_the_handshake_is_read_at_once() {
    let (server, fingerprint) = tls_server(&[
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--db",
        ":memory:",
        "--tls-self-signed",
    ]);
    let config =
        socktalk::transport::tls::client_config(&socktalk::transport::tls::ClientOptions {
            fingerprint: Some(fingerprint),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
    for round in 0..20 {
        let mut conn =
            rustls::ClientConnection::new(config.clone(), "127.0.0.1".try_into().unwrap()).unwrap();
        // Queued before the handshake: rustls sends it right behind the client's Finished.
        conn.writer()
            .write_all(format!("/nick early{round}\n").as_bytes())
            .unwrap();
        let mut socket = tcp(server.socket_addr());
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, &mut socket));
        let wanted = format!(" is now known as early{round}");
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let read = tls.read_line(&mut line);
            assert!(
                matches!(read, Ok(n) if n > 0),
                "round {round}: {read:?} before the nick change; got {seen:?}"
            );
            if line.trim_end().ends_with(&wanted) {
                break;
            }
            seen.push(line);
        }
    }
}

/// A renewed certificate is picked up on SIGHUP without a restart: new handshakes present it,
/// its fingerprint is printed, and files that do not go together keep the current one.
#[test]
fn sighup_reloads_a_renewed_certificate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(pki.path("server.pem"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let (mut server, first) = tls_server(&[
        "echo",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = host_port(&server.addr).to_string();
    let (code, _, err) = connect(&addr, &["--tls-fingerprint", &first], "old\n");
    assert_eq!(code, Some(0), "{err}");

    // Renewed: a new key and certificate from the same CA.
    let renewed = Pki::new();
    std::fs::copy(renewed.path("server.pem"), &cert).unwrap();
    std::fs::copy(renewed.path("server.key"), &key).unwrap();
    server.signal("HUP");
    let line = server.next_line();
    let second = line
        .strip_prefix("tls certificate sha256 ")
        .unwrap_or_else(|| panic!("expected the new fingerprint, got {line:?}"))
        .to_string();
    assert_ne!(first, second);
    let (code, out, err) = connect(&addr, &["--tls-fingerprint", &second], "new\n");
    assert_eq!((code, out.as_str()), (Some(0), "new\n"), "{err}");
    let (code, _, _) = connect(&addr, &["--tls-fingerprint", &first], "old\n");
    assert_eq!(code, Some(1), "the old certificate is gone");

    // A half-renewed pair (the old key with the new certificate) is refused; the server keeps
    // presenting the certificate it has.
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    server.signal("HUP");
    let line = server.next_stderr_line();
    assert!(line.contains("kept the current TLS certificate"), "{line}");
    let (code, out, err) = connect(&addr, &["--tls-fingerprint", &second], "still\n");
    assert_eq!((code, out.as_str()), (Some(0), "still\n"), "{err}");
}

/// A self-signed certificate for localhost valid from `not_before` to `not_after` (seconds
/// from now, either side), written as `cert.pem` and `key.pem` in `dir`.
fn write_cert_valid(dir: &Path, not_before: i64, not_after: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at =
        |offset: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((now + offset) as u64);
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = at(not_before);
    params.not_after = at(not_after);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    write(dir, "cert.pem", &cert.pem());
    write(dir, "key.pem", &key.serialize_pem());
}

/// A certificate that has expired, or expires within 14 days, is warned about at start and at
/// each SIGHUP reload; the server serves it all the same.
#[test]
fn an_expired_or_expiring_certificate_is_warned_about() {
    const DAY: i64 = 24 * 60 * 60;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    write_cert_valid(dir.path(), -30 * DAY, -2 * DAY - 60);
    let args = [
        "echo",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let (mut server, _) = tls_server(&args);
    let line = server.next_stderr_line();
    assert!(
        line.contains("cert.pem: the TLS certificate expired on "),
        "{line}"
    );
    assert!(line.contains("(2 days ago)"), "{line}");

    write_cert_valid(dir.path(), -DAY, 5 * DAY + 60);
    server.signal("HUP");
    let line = server.next_stderr_line();
    assert!(line.contains("the TLS certificate expires on "), "{line}");
    assert!(line.contains("(in 5 days): renew it soon"), "{line}");

    write_cert_valid(dir.path(), 3 * DAY + 60, 90 * DAY);
    server.signal("HUP");
    let line = server.next_stderr_line();
    assert!(line.contains("not valid until"), "{line}");
    assert!(line.contains("(in 3 days)"), "{line}");

    // A certificate good for long is not warned about: the next line is the reload's own.
    write_cert_valid(dir.path(), -DAY, 365 * DAY);
    std::fs::write(&key, "not a key").unwrap();
    server.signal("HUP");
    let line = server.next_stderr_line();
    assert!(line.contains("kept the current TLS certificate"), "{line}");
    write_cert_valid(dir.path(), -DAY, 365 * DAY);
    server.signal("HUP");
    let fingerprint = server.next_line();
    assert!(
        fingerprint.starts_with("tls certificate sha256 "),
        "{fingerprint}"
    );
    let err = server.stderr_text();
    assert!(!err.contains("the TLS certificate"), "{err}");
}

/// The start of a ClientHello as a TLS client opens with it (record header, handshake type,
/// length, version), then some of its random bytes.
const CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03, 0x5a, 0x0a, 0x7e, 0x10, 0x0a,
];

/// What a plain socktalk listener tells a client that opens with a TLS handshake.
const TLS_ON_PLAIN: &str = "refused: this port is plain text, not TLS; connect without --tls\n";

/// A TLS client on a plain chat port is told the port is not TLS and closed; its handshake
/// never reaches a room as a message.
#[test]
fn a_tls_client_on_a_plain_chat_port_is_told_and_nothing_is_posted() {
    let server = common::chat_server(":memory:", &[]);
    let mut watcher = common::ChatClient::guest(server.socket_addr());
    let mut tls_client = tcp(server.socket_addr());
    tls_client.write_all(CLIENT_HELLO).unwrap();
    let got = String::from_utf8_lossy(&common::read_to_end(&mut tls_client)).into_owned();
    // Refused before it was given a nick when its ClientHello was in by then (no welcome),
    // else at the session's first read.
    assert!(got.ends_with(TLS_ON_PLAIN), "{got:?}");
    // Nothing the TLS client sent was posted: at most its guest came and went.
    watcher.send("after");
    let mine = format!("[#lobby] <{}> after", watcher.nick);
    loop {
        let line = watcher.next_line();
        if line == mine {
            break;
        }
        assert!(
            line.ends_with(" joined #lobby")
                || line.ends_with(" quit (started TLS on a plain port)"),
            "{line}"
        );
    }
    // One whose handshake comes only after its welcome is caught at the session's first read:
    // its guest leaves, saying why, and none of it is posted either.
    let mut late = common::ChatClient::guest(server.socket_addr());
    late.send_raw(CLIENT_HELLO);
    let rest = late.read_until_closed(IO_TIMEOUT);
    assert_eq!(
        rest.last().map(|l| format!("{l}\n")).as_deref(),
        Some(TLS_ON_PLAIN)
    );
    let quit = format!("* {} quit (started TLS on a plain port)", late.nick);
    watcher.send("later");
    let mine = format!("[#lobby] <{}> later", watcher.nick);
    let mut lines = Vec::new();
    loop {
        let line = watcher.next_line();
        if line == mine {
            break;
        }
        lines.push(line);
    }
    assert!(lines.contains(&quit), "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("* ")), "{lines:?}");
    // A nc user whose first line comes at once is served as ever.
    let mut nc = common::ChatClient::guest(server.socket_addr());
    nc.send("hello from nc");
    watcher.expect_line(|line| line.ends_with("hello from nc"));
}

/// `talk --listen` on a plain port: a caller with --tls is told and hung up on, and the
/// listener says so instead of printing its handshake.
#[test]
fn a_tls_caller_on_a_plain_talk_port_is_told() {
    let mut listener = Proc::server(&["talk", "--listen", "127.0.0.1:0"]);
    let mut caller = tcp(listener.socket_addr());
    caller.write_all(CLIENT_HELLO).unwrap();
    let got = common::read_to_end(&mut caller);
    assert_eq!(String::from_utf8_lossy(&got), TLS_ON_PLAIN);
    assert!(listener.wait_exit(IO_TIMEOUT).success());
    let err = listener.stderr_text();
    assert!(
        err.contains("started a TLS handshake on this plain port"),
        "{err}"
    );
    assert!(listener.stdout_rest().is_empty());
}

/// A socktalk client with --tls on a plain port is told, in words, to connect without it
/// (the server's plain refusal is no TLS record), not that a message was corrupt.
#[test]
fn a_tls_client_on_a_plain_port_is_told_to_drop_tls() {
    let listener = Proc::server(&["talk", "--listen", "127.0.0.1:0"]);
    let chat = common::chat_server(":memory:", &[]);
    for addr in [listener.socket_addr(), chat.socket_addr()] {
        let addr = addr.to_string();
        let line = common::fails_with(&["connect", "--tls", &addr], 1);
        assert!(
            line.contains("answered in something other than TLS")
                && line.ends_with("(a plain-text port? connect without --tls)"),
            "{line}"
        );
        assert!(!line.contains("corrupt"), "{line}");
    }
}
