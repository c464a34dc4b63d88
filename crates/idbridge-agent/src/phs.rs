//! Password hash sync: replicate NT hashes from the DC, turn each into a salted verifier, and
//! send it to the cloud object joined to the AD object.
//!
//! [`plan`] is pure (what to do with each replicated account); [`run_once`] is the I/O around it.
//! The NT hash exists only inside `NtHash` (zeroized) and the verifier computation; nothing here
//! logs or stores either.

use std::collections::HashMap;

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
    pub last: Option<PhsStatus>,
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
    let credentials = Credentials::new(config.ad.account.clone(), config.ad.password.expose());
    let mut drs = DrsClient::connect_with(
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
    let mut watermark = since.clone();
    {
        let mut replication = drs.replicate_secrets(&config.ad.base_dn, since.as_ref());
        while let Some(page) = replication.next_page().await? {
            status.replicated += page.accounts.len();
            // The cloud is asked only about the accounts of this page that carry a hash.
            let anchors: Vec<String> = page
                .accounts
                .iter()
                .filter(|a| a.nt_hash.is_some())
                .map(|a| anchor(&a.object_guid))
                .collect();
            let joined = cloud.joined_users(&anchors).await?;
            for account in &page.accounts {
                match plan(account, &joined) {
                    Decision::Skip(SkipReason::NoHash) => status.skipped_no_hash += 1,
                    Decision::Skip(SkipReason::MachineAccount) => status.skipped_machine += 1,
                    Decision::Skip(SkipReason::NotJoined) => status.skipped_not_joined += 1,
                    Decision::Send { cloud_id } => {
                        match send(config, cloud, account, cloud_id).await {
                            Ok(()) => status.sent += 1,
                            Err(e) => status.errors.push(ObjectError {
                                object_guid: account.object_guid.to_string(),
                                dn: account.dn.clone(),
                                message: e.to_string(),
                            }),
                        }
                    }
                }
            }
            watermark = Some(page.watermark);
        }
    }
    // Everything was replicated and handled: a failed goodbye costs nothing but a log line.
    if let Err(e) = drs.unbind().await {
        tracing::warn!(error = %e, "DRSUnbind failed after a complete cycle");
    }
    status.finished_at = now();
    status.outcome = if status.errors.is_empty() {
        "success".into()
    } else {
        "completed_with_errors".into()
    };
    saved.watermark = watermark;
    saved.last = Some(status.clone());
    state.save(&saved)?;
    Ok(status)
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
}
