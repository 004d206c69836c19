//! A private Mosquitto for fault tests: a free port, persistence in a temporary directory,
//! stopped and started by the test. Needs the `mosquitto` binary (Debian's package); a test that
//! uses it fails when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    child: Child,
}

impl Mosquitto {
    pub fn start(config: &Path) -> Self {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt install mosquitto)");
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: Mosquitto saves its sessions and queued messages, then exits.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the configuration of a private broker with persistence in `dir` (plus `extra` lines)
/// and starts it: the broker, its port and its configuration file (to start it again).
pub fn private(dir: &Path, extra: &str) -> (Mosquitto, u16, PathBuf) {
    // Mosquitto started as root runs as the user `mosquitto`: let it write its database here.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("permissions");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n{extra}",
            dir.display()
        ),
    )
    .expect("config written");
    let broker = Mosquitto::start(&config);
    wait_for_port(port);
    (broker, port, config)
}
