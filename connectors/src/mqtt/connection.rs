//! What the source and the sink share: the broker address from a URL, credentials, TLS, client
//! options, and the backoff between reconnection attempts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use eddy_engine::OptionError;
use rumqttc::{MqttOptions, QoS, Transport};

/// Where the broker is, from `mqtt://[user[:password]@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("tcp://") {
            (false, r)
        } else {
            return Err(format!("'{url}' must start with mqtt:// or mqtts://"));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(user.to_string()), Some(pass.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{url}': unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p, url)?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p, url)?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("'{url}' has no host"));
        }
        Ok(Self {
            tls,
            host,
            port,
            username,
            password,
        })
    }
}

fn parse_port(p: &str, url: &str) -> Result<u16, String> {
    p.parse()
        .map_err(|_| format!("'{url}': '{p}' is not a port number"))
}

impl std::fmt::Display for BrokerAddress {
    /// The address without credentials, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Connection options common to the source and the sink, read from their configs.
#[derive(Debug, Clone)]
pub struct Connection {
    pub address: BrokerAddress,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its private key (PEM files).
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    pub keep_alive: Duration,
    /// `false`: the broker keeps the subscription and queues QoS 1 messages while Eddy is away.
    pub clean_session: bool,
}

/// The fields of a config that make a [`Connection`].
pub struct ConnectionOptions<'a> {
    pub url: &'a str,
    pub client_id: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub password_env: Option<&'a str>,
    pub ca_file: Option<&'a Path>,
    /// A client certificate (PEM) and its private key, for brokers that require one.
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    pub keep_alive: Duration,
    pub clean_session: bool,
    /// Used for the default client id.
    pub name: &'a str,
}

impl Connection {
    pub fn new(o: ConnectionOptions) -> Result<Self, OptionError> {
        let address = BrokerAddress::parse(o.url).map_err(|m| OptionError::invalid("url", m))?;
        let password = match (o.password, o.password_env) {
            (Some(_), Some(_)) => {
                return Err(OptionError::invalid(
                    "password_env",
                    "give either password or password_env, not both",
                ));
            }
            (Some(p), None) => Some(p.to_string()),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                OptionError::invalid(
                    "password_env",
                    format!("environment variable {var} is not set"),
                )
            })?),
            (None, None) => address.password.clone(),
        };
        let username = o.username.map(str::to_string).or(address.username.clone());
        if password.is_some() && username.is_none() {
            return Err(OptionError::invalid(
                "password",
                "a password needs a username",
            ));
        }
        for (option, given) in [
            ("ca_file", o.ca_file.is_some()),
            ("cert_file", o.cert_file.is_some()),
            ("key_file", o.key_file.is_some()),
        ] {
            if given && !address.tls {
                return Err(OptionError::invalid(option, "only mqtts:// URLs use TLS"));
            }
        }
        let client_certificate = match (o.cert_file, o.key_file) {
            (Some(c), Some(k)) => Some((c.to_path_buf(), k.to_path_buf())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(OptionError::invalid(
                    "key_file",
                    "a client certificate (cert_file) needs its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(OptionError::invalid(
                    "cert_file",
                    "a private key (key_file) needs its client certificate",
                ));
            }
        };
        let client_id = match o.client_id {
            Some(id) => id.to_string(),
            None if !o.clean_session => {
                return Err(OptionError::invalid(
                    "clean_session",
                    "a persistent session (clean_session = false) needs a fixed client_id, the name the broker keeps the session under",
                ));
            }
            None => format!("eddy-{}-{:08x}", o.name, crate::backoff::random_u32()),
        };
        Ok(Self {
            address,
            client_id,
            username,
            password,
            ca_file: o.ca_file.map(Path::to_path_buf),
            client_certificate,
            keep_alive: o.keep_alive,
            clean_session: o.clean_session,
        })
    }

    /// rumqttc options; reads the CA file for TLS.
    pub fn mqtt_options(&self) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(&self.client_id, &self.address.host, self.address.port);
        options.set_keep_alive(self.keep_alive.max(Duration::from_secs(5)));
        options.set_max_packet_size(1 << 20, 1 << 20);
        options.set_clean_session(self.clean_session);
        if let Some((user, password)) = self.credentials() {
            options.set_credentials(user, password);
        }
        if let Some(tls) = self.tls()? {
            options.set_transport(tls);
        }
        Ok(options)
    }

    /// rumqttc's MQTT 5 options; reads the CA file for TLS. A persistent session
    /// (`clean_session = false`) never expires, as an MQTT 3.1.1 one does not.
    pub fn mqtt5_options(&self) -> Result<rumqttc::v5::MqttOptions, String> {
        let mut options =
            rumqttc::v5::MqttOptions::new(&self.client_id, &self.address.host, self.address.port);
        options.set_keep_alive(self.keep_alive.max(Duration::from_secs(5)));
        options.set_max_packet_size(Some(1 << 20));
        options.set_clean_start(self.clean_session);
        if !self.clean_session {
            options.set_session_expiry_interval(Some(u32::MAX));
        }
        if let Some((user, password)) = self.credentials() {
            options.set_credentials(user, password);
        }
        if let Some(tls) = self.tls()? {
            options.set_transport(tls);
        }
        Ok(options)
    }

    /// The user and password to connect with, if a user is set.
    fn credentials(&self) -> Option<(&str, String)> {
        let user = self.username.as_deref()?;
        Some((user, self.password.clone().unwrap_or_default()))
    }

    /// The TLS transport of an `mqtts://` broker (reads the CA file); `None` for `mqtt://`.
    fn tls(&self) -> Result<Option<Transport>, String> {
        if !self.address.tls {
            return Ok(None);
        }
        crate::install_tls_provider();
        let ca = read_ca(self.ca_file.as_deref())?;
        let client_auth = match &self.client_certificate {
            Some((cert, key)) => {
                let read = |path: &Path, what: &str| {
                    std::fs::read(path)
                        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
                };
                Some((read(cert, "client certificate")?, read(key, "private key")?))
            }
            None => None,
        };
        Ok(Some(Transport::tls(ca, client_auth, None)))
    }
}

/// The CA certificates for TLS: the given file, else the system's bundle.
fn read_ca(file: Option<&Path>) -> Result<Vec<u8>, String> {
    const SYSTEM_BUNDLES: [&str; 3] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    match file {
        Some(f) => {
            std::fs::read(f).map_err(|e| format!("cannot read CA file {}: {e}", f.display()))
        }
        None => SYSTEM_BUNDLES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| "no system CA bundle found; set ca_file".to_string()),
    }
}

pub fn qos(level: u8) -> Result<QoS, OptionError> {
    match level {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(OptionError::invalid(
            "qos",
            format!("{level} is not supported; use 0 or 1"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_tls_and_credentials() {
        let a = BrokerAddress::parse("mqtt://localhost").unwrap();
        assert_eq!((a.tls, a.host.as_str(), a.port), (false, "localhost", 1883));
        let a = BrokerAddress::parse("mqtts://u:p@broker.example:8884").unwrap();
        assert_eq!(
            (a.tls, a.host.as_str(), a.port),
            (true, "broker.example", 8884)
        );
        assert_eq!(a.username.as_deref(), Some("u"));
        assert_eq!(a.password.as_deref(), Some("p"));
        assert_eq!(a.to_string(), "mqtts://broker.example:8884");
        let a = BrokerAddress::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 1884));
        assert!(
            BrokerAddress::parse("http://x")
                .unwrap_err()
                .contains("mqtt://")
        );
        assert!(
            BrokerAddress::parse("mqtt://h:port")
                .unwrap_err()
                .contains("not a port")
        );
    }
}
