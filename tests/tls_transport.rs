//! The TLS 1.3 transport over real loopback sockets: mutual authentication binds both sides to
//! the other's node id, pinning refuses other ids, and everything that is not a TLS 1.3 peer with
//! a self-signed ed25519 certificate and its key — TLS 1.2, plaintext, no certificate, another key
//! type, a copied certificate without its key — is refused before any application byte is read.
//!
//! Handshake throughput is not measured here: `cargo bench --bench p2p` (part 1) measures the
//! handshakes per second of a node and of a plain server with this library's TLS settings.

use noded::net::identity::Identity;
use noded::net::tls::{
    peer_node_id, server_name, session_info, verification_failure, TlsError, TlsIdentity,
};
use noded::types::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, Signer, SigningKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureAlgorithm, SignatureScheme,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Upper bound for any single network step; nothing in these tests should come close.
const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Node {
    _dir: TempDir,
    identity: Identity,
    tls: TlsIdentity,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(dir.path()).unwrap();
    let tls = TlsIdentity::new(&identity).unwrap();
    Node {
        _dir: dir,
        identity,
        tls,
    }
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one TCP connection and runs the TLS acceptor on it; the result of the handshake plus,
/// when it succeeded, the peer's node id as the server sees it.
async fn serve_one(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let (tcp, _) = within("accept", listener.accept()).await?;
    within("server handshake", acceptor.accept(tcp)).await
}

async fn dial(
    addr: SocketAddr,
    connector: TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = within("tcp connect", TcpStream::connect(addr)).await?;
    within("client handshake", connector.connect(server_name(), tcp)).await
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A foreign peer's verifier that accepts any server certificate and signature: it lets the
/// tests below play clients that our acceptor must refuse on its own.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring().signature_verification_algorithms.supported_schemes()
    }
}

/// A key that claims to sign with ed25519 but produces garbage: lets a foreign peer present a
/// certificate it holds no key for (or a non-ed25519 one) and still get as far as our verifier.
#[derive(Debug)]
struct LyingKey;

#[derive(Debug)]
struct LyingSigner;

impl SigningKey for LyingKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(LyingSigner) as Box<dyn Signer>)
    }
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

impl Signer for LyingSigner {
    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(vec![0x5a; 64])
    }
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// A self-signed ECDSA P-256 certificate and its key.
fn ecdsa_cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["noded.invalid".to_owned()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
    (cert.der().clone(), key)
}

/// A self-signed ed25519 certificate for a fresh key (as our node makes them), and the key.
fn ed25519_cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::default()
        .self_signed(&kp)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
    (cert.der().clone(), key)
}

fn foreign_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_cert: Option<Arc<CertifiedKey>>,
) -> TlsConnector {
    let builder = ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let config = match client_cert {
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

fn foreign_server(server_cert: Arc<CertifiedKey>) -> TlsAcceptor {
    let config = ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(server_cert)));
    TlsAcceptor::from(Arc::new(config))
}

fn certified(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::from_der(vec![cert], key, &ring()).unwrap())
}

fn lying(cert: CertificateDer<'static>) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::new(vec![cert], Arc::new(LyingKey)))
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn tls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// After a refused handshake, the client side must get nothing but (at most) a TLS alert and
/// then the end of the stream; returns what arrived.
async fn drain(tcp: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = within("read until close", tcp.read_to_end(&mut got)).await;
    got
}

#[tokio::test]
async fn mutual_handshake_binds_both_node_ids_and_carries_bytes() {
    let server = node();
    let client = node();
    let (listener, addr) = listen().await;
    let acceptor = server.tls.acceptor();
    let server_task = tokio::spawn(async move {
        let mut tls = serve_one(listener, acceptor)
            .await
            .expect("server handshake");
        let seen = peer_node_id(tls.get_ref().1).expect("client node id");
        let info = session_info(tls.get_ref().1);
        let mut buf = [0u8; 5];
        within("server read", tls.read_exact(&mut buf))
            .await
            .unwrap();
        within("server write", tls.write_all(b"pong!"))
            .await
            .unwrap();
        within("server flush", tls.flush()).await.unwrap();
        (seen, info, buf)
    });

    let mut tls = dial(addr, client.tls.connector(None))
        .await
        .expect("client handshake");
    assert_eq!(
        peer_node_id(tls.get_ref().1).unwrap(),
        server.identity.node_id()
    );
    let (version, suite) = session_info(tls.get_ref().1);
    assert_eq!(version, "TLSv1.3");
    assert!(suite.starts_with("TLS13_"), "{suite}");
    within("client write", tls.write_all(b"ping!"))
        .await
        .unwrap();
    within("client flush", tls.flush()).await.unwrap();
    let mut buf = [0u8; 5];
    within("client read", tls.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"pong!");

    let (seen, (server_version, server_suite), got) =
        within("server task", server_task).await.unwrap();
    assert_eq!(seen, client.identity.node_id());
    assert_eq!(server.tls.node_id(), server.identity.node_id());
    assert_eq!(server_version, "TLSv1.3");
    assert_eq!(server_suite, suite);
    assert_eq!(&got, b"ping!");
}

#[tokio::test]
async fn a_pinned_connector_accepts_the_right_node_id() {
    let server = node();
    let client = node();
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));
    let tls = dial(addr, client.tls.connector(Some(server.identity.node_id())))
        .await
        .expect("pinned handshake with the right id");
    assert_eq!(
        peer_node_id(tls.get_ref().1).unwrap(),
        server.identity.node_id()
    );
    let server_side = within("server task", server_task).await.unwrap().unwrap();
    assert_eq!(
        peer_node_id(server_side.get_ref().1).unwrap(),
        client.identity.node_id()
    );
}

#[tokio::test]
async fn a_pinned_connector_refuses_another_node_and_the_server_sees_the_abort() {
    let server = node();
    let client = node();
    let pinned = node().identity.node_id();
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));

    let err = dial(addr, client.tls.connector(Some(pinned)))
        .await
        .expect_err("a pin mismatch must fail the handshake");
    let text = err.to_string();
    assert!(text.contains(&pinned.to_string()), "{text}");
    assert!(
        text.contains(&server.identity.node_id().to_string()),
        "{text}"
    );
    match verification_failure(&err) {
        Some(TlsError::PinMismatch {
            expected,
            presented,
        }) => {
            assert_eq!(*expected, pinned);
            assert_eq!(*presented, server.identity.node_id());
        }
        other => panic!("expected a pin mismatch, got {other:?} from {err}"),
    }

    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("the server must not complete a handshake the client aborted");
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateUnknown
            ))
        ),
        "server side: {server_err}"
    );
}

#[tokio::test]
async fn a_tls12_only_client_is_refused() {
    let server = node();
    let (cert, key) = ed25519_cert();
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));

    let connector = foreign_client(&[&rustls::version::TLS12], Some(certified(cert, key)));
    let err = dial(addr, connector)
        .await
        .expect_err("TLS 1.2 must not be negotiated");
    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("the acceptor must refuse TLS 1.2");
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls12NotOfferedOrEnabled
            ))
        ),
        "server side: {server_err}"
    );
    assert!(
        matches!(
            tls_error(&err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::ProtocolVersion
            ))
        ),
        "client side: {err}"
    );
}

#[tokio::test]
async fn a_plaintext_frame_is_never_processed() {
    let server = node();
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));

    // A plausible noded frame: magic, "version" command padded to 12 bytes, zero length/checksum.
    let mut frame = b"\x6e\x64\x0e\x9e".to_vec();
    frame.extend_from_slice(b"version\0\0\0\0\0");
    frame.extend_from_slice(&[0u8; 8]);
    let mut tcp = within("tcp connect", TcpStream::connect(addr))
        .await
        .unwrap();
    within("plaintext write", tcp.write_all(&frame))
        .await
        .unwrap();

    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("the acceptor must refuse a plaintext frame");
    // The acceptor returned an error: no stream exists, so nothing was handed on to be processed.
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::InvalidMessage(_))
        ),
        "server side: {server_err}"
    );
    let got = drain(&mut tcp).await;
    // At most a TLS alert record (content type 21) came back, and then the connection closed.
    assert!(got.is_empty() || got[0] == 0x15, "got {got:02x?}");
    assert!(got.len() <= 7, "got {got:02x?}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let server = node();
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));

    let connector = foreign_client(&[&rustls::version::TLS13], None);
    // In TLS 1.3 the client finishes its half first, so its connect may succeed; the server's
    // refusal then shows on the client's first read.
    if let Ok(mut tls) = dial(addr, connector).await {
        let mut buf = [0u8; 1];
        let read = within("client read", tls.read(&mut buf)).await;
        assert!(
            !matches!(read, Ok(n) if n > 0),
            "no data may flow: {read:?}"
        );
    }
    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("the acceptor must require a client certificate");
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "server side: {server_err}"
    );
}

#[tokio::test]
async fn an_ecdsa_client_is_refused_by_the_acceptor() {
    let server = node();

    // An honest ECDSA client cannot sign with the only scheme we offer, so it sends no
    // certificate at all.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));
    let (cert, key) = ecdsa_cert();
    let connector = foreign_client(
        &[&rustls::version::TLS13],
        Some(certified(cert.clone(), key)),
    );
    let _ = dial(addr, connector).await;
    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("an ECDSA client must be refused");
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "server side: {server_err}"
    );

    // A client that claims ed25519 for its handshake signature gets its ECDSA certificate as
    // far as our client verifier, which refuses the key type.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));
    let connector = foreign_client(&[&rustls::version::TLS13], Some(lying(cert)));
    if let Ok(mut tls) = dial(addr, connector).await {
        let mut buf = [0u8; 1];
        let _ = within("client read", tls.read(&mut buf)).await;
    }
    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("the client verifier must refuse an ECDSA certificate");
    assert!(
        matches!(
            verification_failure(&server_err),
            Some(TlsError::NotEd25519(_))
        ),
        "server side: {server_err}"
    );
}

#[tokio::test]
async fn an_ecdsa_server_is_refused_by_the_connector() {
    let client = node();
    let (cert, key) = ecdsa_cert();

    // An honest ECDSA server cannot sign with the only scheme we offer.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(
        listener,
        foreign_server(certified(cert.clone(), key)),
    ));
    let err = dial(addr, client.tls.connector(None))
        .await
        .expect_err("an ECDSA server must be refused");
    assert!(
        matches!(
            tls_error(&err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            ))
        ),
        "client side: {err}"
    );
    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("the ECDSA server has no ed25519 signature to offer");
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon
            ))
        ),
        "server side: {server_err}"
    );

    // One that claims ed25519 reaches our server verifier, which refuses the key type.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, foreign_server(lying(cert))));
    let err = dial(addr, client.tls.connector(None))
        .await
        .expect_err("the server verifier must refuse an ECDSA certificate");
    assert!(
        matches!(verification_failure(&err), Some(TlsError::NotEd25519(_))),
        "client side: {err}"
    );
    let _ = within("server task", server_task).await.unwrap();
}

/// Certificates are public: anyone who once connected to a node has its certificate. Presenting
/// it without the key must fail the TLS 1.3 handshake signature check, in both directions and
/// even where the victim's id is pinned.
#[tokio::test]
async fn a_copied_certificate_without_its_key_is_refused_both_ways() {
    let victim = node();
    let other = node();

    // Obtain the victim's certificate the way an attacker would: by connecting to it.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, victim.tls.acceptor()));
    let tls = dial(addr, other.tls.connector(None)).await.unwrap();
    let stolen: CertificateDer<'static> = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    drop(tls);
    let _ = within("server task", server_task).await.unwrap();

    // Impostor server, dialled by a node that pinned the victim's id.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, foreign_server(lying(stolen.clone()))));
    let err = dial(addr, other.tls.connector(Some(victim.identity.node_id())))
        .await
        .expect_err("an impostor server must be refused");
    assert!(
        matches!(
            tls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature
            ))
        ),
        "client side: {err}"
    );
    let _ = within("server task", server_task).await.unwrap();

    // Impostor client.
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, other.tls.acceptor()));
    let connector = foreign_client(&[&rustls::version::TLS13], Some(lying(stolen)));
    if let Ok(mut tls) = dial(addr, connector).await {
        let mut buf = [0u8; 1];
        let _ = within("client read", tls.read(&mut buf)).await;
    }
    let server_err = within("server task", server_task)
        .await
        .unwrap()
        .expect_err("an impostor client must be refused");
    assert!(
        matches!(
            tls_error(&server_err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature
            ))
        ),
        "server side: {server_err}"
    );
}

#[tokio::test]
async fn pinned_connectors_are_independent_of_each_other() {
    let server = node();
    let client = node();
    let wrong = NodeId([7; 32]);
    let _refusing = client.tls.connector(Some(wrong));
    let (listener, addr) = listen().await;
    let server_task = tokio::spawn(serve_one(listener, server.tls.acceptor()));
    // Building a connector pinned elsewhere must not affect trust-on-first-use dialling.
    dial(addr, client.tls.connector(None))
        .await
        .expect("TOFU dial after building another pin");
    within("server task", server_task).await.unwrap().unwrap();
}
