//! Agents, their registrations, writeback requests and self-service reset state.

use sqlx::Row;

use super::{Store, StoreError, Tx};

/// A registered agent (its credential only as a hash, elsewhere).
#[derive(Clone, Debug)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    /// The X25519 public key passwords are sealed to (base64).
    pub public_key: String,
    pub registered_at: i64,
    pub key_rotated_at: i64,
}

/// A writeback request as recorded: `state` is `pending`, `done` or `failed`; `outcome` the
/// agent's answer (JSON) once known.
#[derive(Clone, Debug)]
pub struct WritebackRecord {
    pub id: String,
    pub user_id: String,
    pub operation: String,
    pub state: String,
    pub outcome: Option<String>,
}

const AGENT_COLUMNS: &str = "id, name, public_key, registered_at, key_rotated_at";

fn agent_from(row: &sqlx::any::AnyRow) -> Result<AgentRecord, StoreError> {
    Ok(AgentRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        public_key: row.try_get("public_key")?,
        registered_at: row.try_get("registered_at")?,
        key_rotated_at: row.try_get("key_rotated_at")?,
    })
}

impl Store {
    /// The live agent holding this credential.
    pub async fn agent_by_credential(&self, hash: &str) -> Result<Option<AgentRecord>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE credential_hash = $1 AND revoked_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(agent_from).transpose()
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let sql =
            format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND revoked_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(agent_from).transpose()
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE revoked_at IS NULL ORDER BY registered_at"
        );
        let rows = sqlx::query(&sql).fetch_all(self.db.pool()).await?;
        rows.iter().map(agent_from).collect()
    }

    pub async fn writeback_request(&self, id: &str) -> Result<Option<WritebackRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, user_id, operation, state, outcome FROM writeback_requests WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok(WritebackRecord {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                operation: r.try_get("operation")?,
                state: r.try_get("state")?,
                outcome: r.try_get("outcome")?,
            })
        })
        .transpose()
    }

    /// A user's registered alternate e-mail and TOTP secret.
    pub async fn sspr_method(
        &self,
        user_id: &str,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let row =
            sqlx::query("SELECT alternate_email, totp_secret FROM sspr_methods WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            Some(r) => Ok((r.try_get("alternate_email")?, r.try_get("totp_secret")?)),
            None => Ok((None, None)),
        }
    }

    /// The pending code of a user: its hash, expiry and failed attempts.
    pub async fn sspr_code(&self, user_id: &str) -> Result<Option<(String, i64, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT code_hash, expires_at, attempts FROM sspr_codes WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("code_hash")?,
                r.try_get("expires_at")?,
                r.try_get("attempts")?,
            ))
        })
        .transpose()
    }
}

impl Tx {
    pub async fn insert_registration(
        &mut self,
        hash: &str,
        name: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_registrations (hash, name, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(name)
            .bind(expires_at)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    /// Uses a registration token once; its name, if it was valid.
    pub async fn take_registration(
        &mut self,
        hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let used = sqlx::query(
            "UPDATE agent_registrations SET used_at = $1 \
             WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(hash)
        .execute(self.tx.conn())
        .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT name FROM agent_registrations WHERE hash = $1")
            .bind(hash)
            .fetch_one(self.tx.conn())
            .await?;
        Ok(Some(row.try_get("name")?))
    }

    pub async fn insert_agent(
        &mut self,
        agent: &AgentRecord,
        credential_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (id, name, public_key, credential_hash, registered_at, \
             key_rotated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&agent.id)
        .bind(&agent.name)
        .bind(&agent.public_key)
        .bind(credential_hash)
        .bind(agent.registered_at)
        .bind(agent.key_rotated_at)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn set_agent_key(
        &mut self,
        id: &str,
        public_key: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE agents SET public_key = $1, key_rotated_at = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(public_key)
        .bind(now)
        .bind(id)
        .execute(self.tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a new request; false when the id is already taken.
    pub async fn insert_writeback(
        &mut self,
        id: &str,
        user_id: &str,
        operation: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO writeback_requests (id, user_id, operation, state, created_at) \
             VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(user_id)
        .bind(operation)
        .bind(now)
        .execute(self.tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a request that never reached an agent, so a retry with its id can try again.
    pub async fn delete_writeback(&mut self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM writeback_requests WHERE id = $1")
            .bind(id)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    pub async fn finish_writeback(
        &mut self,
        id: &str,
        state: &str,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE writeback_requests SET state = $1, outcome = $2, finished_at = $3 \
             WHERE id = $4",
        )
        .bind(state)
        .bind(outcome)
        .bind(now)
        .bind(id)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn set_sspr_method(
        &mut self,
        user_id: &str,
        alternate_email: Option<&str>,
        totp_secret: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sspr_methods (user_id, alternate_email, totp_secret) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET alternate_email = $2, totp_secret = $3",
        )
        .bind(user_id)
        .bind(alternate_email)
        .bind(totp_secret)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn put_sspr_code(
        &mut self,
        user_id: &str,
        code_hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sspr_codes (user_id, code_hash, expires_at, attempts) \
             VALUES ($1, $2, $3, 0) \
             ON CONFLICT (user_id) DO UPDATE SET code_hash = $2, expires_at = $3, attempts = 0",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(expires_at)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn count_sspr_attempt(&mut self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sspr_codes SET attempts = attempts + 1 WHERE user_id = $1")
            .bind(user_id)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    pub async fn delete_sspr_code(&mut self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sspr_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }
}
