//! The top-level `method` of a pipeline: what a grid point trains and evaluates. Its own
//! module, so the schema lists the names without reaching into the chain builder.

/// The top-level `method` of a grid point: what it trains and evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// stage 1 → select (the `[select]` rule and K) → stage 2
    ClipAst,
    /// the same with K random tensors per block
    RandomK,
    /// the same with random tensors matching, per block, the parameter count of the clip-ast
    /// selection of the same point (`[select]`'s rule and K)
    RandomParams,
    /// stage 2 over every block tensor, with `[full-ft]`'s λ (default 0: plain cross-entropy)
    FullFt,
    /// the weights as they are
    ZeroShot,
    /// a classifier fitted on frozen image features
    LinearProbe,
}

impl Method {
    /// Whether the point runs stage 1, the selection and stage 2.
    pub fn trains(self) -> bool {
        matches!(self, Method::ClipAst | Method::RandomK | Method::RandomParams | Method::FullFt)
    }
}
