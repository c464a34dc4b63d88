//! The engine alone, no LDAP and no HTTP: a synthetic connector space of N users (default
//! 1,000,000) through import and sync as the agent runs them, with the store replaced by memory.
//!
//! - import: each object built as the AD connector hands it over and written as the store keeps
//!   it (guid, DN, class and the encoded attributes as text), in batches;
//! - sync and export computation: batches of 500 stored rows decoded as the agent's
//!   `pending_sync` does, projected through scope and the default rules, rendered as SCIM with
//!   references resolved against the cloud ids of all objects, and the managed attributes
//!   compared with what the cloud was last sent.
//!
//! Batches are spread over `--threads` workers (default: the available cores). Prints objects
//! per second and CPU time per stage, and the process's peak memory.
//!
//!     cargo bench -p idbridge-engine --bench engine [-- --objects 1000000 --threads 2]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use idbridge_core::{AttrName, Dn, ObjectGuid};

/// The allocator the `idbridge` binary runs the engine with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use idbridge_engine::scope::OuScope;
use idbridge_engine::{
    decode_values, managed_attributes, project, render, AdObject, Disposition, ScimDialect,
    SyncScope,
};
use idbridge_rules::{RuleSet, Value};

/// Objects per batch, as the agent's synchronization reads them.
const BATCH: usize = 500;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn user(i: u32) -> AdObject {
    let s = |v: String| vec![Value::Str(v)];
    let mut guid = [0u8; 16];
    guid[..4].copy_from_slice(&i.to_le_bytes());
    let dn = format!("CN=User {i:07},OU=Dept{},OU=Staff,DC=lab,DC=test", i % 40);
    let manager = format!(
        "CN=User {:07},OU=Dept{},OU=Staff,DC=lab,DC=test",
        i / 100,
        (i / 100) % 40
    );
    let upn = format!("u{i:07}@lab.test");
    let attrs = [
        ("userPrincipalName", s(upn.clone())),
        ("sAMAccountName", s(format!("u{i:07}"))),
        ("givenName", s(format!("Given{i}"))),
        ("sn", s("Müller".into())),
        ("displayName", s(format!("Given{i} Müller"))),
        ("mail", s(upn)),
        ("department", s(format!("Dept{}", i % 40))),
        ("title", s("Engineer".into())),
        ("company", s("Lab Industries".into())),
        ("telephoneNumber", s(format!("+49 30 {i:07}"))),
        ("employeeID", s(format!("E{i:07}"))),
        ("userAccountControl", s("512".into())),
        ("manager", s(manager)),
        ("objectGUID", vec![Value::Bytes(guid.to_vec())]),
        ("distinguishedName", s(dn.clone())),
    ]
    .into_iter()
    .map(|(k, v)| (AttrName::from(k), v))
    .collect();
    AdObject {
        guid: ObjectGuid::from_bytes(&guid).unwrap(),
        dn: Dn::parse(&dn).unwrap(),
        class: "user".into(),
        attrs,
        deleted: false,
    }
}

/// Stored rows of one batch, as the store's `ad_objects` columns hold them: the text of each
/// row's guid, DN, class and attributes, one after the other in one buffer.
struct Batch {
    text: Vec<u8>,
    /// Per row, where its four columns end in `text`.
    rows: Vec<[usize; 4]>,
}

impl Batch {
    fn rows(&self) -> impl Iterator<Item = [&str; 4]> + '_ {
        let mut start = 0;
        self.rows.iter().map(move |ends| {
            ends.map(|end| {
                let column = std::str::from_utf8(&self.text[start..end]).unwrap();
                start = end;
                column
            })
        })
    }
}

/// What importing a batch produced.
struct Imported {
    batch: Batch,
    /// The DN keys the store indexes, each with the cloud id of the steady state.
    ids: Vec<(Box<str>, Box<str>)>,
}

/// Import of the users `range`: built, then written as the store keeps them.
fn import(range: Range<usize>) -> Imported {
    let mut batch = Batch {
        text: Vec::with_capacity(range.len() * 768),
        rows: Vec::with_capacity(range.len()),
    };
    let mut ids = Vec::with_capacity(range.len());
    for i in range {
        let object = user(u32::try_from(i).unwrap());
        let text = &mut batch.text;
        write!(text, "{}", object.guid).unwrap();
        let guid_end = text.len();
        write!(text, "{}", object.dn).unwrap();
        let dn_end = text.len();
        text.extend_from_slice(object.class.as_bytes());
        let class_end = text.len();
        serde_json::to_writer(&mut *text, &object.encode_attrs()).unwrap();
        batch.rows.push([guid_end, dn_end, class_end, text.len()]);
        ids.push((
            object.dn.normalized().into(),
            format!("id-{}", object.guid).into(),
        ));
    }
    Imported { batch, ids }
}

/// What one sync worker computed.
#[derive(Default)]
struct Synced {
    objects: usize,
    managed: usize,
}

/// Sync and export computation of one batch, as the agent's `synchronize` does them.
fn sync(
    batch: &Batch,
    rules: &RuleSet,
    scope: &SyncScope,
    ids: &HashMap<Box<str>, Box<str>>,
    out: &mut Synced,
) {
    let objects: Vec<AdObject> = batch
        .rows()
        .map(|[guid, dn, class, attrs]| AdObject {
            guid: ObjectGuid::parse(guid).unwrap(),
            dn: Dn::parse(dn).unwrap(),
            class: class.to_owned(),
            attrs: decode_values(attrs).unwrap(),
            deleted: false,
        })
        .collect();
    // Every DN has a cloud id already: references resolve (a re-sync's steady state).
    let resolve = |dn: &Dn| ids.get(dn.normalized()).map(|id| id.to_string());
    for object in &objects {
        let Ok(Disposition::InScope(projection)) = project(rules, scope, object, None) else {
            panic!("{} should be in scope", object.dn);
        };
        let rendered = render(&projection, ScimDialect::Idbridge, &resolve);
        assert!(rendered.unresolved.is_empty());
        // A changed title against what was sent: the attributes the PATCH compares.
        let mut previous = rendered.doc.clone();
        previous["title"] = serde_json::json!("Old title");
        out.managed += managed_attributes(&[&previous, &rendered.doc]).len();
        out.objects += 1;
    }
}

/// Runs `work` on batch indexes `0..batches`, spread over `threads` workers; each worker's
/// results are returned in the order it took them.
fn parallel<T: Send>(
    threads: usize,
    batches: usize,
    work: impl Fn(usize) -> T + Sync,
) -> Vec<Vec<(usize, T)>> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= batches {
                            return done;
                        }
                        done.push((i, work(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// CPU time the process has used so far, in seconds (user and system, all threads): with
/// other work on the machine, it tells what a stage costs apart from how long it waited.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// A stage's measurement, begun.
struct Stage {
    wall: Instant,
    cpu: f64,
}

impl Stage {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    fn report(&self, n: usize) -> String {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - self.cpu;
        format!(
            "{:>8.0} objects/s ({wall:.2} s; CPU {cpu:.2} s, {:.1} µs/object)",
            n as f64 / wall,
            cpu * 1e6 / n as f64
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
    };
    let n = arg("--objects").unwrap_or(1_000_000);
    let threads = arg("--threads")
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1)
        .max(1);
    let rules = RuleSet::default_rules().unwrap();
    let scope = SyncScope {
        ous: OuScope {
            include: vec![Dn::parse("OU=Staff,DC=lab,DC=test").unwrap()],
            exclude: vec![],
        },
        ..SyncScope::default()
    };
    let batches = n.div_ceil(BATCH);

    let stage = Stage::start();
    let mut imported: Vec<(usize, Imported)> = parallel(threads, batches, |i| {
        import(i * BATCH..((i + 1) * BATCH).min(n))
    })
    .into_iter()
    .flatten()
    .collect();
    let import_rate = stage.report(n);
    imported.sort_unstable_by_key(|(i, _)| *i);

    // The cloud ids of every object, by DN key: what the store answers for a batch's references.
    let started = Instant::now();
    let mut ids = HashMap::with_capacity(n);
    let mut space = Vec::with_capacity(batches);
    let mut stored_bytes = 0;
    for (_, imported) in imported {
        stored_bytes += imported.batch.text.len();
        ids.extend(imported.ids);
        space.push(imported.batch);
    }
    let ids_secs = started.elapsed().as_secs_f64();

    let stage = Stage::start();
    let synced = parallel(threads, batches, |i| {
        let mut out = Synced::default();
        sync(&space[i], &rules, &scope, &ids, &mut out);
        out
    });
    let sync_rate = stage.report(n);
    let (mut objects, mut managed) = (0, 0);
    for (_, out) in synced.into_iter().flatten() {
        objects += out.objects;
        managed += out.managed;
    }
    assert_eq!(objects, n);

    println!(
        "engine-only benchmark: {n} synthetic users, default rules, one OU scope, \
         batches of {BATCH}, {threads} thread(s)"
    );
    println!(
        "  import (build + encode for the store) {import_rate}, {} MiB stored",
        stored_bytes >> 20
    );
    println!("  cloud id map of all DNs               {ids_secs:.2} s");
    println!(
        "  sync + export computation             {sync_rate} ({managed} managed attributes compared)"
    );
    println!(
        "  peak memory (VmHWM)                   {:.0} MiB",
        peak_rss_mib()
    );
}
