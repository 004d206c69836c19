//! Any text as a query file: parsing and planning must answer with diagnostics, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let _ = eddy_engine::sql::parse(sql);
    let registry = eddy_connectors::registry();
    let _ = futures::executor::block_on(eddy_engine::plan_script("fuzz.sql", sql, &registry));
});
