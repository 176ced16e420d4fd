// Bake the libtorch folder that torch-sys linked against into the binary's rpath, so
// `clip-ast` runs without anyone setting LD_LIBRARY_PATH. torch-sys (links = "tch")
// publishes that folder to direct dependents as DEP_TCH_LIBTORCH_LIB.
//
// Nothing in our code calls into libtorch_cuda directly, so the linker's --as-needed would
// drop it and `--device cuda` would find no CUDA backend; link it explicitly when the wheel
// has it (the same binary then runs on CPU-only machines too, the CUDA libs load lazily).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{dir},-ltorch_cuda,--as-needed");
        }
    }
}
