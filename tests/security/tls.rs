//! TLS end to end, to the broker and to the database: a TLS terminator in this test
//! (tokio-rustls, a certificate signed by a CA made with `openssl` for this test) in front of the
//! real broker or PostgreSQL, and a client process (this binary, re-run as one of the `child_*`
//! tests) that connects with the runtime's own code — `amqp::connect` for an `amqps://` URL, and
//! `db::connect_and_migrate` for a `postgres://…?sslmode=require` URL — and uses the connection.
//! The client trusts the test's CA through `SSL_CERT_FILE`, as an operator with a private CA
//! would; with another CA it must refuse the server. Terminators that ask for a client
//! certificate let through only a client given one their CA signed, in `AMQP_SSLCERT`/
//! `AMQP_SSLKEY` or `PGSSLCERT`/`PGSSLKEY`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use swarm_runtime::amqp::{Outgoing, Publisher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{amqp_authority, amqp_url, child_output, database_server, short_id};

/// Connects to `SWARM_CHILD_PG_URL` with the runtime's pool (creating and migrating the database)
/// and runs a query; does nothing when run any other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of postgres_urls_with_sslmode_require_use_tls_and_verify_the_server"]
async fn child_postgres_tls_client() {
    let Ok(url) = std::env::var("SWARM_CHILD_PG_URL") else {
        return;
    };
    let pool = swarm_runtime::db::connect_and_migrate(&url, 1)
        .await
        .unwrap_or_else(|e| panic!("postgres connect: {e:#}"));
    let client = pool.get().await.unwrap();
    let migrations: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert!(migrations > 0, "the database was migrated over TLS");
}

/// Connects to `SWARM_CHILD_AMQPS_URL` and round-trips a message; does nothing when run any
/// other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of amqps_urls_connect_over_tls_and_verify_the_server"]
async fn child_amqps_client() {
    let Ok(url) = std::env::var("SWARM_CHILD_AMQPS_URL") else {
        return;
    };
    let connection = swarm_runtime::amqp::connect(&url, "swarm-tls-test")
        .await
        .unwrap_or_else(|e| panic!("amqps connect: {e:#}"));
    let publisher = Publisher::new(&connection, "swarm-tls-test").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let name = queue.name().as_str().to_string();
    publisher
        .publish(&Outgoing {
            exchange: String::new(),
            routing_key: name.clone(),
            message_type: "tls.v1".into(),
            message_id: short_id(),
            correlation_id: None,
            headers: Default::default(),
            body: b"over TLS".to_vec(),
        })
        .await
        .unwrap();
    let message = channel
        .basic_get(name.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message came back");
    assert_eq!(message.delivery.data, b"over TLS");
    let _ = connection.close(200, "done".into()).await;
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) and, signed by it, a server certificate for localhost
/// (`<name>-cert.pem`, `<name>-key.pem`).
fn certificates(dir: &Path, name: &str) {
    certificates_for(dir, name, "serverAuth");
}

/// As [`certificates`], for `usage` (`serverAuth` or `clientAuth`).
fn certificates_for(dir: &Path, name: &str, usage: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{name}-ca-key.pem");
    let ca = format!("{name}-ca.pem");
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=swarm test CA"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca]);
    openssl(dir, &args);
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    let cert = format!("{name}-cert.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
}

/// What a terminator stands in front of.
#[derive(Clone, Copy)]
enum Upstream {
    /// The broker: TLS from the first byte.
    Broker,
    /// PostgreSQL: the client asks for TLS in the protocol first (an 8-byte `SSLRequest`, to
    /// which the server answers `S`), and the plain server behind sees the startup message.
    Postgres,
}

/// The `SSLRequest` code of the PostgreSQL protocol.
const SSL_REQUEST: u32 = 80_877_103;

/// Accepts TLS on a free port and forwards the plaintext upstream; counts handshakes. With a
/// `client_ca` (a PEM file in `dir`), only clients with a certificate it signed get through.
async fn tls_terminator(
    dir: &Path,
    upstream: Upstream,
    client_ca: Option<&str>,
) -> (u16, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server-cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(dir.join(ca)).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counter = handshakes.clone();
    let target = match upstream {
        Upstream::Broker => amqp_authority(),
        Upstream::Postgres => authority(&database_server()),
    };
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (acceptor, counter, target) = (acceptor.clone(), counter.clone(), target.clone());
            tokio::spawn(async move {
                if let Upstream::Postgres = upstream {
                    let mut request = [0u8; 8];
                    if client.read_exact(&mut request).await.is_err()
                        || request[..4] != 8u32.to_be_bytes()
                        || request[4..] != SSL_REQUEST.to_be_bytes()
                        || client.write_all(b"S").await.is_err()
                    {
                        return;
                    }
                }
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut upstream = TcpStream::connect(&target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, handshakes)
}

/// `host:port` of a `postgres://user@host:port` URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Runs the child test `test` with `url` in `variable`, trusting `ca`; true if it succeeded.
async fn client(test: &str, variable: &str, url: &str, ca: PathBuf) -> bool {
    client_with(test, variable, url, ca, None).await
}

/// The variables that name a client certificate and its key, for the database and the broker.
const IDENTITY_VARIABLES: [(&str, &str); 2] =
    [("PGSSLCERT", "PGSSLKEY"), ("AMQP_SSLCERT", "AMQP_SSLKEY")];

/// A client certificate for [`client_with`]: the variables to set (certificate, key) and the
/// files they name.
type Identity = ((&'static str, &'static str), PathBuf, PathBuf);

/// The certificate `name` of `dir` (`<name>-cert.pem`, `<name>-key.pem`) in `variables`.
fn identity(dir: &Path, variables: (&'static str, &'static str), name: &str) -> Identity {
    let file = |what: &str| dir.join(format!("{name}-{what}.pem"));
    (variables, file("cert"), file("key"))
}

/// As [`client`], with `identity` set and the other identity variables unset.
async fn client_with(
    test: &str,
    variable: &str,
    url: &str,
    ca: PathBuf,
    identity: Option<Identity>,
) -> bool {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--ignored", "--test-threads=1"])
        .env(variable, url)
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR");
    for (cert, key) in IDENTITY_VARIABLES {
        command.env_remove(cert).env_remove(key);
    }
    if let Some(((cert_variable, key_variable), cert, key)) = identity {
        command.env(cert_variable, cert).env(key_variable, key);
    }
    let mut child = command
        .stdout(child_output())
        .stderr(child_output())
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait())
        .await
        .expect("the client finishes")
        .unwrap();
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_urls_connect_over_tls_and_verify_the_server() {
    let dir = std::env::temp_dir().join(format!("swarm-tls-{}", short_id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir, "server");
    certificates(&dir, "stranger");
    let (port, handshakes) = tls_terminator(&dir, Upstream::Broker, None).await;

    let url = amqps_url(port);

    let amqps = |ca: &str| {
        client(
            "tls::child_amqps_client",
            "SWARM_CHILD_AMQPS_URL",
            &url,
            dir.join(ca),
        )
    };
    assert!(
        amqps("server-ca.pem").await,
        "a client trusting the server's CA publishes and reads over amqps://"
    );
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "it went through TLS"
    );
    assert!(
        !amqps("stranger-ca.pem").await,
        "a client that does not trust the server's CA refuses it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_urls_with_sslmode_require_use_tls_and_verify_the_server() {
    let dir = std::env::temp_dir().join(format!("swarm-pg-tls-{}", short_id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir, "server");
    certificates(&dir, "stranger");
    let (port, handshakes) = tls_terminator(&dir, Upstream::Postgres, None).await;

    let (url, db_name) = postgres_url(port);
    let postgres = |ca: &str| {
        client(
            "tls::child_postgres_tls_client",
            "SWARM_CHILD_PG_URL",
            &url,
            dir.join(ca),
        )
    };

    let refused = !postgres("stranger-ca.pem").await;
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completes with a client that does not trust the server's CA"
    );
    assert!(
        refused,
        "a client that does not trust the server's CA refuses it"
    );
    assert!(
        postgres("server-ca.pem").await,
        "a client trusting the server's CA creates, migrates and queries its database over TLS"
    );
    assert!(
        handshakes.load(Ordering::SeqCst) >= 2,
        "the database's creation and the pool both went through TLS"
    );
    crate::helpers::drop_database(&db_name).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `sslmode=require` URL to the terminator on `port` as the test server's user, in a database
/// of the test's own; and that database's name.
fn postgres_url(port: u16) -> (String, String) {
    let server = database_server();
    let user = server
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map_or("root", |(user, _)| user);
    let db_name = format!("swarm_test_{}", short_id());
    let url = format!("postgres://{user}@localhost:{port}/{db_name}?sslmode=require");
    (url, db_name)
}

/// A terminator in front of `upstream` that asks for client certificates signed by its client
/// CA, in a fresh directory (named after `what`) that also holds a certificate of that CA
/// (`client`) and one of another (`stranger`): the directory, the port and the handshake count.
async fn asking_for_client_certificates(
    what: &str,
    upstream: Upstream,
) -> (PathBuf, u16, Arc<AtomicUsize>) {
    let dir = std::env::temp_dir().join(format!("swarm-{what}-mtls-{}", short_id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir, "server");
    certificates_for(&dir, "client", "clientAuth");
    certificates_for(&dir, "stranger", "clientAuth");
    let (port, handshakes) = tls_terminator(&dir, upstream, Some("client-ca.pem")).await;
    (dir, port, handshakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_client_certificates_come_from_pgsslcert_and_pgsslkey() {
    let (dir, port, handshakes) = asking_for_client_certificates("pg", Upstream::Postgres).await;
    let (url, db_name) = postgres_url(port);
    let postgres = |name: Option<&str>| {
        client_with(
            "tls::child_postgres_tls_client",
            "SWARM_CHILD_PG_URL",
            &url,
            dir.join("server-ca.pem"),
            name.map(|name| identity(&dir, IDENTITY_VARIABLES[0], name)),
        )
    };

    assert!(
        !postgres(None).await,
        "a server that asks for a client certificate refuses a client without one"
    );
    assert!(
        !postgres(Some("stranger")).await,
        "and one whose certificate another CA signed"
    );
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
    assert!(
        postgres(Some("client")).await,
        "with PGSSLCERT and PGSSLKEY the client creates, migrates and queries its database"
    );
    assert!(
        handshakes.load(Ordering::SeqCst) >= 2,
        "the database's creation and the pool both presented the certificate"
    );
    crate::helpers::drop_database(&db_name).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `amqps://` URL to the terminator on `port`, with the test broker's user and vhost.
fn amqps_url(port: u16) -> String {
    let plain = amqp_url();
    let rest = plain.split_once("://").unwrap().1;
    let (userinfo, after) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let vhost = after.split_once('/').map_or("%2f", |(_, v)| v);
    format!("amqps://{userinfo}@localhost:{port}/{vhost}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_client_certificates_come_from_amqp_sslcert_and_amqp_sslkey() {
    let (dir, port, handshakes) = asking_for_client_certificates("amqps", Upstream::Broker).await;
    let url = amqps_url(port);
    let amqps = |given: Option<((&'static str, &'static str), &str)>| {
        client_with(
            "tls::child_amqps_client",
            "SWARM_CHILD_AMQPS_URL",
            &url,
            dir.join("server-ca.pem"),
            given.map(|(variables, name)| identity(&dir, variables, name)),
        )
    };
    let broker = IDENTITY_VARIABLES[1];

    assert!(
        !amqps(None).await,
        "a broker that asks for a client certificate refuses a client without one"
    );
    assert!(
        !amqps(Some((broker, "stranger"))).await,
        "and one whose certificate another CA signed"
    );
    assert!(
        !amqps(Some((IDENTITY_VARIABLES[0], "client"))).await,
        "the database's variables do not reach the broker's connection"
    );
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
    assert!(
        amqps(Some((broker, "client"))).await,
        "with AMQP_SSLCERT and AMQP_SSLKEY the client publishes and reads over amqps://"
    );
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "it went through TLS"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
