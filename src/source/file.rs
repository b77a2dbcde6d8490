//! Placeholder until the file source lands: fails loudly if configured.

use crate::config::raw::FileSource;
use crate::source::SourceContext;

pub async fn run(_config: FileSource, _ctx: SourceContext) -> anyhow::Result<()> {
    anyhow::bail!("the file source is not built yet")
}
