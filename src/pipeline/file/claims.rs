//! `[report] claims = [{ claim = "...", other = "...", metric = "..." }, ...]`: the comparisons
//! report.md gives a verdict line each (`report::verdict`), read like `[eval] targets`.

use anyhow::{Result, bail};
use toml::Spanned;
use toml::de::DeValue;

use super::Reader;
use crate::report::verdict::{Claim, METRICS};

impl Reader<'_> {
    pub(super) fn claims(&self, v: &Spanned<DeValue<'_>>) -> Result<Vec<Claim>> {
        let example = "claims = [{ claim = \"CLIP-AST beats zero-shot\", other = \"zero-shot\", metric = \"hm\" }]";
        let mut claims: Vec<Claim> = Vec::new();
        for (line, values) in self.table_list(v, "report.claims", example)? {
            let at = format!("{}:{line}", self.path.display());
            let text = |name: &str| values.get(name).map(|v| v.as_str().to_string());
            let (Some(claim), Some(other), Some(metric)) = (text("claim"), text("other"), text("metric")) else {
                bail!("{at}: each of [report] claims needs claim = \"...\", other = \"...\" and metric = \"...\"");
            };
            debug_assert!(METRICS.contains(&metric.as_str()), "the schema checks the metric");
            if claims.iter().any(|c| c.text == claim) {
                bail!("{at}: [report] claims lists \"{claim}\" twice");
            }
            claims.push(Claim { text: claim, other, metric, classes: text("classes") });
        }
        Ok(claims)
    }
}
