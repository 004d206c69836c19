//! Bearer tokens: read from a file of `name:token` lines (`--tokens-file` or `EDDY_TOKENS_FILE`)
//! or one token in `EDDY_TOKEN`; a request's token is compared with each in constant time, and
//! the name of the one it matches is who made a change. Tokens are never logged.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Who called: the name of the token presented (`anonymous` when the service has none).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

pub struct Tokens {
    /// (name, token)
    known: Vec<(String, String)>,
}

impl Tokens {
    /// The tokens of `file` (lines `name:token`; blank lines and `#` comments skipped) and of
    /// `single` (named `default`).
    pub fn load(file: Option<&Path>, single: Option<String>) -> Result<Self> {
        let mut known = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the tokens file {}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((name, token)) = line.split_once(':') else {
                    bail!("{}:{}: expected name:token", path.display(), n + 1);
                };
                let (name, token) = (name.trim(), token.trim());
                if name.is_empty() || token.len() < 16 {
                    bail!(
                        "{}:{}: a token needs a name and at least 16 characters",
                        path.display(),
                        n + 1
                    );
                }
                known.push((name.to_string(), token.to_string()));
            }
        }
        if let Some(token) = single.filter(|t| !t.is_empty()) {
            if token.len() < 16 {
                bail!("EDDY_TOKEN needs at least 16 characters");
            }
            known.push(("default".to_string(), token));
        }
        Ok(Self { known })
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The caller a request's bearer token names; `None` when it names none. Without tokens
    /// every caller is `anonymous`.
    pub fn caller(&self, presented: Option<&str>) -> Option<Caller> {
        if self.known.is_empty() {
            return Some(Caller("anonymous".to_string()));
        }
        let presented = presented?.as_bytes();
        // Every token is compared, whatever matched before: the time taken says nothing.
        let mut found = None;
        for (name, token) in &self.known {
            if constant_time_eq(token.as_bytes(), presented) {
                found = Some(name);
            }
        }
        found.map(|n| Caller(n.clone()))
    }
}

/// Equal bytes, in a time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_callers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tokens");
        std::fs::write(
            &file,
            "# operators\nops:0123456789abcdef0123\n\nci:fedcba9876543210fedc\n",
        )
        .expect("written");
        let tokens = Tokens::load(Some(&file), None).expect("loaded");
        let caller = |t: Option<&str>| tokens.caller(t).map(|c| c.0);
        assert_eq!(caller(Some("0123456789abcdef0123")).as_deref(), Some("ops"));
        assert_eq!(caller(Some("fedcba9876543210fedc")).as_deref(), Some("ci"));
        assert_eq!(caller(Some("0123456789abcdef012")), None);
        assert_eq!(caller(Some("")), None);
        assert_eq!(caller(None), None);

        std::fs::write(&file, "ops 0123456789abcdef0123\n").expect("written");
        let e = Tokens::load(Some(&file), None).err().expect("refused");
        assert!(e.to_string().contains(":1: expected name:token"), "{e}");
        assert!(Tokens::load(None, Some("short".into())).is_err());

        let none = Tokens::load(None, None).expect("none");
        assert_eq!(none.caller(None).map(|c| c.0).as_deref(), Some("anonymous"));
    }
}
