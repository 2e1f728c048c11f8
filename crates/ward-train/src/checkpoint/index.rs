//! `checkpoint.json`: what a checkpoint is, in clear and signed. It names the model (for
//! the trust policy), the run and the training spec it belongs to, where the run stood,
//! the validation metrics at that point, how `state.age` is encrypted and its size.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ward_package::layout::Index;
use ward_package::{PackageError, CHECKPOINT_STATE_FILE};

use super::seal::Encryption;

/// The `format` of every checkpoint index.
pub const CHECKPOINT_FORMAT: &str = "ward-checkpoint";
/// The index version this ward writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Most validation metrics an index records.
const MAX_METRICS: usize = 64;
/// Most recipients an index records.
const MAX_RECIPIENTS: usize = 64;

/// Where a run stands: the steps taken, and the next batch (epoch, index in the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub step: u64,
    pub epoch: u64,
    pub batch: u64,
}

/// The index of a checkpoint (`checkpoint.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointIndex {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Always [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// The model's name, which the trust policy's names match.
    pub model: String,
    /// The run's id: 32 hexadecimal digits drawn from the OS when the run started.
    pub run: String,
    /// SHA-256 of the training spec's bytes (hexadecimal).
    pub spec_sha256: String,
    pub position: Position,
    /// Seconds since the Unix epoch when the checkpoint was written.
    pub created: u64,
    /// The validation metrics of the last finished epoch (`val_loss`, `val_accuracy`,
    /// ...), by the names `metrics.jsonl` uses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    pub encryption: Encryption,
    /// The X25519 recipients `state.age` is encrypted to (public keys; a resumed run
    /// encrypts to them again unless told otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The size of `state.age` in bytes.
    pub state_bytes: u64,
    /// The ward that wrote it.
    pub ward_version: String,
    /// Set on the checkpoints of a distributed job (`ward cluster`): a server's shard, or
    /// the coordinator's record of a whole cluster checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterIndex>,
}

/// Where a checkpoint of a distributed job belongs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterIndex {
    /// The job's name (its certificates' `spiffe://CLUSTER/JOB/...`).
    pub job: String,
    /// Who wrote it: `coordinator` or `server/I`.
    pub member: String,
    pub servers: u32,
    pub workers: u32,
    /// The coordinator's only: the SHA-256 (hexadecimal) of each server's `state.age` at
    /// this step, by rank. A server resumes only from the shard its digest names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
}

/// Most servers a cluster checkpoint records.
const MAX_SHARDS: usize = 4096;

impl CheckpointIndex {
    /// Checks what serde cannot: the format and version, the name, the hexadecimal ids,
    /// finite metrics, the lists' lengths.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "format is {:?}, not {CHECKPOINT_FORMAT:?}",
                self.format
            ));
        }
        if self.version != CHECKPOINT_VERSION {
            return Err(format!(
                "version {} is not supported (this ward reads version {CHECKPOINT_VERSION})",
                self.version
            ));
        }
        ward_package::model_name::check(&self.model).map_err(|e| format!("model: {e}"))?;
        if !is_hex(&self.run, 32) {
            return Err("run must be 32 hexadecimal digits".into());
        }
        if !is_hex(&self.spec_sha256, 64) {
            return Err("spec_sha256 must be 64 hexadecimal digits".into());
        }
        if self.metrics.len() > MAX_METRICS {
            return Err(format!("more than {MAX_METRICS} metrics"));
        }
        if let Some((name, _)) = self
            .metrics
            .iter()
            .find(|(n, v)| !v.is_finite() || n.len() > 64)
        {
            return Err(format!(
                "metric {name:?} is not finite or its name is too long"
            ));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(format!("more than {MAX_RECIPIENTS} recipients"));
        }
        if let Some(cluster) = &self.cluster {
            if cluster.job.is_empty() || cluster.job.len() > 63 || cluster.member.len() > 64 {
                return Err("cluster: the job or member name is empty or too long".into());
            }
            if cluster.shards.len() > MAX_SHARDS {
                return Err(format!("cluster: more than {MAX_SHARDS} shards"));
            }
            if let Some(bad) = cluster.shards.iter().find(|d| !is_hex(d, 64)) {
                return Err(format!(
                    "cluster: shard digest {bad:?} is not 64 hexadecimal digits"
                ));
            }
            let coordinator = cluster.member == "coordinator";
            if coordinator && cluster.shards.len() != cluster.servers as usize {
                return Err(format!(
                    "cluster: {} shard digests for {} servers",
                    cluster.shards.len(),
                    cluster.servers
                ));
            }
            if !coordinator && !cluster.shards.is_empty() {
                return Err("cluster: only the coordinator's checkpoint lists shards".into());
            }
        }
        match (self.encryption, self.recipients.is_empty()) {
            (Encryption::X25519, true) => Err("x25519 encryption lists no recipient".into()),
            (Encryption::Scrypt, false) => Err("scrypt encryption lists recipients".into()),
            _ => Ok(()),
        }
    }

    /// Pretty JSON, as written.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        json
    }
}

impl Index for CheckpointIndex {
    fn parse(bytes: &[u8]) -> Result<CheckpointIndex, PackageError> {
        let invalid = |reason: String| PackageError::Inconsistent {
            reason: format!("checkpoint.json: {reason}"),
        };
        let index: CheckpointIndex =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        index.validate().map_err(invalid)?;
        Ok(index)
    }

    fn model_name(&self) -> &str {
        &self.model
    }

    fn recorded_size(&self, file: &str) -> Option<u64> {
        (file == CHECKPOINT_STATE_FILE).then_some(self.state_bytes)
    }
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> CheckpointIndex {
        CheckpointIndex {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            model: "lenet".into(),
            run: "0123456789abcdef0123456789abcdef".into(),
            spec_sha256: "ab".repeat(32),
            position: Position {
                step: 10,
                epoch: 1,
                batch: 2,
            },
            created: 1,
            metrics: BTreeMap::from([("val_accuracy".into(), 0.5)]),
            encryption: Encryption::X25519,
            recipients: vec!["age1x".into()],
            state_bytes: 100,
            ward_version: "0.1.0".into(),
            cluster: None,
        }
    }

    #[test]
    fn an_index_reads_back_and_names_what_is_wrong() {
        let index = sample();
        let back = CheckpointIndex::parse(&index.to_json()).unwrap();
        assert_eq!(back, index);
        assert_eq!(back.recorded_size("state.age"), Some(100));
        assert_eq!(back.recorded_size("other"), None);

        let refused = |edit: &dyn Fn(&mut CheckpointIndex), needle: &str| {
            let mut i = sample();
            edit(&mut i);
            let e = CheckpointIndex::parse(&i.to_json())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        };
        refused(&|i| i.format = "ward-package".into(), "format");
        refused(&|i| i.version = 2, "version 2");
        refused(&|i| i.run = "xyz".into(), "run");
        refused(&|i| i.spec_sha256 = "AB".repeat(32), "spec_sha256");
        refused(&|i| i.model = "../x".into(), "model");
        refused(&|i| i.recipients.clear(), "no recipient");
        refused(
            &|i| {
                i.metrics.insert("v".repeat(65), 1.0);
            },
            "too long",
        );
        refused(
            &|i| {
                i.cluster = Some(ClusterIndex {
                    job: "j".into(),
                    member: "coordinator".into(),
                    servers: 2,
                    workers: 2,
                    shards: vec!["ab".repeat(32)],
                })
            },
            "1 shard digests for 2 servers",
        );
        refused(
            &|i| {
                i.cluster = Some(ClusterIndex {
                    job: "j".into(),
                    member: "server/0".into(),
                    servers: 1,
                    workers: 2,
                    shards: vec!["AB".repeat(32)],
                })
            },
            "not 64 hexadecimal digits",
        );
        let mut cluster = sample();
        cluster.cluster = Some(ClusterIndex {
            job: "j".into(),
            member: "coordinator".into(),
            servers: 1,
            workers: 2,
            shards: vec!["ab".repeat(32)],
        });
        assert_eq!(CheckpointIndex::parse(&cluster.to_json()).unwrap(), cluster);
        let extra =
            String::from_utf8(sample().to_json())
                .unwrap()
                .replacen('{', "{\"extra\": 1,", 1);
        assert!(CheckpointIndex::parse(extra.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
    }
}
