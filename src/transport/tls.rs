//! TLS 1.3 with RFC 7250 raw Ed25519 public keys in both directions (proto-spec/transport.md).
//!
//! No X.509 and no CA: each side presents its Ed25519 key as a bare SubjectPublicKeyInfo, and
//! that key *is* the peer's identity. The dialer always knows the `NodeId` it dials and aborts
//! on any other key; the listener accepts any well-formed key meeting the network's id
//! proof-of-work and derives the peer's `NodeId` from it. Both check the CertificateVerify
//! signature (Ed25519 only) with the key presented.
//!
//! Everything here is configuration and verification; the sessions themselves are driven by
//! `transport::conn` (in memory) and the reactor (sockets).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error,
    PeerIncompatible, ServerConfig, SignatureScheme,
};

use crate::identity::{meets_id_pow, verify_signature, Keypair, NodeId};
use crate::wire::messages::ALPN_V1;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo: SEQUENCE(42) { SEQUENCE(5) { OID 1.3.101.112 },
/// BIT STRING(33, 0 unused bits) }, followed by the 32 key bytes (proto-spec/transport.md §2).
pub const ED25519_SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// Length of an Ed25519 SubjectPublicKeyInfo.
pub const ED25519_SPKI_BYTES: usize = 44;
/// DER prefix of a PKCS#8 v1 Ed25519 private key, followed by the 32-byte seed (RFC 8410 §7).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The server name handed to rustls. Never sent (SNI is off) and never checked: the dialer
/// authenticates the `NodeId`, not a name.
const SERVER_NAME: &str = "petrel.invalid";

/// The node's TLS configuration: one server config for every inbound connection, and what is
/// needed to build a client config per dial (each dial expects its own `NodeId`).
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
    certified: Arc<CertifiedKey>,
    id_pow_bits: u8,
}

impl TlsConfig {
    /// Builds the configuration for `keypair` on a network requiring `id_pow_bits` of id
    /// proof-of-work from every peer.
    pub fn new(keypair: &Keypair, id_pow_bits: u8) -> Result<TlsConfig, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = Arc::new(certified_key(keypair, &provider)?);
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsSetupError)?
            .with_client_cert_verifier(Arc::new(AnyPeerVerifier { id_pow_bits }))
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
                certified.clone(),
            )));
        server.alpn_protocols = vec![ALPN_V1.to_vec()];
        // Every connection authenticates in full: no tickets, no session cache.
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        server.max_early_data_size = 0;
        Ok(TlsConfig { server: Arc::new(server), provider, certified, id_pow_bits })
    }

    /// A server session for an accepted connection.
    pub fn accept(&self) -> Result<rustls::ServerConnection, Error> {
        rustls::ServerConnection::new(self.server.clone())
    }

    /// A client session for a dial that must reach exactly `expected`.
    pub fn dial(&self, expected: NodeId) -> Result<rustls::ClientConnection, Error> {
        let verifier = Arc::new(ExpectedPeerVerifier { expected, id_pow_bits: self.id_pow_bits });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
                self.certified.clone(),
            )));
        config.alpn_protocols = vec![ALPN_V1.to_vec()];
        config.enable_sni = false;
        config.resumption = Resumption::disabled();
        let name =
            ServerName::try_from(SERVER_NAME).map_err(|_| Error::General("server name".into()))?;
        rustls::ClientConnection::new(Arc::new(config), name)
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("id_pow_bits", &self.id_pow_bits).finish()
    }
}

/// The authenticated identity of the peer of a finished handshake, and the protocol agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's Ed25519 public key, as presented and verified.
    pub public_key: [u8; 32],
    /// `SHA-256(public_key)`.
    pub node_id: NodeId,
}

/// Reads the verified peer identity from a session whose handshake is complete, and checks
/// that ALPN selected protocol version 1 (rustls lets a handshake without ALPN through, so
/// the check is ours). `None` means the connection must be closed.
pub fn peer_identity(session: &rustls::CommonState) -> Option<PeerIdentity> {
    if session.is_handshaking() || session.alpn_protocol() != Some(ALPN_V1) {
        return None;
    }
    let spki = session.peer_certificates()?.first()?;
    let public_key = spki_public_key(spki.as_ref())?;
    Some(PeerIdentity { public_key, node_id: NodeId::from_public_key(&public_key) })
}

/// The SubjectPublicKeyInfo of an Ed25519 public key.
pub fn ed25519_spki(public_key: &[u8; 32]) -> [u8; ED25519_SPKI_BYTES] {
    let mut out = [0u8; ED25519_SPKI_BYTES];
    out[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
    out[12..].copy_from_slice(public_key);
    out
}

/// The public key inside an Ed25519 SubjectPublicKeyInfo; `None` for anything that is not
/// exactly that encoding (other algorithms, trailing bytes, BER variants).
pub fn spki_public_key(spki: &[u8]) -> Option<[u8; 32]> {
    if spki.len() != ED25519_SPKI_BYTES || spki[..12] != ED25519_SPKI_PREFIX {
        return None;
    }
    spki[12..].try_into().ok()
}

/// The TLS configuration could not be built (a bug or an unusable key, never peer input).
#[derive(Debug)]
pub struct TlsSetupError(pub Error);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS setup failed: {}", self.0)
    }
}

impl std::error::Error for TlsSetupError {}

fn certified_key(
    keypair: &Keypair,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&keypair.secret_seed());
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    let key = provider.key_provider.load_private_key(der.into()).map_err(TlsSetupError)?;
    let spki = CertificateDer::from(ed25519_spki(&keypair.public_key()).to_vec());
    Ok(CertifiedKey::new(vec![spki], key))
}

/// Checks a presented raw key: exactly one Ed25519 SPKI meeting the id difficulty.
fn check_presented(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    id_pow_bits: u8,
) -> Result<[u8; 32], Error> {
    if !intermediates.is_empty() {
        return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
    }
    let key = spki_public_key(end_entity.as_ref())
        .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
    if !meets_id_pow(&key, id_pow_bits) {
        return Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
    }
    Ok(key)
}

/// Verifies the CertificateVerify signature: Ed25519 only, strict.
fn check_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    let key = spki_public_key(cert.as_ref())
        .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let sig: &[u8; 64] = dss
        .signature()
        .try_into()
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
    if !verify_signature(&key, message, sig) {
        return Err(Error::InvalidCertificate(CertificateError::BadSignature));
    }
    Ok(HandshakeSignatureValid::assertion())
}

/// Dialer side: accepts only the key whose `NodeId` we dialled.
#[derive(Debug)]
struct ExpectedPeerVerifier {
    expected: NodeId,
    id_pow_bits: u8,
}

impl ServerCertVerifier for ExpectedPeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let key = check_presented(end_entity, intermediates, self.id_pow_bits)?;
        if NodeId::from_public_key(&key) != self.expected {
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Listener side: any well-formed Ed25519 key meeting the id difficulty; the `NodeId` is
/// derived from it after the handshake.
#[derive(Debug)]
struct AnyPeerVerifier {
    id_pow_bits: u8,
}

impl ClientCertVerifier for AnyPeerVerifier {
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
    ) -> Result<ClientCertVerified, Error> {
        check_presented(end_entity, intermediates, self.id_pow_bits)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn config(seed: u8) -> (Keypair, TlsConfig) {
        let kp = Keypair::from_seed([seed; 32]);
        let cfg = TlsConfig::new(&kp, 0).unwrap();
        (kp, cfg)
    }

    /// Moves TLS bytes from `from` to `to` until neither has anything to send; returns the
    /// first error either side reports.
    fn transfer(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) -> Result<(), Error> {
        for _ in 0..32 {
            let mut moved = false;
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
                moved = true;
            }
            if !buf.is_empty() {
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
                moved = true;
            }
            if !buf.is_empty() {
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            if !moved {
                return Ok(());
            }
        }
        panic!("handshake did not settle");
    }

    #[test]
    fn mutual_raw_key_handshake_authenticates_both_sides() {
        let (client_kp, client_cfg) = config(1);
        let (server_kp, server_cfg) = config(2);
        let mut client = client_cfg.dial(server_kp.node_id()).unwrap();
        let mut server = server_cfg.accept().unwrap();
        transfer(&mut client, &mut server).unwrap();
        assert!(!client.is_handshaking() && !server.is_handshaking());

        let seen_by_client = peer_identity(&client).unwrap();
        let seen_by_server = peer_identity(&server).unwrap();
        assert_eq!(seen_by_client.node_id, server_kp.node_id());
        assert_eq!(seen_by_server.node_id, client_kp.node_id());
        assert_eq!(client.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(client.alpn_protocol(), Some(ALPN_V1));

        // Application data flows both ways.
        client.writer().write_all(b"ping").unwrap();
        transfer(&mut client, &mut server).unwrap();
        let mut got = [0u8; 4];
        server.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }

    #[test]
    fn dialer_aborts_when_key_is_not_the_expected_node() {
        let (_, client_cfg) = config(1);
        let (_, server_cfg) = config(2);
        let impostor_target = Keypair::from_seed([3; 32]).node_id();
        let mut client = client_cfg.dial(impostor_target).unwrap();
        let mut server = server_cfg.accept().unwrap();
        let err = transfer(&mut client, &mut server).unwrap_err();
        assert_eq!(err, Error::InvalidCertificate(CertificateError::NotValidForName));
        assert!(peer_identity(&client).is_none());
    }

    #[test]
    fn listener_refuses_keys_below_id_pow_difficulty() {
        // Find a seed whose key has fewer than 4 bits of PoW, and require 4.
        let weak = (0u8..=255)
            .map(|s| Keypair::from_seed([s; 32]))
            .find(|k| !meets_id_pow(&k.public_key(), 4))
            .unwrap();
        let client_cfg = TlsConfig::new(&weak, 0).unwrap();
        let server_kp = Keypair::from_seed([9; 32]);
        let server_cfg = TlsConfig::new(&server_kp, 4).unwrap();
        let mut client = client_cfg.dial(server_kp.node_id()).unwrap();
        let mut server = server_cfg.accept().unwrap();
        // The server's own key may itself be weak; the client requires 0 bits so that only
        // the server's check is exercised here.
        let err = transfer(&mut client, &mut server).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        );
    }

    #[test]
    fn spki_is_exact_ed25519_encoding() {
        let kp = Keypair::from_seed([5; 32]);
        let spki = ed25519_spki(&kp.public_key());
        assert_eq!(spki_public_key(&spki), Some(kp.public_key()));
        let mut longer = spki.to_vec();
        longer.push(0);
        assert_eq!(spki_public_key(&longer), None);
        let mut other_alg = spki;
        other_alg[8] = 0x71; // OID 1.3.101.113 = Ed448
        assert_eq!(spki_public_key(&other_alg), None);
    }
}
