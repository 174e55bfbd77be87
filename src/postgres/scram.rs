//! SCRAM-SHA-256 (RFC 5802, RFC 7677), the server's side, as PostgreSQL
//! speaks it. Logins are checked against a [`Verifier`], the StoredKey and
//! ServerKey that PostgreSQL keeps in `pg_authid`: the server holds neither a
//! password nor anything that logs in as one.
//!
//! The exchange: the client names the mechanism and sends its nonce; the
//! server answers with the salt, the iteration count and both nonces; the
//! client proves it knows the password (its proof XOR the HMAC of the
//! conversation under StoredKey hashes to StoredKey) and the server proves it
//! holds the verifier (the HMAC of the conversation under ServerKey). A user
//! that does not exist goes through the same steps with a made-up verifier
//! and fails as a wrong password does.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

use crate::net::constant_time_eq;

/// The mechanism's name.
const MECHANISM: &str = "SCRAM-SHA-256";

/// Iterations of a verifier made here (PostgreSQL's default).
const ITERATIONS: u32 = 4096;

/// What checks one user's password: PostgreSQL's
/// `SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY`.
#[derive(Clone)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(…)")
    }
}

impl Verifier {
    /// The verifier of `password`, with a random salt.
    pub fn from_password(password: &str) -> Self {
        let salt = random::<16>().to_vec();
        let mut salted = [0u8; 32];
        let iterations = std::num::NonZeroU32::new(ITERATIONS).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = mac(&salted, b"Client Key");
        Self {
            iterations: ITERATIONS,
            salt,
            stored_key: digest::digest(&digest::SHA256, &client_key)
                .as_ref()
                .to_vec(),
            server_key: mac(&salted, b"Server Key"),
        }
    }

    /// Reads PostgreSQL's form, `SCRAM-SHA-256$4096:SALT$STOREDKEY:SERVERKEY`.
    ///
    /// ```
    /// use rask::internals::postgres::Verifier;
    /// let made = Verifier::from_password("sesame").to_string();
    /// assert!(made.starts_with("SCRAM-SHA-256$4096:"));
    /// assert_eq!(Verifier::parse(&made).unwrap().to_string(), made);
    /// assert!(Verifier::parse("md5abc").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "not a SCRAM-SHA-256 verifier ({MECHANISM}$ITERATIONS:SALT$STOREDKEY:SERVERKEY)"
            )
        };
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        let decode = |part: &str| BASE64.decode(part).map_err(|_| bad());
        let (salt, stored_key, server_key) = (decode(salt)?, decode(stored)?, decode(server)?);
        if iterations == 0 || salt.is_empty() || stored_key.len() != 32 || server_key.len() != 32 {
            return Err(bad());
        }
        Ok(Self {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// One that nothing matches, for a user who does not exist.
    fn unknown() -> Self {
        Self {
            iterations: ITERATIONS,
            salt: random::<16>().to_vec(),
            stored_key: random::<32>().to_vec(),
            server_key: random::<32>().to_vec(),
        }
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{MECHANISM}${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }
}

/// Finds the verifier of a user by name (`None`: no such user).
pub type Lookup = Arc<dyn Fn(&str) -> Option<Verifier> + Send + Sync>;

/// Where one connection's exchange stands.
enum Step {
    /// Waiting for the client's first message.
    Start,
    /// The server's first message sent.
    Challenged {
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
        user: String,
        verifier: Verifier,
    },
}

/// One connection's SCRAM-SHA-256 login.
pub struct ScramLogin {
    lookup: Lookup,
    manager: Arc<ConnectionManager>,
    step: Mutex<Step>,
}

impl ScramLogin {
    /// A login checked against `lookup`, registered for cancel requests with
    /// `manager` once in.
    pub fn new(lookup: Lookup, manager: Arc<ConnectionManager>) -> Self {
        Self {
            lookup,
            manager,
            step: Mutex::new(Step::Start),
        }
    }

    /// The server's first message, for the client's first.
    fn challenge(&self, user: &str, client_first: &[u8]) -> PgWireResult<(Step, String)> {
        let text = std::str::from_utf8(client_first).map_err(|_| malformed())?;
        // gs2-header: "n,," (no channel binding) or "y,," (could, did not).
        let (gs2_header, client_first_bare) = match text.get(..3) {
            Some("n,," | "y,,") => (&text[..3], &text[3..]),
            _ => {
                return Err(refused("08P01", "SCRAM channel binding is not supported"));
            }
        };
        let client_nonce = attribute(client_first_bare, 'r').ok_or_else(malformed)?;
        if client_nonce.is_empty() {
            return Err(malformed());
        }
        let verifier = (self.lookup)(user).unwrap_or_else(Verifier::unknown);
        let nonce = format!("{client_nonce}{}", BASE64.encode(random::<18>()));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations
        );
        let step = Step::Challenged {
            client_first_bare: client_first_bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            gs2_header: gs2_header.to_string(),
            user: user.to_string(),
            verifier,
        };
        Ok((step, server_first))
    }
}

/// `name=value` of a SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

/// Checks the client's final message; the server's signature when its proof holds.
fn verify(step: &Step, client_final: &[u8]) -> PgWireResult<Result<String, String>> {
    let Step::Challenged {
        client_first_bare,
        server_first,
        nonce,
        gs2_header,
        user,
        verifier,
    } = step
    else {
        return Err(malformed());
    };
    let text = std::str::from_utf8(client_final).map_err(|_| malformed())?;
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(malformed)?;
    let proof = BASE64.decode(proof).map_err(|_| malformed())?;
    let binding = attribute(without_proof, 'c').ok_or_else(malformed)?;
    if binding != BASE64.encode(gs2_header) || attribute(without_proof, 'r') != Some(nonce.as_str())
    {
        return Err(malformed());
    }
    let conversation = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = mac(&verifier.stored_key, conversation.as_bytes());
    if proof.len() != signature.len() {
        return Ok(Err(user.clone()));
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    let stored = digest::digest(&digest::SHA256, &client_key);
    if !constant_time_eq(stored.as_ref(), &verifier.stored_key) {
        return Ok(Err(user.clone()));
    }
    let server_signature = mac(&verifier.server_key, conversation.as_bytes());
    Ok(Ok(format!("v={}", BASE64.encode(server_signature))))
}

#[async_trait]
impl StartupHandler for ScramLogin {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.to_string()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let first = matches!(*self.step.lock(), Step::Start);
                if first {
                    let initial = message.into_sasl_initial_response()?;
                    if initial.auth_method != MECHANISM {
                        return Err(refused("28000", "only SCRAM-SHA-256 logins are accepted"));
                    }
                    let data = initial.data.ok_or_else(malformed)?;
                    let (step, server_first) = self.challenge(&user, &data)?;
                    *self.step.lock() = step;
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::SASLContinue(server_first.into_bytes().into()),
                        ))
                        .await?;
                    return Ok(());
                }
                let response = message.into_sasl_response()?;
                let verified = verify(&self.step.lock(), &response.data)?;
                let server_final = verified.map_err(|user| {
                    refused(
                        "28P01",
                        &format!("password authentication failed for user \"{user}\""),
                    )
                })?;
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(server_final.into_bytes().into()),
                    ))
                    .await?;
                let (pid, secret) = RandomPidSecretKeyGenerator::default().generate(client);
                client.set_pid_and_secret_key(pid, secret.clone());
                let (handle, guard) = self.manager.register(pid, secret);
                client
                    .session_extensions()
                    .insert::<Arc<ConnectionHandle>>(handle);
                client.session_extensions().insert::<ConnectionGuard>(guard);
                finish_authentication(client, &DefaultServerParameterProvider::default()).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system's generator does not fail on Linux; a zero salt or nonce
    // would still be a working (if weaker) one.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes
}

fn malformed() -> PgWireError {
    refused("08P01", "malformed SCRAM-SHA-256 message")
}

fn refused(code: &str, message: &str) -> PgWireError {
    super::refusal("FATAL", code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, as RFC 5802 computes it.
    fn client_final(password: &str, step: &Step) -> String {
        let Step::Challenged {
            client_first_bare,
            server_first,
            nonce,
            verifier,
            ..
        } = step
        else {
            panic!("challenged")
        };
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(verifier.iterations).unwrap(),
            &verifier.salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = mac(&salted, b"Client Key");
        let stored = digest::digest(&digest::SHA256, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let conversation = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mac(stored.as_ref(), conversation.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    fn login(users: &[(&str, &str)]) -> ScramLogin {
        let verifiers: std::collections::HashMap<String, Verifier> = users
            .iter()
            .map(|(name, password)| (name.to_string(), Verifier::from_password(password)))
            .collect();
        ScramLogin::new(
            Arc::new(move |name| verifiers.get(name).cloned()),
            Arc::new(ConnectionManager::new()),
        )
    }

    #[test]
    fn the_right_password_proves_itself_and_a_wrong_one_or_user_does_not() {
        let login = login(&[("ann", "sesame")]);
        for (user, password, ok) in [
            ("ann", "sesame", true),
            ("ann", "wrong", false),
            ("bob", "sesame", false),
        ] {
            let (step, _) = login.challenge(user, b"n,,n=,r=abc123").unwrap();
            let answer = client_final(password, &step);
            let verified = verify(&step, answer.as_bytes()).unwrap();
            assert_eq!(verified.is_ok(), ok, "{user}/{password}");
            if !ok {
                assert_eq!(verified.unwrap_err(), user);
            }
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let login = login(&[("ann", "sesame")]);
        for first in [
            &b"p=tls-unique,,n=,r=x"[..],
            b"n,,n=",
            b"n,,r=",
            b"\xff\xfe",
        ] {
            assert!(login.challenge("ann", first).is_err(), "{first:?}");
        }
        let (step, _) = login.challenge("ann", b"n,,n=,r=abc").unwrap();
        for last in [
            "c=biws,r=abc",
            "c=biws,r=other,p=AAAA",
            "c=eSws,r=abc,p=AAAA",
        ] {
            assert!(verify(&step, last.as_bytes()).is_err(), "{last}");
        }
    }
}
