//! The model repository: `REPO/<model>/<version>/` holds ward packages, each opened only
//! through the verified loader. A package that fails verification is not served; when
//! the repository is scanned again, a new or changed version is verified before it
//! replaces anything, and a refused one leaves the last good version serving.
//!
//! There is no API to load, unload or fetch models: the repository on disk, as the
//! operator arranged it, is the only source.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use ward_core::AuditEvent;
use ward_exec::{Backend, LoadedPackage, TractBackend};
use ward_package::Trust;

use crate::batch::Batcher;
use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::policy::{EffectivePolicy, PolicyConfig};

/// Most models, and versions per model, scanned in a repository.
pub const MAX_MODELS: usize = 256;
pub const MAX_VERSIONS: usize = 64;

/// One served version of a model.
pub struct ServedModel {
    pub name: String,
    pub version: u64,
    pub package: Arc<LoadedPackage>,
    pub policy: EffectivePolicy,
    pub runner: Batcher,
    fingerprint: Fingerprint,
}

/// What a version directory looked like when it was loaded: names, sizes and mtimes.
/// A change to any of them makes the next scan verify the directory again.
type Fingerprint = Vec<(String, u64, Option<SystemTime>)>;

fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        entries.push((
            entry.file_name().to_string_lossy().into_owned(),
            meta.len(),
            meta.modified().ok(),
        ));
    }
    entries.sort();
    Ok(entries)
}

/// Model names follow the one model-name rule; versions are decimal integers.
fn model_dir_name(name: &str) -> bool {
    ward_package::model_name::check(name).is_ok()
}

fn version_dir_name(name: &str) -> Option<u64> {
    if name.is_empty() || name.len() > 18 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

pub struct Repository {
    root: PathBuf,
    trust: Trust,
    /// The engine every served package runs on: one thread per run (a model runs
    /// requests in parallel on threads of its own).
    backend: Arc<dyn Backend>,
    config: Arc<ServeConfig>,
    models: RwLock<BTreeMap<String, BTreeMap<u64, Arc<ServedModel>>>>,
    /// Versions refused as they are now: not verified again until they change.
    refused: Mutex<BTreeMap<(String, u64), Fingerprint>>,
    /// Entries skipped with a warning at the last scan, as they looked then: warned about
    /// again only once they change, or are gone and come back.
    warned: Mutex<BTreeMap<PathBuf, Look>>,
}

/// What a skipped entry looked like: its type, size and mtime (of the entry itself, not
/// what a link points to); `None` when it could not be read.
type Look = Option<(fs::FileType, u64, Option<SystemTime>)>;

fn look(path: &Path) -> Look {
    let meta = path.symlink_metadata().ok()?;
    Some((meta.file_type(), meta.len(), meta.modified().ok()))
}

/// What one scan did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub loaded: Vec<String>,
    pub refused: Vec<String>,
    pub removed: Vec<String>,
    /// Entries skipped with a warning by this scan (not those warned about before and
    /// unchanged since), relative to the repository.
    pub warned: Vec<String>,
}

impl Repository {
    pub fn new(root: PathBuf, trust: Trust, config: Arc<ServeConfig>) -> Result<Self, ServeError> {
        let meta = fs::metadata(&root).map_err(|source| ServeError::Io {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ServeError::Repository {
                path: root,
                reason: "not a directory".into(),
            });
        }
        let backend = TractBackend::new(1).map_err(|e| ServeError::Repository {
            path: root.clone(),
            reason: e.to_string(),
        })?;
        Ok(Repository {
            root,
            trust,
            backend: Arc::new(backend),
            config,
            models: RwLock::new(BTreeMap::new()),
            refused: Mutex::new(BTreeMap::new()),
            warned: Mutex::new(BTreeMap::new()),
        })
    }

    /// The version to serve: the one asked for, or the highest.
    pub fn get(&self, name: &str, version: Option<&str>) -> Option<Arc<ServedModel>> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let versions = models.get(name)?;
        match version {
            None => versions.values().next_back().cloned(),
            Some(v) => versions.get(&version_dir_name(v)?).cloned(),
        }
    }

    pub fn versions(&self, name: &str) -> Vec<u64> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every model version served now.
    pub fn served(&self) -> Vec<Arc<ServedModel>> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models.values().flat_map(|v| v.values().cloned()).collect()
    }

    pub fn model_count(&self) -> usize {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    fn load(&self, name: &str, version: u64, dir: &Path) -> Result<ServedModel, String> {
        let fingerprint = fingerprint(dir).map_err(|e| e.to_string())?;
        let package =
            LoadedPackage::open(dir, &self.trust, &self.config.package, self.backend.clone())
                .map_err(|e| e.to_string())?;
        if package.manifest().name != name {
            let reason = format!(
                "the directory is named {name:?} but holds the package {:?}",
                package.manifest().name
            );
            AuditEvent::new("package.refused", dir.display().to_string())
                .reason("name-mismatch", reason.clone())
                .emit();
            return Err(reason);
        }
        let model_config = self.config.model.get(name);
        let none = PolicyConfig::none();
        let model_policy = model_config
            .and_then(|m| m.output.as_ref())
            .unwrap_or(&none);
        let policy = EffectivePolicy::combine(
            &package.manifest().output_policy,
            &[&self.config.output, model_policy],
        );
        let package = Arc::new(package);
        let concurrency = model_config
            .and_then(|m| m.max_concurrency)
            .unwrap_or_else(|| self.config.limits.concurrency());
        let runner = Batcher::new(
            package.clone(),
            concurrency,
            self.config.limits.max_queue,
            model_config.and_then(|m| m.batching),
        );
        Ok(ServedModel {
            name: name.to_string(),
            version,
            package,
            policy,
            runner,
            fingerprint,
        })
    }

    /// Scans the repository: loads new and changed versions (verified first), drops
    /// versions whose directory is gone. Blocking; call it off the async runtime.
    pub fn scan(&self) -> ScanReport {
        let mut report = ScanReport::default();
        let mut found: BTreeMap<String, BTreeMap<u64, PathBuf>> = BTreeMap::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(
                    "cannot read the model repository {}: {e}",
                    self.root.display()
                );
                return report;
            }
        };
        let warned_before =
            std::mem::take(&mut *self.warned.lock().unwrap_or_else(|p| p.into_inner()));
        let mut warned_now = BTreeMap::new();
        // Logs `message` about `path` unless the last scan did and it has not changed.
        let mut warn = |path: PathBuf, label: String, message: String| {
            let now = look(&path);
            if warned_before.get(&path) != Some(&now) {
                tracing::warn!("{message}");
                report.warned.push(label);
            }
            warned_now.insert(path, now);
        };
        for entry in entries.flatten().take(MAX_MODELS) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !model_dir_name(&name) {
                warn(
                    entry.path(),
                    name.clone(),
                    format!("model repository: skipping {name:?} (not a model directory)"),
                );
                continue;
            }
            let Ok(versions) = fs::read_dir(entry.path()) else {
                continue;
            };
            for v in versions.flatten().take(MAX_VERSIONS) {
                let vname = v.file_name().to_string_lossy().into_owned();
                match version_dir_name(&vname) {
                    Some(n) if v.file_type().is_ok_and(|t| t.is_dir()) => {
                        found.entry(name.clone()).or_default().insert(n, v.path());
                    }
                    _ => warn(
                        v.path(),
                        format!("{name}/{vname}"),
                        format!("model repository: skipping {name}/{vname:?} (versions are directories named by a number)"),
                    ),
                }
            }
        }
        *self.warned.lock().unwrap_or_else(|p| p.into_inner()) = warned_now;

        for (name, versions) in &found {
            for (&version, dir) in versions {
                let current = self.get(name, Some(&version.to_string()));
                let now = fingerprint(dir).ok();
                let key = (name.clone(), version);
                let served_unchanged = current
                    .as_ref()
                    .is_some_and(|c| Some(&c.fingerprint) == now.as_ref());
                let refused_unchanged = now.is_some()
                    && self
                        .refused
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&key)
                        == now.as_ref();
                if served_unchanged || refused_unchanged {
                    continue;
                }
                let label = format!("{name}/{version}");
                match self.load(name, version, dir) {
                    Ok(model) => {
                        tracing::info!("serving {label}");
                        self.models
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(name.clone())
                            .or_default()
                            .insert(version, Arc::new(model));
                        self.refused
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                        report.loaded.push(label);
                    }
                    Err(reason) => {
                        if let Some(f) = now {
                            self.refused
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(key, f);
                        }
                        if current.is_some() {
                            tracing::error!(
                                "{label}: the changed package is refused, the version loaded before keeps serving: {reason}"
                            );
                        } else {
                            tracing::error!("{label}: not served: {reason}");
                        }
                        report.refused.push(label);
                    }
                }
            }
        }

        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        for (name, versions) in models.iter_mut() {
            versions.retain(|version, _| {
                let keep = found.get(name).is_some_and(|f| f.contains_key(version));
                if !keep {
                    report.removed.push(format!("{name}/{version}"));
                    tracing::info!("{name}/{version}: its directory is gone; no longer served");
                }
                keep
            });
        }
        models.retain(|_, versions| !versions.is_empty());
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names() {
        assert!(model_dir_name("resnet-18_v1.2"));
        assert!(!model_dir_name(".hidden") && !model_dir_name("a b") && !model_dir_name(""));
        assert_eq!(version_dir_name("12"), Some(12));
        assert_eq!(version_dir_name("1a"), None);
        assert_eq!(version_dir_name("+1"), None);
        assert_eq!(version_dir_name("99999999999999999999"), None);
    }

    #[test]
    fn a_skipped_entry_is_warned_about_once_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("notes.txt"), "a").unwrap();
        fs::create_dir_all(root.join("mlp").join("latest")).unwrap();
        let repo = Repository::new(
            root.to_path_buf(),
            Trust::AllowUnsigned,
            Arc::new(ServeConfig::default()),
        )
        .unwrap();
        let mut first = repo.scan().warned;
        first.sort();
        assert_eq!(first, ["mlp/latest", "notes.txt"]);
        // Unchanged entries are not warned about again, poll after poll.
        for _ in 0..3 {
            assert_eq!(repo.scan().warned, Vec::<String>::new());
        }
        // A changed entry is, once.
        fs::write(root.join("notes.txt"), "longer").unwrap();
        assert_eq!(repo.scan().warned, ["notes.txt"]);
        assert_eq!(repo.scan().warned, Vec::<String>::new());
        // So is one that was gone and came back, even looking the same.
        fs::remove_dir(root.join("mlp").join("latest")).unwrap();
        assert_eq!(repo.scan().warned, Vec::<String>::new());
        fs::create_dir(root.join("mlp").join("latest")).unwrap();
        assert_eq!(repo.scan().warned, ["mlp/latest"]);
        assert_eq!(repo.scan().warned, Vec::<String>::new());
    }
}
