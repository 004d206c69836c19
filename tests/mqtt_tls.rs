//! MQTT over TLS with client certificates, against a private Mosquitto (Debian's build) whose TLS
//! listener requires a certificate signed by the test's CA (`require_certificate true`). The CA,
//! the broker's and the client's certificates are made with the `openssl` command. A source and a
//! sink that present the client certificate read and publish; one without it is refused.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mosquitto;

/// A CA, and version 3 certificates it signs for the broker (127.0.0.1) and for a client.
fn certificates(dir: &Path) {
    const SCRIPT: &str = "set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.crt -subj '/CN=eddy test CA'
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1'
        echo 'subjectAltName=IP:127.0.0.1' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out server.crt -extfile server.ext
        openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj '/CN=eddy'
        echo 'extendedKeyUsage=clientAuth' > client.ext
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt -extfile client.ext
        chmod 644 *";
    let out = Command::new("sh")
        .args(["-c", SCRIPT])
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "the openssl command must be installed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_opens_a_broker_that_requires_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    certificates(&certs);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let c = certs.display();
    let (_broker, _port, _) = mosquitto::private(
        dir.path(),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {c}/ca.crt\ncertfile {c}/server.crt\nkeyfile {c}/server.key\nrequire_certificate true\n"
        ),
    );
    mosquitto::wait_for_port(tls_port);
    let out = dir.path().join("out.jsonl");
    let query = dir.path().join("q.sql");
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let tls = format!(
        "ca_file = '{c}/ca.crt', cert_file = '{c}/client.crt', key_file = '{c}/client.key'"
    );
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE)
               WITH (connector = 'mqtt', url = '{url}', topic = 'tls/in', {tls});
             CREATE SINK relayed WITH (connector = 'mqtt', url = '{url}', topic = 'tls/out', {tls});
             CREATE SINK out WITH (connector = 'file', path = '{}');
             INSERT INTO relayed SELECT device_id, temp FROM readings;
             INSERT INTO out SELECT device_id, temp FROM readings;",
            out.display()
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "subscribed to");
    // A second Eddy reads what the first relayed, and publishes nothing: the sink's certificate
    // got the relayed readings through.
    let relay = dir.path().join("relay.sql");
    let relayed = dir.path().join("relayed.jsonl");
    std::fs::write(
        &relay,
        format!(
            "CREATE SOURCE relayed (device_id TEXT, temp DOUBLE)
               WITH (connector = 'mqtt', url = '{url}', topic = 'tls/out', {tls});
             CREATE SINK out WITH (connector = 'file', path = '{}');
             INSERT INTO out SELECT device_id, temp FROM relayed;",
            relayed.display()
        ),
    )
    .expect("relay written");
    let second = common::run_until_logged(&relay, "subscribed to");
    // The test publishes with the client certificate too, through the sink of a third run that
    // reads a file.
    let input = dir.path().join("input.jsonl");
    std::fs::write(
        &input,
        "{\"device_id\":\"m1\",\"temp\":81.5}\n{\"device_id\":\"m2\",\"temp\":79}\n",
    )
    .expect("input");
    let publish = dir.path().join("publish.sql");
    std::fs::write(
        &publish,
        format!(
            "CREATE SOURCE input (device_id TEXT, temp DOUBLE) WITH (connector = 'file', path = '{}');
             CREATE SINK broker WITH (connector = 'mqtt', url = '{url}', topic = 'tls/in', qos = 1, {tls});
             INSERT INTO broker SELECT * FROM input;",
            input.display()
        ),
    )
    .expect("publisher written");
    let path = dir.path().to_path_buf();
    let published = common::run_eddy(&path, &["run", "publish.sql", "--quiet"], &[]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    common::wait_until("the readings, relayed", Duration::from_secs(20), || {
        std::fs::read_to_string(&relayed).is_ok_and(|t| t.lines().count() == 2)
            && std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 2)
    });
    drop(second);
    drop(eddy);

    // Without the client certificate, the broker refuses the connection.
    std::fs::write(
        &publish,
        format!(
            "CREATE SOURCE input (device_id TEXT, temp DOUBLE) WITH (connector = 'file', path = '{}');
             CREATE SINK broker WITH (connector = 'mqtt', url = '{url}', topic = 'tls/in', qos = 1,
                                      ca_file = '{c}/ca.crt', flush_timeout = '2s', retries = '0');
             INSERT INTO broker SELECT * FROM input;",
            input.display()
        ),
    )
    .expect("publisher written");
    let refused = common::run_eddy(&path, &["run", "publish.sql", "--quiet"], &[]);
    let log = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() || log.contains("cannot reach the broker"),
        "{log}"
    );
}
