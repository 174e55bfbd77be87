//! [`Logins`]: who may connect to the PostgreSQL port, and how they prove it.
//!
//! Passwords go by SCRAM-SHA-256, never in clear: the server keeps only each
//! password salted and hashed (RFC 5802's `SaltedPassword`), made once when it
//! starts. PostgreSQL users are not the cluster's token holders: they come
//! from `--pg-user NAME:PASSWORD`; with none, the cluster's token is the
//! password of any user name. With neither, connections are trusted (a
//! server on loopback).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password, random_nonce};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

/// How connections get in.
#[derive(Clone)]
pub enum Logins {
    /// Any user, no password.
    Trust,
    /// By SCRAM-SHA-256, against these salted passwords.
    Scram(Arc<Passwords>),
}

impl Logins {
    /// Users by name with their passwords (`--pg-user`); when there are none,
    /// `token` as the password of any user; with neither, trust.
    pub fn new(users: &[(String, String)], token: Option<&str>) -> Self {
        if !users.is_empty() {
            let by_name = users
                .iter()
                .map(|(name, password)| (name.clone(), Salted::new(password)))
                .collect();
            return Logins::Scram(Arc::new(Passwords::Users(by_name)));
        }
        match token {
            Some(token) => Logins::Scram(Arc::new(Passwords::Anyone(Salted::new(token)))),
            None => Logins::Trust,
        }
    }

    /// In words, for the log.
    pub fn describe(&self) -> &'static str {
        match self {
            Logins::Trust => "trusted",
            Logins::Scram(passwords) => match passwords.as_ref() {
                Passwords::Users(_) => "SCRAM-SHA-256, --pg-user's users",
                Passwords::Anyone(_) => "SCRAM-SHA-256, the cluster's token as password",
            },
        }
    }
}

/// What SCRAM checks a password against.
pub enum Passwords {
    /// These users only.
    Users(HashMap<String, Salted>),
    /// Any user name, one password.
    Anyone(Salted),
}

impl Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Passwords::Users(users) => write!(f, "Passwords({} users)", users.len()),
            Passwords::Anyone(_) => f.write_str("Passwords(anyone)"),
        }
    }
}

/// A password as SCRAM keeps it: a random salt and the salted hash.
pub struct Salted {
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Salted {
    fn new(password: &str) -> Self {
        let salt = random_nonce().into_bytes();
        let hash = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { salt, hash }
    }
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let salted = match self {
            Passwords::Anyone(salted) => Some(salted),
            Passwords::Users(users) => users.get(user),
        };
        match salted {
            Some(salted) => Ok(Password::new(
                Some(salted.salt.clone()),
                salted.hash.clone(),
            )),
            // As PostgreSQL does: a user that does not exist fails as a wrong password.
            None => Err(PgWireError::InvalidPassword(user.to_string())),
        }
    }
}

/// `NAME:PASSWORD`, as `--pg-user` takes it.
pub fn parse_user(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((name.to_string(), password.to_string()))
        }
        _ => Err(format!("'{text}' is not NAME:PASSWORD")),
    }
}
