//! `portolan render`: what a proxy of one group would get, as Envoy JSON, without serving.
//! With `--enable-envoy-patch-policy`, the group's EnvoyPatchPolicies are applied and checked
//! as `serve` applies them; one that does not apply is printed and the exit status is 1.

use crate::cli::RenderArgs;
use anyhow::Context;
use portolan_files::FileSource;
use portolan_model::Index;
use std::process::ExitCode;

pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let mut source = FileSource::new(&args.config_dir);
    let changes = source
        .rescan()
        .with_context(|| format!("reading {}", args.config_dir.display()))?;
    for e in &changes.errors {
        eprintln!("rejected: {e}");
    }
    let mut index = Index::new();
    changes.apply_to(portolan_files::REPORTER, &mut index);
    let world = index.world();
    let group =
        portolan_pipeline::groups::group_for_name(&args.cluster, &world).context("--cluster")?;
    let options = args.translate.options();
    let resources = if options.envoy_patch_policy {
        match portolan_pipeline::translate_checked(&world, &group, &options) {
            Ok((resources, _)) => resources,
            Err(e) => {
                eprintln!("refused: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    } else {
        portolan_translate::translate(&world, &group, &options)
    };
    let json = portolan_translate::json::resources_to_json(&resources)?;
    crate::output::println(&serde_json::to_string_pretty(&json)?)?;
    Ok(ExitCode::SUCCESS)
}
