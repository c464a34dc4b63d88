//! The engine alone, no LDAP and no HTTP: a synthetic connector space of N users (default
//! 1,000,000) through import (objects built and encoded as the store keeps them), sync (scope
//! and rules) and export computation (the SCIM document, references resolved, and the minimal
//! PATCH against what the cloud was last sent). Prints objects per second per stage and the
//! process's peak memory.
//!
//!     cargo bench -p idbridge-engine --bench engine [-- --objects 1000000]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::time::Instant;

use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_engine::scope::OuScope;
use idbridge_engine::{
    encode_values, project, render, AdObject, Disposition, ScimDialect, SyncScope,
};
use idbridge_rules::{RuleSet, Value};

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

fn rate(n: usize, started: Instant) -> String {
    let s = started.elapsed().as_secs_f64();
    format!("{:>10.0} objects/s ({s:.2} s)", n as f64 / s)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--objects")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1_000_000);
    let rules = RuleSet::default_rules().unwrap();
    let scope = SyncScope {
        ous: OuScope {
            include: vec![Dn::parse("OU=Staff,DC=lab,DC=test").unwrap()],
            exclude: vec![],
        },
        ..SyncScope::default()
    };

    // Import: the connector space, each object with its stored (encoded) attributes.
    let started = Instant::now();
    let mut space = Vec::with_capacity(n);
    let mut stored_bytes = 0usize;
    for i in 0..n {
        let object = user(u32::try_from(i).unwrap());
        stored_bytes += encode_values(&object.attrs).to_string().len();
        space.push(object);
    }
    let import = rate(n, started);

    // Every DN has a cloud id already: references resolve (a re-sync's steady state).
    let ids: HashMap<String, String> = space
        .iter()
        .map(|o| (o.dn.normalized().to_owned(), format!("id-{}", o.guid)))
        .collect();

    // Sync and export computation, as a full sync does them.
    let started = Instant::now();
    let mut projections = 0usize;
    let mut exports = Vec::with_capacity(1024);
    let mut patch_ops = 0usize;
    for object in &space {
        let Ok(Disposition::InScope(projection)) = project(&rules, &scope, object, None) else {
            panic!("{} should be in scope", object.dn);
        };
        projections += 1;
        let rendered = render(&projection, ScimDialect::Idbridge, &|dn: &Dn| {
            ids.get(dn.normalized()).cloned()
        });
        // A changed title against what was sent: the PATCH the export would send.
        let mut previous = rendered.doc.clone();
        previous["title"] = serde_json::json!("Old title");
        let managed: Vec<String> = idbridge_engine::managed_attributes(&[&previous, &rendered.doc]);
        patch_ops += managed.len();
        if exports.len() < 1024 {
            exports.push(rendered.doc);
        }
    }
    let sync = rate(projections, started);
    println!("engine-only benchmark: {n} synthetic users, default rules, one OU scope");
    println!(
        "  import (build + encode for the store) {import}, {} MiB encoded",
        stored_bytes / (1 << 20)
    );
    println!(
        "  sync + export computation             {sync} ({patch_ops} managed attributes compared)"
    );
    println!(
        "  peak memory (VmHWM)                   {:.0} MiB",
        peak_rss_mib()
    );
    assert!(!exports.is_empty());
}
