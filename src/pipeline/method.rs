//! The top-level `method` of a pipeline: what a grid point trains and evaluates. Its own
//! module, so the schema lists the names without reaching into the chain builder.

use super::grid::Point;
use crate::settings::parse_choice;

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
    /// The method of a point (checked when the file was read).
    pub fn of(point: &Point) -> Method {
        let name = point.get("method").as_str();
        parse_choice(name).unwrap_or_else(|why| panic!("method {name} {why}; the schema checks it"))
    }

    /// Whether the point runs stage 1, the selection and stage 2.
    pub fn trains(self) -> bool {
        matches!(self, Method::ClipAst | Method::RandomK | Method::RandomParams | Method::FullFt)
    }
}
