//! Small JSON state files in the agent's data directory, replaced atomically (write, fsync,
//! rename), so a crash leaves either the old or the new state, never half of one.

use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::AgentError;

pub struct StateFile<T> {
    path: PathBuf,
    _kind: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned + Default> StateFile<T> {
    pub fn new(data_dir: &Path, name: &str) -> Self {
        Self {
            path: data_dir.join(name),
            _kind: PhantomData,
        }
    }

    /// The saved state, or the default when there is none yet.
    pub fn load(&self) -> Result<T, AgentError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::State {
                path: self.path.clone(),
                message: format!("unreadable ({e}); remove it to start over"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(AgentError::State {
                path: self.path.clone(),
                message: e.to_string(),
            }),
        }
    }

    pub fn save(&self, value: &T) -> Result<(), AgentError> {
        let failed = |e: &dyn std::fmt::Display| AgentError::State {
            path: self.path.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        }
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| failed(&e))?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| failed(&e))?;
        file.write_all(&bytes).map_err(|e| failed(&e))?;
        file.sync_all().map_err(|e| failed(&e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| failed(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_corruption() {
        let dir = std::env::temp_dir().join(format!("idbridge-state-{}", std::process::id()));
        let file: StateFile<Vec<u32>> = StateFile::new(&dir, "x.json");
        assert_eq!(file.load().unwrap(), Vec::<u32>::new());
        file.save(&vec![1, 2]).unwrap();
        assert_eq!(file.load().unwrap(), vec![1, 2]);
        std::fs::write(dir.join("x.json"), b"{oops").unwrap();
        assert!(file.load().unwrap_err().to_string().contains("x.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
