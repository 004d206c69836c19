//! An MQTT broker inside the process (rumqttd), on a free loopback port: the demo needs nothing
//! installed, and the tests have a real broker of their own.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

pub struct EmbeddedBroker {
    port: u16,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port and waits until it accepts MQTT connections.
    pub async fn start() -> std::io::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let server = ServerSettings {
            name: "v4".into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            tls: None,
            next_connection_delay_ms: 1,
            connections: ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: 1 << 20,
                max_inflight_count: 500,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: 10_000,
                max_outgoing_packet_count: 200,
                max_segment_size: 100 << 20,
                max_segment_count: 10,
                ..Default::default()
            },
            v4: Some(HashMap::from([("1".to_string(), server)])),
            ..Default::default()
        };
        let mut broker = Broker::new(config);
        std::thread::Builder::new()
            .name(format!("mqtt-broker-{port}"))
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("embedded MQTT broker stopped: {e}");
                }
            })?;
        let b = Self { port };
        b.wait_ready().await?;
        Ok(b)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) -> std::io::Result<()> {
        for _ in 0..100 {
            let options = MqttOptions::new("eddy-broker-probe", "127.0.0.1", self.port);
            let (client, mut events) = AsyncClient::new(options, 4);
            let connected = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await
            .unwrap_or(false);
            let _ = client.try_disconnect();
            if connected {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(std::io::Error::other(format!(
            "the embedded MQTT broker did not start on port {}",
            self.port
        )))
    }
}
