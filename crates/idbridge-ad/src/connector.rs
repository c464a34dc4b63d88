//! The LDAP session: connect and bind, paged search, ranged-value completion, DirSync.

use std::sync::Arc;
use std::time::Duration;

use idbridge_core::{Dn, ObjectGuid, Secret};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope};

use crate::ber;
use crate::entry::{convert, AdEntry, AdEntryError, RawEntry};

/// Entries per page of a paged search.
pub const PAGE_SIZE: u32 = 1000;

/// The DirSync flags sent: `LDAP_DIRSYNC_OBJECT_SECURITY` only, so changed attributes come back
/// with all their values (no `INCREMENTAL_VALUES`) and an account without the "Replicating
/// Directory Changes" right can use DirSync over the objects it may read.
pub const DIRSYNC_FLAGS: u32 = ber::DIRSYNC_OBJECT_SECURITY;

/// Safety stop for a single DirSync or paged loop (a server that keeps saying "more" forever).
const MAX_ROUNDS: usize = 1_000_000;

/// How to reach and bind to a domain controller.
#[derive(Debug, Clone)]
pub struct AdSettings {
    /// `ldaps://host:636`, or `ldap://host:389` (then StartTLS is negotiated before the bind).
    pub url: String,
    pub bind_upn: String,
    pub password: Secret,
    /// PEM certificates that may sign the DC's certificate; `None` uses the system trust store.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Limit for connecting and for each LDAP operation (one page, one DirSync round).
    pub timeout: Duration,
}

/// Connection, bind and search failures.
#[derive(Debug, thiserror::Error)]
pub enum AdError {
    #[error("invalid AD connector settings: {0}")]
    Settings(String),
    #[error("cannot connect to the DC at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the DC refused the bind as {account}: LDAP result {code}: {message}")]
    Bind {
        account: String,
        code: u32,
        message: String,
    },
    #[error("{operation} on {base} failed: LDAP result {code}: {message}")]
    Ldap {
        operation: &'static str,
        base: String,
        code: u32,
        message: String,
    },
    #[error("{operation} on {base}: connection failed: {message}")]
    Transport {
        operation: &'static str,
        base: String,
        message: String,
    },
    #[error("{operation} on {base}: malformed response from the DC: {message}")]
    Protocol {
        operation: &'static str,
        base: String,
        message: String,
    },
}

impl AdError {
    /// The LDAP result code, when the DC answered with one.
    pub fn ldap_code(&self) -> Option<u32> {
        match self {
            AdError::Bind { code, .. } | AdError::Ldap { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the DC was unreachable, dropped the connection,
    /// or said it is busy or unavailable (as it does while shutting down or starting up).
    pub fn is_transient(&self) -> bool {
        match self {
            AdError::Connect { .. } | AdError::Transport { .. } => true,
            // busy, unavailable, server down, timeout
            AdError::Ldap { code, .. } => matches!(code, 51 | 52 | 81 | 85),
            AdError::Settings(_) | AdError::Bind { .. } | AdError::Protocol { .. } => false,
        }
    }
}

/// The result of one DirSync pass.
#[derive(Debug, Clone, Default)]
pub struct DirSyncBatch {
    pub entries: Vec<AdEntry>,
    pub errors: Vec<AdEntryError>,
    /// Pass it to the next [`AdConnector::dirsync`] to get what changed after this pass.
    pub cookie: Vec<u8>,
}

/// A paged search in progress (see [`AdConnector::next_page`]).
#[derive(Debug, Clone)]
pub struct PagedSearch {
    base: String,
    filter: String,
    attrs: Vec<String>,
    controls: Vec<RawControl>,
    cookie: Vec<u8>,
    rounds: usize,
    done: bool,
}

impl PagedSearch {
    /// A subtree search under `base`; every entry also carries its objectGUID, objectClass,
    /// distinguishedName and isDeleted.
    pub fn new(base: &Dn, filter: &str, attrs: &[impl AsRef<str>]) -> Self {
        Self {
            base: base.to_string(),
            filter: filter.to_string(),
            attrs: attr_list(
                attrs,
                &[
                    "objectGUID",
                    "objectClass",
                    "distinguishedName",
                    "isDeleted",
                ],
            ),
            controls: Vec::new(),
            cookie: Vec::new(),
            rounds: 0,
            done: false,
        }
    }
}

/// One page of a paged search.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<AdEntry>,
    pub errors: Vec<AdEntryError>,
}

/// One bound LDAP session with a DC.
pub struct AdConnector {
    pub(crate) ldap: Ldap,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for AdConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdConnector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A TLS client configuration that trusts exactly the certificates of `pem` (a private CA).
pub fn tls_config(pem: &[u8]) -> Result<rustls::ClientConfig, AdError> {
    let bad = |e: String| AdError::Settings(format!("CA certificate: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the PEM data".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The attribute list of a request: `attrs` plus `always`, without case-insensitive duplicates.
fn attr_list(attrs: &[impl AsRef<str>], always: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(attrs.len() + always.len());
    for a in attrs
        .iter()
        .map(AsRef::as_ref)
        .chain(always.iter().copied())
    {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            out.push(a.to_string());
        }
    }
    out
}

impl AdConnector {
    /// Connects (LDAPS, or LDAP + StartTLS), verifies the DC's certificate and binds.
    pub async fn connect(settings: &AdSettings) -> Result<Self, AdError> {
        let url = settings.url.as_str();
        let mut conn_settings = LdapConnSettings::new().set_conn_timeout(settings.timeout);
        if let Some(pem) = &settings.ca_cert_pem {
            conn_settings = conn_settings.set_config(Arc::new(tls_config(pem)?));
        }
        if url.starts_with("ldap://") {
            conn_settings = conn_settings.set_starttls(true);
        } else if !url.starts_with("ldaps://") {
            return Err(AdError::Settings(format!(
                "the DC URL must start with ldaps:// or ldap:// (StartTLS), got {url:?}"
            )));
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, url)
            .await
            .map_err(|e| AdError::Connect {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let log_url = url.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::warn!(url = %log_url, error = %e, "LDAP connection to the DC ended");
            }
        });
        let bind = ldap
            .with_timeout(settings.timeout)
            .simple_bind(&settings.bind_upn, settings.password.expose())
            .await;
        let account = settings.bind_upn.clone();
        match bind {
            Ok(r) if r.rc == 0 => {}
            Ok(r) => {
                return Err(AdError::Bind {
                    account,
                    code: r.rc,
                    message: r.text,
                })
            }
            Err(e) => {
                return Err(AdError::Connect {
                    url: url.to_string(),
                    message: format!("bind as {account}: {e}"),
                })
            }
        }
        tracing::debug!(url, account = %settings.bind_upn, "bound to the DC");
        Ok(Self {
            ldap,
            timeout: settings.timeout,
        })
    }

    /// One search request with `controls`; returns the raw entries (or per-entry errors) and
    /// the result, whose code has been checked.
    async fn search_once(
        &mut self,
        operation: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        controls: Vec<RawControl>,
    ) -> Result<(Vec<Result<RawEntry, AdEntryError>>, LdapResult), AdError> {
        let result = self
            .ldap
            .with_controls(controls)
            .with_timeout(self.timeout)
            .search(base, scope, filter, attrs)
            .await
            .map_err(|e| transport(operation, base, e))?;
        let ldap3::SearchResult(entries, res) = result;
        if res.rc != 0 {
            return Err(AdError::Ldap {
                operation,
                base: base.to_string(),
                code: res.rc,
                message: res.text,
            });
        }
        let raws = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(|e| RawEntry::from_tag(e.0))
            .collect();
        Ok((raws, res))
    }

    /// Paged subtree search under `base`, read whole; see the crate docs for what every entry
    /// holds.
    pub async fn search_all(
        &mut self,
        base: &Dn,
        filter: &str,
        attrs: &[impl AsRef<str>],
    ) -> Result<(Vec<AdEntry>, Vec<AdEntryError>), AdError> {
        self.read_all(PagedSearch::new(base, filter, attrs)).await
    }

    /// Every page of `search`, together.
    async fn read_all(
        &mut self,
        mut search: PagedSearch,
    ) -> Result<(Vec<AdEntry>, Vec<AdEntryError>), AdError> {
        let (mut entries, mut errors) = (Vec::new(), Vec::new());
        while let Some(page) = self.next_page(&mut search).await? {
            entries.extend(page.entries);
            errors.extend(page.errors);
        }
        Ok((entries, errors))
    }

    /// The next page of a paged search, `None` once the DC has sent the last one. A caller that
    /// processes each page before asking for the next holds one page in memory, not the
    /// directory.
    pub async fn next_page(&mut self, search: &mut PagedSearch) -> Result<Option<Page>, AdError> {
        const OP: &str = "paged search";
        if search.done {
            return Ok(None);
        }
        search.rounds += 1;
        if search.rounds > MAX_ROUNDS {
            return Err(protocol(
                OP,
                &search.base,
                "the DC never ended the paged search",
            ));
        }
        let mut controls = search.controls.clone();
        controls.push(RawControl {
            ctype: ber::PAGED_RESULTS_OID.to_string(),
            crit: false,
            val: Some(ber::encode_paged_request(PAGE_SIZE, &search.cookie)),
        });
        let (raws, res) = self
            .search_once(
                OP,
                &search.base,
                Scope::Subtree,
                &search.filter,
                &search.attrs,
                controls,
            )
            .await?;
        let mut page = Page::default();
        self.convert_all(raws, &mut page.entries, &mut page.errors)
            .await?;
        search.cookie = match control_value(&res, ber::PAGED_RESULTS_OID) {
            Some(v) => {
                ber::decode_paged_response(v)
                    .map_err(|e| protocol(OP, &search.base, e))?
                    .cookie
            }
            None => Vec::new(),
        };
        search.done = search.cookie.is_empty();
        if search.done {
            tracing::debug!(base = %search.base, rounds = search.rounds, "paged search done");
        }
        Ok(Some(page))
    }

    /// The objects under `base` matching `filter` whose `uSNChanged` lies in `usns`, tombstones
    /// included, read whole. Each USN is an equality term, which the DC answers from its
    /// `uSNChanged` index; a range (`uSNChanged>=n`, what DirSync evaluates) makes Samba scan
    /// the naming context. Meant for short spans (the few USNs since the last poll).
    pub async fn changed_in(
        &mut self,
        base: &Dn,
        filter: &str,
        attrs: &[impl AsRef<str>],
        usns: std::ops::RangeInclusive<u64>,
    ) -> Result<(Vec<AdEntry>, Vec<AdEntryError>), AdError> {
        let terms: String = usns.map(|usn| format!("(uSNChanged={usn})")).collect();
        let mut search = PagedSearch::new(base, &format!("(&(|{terms}){filter})"), attrs);
        search.controls.push(RawControl {
            ctype: ber::SHOW_DELETED_OID.to_string(),
            crit: true,
            val: None,
        });
        self.read_all(search).await
    }

    /// The objects under `base` with these objectGUIDs, whole (as `search_all` reads them).
    /// A DirSync change carries only changed attributes; this completes objects the caller has
    /// never seen whole (e.g. restored from a tombstone).
    pub async fn read_objects(
        &mut self,
        base: &Dn,
        guids: &[ObjectGuid],
        attrs: &[impl AsRef<str>],
    ) -> Result<(Vec<AdEntry>, Vec<AdEntryError>), AdError> {
        // Keeps each filter well below any request-size limit.
        const PER_FILTER: usize = 100;
        let (mut entries, mut errors) = (Vec::new(), Vec::new());
        for chunk in guids.chunks(PER_FILTER) {
            let terms: String = chunk
                .iter()
                .map(|g| {
                    let escaped: String =
                        g.as_bytes().iter().map(|b| format!("\\{b:02x}")).collect();
                    format!("(objectGUID={escaped})")
                })
                .collect();
            let (found, failed) = self.search_all(base, &format!("(|{terms})"), attrs).await?;
            entries.extend(found);
            errors.extend(failed);
        }
        Ok((entries, errors))
    }

    /// The DC's `highestCommittedUSN` (rootDSE): it moves with every write the DC commits, and
    /// reading it costs the DC nothing, unlike a DirSync pass (Samba 4.17 answers that by
    /// scanning the naming context: about 13 s at 100,000 users).
    pub async fn highest_committed_usn(&mut self) -> Result<u64, AdError> {
        const OP: &str = "rootDSE read";
        let attrs = ["highestCommittedUSN".to_string()];
        let (raws, _) = self
            .search_once(OP, "", Scope::Base, "(objectClass=*)", &attrs, Vec::new())
            .await?;
        raws.into_iter()
            .flatten()
            .flat_map(|raw| raw.attrs)
            .find(|(name, _)| name.eq_ignore_ascii_case("highestCommittedUSN"))
            .and_then(|(_, values)| values.into_iter().next())
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
            .ok_or_else(|| protocol(OP, "", "no highestCommittedUSN in the rootDSE"))
    }

    /// A DirSync cookie for "now" over the naming context `base`, without reading objects.
    ///
    /// The pass matches no object (an objectGUID no object has, answered from the index), and
    /// the DC then derives the cookie from its highest committed USN (Samba's dirsync module
    /// does exactly this). Should a DC hand back an older watermark instead, the next delta
    /// reads more than it needs to, never less.
    pub async fn current_cookie(&mut self, base: &Dn) -> Result<Vec<u8>, AdError> {
        const NO_OBJECT: &str =
            "(objectGUID=\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00)";
        Ok(self
            .dirsync(base, NO_OBJECT, &["objectGUID"], &[])
            .await?
            .cookie)
    }

    /// One DirSync pass from `cookie` (empty: from the beginning) over the naming context `base`.
    pub async fn dirsync(
        &mut self,
        base: &Dn,
        filter: &str,
        attrs: &[impl AsRef<str>],
        cookie: &[u8],
    ) -> Result<DirSyncBatch, AdError> {
        const OP: &str = "DirSync";
        let base_s = base.to_string();
        let attrs = attr_list(attrs, &["objectGUID", "objectClass", "isDeleted"]);
        let mut batch = DirSyncBatch {
            cookie: cookie.to_vec(),
            ..DirSyncBatch::default()
        };
        for _ in 0..MAX_ROUNDS {
            let control = RawControl {
                ctype: ber::DIRSYNC_OID.to_string(),
                crit: true,
                val: Some(ber::encode_dirsync_request(
                    DIRSYNC_FLAGS,
                    ber::DIRSYNC_MAX_ATTRIBUTE_COUNT,
                    &batch.cookie,
                )),
            };
            let (raws, res) = self
                .search_once(OP, &base_s, Scope::Subtree, filter, &attrs, vec![control])
                .await?;
            self.convert_all(raws, &mut batch.entries, &mut batch.errors)
                .await?;
            let value = control_value(&res, ber::DIRSYNC_OID)
                .ok_or_else(|| protocol(OP, &base_s, "no DirSync response control"))?;
            let response =
                ber::decode_dirsync_response(value).map_err(|e| protocol(OP, &base_s, e))?;
            if !response.cookie.is_empty() {
                batch.cookie = response.cookie;
            }
            if !response.more_results {
                for entry in batch.entries.iter_mut() {
                    crate::entry::mark_unreadable_tombstone(entry, base);
                }
                self.fill_missing_classes(&mut batch).await?;
                tracing::debug!(base = %base_s, entries = batch.entries.len(), errors = batch.errors.len(), "DirSync pass done");
                return Ok(batch);
            }
        }
        Err(protocol(OP, &base_s, "the DC never ended the DirSync pass"))
    }

    /// A DirSync delta carries only the changed attributes (plus objectGUID): when objectClass
    /// is missing, read it by GUID so [`AdEntry::class`] is always set for live objects.
    async fn fill_missing_classes(&mut self, batch: &mut DirSyncBatch) -> Result<(), AdError> {
        const OP: &str = "objectClass lookup";
        let attrs = ["objectClass".to_string()];
        for entry in batch.entries.iter_mut() {
            if !entry.class.is_empty() || entry.deleted {
                continue;
            }
            let base = format!("<GUID={}>", hex::encode(entry.guid.as_bytes()));
            match self
                .search_once(
                    OP,
                    &base,
                    Scope::Base,
                    "(objectClass=*)",
                    &attrs,
                    Vec::new(),
                )
                .await
            {
                Ok((raws, _)) => {
                    if let Some(Ok(raw)) = raws.into_iter().next() {
                        let classes: Vec<String> = raw
                            .get("objectClass")
                            .map(|vs| {
                                vs.iter()
                                    .map(|v| String::from_utf8_lossy(v).into_owned())
                                    .collect()
                            })
                            .unwrap_or_default();
                        entry.class = crate::entry::object_class(&classes);
                    }
                }
                // Gone since the pass (deleted meanwhile): the next pass reports the deletion.
                Err(AdError::Ldap { code: 32, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Completes ranged attributes, converts, and sorts into entries and errors.
    async fn convert_all(
        &mut self,
        raws: Vec<Result<RawEntry, AdEntryError>>,
        entries: &mut Vec<AdEntry>,
        errors: &mut Vec<AdEntryError>,
    ) -> Result<(), AdError> {
        for raw in raws {
            let converted = match raw {
                Ok(mut raw) => match self.complete_ranges(&mut raw).await? {
                    Ok(()) => convert(raw),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match converted {
                Ok(e) => entries.push(e),
                Err(e) => {
                    tracing::warn!(dn = %e.dn, reason = %e.message, "skipping an AD object that cannot be read");
                    errors.push(e);
                }
            }
        }
        Ok(())
    }

    /// Reads `attr;range=N-*` with base searches until every ranged attribute is complete.
    /// The outer error is a broken connection; the inner one concerns this entry only.
    async fn complete_ranges(
        &mut self,
        raw: &mut RawEntry,
    ) -> Result<Result<(), AdEntryError>, AdError> {
        const OP: &str = "ranged attribute read";
        let dn = crate::entry::strip_extended_dn(&raw.dn).to_string();
        let entry_err = |message: String| AdEntryError {
            dn: dn.clone(),
            message,
        };
        let mut rounds = 0usize;
        while let Some((name, start)) = raw.pending_range() {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Ok(Err(entry_err(format!("endless ranged read of {name}"))));
            }
            let attrs = [format!("{name};range={start}-*")];
            let chunk = match self
                .search_once(OP, &dn, Scope::Base, "(objectClass=*)", &attrs, Vec::new())
                .await
            {
                Ok((raws, _)) => raws.into_iter().next(),
                Err(e @ AdError::Ldap { .. }) => return Ok(Err(entry_err(e.to_string()))),
                Err(e) => return Err(e),
            };
            let chunk = match chunk {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return Ok(Err(e)),
                None => RawEntry::default(),
            };
            if let Err(message) = raw.merge_range(&name, start, &chunk) {
                return Ok(Err(entry_err(message)));
            }
        }
        Ok(Ok(()))
    }

    /// Writes the object's objectGUID into its `mS-DS-ConsistencyGuid`, making the sync anchor
    /// survive a move of the object to another forest. Addressed by GUID, so a rename since the
    /// import does not matter.
    pub async fn write_consistency_guid(&mut self, guid: &ObjectGuid) -> Result<(), AdError> {
        const OP: &str = "writing mS-DS-ConsistencyGuid";
        let hex: String = guid.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let target = format!("<GUID={hex}>");
        let value: Vec<u8> = guid.as_bytes().to_vec();
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .modify(
                &target,
                vec![ldap3::Mod::Replace(
                    b"mS-DS-ConsistencyGuid".to_vec(),
                    std::collections::HashSet::from([value]),
                )],
            )
            .await
            .map_err(|e| transport(OP, &target, e))?;
        if result.rc != 0 {
            return Err(AdError::Ldap {
                operation: OP,
                base: target,
                code: result.rc,
                message: result.text,
            });
        }
        Ok(())
    }

    /// Ends the session politely.
    pub async fn unbind(mut self) -> Result<(), AdError> {
        self.ldap
            .unbind()
            .await
            .map_err(|e| transport("unbind", "", e))
    }
}

pub(crate) fn transport(operation: &'static str, base: &str, e: LdapError) -> AdError {
    match e {
        LdapError::LdapResult { result } => AdError::Ldap {
            operation,
            base: base.to_string(),
            code: result.rc,
            message: result.text,
        },
        e => AdError::Transport {
            operation,
            base: base.to_string(),
            message: e.to_string(),
        },
    }
}

/// The value of the response control `oid`, if the DC sent one.
fn control_value<'r>(res: &'r LdapResult, oid: &str) -> Option<&'r [u8]> {
    res.ctrls
        .iter()
        .find(|c| c.1.ctype == oid)
        .and_then(|c| c.1.val.as_deref())
}

fn protocol(operation: &'static str, base: &str, message: impl std::fmt::Display) -> AdError {
    AdError::Protocol {
        operation,
        base: base.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_list_dedupes_case_insensitively() {
        assert_eq!(
            attr_list(&["mail", "objectguid"], &["objectGUID", "objectClass"]),
            ["mail", "objectguid", "objectClass"]
        );
    }

    #[test]
    fn bad_ca_pem_is_a_settings_error() {
        assert!(matches!(tls_config(b"nope"), Err(AdError::Settings(_))));
    }

    #[test]
    fn errors_never_print_the_password() {
        let s = AdSettings {
            url: "ldaps://127.0.0.1:636".into(),
            bind_upn: "svc@lab".into(),
            password: Secret::new("hunter2"),
            ca_cert_pem: None,
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = AdError::Bind {
            account: s.bind_upn.clone(),
            code: 49,
            message: "invalid credentials".into(),
        };
        assert_eq!(e.ldap_code(), Some(49));
        assert!(e.to_string().contains("svc@lab"));
    }
}
