use super::*;

fn records(dir: &Path, from: u64, upto: u64) -> Vec<(u32, String, String)> {
    let mut reader = LogReader::open(dir, from).expect("reader");
    let mut out = Vec::new();
    loop {
        let read = reader.read(upto, 3).expect("read");
        if read.is_empty() {
            return out;
        }
        out.extend(read.iter().map(|r| {
            (
                r.id,
                String::from_utf8_lossy(r.origin).to_string(),
                String::from_utf8_lossy(r.payload).to_string(),
            )
        }));
    }
}

#[test]
fn records_read_back_across_segments_from_any_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), |_| {}).expect("opened");
    let mut appender = log.appender.with_segment_bytes(100);
    let mut ends = Vec::new();
    for i in 0..20u32 {
        ends.push(appender.push(i, 7, b"plant/m1", format!("reading {i}").as_bytes()));
        if i % 3 == 2 {
            assert_eq!(appender.commit().expect("committed"), *ends.last().unwrap());
        }
    }
    let end = appender.commit().expect("committed");
    assert_eq!(end, ends[19]);
    assert!(segments(dir.path()).unwrap().len() > 3, "segments rolled");

    let all = records(dir.path(), 0, end);
    assert_eq!(all.len(), 20);
    let mut reader = LogReader::open(dir.path(), 0).expect("reader");
    let first = reader.read(end, 1).expect("read");
    assert_eq!(
        first.iter().map(|r| r.received).collect::<Vec<_>>(),
        [7],
        "the time a record was received reads back"
    );
    assert_eq!(all[7], (7, "plant/m1".into(), "reading 7".into()));
    // From the end of record 11, up to the end of record 15.
    let some = records(dir.path(), ends[11], ends[15]);
    assert_eq!(
        some.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![12, 13, 14, 15]
    );
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_two_newest_segments_are_shown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), |_| {}).expect("opened");
    let mut appender = log.appender.with_segment_bytes(60);
    for i in 0..10u32 {
        appender.push(i, 7, b"t", b"0123456789");
        appender.commit().expect("committed");
    }
    let end = appender.end();
    drop(appender);
    // A crash in the middle of a write: half a record at the end.
    let newest = *segments(dir.path()).unwrap().last().unwrap();
    let path = segment_path(dir.path(), newest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[30, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, bytes).unwrap();

    let mut seen = Vec::new();
    let log = open(dir.path(), |r| seen.push(r.id)).expect("reopened");
    assert_eq!(log.end, end, "the torn record is cut off");
    assert_eq!(log.first, 0);
    assert!(
        seen.len() >= 2 && seen.ends_with(&[9]),
        "recent records {seen:?}"
    );
    // Appending goes on after the last whole record.
    let mut appender = log.appender;
    appender.push(10, 7, b"t", b"again");
    let end = appender.commit().unwrap();
    assert_eq!(records(dir.path(), 0, end).len(), 11);
}

#[test]
fn segments_behind_an_offset_are_removed_but_the_two_newest_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), |_| {}).expect("opened");
    let mut appender = log.appender.with_segment_bytes(40);
    let mut ends = Vec::new();
    for i in 0..12u32 {
        ends.push(appender.push(i, 7, b"t", b"0123456789"));
        appender.commit().unwrap();
    }
    let before = segments(dir.path()).unwrap();
    let first = remove_before(dir.path(), ends[5]).unwrap();
    let after = segments(dir.path()).unwrap();
    assert!(after.len() < before.len());
    assert_eq!(after[0], first);
    assert!(
        first <= ends[5],
        "the record after offset {} is kept",
        ends[5]
    );
    assert_eq!(records(dir.path(), ends[5], ends[11]).len(), 6);
    // Removing behind the end still keeps the two newest segments.
    remove_before(dir.path(), ends[11]).unwrap();
    assert_eq!(segments(dir.path()).unwrap().len(), 2);
    assert!(matches!(
        LogReader::open(dir.path(), 0),
        Err(LogError::NotKept { .. })
    ));
}

#[test]
fn a_damaged_record_is_an_error_naming_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), |_| {}).expect("opened");
    let mut appender = log.appender;
    appender.push(1, 7, b"t", b"first");
    appender.push(2, 7, b"t", b"second");
    let end = appender.commit().unwrap();
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut reader = LogReader::open(dir.path(), 0).unwrap();
    let error = reader
        .read(end, 10)
        .err()
        .expect("damage found")
        .to_string();
    assert!(error.contains("damaged"), "{error}");
}
