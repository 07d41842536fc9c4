#![doc = include_str!("../README.md")]

mod ed25519;
mod error;
mod hmac;
pub mod json;
mod message;
mod pem;
mod rsa;
mod scheme;
mod secret;

pub use crate::ed25519::{Ed25519SigningKey, Ed25519VerifyingKey};
pub use crate::error::{KeyError, SignError, VerifyError};
pub use crate::hmac::{BodyForm, Content, DEFAULT_TOLERANCE, Encoding, HmacKey, HmacScheme, KeyForm, Layout};
pub use crate::message::{HeaderSource, Message, SignedRequest};
pub use crate::rsa::{RsaKeyPair, RsaPublicKey, RsaScheme};
pub use crate::scheme::{
    BodySetting, ContentSetting, EncodingSetting, HmacSettings, InvalidSettings, KeyKind, KeySetting, LayoutSetting,
    MAX_TOLERANCE_SECONDS, Scheme, Signer, UnknownScheme, Verifier,
};
pub use crate::secret::Secret;
pub use bytes::Bytes;
