//! AdamW over tch tensors with its moments in the open, because CLIP-AST ranks parameters by
//! them (tch's built-in optimizer keeps them out of reach). State is fp32 whatever the
//! compute precision, so small second moments do not underflow as they do in fp16.

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

use crate::clip::Weights;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    /// torch.optim.AdamW's defaults except weight decay, which CLIP-AST sets to 1e-4.
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, amsgrad: false }
    }
}

struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<(String, Tensor)>,
    moments: Vec<Moments>,
    step: i64,
    fused: bool,
}

impl AdamW {
    /// `params` must be fp32 leaf tensors with `requires_grad` set.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> AdamW {
        let moments = params
            .iter()
            .map(|(_, p)| Moments {
                exp_avg: p.zeros_like().detach(),
                exp_avg_sq: p.zeros_like().detach(),
                max_exp_avg_sq: config.amsgrad.then(|| p.zeros_like().detach()),
            })
            .collect();
        AdamW { config, params, moments, step: 0, fused: true }
    }

    /// Whether CPU tensors take the fused pass (the default) or libtorch's per-tensor ops, for
    /// the tests that show the two agree.
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// One update, with torch.optim.AdamW's arithmetic: decoupled decay, then moments, then a
    /// bias-corrected step. A tensor without a gradient counts as a zero gradient, so every
    /// tensor shares one step count (torch skips such tensors; in our stages all have grads).
    ///
    /// Contiguous fp32 CPU tensors (all of them in a CPU run) are updated by one fused pass per
    /// element over all tensors at once, split across libtorch's thread count: torch's
    /// per-tensor sequence reads and writes each tensor about twenty times, which on the CPU
    /// costs as much as a good part of a stage-2 step. Other tensors (a GPU run) take the
    /// per-tensor libtorch ops. Both round as torch does, except that the fused pass takes a
    /// correctly rounded square root where libtorch's vectorised one may be 1 ulp off.
    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let k = Coefficients::new(&self.config, self.step);
        let mut fused = Vec::new();
        for ((_, param), m) in self.params.iter().zip(&mut self.moments) {
            let grad = param.grad();
            let grad = if grad.defined() { grad } else { param.zeros_like() };
            if let Some(slices) = FusedSlices::new(param, &grad, m).filter(|_| self.fused) {
                fused.push((slices, grad));
            } else {
                step_with_ops(param, &grad, m, &k);
            }
        }
        let slices: Vec<FusedSlices> = fused.iter().map(|(s, _)| *s).collect();
        run_fused(&slices, &k, tch::get_num_threads().max(1) as usize);
    }

    /// `{name}.exp_avg`, `{name}.exp_avg_sq` (and `{name}.max_exp_avg_sq` with amsgrad) for every
    /// tensor, plus `step`: what `adamw.safetensors` holds.
    pub fn state(&self) -> Weights {
        let mut out = Weights::new();
        for ((name, _), m) in self.params.iter().zip(&self.moments) {
            out.insert(format!("{name}.exp_avg"), m.exp_avg.shallow_clone());
            out.insert(format!("{name}.exp_avg_sq"), m.exp_avg_sq.shallow_clone());
            if let Some(max) = &m.max_exp_avg_sq {
                out.insert(format!("{name}.max_exp_avg_sq"), max.shallow_clone());
            }
        }
        out.insert("step".into(), Tensor::from(self.step as f32));
        out
    }
}

impl AdamW {
    /// Everything a resumed run needs to continue exactly: the tensors being trained
    /// (`param/NAME`), their moments (`exp_avg/NAME`, `exp_avg_sq/NAME`, `max_exp_avg_sq/NAME`),
    /// as copies, and the step count (exact, unlike `state`'s fp32 `step`).
    pub fn checkpoint(&self) -> (Weights, i64) {
        let _guard = tch::no_grad_guard();
        let mut out = Weights::new();
        for ((name, param), m) in self.params.iter().zip(&self.moments) {
            out.insert(format!("param/{name}"), param.detach().copy());
            out.insert(format!("exp_avg/{name}"), m.exp_avg.copy());
            out.insert(format!("exp_avg_sq/{name}"), m.exp_avg_sq.copy());
            if let Some(max) = &m.max_exp_avg_sq {
                out.insert(format!("max_exp_avg_sq/{name}"), max.copy());
            }
        }
        (out, self.step)
    }

    /// Put back what [`AdamW::checkpoint`] saved, in place: the model shares the parameters'
    /// storage. Every tensor must be there with its shape; nothing is changed otherwise.
    pub fn restore(&mut self, saved: &Weights, step: i64) -> Result<()> {
        let find = |prefix: &str, name: &str, like: &Tensor| -> Result<&Tensor> {
            let t = saved.get(&format!("{prefix}/{name}")).with_context(|| format!("no `{prefix}/{name}`"))?;
            if t.size() != like.size() {
                bail!("`{prefix}/{name}` is {:?}, the stage trains {:?}", t.size(), like.size());
            }
            Ok(t)
        };
        let trained = self.params.iter().filter(|(name, _)| saved.contains_key(&format!("param/{name}"))).count();
        if trained != self.params.len() || saved.keys().filter(|k| k.starts_with("param/")).count() != trained {
            bail!("it holds other tensors than the {} this stage trains", self.params.len());
        }
        for ((name, param), m) in self.params.iter().zip(&self.moments) {
            find("param", name, param)?;
            find("exp_avg", name, &m.exp_avg)?;
            find("exp_avg_sq", name, &m.exp_avg_sq)?;
            if let Some(max) = &m.max_exp_avg_sq {
                find("max_exp_avg_sq", name, max)?;
            }
        }
        let _guard = tch::no_grad_guard();
        for ((name, param), m) in self.params.iter().zip(&mut self.moments) {
            let copy = |dst: &Tensor, prefix: &str| {
                let src = &saved[&format!("{prefix}/{name}")];
                dst.shallow_clone().copy_(&src.to_device(dst.device()).to_kind(dst.kind()));
            };
            copy(param, "param");
            copy(&m.exp_avg, "exp_avg");
            copy(&m.exp_avg_sq, "exp_avg_sq");
            if let Some(max) = &m.max_exp_avg_sq {
                copy(max, "max_exp_avg_sq");
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The moments of one tensor as read back from `adamw.safetensors`.
pub struct SavedMoments {
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

/// Split a saved state into per-tensor moments and the step count.
pub fn read_state(
    state: &Weights,
    source: &std::path::Path,
) -> Result<(std::collections::BTreeMap<String, SavedMoments>, i64)> {
    let step = state
        .get("step")
        .with_context(|| format!("{}: no `step` entry; not an AdamW state file", source.display()))?
        .double_value(&[]) as i64;
    let mut out = std::collections::BTreeMap::new();
    for (key, tensor) in state {
        if let Some(name) = key.strip_suffix(".exp_avg") {
            let sq = state
                .get(&format!("{name}.exp_avg_sq"))
                .with_context(|| format!("{}: `{name}` has exp_avg but no exp_avg_sq", source.display()))?;
            if sq.size() != tensor.size() {
                bail!("{}: moments of `{name}` have different shapes", source.display());
            }
            out.insert(
                name.to_string(),
                SavedMoments { exp_avg: tensor.to_kind(Kind::Float), exp_avg_sq: sq.to_kind(Kind::Float) },
            );
        }
    }
    if out.is_empty() {
        bail!("{}: holds no exp_avg tensors", source.display());
    }
    Ok((out, step))
}

/// The step's scalars, as torch turns its Python floats into fp32 kernel arguments.
#[derive(Clone, Copy, Debug)]
struct Coefficients {
    decay: f32,
    beta1_weight: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
    // The same in f64, for the per-tensor ops (libtorch narrows them itself).
    lr: f64,
    weight_decay: f64,
    beta1: f64,
    beta2_f64: f64,
    eps_f64: f64,
    bias_correction2_sqrt_f64: f64,
    step_size: f64,
}

impl Coefficients {
    fn new(c: &AdamWConfig, step: i64) -> Coefficients {
        let t = step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
        let step_size = c.lr / bias_correction1;
        Coefficients {
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            beta1_weight: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            bias_correction2_sqrt: bias_correction2_sqrt as f32,
            eps: c.eps as f32,
            neg_step_size: -step_size as f32,
            lr: c.lr,
            weight_decay: c.weight_decay,
            beta1: c.beta1,
            beta2_f64: c.beta2,
            eps_f64: c.eps,
            bias_correction2_sqrt_f64: bias_correction2_sqrt,
            step_size,
        }
    }
}

/// torch.optim.AdamW's single-tensor sequence of libtorch ops, in its order of rounding.
fn step_with_ops(param: &Tensor, grad: &Tensor, m: &mut Moments, k: &Coefficients) {
    let mut param = param.shallow_clone();
    let _ = param.g_mul_scalar_(1.0 - k.lr * k.weight_decay);
    let _ = m.exp_avg.lerp_(grad, 1.0 - k.beta1);
    let _ = m.exp_avg_sq.g_mul_scalar_(k.beta2_f64);
    let _ = m.exp_avg_sq.addcmul_(&(grad * (1.0 - k.beta2_f64)), grad);
    let second = match &mut m.max_exp_avg_sq {
        Some(max) => {
            let dest = max.shallow_clone();
            let _ = max.maximum_out(&dest, &m.exp_avg_sq);
            dest
        }
        None => m.exp_avg_sq.shallow_clone(),
    };
    let mut denom = second.sqrt();
    let _ = denom.g_div_scalar_(k.bias_correction2_sqrt_f64);
    let _ = denom.g_add_scalar_(k.eps_f64);
    // addcdiv_(m, denom, value=-step_size) computes (value * m) / denom.
    let mut update = &m.exp_avg * -k.step_size;
    let _ = update.g_div_(&denom);
    let _ = param.g_add_(&update);
}

/// Raw views of one tensor's parameter, gradient and moments, all contiguous fp32 on the CPU.
#[derive(Clone, Copy)]
struct FusedSlices {
    param: *mut f32,
    grad: *const f32,
    exp_avg: *mut f32,
    exp_avg_sq: *mut f32,
    max_exp_avg_sq: *mut f32,
    len: usize,
}

// The pointers are only dereferenced inside `run_fused`, on disjoint element ranges, while
// `AdamW::step` holds the tensors.
unsafe impl Send for FusedSlices {}
unsafe impl Sync for FusedSlices {}

impl FusedSlices {
    fn new(param: &Tensor, grad: &Tensor, m: &Moments) -> Option<FusedSlices> {
        let len = param.numel();
        let mut tensors = vec![param, grad, &m.exp_avg, &m.exp_avg_sq];
        tensors.extend(m.max_exp_avg_sq.as_ref());
        let fits = tensors.iter().all(|t| {
            t.device() == tch::Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() == len
        });
        if !fits {
            return None;
        }
        Some(FusedSlices {
            param: param.data_ptr() as *mut f32,
            grad: grad.data_ptr() as *const f32,
            exp_avg: m.exp_avg.data_ptr() as *mut f32,
            exp_avg_sq: m.exp_avg_sq.data_ptr() as *mut f32,
            max_exp_avg_sq: m.max_exp_avg_sq.as_ref().map_or(std::ptr::null_mut(), |t| t.data_ptr() as *mut f32),
            len,
        })
    }
}

/// Elements per work item: large enough to stream, small enough to balance two threads.
const CHUNK: usize = 1 << 16;

fn run_fused(tensors: &[FusedSlices], k: &Coefficients, threads: usize) {
    let mut chunks = Vec::new();
    for t in tensors {
        let mut start = 0;
        while start < t.len {
            let len = CHUNK.min(t.len - start);
            chunks.push((*t, start, len));
            start += len;
        }
    }
    let work = |offset: usize| {
        for &(t, start, len) in chunks.iter().skip(offset).step_by(threads) {
            // SAFETY: each (tensor, range) is visited by exactly one thread, the ranges lie
            // inside tensors of `len` elements, and nothing else touches them meanwhile.
            unsafe { update_range(&t, start, len, k) };
        }
    };
    if threads <= 1 || chunks.len() <= 1 {
        work(0);
    } else {
        std::thread::scope(|scope| {
            for offset in 1..threads {
                scope.spawn(move || work(offset));
            }
            work(0);
        });
    }
}

/// # Safety
/// `start..start + len` must lie within every slice of `t`, and no other reference to those
/// elements may exist while this runs.
unsafe fn update_range(t: &FusedSlices, start: usize, len: usize, k: &Coefficients) {
    unsafe {
        let p = std::slice::from_raw_parts_mut(t.param.add(start), len);
        let g = std::slice::from_raw_parts(t.grad.add(start), len);
        let m = std::slice::from_raw_parts_mut(t.exp_avg.add(start), len);
        let v = std::slice::from_raw_parts_mut(t.exp_avg_sq.add(start), len);
        let max =
            (!t.max_exp_avg_sq.is_null()).then(|| std::slice::from_raw_parts_mut(t.max_exp_avg_sq.add(start), len));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return update_avx2(p, g, m, v, max, k);
        }
        update(p, g, m, v, max, k);
    }
}

/// The same loop compiled for AVX2 + FMA, so that it vectorises and `mul_add` is one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn update_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], max: Option<&mut [f32]>, k: &Coefficients) {
    update(p, g, m, v, max, k);
}

/// One AdamW update per element, with libtorch's fp32 kernels' rounding: `lerp_` and
/// `addcmul_` fuse their last multiply-add, `addcdiv_` divides `value * m` by the denominator.
#[inline(always)]
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], max: Option<&mut [f32]>, k: &Coefficients) {
    let w = k.beta1_weight;
    let small_weight = w < 0.5;
    let moments = |g: f32, m: &mut f32, v: &mut f32| {
        *m = if small_weight { w.mul_add(g - *m, *m) } else { (w - 1.0).mul_add(g - *m, g) };
        *v = (k.one_minus_beta2 * g).mul_add(g, *v * k.beta2);
    };
    let apply = |p: &mut f32, m: f32, second: f32| {
        let denom = second.sqrt() / k.bias_correction2_sqrt + k.eps;
        *p = *p * k.decay + (k.neg_step_size * m) / denom;
    };
    match max {
        None => {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                moments(g, m, v);
                apply(p, *m, *v);
            }
        }
        Some(max) => {
            for ((((p, &g), m), v), mx) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()).zip(max.iter_mut()) {
                moments(g, m, v);
                *mx = mx.max(*v);
                apply(p, *m, *mx);
            }
        }
    }
}
