//! Secrets: referenced from env or files in the config, held in a type that never prints them.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A secret value. `Debug` and `Display` print `***`; only `expose` yields the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret. Errors name the variable or file, never the value.
    pub fn load(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            },
            SecretRef::File(path) => {
                let v = read_secret_file(path)?;
                let v = v.trim_end_matches(['\n', '\r']).to_string();
                if v.is_empty() {
                    Err(format!("secret file {} is empty", path.display()))
                } else {
                    Ok(Secret(v))
                }
            }
        }
    }
}

/// The largest secret file read; tokens and keys are far smaller.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a secret file, refusing anything but a regular file (a FIFO or `/dev/zero` would
/// block or never end) and anything over [`MAX_SECRET_FILE_BYTES`].
fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let cannot =
        |e: std::io::Error| format!("cannot read secret file {}: {}", path.display(), e.kind());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!(
            "secret file {} is not a regular file",
            path.display()
        ));
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "secret file {} is larger than {} KiB",
            path.display(),
            MAX_SECRET_FILE_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("secret file {} is not UTF-8", path.display()))
}

const EXPECTED: &str = "a secret reference { env = \"NAME\" } or { file = \"PATH\" }";

/// Hand-written so that a secret pasted inline (`api_key = "s3cr3t"`) is refused
/// without serde echoing the value into the error message.
impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, _v: &str) -> Result<SecretRef, E> {
                Err(E::custom(format!(
                    "inline secrets are not accepted (value not shown); use {EXPECTED}"
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found: Option<SecretRef> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let parsed = match key.as_str() {
                        "env" => SecretRef::Env(value),
                        "file" => SecretRef::File(PathBuf::from(value)),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}`; expected {EXPECTED}"
                            )));
                        }
                    };
                    if found.replace(parsed).is_some() {
                        return Err(de::Error::custom(format!(
                            "give exactly one of env/file in {EXPECTED}"
                        )));
                    }
                }
                found.ok_or_else(|| de::Error::custom(format!("empty table; expected {EXPECTED}")))
            }
        }
        d.deserialize_any(RefVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[allow(dead_code)]
        key: SecretRef,
    }

    /// As the config loader does it: TOML → value → typed, so errors never quote source lines.
    fn parse(text: &str) -> Result<Holder, String> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        Holder::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())
    }

    #[test]
    fn inline_secret_is_refused_without_echo() {
        let err = parse("key = \"hunter2\"").unwrap_err();
        assert!(err.contains("inline secrets are not accepted"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn env_and_file_references_parse() {
        let h = parse("key = { env = \"X_TOKEN\" }").unwrap();
        assert_eq!(h.key, SecretRef::Env("X_TOKEN".into()));
        let h = parse("key = { file = \"/run/s\" }").unwrap();
        assert_eq!(h.key, SecretRef::File("/run/s".into()));
        assert!(parse("key = { env = \"A\", file = \"B\" }").is_err());
    }

    #[test]
    fn missing_env_names_the_variable_only() {
        let err = SecretRef::Env("SPENDWATCH_TEST_SURELY_UNSET".into())
            .load()
            .unwrap_err();
        assert!(err.contains("SPENDWATCH_TEST_SURELY_UNSET"));
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        assert_eq!(SecretRef::File(path).load().unwrap().expose(), "s3cr3t");
    }

    /// `/dev/zero` never ends and a FIFO blocks until a writer comes: both are refused at
    /// once instead of hanging `check` or the daemon's start.
    #[test]
    fn devices_and_fifos_are_refused_not_read() {
        let err = SecretRef::File("/dev/zero".into()).load().unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = SecretRef::File(fifo).load().unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn an_oversized_secret_file_is_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let body = "k".repeat(MAX_SECRET_FILE_BYTES as usize + 1);
        std::fs::write(&path, &body).unwrap();
        let err = SecretRef::File(path).load().unwrap_err();
        assert!(err.contains("larger than 64 KiB"), "{err}");
        assert!(!err.contains("kkkk"), "{err}");
    }
}
