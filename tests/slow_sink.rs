//! A slow sink slows the source down instead of filling memory: the alerts file is a FIFO that
//! the test reads slowly, so every write of the file sink waits; the bounded channels between the
//! sink, the query and the source fill, and the source stops reading: when half the alerts have been
//! read, Eddy has read not much more than half its input, its memory stays far below what holding
//! the whole input would take, and every row arrives.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

/// Resident memory of a process, from /proc (bytes).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Bytes a process has read so far (`rchar` in /proc/PID/io: its input file, the query file).
fn bytes_read(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))?
        .trim()
        .parse()
        .ok()
}

#[test]
fn a_slow_sink_slows_the_source_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = 1_000_000u64;
    let mut input = Vec::with_capacity(200 << 20);
    for i in 0..rows {
        writeln!(
            input,
            r#"{{"device_id":"machine-{:04}","temp":{}.5,"ts":{},"note":"padding padding padding padding"}}"#,
            i % 1000,
            i % 90,
            1_767_225_600_000 + i
        )
        .unwrap();
    }
    let input_bytes = input.len() as u64;
    std::fs::write(dir.path().join("input.jsonl"), input).expect("input written");
    let fifo = dir.path().join("alerts.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    std::fs::write(
        dir.path().join("q.sql"),
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
          WITH (connector = 'file', path = 'input.jsonl', batch_size = 1000);
         CREATE SINK alerts WITH (connector = 'file', path = 'alerts.fifo');
         INSERT INTO alerts SELECT device_id, temp, ts FROM readings;",
    )
    .expect("query written");
    let mut eddy = common::eddy()
        .current_dir(dir.path())
        .args(["run", "q.sql", "--quiet"])
        .env("EDDY_LOG", "warn")
        .spawn()
        .expect("eddy starts");
    let pid = eddy.id();

    // Read the FIFO slowly: 512 KiB every 10 ms (about 50 MB/s, a tenth of what Eddy can
    // write), watching Eddy's memory from when the first rows come out.
    let mut reader = std::fs::File::open(&fifo).expect("the FIFO opens");
    let mut buf = vec![0u8; 512 << 10];
    let mut baseline = None;
    let mut received = 0u64;
    let mut lines = 0u64;
    let mut peak = 0u64;
    let mut read_at_half = None;
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        received += n as u64;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if lines >= rows / 2 && read_at_half.is_none() {
            read_at_half = bytes_read(pid);
        }
        if let Some(r) = rss(pid) {
            baseline.get_or_insert(r);
            peak = peak.max(r);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = eddy.wait().expect("eddy ends");
    assert!(status.success());
    assert_eq!(lines, rows, "every row arrives ({received} bytes)");
    let grew = peak.saturating_sub(baseline.unwrap_or(peak));
    let read_at_half = read_at_half.expect("/proc/PID/io is readable");
    eprintln!(
        "memory grew by {grew} bytes while the sink was slow; {read_at_half} of {input_bytes} \
         input bytes read when half the rows were out"
    );
    // In flight at most: the source channel (16 batches), the sink channel (64 batches) and the
    // batches being worked on, of 1,000 rows each: under 10% of the rows. Had the source not
    // waited, it would have read all its input long before the reader got half the rows.
    assert!(
        read_at_half < input_bytes * 7 / 10,
        "{read_at_half} of {input_bytes} input bytes read when half the rows were out: the source did not wait"
    );
    // Holding every row as Arrow arrays would take about 32 bytes a row (32 MB here).
    assert!(
        grew < 12 << 20,
        "memory grew by {grew} bytes while the sink was slow, for {input_bytes} bytes of input: \
         rows piled up"
    );
}
