//! `portolan render`: what a proxy of one group would get, as Envoy JSON, without serving.
//! [`Loaded`] is shared with `portolan test` and `portolan explain`. With
//! `--enable-envoy-patch-policy`, the group's EnvoyPatchPolicies are applied and checked as
//! `serve` applies them; one that does not apply is the error (exit status 1).

use crate::cli::RenderArgs;
use anyhow::Context;
use portolan_files::FileSource;
use portolan_model::{Index, World};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let loaded = Loaded::read(&args.config_dir)?;
    let json = loaded.render(&args.cluster, &args.translate.options())?;
    crate::output::println(&serde_json::to_string_pretty(&json)?)?;
    Ok(ExitCode::SUCCESS)
}

/// A directory of manifests read into a world (rejected documents are reported on stderr).
pub struct Loaded {
    world: Arc<World>,
}

// === impl Loaded ===

impl Loaded {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let mut source = FileSource::new(dir);
        let changes = source
            .rescan()
            .with_context(|| format!("reading {}", dir.display()))?;
        for e in &changes.errors {
            eprintln!("rejected: {e}");
        }
        let mut index = Index::new();
        changes.apply_to(portolan_files::REPORTER, &mut index);
        Ok(Self {
            world: index.world(),
        })
    }

    /// The Envoy JSON a proxy of `group` (node cluster or group key) gets.
    pub fn render(
        &self,
        group: &str,
        options: &portolan_translate::Options,
    ) -> anyhow::Result<serde_json::Value> {
        let key = portolan_pipeline::groups::group_for_name(group, &self.world)
            .with_context(|| format!("group {group:?}"))?;
        let resources = if options.envoy_patch_policy {
            portolan_pipeline::translate_checked(&self.world, &key, options)
                .map_err(|e| anyhow::anyhow!("refused: {e}"))?
                .0
        } else {
            portolan_translate::translate(&self.world, &key, options)
        };
        Ok(portolan_translate::json::resources_to_json(&resources)?)
    }
}
