//! TLS 1.3 transport security: the node's self-signed certificate (made by rcgen from the ed25519
//! identity key), the rustls server and client configurations (TLS 1.3 only, mutual
//! authentication, no session resumption), and the certificate verifiers that bind every session
//! to the peer's node id. There is no plaintext path: a peer connection is a TLS stream or nothing.
//!
//! The scheme follows libp2p's TLS handshake idea: each side presents one self-signed certificate
//! whose subject key is its ed25519 identity key. A verifier accepts exactly that shape — one
//! end-entity certificate, an ed25519 key, a valid self-signature — and ignores the server name,
//! validity period and CA rules, which mean nothing here. The TLS 1.3 `CertificateVerify`
//! signature (ed25519 only) proves the peer holds the key, so the key *is* the peer's node id.

use crate::net::identity::Identity;
use crate::types::NodeId;
use ed25519_dalek::pkcs8::spki::der::asn1::BitStringRef;
use ed25519_dalek::pkcs8::spki::der::{self, Decode, Reader, SliceReader};
use ed25519_dalek::pkcs8::spki::{
    AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef,
};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signature, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, PeerMisbehaved, ProtocolVersion, ServerConfig, SignatureScheme,
};
use std::sync::Arc;

/// id-Ed25519 (RFC 8410).
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The fixed name we dial; no verifier looks at it.
const SERVER_NAME: &str = "noded.invalid";

/// The subject (and, self-signed, issuer) common name of our certificates. Informational only.
const CERT_COMMON_NAME: &str = "noded";

/// Errors of the TLS layer: building our own configuration, and the reasons a peer's certificate
/// is refused (carried inside rustls' `CertificateError::Other`; see [`verification_failure`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not encode the identity key as PKCS#8: {0}")]
    KeyEncoding(String),
    #[error("could not make the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("could not build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    #[error(
        "the peer presented {0} certificates; exactly one self-signed certificate is accepted"
    )]
    CertificateChain(usize),
    #[error("the peer's certificate is malformed: {0}")]
    MalformedCertificate(String),
    #[error("the peer's certificate key is not ed25519 (key algorithm {0})")]
    NotEd25519(String),
    #[error("the peer's certificate is not self-signed by its own ed25519 key: {0}")]
    NotSelfSigned(&'static str),
    #[error("the peer presented node id {presented}, but node id {expected} is pinned for it")]
    PinMismatch { expected: NodeId, presented: NodeId },
}

/// Our certificate, key and configurations, built once at start-up from the node identity.
pub struct TlsIdentity {
    node_id: NodeId,
    server: Arc<ServerConfig>,
    /// Trust-on-first-use client configuration; pinned ones are cheap clones of it.
    tofu_client: Arc<ClientConfig>,
    provider: Arc<CryptoProvider>,
}

impl TlsIdentity {
    pub fn new(identity: &Identity) -> Result<TlsIdentity, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let (cert, key_der) = make_certificate(identity)?;

        // Parses the key with the provider and checks it matches the certificate.
        let certified = Arc::new(
            CertifiedKey::from_der(vec![cert.clone()], PrivateKeyDer::Pkcs8(key_der), &provider)
                .map_err(TlsError::Config)?,
        );
        let own = Arc::new(SingleCertAndKey::from(certified));

        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(Arc::new(ClientIdVerifier {
                provider: provider.clone(),
            }))
            .with_cert_resolver(own.clone());
        // No resumption: no tickets (each costs a write and memory), no session cache.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(NoServerSessionStorage {});

        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerIdVerifier {
                provider: provider.clone(),
                expected: None,
            }))
            .with_client_cert_resolver(own);
        client.resumption = Resumption::disabled();
        client.enable_sni = false;

        let this = TlsIdentity {
            node_id: identity.node_id(),
            server: Arc::new(server),
            tofu_client: Arc::new(client),
            provider,
        };
        // Our own certificate must pass the check every peer will apply to it.
        let own_id = certificate_node_id(&cert).map_err(|e| {
            TlsError::MalformedCertificate(format!("our own certificate fails verification: {e}"))
        })?;
        if own_id != this.node_id {
            return Err(TlsError::MalformedCertificate(format!(
                "our own certificate binds {own_id}, not the identity {}",
                this.node_id
            )));
        }
        Ok(this)
    }

    /// The node id our certificate carries.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Acceptor for inbound connections: TLS 1.3 only, requires a client certificate.
    /// The server configuration, for accepting in two steps (ClientHello first).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// Connector for an outbound connection; `expected` pins the peer's node id (refuse anything
    /// else); None = trust on first use.
    pub fn connector(&self, expected: Option<NodeId>) -> tokio_rustls::TlsConnector {
        let config = match expected {
            None => self.tofu_client.clone(),
            Some(id) => {
                // A clone copies a few small vectors and Arcs; no key parsing.
                let mut config = (*self.tofu_client).clone();
                config
                    .dangerous()
                    .set_certificate_verifier(Arc::new(ServerIdVerifier {
                        provider: self.provider.clone(),
                        expected: Some(id),
                    }));
                Arc::new(config)
            }
        };
        tokio_rustls::TlsConnector::from(config)
    }
}

/// The node id bound to an established session (from the peer's certificate, whose key signed
/// the TLS handshake).
pub fn peer_node_id(conn: &CommonState) -> Result<NodeId, TlsError> {
    match conn.peer_certificates() {
        None | Some([]) => Err(TlsError::NoPeerCertificate),
        // The session's verifier already checked this certificate in full (self-signature
        // included) before the handshake could complete; re-verifying it here cost ~40 us
        // per connection for nothing, so only the key is read back.
        Some([cert]) => certificate_key(cert).map(|(key, _)| NodeId(key.to_bytes())),
        Some(chain) => Err(TlsError::CertificateChain(chain.len())),
    }
}

/// "TLSv1.3" and the cipher suite name, for getpeerinfo.
pub fn session_info(conn: &CommonState) -> (String, String) {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "none".to_owned(),
    };
    let suite = match conn.negotiated_cipher_suite() {
        Some(s) => match s.suite().as_str() {
            Some(name) => name.to_owned(),
            None => format!("{:?}", s.suite()),
        },
        None => "none".to_owned(),
    };
    (version, suite)
}

/// The ServerName to use when dialling (fixed; verification ignores it).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a constant, valid DNS name")
}

/// Why our verifier refused the peer, if a failed handshake (the `io::Error` returned by
/// `connect`/`accept` or a later read) was such a refusal: lets callers tell a pin mismatch or a
/// bad certificate (ban-worthy) from a network error.
pub fn verification_failure(err: &std::io::Error) -> Option<&TlsError> {
    let rustls_err = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match rustls_err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<TlsError>()
        }
        _ => None,
    }
}

/// Our self-signed certificate for the identity key, and the key as PKCS#8 for rustls.
fn make_certificate(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), TlsError> {
    let pkcs8 = identity
        .signing_key()
        .to_pkcs8_der()
        .map_err(|e| TlsError::KeyEncoding(e.to_string()))?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CERT_COMMON_NAME);
    let cert = params.self_signed(&key_pair)?;
    Ok((cert.der().clone(), key_der))
}

/// Checks a presented certificate and returns the node id it binds: one self-signed X.509 v3
/// certificate whose subject key is ed25519 and whose signature verifies with that key.
/// The ed25519 key of a certificate and the DER of its SubjectPublicKeyInfo, from webpki's
/// strict parse (v3 only, no unknown critical extensions): the SPKI the TLS handshake
/// signature is verified against. Checks nothing about the self-signature.
fn certificate_key(cert: &CertificateDer<'_>) -> Result<(VerifyingKey, Vec<u8>), TlsError> {
    let parsed = ParsedCertificate::try_from(cert)
        .map_err(|e| TlsError::MalformedCertificate(e.to_string()))?;
    let spki_der = parsed.subject_public_key_info();
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der.as_ref())
        .map_err(|e| TlsError::MalformedCertificate(format!("subject public key: {e}")))?;
    if spki.algorithm.oid != ED25519_OID {
        return Err(TlsError::NotEd25519(spki.algorithm.oid.to_string()));
    }
    let key = VerifyingKey::try_from(spki)
        .map_err(|e| TlsError::MalformedCertificate(format!("ed25519 key: {e}")))?;
    Ok((key, spki_der.as_ref().to_vec()))
}

/// Fully checks a peer certificate (one self-signed ed25519 certificate) and returns the
/// node id it binds.
fn certificate_node_id(cert: &CertificateDer<'_>) -> Result<NodeId, TlsError> {
    let (key, spki_der) = certificate_key(cert)?;

    let signed = SignedCertificate::parse(cert.as_ref())
        .map_err(|e| TlsError::MalformedCertificate(e.to_string()))?;
    if signed.signature_algorithm.oid != ED25519_OID
        || signed.signature_algorithm.parameters.is_some()
    {
        return Err(TlsError::NotSelfSigned("not signed with ed25519"));
    }
    if signed.tbs_signature_algorithm != signed.signature_algorithm {
        return Err(TlsError::NotSelfSigned(
            "the signature algorithm inside and outside the signed part differ",
        ));
    }
    // Both parsers must agree on the key the signed part carries.
    if signed.spki != spki_der.as_slice() {
        return Err(TlsError::MalformedCertificate(
            "inconsistent subject public key encoding".into(),
        ));
    }
    if signed.issuer != signed.subject {
        return Err(TlsError::NotSelfSigned("issuer differs from subject"));
    }
    let signature = Signature::from_slice(signed.signature)
        .map_err(|_| TlsError::NotSelfSigned("malformed signature"))?;
    key.verify_strict(signed.tbs, &signature)
        .map_err(|_| TlsError::NotSelfSigned("the signature does not verify with its own key"))?;
    Ok(NodeId(key.to_bytes()))
}

/// The parts of an X.509 certificate needed to check its self-signature (RFC 5280 §4.1).
struct SignedCertificate<'a> {
    /// The complete DER of `tbsCertificate`, i.e. the signed bytes.
    tbs: &'a [u8],
    tbs_signature_algorithm: AlgorithmIdentifierRef<'a>,
    issuer: &'a [u8],
    subject: &'a [u8],
    /// The complete DER of `subjectPublicKeyInfo`.
    spki: &'a [u8],
    signature_algorithm: AlgorithmIdentifierRef<'a>,
    signature: &'a [u8],
}

impl<'a> SignedCertificate<'a> {
    fn parse(der_bytes: &'a [u8]) -> der::Result<SignedCertificate<'a>> {
        let mut reader = SliceReader::new(der_bytes)?;
        let (tbs, signature_algorithm, signature) = reader.sequence(|cert| {
            let tbs = cert.tlv_bytes()?;
            let algorithm: AlgorithmIdentifierRef<'a> = cert.decode()?;
            let signature: BitStringRef<'a> = cert.decode()?;
            Ok((tbs, algorithm, signature))
        })?;
        let (tbs, signature_algorithm, signature) =
            reader.finish((tbs, signature_algorithm, signature))?;
        let signature = signature.as_bytes().ok_or_else(|| {
            der::Error::from(der::ErrorKind::Length {
                tag: der::Tag::BitString,
            })
        })?;

        let mut reader = SliceReader::new(tbs)?;
        let (tbs_signature_algorithm, issuer, subject, spki) = reader.sequence(|t| {
            // [0] EXPLICIT version (webpki has already insisted on v3).
            if t.peek_byte() == Some(0xa0) {
                t.tlv_bytes()?;
            }
            let _serial = t.tlv_bytes()?;
            let algorithm: AlgorithmIdentifierRef<'a> = t.decode()?;
            let issuer = t.tlv_bytes()?;
            let _validity = t.tlv_bytes()?;
            let subject = t.tlv_bytes()?;
            let spki = t.tlv_bytes()?;
            // The optional unique ids and the extensions were checked by webpki.
            let rest = t.remaining_len();
            t.read_slice(rest)?;
            Ok((algorithm, issuer, subject, spki))
        })?;
        reader.finish(())?;

        Ok(SignedCertificate {
            tbs,
            tbs_signature_algorithm,
            issuer,
            subject,
            spki,
            signature_algorithm,
            signature,
        })
    }
}

fn reject(err: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

fn check_presented(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<NodeId, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(reject(TlsError::CertificateChain(1 + intermediates.len())));
    }
    certificate_node_id(end_entity).map_err(reject)
}

/// The TLS 1.3 `CertificateVerify` check, ed25519 only.
fn verify_handshake_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn refuse_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General(
        "TLS 1.2 is not allowed; noded speaks TLS 1.3 only".into(),
    ))
}

/// Verifies the server when we dial: our client side.
#[derive(Debug)]
struct ServerIdVerifier {
    provider: Arc<CryptoProvider>,
    expected: Option<NodeId>,
}

impl ServerCertVerifier for ServerIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = check_presented(end_entity, intermediates)?;
        match self.expected {
            Some(expected) if expected != presented => Err(reject(TlsError::PinMismatch {
                expected,
                presented,
            })),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Verifies the client on an inbound connection: our server side. A certificate is mandatory.
#[derive(Debug)]
struct ClientIdVerifier {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ClientIdVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_presented(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Test-only: rustls offers no public constructor for a handshake signature.
    use rustls::internal::msgs::codec::Codec;

    fn identity() -> (tempfile::TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(dir.path()).unwrap();
        (dir, id)
    }

    fn dss(scheme: SignatureScheme, signature: &[u8]) -> DigitallySignedStruct {
        let mut bytes = u16::from(scheme).to_be_bytes().to_vec();
        bytes.extend_from_slice(&(signature.len() as u16).to_be_bytes());
        bytes.extend_from_slice(signature);
        DigitallySignedStruct::read_bytes(&bytes).unwrap()
    }

    fn key_pair(id: &Identity) -> rcgen::KeyPair {
        let pkcs8 = id.signing_key().to_pkcs8_der().unwrap();
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
            &rcgen::PKCS_ED25519,
        )
        .unwrap()
    }

    #[test]
    fn own_certificate_binds_the_identity_key() {
        let (_dir, id) = identity();
        let tls = TlsIdentity::new(&id).unwrap();
        assert_eq!(tls.node_id(), id.node_id());
        let (cert, _) = make_certificate(&id).unwrap();
        assert_eq!(certificate_node_id(&cert).unwrap(), id.node_id());
    }

    #[test]
    fn a_tampered_self_signature_is_refused() {
        let (_dir, id) = identity();
        let (cert, _) = make_certificate(&id).unwrap();
        let mut der = cert.to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let err = certificate_node_id(&CertificateDer::from(der)).unwrap_err();
        assert!(matches!(err, TlsError::NotSelfSigned(_)), "{err}");
    }

    #[test]
    fn an_ed25519_certificate_signed_by_another_key_is_refused() {
        let (_d1, subject) = identity();
        let (_d2, issuer) = identity();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::Issuer::new(ca_params, key_pair(&issuer));
        let cert = rcgen::CertificateParams::default()
            .signed_by(&key_pair(&subject), &ca)
            .unwrap();
        let err = certificate_node_id(cert.der()).unwrap_err();
        assert!(matches!(err, TlsError::NotSelfSigned(_)), "{err}");
    }

    #[test]
    fn a_non_ed25519_certificate_is_refused_by_both_verifiers() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::default()
            .self_signed(&kp)
            .unwrap();
        let err = certificate_node_id(cert.der()).unwrap_err();
        assert!(matches!(err, TlsError::NotEd25519(_)), "{err}");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_side = ClientIdVerifier {
            provider: provider.clone(),
        };
        let client_side = ServerIdVerifier {
            provider,
            expected: None,
        };
        let err = server_side
            .verify_client_cert(cert.der(), &[], UnixTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("NotEd25519"), "{err}");
        let err = client_side
            .verify_server_cert(cert.der(), &[], &server_name(), &[], UnixTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("NotEd25519"), "{err}");
    }

    #[test]
    fn intermediates_are_refused_and_tls12_signatures_never_verify() {
        let (_dir, id) = identity();
        let (cert, _) = make_certificate(&id).unwrap();
        let err = check_presented(&cert, std::slice::from_ref(&cert)).unwrap_err();
        assert!(err.to_string().contains("CertificateChain(2)"), "{err}");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_side = ClientIdVerifier {
            provider: provider.clone(),
        };
        let client_side = ServerIdVerifier {
            provider,
            expected: None,
        };
        // Even a genuine ed25519 signature by the certificate's key is refused under TLS 1.2.
        use ed25519_dalek::Signer;
        let message = b"tls 1.2 transcript";
        let good = id.signing_key().sign(message).to_bytes();
        let sig = dss(SignatureScheme::ED25519, &good);
        assert!(
            ClientCertVerifier::verify_tls12_signature(&server_side, message, &cert, &sig).is_err()
        );
        assert!(
            ServerCertVerifier::verify_tls12_signature(&client_side, message, &cert, &sig).is_err()
        );
        assert_eq!(
            ServerCertVerifier::supported_verify_schemes(&client_side),
            vec![SignatureScheme::ED25519]
        );
        assert_eq!(
            ClientCertVerifier::supported_verify_schemes(&server_side),
            vec![SignatureScheme::ED25519]
        );
        assert!(server_side.offer_client_auth() && server_side.client_auth_mandatory());
    }

    #[test]
    fn handshake_signatures_are_checked_against_the_certificate_key() {
        use ed25519_dalek::Signer;
        let (_dir, id) = identity();
        let (_dir2, other) = identity();
        let (cert, _) = make_certificate(&id).unwrap();
        let verifier = ClientIdVerifier {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let message = b"transcript hash stand-in";
        let good = id.signing_key().sign(message).to_bytes();
        assert!(verifier
            .verify_tls13_signature(message, &cert, &dss(SignatureScheme::ED25519, &good))
            .is_ok());
        assert!(verifier
            .verify_tls13_signature(b"other", &cert, &dss(SignatureScheme::ED25519, &good))
            .is_err());
        let foreign = other.signing_key().sign(message).to_bytes();
        assert!(verifier
            .verify_tls13_signature(message, &cert, &dss(SignatureScheme::ED25519, &foreign))
            .is_err());
        // Only the ed25519 scheme is accepted.
        assert!(verifier
            .verify_tls13_signature(
                message,
                &cert,
                &dss(SignatureScheme::ECDSA_NISTP256_SHA256, &good)
            )
            .is_err());
    }

    #[test]
    fn a_pinned_verifier_refuses_another_id_and_says_which() {
        let (_d1, id) = identity();
        let (_d2, other) = identity();
        let (cert, _) = make_certificate(&id).unwrap();
        let verifier = ServerIdVerifier {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            expected: Some(other.node_id()),
        };
        let err = verifier
            .verify_server_cert(&cert, &[], &server_name(), &[], UnixTime::now())
            .unwrap_err();
        let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = &err
        else {
            panic!("unexpected error {err:?}");
        };
        let text = inner.to_string();
        assert!(text.contains(&id.node_id().to_string()), "{text}");
        assert!(text.contains(&other.node_id().to_string()), "{text}");
    }
}
