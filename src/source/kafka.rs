//! Placeholder until the kafka source lands: fails loudly if configured.

use crate::config::raw::KafkaSource;
use crate::source::SourceContext;

pub async fn run(_config: KafkaSource, _ctx: SourceContext) -> anyhow::Result<()> {
    anyhow::bail!("the kafka source is not built yet")
}
