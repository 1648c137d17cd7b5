//! ECDHE over curveSM2 (RFC 8998 section 3.1): plain elliptic-curve
//! Diffie-Hellman on the SM2 curve with uncompressed points, the x
//! coordinate of the shared point being the shared secret. (Not the SM2 key
//! agreement protocol of GB/T 32918.3, which TLS 1.3 does not use.)

use rand_core::OsRng;
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::elliptic_curve::sec1::ToEncodedPoint;
use sm2::{NonZeroScalar, ProjectivePoint, PublicKey};

use super::CURVE_SM2_GROUP;

/// Length of an uncompressed curveSM2 point: `04 || X || Y`.
const POINT_LEN: usize = 65;

/// The curveSM2 key exchange group (named group 41).
#[derive(Debug)]
pub(crate) struct CurveSm2;

/// The curveSM2 group, for a provider's `kx_groups`.
pub static CURVE_SM2: &dyn SupportedKxGroup = &CurveSm2;

impl SupportedKxGroup for CurveSm2 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = NonZeroScalar::random(&mut OsRng);
        let public = PublicKey::from_secret_scalar(&secret)
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Ok(Box::new(Sm2KeyExchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        CURVE_SM2_GROUP
    }

    fn usable_for_version(&self, version: rustls::ProtocolVersion) -> bool {
        // RFC 8998 defines curveSM2 for TLS 1.3 only.
        version == rustls::ProtocolVersion::TLSv1_3
    }
}

/// One in-progress exchange: our ephemeral scalar and public point.
struct Sm2KeyExchange {
    secret: NonZeroScalar,
    public: Vec<u8>,
}

impl ActiveKeyExchange for Sm2KeyExchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        ecdh(&self.secret, peer_pub_key).map(SharedSecret::from)
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        CURVE_SM2_GROUP
    }
}

/// `x([secret] peer)`, refusing anything but an uncompressed point on the curve.
pub(crate) fn ecdh(secret: &NonZeroScalar, peer_pub_key: &[u8]) -> Result<Vec<u8>, Error> {
    if peer_pub_key.len() != POINT_LEN || peer_pub_key[0] != 0x04 {
        return Err(PeerMisbehaved::InvalidKeyShare.into());
    }
    // from_sec1_bytes checks that the point is on the curve and not the identity.
    let peer = PublicKey::from_sec1_bytes(peer_pub_key)
        .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
    let shared = (ProjectivePoint::from(*peer.as_affine()) * **secret).to_affine();
    Ok(shared.x().to_vec())
}
