#![no_main]
//! Recovery over a write-ahead log whose tail is arbitrary bytes (after one valid acknowledged
//! insert): opening the store gives a typed error or a store that still holds the acknowledged
//! record and answers every read — never a panic, never a lost acknowledged record.
use std::sync::Arc;

use abis_engine::store::{Directory, MemDirectory, Record, Store, StoreConfig};
use libfuzzer_sys::fuzz_target;

fn config() -> StoreConfig {
    let mut c = StoreConfig::new(4);
    c.background = false;
    c
}

fuzz_target!(|tail: &[u8]| {
    let dir = MemDirectory::new();
    let record = Record {
        reference_id: "100000000001".into(),
        faces: vec![vec![0.5, 0.5, 0.5, 0.5]],
        ..Record::default()
    };
    {
        let (store, _) = Store::open_in(Arc::new(dir.clone()), config()).expect("new store");
        store.insert(record.clone()).expect("insert");
    }
    let wal = dir
        .list()
        .expect("list")
        .into_iter()
        .find(|n| n.starts_with("wal-"))
        .expect("a log file");
    dir.append_durable(&wal, tail).expect("append");
    if let Ok((store, _)) = Store::open_in(Arc::new(dir), config()) {
        let got = store.get("100000000001").expect("read");
        assert!(got.is_some_and(|r| r.same_content(&record)), "acknowledged record lost");
        let _ = store.snapshot();
        let _ = store.count();
    }
});
