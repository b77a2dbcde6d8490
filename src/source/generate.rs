//! Placeholder until the generate source lands: fails loudly if configured.

use crate::config::raw::GenerateSource;
use crate::source::SourceContext;

pub async fn run(_config: GenerateSource, _ctx: SourceContext) -> anyhow::Result<()> {
    anyhow::bail!("the generate source is not built yet")
}

pub fn cli(_args: crate::cli::GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("predmon generate is not built yet")
}
