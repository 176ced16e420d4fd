//! Pillow's convolution resampler (`Image.resize` with `Resampling.BICUBIC`), re-implemented
//! so that the uint8 pixels we feed CLIP are the ones open_clip's PIL pipeline produces.
//!
//! The details below are all load-bearing for bit-exactness with Pillow:
//! * the filter is Keys' cubic with a = -0.5 and support 2, stretched by the downscale factor
//!   (antialiasing) and evaluated at pixel centres (`center = (i + 0.5) * scale`);
//! * each output pixel's taps are normalised to sum to one in f64, then turned into 22-bit
//!   fixed point, rounding half away from zero;
//! * the two passes run one after the other, the first one's result rounded and clamped to u8
//!   before the second reads it, so their order changes the output: Pillow 13 runs the
//!   horizontal pass first unless the height shrinks by more than twice as many pixels as the
//!   width does (a speed heuristic from Pillow 13, python-pillow/Pillow#9549);
//! * a pass whose axis keeps its size is skipped (it would be the identity anyway).

/// Pillow's `PRECISION_BITS`: leaves 8 bits for the pixel value and 2 for taps summing above
/// one (negative lobes), so 32-bit accumulators cannot overflow.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const BICUBIC_SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Taps for a window of one axis' output indices: the window's `i`-th output reads input
/// indices `first[i]..first[i] + len[i]` weighted by `weights[i * ksize..][..len[i]]`.
struct Taps {
    ksize: usize,
    first: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
}

/// Taps of outputs `window` out of `out_size`; each output's taps depend only on its own index,
/// so a window gives exactly the taps of the full resize.
fn taps(in_size: usize, out_size: usize, window: std::ops::Range<usize>) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut first = Vec::with_capacity(window.len());
    let mut len = Vec::with_capacity(window.len());
    let mut weights = vec![0i32; window.len() * ksize];
    let mut w = vec![0f64; ksize];
    for (i, row) in window.zip(weights.chunks_exact_mut(ksize)) {
        let center = (i as f64 + 0.5) * scale;
        // Pillow rounds with a C `(int)` cast (truncation toward zero) after adding 0.5.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = (xmax - xmin).max(0) as usize;
        let mut total = 0.0;
        for (k, wk) in w[..n].iter_mut().enumerate() {
            // Same association as Pillow, `(x + xmin - center + 0.5) * ss`, so f64 rounding
            // (and therefore the fixed-point taps) agree to the last bit.
            *wk = bicubic(((k as i64 + xmin) as f64 - center + 0.5) * ss);
            total += *wk;
        }
        for (dst, &wk) in row.iter_mut().zip(&w[..n]) {
            let wk = if total != 0.0 { wk / total } else { wk };
            let scaled = wk * f64::from(1u32 << PRECISION_BITS);
            *dst = if wk < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 };
        }
        first.push(xmin as usize);
        len.push(n);
    }
    Taps { ksize, first, len, weights }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resample interleaved 8-bit pixels with `C` channels from `in_w`x`in_h` to `out_w`x`out_h`,
/// exactly as Pillow's `Image.resize(..., BICUBIC)` does for 8-bit modes.
pub fn bicubic_resize<const C: usize>(src: &[u8], in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    bicubic_resize_window::<C>(src, (in_w, in_h), (out_w, out_h), (0, 0), (out_w, out_h))
}

/// Only the `win` = (w, h) pixels at `at` = (x, y) of [`bicubic_resize`]'s output, computed
/// without the rest: a centre crop of a resized panorama need not resample the whole width.
pub fn bicubic_resize_window<const C: usize>(
    src: &[u8],
    (in_w, in_h): (usize, usize),
    (out_w, out_h): (usize, usize),
    (x0, y0): (usize, usize),
    (win_w, win_h): (usize, usize),
) -> Vec<u8> {
    assert_eq!(src.len(), in_w * in_h * C, "buffer does not match its size");
    assert!(in_w > 0 && in_h > 0 && out_w > 0 && out_h > 0, "empty image");
    assert!(x0 + win_w <= out_w && y0 + win_h <= out_h, "window outside the output");
    // Pillow's pass order depends on the full sizes, not on the window.
    let (dw, dh) = (in_w as i64 - out_w as i64, in_h as i64 - out_h as i64);
    let vertical_first = dh > 0 && dh > 2 * dw;

    // An axis that keeps its size is not resampled, so its window is a plain crop of the input.
    let (mut src, mut src_w) = (std::borrow::Cow::Borrowed(src), in_w);
    if in_h == out_h {
        src = src[y0 * in_w * C..(y0 + win_h) * in_w * C].to_vec().into();
    }
    if in_w == out_w {
        let rows = src.len() / (in_w * C);
        let mut cropped = Vec::with_capacity(rows * win_w * C);
        for row in src.chunks_exact(in_w * C) {
            cropped.extend_from_slice(&row[x0 * C..(x0 + win_w) * C]);
        }
        (src, src_w) = (cropped.into(), win_w);
    }
    let tx = (in_w != out_w).then(|| taps(in_w, out_w, x0..x0 + win_w));
    let ty = (in_h != out_h).then(|| taps(in_h, out_h, y0..y0 + win_h));
    match (tx, ty) {
        (None, None) => src.into_owned(),
        (Some(tx), None) => horizontal_pass::<C>(&src, src_w, &tx),
        (None, Some(ty)) => vertical_pass::<C>(&src, src_w, 0, &ty),
        (Some(tx), Some(ty)) if vertical_first => {
            horizontal_pass::<C>(&vertical_pass::<C>(&src, src_w, 0, &ty), src_w, &tx)
        }
        (Some(tx), Some(ty)) => {
            // Only the rows the vertical pass will read need a horizontal pass.
            let row0 = ty.first[0];
            let row1 = ty.first[win_h - 1] + ty.len[win_h - 1];
            let rows = &src[row0 * src_w * C..row1 * src_w * C];
            vertical_pass::<C>(&horizontal_pass::<C>(rows, src_w, &tx), win_w, row0, &ty)
        }
    }
}

fn horizontal_pass<const C: usize>(src: &[u8], in_w: usize, t: &Taps) -> Vec<u8> {
    let out_w = t.first.len();
    let rows = src.len() / (in_w * C);
    let mut out = vec![0u8; rows * out_w * C];
    for (src_row, out_row) in src.chunks_exact(in_w * C).zip(out.chunks_exact_mut(out_w * C)) {
        for (x, px) in out_row.chunks_exact_mut(C).enumerate() {
            let w = &t.weights[x * t.ksize..][..t.len[x]];
            let s = &src_row[t.first[x] * C..][..t.len[x] * C];
            let mut acc = [HALF; C];
            for (&wk, sp) in w.iter().zip(s.chunks_exact(C)) {
                for c in 0..C {
                    acc[c] += i32::from(sp[c]) * wk;
                }
            }
            for c in 0..C {
                px[c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// `row0` is the source row that `src`'s first row stands for (rows above it were never
/// horizontally resampled because no output row reads them).
fn vertical_pass<const C: usize>(src: &[u8], w: usize, row0: usize, t: &Taps) -> Vec<u8> {
    let stride = w * C;
    let out_h = t.first.len();
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (y, out_row) in out.chunks_exact_mut(stride).enumerate() {
        acc.fill(HALF);
        let weights = &t.weights[y * t.ksize..][..t.len[y]];
        let first = t.first[y] - row0;
        // Row-major accumulation: integer sums are order-independent, so this matches
        // Pillow's column-by-column loop while reading memory sequentially.
        for (k, &wk) in weights.iter().enumerate() {
            let src_row = &src[(first + k) * stride..][..stride];
            for (a, &p) in acc.iter_mut().zip(src_row) {
                *a += i32::from(p) * wk;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// [`bicubic_resize`] of the `(left, top, width, height)` rectangle of an interleaved image
/// `src_w` pixels wide, equal to it on a cropped copy to the bit, but faster: it reads the
/// rectangle in place, and both passes run as vertical passes over whole rows (the horizontal one
/// on a transposed copy), which the compiler vectorises, with AVX2 where the CPU has it.
/// Integer sums do not depend on their order, so this changes no output value.
pub fn bicubic_resize_rect<const C: usize>(
    src: &[u8],
    src_w: usize,
    rect: (usize, usize, usize, usize),
    out_size: (usize, usize),
) -> Vec<u8> {
    let mut out = Vec::new();
    bicubic_resize_rect_into::<C>(src, src_w, rect, out_size, &mut out);
    out
}

thread_local! {
    /// Intermediate images of [`bicubic_resize_rect_into`], kept per thread: fresh buffers of this
    /// size come from the kernel as new pages, and faulting them in costs as much as the resize.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`bicubic_resize_rect`] into `out` (resized to fit), reusing its allocation.
pub fn bicubic_resize_rect_into<const C: usize>(
    src: &[u8],
    src_w: usize,
    (left, top, w, h): (usize, usize, usize, usize),
    (out_w, out_h): (usize, usize),
    out: &mut Vec<u8>,
) {
    assert!(w > 0 && h > 0 && out_w > 0 && out_h > 0, "empty image");
    assert!(left + w <= src_w && (top + h) * src_w * C <= src.len(), "rectangle outside the image");
    let stride = src_w * C;
    let at = |row: usize| top * stride + left * C + row * stride;
    let (dw, dh) = (w as i64 - out_w as i64, h as i64 - out_h as i64);
    let vertical_first = dh > 0 && dh > 2 * dw;
    let tx = (w != out_w).then(|| taps(w, out_w, 0..out_w));
    let ty = (h != out_h).then(|| taps(h, out_h, 0..out_h));
    let whole_rows = |offset, len, first| Rows { offset, stride: len, len, first };
    SCRATCH.with_borrow_mut(|(a, b)| match (tx, ty) {
        (None, None) => {
            out.clear();
            (0..h).for_each(|y| out.extend_from_slice(&src[at(y)..at(y) + w * C]));
        }
        (None, Some(ty)) => rows_pass(src, Rows { offset: at(0), stride, len: w * C, first: 0 }, &ty, out),
        (Some(tx), Some(ty)) if vertical_first => {
            rows_pass(src, Rows { offset: at(0), stride, len: w * C, first: 0 }, &ty, a);
            transpose::<C>(a, 0, w * C, w, out_h, b);
            rows_pass(b, whole_rows(0, out_h * C, 0), &tx, a);
            transpose::<C>(a, 0, out_h * C, out_h, out_w, out);
        }
        (Some(tx), ty) => {
            // Horizontal pass on the rows the vertical one reads, as a vertical pass over columns.
            let (r0, r1) = ty.as_ref().map_or((0, h), |ty| (ty.first[0], ty.first[out_h - 1] + ty.len[out_h - 1]));
            let n = r1 - r0;
            transpose::<C>(src, at(r0), stride, w, n, a);
            rows_pass(a, whole_rows(0, n * C, 0), &tx, b);
            match ty {
                None => transpose::<C>(b, 0, n * C, n, out_w, out),
                Some(ty) => {
                    transpose::<C>(b, 0, n * C, n, out_w, a);
                    rows_pass(a, whole_rows(0, out_w * C, r0), &ty, out);
                }
            }
        }
    });
}

/// Where a pass finds its input rows: tap row `first + i` is `src[offset + i * stride..][..len]`.
#[derive(Clone, Copy)]
struct Rows {
    offset: usize,
    stride: usize,
    len: usize,
    first: usize,
}

/// A vertical pass over strided rows (see [`vertical_pass`]), into `out` as a contiguous
/// `taps × len` buffer.
fn rows_pass(src: &[u8], rows: Rows, t: &Taps, out: &mut Vec<u8>) {
    fit(out, t.first.len() * rows.len);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { rows_pass_avx2(src, rows, t, out) };
    }
    rows_pass_portable(src, rows, t, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_pass_avx2(src: &[u8], rows: Rows, t: &Taps, out: &mut [u8]) {
    rows_pass_portable(src, rows, t, out);
}

#[inline(always)]
fn rows_pass_portable(src: &[u8], rows: Rows, t: &Taps, out: &mut [u8]) {
    // Blocks of 32 accumulators stay in registers across all the taps of an output row.
    const BLOCK: usize = 32;
    for (y, out_row) in out.chunks_exact_mut(rows.len).enumerate() {
        let weights = &t.weights[y * t.ksize..][..t.len[y]];
        let start = rows.offset + (t.first[y] - rows.first) * rows.stride;
        let src_row = |k: usize| &src[start + k * rows.stride..][..rows.len];
        let mut x = 0;
        while x + BLOCK <= rows.len {
            let mut acc = [HALF; BLOCK];
            for (k, &wk) in weights.iter().enumerate() {
                let s: &[u8; BLOCK] = src_row(k)[x..x + BLOCK].try_into().unwrap();
                for (a, &p) in acc.iter_mut().zip(s) {
                    *a += i32::from(p) * wk;
                }
            }
            for (o, &a) in out_row[x..x + BLOCK].iter_mut().zip(&acc) {
                *o = clip8(a);
            }
            x += BLOCK;
        }
        for (i, o) in out_row[x..].iter_mut().enumerate() {
            let acc = weights.iter().enumerate().fold(HALF, |acc, (k, &wk)| acc + i32::from(src_row(k)[x + i]) * wk);
            *o = clip8(acc);
        }
    }
}

/// The `w`×`h` pixels at `offset` (rows `stride` bytes apart), transposed into `out`: `w` rows
/// of `h` pixels.
fn transpose<const C: usize>(src: &[u8], offset: usize, stride: usize, w: usize, h: usize, out: &mut Vec<u8>) {
    // Tiles of TILE source rows: their pixels stay in cache while each output row gets TILE
    // consecutive pixels.
    const TILE: usize = 16;
    fit(out, w * h * C);
    let (out_px, _) = out.as_chunks_mut::<C>();
    for y0 in (0..h).step_by(TILE) {
        let y1 = (y0 + TILE).min(h);
        let rows: Vec<&[[u8; C]]> = (y0..y1).map(|y| src[offset + y * stride..][..w * C].as_chunks::<C>().0).collect();
        for (x, out_row) in out_px.chunks_exact_mut(h).enumerate() {
            for (dst, row) in out_row[y0..y1].iter_mut().zip(&rows) {
                *dst = row[x];
            }
        }
    }
}

/// Set `buf`'s length to `n`, zero-filling only the part never written before: the buffers
/// reused from image to image are then not cleared each time (every byte gets overwritten).
pub(crate) fn fit(buf: &mut Vec<u8>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0);
    } else {
        buf.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_in_fixed_point() {
        for (i, o) in [(1000, 224), (224, 1000), (300, 224), (7, 3)] {
            let t = taps(i, o, 0..o);
            for x in 0..o {
                let s: i32 = t.weights[x * t.ksize..][..t.len[x]].iter().sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= t.len[x] as i32, "{i}->{o} at {x}");
            }
        }
    }

    #[test]
    fn windows_equal_crops_of_the_full_resize() {
        let src: Vec<u8> = (0..37 * 23 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        // Both pass orders, a skipped pass on either axis, and upscaling.
        for (out_w, out_h) in [(20, 10), (30, 5), (37, 11), (15, 23), (50, 40)] {
            let full = bicubic_resize::<3>(&src, 37, 23, out_w, out_h);
            for (x0, y0, w, h) in [(0, 0, out_w, out_h), (3, 1, 5, 3), (out_w - 4, out_h - 3, 4, 3)] {
                let win = bicubic_resize_window::<3>(&src, (37, 23), (out_w, out_h), (x0, y0), (w, h));
                let want: Vec<u8> =
                    (y0..y0 + h).flat_map(|y| full[(y * out_w + x0) * 3..(y * out_w + x0 + w) * 3].to_vec()).collect();
                assert_eq!(win, want, "{out_w}x{out_h} window {x0},{y0} {w}x{h}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 13 * 9 * 3];
        let out = bicubic_resize::<3>(&src, 13, 9, 5, 20);
        assert!(out.iter().all(|&v| v == 77));
    }

    #[test]
    fn rectangles_equal_resizes_of_cropped_copies() {
        let (w, h) = (61, 47);
        let src: Vec<u8> = (0..w * h * 3).map(|i| (i * 7919 % 251) as u8).collect();
        // Horizontal first, vertical first, a kept axis each way, upscaling, 1-pixel sides,
        // widths below and above the 32-sample block.
        let cases = [
            ((3, 2, 50, 40), (20, 15)),
            ((0, 0, 61, 47), (30, 8)),
            ((5, 1, 40, 45), (40, 9)),
            ((5, 1, 40, 45), (12, 45)),
            ((10, 10, 12, 9), (29, 31)),
            ((0, 7, 61, 1), (9, 4)),
            ((4, 0, 20, 47), (15, 8)),
            ((60, 0, 1, 47), (3, 11)),
            ((2, 3, 7, 5), (7, 5)),
            ((1, 1, 59, 44), (224, 224)),
        ];
        for ((l, t, cw, ch), (ow, oh)) in cases {
            let crop: Vec<u8> = (t..t + ch).flat_map(|y| src[(y * w + l) * 3..(y * w + l + cw) * 3].to_vec()).collect();
            let want = bicubic_resize::<3>(&crop, cw, ch, ow, oh);
            let got = bicubic_resize_rect::<3>(&src, w, (l, t, cw, ch), (ow, oh));
            assert_eq!(got, want, "rect {l},{t} {cw}x{ch} -> {ow}x{oh}");
        }
    }

    #[test]
    fn transpose_moves_pixels() {
        // 3×2 pixels of (R, G) inside a 4-pixel-wide buffer, one pixel in.
        let src: Vec<u8> = (0..4 * 3 * 2).map(|i| i as u8).collect();
        let mut t = vec![9; 50];
        transpose::<2>(&src, 2, 8, 3, 2, &mut t);
        assert_eq!(t, [2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15]);
        // RGB (moved 4 bytes at a time): 2×3 pixels at (1, 0) of a 4×3 image, into a reused
        // buffer that held other bytes.
        let src: Vec<u8> = (0..4 * 3 * 3).map(|i| i as u8).collect();
        transpose::<3>(&src, 3, 12, 2, 3, &mut t);
        assert_eq!(t, [3, 4, 5, 15, 16, 17, 27, 28, 29, 6, 7, 8, 18, 19, 20, 30, 31, 32]);
    }
}
