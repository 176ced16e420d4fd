// Bake the libtorch folder that torch-sys linked against into the binary's rpath, so
// `clip-ast` runs without anyone setting LD_LIBRARY_PATH. torch-sys (links = "tch")
// publishes that folder to direct dependents as DEP_TCH_LIBTORCH_LIB.
//
// libtorch_cuda is deliberately not linked: loading it and the CUDA libraries it pulls in
// costs ~0.6 s at every start, and a sweep starts the binary hundreds of times. `--device
// cuda` loads it at run time instead (src/device.rs), from this folder or the library path.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=CLIP_AST_LIBTORCH_LIB={dir}");
    }
}
