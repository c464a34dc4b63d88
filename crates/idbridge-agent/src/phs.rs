//! Password hash sync: replicate NT hashes from the DC, turn each into a salted verifier, and
//! send it to the cloud object joined to the AD object.
//!
//! [`plan`] is pure (what to do with each replicated account); [`run_once`] (a cycle from the
//! watermark) and [`run_targeted`] (the accounts object sync saw a password change on, read one
//! by one) are the I/O around it.
//! The NT hash exists only inside `NtHash` (zeroized) and the verifier computation; nothing here
//! logs or stores either.

use std::collections::{BTreeSet, HashMap};

use idbridge_core::ObjectGuid;
use idbridge_drsuapi::{Credentials, DrsClient, ReplicatedAccount, Watermark};
use idbridge_phs::PhsVerifier;
use serde::{Deserialize, Serialize};

use crate::cloud::CloudClient;
use crate::config::AgentConfig;
use crate::state::StateFile;
use crate::AgentError;

/// `userAccountControl` flags that mark accounts whose hashes never leave the domain.
const WORKSTATION_TRUST: u32 = 0x1000;
const SERVER_TRUST: u32 = 0x2000;
const INTERDOMAIN_TRUST: u32 = 0x0800;

/// What to do with one replicated account.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Send a verifier of this account's hash to this cloud user.
    Send { cloud_id: &'a str },
    /// Nothing to send; not an error.
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The change did not touch the password (a delta carries only changed attributes).
    NoHash,
    /// Computer and trust accounts.
    MachineAccount,
    /// No cloud object is joined to this AD object (out of sync scope, or not synced yet).
    NotJoined,
}

/// Decides for one account. `joined` maps source anchors (base64 of objectGUID, the cloud's
/// `immutableId`) to cloud ids.
pub fn plan<'a>(account: &ReplicatedAccount, joined: &'a HashMap<String, String>) -> Decision<'a> {
    let machine = account
        .user_account_control
        .is_some_and(|uac| uac & (WORKSTATION_TRUST | SERVER_TRUST | INTERDOMAIN_TRUST) != 0)
        || account
            .sam_account_name
            .as_deref()
            .is_some_and(|n| n.ends_with('$'));
    if machine {
        return Decision::Skip(SkipReason::MachineAccount);
    }
    if account.nt_hash.is_none() {
        return Decision::Skip(SkipReason::NoHash);
    }
    match joined.get(&anchor(&account.object_guid)) {
        Some(cloud_id) => Decision::Send { cloud_id },
        None => Decision::Skip(SkipReason::NotJoined),
    }
}

/// The source anchor the cloud knows an AD object by.
pub fn anchor(guid: &ObjectGuid) -> String {
    guid.to_base64()
}

/// The last run, as `idbridge phs status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhsStatus {
    pub mode: String,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: String,
    /// Objects the DC returned.
    pub replicated: usize,
    pub sent: usize,
    pub skipped_no_hash: usize,
    pub skipped_machine: usize,
    pub skipped_not_joined: usize,
    pub errors: Vec<ObjectError>,
    /// How the DRSUAPI connection authenticated: `Kerberos`, `NTLM`, or `NTLM (Kerberos: <why
    /// not>)` when `negotiate` fell back.
    #[serde(default)]
    pub rpc_auth: String,
}

/// One account that could not be synced, and why (never a secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectError {
    pub object_guid: String,
    pub dn: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PhsState {
    pub watermark: Option<Watermark>,
    /// The last watermark cycle (delta or full).
    pub last: Option<PhsStatus>,
    /// The last targeted cycle ([`run_targeted`]), kept apart so that `last` keeps saying how
    /// far the watermark got.
    #[serde(default)]
    pub last_targeted: Option<PhsStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything changed since the stored watermark.
    Delta,
    /// Every hash again, from USN 0 (`idbridge phs full`).
    Full,
}

/// The file object sync leaves when it joined new users: the next cycle is a full one, because
/// their hashes were replicated before they had a cloud object to go to.
pub fn full_request_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("phs-full-requested")
}

/// Takes a pending full-sync request (see [`full_request_path`]): `Full` if there was one.
pub fn take_full_request(data_dir: &std::path::Path, mode: Mode) -> Mode {
    match std::fs::remove_file(full_request_path(data_dir)) {
        Ok(()) => Mode::Full,
        Err(_) => mode,
    }
}

/// One hash sync cycle. The watermark is saved only after every page was handled, so a crash
/// repeats work (verifiers are idempotent) and never skips it.
pub async fn run_once(
    config: &AgentConfig,
    cloud: &CloudClient,
    state: &StateFile<PhsState>,
    mode: Mode,
    now: impl Fn() -> String,
) -> Result<PhsStatus, AgentError> {
    let mut saved = state.load()?;
    let since = match mode {
        Mode::Delta => saved.watermark.clone(),
        Mode::Full => None,
    };
    let mut status = PhsStatus {
        mode: match mode {
            Mode::Delta if since.is_some() => "delta",
            _ => "full",
        }
        .into(),
        started_at: now(),
        ..PhsStatus::default()
    };
    let mut drs = connect(config, &mut status).await?;
    let mut watermark = since.clone();
    {
        let mut replication = drs.replicate_secrets(&config.ad.base_dn, since.as_ref());
        while let Some(page) = replication.next_page().await? {
            status.replicated += page.accounts.len();
            sync_accounts(config, cloud, &page.accounts, &mut status).await?;
            watermark = Some(page.watermark);
        }
    }
    finish(drs, &mut status, now).await;
    saved.watermark = watermark;
    saved.last = Some(status.clone());
    state.save(&saved)?;
    Ok(status)
}

/// Above this many accounts a targeted cycle costs more requests than one delta from the
/// watermark (a bulk reset): the daemon then runs the delta instead.
pub const MAX_TARGETED: usize = 500;

/// Accounts object sync saw a password change on, waiting for a targeted cycle. Object sync
/// (its own thread) adds, the hash sync loop takes; an account changed twice before the next
/// cycle is read once.
#[derive(Debug, Default)]
pub struct PendingPasswordChanges {
    objects: std::sync::Mutex<BTreeSet<ObjectGuid>>,
    added: tokio::sync::Notify,
}

impl PendingPasswordChanges {
    pub fn add(&self, objects: &[ObjectGuid]) {
        if objects.is_empty() {
            return;
        }
        // A panic elsewhere while holding the lock leaves a set that is still valid.
        let mut pending = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend(objects.iter().copied());
        drop(pending);
        self.added.notify_one();
    }

    /// Takes every pending account.
    pub fn take(&self) -> Vec<ObjectGuid> {
        let mut pending = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending).into_iter().collect()
    }

    /// Returns once accounts were added since the last call (at once if that happened while
    /// nobody waited).
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

/// A targeted cycle: the accounts object sync saw a password change on, each read alone from
/// the DC (`EXOP_REPL_OBJ`, no search of the domain), their verifiers planned and sent as in
/// [`run_once`]. The watermark is neither used nor moved: the next delta still brings these
/// changes, which keeps it the safety net for anything this cycle missed. An account the DC
/// does not return (no object with that GUID, a failed request) is listed in the status's
/// errors and left to that delta; a deleted one comes back as a tombstone without a hash and
/// counts as `skipped_no_hash`.
pub async fn run_targeted(
    config: &AgentConfig,
    cloud: &CloudClient,
    state: &StateFile<PhsState>,
    objects: &[ObjectGuid],
    now: impl Fn() -> String,
) -> Result<PhsStatus, AgentError> {
    let mut status = PhsStatus {
        mode: "targeted".into(),
        started_at: now(),
        ..PhsStatus::default()
    };
    let mut drs = connect(config, &mut status).await?;
    let mut accounts = Vec::new();
    for &object in objects {
        match drs.replicate_object(object).await {
            Ok(reply) => accounts.extend(reply.accounts),
            Err(e) if e.connection_usable() => status.errors.push(ObjectError {
                object_guid: object.to_string(),
                dn: String::new(),
                message: e.to_string(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    status.replicated = accounts.len();
    sync_accounts(config, cloud, &accounts, &mut status).await?;
    finish(drs, &mut status, now).await;
    // Loaded only now: the watermark stays whatever the last watermark cycle saved.
    let mut saved = state.load()?;
    saved.last_targeted = Some(status.clone());
    state.save(&saved)?;
    Ok(status)
}

/// Connects to the DC for one cycle and records in `status` how the connection authenticated.
async fn connect(config: &AgentConfig, status: &mut PhsStatus) -> Result<DrsClient, AgentError> {
    let credentials = Credentials::new(config.ad.account.clone(), config.ad.password.expose());
    let drs = DrsClient::connect_with(
        config.ad.dc_host,
        &credentials,
        &config.ad.rpc_auth_options(),
    )
    .await?;
    status.rpc_auth = match drs.kerberos_fallback() {
        None => drs.mechanism().to_string(),
        Some(reason) => {
            log_kerberos_fallback(config, reason);
            format!("{} (Kerberos: {reason})", drs.mechanism())
        }
    };
    Ok(drs)
}

/// Plans and sends the verifiers of replicated accounts (a page of a watermark cycle, or the
/// objects of a targeted one), counting each outcome in `status`.
async fn sync_accounts(
    config: &AgentConfig,
    cloud: &CloudClient,
    accounts: &[ReplicatedAccount],
    status: &mut PhsStatus,
) -> Result<(), AgentError> {
    // The cloud is asked only about the accounts that carry a hash.
    let anchors: Vec<String> = accounts
        .iter()
        .filter(|a| a.nt_hash.is_some())
        .map(|a| anchor(&a.object_guid))
        .collect();
    let joined = cloud.joined_users(&anchors).await?;
    for account in accounts {
        match plan(account, &joined) {
            Decision::Skip(SkipReason::NoHash) => status.skipped_no_hash += 1,
            Decision::Skip(SkipReason::MachineAccount) => status.skipped_machine += 1,
            Decision::Skip(SkipReason::NotJoined) => status.skipped_not_joined += 1,
            Decision::Send { cloud_id } => match send(config, cloud, account, cloud_id).await {
                Ok(()) => status.sent += 1,
                Err(e) => status.errors.push(ObjectError {
                    object_guid: account.object_guid.to_string(),
                    dn: account.dn.clone(),
                    message: e.to_string(),
                }),
            },
        }
    }
    Ok(())
}
/// Ends a cycle whose accounts were all handled: unbinds and sets the outcome.
async fn finish(drs: DrsClient, status: &mut PhsStatus, now: impl Fn() -> String) {
    // A failed goodbye costs nothing but a log line.
    if let Err(e) = drs.unbind().await {
        tracing::warn!(error = %e, "DRSUnbind failed after a complete cycle");
    }
    status.finished_at = now();
    status.outcome = if status.errors.is_empty() {
        "success".into()
    } else {
        "completed_with_errors".into()
    };
}

/// Warns when `negotiate` falls back to NTLMv2, once per reason and process: hash sync connects
/// every few seconds.
fn log_kerberos_fallback(config: &AgentConfig, reason: &str) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    let first = match LAST.lock() {
        Ok(mut last) if *last != reason => {
            *last = reason.to_owned();
            true
        }
        Ok(_) => false,
        Err(_) => true,
    };
    if first {
        tracing::warn!(
            dc = %config.ad.dc_host,
            reason,
            "Kerberos cannot be used for the DRSUAPI bind: password hash sync falls back to NTLMv2 \
             (ad.rpc_auth = \"ntlm\" chooses NTLMv2 explicitly)"
        );
    } else {
        tracing::debug!(dc = %config.ad.dc_host, reason, "DRSUAPI bind with NTLMv2, not Kerberos");
    }
}

async fn send(
    config: &AgentConfig,
    cloud: &CloudClient,
    account: &ReplicatedAccount,
    cloud_id: &str,
) -> Result<(), AgentError> {
    let Some(nt) = &account.nt_hash else {
        return Ok(());
    };
    let verifier = PhsVerifier::compute(nt, config.phs.iterations, &mut rand::thread_rng());
    cloud.put_verifier(cloud_id, &verifier).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_phs::NtHash;

    fn account(sam: &str, uac: u32, with_hash: bool) -> ReplicatedAccount {
        ReplicatedAccount {
            object_guid: ObjectGuid::from_bytes(&[7; 16]).unwrap(),
            dn: format!("CN={sam},DC=lab"),
            sid: None,
            sam_account_name: Some(sam.into()),
            user_account_control: Some(uac),
            nt_hash: with_hash.then(|| NtHash::from_password("pw")),
        }
    }

    #[test]
    fn sends_only_hashes_of_joined_user_accounts() {
        let joined = HashMap::from([(
            anchor(&ObjectGuid::from_bytes(&[7; 16]).unwrap()),
            "c1".to_owned(),
        )]);
        assert_eq!(
            plan(&account("jack", 512, true), &joined),
            Decision::Send { cloud_id: "c1" }
        );
        assert_eq!(
            plan(&account("jack", 512, false), &joined),
            Decision::Skip(SkipReason::NoHash)
        );
        assert_eq!(
            plan(&account("pc1$", 0x1000, true), &joined),
            Decision::Skip(SkipReason::MachineAccount)
        );
        assert_eq!(
            plan(&account("dc$", 0x2000, true), &joined),
            Decision::Skip(SkipReason::MachineAccount)
        );
        assert_eq!(
            plan(&account("jack", 512, true), &HashMap::new()),
            Decision::Skip(SkipReason::NotJoined)
        );
    }

    #[test]
    fn disabled_accounts_still_send_their_hash() {
        // The cloud refuses a disabled account's sign-in from the synced `active`; the hash stays
        // current so re-enabling needs no password change.
        let joined = HashMap::from([(
            anchor(&ObjectGuid::from_bytes(&[7; 16]).unwrap()),
            "c1".to_owned(),
        )]);
        assert_eq!(
            plan(&account("jack", 514, true), &joined),
            Decision::Send { cloud_id: "c1" }
        );
    }

    #[tokio::test]
    async fn pending_changes_are_taken_once_and_wake_the_loop() {
        let pending = PendingPasswordChanges::default();
        let (a, b) = (
            ObjectGuid::from_bytes(&[1; 16]).unwrap(),
            ObjectGuid::from_bytes(&[2; 16]).unwrap(),
        );
        pending.add(&[]);
        assert!(pending.take().is_empty());
        // Reported while the loop was busy: the next wait returns at once.
        pending.add(&[b, a]);
        pending.add(&[a]);
        tokio::time::timeout(std::time::Duration::from_secs(1), pending.added())
            .await
            .unwrap();
        assert_eq!(pending.take(), [a, b]);
        assert!(pending.take().is_empty());
    }
}
