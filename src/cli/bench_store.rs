//! `petrel bench store`: the node's log on this machine's disk (issue: persistent records).
//!
//! Method, in order, in a fresh directory (`--dir`, default under the system temp dir):
//! 1. **Put**: `--records N` records of `--value-size B` bytes appended by `--writers W`
//!    threads at once (default 32), one record per `append` call, each call timed. With
//!    `sync = batch` the log's group commit shares one fdatasync among the writers waiting,
//!    as the node's write batches do (there, one batch carries every STORE that arrived
//!    during the previous write).
//! 2. **Get from the log**: every record read back once through `Log::get` (a positional
//!    read and a CRC check, from the page cache: the log's cold path), each timed.
//! 3. **Update and compact**: every record written again with the next sequence number (half
//!    the file is now garbage), then one compaction, timed.
//! 4. **Restart**: the log reopened (index rebuilt from the file), timed; then a node started
//!    on the directory, which restores the records into its store, timed up to the moment
//!    it answers (its hot tier, `store_hot_bytes`, 8 MiB by default, holds the values it
//!    read last; the others stay in the log). Then `Handle::get` of 2,000 distinct keys it
//!    holds, each timed: a key whose value is not in memory is read back from the log by a
//!    worker (the cold path through the whole node); then one key again and again (hot).
//! 5. **Hot get in the store**: the DHT's in-memory store alone, filled with the records,
//!    each looked up once (no reactor, no channel).
//!
//! Bytes written per byte stored counts every byte the log wrote (headers, CRCs and the
//! compaction's rewrite included) against the value bytes handed to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{flag, parse_flag, switch};
use crate::config::Config;
use crate::identity::Keypair;
use crate::kad::persist::RecordPayload;
use crate::node::Node;
use crate::protocol::jobs::unix_ms;
use crate::stats::Spread;
use crate::store::{Entry, EntryKey, Kind, Log, LogConfig, SyncMode};
use crate::wire::messages::Record;

/// The options of `petrel bench store`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Records written (default 16,384: the store's default record cap).
    pub records: usize,
    /// Value bytes per record (default 4,096: 64 MiB at the default count).
    pub value_size: usize,
    /// Durability mode.
    pub sync: SyncMode,
    /// Threads appending at once (default 32: STOREs a busy node has waiting at once; the
    /// node's own batches take whatever arrived during one write, up to 4,096).
    pub writers: usize,
    /// Directory for the log (removed afterwards); default a fresh one under the temp dir.
    pub dir: Option<PathBuf>,
    /// One JSON object on stdout.
    pub json: bool,
}

impl StoreOptions {
    /// Parses `[--records N] [--value-size B] [--sync none|batch|always] [--writers W]
    /// [--dir DIR] [--json]`.
    pub fn parse(args: &[String]) -> Result<StoreOptions, String> {
        let records = parse_flag(args, "--records")?.unwrap_or(16_384);
        let value_size = parse_flag(args, "--value-size")?.unwrap_or(4096);
        let writers = parse_flag(args, "--writers")?.unwrap_or(32);
        let sync = parse_flag(args, "--sync")?.unwrap_or(SyncMode::Batch);
        if !(1..=1 << 20).contains(&records) {
            return Err("--records must be 1..=1048576".into());
        }
        if !(1..=1 << 20).contains(&value_size) {
            return Err("--value-size must be 1..=1048576".into());
        }
        if !(1..=64).contains(&writers) {
            return Err("--writers must be 1..=64".into());
        }
        let dir = flag(args, "--dir")?.map(PathBuf::from);
        Ok(StoreOptions { records, value_size, sync, writers, dir, json: switch(args, "--json") })
    }
}

/// What `petrel bench store` measured.
#[derive(Debug, Clone)]
pub struct StoreReport {
    opts: StoreOptions,
    put_wall: Duration,
    put_us: Spread,
    syncs: u64,
    log_get_us: Spread,
    update_wall: Duration,
    compaction: Duration,
    file_bytes_before_compaction: u64,
    file_bytes_after_compaction: u64,
    bytes_written: u64,
    value_bytes: u64,
    reopen: Duration,
    node_restart: Duration,
    restored: u64,
    hot_at_start_mib: f64,
    handle_get_us: Spread,
    cold_gets: u64,
    handle_repeat_us: Spread,
    store_get_ns: Spread,
}

/// Immutable record `i` of `size` bytes. The update round writes the same records again
/// (a refresh, as a republish or replication brings): each supersedes its first copy.
fn record(i: usize, size: usize) -> Record {
    let mut value = vec![0x5a; size];
    let tag = (i as u64).to_le_bytes();
    let n = tag.len().min(size);
    value[..n].copy_from_slice(&tag[..n]);
    Record::Immutable { value: value.into() }
}

/// The log entry the node writes for `record`, with a day to live. The bench writes what
/// the node writes, so a node restarted on the directory restores every record.
fn entry(record: Record, seq: u64) -> Entry {
    let key = *record.key().as_bytes();
    let payload = RecordPayload { record, origin: None, subnet: None, originated: false };
    Entry {
        id: EntryKey { kind: Kind::Record, key, sub: [0; 32] },
        seq,
        expires_ms: unix_ms() + 24 * 3600 * 1000,
        payload: crate::kad::persist::encode_record_payload(&payload),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Appends one round of every record from `writers` threads; the time of each append.
fn put_round(log: &Arc<Log>, opts: &StoreOptions) -> Result<Vec<f64>, String> {
    let per = opts.records.div_ceil(opts.writers);
    let threads: Vec<_> = (0..opts.writers)
        .map(|w| {
            let log = Arc::clone(log);
            let (records, size) = (opts.records, opts.value_size);
            std::thread::spawn(move || -> Result<Vec<f64>, String> {
                let mut times = Vec::with_capacity(per);
                for i in (w * per..((w + 1) * per).min(records)).rev() {
                    let e = entry(record(i, size), 0);
                    let started = Instant::now();
                    log.append(&[e]).map_err(|e| format!("append: {e}"))?;
                    times.push(micros(started.elapsed()));
                }
                Ok(times)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(opts.records);
    for t in threads {
        all.extend(t.join().map_err(|_| "a writer panicked".to_string())??);
    }
    Ok(all)
}

/// Runs the bench (see the module doc).
pub fn run(opts: &StoreOptions) -> Result<StoreReport, String> {
    let dir = opts.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("petrel-bench-store-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure(opts, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn log_config(opts: &StoreOptions, dir: &std::path::Path) -> LogConfig {
    LogConfig { sync: opts.sync, max_bytes: u64::MAX / 2, ..LogConfig::new(dir.to_path_buf()) }
}

fn measure(opts: &StoreOptions, dir: &std::path::Path) -> Result<StoreReport, String> {
    let (log, _) = Log::open(log_config(opts, dir), unix_ms()).map_err(|e| e.to_string())?;
    let log = Arc::new(log);
    let started = Instant::now();
    let put = put_round(&log, opts)?;
    let put_wall = started.elapsed();
    let syncs = log.stats().syncs;

    let mut log_get = Vec::with_capacity(opts.records);
    for i in 0..opts.records {
        let key = *record(i, opts.value_size).key().as_bytes();
        let id = EntryKey { kind: Kind::Record, key, sub: [0; 32] };
        let started = Instant::now();
        let got = log.get(&id).map_err(|e| e.to_string())?;
        log_get.push(micros(started.elapsed()));
        if got.is_none() {
            return Err(format!("record {i} missing after its append"));
        }
    }

    let started = Instant::now();
    put_round(&log, opts)?;
    let update_wall = started.elapsed();
    let file_bytes_before_compaction = log.stats().file_bytes;
    let started = Instant::now();
    log.compact(unix_ms()).map_err(|e| format!("compact: {e}"))?;
    let compaction = started.elapsed();
    let stats = log.stats();
    drop(log);

    let started = Instant::now();
    let (reopened, _) = Log::open(log_config(opts, dir), unix_ms()).map_err(|e| e.to_string())?;
    let reopen = started.elapsed();
    drop(reopened);

    let config = Config {
        keypair: Some(Keypair::from_seed([7; 32])),
        data_dir: Some(dir.to_path_buf()),
        sync: opts.sync,
        store_max_bytes: u64::MAX / 2,
        ..Config::default()
    };
    // The node's store must have room for them all.
    let mut config = config;
    config.dht.store.max_records = config.dht.store.max_records.max(opts.records);
    let needed = opts.records.saturating_mul(opts.value_size + 64);
    config.dht.store.max_bytes = config.dht.store.max_bytes.max(needed);
    let started = Instant::now();
    let node = Node::start(config).map_err(|e| e.to_string())?;
    let handle = node.handle();
    let before = handle.snapshot().map_err(|e| e.to_string())?; // restored and running
    let node_restart = started.elapsed();
    let restored = node.restored().records;
    let hot_at_start_mib = before.store.hot_bytes as f64 / 1048576.0;
    // Distinct keys, each asked once: those not in the hot tier are read from the log.
    let mut handle_get = Vec::new();
    for i in (0..opts.records).step_by((opts.records / 2000).max(1)) {
        let key = record(i, opts.value_size).key();
        let started = Instant::now();
        let found = handle.get(key).map_err(|e| e.to_string())?;
        handle_get.push(micros(started.elapsed()));
        if found.is_none() {
            return Err(format!("record {i} not restored"));
        }
    }
    let after = handle.snapshot().map_err(|e| e.to_string())?;
    let cold_gets = after.dht.cold_reads - before.dht.cold_reads;
    // One key asked again and again: in memory after the first.
    let key = record(0, opts.value_size).key();
    let mut handle_repeat = Vec::new();
    for _ in 0..2000 {
        let started = Instant::now();
        handle.get(key).map_err(|e| e.to_string())?;
        handle_repeat.push(micros(started.elapsed()));
    }
    node.shutdown();
    let store_get_ns = hot_get_ns(opts);

    Ok(StoreReport {
        opts: opts.clone(),
        put_wall,
        put_us: Spread::of(put),
        syncs,
        log_get_us: Spread::of(log_get),
        update_wall,
        compaction,
        file_bytes_before_compaction,
        file_bytes_after_compaction: stats.file_bytes,
        bytes_written: stats.bytes_written,
        value_bytes: 2 * (opts.records * opts.value_size) as u64,
        reopen,
        node_restart,
        restored,
        hot_at_start_mib,
        handle_get_us: Spread::of(handle_get),
        cold_gets,
        handle_repeat_us: Spread::of(handle_repeat),
        store_get_ns,
    })
}

/// A hot get inside the node: the DHT's in-memory store, filled with the same records, asked
/// for each once (lookup, recency update and a clone of the record, a reference count).
fn hot_get_ns(opts: &StoreOptions) -> Spread {
    use crate::kad::memstore::{MemoryStore, Origin, RecordStore, StoreConfig};
    let config = StoreConfig {
        max_records: opts.records,
        max_bytes: opts.records * (opts.value_size + 64),
        ..StoreConfig::DEFAULT
    };
    let mut store = MemoryStore::new(config);
    let now = Instant::now();
    let ttl = Duration::from_secs(3600);
    let keys: Vec<_> = (0..opts.records)
        .map(|i| {
            let r = record(i, opts.value_size);
            let key = r.key();
            let _ = store.put_verified(now, Origin::Local, r, ttl, None);
            key
        })
        .collect();
    let mut times = Vec::with_capacity(keys.len());
    for key in &keys {
        let started = Instant::now();
        let got = store.get(now, key).map(|s| s.record.clone());
        store.touch(key);
        times.push(started.elapsed().as_nanos() as f64);
        std::hint::black_box(got);
    }
    Spread::of(times)
}

impl StoreReport {
    fn puts_per_s(&self) -> f64 {
        self.opts.records as f64 / self.put_wall.as_secs_f64().max(1e-9)
    }

    fn write_amplification(&self) -> f64 {
        self.bytes_written as f64 / self.value_bytes.max(1) as f64
    }

    /// The summary for a person.
    pub fn human(&self) -> String {
        let o = &self.opts;
        format!(
            "bench store: {} records of {} B, sync {}, {} writers\n\
             put: {:.0} records/s, latency p50 {:.0} us p99 {:.0} us ({} fdatasyncs)\n\
             get from the log: p50 {:.1} us p99 {:.1} us\n\
             update round {:.2} s; compaction {:.0} ms ({:.1} -> {:.1} MiB)\n\
             bytes written per value byte stored: {:.2}\n\
             restart: log reopened in {:.0} ms; node up with {} records in {:.0} ms \
             ({:.1} MiB of values in memory)\n\
             get through Handle, distinct keys ({} read from the log): p50 {:.0} us p99 {:.0} us\n\
             get through Handle, the same key again: p50 {:.0} us p99 {:.0} us\n\
             hot get in the store: p50 {:.0} ns p99 {:.0} ns",
            o.records,
            o.value_size,
            o.sync.name(),
            o.writers,
            self.puts_per_s(),
            self.put_us.p50,
            self.put_us.p99,
            self.syncs,
            self.log_get_us.p50,
            self.log_get_us.p99,
            self.update_wall.as_secs_f64(),
            self.compaction.as_secs_f64() * 1e3,
            self.file_bytes_before_compaction as f64 / 1048576.0,
            self.file_bytes_after_compaction as f64 / 1048576.0,
            self.write_amplification(),
            self.reopen.as_secs_f64() * 1e3,
            self.restored,
            self.node_restart.as_secs_f64() * 1e3,
            self.hot_at_start_mib,
            self.cold_gets,
            self.handle_get_us.p50,
            self.handle_get_us.p99,
            self.handle_repeat_us.p50,
            self.handle_repeat_us.p99,
            self.store_get_ns.p50,
            self.store_get_ns.p99,
        )
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        let o = &self.opts;
        let spread = |s: &Spread| {
            format!("{{\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}}", s.p50, s.p99, s.max)
        };
        format!(
            "{{\"bench\":\"store\",\"records\":{},\"value_size\":{},\"sync\":\"{}\",\"writers\":{},\
             \"put_per_s\":{:.0},\"put_us\":{},\"fdatasyncs\":{},\"log_get_us\":{},\
             \"update_s\":{:.3},\"compaction_ms\":{:.1},\"file_mib_before_compaction\":{:.2},\
             \"file_mib_after_compaction\":{:.2},\"bytes_written_per_byte_stored\":{:.3},\
             \"reopen_ms\":{:.1},\"node_restart_ms\":{:.1},\"restored\":{},\
             \"hot_at_start_mib\":{:.2},\"handle_get_us\":{},\"cold_gets\":{},\
             \"handle_repeat_get_us\":{},\"store_hot_get_ns\":{}}}",
            o.records,
            o.value_size,
            o.sync.name(),
            o.writers,
            self.puts_per_s(),
            spread(&self.put_us),
            self.syncs,
            spread(&self.log_get_us),
            self.update_wall.as_secs_f64(),
            self.compaction.as_secs_f64() * 1e3,
            self.file_bytes_before_compaction as f64 / 1048576.0,
            self.file_bytes_after_compaction as f64 / 1048576.0,
            self.write_amplification(),
            self.reopen.as_secs_f64() * 1e3,
            self.node_restart.as_secs_f64() * 1e3,
            self.restored,
            self.hot_at_start_mib,
            spread(&self.handle_get_us),
            self.cold_gets,
            spread(&self.handle_repeat_us),
            spread(&self.store_get_ns),
        )
    }
}
