//! `portolan crds`: print Portolan's CustomResourceDefinitions as one multi-document YAML
//! stream, or write one file per CRD into a directory (`crds/` in the repository).

use crate::cli::CrdsArgs;
use anyhow::Context;
use std::process::ExitCode;

pub fn run(args: &CrdsArgs) -> anyhow::Result<ExitCode> {
    match &args.out {
        None => crate::output::print(&portolan_api::crds::all_yaml()?)?,
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in portolan_api::crds::files()? {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
