//! paired.png: the picture a reader looks for first. Per table, one row per other label and
//! shot count: the subject's mean paired difference (percentage points) with its 95% interval,
//! against a zero line, on an axis fitted to the intervals.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use plotters::prelude::*;

use crate::fsutil;

/// One interval: `label` (`random-params, 16 shots`), mean and half-width in points.
pub struct Row {
    pub label: String,
    pub mean: f64,
    /// `None` for a single pair.
    pub half: Option<f64>,
}

pub struct Panel {
    pub title: String,
    pub rows: Vec<Row>,
}

const WIDTH: u32 = 900;
const ROW_HEIGHT: u32 = 26;
const PANEL_EXTRA: u32 = 110;
const CAPTION: u32 = 40;

pub fn write_png(panels: &[Panel], path: &Path, title: &str) -> Result<()> {
    if panels.iter().all(|p| p.rows.is_empty()) {
        bail!("{}: nothing to plot", path.display());
    }
    fsutil::write_atomically_with(path, |tmp| draw(panels, tmp, title))
}

/// The x range: every interval and 0, with a margin of a tenth of the span.
pub fn x_range(rows: &[Row]) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for r in rows {
        let h = r.half.unwrap_or(0.0);
        lo = lo.min(r.mean - h);
        hi = hi.max(r.mean + h);
    }
    let margin = ((hi - lo) * 0.1).max(0.5);
    (lo - margin, hi + margin)
}

fn draw(panels: &[Panel], path: &Path, title: &str) -> Result<()> {
    super::png::register_font()?;
    let heights: Vec<u32> = panels.iter().map(|p| p.rows.len() as u32 * ROW_HEIGHT + PANEL_EXTRA).collect();
    let root = BitMapBackend::new(path, (WIDTH, heights.iter().sum::<u32>() + CAPTION)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut rest = root.titled(title, ("sans-serif", 22)).map_err(|e| fail(&e))?;
    for (panel, &h) in panels.iter().zip(&heights) {
        let (area, below) = rest.split_vertically(h);
        draw_panel(panel, &area).map_err(|e| fail(&e))?;
        rest = below;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

fn draw_panel(panel: &Panel, area: &DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let n = panel.rows.len();
    let (lo, hi) = x_range(&panel.rows);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(260)
        .build_cartesian_2d(lo..hi, -0.5f64..(n as f64 - 0.5))
        .map_err(|x| e(&x))?;
    let labels: Vec<String> = panel.rows.iter().map(|r| r.label.clone()).collect();
    // Row i is drawn at y = n − 1 − i, so the first row is on top.
    chart
        .configure_mesh()
        .x_desc("difference, percentage points (mean, 95% interval)")
        .y_labels(n)
        .y_label_formatter(&|y| {
            let i = n as i64 - 1 - y.round() as i64;
            usize::try_from(i).ok().and_then(|i| labels.get(i)).cloned().unwrap_or_default()
        })
        .disable_y_mesh()
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, -0.5), (0.0, n as f64 - 0.5)], BLACK.stroke_width(1))))
        .map_err(|x| e(&x))?;
    for (i, row) in panel.rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        // Blue where the interval excludes 0, grey where it does not decide.
        let decided = row.half.is_some_and(|h| row.mean - h > 0.0 || row.mean + h < 0.0);
        let colour = if decided { BLUE } else { RGBColor(120, 120, 120) };
        if let Some(h) = row.half {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(row.mean - h, y), (row.mean + h, y)],
                    colour.stroke_width(2),
                )))
                .map_err(|x| e(&x))?;
        }
        chart.draw_series(std::iter::once(Circle::new((row.mean, y), 5, colour.filled()))).map_err(|x| e(&x))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_holds_every_interval_and_zero() {
        let rows = vec![
            Row { label: "a".into(), mean: 2.0, half: Some(1.0) },
            Row { label: "b".into(), mean: 4.0, half: None },
        ];
        let (lo, hi) = x_range(&rows);
        assert!(lo < 0.0 && hi > 4.0, "{lo}..{hi}");
        assert!(hi - lo < 6.0, "fitted, not 0-100: {lo}..{hi}");
    }
}
