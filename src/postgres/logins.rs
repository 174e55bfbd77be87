//! [`Logins`]: who may connect to the PostgreSQL port, and how they prove it.
//!
//! Passwords go by SCRAM-SHA-256, never in clear, checked against verifiers
//! ([`Verifier`]: PostgreSQL's StoredKey and ServerKey), so the server keeps
//! nothing that logs in. PostgreSQL users are not the cluster's token
//! holders: they come from `--pg-user NAME:PASSWORD` (a verifier made when the
//! server starts) or `--pg-users-file` (lines `NAME:SCRAM-SHA-256$…`, as
//! PostgreSQL's `pg_authid` keeps them, or as `rask pg-verifier` prints them);
//! with neither, the cluster's token is the password of any user name. With
//! no token either, connections are trusted (a server on loopback).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::scram::{Lookup, Verifier};
use crate::{Error, Result};

/// How connections get in.
#[derive(Clone)]
pub enum Logins {
    /// Any user, no password.
    Trust,
    /// By SCRAM-SHA-256, against these verifiers.
    Scram(Arc<Passwords>),
}

/// What SCRAM checks a password against.
pub enum Passwords {
    /// These users only.
    Users(HashMap<String, Verifier>),
    /// Any user name, one password (the cluster's token).
    Anyone(Verifier),
}

impl Logins {
    /// Users by name with their passwords (`--pg-user`) and those of
    /// `users_file`; when there are none, `token` as the password of any user;
    /// with neither, trust.
    pub fn new(
        users: &[(String, String)],
        users_file: Option<&Path>,
        token: Option<&str>,
    ) -> Result<Self> {
        let mut by_name: HashMap<String, Verifier> = match users_file {
            Some(path) => read_users_file(path)?,
            None => HashMap::new(),
        };
        for (name, password) in users {
            by_name.insert(name.clone(), Verifier::from_password(password));
        }
        if !by_name.is_empty() {
            return Ok(Logins::Scram(Arc::new(Passwords::Users(by_name))));
        }
        Ok(match token {
            Some(token) => {
                Logins::Scram(Arc::new(Passwords::Anyone(Verifier::from_password(token))))
            }
            None => Logins::Trust,
        })
    }

    /// In words, for the log.
    pub fn describe(&self) -> String {
        match self {
            Logins::Trust => "trusted".into(),
            Logins::Scram(passwords) => match passwords.as_ref() {
                Passwords::Users(users) => format!("SCRAM-SHA-256, {} users", users.len()),
                Passwords::Anyone(_) => "SCRAM-SHA-256, the cluster's token as password".into(),
            },
        }
    }

    /// Finds a user's verifier, when logins go by SCRAM.
    pub(crate) fn lookup(&self) -> Option<Lookup> {
        let Logins::Scram(passwords) = self else {
            return None;
        };
        let passwords = Arc::clone(passwords);
        Some(Arc::new(move |user: &str| match passwords.as_ref() {
            Passwords::Users(users) => users.get(user).cloned(),
            Passwords::Anyone(verifier) => Some(verifier.clone()),
        }))
    }
}

/// The users of a file of `NAME:VERIFIER` lines (`#` starts a comment).
fn read_users_file(path: &Path) -> Result<HashMap<String, Verifier>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let (name, verifier) = line
            .split_once(':')
            .ok_or_else(|| Error::Config(format!("{}: expected NAME:SCRAM-SHA-256$…", at())))?;
        let verifier =
            Verifier::parse(verifier).map_err(|e| Error::Config(format!("{}: {e}", at())))?;
        if name.is_empty() || users.insert(name.to_string(), verifier).is_some() {
            return Err(Error::Config(format!(
                "{}: a user named {name:?} twice, or no name",
                at()
            )));
        }
    }
    Ok(users)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_file_gives_users_and_its_mistakes_name_their_line() {
        let dir = std::env::temp_dir().join(format!("rask-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users");
        let ann = Verifier::from_password("sesame");
        std::fs::write(&file, format!("# who may log in\n\nann:{ann}\n")).unwrap();
        let logins = Logins::new(&[("bob".into(), "pw".into())], Some(&file), None).unwrap();
        let lookup = logins.lookup().unwrap();
        assert!(lookup("ann").is_some() && lookup("bob").is_some() && lookup("eve").is_none());
        std::fs::write(&file, format!("ann:{ann}\nbob:md5abcdef\n")).unwrap();
        let err = Logins::new(&[], Some(&file), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("users:2: not a SCRAM-SHA-256 verifier"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
