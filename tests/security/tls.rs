//! `amqps://` end to end: a TLS terminator in this test (tokio-rustls, a certificate signed by a
//! CA made with `openssl` for this test) in front of the real broker, and a client process (this
//! binary, re-run as `tls::child_amqps_client`) that connects with the runtime's
//! `amqp::connect` and publishes and reads back a message over it. The client trusts the test's
//! CA through `SSL_CERT_FILE`, as an operator with a private CA would; with another CA it must
//! refuse the server.

use std::path::Path;
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

use crate::helpers::{amqp_authority, amqp_url, child_output, short_id};

const CHILD_TEST: &str = "tls::child_amqps_client";

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
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
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

/// Accepts TLS on a free port and forwards the plaintext to the broker; counts handshakes.
async fn tls_terminator(dir: &Path) -> (u16, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server-cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counter = handshakes.clone();
    let broker = amqp_authority();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, counter, broker) = (acceptor.clone(), counter.clone(), broker.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut upstream = TcpStream::connect(&broker).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, handshakes)
}

/// Runs the client process against `url`, trusting `ca`; true if it round-tripped a message.
async fn client(url: &str, ca: &Path) -> bool {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--ignored", "--test-threads=1"])
        .env("SWARM_CHILD_AMQPS_URL", url)
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
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
    let (port, handshakes) = tls_terminator(&dir).await;

    // The user and vhost of the test broker, over TLS to the terminator.
    let plain = amqp_url();
    let rest = plain.split_once("://").unwrap().1;
    let (userinfo, after) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let vhost = after.split_once('/').map_or("%2f", |(_, v)| v);
    let url = format!("amqps://{userinfo}@localhost:{port}/{vhost}");

    assert!(
        client(&url, &dir.join("server-ca.pem")).await,
        "a client trusting the server's CA publishes and reads over amqps://"
    );
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "it went through TLS"
    );
    assert!(
        !client(&url, &dir.join("stranger-ca.pem")).await,
        "a client that does not trust the server's CA refuses it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
